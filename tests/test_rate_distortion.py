"""Rate-distortion: bits per token, the codec quality search, worker independence, the command."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from alit_eval.analysis import codec_search as cs
from alit_eval.analysis import rate_distortion as rd
from alit_eval.cli.app import app
from alit_eval.data.sources import DemoDataset
from alit_eval.errors import AlitEvalError
from alit_eval.metrics.feature_distance import FeatureStats, FrechetReference
from alit_eval.results.report_runs import read_metrics
from alit_eval.results.schema import parse_condition


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_bits_per_token():
    assert rd.bits_per_token({"quantize": True, "codebook_size": 4096, "token_dim": 12}) == (12.0, "vq4096")
    bits, label = rd.bits_per_token({"quantize": True, "codebook_size": 1000, "token_dim": 12})
    assert bits == pytest.approx(np.log2(1000)) and label == "vq1000"
    assert rd.bits_per_token({"quantize": False, "codebook_size": 4096, "token_dim": 12}) == (192.0, "fp16")
    with pytest.raises(AlitEvalError, match="bits-per-token"):
        rd.bits_per_token({"quantize": True})


def test_best_quality_against_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(200):
        sizes = {q: int(s) for q, s in zip(range(1, 101), rng.integers(50, 500, 100))}  # non-monotonic
        target = float(rng.integers(0, 600))
        got = cs.best_quality(sizes, target)
        fits = {q: s for q, s in sizes.items() if s <= target}
        if not fits:
            assert got is None
            continue
        best = max(fits.values())
        assert sizes[got] == best and got == max(q for q, s in fits.items() if s == best)


def test_binary_search_on_monotone_sizes():
    sizes = {q: 100 + 7 * q for q in range(1, 101)}
    for target in (50, 107, 108, 400, 800, 10_000):
        assert cs.binary_quality(sizes.__getitem__, target) == cs.best_quality(sizes, target)


@pytest.fixture(scope="module")
def images():
    ds = DemoDataset("demo-scenes", 3, 32)
    return [ds[i]["image"].permute(1, 2, 0).contiguous().numpy() for i in range(3)]


def test_codec_job_picks_the_largest_file_within_the_budget(images):
    image = images[0]
    sizes = {c: {q: 8 * len(cs.encode(image, c, q)) for q in range(1, 101)} for c in ("jpeg", "webp")}
    targets = ((4, 16.0), (8, float(sizes["webp"][40] + 3)), (16, float(sizes["jpeg"][60])))
    job = cs.CodecJob(0, "img0", image, targets, ("jpeg", "webp"), (1, 90), keep_pixels=True)
    out = cs.codec_job(job)
    rows = {(r["codec"], r["budget"]): r for r in out["rows"]}
    for codec in ("jpeg", "webp"):
        for budget, target in targets:
            r = rows[(codec, budget)]
            fits = {q: s for q, s in sizes[codec].items() if s <= target}
            if not fits:  # even the smallest file is larger than the budget
                assert not r["reachable"] and r["quality"] is None and np.isnan(r["l1"])
                assert (codec, budget) not in out["pixels"]
                continue
            assert r["reachable"] and r["bits"] == sizes[codec][r["quality"]] <= target
            assert r["bits"] == max(fits.values())  # nothing closer to the budget without exceeding it
            assert r["bpp"] == pytest.approx(r["bits"] / (32 * 32))
            # Metrics re-computed independently from the decoded file.
            with Image.open(io.BytesIO(cs.encode(image, codec, r["quality"]))) as im:
                dec = np.asarray(im.convert("RGB"), dtype=np.float64)
            np.testing.assert_array_equal(out["pixels"][(codec, budget)], dec.astype(np.uint8))
            diff = dec / 255.0 - image.astype(np.float64) / 255.0
            assert r["l1"] == pytest.approx(np.abs(diff).mean(), rel=1e-12)
            assert r["psnr"] == pytest.approx(-10 * np.log10(np.square(diff).mean()), rel=1e-9)
    assert not rows[("jpeg", 4)]["reachable"]  # 16 bits: no JPEG file is that small
    assert rows[("webp", 8)]["reachable"] and rows[("jpeg", 16)]["reachable"]
    assert len(out["curve"]) == 4 and {p["quality"] for p in out["curve"]} == {1, 90}


def test_binary_search_job_never_exceeds_the_budget(images):
    job = cs.CodecJob(0, "i", images[1], ((1, 3000.0), (2, 6000.0)), ("jpeg", "webp"), (), search="binary")
    for r in cs.codec_job(job)["rows"]:
        assert not r["reachable"] or r["bits"] <= r["target_bits"]


class _Dataset:
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images) + 1

    def __getitem__(self, i):
        if i == 1:  # an undecodable item is skipped, as the sweep skips it
            return {"index": i, "id": "broken", "image": None}
        img = self.images[min(i, len(self.images) - 1)]
        return {"index": i, "id": f"im{i}", "image": torch.from_numpy(img).permute(2, 0, 1).contiguous()}


def test_results_do_not_depend_on_worker_count(images):
    targets = {4: 900.0, 8: 2400.0, 16: 6000.0}
    ds = _Dataset(images)
    serial = cs.codec_table(ds, targets, workers=0, curve_qualities=(5, 50))
    parallel = cs.codec_table(ds, targets, workers=2, curve_qualities=(5, 50))
    for a, b in zip(serial[:2], parallel[:2]):
        pd.testing.assert_frame_equal(a, b)
    matched = serial[0]
    assert "broken" not in set(matched["image_id"])
    assert len(matched) == 3 * 2 * 3  # images x codecs x budgets
    assert (matched.loc[matched["reachable"], "bits"] <= matched.loc[matched["reachable"], "target_bits"]).all()


def test_codec_table_rejects_bad_options(images):
    with pytest.raises(AlitEvalError, match="codecs"):
        cs.codec_table(_Dataset(images), {4: 100.0}, codecs=("png",))
    with pytest.raises(AlitEvalError, match="search"):
        cs.codec_table(_Dataset(images), {4: 100.0}, search="random")


def test_metric_rows_fid_only_when_every_image_fits():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(40, 4))
    matched = pd.DataFrame({
        "image_id": ["a", "b", "a", "b"], "index": [0, 1, 0, 1], "codec": "webp", "budget": [8, 8, 16, 16],
        "target_bits": [80.0, 80.0, 160.0, 160.0], "reachable": [True, False, True, True],
        "quality": pd.array([3, None, 9, 12], dtype="Int64"), "bits": pd.array([72, None, 150, 160], dtype="Int64"),
        "bpp": [0.07, np.nan, 0.15, 0.16], "l1": [0.1, np.nan, 0.05, 0.07], "mse": [0.02, np.nan, 0.01, 0.01],
        "psnr": [17.0, np.nan, 20.0, 20.0], "ssim": [0.5, np.nan, 0.7, 0.6]})
    per_image = pd.DataFrame({"image_id": ["a", "a", "b", "b"], "budget": [8, 16, 8, 16], "l1": [0.3, 0.2, 0.4, 0.1],
                              "mse": 0.1, "psnr": 10.0, "ssim": 0.1})
    stats = {}
    for b in (8, 16):
        s = FeatureStats(4)
        s.update(torch.from_numpy(rng.normal(size=(40, 4))))
        stats[("webp", b)] = s
    rows = rd.metric_rows(matched, per_image, {8: 80.0, 16: 160.0}, 1000, dataset="d", preprocess="p", seed=0,
                          fid_ref=FrechetReference(ref.mean(0), np.cov(ref, rowvar=False)), stats=stats,
                          fid_condition={"reference": "originals", "resize": "tf1"})
    got = {(r["metric"], r["budget"], r["condition"]): r for r in rows}
    assert got[("reachable_share", 8, "method=webp")]["value"] == 0.5
    assert got[("l1", 8, "method=webp")]["value"] == 0.1 and got[("l1", 8, "method=webp")]["n"] == 1
    # The tokenizer on the same (reachable) images, beside the codec's partial mean.
    assert got[("l1", 8, "method=tokenizer;subset=webp-reachable")]["value"] == 0.3
    assert ("rfid", 8, "method=webp;reference=originals;resize=tf1") not in got  # one image does not fit
    assert got[("rfid", 16, "method=webp;reference=originals;resize=tf1")]["value"] > 0
    assert got[("l1", 16, "method=webp")]["value"] == pytest.approx(0.06)


@pytest.mark.figures
def test_rate_distortion_command(tiny_ckpt, tmp_path):
    res = CliRunner().invoke(app, [
        "--device", "cpu", "--results-dir", str(tmp_path), "rate-distortion", "--ckpt", str(tiny_ckpt),
        "--data", "demo-scenes", "--limit", "3", "--budgets", "4,16", "--no-fid", "--bits-per-token", "300",
        "--curve-qualities", "1,50", "--run-id", "r"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    run = tmp_path / "rate-distortion" / "r"
    m = read_metrics(run / "metrics.csv")
    cond = m["condition"].map(parse_condition)
    bits = m[(m["metric"] == "bits") & cond.map(lambda c: c.get("method") == "tokenizer")]
    assert dict(zip(bits["budget"], bits["value"])) == {4: 1200.0, 16: 4800.0}
    assert {"jpeg", "webp", "tokenizer"} <= set(cond.map(lambda c: c.get("method")))
    tok_l1 = m[(m["metric"] == "l1") & (m["condition"] == "method=tokenizer")]
    per_image = pd.read_parquet(run / "per_image.parquet")
    assert np.allclose(tok_l1.sort_values("budget")["value"], per_image.groupby("budget")["l1"].mean())
    codecs = pd.read_parquet(run / "codecs.parquet")
    assert len(codecs) == 3 * 2 * 2
    assert (codecs.loc[codecs["reachable"], "bits"] <= codecs.loc[codecs["reachable"], "target_bits"]).all()
    curves = pd.read_csv(run / "codec_curves.csv")
    assert set(curves["quality"]) == {1, 50} and (curves["n"] == 3).all()
    assert (run / "figures" / "rate_distortion.png").is_file()
    meta = json.loads((run / "meta.json").read_text())
    assert meta["extra"]["rate"]["bits_per_token"] == 300.0 and "libwebp" in meta["extra"]["codecs"]
    # Reusing that sweep without an override: the bits come from the recorded tokenizer config
    # (tiny model: 64 codes = 6 bits per token), and nothing is reconstructed again.
    res = CliRunner().invoke(app, [
        "--device", "cpu", "--results-dir", str(tmp_path), "rate-distortion", "--from-run", str(run),
        "--codecs", "webp", "--curve-qualities", "1", "--run-id", "again"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    again = tmp_path / "rate-distortion" / "again"
    m2 = read_metrics(again / "metrics.csv")
    bits2 = m2[(m2["metric"] == "bits") & (m2["condition"] == "method=tokenizer;rate=vq64")]
    assert dict(zip(bits2["budget"], bits2["value"])) == {4: 24.0, 16: 96.0}
    assert json.loads((again / "meta.json").read_text())["extra"]["rollout_calls"] == 0
    assert set(pd.read_parquet(again / "codecs.parquet")["codec"]) == {"webp"}
