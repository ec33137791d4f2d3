"""The official ALIT token selection criterion (TSC), as ``encode()`` applies it.

The official ``model.encode(imgs, return_min_length_embedding=True,
token_selection_criteria="reconstruction_loss", threshold=0.07)`` (alit_official.md §3) runs one
full forward with reconstructions at every iteration, computes ``L1_t = mean |recon_t - img|`` over
the whole batch, channels and pixels on the **raw, unclamped** reconstruction, and returns the first
iteration with ``L1_t < threshold``; when none qualifies, the iteration with the lowest L1 (first on
ties), which need not be the last. `official_token_selection` reproduces that call per chunk of
`batch_size` images (default 1, the only size that gives per-image budgets).

The engine's ``l1`` column is measured on uint8-quantised, clamped reconstructions and picks another
iteration in several fixture cases; the ``official-l1`` allocation criterion uses the engine's
``l1_raw`` column instead, which is this module's L1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch

OFFICIAL_THRESHOLD = 0.07  # default of the official encode(); the notebooks use 0.05


@dataclass
class OfficialSelection:
    """What the official ``encode()`` decided for one image (the fields of the fixture's ``tsc.json``).

    Attributes:
        image: position of the image in the input batch.
        returned_iteration: chosen iteration t (0-based).
        returned_num_tokens: tokens at that iteration (the budget).
        returned_by: ``"first_below_threshold"`` or ``"fallback_min_l1"``.
        l1_per_iteration: the L1 the decision used, per iteration (a mean over the image's chunk
            when ``batch_size > 1``, as the official batch-level rule).
        halting_masked_counts_per_iteration: 2D positions this image's halting masked per iteration.
        latent: ``[N, w]`` raw encoder latents at the chosen iteration (what ``encode()`` returns as
            the embedding), only with ``keep_tensors=True``.
        reconstruction: ``[3, H, W]`` raw (unclamped) reconstruction there, only with ``keep_tensors``.
    """

    image: int
    returned_iteration: int
    returned_num_tokens: int
    returned_by: str
    l1_per_iteration: list[float]
    halting_masked_counts_per_iteration: list[int] = field(default_factory=list)
    latent: "torch.Tensor | None" = None
    reconstruction: "torch.Tensor | None" = None


def official_decision(l1: Sequence[float], threshold: float) -> tuple[int, str]:
    """The official rule on a sequence of per-iteration L1 values.

    Returns:
        ``(iteration, "first_below_threshold" | "fallback_min_l1")``.
    """
    arr = np.asarray(l1, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError("need a non-empty 1-D sequence of per-iteration L1 values")
    below = np.flatnonzero(arr < threshold)
    if below.size:
        return int(below[0]), "first_below_threshold"
    return int(np.argmin(arr)), "fallback_min_l1"


def official_token_selection(tokenizer: Any, images: "torch.Tensor", threshold: float = OFFICIAL_THRESHOLD, *,
                             batch_size: int = 1, seed: int | None = None, halting: str | None = "official",
                             keep_tensors: bool = False) -> list[OfficialSelection]:
    """Token budget per image chosen exactly as the official ALIT ``encode()`` chooses it.

    Each chunk of `batch_size` consecutive images is one ``encode()`` call: one rollout over every
    budget of the tokenizer with pixels decoded, the L1 of the raw (unclamped) reconstruction
    averaged over the chunk, channels and pixels, then `official_decision`. Images are compared as
    given (the official input is PNG / 255 in [0,1]).

    Args:
        tokenizer: an ALIT tokenizer (any `AdaptiveTokenizer` whose budget outputs carry
            ``extras["reconstruction_raw"]``; others fall back to their clamped reconstruction).
        images: ``[B,3,S,S]`` float in [0,1].
        threshold: the L1 threshold on [0,1] images (official default 0.07).
        batch_size: images per ``encode()`` call; 1 gives per-image decisions (the official criterion
            is batch-level, so larger chunks share one budget).
        seed: if set, ``torch.manual_seed(seed)`` right before each call (the fixture convention:
            official VQGAN halting draws from the global CPU generator). None leaves the RNG as is.
        halting: halting policy of the rollout (``official`` = the official global-RNG Bernoulli).
        keep_tensors: also return the chosen latents and raw reconstruction.

    Returns:
        One `OfficialSelection` per image, in input order.
    """
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    budgets = sorted(tokenizer.budgets)
    out: list[OfficialSelection] = []
    for start in range(0, images.shape[0], batch_size):
        chunk = images[start : start + batch_size]
        if seed is not None:
            torch.manual_seed(seed)
        kwargs = {"halting": halting} if halting is not None else {}
        roll = tokenizer.rollout(chunk, budgets, decode=True, **kwargs)
        target = chunk.to(roll[budgets[0]].latent.device, torch.float32)
        raws = []
        for b in budgets:
            o = roll[b]
            raws.append(o.extras.get("reconstruction_raw", o.reconstruction))
        # One mean over the whole chunk tensor (batch, channels, pixels) in float32, as the official code.
        batch_l1 = [float((r.float() - target).abs().mean()) for r in raws]
        t, how = official_decision(batch_l1, threshold)
        mask = [roll[b].halting_mask for b in budgets]
        for j in range(chunk.shape[0]):
            counts = [int(m[j].sum()) if m is not None else 0 for m in mask]
            sel = OfficialSelection(
                image=start + j, returned_iteration=t, returned_num_tokens=budgets[t], returned_by=how,
                l1_per_iteration=list(batch_l1),
                halting_masked_counts_per_iteration=counts)
            if keep_tensors:
                sel.latent = roll[budgets[t]].latent[j].detach().cpu()
                sel.reconstruction = raws[t][j].detach().cpu()
            out.append(sel)
    return out
