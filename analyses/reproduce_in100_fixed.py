"""Reproduce ALIT's fixed-budget reconstruction numbers on ImageNet-100 val (KARL Tab. 1 and 6).

One `alit-eval fid` run of the IN-100 ALIT checkpoint over the 5,000 IN-100 val images at all eight
budgets, under the official evaluation protocol (printed with --help), then a table of L1, LPIPS,
SSIM and rFID at 32/128/256 tokens against the published values. DreamSim (also in KARL Tab. 1) is
not computed by alit-eval. The same run is reused by reproduce_in100_variable.py.

    python analyses/reproduce_in100_fixed.py --in100-val /data/imagenet100/val --lpips-weights alexnet.pth
    python analyses/reproduce_in100_fixed.py --in100-val /data/imagenet100/val --dry-run
"""

from __future__ import annotations

import _common as c
from published import IN100_FIXED

RUN_ID = "in100-val-in100-model"


def main() -> None:
    p = c.parser(__doc__ + "\n" + c.PROTOCOL)
    p.add_argument("--in100-val", required=True, help="IN-100 val folder (class subfolders, 5,000 images)")
    p.add_argument("--ckpt", default="alit_small.vqgan_quantized.in100",
                   help="IN-100 ALIT checkpoint: file or pretrained name (the paper's visualisation model)")
    args = p.parse_args()
    opts = c.sweep_options(args, args.ckpt, args.in100_val, c.ALL_BUDGETS, RUN_ID)
    c.execute(args, "fid", opts)
    if args.dry_run:
        return
    metrics = c.read_metrics(c.run_dir(args, "fid", opts))
    targets = list(IN100_FIXED)
    c.report(c.comparison(targets, [c.lookup(metrics, t) for t in targets]), args, "in100_fixed")


if __name__ == "__main__":
    main()
