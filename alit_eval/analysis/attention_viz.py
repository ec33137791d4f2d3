"""`alit-eval attention-viz`: which image regions each 1D token is read from, as the paper draws it.

The maps and their geometry are `alit_eval.analysis.attention_maps`; this module loads the
checkpoint and the images and writes, in a run folder like every other command
(``<results_dir>/attention-viz/<config hash>/``, resumed when the config is the same, replaced only
with ``--overwrite``), per image: the figure as one or more pages (PNG + PDF, under ``figures/``),
the raw maps (.npz) and a .json of the settings, then ``meta.json``.

By default the figure shows tokens from every iteration: all of them when the largest budget has at
most `ALL_TOKENS_UP_TO` tokens, else the first `PER_ITERATION` tokens added by each iteration;
`TOKENS_PER_PAGE` token columns per page keep a page under ~2000 px wide.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from alit_eval.analysis.attention_maps import INDEXING, attention_views
from alit_eval.analysis.skeleton import CommandRun
from alit_eval.data.decode import load_image
from alit_eval.data.demo import generate
from alit_eval.data.transforms import preprocess
from alit_eval.engine.device import resolve_device
from alit_eval.errors import AlitEvalError
from alit_eval.paths import portable
from alit_eval.results import plots, plots_tokens
from alit_eval.results.atomic import write_bytes, write_json
from alit_eval.results.labels import checkpoint_label
from alit_eval.tokenizers.family_queries import budgets_for, family_of
from alit_eval.tokenizers.resolve import load_pretrained

ALL_TOKENS_UP_TO = 64  # show every token when there are at most this many
PER_ITERATION = 8  # else: the first tokens added by each iteration
TOKENS_PER_PAGE = 8  # token columns per page: ~1950 px wide at 150 dpi with the lead columns


def default_tokens(model_budgets: Sequence[int], largest: int) -> list[int]:
    """Token indices shown by default: tokens from every iteration up to the budget `largest`.

    Args:
        model_budgets: the checkpoint's budgets (iteration ends), e.g. 32, 64, ..., 256.
        largest: the largest budget drawn.

    Returns:
        ``0..largest-1`` when ``largest <= ALL_TOKENS_UP_TO``; else the first `PER_ITERATION` tokens
        of each iteration block ``[previous budget, budget)``.
    """
    if largest <= ALL_TOKENS_UP_TO:
        return list(range(largest))
    ends = [b for b in sorted(model_budgets) if b <= largest]
    starts = [0, *ends[:-1]]
    return [t for s, e in zip(starts, ends) for t in range(s, min(s + PER_ITERATION, e))]


def pages(tokens: Sequence[int], per_page: int) -> list[list[int]]:
    """Split token columns into pages of at most `per_page`."""
    if per_page < 1:
        raise AlitEvalError(f"--tokens-per-page must be at least 1, got {per_page}")
    return [list(tokens[i : i + per_page]) for i in range(0, len(tokens), per_page)]


def _file_record(path: str) -> dict[str, str]:
    """An input image in config.json: where it is and a hash of its bytes (new bytes = new run)."""
    p = Path(path)
    if not p.is_file():
        raise AlitEvalError(f"image not found: {path}; give existing image files")
    return {"path": portable(p.resolve()), "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}


def render_attention(paths: Sequence[str], *, ckpt: str = "demo", budgets: Sequence[int] | None = None,
                     tokens: Sequence[int] | None = None, layer: int | None = None, indexing: str = "corrected",
                     show_budget: bool = False, results_dir: Any = "results", run_id: str | None = None,
                     overwrite: bool = False, out: Any = None, tokens_per_page: int = TOKENS_PER_PAGE,
                     seed: int = 0, device: str = "cpu", offline: bool = False, heads: int | None = None,
                     trust_checkpoint: bool = False, family: str | None = None) -> list[Path]:
    """`alit-eval attention-viz`: per image, the figure pages (PNG + PDF), the raw maps (.npz) and a .json.

    Images are preprocessed like the official custom-image path (``resize-center-crop``). With no
    path, the first `demo-scenes` image is drawn. The files go to the run folder
    ``<results_dir>/attention-viz/<run_id>`` (default run id: a hash of the config, which includes
    the checkpoint's and the images' sha256), or to `out`. Returns the written files.
    """
    if indexing not in INDEXING:
        raise AlitEvalError(f"--indexing must be one of {', '.join(INDEXING)}, got {indexing!r}")
    records = [_file_record(p) for p in paths]  # before the model loads: a wrong path fails at once
    dev = resolve_device(device)
    tok, info = load_pretrained(ckpt, offline=offline, trust_checkpoint=trust_checkpoint, heads=heads,
                                device=str(dev), family=family)
    family_of(tok).attention_arg(indexing)  # one line when the family has no maps or not this indexing
    bs = budgets_for(tok, budgets, info.get("default_budgets"))
    # The family's default budgets mark its iterations (ALIT: every budget; KARL/One-D-Piece: the
    # default sweep), so the default columns hold tokens from each of them.
    cols = list(tokens) if tokens else default_tokens(budgets_for(tok, None, info.get("default_budgets")), max(bs))
    if max(cols) >= max(bs) or min(cols) < 0:
        raise AlitEvalError(f"--tokens {cols}: token indices must lie in 0..{max(bs) - 1} for budgets {bs}")
    label, model = _model_names(tok, info)
    config = {"checkpoint": {"name": info["name"], "sha256": info.get("sha256"), "heads": heads},
              "images": records or [{"demo": "demo-scenes", "index": 0}], "preprocess": "resize-center-crop",
              "budgets": bs, "tokens": cols, "tokens_per_page": tokens_per_page, "layer": layer,
              "indexing": indexing, "show_budget": show_budget, "seed": seed,
              "halting": getattr(tok, "halting", None)}
    items = _input_images(paths, tok.image_size)
    written: list[Path] = []
    with CommandRun("attention-viz", config, results_dir=results_dir, run_id=run_id, overwrite=overwrite,
                    out=out) as run:
        folder = run.dir.path
        done = (run.dir.previous_meta or {}).get("extra", {}).get("figures") if run.dir.complete else None
        if done and all((folder / f).is_file() for pngs in done.values() for f in pngs):
            return [folder / f for pngs in done.values() for f in pngs]  # finished with this config: as it is
        figs = run.dir.figures  # figures/ as in every run folder, so `alit-eval report` shows them
        figures: dict[str, list[str]] = {}
        for stem, img in items:
            v = attention_views(tok, img.to(dev), stem, bs, layer=layer, indexing=indexing, seed=seed)
            name = f"{stem}_layer{v['layer']}_{indexing}"
            pngs, files = _figure_pages(v, figs, name, stem, model, cols, tokens_per_page, indexing, show_budget)
            written += files
            figures[stem] = pngs
            written += _write_raw(v, folder, name, {
                "image": stem, "checkpoint": info["name"], "sha256": info.get("sha256"),
                "layer": v["layer"], "n_layers": v["n_layers"], "indexing": indexing,
                "budgets": bs, "tokens": cols, "pages": figures[stem],
                "preprocess": "resize-center-crop",
                "halting": getattr(tok, "halting", None), "seed": seed,
                "npz": "attention_<budget>: [N, gh, gw] head-averaged decoder attention"})
        ck = {k: val for k, val in info.items() if k != "config"}
        run.finish(seed, {"checkpoint": ck, "checkpoint_label": label, "figures": figures,
                          "n_images": len(items)}, device=str(dev), standard=False)
    return written


def _model_names(tok: Any, info: dict[str, Any]) -> tuple[str, str]:
    """The checkpoint's label, and the figure's model line: the model, then the file."""
    label = checkpoint_label(info["name"], info.get("path"))
    model = f"{family_of(tok).describe_config(tok.cfg)} ({label})" if hasattr(tok, "cfg") else label
    return label, model


def _input_images(paths: Sequence[str], size: int) -> list[tuple[str, torch.Tensor]]:
    """(stem, preprocessed image) per path; the first `demo-scenes` image when no path is given."""
    items = [(Path(p).stem, preprocess(load_image(p), "resize-center-crop", size)) for p in paths]
    if not items:
        s = generate("demo-scenes", 0, size=size)
        items.append((s.id, torch.from_numpy(s.image).permute(2, 0, 1).contiguous()))
    return items


def _figure_pages(v: dict[str, Any], figs: Path, name: str, stem: str, model: str, cols: Sequence[int],
                  tokens_per_page: int, indexing: str, show_budget: bool) -> tuple[list[str], list[Path]]:
    """Draw and save one image's figure pages; returns their PNG names (run-relative) and the files written."""
    written: list[Path] = []
    if not plots.drawing():
        return [], written
    chunks = pages(cols, tokens_per_page)
    for k, page in enumerate(chunks):
        span = f"tokens {page[0]}-{page[-1]}" if len(page) > 1 else f"token {page[0]}"
        pagehead = f", page {k + 1}/{len(chunks)}" if len(chunks) > 1 else ""
        marked = "; red frame = slot the model dropped (never decoded)" if any(v["dropped"].values()) else ""
        title = (f"{model}: {stem}, {span}{pagehead}{marked}\n"
                 f"decoder layer {v['layer']} (of 0..{v['n_layers'] - 1}, {indexing} indexing); "
                 f"overlay = attention paid to the token (jet, min-max per map, alpha 0.4)")
        fig = plots_tokens.attention_grid(v["image"], v["maps"], page, v["argmax"],
                                          v["recon"] if show_budget else None, title=title,
                                          dropped=v["dropped"])
        suffix = f"_p{k + 1}" if len(chunks) > 1 else ""
        written += plots.save(fig, figs, name + suffix)
    return [f"figures/{p.name}" for p in written if p.suffix == ".png"], written


def _write_raw(v: dict[str, Any], folder: Path, name: str, record: dict[str, Any]) -> list[Path]:
    """The raw maps (``<name>.npz``: the image and one array per budget) and their ``<name>.json``."""
    buf = io.BytesIO()
    np.savez_compressed(buf, image=v["image"], **{f"attention_{b}": a for b, a in v["raw"].items()})
    return [write_bytes(buf.getvalue(), folder / f"{name}.npz"), write_json(record, folder / f"{name}.json")]
