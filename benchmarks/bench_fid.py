"""Benchmark: `alit-eval fid` against the official evaluation's way of working, and the compute floor.

Same ALIT weights (the official fixture's random-weight VQGAN configuration when ../shared is
present, else a random model of that configuration) and the same images (demo scenes at 256x256):

  (a) official way, reproduced step by step (evaluate_rfid.py): set-up as the official script does it
      (seed, build the model *with its 8 LPIPS-VGG16 + PatchGAN loss modules*, load the weights);
      batch size 1, all 8 iterations with a pixel decode at each, every reconstruction written as PNG
      (truncated) and the GT too; then per requested budget a *fresh Python process*, like its
      ``python -m pytorch_fid <rec> <gt>``: imports, loads Inception, runs it over the reconstructions
      AND again over the GT (batch 50), and takes scipy's ``sqrtm`` of the 2048x2048 covariance
      product; finally the L1/L2 read-back of every PNG pair per folder. What it leaves out is
      printed (VGG16/LPIPS weight files, the gan_losses entries of a real checkpoint, the FID of the
      budgets not requested);
  (b) `alit-eval fid` (engine) for the same budgets, batched;
  (c) the floor: one batched rollout to the largest budget (same halting policy as (b), so the ALIT
      decoder runs at every iteration), one pixel decode per requested budget, one Inception pass
      per reconstruction and per original; no I/O, no metrics, no setup.

Prints images/s of each and the ratios (b)/(a) and (b)/(c) measured side by side in one run.
    python benchmarks/bench_fid.py [--n 16] [--device cpu|cuda] [--budgets 32,64,128,256]
"""

from __future__ import annotations

import argparse
import subprocess
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


def loss_modules(n: int, device) -> list:
    """The n LPIPS-VGG16 + PatchGAN modules an official ``train_stage="full_finetuning"`` model builds
    (ALIT and KARL alike), without their weight files; raises ImportError without torchvision."""
    import torchvision
    from torch import nn

    losses = []
    for _ in range(n):
        # LPIPS: vgg16(pretrained=True) builds the whole VGG16 (init_weights=False) and keeps .features
        vgg = torchvision.models.vgg16(weights=None, init_weights=False).features
        lins = [nn.Conv2d(c, 1, 1, bias=False) for c in (64, 128, 256, 512, 512)]
        layers: list[nn.Module] = [nn.Conv2d(3, 64, 4, 2, 1)]
        for ci, co, st in ((64, 128, 2), (128, 256, 2), (256, 512, 1)):
            layers += [nn.Conv2d(ci, co, 4, st, 1, bias=False), nn.BatchNorm2d(co)]
        disc = nn.Sequential(*layers, nn.Conv2d(512, 1, 4, 1, 1))
        for m in disc.modules():  # taming weights_init
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
        losses.append(nn.ModuleList([vgg, *lins, disc]).to(device))
    return losses


def official_setup(ckpt: Path, device) -> tuple[object, float]:
    """Seed, build ALIT + base + the 8 loss modules (as train_stage="full_finetuning" does), load weights."""
    from alit_eval.tokenizers.alit.halting import official_construction_draws
    from alit_eval.tokenizers.checkpoints import load_alit_checkpoint

    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = load_alit_checkpoint(ckpt, device=device)  # ALIT + base: construction and weight loading
    try:
        losses = loss_modules(model.cfg.iterations, device)
    except ImportError:  # no torchvision: consume the same draws, without the allocations
        from alit_eval.tokenizers.alit.halting import advance_cpu_generator

        advance_cpu_generator(official_construction_draws(model.cfg) - official_construction_draws(
            model.cfg, loss_modules=False))
        losses = []
    del losses
    return model, time.perf_counter() - t0


def fid_child(rec: str, gt: str, device: str) -> None:
    """One ``python -m pytorch_fid rec gt`` equivalent (run in a fresh process): imports, Inception, sqrtm."""
    from scipy import linalg

    from alit_eval.metrics.feature_distance import FeatureStats
    from alit_eval.metrics.inception import InceptionFeatures

    inception = InceptionFeatures(None, "pytorch-fid", device)

    def folder_stats(folder: Path) -> FeatureStats:
        s = FeatureStats(2048)
        files = sorted(folder.glob("*.png"))
        for i in range(0, len(files), 50):  # pytorch-fid's default batch of 50
            batch = torch.stack([torch.from_numpy(np.array(Image.open(f))).permute(2, 0, 1) for f in files[i:i + 50]])
            s.update(inception(batch.to(device)))
        return s

    a, b = folder_stats(Path(rec)), folder_stats(Path(gt))
    mu1, s1, mu2, s2 = a.mean(), a.cov(), b.mean(), b.cov()
    covmean, _ = linalg.sqrtm(s1.dot(s2), disp=False)  # pytorch-fid's calculate_frechet_distance
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    covmean = covmean.real
    fid = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    print(f"FID:  {fid}")


