"""Safe reading of checkpoint files of every family (official .pth and our safetensors); ALIT loading and conversion.

Unpickling is a security boundary (STYLE.md §6): official ``.pth`` files are read with
``torch.load(weights_only=True)`` plus an allow-list holding only ``argparse.Namespace`` (the ``args``
entry official files carry). Anything else is refused unless the caller opts in with
``trust_checkpoint=True`` (CLI: ``--trust-checkpoint``). Foreign layouts are converted, not
special-cased (STYLE.md §4): unwrap ``ema``/``model``/``state_dict``, drop ``gan_losses.*``, upcast to
float32, then load strictly with one readable error.
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from alit_eval.errors import CheckpointError
from alit_eval.tokenizers.validate import describe_bytes, safe_text

log = logging.getLogger(__name__)

SAFE_GLOBALS = [argparse.Namespace]
WRAPPER_KEYS = ("ema", "model", "state_dict")
DROP_PREFIXES = ("gan_losses.",)
ALIT_SENTINELS = ("latent_tokens", "timestep_embedding", "encoder_positional_embedding")
FORMAT_TAG = "alit-eval/alit-tokenizer/v1"


# A .pth written by torch.save is a zip archive whose entries are *stored* (uncompressed), so the
# bytes its entries expand to are about the file's size. A file whose zip directory promises much more
# is a zip bomb (400 KB that would allocate 400 MB): refuse it from the directory, before loading.
ZIP_MAX_EXPANSION = 2.0
ZIP_SLACK_BYTES = 16 << 20
PICKLE_PROTOCOL_BYTE = b"\x80"


def _is_safetensors(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _head(path: Path, n: int = 512) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def read_checkpoint(path: str | Path, *, trust_checkpoint: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint file into a flat float32 state_dict plus metadata.

    Returns:
        ``(state_dict, meta)`` where ``meta`` may hold ``args`` (the official argparse values as a
        dict) or ``config`` (an alit-eval config dict from safetensors metadata).

    Raises:
        CheckpointError: missing, truncated, non-checkpoint, oversized (zip bomb) or unsafe files.
    """
    path = Path(path)
    name = safe_text(path, 200)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {name}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {name} is empty (0 bytes); download it again")
    if _is_safetensors(path):
        return _read_safetensors(path)
    _check_torch_file(path, trust_checkpoint)
    obj = _torch_load(path, trust_checkpoint)
    sd, args = unwrap(obj, name)
    return sd, ({"args": args} if args else {})


def _check_torch_file(path: Path, trust: bool) -> None:
    """Refuse what is not a PyTorch zip checkpoint, or would expand past `ZIP_MAX_EXPANSION`, unread."""
    name, head = safe_text(path, 200), _head(path)
    if head.startswith(PICKLE_PROTOCOL_BYTE):
        if trust:
            return
        # The legacy (pre-1.6) format declares storage sizes inside the pickle, so even the safe
        # loader allocates whatever the file claims; every ALIT release uses the zip format.
        raise CheckpointError(
            f"{name} is not a readable PyTorch checkpoint: it is a bare pickle or a legacy (pre-1.6) torch file, "
            "which alit-eval reads only with --trust-checkpoint (that can run code from the file)"
        )
    if not head.startswith(b"PK\x03\x04"):
        raise CheckpointError(f"{name} is not a PyTorch checkpoint: {describe_bytes(head)}")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(
            f"{name} is truncated or not a PyTorch checkpoint (a zip archive whose directory cannot be read: "
            f"{safe_text(e, 120)}); re-download it"
        ) from None
    if not any(i.filename == "data.pkl" or i.filename.endswith("/data.pkl") for i in infos):
        raise CheckpointError(f"{name} is not a PyTorch checkpoint: it is a zip archive without data.pkl")
    size = path.stat().st_size
    expanded = sum(i.file_size for i in infos)
    limit = ZIP_MAX_EXPANSION * size + ZIP_SLACK_BYTES
    if expanded > limit:
        raise CheckpointError(
            f"refusing to load {name}: its zip entries expand to {expanded / 1e6:.1f} MB from a "
            f"{size / 1e6:.1f} MB file, over the limit of {ZIP_MAX_EXPANSION:g}x the file size + "
            f"{ZIP_SLACK_BYTES >> 20} MiB (torch.save stores tensors uncompressed; this is a zip bomb or a "
            "re-compressed file: re-save it with torch.save)"
        )


