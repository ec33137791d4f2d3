"""Tests of the CLI skeleton: startup cost, global options, `models`, `convert` wiring and errors.

`convert_any` is replaced by a fake module in ``sys.modules``, so these tests check the
command's wiring, not the conversion (tested with the checkpoint code).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Optional

import pytest
import typer
from typer.testing import CliRunner

from alit_eval.cli import app as cli_app
from alit_eval.cli.app import COMMANDS, INTERRUPTED_MESSAGE, app, main
from alit_eval.cli.options import (
    GlobalOptions,
    budgets_option,
    get_globals,
    overwrite_option,
    parse_budgets,
    parse_floats,
    run_id_option,
)
from alit_eval.errors import AlitEvalError
from alit_eval.tokenizers.pretrained import PRETRAINED

runner = CliRunner()
WIDE = {"COLUMNS": "200"}


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("ALIT_EVAL_CACHE", str(tmp_path / "cache"))
    for name in ("ALIT_EVAL_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake_convert(monkeypatch):
    """Install a fake `alit_eval.tokenizers.family_loading` module (its `convert_any`); return its calls."""
    calls: list[dict] = []
    module = types.ModuleType("alit_eval.tokenizers.family_loading")

    def convert_any(src, dst, *, family=None, trust_checkpoint=False, heads=None):
        calls.append({"src": Path(src), "dst": Path(dst), "trust_checkpoint": trust_checkpoint, "heads": heads})
        Path(dst).write_bytes(b"converted")
        return {"family": family or "alit", "config": {"width": 1024, "depth": 8, "heads": heads or 8},
                "num_params": 262_000_000, "source_sha256": "cd" * 32, "sha256": "ab" * 32, "path": str(dst)}

    module.convert_any = convert_any
    monkeypatch.setitem(sys.modules, "alit_eval.tokenizers.family_loading", module)
    return calls


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run the console-script entry point; return (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out, out.err


# ---------------------------------------------------------------- startup


def _cli_command() -> list[str]:
    script = Path(sys.executable).with_name("alit-eval")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "alit_eval"]


def test_cli_import_does_not_import_heavy_modules():
    code = ("import sys, alit_eval.cli.app; heavy = [m for m in ('torch', 'torchvision', 'pandas', 'numpy', "
            "'scipy', 'matplotlib') if m in sys.modules]; assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_help_is_fast_and_lists_commands():
    env = {**os.environ, "COLUMNS": "120"}
    subprocess.run(_cli_command() + ["--help"], capture_output=True, timeout=60, env=env)  # warm caches
    start = time.perf_counter()
    done = subprocess.run(_cli_command() + ["--help"], capture_output=True, text=True, timeout=60, env=env)
    wall = time.perf_counter() - start
    print(f"alit-eval --help wall time: {wall:.3f} s (target < 1 s)")
    assert done.returncode == 0, done.stderr
    assert "models" in done.stdout and "convert" in done.stdout
    assert wall < 3.0


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_help_shows_a_worked_example(name):
    result = runner.invoke(app, [name, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "Example" in result.output and f"alit-eval {name}" in result.output


def test_registered_commands_are_listed_and_unknown_ones_refused():
    result = runner.invoke(app, ["--help"], env=WIDE)
    assert all(name in result.output for name in COMMANDS)
    result = runner.invoke(app, ["no-such-command", "--help"])
    assert result.exit_code == 2 and "No such command" in result.output


# ---------------------------------------------------------------- global options and parsers


def test_global_options_are_stored(monkeypatch):
    result = runner.invoke(app, ["--device", "CUDA:1", "--seed", "7", "--results-dir", "out", "--offline",
                                 "-vv", "models", "--json"])
    assert result.exit_code == 0, result.output
    # cli_app.GlobalOptions, not the name imported above: test_family_contract reloads cli.app (a new class)
    # when it registers its toy family, and a dataclass equals only an instance of its own class.
    want = cli_app.GlobalOptions(device="cuda:1", seed=7, results_dir=Path("out"), offline=True, verbose=2)
    assert cli_app._current == want

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert runner.invoke(app, ["models", "--json"]).exit_code == 0
    assert cli_app._current.offline and cli_app._current.device == "auto" and cli_app._current.seed == 0


def test_bad_device_is_a_usage_error():
    result = runner.invoke(app, ["--device", "gpu", "models"])
    assert result.exit_code == 2 and "not a device" in result.output


def test_parse_budgets():
    assert parse_budgets("32,64, 128") == [32, 64, 128]
    assert parse_budgets("256,32,32") == [32, 256]
    assert parse_floats("0.05,0.07", option="--thresholds") == [0.05, 0.07]
    for text, expected in [("", "comma-separated"), ("32,,64", "comma-separated"),
                           ("32,abc", "'abc' is not a positive whole number"), ("-32", "'-32' is not"),
                           ("0", "'0' is not"), ("32.5", "'32.5' is not")]:
        with pytest.raises(AlitEvalError, match=expected) as info:
            parse_budgets(text)
        assert str(info.value).startswith("--budgets ")


def test_shared_options_in_a_command():
    seen = {}
    demo = typer.Typer()

    @demo.command()
    def cmd(ctx: typer.Context, budgets: str = budgets_option(), run_id: Optional[str] = run_id_option(),
            overwrite: bool = overwrite_option()) -> None:
        seen.update(budgets=parse_budgets(budgets), run_id=run_id, overwrite=overwrite, globals=get_globals(ctx))

    assert runner.invoke(demo, []).exit_code == 0
    assert seen["budgets"] == [32, 64, 128, 256] and seen["run_id"] is None and seen["overwrite"] is False
    assert seen["globals"] == cli_app.GlobalOptions()  # defaults outside the alit-eval app (class: see above)
    assert runner.invoke(demo, ["--budgets", "64,32", "--run-id", "x", "--overwrite"]).exit_code == 0
    assert seen["budgets"] == [32, 64] and seen["run_id"] == "x" and seen["overwrite"] is True


def test_unavailable_cuda_is_a_clear_error():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    from alit_eval.engine.device import resolve_device

    assert resolve_device(GlobalOptions(device="auto").device).type == "cpu"
    with pytest.raises(AlitEvalError, match="CUDA is not available"):
        resolve_device(GlobalOptions(device="cuda").device)


# ---------------------------------------------------------------- models


def test_models_json_reports_cache_state(tmp_path):
    entry = PRETRAINED.get("alit_base.vqgan_quantized.in100")
    cached = tmp_path / "cache" / "checkpoints" / "imagenet100" / entry.filename
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"weights")
    (cached.parent / (entry.filename + ".sha256")).write_text(f"{hashlib.sha256(b'weights').hexdigest()}  x\n")

    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["checkpoints_dir"] == str(tmp_path / "cache" / "checkpoints")
    rows = {row["name"]: row for row in data["models"]}
    assert list(rows) == PRETRAINED.names()
    assert rows[entry.name]["status"] == "cached" and rows[entry.name]["path"] == str(cached)
    assert rows[entry.name]["sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert rows["alit_small.vae_quantized.in100"]["status"] == "not cached"
    assert rows["demo"]["status"] in {"bundled", "not yet bundled"}


def test_models_table(tmp_path):
    result = runner.invoke(app, ["models"], env=WIDE)
    assert result.exit_code == 0, result.output
    for name in PRETRAINED.names():
        assert name in result.output
    assert "alit_semilarge_vqgan_quantized_latents.pth" in result.output
    assert str(tmp_path / "cache" / "checkpoints") in result.output.replace("\n", "")
    narrow = runner.invoke(app, ["models"], env={"COLUMNS": "80"})
    assert narrow.exit_code == 0 and "alit_semilarge.vqgan_quantized.in100" in narrow.output


# ---------------------------------------------------------------- convert


def test_convert_local_file(tmp_path, fake_convert):
    src = tmp_path / "ckpt.pth"
    src.write_bytes(b"pickle")
    out = tmp_path / "sub" / "model.safetensors"
    result = runner.invoke(app, ["convert", str(src), str(out), "--heads", "8", "--trust-checkpoint"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert fake_convert == [{"src": src, "dst": out, "trust_checkpoint": True, "heads": 8}]
    assert "262.0 M" in result.output and "ab" * 32 in result.output and "width=1024" in result.output


def test_convert_pretrained_name_uses_the_cache(tmp_path, fake_convert):
    entry = PRETRAINED.get("alit_small.vae_continuous.in100")
    cached = entry.cache_path()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"official")
    out = tmp_path / "vae.safetensors"
    result = runner.invoke(app, ["--offline", "convert", entry.name, str(out)])
    assert result.exit_code == 0, result.output
    assert fake_convert[0]["src"] == cached and fake_convert[0]["trust_checkpoint"] is False
    assert fake_convert[0]["heads"] is None


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["convert", "alit_smal", "OUT"], "Did you mean 'alit_small.vqgan_quantized.in1k'"),
        (["convert", "nowhere/ckpt.pth", "OUT"], "checkpoint file not found: nowhere/ckpt.pth"),
        (["convert", "SRC", "out.pt"], "OUT must end in .safetensors"),
        (["--offline", "convert", "alit_base.vqgan_quantized.in100", "OUT"], "is not in the cache and alit-eval is offline"),
        (["convert", "SRC", "EXISTING"], "already exists; pass --overwrite"),
    ],
)
def test_convert_errors_are_one_line_exit_2(tmp_path, capsys, fake_convert, args, expected):
    src = tmp_path / "ckpt.pth"
    src.write_bytes(b"pickle")
    existing = tmp_path / "existing.safetensors"
    existing.write_bytes(b"old")
    subst = {"SRC": str(src), "OUT": str(tmp_path / "o.safetensors"), "EXISTING": str(existing)}
    code, out, err = run_main([subst.get(a, a) for a in args], capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err
    assert "Traceback" not in err and fake_convert == []
    assert existing.read_bytes() == b"old"


def test_offline_error_names_the_cache_path(tmp_path, capsys):
    code, _, err = run_main(["--offline", "convert", "alit_base.vqgan_quantized.in100", "x.safetensors"], capsys)
    target = tmp_path / "cache" / "checkpoints" / "imagenet100" / "alit_base_vqgan_quantized_latents.pth"
    assert code == 2 and f"put it at {target}" in err


def test_verbose_shows_the_traceback(capsys):
    code, _, err = run_main(["-v", "convert", "nowhere/ckpt.pth", "o.safetensors"], capsys)
    assert code == 2 and "Traceback" in err and err.rstrip().endswith("nowhere/ckpt.pth (and it is not a "
                                                                     "pretrained name; see `alit-eval models`)")


def test_ctrl_c_exits_130_with_resume_hint(tmp_path, capsys, monkeypatch, fake_convert):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sys.modules["alit_eval.tokenizers.family_loading"], "convert_any", interrupted)
    src = tmp_path / "ckpt.pth"
    src.write_bytes(b"pickle")
    code, _, err = run_main(["convert", str(src), str(tmp_path / "o.safetensors")], capsys)
    assert code == 130 and err.strip() == INTERRUPTED_MESSAGE


def test_usage_errors_keep_click_exit_code(capsys):
    code, _, err = run_main(["convert"], capsys)
    assert code == 2 and "Missing argument" in err
    code, out, _ = run_main(["--version"], capsys)
    assert code == 0 and out.startswith("alit-eval ")
