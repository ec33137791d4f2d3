"""Attention maps: the rollout's maps against a direct q/k computation, map post-processing, and
`alit-eval attention-viz` on the tiny model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from alit_eval.analysis.attention_maps import (check_layer, default_layer, grid_partition, overlay_maps,
                                                upsample_labels)
from alit_eval.cli.app import app


@pytest.fixture(scope="module")
def two_layer_model():
    """A random ALIT with a two-layer, two-head decoder (32x32 images, 4x4 grid, budgets 4..12)."""
    from alit_eval.tokenizers.alit.config import AlitConfig
    from alit_eval.tokenizers.alit.model import AlitTokenizer
    from alit_eval.tokenizers.base2d.config import Base2DConfig

    torch.manual_seed(3)
    cfg = AlitConfig(width=64, depth=2, heads=2, image_size=32, patch_size=8, tokens_per_iter=4, iterations=3,
                     codebook_size=32, base=Base2DConfig(kind="vqgan", ch=32, ch_mult=(1, 1, 1, 1), z_channels=32,
                                                         embed_dim=32, n_embed=32))
    return AlitTokenizer(cfg, halting="off").eval()


def _direct_attention(model, tokens: torch.Tensor) -> list[torch.Tensor]:
    """Head-averaged decoder attention [B, L, L] of every layer from the q/k projections by hand."""
    dec, n = model.decoder, tokens.shape[1]
    lat = dec.decoder_embed(tokens) + dec.latent_token_positional_embedding[:n]
    n2d = model.cfg.num_2d
    masked = torch.cat([model.decoder_class_embedding, model.decoder_mask_token.reshape(1, -1).expand(n2d, -1)])
    seq = dec.ln_pre(torch.cat([(masked + model.decoder_positional_embedding)[None].expand(len(tokens), -1, -1), lat], 1))
    out = []
    for block in dec.transformer:
        h = block.ln_1(seq)
        w, b = block.attn.in_proj_weight, block.attn.in_proj_bias
        width, heads = h.shape[-1], block.attn.num_heads
        q = (h @ w[:width].T + b[:width]).unflatten(-1, (heads, width // heads)).transpose(1, 2)
        k = (h @ w[width : 2 * width].T + b[width : 2 * width]).unflatten(-1, (heads, width // heads)).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(width // heads), dim=-1)  # [B, H, L, L]
        out.append(att.mean(1))
        seq, _ = block(seq)
    return out


def test_corrected_maps_are_the_decoder_attention_to_token_j(two_layer_model):
    model = two_layer_model
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    r = model.rollout(x, [8], attention="corrected")
    maps = r[8].attention  # [B, layers, N, g, g]
    assert maps.shape == (2, 2, 8, 4, 4)
    direct = _direct_attention(model, r[8].tokens)
    n2d = model.cfg.num_2d
    for layer, a in enumerate(direct):  # the last block included
        want = a[:, 1 : 1 + n2d, 1 + n2d : 1 + n2d + 8].transpose(1, 2).reshape(2, 8, 4, 4)
        torch.testing.assert_close(maps[:, layer], want, rtol=1e-4, atol=1e-6)
    # Head-averaged softmax rows: each 2D query's weights over all keys sum to one.
    torch.testing.assert_close(direct[-1].sum(-1), torch.ones(2, direct[-1].shape[1]))


def test_official_notebook_indexing_is_shifted_by_one(two_layer_model):
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    corr = two_layer_model.rollout(x, [12], attention="corrected")[12].attention
    nb = two_layer_model.rollout(x, [12], attention="official-notebook")[12].attention
    torch.testing.assert_close(nb[:, :, 1:], corr[:, :, :-1])  # notebook panel j shows token j-1
    full = two_layer_model.rollout(x, [12], attention="full")[12].extras["attention_full"]
    n2d = two_layer_model.cfg.num_2d
    last_2d = full[:, :, 1 : 1 + n2d, n2d].reshape(1, 2, 4, 4)  # panel 0: the last 2D mask token
    torch.testing.assert_close(nb[:, :, 0], last_2d)


def test_overlay_maps_is_bilinear_then_min_max():
    rng = np.random.default_rng(0)
    a = rng.random((3, 4, 4)).astype(np.float32)
    a[2] = 0.5  # constant map
    out = overlay_maps(a, 16)
    up = F.interpolate(torch.from_numpy(a)[None], size=(16, 16), mode="bilinear", align_corners=False)[0].numpy()
    for j in range(2):
        want = (up[j] - up[j].min()) / (up[j].max() - up[j].min())
        np.testing.assert_allclose(out[j], want, atol=1e-6)
        assert out[j].min() == 0.0 and out[j].max() == pytest.approx(1.0)
    assert out.shape == (3, 16, 16) and np.all(out[2] == 0.0)


def test_label_upsampling_and_grid():
    cells = np.arange(16).reshape(4, 4)
    np.testing.assert_array_equal(upsample_labels(cells, 32), np.kron(cells, np.ones((8, 8), int)))
    assert upsample_labels(cells, 30).shape == (30, 30)
    assert set(np.unique(upsample_labels(cells, 30))) == set(range(16))
    for n, shape in ((8, (2, 4)), (64, (8, 8)), (7, (1, 7)), (12, (3, 4))):
        g = grid_partition(n, 64)
        assert len(np.unique(g)) == n
        assert len(np.unique(g[:, 0])) == shape[0] and len(np.unique(g[0])) == shape[1]


def test_layer_choice():
    assert default_layer(8) == 6 and default_layer(2) == 0 and default_layer(1) == 0
    assert check_layer(None, 8) == 6 and check_layer(-1, 8) == 7 and check_layer(3, 8) == 3
    with pytest.raises(Exception, match="out of range"):
        check_layer(8, 8)


def test_attention_viz_cli_writes_figure_and_maps(tiny_ckpt, tmp_path, monkeypatch):
    monkeypatch.delenv("ALIT_EVAL_FIGURE_FORMATS", raising=False)  # the default: PNG and PDF
    rng = np.random.default_rng(0)
    img = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(img)  # non-square: resize + crop
    out = tmp_path / "viz"
    res = CliRunner().invoke(app, ["--device", "cpu", "attention-viz", str(img), "--ckpt", str(tiny_ckpt),
                                   "--budgets", "4,16", "--tokens", "0,2,15", "--show-budget",
                                   "--indexing", "official-notebook", "--out", str(out)])
    assert res.exit_code == 0, res.output
    stem = "photo_layer0_official-notebook"
    for ext in ("png", "pdf"):
        assert (out / "figures" / f"{stem}.{ext}").is_file(), ext
    for ext in ("npz", "json"):
        assert (out / f"{stem}.{ext}").is_file(), ext
    meta = json.loads((out / f"{stem}.json").read_text())
    assert meta["layer"] == 0 and meta["n_layers"] == 1 and meta["tokens"] == [0, 2, 15]
    z = np.load(out / f"{stem}.npz")
    assert z["attention_4"].shape == (4, 4, 4) and z["attention_16"].shape == (16, 4, 4)
    assert z["image"].shape == (32, 32, 3)
    with Image.open(out / "figures" / f"{stem}.png") as im:
        assert im.width > im.height > 50  # two rows of image panels, six columns


@pytest.mark.figures
def test_attention_viz_defaults_and_errors(tiny_ckpt, tmp_path):
    res = CliRunner().invoke(app, ["--device", "cpu", "--results-dir", str(tmp_path), "attention-viz",
                                   "--ckpt", str(tiny_ckpt), "--budgets", "8"])
    assert res.exit_code == 0, res.output
    runs = list((tmp_path / "attention-viz").iterdir())
    assert len(runs) == 1 and (runs[0] / "figures" / "demo-scenes_000000_layer0_corrected.png").is_file()
    assert (runs[0] / "meta.json").is_file() and (runs[0] / "config.json").is_file()
    bad = CliRunner().invoke(app, ["--device", "cpu", "attention-viz", "--ckpt", str(tiny_ckpt), "--budgets", "8",
                                   "--tokens", "9", "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "token indices must lie in 0..7" in str(bad.exception)


@pytest.mark.figures
def test_attention_viz_run_folders_pages_and_overwrite(tiny_ckpt, tmp_path, monkeypatch):
    """Another checkpoint or options get another run folder (nothing overwritten); same options reuse
    the folder; a fixed --run-id with other options needs --overwrite; many tokens go to pages."""
    from alit_eval.analysis.attention_viz import default_tokens, pages

    base = ["--device", "cpu", "--results-dir", str(tmp_path), "attention-viz", "--ckpt", str(tiny_ckpt)]
    for extra in (["--budgets", "8"], ["--budgets", "8", "--indexing", "official-notebook"], ["--budgets", "8"]):
        res = CliRunner().invoke(app, base + extra)
        assert res.exit_code == 0, res.output
    runs = sorted((tmp_path / "attention-viz").iterdir())
    assert len(runs) == 2  # the third call reopened the first folder (finished: its files are listed, not redrawn)
    assert "figure:" in res.output and "demo-scenes_000000_layer0_corrected.png" in res.output
    res = CliRunner().invoke(app, base + ["--budgets", "4,16", "--tokens-per-page", "5", "--show-budget"])
    assert res.exit_code == 0, res.output
    new = [r for r in (tmp_path / "attention-viz").iterdir() if r not in runs]
    assert len(new) == 1
    pngs = sorted(f"figures/{p.name}" for p in (new[0] / "figures").glob("*.png"))
    assert pngs == [f"figures/demo-scenes_000000_layer0_corrected_p{k}.png" for k in (1, 2, 3, 4)]  # 16 tokens / 5
    meta = json.loads((new[0] / "meta.json").read_text())
    assert meta["extra"]["figures"]["demo-scenes_000000"] == pngs
    with Image.open(new[0] / pngs[0]) as im:
        assert im.width <= 2000
    wide = CliRunner().invoke(app, base + ["--budgets", "4,16", "--tokens-per-page", "16", "--show-budget"])
    assert wide.exit_code == 0, wide.output
    page = [p for p in wide.output.split() if p.endswith(".png")]
    with Image.open(page[0]) as im:  # 16 token columns + 4 lead columns still fit in ~2000 px
        assert 1500 < im.width <= 2000
    monkeypatch.setenv("ALIT_EVAL_FIGURE_FORMATS", "none")  # the run-id rules below do not look at figures
    fixed = base + ["--budgets", "8", "--run-id", "mine"]
    assert CliRunner().invoke(app, fixed).exit_code == 0
    clash = CliRunner().invoke(app, fixed + ["--layer", "-1"])
    assert clash.exit_code != 0 and "--overwrite" in str(clash.exception)
    assert CliRunner().invoke(app, fixed + ["--layer", "-1", "--overwrite"]).exit_code == 0
    # defaults: every token up to 64, else the first 8 of every iteration
    assert default_tokens([8, 16], 16) == list(range(16))
    alit = default_tokens([32, 64, 96, 128, 160, 192, 224, 256], 256)
    assert len(alit) == 64 and alit[:9] == [0, 1, 2, 3, 4, 5, 6, 7, 32] and alit[-1] == 231
    assert pages(list(range(10)), 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_checkpoint_label_uses_parent_folder_for_checkpoint_files():
    from alit_eval.results.labels import checkpoint_label, title_from_meta

    assert checkpoint_label("checkpoint", "runs/alit_b32/checkpoint.pt") == "alit_b32"
    name = "alit_small.vqgan_quantized.in100"
    assert checkpoint_label(name, "cache/x/alit.pth") == name
    assert checkpoint_label("model", "runs/a/model.safetensors") == "model"
    title = title_from_meta({"checkpoint": {"name": "checkpoint", "path": "r/exp7/checkpoint.pth"},
                             "dataset": {"source": "/data/imagenet/val"}, "n_images": 50}, what="fid")
    assert title == "fid: exp7 on val (n=50)"
