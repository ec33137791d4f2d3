"""Never trust what is resumed or embedded (issues 16.1 and 17.1/5/6/7 and the "one line" cases),
through the real entry point (`alit_eval.cli.app.main`): changed images and swapped checkpoints are
recomputed, damaged shards are named and recomputed without losing meta.json, stale locks are taken
over by exactly one process, and damaged or hostile folders give one ``error:`` line."""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from alit_eval.cli.app import main
from alit_eval.engine.identity import ResumeWarning
from conftest import make_tiny_alit


def _cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def _fid_args(res: Path, ckpt: Path, data: Path, *extra: str) -> list[str]:
    return ["--results-dir", str(res), "--device", "cpu", "fid", "--ckpt", str(ckpt), "--data", str(data),
            "--budgets", "4,8", "--no-fid", "--no-compute", "--batch-size", "2", "--run-id", "r", *extra]


def _images(folder: Path, n: int = 4, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return folder


def _per_image(run: Path) -> pd.DataFrame:
    return pd.read_parquet(run / "per_image.parquet")[["image_id", "budget", "l1", "psnr"]]


def _one_error_line(code: int, out: str, err: str, *names: str) -> str:
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------- 16.1: changed images
def test_rerun_after_an_image_changed_recomputes_it(tiny_ckpt, tmp_path, capsys):
    data = _images(tmp_path / "data")
    code, _, err = _cli(_fid_args(tmp_path / "res", tiny_ckpt, data), capsys)
    assert code in (0, None), err
    run = tmp_path / "res" / "fid" / "r"
    before = _per_image(run)

    # new bytes under the same name (and the same size: a PNG of the same shape and entropy)
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(data / "img1.png")
    with pytest.warns(ResumeWarning, match=r"1 image\(s\) changed .*img1.png"):
        code, _, err = _cli(_fid_args(tmp_path / "res", tiny_ckpt, data), capsys)
    assert code in (0, None), err
    after = _per_image(run)

    code, _, err = _cli(_fid_args(tmp_path / "fresh", tiny_ckpt, data), capsys)
    fresh = _per_image(tmp_path / "fresh" / "fid" / "r")
    pd.testing.assert_frame_equal(after, fresh)  # exactly what a fresh run gives
    changed = before["image_id"] == "img1.png"
    assert not np.allclose(before.loc[changed, "l1"], after.loc[changed, "l1"])
    pd.testing.assert_frame_equal(before[~changed], after[~changed])  # the others were reused

    # a touch alone (same bytes, new mtime) recomputes nothing
    os.utime(data / "img0.png")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeWarning)
        code, _, err = _cli(_fid_args(tmp_path / "res", tiny_ckpt, data), capsys)
    assert code in (0, None), err


# ---------------------------------------------------------------- 17.1: a sidecar is a claim
def test_swapped_checkpoint_with_old_digest_in_sidecar_is_not_trusted(tmp_path, capsys):
    data = _images(tmp_path / "data", n=2)
    ckpt = make_tiny_alit(tmp_path / "m" / "tiny.safetensors", seed=0)
    old_digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    args = ["--results-dir", str(tmp_path / "res"), "--device", "cpu", "fid", "--ckpt", str(ckpt), "--data",
            str(data), "--budgets", "4", "--no-fid", "--no-compute"]
    assert _cli(args, capsys)[0] in (0, None)
    first = {p.name for p in (tmp_path / "res" / "fid").iterdir()}

    st = ckpt.stat()
    make_tiny_alit(tmp_path / "other.safetensors", seed=1)
    shutil.copyfile(tmp_path / "other.safetensors", ckpt)  # new weights under the same path
    new_digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert new_digest != old_digest
    # the old digest, claimed by a sidecar newer than the file, with the size and mtime of the old file
    side = ckpt.with_name(ckpt.name + ".sha256")
    side.write_text(f"{old_digest}  {ckpt.name}\n# size={st.st_size} mtime_ns={st.st_mtime_ns}\n")
    later = ckpt.stat().st_mtime_ns + 5_000_000_000
    os.utime(side, ns=(later, later))

    assert _cli(args, capsys)[0] in (0, None)
    runs = {p.name for p in (tmp_path / "res" / "fid").iterdir()}
    new = runs - first
    assert len(new) == 1, "the swapped checkpoint reopened the old run"
    meta = json.loads((tmp_path / "res" / "fid" / new.pop() / "meta.json").read_text())
    assert meta["config"]["checkpoint"]["sha256"] == new_digest

    # an old-format sidecar (digest only) is not trusted either
    side.write_text(f"{old_digest}  {ckpt.name}\n")
    os.utime(side, ns=(later, later))
    from alit_eval.tokenizers.digests import checkpoint_sha256

    assert checkpoint_sha256(ckpt) == new_digest


