"""Every command's options, compared with the checked-in list in ``tests/data/cli_options.json``.

The list was generated from the Typer app before the option refactor (issue 14), so a refactor that
keeps every ``--help`` option passes, and a deliberate change of the CLI is one visible edit of the
JSON file. Regenerate it with ``python tests/test_cli_options.py`` after such a change.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer.testing import CliRunner

from alit_eval.cli import options
from alit_eval.cli.app import COMMANDS, app

EXPECTED = Path(__file__).parent / "data" / "cli_options.json"


def current_options() -> dict[str, list[str]]:
    """Command name -> sorted option strings (``--budgets``, ``-v``, ...) as the app declares them."""
    group = typer.main.get_command(app)
    out = {"": _option_names(group)}
    for name, cmd in sorted(group.commands.items()):
        out[name] = _option_names(cmd)
    return out


def _option_names(command) -> list[str]:
    # param_type_name, not isinstance: typer vendors its own click in recent versions.
    return sorted(o for p in command.params if p.param_type_name == "option" for o in p.opts + p.secondary_opts)


def test_every_command_keeps_its_options():
    expected = json.loads(EXPECTED.read_text())
    actual = current_options()
    assert sorted(actual) == sorted(expected), "commands differ from tests/data/cli_options.json"
    for name in expected:
        missing = sorted(set(expected[name]) - set(actual[name]))
        added = sorted(set(actual[name]) - set(expected[name]))
        assert not missing and not added, f"{name or '(global)'}: missing {missing}, added {added}"


if __name__ == "__main__":  # regenerate the checked-in list after a deliberate CLI change
    EXPECTED.write_text(json.dumps(current_options(), indent=1, sort_keys=True) + "\n")
    sys.exit(0)


SWEEP_COMMANDS = ("allocate", "discovery", "downstream", "entropy-correlation", "familiarity", "fid",
                  "rate-distortion")


def test_every_sweep_command_has_the_shared_sweep_options():
    actual = current_options()
    shared = {_flag(o) for o in options.SWEEP_OPTIONS}
    for name in SWEEP_COMMANDS:
        assert shared <= set(actual[name]), f"{name} lacks {sorted(shared - set(actual[name]))}"


def test_a_new_sweep_option_declared_once_appears_in_every_sweep_command(monkeypatch):
    new = options.SweepOption("zz_probe", Annotated[int, typer.Option("--zz-probe")], 7, None)
    monkeypatch.setattr(options, "SWEEP_OPTIONS", [*options.SWEEP_OPTIONS, new])
    seen = {}
    demo = typer.Typer()
    try:
        for name in SWEEP_COMMANDS:  # rebuild each command from its module, as the app does
            module = importlib.reload(importlib.import_module(COMMANDS[name].partition(":")[0]))
            command = getattr(module, COMMANDS[name].partition(":")[2])
            assert "zz_probe" in command.sweep_options
            demo.command(name)(command)
        group = typer.main.get_command(demo)
    finally:  # leave the modules as the other tests expect them
        monkeypatch.undo()
        for name in SWEEP_COMMANDS:
            importlib.reload(importlib.import_module(COMMANDS[name].partition(":")[0]))
    monkeypatch.setattr(options, "SWEEP_OPTIONS", [*options.SWEEP_OPTIONS, new])
    for name in SWEEP_COMMANDS:
        assert "--zz-probe" in _option_names(group.commands[name]), name
    # and the value reaches the command's SweepArgs (here: a run option, so not in the config)
    @demo.command("probe")
    @options.sweep_command()
    def probe(ctx: typer.Context, sweep: options.SweepArgs) -> None:
        seen.update(config=sweep.config, run_id=sweep.run_id)

    assert CliRunner().invoke(demo, ["probe", "--zz-probe", "3", "--budgets", "64,32", "--run-id", "r"]).exit_code == 0
    assert seen["config"].budgets == [32, 64] and seen["run_id"] == "r" and seen["config"].preprocess is None


def _flag(option) -> str:
    info = option.annotation.__metadata__[0]  # in Annotated, Option's first positional is the first name
    return next(a for a in (info.default, *info.param_decls) if isinstance(a, str) and a.startswith("--"))
