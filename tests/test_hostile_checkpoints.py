"""Hostile and damaged checkpoints through the real CLI (issue 17, item 3 and the one-line cases).

Each case is made here from the tiny test model: safetensors metadata edits, official-layout ``.pth``
files with an ``args`` namespace, edited tensors, zip bombs and files that are no checkpoint at all.
Every one must give exit code 2, exactly one ``error:`` line (escaped, bounded) and no traceback, and
must do so quickly: a SIGALRM turns a hang (absurd depths used to allocate for minutes) into a failure.
"""

from __future__ import annotations

import argparse
import io
import json
import signal
import zipfile
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from alit_eval.cli.app import main
from conftest import make_tiny_alit

ALARM_S = 60  # generous: a refusal takes well under a second; the old code hung for minutes


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = make_tiny_alit(tmp_path_factory.mktemp("hostile") / "tiny.safetensors")
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())


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


# -- makers: each writes one hostile file and returns its path -------------------------------------------


def _with_config(**edits) -> Callable:
    def make(tmp: Path, sd: dict, meta: dict) -> Path:
        cfg = json.loads(meta["config"])
        for dotted, value in edits.items():
            target = cfg
            *parents, leaf = dotted.split("__")
            for p in parents:
                target = target[p]
            target[leaf] = value
        save_file(sd, str(tmp / "m.safetensors"), metadata={**meta, "config": json.dumps(cfg)})
        return tmp / "m.safetensors"

    return make


def _raw_config(text: str) -> Callable:
    def make(tmp: Path, sd: dict, meta: dict) -> Path:
        save_file(sd, str(tmp / "m.safetensors"), metadata={**meta, "config": text})
        return tmp / "m.safetensors"

    return make


def _with_tensors(edit: Callable[[dict], None]) -> Callable:
    def make(tmp: Path, sd: dict, meta: dict) -> Path:
        sd = {k: v.clone() for k, v in sd.items()}
        edit(sd)
        save_file(sd, str(tmp / "m.safetensors"), metadata=meta)
        return tmp / "m.safetensors"

    return make


def _official(**args) -> Callable:
    """The tiny model in the official ``.pth`` layout (``ema`` + ``args`` namespace)."""

    def make(tmp: Path, sd: dict, meta: dict) -> Path:
        torch.save({"ema": sd, "args": argparse.Namespace(**args), "epoch": 1}, tmp / "m.pth")
        return tmp / "m.pth"

    return make


def _bytes(data: bytes, name: str = "m.pth") -> Callable:
    def make(tmp: Path, sd: dict, meta: dict) -> Path:
        (tmp / name).write_bytes(data)
        return tmp / name

    return make


