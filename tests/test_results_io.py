"""Tests of the results writer: atomic writes, run folders, locks, meta.json and the schema."""

from __future__ import annotations

import enum
import json
import math
import os
import socket
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alit_eval.errors import AlitEvalError
from alit_eval.results import rundir as rio
from alit_eval.results import schema
from alit_eval.results.atomic import to_jsonable, write_bytes, write_csv, write_json, write_parquet
from alit_eval.results.provenance import build_meta
from alit_eval.results.rundir import open_run
from alit_eval.results.schema import SchemaError, metrics_frame, validate

CONFIG = {"ckpt": "demo", "budgets": [32, 64], "dataset": "demo", "seed": 0}


def _rows() -> list[dict]:
    return [
        {"command": "fid", "dataset": "demo", "budget": 32, "metric": "rfid", "value": 12.5, "n": 50,
         "preprocess": "center-crop"},
        {"command": "fid", "dataset": "demo", "budget": 64, "metric": "l1", "value": 0.04, "n": 50,
         "ci_low": 0.03, "ci_high": 0.05, "preprocess": "center-crop",
         "condition": schema.format_condition(threshold=0.05, subset="ood")},
        {"command": "fid", "dataset": "demo", "metric": "spearman_rho", "value": float("nan"), "n": 50,
         "preprocess": "center-crop"},
    ]


def _per_image() -> pd.DataFrame:
    return pd.DataFrame({
        "image_id": ["a.png", "a.png", "b.png", "b.png"],
        "budget": np.array([32, 64, 32, 64], dtype=np.int64),
        "l1": [0.1, 0.05, 0.2, 0.1], "mse": [0.02, 0.01, 0.04, 0.02],
        "psnr": [17.0, 20.0, 14.0, 17.0], "ssim": [0.5, 0.6, 0.4, 0.5],
        "label": ["x", "x", "y", "y"], "entropy": [1.0, 1.0, 2.0, 2.0],  # extras are allowed here
    })


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------- atomic writes


def test_atomic_writers_round_trip_and_leave_no_temp_files(tmp_path):
    write_json({"a": np.float32(1.5), "p": tmp_path, "nan": float("nan")}, tmp_path / "x.json")
    write_bytes(b"\x00\x01", tmp_path / "x.bin")
    df = metrics_frame(_rows())
    write_csv(df, tmp_path / "m.csv")
    write_parquet(_per_image(), tmp_path / "p.parquet")
    assert _visible(tmp_path) == ["m.csv", "p.parquet", "x.bin", "x.json"]
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1.5, "p": str(tmp_path), "nan": None}
    assert (tmp_path / "x.bin").read_bytes() == b"\x00\x01"
    back = pd.read_csv(tmp_path / "m.csv", dtype=schema.pandas_dtypes("metrics"), keep_default_na=False,
                       na_values={c: [""] for c in ("budget", "value", "ci_low", "ci_high")})
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    assert back["budget"].isna().tolist() == [False, False, True]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "p.parquet"), _per_image())


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "m.csv"
    target.write_text("old\n")

    class Exploding:
        def to_csv(self, f, **kwargs):
            f.write("half a tab")
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_csv(Exploding(), target)
    assert target.read_text() == "old\n" and _visible(tmp_path) == ["m.csv"]


def test_to_jsonable_handles_scientific_values(tmp_path):
    class Mode(enum.Enum):
        A = "center-crop"

    @dataclass
    class Cfg:
        budgets: tuple
        path: Path

    obj = {"arr": np.arange(3), "i": np.int64(7), "b": np.bool_(True), "inf": math.inf,
           "mode": Mode.A, "cfg": Cfg((32, 64), tmp_path), "set": {3, 1}}
    out = to_jsonable(obj)
    assert out == {"arr": [0, 1, 2], "i": 7, "b": True, "inf": None, "mode": "center-crop",
                   "cfg": {"budgets": [32, 64], "path": str(tmp_path)}, "set": [1, 3]}
    json.dumps(out, allow_nan=False)
    with pytest.raises(TypeError, match="cannot store"):
        to_jsonable(object())


# ---------------------------------------------------------------- run folders


def test_new_run_then_resume_same_config(tmp_path):
    run = open_run(tmp_path, "fid", config=CONFIG)
    assert run.path == tmp_path / "fid" / rio.config_hash(CONFIG) and not run.resumed
    assert json.loads((run.path / "config.json").read_text()) == CONFIG
    assert (run.path / ".lock").is_file()
    run.write_metrics(metrics_frame(_rows()))
    run.write_per_image(_per_image())
    run.release()
    assert not (run.path / ".lock").exists()

    # same config, keys in another order: same folder, files kept
    again = open_run(tmp_path, "fid", config=dict(reversed(list(CONFIG.items()))))
    assert again.path == run.path and again.resumed
    assert {"metrics.csv", "per_image.parquet"} <= set(_visible(again.path))
    again.release()


