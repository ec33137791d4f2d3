"""`alit-eval compare`: several tokenizers (any families) on the same images, in one run folder.

Every tokenizer's sweep goes through the one engine, each in its own resumable sub-folder
``sweeps/<label>/`` (a reusable sweep folder, like a `fid` run), on the same data source with the
same preprocess mode. Budgets: ``--budgets`` is the union requested; each tokenizer is swept at the
subset it can produce, and a budget it cannot produce is reported as absent (a NaN row with
``status=absent`` in ``compare.csv``, no row in ``metrics.csv``), never interpolated.

Outputs besides the sweeps:

- ``metrics.csv`` (the fixed schema; the tokenizer is the condition ``tokenizer=<label>``):
  quality per budget (L1, MSE, PSNR, SSIM, LPIPS, rFID), mean tokens used and bits per image per
  budget, tokens needed at each matched threshold, and the paired tests against the reference.
- ``compare.csv``: the tidy table, one row per tokenizer x budget (the union) x quality metric,
  with the tokenizer's family, tokens used, bits per token and per image, and the status.
- ``matched_tokens.csv`` and ``selection.parquet``: tokens needed per image at each threshold.
- ``paired_tests.csv``: each tokenizer against the reference (the first) on the same images:
  required tokens per threshold and L1 per common budget (`alit_eval.analysis.paired`).
- figures: quality against tokens, quality against bits per image (tokenizers with a finite
  rate only: continuous latents have none and are named in the figure), tokens at matched L1.

Tokens, everywhere (matched tokens, paired tests, both figures, bits): the tokens the decoder
actually receives (`alit_eval.analysis.tokens`: the sweep's ``tokens_used``, e.g. KARL's kept slots;
the budget for families that keep every token). Bits of a budget = those tokens x the family's bits
per token (`Family.bits`: log2 of the codebook size; a fixed-length code, no entropy coding).

Before drawing conclusions it checks, per tokenizer, that the criterion changes with the budget at
all (`alit_eval.analysis.signal`), and flags a tokenizer that fails (``budget_signal`` column of
every table, a console warning, meta.json, the report). Tokenizers of different image sizes are
refused unless ``--mixed-sizes`` (pixel metrics would be at different resolutions). With rFID, the
variable-token rFID at each matched threshold and its shuffled control are reported as in `allocate`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from alit_eval.analysis import compare_outputs as out, noise_spread
from alit_eval.analysis import token_selection as al, tokens
from alit_eval.analysis.labelled import split_labelled
from alit_eval.analysis.paired import matched_tokens, paired_tests
from alit_eval.analysis.quality import summarize
from alit_eval.analysis.skeleton import CommandRun
from alit_eval.engine.plan import has_features, plan_sweep
from alit_eval.errors import AlitEvalError
from alit_eval.metrics import specs
from alit_eval.results.atomic import write_json, write_parquet
from alit_eval.results.schema import format_condition, metrics_frame, parse_condition

QUALITY = ("rfid", "l1", "psnr", "ssim", "mse", "lpips")  # per-budget metrics of the tidy table


@dataclass(frozen=True)
class TokenizerSpec:
    """One tokenizer of the comparison: a label (None: from the checkpoint), the checkpoint, and its own
    family and attention-heads overrides (``--family``/``--heads`` apply to one checkpoint each)."""

    label: str | None
    ckpt: str
    family: str | None = None
    heads: int | None = None


def parse_tokenizers(ckpts: Sequence[str], families: Sequence[str] = (),
                     heads: Sequence[str] = ()) -> list[TokenizerSpec]:
    """``--ckpt [LABEL=]CKPT`` (repeated), ``--family LABEL=FAMILY`` and ``--heads LABEL=N`` as `TokenizerSpec`s.

    Raises:
        AlitEvalError: fewer than two checkpoints, a repeated label, or an override for no checkpoint.
    """
    specs = [TokenizerSpec(*split_labelled(c)) for c in ckpts]
    if len(specs) < 2:
        raise AlitEvalError("compare needs at least two tokenizers; pass --ckpt twice or more")
    for option, field, values in (("--family", "family", families), ("--heads", "heads", heads)):
        for text in values:
            key, value = split_labelled(text)
            if key is None:
                raise AlitEvalError(f"{option} {text!r}: write LABEL=VALUE (LABEL: a --ckpt label or checkpoint)")
            hits = [i for i, s in enumerate(specs) if key in (s.label, s.ckpt)]
            if not hits:
                raise AlitEvalError(f"{option} {text!r}: no --ckpt is labelled or named {key!r}")
            if field == "heads" and not (value.isdigit() and int(value) > 0):
                raise AlitEvalError(f"{option} {text!r}: the number of heads must be a positive whole number")
            for i in hits:
                specs[i] = replace(specs[i], **{field: int(value) if field == "heads" else value})
    labels = [s.label for s in specs if s.label]
    dup = sorted({n for n in labels if labels.count(n) > 1})
    if dup:
        raise AlitEvalError(f"two tokenizers are labelled {dup[0]!r}; give each --ckpt its own LABEL=")
    for s in specs:
        if s.label is not None and (not s.label or re.search(r"[/\\;=]", s.label) or s.label in {".", ".."}):
            raise AlitEvalError(f"tokenizer label {s.label!r} must be a plain word (no / \\ ; =)")
    return specs


def _clean(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-.") or "tokenizer"


def assign_labels(specs: Sequence[TokenizerSpec], names: Sequence[str], families: Sequence[str]) -> list[str]:
    """Labels: the given one, else the checkpoint's name; clashes get the family, then a number."""
    labels = [s.label or _clean(n) for s, n in zip(specs, names)]
    clash = {lbl for lbl in labels if labels.count(lbl) > 1}
    labels = [f"{f}-{lbl}" if lbl in clash and not s.label else lbl for s, lbl, f in zip(specs, labels, families)]
    seen: dict[str, int] = {}
    out = []
    for lbl in labels:
        seen[lbl] = seen.get(lbl, 0) + 1
        out.append(lbl if seen[lbl] == 1 else f"{lbl}-{seen[lbl]}")
    return out


