"""FID Inception features: the network (`alit_eval.metrics.inception_net`, torch-fidelity's layout and
numbers) on weights resolved offline (`alit_eval.metrics.inception_weights`), behind a named resize.

`InceptionFeatures` maps uint8 images of any size to 2048-d pool features with torch-fidelity's
TF1-compatible resize ("tf1"), pytorch-fid's plain bilinear resize ("pytorch-fid", what the
official ALIT evaluation used) or clean-fid's "clean" resize ("clean": Pillow bicubic on float32,
one channel at a time, `clean_resize`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from alit_eval.errors import CheckpointError
from alit_eval.metrics.inception_net import FidInceptionV3, tf1_resize_bilinear
from alit_eval.metrics.inception_weights import FEATURE_DIM, INPUT_SIZE, PathLike, resolve_inception_weights

ResizeMode = Literal["tf1", "pytorch-fid", "clean"]
RESIZE_MODES: tuple[str, ...] = ("tf1", "pytorch-fid", "clean")


def clean_resize(images_u8: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """clean-fid's "clean" resize: Pillow bicubic on each channel as a float32 image, clipped.

    Facts from clean-fid 0.1.35 ``cleanfid/resize.py`` (``build_resizer("clean")`` =
    ``make_resizer("PIL", False, "bicubic", (299, 299))``): each channel of the uint8 HWC image
    becomes a mode-"F" Pillow image, is resized with ``Image.BICUBIC`` (Pillow's antialiased
    filter, so downscaling does not alias), then clipped to [0, 255] and kept as float32, with no
    rounding back to uint8.

    Args:
        images_u8: ``[B, 3, H, W]`` uint8.
        size: output side (299 for Inception).

    Returns:
        ``[B, 3, size, size]`` float32 in [0, 255], on the CPU.
    """
    arrays = images_u8.detach().cpu().numpy()
    out = np.empty((arrays.shape[0], arrays.shape[1], size, size), dtype=np.float32)
    for b, image in enumerate(arrays):
        for c, channel in enumerate(image):
            resized = Image.fromarray(channel.astype(np.float32)).resize((size, size), Image.BICUBIC)
            out[b, c] = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 255.0)
    return torch.from_numpy(out)


class InceptionFeatures(torch.nn.Module):
    """2048-d FID pool features of uint8 images, with a named resize convention.

    ``resize="tf1"`` is torch-fidelity's own forward (bit-identical): TF1-compatible bilinear resize of
    the 0..255 values to 299x299, then ``(x - 128) / 128`` (TiTok, torch-fidelity, torchmetrics).
    ``resize="pytorch-fid"`` follows pytorch-fid (used by the official ALIT evaluation): values
    to [0, 1], ``F.interpolate(bilinear, align_corners=False)`` to 299x299, then ``2x - 1``
    (i.e. ``(x - 127.5) / 127.5``), then the same network layers. ``resize="clean"`` follows
    clean-fid's default mode: `clean_resize` to 299x299 (float, unrounded), then
    ``(x - 128) / 128`` as clean-fid's ``InceptionV3W`` does, then the same network layers.

    Attributes:
        weights: the resolved weights file (for meta.json).
        resize: the resize convention.
        num_features: 2048 (lets torchmetrics use this module as ``feature=``).
    """

    num_features = FEATURE_DIM

    def __init__(
        self,
        weights_path: PathLike | None = None,
        resize: ResizeMode = "tf1",
        device: torch.device | str = "cpu",
        *,
        offline: bool | None = None,
    ) -> None:
        """Build the network.

        Args:
            weights_path: a torch-fidelity-layout state_dict; None resolves one
                (see `resolve_inception_weights`).
            resize: ``"tf1"``, ``"pytorch-fid"`` or ``"clean"``.
            device: where the network runs.
            offline: passed to `resolve_inception_weights`.
        """
        super().__init__()
        if resize not in RESIZE_MODES:
            raise ValueError(f"unknown Inception resize {resize!r}; valid: {', '.join(RESIZE_MODES)}")
        self.resize = resize
        self.weights = resolve_inception_weights(weights_path, offline=offline)
        try:
            net = FidInceptionV3.from_file(self.weights.path)
        except RuntimeError as exc:  # strict load_state_dict: wrong keys or shapes
            raise CheckpointError(
                f"Inception weights {self.weights.path} do not fit torch-fidelity's InceptionV3 "
                f"({str(exc).splitlines()[0]})"
            ) from exc
        self.net = net.to(device)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @torch.inference_mode()
    def forward(self, images_u8: torch.Tensor) -> torch.Tensor:
        """Pool features of a batch.

        Args:
            images_u8: ``[B, 3, H, W]`` uint8 in 0..255, any H and W.

        Returns:
            ``[B, 2048]`` float32 on the module's device.
        """
        if images_u8.dtype != torch.uint8 or images_u8.dim() != 4 or images_u8.shape[1] != 3:
            raise ValueError(
                f"InceptionFeatures expects uint8 [B, 3, H, W] images, got {images_u8.dtype} "
                f"{tuple(images_u8.shape)}"
            )
        x = images_u8.to(self.device)
        if self.resize == "tf1":
            x = tf1_resize_bilinear(x.to(torch.float32), INPUT_SIZE)
            return self.net((x - 128) / 128)
        if self.resize == "clean":
            x = clean_resize(images_u8).to(self.device)
            return self.net((x - 128.0) / 128.0).to(torch.float32)
        x = x.to(torch.float32) / 255.0
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        return self.net(2.0 * x - 1.0).to(torch.float32)
