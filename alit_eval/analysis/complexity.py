"""Image complexity measures: small pure functions of a uint8 ``[H, W, 3]`` array, and a table of them.

Compression proxies of entropy (lossless PNG and JPEG bits per pixel), grayscale Shannon entropy,
gradient and edge statistics and the high-frequency share of spectral energy. They are computed on
the same preprocessed images the tokenizer saw: `measure_dataset` iterates the sweep's Source
Dataset once on the CPU (decoding and preprocessing only, no tokenizer), which is cheaper and
simpler than storing every input image in the shards.

Definitions (all on the uint8 image; "gray" is Pillow's ITU-R 601-2 luma ``L = R*299/1000 +
G*587/1000 + B*114/1000``):

- ``png_bpp``: bits per pixel of the PNG Pillow writes at ``compress_level=9`` (RGB, no metadata).
- ``jpeg75_bpp``, ``jpeg95_bpp``: bits per pixel of a baseline JPEG at quality 75 / 95 (Pillow,
  4:2:0 chroma subsampling, no optimisation).
- ``gray_entropy``: Shannon entropy in bits of the 256-bin histogram of gray values (0..8).
- ``mean_gradient``: mean of ``sqrt(gx^2 + gy^2)`` over pixels, with ``gx, gy`` central
  differences (`numpy.gradient`, one-sided at the border) of gray in [0, 1].
- ``edge_density``: fraction of pixels marked by Canny (`skimage.feature.canny`, sigma 1, default
  hysteresis thresholds) on gray in [0, 1].
- ``hf_energy``: share of the spectral energy of gray (mean removed) at radial frequencies above
  `HF_CUTOFF` = 0.25 cycles/pixel (half the Nyquist frequency), ``|F|^2`` summed over
  ``sqrt(fx^2 + fy^2) > 0.25`` divided by the total; 0 for a flat image.
"""

from __future__ import annotations

import io
from pathlib import PurePosixPath
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
from PIL import Image
from skimage.feature import canny
from torch.utils.data import DataLoader

from alit_eval.errors import AlitEvalError


HF_CUTOFF = 0.25  # cycles per pixel; Nyquist is 0.5


def _check(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"need a uint8 [H, W, 3] image, got {a.dtype} {a.shape}")
    return a


def gray(image: np.ndarray) -> np.ndarray:
    """Pillow's luma ("L" mode) of a uint8 RGB image, as uint8 ``[H, W]``."""
    return np.asarray(Image.fromarray(_check(image)).convert("L"))


def _encoded_bits(image: np.ndarray, fmt: str, **kw: Any) -> int:
    buf = io.BytesIO()
    Image.fromarray(_check(image)).save(buf, format=fmt, **kw)
    return 8 * buf.tell()


def png_bpp(image: np.ndarray) -> float:
    """Lossless PNG size in bits per pixel (Pillow, compress_level 9)."""
    h, w = image.shape[:2]
    return _encoded_bits(image, "PNG", compress_level=9) / (h * w)


def jpeg_bpp(image: np.ndarray, quality: int) -> float:
    """Baseline JPEG size in bits per pixel at `quality` (Pillow, 4:2:0 subsampling)."""
    h, w = image.shape[:2]
    return _encoded_bits(image, "JPEG", quality=int(quality), subsampling="4:2:0", optimize=False) / (h * w)


def gray_entropy(image: np.ndarray) -> float:
    """Shannon entropy (bits) of the grayscale histogram, in [0, 8]."""
    counts = np.bincount(gray(image).ravel(), minlength=256).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def mean_gradient(image: np.ndarray) -> float:
    """Mean gradient magnitude of gray in [0, 1] (central differences), per pixel."""
    g = gray(image).astype(np.float64) / 255.0
    gy, gx = np.gradient(g)
    return float(np.sqrt(gx * gx + gy * gy).mean())


def edge_density(image: np.ndarray, sigma: float = 1.0) -> float:
    """Fraction of pixels on Canny edges (scikit-image, Gaussian sigma `sigma`)."""
    return float(canny(gray(image).astype(np.float64) / 255.0, sigma=sigma).mean())


