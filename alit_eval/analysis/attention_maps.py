"""Decoder attention of 1D tokens over the 2D grid: the maps and their geometry (a primitive).

The maps come from ``rollout(..., attention=...)``: ``[B, layers, N, gh, gw]``, the head-averaged
attention paid by each 2D-grid query of the ALIT decoder to latent token j (alit_official.md §3).
For `alit-eval attention-viz` each map is upsampled bilinearly to the image, min-max normalised and
clipped to 1, then drawn in jet at alpha 0.4 over the image (the official notebook's recipe), for
the second-to-last decoder layer by default (the notebook's layer 6 of 8). The object-discovery
score built on the argmax of these maps is in `alit_eval.analysis.discovery`; the figures of
`alit-eval attention-viz` are drawn by `alit_eval.analysis.attention_viz`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from alit_eval.errors import AlitEvalError
from alit_eval.metrics.pixel import to_uint8
from alit_eval.tokenizers.family_queries import attention_for, family_or_none, inference_kwargs, option_values
from alit_eval.tokenizers.generators import per_image_generators


INDEXING = ("corrected", "official-notebook")


def default_layer(n_layers: int) -> int:
    """The official choice: the second-to-last decoder layer (6 of 8); 0 for a one-layer decoder."""
    return max(n_layers - 2, 0)


def check_layer(layer: int | None, n_layers: int) -> int:
    """Resolve a layer index (None = `default_layer`, negatives count from the end)."""
    if layer is None:
        return default_layer(n_layers)
    if not -n_layers <= layer < n_layers:
        raise AlitEvalError(f"--layer {layer} out of range: this decoder has {n_layers} layers (0..{n_layers - 1})")
    return layer % n_layers


# ------------------------------------------------------------------------------------ maps


def overlay_maps(maps: Any, size: int) -> np.ndarray:
    """Token maps ready to draw: bilinear upsampling, per-map min-max normalisation, clip to 1.

    Args:
        maps: ``[N, gh, gw]`` attention of N tokens (torch or numpy).
        size: output side in pixels.

    Returns:
        float32 ``[N, size, size]`` in [0, 1] (a constant map becomes all 0).
    """
    m = torch.as_tensor(np.asarray(maps, dtype=np.float32))[None]
    up = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False)[0]
    lo = up.flatten(1).min(1).values[:, None, None]
    hi = up.flatten(1).max(1).values[:, None, None]
    return ((up - lo) / (hi - lo).clamp_min(1e-12)).clamp(0.0, 1.0).numpy()


def upsample_labels(labels: np.ndarray, size: int) -> np.ndarray:
    """Nearest upsampling of a cell labelling ``[..., gh, gw]`` to ``[..., size, size]`` pixels."""
    gh, gw = labels.shape[-2:]
    rows = (np.arange(size) * gh) // size
    cols = (np.arange(size) * gw) // size
    return labels[..., rows[:, None], cols[None, :]]


def grid_partition(n: int, size: int) -> np.ndarray:
    """A fixed partition of a ``size x size`` image into `n` near-square cells (int ``[size, size]``).

    Rows x columns is the factorisation of `n` closest to square (e.g. 8 -> 2x4, 64 -> 8x8; a prime
    gives vertical strips); cell edges at ``floor(k * size / rows)``.
    """
    if n < 1:
        raise ValueError(f"need at least one cell, got {n}")
    r = max(d for d in range(1, int(np.sqrt(n)) + 1) if n % d == 0)
    c = n // r
    y = (np.arange(size) * r) // size
    x = (np.arange(size) * c) // size
    return (y[:, None] * c + x[None, :]).astype(np.int64)


# ---------------------------------------------------------------------------------- scores


def attention_views(tokenizer: Any, image: Any, image_id: str, budgets: Sequence[int], *, layer: int | None,
                    indexing: str, seed: int) -> dict[str, Any]:
    """One image's maps at one decoder layer, ready to draw.

    Args:
        tokenizer: a tokenizer whose family has decoder attention (`Family.attention_text` says what a map is).
        image: uint8 ``[3, S, S]`` preprocessed image.
        image_id: seeds the per-image halting generator (``seeded`` policy).
        budgets: budgets to show.
        layer: decoder layer (None = `default_layer`).
        indexing: ``corrected`` (every family) or ``official-notebook`` (ALIT).
        seed: halting seed.

    Returns:
        ``{"layer", "n_layers", "raw": {b: [N, gh, gw]}, "maps": {b: [N, S, S] in [0,1]},
        "argmax": {b: [S, S]}, "recon": {b: uint8 [S, S, 3]}, "image": uint8 [S, S, 3]}``.
    """
    dev = getattr(tokenizer, "device", torch.device("cpu"))
    fam = family_or_none(tokenizer)
    gen: Any = None
    if fam is not None and fam.random and fam.uses_global_stream(option_values(tokenizer)):
        gen = torch.Generator(device=dev).manual_seed(seed)  # a local stream: never the global RNG
    elif fam is None or fam.random:
        gen = per_image_generators(seed, [image_id])
    x = image.float().div(255.0)[None]
    r = tokenizer.rollout(x, budgets, decode=True, attention=attention_for(tokenizer, indexing),
                          **inference_kwargs(tokenizer, {"generator": gen}))
    size = int(image.shape[-1])
    out: dict[str, Any] = {"raw": {}, "maps": {}, "argmax": {}, "recon": {}, "dropped": {},
                           "image": image.permute(1, 2, 0).cpu().numpy()}
    for b in r.budgets:
        att = r[b].attention[0].float().cpu()  # [layers, N, gh, gw]
        out["n_layers"] = att.shape[0]
        out["layer"] = check_layer(layer, att.shape[0])
        a = att[out["layer"]].numpy()
        out["raw"][b] = a
        out["maps"][b] = overlay_maps(a, size)
        out["argmax"][b] = upsample_labels(a.argmax(0), size)
        out["recon"][b] = to_uint8(r[b].reconstruction)[0].permute(1, 2, 0).cpu().numpy()
        halted = (r[b].extras or {}).get("halt_mask")  # KARL: the slots it dropped (the decoder never sees them)
        if halted is not None:
            out["dropped"][b] = [int(i) for i in torch.nonzero(halted[0].bool()).flatten().tolist()]
    return out
