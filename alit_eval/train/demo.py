"""Train the bundled demo ALIT tokenizer end to end: ``python -m alit_eval.train.demo --out DIR``.

Stages (alit_official.md §1.12, scaled down to 2 CPU cores; details in `alit_eval/assets/MODEL_CARD.md`):

0. a tiny MaskGIT-style base VQGAN (512 codes) on 32x32 `demo-scenes` (`base_vqgan.py`, 3000 steps,
   ~14 min);
1. ALIT latent distillation with the base frozen (`distill.py`, 5000 steps, ~55 min), after a short
   warm start from region-mean teacher tokens that gets it off the marginal-code plateau;
2. pixel-space fine-tuning of ALIT and the base decoder (`finetune.py`, 600 steps, ~11 min;
   ``--finetune-steps 0`` skips it).

Everything is seeded and resumable: training state goes to ``DIR`` every few steps and whenever the
``--minutes`` wall-clock budget of this invocation runs out; rerun with ``--resume`` to continue exactly
where it stopped. The final weights are written to ``DIR/demo_tokenizer.safetensors`` (``--install``
also copies them to the package's ``assets/``). Training data is `demo-scenes` with seed 1
(`TRAIN_SEED`); evaluation (``evaluate_demo.py``) uses seed 0 only.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from alit_eval.tokenizers.checkpoints import save_tokenizer
from alit_eval.train.base_vqgan import BaseTrainConfig, demo_base_config, train_base
from alit_eval.train.common import Logger
from alit_eval.train.distill import DistillConfig, train_distill
from alit_eval.train.finetune import FinetuneConfig, train_finetune

ASSET = Path(__file__).resolve().parent.parent / "assets" / "demo_tokenizer.safetensors"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train the demo ALIT tokenizer (stage 0 base VQGAN, stage 1 distillation, "
                                 "stage 2 pixel fine-tuning).")
    ap.add_argument("--out", required=True, type=Path, help="scratch directory for checkpoints and the log")
    ap.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    ap.add_argument("--minutes", type=float, default=None, help="wall-clock budget of this invocation")
    ap.add_argument("--base-steps", type=int, default=BaseTrainConfig.steps)
    ap.add_argument("--base-codes", type=int, default=demo_base_config().n_embed, help="base VQGAN codebook size")
    ap.add_argument("--distill-steps", type=int, default=DistillConfig.steps)
    ap.add_argument("--distill-batch", type=int, default=DistillConfig.batch)
    ap.add_argument("--finetune-steps", type=int, default=FinetuneConfig.steps,
                    help="stage 2: pixel-space fine-tuning steps (0 skips it)")
    ap.add_argument("--finetune-batch", type=int, default=FinetuneConfig.batch)
    ap.add_argument("--monitor-images", type=int, default=DistillConfig.monitor_images,
                    help="held-out images whose L1 per budget each stage logs")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--install", action="store_true", help="copy the final weights to the package assets")
    ap.add_argument("--export-partial", action="store_true",
                    help="write the tokenizer from the latest checkpoint (stage 1, or stage 2 once stage 1 is "
                         "done) even if training has not finished")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    log = Logger(args.out / "train.log")
    deadline = time.time() + 60 * args.minutes if args.minutes else None
    base_cfg = BaseTrainConfig(steps=args.base_steps, monitor_images=args.monitor_images)
    dist_cfg = DistillConfig(steps=args.distill_steps, batch=args.distill_batch, monitor_images=args.monitor_images)
    ft_cfg = FinetuneConfig(steps=args.finetune_steps, batch=args.finetune_batch, monitor_images=args.monitor_images)
    base_model_cfg = replace(demo_base_config(), n_embed=args.base_codes)
    log(f"config: base {asdict(base_cfg)}, {args.base_codes} codes")
    base, done = train_base(base_cfg, args.out, resume=args.resume, deadline=deadline, log=log,
                            base_cfg=base_model_cfg)
    if not done:
        return 3
    model, done = train_distill(dist_cfg, base, args.out, resume=args.resume, deadline=deadline, log=log,
                                stop_at=0 if args.export_partial else None)
    if done:
        model, done = train_finetune(ft_cfg, model, args.out, resume=args.resume, deadline=deadline, log=log,
                                     stop_at=0 if args.export_partial else None)
    if not done and not args.export_partial:
        return 3
    stage2 = f" + stage 2 pixel fine-tuning ({ft_cfg.steps} steps)" if ft_cfg.steps else ""
    meta = {
        "training": f"alit_eval.train.demo (stage 0 base VQGAN + stage 1 latent distillation{stage2})",
        "base_train_config": str(asdict(base_cfg)),
        "distill_train_config": str({k: v for k, v in asdict(dist_cfg).items() if k != "alit"}),
        "finetune_train_config": str(asdict(ft_cfg)),
        "train_data": "demo-scenes seed 1 (TRAIN_SEED)",
        "finished": str(done),
    }
    out = save_tokenizer(model, args.out / "demo_tokenizer.safetensors", meta)
    log(f"wrote {out}")
    if args.install:
        shutil.copyfile(out, ASSET)
        log(f"installed to {ASSET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