def split_budgets(requested: str | None, space: Sequence[int]) -> tuple[list[int] | None, list[int]]:
    """The budgets of the request this tokenizer can produce, and those it cannot (absent).

    Args:
        requested: ``--budgets`` in the budget syntax (`alit_eval.budgets`), or None (the tokenizer's default).
        space: the budgets the tokenizer can produce.

    Returns:
        ``(have, lack)``; ``have`` is None when nothing was requested.
    """
    from alit_eval.budgets import BudgetSpace, parse_budget_spec

    if requested is None:
        return None, []
    spec = parse_budget_spec(requested)
    space = BudgetSpace.of(space)
    if spec.everything:
        return list(space.values), []
    # Open progressions run to this tokenizer's largest budget; explicit values stay as given.
    wide = BudgetSpace.of(range(1, max(space.max, *spec.values, 1) + 1))
    wanted = spec.resolve(wide)
    return [b for b in wanted if b in space], [b for b in wanted if b not in space]


def _plan(req: Any, spec: TokenizerSpec, **kw: Any) -> Any:
    """Plan one tokenizer's sweep; a family inference option (any declared one: --halting, --epsilon, ...)
    is dropped for a family that lacks it (it applies to the tokenizers that have it)."""
    from alit_eval.tokenizers.family_options import all_options

    r = replace(req, ckpt=spec.ckpt, budgets=None, heads=spec.heads)
    if spec.family is not None:
        if not hasattr(r, "family"):
            raise AlitEvalError("--family needs the family registry's sweep option; update alit-eval")
        r = replace(r, family=spec.family)
    declared = all_options()
    for _ in range(len(declared) + 1):
        try:
            return plan_sweep(r, None, **kw)
        except AlitEvalError as exc:
            option = next((o.name for o in declared if str(exc).startswith(f"{o.flag} applies only")), None)
            if option is None or r.options.get(option) is None:
                raise
            r = replace(r, options={**r.options, option: None})
    raise AssertionError("unreachable")


