"""Reproduce ALIT's out-of-distribution reconstruction numbers on COCO and WIT (KARL Tab. 5).

The IN-1K ALIT checkpoint (the only IN-1K release) at 32/64/256 tokens on COCO val2017 and on a WIT
image folder, under the official evaluation protocol (its script says it was used for COCO and WiT
too), then L1, LPIPS and SSIM against the published values. KARL does not say which WIT images or
how many it used, nor whether COCO was resized first: expect larger differences than on IN-100.

    python analyses/reproduce_ood.py --coco /data/coco/val2017 --wit /data/wit/images --lpips-weights alexnet.pth
    python analyses/reproduce_ood.py --coco /data/coco/val2017 --wit /data/wit/images --dry-run
"""

from __future__ import annotations

import _common as c
from published import OOD


def main() -> None:
    p = c.parser(__doc__ + "\n" + c.PROTOCOL)
    p.add_argument("--coco", required=True, help="COCO val2017 image folder")
    p.add_argument("--wit", required=True, help="folder (or file list) of WIT images")
    p.add_argument("--ckpt", default="alit_small.vqgan_quantized.in1k", help="IN-1K ALIT checkpoint")
    args = p.parse_args()
    tables = []
    for name, data in (("coco", args.coco), ("wit", args.wit)):
        opts = c.sweep_options(args, args.ckpt, data, "32,64,256", f"{name}-in1k-model")
        c.execute(args, "fid", opts)
        if not args.dry_run:
            metrics = c.read_metrics(c.run_dir(args, "fid", opts))
            targets = [t for t in OOD if t.dataset == name]
            tables.append(c.comparison(targets, [c.lookup(metrics, t) for t in targets]))
    if not args.dry_run:
        import pandas as pd

        c.report(pd.concat(tables, ignore_index=True), args, "ood")


if __name__ == "__main__":
    main()
