"""Compute accounting: FLOP counts against closed forms, cost structure invariants, `alit-eval profile`."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from alit_eval.analysis.flops import compute_table, count_flops, param_table
from alit_eval.cli.app import app
from alit_eval.results.rundir import METRICS_FILE
from alit_eval.results.report_runs import read_metrics
from alit_eval.results.schema import validate
from alit_eval.tokenizers.common.blocks import ResidualAttentionBlock


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def block_flops(batch: int, length: int, width: int, mlp_ratio: int = 4) -> int:
    """Closed form: 2 FLOPs per weight per token for the linear layers (QKV + out = 4 w^2, MLP =
    2 r w^2), plus the two attention matmuls Q K^T and A V (2 * 2 * L^2 * w per image)."""
    linear_params = 4 * width * width + 2 * mlp_ratio * width * width
    return batch * (2 * linear_params * length + 2 * 2 * length * length * width)


@pytest.mark.parametrize("fastpath", [True, False])
def test_block_flops_match_closed_form(fastpath):
    # The fused MHA fast path and the SDPA path are both unknown to torch's counter by default.
    block = ResidualAttentionBlock(32, 2).eval()
    x = torch.randn(2, 10, 32)
    old = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(fastpath)
    try:
        flops = count_flops(lambda: block(x))
    finally:
        torch.backends.mha.set_fastpath_enabled(old)
    assert flops["total"] == block_flops(2, 10, 32)


def test_block_flops_with_attention_weights():
    # need_weights=True takes the explicit bmm path, which the counter knows natively.
    block = ResidualAttentionBlock(48, 4).eval()
    x = torch.randn(1, 7, 48)
    assert count_flops(lambda: block(x, need_weights=True))["total"] == block_flops(1, 7, 48)


def test_component_attribution_nested_and_other():
    lin1, lin2 = torch.nn.Linear(8, 16, bias=False), torch.nn.Linear(16, 4, bias=False)
    seq = torch.nn.Sequential(lin1, torch.nn.ReLU())
    x = torch.randn(3, 8)
    w = torch.randn(4, 5)

    def fn():
        h = lin2(seq(x))
        return h @ w  # outside every hooked module: "other"

    flops = count_flops(fn, {"first": [seq], "second": [lin2]})
    assert flops["first"] == 2 * 3 * 8 * 16  # counted once although seq and lin1 are both hooked
    assert flops["second"] == 2 * 3 * 16 * 4
    assert flops["other"] == 2 * 3 * 4 * 5
    assert flops["total"] == flops["first"] + flops["second"] + flops["other"]


@pytest.fixture(scope="module")
def tiny(tiny_ckpt):
    from alit_eval.tokenizers.resolve import load_pretrained

    tok, _ = load_pretrained(tiny_ckpt)
    return tok


@pytest.fixture(scope="module")
def table(tiny):
    torch.set_num_threads(1)
    return compute_table(tiny, [4, 8, 16], "cpu", repeats=2, warmup=0, fid=False)


def test_cost_structure(table, tiny):
    roll = table[table["stage"] == "rollout"].set_index("budget")
    dec = table[table["stage"] == "pixel_decode"].set_index("budget")
    assert list(roll.index) == [4, 8, 16] and list(dec.index) == [4, 8, 16]
    # The recurrence grows with the budget; the base encoder is paid once whatever the budget.
    assert roll["gflops"].is_monotonic_increasing and roll["gflops"].diff().dropna().gt(0).all()
    assert roll["gflops_base_encoder"].nunique() == 1 and roll["gflops_base_encoder"].iloc[0] > 0
    # Decoding one budget costs the same at every budget (the base decoder reads a fixed grid).
    assert dec["gflops"].nunique() == 1 and dec["gflops_base_decoder"].iloc[0] > 0
    # Encoder transformer: one block per iteration over 1 + grid^2 + tokens-so-far positions.
    cfg = tiny.cfg
    for b in (4, 8, 16):
        iters = b // cfg.tokens_per_iter
        expected = sum(cfg.depth * block_flops(1, 1 + cfg.num_2d + cfg.tokens_per_iter * (t + 1), cfg.width)
                       for t in range(iters))
        assert roll.loc[b, "gflops_encoder_transformer"] * 1e9 == pytest.approx(expected, rel=1e-12)
    # One sweep = one rollout to the largest budget + one pixel decode per budget (VQGAN halting
    # decodes latents at every iteration anyway).
    sweep = table[table["stage"] == "sweep"].iloc[0]
    assert sweep["gflops"] == pytest.approx(roll.loc[16, "gflops"] + dec["gflops"].sum(), rel=1e-12)
    assert pd.isna(sweep["budget"])
    parts = [c for c in table.columns if c.startswith("gflops_")]
    assert (table[parts].sum(axis=1) - table["gflops"]).abs().max() < 1e-12
    assert (table["latency_ms"] > 0).all() and (table["latency_ms_min"] <= table["latency_ms"]).all()
    assert set(table["device"]) == {"cpu"} and set(table["precision"]) == {"fp32"}


def test_flops_per_image_do_not_depend_on_batch(tiny):
    one = compute_table(tiny, [8], "cpu", latency=False, fid=False, batch_size=1)
    two = compute_table(tiny, [8], "cpu", latency=False, fid=False, batch_size=2)
    pd.testing.assert_series_equal(one["gflops"], two["gflops"])
    assert one["latency_ms"].isna().all()


def test_param_table_partitions_all_parameters(tiny):
    params = param_table(tiny).set_index("component")
    total = sum(p.numel() for p in tiny.parameters())
    assert params.loc["total", "params"] == total
    assert params.drop(index="total")["params"].sum() == total
    assert params.loc["encoder_transformer", "params"] == sum(p.numel() for p in tiny.encoder.parameters())
    base = tiny.base_tokenizer.vqgan
    assert params.loc["base_decoder", "params"] == sum(p.numel() for p in base.decoder.parameters())
    assert params.loc["base_encoder", "params"] == sum(p.numel() for p in base.encoder.parameters())


@pytest.mark.figures
def test_profile_command(tiny_ckpt, tmp_path):
    res = CliRunner().invoke(app, ["--device", "cpu", "--results-dir", str(tmp_path), "profile", "--ckpt",
                                   str(tiny_ckpt), "--budgets", "4,16", "--repeats", "1", "--warmup", "0",
                                   "--no-fid", "--run-id", "p"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    run = tmp_path / "profile" / "p"
    assert "compute per image" in res.output and "parameters" in res.output
    compute = pd.read_csv(run / "compute.csv")
    assert list(compute["stage"]) == ["rollout", "pixel_decode", "rollout", "pixel_decode", "sweep"]
    metrics = read_metrics(run / METRICS_FILE)
    validate(metrics, "metrics")
    assert {"gflops", "latency_ms", "params"} <= set(metrics["metric"])
    assert (run / "figures" / "cost_structure.png").is_file() and (run / "params.csv").is_file()
    meta = json.loads((run / "meta.json").read_text())
    assert meta["device"] == "cpu" and meta["extra"]["precision"] == "fp32"
    assert meta["config"]["budgets"] == [4, 16]


def test_profile_rejects_unknown_precision(tiny_ckpt, tmp_path):
    res = CliRunner().invoke(app, ["--results-dir", str(tmp_path), "profile", "--ckpt", str(tiny_ckpt),
                                   "--precision", "fp8"])
    assert res.exit_code != 0 and "precision" in str(res.exception or res.output)


class _Plain:
    """A tokenizer without ALIT's structure: rollout costs b matmuls, decoding one more per budget."""

    budgets = (1, 2, 3)
    image_size = 8

    def __init__(self):
        self.w = torch.randn(8, 8)

    def rollout(self, images, budgets, *, decode=True, generator=None):
        x = images[:, 0]
        for _ in range(max(budgets)):
            x = x @ self.w
        if decode:
            for _ in budgets:
                x @ self.w
        return {b: None for b in budgets}


def test_other_tokenizers_get_totals_and_decode_by_difference():
    table = compute_table(_Plain(), [1, 3], "cpu", repeats=1, warmup=0, fid=False, batch_size=2)
    one_mm = 2 * 8 * 8 * 8 / 1e9  # per image: [8, 8] @ [8, 8]
    roll = table[table["stage"] == "rollout"].set_index("budget")["gflops"]
    dec = table[table["stage"] == "pixel_decode"].set_index("budget")["gflops"]
    assert roll[1] == pytest.approx(one_mm) and roll[3] == pytest.approx(3 * one_mm)
    assert dec[1] == pytest.approx(one_mm) and dec[3] == pytest.approx(one_mm)
    assert table["gflops_encoder_transformer"].isna().all()
    assert (table["gflops_other"] == table["gflops"]).all()
