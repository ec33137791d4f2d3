"""Options shared by the commands: the global options, list parsers, and the sweep options.

Every option that more than one command has is declared once here as a typed ``Annotated`` alias
(``ckpt: Ckpt = "demo"``). The options of a sweep are declared once more, as data, in
`SWEEP_OPTIONS` (and the opt-in groups `MEASURE_OPTIONS`, `LPIPS_OPTIONS`): the `sweep_command`
decorator adds them to a command's signature and hands the command one `SweepArgs` (the single
`SweepConfig` plus the run folder options), so a command declares only what is its own, and a
new sweep option is one entry here.

Stdlib + typer only at import time (``alit-eval --help`` must not import torch).
"""

from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, TypeVar

import typer

from alit_eval.engine.config import SweepConfig
from alit_eval.errors import AlitEvalError
from alit_eval.paths import DEFAULT_RESULTS_DIR

T = TypeVar("T")


@dataclass
class GlobalOptions:
    """Options given before the command name (``alit-eval --device cpu fid ...``).

    Attributes:
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; resolved by `alit_eval.engine.device.resolve_device`
            when a command needs it (never at startup, so ``--help`` stays instant).
        seed: seed for every random generator the command creates.
        results_dir: root folder of results.
        offline: never use the network (also set by ``ALIT_EVAL_OFFLINE=1``/``HF_HUB_OFFLINE=1``).
        verbose: verbosity count (``-v``: more output and full tracebacks on errors).
    """

    device: str = "auto"
    seed: int = 0
    results_dir: Path = field(default_factory=lambda: DEFAULT_RESULTS_DIR)
    offline: bool = False
    verbose: int = 0


def get_globals(ctx: typer.Context) -> GlobalOptions:
    """The `GlobalOptions` stored by the app callback (defaults when a command runs on its own)."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions()


def parse_device(text: str) -> str:
    """Validate a ``--device`` value: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    value = text.strip().lower()
    if value in {"auto", "cpu", "cuda"}:
        return value
    head, _, index = value.partition(":")
    if head == "cuda" and index.isdigit():
        return f"cuda:{int(index)}"
    raise typer.BadParameter(f"{text!r} is not a device; use auto, cpu, cuda or cuda:N")


def parse_list(text: str, convert: Callable[[str], T], *, option: str, what: str) -> list[T]:
    """Parse a comma-separated option value such as ``"32,64,128"``.

    Args:
        text: the raw option value; spaces around items are ignored.
        convert: turns one item into a value; raises ValueError for a bad item.
        option: the option's name, for the error message (e.g. ``--budgets``).
        what: what one item is, for the error message (e.g. ``a whole number``).

    Raises:
        AlitEvalError: empty list, empty item or an item `convert` rejects.
    """
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise AlitEvalError(f"{option} {text!r}: give a comma-separated list such as 32,64,128")
    out = []
    for item in items:
        try:
            out.append(convert(item))
        except ValueError:
            raise AlitEvalError(f"{option} {text!r}: {item!r} is not {what}") from None
    return out


def parse_budgets(text: str, *, option: str = "--budgets") -> list[int]:
    """Parse token budgets like ``"32,64,128"`` into a sorted list of distinct positive ints.

    Whether the tokenizer can produce each budget is checked later, against the loaded model.

    Raises:
        AlitEvalError: not a list of positive whole numbers.
    """

    def positive_int(item: str) -> int:
        value = int(item)
        if value <= 0:
            raise ValueError(item)
        return value

    return sorted(set(parse_list(text, positive_int, option=option, what="a positive whole number")))


def budget_text(text: str | None, *, option: str = "--budgets") -> list[int] | str | None:
    """Read a ``--budgets`` value now (syntax errors are one line): the sorted budgets when the text
    is self-contained (``32,64``, ``8-256:8``, ``1,2,...,16``), else the text itself (``1,2,4,...``,
    ``all``), which is expanded against the tokenizer once it is loaded."""
    if not text:
        return None
    from alit_eval.budgets import parse_budget_spec

    spec = parse_budget_spec(text, option=option)
    return text if spec.everything or spec.open_ends else spec.fixed(option=option)


