"""FlexTok prefix-decode cost: the official way vs alit-eval's batched sampler vs a compute floor.

For B images, K prefix lengths, T Euler steps and guidance g != 1, all three compute the same latents
(the flow decode only; tokenisation and the VAE decode are the same for all and left out):

- **official**: what the official API does (``detokenize`` once per k): per k and per step, one decoder
  call for the conditional and one for the unconditional branch, over the B images;
- **alit-eval**: `FlexTokTokenizer.sample` on all K·B rows at once, conditional and unconditional
  concatenated: T decoder calls over 2·K·B rows;
- **floor**: T bare decoder forwards over the same 2·K·B rows with every input precomputed (no
  guidance arithmetic, no register preparation): what the batching cannot go below on this device.

It prints seconds and the ratios official/alit-eval and alit-eval/floor, and checks that the official
way and alit-eval give the same latents (max |diff|). Runs on a tiny random model by default.

``family()`` is FlexTok's hook for the family benchmark (bench_families.py): the whole evaluation,
official way (official_flextok.py) vs `alit-eval fid` vs floor, on the shared fixture checkpoint::

    python benchmarks/bench_flextok.py                      # tiny model, CPU, quick check
    python benchmarks/bench_flextok.py --ckpt model.safetensors --images 8 --ks 1,4,16,64,256 --steps 20 --device cuda
"""

from __future__ import annotations

import argparse
import time

import torch


# The decode options of all three ways in the family table: the README's guidance 7.5 with APG, but
# T = 4 Euler steps (the fixture's `readme_T4` setting) instead of the README's 20, so that the quick
# run stays under a minute on 2 cores (each step is 2 decoder calls per image and prefix length).
FAMILY_OPTIONS = {"steps": 4, "guidance": 7.5, "apg": True}


def family():
    """FlexTok's `bench_families.Family`: the tiny official fixture, prefix lengths, the official way."""
    import bench_families as bf
    import official_flextok

    from alit_eval.tokenizers.generators import per_image_generators

    opts = dict(FAMILY_OPTIONS)
    return bf.Family(
        "flextok", bf.FIX / "official_flextok" / "flextok_tiny" / "hub" / "model.safetensors", [1, 16, 64, 256],
        [1, 256], lambda *a: official_flextok.official_way(*a, opts=opts), official_flextok.describe,
        official_flextok.LEAVES_OUT + f"; all three run T {opts['steps']} Euler steps (README default 20), "
        f"g {opts['guidance']}, APG {'on' if opts['apg'] else 'off'}", opts,
        lambda ids: {"generator": per_image_generators(0, ids), **opts},  # the engine's default seeded noise
        "fixture: VAE [32,32,64,64], encoder 64w x 2, decoder 96w x 3 (released d18-d28: VAE [128,256,512,512], "
        "1152w x 18, 1792w x 28)")


def _tiny() -> "torch.nn.Module":
    from alit_eval.tokenizers.flextok.config import FlexTokConfig
    from alit_eval.tokenizers.flextok.model import FlexTokTokenizer

    torch.manual_seed(0)
    cfg = FlexTokConfig(scaling_factor=1.0, sample_posterior=False, null_cond="zero", image_size=32,
                        vae_channels=(32, 32), vae_layers_per_block=1, latent_channels=4, posemb_grid=8, enc_width=32,
                        enc_depth=1, enc_head_dim=16, dec_width=64, dec_depth=2, dec_head_dim=16, n_registers=16)
    return FlexTokTokenizer(cfg, name="tiny").eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def official_way(model, codes, ks, noise, steps, g, apg):
    """One decode per k; per step a conditional and an unconditional decoder call (the official API)."""
    from alit_eval.tokenizers.flextok.sampler import ApgState, cfg_velocity

    outs = []
    for k in ks:
        keep = torch.full((len(codes),), k, device=codes.device)
        cond = model.decoder_registers(codes, keep)
        null = model.null_registers(cond)
        state, x = ApgState(), noise
        for i in range(steps, 0, -1):
            t = torch.full((len(x),), i / steps, device=x.device)
            v_c, v_u = model.velocity(x, t, cond), model.velocity(x, t, null)
            v = state(v_c, v_u, g) if apg else cfg_velocity(v_c, v_u, g)
            x = x - (1.0 / steps) * v
        outs.append(x)
    return torch.cat(outs)


def alit_eval_way(model, codes, ks, noise, steps, g, apg):
    kk = len(ks)
    keep = torch.tensor(ks, device=codes.device).repeat_interleave(len(codes))
    return model.sample(codes.repeat(kk, 1, 1), keep, noise.repeat(kk, 1, 1, 1), steps=steps, guidance=g, apg=apg)


def floor_way(model, codes, ks, noise, steps):
    kk = len(ks)
    keep = torch.tensor(ks, device=codes.device).repeat_interleave(len(codes))
    cond = model.decoder_registers(codes.repeat(kk, 1, 1), keep)
    regs = torch.cat([cond, model.null_registers(cond)])
    x = noise.repeat(2 * kk, 1, 1, 1)
    t = torch.ones(len(x), device=x.device)
    for _ in range(steps):
        model.velocity(x, t, regs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", help="a FlexTok model.safetensors (default: a tiny random model)")
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--ks", default="1,4,16")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--no-apg", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.ckpt:
        from alit_eval.tokenizers.family_loading import load_any

        model = load_any(args.ckpt, device=device)
    else:
        model = _tiny().to(device)
    ks = [int(k) for k in args.ks.split(",")]
    cfg = model.cfg
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, cfg.codebook_size, (args.images, cfg.n_registers), generator=gen).to(device)
    codes = model.fsq.codes_from_tokens(tokens)
    noise = model.draw_noise(args.images, torch.Generator().manual_seed(1))
    apg = not args.no_apg
    runs = {"official": lambda: official_way(model, codes, ks, noise, args.steps, args.guidance, apg),
            "alit-eval": lambda: alit_eval_way(model, codes, ks, noise, args.steps, args.guidance, apg),
            "floor": lambda: floor_way(model, codes, ks, noise, args.steps)}
    best, results = {}, {}
    with torch.no_grad():
        for name, fn in runs.items():
            fn()  # warm-up
            times = []
            for _ in range(args.repeats):
                _sync(device)
                start = time.perf_counter()
                results[name] = fn()
                _sync(device)
                times.append(time.perf_counter() - start)
            best[name] = min(times)
    diff = float((results["official"] - results["alit-eval"]).abs().max())
    print(f"device {device}, {args.images} images, k {ks}, T {args.steps}, g {args.guidance}, APG {apg}, "
          f"threads {torch.get_num_threads()}")
    for name, sec in best.items():
        print(f"  {name:10s} {sec:8.3f} s")
    print(f"  official / alit-eval = {best['official'] / best['alit-eval']:.2f}x; alit-eval / floor = "
          f"{best['alit-eval'] / best['floor']:.2f}x; max |official - alit-eval| = {diff:.2e}")


if __name__ == "__main__":
    main()
