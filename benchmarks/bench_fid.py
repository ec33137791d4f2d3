"""Benchmark: `alit-eval fid` against the official evaluation's way of working, and the compute floor.

Same ALIT weights (the official fixture's random-weight VQGAN configuration when ../shared is
present, else a random model of that configuration) and the same images (demo scenes at 256x256):

  (a) official way, reproduced step by step (evaluate_rfid.py): batch size 1, all 8 iterations with
      a pixel decode at each, every reconstruction written as PNG (truncated) and the GT too, then
      per requested budget: PNGs read back and FID computed from the two folders (pytorch-fid style:
      Inception over the reconstructions AND again over the GT for every budget);
  (b) `alit-eval fid` (engine) for the same budgets, batched;
  (c) the floor: one batched rollout to the largest budget (same halting policy as (b), so the ALIT
      decoder runs at every iteration), one pixel decode per requested budget, one Inception pass
      per reconstruction and per original; no I/O, no metrics, no setup.

Prints images/s of each and the ratios (b)/(a) and (b)/(c) measured side by side in one run.
    python benchmarks/bench_fid.py [--n 16] [--device cpu|cuda] [--budgets 32,64,128,256]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO.parent / "shared" / "fixtures" / "official_alit" / "vqgan_quantized" / "checkpoint.pth"


def model_file(tmp: Path) -> Path:
    from alit_eval.tokenizers.alit.config import AlitConfig
    from alit_eval.tokenizers.alit.model import AlitTokenizer
    from alit_eval.tokenizers.base2d.config import Base2DConfig
    from alit_eval.tokenizers.checkpoints import save_tokenizer

    if FIXTURE.is_file():
        return FIXTURE
    torch.manual_seed(0)
    cfg = AlitConfig(width=264, depth=1, heads=4, base=Base2DConfig(ch=32))
    return save_tokenizer(AlitTokenizer(cfg), tmp / "random.safetensors")


def write_images(folder: Path, n: int) -> list[Path]:
    from alit_eval.data.demo import generate

    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        p = folder / f"img{i:04d}.png"
        Image.fromarray(generate("demo-scenes", i, size=256).image).save(p)
        paths.append(p)
    return paths


def official_way(model, inception, paths, budgets, work: Path, device) -> float:
    from alit_eval.metrics.fid import FeatureStats, frechet_distance

    t0 = time.perf_counter()
    gt_dir = work / "gt"
    gt_dir.mkdir(parents=True)
    for t in range(8):
        (work / f"rec{t}").mkdir()
    torch.manual_seed(0)
    for p in paths:  # batch size 1, loader order
        x = torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1)[None].float().div(255).to(device)
        r = model.rollout(x, halting="official")  # all 8 iterations, pixel decode at each
        Image.fromarray((x[0].clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()).save(gt_dir / p.name)
        for t, b in enumerate(r.budgets):
            img = (r[b].extras["reconstruction_raw"][0] * 255).clamp(0, 255).to(torch.uint8)  # truncation
            Image.fromarray(img.permute(1, 2, 0).cpu().numpy()).save(work / f"rec{t}" / p.name)

    def folder_stats(folder: Path) -> FeatureStats:
        s = FeatureStats(2048)
        files = sorted(folder.glob("*.png"))
        for i in range(0, len(files), 50):  # pytorch-fid's default batch of 50
            batch = torch.stack([torch.from_numpy(np.array(Image.open(f))).permute(2, 0, 1) for f in files[i:i + 50]])
            s.update(inception(batch.to(device)))
        return s

    for b in budgets:
        rec, gt = folder_stats(work / f"rec{b // 32 - 1}"), folder_stats(gt_dir)
        frechet_distance(rec.mean(), rec.cov(), gt.mean(), gt.cov())
    return time.perf_counter() - t0


def alit_eval_way(ckpt: Path, folder: Path, budgets, results: Path, device: str, batch_size: int) -> float:
    from alit_eval.analysis.fid import run
    from alit_eval.engine.runner import SweepRequest

    req = SweepRequest(ckpt=str(ckpt), data=str(folder), budgets=budgets, batch_size=batch_size, halting="seeded")
    t0 = time.perf_counter()
    run(req, seed=0, device=device, offline=True, results_dir=results, progress=False)
    return time.perf_counter() - t0


def sweep_loop(ckpt: Path, folder: Path, budgets, results: Path, device: str, batch_size: int) -> float:
    """(b) without set-up and final statistics: the engine's loop alone (data, rollout, metrics, store)."""
    from alit_eval.engine.runner import SweepRequest, prepare
    from alit_eval.engine.sweep import run_sweep

    req = SweepRequest(ckpt=str(ckpt), data=str(folder), budgets=budgets, batch_size=batch_size, halting="seeded")
    p = prepare(req, seed=0, device=device, offline=True, progress=False)
    t0 = time.perf_counter()
    run_sweep(p.tokenizer, p.source, p.sweep, results)
    return time.perf_counter() - t0


def floor(model, inception, paths, budgets, device, batch_size: int) -> float:
    from alit_eval.tokenizers.alit.halting import per_image_generators

    images = torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1) for p in paths])
    t0 = time.perf_counter()
    for i in range(0, len(images), batch_size):
        u8 = images[i:i + batch_size].to(device)
        # Same halting as (b): it needs the ALIT decoder's logits at every iteration.
        gens = per_image_generators(0, [p.name for p in paths[i:i + batch_size]])
        r = model.rollout(u8.float() / 255, budgets, generator=gens, halting="seeded")
        recs = [(r[b].reconstruction * 255 + 0.5).to(torch.uint8) for b in budgets]
        inception(torch.cat([u8] + recs))
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--budgets", default="32,64,128,256")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    budgets = [int(b) for b in args.budgets.split(",")]
    from alit_eval.metrics.inception import InceptionFeatures
    from alit_eval.tokenizers.checkpoints import load_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = model_file(tmp)
        paths = write_images(tmp / "images", args.n)
        model = load_tokenizer(ckpt, device=args.device)
        inception = InceptionFeatures(None, "tf1", args.device)
        ta = official_way(model, inception, paths, budgets, tmp / "official", args.device)
        tb = alit_eval_way(ckpt, tmp / "images", budgets, tmp / "results", args.device, args.batch_size)
        tl = sweep_loop(ckpt, tmp / "images", budgets, tmp / "loop", args.device, args.batch_size)
        tc = floor(model, inception, paths, budgets, args.device, args.batch_size)
    n = args.n
    print(f"device {args.device}, {n} images, budgets {budgets}, torch threads {torch.get_num_threads()}")
    print(f"(a) official way      {n / ta:8.2f} img/s  ({ta:.1f} s)")
    print(f"(b) alit-eval fid     {n / tb:8.2f} img/s  ({tb:.1f} s)")
    print(f"    its sweep loop    {n / tl:8.2f} img/s  ({tl:.1f} s; without set-up, FID statistics, figures)")
    print(f"(c) compute floor     {n / tc:8.2f} img/s  ({tc:.1f} s)")
    print(f"speed-up (b) vs (a): {ta / tb:.2f}x   overhead (b)/(c): {tb / tc:.2f}x   loop/(c): {tl / tc:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
