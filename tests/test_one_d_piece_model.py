"""One-D-Piece / TiTok model behaviour on tiny random models: budgets, prefix semantics, invariances,
checkpoint recognition and errors, config validation, and the family ingredients."""

from __future__ import annotations

import pytest
import torch

from alit_eval.errors import CheckpointError
from alit_eval.tokenizers.base import AdaptiveTokenizer, BudgetError
from alit_eval.tokenizers.one_d_piece.checkpoint import (
    convert_official,
    from_state_dict,
    load_one_d_piece,
    looks_like_one_d_piece,
)
from alit_eval.tokenizers.one_d_piece.config import PRESETS, SIZES, OneDPieceConfig
from alit_eval.tokenizers.one_d_piece.family import (
    FLOP_COMPONENTS,
    bits_per_token,
    describe,
    flop_components,
    flops_per_budget,
)
from alit_eval.tokenizers.one_d_piece.model import OneDPieceTokenizer


def tiny_config(**kw) -> OneDPieceConfig:
    base = dict(width=32, depth=1, heads=2, num_latent_tokens=8, image_size=32, patch_size=8, codebook_size=16,
                pixel_hidden=32, pixel_channel_mult=(1, 1, 2, 2), pixel_z_channels=8, pixel_codebook_size=16)
    return OneDPieceConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def model() -> OneDPieceTokenizer:
    torch.manual_seed(0)
    m = OneDPieceTokenizer(tiny_config()).eval()
    with torch.no_grad():  # sharper random weights (as the official fixture's edits), so prefixes and
        # images give distinct outputs; with the plain init the tokens barely depend on the image
        m.encoder.transformer[0].attn.in_proj_weight.mul_(4)
        m.encoder.transformer[0].attn.out_proj.weight.mul_(64)
        m.decoder.decoder_embed.weight.mul_(8)
        m.decoder.ffn[2].weight.mul_(8)
        m.pixel_quantize.embedding.weight.mul_(64)
    return m


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_protocol_and_budgets(model):
    assert isinstance(model, AdaptiveTokenizer)
    assert model.budgets == tuple(range(1, 9))
    titok = OneDPieceTokenizer(tiny_config(family="titok"))
    assert titok.budgets == (8,)
    assert OneDPieceTokenizer(tiny_config(family="titok", strict_length=False)).budgets == tuple(range(1, 9))


@pytest.mark.parametrize("bad", [[0], [9], [3, 100], [-1]])
def test_budget_out_of_range_names_the_range(model, images, bad):
    with pytest.raises(BudgetError) as e:
        model.rollout(images, bad)
    msg = str(e.value)
    assert "\n" not in msg and "from 1 to 8" in msg and "4, 5" not in msg


def test_titok_decodes_only_full_length(images):
    titok = OneDPieceTokenizer(tiny_config(family="titok")).eval()
    with pytest.raises(BudgetError, match="only its full length 8"):
        titok.rollout(images, [4])
    r = titok.rollout(images)
    assert r.budgets == [8] and r[8].reconstruction.shape == (3, 3, 32, 32)


def test_rollout_outputs_and_single_encode(model, images):
    calls = []
    handle = model.encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        r = model.rollout(images, [8, 1, 3])
    finally:
        handle.remove()
    assert calls == [1] and r.budgets == [1, 3, 8]
    out = r[3]
    assert out.tokens.shape == (3, 3, 12) and out.latent.shape == (3, 3, 12) and out.indices.shape == (3, 3)
    assert out.extras["logits"].shape == (3, 16, 16) and out.halting_mask is None
    assert out.reconstruction.min() >= 0 and out.reconstruction.max() <= 1
    assert torch.equal(out.indices, r[8].indices[:, :3])  # one encode: every prefix is a prefix
    assert model.rollout(images, [2], decode=False)[2].reconstruction is None
    # Every prefix decodes to something different, and the images differ from each other.
    assert (r[1].extras["reconstruction_raw"] - r[8].extras["reconstruction_raw"]).abs().max() > 1e-2
    assert (r[8].extras["reconstruction_raw"][0] - r[8].extras["reconstruction_raw"][1]).abs().max() > 1e-2


def test_prefix_decode_sees_only_first_k_tokens_and_positions(model, images):
    r = model.rollout(images, [3])
    with torch.no_grad():  # the decoder input at k is exactly the first k quantised tokens
        logits, _ = model.decode_logits(r.extras["z_quantized"][:, :3])
    assert torch.equal(logits, r[3].extras["logits"])
    pos = model.decoder.latent_token_positional_embedding
    saved = pos.detach().clone()
    try:
        with torch.no_grad():
            pos[3:] += 5.0  # rows k.. are never used at prefix k
            assert torch.equal(model.rollout(images, [3])[3].extras["logits"], r[3].extras["logits"])
            pos[2] += 5.0  # row k-1 is
            assert not torch.allclose(model.rollout(images, [3])[3].extras["logits"], r[3].extras["logits"])
    finally:
        with torch.no_grad():
            pos.copy_(saved)


def test_batch_size_invariance(model, images):
    full = model.rollout(images, [2, 8])
    for i in range(len(images)):
        one = model.rollout(images[i : i + 1], [2, 8])
        for k in (2, 8):
            assert torch.equal(one[k].indices[0], full[k].indices[i])
            assert (one[k].extras["reconstruction_raw"][0] - full[k].extras["reconstruction_raw"][i]).abs().max() < 1e-4


