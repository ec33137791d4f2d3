"""`torchrun` with two CPU processes (gloo) gives exactly the single-process results."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest


def _args(tmp_path, ckpt, run_id) -> list[str]:
    return ["--device", "cpu", "--results-dir", str(tmp_path), "fid", "--ckpt", str(ckpt), "--limit", "5",
            "--batch-size", "2", "--budgets", "4,16", "--run-id", run_id, "--halting", "seeded", "--no-compute"]


@pytest.mark.slow
def test_two_process_run_equals_single_process(tiny_ckpt, tmp_path, one_torch_thread):
    from alit_eval.cli.app import main

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with pytest.raises(SystemExit) as done:  # the single-process run in this process (one thread, like each rank)
        main(_args(tmp_path, tiny_ckpt, "single"))
    assert done.value.code == 0
    single = tmp_path / "fid" / "single"
    with socket.socket() as sock:  # a free port for the rendezvous (torchrun's port 0 does not work here)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
                           "127.0.0.1", "--master-port", str(port), "-m", "alit_eval", *_args(tmp_path, tiny_ckpt, "multi")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    multi = tmp_path / "fid" / "multi"
    a, b = pd.read_parquet(single / "per_image.parquet"), pd.read_parquet(multi / "per_image.parquet")
    assert len(a) == len(b) == 5 * 2 and a["image_id"].nunique() == 5
    pd.testing.assert_frame_equal(a, b)
    ma, mb = pd.read_csv(single / "metrics.csv"), pd.read_csv(multi / "metrics.csv")
    fa, fb = ma[ma.metric == "rfid"]["value"].to_numpy(), mb[mb.metric == "rfid"]["value"].to_numpy()
    np.testing.assert_allclose(fa, fb, rtol=1e-9, atol=0)
    # both ranks wrote shards: batches of 2 dealt round-robin -> shards 0,2,4 from 2 processes
    assert sorted(p.name for p in (multi / "shards").glob("*.npz")) == [f"{i:09d}.npz" for i in (0, 2, 4)]
