"""fid's FLOP table is counted once per architecture and cached (issue 21, friction: minutes after "done")."""

from __future__ import annotations

import pandas as pd
import pytest

from alit_eval.analysis import flops


def test_flops_are_counted_once_per_architecture_and_equal_a_fresh_count(tiny_ckpt, monkeypatch):
    from alit_eval.tokenizers.resolve import load_pretrained

    tok, _ = load_pretrained(tiny_ckpt)
    lines: list[str] = []
    first = flops.cached_compute_table(tok, [4], "cpu", fid=False, say=lines.append)
    assert len(lines) == 2 and "once, then cached" in lines[0]
    fresh = flops.compute_table(tok, [4], "cpu", latency=False, fid=False)

    def no_count(*a, **k):
        raise AssertionError("counted again")

    monkeypatch.setattr(flops, "compute_table", no_count)
    again = flops.cached_compute_table(tok, [4], "cpu", fid=False, say=lines.append)
    assert len(lines) == 2  # nothing to say: no counting
    pd.testing.assert_frame_equal(again[["stage", "budget", "gflops"]], fresh[["stage", "budget", "gflops"]],
                                  check_dtype=False)
    pd.testing.assert_frame_equal(first[["stage", "budget", "gflops"]], again[["stage", "budget", "gflops"]],
                                  check_dtype=False)
    # another budget set is another key (and would be counted)
    with pytest.raises(AssertionError, match="counted again"):
        flops.cached_compute_table(tok, [8], "cpu", fid=False)
