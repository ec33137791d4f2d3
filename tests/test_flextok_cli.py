"""FlexTok through the engine and the CLI: options recorded, batch-size invariance, resume, bad input.

A tiny random FlexTok (32 px) saved in alit-eval's format runs the sweeps; the official fixture file
(released layout, config in its metadata) runs ``alit-eval fid`` end to end.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from alit_eval.analysis.reconstruction import run
from alit_eval.cli.app import main
from alit_eval.engine.config import SweepConfig
from alit_eval.tokenizers.checkpoints import save_tokenizer
from conftest import shared_dir
from test_flextok_model import make_tiny_flextok

FIXTURES = shared_dir() / "fixtures" / "official_flextok"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # oversubscribed threads are much slower on a shared machine
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_flextok(tmp_path_factory):
    return save_tokenizer(make_tiny_flextok(), tmp_path_factory.mktemp("ft") / "tiny_flextok.safetensors")


def _run(ckpt, tmp_path, name, **kw):
    opts = dict(ckpt=str(ckpt), data="demo-scenes", limit=5, batch_size=5, fid=False, budgets=[2, 16],
                options={"steps": 2, "guidance": 3.0})
    run_kw = {k: kw.pop(k) for k in ("on_batch",) if k in kw}
    opts.update(kw)
    return run(SweepConfig(**opts), seed=0, device="cpu", offline=True, results_dir=tmp_path / name,
               progress=False, **run_kw)


def _per_image(r):
    return pd.read_parquet(r.path / "per_image.parquet")


def test_sweep_records_options_and_is_batch_size_invariant(tiny_flextok, tmp_path):
    a, _ = _run(tiny_flextok, tmp_path, "a", batch_size=5)
    b, _ = _run(tiny_flextok, tmp_path, "b", batch_size=2)
    pa, pb = _per_image(a), _per_image(b)
    assert len(pa) == 10 and (pa["image_id"] == pb["image_id"]).all()
    np.testing.assert_allclose(pa["l1"], pb["l1"], rtol=0, atol=1e-5)
    config = json.loads((a.path / "config.json").read_text())
    assert config["options"] == {"steps": 2, "guidance": 3.0, "apg": True, "noise": "seeded"}


def test_interrupted_sweep_resumes_to_identical_numbers(tiny_flextok, tmp_path):
    full, _ = _run(tiny_flextok, tmp_path, "full", batch_size=2)

    class Boom(Exception):
        pass

    seen = []

    def stop(n):
        seen.append(n)
        if len(seen) == 2:
            raise Boom()

    with pytest.raises(Boom):
        _run(tiny_flextok, tmp_path, "cut", batch_size=2, on_batch=stop)
    resumed, _ = _run(tiny_flextok, tmp_path, "cut", batch_size=2)
    assert (full.path / "metrics.csv").read_bytes() == (resumed.path / "metrics.csv").read_bytes()
    pd.testing.assert_frame_equal(_per_image(full), _per_image(resumed))


def _cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def test_cli_fid_on_the_official_hub_folder_end_to_end(tmp_path, capsys):
    hub = FIXTURES / "flextok_tiny" / "hub" / "model.safetensors"
    if not hub.is_file():
        pytest.skip("official FlexTok fixture not found")
    data = tmp_path / "imgs"
    data.mkdir()
    for name in ("img0.png", "img1.png"):
        shutil.copy(FIXTURES / "inputs" / name, data / name)
    base = ["--results-dir", str(tmp_path / "res"), "--device", "cpu", "--offline", "fid", "--ckpt", str(hub.parent),
            "--data", str(data), "--no-fid"]
    code, out, err = _cli(base + ["--budgets", "16", "--steps", "2", "--apg", "false"], capsys)
    assert code == 0, err
    run_dir = next((tmp_path / "res" / "fid").iterdir())
    config = json.loads((run_dir / "config.json").read_text())
    assert config["options"] == {"steps": 2, "guidance": 7.5, "apg": False, "noise": "seeded"}
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert {"l1", "psnr", "ssim"} <= set(metrics["metric"])
    for bad, match in ((["--guidance", "nan"], "--guidance"), (["--guidance", "-1"], "--guidance"),
                       (["--steps", "0"], "--steps"), (["--budgets", "257"], "257")):
        code, out, err = _cli(base + (bad if bad[0] == "--budgets" else ["--budgets", "16", *bad]), capsys)
        lines = [ln for ln in err.strip().splitlines() if ln.startswith("error")]
        assert code == 2 and len(lines) == 1 and match in lines[0], err


def test_cli_compare_flextok_with_another_family(tiny_flextok, tiny_ckpt, tmp_path, capsys):
    args = ["--results-dir", str(tmp_path), "--device", "cpu", "compare", "--ckpt", f"alit={tiny_ckpt}",
            "--ckpt", f"ft={tiny_flextok}", "--data", "demo-scenes", "--limit", "3", "--no-fid", "--budgets", "4,8",
            "--n-boot", "20", "--steps", "2", "--run-id", "c"]
    code, out, err = _cli(args, capsys)
    assert code == 0, err
    folder = tmp_path / "compare" / "c"
    table = pd.read_csv(folder / "compare.csv")
    assert set(table["tokenizer"]) == {"alit", "ft"}
    ft = table[(table["tokenizer"] == "ft") & table["bits_per_image"].notna()]
    assert len(ft) and np.allclose(ft["bits_per_image"], ft["tokens"] * np.log2(12))  # FSQ levels (4, 3)
    options = json.loads((folder / "sweeps" / "ft" / "config.json").read_text())["options"]
    assert options["steps"] == 2 and options["apg"] is True
    assert "options" not in json.loads((folder / "sweeps" / "alit" / "config.json").read_text()) or \
        "steps" not in json.loads((folder / "sweeps" / "alit" / "config.json").read_text())["options"]


def test_attention_viz_uses_the_decoder_attention_definition(tiny_flextok, tmp_path, capsys):
    out = tmp_path / "viz"
    code, _, err = _cli(["--device", "cpu", "attention-viz", "--ckpt", str(tiny_flextok), "--budgets", "8",
                         "--out", str(out)], capsys)
    assert code == 0, err
    z = np.load(next(out.glob("*.npz")))
    assert z["attention_8"].shape == (8, 8, 8)  # k registers x 8x8 latent patch grid (32 px, VAE f2, patch 2)
    assert (z["attention_8"] >= 0).all() and z["attention_8"].sum(axis=0).max() <= 1 + 1e-5
