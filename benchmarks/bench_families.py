"""Benchmark every tokenizer family: its official evaluation way, `alit-eval fid`, and the compute floor.

For each family, on the same checkpoint, images (demo scenes, 256x256 PNG) and budgets, measured
side by side in one run:

  (a) the family's official way, reproduced step by step: ALIT bench_fid.py, KARL official_karl.py,
      One-D-Piece/TiTok official_one_d_piece.py, FlexTok official_flextok.py (each docstring lists the
      steps; what each leaves out is printed);
  (b) `alit-eval fid` through the Python API (`alit_eval.evaluate`, the CLI's code) with the CLI's
      defaults, batched: set-up, final statistics, the FLOP table (compute.csv) and figures included;
  (c) the floor: one batched rollout (one encode and one decode per requested budget; KARL runs one
      encoder pass per budget by design, ALIT its iterations up to the largest budget), one Inception
      pass per image and per reconstruction; no I/O, no metrics, no set-up.

Prints images/s of each, the speed-up (b)/(a) and the overhead (b)/(c) (targets: >= 1.5x and
<= 1.3x on 2 CPU cores) and the load (`uptime`). FlexTok joins through ``family()`` in
bench_flextok.py (a `Family`; its official way in official_flextok.py).

Checkpoints: the shared golden fixtures (tiny random-weight models: ALIT/KARL width 264, 1 layer,
VQGAN ch=32; One-D-Piece width 128, 1 layer; FlexTok VAE [32,32,64,64], encoder 64 x 2, decoder 96 x 3,
run at T 4 flow steps). Next to them Inception dominates the floor, so (b)/(c)
measures alit-eval's own overhead and (b)/(a) mostly the official way's repeated Inception passes,
processes and PNG round trips; batching gains on a released-size model show on a GPU (bench_gpu.py).

    python benchmarks/bench_families.py --quick                  # smoke test (4 images, 2 budgets)
    python benchmarks/bench_families.py [--family karl] [--n 32] # figures: a few minutes per family
    python benchmarks/bench_families.py --memory [--quick]       # peak RSS, 100 vs 1,000 images
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
FIX = Path(os.environ.get("ALIT_EVAL_SHARED", HERE.parents[1] / "shared")) / "fixtures"


@dataclass
class Family:
    """One family's benchmark recipe (a FlexTok hook returns one of these from ``family()``).

    Attributes:
        name: family name as printed.
        ckpt: the checkpoint file (a shared fixture).
        budgets, quick_budgets: budgets of the full and the ``--quick`` run.
        official: ``(ckpt, paths, budgets, work, device) -> {"total": s, ...}``, the official way.
        describe: ``(times, budgets) -> str``, the official way's breakdown.
        leaves_out: what the emulation leaves out, one sentence.
        options: extra `alit_eval.evaluate` options (heads, halting, FlexTok's steps/guidance/apg); those
            `load_tokenizer` takes (heads, halting) go to the floor's model too.
        rollout_kwargs: ``(image ids) -> kwargs`` of the floor's ``rollout`` (ALIT's seeded halting,
            FlexTok's per-image generators and decode options).
        size: the checkpoint's size, one phrase.
    """

    name: str
    ckpt: Path
    budgets: list[int]
    quick_budgets: list[int]
    official: Callable[..., dict[str, float]]
    describe: Callable[[dict[str, float], list[int]], str]
    leaves_out: str
    options: dict[str, Any] = field(default_factory=dict)
    rollout_kwargs: Callable[[list[str]], dict[str, Any]] = lambda ids: {}
    size: str = ""


def _alit() -> Family:
    import bench_fid

    from alit_eval.tokenizers.generators import per_image_generators

    def official(ckpt, paths, budgets, work, device):
        total, setup, fid = bench_fid.official_way(ckpt, paths, budgets, work, device)
        return {"total": total, "setup": setup, "fid": fid}

    return Family(
        "alit", FIX / "official_alit" / "vqgan_quantized" / "checkpoint.pth", [32, 64, 128, 256], [32, 256],
        official, lambda t, b: (f"set-up with the 8 loss modules {t['setup']:.1f} s, {len(b)} FID processes "
                                f"{t['fid']:.1f} s = {t['fid'] / len(b):.1f} s each"),
        "reading the VGG16 and LPIPS vgg.pth weights 8 times, the gan_losses entries of a released checkpoint, "
        "the FIDs of the budgets not requested (the script runs one process per each of the 8 folders)",
        {"halting": "seeded"}, lambda ids: {"generator": per_image_generators(0, ids), "halting": "seeded"},
        "fixture: width 264, 1 layer, VQGAN ch=32 (released alit_small: 1024, 8+8 layers, ch=128)")


def _karl() -> Family:
    import official_karl

    return Family(
        "karl", FIX / "official_karl" / "vqgan_quantized" / "checkpoint.pth", [32, 64, 128, 256], [32, 256],
        official_karl.official_way, official_karl.describe, official_karl.LEAVES_OUT, {"halting": "official"},
        size="fixture: width 264, 1 layer, VQGAN ch=32 (released karl_small: 1024, 8+8 layers, ch=128)")


def _one_d_piece() -> Family:
    import official_one_d_piece as odp

    return Family(
        "one_d_piece", FIX / "official_one_d_piece" / "one_d_piece_tiny" / "pytorch_model.bin",
        [32, 64, 128, 256], [32, 256], lambda *a: odp.official_way(*a, heads=4), odp.describe, odp.LEAVES_OUT,
        {"heads": 4}, size="fixture: width 128, 1 layer, pixel decoder 32 ch (released S-256: 512, 8 layers, 128)")


def _flextok() -> Family | str:
    """The FlexTok hook: ``family()`` in bench_flextok.py, when present; else a line why it is skipped."""
    if not (HERE / "bench_flextok.py").is_file():
        return "no benchmarks/bench_flextok.py yet"
    mod = importlib.import_module("bench_flextok")
    if not hasattr(mod, "family"):
        return "benchmarks/bench_flextok.py has no family() hook; run it on its own"
    return mod.family()


FAMILIES: dict[str, Callable[[], Family | str]] = {"alit": _alit, "karl": _karl, "one_d_piece": _one_d_piece,
                                                    "flextok": _flextok}


def floor(model, inception, paths: list[Path], budgets: list[int], batch_size: int,
          rollout_kwargs: Callable[[list[str]], dict[str, Any]]) -> float:
    """(c): one batched rollout per batch and one Inception pass over originals + reconstructions."""
    import numpy as np
    from PIL import Image

    from alit_eval.metrics.pixel import to_uint8

    images = torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1) for p in paths])
    t0 = time.perf_counter()
    for i in range(0, len(images), batch_size):
        u8 = images[i:i + batch_size].to(model.device)
        r = model.rollout(u8.float() / 255, budgets, **rollout_kwargs([p.name for p in paths[i:i + batch_size]]))
        inception(torch.cat([u8] + [to_uint8(r[b].reconstruction) for b in budgets]))
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    return time.perf_counter() - t0


def bench(fam: Family, n: int, budgets: list[int], batch_size: int, device: str, precision: str = "fp32") -> None:
    """Measure (a), (b), (c) for one family and print its table ((b) and (c) at `precision`)."""
    from bench_fid import write_images

    from alit_eval import evaluate, load_tokenizer
    from alit_eval.engine import fastpath
    from alit_eval.metrics.inception import InceptionFeatures

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = write_images(tmp / "images", n)
        ta = fam.official(fam.ckpt, paths, budgets, tmp / "official", device)
        t = time.perf_counter()
        evaluate(fam.ckpt, tmp / "images", budgets, results_dir=tmp / "results", device=device, offline=True,
                 batch_size=batch_size, precision=precision, flops=True, **fam.options)  # the CLI's defaults
        tb = time.perf_counter() - t
        takes = inspect.signature(load_tokenizer).parameters
        model = load_tokenizer(fam.ckpt, device=device, offline=True,
                               **{k: v for k, v in fam.options.items() if k in takes})
        inception = InceptionFeatures(None, "tf1", device, offline=True)
        with torch.no_grad(), fastpath.precision(precision, torch.device(device)):
            tc = floor(model, inception, paths, budgets, batch_size, fam.rollout_kwargs)
    print(f"== {fam.name}: {n} images, budgets {budgets}, batch {batch_size}, {fam.size}")
    print(f"(a) official way   {n / ta['total']:8.2f} img/s  ({ta['total']:.1f} s; {fam.describe(ta, budgets)})")
    print(f"(b) alit-eval fid  {n / tb:8.2f} img/s  ({tb:.1f} s, as the CLI runs it: set-up, FID statistics, "
          "FLOP table, figures)")
    print(f"(c) compute floor  {n / tc:8.2f} img/s  ({tc:.1f} s)")
    sa, oc = ta["total"] / tb, tb / tc
    print(f"speed-up (b) vs (a): {sa:.2f}x (target >= 1.5: {'met' if sa >= 1.5 else 'MISSED'})   "
          f"overhead (b)/(c): {oc:.2f}x (target <= 1.3: {'met' if oc <= 1.3 else 'MISSED'})")
    print(f"(a) leaves out: {fam.leaves_out}.")


def peak_rss(fam: Family, n: int, budget: int, batch_size: int, results: Path) -> float:
    """Peak RSS (MiB) of ``alit-eval fid`` on n demo images at one budget, in a fresh child process."""
    from bench_memory import peak_rss_mb

    flags = ("heads", "steps", "guidance", "apg")  # FlexTok's decode options change its cost
    opts = [x for k, v in fam.options.items() if k in flags
            for x in (f"--{k}", str(v).lower() if isinstance(v, bool) else str(v))]
    cmd = [sys.executable, "-m", "alit_eval", "--device", "cpu", "--offline", "--results-dir", str(results), "fid",
           "--ckpt", str(fam.ckpt), "--budgets", str(budget), "--limit", str(n), "--batch-size", str(batch_size),
           "--run-id", f"{fam.name}-{n}", *opts]
    return peak_rss_mb(cmd)


def memory(fams: list[Family], sizes: list[int], batch_size: int) -> None:
    print(f"peak RSS of `alit-eval fid` (with Inception) at each family's largest budget, {sizes} demo images")
    with tempfile.TemporaryDirectory() as tmp:
        for fam in fams:
            b = max(fam.budgets)
            rss = [peak_rss(fam, n, b, batch_size, Path(tmp)) for n in sizes]
            growth = rss[-1] / rss[0]
            print(f"{fam.name:12s} budget {b:4d}: " + "  ".join(f"{n} img {r:7.1f} MiB" for n, r in zip(sizes, rss))
                  + f"   growth {sizes[0]}->{sizes[-1]}: {growth:.3f}x ({'flat' if growth <= 1.15 else 'GROWS'})")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="all", help="all, or a comma list of " + ", ".join(FAMILIES))
    ap.add_argument("--quick", action="store_true", help="tiny smoke settings (4 images, 2 budgets; memory 10 vs 40)")
    ap.add_argument("--n", type=int, default=None, help="images (default 32; --quick 4)")
    ap.add_argument("--budgets", default=None, help="comma list (default the family's)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--memory", action="store_true", help="peak RSS mode instead of the speed table")
    ap.add_argument("--sizes", default=None, help="memory mode image counts (default 100,1000; --quick 10,40)")
    args = ap.parse_args(argv)
    names = list(FAMILIES) if args.family == "all" else args.family.split(",")
    unknown = [x for x in names if x not in FAMILIES]
    if unknown:
        ap.error(f"unknown family {unknown[0]!r}; valid: all, {', '.join(FAMILIES)}")
    fams = []
    for name in names:
        fam = FAMILIES[name]()
        if isinstance(fam, str):
            print(f"== {name}: skipped ({fam})")
        elif not fam.ckpt.is_file():
            print(f"== {name}: skipped (fixture {fam.ckpt.name} not found; set ALIT_EVAL_SHARED)")
        else:
            fams.append(fam)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, load: {load}")
    if args.memory:
        sizes = [int(s) for s in (args.sizes or ("10,40" if args.quick else "100,1000")).split(",")]
        memory(fams, sizes, args.batch_size)
    else:
        n = args.n or (4 if args.quick else 32)
        if n < 2:
            ap.error("--n must be at least 2 (FID statistics need two images)")
        for fam in fams:
            budgets = [int(b) for b in args.budgets.split(",")] if args.budgets else (
                fam.quick_budgets if args.quick else fam.budgets)
            bench(fam, n, budgets, args.batch_size, args.device)
    print(f"load after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
