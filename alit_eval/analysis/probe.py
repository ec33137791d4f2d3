"""What the tokens know: the probe primitives (features per kind, splits, probes, CIs, selection rules).

The command pipeline (labels, tables, the run folder) is `alit_eval.analysis.downstream`.

`alit-eval downstream` runs one engine sweep that stores per-image features at every budget
(`FEATURE_KINDS`), then fits scikit-learn probes on a seeded, stratified train split and scores the
held-out split: logistic regression on standardised features with C chosen by cross-validation on
the training split only (top-1, and top-5 when there are more than 5 classes, with bootstrap CIs),
and ridge regression for continuous targets (R², MAE). Two further views:

- task-driven selection (the paper's classification criterion): per test image, the smallest
  budget whose probe classifies it correctly, against the official reconstruction criterion
  (`select_official` on per-image L1), with their Spearman correlation;
- the One-D-Piece view: the probe trained on original-image features at the largest budget,
  applied to the features of each budget's reconstruction, re-encoded at the largest budget. The
  re-encoding runs inside the same sweep (`FeatureTap`), on the uint8-quantised reconstruction,
  exactly what re-encoding the saved PNG would give, so no second pass over files is needed.

The protocol's `BudgetOutput` does not expose the encoder's 2D tokens; `FeatureTap` reads them with
a forward hook on the ALIT encoder (one call per iteration: the official ``image_tokens_t``, before
halting replaces any) and adds them, and the other derived features, to the outputs' ``extras``,
where the engine's captures pick them up.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from alit_eval.analysis.token_selection import select_official
from alit_eval.metrics.pixel import to_uint8


log = logging.getLogger(__name__)

C_GRID = (0.01, 0.1, 1.0, 10.0)  # inverse L2 strength of the logistic probe, picked by CV
ALPHA_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0)  # ridge strength, picked by CV
CV_FOLDS = 5
MIN_PER_CLASS = 4  # smaller classes cannot be split and cross-validated; they are left out

# Feature kind -> (engine captures concatenated in this order, description).
FEATURE_KINDS: dict[str, tuple[tuple[str, ...], str]] = {
    "latent": (("latent_mean",), "mean of the 1D latent tokens (raw encoder output, as official encode())"),
    "codes": (("tokens_mean",), "mean of the quantised codes the decoder reads (12-d for ALIT)"),
    "codes-flat": (("tokens",), "all quantised codes concatenated in token order (N*d values)"),
    "2d": (("enc2d_mean",), "mean of the encoder's 2D tokens after the iteration (official image_tokens_t)"),
    "2d+first": (("enc2d_mean", "latent_first_mean"),
                 "2d concatenated with the mean of the first iteration's 1D latents (paper's 2D + 1D probe)"),
    "base2d": (("base2d_mean",), "mean of the frozen base tokenizer's 2D features (budget-independent)"),
}
DEFAULT_KINDS = ("latent", "codes", "2d", "2d+first", "base2d")
BUDGET_FREE = {"base2d"}  # the same features at every budget: probed once
TAP_CAPTURES = {"enc2d_mean", "latent_first_mean", "base2d_mean", "recon_latent_mean"}


# ------------------------------------------------------------------------------------ features


class FeatureTap:
    """An `AdaptiveTokenizer` wrapper adding probe features to every budget's ``extras``.

    Adds ``enc2d_mean`` ``[B, w]`` (hooked encoder 2D tokens), ``latent_first_mean`` ``[B, w]`` (mean of
    the first iteration's latents at this budget), ``base2d_mean`` ``[B, C_b]`` and, with
    `recon_view`, ``recon_latent_mean`` ``[B, w]``: the budget's reconstruction, quantised to uint8
    with `rounding`, re-encoded at the largest budget with the same halting draws as the original.
    """

    def __init__(self, tokenizer: Any, *, recon_view: bool = False, rounding: str = "round") -> None:
        self.inner, self.recon_view, self.rounding = tokenizer, recon_view, rounding

    @staticmethod
    def supports_2d(tokenizer: Any) -> bool:
        """Whether the hooks below apply: a recurrent encoder called once per iteration of
        ``tokens_per_iter`` tokens over ``[cls ; 2D tokens ; ...]`` (other families lack these features)."""
        cfg = getattr(tokenizer, "cfg", None)
        return hasattr(tokenizer, "encoder") and hasattr(cfg, "num_2d") and hasattr(cfg, "tokens_per_iter")

    name = property(lambda self: self.inner.name)
    family = property(lambda self: getattr(self.inner, "family", None))  # for the family registry
    image_size = property(lambda self: self.inner.image_size)
    budgets = property(lambda self: self.inner.budgets)

    def to(self, device: Any) -> "FeatureTap":
        self.inner = self.inner.to(device)
        return self

    def rollout(self, images: Any, budgets: Any = None, **kw: Any) -> Any:
        before = _rng_state(kw.get("generator"))
        seen: list[torch.Tensor] = []
        hook = None
        if self.supports_2d(self.inner):
            n2d = self.inner.cfg.num_2d
            hook = self.inner.encoder.register_forward_hook(lambda m, i, o: seen.append(o[:, 1 : 1 + n2d].mean(1)))
        try:
            r = self.inner.rollout(images, budgets, **kw)
        finally:
            if hook is not None:
                hook.remove()
        tpi = getattr(getattr(self.inner, "cfg", None), "tokens_per_iter", min(self.inner.budgets))
        base = r.extras.get("base_z")
        for b, out in r.outputs.items():
            out.extras["latent_first_mean"] = out.latent[:, :tpi].mean(1)
            if seen:
                out.extras["enc2d_mean"] = seen[b // tpi - 1]
            if base is not None:
                out.extras["base2d_mean"] = base.flatten(2).mean(-1)
        if self.recon_view:
            top = max(self.inner.budgets)
            after = _rng_state(kw.get("generator"))
            for b, out in r.outputs.items():
                rec = to_uint8(out.extras.get("reconstruction_raw", out.reconstruction), self.rounding).float() / 255.0
                # Replay the original's halting draws, so the re-encode differs only in its input.
                gen = _set_rng_state(kw.get("generator"), before)
                out.extras["recon_latent_mean"] = self.inner.rollout(
                    rec, [top], **{**kw, "decode": False, "attention": False, "generator": gen})[top].latent.mean(1)
            _set_rng_state(kw.get("generator"), after)  # the sweep's random stream continues untouched
        return r


def _rng_state(gen: Any) -> Any:
    """Snapshot of the halting randomness: per-image generators, one generator, or the global RNGs."""
    if isinstance(gen, (list, tuple)):
        return [g.get_state() for g in gen]
    if isinstance(gen, torch.Generator):
        return gen.get_state()
    return torch.get_rng_state(), (torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None)


def _set_rng_state(gen: Any, state: Any) -> Any:
    """Restore `_rng_state`'s snapshot; returns the generator argument to pass to ``rollout``."""
    if isinstance(gen, (list, tuple)):
        return [torch.Generator(device=g.device).set_state(s) for g, s in zip(gen, state)]
    if isinstance(gen, torch.Generator):
        return gen.set_state(state)
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])
    return gen


