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
import re
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

import typer

from alit_eval.version import __version__
from alit_eval.cli.options import BEFORE_RUN, GlobalOptions, parse_device
from alit_eval.cli.console import ONCE as _ONCE
from alit_eval.cli.finished import show_finished
from alit_eval.errors import AlitEvalError, RunFinished
from alit_eval.paths import DEFAULT_RESULTS_DIR, env_offline
from alit_eval.printable import EscapingFormatter, printable
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


# The global options (declared on `_global_options`): name -> whether it takes a value. They are also
# accepted after the command name (`alit-eval fid --device cpu`): `AlitGroup` moves them in front.
GLOBAL_OPTIONS = {"--device": True, "--seed": True, "--results-dir": True, "--offline": False,
                  "--verbose": False, "-v": False}
_CODE_SPAN = re.compile(r"(`[^`]*`)")


def escape_markup(text: str | None) -> str | None:
    """Escape ``<`` and ``_`` for the Markdown help renderer, which drops ``<command>`` as inline HTML
    and reads ``a_<L>_b`` as emphasis.

    Indented lines (code blocks) and backtick spans show them as they are and are left alone.
    """
    if not text or ("<" not in text and "_" not in text):
        return text
    lines = []
    for line in text.split("\n"):
        if not line.startswith("    "):
            line = "".join(part if part.startswith("`") else re.sub(r"(?<!\\)([<_])", r"\\\1", part)
                           for part in _CODE_SPAN.split(line))
        lines.append(line)
    return "\n".join(lines)


def _tidy_help(command: Any) -> None:
    """Flags render as flags (no ``<bool>`` type column) and help text keeps its ``<...>``."""
    command.help = escape_markup(command.help)
    get_help_option = command.get_help_option

    def help_option(ctx: Any) -> Any:  # click builds --help lazily: tidy it when it is made
        option = get_help_option(ctx)
        if option is not None and option.metavar is None:
            option.metavar = ""
        return option

    command.get_help_option = help_option
    for param in command.params:
        if getattr(param, "is_flag", False) and not getattr(param, "count", False) and param.metavar is None:
            param.metavar = ""  # typer shows the metavar instead of its "<bool>" type label
        if getattr(param, "help", None):
            param.help = escape_markup(param.help)


def move_global_options(args: list[str], commands: Any) -> list[str]:
    """Move global options given after the command name in front of it.

    ``alit-eval fid --device cpu --budgets 4`` becomes ``alit-eval --device cpu fid --budgets 4``.
    Nothing after a ``--`` is touched, and no command declares an option of the same name.
    """
    at, i = None, 0
    while i < len(args) and at is None:  # the command is the first word that is not a global option's value
        if args[i] in commands:
            at = i
        i += 2 if GLOBAL_OPTIONS.get(args[i], False) else 1
    if at is None:
        return args
    head, command, tail = args[:at], args[at], args[at + 1:]
    moved: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(tail):
        arg = tail[i]
        if arg == "--":
            rest += tail[i:]
            break
        name = arg.split("=", 1)[0]
        if name in GLOBAL_OPTIONS or re.fullmatch(r"-v+", arg):
            takes_value = GLOBAL_OPTIONS.get(name, False) and "=" not in arg
            moved += tail[i:i + 1 + int(takes_value)]
            i += 1 + int(takes_value)
            continue
        rest.append(arg)
        i += 1
    return [*head, *moved, command, *rest]


