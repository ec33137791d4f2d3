"""Per-image pixel metrics (L1, MSE, PSNR, SSIM) on uint8-quantised images.

Every metric here takes a batch of uint8 images and returns one float64 value per image, so the
engine can store per-image records and aggregate later. Images are quantised with `to_uint8`
first, exactly as a saved PNG would be (DESIGN.md, "Preprocessing and FID conventions").
"""

from __future__ import annotations

from typing import Literal

import torch
from torchmetrics.functional.image import structural_similarity_index_measure

QuantiseMode = Literal["round", "truncate"]


def to_uint8(x: torch.Tensor, mode: QuantiseMode = "round") -> torch.Tensor:
    """Quantise float images to uint8 the way a saved 8-bit PNG holds them.

    Args:
        x: ``[B, 3, H, W]`` float images, nominally in [0, 1] (values outside are clamped).
            A uint8 tensor is returned unchanged.
        mode: ``"round"``: ``floor(clamp(x*255, 0, 255) + 0.5)``, round half up, which is what
            ``torchvision.utils.save_image`` writes. ``"truncate"``: ``clip(x*255, 0, 255)`` cast
            to uint8 (truncation toward zero), which is what the official ALIT evaluation does
            before saving its PNGs. The product ``x*255`` is taken in ``x``'s own dtype, as the
            official float32 code does (half precision is upcast to float32 first).

    Returns:
        ``[B, 3, H, W]`` uint8 tensor on the same device.

    Raises:
        ValueError: on an unknown mode or non-finite values (a NaN has no honest uint8 value).
    """
    if x.dtype == torch.uint8:
        return x
    if not torch.is_floating_point(x):
        raise ValueError(f"to_uint8 expects a float or uint8 tensor, got {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("to_uint8: images contain NaN or inf values; the model output is broken")
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()  # 8-bit-mantissa bf16 cannot even hold x*255 to the nearest integer
    scaled = (x * 255).clamp(0, 255)
    if mode == "round":
        return torch.floor(scaled + 0.5).to(torch.uint8)
    if mode == "truncate":
        return scaled.to(torch.uint8)  # float -> uint8 casts truncate toward zero
    raise ValueError(f"unknown quantisation mode {mode!r}; valid: 'round', 'truncate'")


def _as_unit_float64(
    recon_u8: torch.Tensor, ref_u8: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a pair of uint8 batches and return them as float64 in [0, 1]."""
    if recon_u8.dtype != torch.uint8 or ref_u8.dtype != torch.uint8:
        raise ValueError(
            f"pixel metrics expect uint8 images (quantise with to_uint8 first), "
            f"got {recon_u8.dtype} and {ref_u8.dtype}"
        )
    if recon_u8.shape != ref_u8.shape or recon_u8.dim() != 4:
        raise ValueError(
            f"pixel metrics expect two [B, C, H, W] batches of one shape, "
            f"got {tuple(recon_u8.shape)} and {tuple(ref_u8.shape)}"
        )
    return recon_u8.to(torch.float64) / 255.0, ref_u8.to(torch.float64) / 255.0


def l1(recon_u8: torch.Tensor, ref_u8: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per image on [0, 1] values.

    Args:
        recon_u8: ``[B, C, H, W]`` uint8 reconstructions.
        ref_u8: ``[B, C, H, W]`` uint8 references.

    Returns:
        ``[B]`` float64, mean over C, H, W of ``|recon - ref| / 255``.
    """
    r, g = _as_unit_float64(recon_u8, ref_u8)
    return (r - g).abs().flatten(1).mean(dim=1)


def mse(recon_u8: torch.Tensor, ref_u8: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image on [0, 1] values.

    Args:
        recon_u8: ``[B, C, H, W]`` uint8 reconstructions.
        ref_u8: ``[B, C, H, W]`` uint8 references.

    Returns:
        ``[B]`` float64, mean over C, H, W of ``((recon - ref) / 255)^2``.
    """
    r, g = _as_unit_float64(recon_u8, ref_u8)
    return (r - g).square().flatten(1).mean(dim=1)


def psnr_from_mse(mse_values: torch.Tensor) -> torch.Tensor:
    """PSNR in dB for data range 1: ``10 * log10(1 / mse)``; ``inf`` where ``mse == 0``."""
    # Identical images get +inf rather than a cap: a cap (e.g. 100 dB) would silently bias means.
    # Aggregations must therefore treat inf explicitly (report the count, or take a finite mean).
    return -10.0 * torch.log10(mse_values)


def psnr(recon_u8: torch.Tensor, ref_u8: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, data range 1.

    Args:
        recon_u8: ``[B, C, H, W]`` uint8 reconstructions.
        ref_u8: ``[B, C, H, W]`` uint8 references.

    Returns:
        ``[B]`` float64 in dB; ``+inf`` for an image identical to its reference (not capped).
    """
    return psnr_from_mse(mse(recon_u8, ref_u8))


def ssim(recon_u8: torch.Tensor, ref_u8: torch.Tensor) -> torch.Tensor:
    """Structural similarity per image (torchmetrics' SSIM with its standard defaults).

    Gaussian window 11x11, sigma 1.5, K1 0.01, K2 0.03, data range 1.0, per channel, averaged
    over channels and positions. torchmetrics averages the whole SSIM map, including the 5-pixel
    border computed on reflect-padded windows, while scikit-image (``gaussian_weights=True``,
    ``use_sample_covariance=False``) crops that border first; inside it the two maps agree to 2e-13.
    Measured with ``benchmarks/ssim_accuracy.py`` (demo-scenes images against noisy, blurred and
    contrast-changed copies, SSIM 0.15-0.99), max |this - scikit-image| per image: 1.4e-1 at 32x32,
    6.2e-2 at 48x64, 2.8e-2 at 128x128, 1.2e-2 at 256x256 (the issue's check on real reconstructions
    found 4.6e-3 at 256 px and 3e-2 at 48x64). We keep torchmetrics' convention because KARL's
    published SSIMs use it; compare SSIMs only within one convention.

    Args:
        recon_u8: ``[B, C, H, W]`` uint8 reconstructions; H and W must be at least 11.
        ref_u8: ``[B, C, H, W]`` uint8 references.

    Returns:
        ``[B]`` float64 in [-1, 1] (1 for identical images).
    """
    _as_unit_float64(recon_u8, ref_u8)  # validation only
    # float32 on purpose: float64 grouped conv2d is ~15x slower on CPU. Measured difference from the
    # same computation in float64 (benchmarks/ssim_accuracy.py): up to 4.3e-4 on blurred images (the
    # E[x^2] - E[x]^2 variances lose digits in float32), up to 2e-5 on the noisy/contrast pairs;
    # report SSIM to 3 decimals at most.
    r = recon_u8.to(torch.float32) / 255.0
    g = ref_u8.to(torch.float32) / 255.0
    out = structural_similarity_index_measure(
        r, g, gaussian_kernel=True, sigma=1.5, kernel_size=11, data_range=1.0, reduction="none"
    )
    return out.to(torch.float64)


def pixel_metrics(recon_u8: torch.Tensor, ref_u8: torch.Tensor) -> dict[str, torch.Tensor]:
    """All pixel metrics for one batch.

    Args:
        recon_u8: ``[B, C, H, W]`` uint8 reconstructions.
        ref_u8: ``[B, C, H, W]`` uint8 references.

    Returns:
        ``{"l1", "mse", "psnr", "ssim"}`` -> ``[B]`` float64 tensors (see the single functions).
    """
    mse_values = mse(recon_u8, ref_u8)
    return {
        "l1": l1(recon_u8, ref_u8),
        "mse": mse_values,
        "psnr": psnr_from_mse(mse_values),
        "ssim": ssim(recon_u8, ref_u8),
    }
