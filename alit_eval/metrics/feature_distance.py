"""FID from features: streaming statistics, Frechet distance, .npz stats (KID: `alit_eval.metrics.kid`).

Pure functions and one accumulator, no networks (the pipeline's features -> statistics ->
distance shape, as in torch-fidelity's ``metric_fid.py``). `FeatureStats` keeps float64 sums so
one pass over any number of images needs O(D^2) memory, and two accumulators merge by addition
(distributed all-reduce, resume).

Fewer images than feature dimensions (n < D = 2048: every test, demo and small-sample run) make the
covariance rank-deficient, ``sigma = F^T F`` with ``F`` the ``[n - 1, D]`` centred rows
(`FeatureStats.factor`). `FeatureStats` then also keeps its rows, and `FrechetReference` takes the trace
term ``tr (sigma1 sigma2)^(1/2)`` in the n-dimensional space: the nuclear norm of ``F1 F2^T`` when
both sides have rows (the nonzero eigenvalues of ``F1^T F1 F2^T F2`` are the squared singular values
of ``F1 F2^T``), the eigenvalues of ``F1 sigma2 F1^T`` when one side has. That is exact, not an
approximation, and skips the two D x D eigensolvers (about 7 s on one CPU thread at D = 2048) that
the full-rank route needs; it also drops the square roots of rounding noise in the null space,
which bias the full-rank route's trace term by about 1e-6 relative at n = 100.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import NamedTuple, Union

import numpy as np
import torch

from alit_eval.errors import AlitEvalError

PathLike = Union[str, "os.PathLike[str]"]


class FeatureStats:
    """Streaming float64 sums of features: count, sum ``[D]`` and sum of outer products ``[D, D]``.

    Mean and covariance come from the raw sums, so merging two accumulators is plain addition
    (a SUM all-reduce across processes works). The result depends on the order of updates only
    through float64 rounding (relative ~1e-16 per addition); byte-identical resume is the engine's
    job (e.g. re-accumulating stored features in a fixed order).

    Args:
        dim: feature dimension D.
        device: where the sums live; the device of the first update by default.
    """

    def __init__(self, dim: int, device: torch.device | str | None = None) -> None:
        self.dim = int(dim)
        self.n = 0
        self._device = torch.device(device) if device is not None else None
        self._sum: torch.Tensor | None = None
        self._outer: torch.Tensor | None = None
        # The rows themselves while n < dim (the exact low-rank route of `factor`); dropped for good
        # once there are as many rows as dimensions, or after `from_state_dict`.
        self._rows: list[torch.Tensor] | None = []

    def _ensure(self, device: torch.device) -> None:
        if self._sum is None:
            self._device = self._device or device
            self._sum = torch.zeros(self.dim, dtype=torch.float64, device=self._device)
            self._outer = torch.zeros(self.dim, self.dim, dtype=torch.float64, device=self._device)

    def update(self, feats: torch.Tensor) -> None:
        """Add a batch of features.

        Args:
            feats: ``[B, D]`` float features (any float dtype; accumulated in float64).
        """
        if feats.dim() != 2 or feats.shape[1] != self.dim:
            raise ValueError(
                f"FeatureStats(dim={self.dim}) got features of shape {tuple(feats.shape)}"
            )
        self._ensure(feats.device)
        f = feats.detach().to(device=self._device, dtype=torch.float64)
        self.n += f.shape[0]
        self._sum += f.sum(dim=0)
        self._outer += f.T @ f
        if self._rows is not None:
            # in the features' own dtype (float32 from Inception): `factor` widens them exactly, and the
            # rows then take at most D * D * 4 bytes (16 MiB), half of ``sum_outer``
            keep = feats.detach().to(self._device).clone()
            self._rows = self._rows + [keep] if self.n < self.dim else None

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Add another accumulator's sums into this one (in place) and return self."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge FeatureStats of dims {self.dim} and {other.dim}")
        if other.n == 0:
            return self
        assert other._sum is not None and other._outer is not None
        self._ensure(other._sum.device)
        self.n += other.n
        self._sum += other._sum.to(self._device)
        self._outer += other._outer.to(self._device)
        keep = self._rows is not None and other._rows is not None and self.n < self.dim
        self._rows = self._rows + [r.to(self._device) for r in other._rows] if keep else None  # type: ignore[operator,union-attr]
        return self

    def mean(self) -> np.ndarray:
        """``[D]`` float64 mean of all features seen."""
        if self.n < 1 or self._sum is None:
            raise AlitEvalError("FID statistics need at least 1 image; none were accumulated")
        return (self._sum / self.n).cpu().numpy()

    def cov(self) -> np.ndarray:
        """``[D, D]`` float64 unbiased covariance (ddof=1, as ``numpy.cov`` and torch-fidelity)."""
        if self.n < 2 or self._sum is None or self._outer is None:
            raise AlitEvalError(f"FID statistics need at least 2 images; got {self.n}")
        mu = self._sum / self.n
        cov = (self._outer - self.n * torch.outer(mu, mu)) / (self.n - 1)
        cov = 0.5 * (cov + cov.T)  # exact symmetry despite rounding in the two sums
        return cov.cpu().numpy()

    def factor(self) -> torch.Tensor | None:
        """``[n - 1, D]`` float64 CPU ``F`` with ``cov() = F^T F``, or None when the rows were not kept
        (n >= D, or rebuilt from a state_dict) or n < 2.

        ``F = H^T X / sqrt(n - 1)``, with ``X`` the centred rows and ``H`` the ``[n, n - 1]`` Helmert
        basis of the vectors orthogonal to the ones vector (so ``H H^T = I - 11^T / n``). n - 1 rows
        instead of n: centring leaves a structural zero eigenvalue whose rounding-level square root
        would otherwise enter the trace term.
        """
        if not self._rows or self.n < 2:
            return None
        rows = torch.cat([r.to("cpu", torch.float64) for r in self._rows])
        x = rows - rows.mean(dim=0)
        k = torch.arange(1, self.n, dtype=torch.float64)
        # row k of H^T X: (x_0 + ... + x_(k-1) - k x_k) / sqrt(k (k + 1))
        helmert = (x.cumsum(dim=0)[:-1] - k[:, None] * x[1:]) / torch.sqrt(k * (k + 1))[:, None]
        return helmert / float(np.sqrt(self.n - 1))

    def state_dict(self) -> dict[str, np.ndarray]:
        """The sums as numpy arrays (``n``, ``sum``, ``sum_outer``), e.g. for ``np.savez``."""
        # copies: a CPU tensor's .numpy() shares memory, and later updates must not leak in
        s = self._sum.cpu().numpy().copy() if self._sum is not None else np.zeros(self.dim)
        o = (
            self._outer.cpu().numpy().copy()
            if self._outer is not None
            else np.zeros((self.dim, self.dim))
        )
        return {"n": np.asarray(self.n, dtype=np.int64), "sum": s, "sum_outer": o}

    @classmethod
    def from_state_dict(
        cls, state: dict[str, np.ndarray], device: torch.device | str | None = None
    ) -> FeatureStats:
        """Rebuild an accumulator exactly from `state_dict` output."""
        s = np.asarray(state["sum"], dtype=np.float64)
        o = np.asarray(state["sum_outer"], dtype=np.float64)
        if s.ndim != 1 or o.shape != (s.shape[0], s.shape[0]):
            raise AlitEvalError(f"bad FeatureStats state: sum {s.shape}, sum_outer {o.shape}")
        stats = cls(s.shape[0], device=device)
        stats._rows = None  # the sums only: the full-rank route
        stats.n = int(state["n"])
        if stats.n > 0:
            dev = stats._device or torch.device("cpu")
            stats._device = dev
            stats._sum = torch.from_numpy(s.copy()).to(dev)
            stats._outer = torch.from_numpy(o.copy()).to(dev)
        return stats


def _check_stats(mu: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(
            f"FID statistics need mu [D] and sigma [D, D], got {mu.shape} and {sigma.shape}"
        )
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
        raise ValueError("FID statistics contain NaN or inf")
    # Symmetrise: sums of outer products and float32 files can be asymmetric at rounding level.
    return mu, 0.5 * (sigma + sigma.T)


def _psd_sqrt(sigma: np.ndarray) -> torch.Tensor:
    """Symmetric square root of a PSD matrix; eigenvalues below zero (rounding) are clipped."""
    # torch's float64 symmetric eigensolver: several times faster than numpy's eigh at D=2048.
    w, v = torch.linalg.eigh(torch.from_numpy(sigma))
    return (v * w.clamp(min=0.0).sqrt()) @ v.T


def _trace_sqrt_product(root1: torch.Tensor, sigma2: np.ndarray) -> float:
    """``tr sqrtm(sigma1 @ sigma2)`` given ``root1 = sigma1^(1/2)``.

    ``sigma1 @ sigma2`` has the same eigenvalues as the symmetric PSD ``root1 @ sigma2 @ root1``,
    so the trace of the square root is the sum of square roots of that matrix's eigenvalues.
    Eigenvalues pushed below zero by rounding are clipped to 0, which has the effect of taking
    the real part of complex roots, as pytorch-fid and torch-fidelity do.
    """
    m = root1 @ torch.from_numpy(sigma2) @ root1
    w = torch.linalg.eigvalsh(0.5 * (m + m.T))
    return float(w.clamp(min=0.0).sqrt().sum())


def _trace_sqrt_factors(f1: torch.Tensor, f2: torch.Tensor) -> float:
    """``tr sqrtm(F1^T F1 F2^T F2)``: the nuclear norm of ``F1 F2^T`` (see the module docstring)."""
    return float(torch.linalg.svdvals(f1 @ f2.T).sum())


def _trace_sqrt_factor(f: torch.Tensor, sigma: np.ndarray) -> float:
    """``tr sqrtm(F^T F sigma)``: square roots of the eigenvalues of the PSD ``F sigma F^T``."""
    m = f @ torch.from_numpy(sigma) @ f.T
    return float(torch.linalg.eigvalsh(0.5 * (m + m.T)).clamp(min=0.0).sqrt().sum())


def _check_factor(mu: np.ndarray, factor: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    mu = np.asarray(mu, np.float64)
    if mu.ndim != 1 or factor.dim() != 2 or factor.shape[1] != mu.shape[0]:
        raise ValueError(f"FID statistics need mu [D] and a factor [m, D], got {mu.shape} and {tuple(factor.shape)}")
    if not (np.all(np.isfinite(mu)) and bool(torch.isfinite(factor).all())):
        raise ValueError("FID statistics contain NaN or inf")
    return mu, factor


class FrechetReference:
    """One side of a Frechet distance, prepared once for many comparisons.

    rFID at several budgets compares every budget's reconstructions with the same originals;
    the originals' covariance square root (the costliest step, an eigendecomposition) is then
    computed once here, and only if a full-rank comparison needs it.

    Args:
        mu: ``[D]`` reference mean.
        sigma: ``[D, D]`` reference covariance; may be None when `factor` is given.
        factor: ``[m, D]`` with ``sigma = factor^T factor`` when known (`FeatureStats.factor`):
            comparisons then take the exact low-rank route of the module docstring, and the
            ``D x D`` covariance is never formed.
    """

    def __init__(self, mu: np.ndarray, sigma: np.ndarray | None = None, factor: torch.Tensor | None = None) -> None:
        if factor is not None:
            self.mu, self.factor = _check_factor(mu, factor)
            self._sigma = None if sigma is None else _check_stats(mu, sigma)[1]
        elif sigma is not None:
            self.mu, self._sigma = _check_stats(mu, sigma)
            self.factor = None
        else:
            raise ValueError("a Frechet reference needs sigma or a factor")
        self._root: torch.Tensor | None = None

    @property
    def sigma(self) -> np.ndarray:
        """``[D, D]`` covariance (formed from the factor on first use when only that was given)."""
        if self._sigma is None:
            assert self.factor is not None
            self._sigma = (self.factor.T @ self.factor).numpy()
        return self._sigma

    @classmethod
    def of(cls, stats: FeatureStats) -> FrechetReference:
        """The reference of accumulated features (with their factor when the rows were kept)."""
        factor = stats.factor()
        return cls(stats.mean(), None if factor is not None else stats.cov(), factor)

    def distance_to(self, stats: FeatureStats) -> float:
        """Frechet distance from this reference to accumulated features; see `distance`."""
        factor = stats.factor()
        return self.distance(stats.mean(), None if factor is not None else stats.cov(), factor=factor)

    def distance(self, mu: np.ndarray, sigma: np.ndarray | None = None, eps: float = 1e-6,
                 factor: torch.Tensor | None = None) -> float:
        """Frechet distance from this reference to ``N(mu, sigma)``; see `frechet_distance`.

        ``factor`` (``sigma = factor^T factor``; `sigma` may then be None), like the reference's
        own, selects the exact low-rank route for the trace term; a side with a factor takes its
        trace from it too, so a set compared with itself gives 0 to rounding.
        """
        if factor is not None:
            mu, factor = _check_factor(mu, factor)
        elif sigma is not None:
            mu, sigma = _check_stats(mu, sigma)
        else:
            raise ValueError("a Frechet distance needs sigma or a factor for each side")
        if mu.shape != self.mu.shape:
            raise ValueError(
                f"FID statistics of different dimensions: {self.mu.shape} vs {mu.shape}"
            )
        diff = self.mu - mu
        mine, theirs = self.factor, factor
        tr1 = float((mine ** 2).sum()) if mine is not None else float(np.trace(self.sigma))
        tr2 = float((theirs ** 2).sum()) if theirs is not None else float(np.trace(sigma))
        if mine is not None and theirs is not None:
            tr_covmean = _trace_sqrt_factors(mine, theirs)
        elif mine is not None:
            tr_covmean = _trace_sqrt_factor(mine, sigma)
        elif theirs is not None:
            tr_covmean = _trace_sqrt_factor(theirs, self.sigma)
        else:
            if self._root is None:
                self._root = _psd_sqrt(self.sigma)
            tr_covmean = _trace_sqrt_product(self._root, sigma)
            if not np.isfinite(tr_covmean):
                # pytorch-fid / torch-fidelity remedy for a near-singular product: offset diagonals
                offset = np.eye(mu.shape[0]) * eps
                tr_covmean = _trace_sqrt_product(_psd_sqrt(self.sigma + offset), sigma + offset)
        return float(diff @ diff + tr1 + tr2 - 2.0 * tr_covmean)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Frechet distance between two Gaussians, in float64.

    ``|mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2))``, with the trace
    term from symmetric eigensolvers (see `_trace_sqrt_product`): one eigendecomposition and one
    eigenvalue solve of D x D matrices, a few seconds at D = 2048 on CPU.

    Args:
        mu1: ``[D]`` mean of set 1.
        sigma1: ``[D, D]`` covariance of set 1.
        mu2: ``[D]`` mean of set 2.
        sigma2: ``[D, D]`` covariance of set 2.
        eps: diagonal offset added to both covariances if the first attempt is not finite
            (the pytorch-fid / torch-fidelity remedy for a near-singular product).

    Returns:
        The distance (>= 0 up to rounding).
    """
    return FrechetReference(mu1, sigma1).distance(mu2, sigma2, eps=eps)


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    """FID between two accumulated feature sets (exact low-rank route when their rows were kept)."""
    return FrechetReference.of(a).distance_to(b)


