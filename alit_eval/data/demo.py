"""Procedural demo data with ground truth: scenes, unfamiliar scenes, natural-photo crops, structured probes.

The demo tokenizer is trained on `demo-scenes` and the analyses are checked against the ground truth
generated here: scene complexity (does the token count track it?), an out-of-distribution split
(do unfamiliar images need more tokens?), instance masks (do tokens specialise on objects?) and class
labels (linear probes). Every image is a pure function of `(split, seed, index, size)`.

Splits:
    demo-scenes      background (flat, gradient, smooth noise, texture) + 0..8 occluding objects of 7
                     families (disc, ellipse, square, triangle, ring, cross, star), some with stripe /
                     check / dot fills, mid-saturation colours. The demo tokenizer trains on these.
    demo-unfamiliar  the same recipe with held-out families (heart, crescent, spiral, blob), held-out
                     fills and background textures (per-pixel noise, concentric rings) and held-out
                     colour statistics (neon or near-grey pastel palettes; scenes never use either).
    demo-natural     deterministic random crops of photographs shipped inside installed wheels (see
                     `PHOTO_SOURCES`); no masks, no complexity, label = source photo.
    demo-probes      structured probes cycling through `PROBE_KINDS` (checkerboards of 2..16 cells,
                     per-pixel uniform noise, a Julia fractal, flat colour, gradient); label = kind.

Train/eval separation: the demo tokenizer is trained on `seed=TRAIN_SEED` (1) and every evaluation
uses `seed=EVAL_SEED` (0). Different seeds give independent random streams, so the sets do not overlap.
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
import shutil
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from alit_eval.data import demo_shapes as ds
from alit_eval.errors import AlitEvalError, DataError

SPLITS: tuple[str, ...] = ("demo-scenes", "demo-unfamiliar", "demo-natural", "demo-probes")
TRAIN_SEED = 1
EVAL_SEED = 0

SCENE_FAMILIES: tuple[str, ...] = ("disc", "ellipse", "square", "triangle", "ring", "cross", "star")
UNFAMILIAR_FAMILIES: tuple[str, ...] = ("heart", "crescent", "spiral", "blob")
BACKGROUNDS: tuple[str, ...] = ("flat", "gradient", "smooth-noise", "texture")
MAX_OBJECTS = 8

# Complexity = visible objects + TEXTURE_WEIGHT * visible textured objects + background weight.
TEXTURE_WEIGHT = 1.5
BACKGROUND_WEIGHT: dict[str, float] = {"flat": 0.0, "gradient": 0.5, "smooth-noise": 1.5, "texture": 2.5}
# Upper-exclusive bounds of complexity levels 0..3 (level 4 is everything above); the maximum is
# 8 + 1.5 * 8 + 2.5 = 22.5. Chosen so the five levels are roughly equally populated on demo-scenes.
LEVEL_BOUNDS: tuple[float, ...] = (3.0, 7.0, 11.5, 15.5)

CSV_COLUMNS: tuple[str, ...] = (
    "id", "split", "index", "seed", "size", "n_objects", "n_textured", "complexity",
    "complexity_level", "label", "background", "shapes", "has_masks",
)  # fmt: skip


@dataclass
class DemoSample:
    """One generated image and its ground truth.

    Attributes:
        image: uint8 `[H, W, 3]`.
        masks: int32 `[H, W]`; 0 = background, 1..n_objects = visible objects, back to front. All zero
            when `has_masks` is False.
        n_objects: number of visible objects (None for photos, where it is unknown).
        shapes, colors, textured, textures: per instance id 1..n_objects (list index id - 1): family
            name, RGB fill colour, whether it has a fill texture, the texture name ("" if none).
        background: background kind ("photo" for demo-natural, the probe kind for demo-probes).
        complexity: `scene_complexity(...)` for scene splits, None otherwise.
        complexity_level: `complexity_level(complexity)` in 0..4, None otherwise.
        label: class label: dominant shape family ("none" if empty), photo name, or probe kind.
        has_masks: whether `masks` is meaningful.
        split, index, seed: the arguments that produced the sample.
        extra: split-specific details (scene palette; photo crop as (top, left, side) in source pixels).
    """

    image: np.ndarray
    masks: np.ndarray
    n_objects: int | None
    shapes: list[str]
    colors: list[tuple[int, int, int]]
    textured: list[bool]
    textures: list[str]
    background: str
    complexity: float | None
    complexity_level: int | None
    label: str
    has_masks: bool
    split: str
    index: int
    seed: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """File stem, e.g. `demo-scenes_000123`."""
        return sample_id(self.split, self.index)


def sample_id(split: str, index: int) -> str:
    """The id of image `index` of `split`, e.g. `demo-scenes_000123`."""
    return f"{split}_{index:06d}"


def scene_complexity(n_objects: int, n_textured: int, background: str) -> float:
    """Documented complexity of a scene: `n_objects + 1.5 * n_textured + BACKGROUND_WEIGHT[background]`.

    Counts are of *visible* objects. Background weights: flat 0, gradient 0.5, smooth-noise 1.5,
    texture 2.5. Monotone (non-decreasing) in each argument; range 0..22.5.
    """
    if not 0 <= n_textured <= n_objects:
        raise ValueError(f"need 0 <= n_textured <= n_objects, got {n_textured}, {n_objects}")
    return float(n_objects + TEXTURE_WEIGHT * n_textured + BACKGROUND_WEIGHT[background])


def complexity_level(complexity: float) -> int:
    """Integer bucket 0..4 of a complexity value (bounds in `LEVEL_BOUNDS`)."""
    return int(np.searchsorted(LEVEL_BOUNDS, complexity, side="right"))


def _rng_pair(split: str, seed: int, index: int) -> tuple[np.random.Generator, np.random.Generator]:
    # crc32 is a stable split code (Python's hash() is salted per process). Two children: one for the
    # scene parameters (size-independent, so a scene looks the same at every size) and one for
    # per-pixel noise, whose number of draws depends on the size.
    ss = np.random.SeedSequence([seed, zlib.crc32(split.encode()), index])
    params, pixels = ss.spawn(2)
    return np.random.default_rng(params), np.random.default_rng(pixels)


# ---------------------------------------------------------------------------------------------- scenes


def _scene(split: str, index: int, seed: int, size: int) -> DemoSample:
    rng, pix = _rng_pair(split, seed, index)
    ood = split == "demo-unfamiliar"
    families = UNFAMILIAR_FAMILIES if ood else SCENE_FAMILIES
    textures = ds.HELDOUT_TEXTURES if ood else ds.SCENE_TEXTURES
    palette = str(rng.choice(("neon", "pastel"))) if ood else "scene"

    # One latent "richness" drives object count, texture rate and background kind together, so that
    # complexity spreads roughly uniformly from empty flat scenes to full textured ones (independent
    # draws would pile up in the middle).
    richness = rng.uniform()
    n_draw = int(np.clip(np.rint(MAX_OBJECTS * richness + rng.normal(0.0, 1.0)), 0, MAX_OBJECTS))
    p_textured = float(np.clip(richness + rng.uniform(-0.3, 0.3), 0.0, 1.0))
    bg_kind = BACKGROUNDS[int(np.clip(np.floor(4 * richness + rng.uniform(-0.8, 0.8)), 0, 3))]

    image, bg_colors = ds.render_background(bg_kind, size, rng, pix, palette, ood)
    labels = np.zeros((size, size), np.int32)
    y, x = ds.pixel_grid(size)
    drawn: list[tuple[str, ds.Color, str]] = []
    for k in range(n_draw):
        family = str(rng.choice(families))
        center = (rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9))
        radius = rng.uniform(0.09, 0.22)
        angle = rng.uniform(0, 2 * np.pi)
        params = tuple(rng.uniform(size=3))
        color = ds.distinct_color(rng, palette, bg_colors)
        texture = str(rng.choice(textures)) if rng.uniform() < p_textured else ""
        tex_period, tex_angle = rng.uniform(0.05, 0.1), rng.uniform(0, np.pi)
        # Rasterise only inside the bounding box (every shape fits within 1.25 scaled radii).
        half = 1.25 * radius * ds.SHAPE_SCALE[family]
        r0 = max(0, int(np.floor((center[0] - half) * size)))
        r1 = min(size, int(np.ceil((center[0] + half) * size)) + 1)
        c0 = max(0, int(np.floor((center[1] - half) * size)))
        c1 = min(size, int(np.ceil((center[1] + half) * size)) + 1)
        ys, xs = y[r0:r1, c0:c1], x[r0:r1, c0:c1]
        m = ds.shape_mask(family, ys, xs, center, radius, angle, params)
        sub = image[r0:r1, c0:c1]
        if texture:
            pat = ds.texture_pattern(texture, ys, xs, period=tex_period, angle=tex_angle, center=center, rng=pix)
            fill = np.where(pat[..., None], np.asarray(ds.contrast_color(color), np.uint8), np.asarray(color, np.uint8))
            sub[m] = fill[m]
        else:
            sub[m] = color
        labels[r0:r1, c0:c1][m] = k + 1
        drawn.append((family, color, texture))

    masks, visible, label = _visible_objects(labels, drawn, families)
    shapes = [drawn[k][0] for k in visible]
    textures_v = [drawn[k][2] for k in visible]
    n_textured = sum(bool(t) for t in textures_v)
    complexity = scene_complexity(len(visible), n_textured, bg_kind)
    return DemoSample(
        image=image, masks=masks, n_objects=len(visible), shapes=shapes,
        colors=[drawn[k][1] for k in visible], textured=[bool(t) for t in textures_v],
        textures=textures_v, background=bg_kind, complexity=complexity,
        complexity_level=complexity_level(complexity), label=label, has_masks=True,
        split=split, index=index, seed=seed, extra={"palette": palette},
    )  # fmt: skip


def _visible_objects(labels: np.ndarray, drawn: list[tuple[str, ds.Color, str]],
                     families: Sequence[str]) -> tuple[np.ndarray, list[int], str]:
    """Masks renumbered 1..K over the objects with a visible pixel (drawing order), their indices, and the label.

    The label is the family with the most visible pixels (summed over its instances); ties go to the
    family listed first; "none" for an empty scene.
    """
    n_draw = len(drawn)
    area = np.bincount(labels.ravel(), minlength=n_draw + 1)
    visible = [k for k in range(n_draw) if area[k + 1] > 0]
    lut = np.zeros(n_draw + 1, np.int32)
    lut[[k + 1 for k in visible]] = np.arange(1, len(visible) + 1, dtype=np.int32)
    label = "none"
    if visible:
        per_family = {f: sum(int(area[k + 1]) for k in visible if drawn[k][0] == f) for f in families}
        label = max(families, key=lambda f: per_family[f])
    return lut[labels], visible, label


# ---------------------------------------------------------------------------------------------- photos


@dataclass(frozen=True)
class PhotoSource:
    """A photograph shipped inside an installed package (read at run time, never copied here)."""

    name: str
    package: str  # importable package that contains the file
    resource: str  # path of the file inside that package
    licence: str


# Sources, licences and credits as stated by the shipping packages (docstrings of skimage.data and
# sklearn/datasets/images/README.txt). Order matters: demo-natural cycles through the loadable ones.
PHOTO_SOURCES: tuple[PhotoSource, ...] = (
    PhotoSource("astronaut", "skimage", "data/astronaut.png", "public domain (NASA Great Images)"),
    PhotoSource("chelsea", "skimage", "data/chelsea.png", "CC0 (photo: Stefan van der Walt)"),
    PhotoSource("coffee", "skimage", "data/coffee.png", "CC0 (photo: Rachel Michetti)"),
    PhotoSource("rocket", "skimage", "data/rocket.jpg", "public domain (SpaceX)"),
    PhotoSource("hubble_deep_field", "skimage", "data/hubble_deep_field.jpg", "public domain (NASA)"),
    PhotoSource("immunohistochemistry", "skimage", "data/ihc.png", "no known copyright restrictions (CMMI)"),
    PhotoSource("retina", "skimage", "data/retina.jpg", "CC0 1.0 (Häggström, WikiJournal of Medicine)"),
    PhotoSource(
        "stereo_motorcycle", "skimage", "data/motorcycle_left.png",
        "Middlebury 2014 stereo benchmark (Scharstein et al.), as redistributed by scikit-image",
    ),  # fmt: skip
    PhotoSource("china", "sklearn", "datasets/images/china.jpg", "CC-BY 2.0, Flickr user danielbuechele"),
    PhotoSource("flower", "sklearn", "datasets/images/flower.jpg", "CC-BY 2.0, Flickr user vultilion"),
    PhotoSource("grace_hopper", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "public domain (US Navy)"),
)


@functools.lru_cache(maxsize=None)
def _load_photo(name: str) -> Any:
    """The named photo as an RGB PIL image, or None if its package or file is not installed."""
    from PIL import Image

    src = next(s for s in PHOTO_SOURCES if s.name == name)
    try:
        path = importlib.resources.files(src.package).joinpath(src.resource)
        with path.open("rb") as f:
            img = Image.open(f)
            img.load()
    except (ImportError, OSError):
        return None
    return img.convert("RGB")


@functools.lru_cache(maxsize=None)
def available_photos() -> tuple[str, ...]:
    """Names of the `PHOTO_SOURCES` that load from the installed packages (no network is ever used)."""
    return tuple(s.name for s in PHOTO_SOURCES if _load_photo(s.name) is not None)


def _natural(split: str, index: int, seed: int, size: int) -> DemoSample:
    from PIL import Image

    names = available_photos()
    if not names:
        raise DataError("demo-natural found none of its photos; install scikit-image, scikit-learn or matplotlib")
    rng, _ = _rng_pair(split, seed, index)
    name = names[index % len(names)]  # cycle so every photo is equally frequent
    photo = _load_photo(name)
    w, h = photo.size
    side = max(1, int(round(rng.uniform(0.3, 1.0) * min(w, h))))
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = photo.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))
    return DemoSample(
        image=np.asarray(crop, dtype=np.uint8).copy(), masks=np.zeros((size, size), np.int32),
        n_objects=None, shapes=[], colors=[], textured=[], textures=[], background="photo",
        complexity=None, complexity_level=None, label=name, has_masks=False,
        split=split, index=index, seed=seed, extra={"crop": (top, left, side)},
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------- probes


def _probe(split: str, index: int, seed: int, size: int) -> DemoSample:
    rng, pix = _rng_pair(split, seed, index)
    kind = ds.PROBE_KINDS[index % len(ds.PROBE_KINDS)]
    c0 = ds.sample_color(rng, "scene")
    c1 = ds.distinct_color(rng, "scene", [c0])
    if kind.startswith("checker-"):
        image = ds.checker_image(size, int(kind.split("-")[1]), c0, c1)
    elif kind == "noise":
        image = pix.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    elif kind == "fractal":
        c = ds.JULIA_CS[int(rng.integers(len(ds.JULIA_CS)))]
        image = ds.julia_image(size, c, rng.uniform(0.9, 1.5), rng.uniform(0, 2 * np.pi), rng.uniform(size=3))
    elif kind == "flat":
        image = np.broadcast_to(np.asarray(c0, np.uint8), (size, size, 3)).copy()
    else:  # gradient
        image = ds.to_uint8(ds.gradient_image(size, c0, c1, rng.uniform(0, 2 * np.pi)))
    return DemoSample(
        image=np.ascontiguousarray(image), masks=np.zeros((size, size), np.int32), n_objects=0,
        shapes=[], colors=[], textured=[], textures=[], background=kind, complexity=None,
        complexity_level=None, label=kind, has_masks=False, split=split, index=index, seed=seed,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------- public API


def generate(split: str, index: int, *, seed: int = EVAL_SEED, size: int = 64) -> DemoSample:
    """Generate one demo image with its ground truth.

    Args:
        split: one of `SPLITS`.
        index: image index, >= 0.
        seed: dataset seed, >= 0 (`TRAIN_SEED` = 1 for the demo tokenizer's training, `EVAL_SEED` = 0
            for evaluation).
        size: output side length in pixels (32..256 are supported; shapes scale with it).

    Returns:
        A `DemoSample`; `image` is uint8 `[size, size, 3]`, `masks` int32 `[size, size]`.
        Deterministic in `(split, seed, index, size)`.
    """
    if split not in SPLITS:
        raise AlitEvalError(f"unknown demo split {split!r}; valid splits: {', '.join(SPLITS)}")
    if index < 0 or seed < 0:
        raise AlitEvalError(f"demo index and seed must be >= 0, got index={index}, seed={seed}")
    if not 8 <= size <= 1024:
        raise AlitEvalError(f"demo image size must be in 8..1024 (32..256 recommended), got {size}")
    if split == "demo-natural":
        return _natural(split, index, seed, size)
    if split == "demo-probes":
        return _probe(split, index, seed, size)
    return _scene(split, index, seed, size)


def ground_truth_row(sample: DemoSample) -> dict[str, Any]:
    """Flat, CSV-friendly ground truth of one sample, with keys `CSV_COLUMNS` (None for unknown values)."""
    return {
        "id": sample.id,
        "split": sample.split,
        "index": sample.index,
        "seed": sample.seed,
        "size": sample.image.shape[0],
        "n_objects": sample.n_objects,
        "n_textured": sum(sample.textured) if sample.has_masks else None,
        "complexity": sample.complexity,
        "complexity_level": sample.complexity_level,
        "label": sample.label,
        "background": sample.background,
        "shapes": ";".join(sample.shapes),
        "has_masks": sample.has_masks,
    }


def _save_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    # Plain PIL PNG writes no timestamps, so equal arrays give identical bytes.
    Image.fromarray(array).save(path, format="PNG")


def write_split(
    out_dir: str | Path, split: str, n: int, *, seed: int = EVAL_SEED, size: int = 64, overwrite: bool = False
) -> Path:
    """Write images 0..n-1 of a split to disk with their ground truth.

    Layout: `out_dir/images/<id>.png` (RGB), `out_dir/masks/<id>.png` (8-bit instance ids, only for
    splits with masks) and `out_dir/ground_truth.csv` (columns `CSV_COLUMNS`, empty cells for None).
    Files are written into a temporary sibling directory that is renamed into place at the end, so a
    crash never leaves a half-written split. Reruns produce byte-identical files.

    Args:
        out_dir: directory to create.
        split: one of `SPLITS`.
        n: number of images.
        seed, size: as in `generate`.
        overwrite: replace an existing non-empty `out_dir` (otherwise that is an error).

    Returns:
        `out_dir` as a Path.
    """
    out = Path(out_dir)
    if split not in SPLITS:
        raise AlitEvalError(f"unknown demo split {split!r}; valid splits: {', '.join(SPLITS)}")
    if n < 0:
        raise AlitEvalError(f"number of demo images must be >= 0, got {n}")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise DataError(f"{out} already exists and is not empty; choose another directory or pass overwrite=True")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / "images").mkdir()
        rows = []
        for i in range(n):
            s = generate(split, i, seed=seed, size=size)
            _save_png(tmp / "images" / f"{s.id}.png", s.image)
            if s.has_masks:
                (tmp / "masks").mkdir(exist_ok=True)
                _save_png(tmp / "masks" / f"{s.id}.png", s.masks.astype(np.uint8))  # ids <= MAX_OBJECTS
            rows.append(ground_truth_row(s))
        with open(tmp / "ground_truth.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