def test_decode_indices_matches_rollout(model, images):
    r = model.rollout(images, [5])
    assert (model.decode_indices(r[5].indices) - r[5].reconstruction).abs().max() < 1e-4
    with pytest.raises(BudgetError, match="from 1 to 8"):
        model.decode_indices(torch.zeros(1, 9, dtype=torch.long))


def test_attention_maps(model, images):
    r = model.rollout(images, [4], attention="full")
    maps, full = r[4].attention, r[4].extras["attention_full"]
    assert maps.shape == (3, 1, 4, 4, 4) and full.shape == (3, 1, 1 + 16 + 4, 1 + 16 + 4)
    assert torch.allclose(full.sum(-1), torch.ones(()), atol=1e-5)
    # Token j's map is column 1 + 16 + j over the 2D query rows 1..16, on the row-major grid.
    assert torch.equal(maps[:, 0, 2].reshape(3, 16), full[:, 0, 1:17, 1 + 16 + 2])
    with pytest.raises(ValueError):
        model.rollout(images, [4], attention="official-notebook")


def test_config_validation_and_presets():
    for bad in (dict(family="karl"), dict(heads=3), dict(pixel_hidden=48), dict(patch_size=16),
                dict(num_latent_tokens=0), dict(preset="titok_xl")):
        with pytest.raises(ValueError):
            tiny_config(**bad)
    with pytest.raises(ValueError, match="valid"):
        OneDPieceConfig.from_preset("one_d_piece_xl")
    assert set(PRESETS) == {"one_d_piece_s256", "one_d_piece_b256", "one_d_piece_l256",
                            "titok_s128", "titok_b64", "titok_l32"}
    for name, (family, size, n, _yaml) in PRESETS.items():
        cfg = OneDPieceConfig.from_preset(name)
        assert (cfg.family, (cfg.width, cfg.depth, cfg.heads), cfg.num_latent_tokens) == (family, SIZES[size], n)
        assert OneDPieceConfig.from_dict(cfg.to_dict()) == cfg
        assert bits_per_token(cfg) == 12.0
    assert describe(OneDPieceConfig.from_preset("titok_l32")).startswith("TiTok L (1024w/24L) 32 tokens, fixed 32")
    assert "prefix 1..256" in describe(OneDPieceConfig.from_preset("one_d_piece_b256"))


def test_checkpoint_round_trip_and_errors(model, images, tmp_path):
    sd = model.state_dict()
    assert looks_like_one_d_piece(sd)
    path = tmp_path / "pytorch_model.bin"
    torch.save({f"module.{k}": v for k, v in sd.items()}, path)  # DDP-prefixed, released pickle layout
    loaded = load_one_d_piece(path, model.cfg)
    assert torch.equal(loaded.rollout(images[:1], [8])[8].indices, model.rollout(images[:1], [8])[8].indices)
    assert set(convert_official(sd)) == set(sd)
    with pytest.raises(CheckpointError, match="cannot infer.*heads"):
        from_state_dict(sd)  # width 32 is no official size: heads unknown
    broken = {k: v for k, v in sd.items() if k != "decoder.ln_post.bias"}
    broken["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as e:
        from_state_dict(broken, model.cfg)
    assert "1 missing: decoder.ln_post.bias" in str(e.value) and "1 unexpected: extra.weight" in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match="wrong shape"):
        from_state_dict(sd, tiny_config(num_latent_tokens=4))
    stage1 = {k: v for k, v in sd.items() if not k.startswith("pixel_")}
    with pytest.raises(CheckpointError, match="stage-1"):
        from_state_dict(stage1, model.cfg)


def test_alit_checkpoint_is_not_one_d_piece(tiny_ckpt):
    from alit_eval.tokenizers.checkpoints import read_checkpoint

    sd, _ = read_checkpoint(tiny_ckpt)
    assert not looks_like_one_d_piece(sd)
    with pytest.raises(CheckpointError, match="not a One-D-Piece/TiTok checkpoint"):
        from_state_dict(sd)


def test_closed_form_flops_match_the_flop_counter(model):
    from alit_eval.analysis.flops import count_flops

    x = torch.rand(1, 3, 32, 32)
    for k in (1, 8):
        counted = count_flops(lambda: model.rollout(x, [k]), flop_components(model))
        expected = flops_per_budget(model.cfg, k)
        assert {c: counted[c] for c in FLOP_COMPONENTS} == {c: expected[c] for c in FLOP_COMPONENTS}
        assert counted["total"] == expected["total"] and counted["other"] == 0
    assert flops_per_budget(model.cfg, 8)["decoder"] > flops_per_budget(model.cfg, 1)["decoder"]


def test_config_from_official_yaml_dict():
    from alit_eval.tokenizers.one_d_piece.config import config_from_official_yaml

    def yaml_dict(kind: str, size: str, n: int, **extra) -> dict:
        vq = dict(codebook_size=4096, token_size=12, use_l2_norm=True, vit_enc_model_size=size,
                  vit_dec_model_size=size, vit_enc_patch_size=16, vit_dec_patch_size=16, num_latent_tokens=n, **extra)
        return {"model": {"type": kind, "vq_model": vq}}

    assert config_from_official_yaml(yaml_dict("titok", "large", 32)) == OneDPieceConfig.from_preset("titok_l32")
    odp = config_from_official_yaml(yaml_dict("one_d_piece", "base", 256, strict_length_assertion=False))
    assert odp == OneDPieceConfig.from_preset("one_d_piece_b256", strict_length=False)
    assert odp.budgets == tuple(range(1, 257))
    with pytest.raises(ValueError, match="model.type"):
        config_from_official_yaml({"model": {"type": "alit"}})
