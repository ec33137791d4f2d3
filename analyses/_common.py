"""Shared helpers of the ``reproduce_*.py`` scripts: options, alit-eval commands, the result table.

Every script builds plain ``alit-eval`` command lines, prints them, runs them (unless ``--dry-run``)
through ``python -m alit_eval`` of the running interpreter, then reads the runs' ``metrics.csv`` and
prints published value, alit-eval value, difference and whether it lies within the tolerance.
Flags are checked against the installed CLI (`cli_flags`), so a script never runs a command with an
option that does not exist.
"""

from __future__ import annotations

import argparse
import math
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable

from published import Published

ALL_BUDGETS = "32,64,96,128,160,192,224,256"
PROTOCOL = """protocol (official evaluate_rfid.py, alit_official.md §4):
  --preprocess center-crop   CenterCrop(256) without resizing, as the official evaluation (KARL's evaluate.py
                             follows ALIT's design); resize-center-crop would show different image content
  --fid-resize pytorch-fid   the official script shells out to pytorch-fid (bilinear resize to 299)
  --halting official --seed 0 --batch-size 1
                             the official eval seeds 0 and runs batch size 1, so the Bernoulli halting draws
                             are the official ones (they depend on batch composition)
  --official-truncation      the official PNG writer truncates to uint8 instead of rounding
  FID reference              the preprocessed originals of the same images (official and KARL convention)
  LPIPS                      AlexNet LPIPS (KARL); needs --lpips-weights, otherwise LPIPS rows stay empty"""


def parser(description: str) -> argparse.ArgumentParser:
    """Options every script shares."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results-dir", default="results/reproduce", help="where the runs go (alit-eval --results-dir)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--lpips-weights", default=None, help="torchvision AlexNet state_dict for LPIPS")
    p.add_argument("--inception-weights", default=None, help="FID Inception weights (default: resolved offline)")
    p.add_argument("--batch-size", default="1", help="1 reproduces the official halting draws (default)")
    p.add_argument("--limit", type=int, default=None,
                   help="quick check on the first N images (numbers are then not comparable with the paper)")
    p.add_argument("--offline", action="store_true", help="never download (checkpoints must be cached)")
    p.add_argument("--overwrite", action="store_true", help="replace earlier runs with a different config")
    p.add_argument("--dry-run", action="store_true", help="print the commands without running them")
    return p


def cli_flags() -> dict[str, set[str]]:
    """Registered options of the installed CLI: ``""`` -> global options, command name -> its options."""
    import typer

    from alit_eval.cli.app import app

    group = typer.main.get_command(app)
    out = {"": {o for prm in group.params for o in [*prm.opts, *prm.secondary_opts]}}
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        out[name] = {o for prm in cmd.params for o in [*prm.opts, *prm.secondary_opts]}
    return out


def global_options(args: argparse.Namespace) -> list[str]:
    return ["--device", args.device, "--seed", "0", "--results-dir", args.results_dir] + \
        (["--offline"] if args.offline else [])


def sweep_options(args: argparse.Namespace, ckpt: str, data: str, budgets: str, run_id: str) -> list[str]:
    """Options of a `fid` run under the official protocol (see `PROTOCOL`)."""
    opts = ["--ckpt", ckpt, "--data", data, "--budgets", budgets, "--preprocess", "center-crop",
            "--halting", "official", "--batch-size", str(args.batch_size), "--fid-resize", "pytorch-fid",
            "--official-truncation", "--run-id", run_id + (f"-limit{args.limit}" if args.limit else "")]
    if args.limit:
        opts += ["--limit", str(args.limit)]
    if args.lpips_weights:
        opts += ["--lpips-weights", args.lpips_weights]
    if args.inception_weights:
        opts += ["--inception-weights", args.inception_weights]
    if args.overwrite:
        opts += ["--overwrite"]
    return opts


def run_dir(args: argparse.Namespace, command: str, options: list[str]) -> Path:
    """The run folder a command with ``--run-id`` writes to."""
    return Path(args.results_dir) / command / options[options.index("--run-id") + 1]


def execute(args: argparse.Namespace, command: str, options: list[str]) -> None:
    """Print ``alit-eval <globals> <command> <options>``; run it unless ``--dry-run``."""
    flags = cli_flags()
    if command not in flags:
        raise SystemExit(f"this alit-eval has no `{command}` command; update alit-eval")
    argv = [*global_options(args), command, *options]
    unknown = [o for o in options if o.startswith("--") and o not in flags[command]]
    if unknown:
        raise SystemExit(f"alit-eval {command} has no option(s) {unknown}; update alit-eval or this script")
    print(shlex.join(["alit-eval", *argv]), flush=True)
    if not args.dry_run:
        subprocess.run([sys.executable, "-m", "alit_eval", *argv], check=True)


def has_option(command: str, option: str) -> bool:
    return option in cli_flags().get(command, set())


# ---- reading results
def read_metrics(folder: Path) -> Any:
    from alit_eval.results.report_runs import read_metrics as read

    path = folder / "metrics.csv"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: the run did not finish")
    return read(path)


def lookup(metrics: Any, target: Published, dataset_filter: str | None = None) -> float | None:
    """The alit-eval value that corresponds to a published number, or None when absent."""
    from alit_eval.results.schema import parse_condition

    m = metrics[metrics["metric"] == target.metric]
    if dataset_filter is not None:
        m = m[m["dataset"] == dataset_filter]
    if m.empty:
        return None
    conds = m["condition"].map(parse_condition)
    if target.threshold is None:  # fixed budget: plain rows (rFID carries reference/resize only)
        keep = conds.map(lambda c: set(c) <= {"reference", "resize"}) & (m["budget"] == target.budget)
    else:
        def variable(c: dict[str, str]) -> bool:
            if "threshold" not in c or not math.isclose(float(c["threshold"]), target.threshold):
                return False
            return c.get("selection") == "variable" if target.metric == "rfid" else "selection" not in c and \
                "matched" not in c
        keep = conds.map(variable) & m["budget"].isna()
    rows = m[keep.astype(bool)]
    return None if rows.empty or math.isnan(rows["value"].iloc[0]) else float(rows["value"].iloc[0])


def comparison(targets: Iterable[Published], values: list[float | None]) -> Any:
    """The table printed at the end: published, alit-eval, difference, tolerance, within."""
    import pandas as pd

    rows = []
    for t, v in zip(targets, values):
        setting = f"{t.budget} tokens" if t.threshold is None else f"eps={t.threshold}"
        diff = None if v is None else v - t.value
        rows.append({"model": t.model, "dataset": t.dataset, "metric": t.metric, "setting": setting,
                     "published": t.value, "alit_eval": v, "difference": diff, "tolerance": t.tolerance,
                     "within": "-" if diff is None else ("yes" if abs(diff) <= t.tolerance else "NO"),
                     "source": t.source + ("" if t.alit_paper else "; not confirmed from the ALIT paper")})
    return pd.DataFrame(rows)


def report(table: Any, args: argparse.Namespace, name: str) -> None:
    """Print the comparison table and save it as ``<results-dir>/<name>.csv``."""
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 60,
                           "display.float_format", "{:.4g}".format):
        print(table.drop(columns="source").to_string(index=False))
    print("sources: " + "; ".join(dict.fromkeys(table["source"])))
    if args.limit:
        print(f"NOTE: --limit {args.limit}: a partial run, not comparable with the published numbers")
    out = Path(args.results_dir) / f"{name}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(f"table: {out}")
