"""Tests for alit_eval.data: decoding odd files, preprocess parity with torchvision, dataset sources."""

from __future__ import annotations

import io
import pickle
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms as T
from torchvision.datasets import ImageFolder

from alit_eval.data.datasets import (
    ImageDataset,
    ImageRecord,
    class_names,
    collate,
    discover,
    is_image_name,
    select,
)
from alit_eval.data.decode import load_image
from alit_eval.data.transforms import PREPROCESS, describe, preprocess
from alit_eval.errors import AlitEvalError, DataError


def _noise(w: int, h: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    shape = (h, w, channels) if channels > 1 else (h, w)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _save_noise(path: Path, w: int = 16, h: int = 12, seed: int = 0, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_noise(w, h, seed)).save(path, **kw)
    return path


def _png16(path: Path, arr: np.ndarray, color_type: int) -> Path:
    """Write a 16-bit PNG by hand (Pillow cannot write 16-bit colour PNGs): IHDR, one IDAT, IEND."""
    h, w = arr.shape[:2]
    rows = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))  # filter 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )
    return path


def _stored(path: Path) -> tuple[str, dict]:
    """Mode and info Pillow reports for a file, so each test knows it exercises the intended case."""
    with Image.open(path) as im:
        return im.mode, dict(im.info)


def _round16(v: np.ndarray) -> np.ndarray:
    return np.floor(v.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)


def _assert_one_line_error(err: pytest.ExceptionInfo, path: Path) -> None:
    msg = str(err.value)
    assert msg.startswith(f"cannot decode {path}: ") and "\n" not in msg


# ---------------------------------------------------------------- decoding


def test_corrupt_jpeg_raises(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_noise(64, 64)).save(buf, "JPEG")
    data = buf.getvalue()
    sos = data.index(b"\xff\xda")  # keep every header segment up to and including start-of-scan
    header = data[: sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")]
    path = tmp_path / "corrupt.jpg"
    path.write_bytes(header + b"\x55" * 3000)
    with pytest.raises(DataError) as err:
        load_image(path)
    _assert_one_line_error(err, path)


def test_truncated_png_raises(tmp_path):
    full = _save_noise(tmp_path / "full.png", 64, 64)
    path = tmp_path / "half.png"
    path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated") as err:
        load_image(path)
    _assert_one_line_error(err, path)


def test_text_file_named_png_and_missing_file(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image\n")
    with pytest.raises(DataError, match="not a recognised image") as err:
        load_image(path)
    _assert_one_line_error(err, path)
    with pytest.raises(DataError, match="file not found"):
        load_image(tmp_path / "absent.png")


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (255, 0, 0, 0)).save(path, "JPEG", quality=95)  # pure cyan
    assert _stored(path)[0] == "CMYK"
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (16, 16)
    rgb = np.asarray(img).astype(int)
    assert np.abs(rgb - np.array([0, 255, 255])).max() <= 4


def test_16bit_gray_png_rounds(tmp_path):
    values = np.array([[0, 128, 129, 257, 385, 386], [32767, 32896, 65279, 65406, 65535, 1000]], np.uint16)
    path = tmp_path / "gray16.png"
    Image.fromarray(values).save(path)
    assert _stored(path)[0].startswith("I")
    out = np.asarray(load_image(path))
    assert out.shape == (2, 6, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], _round16(values))


@pytest.mark.parametrize("color_type,channels", [(2, 3), (6, 4)])
def test_16bit_colour_png_rounds(tmp_path, color_type, channels):
    values = np.random.default_rng(1).integers(0, 65536, (9, 11, channels), dtype=np.uint16)
    values[0, :3, 0] = [128, 129, 65535]  # both sides of a rounding boundary and the top
    path = _png16(tmp_path / "rgb16.png", values, color_type)
    img = load_image(path)
    assert img.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(img), _round16(values[..., :3]))


