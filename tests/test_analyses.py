"""The `analyses/reproduce_*.py` scripts: dry runs name only existing commands and flags; lookups."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import click
import pandas as pd
import pytest
import typer

from alit_eval.cli.app import app
from alit_eval.results.schema import format_condition, metrics_frame

ANALYSES = Path(__file__).resolve().parents[1] / "analyses"
SCRIPTS = {
    "reproduce_in100_fixed.py": ["--in100-val", "/data/in100/val", "--lpips-weights", "alex.pth"],
    "reproduce_in100_variable.py": ["--in100-val", "/data/in100/val", "--ckpt-in1k", "in1k.pth", "--limit", "20"],
    "reproduce_ood.py": ["--coco", "/data/coco/val2017", "--wit", "/data/wit", "--overwrite", "--offline"],
    "reproduce_cross_family.py": ["--in100-val", "/data/in100/val", "--ckpt-karl-in1k", "k1.pth", "--limit", "20"],
}


def dry_run(script: str, args: list[str]) -> list[list[str]]:
    done = subprocess.run([sys.executable, str(ANALYSES / script), "--dry-run", *args], capture_output=True,
                          text=True, timeout=60, cwd=ANALYSES.parent)
    assert done.returncode == 0, done.stderr
    lines = [shlex.split(line) for line in done.stdout.splitlines() if line.startswith("alit-eval ")]
    assert lines, done.stdout
    return lines


def split(argv: list[str], group: click.Group) -> tuple[list[str], str, list[str]]:
    """(global options, command name, command options) of ``alit-eval ...`` argv."""
    for i, token in enumerate(argv[1:], 1):
        if token in group.commands:
            return argv[1:i], token, argv[i + 1:]
    raise AssertionError(f"no alit-eval command in {argv}")


def options(command: click.Command) -> set[str]:
    return {o for p in command.params for o in [*p.opts, *p.secondary_opts]}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_dry_run_names_only_existing_commands_and_flags(script):
    group = typer.main.get_command(app)
    commands = dry_run(script, SCRIPTS[script])
    for argv in commands:
        glob, name, rest = split(argv, group)
        assert {t for t in glob if t.startswith("-")} <= options(group), glob
        unknown = {t for t in rest if t.startswith("--")} - options(group.commands[name])
        assert not unknown, f"{name}: {unknown}"
        # Parse for real (types, choices, values) without running the command.
        group.make_context("alit-eval", [*glob, name], resilient_parsing=False)
        group.commands[name].make_context(name, list(rest), resilient_parsing=False)
    names = [split(a, group)[1] for a in commands]
    assert set(names) <= {"fid", "allocate", "compare"}


def test_dry_runs_state_the_protocol():
    fixed = dry_run("reproduce_in100_fixed.py", SCRIPTS["reproduce_in100_fixed.py"])[0]
    for flag, value in (("--preprocess", "center-crop"), ("--fid-resize", "pytorch-fid"), ("--halting", "official"),
                        ("--batch-size", "1"), ("--seed", "0")):
        assert fixed[fixed.index(flag) + 1] == value
    assert "--official-truncation" in fixed
    variable = dry_run("reproduce_in100_variable.py", SCRIPTS["reproduce_in100_variable.py"])
    fid_dirs = [a[a.index("--results-dir") + 1] + "/fid/" + a[a.index("--run-id") + 1] for a in variable if "fid" in a]
    reused = [a[a.index("--from-run") + 1] for a in variable if "allocate" in a]
    assert reused == fid_dirs and len(reused) == 2  # allocate reuses each sweep, IN-100 and IN-1K models
    assert all(a[a.index("--thresholds") + 1] == "0.03,0.05,0.09" for a in variable if "allocate" in a)
    for script in SCRIPTS:
        help_text = subprocess.run([sys.executable, str(ANALYSES / script), "--help"], capture_output=True,
                                   text=True, timeout=60).stdout
        for word in ("center-crop", "pytorch-fid", "official", "seed", "KARL"):
            assert word in help_text, (script, word)


@pytest.fixture(scope="module")
def common():
    sys.path.insert(0, str(ANALYSES))
    try:
        import _common
        import published
        yield _common, published
    finally:
        sys.path.remove(str(ANALYSES))


def test_published_values_carry_sources(common):
    _, published = common
    every = published.IN100_FIXED + published.IN100_VARIABLE + published.OOD
    assert len(every) == 12 + 21 + 18
    assert all("KARL" in p.source and "Tab." in p.source and not p.alit_paper for p in every)
    assert {p.value for p in published.IN100_FIXED if p.metric == "l1"} == {0.117, 0.087, 0.076}


def test_lookup_and_comparison(common):
    c, published = common
    base = {"command": "allocate", "dataset": "val", "preprocess": "center-crop", "n": 5000}
    var = format_condition(criterion="l1", fallback="min-error", threshold=0.05)
    rows = [
        {**base, "budget": 32, "metric": "l1", "value": 0.119},
        {**base, "budget": 32, "metric": "rfid", "value": 30.0,
         "condition": format_condition(reference="originals", resize="pytorch-fid")},
        {**base, "metric": "l1", "value": 0.09, "condition": var},
        {**base, "metric": "mean_tokens", "value": 220.0, "condition": var},
        {**base, "metric": "fixed_budget_equivalent", "value": 1.0,
         "condition": format_condition(criterion="l1", equivalence="ok", fallback="min-error", matched="l1",
                                       threshold=0.05)},
        {**base, "metric": "rfid", "value": 9.9, "condition": format_condition(
            criterion="l1", fallback="min-error", reference="originals", resize="tf1", selection="variable",
            threshold=0.05)},
    ]
    m = metrics_frame(rows)
    P = published.Published
    assert c.lookup(m, P("in100", "in100-val", "l1", 0.117, "s", budget=32)) == 0.119
    assert c.lookup(m, P("in100", "in100-val", "rfid", 22.6, "s", budget=32)) == 30.0
    assert c.lookup(m, P("in100", "in100-val", "l1", 0.117, "s", budget=64)) is None
    assert c.lookup(m, P("in100", "in100-val", "mean_tokens", 227.2, "s", threshold=0.05)) == 220.0
    assert c.lookup(m, P("in100", "in100-val", "rfid", 9.3, "s", threshold=0.05)) == 9.9
    targets = [P("in100", "in100-val", "l1", 0.117, "s", budget=32),
               P("in100", "in100-val", "mean_tokens", 227.2, "s", threshold=0.05),
               P("in100", "in100-val", "lpips", 0.2, "s", budget=32)]
    table = c.comparison(targets, [c.lookup(m, t) for t in targets])
    assert list(table["within"]) == ["yes", "NO", "-"]
    assert table["difference"].iloc[0] == pytest.approx(0.002)
    assert table["source"].str.contains("not confirmed from the ALIT paper").all()
    assert isinstance(table, pd.DataFrame)


def test_cross_family_dry_run_and_lookup(common, tmp_path):
    c, published = common
    lines = dry_run("reproduce_cross_family.py", SCRIPTS["reproduce_cross_family.py"])
    group = typer.main.get_command(app)
    cmp = [a for a in lines if split(a, group)[1] == "compare"]
    assert len(cmp) == 1 and len(lines) == 1 + 2  # one compare, one epsilon-mode allocate per KARL checkpoint
    labels = [cmp[0][i + 1].split("=")[0] for i, t in enumerate(cmp[0]) if t == "--ckpt"]
    assert labels == ["alit-in100", "karl-in100", "one_d_piece-in1k", "flextok-in1k", "karl-in1k"]
    assert {p.model for p in published.CROSS_FAMILY} >= set(labels) - {"flextok-in1k"}  # FlexTok: not in KARL
    at = {t: cmp[0][cmp[0].index(t) + 1] for t in ("--steps", "--guidance", "--apg", "--noise-seeds")}
    assert at == {"--steps": "20", "--guidance": "7.5", "--apg": "true", "--noise-seeds": "3"}  # README defaults
    eps = [a for a in lines if split(a, group)[1] == "allocate"]
    assert len(eps) == 2 and all(a[a.index("--criterion") + 1] == "epsilon" for a in eps)
    assert all(a[a.index("--thresholds") + 1] == "0.03,0.05,0.09" for a in eps)
    assert all(a[a.index("--budgets") + 1] == "256" for a in eps)
    sys.path.insert(0, str(ANALYSES))
    try:
        import reproduce_cross_family as x
    finally:
        sys.path.remove(str(ANALYSES))
    base = {"command": "compare", "dataset": "val", "preprocess": "center-crop", "n": 50}
    rows = [{**base, "budget": 32, "metric": "l1", "value": 0.12, "condition": "tokenizer=alit-in100"},
            {**base, "budget": 32, "metric": "l1", "value": 0.11, "condition": "tokenizer=karl-in100"},
            {**base, "metric": "mean_tokens", "value": 230.0,
             "condition": format_condition(criterion="l1", threshold=0.05, tokenizer="alit-in100")},
            {**base, "budget": 32, "metric": "l1_paired_diff", "value": -0.01, "condition": format_condition(
                reference="alit-in100", test="wilcoxon", tokenizer="karl-in100")}]
    m = metrics_frame(rows)
    P = published.Published
    karl = x.tokenizer_rows(m, "karl-in100")
    assert c.lookup(karl, P("karl-in100", "in100-val", "l1", 0.113, "s", budget=32)) == 0.11
    assert c.lookup(x.tokenizer_rows(m, "alit-in100"),
                    P("alit-in100", "in100-val", "mean_tokens", 227.2, "s", threshold=0.05)) == 230.0
    assert len(x.tokenizer_rows(m, "karl-in100")) == 1  # the paired-test rows are not the tokenizer's own
    pd.DataFrame({"criterion": "epsilon", "threshold": [0.03, 0.05], "budget": 256, "mean_tokens": [250.0, 228.0],
                  "adaptive_lpips": [0.14, 0.15], "adaptive_ssim": [0.49, 0.47], "variable_rfid": [float("nan")] * 2}
                 ).to_csv(tmp_path / "allocation_summary.csv", index=False)
    assert x.epsilon_values(tmp_path, 0.05) == {"mean_tokens": 228.0, "lpips": 0.15, "ssim": 0.47}
    assert x.epsilon_values(tmp_path, 0.09) == {}