def official_way(ckpt: Path, paths, budgets, work: Path, device) -> tuple[float, float, float]:
    """(total, set-up, per-budget FID processes) seconds."""
    t0 = time.perf_counter()
    model, t_setup = official_setup(ckpt, device)
    gt_dir = work / "gt"
    gt_dir.mkdir(parents=True)
    for t in range(8):
        (work / f"rec{t}").mkdir()
    for p in paths:  # batch size 1, loader order
        x = torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1)[None].float().div(255).to(device)
        r = model.rollout(x, halting="official")  # all 8 iterations, pixel decode at each
        Image.fromarray((x[0].clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()).save(gt_dir / p.name)
        for t, b in enumerate(r.budgets):
            img = (r[b].extras["reconstruction_raw"][0] * 255).clamp(0, 255).to(torch.uint8)  # truncation
            Image.fromarray(img.permute(1, 2, 0).cpu().numpy()).save(work / f"rec{t}" / p.name)

    t_fid = time.perf_counter()
    for b in budgets:  # one fresh process per budget, as evaluate_rfid.py's subprocess call
        out = subprocess.run([sys.executable, __file__, "--fid-child", str(work / f"rec{b // 32 - 1}"), str(gt_dir),
                              "--device", str(device)], check=True, capture_output=True, text=True).stdout
        assert "FID:" in out, out
    t_fid = time.perf_counter() - t_fid
    gts = sorted(gt_dir.glob("*.png"))
    for b in budgets:  # compute_reconstruction_losses: every PNG pair read back, L1 and L2
        for r, g in zip(sorted((work / f"rec{b // 32 - 1}").glob("*.png")), gts):
            x = torch.from_numpy(np.array(Image.open(r))).float() / 255
            y = torch.from_numpy(np.array(Image.open(g))).float() / 255
            (x - y).abs().mean().item(), (x - y).pow(2).mean().item()
    return time.perf_counter() - t0, t_setup, t_fid


def alit_eval_way(ckpt: Path, folder: Path, budgets, results: Path, device: str, batch_size: int) -> float:
    from alit_eval.analysis.reconstruction import run
    from alit_eval.engine.prepare import SweepRequest

    req = SweepRequest(ckpt=str(ckpt), data=str(folder), budgets=budgets, batch_size=batch_size, halting="seeded")
    t0 = time.perf_counter()
    run(req, seed=0, device=device, offline=True, results_dir=results, progress=False)
    return time.perf_counter() - t0


def sweep_loop(ckpt: Path, folder: Path, budgets, results: Path, device: str, batch_size: int) -> float:
    """(b) without set-up and final statistics: the engine's loop alone (data, rollout, metrics, store)."""
    from alit_eval.engine.prepare import SweepRequest, prepare
    from alit_eval.engine.sweep import run_sweep

    req = SweepRequest(ckpt=str(ckpt), data=str(folder), budgets=budgets, batch_size=batch_size, halting="seeded")
    p = prepare(req, seed=0, device=device, offline=True, progress=False)
    t0 = time.perf_counter()
    run_sweep(p.tokenizer, p.source, p.sweep, results)
    return time.perf_counter() - t0


def floor(model, inception, paths, budgets, device, batch_size: int) -> float:
    from alit_eval.tokenizers.generators import per_image_generators

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
    ap.add_argument("--fid-child", nargs=2, metavar=("REC", "GT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.fid_child:
        fid_child(*args.fid_child, args.device)
        return None
    if args.threads:
        torch.set_num_threads(args.threads)
    budgets = [int(b) for b in args.budgets.split(",")]
    from alit_eval.metrics.inception import InceptionFeatures
    from alit_eval.tokenizers.checkpoints import load_alit_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = model_file(tmp)
        paths = write_images(tmp / "images", args.n)
        model = load_alit_checkpoint(ckpt, device=args.device)
        inception = InceptionFeatures(None, "tf1", args.device)
        ta, ta_setup, ta_fid = official_way(ckpt, paths, budgets, tmp / "official", args.device)
        tb = alit_eval_way(ckpt, tmp / "images", budgets, tmp / "results", args.device, args.batch_size)
        tl = sweep_loop(ckpt, tmp / "images", budgets, tmp / "loop", args.device, args.batch_size)
        tc = floor(model, inception, paths, budgets, args.device, args.batch_size)
    n = args.n
    print(f"device {args.device}, {n} images, budgets {budgets}, torch threads {torch.get_num_threads()}")
    print(f"(a) official way      {n / ta:8.2f} img/s  ({ta:.1f} s; set-up with the 8 loss modules {ta_setup:.1f} s, "
          f"{len(budgets)} FID processes {ta_fid:.1f} s = {ta_fid / len(budgets):.1f} s each)")
    print(f"(b) alit-eval fid     {n / tb:8.2f} img/s  ({tb:.1f} s)")
    print(f"    its sweep loop    {n / tl:8.2f} img/s  ({tl:.1f} s; without set-up, FID statistics, figures)")
    print(f"(c) compute floor     {n / tc:8.2f} img/s  ({tc:.1f} s)")
    print(f"speed-up (b) vs (a): {ta / tb:.2f}x   overhead (b)/(c): {tb / tc:.2f}x   loop/(c): {tl / tc:.2f}x")
    print("(a) leaves out: reading the VGG16 ImageNet weights and LPIPS vgg.pth 8 times (~528 MB each), the "
          "gan_losses entries (~560 MB) a released checkpoint adds to the load, and the FIDs of the "
          f"{8 - len(budgets)} budgets not requested (the unmodified script runs one process for each of the 8 folders).")


if __name__ == "__main__":
    sys.exit(main())
