"""Hostile inputs on the newer surfaces (issue 26): ``--save-recons`` against the data, files,
unwritable folders and full disks; a finished run rerun with ``--save-recons``; huge budget ranges
on the CLI; file names carrying terminal escape codes and newlines.

Runs use the tiny 32 px checkpoint with ``--no-fid`` (no Inception); the escape-code case runs the
real console script in a subprocess so that logging and warnings go through the CLI's own setup.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import alit_eval
from alit_eval.cli.app import main
from alit_eval.engine import recons
from alit_eval.results import atomic as results_io

CODE_ROOT = Path(alit_eval.__file__).resolve().parents[1]  # the checkout under test, for subprocesses


def _cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def _images(root: Path, names=("a.png", "b.png", "c.png")) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        Image.fromarray(np.random.default_rng(k).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(root / name)
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _fid(tmp_path: Path, ckpt: Path, data: Path, *extra: str) -> list[str]:
    # the issue's `C`, with the tiny checkpoint instead of the demo tokenizer
    return ["--results-dir", str(tmp_path / "R"), "--device", "cpu", "fid", "--ckpt", str(ckpt), "--data", str(data),
            "--limit", "2", "--budgets", "4,16", "--no-fid", "--no-compute", *extra]


def _one_error(code: int, err: str, *fragments: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------- --save-recons against the data


@pytest.mark.parametrize("where", ["inside", "same", "holds"])
def test_save_recons_overlapping_the_data_is_refused_and_nothing_is_written(tiny_ckpt, tmp_path, capsys, where):
    # Before: `--data SR --save-recons SR` wrote 12 PNGs into the dataset, and the next run read 16 images.
    data = _images(tmp_path / "outer" / "imgs")
    folder = {"inside": data / "recons", "same": data, "holds": tmp_path / "outer"}[where]
    before = _tree(tmp_path / "outer")
    code, _, err = _cli(_fid(tmp_path, tiny_ckpt, data, "--overwrite", "--save-recons", str(folder)), capsys)
    line = _one_error(code, err, "--save-recons")
    assert ("holds the data folder" if where == "holds" else "lies inside the data folder") in line
    assert _tree(tmp_path / "outer") == before  # nothing written into the data
    assert not (tmp_path / "R").exists()  # refused before a run folder was made


def test_save_recons_inside_a_globs_folder_is_refused(tiny_ckpt, tmp_path, capsys):
    data = _images(tmp_path / "imgs")
    code, _, err = _cli(_fid(tmp_path, tiny_ckpt, Path(f"{data}/*.png"), "--save-recons", str(data / "out")), capsys)
    _one_error(code, err, "lies inside the data folder")
    assert not (data / "out").exists()


def test_save_recons_on_a_file_names_the_option(tiny_ckpt, tmp_path, capsys):
    data = _images(tmp_path / "imgs")
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    for folder in (target, target / "sub"):
        code, _, err = _cli(_fid(tmp_path, tiny_ckpt, data, "--save-recons", str(folder)), capsys)
        line = _one_error(code, err, "--save-recons", "give a folder")
        assert "--results-dir" not in line  # the old message pointed at the wrong option
    assert target.read_text() == "keep me"


def test_save_recons_in_a_read_only_folder_names_the_option(tiny_ckpt, tmp_path, capsys, monkeypatch):
    # Tests may run as root, for whom chmod does not stop writes: the permission probe is faked.
    data = _images(tmp_path / "imgs")
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(recons.os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    code, _, err = _cli(_fid(tmp_path, tiny_ckpt, data, "--save-recons", str(locked / "pngs")), capsys)
    line = _one_error(code, err, f"{locked} is not writable", "choose a writable folder for --save-recons")
    assert "--results-dir" not in line


def _disk_full(only: str):
    """A `write_bytes` that fails with ENOSPC, the way the results writer reports it, for paths holding `only`."""
    real = results_io.write_bytes

    def write_bytes(data: bytes, path):
        if only in str(path):
            with results_io.writing(path):
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(data, path)

    return write_bytes


def test_disk_full_while_saving_recons_names_the_png(tiny_ckpt, tmp_path, capsys, monkeypatch):
    data = _images(tmp_path / "imgs")
    monkeypatch.setattr(recons, "write_bytes", _disk_full("pngs"))
    code, _, err = _cli(_fid(tmp_path, tiny_ckpt, data, "--save-recons", str(tmp_path / "pngs")), capsys)
    line = _one_error(code, err, "No space left on device", "MiB free there", "choose another --save-recons")
    assert f"cannot write {tmp_path / 'pngs' / 'original' / 'a.png'} " in line  # the file, not the folder


def test_disk_full_while_saving_examples_names_the_png(tiny_ckpt, tmp_path, capsys, monkeypatch):
    # Before: examples were saved by PIL directly and the error named the working directory.
    data = _images(tmp_path / "imgs")
    monkeypatch.setattr(recons, "write_bytes", _disk_full("examples"))
    code, _, err = _cli(_fid(tmp_path, tiny_ckpt, data), capsys)
    line = _one_error(code, err, "No space left on device", "choose another --results-dir")
    assert "examples/00000_original.png (" in line and str(Path.cwd()) + " (" not in line


# ---------------------------------------------------------------- rerun of a finished run


def test_rerun_of_a_finished_run_writes_the_pngs_with_the_same_numbers(tiny_ckpt, tmp_path, capsys):
    # Before: the rerun printed the stored table and wrote 0 PNGs without a word.
    data = _images(tmp_path / "imgs")
    code, _, err = _cli(_fid(tmp_path, tiny_ckpt, data), capsys)
    assert code in (0, None), err
    (run,) = (tmp_path / "R" / "fid").iterdir()
    first = pd.read_csv(run / "metrics.csv")
    out = tmp_path / "pngs"

    def pngs() -> set[str]:
        return {str(p.relative_to(out)) for p in out.rglob("*.png")}

    code, _, err = _cli(_fid(tmp_path, tiny_ckpt, data, "--save-recons", str(out)), capsys)
    assert code in (0, None), err
    want = {f"{k}/{n}" for k in ("original", "4", "16") for n in ("a.png", "b.png")}
    assert pngs() == want
    pd.testing.assert_frame_equal(pd.read_csv(run / "metrics.csv"), first)  # recomputed, same numbers
    # the PNGs are the measured images: their L1 to the originals is the table's
    per = pd.read_parquet(run / "per_image.parquet")
    for b in (4, 16):
        for name in ("a.png", "b.png"):
            rec = np.asarray(Image.open(out / str(b) / name), dtype=np.float64)
            ref = np.asarray(Image.open(out / "original" / name), dtype=np.float64)
            row = per[(per["budget"] == b) & (per["image_id"] == name)]
            assert abs(np.abs(rec - ref).mean() / 255 - float(row["l1"].iloc[0])) < 1e-9
    # all there: the finished run is shown, nothing recomputed; one PNG gone: only its image is redone
    code, stdout, err = _cli(_fid(tmp_path, tiny_ckpt, data, "--save-recons", str(out)), capsys)
    assert "already holds this finished run" in stdout and "recomputing" not in err
    (out / "16" / "b.png").unlink()
    code, stdout, err = _cli(_fid(tmp_path, tiny_ckpt, data, "--save-recons", str(out)), capsys)
    assert code in (0, None), err
    assert pngs() == want
    pd.testing.assert_frame_equal(pd.read_csv(run / "metrics.csv"), first)


# ---------------------------------------------------------------- budget ranges on the CLI


@pytest.mark.parametrize("budgets", ["1-1000000000:1", "8,16,...,8000000000"])
def test_huge_budget_ranges_are_one_line_before_loading(tmp_path, capsys, budgets):
    # Before: 3 GB of list in 13-31 s before any model was loaded. The checkpoint path does not
    # exist: the budget string is refused before it is looked at.
    code, _, err = _cli(["--results-dir", str(tmp_path / "R"), "fid", "--ckpt", str(tmp_path / "none.safetensors"),
                         "--data", str(tmp_path), "--budgets", budgets, "--no-fid"], capsys)
    _one_error(code, err, "--budgets", "is above 65536")


# ---------------------------------------------------------------- names with control characters


HOSTILE = ["b\x1b[2J\x1b[31mALL RESULTS VERIFIED\x1b[0m.png", "c\nerror: forged.png"]


@pytest.mark.skipif(sys.platform == "win32", reason="names with control characters")
def test_names_with_escape_codes_are_escaped_everywhere(tiny_ckpt, tmp_path, capsys):
    data = _images(tmp_path / "imgs", ("a.png",))
    for name in HOSTILE:  # copies of a.png byte for byte: named in the duplicate warning
        (data / name).write_bytes((data / "a.png").read_bytes())
    (data / "bad\x1b[31mx.png").write_bytes(b"not a png")  # skipped: named in the summary
    args = _fid(tmp_path, tiny_ckpt, data)
    args[args.index("--limit") + 1] = "4"
    env = dict(os.environ, PYTHONPATH=str(CODE_ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "alit_eval", *args], env=env, capture_output=True, text=True,
                          timeout=240)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "\x1b" not in output and not any(line.startswith("error:") for line in output.splitlines())
    assert "\\x1b[2J" in output and "c\\nerror: forged.png" in output  # shown, escaped, not hidden
    assert "bad\\x1b[31mx.png" in output
    # the report of the run: no control code in report.md or report.html, no forged Markdown line
    code, stdout, err = _cli(["--results-dir", str(tmp_path / "R"), "report", str(tmp_path / "R" / "fid"),
                              "--out", str(tmp_path / "rep")], capsys)
    assert code in (0, None), err
    for name in ("report.md", "report.html"):
        text = (tmp_path / "rep" / name).read_text(encoding="utf-8")
        assert "\x1b" not in text and "bad\\x1b[31mx.png" in text
        assert not any(line.startswith("error:") for line in text.splitlines())
    assert "\x1b" not in stdout + err


def test_printable_escapes_controls_and_keeps_text():
    from alit_eval.printable import printable, printable_text

    assert printable("café/猫.png") == "café/猫.png"
    assert printable("a\x1b[2Jb\nc\td\u202ee\x9b") == "a\\x1b[2Jb\\nc\\td\\u202ee\\x9b"
    assert printable(Path("x\x07")) == "x\\x07"
    assert printable_text("line one\nline\x1b two") == "line one\nline\\x1b two"
