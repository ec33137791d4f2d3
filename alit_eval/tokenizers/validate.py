"""Checks on untrusted checkpoint content, run before anything is built or allocated.

A checkpoint is input from the internet: its config values, tensor names, dtypes and values are
claims to check. This module holds the generic checks every family's loading goes through
(`alit_eval.tokenizers.loading`): a config dict against the family's field table (`check_fields`;
each family declares its table beside its config, `Family.config_fields`), claimed values against
what the tensors show (`check_claims`), the dtype/finiteness check of the weights (`check_tensors`),
and `safe_text`, which makes any name or value from a file fit for one terminal line (control
characters escaped, long text shortened). It names no family and imports none.

Bounds in the tables are generous (the largest official preset is width 1024, depth 16): they exist
so that a hostile value is refused in milliseconds instead of building a model with a million layers.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

from alit_eval.errors import CheckpointError, ConfigError

MAX_TEXT = 80  # characters of one name or value quoted in a message

# A field table maps field -> (kind, low, high[, max length]); every family declares one for its config
# (`Family.config_fields`). Kinds: "int", "int?" (None allowed), "float", "bool", "ints"/"floats" (a list,
# each item low..high, at most max length items, default MAX_LEVELS), "bool?", "choice"/"choice?" (low is the tuple
# of allowed values), "table" (a nested object; low is its field table), "str?" (None or short text).
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


def check_value(label: str, value: Any, kind: str, lo: Any, hi: Any, maxlen: int = 0) -> None:
    """Raise `ConfigError` naming ``label``, the value and the allowed range if `value` is not valid."""
    bad = f"{label} = {show_value(value)}"
    if kind in ("int?", "bool?", "choice?", "str?") and value is None:
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
    elif kind in ("bool", "bool?"):
        if not isinstance(value, bool):
            raise ConfigError(f"{bad} must be true or false")
    elif kind in ("ints", "floats"):
        limit = maxlen or MAX_LEVELS
        what = "whole numbers" if kind == "ints" else "numbers"
        msg = f"{bad} must be a list of at most {limit} {what}, each {_range(lo, hi)}"
        if not isinstance(value, (list, tuple)) or len(value) > limit:
            raise ConfigError(msg)
        for v in value:
            ok_type = isinstance(v, int) if kind == "ints" else isinstance(v, (int, float))
            if isinstance(v, bool) or not ok_type or (isinstance(v, int) and v.bit_length() > 64):
                raise ConfigError(msg)
            if not math.isfinite(v) or not lo <= v <= hi:
                raise ConfigError(msg)
    elif kind in ("choice", "choice?"):
        if not isinstance(value, str) or value not in lo:
            allowed = ", ".join(repr(c) for c in lo) + (", null" if kind == "choice?" else "")
            raise ConfigError(f"{bad} is not one of the allowed values ({allowed})")
    elif kind == "str?":
        if not isinstance(value, str) or len(value) > 200:
            raise ConfigError(f"{bad} must be a short text or null")
    elif kind == "table":
        if not isinstance(value, Mapping):
            raise ConfigError(f"{bad} must be a JSON object")
    else:
        raise ConfigError(f"{label}: unknown field kind {kind!r} in the field table")


def check_fields(values: Mapping[str, Any], table: Mapping[str, tuple[Any, ...]], prefix: str = "") -> None:
    """Check each present field of `values` against `table` (nested tables too); unknown names are refused."""
    unknown = [k for k in values if k not in table]
    if unknown:
        raise ConfigError(
            f"unknown config field {prefix}{safe_text(unknown[0], 40)} (known: {', '.join(table)}); "
            "the file was written by something other than alit-eval or is damaged"
        )
    for name, spec in table.items():
        if name not in values:
            continue
        check_value(f"config field {prefix}{name}", values[name], *spec)
        if spec[0] == "table":
            check_fields(values[name], spec[1], f"{prefix}{name}.")


def check_config_dict(d: Any, table: Mapping[str, tuple[Any, ...]]) -> None:
    """Validate a config dict read from a file (types, bounds, known names) against a family's field
    table before it is used.

    Raises:
        ConfigError: one line naming the first bad field, its value and the allowed range.
    """
    if not isinstance(d, Mapping):
        raise ConfigError(f"the config metadata is {type(d).__name__}, not a JSON object")
    check_fields(d, table, "")


# -- the claimed config against the tensors -----------------------------------------------------------


def layer_count(sd: Mapping[str, Any], prefix: str) -> int:
    """Number of transformer layers under ``prefix`` (highest index + 1; 0 when none)."""
    idx = {int(m.group(1)) for k in sd if (m := re.match(re.escape(prefix) + r"(\d{1,9})\.", k))}
    return max(idx) + 1 if idx else 0


def dim(sd: Mapping[str, Any], key: str, i: int) -> int | None:
    """Size of dimension `i` of tensor `key`, or None when absent or of lower rank."""
    t = sd.get(key)
    shape = getattr(t, "shape", None)
    if shape is None or len(shape) <= abs(i) - (1 if i < 0 else 0):
        return None
    return int(shape[i])


def check_claims(claimed: Mapping[str, Any], observed: Mapping[str, tuple[Any, str]]) -> None:
    """Refuse a config whose values disagree with what the tensors show (``field -> (value, evidence)``;
    `claimed` is flat, nested fields as ``base.ch``), before any model is built."""
    for field, (value, evidence) in observed.items():
        mine = claimed.get(field)
        if isinstance(mine, list):
            mine = tuple(mine)
        if mine is not None and mine != value:
            raise ConfigError(
                f"config field {field} = {show_value(mine)} does not match the weights ({evidence} "
                f"implies {value}); the file's metadata is damaged or belongs to another model"
            )


# -- the tensors themselves ---------------------------------------------------------------------------


def check_tensors(sd: Mapping[str, Any], title: str = "the model") -> None:
    """Refuse non-floating-point or non-finite weights, naming the tensor (every family stores float weights).

    Raises:
        CheckpointError: the first offending tensor, its dtype or how many NaN/Inf values it holds.
    """
    import torch

    for key, t in sd.items():
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"entry {safe_text(key)} is a {type(t).__name__}, not a tensor")
        if not t.is_floating_point():
            raise CheckpointError(
                f"tensor {safe_text(key)} has dtype {str(t.dtype).removeprefix('torch.')} where {title} stores "
                f"floating-point weights; the file is damaged or not {_article(title)} {title} checkpoint"
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


def _article(word: str) -> str:
    return "an" if word[:1].upper() in "AEIOU" else "a"


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
