"""Bad input through the CLI: each case gives one clear message, the right exit code, and no
result files that look complete. Exit code 0 only when something useful was still produced."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alit_eval.cli.app import main
from alit_eval.tokenizers.families import FAMILIES


def _cli(args, capsys):
    """Run the real entry point (`main`) so error formatting and exit codes are the user's."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def _fid(tmp_path, ckpt, data, *extra):
    return ["--results-dir", str(tmp_path / "res"), "--device", "cpu", "fid", "--ckpt", str(ckpt), "--data", str(data),
            "--budgets", "4", "--no-fid", "--no-compute", *extra]


def _write_odd_images(root: Path) -> dict[str, bool]:
    """Write one file per odd case; return name -> should it decode."""
    root.mkdir()
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "ok.png")
    Image.fromarray(rgb).convert("CMYK").save(root / "cmyk.jpg")
    Image.fromarray(rgb).convert("P").save(root / "palette.png")
    Image.fromarray(rgb).convert("RGBA").save(root / "rgba.png")
    Image.fromarray(rgb).convert("L").save(root / "gray.png")
    Image.fromarray((rng.integers(0, 65536, (30, 30))).astype(np.uint16)).save(root / "deep16.png")
    Image.fromarray(rgb[:1, :1]).save(root / "one_pixel.png")
    Image.fromarray(rgb).save(root / "photo.jpg", quality=90)
    jpg = (root / "photo.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(jpg[: len(jpg) // 3])
    (root / "corrupt.jpg").write_bytes(jpg[:300] + bytes(rng.integers(0, 256, 400, dtype=np.uint8)))
    png = (root / "ok.png").read_bytes()
    (root / "truncated.png").write_bytes(png[: len(png) // 2])
    (root / "notes.png").write_text("this is text, not a PNG\n")
    Image.new("L", (10000, 10000)).save(root / "huge.png")  # 1e8 pixels: over PIL's bomb limit
    (root / "dangling.png").symlink_to(root / "missing-target.png")
    return {"ok.png": True, "cmyk.jpg": True, "palette.png": True, "rgba.png": True, "gray.png": True,
            "deep16.png": True, "one_pixel.png": True, "photo.jpg": True, "truncated.jpg": False,
            "corrupt.jpg": False, "truncated.png": False, "notes.png": False, "huge.png": False,
            "dangling.png": False}


def test_odd_images_are_decoded_or_skipped_with_reasons(tiny_ckpt, tmp_path, capsys):
    expected = _write_odd_images(tmp_path / "imgs")
    code, out, err = _cli(_fid(tmp_path, tiny_ckpt, tmp_path / "imgs", "--run-id", "odd"), capsys)
    assert code in (0, None), err
    meta = json.loads((tmp_path / "res" / "fid" / "odd" / "meta.json").read_text())
    skipped = {s["id"]: s["error"] for s in meta["extra"]["skipped_images"]}
    assert set(skipped) == {k for k, ok in expected.items() if not ok}
    assert "MAX_IMAGE_PIXELS" in skipped["huge.png"] or "decompression" in skipped["huge.png"].lower()
    assert meta["extra"]["n_images"] == sum(expected.values())
    assert all("\n" not in msg for msg in skipped.values())


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_skipped(tiny_ckpt, tmp_path, capsys):
    root = tmp_path / "imgs"
    root.mkdir()
    Image.new("RGB", (40, 40)).save(root / "a.png")
    Image.new("RGB", (40, 40)).save(root / "b.png")
    os.chmod(root / "b.png", 0)
    code, _, err = _cli(_fid(tmp_path, tiny_ckpt, root, "--run-id", "perm"), capsys)
    assert code in (0, None), err
    meta = json.loads((tmp_path / "res" / "fid" / "perm" / "meta.json").read_text())
    assert [s["id"] for s in meta["extra"]["skipped_images"]] == ["b.png"]


def test_only_bad_images_or_empty_folder_fail_cleanly(tiny_ckpt, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = _cli(_fid(tmp_path, tiny_ckpt, tmp_path / "empty"), capsys)
    assert code == 2 and err.count("\n") == 1 and "no images found" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_text("nope")
    code, _, err = _cli(_fid(tmp_path, tiny_ckpt, bad, "--run-id", "bad"), capsys)
    assert code == 2 and "could be decoded" in err
    assert not (tmp_path / "res" / "fid" / "bad" / "meta.json").exists()
    assert not (tmp_path / "res" / "fid" / "bad" / "metrics.csv").exists()


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_bad_checkpoints(tiny_ckpt, tmp_path, capsys):
    Image.new("RGB", (40, 40)).save(tmp_path / "img.png")
    data = tmp_path / "img.png"
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(tiny_ckpt.read_bytes()[:5000])
    other = tmp_path / "resnet.pth"
    torch.save({"state_dict": torch.nn.Linear(3, 4).state_dict()}, other)
    marker = tmp_path / "executed"
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump({"ema": {}, "x": _Payload(str(marker))}, f)
    cases = {tmp_path / "missing.pth": "no such file .pass a checkpoint file", cut: "truncated or not a valid safetensors",
             other: rf"not a checkpoint of a known tokenizer family \({', '.join(FAMILIES.names())}\); "
                    "if it is one of them, pass --family NAME",
             evil: "not a readable PyTorch checkpoint|refusing to unpickle"}
    for ckpt, message in cases.items():
        code, _, err = _cli(_fid(tmp_path, ckpt, data), capsys)
        assert code == 2, (ckpt, err)
        assert err.startswith("error: ") and err.count("\n") == 1, err
        import re

        assert re.search(message, err), err
    assert not marker.exists()


def test_impossible_budgets_and_options(tiny_ckpt, tmp_path, capsys):
    Image.new("RGB", (40, 40)).save(tmp_path / "img.png")
    for budgets, message in (("5", "not available"), ("0", "positive"), ("4,x", "")):
        args = _fid(tmp_path, tiny_ckpt, tmp_path / "img.png")
        args[args.index("--budgets") + 1] = budgets
        code, _, err = _cli(args, capsys)
        assert code == 2 and message in err, err


def test_existing_different_run_is_refused_unless_overwrite(tiny_ckpt, tmp_path, capsys):
    Image.new("RGB", (40, 40)).save(tmp_path / "img.png")
    args = _fid(tmp_path, tiny_ckpt, tmp_path / "img.png", "--run-id", "same")
    assert _cli(args, capsys)[0] in (0, None)
    other = _fid(tmp_path, tiny_ckpt, tmp_path / "img.png", "--run-id", "same", "--official-truncation")
    code, _, err = _cli(other, capsys)
    assert code == 2 and "--overwrite" in err
    code, _, err = _cli(other + ["--overwrite"], capsys)
    assert code in (0, None), err
    cfg = json.loads((tmp_path / "res" / "fid" / "same" / "config.json").read_text())
    assert cfg["rounding"] == "truncate"


def test_concurrent_run_into_one_folder_is_refused(tiny_ckpt, tmp_path, capsys):
    Image.new("RGB", (40, 40)).save(tmp_path / "img.png")
    folder = tmp_path / "res" / "fid" / "busy"
    folder.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        (folder / ".lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "time": time.time()}))
        code, _, err = _cli(_fid(tmp_path, tiny_ckpt, tmp_path / "img.png", "--run-id", "busy"), capsys)
        assert code == 2 and "lock" in err.lower(), err
    finally:
        holder.kill()


@pytest.mark.slow
def test_kill_9_then_rerun_equals_uninterrupted(tiny_ckpt, tmp_path, capsys, one_torch_thread):
    # Only the run that is killed needs a process of its own; the uninterrupted run and the rerun go
    # through the same entry point in this one (each subprocess costs ~10 s of imports), with one torch
    # thread like the child's, so that every sum adds in the same order.
    args = ["--device", "cpu", "--results-dir", str(tmp_path), "fid", "--ckpt", str(tiny_ckpt), "--limit", "16",
            "--batch-size", "2", "--budgets", "4,16", "--no-compute",
            "--no-fid"]  # rFID's resume (Inception features in the shards) is tested in test_engine, in-process
    code, _, err = _cli(args + ["--run-id", "whole"], capsys)
    assert code == 0, err[-3000:]
    shards = tmp_path / "fid" / "cut" / "shards"
    rng = np.random.default_rng(int(time.time()))
    target = int(rng.integers(1, 6))  # kill after a random number of finished batches (of 8)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "alit_eval", *args, "--run-id", "cut"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and len(list(shards.glob("[0-9]*.npz"))) < target:
        time.sleep(0.01)
    proc.kill()  # SIGKILL: no cleanup code runs
    proc.wait()
    assert not (tmp_path / "fid" / "cut" / "meta.json").exists()
    code, _, err = _cli(args + ["--run-id", "cut"], capsys)
    assert code == 0, err[-3000:]
    a, b = tmp_path / "fid" / "whole", tmp_path / "fid" / "cut"
    assert (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes()
    import pandas as pd

    pd.testing.assert_frame_equal(pd.read_parquet(a / "per_image.parquet"), pd.read_parquet(b / "per_image.parquet"))
