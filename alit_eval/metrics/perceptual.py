"""LPIPS (learned perceptual distance) when ImageNet backbone weights are available locally.

torchmetrics ships LPIPS's linear heads, but the backbone (AlexNet by default) comes from
torchvision's ImageNet weights, which no wheel ships. `load_lpips` uses a backbone state_dict given
explicitly (``--lpips-weights PATH``) or already in the torch hub cache, never downloads unless
asked to, and otherwise returns None with a one-line reason so callers can skip the metric.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Union

import torch

from alit_eval.errors import CheckpointError, OfflineError
from alit_eval.metrics.inception_weights import is_offline
from alit_eval.paths import sha256_file

LpipsNet = Literal["alex", "vgg", "squeeze"]
PathLike = Union[str, "os.PathLike[str]"]

# LPIPS backbone name -> (torchvision architecture, its weights enum, display name).
_BACKBONES: dict[str, tuple[str, str, str]] = {
    "alex": ("alexnet", "AlexNet_Weights", "AlexNet"),
    "vgg": ("vgg16", "VGG16_Weights", "VGG16"),
    "squeeze": ("squeezenet1_1", "SqueezeNet1_1_Weights", "SqueezeNet 1.1"),
}
# The file name of each enum's IMAGENET1K_V1 weights (the end of its URL), so that looking for the file
# does not import torchvision.models (seconds); tests/test_perceptual.py checks them against torchvision.
BACKBONE_FILES: dict[str, str] = {
    "alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth", "squeeze": "squeezenet1_1-b8a52dc0.pth",
}


def _backbone_url(net: str) -> str:
    import torchvision.models as tvm

    return getattr(tvm, _BACKBONES[net][1]).IMAGENET1K_V1.url


def backbone_cache_path(net: LpipsNet = "alex") -> Path:
    """Where torchvision caches the backbone: ``torch.hub.get_dir()/checkpoints/<file>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]


class LpipsMetric(torch.nn.Module):
    """LPIPS with a locally loaded backbone; call it on uint8 batches.

    Attributes:
        net: backbone name (``"alex"``, ``"vgg"``, ``"squeeze"``).
        weights_path: the backbone state_dict file that was loaded.
        source: ``"path"``, ``"torch-hub-cache"`` or ``"download"``.
        sha256: hex digest of that file (for meta.json).
    """

    def __init__(
        self, model: torch.nn.Module, net: str, weights_path: Path, source: str, sha256: str
    ) -> None:
        super().__init__()
        self.model = model
        self.net = net
        self.weights_path = weights_path
        self.source = source
        self.sha256 = sha256

    @torch.inference_mode()
    def forward(self, recon_u8: torch.Tensor, ref_u8: torch.Tensor) -> torch.Tensor:
        """Per-image LPIPS; see `lpips_per_image`."""
        if (
            recon_u8.dtype != torch.uint8
            or ref_u8.dtype != torch.uint8
            or recon_u8.shape != ref_u8.shape
        ):
            raise ValueError(
                f"LPIPS expects two uint8 [B, 3, H, W] batches of one shape, got {recon_u8.dtype} "
                f"{tuple(recon_u8.shape)} and {ref_u8.dtype} {tuple(ref_u8.shape)}"
            )
        device = next(self.model.parameters()).device
        a = recon_u8.to(device=device, dtype=torch.float32) / 255.0
        b = ref_u8.to(device=device, dtype=torch.float32) / 255.0
        # normalize=True maps [0, 1] to [-1, 1], the range LPIPS was trained on.
        out = self.model(a, b, normalize=True)
        return out.reshape(recon_u8.shape[0]).to(torch.float64)