def plan_tokenizers(req: Any, specs: Sequence[TokenizerSpec], budgets: str | None, *, seed: int, device: str,
                    offline: bool, progress: bool = True) -> tuple[dict[str, Any], dict[str, list[int]]]:
    """Load every tokenizer and plan its sweep on the same data with the same preprocess mode.

    The first tokenizer resolves the preprocess mode (``--preprocess``, else its pretrained entry,
    else the default); every other tokenizer uses the same mode.

    Returns:
        ``(plans, lacking)``: label -> `SweepPlan` (its config is what `fid` would record with
        those budgets), and label -> the requested budgets it cannot produce.

    Raises:
        AlitEvalError: a tokenizer that can produce none of the requested budgets.
    """
    from alit_eval.tokenizers.family_queries import budgets_for, family_of

    kw = {"seed": seed, "device": device, "offline": offline, "progress": progress}
    plans, lacking, raw = [], [], []
    for spec in specs:
        plan = _plan(req if not plans else replace(req, preprocess=plans[0].prepared.sweep.preprocess), spec, **kw)
        p = plan.prepared
        have, lack = split_budgets(budgets, p.tokenizer.budgets)
        if have is None:
            have = budgets_for(p.tokenizer, None, p.checkpoint.get("default_budgets"))
        elif not have:
            raise AlitEvalError(f"{spec.ckpt}: none of --budgets {budgets} can be produced by this tokenizer "
                                f"(it produces {_describe(p.tokenizer.budgets)})")
        else:
            p.resolved_from["budgets"] = "option"
        p.sweep.budgets, p.config["budgets"] = list(have), list(have)
        if plans:
            p.resolved_from["preprocess"] = "compare (the first tokenizer's)"
        plans.append(plan)
        lacking.append(lack)
        raw.append(family_of(p.tokenizer).name)
    labels = assign_labels(specs, [p.prepared.checkpoint.get("name") or s.ckpt for p, s in zip(plans, specs)], raw)
    return dict(zip(labels, plans)), dict(zip(labels, lacking))


def _describe(budgets: Sequence[int]) -> str:
    from alit_eval.budgets import BudgetSpace

    return BudgetSpace.of(budgets).describe()


def lacking_line(lacking: dict[str, list[int]]) -> str:
    """One line naming the requested budgets each tokenizer cannot produce ('' when none lacks any)."""
    parts = [f"{name} lacks {', '.join(map(str, b[:12]))}{' ...' if len(b) > 12 else ''}"
             for name, b in lacking.items() if b]
    return "budgets absent (not interpolated): " + "; ".join(parts) if parts else ""


def tokenizer_facts(plan: Any) -> dict[str, Any]:
    """Family, one-line description and bits per token (None: continuous latents, no finite rate)."""
    from alit_eval.tokenizers.family_queries import family_of

    tok = plan.prepared.tokenizer
    fam = family_of(tok)
    return {"family": fam.name, "describe": fam.describe_config(tok.cfg), "bits_per_token": fam.bits(tok.cfg),
            "image_size": int(tok.image_size), "produces": _describe(tok.budgets), "notes": fam.notes()}


def _tag(rows: list[dict[str, Any]], **cond: Any) -> list[dict[str, Any]]:
    """Add conditions to metric rows (merged with the conditions they already carry)."""
    return [{**r, "condition": format_condition(**{**parse_condition(r.get("condition", "")), **cond})} for r in rows]


def budget_rows(name: str, res: Any, facts: dict[str, Any], *, dataset: str, preprocess: str, seed: int,
                fid: bool) -> list[dict[str, Any]]:
    """Quality per budget (`quality.summarize`), tokens used and bits per image, tagged with the tokenizer."""
    rows = summarize(res, command="compare", dataset=dataset, preprocess=preprocess, seed=seed,
                     fid=fid).to_dict("records")
    base = {"command": "compare", "dataset": dataset, "preprocess": preprocess}
    per = res.per_image
    received = tokens.mean_per_budget(per)
    for b in res.budgets:
        sub = per[per["budget"] == b]
        used = float(received.get(b, b))
        rows.append({**base, "budget": int(b), "metric": "tokens_used", "value": used, "n": len(sub)})
        if facts["bits_per_token"] is not None:
            rows.append({**base, "budget": int(b), "metric": "bits_per_image", "n": len(sub),
                         "value": used * float(facts["bits_per_token"])})
    return _tag(rows, tokenizer=name)


