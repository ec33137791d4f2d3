"""GPU benchmark for every family: official way, `alit-eval fid` and the floor, plus a CPU agreement check.

For ALIT (alit_small), KARL (karl_small) and One-D-Piece (S-256), random weights in the released
geometry (VQGAN base; real sizes, because the tiny fixtures leave the GPU idle), on demo scenes:

1. the table of bench_families.py on the GPU: (a) the official way (batch size 1, PNG round trips,
   one FID process per budget / one run per prefix length; run in float32), (b) `alit-eval fid` at
   ``--precision``, (c) the floor at the same precision, with images/s and the ratios;
2. the agreement check: the same few images through `alit-eval fid` on the CPU (float32) and on the
   GPU at ``--precision``; per-image L1 and PSNR must agree within the tolerance of the precision
   (fp32: L1 1e-4, PSNR 0.01 dB; tf32: 1e-3, 0.1 dB; bf16: 1e-2, 1 dB). ALIT's halting and KARL's
   halting are decisions: an image whose decision flips between devices is counted, not hidden.

Precision: fp32 = float32 with TF32 matmuls off; tf32 = float32 storage, TF32 matmuls/convolutions;
bf16 = bfloat16 autocast (alit_eval/engine/fastpath.py). Without a CUDA GPU it stops with one line.

    python benchmarks/bench_gpu.py [--precision fp32|tf32|bf16] [--n 256] [--family alit,karl,one_d_piece]
    python benchmarks/bench_gpu.py --quick        # a minute: 32 images, 2 budgets, 2 checked images
    python benchmarks/bench_gpu.py --device cpu --quick --fixtures --n 2   # CPU smoke test of the script
Runs in under 5 minutes on one recent GPU with the defaults.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TOLERANCE = {"fp32": (1e-4, 0.01), "tf32": (1e-3, 0.1), "bf16": (1e-2, 1.0)}  # (L1, PSNR dB) per image


def real_size(name: str, folder: Path) -> Path:
    """A random-weight checkpoint of the family's released geometry, saved as safetensors."""
    from alit_eval.tokenizers.checkpoints import save_tokenizer

    torch.manual_seed(0)
    if name == "alit":
        from alit_eval.tokenizers.alit.config import AlitConfig
        from alit_eval.tokenizers.alit.model import AlitTokenizer

        model = AlitTokenizer(AlitConfig.from_preset("alit_small"))
    elif name == "karl":
        from alit_eval.tokenizers.karl.config import KarlConfig
        from alit_eval.tokenizers.karl.model import KarlTokenizer

        model = KarlTokenizer(KarlConfig.from_preset("karl_small"))
    else:
        from alit_eval.tokenizers.one_d_piece.config import OneDPieceConfig
        from alit_eval.tokenizers.one_d_piece.model import OneDPieceTokenizer

        model = OneDPieceTokenizer(OneDPieceConfig.from_preset("one_d_piece_s256"))
    return save_tokenizer(model, folder / f"{name}.safetensors")


def agreement(fam, n: int, budgets: list[int], precision: str, device: str, tmp: Path) -> None:
    """Per-image L1/PSNR of the same images on the CPU (fp32) and on the GPU (precision)."""
    from alit_eval import evaluate

    runs = {}
    for dev, prec in (("cpu", "fp32"), (device, precision)):
        res = evaluate(fam.ckpt, "demo-scenes", budgets, results_dir=tmp / f"agree-{dev}", device=dev, offline=True,
                       limit=n, batch_size=n, fid=False, precision=prec, **fam.options)
        runs[dev] = res.per_image.sort_values(["budget", "image_id"]).reset_index(drop=True)
    cpu, gpu = runs["cpu"], runs[device]
    tol_l1, tol_psnr = TOLERANCE[precision]
    d_l1 = (cpu["l1"] - gpu["l1"]).abs()
    d_psnr = (cpu["psnr"] - gpu["psnr"]).abs()
    bad = int(((d_l1 > tol_l1) | (d_psnr > tol_psnr)).sum())
    print(f"agreement CPU fp32 vs GPU {precision} on {n} images x {len(budgets)} budgets: max |dL1| "
          f"{d_l1.max():.2e} (tol {tol_l1:g}), max |dPSNR| {d_psnr.max():.3f} dB (tol {tol_psnr:g}): "
          + ("PASS" if bad == 0 else f"FAIL on {bad} image-budget pairs (flipped halting decisions show here)"))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--family", default="alit,karl,one_d_piece")
    ap.add_argument("--precision", default="fp32", choices=sorted(TOLERANCE))
    ap.add_argument("--n", type=int, default=None, help="images per family (default 256; --quick 32)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--check", type=int, default=None, help="images in the CPU agreement check (default 4)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--fixtures", action="store_true", help="the tiny fixture checkpoints instead of real sizes "
                    "(a CPU smoke test: --device cpu --quick --fixtures --n 2)")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("error: bench_gpu.py needs a CUDA GPU and torch.cuda.is_available() is False "
                         "(use benchmarks/bench_families.py on CPU; --device cpu --quick --fixtures runs this as a smoke test)")
    import bench_families

    n = args.n or (32 if args.quick else 256)
    check = args.check or (2 if args.quick else 4)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"device {args.device} ({name}), precision {args.precision} for (b), (c) and the check; (a) in float32")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for fname in args.family.split(","):
            fam = bench_families.FAMILIES[fname]()
            if isinstance(fam, str):
                print(f"== {fname}: skipped ({fam})")
                continue
            if fname in ("alit", "karl", "one_d_piece") and not args.fixtures:
                fam.ckpt = real_size(fname, tmp)
                fam.options = {k: v for k, v in fam.options.items() if k != "heads"}  # the file's config says
                fam.size = {"alit": "alit_small", "karl": "karl_small", "one_d_piece": "One-D-Piece S-256"}[
                    fname] + " geometry, random weights"
            budgets = fam.quick_budgets if args.quick else fam.budgets
            bench_families.bench(fam, n, budgets, args.batch_size, args.device, precision=args.precision)
            agreement(fam, check, budgets, args.precision, args.device, tmp)


if __name__ == "__main__":
    main()
