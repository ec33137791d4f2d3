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

# No figures unless a test looks at them: drawing and saving figures was about a quarter of the
# suite's time, mostly in tests that check numbers. Tests marked ``figures`` draw PNGs (one format:
# a PDF is one more render of every figure); tests that check the default (PNG and PDF) unset it
# (test_report.py, test_attention.py), and the README blocks run with the default. Subprocesses
# inherit the setting.
os.environ.setdefault("ALIT_EVAL_FIGURE_FORMATS", "none")


@pytest.fixture(autouse=True)
def _figure_formats(request, monkeypatch):
    if request.node.get_closest_marker("figures"):
        monkeypatch.setenv("ALIT_EVAL_FIGURE_FORMATS", "png")


# Seconds each of the slowest test files took on 2 quiet CPU cores (`--durations`, rounded). Only the
# order of the files depends on it: pytest-xdist hands whole files to its 2 workers in collection
# order (`--dist loadfile --no-loadscope-reorder`), so the longest go first and the workers finish
# together, instead of a 40 s file starting last on one worker while the other one idles.
FILE_SECONDS = {
    "test_alit_parity.py": 46, "test_distributed.py": 38, "test_readme.py": 34, "test_karl_parity.py": 29,
    "test_fid.py": 28, "test_engine.py": 26, "test_families_cli.py": 25, "test_compare.py": 23,
    "test_official_stream.py": 22, "test_rollout.py": 22, "test_flextok_parity.py": 21, "test_train.py": 19,
    "test_report.py": 15, "test_attention.py": 15, "test_hostile_surfaces.py": 15, "test_api.py": 12,
    "test_one_d_piece_parity.py": 11, "test_integrity.py": 11, "test_complexity.py": 11, "test_bad_inputs.py": 10,
    "test_families.py": 10, "test_flextok_cli.py": 9, "test_hostile_data.py": 8, "test_perceptual.py": 7,
    "test_probe.py": 7, "test_noise_spread.py": 7, "test_allocation.py": 7, "test_demo_tokenizer.py": 6,
    "test_fail_fast.py": 6, "test_compare_truth.py": 5, "test_signal.py": 5, "test_cli_ux.py": 5,
    "test_rate_distortion.py": 4, "test_hostile_checkpoints.py": 4, "test_familiarity.py": 4, "test_analyses.py": 4,
    "test_compute.py": 4, "test_cli.py": 4, "test_karl_model.py": 3, "test_flextok_model.py": 3,
    "test_checkpoints.py": 3, "test_discovery.py": 3, "test_family_contract.py": 3, "test_demo_data.py": 3,
    "test_official_criterion.py": 3,
}


def pytest_collection_modifyitems(items: list) -> None:
    order = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda item: (-FILE_SECONDS.get(Path(str(item.fspath)).name, 0), order[id(item)]))


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
