"""Issue 16 friction items: console summary, finished-run reuse, progress lines, help text, fast errors,
``--batch-size auto`` everywhere, incomplete runs in ``report``, the demo tokenizer's sha256."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from alit_eval.cli import options
from alit_eval.cli.app import app, escape_markup, move_global_options

REPO = Path(__file__).resolve().parents[1]


def _images(folder: Path) -> Path:
    """2 good images (one smaller than the tiny model's 32 px), one duplicate of them, 2 broken files."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / "good0.png")
    Image.fromarray(rng.integers(0, 255, (24, 40, 3), dtype=np.uint8)).save(folder / "small1.png")
    (folder / "copy2.png").write_bytes((folder / "good0.png").read_bytes())
    (folder / "broken3.png").write_bytes(b"not an image")
    (folder / "broken4.jpg").write_bytes(b"\xff\xd8\xff garbage")
    return folder


def test_summary_and_finished_run_is_shown_not_recomputed(tiny_ckpt, tmp_path, monkeypatch):
    data = _images(tmp_path / "imgs")
    args = ["--results-dir", str(tmp_path / "res"), "fid", "--device", "cpu", "--ckpt", str(tiny_ckpt),
            "--data", str(data), "--budgets", "4,16", "--no-fid", "--no-compute", "--preprocess", "center-crop"]
    runner = CliRunner()
    res = runner.invoke(app, args)  # --device after the command: accepted as the global option
    assert res.exit_code == 0, res.output
    out = res.output
    assert "images: 3 used, 2 skipped (broken3.png: " in out and "broken4.jpg: " in out
    assert "preprocess: center-crop to 32x32 px" in out
    assert "center-crop zero-pads 1 of 5 images" in out and "1 of 5 images duplicate" in out
    assert out.index("reconstruction per token budget") < out.index("images: 3 used")  # once, at the end
    assert out.count("images: 3 used") == 1
    run = next((tmp_path / "res" / "fid").iterdir())
    extra = json.loads((run / "meta.json").read_text())["extra"]
    assert (extra["padded_images"], extra["duplicate_images"]) == (1, 1)
    assert extra["summary"][0].startswith("images: 3 used, 2 skipped")

    from alit_eval.engine.plan import SweepPlan

    def no_sweep(*a, **k):
        raise AssertionError("a finished run must not be recomputed")

    monkeypatch.setattr(SweepPlan, "execute", no_sweep)
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "already holds this finished run" in again.output and "images: 3 used, 2 skipped" in again.output
    assert "reconstruction per token budget" in again.output

    monkeypatch.undo()  # a changed image is never shown from the old run: it is recomputed
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(data / "good0.png")
    changed = runner.invoke(app, args)
    assert changed.exit_code == 0, changed.output
    assert "already holds this finished run" not in changed.output


def _inputs(n_used: int, fid: bool, failed=()):
    per_image = pd.DataFrame({"image_id": [f"i{k}" for k in range(n_used)]})
    result = SimpleNamespace(failed=list(failed), per_image=per_image,
                             info={"inception": {"resize": "tf1"} if fid else None})
    return SimpleNamespace(result=result, preprocess="resize-center-crop", _source=None,
                           config={"fid": fid, "image_size": 256})


def test_summary_lines_rfid_warning_and_reasons():
    from alit_eval.analysis.skeleton import summary_lines

    failed = [(f"bad{k}.jpg", "cannot decode") for k in range(5)]
    lines = summary_lines(_inputs(10, True, failed), {"fid_reference": "originals"})
    assert lines[0] == ("images: 10 used, 5 skipped (bad0.jpg: cannot decode; bad1.jpg: cannot decode; "
                        "bad2.jpg: cannot decode; ...)")
    assert "preprocess: resize-center-crop to 256x256 px" in lines
    assert "FID reference: originals (10 images)" in lines
    assert any(x.startswith("warning: rFID rests on 10 images (< 2048)") for x in lines)
    npz = summary_lines(_inputs(3000, True), {"fid_reference": "npz:ref.npz", "fid_reference_n": 50000})
    assert "FID reference: npz:ref.npz (50000 images)" in npz and not any("warning" in x for x in npz)
    assert not any("FID" in x for x in summary_lines(_inputs(10, False), {}))


def test_plain_progress_lines_when_not_a_terminal():
    from alit_eval.engine.sweep import _progress

    stream = io.StringIO()  # not a TTY: plain lines instead of a live bar
    with _progress(True, 20, 4, "reconstruction + Inception", stream=stream) as advance:
        for _ in range(10):
            advance(2)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "reconstruction + Inception: 20 images to process (4 already done)"
    assert len(lines) == 11 and lines[1].startswith("reconstruction + Inception: 2/20 images (10%)")
    assert "20/20 images (100%)" in lines[-1] and "done in" in lines[-1]
    quiet = io.StringIO()
    with _progress(False, 20, 0, stream=quiet) as advance:
        advance(20)
    assert quiet.getvalue() == ""


def test_help_keeps_angle_brackets_and_flags_have_no_type():
    runner = CliRunner()
    top = runner.invoke(app, ["--help"], terminal_width=200, env={"COLUMNS": "200"})
    assert "results/<command>/<run_id>/" in top.output
    fid = runner.invoke(app, ["fid", "--help"], terminal_width=200, env={"COLUMNS": "200"})
    assert fid.exit_code == 0
    assert "results/<command>/<config hash>" in fid.output
    for flag in ("--kid", "--no-fid", "--overwrite", "--help"):
        row = next(line for line in fid.output.splitlines() if f"{flag} " in line)
        assert "<bool>" not in row, row
    assert "<bool>" not in fid.output
    assert escape_markup("a_<L>_b `x<y>` ok") == r"a\_\<L>\_b `x<y>` ok"
    assert escape_markup("    code <kept>") == "    code <kept>"


def test_global_options_after_the_command():
    commands = {"fid", "models"}
    assert move_global_options(["fid", "--device", "cpu", "--budgets", "4", "-vv", "--seed=3"], commands) == [
        "--device", "cpu", "-vv", "--seed=3", "fid", "--budgets", "4"]
    assert move_global_options(["--results-dir", "models", "fid", "--offline"], commands) == [
        "--results-dir", "models", "--offline", "fid"]
    assert move_global_options(["fid", "--", "--seed"], commands) == ["fid", "--", "--seed"]
    res = CliRunner().invoke(app, ["fid", "--device", "tpu"])
    assert res.exit_code == 2 and "not a device" in res.output


def test_bad_arguments_fail_before_heavy_imports():
    bad = [
        (["fid", "--budgets", "abc"], "--budgets"),
        (["fid", "--preprocess", "crop", "--data", "x"], "--preprocess 'crop' is not known"),
        (["fid", "--preprocess", "center-crop"], "--preprocess does not apply to the demo split"),
        (["fid", "--fid-resize", "bicubic"], "--fid-resize"),
        (["allocate", "--halting", "nope"], "--halting 'nope'"),
        (["fid", "--precision", "fp8"], "--precision"),
        (["entropy-correlation", "--batch-size", "0"], "--batch-size"),
        (["allocate", "--thresholds", "0.1,q2"], "--thresholds"),
    ]
    script = (
        "import sys, json\n"
        "from alit_eval.cli.app import main\n"
        "out = []\n"
        f"for args in {json.dumps([a for a, _ in bad])}:\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as e:\n"
        "        out.append(e.code)\n"
        "print(json.dumps([out, [m for m in ('torch', 'seaborn', 'pandas') if m in sys.modules]]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO)}, timeout=120)
    codes, heavy = json.loads(done.stdout.strip().splitlines()[-1])
    assert codes == [2] * len(bad), done.stderr
    assert heavy == [], "a bad option must fail before heavy imports"
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == len(bad)
    for line, (_, needle) in zip(errors, bad):
        assert needle in line, line


def test_option_names_match_the_engine():
    from alit_eval.data.transforms import PREPROCESS
    from alit_eval.engine.fastpath import PRECISIONS
    from alit_eval.metrics.inception import RESIZE_MODES
    from alit_eval.tokenizers.alit.halting import HALTING_POLICIES
    from alit_eval.tokenizers.alit.options import HALTING_CHOICES

    assert set(options.PREPROCESS_MODES) == set(PREPROCESS.names())
    assert set(HALTING_CHOICES) == set(HALTING_POLICIES.names())  # the option's declaration, the model's policies
    assert options.FID_RESIZE_MODES == RESIZE_MODES and options.PRECISIONS == PRECISIONS


def test_batch_size_auto_in_every_sweep_command(tiny_ckpt, tmp_path):
    from alit_eval.cli.app import COMMANDS
    from alit_eval.registry import resolve_target

    sweeps = [name for name, target in COMMANDS.items() if hasattr(resolve_target(target), "sweep_options")]
    assert {"fid", "allocate", "entropy-correlation"} <= set(sweeps)
    for name in sweeps:
        assert "batch_size" in resolve_target(COMMANDS[name]).sweep_options, name
    assert options.parse_batch_size("auto") == 0 and options.parse_batch_size("8") == 8
    args = ["--results-dir", str(tmp_path), "--device", "cpu", "allocate", "--ckpt", str(tiny_ckpt), "--limit", "4",
            "--batch-size", "auto", "--no-fid", "--no-gallery", "--thresholds", "0.5", "--budgets", "4,16",
            "--run-id", "a"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "allocate" / "a" / "meta.json").read_text())
    assert meta["extra"]["rollout_calls"] == 1  # auto on CPU starts at 16 images: one batch of 4
    again = CliRunner().invoke(app, args)  # finished: allocate's own table, shown at once
    assert again.exit_code == 0, again.output
    assert "already holds this finished run" in again.output and "token allocation (l1 criterion)" in again.output


def test_report_skips_incomplete_runs_in_a_folder(tmp_path):
    from alit_eval.results.report_runs import expand

    for name, complete in (("a", True), ("b", False)):
        run = tmp_path / "fid" / name
        run.mkdir(parents=True)
        (run / "config.json").write_text("{}")
        if complete:
            (run / "meta.json").write_text("{}")
    with pytest.warns(UserWarning, match=r"skipping incomplete run .*fid/b \(no meta.json"):
        assert expand([tmp_path / "fid"]) == [tmp_path / "fid" / "a"]
    assert expand([tmp_path / "fid" / "b"]) == [tmp_path / "fid" / "b"]  # named on its own: reported
    (tmp_path / "fid" / "a" / "meta.json").unlink()
    with pytest.raises(Exception, match="only incomplete runs"), pytest.warns(UserWarning):
        expand([tmp_path / "fid"])


def test_demo_tokenizer_sha256_is_known():
    from alit_eval.paths import sha256_file
    from alit_eval.tokenizers.pretrained import PRETRAINED

    entry = PRETRAINED.get("demo")
    assert entry.sha256 == sha256_file(REPO / "alit_eval" / "assets" / entry.bundled)


def test_images_that_are_not_rgb_are_named_in_the_summary_and_meta(tiny_ckpt, tmp_path):
    # Issue 21: a greyscale image was converted to RGB without a word; the numbers stay those of the
    # converted image, but the summary says which images were converted and how.
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / "colour.png")
    Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(folder / "grey0.png")
    Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(folder / "grey1.png")
    Image.fromarray(rng.integers(0, 255, (40, 40, 4), dtype=np.uint8)).save(folder / "alpha.png")
    args = ["--results-dir", str(tmp_path / "res"), "fid", "--device", "cpu", "--ckpt", str(tiny_ckpt),
            "--data", str(folder), "--budgets", "4", "--no-fid", "--no-compute"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    note = next(line for line in res.output.splitlines() if line.startswith("note: "))
    assert note.startswith("note: 3 of 4 images are not RGB and were converted to RGB: 2 L (grey repeated in R, G, B:")
    assert "grey0.png" in note and "grey1.png" in note and "1 RGBA (alpha dropped: alpha.png)" in note
    assert "colour.png" not in note
    run = next((tmp_path / "res" / "fid").iterdir())
    extra = json.loads((run / "meta.json").read_text())["extra"]
    assert extra["converted_to_rgb"] == {"L": 2, "RGBA": 1}
    # An all-RGB folder: no note, an empty count.
    for name in ("grey0.png", "grey1.png", "alpha.png"):
        (folder / name).unlink()
    res = CliRunner().invoke(app, args + ["--run-id", "rgb"])
    assert res.exit_code == 0 and "note: " not in res.output, res.output
    assert json.loads((tmp_path / "res" / "fid" / "rgb" / "meta.json").read_text())["extra"]["converted_to_rgb"] == {}