class FidStats(NamedTuple):
    """Reference statistics read from an .npz file (``n`` is None when the file lacks it)."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int | None


def save_stats_npz(path: PathLike, mu: np.ndarray, sigma: np.ndarray, n: int) -> None:
    """Write reference statistics (keys ``mu``, ``sigma``, ``n``) atomically.

    The keys match pytorch-fid's and clean-fid's files, so those tools can read ours.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:  # a file object stops np.savez from appending ".npz"
            np.savez(
                f, mu=np.asarray(mu, np.float64), sigma=np.asarray(sigma, np.float64), n=np.int64(n)
            )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_stats_npz(path: PathLike) -> FidStats:
    """Read reference statistics written by alit-eval, pytorch-fid or clean-fid (keys mu/sigma).

    Raises:
        AlitEvalError: the file is missing, not an .npz, lacks mu/sigma, or has bad shapes.
    """
    path = Path(path)
    if not path.is_file():
        raise AlitEvalError(f"FID reference statistics file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            if not {"mu", "sigma"} <= keys:
                raise AlitEvalError(
                    f"{path} is not an FID statistics file: it needs arrays 'mu' and 'sigma', "
                    f"found {sorted(keys)}"
                )
            mu = np.asarray(data["mu"], np.float64)
            sigma = np.asarray(data["sigma"], np.float64)
            n = int(data["n"]) if "n" in keys else None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise AlitEvalError(f"cannot read FID statistics {path}: {exc}") from exc
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise AlitEvalError(
            f"{path}: mu must be [D] and sigma [D, D], got {mu.shape} and {sigma.shape}"
        )
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
        raise AlitEvalError(f"{path}: statistics contain NaN or inf")
    return FidStats(mu, sigma, n)