def _map_backbone_keys(
    target_keys: list[str], src: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """torchvision ``features.<i>.*`` keys -> the LPIPS wrapper's ``slice<k>.<i>.*`` keys.

    torchmetrics' LPIPS backbones re-group torchvision's ``features`` layers into slices but keep
    each layer's index, so dropping the slice prefix recovers the torchvision name.
    """
    out: dict[str, torch.Tensor] = {}
    missing: list[str] = []
    for key in target_keys:
        parts = key.split(".")
        rest = parts[2:] if parts[0] == "slices" else parts[1:]  # SqueezeNet uses a ModuleList
        name = "features." + ".".join(rest)
        if name in src:
            out[key] = src[name]
        else:
            missing.append(name)
    if missing:
        raise CheckpointError(
            f"LPIPS backbone weights lack {len(missing)} torchvision keys (e.g. {missing[:2]}); "
            "pass a torchvision ImageNet state_dict of the matching architecture"
        )
    return out


def _load_backbone_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means "not a safe plain state_dict"
        raise CheckpointError(
            f"cannot read LPIPS backbone weights {path} ({type(exc).__name__})"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"LPIPS backbone weights {path} are not a state_dict")
    return state


def _build(
    net: str, backbone_state: dict[str, torch.Tensor], device: torch.device | str
) -> torch.nn.Module:
    """LPIPS with a random backbone (no download), then the wheel's heads and the given backbone."""
    # Imported only when LPIPS is built: torchmetrics' package import takes seconds (torchvision,
    # torch._dynamo, scipy.signal), and most sweeps find no backbone weights and skip LPIPS.
    import torchmetrics.functional.image.lpips as tm_lpips

    model = tm_lpips._NoTrainLpips(pretrained=False, net=net, pnet_rand=True)
    heads_file = Path(tm_lpips.__file__).parent / "lpips_models" / f"{net}.pth"
    heads = torch.load(heads_file, map_location="cpu", weights_only=True)
    result = model.load_state_dict(heads, strict=False)
    # `lins.<i>` is a ModuleList alias of `lin<i>` (same tensors), so only `lin<i>` must be present.
    lin_missing = [
        k for k in result.missing_keys if k.startswith("lin") and not k.startswith("lins.")
    ]
    if lin_missing or result.unexpected_keys:
        raise CheckpointError(
            f"torchmetrics' LPIPS heads {heads_file.name} do not fit its model "
            f"(missing {lin_missing[:2]}, unexpected {result.unexpected_keys[:2]})"
        )
    try:
        model.net.load_state_dict(
            _map_backbone_keys(list(model.net.state_dict()), backbone_state), strict=True
        )
    except RuntimeError as exc:  # shape mismatch: a state_dict of another architecture
        raise CheckpointError(
            f"LPIPS backbone weights do not fit torchvision's {_BACKBONES[net][0]} "
            f"({str(exc).splitlines()[-1].strip()[:160]})"
        ) from exc
    model.eval().requires_grad_(False)
    return model.to(device)


def load_lpips(
    weights_path: PathLike | None = None,
    net: LpipsNet = "alex",
    device: torch.device | str = "cpu",
    *,
    allow_download: bool = False,
    offline: bool | None = None,
) -> tuple[LpipsMetric | None, str | None]:
    """Build LPIPS from a local backbone state_dict, or say why it is skipped.

    Resolution: `weights_path` > the torch hub cache file torchvision would use > a download,
    only with ``allow_download=True`` and not offline. Never touches the network otherwise.

    Args:
        weights_path: a torchvision ImageNet state_dict of the backbone (``--lpips-weights``).
        net: ``"alex"`` (default, as KARL), ``"vgg"`` or ``"squeeze"``.
        device: where the network runs.
        allow_download: fetch the backbone into the hub cache if missing (explicit opt-in).
        offline: forbid downloading; None reads ``ALIT_EVAL_OFFLINE``.

    Returns:
        ``(metric, None)`` when available, else ``(None, reason)`` with a one-line reason.

    Raises:
        CheckpointError: an explicit `weights_path` is missing, unreadable or of another network.
        OfflineError: a requested download failed.
    """
    if net not in _BACKBONES:
        raise ValueError(f"unknown LPIPS backbone {net!r}; valid: {', '.join(_BACKBONES)}")
    display = _BACKBONES[net][2]
    if weights_path is not None:
        path, source = Path(weights_path).expanduser(), "path"
        if not path.is_file():
            raise CheckpointError(f"--lpips-weights file not found: {path}")
    else:
        path, source = backbone_cache_path(net), "torch-hub-cache"
        if not path.is_file():
            if not allow_download or is_offline(offline):
                return None, (
                    f"LPIPS skipped: {display} ImageNet weights not found at {path}; pass "
                    f"--lpips-weights PATH (a torchvision {_BACKBONES[net][0]} state_dict) "
                    "to enable it"
                )
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(_backbone_url(net), str(path), progress=False)
            except OSError as exc:  # URLError is an OSError
                raise OfflineError(
                    f"could not download {display} weights for LPIPS ({exc})"
                ) from exc
            source = "download"
    model = _build(net, _load_backbone_state(path), device)
    return LpipsMetric(model, net, path, source, sha256_file(path)), None


def lpips_per_image(
    metric: LpipsMetric, recon_u8: torch.Tensor, ref_u8: torch.Tensor
) -> torch.Tensor:
    """LPIPS distance per image.

    Args:
        metric: from `load_lpips`.
        recon_u8: ``[B, 3, H, W]`` uint8 reconstructions.
        ref_u8: ``[B, 3, H, W]`` uint8 references (values mapped 0..255 -> [-1, 1]).

    Returns:
        ``[B]`` float64 (0 for identical images, larger is more different).
    """
    return metric(recon_u8, ref_u8)
