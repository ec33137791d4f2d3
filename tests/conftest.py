"""Shared test helpers: location of the golden fixtures, tiny models and images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# pytest-xdist (addopts: -n auto) runs one worker per CPU; one torch thread each keeps the workers
# from oversubscribing the cores. Set before any test module imports torch.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# Figures as PNG only: a PDF is one more render of every figure, a sixth of the suite's time, and no
# test reads one. tests/test_report.py checks the default (PNG and PDF); the README blocks run with it.
os.environ.setdefault("ALIT_EVAL_FIGURE_FORMATS", "png")


def shared_dir() -> Path:
    return Path(os.environ.get("ALIT_EVAL_SHARED", REPO.parent / "shared"))


FIXTURES = shared_dir() / "fixtures" / "official_alit"


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    if not (FIXTURES / "MANIFEST.json").is_file():
        pytest.skip(f"official ALIT fixtures not found at {FIXTURES} (set ALIT_EVAL_SHARED)")
    return FIXTURES


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # Never let tests read or write the user's real cache.
    monkeypatch.setenv("ALIT_EVAL_CACHE", str(tmp_path_factory.getbasetemp() / "alit-eval-cache"))


def make_tiny_alit(path: Path, seed: int = 0) -> Path:
    """Save a tiny random-weight ALIT (32x32 images, budgets 4..16) as safetensors."""
    import torch

    from alit_eval.tokenizers.alit.config import AlitConfig
    from alit_eval.tokenizers.alit.model import AlitTokenizer
    from alit_eval.tokenizers.base2d.config import Base2DConfig
    from alit_eval.tokenizers.checkpoints import save_tokenizer

    torch.manual_seed(seed)
    cfg = AlitConfig(
        width=64, depth=1, heads=2, image_size=32, patch_size=8, tokens_per_iter=4, iterations=4,
        codebook_size=64, base=Base2DConfig(kind="vqgan", ch=32, ch_mult=(1, 1, 1, 1), z_channels=32,
                                            embed_dim=32, n_embed=64),
    )
    return save_tokenizer(AlitTokenizer(cfg), path)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    return make_tiny_alit(tmp_path_factory.mktemp("tiny") / "tiny.safetensors")


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread (timing- and reduction-order-sensitive tests), then restore."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
