"""Checkpoint loading: the 7 official layouts, conversion round trip, and refusing bad files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from alit_eval.errors import CheckpointError
from alit_eval.tokenizers.checkpoints import (
    load_alit_checkpoint,
    read_checkpoint,
    save_tokenizer,
    tokenizer_from_state_dict,
    unwrap,
)
from conftest import shared_dir

KEYS_FILE = shared_dir() / "reference" / "alit_official_keys.txt"


def _variants() -> list[tuple[str, dict[str, tuple[int, ...]], int]]:
    """Parse the official key listing into (variant, {key: shape}, params without gan_losses)."""
    if not KEYS_FILE.is_file():
        return []
    out, name, keys, params = [], None, {}, 0
    for line in KEYS_FILE.read_text().splitlines():
        if line.startswith("# VARIANT:"):
            if name:
                out.append((name, keys, params))
            name, keys = line.split(":", 1)[1].strip(), {}
        elif m := re.search(r"without gan_losses ([\d,]+)", line):
            params = int(m.group(1).replace(",", ""))
        elif name and line and not line.startswith("#"):
            key, shape, _dtype, _kind = line.split("\t")
            keys[key] = tuple(int(s) for s in re.findall(r"\d+", shape))
    if name:
        out.append((name, keys, params))
    return out


VARIANTS = _variants()
EXPECTED_PRESET = {"alit_small": "alit_small", "alit_base": "alit_base", "alit_semilarge": "alit_semilarge",
                   "alit_tiny": "alit_tiny"}


@pytest.mark.skipif(not VARIANTS, reason="official key listing not available")
@pytest.mark.parametrize("variant,keys,params", VARIANTS, ids=[v[0].split()[0] for v in VARIANTS])
def test_official_layouts_load_strictly(variant, keys, params):
    assert any(k.startswith("gan_losses.") for k in keys)
    ckpt = {"ema": {k: torch.empty(shape, device="meta") for k, shape in keys.items()}, "epoch": 199}
    sd, args = unwrap(ckpt)
    model = tokenizer_from_state_dict(sd, {"args": args} if args else None, source=variant)
    preset = re.search(r"alit_(tiny|small|base|semilarge)", variant).group(0)
    assert model.cfg.preset == EXPECTED_PRESET[preset]
    assert model.cfg.base.kind == ("vae" if "_vae_" in variant else "vqgan")
    assert model.cfg.quantize == ("quantized" in variant)
    assert model.budgets == (32, 64, 96, 128, 160, 192, 224, 256)
    assert sum(p.numel() for p in model.parameters()) == params
    assert set(model.state_dict()) == {k for k in keys if not k.startswith("gan_losses.")}


def test_convert_round_trip(fixture_dir, tmp_path):
    src = fixture_dir / "vqgan_quantized" / "checkpoint.pth"
    a = load_alit_checkpoint(src)
    save_tokenizer(a, tmp_path / "m.safetensors")
    b = load_alit_checkpoint(tmp_path / "m.safetensors")
    assert a.cfg == b.cfg and b.cfg.heads == 4
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    ra, rb = a.rollout(x, [32], halting="off"), b.rollout(x, [32], halting="off")
    assert torch.equal(ra[32].reconstruction, rb[32].reconstruction)


def test_fp16_weights_are_upcast(fixture_dir):
    sd, meta = read_checkpoint(fixture_dir / "vae_continuous" / "checkpoint.pth")
    assert all(v.dtype == torch.float32 for v in sd.values() if v.is_floating_point())
    assert meta["args"]["encoder_num_heads"] == 4


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_alit_checkpoint(tmp_path / "nope.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_alit_checkpoint(tmp_path / "empty.pth")


def test_truncated_checkpoint(fixture_dir, tmp_path):
    data = (fixture_dir / "vqgan_quantized" / "checkpoint.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or not a PyTorch checkpoint"):
        load_alit_checkpoint(tmp_path / "cut.pth")
    (tmp_path / "cut.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_alit_checkpoint(tmp_path / "cut.safetensors")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.pth").write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint|not a readable"):
        load_alit_checkpoint(tmp_path / "notes.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="no state_dict"):
        load_alit_checkpoint(tmp_path / "list.pth")


def test_other_architecture(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    torch.save({"state_dict": net.state_dict()}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not an ALIT checkpoint"):
        load_alit_checkpoint(tmp_path / "other.pth")


def test_partial_alit_checkpoint_lists_missing_keys(fixture_dir, tmp_path):
    sd, meta = read_checkpoint(fixture_dir / "vqgan_quantized" / "checkpoint.pth")
    del sd["decoder.ln_post.weight"]
    with pytest.raises(CheckpointError, match=r"1 missing: decoder.ln_post.weight"):
        tokenizer_from_state_dict(sd, meta)


class _Evil:
    """Unpickling this would create a marker file (it must never happen)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_without_executing(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"ema": {"latent_tokens": torch.zeros(2, 2)}, "payload": _Evil(marker)}, tmp_path / "evil.pth")
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refusing to unpickle.*--trust-checkpoint"):
        load_alit_checkpoint(tmp_path / "evil.pth")
    assert not marker.exists()