# ---------------------------------------------------------------- 17.5: report embeds only real figures
def test_report_embeds_no_symlink_leaving_the_run_and_no_fake_image(tmp_path, capsys):
    from test_report import make_run

    run = make_run(tmp_path / "results", "fid", "a")
    secret = tmp_path / "secret.txt"
    secret.write_text("api-key: hunter2\n")
    (run / "figures" / "zz.png").symlink_to(secret)
    (run / "figures" / "fake.png").write_text("not an image, but inside the run\n")
    inside = run / "figures" / "again.png"
    inside.symlink_to(run / "figures" / "examples.png")  # a link that stays inside the run: fine
    code, out, err = _cli(["report", str(run), "--out", str(tmp_path / "out")], capsys)
    assert code in (0, None), err
    page = (tmp_path / "out" / "report.html").read_text()
    for leaked in (secret.read_bytes(), (run / "figures" / "fake.png").read_bytes()):
        assert base64.b64encode(leaked).decode() not in page
    assert base64.b64encode((run / "figures" / "examples.png").read_bytes()).decode() in page
    copied = [p.name for p in (tmp_path / "out" / "figures").rglob("*") if p.is_file()]
    assert not any("zz" in n or "fake" in n for n in copied)


# ---------------------------------------------------------------- 17.6: damaged finished runs
def test_truncated_shard_is_named_and_recomputed_and_meta_json_is_kept(tiny_ckpt, tmp_path, capsys, monkeypatch):
    data = _images(tmp_path / "data")
    args = _fid_args(tmp_path / "res", tiny_ckpt, data)
    assert _cli(args, capsys)[0] in (0, None)
    run = tmp_path / "res" / "fid" / "r"
    before = _per_image(run)
    meta_before = (run / "meta.json").read_bytes()
    shard = run / "shards" / "000000002.npz"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])

    # a rerun that dies before finishing leaves the completion mark of the finished run in place
    from alit_eval.engine import store as store_mod

    def boom(self, *a, **k):
        raise RuntimeError("killed mid-rerun")

    monkeypatch.setattr(store_mod.ShardStore, "write", boom)
    with pytest.warns(ResumeWarning, match=r"000000002\.npz is damaged"):
        with pytest.raises(RuntimeError, match="killed mid-rerun"):
            main(args)
    assert (run / "meta.json").read_bytes() == meta_before
    monkeypatch.undo()

    code, _, err = _cli(args, capsys)  # the damaged shard's images are recomputed now
    assert code in (0, None), err
    pd.testing.assert_frame_equal(_per_image(run), before)
    assert json.loads((run / "meta.json").read_text())["run_id"] == "r"


def test_damaged_shard_named_on_a_plain_rerun(tiny_ckpt, tmp_path, capsys):
    data = _images(tmp_path / "data")
    args = _fid_args(tmp_path / "res", tiny_ckpt, data)
    assert _cli(args, capsys)[0] in (0, None)
    run = tmp_path / "res" / "fid" / "r"
    before = _per_image(run)
    shard = run / "shards" / "000000000.npz"
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte: same size, different checksum
    shard.write_bytes(bytes(raw))
    with pytest.warns(ResumeWarning, match=r"shard .*000000000\.npz is damaged"):
        code, _, err = _cli(args, capsys)
    assert code in (0, None), err
    pd.testing.assert_frame_equal(_per_image(run), before)


@pytest.mark.parametrize("name", ["config.json", "meta.json"])
def test_garbage_run_json_on_rerun(tiny_ckpt, tmp_path, capsys, name):
    data = _images(tmp_path / "data", n=2)
    args = _fid_args(tmp_path / "res", tiny_ckpt, data)
    assert _cli(args, capsys)[0] in (0, None)
    run = tmp_path / "res" / "fid" / "r"
    (run / name).write_bytes(b"\x00\xffgarbage{")
    if name == "config.json":  # the config cannot be verified: refuse, saying what to do
        _one_error_line(*_cli(args, capsys), "config.json", "--overwrite")
    else:  # only the completion record: rewritten when the rerun finishes
        with pytest.warns(UserWarning, match="meta.json"):
            code, out, err = _cli(args, capsys)
        assert code in (0, None) and "Traceback" not in err
        assert json.loads((run / "meta.json").read_text())["run_id"] == "r"


