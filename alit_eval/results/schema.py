"""The fixed column sets of alit-eval's result tables, declared once, and their validation.

Two tables exist (results/README.md documents them for readers of the files):

- ``metrics.csv``: long format, one row per condition and metric (`METRICS_COLUMNS`). Anything that
  is not one of the fixed columns goes into ``condition`` as ``key=value`` pairs, so tables from
  different commands and runs concatenate without reshaping.
- ``per_image.parquet``: one row per image and budget (key `PER_IMAGE_KEY`), with the per-image
  metric columns declared in `PER_IMAGE_SCHEMA`; commands may add documented extra columns.

pandas is imported inside functions so the constants are cheap to import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from alit_eval.errors import DataError

if TYPE_CHECKING:
    import pandas as pd


class SchemaError(DataError):
    """A results table lacks a required column, has a wrong dtype, or breaks its key."""


@dataclass(frozen=True)
class Column:
    """One column of a results table.

    Attributes:
        name: column name.
        kind: ``str``, ``int``, ``float`` or ``bool``.
        required: the column must be present.
        nullable: values may be missing (empty in CSV, null in parquet).
        description: what the column holds, with units and ranges.
    """

    name: str
    kind: str
    required: bool
    nullable: bool
    description: str


METRICS_SCHEMA: tuple[Column, ...] = (
    Column("command", "str", True, False, "alit-eval command that produced the row, e.g. `fid`"),
    Column("dataset", "str", True, False, "dataset label, e.g. `imagenet100-val` or `demo`"),
    Column("budget", "int", True, True,
           "number of 1D tokens (32..256 for ALIT); empty for rows that span all budgets"),
    Column("metric", "str", True, False,
           "metric name, e.g. `rfid`, `l1`, `mse`, `psnr`, `ssim`, `lpips`, `spearman_rho`"),
    Column("value", "float", True, True, "the number; empty only when it could not be computed"),
    Column("n", "int", True, False, "number of images (or samples) behind the value"),
    Column("ci_low", "float", True, True, "lower end of the 95% confidence interval; empty if none"),
    Column("ci_high", "float", True, True, "upper end of the 95% confidence interval; empty if none"),
    Column("preprocess", "str", True, False,
           "preprocess mode that produced the inputs: `center-crop` or `resize-center-crop`"),
    Column("condition", "str", True, False,
           "extra conditions as `key=value` pairs joined by `;` in key order, e.g. "
           "`reference=npz;threshold=0.05`; empty string when there are none"),
)
METRICS_COLUMNS: list[str] = [c.name for c in METRICS_SCHEMA]

PER_IMAGE_SCHEMA: tuple[Column, ...] = (
    Column("image_id", "str", True, False,
           "stable id of the image: its path relative to the dataset root (or the index of a "
           "generated image); unique within a dataset"),
    Column("budget", "int", True, False, "number of 1D tokens of the reconstruction"),
    Column("l1", "float", False, True, "mean |reconstruction - original| over C,H,W; images in [0,1]"),
    Column("l1_raw", "float", False, True, "mean |raw reconstruction - original| before clamping and uint8 "
           "quantisation (the official encode() L1; criterion `official-l1`)"),
    Column("mse", "float", False, True, "mean (reconstruction - original)^2 over C,H,W; images in [0,1]"),
    Column("psnr", "float", False, True, "10*log10(1/mse) in dB (peak 1.0); inf for identical images"),
    Column("ssim", "float", False, True, "SSIM in [-1, 1] (Gaussian window 11, sigma 1.5)"),
    Column("lpips", "float", False, True, "LPIPS distance (lower is better); only when requested"),
    Column("label", "str", False, True, "class or group label of the image (e.g. a synset id, `ood`)"),
)
PER_IMAGE_KEY: list[str] = ["image_id", "budget"]

SCHEMAS: dict[str, tuple[Column, ...]] = {"metrics": METRICS_SCHEMA, "per_image": PER_IMAGE_SCHEMA}
# Metrics rows must stay concatenable across commands; per-image tables may carry extras.
_EXTRAS_ALLOWED = {"metrics": False, "per_image": True}


def format_condition(**conditions: Any) -> str:
    """Encode extra conditions for the ``condition`` column, e.g. ``threshold=0.05;subset=ood``."""
    for key, value in conditions.items():
        if any(ch in f"{key}{value}" for ch in ";="):
            raise ValueError(f"condition {key}={value!r} must not contain ';' or '='")
    return ";".join(f"{k}={conditions[k]}" for k in sorted(conditions))


def parse_condition(text: str) -> dict[str, str]:
    """Inverse of `format_condition` (values come back as strings)."""
    if not isinstance(text, str) or not text:
        return {}
    return dict(part.split("=", 1) for part in text.split(";"))


def pandas_dtypes(kind: str) -> dict[str, str]:
    """pandas dtypes for reading a table of `kind` back, e.g. ``pd.read_csv(p, dtype=...)``."""
    mapping = {"str": "str", "int": "Int64", "float": "float64", "bool": "boolean"}
    return {c.name: mapping[c.kind] for c in _schema(kind)}


def metrics_frame(rows: Iterable[Mapping[str, Any]]) -> "pd.DataFrame":
    """Build a valid metrics table from row dicts, filling optional parts with their empty values.

    Rows need at least command, dataset, metric, value, n and preprocess; ``budget``, ``ci_low``,
    ``ci_high`` default to missing and ``condition`` to ``""``.

    Returns:
        DataFrame with exactly `METRICS_COLUMNS`, in that order, and the schema's dtypes.
    """
    import pandas as pd

    defaults = {"budget": None, "ci_low": None, "ci_high": None, "condition": ""}
    records = [{**defaults, **row} for row in rows]
    df = pd.DataFrame.from_records(records, columns=None if records else METRICS_COLUMNS)
    extra = sorted(set(df.columns) - set(METRICS_COLUMNS))
    if extra:
        raise SchemaError(f"metrics rows have unknown keys {extra}; put conditions into 'condition'")
    missing = [c for c in METRICS_COLUMNS if c not in df.columns]
    if missing:
        raise SchemaError(f"metrics rows lack {missing}")
    df = df[METRICS_COLUMNS]
    for col in ("budget", "n"):
        df[col] = pd.array(df[col].to_numpy(dtype=object), dtype="Int64")
    for col in ("value", "ci_low", "ci_high"):
        df[col] = pd.to_numeric(df[col], errors="raise").astype("float64")
    df["condition"] = df["condition"].fillna("")
    for col in ("command", "dataset", "metric", "preprocess", "condition"):
        df[col] = df[col].astype("str")
    validate(df, "metrics")
    return df


def validate(df: "pd.DataFrame", kind: str) -> None:
    """Check `df` against the schema of `kind` (``metrics`` or ``per_image``).

    Raises:
        SchemaError: naming the missing/unknown columns, the column with a wrong dtype or null
            values, or the duplicated key rows.
    """
    schema = _schema(kind)
    names = {c.name for c in schema}
    missing = [c.name for c in schema if c.required and c.name not in df.columns]
    if missing:
        raise SchemaError(f"{kind} table lacks required column(s) {missing}; has {list(df.columns)}")
    if not _EXTRAS_ALLOWED[kind]:
        extra = [c for c in df.columns if c not in names]
        if extra:
            raise SchemaError(f"{kind} table has unknown column(s) {extra}; allowed: {sorted(names)}")
    for col in schema:
        if col.name not in df.columns:
            continue
        series = df[col.name]
        problem = _dtype_problem(series, col.kind)
        if problem:
            raise SchemaError(f"{kind} column {col.name!r} must hold {col.kind} values; {problem}")
        if not col.nullable and series.isna().any():
            raise SchemaError(f"{kind} column {col.name!r} has {int(series.isna().sum())} missing value(s)")
    if kind == "per_image":
        dup = df.duplicated(PER_IMAGE_KEY)
        if dup.any():
            image_id, budget = df.loc[dup, PER_IMAGE_KEY].iloc[0]
            raise SchemaError(
                f"per_image table repeats (image_id, budget) = ({str(image_id)!r}, {budget}) "
                f"({int(dup.sum())} duplicate row(s)); each image needs one row per budget"
            )


def _schema(kind: str) -> tuple[Column, ...]:
    try:
        return SCHEMAS[kind]
    except KeyError:
        raise ValueError(f"unknown table kind {kind!r}; known: {sorted(SCHEMAS)}") from None


def _dtype_problem(series: "pd.Series", kind: str) -> str | None:
    """Return why `series` does not hold `kind` values, or None when it does."""
    from pandas.api import types as t

    dtype = series.dtype
    if kind == "float":
        ok = (t.is_float_dtype(dtype) or t.is_integer_dtype(dtype)) and not t.is_bool_dtype(dtype)
    elif kind == "int":
        ok = t.is_integer_dtype(dtype) and not t.is_bool_dtype(dtype)
        if not ok and t.is_float_dtype(dtype):
            return f"got {dtype} (use the nullable 'Int64' dtype for integers with missing values)"
    elif kind == "bool":
        ok = t.is_bool_dtype(dtype)
    elif kind == "str":
        if t.is_string_dtype(dtype) and not t.is_object_dtype(dtype):
            ok = True
        else:
            bad = series.dropna().map(lambda v: not isinstance(v, str))
            ok = t.is_object_dtype(dtype) and not bad.any()
            if t.is_object_dtype(dtype) and bad.any():
                return f"found {type(series.dropna()[bad].iloc[0]).__name__} values"
    else:
        raise ValueError(f"unknown column kind {kind!r}")
    return None if ok else f"got dtype {dtype}"
