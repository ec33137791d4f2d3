"""The FID Inception-v3 network in torch-fidelity's state_dict layout, and TensorFlow 1's bilinear resize.

This is the network of the original TensorFlow FID graph (``pt_inception-2015-12-05``) as torch-fidelity
("inception-v3-compat") and pytorch-fid lay it out: torchvision's Inception-v3 block structure, batch norms
with eps 1e-3, and the FID graph's two quirks: the average-pool branches leave the zero padding out of
their means, and the last block pools its branch with a 3x3 max instead of an average. Written here
(not imported from torch-fidelity) because importing torch-fidelity imports torchvision, which imports
torch._dynamo: about 3.5 s before every FID command. torch-fidelity stays the reference: the suite checks
that features and resize are bit-identical to its own (tests/test_fid.py).

The weights are loaded on the meta device and assigned, so building the network draws no random numbers
and allocates nothing twice.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

NUM_CLASSES = 1008  # the FID graph's logits layer (kept so a weights file loads strictly; never run)


def tf1_resize_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """TensorFlow 1 ``resize_bilinear`` (align_corners=False, no half-pixel centres) of ``[B, C, H, W]``
    floats to ``size x size``.

    Output pixel ``i`` samples input ``i * (H / size)``: the two neighbours ``floor`` and
    ``min(floor + 1, H - 1)``, weighted by the fraction; first along the width, then the height. In
    float32, in TensorFlow's order (so the result is bit-identical to torch-fidelity's "slow" exact mode).
    """
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"tf1_resize_bilinear expects float [B, C, H, W], got {x.dtype} {tuple(x.shape)}")

    def taps(n_in: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pos = torch.arange(size, dtype=x.dtype, device=x.device) * torch.tensor(n_in / size, dtype=torch.float32)
        lo = pos.long()
        return lo, (lo + 1).clamp_max(n_in - 1), pos - lo.to(pos.dtype)

    ylo, yhi, dy = taps(x.shape[2])
    xlo, xhi, dx = taps(x.shape[3])
    top, bottom = x[:, :, ylo], x[:, :, yhi]
    dx = dx.view(1, 1, 1, size)
    top = top[..., xlo] + (top[..., xhi] - top[..., xlo]) * dx
    bottom = bottom[..., xlo] + (bottom[..., xhi] - bottom[..., xlo]) * dx
    return top + (bottom - top) * dy.view(1, 1, size, 1)


class _ConvBN(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3), ReLU: the graph's unit ("conv" and "bn" keys)."""

    def __init__(self, c_in: int, c_out: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_same(x: torch.Tensor) -> torch.Tensor:
    """3x3 stride-1 average over the real pixels only (TensorFlow's SAME padding is not counted)."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class _Block35(nn.Module):
    """Mixed_5b/5c/5d (35 x 35): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avg-pool-1x1."""

    def __init__(self, c_in: int, pool_out: int) -> None:
        super().__init__()
        self.branch1x1 = _ConvBN(c_in, 64, 1)
        self.branch5x5_1 = _ConvBN(c_in, 48, 1)
        self.branch5x5_2 = _ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _ConvBN(c_in, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, padding=1)
        self.branch_pool = _ConvBN(c_in, pool_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg_pool_same(x)),
        ], 1)


class _Reduce35(nn.Module):
    """Mixed_6a (35 -> 17): stride-2 3x3 | 1x1-3x3-stride-2 3x3 | stride-2 max pool."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3 = _ConvBN(c_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = _ConvBN(c_in, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class _Block17(nn.Module):
    """Mixed_6b..6e (17 x 17): 1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 | avg-pool-1x1."""

    def __init__(self, c_in: int, mid: int) -> None:
        super().__init__()
        self.branch1x1 = _ConvBN(c_in, 192, 1)
        self.branch7x7_1 = _ConvBN(c_in, mid, 1)
        self.branch7x7_2 = _ConvBN(mid, mid, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _ConvBN(mid, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _ConvBN(c_in, mid, 1)
        self.branch7x7dbl_2 = _ConvBN(mid, mid, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _ConvBN(mid, mid, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _ConvBN(mid, mid, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _ConvBN(mid, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _ConvBN(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seven = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        dbl = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            dbl = layer(dbl)
        return torch.cat([self.branch1x1(x), seven, dbl, self.branch_pool(_avg_pool_same(x))], 1)


class _Reduce17(nn.Module):
    """Mixed_7a (17 -> 8): 1x1-stride-2 3x3 | 1x1-1x7-7x1-stride-2 3x3 | stride-2 max pool."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3_1 = _ConvBN(c_in, 192, 1)
        self.branch3x3_2 = _ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _ConvBN(c_in, 192, 1)
        self.branch7x7x3_2 = _ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seven = x
        for layer in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            seven = layer(seven)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), seven, F.max_pool2d(x, 3, stride=2)], 1)


class _Block8(nn.Module):
    """Mixed_7b/7c (8 x 8): 1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | pool-1x1.

    The pool is an average without the padding in Mixed_7b and a 3x3 max in Mixed_7c (the FID graph's).
    """

    def __init__(self, c_in: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _ConvBN(c_in, 320, 1)
        self.branch3x3_1 = _ConvBN(c_in, 384, 1)
        self.branch3x3_2a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _ConvBN(c_in, 448, 1)
        self.branch3x3dbl_2 = _ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _ConvBN(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        three = self.branch3x3_1(x)
        dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool_same(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(three), self.branch3x3_2b(three),
            self.branch3x3dbl_3a(dbl), self.branch3x3dbl_3b(dbl),
            self.branch_pool(pooled),
        ], 1)


class FidInceptionV3(nn.Module):
    """The FID Inception-v3 trunk: normalised ``[B, 3, 299, 299]`` input -> ``[B, 2048]`` pool features.

    Module names are torch-fidelity's, so its weights file loads strictly (`from_file`).
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = _ConvBN(32, 64, 3, padding=1)
        self.MaxPool_1 = nn.MaxPool2d(3, stride=2)
        self.Conv2d_3b_1x1 = _ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = _ConvBN(80, 192, 3)
        self.MaxPool_2 = nn.MaxPool2d(3, stride=2)
        self.Mixed_5b = _Block35(192, 32)
        self.Mixed_5c = _Block35(256, 64)
        self.Mixed_5d = _Block35(288, 64)
        self.Mixed_6a = _Reduce35(288)
        self.Mixed_6b = _Block17(768, 128)
        self.Mixed_6c = _Block17(768, 160)
        self.Mixed_6d = _Block17(768, 160)
        self.Mixed_6e = _Block17(768, 192)
        self.Mixed_7a = _Reduce17(768)
        self.Mixed_7b = _Block8(1280, max_pool=False)
        self.Mixed_7c = _Block8(2048, max_pool=True)
        self.AvgPool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "MaxPool_2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                     "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "AvgPool"):
            x = getattr(self, name)(x)
        return torch.flatten(x, 1)

    @classmethod
    def from_file(cls, path: str | Path) -> FidInceptionV3:
        """The network with a torch-fidelity-layout weights file, in eval mode.

        Raises:
            RuntimeError: the file's keys or shapes do not fit (``load_state_dict(strict=True)``).
        """
        state = torch.load(path, map_location="cpu", weights_only=True)
        # float32 like the rest of the pipeline (a half-precision file would otherwise be assigned as is)
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        with torch.device("meta"):
            net = cls()
        net.load_state_dict(state, strict=True, assign=True)
        return net.eval()
