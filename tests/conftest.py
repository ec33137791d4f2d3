"""Shared test helpers: location of the golden fixtures, tiny models and images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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