def tidy_table(metrics: pd.DataFrame, facts: dict[str, dict[str, Any]], budgets: dict[str, list[int]],
               union: Sequence[int]) -> pd.DataFrame:
    """``compare.csv``: tokenizer x budget (the union) x quality metric, absent budgets as NaN rows."""
    cond = metrics["condition"].map(parse_condition)
    names = cond.map(lambda c: c.get("tokenizer"))
    fixed = metrics[cond.map(lambda c: set(c) <= {"tokenizer", "reference", "resize"}).astype(bool)
                    & metrics["budget"].notna()]
    # The fixed order first, then any metric an added measure declares (`alit_eval.metrics.measures`).
    present = [m for m in dict.fromkeys((*QUALITY, *specs.TABLE)) if m in set(fixed["metric"])]
    rows = []
    for name, info in facts.items():
        mine = fixed[names[fixed.index] == name]
        used = mine[mine["metric"] == "tokens_used"].set_index("budget")["value"]
        for b in union:
            have = b in budgets[name]
            tokens = float(used.get(b, b)) if have else float("nan")
            bits = info["bits_per_token"]
            for m in present:
                hit = mine[(mine["metric"] == m) & (mine["budget"] == b)]
                r = hit.iloc[0] if len(hit) else None
                rows.append({
                    "tokenizer": name, "family": info["family"], "budget": int(b), "metric": m,
                    "value": float(r["value"]) if r is not None else float("nan"),
                    "ci_low": float(r["ci_low"]) if r is not None else float("nan"),
                    "ci_high": float(r["ci_high"]) if r is not None else float("nan"),
                    "n": int(r["n"]) if r is not None else 0, "tokens": tokens,
                    "bits_per_token": float("nan") if bits is None else float(bits),
                    "bits_per_image": float("nan") if bits is None or not have else tokens * float(bits),
                    "status": "measured" if r is not None else ("absent" if not have else "not computed"),
                    "note": "" if have else "the tokenizer cannot produce this budget (not interpolated)",
                })
    return pd.DataFrame(rows)


def selection_rows(summary: pd.DataFrame, tests: pd.DataFrame, *, dataset: str, preprocess: str,
                   criterion: str) -> list[dict[str, Any]]:
    """metrics.csv rows of the matched-threshold tokens and of the paired tests."""
    rows = []
    base = {"command": "compare", "dataset": dataset, "preprocess": preprocess}
    for r in summary.to_dict("records"):
        cond = format_condition(tokenizer=r["tokenizer"], criterion=criterion, threshold=f"{r['threshold']:.6g}")
        rows += [{**base, "metric": "mean_tokens", "value": r["mean_tokens"], "ci_low": r["ci_low"],
                  "ci_high": r["ci_high"], "n": r["n"], "condition": cond},
                 {**base, "metric": "median_tokens", "value": r["median_tokens"], "n": r["n"], "condition": cond},
                 {**base, "metric": "censored_share", "value": r["censored_share"], "n": r["n"], "condition": cond}]
        rows += [{**base, "metric": k[:-len("_selected")], "value": v, "n": r["n"], "condition": cond}
                 for k, v in r.items() if k.endswith("_selected") and pd.notna(v)]
    for r in tests.to_dict("records"):
        cond = {"tokenizer": r["tokenizer"], "reference": r["reference"], "test": "wilcoxon"}
        if r["quantity"] == "tokens":
            cond.update(criterion=criterion, threshold=f"{r['threshold']:.6g}")
        prefix = "token" if r["quantity"] == "tokens" else "l1"
        row = {**base, "budget": None if pd.isna(r["budget"]) else int(r["budget"]), "n": int(r["n_pairs"]),
               "condition": format_condition(**cond)}
        rows += [{**row, "metric": f"{prefix}_paired_diff", "value": r["diff"], "ci_low": r["ci_low"],
                  "ci_high": r["ci_high"]},
                 {**row, "metric": f"{prefix}_wilcoxon_statistic", "value": r["statistic"]},
                 {**row, "metric": f"{prefix}_wilcoxon_p", "value": r["p_value"]}]
    return rows