def hf_energy(image: np.ndarray, cutoff: float = HF_CUTOFF) -> float:
    """Share of spectral energy of gray (mean removed) above `cutoff` cycles/pixel."""
    g = gray(image).astype(np.float64)
    g -= g.mean()
    power = np.abs(np.fft.fft2(g)) ** 2
    fy = np.fft.fftfreq(g.shape[0])[:, None]
    fx = np.fft.fftfreq(g.shape[1])[None, :]
    total = power.sum()
    if total <= 0:
        return 0.0
    return float(power[np.sqrt(fx * fx + fy * fy) > cutoff].sum() / total)


# name -> function of a uint8 [H, W, 3] image; the order is the order of the output columns.
MEASURES: dict[str, Callable[[np.ndarray], float]] = {
    "png_bpp": png_bpp,
    "jpeg75_bpp": lambda im: jpeg_bpp(im, 75),
    "jpeg95_bpp": lambda im: jpeg_bpp(im, 95),
    "gray_entropy": gray_entropy,
    "mean_gradient": mean_gradient,
    "edge_density": edge_density,
    "hf_energy": hf_energy,
}


def measure_image(image: np.ndarray, names: Iterable[str] | None = None) -> dict[str, float]:
    """All (or the named) measures of one uint8 ``[H, W, 3]`` image."""
    return {n: MEASURES[n](image) for n in (names or MEASURES)}


def _identity(items: list) -> list:
    return items


def measure_dataset(dataset: Any, *, workers: int = 0, batch_size: int = 32) -> "pd.DataFrame":
    """Measures of every decodable item of a Source Dataset (items as `ImageDataset` yields them).

    Returns:
        One row per image: image_id, index, then one column per `MEASURES` entry.
    """
    rows = []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_identity)
    for items in loader:
        for it in items:
            if it["image"] is None:
                continue
            img = it["image"].permute(1, 2, 0).contiguous().numpy()  # [3,S,S] -> [S,S,3]
            rows.append({"image_id": str(it["id"]), "index": int(it["index"]), **measure_image(img)})
    return pd.DataFrame(rows, columns=["image_id", "index", *MEASURES])


def read_scores(path: str, ids: Iterable[str]) -> "pd.Series":
    """External per-image scores (CSV with columns ``image`` and ``score``) matched to `ids`.

    An ``image`` value matches an id exactly, else by file name, else by file stem (so a SAVOIAS
    ``1.jpg`` matches ``scenes/1.jpg``). Returns a float Series indexed by id (NaN where unmatched).

    Raises:
        AlitEvalError: unreadable file, missing columns, no match at all, or an ambiguous name.
    """
    try:
        table = pd.read_csv(path, dtype={"image": str})
    except (OSError, ValueError) as exc:
        raise AlitEvalError(f"--scores {path}: cannot read it as CSV ({exc})") from None
    if not {"image", "score"} <= set(table.columns):
        raise AlitEvalError(f"--scores {path}: needs columns 'image' and 'score', has {list(table.columns)}")
    scores = dict(zip(table["image"].astype(str), pd.to_numeric(table["score"], errors="coerce")))
    ids = list(ids)
    keys: dict[str, dict[str, list[str]]] = {"name": {}, "stem": {}}
    for i in ids:
        p = PurePosixPath(i)
        keys["name"].setdefault(p.name, []).append(i)
        keys["stem"].setdefault(p.stem, []).append(i)
    out = pd.Series(np.nan, index=pd.Index(ids, dtype=object), dtype=np.float64)
    for image, score in scores.items():
        if image in out.index:
            out[image] = score
            continue
        p = PurePosixPath(image)
        for kind, key in (("name", p.name), ("stem", p.stem)):
            hits = keys[kind].get(key, [])
            if len(hits) > 1:
                raise AlitEvalError(f"--scores {path}: {image!r} matches several images ({hits[:3]}); use full ids")
            if hits:
                out[hits[0]] = score
                break
    if out.notna().sum() == 0:
        raise AlitEvalError(f"--scores {path}: no 'image' value matches an image of the dataset (ids look like "
                            f"{ids[0]!r})")
    return out
