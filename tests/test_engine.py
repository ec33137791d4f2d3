"""The sweep engine and `alit-eval fid`: invariances, exact resume, bad inputs, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from alit_eval.analysis.reconstruction import run
from alit_eval.cli.app import app
from alit_eval.engine.config import SweepConfig


def _run(tiny_ckpt, tmp_path, name, **kw):
    opts = dict(ckpt=str(tiny_ckpt), data="demo-scenes", limit=10, batch_size=4, fid=False)
    run_kw = {k: kw.pop(k) for k in ("on_batch",) if k in kw}
    opts.update(kw)
    return run(SweepConfig(**opts), seed=0, device="cpu", offline=True, results_dir=tmp_path / name,
               progress=False, **run_kw)


def _per_image(run_dir):
    return pd.read_parquet(run_dir.path / "per_image.parquet")


def test_batch_size_and_budget_order_do_not_change_numbers(tiny_ckpt, tmp_path):
    a, ma = _run(tiny_ckpt, tmp_path, "a", batch_size=1, budgets=[4, 16, 8])
    b, mb = _run(tiny_ckpt, tmp_path, "b", batch_size=7, budgets=[16, 4, 8])
    pa, pb = _per_image(a), _per_image(b)
    assert len(pa) == 10 * 3 and list(pa["budget"].unique()) == [4, 8, 16]
    # Float noise between batch sizes (~1e-6) can flip a pixel's uint8 rounding by one level, which
    # moves a 32x32 image's L1 by 1/(255*3072) = 1.3e-6: allow a few such flips, nothing more.
    np.testing.assert_allclose(pa["l1"], pb["l1"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(pa["mse"], pb["mse"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(pa["psnr"], pb["psnr"], rtol=1e-4)
    np.testing.assert_allclose(pa["ssim"], pb["ssim"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(ma["value"], mb["value"], rtol=1e-4, atol=1e-5)
    assert (pa["image_id"] == pb["image_id"]).all() and (pa["halted_2d"] == pb["halted_2d"]).all()


def test_pixel_metrics_match_a_naive_recomputation(tiny_ckpt, tmp_path):
    import torch

    from alit_eval.data.demo import generate
    from alit_eval.tokenizers.generators import per_image_generators
    from alit_eval.tokenizers.checkpoints import load_alit_checkpoint

    r, _ = _run(tiny_ckpt, tmp_path, "n", limit=3, budgets=[8])
    per = _per_image(r)
    model = load_alit_checkpoint(tiny_ckpt, halting="seeded")
    samples = [generate("demo-scenes", i, size=32) for i in range(3)]
    x = torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2).float() / 255
    # One batch of three, as the engine ran it, so only the metric code is being compared.
    out = model.rollout(x, [8], generator=per_image_generators(0, [s.id for s in samples]), halting="seeded")
    rec = np.floor(out[8].extras["reconstruction_raw"].clamp(0, 1).numpy() * 255 + 0.5).astype(np.float64)
    for i, row in per.iterrows():
        d = (rec[i] - samples[i].image.transpose(2, 0, 1).astype(np.float64)) / 255
        assert row["image_id"] == samples[i].id
        assert row["l1"] == pytest.approx(np.abs(d).mean(), abs=1e-12)
        assert row["mse"] == pytest.approx((d ** 2).mean(), abs=1e-12)
        assert row["psnr"] == pytest.approx(10 * np.log10(1 / (d ** 2).mean()), abs=1e-9)


def test_interrupted_run_resumes_to_identical_files(tiny_ckpt, tmp_path):
    # three batches of one image: cut after two, resume the third
    full, _ = _run(tiny_ckpt, tmp_path, "full", fid=True, limit=3, budgets=[4, 16], batch_size=1)

    class Boom(Exception):
        pass

    seen = []

    def stop_after_two_batches(n):
        seen.append(n)
        if len(seen) == 2:
            raise Boom()

    with pytest.raises(Boom):
        _run(tiny_ckpt, tmp_path, "cut", fid=True, limit=3, budgets=[4, 16], batch_size=1,
             on_batch=stop_after_two_batches)
    cut_dir = next((tmp_path / "cut" / "fid").iterdir())
    assert not (cut_dir / "meta.json").exists() and len(list((cut_dir / "shards").glob("*.npz"))) == 2
    resumed, _ = _run(tiny_ckpt, tmp_path, "cut", fid=True, limit=3, budgets=[4, 16], batch_size=1)
    assert resumed.path == cut_dir
    assert (full.path / "metrics.csv").read_bytes() == (resumed.path / "metrics.csv").read_bytes()
    pd.testing.assert_frame_equal(_per_image(full), _per_image(resumed))
    m = pd.read_csv(full.path / "metrics.csv")
    assert set(m["metric"]) >= {"rfid", "l1", "psnr", "ssim"} and (m.loc[m.metric == "rfid", "value"] > 0).all()


def test_official_halting_resume_continues_the_rng_stream(tiny_ckpt, tmp_path):
    full, _ = _run(tiny_ckpt, tmp_path, "f", halting="official", limit=4, batch_size=1)
    calls = []

    def stop(n):
        calls.append(n)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(tiny_ckpt, tmp_path, "c", halting="official", limit=4, batch_size=1, on_batch=stop)
    resumed, _ = _run(tiny_ckpt, tmp_path, "c", halting="official", limit=4, batch_size=1)
    pd.testing.assert_frame_equal(_per_image(full), _per_image(resumed))


def _bad_folder(root):
    root.mkdir()
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(img).save(root / "good.png")
    Image.fromarray(img).convert("CMYK").save(root / "cmyk.jpg")
    Image.fromarray(img).convert("RGBA").save(root / "rgba.png")
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(root / "tiny.png")
    Image.fromarray((rng.integers(0, 65535, (20, 20))).astype(np.uint16)).save(root / "deep16.png")
    (root / "text.png").write_text("not an image")
    data = (root / "good.png").read_bytes()
    (root / "truncated.png").write_bytes(data[: len(data) // 2])
    jpg = root / "corrupt.jpg"
    Image.fromarray(img).save(jpg)
    (root / "corrupt.jpg").write_bytes(jpg.read_bytes()[:200] + b"\x00" * 50)


def test_bad_images_are_skipped_and_reported(tiny_ckpt, tmp_path):
    _bad_folder(tmp_path / "imgs")
    r, _ = _run(tiny_ckpt, tmp_path, "bad", data=str(tmp_path / "imgs"), limit=None, budgets=[4])
    meta = json.loads((r.path / "meta.json").read_text())
    skipped = {s["id"] for s in meta["extra"]["skipped_images"]}
    assert {"text.png", "truncated.png", "corrupt.jpg"} <= skipped
    done = set(_per_image(r)["image_id"])
    assert {"good.png", "cmyk.jpg", "rgba.png", "tiny.png", "deep16.png"} <= done
    assert not (skipped & done)


@pytest.mark.figures
def test_cli_fid_writes_the_standard_layout(tiny_ckpt, tmp_path):
    res = CliRunner().invoke(app, ["--results-dir", str(tmp_path), "--device", "cpu", "fid", "--ckpt", str(tiny_ckpt),
                                   "--limit", "4", "--budgets", "4,16", "--no-fid", "--run-id", "r1"])
    assert res.exit_code == 0, res.output
    folder = tmp_path / "fid" / "r1"
    for name in ("metrics.csv", "per_image.parquet", "meta.json", "config.json", "figures/metrics_vs_tokens.png",
                 "figures/examples.png"):
        assert (folder / name).is_file(), name
    assert "tokens" in res.output
    res = CliRunner().invoke(app, ["--results-dir", str(tmp_path), "fid", "--ckpt", str(tiny_ckpt), "--limit", "4",
                                   "--budgets", "5"])
    assert res.exit_code != 0 and "not available" in str(res.exception or res.output)


def test_fid_stats_and_demo_data_commands(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["demo-data", str(tmp_path / "demo"), "--split", "demo-scenes", "-n", "5", "--size", "32"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "demo" / "images").glob("*.png"))) == 5
    res = runner.invoke(app, ["--results-dir", str(tmp_path / "r"), "fid-stats", str(tmp_path / "demo" / "images"),
                              str(tmp_path / "ref.npz"), "--size", "32"])
    assert res.exit_code == 0, res.output
    from alit_eval.metrics.feature_distance import load_stats_npz

    stats = load_stats_npz(tmp_path / "ref.npz")
    assert stats.mu.shape == (2048,) and stats.sigma.shape == (2048, 2048) and stats.n == 5
    res = runner.invoke(app, ["fid-stats", str(tmp_path / "demo" / "images"), str(tmp_path / "ref.npz")])
    assert res.exit_code != 0  # refuses to overwrite


@pytest.mark.parametrize("rounding", ["round", "truncate"])
def test_save_recons_pngs_are_the_measured_images(tiny_ckpt, tmp_path, rounding):
    """--save-recons: each PNG equals the engine's uint8 reconstruction (same rounding), and the L1
    recomputed from the PNGs equals the per-image table's l1."""
    import torch

    from alit_eval.engine.recons import recon_path
    from alit_eval.metrics.pixel import to_uint8
    from alit_eval.tokenizers.generators import per_image_generators
    from alit_eval.tokenizers.checkpoints import load_alit_checkpoint

    out = tmp_path / "pngs"
    r, _ = _run(tiny_ckpt, tmp_path, "s", limit=5, batch_size=5, budgets=[4, 16], rounding=rounding,
                save_recons=str(out))
    per = _per_image(r)
    ids = list(per["image_id"].unique())
    assert sorted(p.name for p in out.iterdir()) == ["16", "4", "original"]
    read = lambda key, i: np.asarray(Image.open(recon_path(out, key, i))).transpose(2, 0, 1)  # noqa: E731
    originals = np.stack([read("original", i) for i in ids])
    model = load_alit_checkpoint(tiny_ckpt, halting="seeded")
    x = torch.from_numpy(originals).float() / 255
    rollout = model.rollout(x, [4, 16], generator=per_image_generators(0, ids), halting="seeded")
    for b in (4, 16):
        pngs = np.stack([read(b, i) for i in ids])
        expected = to_uint8(rollout[b].extras["reconstruction_raw"], rounding).numpy()
        np.testing.assert_array_equal(pngs, expected)  # one batch of five, as the engine ran it
        l1 = np.abs(pngs.astype(np.float64) - originals).reshape(len(ids), -1).mean(1) / 255
        table = per[per["budget"] == b].set_index("image_id").loc[ids, "l1"].to_numpy()
        np.testing.assert_allclose(l1, table, rtol=0, atol=1e-12)


def test_recon_path_stays_inside_the_folder(tmp_path):
    from alit_eval.engine.recons import recon_path

    assert recon_path(tmp_path, 32, "cat/001.jpg") == tmp_path / "32" / "cat" / "001.jpg.png"
    assert recon_path(tmp_path, "original", "/abs/../x.png") == tmp_path / "original" / "abs" / "x.png"
