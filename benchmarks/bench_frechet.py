"""Frechet distance of Inception-sized features: the full-rank route against the low-rank one.

Below D = 2048 images a covariance has rank n - 1, and `FeatureStats` keeps the rows, so
`FrechetReference` takes the trace term from an n x n problem instead of two D x D eigensolvers
(see `alit_eval.metrics.feature_distance`). This prints, side by side in one run, the seconds of one
rFID (reference prepared, one distance) by each route for several n, and their difference in FID.

    python benchmarks/bench_frechet.py [--sizes 8,100,1000,2000] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from alit_eval.metrics.feature_distance import FeatureStats, FrechetReference

DIM = 2048


def _stats(rows: np.ndarray, sums_only: bool) -> FeatureStats:
    s = FeatureStats(DIM)
    s.update(torch.from_numpy(rows))
    return FeatureStats.from_state_dict(s.state_dict()) if sums_only else s


def _features(rng: np.random.Generator, n: int, shift: float) -> np.ndarray:
    """Non-negative, correlated, Inception-pool-like features (64 latent factors)."""
    mix = np.random.default_rng(0).normal(size=(64, DIM))
    return np.maximum(rng.normal(size=(n, 64)) @ mix * 0.05 + 0.2 + shift, 0.0)


def one_rfid(ref: FeatureStats, rec: FeatureStats) -> tuple[float, float]:
    """(seconds, FID) of preparing the reference and one distance, as `alit-eval fid` does per run."""
    t0 = time.perf_counter()
    value = FrechetReference.of(ref).distance_to(rec)
    return time.perf_counter() - t0, value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="8,100,1000,2000")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(1)
    print(f"D = {DIM}, torch {torch.__version__}, {args.threads} threads, load {os.getloadavg()[0]:.2f}")
    print(f"{'n':>6} {'full-rank s':>12} {'low-rank s':>11} {'speed-up':>9} {'FID':>12} {'|diff|/FID':>11}")
    for n in (int(x) for x in args.sizes.split(",")):
        x, y = _features(rng, n, 0.0), _features(rng, n, 0.05)
        t_full, fid_full = one_rfid(_stats(x, True), _stats(y, True))
        t_low, fid_low = one_rfid(_stats(x, False), _stats(y, False))
        print(f"{n:>6} {t_full:>12.3f} {t_low:>11.4f} {t_full / t_low:>8.0f}x {fid_low:>12.6f} "
              f"{abs(fid_full - fid_low) / fid_low:>11.1e}")


if __name__ == "__main__":
    main()