# ---------------------------------------------------------------- 17.7: stale-lock takeover
def _contender(folder: str, barrier, wins, tries: int, slot: int) -> None:
    from alit_eval.errors import AlitEvalError
    from alit_eval.results.rundir import _acquire_lock

    for t in range(tries):
        barrier.wait()  # the parent has planted a stale lock
        lock = None
        try:
            lock = _acquire_lock(Path(folder))
        except AlitEvalError:
            pass
        if lock is not None:
            with wins.get_lock():
                wins[t] += 1
        barrier.wait()  # everybody has tried while the winner still holds it
        if lock is not None:
            lock.release() if hasattr(lock, "release") else lock.unlink(missing_ok=True)
        barrier.wait()


def test_stale_lock_is_taken_over_by_exactly_one_process(tmp_path):
    tries, procs = 200, 4
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(procs + 1)
    wins = ctx.Array("i", tries)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = json.dumps({"pid": dead.pid, "host": socket.gethostname()})
    workers = [ctx.Process(target=_contender, args=(str(tmp_path), barrier, wins, tries, i)) for i in range(procs)]
    for w in workers:
        w.start()
    try:
        for _ in range(tries):
            (tmp_path / ".lock").write_text(stale)
            barrier.wait(timeout=60)
            barrier.wait(timeout=60)
            barrier.wait(timeout=60)
    finally:
        for w in workers:
            w.join(timeout=60)
            if w.is_alive():
                w.kill()
    counts = list(wins)
    assert max(counts) == 1, f"{sum(c > 1 for c in counts)} of {tries} tries acquired the lock twice"
    assert min(counts) == 1


# ---------------------------------------------------------------- one line: read-only, full disk
@pytest.mark.parametrize("case", ["parent-is-a-file", "EACCES", "EROFS", "ENOSPC"])
def test_unwritable_results_give_one_line(tiny_ckpt, tmp_path, capsys, monkeypatch, case):
    data = _images(tmp_path / "data", n=2)
    res = tmp_path / "res"
    if case == "parent-is-a-file":  # works as root too, where chmod would not stop a write
        (tmp_path / "afile").write_text("x")
        res = tmp_path / "afile" / "res"
    else:
        code = getattr(errno, case)
        real_replace, real_mkdir = os.replace, os.mkdir

        def guarded(real):
            def fake(src, *a, **k):
                if str(res) in str(src):
                    raise OSError(code, os.strerror(code), str(src))
                return real(src, *a, **k)
            return fake

        # a read-only folder refuses folders; a full disk refuses the file that does not fit
        if case == "ENOSPC":
            monkeypatch.setattr(os, "replace", guarded(real_replace))
        else:
            res.mkdir()
            monkeypatch.setattr(os, "mkdir", guarded(real_mkdir))
    line = _one_error_line(*_cli(_fid_args(res, tiny_ckpt, data), capsys), str(res))
    if case == "ENOSPC":
        assert "No space left on device" in line and "MiB free" in line
    assert "--results-dir" in line


