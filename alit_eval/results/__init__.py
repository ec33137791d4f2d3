"""Result tables and run folders: the schema (schema.py), the atomic writers (atomic.py), run folders
with their lock (rundir.py) and the meta.json record (provenance.py); readers, plots and reports.

See results/README.md at the repository root for the file formats.
"""

from alit_eval.results.atomic import to_jsonable, write_bytes, write_csv, write_json, write_parquet
from alit_eval.results.provenance import build_meta
from alit_eval.results.rundir import RunDir, open_run
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
