"""Hostile KARL and One-D-Piece files and option values through the real CLI (issue 26, the parts that
belong to the shared loading pipeline, and issue 22's "every family goes through the same bounds").

Each file is made here from a tiny random model of the family: safetensors config edits, an official
``.pth`` with an ``args`` namespace, edited tensors. Every case must give exit code 2, exactly one
``error:`` line and no traceback, quickly (a SIGALRM turns a hang into a failure: a header claiming
depth 10^6 used to build a million layers).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import time
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from alit_eval.cli.app import main
from alit_eval.tokenizers.base2d.config import Base2DConfig
from alit_eval.tokenizers.checkpoints import save_tokenizer

ALARM_S = 60


def _tiny_karl(path: Path) -> Path:
    from alit_eval.tokenizers.karl.config import KarlConfig
    from alit_eval.tokenizers.karl.model import KarlTokenizer

    torch.manual_seed(0)
    base = Base2DConfig(kind="vqgan", ch=32, ch_mult=(1, 1, 1, 1), z_channels=32, embed_dim=32, n_embed=64)
    cfg = KarlConfig(width=64, depth=1, heads=2, image_size=32, patch_size=8, pos_grid=8, max_tokens=24,
                     codebook_size=64, halting_hidden=16, default_budgets=(4, 8), base=base)
    return save_tokenizer(KarlTokenizer(cfg), path, {"family": "karl"})


def _tiny_odp(path: Path) -> Path:
    from alit_eval.tokenizers.one_d_piece.config import OneDPieceConfig
    from alit_eval.tokenizers.one_d_piece.model import OneDPieceTokenizer

    torch.manual_seed(0)
    cfg = OneDPieceConfig(width=32, depth=1, heads=2, num_latent_tokens=8, image_size=32, patch_size=8,
                          codebook_size=16, pixel_hidden=32, pixel_channel_mult=(1, 1, 2, 2), pixel_z_channels=8,
                          pixel_codebook_size=16)
    return save_tokenizer(OneDPieceTokenizer(cfg), path, {"family": "one_d_piece"})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, tuple[dict, dict, Path]]:
    out = {}
    tmp = tmp_path_factory.mktemp("hostile_families")
    for name, make in (("karl", _tiny_karl), ("odp", _tiny_odp)):
        path = make(tmp / f"{name}.safetensors")
        with safe_open(str(path), framework="pt") as f:
            out[name] = ({k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata()), path)
    return out


def _run(args: list[str], capsys) -> tuple[int, str]:
    def timeout(signum, frame):
        raise TimeoutError(f"no answer within {ALARM_S} s")

    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(ALARM_S)
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    out = capsys.readouterr()
    return exit_info.value.code, out.out + out.err


def _one_error(code: int, out: str) -> str:
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1, out[-3000:]
    assert "Traceback" not in out and "╭" not in out, out[-3000:]
    return errors[0]


# -- makers -------------------------------------------------------------------------------------------


def _config(text_edit: Callable[[str], str] | None = None, **edits) -> Callable:
    def make(tmp: Path, sd: dict, meta: dict) -> Path:
        cfg = json.loads(meta["config"])
        for dotted, value in edits.items():
            target = cfg
            *parents, leaf = dotted.split("__")
            for p in parents:
                target = target[p]
            target[leaf] = value
        text = json.dumps(cfg)
        if text_edit is not None:
            text = text_edit(text)
        save_file(sd, str(tmp / "m.safetensors"), metadata={**meta, "config": text})
        return tmp / "m.safetensors"

    return make


def _tensors(edit: Callable[[dict], None]) -> Callable:
    def make(tmp: Path, sd: dict, meta: dict) -> Path:
        sd = {k: v.clone() for k, v in sd.items()}
        edit(sd)
        save_file(sd, str(tmp / "m.safetensors"), metadata=meta)
        return tmp / "m.safetensors"

    return make


def _official(**args) -> Callable:
    def make(tmp: Path, sd: dict, meta: dict) -> Path:
        torch.save({"ema": sd, "args": argparse.Namespace(**args), "epoch": 1}, tmp / "m.pth")
        return tmp / "m.pth"

    return make


def _set(key: str, value: torch.Tensor) -> Callable[[dict], None]:
    def edit(sd: dict) -> None:
        sd[key] = value

    return edit


def _nan(key: str, value: float) -> Callable[[dict], None]:
    def edit(sd: dict) -> None:
        sd[key] = sd[key].clone()
        sd[key].view(-1)[0] = value

    return edit


HUGE = "1" * 5000  # a 5,000-digit integer: past Python's int/str conversion limit

CASES = {
    # family, maker, fragment of the one error line
    "karl-depth-1e6": ("karl", _config(depth=10 ** 6), r"config field depth = 1000000 is out of range"),
    "odp-depth-1e6": ("odp", _config(depth=10 ** 6), r"config field depth = 1000000 is out of range"),
    "karl-width-1e9": ("karl", _config(width=10 ** 9), r"config field width = 1000000000 is out of range"),
    "odp-width-1e9": ("odp", _config(width=10 ** 9), r"config field width = 1000000000 is out of range"),
    "karl-heads-0": ("karl", _config(heads=0), r"config field heads = 0 is out of range"),
    "odp-heads-0": ("odp", _config(heads=0), r"config field heads = 0 is out of range"),
    "karl-heads-neg": ("karl", _config(heads=-4), r"config field heads = -4 is out of range"),
    "odp-heads-neg": ("odp", _config(heads=-4), r"config field heads = -4 is out of range"),
    "karl-unknown-key": ("karl", _config(bogus=1), r"unknown config field bogus"),
    "odp-unknown-key": ("odp", _config(bogus=1), r"unknown config field bogus"),
    "karl-huge-int": ("karl", _config(lambda t: t.replace('"depth": 1', f'"depth": {HUGE}')), r"config metadata"),
    "odp-huge-int": ("odp", _config(lambda t: t.replace('"depth": 1', f'"depth": {HUGE}')), r"config metadata"),
    "karl-int-weights": ("karl", _tensors(_set("latent_tokens", torch.zeros(24, 64, dtype=torch.int64))),
                         r"tensor latent_tokens has dtype int64 where KARL stores floating-point weights"),
    "odp-int-weights": ("odp", _tensors(_set("latent_tokens", torch.zeros(8, 32, dtype=torch.int32))),
                        r"tensor latent_tokens has dtype int32 where One-D-Piece/TiTok stores floating-point"),
    "karl-nan-decoder": ("karl", _tensors(_nan("decoder_embed.weight", float("nan"))),
                         r"tensor decoder_embed.weight holds 1 NaN and 0 infinite values"),
    "odp-inf-decoder": ("odp", _tensors(_nan("decoder.decoder_embed.weight", float("inf"))),
                        r"tensor decoder.decoder_embed.weight holds 0 NaN and 1 infinite values"),
    "karl-args-heads-4.9": ("karl", _official(encoder_num_heads=4.9), r"args.encoder_num_heads = 4.9 must be a whole"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_family_file_is_one_error_line(case, tiny, tmp_path, capsys):
    family, make, fragment = CASES[case]
    sd, meta, _ = tiny[family]
    path = make(tmp_path, sd, meta)
    code, out = _run(["--results-dir", str(tmp_path / "R"), "--device", "cpu", "fid", "--ckpt", str(path),
                      "--data", "demo-scenes", "--limit", "2", "--no-fid", "--no-compute", "--overwrite"], capsys)
    line = _one_error(code, out)
    assert re.search(fragment, line), line
    assert not (tmp_path / "R").exists() or not any((tmp_path / "R").rglob("per_image.parquet"))


@pytest.mark.parametrize("family", ["karl", "odp"])
def test_depth_1e6_header_is_refused_in_well_under_a_second(family, tiny, tmp_path):
    from alit_eval.errors import ConfigError
    from alit_eval.tokenizers.family_loading import load_any

    sd, meta, _ = tiny[family]
    path = _config(depth=10 ** 6)(tmp_path, sd, meta)
    load_any(tiny[family][2])  # warm: imports and the first read are not what is timed
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="depth = 1000000 is out of range"):
        load_any(path)
    assert time.perf_counter() - started < 1.0  # was: no answer after minutes, memory growing


@pytest.mark.parametrize("value, fragment", [
    ("nan", "--epsilon nan (KARL) must be a finite number"),
    ("inf", "must be a finite number"),
    ("-1", "is out of range (allowed 0..1)"),
    ("1e300", "is out of range (allowed 0..1)"),
])
def test_epsilon_out_of_its_declared_bounds_is_refused(value, fragment, tiny, tmp_path, capsys):
    _, _, path = tiny["karl"]
    code, out = _run(["--results-dir", str(tmp_path / "R"), "--device", "cpu", "fid", "--ckpt", str(path),
                      "--data", "demo-scenes", "--limit", "2", "--budgets", "8", "--no-fid", "--no-compute",
                      f"--epsilon={value}"], capsys)
    line = _one_error(code, out)
    assert fragment.replace(" (KARL)", "") in line.replace(" (KARL)", ""), line
    assert not (tmp_path / "R").exists()  # refused before anything is loaded or written


def test_epsilon_inside_its_bounds_maps_to_a_bin_as_documented(tiny):
    from alit_eval.tokenizers.family_loading import load_any
    from alit_eval.tokenizers.karl.config import EPS_BINS

    _, _, path = tiny["karl"]
    model = load_any(path)
    bins = model.epsilon_bins(torch.tensor([0.0, 0.03, 0.39, 1.0]), 4).tolist()
    assert bins == [0, EPS_BINS.index(0.03), len(EPS_BINS) - 1, len(EPS_BINS) - 1]  # above 0.38: the last bin
    with pytest.raises(ValueError, match="finite"):
        model.epsilon_bins(float("nan"), 1)


def test_a_family_refuses_an_option_value_only_other_families_accept(tiny, tmp_path, capsys):
    _, _, path = tiny["karl"]  # official-reseeded is an ALIT policy; KARL's declaration does not list it
    code, out = _run(["--results-dir", str(tmp_path / "R"), "--device", "cpu", "fid", "--ckpt", str(path),
                      "--data", "demo-scenes", "--limit", "2", "--budgets", "8", "--no-fid", "--no-compute",
                      "--halting", "official-reseeded"], capsys)
    line = _one_error(code, out)
    assert "--halting 'official-reseeded' (KARL) is not known; use one of: official, seeded, off" in line, line


def test_allocate_thresholds_of_an_option_criterion_obey_its_bounds(tiny, tmp_path, capsys):
    _, _, path = tiny["karl"]  # --criterion epsilon: each threshold is a value of KARL's epsilon
    code, out = _run(["--results-dir", str(tmp_path / "R"), "--device", "cpu", "allocate", "--ckpt", str(path),
                      "--data", "demo-scenes", "--limit", "2", "--budgets", "8", "--no-fid", "--criterion", "epsilon",
                      "--thresholds", "0.05,5"], capsys)
    line = _one_error(code, out)
    assert "--epsilon 5.0" in line and "out of range (allowed 0..1)" in line, line