def _torch_load(path: Path, trust: bool) -> Any:
    name = safe_text(path, 200)
    if trust:
        log.warning("loading %s with full unpickling (--trust-checkpoint): it can run arbitrary code", name)
        loader = dict(weights_only=False)
    else:
        loader = dict(weights_only=True)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", **loader)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "Unsupported global" in str(e) or "not an allowed global" in str(e) or "GLOBAL" in str(e):
            raise CheckpointError(
                f"refusing to unpickle {name}: it contains code objects outside the safe allow-list "
                f"({safe_text(first.removeprefix('Weights only load failed. '), 160)}); pass --trust-checkpoint "
                "only if you trust its source"
            ) from None
        raise CheckpointError(f"{name} is not a readable PyTorch checkpoint ({safe_text(first, 160)})") from None
    except Exception as e:  # the unpickler raises many types (EOFError, IndexError, ...) on garbage
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{name} is truncated or not a PyTorch checkpoint ({safe_text(msg, 160)}); re-download or check the path"
        ) from None


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import SafetensorError, safe_open

    name = safe_text(path, 200)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        looks = "" if _head(path, 9)[8:9] == b"{" else f"; {describe_bytes(_head(path))}"
        raise CheckpointError(
            f"{name} is truncated or not a valid safetensors file ({safe_text(e, 160)}){looks}"
        ) from None
    out: dict[str, Any] = {}
    if "config" in meta:
        out["config"] = _parse_config(meta["config"], name)
    # Other metadata entries (FlexTok's files carry their hydra config there) go to the family loader as text.
    if any(k != "config" for k in meta):
        out["metadata"] = {k: v for k, v in meta.items() if k != "config"}
    return clean_state_dict(sd), out


def _parse_config(text: str, name: str) -> Any:
    """Parse the JSON config metadata; malformed, deeply nested or huge-number JSON is one error line."""
    try:
        return json.loads(text)
    except RecursionError:
        raise CheckpointError(f"the config metadata of {name} is nested too deeply to be a model config") from None
    except ValueError as e:  # JSONDecodeError, and ints past Python's digit limit
        raise CheckpointError(
            f"the config metadata of {name} is not valid JSON ({safe_text(e, 100)}); the file is damaged"
        ) from None


def unwrap(obj: Any, path: Path | str = "<checkpoint>") -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Find the state_dict inside a checkpoint container and return it with its ``args``."""
    args = None
    if isinstance(obj, Mapping):
        if isinstance(obj.get("args"), argparse.Namespace):
            args = vars(obj["args"])
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if (not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values())
            or not all(isinstance(k, str) for k in obj)):
        raise CheckpointError(
            f"{safe_text(path, 200)} holds no state_dict (looked for a dict of tensors, or one under {', '.join(WRAPPER_KEYS)})"
        )
    return clean_state_dict(obj), args


def clean_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip DDP ``module.`` prefixes, drop training-only keys, upcast floats to float32."""
    out = {}
    for k, v in sd.items():
        k = k.removeprefix("module.")
        if k.startswith(DROP_PREFIXES):
            continue
        out[k] = v.float() if v.is_floating_point() else v
    return out


def describe_foreign(sd: Mapping[str, Any]) -> str:
    keys = set(sd)
    if "encoder.conv_in.weight" in keys and "quantize.embedding.weight" in keys:
        return "it looks like a bare VQGAN, not an ALIT tokenizer"
    if any(k.startswith(("blocks.", "patch_embed.proj")) for k in keys):
        return "it looks like a ViT/timm model, not an ALIT tokenizer"
    sample = ", ".join(safe_text(k, 60) for k in sorted(keys)[:4])
    return f"none of the ALIT keys ({', '.join(ALIT_SENTINELS)}) are present; first keys: {sample}"


