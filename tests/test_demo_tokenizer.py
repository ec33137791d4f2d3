"""The bundled demo tokenizer: its quality bar's direction on a small held-out subset (CPU, seconds)."""

from __future__ import annotations

import numpy as np
import pytest

from alit_eval.data.demo import EVAL_SEED, generate, sample_id
from alit_eval.tokenizers.checkpoints import load_alit_checkpoint
from alit_eval.tokenizers.pretrained import PRETRAINED
from alit_eval.train.baselines import baseline_l1
from alit_eval.train.evaluate_demo import THRESHOLD, allocate, per_image_l1

N = 48


@pytest.fixture(scope="module")
def demo_model():
    return load_alit_checkpoint(PRETRAINED.get("demo").cache_path(), halting="seeded").eval()


@pytest.fixture(scope="module")
def scenes(demo_model):
    samples = [generate("demo-scenes", i, seed=EVAL_SEED, size=demo_model.image_size) for i in range(N)]
    images = np.stack([s.image for s in samples])
    l1 = per_image_l1(demo_model, images, [sample_id("demo-scenes", i) for i in range(N)])
    return images, np.array([s.complexity for s in samples], dtype=float), l1


def test_geometry(demo_model):
    assert demo_model.image_size == 32 and tuple(demo_model.budgets) == tuple(range(8, 65, 8))


def test_l1_decreases_with_budget_and_beats_the_mean_colour(scenes):
    images, _, l1 = scenes
    mean = l1.mean(0)
    assert np.all(np.diff(mean) < 0), mean
    assert mean[0] < baseline_l1(images)["mean_colour"].mean()
    assert mean[-1] < 0.75 * mean[0]  # the bar is 0.7 on 500 images; these 48 measure 0.737


def test_complex_scenes_need_more_tokens(demo_model, scenes):
    _, complexity, l1 = scenes
    required, _ = allocate(l1, tuple(demo_model.budgets), THRESHOLD)
    lo, hi = np.quantile(complexity, [1 / 3, 2 / 3])
    assert required[complexity >= hi].mean() > required[complexity <= lo].mean()
