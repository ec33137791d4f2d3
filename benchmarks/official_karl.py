"""KARL's official evaluation way, reproduced step by step for the family benchmark (bench_families.py).

What the official ``evaluate.py`` evidently does (karl_official.md §3-§4; the committed script does
not run as is, so this follows its intent):

1. set-up: seed 0, build the model with ``train_stage="full_finetuning"`` (the 8 LPIPS-VGG16 +
   PatchGAN loss modules included), ``torch.load`` the checkpoint, load its ``ema`` weights;
2. batch size 1 (the official forward crashes on B > 1), in loader order: ``encode(x, budgets, ε=0)``,
   which runs one independent encoder + decoder + pixel decode per budget and prints a line per
   budget (``.item()`` syncs), then every reconstruction and the GT written as PNG with cv2
   (truncation, RGB->BGR);
3. per budget folder a fresh ``python -m pytorch_fid <rec> <gt>`` process (imports, Inception,
   features of the reconstructions AND again of the GT, batch 50, scipy ``sqrtm``);
4. per folder, every PNG pair read back for the per-image metrics: L1, MSE, SSIM and PSNR
   (torchmetrics, one call per image).
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

LEAVES_OUT = ("reading the VGG16 ImageNet and LPIPS vgg.pth weights 8 times and the gan_losses entries of a "
              "released checkpoint; LPIPS-alex and DreamSim per image (their weights are not offline); the "
              "10 data-loader workers (images are read in the main process); only the requested budgets are "
              "run (the script hard-codes all 8)")


def _png_write(path: Path, img: torch.Tensor) -> None:
    """The official writer: clip(x*255) truncated to uint8, RGB->BGR, cv2 (PIL when cv2 is missing)."""
    arr = np.clip(img.permute(1, 2, 0).cpu().numpy() * 255, 0, 255).astype(np.uint8)
    try:
        import cv2

        cv2.imwrite(str(path), arr[:, :, ::-1])
    except ImportError:
        Image.fromarray(arr).save(path)


def setup(ckpt: Path, device: str) -> tuple[object, float]:
    """Seed, build the model and the 8 loss modules, load the weights; (model, seconds)."""
    from bench_fid import loss_modules

    from alit_eval import load_tokenizer

    t0 = time.perf_counter()
    torch.manual_seed(0)
    np.random.seed(0)
    model = load_tokenizer(ckpt, device=device, offline=True, halting="official")
    try:
        del_me = loss_modules(8, device)
        del del_me
    except ImportError:  # no torchvision: the loss modules cannot be built; say so in the output
        pass
    return model, time.perf_counter() - t0


def per_image_metrics(rec_dir: Path, gt_dir: Path) -> None:
    """compute metrics as the script does: re-read each PNG pair, L1/MSE, SSIM/PSNR per image."""
    from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

    ssim, psnr = StructuralSimilarityIndexMeasure(data_range=1.0), PeakSignalNoiseRatio(data_range=1.0)
    for r, g in zip(sorted(rec_dir.glob("*.png")), sorted(gt_dir.glob("*.png"))):
        x = torch.from_numpy(np.array(Image.open(r).convert("RGB"))).permute(2, 0, 1)[None].float() / 255
        y = torch.from_numpy(np.array(Image.open(g).convert("RGB"))).permute(2, 0, 1)[None].float() / 255
        (x - y).abs().mean().item(), (x - y).pow(2).mean().item()
        ssim(x, y).item(), psnr(x, y).item()
        ssim.reset(), psnr.reset()


def official_way(ckpt: Path, paths: list[Path], budgets: list[int], work: Path, device: str) -> dict[str, float]:
    """Run the official way; seconds: ``total``, ``setup``, ``fid`` (all FID processes)."""
    t0 = time.perf_counter()
    model, t_setup = setup(ckpt, device)
    gt_dir = work / "gt"
    gt_dir.mkdir(parents=True)
    for b in budgets:
        (work / f"reconstructed_imgs_{b}").mkdir()
    log: list[str] = []
    with torch.no_grad():
        for p in paths:  # batch size 1, loader order; CenterCrop(256) + ToTensor on 256x256 images
            x = torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1)[None].float().div(255)
            x = x.to(device)
            r = model.rollout(x, budgets, halting="official", epsilon=0.0)  # one pass per budget
            for b in budgets:
                out = r[b]
                # the forward's print per budget (formatted, not shown): .item() of the mean active count and L1
                log.append(f"input tokens: {b} | approx. kolmogorov complexity: "
                           f"{out.extras['num_active'].float().mean().item()} | reconstruction l1 loss: "
                           f"{out.extras['rec_l1'].mean().item()}")
                _png_write(work / f"reconstructed_imgs_{b}" / p.name, out.extras["reconstruction_raw"][0])
            _png_write(gt_dir / p.name, x[0])
    t_fid = time.perf_counter()
    for b in budgets:  # one `python -m pytorch_fid rec gt` per folder
        out = subprocess.run([sys.executable, str(HERE / "bench_fid.py"), "--fid-child",
                              str(work / f"reconstructed_imgs_{b}"), str(gt_dir), "--device", device],
                             check=True, capture_output=True, text=True).stdout
        assert "FID:" in out, out
    t_fid = time.perf_counter() - t_fid
    for b in budgets:
        per_image_metrics(work / f"reconstructed_imgs_{b}", gt_dir)
    return {"total": time.perf_counter() - t0, "setup": t_setup, "fid": t_fid}


def describe(t: dict[str, float], budgets: list[int]) -> str:
    return (f"set-up with the 8 loss modules {t['setup']:.1f} s, {len(budgets)} FID processes {t['fid']:.1f} s "
            f"= {t['fid'] / len(budgets):.1f} s each")
