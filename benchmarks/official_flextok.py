"""FlexTok's official evaluation way, reproduced step by step for the family benchmark (bench_families.py).

The official repository has no evaluation code (flextok_official.md §7); what it offers is the API
sequence of its README: ``tokenize``, keep the first k tokens, ``detokenize``. A user's evaluation is
that sequence in a loop, with the metric loop the other official ways share (PNG folders, one
``pytorch_fid`` process per folder):

1. set-up: ``FlexTokFromHub.from_pretrained`` (build the model, load ``model.safetensors``), ``eval()``;
2. per batch of images (the demo preprocessing: ``Resize(256)`` bilinear, ``CenterCrop(256)``,
   ``ToTensor``, ``Normalize(0.5, 0.5)``): ``tokenize`` once (VAE encoder, register encoder, FSQ; its
   eval path's ``torch.bernoulli`` on the global RNG), GT written as PNG;
3. per prefix length k, one ``detokenize([t[:, :k] ...], timesteps=T, guidance_scale=g,
   perform_norm_guidance=apg)`` (§2.5-2.8, §3): the initial noise, one ``(1, C, h, w)`` tensor per image
   (§4); T Euler steps t = T/T ... 1/T, each one decoder call for the conditional branch and, when
   g != 1, one for the unconditional branch (null registers), then CFG or APG (momentum reset per
   call); then the VAE decode of the whole batch;
4. the demo's conversion to PIL (x·0.5 + 0.5, clamp, ×255 truncated to uint8), a PNG per image and k;
5. per k folder, a fresh ``python -m pytorch_fid <rec> <gt>`` process, and the MAE per image read back
   from the PNG pairs (the paper reports rFID and MAE, §7).

Noise: the initial noise of image i is drawn from alit-eval's per-image generator (run seed 0, the
image's file name) and injected through the official ``pipeline.noise_read_key`` (§3), the same for
every k of the image, so (a) and alit-eval's default ``--noise seeded`` compute the same latents (a
user passing one ``torch.Generator`` per ``detokenize`` would get the j-th draw of that stream for
image j instead: the same cost, other numbers).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
BATCH = 16  # the official code has no loader; the batch of bench_families' alit-eval run
SEED = 0  # alit_eval.evaluate's default run seed

LEAVES_OUT = ("the hydra instantiation of FlexTokFromHub (the weights are loaded through alit-eval's loader); "
              "flex_attention's compile (the official SDPA fallback's cost is run); tqdm; the data-loader "
              "(images are read in the main process, batches of 16); alit-eval rounds to uint8 where the demo "
              "conversion truncates (same latents, PNG values differ by at most 1/255); noise: both draw per image "
              "from the same (seed, file name) generators (a user's single generator per detokenize, the "
              "official global stream, would give other noise at the same cost)")


def _png(path: Path, img_pm1: torch.Tensor) -> np.ndarray:
    """The demo's tensor -> PIL conversion (truncating) and a PNG write; returns the uint8 array."""
    arr = ((img_pm1 * 0.5 + 0.5).clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    Image.fromarray(arr).save(path)
    return arr


def _preprocess(path: Path) -> torch.Tensor:
    """The demo helper's transform: shorter side to 256 (bilinear), centre crop 256, to [-1, 1]."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = 256 / min(w, h)
    if (w, h) != (256, 256):
        img = img.resize((max(256, round(w * s)), max(256, round(h * s))), Image.BILINEAR)
    w, h = img.size
    left, top = (w - 256) // 2, (h - 256) // 2
    img = img.crop((left, top, left + 256, top + 256))
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255
    return (x - 0.5) / 0.5


def detokenize(model, codes: torch.Tensor, k: int, noise: torch.Tensor, steps: int, g: float,
               apg: bool) -> torch.Tensor:
    """One official ``detokenize`` of the first k tokens of each image: flow latents, then the VAE decode."""
    from alit_eval.tokenizers.flextok.sampler import ApgState, cfg_velocity

    cond = model.decoder_registers(codes, torch.full((len(codes),), k, device=codes.device))
    null = model.null_registers(cond)
    momentum, x = ApgState(), noise
    for i in range(steps, 0, -1):
        t = torch.full((len(x),), i / steps, device=x.device)
        v = model.velocity(x, t, cond)
        if g != 1.0:  # guidance active: a second, unconditional decoder call
            v_u = model.velocity(x, t, null)
            v = momentum(v, v_u, g) if apg else cfg_velocity(v, v_u, g)
        x = x - (1.0 / steps) * v
    return model.vae.decode(x)


def _batch(model, files: list[Path], budgets: list[int], work: Path, opts: dict) -> None:
    """Steps 2-4 for one batch of images."""
    from alit_eval.tokenizers.generators import per_image_generators

    x = torch.stack([_preprocess(p) for p in files]).to(model.device)
    tokens = model.tokenize(x)["tokens"]  # generator None: the global RNG, as the official code
    for p, img in zip(files, x):
        _png(work / "gt" / p.name, img)
    noise = model.draw_noise(len(files), per_image_generators(SEED, [p.name for p in files]))
    for k in budgets:
        codes = model.fsq.codes_from_tokens(tokens)  # detokenize maps the k-token prefix back to codes
        images = detokenize(model, codes, k, noise, opts["steps"], opts["guidance"], opts["apg"])
        for p, img in zip(files, images):
            _png(work / f"reconstructed_{k}" / p.name, img)


def _mae(rec_dir: Path, gt_dir: Path) -> float:
    """Mean absolute error per image over the PNG pairs, in [0, 1] units."""
    errs = [np.abs(np.asarray(Image.open(r), np.float32) - np.asarray(Image.open(gt_dir / r.name), np.float32)).mean()
            for r in sorted(rec_dir.glob("*.png"))]
    return float(np.mean(errs)) / 255


def official_way(ckpt: Path, paths: list[Path], budgets: list[int], work: Path, device: str,
                 opts: dict | None = None) -> dict[str, float]:
    """Run the official way; seconds: ``total``, ``decode`` (tokenize + detokenize + PNGs), ``fid``."""
    from alit_eval import load_tokenizer

    opts = {"steps": 20, "guidance": 7.5, "apg": True, **(opts or {})}
    t0 = time.perf_counter()
    model = load_tokenizer(ckpt, device=device, offline=True)
    for d in ["gt", *(f"reconstructed_{k}" for k in budgets)]:
        (work / d).mkdir(parents=True)
    with torch.no_grad():
        for i in range(0, len(paths), BATCH):
            _batch(model, paths[i:i + BATCH], budgets, work, opts)
    t_fid = time.perf_counter()
    t_decode = t_fid - t0
    for k in budgets:  # one `python -m pytorch_fid rec gt` per folder, then the MAE
        out = subprocess.run([sys.executable, str(HERE / "bench_fid.py"), "--fid-child",
                              str(work / f"reconstructed_{k}"), str(work / "gt"), "--device", device],
                             check=True, capture_output=True, text=True).stdout
        assert "FID:" in out, out
        _mae(work / f"reconstructed_{k}", work / "gt")
    return {"total": time.perf_counter() - t0, "decode": t_decode, "fid": time.perf_counter() - t_fid}


def describe(t: dict[str, float], budgets: list[int]) -> str:
    return (f"tokenize once, {len(budgets)} detokenize calls per batch (cond + uncond passes), PNGs "
            f"{t['decode']:.1f} s; {len(budgets)} FID processes {t['fid']:.1f} s = {t['fid'] / len(budgets):.1f} s each")
