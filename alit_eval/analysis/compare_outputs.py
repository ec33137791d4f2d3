"""What `alit-eval compare` writes once its tables are computed: the budget-signal flags, the notes on
rates and image sizes, the files of the run folder and the parts of meta.json that describe the
tokenizers and the method. Split from `alit_eval.analysis.compare`, which computes the tables."""

from __future__ import annotations

from typing import Any

import pandas as pd

from alit_eval.analysis import noise_spread, tokens as received
from alit_eval.analysis.paired import PAIRED_TEST
from alit_eval.analysis.skeleton import dataset_meta
from alit_eval.results.atomic import write_csv, write_parquet

CENSORING = ("an image whose criterion never reaches the threshold at any swept budget is censored: it counts as "
             "the tokenizer's largest swept budget (a lower bound) and is flagged")


def flag_signals(table: pd.DataFrame, summary: pd.DataFrame, tests: pd.DataFrame, facts: dict[str, dict[str, Any]],
                 signals: dict[str, Any], reference: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The three tables with each tokenizer's budget-signal verdict (and the tidy table with its image size)."""
    flag = {n: s.verdict for n, s in signals.items()}
    table["image_size"] = table["tokenizer"].map({n: f["image_size"] for n, f in facts.items()})
    table, summary = (t.assign(budget_signal=t["tokenizer"].map(flag)) for t in (table, summary))
    if len(tests):
        tests = tests.assign(budget_signal=tests["tokenizer"].map(flag), reference_budget_signal=flag[reference])
    return table, summary, tests


def signal_warnings(signals: dict[str, Any]) -> list[str]:
    """One console warning per tokenizer whose criterion does not change with the budget."""
    return [f"warning: NO BUDGET SIGNAL for {n}: {sig.message()}; its differences and p-values "
            "below are not evidence about tokens" for n, sig in signals.items() if sig.flat]


def rate_and_size_notes(no_rate: list[str], mixed: bool, sizes: str, preprocess: str) -> list[str]:
    """Notes for tokenizers without a finite rate and for tokenizers of different image sizes."""
    notes = []
    if no_rate:
        notes.append(f"{', '.join(no_rate)}: continuous latents have no finite rate (bits per token); left out "
                     "of the bits figure")
    if mixed:
        notes.append(f"the tokenizers take different image sizes ({sizes}; --mixed-sizes): the same images and "
                     f"preprocess mode ({preprocess}), but each at its own size, so pixel metrics are measured "
                     "at different resolutions")
    return notes


def write_outputs(run_dir: Any, metrics: pd.DataFrame, tables: dict[str, pd.DataFrame], table: pd.DataFrame,
                  summary: pd.DataFrame, tests: pd.DataFrame, selection: pd.DataFrame) -> None:
    """metrics.csv, per_image.parquet (image ids prefixed by the tokenizer), compare.csv, matched_tokens.csv,
    paired_tests.csv and selection.parquet."""
    run_dir.write_metrics(metrics)
    run_dir.write_per_image(pd.concat([t.assign(tokenizer=n, source_id=t["image_id"],
                                                image_id=[f"{n}/{i}" for i in t["image_id"]])
                                       for n, t in tables.items()], ignore_index=True))
    write_csv(table, run_dir.file("compare.csv"))
    write_csv(summary, run_dir.file("matched_tokens.csv"))
    write_csv(tests, run_dir.file("paired_tests.csv"))
    write_parquet(selection, run_dir.file("selection.parquet"))


def tokenizer_meta(inputs: dict[str, Any], facts: dict[str, dict[str, Any]], used: dict[str, list[int]],
                   lacking: dict[str, list[int]], signals: dict[str, Any],
                   tables: dict[str, pd.DataFrame]) -> dict[str, dict[str, Any]]:
    """meta.json's ``tokenizers``: per tokenizer its facts, checkpoint, budgets swept and absent, budget
    signal, mean tokens received per budget and its dataset record."""
    from alit_eval.analysis.signal import as_dict as signal_dict

    return {n: {**facts[n], "checkpoint": i.checkpoint, "budgets": used[n], "lacking": lacking[n],
                "budget_signal": signal_dict(signals[n]),
                "tokens_received": {int(b): float(v) for b, v in received.mean_per_budget(tables[n]).items()},
                **dataset_meta(i)} for n, i in inputs.items()}


def method_meta(criterion: str, fallback: str, n_boot: int, variable_rfid: bool) -> dict[str, Any]:
    """meta.json's description of the method: selection, paired test, censoring, tokens, rate, variable rFID."""
    return {
        "criterion": criterion, "fallback": fallback, "n_boot": n_boot, "paired_test": PAIRED_TEST,
        "censoring": CENSORING, "tokens": received.DEFINITION,
        "rate": "bits per image = tokens received x bits per token (log2 codebook size)",
        "variable_rfid": ("each image at its own selected budget against the originals; shuffled: the same "
                          "budgets given to random images (the control)") if variable_rfid else None,
    }


def write_figures(run_dir: Any, inputs: dict[str, Any], first: Any, dataset: str, n_images: int, table: pd.DataFrame,
             summary: pd.DataFrame, no_rate: list[str], criterion: str, signals: dict[str, Any]) -> None:
    """The compare figures, titled with the tokenizers, the data and the number of images."""
    from alit_eval.results import plots_compare as pc
    from alit_eval.results.labels import data_label, run_title

    title = run_title(" vs ".join(inputs), data_label(first.config.get("data", {}).get("source", dataset)),
                      n_images, "compare")
    pc.write_figures(run_dir.figures, table, summary, no_rate, criterion, title=title,
                     flagged=[n for n, sig in signals.items() if sig.flat])


def noise(plans: dict[str, Any], inputs: dict[str, Any], run_dir: Any, seeds: list[int],
           facts: dict[str, dict[str, Any]], has_fids: dict[str, bool], table: pd.DataFrame,
           reference: str) -> tuple[pd.DataFrame, list[str], dict[str, Any]]:
    """Decoder noise (``--noise-seeds`` N > 1): each random tokenizer's sweep again per seed, differences flagged.

    Returns the table (flagged), notes and meta.json's part; with one seed, the table as it is and nothing else.
    """
    if len(seeds) <= 1:
        return table, [], {}
    spread = noise_spread.compare_spread(plans, inputs, run_dir.path / "sweeps", seeds,
                                         {n: f["family"] for n, f in facts.items()}, has_fids)
    table = noise_spread.flag_within(table, spread, reference)
    write_csv(spread, run_dir.file("noise_spread.csv"))
    return table, noise_spread.within_lines(table, len(seeds)), {"noise_seeds": noise_spread.meta(seeds)}
