"""Benchmark: peak memory of `alit-eval fid` is flat in the dataset size.

Runs the real command in a fresh subprocess for 200 and for 2000 demo images and prints each run's
peak resident set size (ru_maxrss of the child) and their ratio (target: within 15%). Per-image
records and Inception features stream to the shard store, so nothing grows with the image count
except the final per-image table (a few hundred bytes per image and budget).

    python benchmarks/bench_memory.py [--ckpt demo] [--sizes 200,2000] [--fid]
Without --fid the Inception pass is skipped (it is constant-memory too, but slow on CPU).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def peak_rss_mb(args: list[str]) -> float:
    """Run a command in a child process; return the child's peak RSS in MiB."""
    code = (
        "import resource, subprocess, sys; "
        "r = subprocess.run(sys.argv[1:]); "
        "print('RSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
    )
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "2"})
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    kb = int(next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("RSS")))
    return kb / 1024


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default=None, help="checkpoint (default: the demo tokenizer, else a tiny random one)")
    ap.add_argument("--sizes", default="200,2000")
    ap.add_argument("--fid", action="store_true")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.ckpt
        if ckpt is None:
            from alit_eval.tokenizers.pretrained import PRETRAINED
            from alit_eval.tokenizers.resolve import local_status

            if local_status(PRETRAINED.get("demo")).state == "bundled":
                ckpt = "demo"
            else:
                sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
                from conftest import make_tiny_alit

                ckpt = str(make_tiny_alit(Path(tmp) / "tiny.safetensors"))
        rss = {}
        for n in sizes:
            cmd = [sys.executable, "-m", "alit_eval", "--device", "cpu", "--results-dir", str(Path(tmp) / "r"),
                   "fid", "--ckpt", ckpt, "--limit", str(n), "--batch-size", str(args.batch_size),
                   "--run-id", f"n{n}"] + ([] if args.fid else ["--no-fid"])
            rss[n] = peak_rss_mb(cmd)
            print(f"{n:6d} images: peak RSS {rss[n]:8.1f} MiB")
    a, b = rss[sizes[0]], rss[sizes[-1]]
    print(f"ratio {sizes[-1]}/{sizes[0]}: {b / a:.3f} (target <= 1.15)")


if __name__ == "__main__":
    main()