def parse_floats(text: str, *, option: str) -> list[float]:
    """Parse a comma-separated list of numbers like ``"0.05,0.07"`` (order kept)."""
    return parse_list(text, float, option=option, what="a number")


# Names the engine accepts, repeated here (stdlib only) so that a typo fails before torch is imported;
# tests/test_fast_errors.py checks they equal the engine's registries.
PREPROCESS_MODES = ("center-crop", "resize-center-crop")  # data/transforms.py PREPROCESS
FID_RESIZE_MODES = ("tf1", "pytorch-fid", "clean")  # metrics/inception.py RESIZE_MODES (checked by a test)
PRECISIONS = ("fp32", "bf16", "tf32")  # engine/fastpath.py PRECISIONS


def check_choice(value: str | None, choices: tuple[str, ...], *, option: str) -> str | None:
    """Return `value` if it is one of `choices` (None passes: "not given"), else one error line."""
    if value is not None and value not in choices:
        raise AlitEvalError(f"{option} {value!r} is not known; use one of: {', '.join(choices)}")
    return value


def parse_batch_size(text: str | int) -> int:
    """A positive integer, or ``auto`` (0 internally: a device-dependent start, halved on out-of-memory)."""
    text = str(text).strip()
    if text == "auto":
        return 0
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise AlitEvalError(f"--batch-size must be a positive integer or 'auto'; got {text!r}")


def check_threshold(text: str) -> str:
    """Validate one ``--thresholds`` item: a number, ``auto`` or ``qP`` with 0 <= P <= 1."""
    item = text.strip()
    if item == "auto":
        return item
    try:
        value = float(item[1:]) if item.startswith("q") else float(item)
    except ValueError:
        raise ValueError(item) from None
    if item.startswith("q") and not 0.0 <= value <= 1.0:
        raise ValueError(item)
    return item


def check_applies(config: SweepConfig, *, from_run: Any = None) -> None:
    """Reject an option that would be ignored: ``--preprocess`` on a generated demo split or with ``--from-run``.

    Raises:
        AlitEvalError: one line naming the option and what to do.
    """
    if config.preprocess is None:
        return
    if from_run is not None:
        raise AlitEvalError("--preprocess does not apply with --from-run (the earlier run's images are reused); "
                            "drop --preprocess")
    if isinstance(config.data, str) and config.data.startswith("demo-"):
        raise AlitEvalError(f"--preprocess does not apply to the demo split {config.data} (generated at the "
                            "model's size); drop it, or pass --data with your image folder")


# ------------------------------------------------------------------ typed option declarations

Ckpt = Annotated[str, typer.Option("--ckpt", help="Checkpoint file or pretrained name (`alit-eval models`).")]
Data = Annotated[str, typer.Option(
    "--data", help="Image folder, .txt/.csv file list, glob, or demo split (demo-scenes, ...).")]
BUDGETS_HELP = ("Token budgets: a list 32,64,128,256, a range 8-256:8, a progression continued to the "
                "tokenizer's largest budget 1,2,4,... (or up to an end: 32,64,...,256), or all. Default: the "
                "checkpoint's pretrained entry, else the tokenizer's default budgets.")
Budgets = Annotated[Optional[str], typer.Option("--budgets", help=BUDGETS_HELP)]
Family = Annotated[Optional[str], typer.Option(
    "--family", help="Tokenizer family of --ckpt (alit, karl, one_d_piece, titok; see `alit-eval models`); "
                     "default: recognised from the checkpoint's keys.")]
PREPROCESS_HELP = (
    "How images become S x S, where S is the tokenizer's input size read from the checkpoint: "
    "resize-center-crop (bicubic resize of the short side to S, then centre crop) or center-crop "
    "(official ALIT evaluation: centre crop at native resolution; an image with a side shorter than S "
    "is zero-padded with black there, and the run warns with the count of padded images)."
)
Preprocess = Annotated[Optional[str], typer.Option(
    "--preprocess", help=PREPROCESS_HELP + " Default: the checkpoint's pretrained entry, else resize-center-crop.")]
