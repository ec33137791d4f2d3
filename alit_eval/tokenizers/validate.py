"""Checks on untrusted checkpoint content, run before anything is built or allocated.

A checkpoint is input from the internet: its config values, tensor names, dtypes and values are
claims to check. This module holds the field table (types and sane bounds of every ALIT and base
config field), the cross-check of a claimed config against the tensor shapes actually present, the
dtype/finiteness check of the weights, and `safe_text`, which makes any name or value from a file fit
for one terminal line (control characters escaped, long text shortened).

Bounds are generous (the largest official preset is width 1024, depth 16): they exist so that a
hostile value is refused in milliseconds instead of building a model with a million layers.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

from alit_eval.errors import CheckpointError, ConfigError

MAX_TEXT = 80  # characters of one name or value quoted in a message

# field -> (kind, low, high). kinds: "int", "float", "bool", "ints" (list of ints), "kind", "preset".
ALIT_FIELDS: dict[str, tuple[str, float, float]] = {
    "width": ("int", 8, 16384),
    "depth": ("int", 1, 128),
    "heads": ("int", 1, 256),
    "dec_width": ("int?", 8, 16384),
    "dec_depth": ("int?", 1, 128),
    "dec_heads": ("int?", 1, 256),
    "image_size": ("int", 8, 8192),
    "patch_size": ("int", 1, 256),
    "tokens_per_iter": ("int", 1, 4096),
    "iterations": ("int", 1, 1024),
    "quantize": ("bool", 0, 1),
    "codebook_size": ("int", 1, 1 << 20),
    "token_dim": ("int", 1, 4096),
    "mlp_ratio": ("int", 1, 16),
    "halting_threshold": ("float", 0.0, 1.0),
    "base": ("base", 0, 0),
    "preset": ("preset", 0, 0),
}
BASE_FIELDS: dict[str, tuple[str, float, float]] = {
    "kind": ("kind", 0, 0),
    "ch": ("int", 1, 2048),
    "ch_mult": ("ints", 1, 64),
    "num_res_blocks": ("int", 1, 16),
    "z_channels": ("int", 1, 4096),
    "embed_dim": ("int", 1, 4096),
    "n_embed": ("int", 0, 1 << 20),
    "attn_levels": ("ints", 0, 7),
    "vae_scale": ("float", 1e-6, 1e3),
    "norm_groups": ("int", 1, 2048),
}
MAX_LEVELS = 8  # length limit of ch_mult / attn_levels (8 levels = 128x downsampling)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def safe_text(text: Any, limit: int = MAX_TEXT) -> str:
    """Return `text` fit for one terminal line: control/format characters escaped, long text cut.

    Escape sequences in a tensor name must not reach the terminal (they can clear it or fake output),
    and a 20 MB name must not become a 20 MB error line.
    """
    s = text if isinstance(text, str) else str(text)
    if len(s) > limit:
        s = f"{s[:limit]}... ({len(s) - limit} more characters)"
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), s)


def show_value(value: Any) -> str:
    """A short, safe rendering of an untrusted value (huge ints are not converted to text)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 100:
        return f"a {int(value.bit_length() * math.log10(2)) + 1}-digit number"
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # ints past the str-conversion limit, deep structures
        text = f"<{type(value).__name__}>"
    return safe_text(text, 40)


def _range(lo: float, hi: float) -> str:
    fmt = (lambda v: f"{int(v)}") if float(lo).is_integer() and float(hi).is_integer() else (lambda v: f"{v:g}")
    return f"{fmt(lo)}..{fmt(hi)}"


