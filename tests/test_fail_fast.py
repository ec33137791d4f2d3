"""A wrong path, count or budget fails at once: before torch is imported (issue 21, friction).

Each command runs in a fresh interpreter; the test checks the one ``error:`` line, exit code 2, and
that ``torch`` was never imported (the slow part: a minute or more on a busy machine).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROBE = ("import sys\nfrom alit_eval.cli.app import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
         "    print('TORCH_LOADED' if 'torch' in sys.modules else 'TORCH_NOT_LOADED')\n    raise\n")


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "ALIT_EVAL_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", PROBE, "--results-dir", str(cwd), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args,says", [
    (["fid", "--data", "/nonexistent-folder"], "--data /nonexistent-folder: no such file or folder"),
    (["fid", "--ckpt", "nosuch.pth"], "--ckpt nosuch.pth: no such file"),
    (["fid", "--budgets", "100"], "budget(s) 100 not available; this tokenizer produces 8, 16, ..., 64"),
    (["allocate", "--data", "missing/images"], "--data missing/images: no such file or folder"),
    (["compare", "--ckpt", "demo"], "compare needs at least two tokenizers"),
    (["compare", "--ckpt", "a=demo", "--ckpt", "b=nosuch.safetensors"], "--ckpt nosuch.safetensors: no such file"),
    (["fid", "--bugdets", "8"], "No such option: --bugdets"),  # one line, not a box
])
def test_bad_input_fails_before_torch_is_imported(args, says, tmp_path):
    res = _run(args, tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith("error: ") and says in lines[0], res.stderr
    assert "TORCH_NOT_LOADED" in res.stdout, res.stdout


def test_header_budgets_match_the_loaded_tokenizer(tiny_ckpt):
    from alit_eval.cli.early import bundled, header_budgets
    from alit_eval.tokenizers.resolve import load_pretrained

    for path in (Path(tiny_ckpt), bundled("demo")):
        tok, _ = load_pretrained(str(path))
        assert header_budgets(path) == list(tok.budgets)


def test_progress_speaks_every_30_s_during_a_long_batch_with_a_readable_rate(monkeypatch):
    import io
    import time

    from alit_eval.engine import sweep

    monkeypatch.setattr(sweep, "PLAIN_EVERY_S", 0.2)  # stands for 30 s
    stream = io.StringIO()
    with sweep._progress(True, 4, 0, "karl: reconstruction", stream=stream) as advance:
        time.sleep(0.7)  # one slow batch: no image finished yet, the timer still reports
        advance(2)
        time.sleep(0.5)
        advance(2)
    lines = stream.getvalue().splitlines()
    assert any("(working on a batch)" in line and line.startswith("karl: reconstruction: 0/4") for line in lines), lines
    assert all("0.0 img/s" not in line for line in lines)
    assert "s/img" in lines[-1] or "img/s" in lines[-1]
    assert sweep._rate(2, 60.0) == "30 s/img" and sweep._rate(30, 10.0) == "3.0 img/s"


def test_a_warning_is_printed_once(capsys):
    import logging

    from alit_eval.cli import console as cli

    cli.ONCE.seen.clear()
    record = logging.LogRecord("alit_eval.data.sources", logging.WARNING, "", 0, "center-crop zero-pads 1 of 5", None,
                               None)
    assert cli.ONCE.filter(record) and not cli.ONCE.filter(record)  # the same text twice: shown once
    cli.print_summary(["images: 5 used", "warning: center-crop zero-pads 1 of 5", "warning: rFID rests on 5 images"])
    out = capsys.readouterr()
    assert "zero-pads" not in out.err and "rFID rests on 5 images" in out.err and "images: 5 used" in out.out
    cli.ONCE.seen.clear()


def test_attention_grid_marks_the_slots_the_model_dropped():
    import numpy as np

    from alit_eval.results import plots, plots_tokens

    plots.set_theme()
    image = np.zeros((8, 8, 3), np.uint8)
    maps = {4: np.random.default_rng(0).random((4, 8, 8))}
    argmax = {4: np.zeros((8, 8), int)}
    fig = plots_tokens.attention_grid(image, maps, [0, 1, 2], argmax, title="KARL small (run): x",
                                      dropped={4: [1]})
    marked = [ax for ax in fig.axes if any(t.get_text() == "dropped" for t in ax.texts)]
    assert len(marked) == 1 and marked[0].get_title() in ("", "token 1")
