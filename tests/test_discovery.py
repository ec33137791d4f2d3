"""Object discovery: FG-ARI and Hungarian mIoU against naive and scikit-learn references, the known
answer on synthetic attention, mask geometry, and `alit-eval discovery` on the tiny model."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import adjusted_rand_score
from typer.testing import CliRunner

from alit_eval.analysis.attention_maps import upsample_labels
from alit_eval.analysis.discovery import (adjusted_rand_index, discovery_metrics, discovery_table, fg_ari,
                                          folder_masks, hungarian_miou, preprocess_mask)
from alit_eval.cli.app import app


def _naive_ari(a, b) -> float:
    """ARI by enumerating every pair of items (Steinley's form of Hubert & Arabie)."""
    n11 = n10 = n01 = n00 = 0
    for i, j in itertools.combinations(range(len(a)), 2):
        same_a, same_b = a[i] == a[j], b[i] == b[j]
        n11 += same_a and same_b
        n10 += same_a and not same_b
        n01 += same_b and not same_a
        n00 += not same_a and not same_b
    den = (n11 + n10) * (n10 + n00) + (n11 + n01) * (n01 + n00)
    return 1.0 if n10 == 0 and n01 == 0 else 2.0 * (n11 * n00 - n10 * n01) / den


def _naive_miou(true, pred) -> float:
    """Best mean IoU over every one-to-one assignment of objects to segments (brute force)."""
    objects = [o for o in np.unique(true) if o > 0]
    segs = list(np.unique(pred))
    best = 0.0
    for perm in itertools.permutations(segs + [None] * len(objects), len(objects)):
        total = 0.0
        for o, s in zip(objects, perm):
            if s is not None:
                t, p = true == o, pred == s
                total += (t & p).sum() / (t | p).sum()
        best = max(best, total / len(objects))
    return best


def test_ari_matches_naive_and_sklearn_on_random_labelings():
    rng = np.random.default_rng(0)
    for trial in range(40):
        n = int(rng.integers(2, 40))
        a = rng.integers(0, int(rng.integers(1, 5)), n)
        b = rng.integers(0, int(rng.integers(1, 6)), n) + 3 * (trial % 2)  # arbitrary label values
        ours = adjusted_rand_index(a, b)
        assert ours == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)
        assert ours == pytest.approx(_naive_ari(a, b), abs=1e-12)
    big_a, big_b = rng.integers(0, 9, 70000), rng.integers(0, 200, 70000)  # int64 pair counts would overflow
    assert adjusted_rand_index(big_a, big_b) == pytest.approx(adjusted_rand_score(big_a, big_b), abs=1e-9)
    same = rng.integers(0, 5, 50)
    assert adjusted_rand_index(same, same + 7) == 1.0
    assert adjusted_rand_index(np.zeros(9), np.zeros(9)) == 1.0 == adjusted_rand_score(np.zeros(9), np.zeros(9))


def test_fg_ari_ignores_background_pixels():
    rng = np.random.default_rng(1)
    true = rng.integers(0, 4, (16, 16))
    pred = rng.integers(0, 6, (16, 16))
    fg = true > 0
    assert fg_ari(true, pred) == pytest.approx(adjusted_rand_score(true[fg], pred[fg]))
    pred2 = pred.copy()
    pred2[~fg] = 99  # relabelling background pixels changes nothing
    assert fg_ari(true, pred2) == fg_ari(true, pred)
    assert np.isnan(fg_ari(np.zeros((4, 4), int), pred[:4, :4]))


def test_hungarian_miou_matches_brute_force():
    rng = np.random.default_rng(2)
    for _ in range(30):
        true = rng.integers(0, int(rng.integers(2, 5)), (8, 8))
        pred = rng.integers(0, int(rng.integers(1, 5)), (8, 8)) * 3
        if (true > 0).any():
            assert hungarian_miou(true, pred) == pytest.approx(_naive_miou(true, pred), abs=1e-12)
    assert np.isnan(hungarian_miou(np.zeros((3, 3), int), np.zeros((3, 3), int)))
    objs = np.array([[1, 1], [2, 2]])
    assert hungarian_miou(objs, np.zeros_like(objs)) == pytest.approx(0.25)  # one segment: IoU 1/2, other 0


class _Store:
    """What `discovery_table` reads from a sweep's shard store."""

    def __init__(self, arrays):
        self.arrays = arrays

    def concat(self, key):
        return self.arrays[key]