def test_different_config_is_refused_unless_overwrite(tmp_path):
    with open_run(tmp_path, "fid", run_id="r1", config=CONFIG) as run:
        write_bytes(b"x", run.file("keep.bin"))
    other = {**CONFIG, "budgets": [32]}
    with pytest.raises(AlitEvalError, match=r"different config \(differs in: budgets\).*--overwrite"):
        open_run(tmp_path, "fid", run_id="r1", config=other)
    assert (run.path / "keep.bin").exists() and not (run.path / ".lock").exists()  # untouched, unlocked

    replaced = open_run(tmp_path, "fid", run_id="r1", config=other, overwrite=True)
    assert not replaced.resumed and _visible(replaced.path) == [".lock", "config.json"]
    assert json.loads((replaced.path / "config.json").read_text())["budgets"] == [32]
    replaced.release()


def test_foreign_folder_and_bad_run_id_are_refused(tmp_path):
    (tmp_path / "fid" / "mine").mkdir(parents=True)
    (tmp_path / "fid" / "mine" / "notes.txt").write_text("my stuff")
    with pytest.raises(AlitEvalError, match="not an alit-eval run"):
        open_run(tmp_path, "fid", run_id="mine", config=CONFIG)
    with pytest.raises(AlitEvalError, match="invalid run id"):
        open_run(tmp_path, "fid", run_id="../x", config=CONFIG)


def test_meta_json_is_written_last_and_marks_completion(tmp_path):
    run = open_run(tmp_path, "fid", config=CONFIG)
    assert not run.complete
    run.write_metrics(metrics_frame(_rows()))
    meta = run.finish(seed=0, device="cpu", extra={"ckpt_sha256": "ab" * 32, "preprocess": "center-crop"})
    assert run.complete and not (run.path / ".lock").exists()
    on_disk = json.loads((run.path / "meta.json").read_text())
    assert on_disk == meta and on_disk["command"] == "fid" and on_disk["config"] == CONFIG
    # meta.json is written last: no file of the run is newer
    meta_time = (run.path / "meta.json").stat().st_mtime_ns
    assert all(p.stat().st_mtime_ns <= meta_time for p in run.path.iterdir())

    # reopening keeps the completion mark until the rerun's finish() replaces it (a failed rerun
    # must not leave a folder that no later rerun can complete)
    again = open_run(tmp_path, "fid", config=CONFIG)
    assert again.resumed and again.previous_meta == meta and again.complete
    again.release()
    assert json.loads((run.path / "meta.json").read_text()) == meta


