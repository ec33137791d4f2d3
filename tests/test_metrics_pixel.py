"""Pixel metrics against naive numpy / scikit-image re-computations, and the quantisation modes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from alit_eval.metrics import pixel
from alit_eval.metrics.specs import METRICS


def _pair(seed: int = 0, b: int = 3, h: int = 32, w: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ref = torch.randint(0, 256, (b, 3, h, w), generator=g, dtype=torch.uint8)
    noise = torch.randint(-30, 31, (b, 3, h, w), generator=g)
    recon = (ref.to(torch.int64) + noise).clamp(0, 255).to(torch.uint8)
    return recon, ref


def test_to_uint8_round_vs_truncate_on_hand_made_values() -> None:
    vals = torch.tensor(
        [0.999 / 255, 0.4 / 255, 0.5, 254.6 / 255, 1.2, -0.3, 1.0, 0.0, 100.7 / 255]
    )
    x = vals.view(1, 1, 1, -1)
    rounded = pixel.to_uint8(x, "round").view(-1).tolist()
    truncated = pixel.to_uint8(x, "truncate").view(-1).tolist()
    assert rounded == [1, 0, 128, 255, 255, 0, 255, 0, 101]
    assert truncated == [0, 0, 127, 254, 255, 0, 255, 0, 100]


def test_to_uint8_is_exact_on_k_over_255_and_passes_uint8_through() -> None:
    k = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    x = k.to(torch.float32) / 255
    assert torch.equal(pixel.to_uint8(x, "round"), k)
    assert torch.equal(pixel.to_uint8(x, "truncate"), k)
    assert pixel.to_uint8(k) is k


def test_to_uint8_rejects_nan_and_unknown_mode() -> None:
    with pytest.raises(ValueError, match="NaN"):
        pixel.to_uint8(torch.full((1, 3, 2, 2), float("nan")))
    with pytest.raises(ValueError, match="unknown quantisation mode"):
        pixel.to_uint8(torch.zeros(1, 3, 2, 2), "floor")  # type: ignore[arg-type]


def test_l1_mse_psnr_match_naive_numpy() -> None:
    recon, ref = _pair()
    r = recon.numpy().astype(np.float64) / 255
    g = ref.numpy().astype(np.float64) / 255
    want_l1 = np.array([np.mean(np.abs(r[i] - g[i])) for i in range(len(r))])
    want_mse = np.array([np.mean((r[i] - g[i]) ** 2) for i in range(len(r))])
    want_psnr = np.array([10 * math.log10(1.0 / m) for m in want_mse])
    out = pixel.pixel_metrics(recon, ref)
    for name, want in [("l1", want_l1), ("mse", want_mse), ("psnr", want_psnr)]:
        got = out[name]
        assert got.dtype == torch.float64 and got.shape == (3,)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=0)
    np.testing.assert_allclose(pixel.l1(recon, ref).numpy(), want_l1, rtol=1e-12)
    np.testing.assert_allclose(pixel.psnr(recon, ref).numpy(), want_psnr, rtol=1e-12)


def test_identical_images_give_zero_errors_inf_psnr_unit_ssim() -> None:
    _, ref = _pair(1)
    out = pixel.pixel_metrics(ref, ref.clone())
    assert torch.all(out["l1"] == 0) and torch.all(out["mse"] == 0)
    assert torch.all(torch.isinf(out["psnr"])) and torch.all(out["psnr"] > 0)
    torch.testing.assert_close(out["ssim"], torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-6)


def test_ssim_matches_skimage_per_image() -> None:
    recon, ref = _pair(2, b=4, h=48, w=40)
    got = pixel.ssim(recon, ref).numpy()
    want = np.array(
        [
            structural_similarity(
                recon[i].permute(1, 2, 0).numpy().astype(np.float64) / 255,
                ref[i].permute(1, 2, 0).numpy().astype(np.float64) / 255,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                channel_axis=2,
                data_range=1.0,
            )
            for i in range(4)
        ]
    )
    # torchmetrics averages the full reflect-padded SSIM map, scikit-image crops the border:
    # observed max |diff| 4.8e-4 on these 48x40 images (9e-5 at 256x256).
    assert np.max(np.abs(got - want)) < 1e-3
    # Per-image, not batch-averaged: the images differ, so their SSIMs must too.
    assert len(set(np.round(got, 8))) == 4


def test_ssim_is_bit_identical_to_torchmetrics() -> None:
    """SSIM is computed in alit-eval (torchmetrics' import is slow) but must stay torchmetrics' numbers:
    KARL's published SSIMs and the committed demo tables use them."""
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    g = torch.Generator().manual_seed(11)
    for b, c, h, w in [(3, 3, 48, 40), (2, 3, 11, 11), (1, 1, 64, 17), (4, 3, 256, 256)]:
        ref = (torch.rand(b, c, h, w, generator=g) * 255).to(torch.uint8)
        noise = torch.randint(-40, 41, ref.shape, generator=g)
        recon = (ref.to(torch.int64) + noise).clamp(0, 255).to(torch.uint8)
        recon[0] = ref[0]  # one identical pair: SSIM 1 up to rounding
        want = tm_ssim(recon.float() / 255.0, ref.float() / 255.0, gaussian_kernel=True, sigma=1.5, kernel_size=11,
                       data_range=1.0, reduction="none").to(torch.float64)
        got = pixel.ssim(recon, ref)
        assert torch.equal(got, want), (b, c, h, w, (got - want).abs().max().item())


def test_ssim_is_symmetric_and_decreases_with_noise() -> None:
    g = torch.Generator().manual_seed(3)
    ref = (torch.rand(1, 3, 32, 32, generator=g) * 255).to(torch.uint8)
    small = (
        (ref.to(torch.int64) + torch.randint(-5, 6, ref.shape, generator=g))
        .clamp(0, 255)
        .to(torch.uint8)
    )
    large = (
        (ref.to(torch.int64) + torch.randint(-60, 61, ref.shape, generator=g))
        .clamp(0, 255)
        .to(torch.uint8)
    )
    s_small, s_large = pixel.ssim(small, ref), pixel.ssim(large, ref)
    assert float(s_small) > float(s_large)
    torch.testing.assert_close(pixel.ssim(ref, small), s_small, rtol=0, atol=1e-6)


def test_pixel_metrics_reject_float_or_mismatched_inputs() -> None:
    recon, ref = _pair()
    with pytest.raises(ValueError, match="uint8"):
        pixel.l1(recon.float(), ref)
    with pytest.raises(ValueError, match="one shape"):
        pixel.mse(recon[:, :, :10], ref)


def test_specs_declare_every_metric_once_with_direction_and_level() -> None:
    assert METRICS.names() == ["l1", "l1_raw", "mse", "psnr", "ssim", "lpips", "fid", "kid"]
    assert METRICS.get("psnr").higher_is_better and METRICS.get("ssim").higher_is_better
    assert not METRICS.get("l1").higher_is_better and not METRICS.get("fid").higher_is_better
    assert {METRICS.get(n).level for n in ("fid", "kid")} == {"set"}
    assert {METRICS.get(n).level for n in ("l1", "l1_raw", "mse", "psnr", "ssim", "lpips")} == {"image"}
