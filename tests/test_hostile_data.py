"""Hostile, damaged or odd data inputs through the real entry point (issue 17 item 2 and 4, the
duplicate and CSV items; issue 16 center-crop padding and clean-fid's resize).

Runs use the tiny 32 px checkpoint with ``--no-fid`` so no Inception is built. The failure the FIFO
cases guard against is a hang, so a watchdog thread releases any reader blocked on the FIFO (by
opening it for writing) after a timeout and the test fails.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alit_eval.cli.app import main
from alit_eval.data import decode
from alit_eval.data.datasets import discover
from alit_eval.data.decode import load_image
from alit_eval.data.sources import open_source
from alit_eval.metrics import inception as inc
from alit_eval.metrics import inception_weights as incw

GOLDEN = Path(__file__).parent / "fixtures" / "cleanfid_clean_resize.npz"


def _cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def _fid_args(tmp_path: Path, ckpt: Path, data: Path, run_id: str, *extra: str) -> list[str]:
    return ["--results-dir", str(tmp_path / "res"), "--device", "cpu", "fid", "--ckpt", str(ckpt),
            "--data", str(data), "--budgets", "4", "--no-fid", "--no-compute", "--run-id", run_id, *extra]


def _meta(tmp_path: Path, run_id: str) -> dict:
    return json.loads((tmp_path / "res" / "fid" / run_id / "meta.json").read_text())


def _skipped(meta: dict) -> dict[str, str]:
    return {s["id"]: s["error"] for s in meta["extra"]["skipped_images"]}


def _png(path: Path, w: int = 40, h: int = 40, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


# ---------------------------------------------------------------- FIFOs: skipped, never a hang


@contextmanager
def _watchdog(fifo: Path, seconds: float = 120.0):
    """Yield a list that gets an entry each time the body was still running after `seconds`; each time,
    the FIFO is opened for writing, which releases a reader blocked in ``open()`` (it then reads EOF)."""
    done, fired = threading.Event(), []

    def watch() -> None:
        deadline = time.monotonic() + seconds
        while not done.wait(max(0.0, deadline - time.monotonic()) if not fired else 1.0):
            fired.append(time.monotonic())
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass  # no reader waiting at this moment

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield fired
    finally:
        done.set()
        thread.join()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_fifo_is_skipped_with_reason_not_a_hang(tiny_ckpt, tmp_path, capsys):
    root = tmp_path / "imgs"
    _png(root / "a.png")
    os.mkfifo(root / "pipe.png")
    with _watchdog(root / "pipe.png") as fired:
        code, _, err = _cli(_fid_args(tmp_path, tiny_ckpt, root, "fifo"), capsys)
    assert not fired, "the run blocked on the FIFO"  # before the fix it blocked forever in open()
    assert code == 0, err
    skipped = _skipped(_meta(tmp_path, "fifo"))
    assert list(skipped) == ["pipe.png"]
    assert "FIFO" in skipped["pipe.png"] and "regular file" in skipped["pipe.png"]
    # The same through a file list (the library entry point the commands call).
    lst = tmp_path / "list.csv"
    lst.write_text(f"{root / 'a.png'}\n{root / 'pipe.png'}\n")
    with _watchdog(root / "pipe.png") as fired:
        ds = open_source(str(lst), size=32, preprocess="resize-center-crop").dataset
        errors = {it["id"]: it["error"] for it in (ds[i] for i in range(len(ds)))}
    assert not fired, "reading the file list blocked on the FIFO"
    assert errors[str(root / "a.png")] is None and "FIFO" in errors[str(root / "pipe.png")]


# ---------------------------------------------------------------- symlinks leaving the data root


def test_symlink_out_of_the_root_is_skipped_unless_asked(tiny_ckpt, tmp_path, capsys):
    outside = tmp_path / "elsewhere"
    _png(outside / "secret.png", seed=1)
    root = outside / "data"
    _png(root / "a.png")
    (root / "up").symlink_to("..")  # reaches elsewhere/secret.png and the root itself again
    (root / "ext.png").symlink_to(outside / "secret.png")
    (root / "inside.png").symlink_to("a.png")  # stays in the root: read as usual
    (root / "loop").symlink_to(".")  # a folder loop inside the root: walked once
    (root / "l1.png").symlink_to("l2.png")
    (root / "l2.png").symlink_to("l1.png")  # a file symlink loop

    code, _, err = _cli(_fid_args(tmp_path, tiny_ckpt, root, "links"), capsys)
    assert code in (0, None), err
    meta = _meta(tmp_path, "links")
    skipped = _skipped(meta)
    assert set(skipped) == {"up", "ext.png", "l1.png", "l2.png"}
    for name in ("up", "ext.png"):
        assert "outside the data root" in skipped[name] and "--follow-symlinks" in skipped[name]
        assert "follow_symlinks=True" in skipped[name]
    assert "symlink loop" in skipped["l1.png"]
    assert meta["extra"]["n_images"] == 2  # a.png and inside.png

    # The library option reads them (the CLI flag is the lead's to add).
    followed = {r.id: r.skip for r in discover(root, follow_symlinks=True)}
    assert "up/secret.png" in followed and followed["up/secret.png"] is None
    assert followed["ext.png"] is None
    # The default on a file list: a relative entry whose symlinked folder leaves the list's folder.
    lst = root / "list.txt"
    lst.write_text("a.png\nup/secret.png\n")
    records = {r.id: r.skip for r in discover(lst)}
    assert records["a.png"] is None and "outside the data root" in records["up/secret.png"]


def test_glob_through_a_symlink_loop_lists_each_image_once(tmp_path):
    root = tmp_path / "g"
    _png(root / "a.png")
    (root / "loop").symlink_to(".")
    ids = [r.id for r in discover(str(root / "**" / "*.png"))]
    assert ids == ["a.png"]


# ---------------------------------------------------------------- bounded decode memory


def _png16_rgba(path: Path, arr: np.ndarray) -> Path:
    """A 16-bit RGBA PNG written by hand (Pillow cannot write one)."""
    import struct
    import zlib

    h, w = arr.shape[:2]
    rows = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 6, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))
    return path


def test_decoded_size_over_the_limit_is_refused_before_decoding(tiny_ckpt, tmp_path, capsys, monkeypatch):
    root = tmp_path / "imgs"
    _png(root / "small.png", 16, 16)  # 768 bytes decoded
    arr = np.random.default_rng(0).integers(0, 65536, (64, 48, 4)).astype(np.uint16)
    _png16_rgba(root / "deep.png", arr)  # 64 * 48 * 4 channels * 2 bytes = 24576 bytes decoded
    with Image.open(root / "deep.png") as im:
        assert decode.decoded_bytes(im) == 64 * 48 * 4 * 2
    monkeypatch.setenv("ALIT_EVAL_MAX_DECODE_BYTES", "20000")
    code, _, err = _cli(_fid_args(tmp_path, tiny_ckpt, root, "limit"), capsys)
    assert code in (0, None), err
    skipped = _skipped(_meta(tmp_path, "limit"))
    assert list(skipped) == ["deep.png"]
    assert "ALIT_EVAL_MAX_DECODE_BYTES" in skipped["deep.png"] and "limit" in skipped["deep.png"]
    monkeypatch.setenv("ALIT_EVAL_MAX_DECODE_BYTES", "lots")
    code, _, err = _cli(_fid_args(tmp_path, tiny_ckpt, root, "limit2"), capsys)
    assert code == 2 and "ALIT_EVAL_MAX_DECODE_BYTES" in err and err.count("\n") == 1


def test_16bit_conversion_in_bands_is_exact(tmp_path, monkeypatch):
    """The banded 16 -> 8 bit path equals round(v / 257) computed naively on the whole image."""
    arr = np.random.default_rng(3).integers(0, 65536, (37, 29, 4)).astype(np.uint16)
    path = _png16_rgba(tmp_path / "d.png", arr)
    monkeypatch.setattr(decode, "_BAND_PIXELS", 29 * 5, raising=False)  # 5 rows a band: 8 bands, the last short
    got = np.asarray(load_image(path))
    want = np.floor(arr[..., :3].astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(got, want)
    gray = np.random.default_rng(4).integers(0, 65536, (23, 31)).astype(np.uint16)
    Image.fromarray(gray).save(tmp_path / "g.png")
    got = np.asarray(load_image(tmp_path / "g.png"))
    np.testing.assert_array_equal(got, np.repeat(np.floor(gray / 257.0 + 0.5).astype(np.uint8)[..., None], 3, 2))


# ---------------------------------------------------------------- duplicates and CSV lists


def test_duplicate_files_are_counted_and_warned_about(tiny_ckpt, tmp_path, capsys, caplog):
    root = tmp_path / "imgs"
    _png(root / "a.png")
    (root / "b.png").write_bytes((root / "a.png").read_bytes())
    _png(root / "c.png", seed=2)
    (root / "d.png").write_bytes((root / "c.png").read_bytes())
    _png(root / "e.png", seed=3)
    with caplog.at_level(logging.WARNING):
        code, _, err = _cli(_fid_args(tmp_path, tiny_ckpt, root, "dup"), capsys)
    assert code in (0, None), err
    assert _meta(tmp_path, "dup")["extra"]["n_images"] == 5  # both copies kept
    text = caplog.text
    assert "2 of 5 images duplicate an earlier file" in text and "a.png = b.png" in text and "c.png = d.png" in text
    source = open_source(str(root), size=32, preprocess="resize-center-crop")
    assert source.duplicates == [("a.png", "b.png"), ("c.png", "d.png")]


def test_csv_list_with_quoted_newline_and_comma(tiny_ckpt, tmp_path, capsys):
    root = tmp_path / "imgs"
    names = ["plain.png", "two\nlines.png", "comma, name.png"]
    for i, name in enumerate(names):
        _png(root / name, seed=i)
    lst = root / "list.csv"
    with lst.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        for i, name in enumerate(names):
            writer.writerow([name, f"class {i}"])
    code, _, err = _cli(_fid_args(tmp_path, tiny_ckpt, lst, "csv"), capsys)
    assert code in (0, None), err
    meta = _meta(tmp_path, "csv")
    assert meta["extra"]["n_images"] == 3 and not meta["extra"]["skipped_images"]
    assert [(r.id, r.label) for r in discover(lst)] == [(n, f"class {i}") for i, n in enumerate(names)]


# ---------------------------------------------------------------- center-crop padding


def test_center_crop_padding_is_counted_and_warned(tiny_ckpt, tmp_path, capsys, caplog):
    root = tmp_path / "imgs"
    _png(root / "narrow.png", 20, 40)
    _png(root / "big.png", 48, 48)
    _png(root / "short.png", 64, 31)
    with caplog.at_level(logging.WARNING):
        code, _, err = _cli(_fid_args(tmp_path, tiny_ckpt, root, "pad", "--preprocess", "center-crop"), capsys)
    assert code in (0, None), err
    assert "center-crop zero-pads 2 of 3 images smaller than 32 px" in caplog.text
    source = open_source(str(root), size=32, preprocess="center-crop")
    assert source.padded == ["narrow.png", "short.png"]
    assert open_source(str(root), size=32, preprocess="resize-center-crop").padded == []
    code, out, _ = _cli(["fid", "--help"], capsys)
    help_text = " ".join(out.replace("│", " ").split())
    assert "read from the checkpoint" in help_text and "zero-padded" in help_text


# ---------------------------------------------------------------- clean-fid's "clean" resize


def test_clean_resize_matches_clean_fid():
    """Golden values from clean-fid 0.1.35's own resizer. Regenerate with clean-fid installed::

        rng = np.random.default_rng(20261203)
        small = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
        large = rng.integers(0, 256, (310, 300, 3), dtype=np.uint8)
        from cleanfid.resize import make_resizer
        for name, img in (("small", small), ("large", large)):
            out[f"{name}_299"] = make_resizer("PIL", False, "bicubic", (299, 299))(img)[::10, ::10]
            out[f"{name}_17"] = make_resizer("PIL", False, "bicubic", (17, 17))(img)
        np.savez_compressed("tests/fixtures/cleanfid_clean_resize.npz", **out)

    When clean-fid is importable the comparison also runs live on the full 299x299 output.
    """
    golden = np.load(GOLDEN)
    rng = np.random.default_rng(20261203)
    images = {"small": rng.integers(0, 256, (30, 40, 3), dtype=np.uint8),
              "large": rng.integers(0, 256, (310, 300, 3), dtype=np.uint8)}
    for name, img in images.items():
        x = torch.from_numpy(img).permute(2, 0, 1)[None]
        ours_299 = inc.clean_resize(x)[0].permute(1, 2, 0).numpy()
        ours_17 = inc.clean_resize(x, 17)[0].permute(1, 2, 0).numpy()
        assert ours_299.dtype == np.float32 and ours_299.shape == (299, 299, 3)
        np.testing.assert_array_equal(ours_299[::10, ::10], golden[f"{name}_299"])
        np.testing.assert_array_equal(ours_17, golden[f"{name}_17"])
    try:
        from cleanfid.resize import make_resizer
    except ImportError:
        return
    x = torch.from_numpy(images["small"]).permute(2, 0, 1)[None]
    live = make_resizer("PIL", False, "bicubic", (299, 299))(images["small"])
    np.testing.assert_array_equal(inc.clean_resize(x)[0].permute(1, 2, 0).numpy(), live)


def test_clean_mode_features_follow_clean_fid_normalisation(tmp_path_factory):
    """resize="clean" = clean_resize, then (x - 128) / 128 into the same network as clean-fid's
    InceptionV3W (fid-helper's TorchScript is that network); and it differs from the other modes."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ALIT_EVAL_CACHE", str(root / "alit"))
        mp.setenv("TORCH_HOME", str(root / "torch"))
        weights = incw.resolve_inception_weights(offline=True)
    x = torch.from_numpy(np.random.default_rng(5).integers(0, 256, (2, 3, 40, 56), dtype=np.uint8))
    clean = inc.InceptionFeatures(weights.path, resize="clean")
    ours = clean(x)
    script = incw.load_fid_helper_torchscript(incw.fid_helper_model_path())
    with torch.no_grad():
        want = script((inc.clean_resize(x) - 128) / 128)
    assert ours.shape == (2, 2048) and (ours - want).abs().max().item() <= 1e-5
    other = inc.InceptionFeatures(weights.path, resize="pytorch-fid")(x)
    assert (ours - other).abs().max().item() > 1e-3