def _zip_bomb(tmp: Path, sd: dict, meta: dict) -> Path:
    """A real torch.save archive re-compressed, plus 64 MB of zeros that deflate to ~60 KB."""
    buf = io.BytesIO()
    torch.save({"ema": {"latent_tokens": torch.zeros(4, 64)}}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    root = src.namelist()[0].split("/")[0]
    with zipfile.ZipFile(tmp / "bomb.pth", "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            out.writestr(info.filename, src.read(info.filename))
        out.writestr(f"{root}/data/1", bytes(64 << 20))
    assert (tmp / "bomb.pth").stat().st_size < 1 << 20
    return tmp / "bomb.pth"


def _zip_without_pickle(tmp: Path, sd: dict, meta: dict) -> Path:
    with zipfile.ZipFile(tmp / "m.pth", "w") as out:
        out.writestr("weights/readme.txt", "hello")
    return tmp / "m.pth"


def _set(key: str, value: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[dict], None]:
    def edit(sd: dict) -> None:
        sd[key] = value(sd[key])

    return edit


def _poison(key: str, value: float) -> Callable[[dict], None]:
    def edit(sd: dict) -> None:
        sd[key].view(-1)[3] = value

    return edit


def _add_key(name: str) -> Callable[[dict], None]:
    def edit(sd: dict) -> None:
        sd[name] = torch.zeros(1)

    return edit


ESC_KEY = "\x1b[2J\x1b[Hall good\x07"
HEADS_OK = dict(encoder_num_heads=2, decoder_num_heads=2, norm_groups=32)

CASES = {
    # name: (maker, expected regex in the error line)
    "depth-1e5": (_with_config(depth=100000), r"config field depth = 100000 is out of range \(allowed 1\.\.128\)"),
    "dec_depth-1e6": (_with_config(dec_depth=1000000), r"dec_depth = 1000000 is out of range \(allowed 1\.\.128\)"),
    "num_res_blocks-1e5": (_with_config(base__num_res_blocks=100000),
                           r"base\.num_res_blocks = 100000 is out of range \(allowed 1\.\.16\)"),
    "heads-0": (_with_config(heads=0), r"config field heads = 0 is out of range \(allowed 1\.\.256\)"),
    "heads-neg4": (_with_config(heads=-4), r"heads = -4 is out of range"),
    "patch-0": (_with_config(patch_size=0), r"patch_size = 0 is out of range \(allowed 1\.\.256\)"),
    "width-1e9": (_with_config(width=10 ** 9), r"width = 1000000000 is out of range \(allowed 8\.\.16384\)"),
    "mlp-ratio-negative": (_with_config(mlp_ratio=-4), r"mlp_ratio = -4 is out of range"),
    "threshold-string": (_with_config(halting_threshold="0.55"), r"halting_threshold = '0\.55' must be a number"),
    "heads-float": (_with_config(heads=2.5), r"heads = 2\.5 must be a whole number"),
    "quantize-string": (_with_config(quantize="yes"), r"quantize = 'yes' must be true or false"),
    "unknown-field": (_with_config(evil_field=1), r"unknown config field evil_field"),
    "depth-disagrees-with-tensors": (_with_config(depth=3), r"depth = 3 does not match the weights"),
    "base-ch-disagrees-with-tensors": (_with_config(base__ch=64), r"base\.ch = 64 does not match the weights"),
    "invalid-json": (_raw_config("{not json"), r"config metadata .* is not valid JSON"),
    "200k-deep-json": (_raw_config("[" * 200_000 + "]" * 200_000), r"nested too deeply"),
    "5000-digit-number": (_raw_config('{"depth": ' + "7" * 5000 + "}"),
                          r"config metadata .* is not valid JSON|depth = a 5000-digit number is out of range"),
    "config-not-object": (_raw_config("[1, 2]"), r"config metadata is list, not a JSON object"),
    "int-tensor": (_with_tensors(_set("latent_tokens", lambda t: t.long())),
                   r"tensor latent_tokens has dtype int64 where ALIT stores floating-point weights"),
    "bool-tensor": (_with_tensors(_set("decoder.ln_post.weight", lambda t: t > 0)),
                    r"tensor decoder\.ln_post\.weight has dtype bool"),
    "nan-weight": (_with_tensors(_poison("decoder.ffn.0.weight", float("nan"))),
                   r"tensor decoder\.ffn\.0\.weight holds 1 NaN and 0 infinite values"),
    "inf-weight": (_with_tensors(_poison("encoder.transformer.0.mlp.c_fc.weight", float("inf"))),
                   r"tensor encoder\.transformer\.0\.mlp\.c_fc\.weight holds 0 NaN and 1 infinite values"),
    "escape-codes-in-key": (_with_tensors(_add_key(ESC_KEY)), r"1 unexpected: \\x1b\[2J\\x1b\[Hall good\\x07"),
    "20MB-key": (_with_tensors(_add_key("k" * (20 << 20))), r"1 unexpected: k+\.\.\. \(\d+ more characters\)"),
    "args-heads-4.9": (_official(**{**HEADS_OK, "encoder_num_heads": 4.9}),
                       r"args\.encoder_num_heads = 4\.9 must be a whole number \(allowed 1\.\.256\)"),
    "args-model-disagrees": (_official(**HEADS_OK, model="alit_small"),
                             r"args\.model = 'alit_small' \(width 1024, depth 8\) does not match the weights"),
    "preset-disagrees": (_with_config(preset="alit_base"), r"preset = 'alit_base' disagrees with width/depth/heads"),
    "args-norm-groups-missing": (_official(encoder_num_heads=2, decoder_num_heads=2),
                                 r"does not record base\.norm_groups"),
    "args-norm-groups-wrong": (_official(**{**HEADS_OK, "norm_groups": 5}),
                               r"base\.norm_groups = 5 does not divide the 32 channels"),
    "zip-bomb": (_zip_bomb, r"refusing to load .*expand to 67\.\d MB from a 0\.\d MB file.*zip bomb"),
    "zip-without-data-pkl": (_zip_without_pickle, r"not a PyTorch checkpoint: it is a zip archive without data\.pkl"),
    "text-file": (_bytes(b"these are not weights\n"),
                  r"not a PyTorch checkpoint: it looks like a text file \(first line: 'these are not weights'\)"),
    "html-page": (_bytes(b"\n<!DOCTYPE html><html><body>Sign in</body></html>"), r"looks like an HTML page"),
    "jpeg-image": (_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(100)), r"looks like a JPEG image"),
    "text-as-safetensors": (_bytes(b"# model weights\nsee README\n", "m.safetensors"), r"looks like a text file"),
    "bare-pickle": (_bytes(b"\x80\x04\x95\x10\x00\x00\x00"), r"bare pickle or a legacy .*--trust-checkpoint"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_checkpoint_is_one_error_line(case, tiny, tmp_path, capsys):
    make, expected = CASES[case]
    sd, meta = tiny
    path = make(tmp_path, sd, meta)
    code, output = _run(["convert", str(path), str(tmp_path / "out.safetensors")], capsys)
    assert code == 2, output[-2000:]
    lines = output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output[-2000:]
    assert "Traceback" not in output and "\x1b" not in output and "\x07" not in output
    assert len(output) < 3000
    import re

    assert re.search(expected, lines[0]), lines[0]
    assert not (tmp_path / "out.safetensors").exists()


def test_official_layout_with_recorded_groups_loads_like_the_safetensors(tmp_path, capsys):
    """The tiny model with 8 GroupNorm groups, written in the official layout with its args, is the same
    model after loading (before, the group count silently fell back to 32)."""
    from alit_eval.tokenizers.alit.config import AlitConfig
    from alit_eval.tokenizers.alit.model import AlitTokenizer
    from alit_eval.tokenizers.base2d.config import Base2DConfig
    from alit_eval.tokenizers.checkpoints import load_alit_checkpoint

    torch.manual_seed(0)
    cfg = AlitConfig(width=64, depth=1, heads=2, image_size=32, patch_size=8, tokens_per_iter=4, iterations=4,
                     codebook_size=64, base=Base2DConfig(kind="vqgan", ch=32, ch_mult=(1, 1, 1, 1), z_channels=32,
                                                         embed_dim=32, n_embed=64, attn_levels=(), norm_groups=8))
    model = AlitTokenizer(cfg).eval()
    args = argparse.Namespace(encoder_num_heads=2, decoder_num_heads=2, norm_groups=8)
    torch.save({"ema": model.state_dict(), "args": args}, tmp_path / "m.pth")
    loaded = load_alit_checkpoint(tmp_path / "m.pth")
    assert loaded.cfg == cfg
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a, b = model.rollout(x, [8], halting="off"), loaded.rollout(x, [8], halting="off")
    assert torch.equal(a[8].reconstruction, b[8].reconstruction)
    code, output = _run(["convert", str(tmp_path / "m.pth"), str(tmp_path / "m.safetensors")], capsys)
    assert code in (0, None), output
    assert load_alit_checkpoint(tmp_path / "m.safetensors").cfg.base.norm_groups == 8


def test_trust_checkpoint_help_says_it_can_run_code():
    from typer.testing import CliRunner

    from alit_eval.cli.app import app

    for command in ("fid", "convert"):
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
        assert result.exit_code == 0
        assert "can run code from the file" in " ".join(result.output.split()), command
