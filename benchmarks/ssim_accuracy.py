"""How close `alit_eval.metrics.pixel.ssim` (torchmetrics, float32) is to float64 and to scikit-image.

Prints the max |difference| per image size over pairs of (demo-scenes image, degraded copy): additive
noise, a 5x5 box blur (reflect-padded) and a contrast/brightness change, so SSIM spans ~0.1..0.99.
The figures in `ssim`'s docstring come from this script.

    python benchmarks/ssim_accuracy.py
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import uniform_filter
from skimage.metrics import structural_similarity
from torchmetrics.functional.image import structural_similarity_index_measure

from alit_eval.data.demo import generate
from alit_eval.metrics.pixel import ssim


def pairs(size: tuple[int, int], n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    refs, recs = [], []
    for i in range(n):
        img = generate("demo-scenes", i, size=max(size)).image[: size[0], : size[1]].astype(np.float64)
        kind = i % 3
        if kind == 0:
            rec = img + rng.normal(scale=25, size=img.shape)
        elif kind == 1:
            rec = uniform_filter(img, size=(5, 5, 1), mode="reflect")  # no artificial dark border
        else:
            rec = img * 0.8 + 30 + rng.normal(scale=5, size=img.shape)
        refs.append(img)
        recs.append(np.clip(rec, 0, 255))
    to = lambda a: torch.from_numpy(np.stack(a).round().astype(np.uint8)).permute(0, 3, 1, 2).contiguous()
    return to(recs), to(refs)


def main() -> None:
    print(f"{'size':>9}  {'ssim range':>13}  {'|f32 - f64|':>11}  {'|ours - skimage|':>16}")
    for size in [(32, 32), (48, 64), (64, 64), (128, 128), (256, 256)]:
        rec, ref = pairs(size)
        ours = ssim(rec, ref).numpy()
        f64 = structural_similarity_index_measure(
            rec.double() / 255, ref.double() / 255, gaussian_kernel=True, sigma=1.5, kernel_size=11,
            data_range=1.0, reduction="none").numpy()
        sk = np.array([structural_similarity(
            r.permute(1, 2, 0).numpy() / 255.0, g.permute(1, 2, 0).numpy() / 255.0, data_range=1.0,
            channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False) for r, g in zip(rec, ref)])
        print(f"{size[0]:>4}x{size[1]:<4}  {ours.min():.3f}..{ours.max():.3f}  {np.abs(ours - f64).max():11.2e}  "
              f"{np.abs(ours - sk).max():16.2e}")


if __name__ == "__main__":
    main()
