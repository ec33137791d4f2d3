"""GPU benchmark: throughput per stage and end to end for a random-weight `alit_small` (4 budgets).

Synthetic 256x256 images, the official geometry (w1024, 8+8 layers, VQGAN base), seeded halting.
Prints images/s for (1) the encoder rollout to 256 tokens with ALIT-decoder logits at every
iteration (halting), (2) the pixel decodes at the requested budgets, (3) Inception features of
reconstructions + originals, and (4) the whole `alit-eval fid` sweep, plus the share of wall time the
GPU was busy (CUDA-event time / wall time) in the end-to-end loop. Runs in a few minutes:

    python benchmarks/bench_gpu.py --device cuda [--n 512] [--batch-size 64] [--precision bf16]
It also runs on CPU with a small --n, for a smoke test.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--budgets", default="32,64,128,256")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "tf32"])
    ap.add_argument("--preset", default="alit_small")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    budgets = [int(b) for b in args.budgets.split(",")]

    from alit_eval.engine import fastpath
    from alit_eval.metrics.inception import InceptionFeatures
    from alit_eval.metrics.pixel import to_uint8
    from alit_eval.tokenizers.alit.config import AlitConfig
    from alit_eval.tokenizers.alit.halting import per_image_generators
    from alit_eval.tokenizers.alit.model import AlitTokenizer
    from alit_eval.tokenizers.checkpoints import save_tokenizer

    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = AlitTokenizer(AlitConfig.from_preset(args.preset), halting="seeded").eval().to(device)
    inception = InceptionFeatures(None, "tf1", device)
    inception.net = fastpath.channels_last(inception.net, device)
    print(f"setup {time.perf_counter() - t0:.1f} s; device {device}; precision {args.precision}; "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.0f} M params")
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(args.batch_size, 3, 256, 256, generator=g) * 255).to(torch.uint8).to(device)
    ids = [str(i) for i in range(args.batch_size)]
    steps = max(1, args.n // args.batch_size)
    n = steps * args.batch_size

    def stage(fn) -> float:
        fn()  # warm-up (cuDNN autotune, allocator)
        _sync(device)
        t = time.perf_counter()
        for _ in range(steps):
            fn()
        _sync(device)
        return n / (time.perf_counter() - t)

    x = images.float() / 255
    with torch.no_grad(), fastpath.precision(args.precision, device):
        r_holder = {}

        def rollout_only():
            r_holder["r"] = model.rollout(x, budgets, decode=False, generator=per_image_generators(0, ids), halting="seeded")

        def decode_only():
            for b in budgets:
                model.to_pixels(r_holder["r"][b].extras["logits"])

        recs = torch.cat([images] * (len(budgets) + 1))

        def inception_only():
            inception(recs)

        rates = {f"rollout to {max(budgets)} (+halting)": stage(rollout_only),
                 f"{len(budgets)} pixel decodes": stage(decode_only),
                 f"Inception x{len(budgets) + 1}": stage(inception_only)}

        busy = []

        def end_to_end():
            start, end = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) if device.type == "cuda" else (None, None)
            if start:
                start.record()
            r = model.rollout(x, budgets, generator=per_image_generators(0, ids), halting="seeded")
            outs = [to_uint8(r[b].reconstruction) for b in budgets]
            inception(torch.cat([images] + outs))
            if start:
                end.record()
                busy.append((start, end))

        _sync(device)
        t = time.perf_counter()
        rates["end to end (model + metrics)"] = stage(end_to_end)
        wall = time.perf_counter() - t
    for name, rate in rates.items():
        print(f"{name:32s} {rate:9.1f} img/s")
    if device.type == "cuda" and busy:
        gpu_s = sum(s.elapsed_time(e) for s, e in busy[-steps:]) / 1000
        print(f"GPU busy share (end to end): {min(1.0, gpu_s / max(wall, 1e-9)):.0%}")

    # The full command, with data loading, per-image metrics and shard writes, on the same model.
    from alit_eval.analysis.reconstruction import run
    from alit_eval.engine.config import SweepConfig

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_tokenizer(model.cpu(), Path(tmp) / "m.safetensors")
        req = SweepConfig(ckpt=str(ckpt), data="demo-scenes", limit=n, budgets=budgets, batch_size=args.batch_size,
                           halting="seeded", precision=args.precision)
        t = time.perf_counter()
        run(req, seed=0, device=str(device), offline=True, results_dir=Path(tmp) / "r", progress=False)
        print(f"{'alit-eval fid (whole command)':32s} {n / (time.perf_counter() - t):9.1f} img/s")


if __name__ == "__main__":
    main()
