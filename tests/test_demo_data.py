"""Tests of the procedural demo data (alit_eval.data.demo): determinism, ground truth, splits, files."""

from __future__ import annotations

import colorsys
import csv
import io
import socket
from collections import Counter

import numpy as np
import pytest
from PIL import Image
from scipy.stats import spearmanr

from alit_eval.data import demo
from alit_eval.data import demo_shapes as ds
from alit_eval.errors import AlitEvalError, DataError

N_SCENES = 200


@pytest.fixture(scope="module")
def scenes() -> list[demo.DemoSample]:
    return [demo.generate("demo-scenes", i) for i in range(N_SCENES)]


@pytest.fixture(scope="module")
def unfamiliar() -> list[demo.DemoSample]:
    return [demo.generate("demo-unfamiliar", i) for i in range(100)]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("demo data tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _png_bytes(array: np.ndarray) -> int:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return len(buf.getvalue())


# ---------------------------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("split", demo.SPLITS)
def test_deterministic_and_index_dependent(split: str) -> None:
    a = demo.generate(split, 5, seed=3)
    b = demo.generate(split, 5, seed=3)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert (a.label, a.shapes, a.colors, a.complexity) == (b.label, b.shapes, b.colors, b.complexity)
    assert not np.array_equal(a.image, demo.generate(split, 6, seed=3).image)
    assert not np.array_equal(a.image, demo.generate(split, 5, seed=4).image)


@pytest.mark.parametrize("split", demo.SPLITS)
@pytest.mark.parametrize("size", [32, 48, 128, 256])
def test_size_parameter(split: str, size: int) -> None:
    s = demo.generate(split, 3, size=size)
    assert s.image.shape == (size, size, 3) and s.image.dtype == np.uint8
    assert s.masks.shape == (size, size) and s.masks.dtype == np.int32
    assert s.image.flags["C_CONTIGUOUS"]


def test_scene_parameters_do_not_depend_on_size() -> None:
    # The scene is described in normalised units, so only slivers at the edge of visibility may differ.
    same = 0
    for i in range(30):
        a, b = demo.generate("demo-scenes", i, size=64), demo.generate("demo-scenes", i, size=128)
        assert a.background == b.background
        same += a.shapes == b.shapes and a.colors == b.colors
    assert same >= 25


def test_bad_arguments_raise_one_line_errors() -> None:
    with pytest.raises(AlitEvalError, match="demo-scenes, demo-unfamiliar, demo-natural, demo-probes"):
        demo.generate("demo-sceens", 0)
    with pytest.raises(AlitEvalError, match=">= 0"):
        demo.generate("demo-scenes", -1)


# ---------------------------------------------------------------------------------------------- masks


@pytest.mark.parametrize("which", ["scenes", "unfamiliar"])
def test_masks_match_objects(which: str, request: pytest.FixtureRequest) -> None:
    samples = request.getfixturevalue(which)
    for s in samples:
        n = s.n_objects
        assert s.has_masks and n == len(s.shapes) == len(s.colors) == len(s.textured) == len(s.textures)
        ids = np.unique(s.masks)
        assert set(ids.tolist()) - {0} == set(range(1, n + 1))  # renumbered 1..n, each with area > 0
        for k in range(1, n + 1):
            pixels = s.image[s.masks == k]
            color = np.asarray(s.colors[k - 1], np.uint8)
            if not s.textured[k - 1]:
                assert (pixels == color).all(), (s.id, k)
            else:
                # Fill textures are two-tone: the object colour and its contrast colour.
                second = np.asarray(ds.contrast_color(s.colors[k - 1]), np.uint8)
                assert ((pixels == color).all(1) | (pixels == second).all(1)).all(), (s.id, k)
        # Label = family with most visible pixels, recomputed naively from the masks.
        if n == 0:
            assert s.label == "none"
        else:
            area: Counter[str] = Counter()
            for k in range(1, n + 1):
                area[s.shapes[k - 1]] += int((s.masks == k).sum())
            assert area[s.label] == max(area.values())


def test_shape_scales_equalise_areas() -> None:
    t = np.linspace(-2, 2, 801)
    v, u = np.meshgrid(t, t, indexing="ij")
    cell = (t[1] - t[0]) ** 2
    for family, fn in ds.SHAPES.items():
        s = ds.SHAPE_SCALE[family]
        area = fn(u / s, v / s, (0.5, 0.5, 0.5)).sum() * cell
        assert area == pytest.approx(np.pi * 0.8**2, rel=0.1), family


def test_shapes_fit_the_bounding_box_used_for_rasterising() -> None:
    # demo._scene rasterises each object only within 1.25 scaled radii of its centre.
    t = np.linspace(-2, 2, 401)
    v, u = np.meshgrid(t, t, indexing="ij")
    rng = np.random.default_rng(0)
    for family, fn in ds.SHAPES.items():
        for _ in range(5):
            inside = fn(u, v, tuple(rng.uniform(size=3)))
            assert inside.any() and np.sqrt(u[inside] ** 2 + v[inside] ** 2).max() <= 1.25, family


# ---------------------------------------------------------------------------------------------- distributions


def test_unfamiliar_is_out_of_distribution(scenes: list, unfamiliar: list) -> None:
    scene_families = {f for s in scenes for f in s.shapes}
    ood_families = {f for s in unfamiliar for f in s.shapes}
    assert scene_families == set(demo.SCENE_FAMILIES) and len(scene_families) >= 5
    assert ood_families == set(demo.UNFAMILIAR_FAMILIES)
    assert not scene_families & ood_families
    scene_tex = {t for s in scenes for t in s.textures if t}
    ood_tex = {t for s in unfamiliar for t in s.textures if t}
    assert scene_tex and ood_tex and not scene_tex & ood_tex
    # Colour statistics: scenes are mid-saturation, unfamiliar scenes neon or near-grey (checked with colorsys).
    sat = lambda c: colorsys.rgb_to_hsv(*(x / 255 for x in c))[1]  # noqa: E731
    assert all(0.3 <= sat(c) <= 0.85 for s in scenes for c in s.colors)
    assert all(sat(c) >= 0.9 or sat(c) <= 0.15 for s in unfamiliar for c in s.colors)


def test_complexity_spread_and_definition(scenes: list) -> None:
    levels = Counter(s.complexity_level for s in scenes)
    assert set(levels) == {0, 1, 2, 3, 4}
    assert min(levels.values()) >= 0.1 * N_SCENES, levels
    for s in scenes:
        expected = s.n_objects + 1.5 * sum(s.textured) + demo.BACKGROUND_WEIGHT[s.background]
        assert s.complexity == expected
        assert s.complexity_level == demo.complexity_level(s.complexity)
    empty = [s for s in scenes if s.n_objects == 0 and s.background == "flat"]
    assert empty and all(s.complexity == 0 == min(x.complexity for x in scenes) for s in empty)


def test_complexity_function_is_monotone() -> None:
    bgs = ["flat", "gradient", "smooth-noise", "texture"]
    for n in range(9):
        for t in range(n + 1):
            values = [demo.scene_complexity(n, t, b) for b in bgs]
            assert values == sorted(values)
            if t < n:
                assert demo.scene_complexity(n, t + 1, "flat") > demo.scene_complexity(n, t, "flat")
            assert demo.scene_complexity(n + 1, t, "flat") > demo.scene_complexity(n, t, "flat")
    levels = [demo.complexity_level(c) for c in np.arange(0, 23, 0.5)]
    assert levels == sorted(levels) and levels[0] == 0 and levels[-1] == 4


def test_png_size_tracks_complexity(scenes: list) -> None:
    sizes = [_png_bytes(s.image) for s in scenes]
    rho = spearmanr(sizes, [s.complexity for s in scenes])[0]
    print(f"Spearman rho(PNG bytes, complexity) over {N_SCENES} scenes: {rho:.3f}")
    assert rho > 0.5


def test_labels_are_balanced(scenes: list) -> None:
    counts = Counter(s.label for s in scenes)
    print("label counts:", dict(counts))
    assert sum(c >= 0.08 * N_SCENES for c in counts.values()) >= 4


# ---------------------------------------------------------------------------------------------- natural, probes


def test_natural_loads_offline_and_varies(no_network: None) -> None:
    demo.available_photos.cache_clear()
    demo._load_photo.cache_clear()
    names = demo.available_photos()
    assert len(names) >= 8 and {"astronaut", "china", "grace_hopper"} <= set(names)
    assert len({s.name for s in demo.PHOTO_SOURCES}) == len(demo.PHOTO_SOURCES)
    assert all(s.licence for s in demo.PHOTO_SOURCES)
    k = len(names)
    samples = [demo.generate("demo-natural", i) for i in range(2 * k)]
    assert [s.label for s in samples] == list(names) * 2  # cycles through the photos
    for s in samples:
        assert not s.has_masks and not s.masks.any() and s.complexity is None and s.complexity_level is None
        assert s.image.std() > 1.0
    for a, b in zip(samples[:k], samples[k:]):  # same photo, different crops
        assert a.extra["crop"] != b.extra["crop"] and not np.array_equal(a.image, b.image)


def test_probes_cycle_and_look_right() -> None:
    n_kinds = len(ds.PROBE_KINDS)
    for i in range(2 * n_kinds):
        s = demo.generate("demo-probes", i)
        kind = ds.PROBE_KINDS[i % n_kinds]
        assert s.label == kind == s.background and not s.has_masks
        img = s.image.astype(np.int64)
        n_colors = len(np.unique(img.reshape(-1, 3), axis=0))
        if kind.startswith("checker-"):
            cells = int(kind.split("-")[1])
            row_changes = (np.abs(np.diff(img[0], axis=0)).sum(1) > 0).sum()
            assert n_colors == 2 and row_changes == cells - 1
        elif kind == "noise":
            assert n_colors > 0.9 * img.shape[0] * img.shape[1]
        elif kind == "fractal":
            assert n_colors > 20
        elif kind == "flat":
            assert n_colors == 1
        else:  # gradient: smooth, more than two colours
            assert n_colors > 2
            assert np.abs(np.diff(img, axis=0)).max() <= 16 and np.abs(np.diff(img, axis=1)).max() <= 16


# ---------------------------------------------------------------------------------------------- files


def test_write_split_files_and_csv(tmp_path) -> None:
    out = demo.write_split(tmp_path / "scenes", "demo-scenes", 6, seed=2, size=32)
    ids = [demo.sample_id("demo-scenes", i) for i in range(6)]
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{i}.png" for i in ids]
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{i}.png" for i in ids]
    with open(out / "ground_truth.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames or ()) == demo.CSV_COLUMNS
    assert {"id", "split", "index", "n_objects", "complexity", "complexity_level", "label", "background",
            "shapes", "has_masks"} <= set(demo.CSV_COLUMNS)  # fmt: skip
    for i, row in enumerate(rows):
        s = demo.generate("demo-scenes", i, seed=2, size=32)
        assert row["id"] == ids[i] and int(row["n_objects"]) == s.n_objects
        assert float(row["complexity"]) == s.complexity and row["shapes"] == ";".join(s.shapes)
        assert row["has_masks"] == "True"
        np.testing.assert_array_equal(np.asarray(Image.open(out / "images" / f"{ids[i]}.png")), s.image)
        np.testing.assert_array_equal(np.asarray(Image.open(out / "masks" / f"{ids[i]}.png")), s.masks)
    assert [p.name for p in tmp_path.iterdir()] == ["scenes"]  # no temp dirs left behind

    # Byte-identical on rerun; an existing directory is only replaced on request.
    again = demo.write_split(tmp_path / "again", "demo-scenes", 6, seed=2, size=32)
    for p in sorted(out.rglob("*.*")):
        assert p.read_bytes() == (again / p.relative_to(out)).read_bytes(), p
    with pytest.raises(DataError, match="overwrite"):
        demo.write_split(out, "demo-scenes", 6, seed=2, size=32)
    demo.write_split(out, "demo-scenes", 2, seed=2, size=32, overwrite=True)
    assert len(list((out / "images").iterdir())) == 2


def test_write_split_without_masks(tmp_path) -> None:
    out = demo.write_split(tmp_path / "probes", "demo-probes", 3)
    assert not (out / "masks").exists() and len(list((out / "images").iterdir())) == 3
    with open(out / "ground_truth.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["label"] for r in rows] == list(ds.PROBE_KINDS[:3])
    assert all(r["has_masks"] == "False" and r["complexity"] == "" for r in rows)
