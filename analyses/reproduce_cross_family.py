"""Reproduce the KARL paper's cross-family comparison on ImageNet-100 val: ALIT, KARL and One-D-Piece
(KARL Tab. 1 same-token L1/LPIPS/SSIM at 32/128/256, Tab. 6 same-token FID, Tab. 2 variable tokens).

One `alit-eval compare` run evaluates every tokenizer on the same images with the same preprocessing
(a sweep per tokenizer at 32, 64, ..., 256 tokens; KARL at its evaluate.py setting, epsilon = 0),
then per image the smallest budget whose L1 is below epsilon = 0.03/0.05/0.09 (mean tokens, LPIPS
and SSIM there: the Tab. 2 rows of ALIT and One-D-Piece, which KARL obtained by searching the
budgets). KARL's own Tab. 2 rows (and its variable-token FID, Tab. 6) come from its epsilon-conditioned
single pass: `allocate --criterion epsilon` at 256 slots, whose mean kept slots are its "average tokens
used".
--ckpt-alit-in1k / --ckpt-karl-in1k add the IN-1K rows.

FlexTok (not in the KARL paper, so no published row) runs in the same `compare` (--no-flextok leaves
it out): prefixes of 32, 64, ..., 256 register tokens, decoded with its own options (flow steps,
guidance, APG: the official README's T = 20, g = 7.5, APG on by default; they reach FlexTok only and
are printed per tokenizer). Its decoder is generative, so the comparison repeats every random
decoder's sweep with --noise-seeds N seeds (ALIT/KARL halting draws too) and prints, beside each
same-token difference from the first tokenizer, the between-seed spread and whether the difference
is within it (`alit_eval.analysis.noise_spread`).

Unknowns, said here once: KARL says only that One-D-Piece is "its IN-1K checkpoint" (not which size;
S-256 by default here) and not which budgets it searched for One-D-Piece (32, 64, ..., 256 here);
One-D-Piece's own evaluation resizes before cropping, but KARL evaluated all three its own way, so
one preprocess mode (center-crop) is used for all. ALIT's and One-D-Piece's variable-token FIDs
(Tab. 6) come from `compare`: the rFID of each tokenizer's per-image-selected reconstructions at each
threshold (``selection=variable`` rows; ``selection=shuffled`` is the control with the same budgets
given to random images, as in `allocate`). Tokens are those the decoder receives (KARL: kept slots).

    python analyses/reproduce_cross_family.py --in100-val /data/imagenet100/val --lpips-weights alexnet.pth
    python analyses/reproduce_cross_family.py --in100-val /data/imagenet100/val \\
        --ckpt-alit-in1k alit_small.vqgan_quantized.in1k --dry-run
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import _common as c
from published import CROSS_FAMILY

BUDGETS = "32-256:32"
EPSILONS = ("0.03", "0.05", "0.09")  # KARL Tab. 2
FAMILY_PROTOCOL = """  compare                    every tokenizer on the same images and preprocess mode, a sweep each
  --budgets 32-256:32        32, 64, ..., 256 for every family (KARL epsilon = 0, its evaluate.py setting)
  --thresholds 0.03,0.05,0.09  per image the smallest budget with L1 below epsilon (KARL Tab. 2);
                             with its variable-token rFID and shuffled control (Tab. 6)
  KARL Tab. 2 rows           allocate --criterion epsilon --budgets 256: KARL's own epsilon-conditioned pass
  FlexTok                    --steps/--guidance/--apg (FlexTok only), --noise-seeds N: spread beside differences"""
NOISE_COLUMNS = ["tokenizer", "budget", "metric", "value", "diff_vs_ref", "noise_std", "noise_band", "within_noise"]


def _limit(args: Any) -> str:
    return f"-limit{args.limit}" if args.limit else ""


def compare_options(args: Any, tokenizers: dict[str, str]) -> list[str]:
    """The `compare` command line: every tokenizer, the official protocol, the Tab. 2 thresholds."""
    opts = [o for label, ckpt in tokenizers.items() for o in ("--ckpt", f"{label}={ckpt}")]
    opts += ["--data", args.in100_val, "--budgets", BUDGETS, "--thresholds", ",".join(EPSILONS),
             "--criterion", "l1", "--fallback", "min-error", "--preprocess", "center-crop", "--halting", "official",
             "--batch-size", str(args.batch_size), "--fid-resize", "pytorch-fid", "--official-truncation",
             "--run-id", "in100-val-cross-family" + _limit(args)]
    if args.limit:
        opts += ["--limit", str(args.limit)]
    if any(label.startswith("flextok") for label in tokenizers):  # FlexTok's decode options (only it has them)
        opts += ["--steps", str(args.flextok_steps), "--guidance", str(args.flextok_guidance),
                 "--apg", "true" if args.flextok_apg else "false"]
    if args.noise_seeds > 1:
        opts += ["--noise-seeds", str(args.noise_seeds)]
    for flag, value in (("--lpips-weights", args.lpips_weights), ("--inception-weights", args.inception_weights)):
        if value:
            opts += [flag, value]
    return opts + (["--overwrite"] if args.overwrite else [])


def epsilon_options(args: Any, label: str, ckpt: str) -> list[str]:
    """An `allocate` run of KARL's epsilon-conditioned mode at 256 slots, one pass per epsilon."""
    opts = c.sweep_options(args, ckpt, args.in100_val, "256", f"in100-val-{label}-epsilon")
    drop = {"--official-truncation"}  # a fid-only option; allocate rounds (differences < 1/255 per pixel)
    return [o for o in opts if o not in drop] + ["--criterion", "epsilon", "--thresholds", ",".join(EPSILONS)]


