"""Every command's options, compared with the checked-in list in ``tests/data/cli_options.json``.

The list was generated from the Typer app before the option refactor (issue 14), so a refactor that
keeps every ``--help`` option passes, and a deliberate change of the CLI is one visible edit of the
JSON file. Regenerate it with ``python tests/test_cli_options.py`` after such a change.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from alit_eval.cli.app import app

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