def test_build_meta_contents(tmp_path):
    started = 1_700_000_000.0
    meta = build_meta({"x": np.float64(0.5), "root": tmp_path}, seed=3, device="cpu",
                      extra={"ckpt": tmp_path / "a.pth", "n": np.int32(4)}, started_at=started)
    json.dumps(meta, allow_nan=False)
    assert meta["config"] == {"x": 0.5, "root": str(tmp_path)}
    assert meta["seed"] == 3 and meta["device"] == "cpu"
    assert meta["extra"] == {"ckpt": str(tmp_path / "a.pth"), "n": 4}
    assert meta["alit_eval_version"] == metadata.version("alit-eval")
    for name in ("numpy", "pandas", "torch"):
        assert meta["packages"][name] == metadata.version(name)
    assert meta["platform"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert meta["started_at"].startswith("2023-11-14T22:13:20")
    assert meta["wall_time_s"] > 0 and meta["finished_at"] > meta["started_at"]
    git = meta["git"]
    assert git is None or (len(git["commit"]) == 40 and isinstance(git["dirty"], bool))
    assert build_meta({}, seed=None, device=None)["wall_time_s"] is None


# ---------------------------------------------------------------- locking

_SECOND_PROCESS = textwrap.dedent("""
    import sys
    from alit_eval.errors import AlitEvalError
    from alit_eval.results.rundir import open_run
    try:
        open_run(sys.argv[1], "fid", config={"ckpt": "demo", "budgets": [32, 64], "dataset": "demo", "seed": 0})
    except AlitEvalError as exc:
        print(exc)
        sys.exit(3)
    print("acquired")
""")


def test_second_process_is_refused_while_locked(tmp_path):
    run = open_run(tmp_path, "fid", config=CONFIG)
    try:
        done = subprocess.run([sys.executable, "-c", _SECOND_PROCESS, str(tmp_path)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 3, done.stderr
        assert f"in use by pid {os.getpid()} on {socket.gethostname()}" in done.stdout
    finally:
        run.release()
    done = subprocess.run([sys.executable, "-c", _SECOND_PROCESS, str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "acquired" in done.stdout  # released: the second run may start


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_lock_from_dead_process_is_taken_over(tmp_path):
    folder = tmp_path / "fid" / "r"
    folder.mkdir(parents=True)
    (folder / ".lock").write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    run = open_run(tmp_path, "fid", run_id="r", config=CONFIG)
    assert json.loads((folder / ".lock").read_text())["pid"] == os.getpid()
    run.release()


def test_unreadable_lock_without_holder_is_taken_over(tmp_path):
    folder = tmp_path / "fid" / "r"
    folder.mkdir(parents=True)
    (folder / ".lock").write_text("")  # a writer died between creating and filling it: nobody holds its flock
    run = open_run(tmp_path, "fid", run_id="r", config=CONFIG)
    assert json.loads((folder / ".lock").read_text())["pid"] == os.getpid()
    run.release()


def test_lock_from_another_host_is_not_taken_over(tmp_path):
    folder = tmp_path / "fid" / "r"
    folder.mkdir(parents=True)
    (folder / ".lock").write_text(json.dumps({"pid": _dead_pid(), "host": "some-other-host"}))
    with pytest.raises(AlitEvalError, match="in use by pid .* on some-other-host"):
        open_run(tmp_path, "fid", run_id="r", config=CONFIG)


# ---------------------------------------------------------------- schema


def test_metrics_frame_has_the_fixed_columns_and_dtypes():
    df = metrics_frame(_rows())
    assert list(df.columns) == schema.METRICS_COLUMNS
    assert str(df["budget"].dtype) == "Int64" and str(df["n"].dtype) == "Int64"
    assert df["condition"].tolist() == ["", "subset=ood;threshold=0.05", ""]
    assert schema.parse_condition(df["condition"][1]) == {"subset": "ood", "threshold": "0.05"}
    with pytest.raises(SchemaError, match="unknown keys \\['threshold'\\]"):
        metrics_frame([{**_rows()[0], "threshold": 0.05}])
    with pytest.raises(SchemaError, match="lack \\['n'\\]"):
        metrics_frame([{k: v for k, v in _rows()[0].items() if k != "n"}])


def test_validate_reports_missing_columns_and_wrong_dtypes():
    df = metrics_frame(_rows())
    with pytest.raises(SchemaError, match="lacks required column\\(s\\) \\['preprocess'\\]"):
        validate(df.drop(columns="preprocess"), "metrics")
    with pytest.raises(SchemaError, match="'budget' must hold int values.*Int64"):
        validate(df.assign(budget=[32.0, 64.0, float("nan")]), "metrics")
    with pytest.raises(SchemaError, match="'value' must hold float"):
        validate(df.assign(value=["a", "b", "c"]), "metrics")
    with pytest.raises(SchemaError, match="'metric' must hold str values; found int"):
        validate(df.assign(metric=pd.Series([1, "l1", "x"], dtype=object)), "metrics")
    with pytest.raises(SchemaError, match="unknown column"):
        validate(df.assign(extra=1), "metrics")
    with pytest.raises(SchemaError, match="'n' has 1 missing"):
        validate(df.assign(n=pd.array([1, None, 3], dtype="Int64")), "metrics")


def test_validate_per_image_key_and_extras():
    validate(_per_image(), "per_image")  # extra 'entropy' column is fine
    with pytest.raises(SchemaError, match=r"repeats \(image_id, budget\) = \('a.png', 32\)"):
        validate(pd.concat([_per_image(), _per_image().iloc[:1]]), "per_image")
    with pytest.raises(SchemaError, match="lacks required column\\(s\\) \\['image_id'\\]"):
        validate(_per_image().drop(columns="image_id"), "per_image")
    with pytest.raises(ValueError, match="unknown table kind"):
        validate(_per_image(), "per_images")


def test_results_readme_documents_every_column():
    readme = (Path(__file__).resolve().parent.parent / "results" / "README.md").read_text()
    for column in (*schema.METRICS_SCHEMA, *schema.PER_IMAGE_SCHEMA):
        assert f"`{column.name}`" in readme, column.name
    for name in ("metrics.csv", "per_image.parquet", "meta.json", "config.json", ".lock", "figures/"):
        assert name in readme