def tokenizer_rows(metrics: Any, label: str) -> Any:
    """The metric rows of one tokenizer of a compare run, its ``tokenizer=`` condition removed."""
    from alit_eval.results.schema import format_condition, parse_condition

    conds = metrics["condition"].map(parse_condition)
    keep = conds.map(lambda d: d.get("tokenizer") == label and "test" not in d).astype(bool)
    out = metrics[keep].copy()
    out["condition"] = [format_condition(**{k: v for k, v in d.items() if k != "tokenizer"}) for d in conds[keep]]
    return out


def epsilon_values(folder: Path, threshold: float) -> dict[str, float]:
    """Mean slots kept, LPIPS, SSIM and rFID of KARL's epsilon mode at one epsilon (``allocation_summary.csv``)."""
    import math

    import pandas as pd

    summary = pd.read_csv(folder / "allocation_summary.csv")
    row = summary[[math.isclose(t, threshold) for t in summary["threshold"]]]
    if row.empty:
        return {}
    r = row.iloc[0]
    names = {"mean_tokens": "mean_tokens", "lpips": "adaptive_lpips", "ssim": "adaptive_ssim", "rfid": "variable_rfid"}
    return {k: float(r[v]) for k, v in names.items() if v in r and pd.notna(r[v])}


def decode_options(folder: Path) -> dict[str, dict[str, Any]]:
    """Each tokenizer's recorded inference options (``config.json`` of the compare run)."""
    import json

    config = json.loads((folder / "config.json").read_text())
    return {name: {**({"halting": t["halting"]} if t.get("halting") else {}), **t.get("options", {})}
            for name, t in config["tokenizers"].items()}


def noise_table(folder: Path) -> Any:
    """Same-token differences from the first tokenizer with the decoder-noise spread beside them
    (``compare.csv`` of a ``--noise-seeds`` run; empty without one)."""
    import pandas as pd

    table = pd.read_csv(folder / "compare.csv")
    if "within_noise" not in table:
        return pd.DataFrame(columns=NOISE_COLUMNS)
    keep = (table["status"] == "measured") & table["metric"].isin(["l1", "lpips", "ssim", "rfid"])
    return table.loc[keep, NOISE_COLUMNS].reset_index(drop=True)