def check_value(label: str, value: Any, kind: str, lo: float, hi: float) -> None:
    """Raise `ConfigError` naming ``label``, the value and the allowed range if `value` is not valid."""
    bad = f"{label} = {show_value(value)}"
    if kind == "int?" and value is None:
        return
    if kind in ("int", "int?"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{bad} must be a whole number (allowed {_range(lo, hi)})")
        if not lo <= value <= hi:
            raise ConfigError(f"{bad} is out of range (allowed {_range(lo, hi)})")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{bad} must be a number (allowed {_range(lo, hi)})")
        if isinstance(value, int) and value.bit_length() > 64 or not math.isfinite(value) or not lo <= value <= hi:
            raise ConfigError(f"{bad} is out of range (allowed {_range(lo, hi)})")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{bad} must be true or false")
    elif kind == "ints":
        if not isinstance(value, (list, tuple)) or len(value) > MAX_LEVELS:
            raise ConfigError(f"{bad} must be a list of at most {MAX_LEVELS} whole numbers, each {_range(lo, hi)}")
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ConfigError(f"{bad} must be a list of at most {MAX_LEVELS} whole numbers, each {_range(lo, hi)}")
    elif kind == "kind":
        if value not in ("vqgan", "vae"):
            raise ConfigError(f"{bad} is not a base tokenizer kind (allowed 'vqgan', 'vae')")
    elif kind == "preset":
        from alit_eval.tokenizers.alit.config import PRESETS

        if value is not None and (not isinstance(value, str) or value not in PRESETS):
            raise ConfigError(f"{bad} is not a preset name (allowed null, {', '.join(PRESETS)})")


def check_fields(values: Mapping[str, Any], table: Mapping[str, tuple[str, float, float]], prefix: str) -> None:
    """Check each present field of `values` against `table`; unknown names are refused."""
    unknown = [k for k in values if k not in table]
    if unknown:
        raise ConfigError(
            f"unknown config field {prefix}{safe_text(unknown[0], 40)} (known: {', '.join(table)}); "
            "the file was written by something other than alit-eval or is damaged"
        )
    for name, (kind, lo, hi) in table.items():
        if name in values and kind != "base":
            check_value(f"config field {prefix}{name}", values[name], kind, lo, hi)


def check_config_dict(d: Any) -> None:
    """Validate a config dict read from a file (types, bounds, known names) before it is used.

    Raises:
        ConfigError: one line naming the first bad field, its value and the allowed range.
    """
    if not isinstance(d, Mapping):
        raise ConfigError(f"the config metadata is {type(d).__name__}, not a JSON object")
    check_fields(d, ALIT_FIELDS, "")
    base = d.get("base", {})
    if not isinstance(base, Mapping):
        raise ConfigError(f"config field base = {show_value(base)} must be a JSON object")
    check_fields(base, BASE_FIELDS, "base.")


# -- the claimed config against the tensors -----------------------------------------------------------


def _dim(sd: Mapping[str, Any], key: str, i: int) -> int | None:
    t = sd.get(key)
    shape = getattr(t, "shape", None)
    if shape is None or len(shape) <= abs(i) - (1 if i < 0 else 0):
        return None
    return int(shape[i])


def layer_count(sd: Mapping[str, Any], prefix: str) -> int:
    """Number of transformer layers under ``prefix`` (highest index + 1; 0 when none)."""
    idx = {int(m.group(1)) for k in sd if (m := re.match(re.escape(prefix) + r"(\d{1,9})\.", k))}
    return max(idx) + 1 if idx else 0


def observed_fields(sd: Mapping[str, Any]) -> dict[str, tuple[Any, str]]:
    """Config values the tensors show, as ``field -> (value, evidence)``; unreadable ones are left out."""
    out: dict[str, tuple[Any, str]] = {}

    def put(field: str, value: Any, evidence: str) -> None:
        if value is not None:
            out[field] = (value, evidence)

    put("width", _dim(sd, "latent_tokens", 1), "latent_tokens")
    put("tokens_per_iter", _dim(sd, "latent_tokens", 0), "latent_tokens")
    put("iterations", _dim(sd, "timestep_embedding", 0), "timestep_embedding")
    put("depth", layer_count(sd, "encoder.transformer."), "encoder.transformer.*")
    put("dec_depth", layer_count(sd, "decoder.transformer."), "decoder.transformer.*")
    put("dec_width", _dim(sd, "decoder.decoder_embed.weight", 0), "decoder.decoder_embed.weight")
    put("token_dim", _dim(sd, "pre_quantizer_mlp.weight", 0), "pre_quantizer_mlp.weight")
    put("patch_size", _dim(sd, "patch_embed.weight", -1), "patch_embed.weight")
    put("quantize", "quantize.embedding.weight" in sd, "quantize.embedding.weight")
    if "quantize.embedding.weight" in sd:
        put("codebook_size", _dim(sd, "quantize.embedding.weight", 0), "quantize.embedding.weight")
    n = _dim(sd, "encoder_positional_embedding", 0)
    grid = math.isqrt(n - 1) if n and n > 1 else None
    patch = out.get("patch_size", (None,))[0]
    if grid and grid * grid == n - 1 and patch:  # type: ignore[operator]
        put("image_size", grid * patch, "encoder_positional_embedding and patch_embed.weight")
    hidden, width = _dim(sd, "encoder.transformer.0.mlp.c_fc.weight", 0), out.get("width", (None,))[0]
    if hidden and width and hidden % width == 0:
        put("mlp_ratio", hidden // width, "encoder.transformer.0.mlp.c_fc.weight")
    return out


def observed_base_fields(sd: Mapping[str, Any]) -> dict[str, tuple[Any, str]]:
    """Base config values the tensors show, as ``base.field -> (value, evidence)`` (empty if unreadable)."""
    from alit_eval.tokenizers.base2d.config import base_geometry

    try:
        geometry = base_geometry(sd)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        return {}  # the strict key check after the build names what is missing
    if geometry["kind"] == "vae":
        geometry.pop("n_embed")  # unused by the VAE
    else:
        geometry.pop("attn_levels")  # the VQGAN port has no attention blocks
    return {f"base.{k}": (v, f"base_tokenizer.{geometry['kind']}.* shapes") for k, v in geometry.items()}


def check_against_tensors(cfg: Mapping[str, Any], sd: Mapping[str, Any]) -> None:
    """Refuse a config whose values disagree with the tensors present (before any model is built)."""
    from alit_eval.tokenizers.alit.config import PRESETS

    preset = PRESETS.get(cfg.get("preset") or "")
    if preset and any(cfg.get(k) != preset[k] for k in ("width", "depth", "heads")):
        raise ConfigError(
            f"config field preset = {show_value(cfg.get('preset'))} disagrees with width/depth/heads "
            f"{cfg.get('width')}/{cfg.get('depth')}/{cfg.get('heads')} (the preset has "
            f"{preset['width']}/{preset['depth']}/{preset['heads']})"
        )
    flat = {**cfg, **{f"base.{k}": v for k, v in (cfg.get("base") or {}).items()}}
    for field, (value, evidence) in {**observed_fields(sd), **observed_base_fields(sd)}.items():
        claimed = flat.get(field)
        if isinstance(claimed, list):
            claimed = tuple(claimed)
        if claimed is not None and claimed != value:
            raise ConfigError(
                f"config field {field} = {show_value(claimed)} does not match the weights ({evidence} "
                f"implies {value}); the file's metadata is damaged or belongs to another model"
            )


# -- the tensors themselves ---------------------------------------------------------------------------


def check_tensors(sd: Mapping[str, Any]) -> None:
    """Refuse non-floating-point or non-finite weights, naming the tensor (ALIT holds only float weights).

    Raises:
        CheckpointError: the first offending tensor, its dtype or how many NaN/Inf values it holds.
    """
    import torch

    for key, t in sd.items():
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"entry {safe_text(key)} is a {type(t).__name__}, not a tensor")
        if not t.is_floating_point():
            raise CheckpointError(
                f"tensor {safe_text(key)} has dtype {str(t.dtype).removeprefix('torch.')} where ALIT stores "
                "floating-point weights; the file is damaged or not an ALIT checkpoint"
            )
    for key, t in sd.items():
        if t.is_meta or t.numel() == 0:
            continue
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            nan = int(torch.isnan(t).sum())
            inf = int(t.numel() - finite.sum()) - nan
            raise CheckpointError(
                f"tensor {safe_text(key)} holds {nan} NaN and {inf} infinite values (of {t.numel()}); "
                "the weights are damaged (a diverged training run or a corrupt file): use another checkpoint"
            )


# -- what a file that is not a checkpoint looks like ---------------------------------------------------

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip file"),
    (b"BZh", "a bzip2 file"),
    (b"\xfd7zXZ\x00", "an xz file"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\x28\xb5\x2f\xfd", "a zstd file"),
    (b"\x7fELF", "an executable (ELF)"),
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"\x89HDF", "an HDF5 file (Keras/TensorFlow weights?)"),
    (b"version https://git-lfs", "a Git LFS pointer (the real file was not downloaded)"),
)


def describe_bytes(head: bytes) -> str:
    """Say in words what a file starting with `head` looks like (for 'not a checkpoint' errors)."""
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return f"it looks like {what}"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "it looks like a WebP image"
    stripped = head.lstrip().lower()
    if stripped.startswith((b"<!doctype html", b"<html", b"<head", b"<!--")):
        return "it looks like an HTML page (a failed download? check the URL and re-download)"
    if stripped.startswith(b"<?xml"):
        return "it looks like an XML file"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        text = head[: e.start].decode("utf-8") if e.start > len(head) - 4 else ""
    if text and all(c.isprintable() or c in "\t\r\n" for c in text):
        if stripped.startswith((b"{", b"[")):
            return "it looks like a JSON/text file"
        first = text.strip().splitlines()[0] if text.strip() else ""
        return f"it looks like a text file (first line: {safe_text(repr(first), 60)})"
    return f"its first bytes are {safe_text(head[:8].hex(' '), 40)}, which no known format starts with"