class AlitGroup(typer.core.TyperGroup):
    """The top-level group: global options accepted after the command too; tidy help (see `_tidy_help`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _tidy_help(self)
        for command in self.commands.values():
            _tidy_help(command)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, move_global_options(list(args), self.commands))


app = typer.Typer(
    cls=AlitGroup,
    name="alit-eval",
    help=(
        "Evaluate adaptive-length image tokenizers (ALIT and friends): reconstruction quality and "
        "rFID per token budget, and the paper's analyses.\n\n"
        "Global options go before the command (or after it), e.g.:\n\n"
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
    handler = logging.StreamHandler()
    # File names reach log messages; the formatter escapes their control codes (alit_eval.printable).
    handler.setFormatter(EscapingFormatter("%(levelname)s %(name)s: %(message)s"))
    _ONCE.seen.clear()  # a new command: its warnings are new
    handler.addFilter(_ONCE)  # only the console handler made here (a host's handlers see every record)
    logging.basicConfig(level=logging.WARNING - 10 * min(verbose, 2), handlers=[handler])




def _guard(func: Callable[..., Any], *, theme: bool = False) -> Callable[..., Any]:
    """Let Ctrl-C inside a command reach `main` as `_Interrupted` (Typer would swallow it); show a
    finished run instead of recomputing it (`RunFinished`); set the plot theme first when the
    command draws figures (`theme`)."""

    def set_theme() -> None:
        from alit_eval.results.plots import set_theme

        set_theme()

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            ctx = kwargs.get("ctx")
            draws = False
            if theme:
                from alit_eval.results.plots import drawing

                # a bad ALIT_EVAL_FIGURE_FORMATS stops the command before any work; with none,
                # matplotlib and seaborn are not even imported (`report` sets the theme itself)
                draws = drawing()
            if draws and hasattr(func, "sweep_options") and hasattr(ctx, "meta"):
                ctx.meta[BEFORE_RUN] = set_theme  # after the options are checked: heavy imports are fine then
            elif draws:
                set_theme()
            return func(*args, **kwargs)
        except KeyboardInterrupt as exc:
            raise _Interrupted() from exc
        except RunFinished as exc:
            show_finished(exc.path, exc.summary())
            return None

    return wrapper


for _name, _target in COMMANDS.items():
    app.command(_name)(_guard(resolve_target(_target), theme=_name in DRAWS_FIGURES))


def _one_line(exc: BaseException) -> str:
    from alit_eval.errors import one_line

    return one_line(exc)


def _short_warning(message: Any, category: type, filename: str, lineno: int, line: Any = None) -> str:
    return f"warning: {printable(message)}\n"  # one line, whatever names the message carries


def _click_errors() -> tuple[type, type, tuple[type, ...]]:
    """Click's UsageError, ClickException and Abort classes, wherever this Typer keeps its click
    (recent Typer vendors it as ``typer._click``; older ones use the ``click`` package)."""
    try:
        from typer.core import _click as click_module  # type: ignore[attr-defined]
    except ImportError:
        import click as click_module
    errors = click_module.exceptions
    aborts = tuple({cls for cls in (getattr(errors, "Abort", None), getattr(__import__("typer").exceptions, "Abort",
                                                                             None)) if cls is not None})
    return errors.UsageError, errors.ClickException, aborts


def main(argv: list[str] | None = None) -> None:
    """Run the CLI (console script ``alit-eval``); `argv` defaults to ``sys.argv[1:]``."""
    global _current
    _current = GlobalOptions()
    warnings.formatwarning = _short_warning  # one readable line per warning on the CLI
    usage_error, click_error, abort = _click_errors()
    try:
        # Not standalone: a usage error (a misspelled option) becomes the one `error:` line, not a box.
        code = app(args=argv, prog_name="alit-eval", standalone_mode=False)
        if code == 130:
            raise _Interrupted
        # An Exit (--version, --help, typer.Exit) carries its code; success exits 0, as a console script
        # run in standalone mode always did (callers and tests rely on the SystemExit).
        sys.exit(code if isinstance(code, int) else 0)
    except usage_error as exc:
        print(f"error: {_one_line(Exception(exc.format_message()))}"
              + (f" (see alit-eval {exc.ctx.info_name} --help)" if exc.ctx is not None and exc.ctx.parent else
                 " (see alit-eval --help)"), file=sys.stderr)
        sys.exit(2)
    except click_error as exc:
        print(f"error: {_one_line(Exception(exc.format_message()))}", file=sys.stderr)
        sys.exit(exc.exit_code or 2)
    except abort:
        print(INTERRUPTED_MESSAGE, file=sys.stderr)
        sys.exit(130)
    except AlitEvalError as exc:
        if _current.verbose:
            traceback.print_exc()
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, _Interrupted):
        print(INTERRUPTED_MESSAGE, file=sys.stderr)
        sys.exit(130)
    except OSError as exc:  # a read-only or full disk met outside the results writer: still one line
        from alit_eval.results.atomic import WRITE_ERRNOS, write_error

        if exc.errno not in WRITE_ERRNOS:
            raise
        print(f"error: {_one_line(write_error(exc))}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
