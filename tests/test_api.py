"""The Python API (`from alit_eval import ...`): same sweep and run folder as `alit-eval fid`, FID between
folders against a naive recomputation, tokenizer loading, and a light `import alit_eval`."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

import alit_eval
from alit_eval.cli.app import app
from alit_eval.errors import AlitEvalError


def test_import_alit_eval_stays_light():
    code = ("import sys, alit_eval; heavy = [m for m in ('torch', 'pandas', 'numpy', 'matplotlib') "
            "if m in sys.modules]; assert not heavy, heavy; assert 'evaluate' in alit_eval.__all__")
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(AttributeError):
        alit_eval.no_such_function  # noqa: B018


def test_evaluate_is_the_fid_command(tiny_ckpt, tmp_path):
    res = alit_eval.evaluate(tiny_ckpt, "demo-scenes", budgets=[16, 4], results_dir=tmp_path, device="cpu",
                             offline=True, limit=4, batch_size=2, fid=False)
    assert res.run_dir.parent == tmp_path / "fid" and (res.run_dir / "meta.json").is_file()
    assert list(res.table.index) == [4, 16] and "l1" in res.table.columns
    assert len(res.per_image) == 4 * 2
    # the CLI with the same options lands in the same folder and reads back the same numbers
    cli = CliRunner().invoke(app, ["--results-dir", str(tmp_path), "--device", "cpu", "--offline", "fid", "--ckpt",
                                   str(tiny_ckpt), "--budgets", "4,16", "--limit", "4", "--batch-size", "2",
                                   "--no-fid", "--no-compute"])
    assert cli.exit_code == 0, cli.output
    assert [p.name for p in (tmp_path / "fid").iterdir()] == [res.run_dir.name]
    pd.testing.assert_frame_equal(res.per_image, pd.read_parquet(res.run_dir / "per_image.parquet"))
    with pytest.raises(AlitEvalError, match="unknown option"):
        alit_eval.evaluate(tiny_ckpt, results_dir=tmp_path, no_such_option=1)


def test_evaluate_reads_a_budget_string_whole(tiny_ckpt, tmp_path):
    # Issue 26: budgets="16" was iterated per character (budgets 1 and 6); it is the CLI's syntax now.
    kw = dict(results_dir=tmp_path, device="cpu", offline=True, limit=2, batch_size=2, fid=False)
    res = alit_eval.evaluate(tiny_ckpt, "demo-scenes", budgets="16", **kw)
    assert list(res.table.index) == [16] and set(res.per_image["budget"]) == {16}
    ranged = alit_eval.evaluate(tiny_ckpt, "demo-scenes", budgets="4-16:12", **kw)
    assert list(ranged.table.index) == [4, 16]
    one = alit_eval.evaluate(tiny_ckpt, "demo-scenes", budgets=16, **kw)
    assert one.run_dir == res.run_dir  # the same run as the string, so it is read back, not redone
    for bad, fragment in [("1-1000000000", "is above 65536"), ("16,abc", "'abc' is not a positive whole number"),
                          ([16.5], "must be positive whole numbers"), ([True], "must be positive whole numbers")]:
        with pytest.raises(AlitEvalError, match=re.escape(fragment)) as err:
            alit_eval.evaluate(tiny_ckpt, "demo-scenes", budgets=bad, **kw)
        assert "\n" not in str(err.value)
    assert sorted(p.name for p in (tmp_path / "fid").iterdir()) == sorted({res.run_dir.name, ranged.run_dir.name})


def test_load_tokenizer_by_name_and_file(tiny_ckpt):
    tok = alit_eval.load_tokenizer(tiny_ckpt)
    assert tuple(tok.budgets) == (4, 8, 12, 16) and tok.image_size == 32
    assert tok.load_info["sha256"] and tok.load_info["name"] == "tiny"
    demo = alit_eval.load_tokenizer("demo", offline=True)
    assert max(demo.budgets) == 64


@pytest.mark.filterwarnings("ignore:Matrix is singular")  # 5 images: rank-deficient covariances, by design
def test_fid_between_matches_a_naive_recomputation(tmp_path):
    """Same Inception features, then mean/cov/Frechet by hand in float64.

    With n images each covariance is A^T A / (n - 1) for the centred features A (n x 2048), so the trace
    of sqrt(sig_a sig_b) is the nuclear norm of A_a A_b^T / (n - 1): a closed form on an n x n matrix,
    independent of the eigendecomposition the implementation uses (and of scipy's slow 2048^2 sqrtm).
    """
    import torch

    from alit_eval.metrics.inception import InceptionFeatures

    rng = np.random.default_rng(0)
    sets = {}
    for name, shift in (("a", 0), ("b", 60)):
        folder = tmp_path / name
        (folder / "sub").mkdir(parents=True)
        arrays = [np.clip(rng.integers(0, 196, (40, 40, 3)) + shift, 0, 255).astype(np.uint8) for _ in range(3)]
        for i, a in enumerate(arrays):
            Image.fromarray(a).save(folder / ("sub" if i % 2 else "") / f"{i}.png")
        sets[name] = arrays
    got = alit_eval.fid_between(tmp_path / "a", tmp_path / "b", device="cpu", offline=True)
    net = InceptionFeatures(None, "tf1", "cpu", offline=True)
    feats = [net(torch.from_numpy(np.stack(sets[k])).permute(0, 3, 1, 2).contiguous()).double().numpy()
             for k in ("a", "b")]
    mu = [f.mean(0) for f in feats]
    centred = [f - m for f, m in zip(feats, mu)]
    n = len(feats[0])
    trace_sig = [float((c ** 2).sum()) / (n - 1) for c in centred]  # trace of A^T A / (n - 1)
    trace_covmean = float(np.linalg.svd(centred[0] @ centred[1].T, compute_uv=False).sum()) / (n - 1)
    naive = float(((mu[0] - mu[1]) ** 2).sum() + trace_sig[0] + trace_sig[1] - 2 * trace_covmean)
    assert got == pytest.approx(naive, rel=1e-6)
    same = alit_eval.fid_between(tmp_path / "a", tmp_path / "a", device="cpu", offline=True)
    assert same == pytest.approx(0, abs=1e-9)
    with pytest.raises(AlitEvalError, match="not a folder"):
        alit_eval.fid_between(tmp_path / "nowhere", tmp_path / "a")