# ---------------------------------------------------------------- one line: tampered run folders
@pytest.fixture(scope="module")
def finished_run(tiny_ckpt, tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("finished")
    data = _images(root / "data", n=4)
    with pytest.raises(SystemExit) as info:
        main(_fid_args(root / "res", tiny_ckpt, data))
    assert info.value.code in (0, None)
    return root / "res" / "fid" / "r"


def _drop_column(path: Path, column: str) -> None:
    if path.suffix == ".parquet":
        pd.read_parquet(path).drop(columns=[column]).to_parquet(path)
    else:
        pd.read_csv(path).drop(columns=[column]).to_csv(path, index=False)


def _retype(path: Path, column: str) -> None:
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    df[column] = "abc"
    df.to_parquet(path) if path.suffix == ".parquet" else df.to_csv(path, index=False)


TAMPER = {
    "metrics-missing-column": ("metrics.csv", lambda p: _drop_column(p, "value"), ("report",)),
    "metrics-mistyped-column": ("metrics.csv", lambda p: _retype(p, "value"), ("report",)),
    "metrics-binary": ("metrics.csv", lambda p: p.write_bytes(bytes(range(256)) * 8), ("report",)),
    "per-image-garbage-parquet": ("per_image.parquet", lambda p: p.write_bytes(b"PAR1" + b"\x00" * 64 + b"PAR1"),
                                  ("from-run",)),
    "per-image-missing-column": ("per_image.parquet", lambda p: _drop_column(p, "l1"), ("from-run",)),
    "per-image-mistyped-column": ("per_image.parquet", lambda p: _retype(p, "budget"), ("from-run",)),
    "meta-garbage-json": ("meta.json", lambda p: p.write_text("{not json"), ("report", "from-run")),
    "config-garbage-json": ("config.json", lambda p: p.write_text('{"a": '), ("report", "from-run")),
    "config-not-an-object": ("config.json", lambda p: p.write_text("[1, 2, 3]"), ("report", "from-run")),
    "config-binary": ("config.json", lambda p: p.write_bytes(b"\xff\xfe\x00\x01"), ("report", "from-run")),
    "shard-garbage": ("shards/000000000.npz", lambda p: p.write_bytes(b"PK\x03\x04" + b"\x00" * 100), ("from-run",)),
    "other-csv-binary": ("extra_table.csv", lambda p: p.write_bytes(b"\x00\xff" * 500), ("report",)),
}


@pytest.mark.parametrize("case,command", [(c, cmd) for c in sorted(TAMPER) for cmd in TAMPER[c][2]])
def test_tampered_run_folder_gives_one_error_line(finished_run, tmp_path, capsys, case, command):
    name, tamper, _ = TAMPER[case]  # each case only with the commands that read the tampered file
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    tamper(run / name)
    if command == "report":
        args = ["report", str(run), "--out", str(tmp_path / "out")]
    else:
        args = ["--results-dir", str(tmp_path / "res"), "entropy-correlation", "--from-run", str(run)]
    _one_error_line(*_cli(args, capsys), Path(name).name)


# ---------------------------------------------------------------- store level: trimming and the official stream
class _Files:
    """A file-backed dataset stand-in: only ``records`` (id, path) matter to the resume check."""

    def __init__(self, folder: Path, n: int) -> None:
        from alit_eval.data.datasets import ImageRecord

        self.records = []
        for i in range(n):
            (folder / f"f{i}.bin").write_bytes(f"image {i}".encode())
            self.records.append(ImageRecord(f"f{i}.bin", folder / f"f{i}.bin"))


def _shard_arrays(ds: _Files, positions: list[int]) -> dict[str, np.ndarray]:
    from alit_eval.engine.identity import file_identity, identity_arrays

    return {"index": np.asarray(positions, np.int64), "id": np.asarray([ds.records[p].id for p in positions]),
            "failed_index": np.zeros(0, np.int64), "failed_id": np.zeros(0, "U1"),
            "l1": np.asarray([[p, p + 0.5] for p in positions], np.float64),
            "example_index": np.asarray(positions[:1], np.int64),
            "example_ref": np.zeros((1, 3, 2, 2), np.uint8), "rng_state": np.arange(5, dtype=np.uint8),
            **identity_arrays([{"index": p, "identity": file_identity(ds.records[p].path)} for p in positions])}


@pytest.mark.parametrize("official", [False, True])
def test_changed_image_trims_its_shard_or_drops_the_rest_of_the_official_stream(tmp_path, official):
    from alit_eval.engine.identity import verify_resume
    from alit_eval.engine.store import ShardStore

    ds = _Files(tmp_path, 6)
    store = ShardStore(tmp_path / "run")
    for first in (0, 2, 4):
        store.write(first, _shard_arrays(ds, [first, first + 1]))
    ds.records[2].path.write_bytes(b"changed!")  # same length, new bytes
    with pytest.warns(ResumeWarning, match=r"f2\.bin"):
        verify_resume(store, ds, official_stream=official)
    names = [p.name for p in store.files()]
    if official:  # the global RNG stream continues from the last kept shard, as after an interruption
        assert names == ["000000000.npz"] and store.done() == {0, 1}
    else:  # only f2 is recomputed; the trimmed shard is renamed after its first remaining image
        assert names == ["000000000.npz", "000000003.npz", "000000004.npz"]
        assert store.done() == {0, 1, 3, 4, 5}
        kept = next(s for s in store.iter() if 3 in s["index"])
        assert kept["l1"].tolist() == [[3, 3.5]] and kept["file_index"].tolist() == [3]
        assert kept["example_index"].tolist() == [] and kept["rng_state"].tolist() == list(range(5))
        assert all(store.damage(p) is None for p in store.files())  # rewritten with a fresh checksum
    assert sorted(p.name for p in store.folder.glob("*.sha256")) == [n + ".sha256" for n in names]