BatchSize = Annotated[str, typer.Option(
    "--batch-size", help="Images per batch, or 'auto' (start from a device-dependent size, halve on out-of-memory).")]
Limit = Annotated[Optional[int], typer.Option(
    "--limit", min=1, help="Use at most N images (demo splits: 100, or the command's own demo default).")]
FollowSymlinks = Annotated[bool, typer.Option(
    "--follow-symlinks", help="Follow symbolic links that lead outside the data folder (skipped by default, "
                              "with their reason).")]
SubsetSeed = Annotated[Optional[int], typer.Option("--subset-seed", help="Random subset of --limit images.")]
Workers = Annotated[int, typer.Option("--workers", min=0, help="DataLoader worker processes.")]
Heads = Annotated[Optional[int], typer.Option("--heads", min=1, help="Attention heads, if not inferable.")]
TrustCheckpoint = Annotated[bool, typer.Option(
    "--trust-checkpoint", help="Allow full unpickling, which can run code from the file. Only for files you trust.")]
RunId = Annotated[Optional[str], typer.Option(
    "--run-id", help="Folder name under `results/<command>/` (default: a hash of the config, so reruns resume).")]
Overwrite = Annotated[bool, typer.Option(
    "--overwrite", help="Replace an existing run folder that holds a different config.")]
NoFid = Annotated[bool, typer.Option("--no-fid", help="Skip Inception features and rFID.")]
FidResize = Annotated[str, typer.Option(
    "--fid-resize", help="tf1 (torch-fidelity), pytorch-fid (official ALIT eval) or clean (clean-fid, PIL bicubic).")]
InceptionWeights = Annotated[Optional[Path], typer.Option("--inception-weights", help="FID Inception weights file.")]
LpipsWeights = Annotated[Optional[Path], typer.Option(
    "--lpips-weights", help="torchvision AlexNet state_dict for LPIPS.")]
FromRun = Annotated[Optional[Path], typer.Option(
    "--from-run", help="Reuse the sweep of an earlier run folder (no reconstruction; the sweep options are "
                       "then ignored).")]
Out = Annotated[Optional[Path], typer.Option("--out", help="Run folder (default results/<command>/<config hash>).")]
NoiseSeeds = Annotated[int, typer.Option(
    "--noise-seeds", min=1,
    help="Repeat the decode with N seeds (--seed, --seed+1, ...) for a tokenizer whose decoder draws random "
         "numbers, and report the between-seed spread of every metric (noise_spread.csv). Refused for a "
         "deterministic decoder.")]
Precision = Annotated[str, typer.Option(
    "--precision", help="fp32 (reported numbers) | bf16 | tf32 (approximate, faster).")]


# The selection options of the commands that pick a budget per image (allocate, entropy-correlation,
# familiarity, compare); `allocate` alone takes the ``epsilon`` criterion and defaults its thresholds by criterion.
Thresholds = Annotated[Optional[str], typer.Option(
    "--thresholds",
    help="Comma-separated thresholds of the criterion: numbers, `auto` (median of the per-image metric at the "
         "middle budget) or `qP` (its P-quantile), e.g. 0.05,0.07 or q0.25,auto,q0.75; over several datasets or "
         "tokenizers they are resolved on the first, the same numbers for all.")]
Criterion = Annotated[str, typer.Option(
    "--criterion",
    help="l1 | official-l1 | mse | lpips (stay below) or psnr | ssim (exceed); official-l1 = the official "
         "encode() rule (unclamped-reconstruction L1). allocate also takes epsilon: the tokenizer's own choice "
         "under the condition 'L1 about epsilon' (KARL; one pass per threshold at the largest budget).")]
Fallback = Annotated[str, typer.Option(
    "--fallback",
    help="Budget of images that never reach the threshold (censored): min-error (official) or max-budget; "
         "token statistics and correlations count them at the largest budget.")]
