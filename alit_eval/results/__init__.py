"""Result tables: their schema (schema.py), the one writer (io.py), and later plots and reports.

See results/README.md at the repository root for the file formats.
"""

from alit_eval.results.io import (
    RunDir,
    build_meta,
    open_run,
    to_jsonable,
    write_bytes,
    write_csv,
    write_json,
    write_parquet,
)
from alit_eval.results.schema import (
    METRICS_COLUMNS,
    PER_IMAGE_KEY,
    SchemaError,
    metrics_frame,
    validate,
)

__all__ = [
    "METRICS_COLUMNS",
    "PER_IMAGE_KEY",
    "RunDir",
    "SchemaError",
    "build_meta",
    "metrics_frame",
    "open_run",
    "to_jsonable",
    "validate",
    "write_bytes",
    "write_csv",
    "write_json",
    "write_parquet",
]