def _sweep(plan: Any, folder: Path) -> Any:
    """Run (or resume) one tokenizer's sweep in its sub-folder, and make that a reusable sweep folder."""
    inputs = plan.execute(folder)
    write_json(plan.config, folder / "config.json")
    write_parquet(inputs.result.per_image, folder / "per_image.parquet")
    return inputs


def check_sizes(facts: dict[str, dict[str, Any]], mixed: bool) -> str:
    """One line naming each tokenizer's image size; refuses different sizes unless `mixed` (``--mixed-sizes``).

    Each sweep brings the same originals to its model's size with the one preprocess mode, so pixel
    metrics (L1, PSNR, SSIM, LPIPS) of tokenizers of different sizes are measured at different
    resolutions and are not comparable.

    Raises:
        AlitEvalError: different sizes without `mixed`.
    """
    sizes = {n: int(f["image_size"]) for n, f in facts.items()}
    listed = ", ".join(f"{n} {s} px" for n, s in sizes.items())
    if len(set(sizes.values())) > 1 and not mixed:
        raise AlitEvalError(f"the tokenizers take different image sizes ({listed}): pixel metrics would be measured "
                            "at different resolutions; compare tokenizers of one size, or pass --mixed-sizes to "
                            "compare anyway (each at its own size, flagged)")
    return listed


def budget_signals(tables: dict[str, pd.DataFrame], criterion: str) -> dict[str, Any]:
    """`alit_eval.analysis.signal.budget_signal` of each tokenizer's sweep on the selection criterion."""
    from alit_eval.analysis.signal import budget_signal

    column, direction = al.criterion_spec(criterion)
    return {n: budget_signal(t, column, higher_is_better=direction == "higher") for n, t in tables.items()}


