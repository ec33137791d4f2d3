"""The Python API: evaluate a tokenizer, compute FID between two folders, load a tokenizer.

Reached as ``from alit_eval import evaluate, fid_between, load_tokenizer`` (imported lazily by
``alit_eval/__init__.py``, so ``import alit_eval`` stays light). Each function runs the same code as
its CLI counterpart: `evaluate` is ``alit-eval fid`` (same run folder, same resume), `fid_between`
uses the same offline Inception as the sweep, `load_tokenizer` the same resolution as ``--ckpt``.

Example::

    from alit_eval import evaluate, fid_between, load_tokenizer

    res = evaluate("alit_small.vqgan_quantized.in100", "photos/", budgets=[32, 64, 128, 256], limit=500)
    print(res.table)                  # budgets x metrics (rFID, L1, PSNR, ...)
    res.per_image.groupby("budget")["l1"].mean()
    print(res.run_dir)                # results/fid/<config hash>/

    evaluate(..., save_recons="recons/")          # PNGs per budget, as measured
    fid_between("recons/original", "recons/256")  # FID with the offline Inception

    tok = load_tokenizer("demo")
    out = tok.rollout(images, [8, 64])  # images: float [B, 3, S, S] in [0, 1]
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from alit_eval.errors import AlitEvalError

if TYPE_CHECKING:
    import pandas as pd

# SweepConfig fields set by evaluate's own arguments or by the engine, not through **options.
_NOT_OPTIONS = {"ckpt", "data", "budgets", "seed", "device", "offline", "progress", "extra"}


@dataclass
class Evaluation:
    """What `evaluate` returns.

    Attributes:
        metrics: long-format ``metrics.csv`` rows (budget, metric, value, ci_low, ci_high, ...).
        per_image: ``per_image.parquet``: one row per image and budget (l1, mse, psnr, ssim, ...).
        run_dir: the run folder (``<results_dir>/fid/<config hash>``) holding those files and the figures.
    """

    metrics: "pd.DataFrame"
    per_image: "pd.DataFrame"
    run_dir: Path

    @property
    def table(self) -> "pd.DataFrame":
        """The headline table: budgets as rows, metrics as columns (what ``alit-eval fid`` prints)."""
        return self.metrics.pivot_table(index="budget", columns="metric", values="value", aggfunc="first")


def _budgets_arg(budgets: Any) -> list[int] | str | None:
    """`evaluate`'s ``budgets``: a string in the CLI's budget syntax (``"128"``, ``"8-256:8"``,
    ``"1,2,4,..."``, ``"all"``), one int, or ints; anything else is one line.

    A string is read as a whole, never character by character (``"128"`` once became 1, 2, 8).
    """
    from alit_eval.budgets import parse_budget_spec

    if budgets is None:
        return None
    if isinstance(budgets, str):
        spec = parse_budget_spec(budgets, option="budgets")  # syntax and size checked now, before loading
        return budgets if spec.everything or spec.open_ends else spec.fixed(option="budgets")
    if isinstance(budgets, int) and not isinstance(budgets, bool):
        budgets = [budgets]
    try:
        items = list(budgets)
    except TypeError:
        items = None
    if items is not None and not items:
        return None  # an empty list has always meant "the default budgets"
    if items is None or not all(_is_whole(b) and int(b) >= 1 for b in items):
        shown = repr(budgets) if len(repr(budgets)) <= 60 else repr(budgets)[:60] + "..."
        raise AlitEvalError(f"evaluate(): budgets={shown} must be positive whole numbers (e.g. [32, 64]) or a "
                            "budget string such as \"32,64\", \"8-256:8\" or \"1,2,4,...\"")
    return sorted({int(b) for b in items})


def _is_whole(value: Any) -> bool:
    """An int (numpy's too) but not a bool, nor a float that merely looks whole."""
    import numbers

    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def evaluate(ckpt: str | Path = "demo", data: str | Path = "demo-scenes",
             budgets: Sequence[int] | int | str | None = None, *,
             results_dir: str | Path = "results", device: str = "auto", seed: int = 0, offline: bool = False,
             run_id: str | None = None, overwrite: bool = False, kid: bool = False,
             fid_ref: str | Path | None = None, flops: bool = False, progress: bool = False,
             **options: Any) -> Evaluation:
    """Reconstruct `data` with `ckpt` at each budget and measure it: the sweep of ``alit-eval fid``.

    The run goes to the same folder the CLI would use, so a rerun with the same arguments resumes
    (or reads back) the earlier run, and the CLI's ``report`` reads it.

    Args:
        ckpt: a pretrained name (``alit-eval models``) or a checkpoint file.
        data: an image folder, a .txt/.csv file list, a glob, or a demo split (``demo-scenes``).
        budgets: token budgets: ints, or a string in the ``--budgets`` syntax (``"32,64"``, ``"8-256:8"``,
            ``"1,2,4,..."``, ``"all"``); default: the checkpoint's default budgets.
        results_dir: root of the run folders (``--results-dir``).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        seed: seed of every generator (halting, subsets).
        offline: never use the network (weights must be in the cache).
        run_id, overwrite: the run folder's name and whether to replace a different run there.
        kid: also compute KID.
        fid_ref: reference statistics ``.npz`` (mu, sigma) instead of the originals.
        flops: also write the FLOP table ``compute.csv`` (off by default here, unlike the CLI).
        progress: show the progress bar.
        **options: any other sweep option, by its `alit_eval.engine.config.SweepConfig` field name:
            ``preprocess``, ``limit``, ``subset_seed``, ``batch_size``, ``halting``, ``fid`` (False =
            no Inception), ``fid_resize``, ``rounding`` (``"round"`` | ``"truncate"``),
            ``precision``, ``save_recons`` (a folder for every reconstruction as PNG), ...

    Returns:
        `Evaluation` with ``metrics``, ``per_image``, ``run_dir`` (and ``.table``).

    Raises:
        AlitEvalError: an unknown option, or any input error the CLI would report.

    Example:
        >>> res = evaluate("demo", "demo-scenes", budgets=[8, 64], limit=8, fid=False)  # doctest: +SKIP
        >>> res.table.loc[64, "psnr"]  # doctest: +SKIP
    """
    from alit_eval.analysis.reconstruction import run
    from alit_eval.engine.config import SweepConfig

    from alit_eval.tokenizers.family_options import all_option_names

    # The sweep's fields and every family's declared inference options (``halting=``, ``epsilon=``, ...).
    known = ({f.name for f in dataclasses.fields(SweepConfig)} | set(all_option_names())) - _NOT_OPTIONS - {"options"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise AlitEvalError(f"evaluate(): unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    if "save_recons" in options and options["save_recons"] is not None:
        options["save_recons"] = str(options["save_recons"])
    cfg = SweepConfig(ckpt=str(ckpt), data=str(data), budgets=_budgets_arg(budgets), **options)
    run_dir, metrics = run(cfg, seed=seed, device=device, offline=offline, results_dir=results_dir, run_id=run_id,
                           overwrite=overwrite, kid=kid, fid_ref=str(fid_ref) if fid_ref else None,
                           progress=progress, compute=flops)
    import pandas as pd

    return Evaluation(metrics, pd.read_parquet(run_dir.path / "per_image.parquet"), run_dir.path)


def _image_files(folder: str | Path) -> list[Path]:
    from alit_eval.data.datasets import is_image_name

    root = Path(folder)
    if not root.is_dir():
        raise AlitEvalError(f"fid_between(): {folder} is not a folder of images")
    files = sorted(p for p in root.rglob("*") if p.is_file() and is_image_name(p.name))
    if len(files) < 2:
        raise AlitEvalError(f"fid_between(): {folder} holds {len(files)} image(s); FID needs at least 2")
    return files


def fid_between(folder_a: str | Path, folder_b: str | Path, *, fid_resize: str = "tf1",
                inception_weights: str | Path | None = None, device: str = "auto", batch_size: int = 32,
                offline: bool = False) -> float:
    """FID between the images of two folders, with the Inception the sweep uses (offline-capable).

    Images are read as they are (8-bit RGB, no crop); the network's own resize (`fid_resize`) brings
    each to 299 x 299. Subfolders are included. Use it on ``save_recons`` folders to check another
    tool's number, or on any two image sets.

    Args:
        folder_a, folder_b: folders of image files (at least 2 each).
        fid_resize: ``tf1`` (torch-fidelity), ``pytorch-fid`` or ``clean`` (clean-fid).
        inception_weights: a weights file (default: resolved as for ``alit-eval fid``).
        device: ``auto``, ``cpu`` or ``cuda``.
        batch_size: images per Inception call (images of one size are batched together).
        offline: never download the weights.

    Returns:
        The Frechet distance of the two sets' Inception pool features (float64 statistics).

    Warns:
        UserWarning: a set of fewer than 2048 images (the feature dimension), as the CLI warns: the
        FID is then biased upwards and comparable only with FIDs on as many images.

    Example:
        >>> fid_between("recons/original", "recons/64")  # doctest: +SKIP
        12.3
    """
    import numpy as np
    import torch

    from alit_eval.data.decode import load_image
    from alit_eval.engine.sweep import resolve_device
    from alit_eval.metrics.feature_distance import FeatureStats, fid_from_stats
    from alit_eval.metrics.inception import InceptionFeatures

    from alit_eval.analysis.skeleton import RFID_MIN_IMAGES

    sets = [_image_files(folder_a), _image_files(folder_b)]
    fewest = min(len(f) for f in sets)
    if fewest < RFID_MIN_IMAGES:
        warnings.warn(f"FID rests on {fewest} images (< {RFID_MIN_IMAGES}): it is biased upwards and not comparable "
                      "with published 50k-image numbers", UserWarning, stacklevel=2)
    net = InceptionFeatures(str(inception_weights) if inception_weights else None, fid_resize,
                            resolve_device(device), offline=offline)
    stats = []
    for files in sets:
        acc = FeatureStats(2048)
        by_size: dict[tuple[int, ...], list[Any]] = {}
        for f in files:
            arr = np.asarray(load_image(f), dtype=np.uint8)
            by_size.setdefault(arr.shape, []).append(arr)
        for arrays in by_size.values():
            for i in range(0, len(arrays), batch_size):
                batch = torch.from_numpy(np.stack(arrays[i : i + batch_size])).permute(0, 3, 1, 2).contiguous()
                acc.update(net(batch).cpu())
        stats.append(acc)
    return float(fid_from_stats(stats[0], stats[1]))


DEFAULT_SEED = 0  # the seed of a plain rollout's halting draws (see `load_tokenizer`)


def _default_generators(tok: Any) -> None:
    """Let ``tok.rollout(images, budgets)`` run without generators under the ``seeded`` policy.

    Only where the tokenizer itself refuses a missing generator (older tokenizers): the call is
    retried with one generator per image, seeded from `DEFAULT_SEED` and the image's position. A
    tokenizer that has its own default never reaches the retry.
    """
    import functools

    inner = getattr(tok, "rollout", None)
    if inner is None:
        return

    @functools.wraps(inner)
    def rollout(images: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return inner(images, *args, **kwargs)
        except ValueError as exc:
            if kwargs.get("generator") is not None or "needs one torch.Generator per image" not in str(exc):
                raise
            from alit_eval.tokenizers.generators import per_image_generators

            gens = per_image_generators(DEFAULT_SEED, [str(i) for i in range(len(images))])
            return inner(images, *args, **{**kwargs, "generator": gens})

    try:
        tok.rollout = rollout
    except AttributeError:  # a model class that forbids new attributes keeps its own rollout
        pass


def load_tokenizer(name_or_path: str | Path, *, device: str = "cpu", offline: bool = False,
                   trust_checkpoint: bool = False, heads: int | None = None, halting: str | None = None) -> Any:
    """Load a tokenizer from a pretrained name or a checkpoint file, as ``--ckpt`` does.

    Resolution: an existing local path > the cache > download (never with ``offline=True``).
    Foreign layouts (official ALIT/KARL/One-D-Piece files) are converted on load.

    Args:
        name_or_path: a name from ``alit-eval models`` (e.g. ``demo``) or a checkpoint file.
        device: where the model goes.
        offline: never use the network.
        trust_checkpoint: allow full unpickling (runs code from the file; only for files you trust).
        heads: attention heads, when the file does not say.
        halting: halting policy (default: the pretrained entry's, ``seeded`` for files).

    Returns:
        The tokenizer (an `alit_eval.tokenizers.base.AdaptiveTokenizer`): ``.budgets``,
        ``.image_size``, ``.rollout(images, budgets)``; its provenance (name, path, sha256) is in
        ``.load_info``. A plain ``rollout(images, budgets)`` works for every halting policy: without
        a ``generator``, the ``seeded`` policy draws from generators seeded with `DEFAULT_SEED` and
        each image's position in the batch (pass ``generator=`` for per-image-id seeds).

    Example:
        >>> tok = load_tokenizer("demo")  # doctest: +SKIP
        >>> tok.budgets  # doctest: +SKIP
        (8, 16, 24, 32, 40, 48, 56, 64)
    """
    from alit_eval.tokenizers.resolve import load_pretrained

    tok, info = load_pretrained(name_or_path, offline=offline, trust_checkpoint=trust_checkpoint, heads=heads,
                                halting=halting, device=device)
    _default_generators(tok)
    try:
        tok.load_info = {k: v for k, v in info.items() if k != "config"}
    except AttributeError:  # a model class that forbids new attributes: provenance is optional here
        pass
    return tok