def _describe_alit(cfg: Any) -> str:
    return f"width {cfg.width}, depth {cfg.depth}, base {cfg.base.kind}, quantised {cfg.quantize}"


def build_tokenizer(
    sd: Mapping[str, torch.Tensor], cfg: "Any", *, halting: str = "official", name: str = "alit", source: str = ""
) -> "Any":
    """Build an `AlitTokenizer` for `cfg` on the meta device and load `sd` strictly into it
    (`alit_eval.tokenizers.loading.load_checked` with a given config)."""
    from alit_eval.tokenizers.alit.config import FIELDS
    from alit_eval.tokenizers.alit.model import AlitTokenizer
    from alit_eval.tokenizers.loading import load_checked

    return load_checked(sd, title="ALIT", source=source, fields=FIELDS, infer=lambda: cfg,
                        build=lambda c: AlitTokenizer(c, halting=halting, name=name), describe=_describe_alit,
                        what="inferred ALIT config")


def tokenizer_from_state_dict(
    sd: Mapping[str, torch.Tensor],
    meta: Mapping[str, Any] | None = None,
    *,
    heads: int | None = None,
    halting: str = "official",
    name: str = "alit",
    source: str = "<state_dict>",
) -> "Any":
    """Infer the config of a cleaned ALIT state_dict (or take it from ``meta``) and load it strictly,
    through the one loading pipeline (`alit_eval.tokenizers.loading.load_checked`)."""
    from alit_eval.tokenizers.alit.config import FIELDS, AlitConfig, check_against_tensors, infer_config
    from alit_eval.tokenizers.alit.model import AlitTokenizer
    from alit_eval.tokenizers.loading import load_checked

    meta = dict(meta or {})
    source = safe_text(source, 200)
    if not all(k in sd for k in ALIT_SENTINELS):
        raise CheckpointError(f"{source} is not an ALIT checkpoint: {describe_foreign(sd)}")

    def from_dict(d: Mapping[str, Any]) -> Any:
        cfg = AlitConfig.from_dict(d)
        return AlitConfig.from_dict({**cfg.to_dict(), "heads": heads, "dec_heads": heads}) if heads else cfg

    return load_checked(
        sd, title="ALIT", source=source, fields=FIELDS, raw_config=meta.get("config"), from_dict=from_dict,
        infer=lambda: infer_config(sd, heads=heads, args=meta.get("args")),
        cross_check=(lambda cfg, tensors: check_against_tensors(cfg.to_dict(), tensors)) if "config" in meta else None,
        build=lambda cfg: AlitTokenizer(cfg, halting=halting, name=name), describe=_describe_alit,
        what="inferred ALIT config")


def load_alit_checkpoint(
    path: str | Path,
    *,
    trust_checkpoint: bool = False,
    heads: int | None = None,
    halting: str = "official",
    name: str | None = None,
    device: str | torch.device = "cpu",
) -> "Any":
    """Load an ALIT tokenizer from an official ``.pth`` or an alit-eval ``.safetensors`` file (ALIT only:
    `alit_eval.load_alit_checkpoint` loads any family, by pretrained name or file)."""
    path = Path(path)
    sd, meta = read_checkpoint(path, trust_checkpoint=trust_checkpoint)
    model = tokenizer_from_state_dict(
        sd, meta, heads=heads, halting=halting, name=name or path.stem, source=str(path)
    )
    return model.to(device)


def save_tokenizer(model: "Any", dst: str | Path, extra_meta: Mapping[str, str] | None = None) -> Path:
    """Write weights + config (JSON metadata) to safetensors, atomically."""
    from safetensors.torch import save_file

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT_TAG, "config": json.dumps(model.cfg.to_dict()), **(extra_meta or {})}
    tmp = dst.with_name(dst.name + ".tmp")
    sd = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(sd, str(tmp), metadata=meta)
    tmp.replace(dst)
    return dst
