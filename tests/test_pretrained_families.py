"""The pretrained table's other families: KARL (Dropbox) and One-D-Piece/TiTok (Hugging Face) entries, and
Hugging Face downloads with ``huggingface_hub.hf_hub_download`` mocked (no network)."""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import replace
from pathlib import Path

import huggingface_hub
import pytest

from alit_eval.errors import CheckpointError, OfflineError
from alit_eval.tokenizers.families import FAMILIES
from alit_eval.tokenizers.pretrained import PRETRAINED
from alit_eval.tokenizers.resolve import local_status, resolve_checkpoint

PAYLOAD = os.urandom(1 << 16)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class FakeHub:
    """Stands in for hf_hub_download: writes `data` at local_dir/filename (or raises `error`)."""

    def __init__(self, data: bytes = PAYLOAD, error: Exception | None = None) -> None:
        self.data, self.error, self.calls = data, error, []

    def __call__(self, repo_id, filename, *, revision=None, local_dir=None, **kw):  # noqa: ANN001
        self.calls.append((repo_id, filename, revision))
        if self.error is not None:
            raise self.error
        out = Path(local_dir) / filename
        out.parent.mkdir(parents=True, exist_ok=True)
        (Path(local_dir) / ".cache").mkdir(exist_ok=True)  # huggingface_hub's metadata folder
        out.write_bytes(self.data)
        return str(out)


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("ALIT_EVAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ALIT_EVAL_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: (_ for _ in ()).throw(AssertionError("network")))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", FakeHub(error=AssertionError("network used")))


def test_karl_entries_are_the_official_dropbox_releases():
    karl = {n: e for n, e in PRETRAINED.items() if e.family == "karl"}
    # karl_official.md §1: five files, all karl_small, with these Dropbox ids
    ids = {("vqgan", True, "imagenet1k"): "4a2zwpceavl92ij56ja3m", ("vqgan", True, "imagenet100"): "60plmx9s1jsu5axqb1frj",
           ("vqgan", False, "imagenet100"): "ipvxil7ubb41wxs25du5p", ("vae", True, "imagenet100"): "gynbn6onb5tm1t8pmca0x",
           ("vae", False, "imagenet100"): "v5t6trgczpaprvoow58zk"}
    assert len(karl) == 5
    for e in karl.values():
        kind = "quantized" if e.quantized else "continuous"
        assert e.preset == "karl_small" and e.filename == f"karl_small_{e.base}_{kind}_latents.pth"
        assert e.url == (f"https://www.dropbox.com/scl/fi/{ids[(e.base, e.quantized, e.train_set)]}/{e.filename}"
                         f"?rlkey={e.url.split('rlkey=')[1].split('&')[0]}&st={e.url.split('st=')[1].split('&')[0]}&dl=1")
        assert (e.halting, e.epsilon, e.budgets, e.preprocess) == ("seeded", 0.0, "32-256:32", "center-crop")
    a, b = (PRETRAINED.get(f"karl_small.vqgan_quantized.{s}") for s in ("in1k", "in100"))
    assert a.cache_path() != b.cache_path()


def test_one_d_piece_and_titok_entries_are_the_hugging_face_releases():
    hf = {n: e for n, e in PRETRAINED.items() if e.hf_repo}
    assert {(e.family, e.hf_repo, e.remote_filename) for e in hf.values()} == {
        ("one_d_piece", "turing-motors/One-D-Piece-S-256", "pytorch_model.bin"),
        ("one_d_piece", "turing-motors/One-D-Piece-B-256", "pytorch_model.bin"),
        ("one_d_piece", "turing-motors/One-D-Piece-L-256", "pytorch_model.bin"),
        ("titok", "fun-research/TiTok", "tokenizer_titok_s128.bin"),
        ("titok", "fun-research/TiTok", "tokenizer_titok_b64.bin"),
        ("titok", "fun-research/TiTok", "tokenizer_titok_l32.bin"),
        ("flextok", "EPFL-VILAB/flextok_d12_d12_in1k", "model.safetensors"),
        ("flextok", "EPFL-VILAB/flextok_d18_d18_in1k", "model.safetensors"),
        ("flextok", "EPFL-VILAB/flextok_d18_d28_in1k", "model.safetensors"),
        ("flextok", "EPFL-VILAB/flextok_d18_d28_dfn", "model.safetensors"),
    }
    assert len({e.cache_path() for e in hf.values()}) == 10  # same-named files in the repos, one cache name each
    for e in hf.values():
        assert e.url is None and e.halting is None and e.epsilon is None and e.preprocess == "resize-center-crop"
        assert "bf16" in e.precision and e.preset in FAMILIES.get(e.family).presets
    assert "predate the tail-drop fix" in PRETRAINED.get("one_d_piece_s256.in1k").notes
    assert PRETRAINED.get("titok_b64.in1k").budgets == "64"
    for e in PRETRAINED.items():
        assert e[1].family in FAMILIES


def test_hugging_face_download_then_cache_hit(monkeypatch, tmp_path):
    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    entry = PRETRAINED.get("one_d_piece_s256.in1k")
    path = resolve_checkpoint(entry.name, progress=False)
    assert path == tmp_path / "cache" / "checkpoints" / "imagenet1k" / "One-D-Piece-S-256.pytorch_model.bin"
    assert path.read_bytes() == PAYLOAD and hub.calls == [("turing-motors/One-D-Piece-S-256", "pytorch_model.bin", None)]
    # the same sidecar as Dropbox downloads; the staging folder (and huggingface_hub's metadata) is gone
    assert (path.parent / (path.name + ".sha256")).read_text().split()[0] == PAYLOAD_SHA
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.name + ".sha256"]
    assert local_status(entry).state == "cached"
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", FakeHub(error=AssertionError("network used")))
    assert resolve_checkpoint(entry.name, offline=True) == path


def test_hugging_face_offline_error_names_file_repo_and_path(monkeypatch, tmp_path):
    entry = PRETRAINED.get("titok_l32.in1k")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError) as err:
        resolve_checkpoint(entry.name)
    msg = str(err.value)
    dest = tmp_path / "cache" / "checkpoints" / "imagenet1k" / "tokenizer_titok_l32.bin"
    assert "tokenizer_titok_l32.bin" in msg and "fun-research/TiTok" in msg and str(dest) in msg
    assert "offline" in msg and "\n" not in msg


def test_hugging_face_failures(monkeypatch, tmp_path):
    entry = PRETRAINED.get("one_d_piece_b256.in1k")
    folder = tmp_path / "cache" / "checkpoints" / "imagenet1k"
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", FakeHub(error=OSError("connection refused")))
    with pytest.raises(OfflineError, match=r"download failed \(OSError: connection refused\).*pytorch_model\.bin"):
        resolve_checkpoint(entry.name)
    assert not folder.exists() or list(folder.iterdir()) == []
    # a known digest that does not match: the file is discarded
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", FakeHub())
    bad = replace(entry, sha256="0" * 64)
    with pytest.raises(CheckpointError, match="sha256"):
        resolve_checkpoint(bad)
    assert list(folder.iterdir()) == []
    ok = replace(entry, sha256=PAYLOAD_SHA)
    assert resolve_checkpoint(ok).read_bytes() == PAYLOAD


def test_file_name_of_a_hugging_face_release_points_at_its_entries():
    with pytest.raises(CheckpointError, match="one_d_piece_s256.in1k or one_d_piece_b256.in1k or one_d_piece_l256"):
        resolve_checkpoint("pytorch_model.bin")
