"""Reproduce ALIT's variable-token results on ImageNet-100 val (KARL Tab. 2 and 6).

Per image, the official token selection rule (``encode(threshold)``: the first budget whose L1 is
below epsilon, else the lowest-L1 budget) at epsilon = 0.03, 0.05, 0.09, applied per image as the
official code does at batch size 1: mean selected tokens, LPIPS and SSIM at the selected budgets,
and the variable-token rFID. The sweep is the `fid` run of reproduce_in100_fixed.py (reused, not
recomputed: `allocate --from-run`); with --ckpt-in1k the IN-1K model is evaluated on IN-100 val too.

    python analyses/reproduce_in100_variable.py --in100-val /data/imagenet100/val --lpips-weights alexnet.pth
    python analyses/reproduce_in100_variable.py --in100-val /data/imagenet100/val --ckpt-in1k alit_small.vqgan_quantized.in1k --dry-run
"""

from __future__ import annotations

import _common as c
from published import IN100_VARIABLE

THRESHOLDS = "0.03,0.05,0.09"  # KARL Tab. 2/6


def evaluate(args, ckpt: str, model: str) -> "c.Any":
    """Sweep (or reuse) IN-100 val with one model, then allocate; return the allocate metrics."""
    sweep = c.sweep_options(args, ckpt, args.in100_val, c.ALL_BUDGETS, f"in100-val-{model}-model")
    c.execute(args, "fid", sweep)
    alloc = ["--thresholds", THRESHOLDS, "--criterion", "l1", "--fallback", "min-error",
             "--run-id", f"in100-val-{model}-model-variable" + (f"-limit{args.limit}" if args.limit else "")]
    if c.has_option("allocate", "--from-run"):
        alloc += ["--from-run", str(c.run_dir(args, "fid", sweep))]
    else:  # an allocate without --from-run: sweep again with the same options
        alloc += [o for o in sweep if o not in ("--run-id", sweep[sweep.index("--run-id") + 1],
                                                "--official-truncation", "--overwrite")]
    if args.overwrite:
        alloc += ["--overwrite"]
    c.execute(args, "allocate", alloc)
    return None if args.dry_run else c.read_metrics(c.run_dir(args, "allocate", alloc))


def main() -> None:
    p = c.parser(__doc__ + "\n" + c.PROTOCOL + "\n  selection: per image, fallback = lowest-L1 budget (official encode())")
    p.add_argument("--in100-val", required=True, help="IN-100 val folder (class subfolders, 5,000 images)")
    p.add_argument("--ckpt", default="alit_small.vqgan_quantized.in100", help="IN-100 ALIT checkpoint")
    p.add_argument("--ckpt-in1k", default=None, help="also evaluate this IN-1K ALIT checkpoint (KARL Tab. 2 rows)")
    args = p.parse_args()
    results = {"in100": evaluate(args, args.ckpt, "in100")}
    if args.ckpt_in1k:
        results["in1k"] = evaluate(args, args.ckpt_in1k, "in1k")
    if args.dry_run:
        return
    targets = [t for t in IN100_VARIABLE if t.model in results]
    values = [c.lookup(results[t.model], t) for t in targets]
    c.report(c.comparison(targets, values), args, "in100_variable")


if __name__ == "__main__":
    main()