def test_palette_with_transparency(tmp_path):
    idx = np.arange(16, dtype=np.uint8).reshape(4, 4) % 3
    pal_img = Image.new("P", (4, 4))
    pal_img.putdata(idx.flatten().tolist())
    palette = [10, 20, 30, 200, 100, 50, 0, 255, 0]
    pal_img.putpalette(palette)
    path = tmp_path / "pal.png"
    pal_img.save(path, transparency=bytes([0, 128, 255]))  # tRNS with per-entry alpha
    mode, info = _stored(path)
    assert mode == "P" and isinstance(info["transparency"], bytes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = np.asarray(load_image(path))
    assert not [w for w in caught if "Transparency" in str(w.message)]
    # Alpha dropped: every pixel shows its palette colour, as convert("RGB") does.
    np.testing.assert_array_equal(out, np.array(palette, np.uint8).reshape(3, 3)[idx])


def test_rgba_gray_and_bilevel(tmp_path):
    rgba = _noise(5, 4, seed=2, channels=4)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(np.asarray(load_image(tmp_path / "rgba.png")), rgba[..., :3])

    gray = _noise(5, 4, seed=3, channels=1)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    np.testing.assert_array_equal(np.asarray(load_image(tmp_path / "gray.png")), np.repeat(gray[..., None], 3, 2))

    bits = gray > 127
    Image.fromarray(bits).save(tmp_path / "bits.png")
    assert _stored(tmp_path / "bits.png")[0] == "1"
    expect = np.repeat(np.where(bits, 255, 0).astype(np.uint8)[..., None], 3, 2)
    np.testing.assert_array_equal(np.asarray(load_image(tmp_path / "bits.png")), expect)


def test_float_and_int32_tiff(tmp_path):
    f = np.linspace(0.0, 1.0, 12, dtype=np.float32).reshape(3, 4)
    Image.fromarray(f).save(tmp_path / "f.tif")
    assert _stored(tmp_path / "f.tif")[0] == "F"
    np.testing.assert_array_equal(np.asarray(load_image(tmp_path / "f.tif"))[..., 0], np.floor(f * 255 + 0.5))

    i = np.array([[0, 128, 129, 65535]], dtype=np.int32)
    Image.fromarray(i).save(tmp_path / "i.tif")
    assert _stored(tmp_path / "i.tif")[0] == "I"
    np.testing.assert_array_equal(np.asarray(load_image(tmp_path / "i.tif"))[..., 1], _round16(i))


def test_exif_orientation_6(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:8, :8] = [255, 0, 0]  # red block at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    path = tmp_path / "rot.jpg"
    Image.fromarray(arr).save(path, exif=exif, quality=95)
    img = load_image(path)
    assert img.size == (20, 40)  # width and height swapped
    out = np.asarray(img).astype(int)
    assert out[2, -3, 0] > 200 and out[2, 2, 0] < 50  # top-left went to top-right
    assert load_image(path, exif_orientation=False).size == (40, 20)


def test_decompression_bomb_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    ok = _save_noise(tmp_path / "ok.png", 9, 9)
    warn = _save_noise(tmp_path / "warn.png", 12, 12)  # 144 px: Pillow only warns
    bomb = _save_noise(tmp_path / "bomb.png", 20, 20)  # 400 px > 2 x limit: Pillow raises
    assert load_image(ok).size == (9, 9)
    for path in (warn, bomb):
        with pytest.raises(DataError, match="MAX_IMAGE_PIXELS") as err:
            load_image(path)
        _assert_one_line_error(err, path)


# ---------------------------------------------------------------- preprocessing


def _tv_center(size: int) -> T.Compose:
    return T.Compose([T.CenterCrop(size), T.PILToTensor()])


def _tv_resize(size: int) -> T.Compose:
    return T.Compose(
        [
            T.Resize(size, interpolation=T.InterpolationMode.BICUBIC, antialias=True),
            T.CenterCrop(size),
            T.PILToTensor(),
        ]
    )


def test_center_crop_matches_torchvision():
    sides = (1, 2, 5, 8, 9, 12, 13, 15)  # smaller/equal/larger, odd/even, .5 rounding both ways
    for size in (8, 9):
        reference = _tv_center(size)
        for w in sides:
            for h in sides:
                img = Image.fromarray(_noise(w, h, seed=w * 31 + h))
                got = preprocess(img, "center-crop", size)
                assert got.dtype == torch.uint8 and got.shape == (3, size, size)
                assert torch.equal(got, reference(img)), (w, h, size)


def test_resize_center_crop_matches_torchvision():
    cases = [(1, 1, 16), (3, 7, 16), (7, 3, 16), (16, 16, 16), (31, 17, 16), (20, 10, 16),
             (1000, 750, 256), (750, 1000, 256), (300, 257, 256), (256, 256, 256)]
    for w, h, size in cases:
        img = Image.fromarray(_noise(w, h, seed=w + h))
        got = preprocess(img, "resize-center-crop", size)
        assert got.shape == (3, size, size)
        assert torch.equal(got, _tv_resize(size)(img)), (w, h, size)


def test_one_pixel_image(tmp_path):
    path = tmp_path / "px.png"
    Image.new("RGB", (1, 1), (200, 100, 50)).save(path)
    img = load_image(path)
    crop = preprocess(img, "center-crop", 4)  # padded 1 left/top, 2 right/bottom
    expect = torch.zeros(3, 4, 4, dtype=torch.uint8)
    expect[:, 1, 1] = torch.tensor([200, 100, 50])
    assert torch.equal(crop, expect)
    resized = preprocess(img, "resize-center-crop", 4)
    assert torch.equal(resized, torch.tensor([200, 100, 50], dtype=torch.uint8).view(3, 1, 1).expand(3, 4, 4))


def test_mode_registry_errors_and_describe():
    img = Image.new("RGB", (4, 4))
    with pytest.raises(AlitEvalError, match="Did you mean 'center-crop'"):
        preprocess(img, "center_crop", 4)
    with pytest.raises(ValueError, match="RGB"):
        preprocess(img.convert("L"), "center-crop", 4)
    assert set(PREPROCESS.names()) == {"center-crop", "resize-center-crop"}
    assert describe("center-crop").startswith("center-crop: ") and "without resizing" in describe("center-crop")


# ---------------------------------------------------------------- sources


def _tree(root: Path, names: list[str]) -> None:
    for i, name in enumerate(names):
        _save_noise(root / name, 6, 5, seed=i, format="PNG")


def test_folder_labels_and_imagefolder_order(tmp_path):
    root = tmp_path / "data"
    _tree(root, ["a/z0.png", "a/Z.PNG", "a/sub/b.png", "a.b/x.jpg", "dog/y.png", "a/sub.x/c.png"])
    (root / "a" / "notes.txt").write_text("ignored")
    (root / "dog" / "fake.jpeg").write_text("not an image, kept for the decoder to reject")
    records = discover(str(root))
    ids = [r.id for r in records]
    assert "a/notes.txt" not in ids and "dog/fake.jpeg" in ids
    assert all(r.label == r.id.split("/")[0] for r in records)
    assert class_names(records) == ["a", "a.b", "dog"]
    assert all(r.path == root / r.id for r in records)
    reference = ImageFolder(str(root), loader=lambda p: p, is_valid_file=is_image_name)
    assert ids == [Path(p).relative_to(root).as_posix() for p, _ in reference.samples]
    assert class_names(records) == reference.classes


def test_folder_without_labels(tmp_path):
    _tree(tmp_path, ["top.png", "sub/inner.png"])
    records = discover(tmp_path)
    assert [r.id for r in records] == ["top.png", "sub/inner.png"]
    assert all(r.label is None for r in records) and class_names(records) == []


def test_list_files(tmp_path, monkeypatch):
    _tree(tmp_path / "imgs", ["one.png", "two.png"])
    absolute = _save_noise(tmp_path / "elsewhere" / "three.png")
    (tmp_path / "labelled.csv").write_text(
        f"path,label\n# comment\n\nimgs/two.png, cat\nimgs/one.png,dog\n{absolute},\n"
    )
    (tmp_path / "plain.txt").write_text("imgs/one.png\n  imgs/two.png  \n")
    (tmp_path / "image_header.csv").write_text("image,label\nimgs/one.png,x\n")
    monkeypatch.chdir(tmp_path / "elsewhere")  # paths resolve against the list's folder, not the cwd

    labelled = discover(str(tmp_path / "labelled.csv"))
    expected = [("imgs/two.png", "cat"), ("imgs/one.png", "dog"), (str(absolute), None)]
    assert [(r.id, r.label) for r in labelled] == expected
    assert labelled[0].path == tmp_path / "imgs/two.png" and labelled[2].path == absolute
    plain = discover(str(tmp_path / "plain.txt"))
    assert [(r.id, r.label) for r in plain] == [("imgs/one.png", None), ("imgs/two.png", None)]
    assert all(r.path.is_file() for r in plain)
    assert [(r.id, r.label) for r in discover(tmp_path / "image_header.csv")] == [("imgs/one.png", "x")]

    (tmp_path / "bad.csv").write_text("a.png,b,c\n")
    with pytest.raises(DataError, match=r"bad.csv:1"):
        discover(tmp_path / "bad.csv")
    (tmp_path / "dup.txt").write_text("a.png\na.png\n")
    with pytest.raises(DataError, match="listed twice"):
        discover(tmp_path / "dup.txt")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(DataError, match="no images found"):
        discover(tmp_path / "empty.txt")


def test_glob(tmp_path):
    root = tmp_path / "g"
    _tree(root, ["x/a.png", "x/deep/b.png", "y/c.jpg", "d.png"])
    deep = discover(str(root / "**" / "*.png"))
    assert [r.id for r in deep] == ["d.png", "x/a.png", "x/deep/b.png"]
    assert all(r.label is None for r in deep)  # d.png lies at the prefix itself
    labelled = discover(str(root / "*" / "*.*"))
    assert [(r.id, r.label) for r in labelled] == [("x/a.png", "x"), ("y/c.jpg", "y")]
    with pytest.raises(DataError, match="no images found"):
        discover(str(root / "*.webp"))


def test_source_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("no images")
    with pytest.raises(DataError, match=r"no images found in .*empty \(looked for extensions .png"):
        discover(tmp_path / "empty")
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="nope"):
        discover(str(missing))
    with pytest.raises(DataError, match="demo"):
        discover("demo-shapes")
    single = _save_noise(tmp_path / "one.JPG", format="JPEG")
    assert discover(single) == [ImageRecord("one.JPG", single, None)]
    (tmp_path / "weights.bin").write_bytes(b"\0")
    with pytest.raises(DataError, match="neither a file list"):
        discover(tmp_path / "weights.bin")


