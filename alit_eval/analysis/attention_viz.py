"""`alit-eval attention-viz`: which image regions each 1D token is read from, as the paper draws it.

The maps and their geometry are `alit_eval.analysis.attention_maps`; this module loads the
checkpoint and the images and writes one figure (PNG + PDF), the raw maps (.npz) and a .json per image.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from alit_eval.analysis.attention_maps import INDEXING, attention_views
from alit_eval.data.decode import load_image
from alit_eval.data.demo import generate
from alit_eval.data.transforms import preprocess
from alit_eval.engine.sweep import resolve_device
from alit_eval.errors import AlitEvalError
from alit_eval.results import plots, plots_tokens
from alit_eval.results.io import write_bytes, write_json
from alit_eval.tokenizers.families import budgets_for, family_of
from alit_eval.tokenizers.pretrained import load_pretrained


def render_attention(paths: Sequence[str], *, ckpt: str = "demo", budgets: Sequence[int] | None = None,
                     tokens: Sequence[int] | None = None, layer: int | None = None, indexing: str = "corrected",
                     show_budget: bool = False, out_dir: str | Path, seed: int = 0, device: str = "cpu",
                     offline: bool = False, heads: int | None = None, trust_checkpoint: bool = False,
                     family: str | None = None) -> list[Path]:
    """`alit-eval attention-viz`: one figure (PNG + PDF), its raw maps (.npz) and a .json per image.

    Images are preprocessed like the official custom-image path (``resize-center-crop``). With no
    path, the first `demo-scenes` image is drawn. Returns the written files.
    """
    if indexing not in INDEXING:
        raise AlitEvalError(f"--indexing must be one of {', '.join(INDEXING)}, got {indexing!r}")
    dev = resolve_device(device)
    tok, info = load_pretrained(ckpt, offline=offline, trust_checkpoint=trust_checkpoint, heads=heads,
                                device=str(dev), family=family)
    family_of(tok).attention_arg(indexing)  # one line when the family has no maps or not this indexing
    bs = budgets_for(tok, budgets, info.get("default_budgets"))
    cols = list(tokens) if tokens else list(range(min(32, max(bs))))
    if max(cols) >= max(bs) or min(cols) < 0:
        raise AlitEvalError(f"--tokens {cols}: token indices must lie in 0..{max(bs) - 1} for budgets {bs}")
    items = []
    for path in paths:
        img = preprocess(load_image(path), "resize-center-crop", tok.image_size)
        items.append((Path(path).stem, img))
    if not items:
        s = generate("demo-scenes", 0, size=tok.image_size)
        items.append((s.id, torch.from_numpy(s.image).permute(2, 0, 1).contiguous()))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for stem, img in items:
        v = attention_views(tok, img.to(dev), stem, bs, layer=layer, indexing=indexing, seed=seed)
        name = f"{stem}_layer{v['layer']}_{indexing}"
        title = (f"{stem}: decoder layer {v['layer']} of {v['n_layers']} ({indexing} indexing), "
                 f"{info['name']}; jet = attention to token t, min-max per map")
        fig = plots_tokens.attention_grid(v["image"], v["maps"], cols, v["argmax"],
                                          v["recon"] if show_budget else None, title=title)
        written += plots.save(fig, out, name)
        buf = io.BytesIO()
        np.savez_compressed(buf, image=v["image"], **{f"attention_{b}": a for b, a in v["raw"].items()})
        written.append(write_bytes(buf.getvalue(), out / f"{name}.npz"))
        written.append(write_json({"image": stem, "checkpoint": info["name"], "sha256": info.get("sha256"),
                                   "layer": v["layer"], "n_layers": v["n_layers"], "indexing": indexing,
                                   "budgets": bs, "tokens": cols, "preprocess": "resize-center-crop",
                                   "halting": getattr(tok, "halting", None), "seed": seed,
                                   "npz": "attention_<budget>: [N, gh, gw] head-averaged decoder attention"},
                                  out / f"{name}.json"))
    return written