NBoot = Annotated[int, typer.Option("--n-boot", min=0, help="Bootstrap resamples for the 95% CIs.")]


def check_precision(precision: str) -> str:
    """Validate ``--precision`` (fp32, bf16 or tf32)."""
    if precision not in PRECISIONS:
        raise AlitEvalError(f"--precision must be fp32, bf16 or tf32; got {precision!r}")
    return precision


def _path_text(value: Any) -> str | None:
    return str(value) if value else None


# ------------------------------------------------------------------ the sweep options, declared once


@dataclass(frozen=True)
class SweepOption:
    """One shared sweep option.

    Attributes:
        name: the Python parameter name (the option string is in `annotation`).
        annotation: ``Annotated[type, typer.Option(...)]``.
        default: the default value shown by ``--help``.
        field: the `SweepConfig` field it sets, or None for an option of the run folder (`SweepArgs`).
        convert: turns the option's value into the field's value.
    """

    name: str
    annotation: Any
    default: Any
    field: str | None
    convert: Callable[[Any], Any] = lambda value: value


def family_options() -> list[SweepOption]:
    """One sweep option per inference option that a registered family declares (``--halting``,
    ``--epsilon``; `alit_eval.tokenizers.family_options.all_options`): flag, type and help come from the
    declarations; a value no family accepts (``--epsilon nan``, ``--halting typo``) is one error line
    before anything is loaded, and the loaded family then checks its own declaration."""
    from alit_eval.tokenizers.family_options import all_options

    out = []
    for merged in all_options():
        kind = {"float": Optional[float], "int": Optional[int]}.get(merged.kind, Optional[str])
        annotation = Annotated[kind, typer.Option(merged.flag, help=merged.help())]
        out.append(SweepOption(merged.name, annotation, None, merged.name, merged.check))
    return out


# Every sweep command has these (explicit > pretrained entry > default is resolved in engine/config.py).
SWEEP_OPTIONS: list[SweepOption] = [
    SweepOption("ckpt", Ckpt, "demo", "ckpt"),
    SweepOption("data", Data, "demo-scenes", "data"),
    SweepOption("budgets", Budgets, None, "budgets", budget_text),
    SweepOption("family", Family, None, "family"),
    SweepOption("preprocess", Preprocess, None, "preprocess",
                lambda v: check_choice(v, PREPROCESS_MODES, option="--preprocess")),
    SweepOption("batch_size", BatchSize, "16", "batch_size", parse_batch_size),
    SweepOption("limit", Limit, None, "limit"),
    SweepOption("subset_seed", SubsetSeed, None, "subset_seed"),
    SweepOption("follow_symlinks", FollowSymlinks, False, "follow_symlinks"),
    *family_options(),
    SweepOption("workers", Workers, 0, "workers"),
    SweepOption("heads", Heads, None, "heads"),
    SweepOption("trust_checkpoint", TrustCheckpoint, False, "trust_checkpoint"),
    SweepOption("run_id", RunId, None, None),
    SweepOption("overwrite", Overwrite, False, None),
]
# Opt-in groups: the sweep's Inception/LPIPS measures.
LPIPS_OPTIONS: list[SweepOption] = [SweepOption("lpips_weights", LpipsWeights, None, "lpips_weights", _path_text)]
MEASURE_OPTIONS: list[SweepOption] = [
    SweepOption("no_fid", NoFid, False, "fid", lambda v: not v),
    SweepOption("fid_resize", FidResize, "tf1", "fid_resize",
                lambda v: check_choice(v, FID_RESIZE_MODES, option="--fid-resize")),
    SweepOption("inception_weights", InceptionWeights, None, "inception_weights", _path_text),
    *LPIPS_OPTIONS,
]
# Opt-in: decoder noise as a measured quantity (commands that summarize whole sweeps: fid, compare).
NOISE_OPTIONS: list[SweepOption] = [SweepOption("noise_seeds", NoiseSeeds, 1, "noise_seeds")]


