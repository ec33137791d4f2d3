"""GPU fast-path pieces that can be checked on CPU: OOM back-off, batch splitting, precision."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from alit_eval.analysis.reconstruction import run
from alit_eval.engine import fastpath
from alit_eval.engine.config import SweepConfig


def _batch(n_good: int, failed_pos: list[int]):
    good = [i for i in range(n_good + len(failed_pos)) if i not in failed_pos]
    return {"images": torch.arange(len(good)).view(-1, 1), "ids": [f"im{i}" for i in good], "indices": good,
            "labels": [None] * len(good), "failed": [(f"im{p}", "bad") for p in failed_pos],
            "positions": list(range(n_good + len(failed_pos)))}


def _fake_process(limit):
    calls = []

    def fn(part):
        calls.append(len(part["ids"]))
        if len(part["ids"]) > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return {"index": np.asarray(part["indices"], np.int64),
                "failed_index": np.asarray([p for p in part["positions"] if p not in part["indices"]], np.int64),
                "l1": part["images"].numpy().astype(float)}
    return fn, calls


def test_backoff_splits_until_it_fits_and_loses_nothing():
    fn, calls = _fake_process(limit=3)
    proc = fastpath.BackoffProcessor(fn)
    out = proc(_batch(10, failed_pos=[4]))
    assert out["index"].tolist() == [0, 1, 2, 3, 5, 6, 7, 8, 9, 10]
    assert out["failed_index"].tolist() == [4]
    assert out["l1"].ravel().tolist() == list(range(10))
    assert proc.limit == 2  # 10 -> 5 -> 2
    calls.clear()
    proc(_batch(4, failed_pos=[]))  # later batches start at the size that fitted
    assert calls == [2, 2]


def test_backoff_reraises_other_errors():
    def boom(part):
        raise ValueError("not memory")

    with pytest.raises(ValueError):
        fastpath.BackoffProcessor(boom)(_batch(4, []))


def test_auto_batch_size_and_precision_names():
    assert fastpath.auto_batch_size(0, torch.device("cpu")) == 16
    assert fastpath.auto_batch_size(7, torch.device("cpu")) == 7
    with pytest.raises(ValueError):
        with fastpath.precision("fp16", torch.device("cpu")):
            pass


def test_bf16_is_close_to_fp32_and_labelled(tiny_ckpt, tmp_path):
    kw = dict(ckpt=str(tiny_ckpt), data="demo-scenes", limit=4, batch_size=4, fid=False, budgets=[16])
    a, _ = run(SweepConfig(**kw), seed=0, device="cpu", offline=True, results_dir=tmp_path / "a", progress=False)
    b, _ = run(SweepConfig(precision="bf16", **kw), seed=0, device="cpu", offline=True,
               results_dir=tmp_path / "b", progress=False)
    pa, pb = pd.read_parquet(a.path / "per_image.parquet"), pd.read_parquet(b.path / "per_image.parquet")
    np.testing.assert_allclose(pa["l1"], pb["l1"], atol=0.02)
    import json

    meta = json.loads((b.path / "meta.json").read_text())
    assert meta["extra"]["precision"] == "bf16" and meta["extra"]["approximate_precision"] is True