def main() -> None:
    p = c.parser(__doc__ + "\n" + c.PROTOCOL + "\n" + FAMILY_PROTOCOL)
    p.add_argument("--in100-val", required=True, help="IN-100 val folder (class subfolders, 5,000 images)")
    p.add_argument("--ckpt-alit", default="alit_small.vqgan_quantized.in100", help="ALIT, IN-100")
    p.add_argument("--ckpt-karl", default="karl_small.vqgan_quantized.in100", help="KARL, IN-100")
    p.add_argument("--ckpt-one-d-piece", default="one_d_piece_s256.in1k", help="One-D-Piece, IN-1K (size not stated)")
    p.add_argument("--ckpt-alit-in1k", default=None, help="also ALIT, IN-1K (Tab. 1/2 IN-1K rows)")
    p.add_argument("--ckpt-karl-in1k", default=None, help="also KARL, IN-1K (Tab. 1/2 IN-1K rows)")
    p.add_argument("--ckpt-flextok", default="flextok_d18_d28.in1k", help="FlexTok, IN-1K (no published row)")
    p.add_argument("--no-flextok", action="store_true", help="leave FlexTok out")
    p.add_argument("--flextok-steps", type=int, default=20, help="FlexTok flow steps T (official README: 20)")
    p.add_argument("--flextok-guidance", type=float, default=7.5, help="FlexTok guidance scale g (README: 7.5)")
    p.add_argument("--flextok-apg", action=argparse.BooleanOptionalAction, default=True,
                   help="FlexTok norm guidance APG (README: on)")
    p.add_argument("--noise-seeds", type=int, default=3,
                   help="repeat every random decoder's sweep with N seeds and show the spread (1: off)")
    args = p.parse_args()
    tokenizers = {"alit-in100": args.ckpt_alit, "karl-in100": args.ckpt_karl,
                  "one_d_piece-in1k": args.ckpt_one_d_piece}
    if not args.no_flextok:
        tokenizers["flextok-in1k"] = args.ckpt_flextok
    tokenizers.update({k: v for k, v in (("alit-in1k", args.ckpt_alit_in1k), ("karl-in1k", args.ckpt_karl_in1k)) if v})
    opts = compare_options(args, tokenizers)
    c.execute(args, "compare", opts)
    karl_runs = {}
    for label in (k for k in tokenizers if k.startswith("karl")):
        e = epsilon_options(args, label, tokenizers[label])
        c.execute(args, "allocate", e)
        karl_runs[label] = c.run_dir(args, "allocate", e)
    if args.dry_run:
        return
    metrics = c.read_metrics(c.run_dir(args, "compare", opts))
    targets = [t for t in CROSS_FAMILY if t.model in tokenizers]
    values = []
    for t in targets:
        if t.model.startswith("karl") and t.threshold is not None:  # KARL's own variable-token mode
            values.append(epsilon_values(karl_runs[t.model], t.threshold).get(t.metric))
        else:
            values.append(c.lookup(tokenizer_rows(metrics, t.model), t))
    table = c.comparison(targets, values)
    table["source"] = [t.source + ("; not confirmed from the ALIT paper" if t.model.startswith("alit") else "")
                       for t in targets]
    c.report(table, args, "in100_cross_family")
    folder = c.run_dir(args, "compare", opts)
    for name, values in decode_options(folder).items():
        print(f"decode options {name}: " + (", ".join(f"{k}={v}" for k, v in values.items()) or "none"))
    noise = noise_table(folder)
    if len(noise):
        import pandas as pd

        with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format",
                               "{:.4g}".format):
            print(f"same-token differences from {next(iter(tokenizers))}, with the decoder-noise spread "
                  f"({args.noise_seeds} seeds; within_noise: |diff| <= 2 sqrt(std^2 + std_ref^2)):")
            print(noise.to_string(index=False))
        out = Path(args.results_dir) / "in100_cross_family_noise.csv"
        noise.to_csv(out, index=False)
        print(f"table: {out}")


if __name__ == "__main__":
    main()