def captures_for(kinds: Sequence[str], recon_view: bool) -> tuple[str, ...]:
    """Engine capture names needed by the feature kinds (and the reconstruction view)."""
    names = {c for k in kinds for c in FEATURE_KINDS[k][0]}
    if recon_view:
        names |= {"recon_latent_mean", "latent_mean"}
    return tuple(sorted(names))


def load_features(store: Any, kind: str, budget: int) -> np.ndarray:
    """``[n_images, d]`` float64 features of `kind` at `budget`, in the store's image order."""
    parts = [store.concat(f"cap_{c}_{budget}") for c in FEATURE_KINDS[kind][0]]
    return np.concatenate([p.reshape(len(p), -1) for p in parts], axis=1).astype(np.float64)


# --------------------------------------------------------------------------------------- probes


def stratified_split(labels: Sequence[Any], test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified train/test split: sorted index arrays ``(train, test)``."""
    idx = np.arange(len(labels))
    tr, te = train_test_split(idx, test_size=test_fraction, stratify=np.asarray(labels), random_state=seed)
    return np.sort(tr), np.sort(te)


def random_split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic random train/test split of ``range(n)`` (for continuous targets)."""
    tr, te = train_test_split(np.arange(n), test_size=test_fraction, random_state=seed)
    return np.sort(tr), np.sort(te)


def fit_classifier(x: np.ndarray, y: np.ndarray, *, seed: int, c_grid: Sequence[float] = C_GRID,
                   folds: int = CV_FOLDS) -> Any:
    """Standardise + logistic regression, C chosen by stratified K-fold CV on (x, y) only.

    Args:
        x: ``[n, d]`` training features; y: ``[n]`` labels (every class at least twice).

    Returns:
        The refitted sklearn Pipeline; ``.chosen_c`` holds the selected C.
    """
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    k = int(min(folds, np.unique(y, return_counts=True)[1].min()))
    if k < 2 or len(c_grid) == 1:
        model = pipe.set_params(logisticregression__C=float(c_grid[len(c_grid) // 2])).fit(x, y)
    else:
        search = GridSearchCV(pipe, {"logisticregression__C": [float(c) for c in c_grid]},
                              cv=StratifiedKFold(k, shuffle=True, random_state=seed), scoring="accuracy")
        model = search.fit(x, y).best_estimator_
    model.chosen_c = float(model.get_params()["logisticregression__C"])
    return model


def topk_correct(model: Any, x: np.ndarray, y: np.ndarray, k: int = 1) -> np.ndarray:
    """``[n]`` bool: the true label is among the `k` most probable classes (ties: class order)."""
    proba = model.predict_proba(x)
    order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    return (model.classes_[order] == np.asarray(y)[:, None]).any(axis=1)


def fit_regressor(x: np.ndarray, t: np.ndarray, *, alphas: Sequence[float] = ALPHA_GRID) -> Any:
    """Standardise + ridge regression, alpha chosen by leave-one-out CV on (x, t) only.

    Ridge's leave-one-out error has a closed form (RidgeCV's efficient LOO), so the alpha search
    costs one fit; the scaler is fitted on the same training split.
    """
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=[float(a) for a in alphas])).fit(x, t)
    model.chosen_alpha = float(model[-1].alpha_)
    return model


def r2(t: np.ndarray, p: np.ndarray) -> float:
    """Coefficient of determination (NaN for a constant target)."""
    ss = float(((t - t.mean()) ** 2).sum())
    return 1.0 - float(((t - p) ** 2).sum()) / ss if ss > 0 else float("nan")


def smallest_correct(correct: np.ndarray, budgets: Sequence[int]) -> np.ndarray:
    """Per row of ``[n, n_budgets]`` bool (budgets ascending): the first correct budget, NaN if none."""
    c = np.asarray(correct, dtype=bool)
    first = np.argmax(c, axis=1)
    return np.where(c.any(axis=1), np.asarray(budgets, dtype=np.float64)[first], np.nan)


def select_by_reconstruction(l1: np.ndarray, budgets: Sequence[int], threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``[n, n_budgets]`` per-image L1: the budget the official rule picks, and whether
    it was its fallback (no budget below `threshold`, so the lowest-L1 one)."""
    picks = [select_official(row, threshold) for row in l1]
    chosen = np.array([budgets[i] for i, _ in picks], dtype=np.float64)
    return chosen, np.array([how == "fallback_min_l1" for _, how in picks])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)