def variable_fids(inputs: dict[str, Any], selection: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Variable-token rFID per tokenizer and matched threshold (each image at its own selected budget,
    against the originals) and its shuffled control (the same budgets given to random images), as in
    `allocate`; tokenizers without Inception features are left out."""
    from alit_eval.analysis.selection_summary import shuffled_budgets, variable_fids_of

    rows = []
    for n, i in inputs.items():
        sel = selection[selection["tokenizer"] == n]
        if not len(sel) or not has_features(i.result.store, i.result.budgets):
            continue
        fids, shuffled = variable_fids_of(i.result.store, [sel, shuffled_budgets(sel, seed)])
        rows += [{"tokenizer": n, "threshold": t, "variable_rfid": v, "shuffled_rfid": shuffled.get(t, float("nan"))}
                 for t, v in fids.items()]
    return pd.DataFrame(rows, columns=["tokenizer", "threshold", "variable_rfid", "shuffled_rfid"])


def fid_rows(fids: pd.DataFrame, summary: pd.DataFrame, resize: str, *, dataset: str, preprocess: str,
             criterion: str) -> list[dict[str, Any]]:
    """metrics.csv rows of the variable-token rFID and its shuffled control."""
    n = summary.set_index(["tokenizer", "threshold"])["n"]
    return [{"command": "compare", "dataset": dataset, "preprocess": preprocess, "metric": "rfid", "value": r[col],
             "n": int(n.get((r["tokenizer"], r["threshold"]), 0)),
             "condition": format_condition(tokenizer=r["tokenizer"], criterion=criterion,
                                           threshold=f"{r['threshold']:.6g}", reference="originals", resize=resize,
                                           selection=label)}
            for r in fids.to_dict("records") for col, label in (("variable_rfid", "variable"),
                                                                  ("shuffled_rfid", "shuffled"))]


def run(req: Any, *, tokenizers: Sequence[TokenizerSpec], budgets: str | None = None,
        thresholds: Sequence[str] = ("auto",), criterion: str = "l1", fallback: str = "min-error",
        n_boot: int = 1000, seed: int = 0, device: str = "cpu", offline: bool = False, results_dir: Any = "results",
        run_id: str | None = None, overwrite: bool = False, progress: bool = True,
        figures: bool = True, mixed_sizes: bool = False) -> tuple[Any, pd.DataFrame, pd.DataFrame, pd.DataFrame, str]:
    """`alit-eval compare` end to end.

    Tokens everywhere (tables, tests, figures, bits) are the tokens the decoder receives
    (`alit_eval.analysis.tokens`). Each tokenizer's budget signal (`signal.budget_signal`) is checked
    and flagged in every table (``budget_signal``) and in meta.json.

    Returns:
        ``(run_dir, compare table, matched-token summary, paired tests, notes)``: notes are the lines
        the console prints (absent budgets, image sizes, budget-signal warnings), one per line.
    """
    al.criterion_spec(criterion)
    plans, lacking, facts, sizes, seeds = _plan_all(req, tokenizers, budgets, seed=seed, device=device,
                                                    offline=offline, progress=progress, mixed_sizes=mixed_sizes)
    reference = next(iter(plans))
    config = _config(plans, reference, budgets, thresholds, criterion, fallback, n_boot, bool(req.fid), seeds)
    line = lacking_line(lacking)
    with CommandRun("compare", config, results_dir=results_dir, run_id=run_id, overwrite=overwrite) as run:
        inputs = {n: _sweep(p, run.dir.path / "sweeps" / n) for n, p in plans.items()}
        first = inputs[reference]
        dataset, preprocess = first.dataset, first.preprocess
        tables = {n: i.result.per_image for n, i in inputs.items()}
        resolved = al.resolve_thresholds(thresholds, tables[reference], criterion)
        mixed = len({f["image_size"] for f in facts.values()}) > 1
        console = ([line] if line else []) + [_size_line(sizes, mixed, preprocess)]
        rows, fid_notes, has_fids = _quality_rows(inputs, facts, bool(req.fid), dataset, preprocess, seed)
        notes = ([line] if line else []) + fid_notes
        signals = budget_signals(tables, criterion)
        console += out.signal_warnings(signals)
        notes += [c for c in console if c.startswith("warning:")]
        resize = first.result.info.get("inception", {}).get("resize", "tf1")
        selection, summary, fids, tests, matched_rows = _matched(
            inputs if req.fid else {}, tables, resolved, reference, resize, criterion=criterion, fallback=fallback,
            n_boot=n_boot, seed=seed, dataset=dataset, preprocess=preprocess)
        metrics = metrics_frame(rows + matched_rows)
        used = {n: list(i.result.budgets) for n, i in inputs.items()}
        union = sorted({b for bs in used.values() for b in bs} | {b for bs in lacking.values() for b in bs})
        table, summary, tests = out.flag_signals(tidy_table(metrics, facts, used, union), summary, tests, facts,
                                                 signals, reference)
        table, noise_notes, noise = out.noise(plans, inputs, run.dir, seeds, facts, has_fids, table, reference)
        notes += noise_notes
        no_rate = [n for n, f in facts.items() if f["bits_per_token"] is None]
        notes += out.rate_and_size_notes(no_rate, mixed, sizes, preprocess)
        out.write_outputs(run.dir, metrics, tables, table, summary, tests, selection)
        n_images = int(first.result.per_image["image_id"].nunique())
        if figures:
            out.write_figures(run.dir, inputs, first, dataset, n_images, table, summary, no_rate, criterion, signals)
        run.finish(seed, {
            "reference": reference, "dataset": {"name": dataset, **first.config.get("data", {})},
            "preprocess": preprocess, "n_images": n_images,
            "tokenizers": out.tokenizer_meta(inputs, facts, used, lacking, signals, tables),
            "thresholds": [{"spec": s, "value": v, "resolved_on": reference} for s, v in resolved],
            **out.method_meta(criterion, fallback, n_boot, bool(len(fids))), "notes": notes, **noise,
        }, device=first.result.info.get("device"))
    return run.dir, table, summary, tests, "\n".join(console)


def _plan_all(req: Any, tokenizers: Sequence[TokenizerSpec], budgets: str | None, *, seed: int, device: str,
              offline: bool, progress: bool, mixed_sizes: bool) -> tuple[dict[str, Any], dict[str, list[int]],
                                                                         dict[str, dict[str, Any]], str, list[int]]:
    """Plan every tokenizer's sweep; returns the plans, absent budgets, facts, the image-size line and noise seeds.

    Refuses different image sizes without `mixed_sizes`, and noise seeds when no tokenizer is random.
    """
    plans, lacking = plan_tokenizers(req, tokenizers, budgets, seed=seed, device=device, offline=offline,
                                     progress=progress)
    facts = {n: tokenizer_facts(p) for n, p in plans.items()}
    sizes = check_sizes(facts, mixed_sizes)
    seeds = noise_spread.seed_list(seed, getattr(req, "noise_seeds", 1))
    noise_spread.check_any_random(plans, len(seeds))
    return plans, lacking, facts, sizes, seeds


def _size_line(sizes: str, mixed: bool, preprocess: str) -> str:
    """The console line naming each tokenizer's image size (flagged when they differ)."""
    return (f"image size: {sizes}{' (DIFFERENT: pixel metrics at different resolutions)' if mixed else ''}"
            f"; every tokenizer gets the same originals, preprocess {preprocess}")


def _config(plans: dict[str, Any], reference: str, budgets: str | None, thresholds: Sequence[str], criterion: str,
            fallback: str, n_boot: int, fid: bool, seeds: list[int]) -> dict[str, Any]:
    """The run's config.json: each tokenizer's sweep config, the reference and the compare options."""
    config = {"tokenizers": {n: p.config for n, p in plans.items()}, "reference": reference,
              "compare": {"budgets": budgets, "thresholds": [str(t) for t in thresholds], "criterion": criterion,
                          "fallback": fallback, "n_boot": n_boot, "fid": fid}}
    if len(seeds) > 1:  # N = 1 keeps the run ids of earlier runs
        config["compare"]["noise_seeds"] = seeds
    return config


def _quality_rows(inputs: dict[str, Any], facts: dict[str, dict[str, Any]], fid: bool, dataset: str,
                  preprocess: str, seed: int) -> tuple[list[dict[str, Any]], list[str], dict[str, bool]]:
    """metrics.csv rows per tokenizer and budget, a note per tokenizer whose rFID is skipped, and who has rFID."""
    rows, notes, has_fids = [], [], {}
    for n, i in inputs.items():
        has_fid = has_fids[n] = fid and has_features(i.result.store, i.result.budgets)
        if fid and not has_fid:
            notes.append(f"{n}: no Inception features in the sweep, rFID skipped")
        rows += budget_rows(n, i.result, facts[n], dataset=dataset, preprocess=preprocess, seed=seed, fid=has_fid)
    return rows, notes, has_fids


def _matched(fid_inputs: dict[str, Any], tables: dict[str, pd.DataFrame], resolved: Any, reference: str,
             resize: str, *,
             criterion: str, fallback: str, n_boot: int, seed: int, dataset: str,
             preprocess: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, list[dict[str, Any]]]:
    """Tokens needed per image at each threshold, with variable rFID (of `fid_inputs`) and the paired tests.

    Returns ``(selection, matched-token summary, variable rFIDs, paired tests, their metrics.csv rows)``.
    """
    selection, summary = matched_tokens(tables, resolved, criterion=criterion, fallback=fallback,
                                        n_boot=n_boot, seed=seed)
    fids = variable_fids(fid_inputs, selection, seed)
    if len(fids):
        summary = summary.merge(fids, on=["tokenizer", "threshold"], how="left")
    tests = paired_tests(selection, tables, reference, n_boot=n_boot, seed=seed)
    rows = selection_rows(summary, tests, dataset=dataset, preprocess=preprocess, criterion=criterion)
    rows += fid_rows(fids, summary, resize, dataset=dataset, preprocess=preprocess, criterion=criterion)
    return selection, summary, fids, tests, rows