def test_select_is_deterministic():
    records = [ImageRecord(f"{i:03d}.png", Path(f"{i:03d}.png")) for i in range(50)]
    assert select(records, None, None) == records
    assert select(records, 100, 3) == records
    assert select(records, 5, None) == records[:5]
    a, b = select(records, 10, 7), select(records, 10, 7)
    assert a == b and len(a) == 10 and [r.id for r in a] == sorted(r.id for r in a)
    independent = sorted(np.random.Generator(np.random.PCG64(7)).choice(50, 10, replace=False))
    assert [r.id for r in a] == [f"{i:03d}.png" for i in independent]
    assert select(records, 10, 8) != a


# ---------------------------------------------------------------- dataset + loader


def test_dataset_and_dataloader_with_bad_file(tmp_path):
    _tree(tmp_path, [f"c{i % 2}/img{i}.png" for i in range(5)])
    (tmp_path / "c1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    records = discover(tmp_path)
    with pytest.raises(AlitEvalError, match="Did you mean"):
        ImageDataset(records, "resize-centre-crop", 8)
    dataset = pickle.loads(pickle.dumps(ImageDataset(records, "resize-center-crop", 8)))
    loader = DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate)
    batches = list(loader)
    images = torch.cat([b["images"] for b in batches])
    ids = [i for b in batches for i in b["ids"]]
    failed = [f for b in batches for f in b["failed"]]
    assert images.dtype == torch.uint8 and images.shape == (5, 3, 8, 8)
    assert ids == [r.id for r in records if r.id != "c1/broken.png"]
    assert [i for b in batches for i in b["indices"]] == [i for i, r in enumerate(records) if r.id in ids]
    assert [lab for b in batches for lab in b["labels"]] == [i.split("/")[0] for i in ids]
    assert len(failed) == 1 and failed[0][0] == "c1/broken.png" and "cannot decode" in failed[0][1]
    expect = preprocess(load_image(tmp_path / ids[0]), "resize-center-crop", 8)
    assert torch.equal(images[0], expect)
    all_bad = collate([dataset[records.index(next(r for r in records if r.id == "c1/broken.png"))]])
    assert all_bad["images"].shape[0] == 0 and all_bad["ids"] == [] and len(all_bad["failed"]) == 1