# Key of `typer.Context.meta` under which the CLI leaves a callable for `SweepArgs.before_run`.
BEFORE_RUN = "alit_eval.before_run"


@dataclass
class SweepArgs:
    """What a sweep command gets from the shared options: the sweep config and the run folder options.

    Attributes:
        config: the one `SweepConfig` (options not given stay None; resolved in `engine.prepare.prepare`).
        run_id: ``--run-id``.
        overwrite: ``--overwrite``.
        globals: the global options (seed, device, results folder, offline).
        before_run: called once by `run_kwargs`, i.e. after every option was checked (the CLI sets the
            plot theme here, so a bad option fails before seaborn or torch is imported).
    """

    config: SweepConfig
    run_id: str | None = None
    overwrite: bool = False
    globals: GlobalOptions = field(default_factory=GlobalOptions)
    before_run: list[Callable[[], None]] = field(default_factory=list)

    def run_kwargs(self) -> dict[str, Any]:
        """The keyword arguments every analysis ``run`` takes: seed, device, offline, results folder, run."""
        while self.before_run:
            self.before_run.pop(0)()
        g = self.globals
        return {"seed": g.seed, "device": g.device, "offline": g.offline, "results_dir": g.results_dir,
                "run_id": self.run_id, "overwrite": self.overwrite}


def sweep_command(*groups: list[SweepOption]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command every option of `SWEEP_OPTIONS` (and of `groups`), collected into ``sweep: SweepArgs``.

    The command declares ``ctx``, its own options and a ``sweep`` parameter. An option it declares
    itself under a shared name (e.g. a list-valued ``data``) replaces the shared one and reaches the
    command as its own argument. The options are read from the lists when the decorator runs, so a
    new entry in `SWEEP_OPTIONS` appears in every sweep command.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        hints = typing.get_type_hints(func, include_extras=True)
        own = [p.replace(annotation=hints.get(p.name, p.annotation))
               for p in inspect.signature(func).parameters.values() if p.name != "sweep"]
        own_names = {p.name for p in own}
        shared = [o for group in (SWEEP_OPTIONS, *groups) for o in group if o.name not in own_names]
        params = own + [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default,
                                          annotation=o.annotation) for o in shared]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {o.name: kwargs.pop(o.name, o.default) for o in shared}
            config = SweepConfig(**{o.field: o.convert(values[o.name]) for o in shared if o.field})
            check_applies(config, from_run=kwargs.get("from_run"))
            from alit_eval.cli.early import check_sweep_inputs  # paths and budgets, before torch is imported

            check_sweep_inputs(config, from_run=kwargs.get("from_run"))
            ctx = kwargs.get("ctx", args[0] if args else None)
            sweep = SweepArgs(config, values.get("run_id"), bool(values.get("overwrite", False)),
                              get_globals(ctx) if ctx is not None else GlobalOptions())
            hook = ctx.meta.pop(BEFORE_RUN, None) if hasattr(ctx, "meta") else None
            if hook is not None:
                sweep.before_run.append(hook)
            return func(*args, sweep=sweep, **kwargs)

        wrapper.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        wrapper.sweep_options = [o.name for o in shared]  # type: ignore[attr-defined]
        return wrapper

    return decorate


# Option factories kept for commands and tests written against them (``budgets: str = budgets_option()``).


def budgets_option(default: str = "32,64,128,256") -> Any:
    """``--budgets``: comma-separated token budgets (parse the value with `parse_budgets`)."""
    return typer.Option(default, "--budgets", help="Comma-separated token budgets, e.g. 32,64,128,256.")


def run_id_option() -> Any:
    """``--run-id``: the run folder's name (default: a hash of the config, so a rerun resumes)."""
    return typer.Option(
        None, "--run-id", help="Folder name under `results/<command>/` (default: a hash of the config, so reruns resume).",
    )


def overwrite_option() -> Any:
    """``--overwrite``: replace a run folder that holds a different config."""
    return typer.Option(False, "--overwrite", help="Replace an existing run folder that holds a different config.")
