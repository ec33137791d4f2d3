"""LPIPS loading offline: skip with a reason, explicit/hub-cache backbones, naive re-computation."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torchmetrics.functional.image.lpips as tm_lpips
import torchvision

from alit_eval.errors import CheckpointError
from alit_eval.paths import sha256_file
from alit_eval.metrics.perceptual import backbone_cache_path, load_lpips, lpips_per_image


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Empty torch hub dir and no sockets: any download attempt fails the test loudly."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("LPIPS loading tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


@pytest.fixture(scope="module")
def random_alexnet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init torchvision AlexNet state_dict (written once per module: it is 233 MB)."""
    path = tmp_path_factory.mktemp("lpips") / "alexnet_random.pth"
    with torch.random.fork_rng():  # torchvision's init reads the global RNG; keep it untouched
        torch.manual_seed(0)
        torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    return path


def _images(seed: int, b: int = 3, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, size, size), generator=g, dtype=torch.uint8)


def test_without_weights_returns_none_and_a_reason() -> None:
    metric, reason = load_lpips(None)
    assert metric is None
    assert reason is not None and "--lpips-weights" in reason and "AlexNet" in reason
    assert "\n" not in reason


def test_explicit_missing_or_wrong_file_raises(tmp_path: Path, random_alexnet_file: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_lpips(tmp_path / "nope.pth")
    state = torch.load(random_alexnet_file, weights_only=True)
    state["features.0.weight"] = torch.zeros(64, 3, 3, 3)  # right names, wrong shape
    wrong = tmp_path / "wrong.pth"
    torch.save(state, wrong)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_lpips(wrong, net="alex")
    junk = tmp_path / "junk.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, junk)
    with pytest.raises(CheckpointError, match="lack"):
        load_lpips(junk, net="alex")


def test_random_alexnet_loads_offline_and_behaves(random_alexnet_file: Path) -> None:
    metric, reason = load_lpips(random_alexnet_file)
    assert metric is not None and reason is None
    assert metric.source == "path" and metric.sha256 == sha256_file(random_alexnet_file)
    x, y = _images(1), _images(2)
    same = lpips_per_image(metric, x, x.clone())
    diff = lpips_per_image(metric, x, y)
    assert same.shape == (3,) and diff.shape == (3,)
    assert torch.all(same == 0)
    assert torch.all(diff > 0)
    # the backbone really is the file's: first conv weight copied into slice1
    state = torch.load(random_alexnet_file, weights_only=True)
    assert torch.equal(metric.model.net.slice1[0].weight, state["features.0.weight"])


def test_backbone_file_names_are_torchvisions() -> None:
    """The cached file names are written down (so that looking for them does not import
    torchvision.models); they must be the ends of torchvision's own weight URLs."""
    import os

    import torchvision.models as tvm

    from alit_eval.metrics.perceptual import _BACKBONES, BACKBONE_FILES

    assert set(BACKBONE_FILES) == set(_BACKBONES)
    for net, (_, enum, _) in _BACKBONES.items():
        assert BACKBONE_FILES[net] == os.path.basename(getattr(tvm, enum).IMAGENET1K_V1.url)
        assert backbone_cache_path(net).name == BACKBONE_FILES[net]


def test_hub_cache_file_is_found(random_alexnet_file: Path) -> None:
    target = backbone_cache_path("alex")
    assert target.name == "alexnet-owt-7be5be79.pth"
    target.parent.mkdir(parents=True)
    target.write_bytes(random_alexnet_file.read_bytes())
    metric, reason = load_lpips(None)
    assert metric is not None and reason is None and metric.source == "torch-hub-cache"


def test_matches_naive_lpips(random_alexnet_file: Path) -> None:
    """LPIPS re-computed from torchvision's AlexNet and the heads file (Zhang et al. 2018)."""
    metric, _ = load_lpips(random_alexnet_file)
    assert metric is not None
    x, y = _images(3, b=2), _images(4, b=2)
    got = lpips_per_image(metric, x, y)

    alex = torchvision.models.alexnet(weights=None)
    alex.load_state_dict(torch.load(random_alexnet_file, weights_only=True))
    heads_file = Path(tm_lpips.__file__).parent / "lpips_models" / "alex.pth"
    heads = torch.load(heads_file, map_location="cpu", weights_only=True)
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)  # LPIPS ScalingLayer constants
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def taps(img: torch.Tensor) -> list[torch.Tensor]:
        h = ((img.float() / 255 * 2 - 1) - shift) / scale
        out = []
        for i, layer in enumerate(alex.features):
            h = layer(h)
            if i in (1, 4, 7, 9, 11):  # the five ReLU outputs LPIPS compares
                out.append(h)
        return out

    with torch.no_grad():
        total = torch.zeros(2)
        for k, (a, b) in enumerate(zip(taps(x), taps(y))):
            na = a / torch.sqrt((a**2).sum(1, keepdim=True) + 1e-8)
            nb = b / torch.sqrt((b**2).sum(1, keepdim=True) + 1e-8)
            w = heads[f"lin{k}.model.1.weight"].view(1, -1, 1, 1)
            total += ((na - nb) ** 2 * w).sum(1).mean((1, 2))
    torch.testing.assert_close(got, total.double(), rtol=1e-5, atol=1e-6)
