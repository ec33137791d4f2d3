"""Per-image pixel metrics (L1, MSE, PSNR, SSIM) on uint8-quantised images.

Every metric here takes a batch of uint8 images and returns one float64 value per image, so the
engine can store per-image records and aggregate later. Images are quantised with `to_uint8`
first, exactly as a saved PNG would be (DESIGN.md, "Preprocessing and FID conventions").
"""

from __future__ import annotations

from typing import Literal

import torch

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
    """Structural similarity per image, in torchmetrics' convention (its SSIM with the standard defaults).

    Gaussian window 11x11, sigma 1.5, K1 0.01, K2 0.03, data range 1.0, per channel, averaged
    over channels and positions. torchmetrics averages the whole SSIM map, including the 5-pixel
    border computed on reflect-padded windows, while scikit-image (``gaussian_weights=True``,
    ``use_sample_covariance=False``) crops that border first; inside it the two maps agree to 2e-13.
    Measured with ``benchmarks/ssim_accuracy.py`` (demo-scenes images against noisy, blurred and
    contrast-changed copies, SSIM 0.15-0.99), max |this - scikit-image| per image: 1.4e-1 at 32x32,
    6.2e-2 at 48x64, 2.8e-2 at 128x128, 1.2e-2 at 256x256 (the issue's check on real reconstructions
    found 4.6e-3 at 256 px and 3e-2 at 48x64). We keep torchmetrics' convention because KARL's
    published SSIMs use it; compare SSIMs only within one convention.

    Computed here (`_ssim_map_mean`) rather than by calling torchmetrics, whose package import pulls
    in torchvision, torch._dynamo and scipy.signal (seconds at the start of every sweep);
    tests/test_metrics_pixel.py checks that the values are bit-identical to torchmetrics'.

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
    return _ssim_map_mean(r, g).to(torch.float64)


SSIM_SIGMA, SSIM_TAPS, SSIM_K1, SSIM_K2 = 1.5, 11, 0.01, 0.03  # Wang et al. 2004; taps = 2 * int(3.5 sigma + 0.5) + 1


def _ssim_window(channels: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The separable Gaussian window as a ``[C, 1, 11, 11]`` depthwise conv weight (sums to 1)."""
    half = (SSIM_TAPS - 1) / 2
    d = torch.arange(-half, half + 1, 1, dtype=dtype, device=device)
    g = torch.exp(-torch.pow(d / SSIM_SIGMA, 2) / 2)
    g = (g / g.sum()).unsqueeze(0)
    return torch.matmul(g.t(), g).expand(channels, 1, SSIM_TAPS, SSIM_TAPS)


def _ssim_map_mean(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM map per image of ``[B, C, H, W]`` float images.

    Local means, variances and covariance come from the Gaussian window over reflect-padded images
    (one depthwise conv over x, y, x^2, y^2, xy stacked in the batch), so the map covers every pixel;
    negative variances from rounding are clamped to 0. The operations and their order follow
    torchmetrics' `structural_similarity_index_measure`, so the values agree bit for bit.
    """
    import torch.nn.functional as F

    pad = (SSIM_TAPS - 1) // 2
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    y = F.pad(y, (pad, pad, pad, pad), mode="reflect")
    window = _ssim_window(x.shape[1], x.dtype, x.device)
    moments = F.conv2d(torch.cat((x, y, x * x, y * y, x * y)), window, groups=x.shape[1]).split(x.shape[0])
    mu_x, mu_y, e_xx, e_yy, e_xy = moments
    mu_xx, mu_yy, mu_xy = mu_x.pow(2), mu_y.pow(2), mu_x * mu_y
    var_x = torch.clamp(e_xx - mu_xx, min=0.0)
    var_y = torch.clamp(e_yy - mu_yy, min=0.0)
    cov = e_xy - mu_xy
    contrast = 2 * cov + c2
    spread = (var_x + var_y) + c2
    ssim_map = ((2 * mu_xy + c1) * contrast) / ((mu_xx + mu_yy + c1) * spread)
    return ssim_map.reshape(ssim_map.shape[0], -1).mean(-1)


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