def test_attention_equal_to_masks_scores_one():
    """Attention exactly equal to the masks (a token per object, one for the background) -> 1 and 1."""
    from alit_eval.engine.sweep import CAPTURES
    from alit_eval.tokenizers.base import BudgetOutput

    rng = np.random.default_rng(3)
    g, size, n_tok = 8, 64, 16
    cell_masks = [np.zeros((g, g), int) for _ in range(3)]
    for m in cell_masks:  # up to 4 rectangular objects on the cell grid, later ones occluding
        for k in range(1, 5):
            r, c = rng.integers(0, g - 2, 2)
            m[r : r + rng.integers(1, 4), c : c + rng.integers(1, 4)] = k
    attention = np.zeros((3, 2, n_tok, g, g), np.float32)
    perm = rng.permutation(n_tok)  # token ids unrelated to object ids
    for i, m in enumerate(cell_masks):
        for k in np.unique(m):
            attention[i, :, perm[k]] = (m == k)
    out = BudgetOutput(budget=n_tok, latent=torch.zeros(3, n_tok, 4), tokens=torch.zeros(3, n_tok, 4),
                       attention=torch.from_numpy(attention))
    cells = CAPTURES["attention_argmax"](out).float().numpy()  # as the sweep stores it
    ids = np.array(["a", "b", "c"])
    masks = {i: upsample_labels(m, size) for i, m in zip(ids, cell_masks)}
    table = discovery_table(_Store({"id": ids, f"cap_attention_argmax_{n_tok}": cells}), [n_tok], masks, size)
    assert len(table) == 3
    for layer in (0, 1):
        np.testing.assert_allclose(table[f"fg_ari_L{layer}"], 1.0)
        np.testing.assert_allclose(table[f"miou_L{layer}"], 1.0)
    assert (table["miou_grid"] < 1).all()
    base = {"command": "discovery", "dataset": "toy", "preprocess": "generated"}
    metrics = discovery_metrics(table, [n_tok], base=base, indexing="corrected", min_objects=1, seed=0)
    tok = metrics[metrics["condition"].str.contains("method=tokens")]
    assert np.allclose(tok["value"], 1.0) and set(tok["metric"]) == {"fg_ari", "miou"}
    gain = metrics[metrics["metric"] == "miou_gain"]
    assert (gain["ci_low"] > 0).all()


def test_mask_preprocessing_follows_the_image_geometry(tmp_path):
    from alit_eval.data.transforms import preprocess

    rng = np.random.default_rng(4)
    mask = np.zeros((48, 80), np.uint8)
    for k in range(1, 6):
        r, c = rng.integers(0, 40), rng.integers(0, 70)
        mask[r : r + 12, c : c + 14] = k
    colours = np.array([[0, 0, 0]] + [[40 * k, 255 - 40 * k, 20 * k] for k in range(1, 6)], np.uint8)
    image = Image.fromarray(colours[mask])
    for mode in ("center-crop", "resize-center-crop"):
        img = preprocess(image, mode, 32).permute(1, 2, 0).numpy().astype(int)
        m = preprocess_mask(Image.fromarray(mask), mode, 32)
        decoded = np.argmin(((img[:, :, None, :] - colours[None, None].astype(int)) ** 2).sum(-1), axis=-1)
        agree = (decoded == m).mean()
        assert agree == 1.0 if mode == "center-crop" else agree > 0.9, (mode, agree)
    sub = tmp_path / "masks" / "cls"
    sub.mkdir(parents=True)
    Image.fromarray(mask).save(sub / "img1.png")
    Image.fromarray(mask * 0 + 2).save(tmp_path / "masks" / "img2.png")
    found = folder_masks(tmp_path / "masks", ["cls/img1.jpg", "other/img2.jpg", "img3.jpg"], "center-crop", 32)
    assert set(found) == {"cls/img1.jpg", "other/img2.jpg"} and (found["other/img2.jpg"] == 2).all()


@pytest.mark.figures
def test_discovery_cli_on_demo_scenes(tiny_ckpt, tmp_path):
    res = CliRunner().invoke(app, ["--device", "cpu", "--results-dir", str(tmp_path), "discovery", "--ckpt",
                                   str(tiny_ckpt), "--limit", "6", "--budgets", "4,16", "--run-id", "r"])
    assert res.exit_code == 0, res.output
    run = tmp_path / "discovery" / "r"
    m = pd.read_csv(run / "metrics.csv", keep_default_na=False)
    assert {"fg_ari", "miou", "fg_ari_gain", "miou_gain"} <= set(m["metric"])
    assert set(m["budget"]) == {4, 16}
    per = pd.read_parquet(run / "per_image.parquet")
    assert {"fg_ari_L0", "miou_L0", "fg_ari_grid", "tokens_used_L0"} <= set(per.columns)
    assert per["tokens_used_L0"].dropna().between(1, 16).all()
    meta = json.loads((run / "meta.json").read_text())
    assert meta["extra"]["decoder_layers"] == 1 and "miou_tokens_vs_grid" in meta["extra"]["summary"]
    assert (run / "figures" / "discovery_vs_tokens.png").is_file()
    assert "tokens vs grid" in res.output


def test_discovery_cli_with_mask_folder(tiny_ckpt, tmp_path):
    from alit_eval.data.demo import write_split

    folder = write_split(tmp_path / "demo", "demo-scenes", 4, size=32)
    res = CliRunner().invoke(app, ["--device", "cpu", "--results-dir", str(tmp_path / "r"), "discovery",
                                   "--ckpt", str(tiny_ckpt), "--data", str(folder / "images"), "--masks",
                                   str(folder / "masks"), "--budgets", "8", "--indexing", "official-notebook",
                                   "--run-id", "m"])
    assert res.exit_code == 0, res.output
    per = pd.read_parquet(tmp_path / "r" / "discovery" / "m" / "per_image.parquet")
    assert per["fg_ari_L0"].notna().sum() >= 3  # images with at least one object
    missing = CliRunner().invoke(app, ["--device", "cpu", "discovery", "--ckpt", str(tiny_ckpt), "--data",
                                       str(folder / "images"), "--budgets", "8"])
    assert missing.exit_code != 0 and "--masks" in str(missing.exception)
