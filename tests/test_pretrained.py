"""Tests of the pretrained-checkpoint table and `resolve_checkpoint`, with the network mocked.

A fake ``urllib.request.urlopen`` serves bytes made in the test; any real network access fails.
"""

from __future__ import annotations

import hashlib
import io
import os
import urllib.error
import urllib.request
import warnings
from dataclasses import replace
from pathlib import Path

import pytest

from alit_eval import paths
from alit_eval.errors import AlitEvalError, CheckpointError, OfflineError
from alit_eval.tokenizers import digests, pretrained
from alit_eval.tokenizers.digests import ChecksumWarning, checkpoint_sha256
from alit_eval.tokenizers.pretrained import PRETRAINED, PretrainedEntry
from alit_eval.tokenizers.resolve import local_status, resolve_checkpoint

PAYLOAD = os.urandom(3 * (1 << 20) + 12345)  # spans several read chunks
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes, length: int | None = None) -> None:
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data) if length is None else length)}


class FakeNetwork:
    """Stands in for urlopen: serves `data` (or raises `error`) and counts calls."""

    def __init__(self, data: bytes = PAYLOAD, *, error: Exception | None = None, length: int | None = None):
        self.data, self.error, self.length, self.urls = data, error, length, []

    def __call__(self, request, timeout=None):  # noqa: ANN001
        self.urls.append(request.full_url)
        if self.error is not None:
            raise self.error
        return FakeResponse(self.data, self.length)


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Own cache, online, and a network that fails loudly unless a test installs a fake."""
    monkeypatch.setenv("ALIT_EVAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ALIT_EVAL_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(urllib.request, "urlopen", FakeNetwork(error=AssertionError("network used")))


@pytest.fixture
def entry() -> PretrainedEntry:
    return PretrainedEntry(
        name="test.vqgan_quantized.in100", preset="alit_small", base="vqgan", quantized=True,
        train_set="imagenet100", filename="test_ckpt.pth", url="https://example.invalid/test_ckpt.pth?dl=1",
    )


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_table_holds_the_official_releases_and_demo():
    names = [n for n, e in PRETRAINED.items() if e.family == "alit"]  # other families: test_families.py
    assert len(names) == 8 and len(set(names)) == 8 and "demo" in names
    assert not any("tiny" in n for n in names)  # alit_tiny was never released
    official = [PRETRAINED.get(n) for n in names if n != "demo"]
    assert {(e.preset, e.base, e.quantized, e.train_set) for e in official} == {
        ("alit_small", "vqgan", True, "imagenet1k"),
        ("alit_small", "vqgan", True, "imagenet100"),
        ("alit_base", "vqgan", True, "imagenet100"),
        ("alit_semilarge", "vqgan", True, "imagenet100"),
        ("alit_small", "vqgan", False, "imagenet100"),
        ("alit_small", "vae", True, "imagenet100"),
        ("alit_small", "vae", False, "imagenet100"),
    }
    for e in official:
        kind = "quantized" if e.quantized else "continuous"
        assert e.filename == f"{e.preset}_{e.base}_{kind}_latents.pth"
        assert e.url and e.url.startswith("https://www.dropbox.com/scl/fi/") and e.url.endswith("&dl=1")
        assert e.halting == "seeded" and e.preprocess == "center-crop"
    # the two alit_small VQGAN releases share a file name; the train-set folder keeps them apart
    a, b = (PRETRAINED.get(f"alit_small.vqgan_quantized.{s}") for s in ("in1k", "in100"))
    assert a.filename == b.filename and a.cache_path() != b.cache_path()


def test_download_then_cache_hit(monkeypatch, tmp_path, entry):
    net = FakeNetwork()
    monkeypatch.setattr(urllib.request, "urlopen", net)
    path = resolve_checkpoint(entry, progress=True)
    assert path == tmp_path / "cache" / "checkpoints" / "imagenet100" / "test_ckpt.pth"
    assert path.read_bytes() == PAYLOAD and net.urls == [entry.url]
    # sha256 recorded in a sha256sum-style sidecar; no temporary files left behind
    side = (path.parent / "test_ckpt.pth.sha256").read_text().splitlines()
    st = path.stat()
    assert side == [f"{PAYLOAD_SHA}  test_ckpt.pth", f"# size={st.st_size} mtime_ns={st.st_mtime_ns}"]
    assert _files(path.parent) == ["test_ckpt.pth", "test_ckpt.pth.sha256"]
    # second resolution: served from the cache, even with the network gone
    monkeypatch.setattr(urllib.request, "urlopen", FakeNetwork(error=AssertionError("network used")))
    assert resolve_checkpoint(entry) == path
    assert checkpoint_sha256(path) == PAYLOAD_SHA


def test_known_sha256_verified_and_mismatch_discarded(monkeypatch, entry):
    monkeypatch.setattr(urllib.request, "urlopen", FakeNetwork())
    good = replace(entry, sha256=PAYLOAD_SHA.upper())  # case-insensitive
    assert resolve_checkpoint(good, progress=False).read_bytes() == PAYLOAD

    bad = replace(entry, name="bad", filename="bad.pth", sha256="0" * 64)
    with pytest.raises(CheckpointError, match="expected 0000"):
        resolve_checkpoint(bad, progress=False)
    assert "bad.pth" not in _files(bad.cache_path().parent)
    assert not any(n.endswith(".part") for n in _files(bad.cache_path().parent))


def test_cached_file_with_wrong_known_sha256_is_refused(entry):
    dest = entry.cache_path()
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"something else")
    with pytest.raises(CheckpointError, match="delete it"):
        resolve_checkpoint(replace(entry, sha256=PAYLOAD_SHA))


def test_recorded_sha256_warns_when_file_changes(monkeypatch, entry):
    monkeypatch.setattr(urllib.request, "urlopen", FakeNetwork())
    path = resolve_checkpoint(entry, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unchanged file must not warn
        resolve_checkpoint(entry)
    path.write_bytes(b"tampered")
    future = path.stat().st_mtime_ns + 5_000_000_000  # newer than the sidecar
    os.utime(path, ns=(future, future))
    with pytest.warns(ChecksumWarning, match="changed since its sha256 was recorded"):
        resolve_checkpoint(entry)
    assert checkpoint_sha256(path) == hashlib.sha256(b"tampered").hexdigest()


def test_manually_placed_file_without_known_sha256_is_recorded(entry):
    dest = entry.cache_path()
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"placed by hand")
    assert resolve_checkpoint(entry, offline=True) == dest
    assert digests.sidecar_path(dest).read_text().split()[0] == hashlib.sha256(b"placed by hand").hexdigest()


@pytest.mark.parametrize("how", ["flag", "ALIT_EVAL_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_error_names_file_cache_path_and_source(monkeypatch, entry, how):
    if how != "flag":
        monkeypatch.setenv(how, "1")
    with pytest.raises(OfflineError) as info:
        resolve_checkpoint(entry, offline=how == "flag")
    msg = str(info.value)
    assert "\n" not in msg
    assert entry.filename in msg and str(entry.cache_path()) in msg and entry.url in msg
    assert "offline" in msg


@pytest.mark.parametrize(
    "error", [urllib.error.URLError("Name or service not known"), TimeoutError("timed out"), ConnectionResetError()]
)
def test_network_failure_becomes_offline_error(monkeypatch, entry, error):
    monkeypatch.setattr(urllib.request, "urlopen", FakeNetwork(error=error))
    with pytest.raises(OfflineError, match="download failed") as info:
        resolve_checkpoint(entry, progress=False)
    assert str(entry.cache_path()) in str(info.value)
    assert _files(entry.cache_path().parent) == []  # no partial file


def test_truncated_or_html_download_is_refused(monkeypatch, entry):
    monkeypatch.setattr(urllib.request, "urlopen", FakeNetwork(length=len(PAYLOAD) + 10))
    with pytest.raises(OfflineError, match="cut short"):
        resolve_checkpoint(entry, progress=False)
    monkeypatch.setattr(urllib.request, "urlopen", FakeNetwork(b"<!DOCTYPE html><html>login</html>"))
    with pytest.raises(OfflineError, match="web page"):
        resolve_checkpoint(entry, progress=False)
    assert _files(entry.cache_path().parent) == []


def test_entry_without_url_explains_where_to_get_it(entry):
    no_url = replace(entry, url=None, source="the official download script")
    with pytest.raises(OfflineError) as info:
        resolve_checkpoint(no_url)
    msg = str(info.value)
    assert "no direct download URL" in msg and "the official download script" in msg
    assert str(no_url.cache_path()) in msg


def test_local_path_takes_precedence(monkeypatch, tmp_path):
    name = "alit_base.vqgan_quantized.in100"
    cached = PRETRAINED.get(name).cache_path()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"cached copy")
    monkeypatch.chdir(tmp_path)
    Path(name).write_bytes(b"local file")  # a file called like the registry name wins
    assert resolve_checkpoint(name) == Path(name)
    other = tmp_path / "mine.pth"
    other.write_bytes(b"x")
    assert resolve_checkpoint(str(other)) == other
    assert resolve_checkpoint(other) == other


def test_alit_eval_cache_env_is_respected(monkeypatch, tmp_path):
    root = tmp_path / "elsewhere"
    monkeypatch.setenv("ALIT_EVAL_CACHE", str(root))
    assert paths.cache_dir() == root
    entry = PRETRAINED.get("alit_small.vae_continuous.in100")
    target = root / "checkpoints" / "imagenet100" / "alit_small_vae_continuous_latents.pth"
    assert entry.cache_path() == target and local_status(entry).state == "not cached"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"weights")
    assert resolve_checkpoint(entry.name) == target
    status = local_status(entry)
    assert status.state == "cached" and status.sha256 == hashlib.sha256(b"weights").hexdigest()
    monkeypatch.delenv("ALIT_EVAL_CACHE")
    assert paths.cache_dir() == Path.home() / ".cache" / "alit-eval"


def test_dropbox_file_name_is_accepted_in_the_cache():
    entry = PRETRAINED.get("alit_small.vqgan_quantized.in1k")
    alt = entry.cache_path().parent / "alit_vqgan_small_quantized_latent.pth"
    alt.parent.mkdir(parents=True)
    alt.write_bytes(b"in1k")
    assert resolve_checkpoint(entry.name, offline=True) == alt


def test_demo_entry_bundled_or_not(monkeypatch, tmp_path):
    monkeypatch.setattr(pretrained, "ASSETS_DIR", tmp_path / "assets")
    demo = PRETRAINED.get("demo")
    assert local_status(demo).state == "not yet bundled"
    with pytest.raises(CheckpointError, match="not bundled"):
        resolve_checkpoint("demo")
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "demo_tokenizer.safetensors").write_bytes(b"demo")
    assert local_status(demo).state == "bundled"
    assert resolve_checkpoint("demo", offline=True) == tmp_path / "assets" / "demo_tokenizer.safetensors"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alit_smal", "Did you mean 'alit_small.vqgan_quantized.in1k'"),
        ("alit_small.vqgan_quantised.in100", "Did you mean 'alit_small.vqgan_quantized.in100'"),
        ("alit_tiny.vqgan_quantized.in100", "never released"),
        ("missing/file.pth", "checkpoint file not found: missing/file.pth"),
        ("alit_base_vqgan_quantized_latents.pth", "official file of alit_base.vqgan_quantized.in100"),
    ],
)
def test_bad_names_give_helpful_errors(text, expected):
    with pytest.raises(AlitEvalError, match=expected.replace(".", r"\.").replace("(", r"\(")):
        resolve_checkpoint(text)
