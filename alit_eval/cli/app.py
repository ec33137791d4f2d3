"""The ``alit-eval`` command line: the Typer app, its global options, and the command table.

Commands live one per module in ``alit_eval/cli/`` and are registered from `COMMANDS`, so adding
one is one line here. Command modules import only typer and the stdlib at module level; torch,
pandas and the rest are imported inside the command body, so ``alit-eval --help`` stays instant.

`main` is the console-script entry point: an `AlitEvalError` becomes one ``error: ...`` line on
stderr and exit code 2 (full traceback with ``-v``); Ctrl-C becomes exit code 130 with a hint
that rerunning resumes.
"""

from __future__ import annotations

import functools
import logging
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

import typer

from alit_eval import __version__
from alit_eval.cli.options import GlobalOptions, parse_device
from alit_eval.errors import AlitEvalError
from alit_eval.paths import DEFAULT_RESULTS_DIR, env_offline
from alit_eval.registry import resolve_target

# Command name -> "module:function". Each planned command is added by uncommenting its line once
# its module exists; until then it is simply absent (no stub pretends to work).
COMMANDS: dict[str, str] = {
    "models": "alit_eval.cli.models:models",
    "convert": "alit_eval.cli.convert:convert",
    "fid": "alit_eval.cli.fid:fid",
    "fid-stats": "alit_eval.cli.fid_stats:fid_stats",
    "demo-data": "alit_eval.cli.demo_data:demo_data",
    "allocate": "alit_eval.cli.allocate:allocate",
    "entropy-correlation": "alit_eval.cli.entropy_correlation:entropy_correlation",
    "familiarity": "alit_eval.cli.familiarity:familiarity",
    "compare": "alit_eval.cli.compare:compare",
    "downstream": "alit_eval.cli.downstream:downstream",
    "attention-viz": "alit_eval.cli.attention_viz:attention_viz",
    "discovery": "alit_eval.cli.discovery:discovery",
    "report": "alit_eval.cli.report:report",
    "rate-distortion": "alit_eval.cli.rate_distortion:rate_distortion",
    "profile": "alit_eval.cli.profile:profile",
}

# Commands that draw figures: the plot theme is set once, here, before their body runs (never at
# import, so ``--help`` stays instant; the analysis modules never set it themselves).
DRAWS_FIGURES = frozenset({"fid", "allocate", "entropy-correlation", "familiarity", "downstream", "attention-viz",
                           "compare", "discovery", "report", "rate-distortion", "profile"})

INTERRUPTED_MESSAGE = "interrupted; rerun the same command to resume"


class _Interrupted(Exception):
    """Ctrl-C inside a command, carried past Typer (which would turn it into a silent exit 130)."""


app = typer.Typer(
    name="alit-eval",
    help=(
        "Evaluate adaptive-length image tokenizers (ALIT and friends): reconstruction quality and "
        "rFID per token budget, and the paper's analyses.\n\n"
        "Global options go before the command, e.g.:\n\n"
        "    alit-eval --device cpu --seed 0 models"
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_show_locals=False,  # locals can be multi-GB tensors
    context_settings={"help_option_names": ["-h", "--help"]},
)

# The options of the current invocation, for `main` (which runs after the context is gone).
_current = GlobalOptions()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"alit-eval {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    ctx: typer.Context,
    device: str = typer.Option(
        "auto", "--device", callback=parse_device, metavar="auto|cpu|cuda[:N]",
        help="Where to run; auto = CUDA when available, else CPU.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for every random generator a command creates."),
    results_dir: Path = typer.Option(
        DEFAULT_RESULTS_DIR, "--results-dir", help="Root folder for `results/<command>/<run_id>/`.",
    ),
    offline: bool = typer.Option(
        False, "--offline",
        help="Never use the network (also ALIT_EVAL_OFFLINE=1 or HF_HUB_OFFLINE=1).",
    ),
    verbose: int = typer.Option(
        0, "-v", "--verbose", count=True, help="More output; full tracebacks on errors (-vv: debug).",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit.",
    ),
) -> None:
    global _current
    _current = GlobalOptions(
        device=device, seed=seed, results_dir=results_dir,
        offline=offline or env_offline(), verbose=verbose,
    )
    ctx.obj = _current
    logging.basicConfig(
        level=logging.WARNING - 10 * min(verbose, 2), format="%(levelname)s %(name)s: %(message)s"
    )


def _guard(func: Callable[..., Any], *, theme: bool = False) -> Callable[..., Any]:
    """Let Ctrl-C inside a command reach `main` as `_Interrupted` (Typer would swallow it); set the
    plot theme first when the command draws figures (`theme`)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            if theme:
                from alit_eval.results.plots import set_theme

                set_theme()
            return func(*args, **kwargs)
        except KeyboardInterrupt as exc:
            raise _Interrupted() from exc

    return wrapper


for _name, _target in COMMANDS.items():
    app.command(_name)(_guard(resolve_target(_target), theme=_name in DRAWS_FIGURES))


def _one_line(exc: BaseException) -> str:
    from alit_eval.errors import one_line

    return one_line(exc)


def _short_warning(message: Any, category: type, filename: str, lineno: int, line: Any = None) -> str:
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> None:
    """Run the CLI (console script ``alit-eval``); `argv` defaults to ``sys.argv[1:]``."""
    global _current
    _current = GlobalOptions()
    warnings.formatwarning = _short_warning  # one readable line per warning on the CLI
    try:
        app(args=argv, prog_name="alit-eval")
    except AlitEvalError as exc:
        if _current.verbose:
            traceback.print_exc()
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, _Interrupted):
        print(INTERRUPTED_MESSAGE, file=sys.stderr)
        sys.exit(130)
    except OSError as exc:  # a read-only or full disk met outside the results writer: still one line
        from alit_eval.results.io import WRITE_ERRNOS, write_error

        if exc.errno not in WRITE_ERRNOS:
            raise
        print(f"error: {_one_line(write_error(exc))}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
