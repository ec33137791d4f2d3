"""KARL model tests without the fixtures' numbers: official layouts on the meta device, batch-size
invariance with tiny models (VQGAN/VAE bases, quantised/continuous), ε bins, errors, family ingredients."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from alit_eval.errors import CheckpointError
from alit_eval.tokenizers.base import BudgetError
from alit_eval.tokenizers.base2d.config import Base2DConfig
from alit_eval.tokenizers.checkpoints import read_checkpoint, save_tokenizer, unwrap
from alit_eval.tokenizers.karl import family
from alit_eval.tokenizers.karl.checkpoint import from_state_dict, load_karl, looks_like_karl
from alit_eval.tokenizers.karl.config import VARIANTS, KarlConfig, infer_config
from alit_eval.tokenizers.karl.model import KarlTokenizer
from conftest import shared_dir

ALIT_KEYS = shared_dir() / "reference" / "alit_official_keys.txt"
# karl_official.md §1 "Sizes": state_dict entries without / with gan_losses, params without gan_losses (M).
SIZES = {"karl_small_vqgan_quantized": (391, 831, 270.91), "karl_small_vqgan_continuous": (390, 830, 270.86),
         "karl_small_vae_quantized": (535, 975, 280.97), "karl_small_vae_continuous": (534, 974, 280.92)}


def _alit_keys(variant: str) -> dict[str, tuple[int, ...]]:
    keys, inside = {}, False
    for line in ALIT_KEYS.read_text().splitlines():
        if line.startswith("# VARIANT:"):
            inside = variant in line
        elif inside and line and not line.startswith("#"):
            key, shape = line.split("\t")[:2]
            keys[key] = tuple(int(s) for s in re.findall(r"\d+", shape))
    return keys


def official_karl_layout(variant: str) -> dict[str, tuple[int, ...]]:
    """The released file's ``ema`` keys: the KARL table of karl_official.md §1 (w = 1024, 8 layers) plus
    the base tokenizer and ``gan_losses`` keys, identical to ALIT's (read from ALIT's official listing)."""
    v = VARIANTS[variant]
    w, cb = 1024, 256 if v["base"] == "vqgan" else 16
    out = 1024 if v["base"] == "vqgan" else 16
    keys = {"encoder_positional_embedding": (w, 64, 64), "decoder_positional_embedding": (w, 64, 64),
            "decoder_mask_token": (1, 1, w), "latent_tokens": (512, w),
            "decoder_latent_tokens_timestep_embed": (512, w),
            "rec_loss_embeddings": (19, w), "halting_mlp.0.weight": (512, w), "halting_mlp.0.bias": (512,),
            "halting_mlp.2.weight": (1, 512), "halting_mlp.2.bias": (1,), "pre_quantizer_mlp.weight": (12, w),
            "pre_quantizer_mlp.bias": (12,), "decoder_embed.weight": (w, 12), "decoder_embed.bias": (w,),
            "decoder.ln_pre.weight": (w,), "decoder.ln_pre.bias": (w,), "decoder.ln_post.weight": (w,),
            "decoder.ln_post.bias": (w,), "decoder.ffn.0.weight": (2 * w, w), "decoder.ffn.0.bias": (2 * w,),
            "decoder.ffn.2.weight": (out, 2 * w), "decoder.ffn.2.bias": (out,),
            "patch_embed.weight": (w - cb, 3, 16, 16), "patch_embed.bias": (w - cb,)}
    for ln in ("encoder_ln_pre", "encoder_ln_post", "encoder_ln_post_halt"):
        keys |= {f"{ln}.weight": (w,), f"{ln}.bias": (w,)}
    for part in ("encoder", "decoder"):
        for i in range(8):
            p = f"{part}.transformer.{i}."
            keys |= {p + "ln_1.weight": (w,), p + "ln_1.bias": (w,), p + "attn.in_proj_weight": (3 * w, w),
                     p + "attn.in_proj_bias": (3 * w,), p + "attn.out_proj.weight": (w, w),
                     p + "attn.out_proj.bias": (w,),
                     p + "ln_2.weight": (w,), p + "ln_2.bias": (w,), p + "mlp.c_fc.weight": (4 * w, w),
                     p + "mlp.c_fc.bias": (4 * w,), p + "mlp.c_proj.weight": (w, 4 * w), p + "mlp.c_proj.bias": (w,)}
    if v["quantize"]:
        keys["quantize.embedding.weight"] = (4096, 12)
    alit = _alit_keys(f"alit_small_{v['base']}_quantized_latents.pth")
    keys |= {k: s for k, s in alit.items() if k.startswith(("base_tokenizer.", "gan_losses."))}
    return keys


@pytest.mark.skipif(not ALIT_KEYS.is_file(), reason="official ALIT key listing not available")
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_released_layouts_load_strictly_on_meta(variant):
    keys = official_karl_layout(variant)
    without, with_gan, params_m = SIZES[variant]
    assert len(keys) == with_gan and sum(not k.startswith("gan_losses.") for k in keys) == without
    ckpt = {"ema": {k: torch.empty(s, device="meta") for k, s in keys.items()}, "epoch": 199}
    sd, args = unwrap(ckpt)
    model = from_state_dict(sd, args, source=variant)
    want = KarlConfig.from_variant(variant)
    # attn_levels is irrelevant to (and not inferable for) the VQGAN base; compare the rest
    assert dataclasses.replace(model.cfg, base=want.base) == want and model.cfg.variant == variant
    base = model.cfg.base
    assert (base.ch, base.embed_dim, base.kind) == (128, want.base.embed_dim, want.base.kind)
    assert model.latent_tokens.is_meta
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == params_m
    if variant == "karl_small_vqgan_quantized":
        assert sum(p.numel() for p in model.parameters()) == 270_911_120  # fixture README, exact
    # args naming the preset agree; contradicting args are refused
    assert from_state_dict(sd, {"model": "karl_small", "base_tokenizer": VARIANTS[variant]["base"]}).cfg.heads == 8
    with pytest.raises(CheckpointError, match="quantize_latent"):
        from_state_dict(sd, {"quantize_latent": not VARIANTS[variant]["quantize"]})


def tiny_config(base: str = "vqgan", quantize: bool = True) -> KarlConfig:
    b = (Base2DConfig(kind="vqgan", ch=32, ch_mult=(1, 1, 1, 1), z_channels=32, embed_dim=32, n_embed=64)
         if base == "vqgan" else
         Base2DConfig(kind="vae", ch=32, ch_mult=(1, 1, 1, 1), z_channels=4, embed_dim=4, n_embed=0, attn_levels=(3,)))
    return KarlConfig(width=64, depth=1, heads=2, image_size=32, patch_size=8, pos_grid=8, max_tokens=24,
                      quantize=quantize, codebook_size=64, halting_hidden=16, default_budgets=(4, 8, 16), base=b)


def tiny_model(base: str = "vqgan", quantize: bool = True, seed: int = 0) -> KarlTokenizer:
    torch.manual_seed(seed)
    m = KarlTokenizer(tiny_config(base, quantize)).eval()
    with torch.no_grad():  # make ε matter and about half of the slots halt
        m.rec_loss_embeddings.normal_()
        m.halting_mlp[2].weight.mul_(40)
    return m


def _images(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("base,quantize", [("vqgan", True), ("vqgan", False), ("vae", True), ("vae", False)])
def test_batch_size_invariance(base, quantize):
    m, x = tiny_model(base, quantize), _images(4)
    eps = [0.0, 0.05, 0.09, 0.5]
    g = torch.Generator().manual_seed(7)
    batched = m.rollout(x, [4, 16], generator=g, epsilon=eps)
    g = torch.Generator().manual_seed(7)  # one stream, image by image: consecutive batch-of-one calls
    singles = [m.rollout(x[i : i + 1], [4, 16], generator=g, epsilon=eps[i]) for i in range(4)]
    assert batched[16].extras["halt_mask"].any(1).all() and not batched[16].extras["halt_mask"].all()
    for t in (4, 16):
        for i, one in enumerate(singles):
            o, b = one[t], batched[t]
            assert torch.equal(o.extras["halt_mask"][0], b.extras["halt_mask"][i])
            assert int(o.extras["num_active"][0]) == int(b.extras["num_active"][i])
            if quantize:
                assert torch.equal(o.indices[0], b.indices[i])
            assert (o.extras["reconstruction_raw"][0] - b.extras["reconstruction_raw"][i]).abs().max() < 1e-4
    if base == "vae":  # seeded: per-image generators, independent of batch composition and order
        from alit_eval.tokenizers.generators import per_image_generators
        ids = ["a", "b", "c", "d"]
        full = m.rollout(x, [8], halting="seeded", generator=per_image_generators(0, ids))[8]
        rev = m.rollout(x.flip(0), [8], halting="seeded", generator=per_image_generators(0, ids[::-1]))[8]
        assert (full.extras["decoded_code"] - rev.extras["decoded_code"].flip(0)).abs().max() < 1e-5


def test_halting_off_decodes_every_slot_and_masks_change_output():
    m, x = tiny_model(), _images(2)
    on, off = m.rollout(x, [16])[16], m.rollout(x, [16], halting="off")[16]
    assert (on.extras["num_active"] < 16).all() and (off.extras["num_active"] == 16).all()
    assert torch.equal(on.extras["halt_prob"], off.extras["halt_prob"]) and torch.equal(on.latent, off.latent)
    assert (on.extras["logits"] - off.extras["logits"]).abs().max() > 1e-3
    # masking equals dropping the halted slots (each survivor keeps its own positional row)
    keep = ~on.extras["halt_mask"][0]
    emb = m.decoder_latent_tokens_timestep_embed
    with torch.no_grad():
        lat = m.decoder_embed(on.tokens[:1, keep]) + emb[:16][keep]
        masked = m.decoder_mask_token.reshape(1, -1) + m._table(m.decoder_positional_embedding)
        seq = m.decoder.ln_pre(torch.cat([masked.unsqueeze(0), lat], 1))
        for block in m.decoder.transformer:
            seq, _ = block(seq)
        dropped = m.decoder.ffn(m.decoder.ln_post(seq[:, : m.cfg.num_2d]))
    assert (dropped[0] - on.extras["logits"][0]).abs().max() < 1e-5


def test_attention_maps_follow_definition():
    m, x = tiny_model(), _images(2)
    out = m.rollout(x, [8], attention="full", decode=False)[8]
    n2d = m.cfg.num_2d
    assert out.attention.shape == (2, 1, 8, 4, 4)
    full = out.extras["attention_full"][:, 0]  # [B, L, L]
    assert torch.allclose(full.sum(-1), torch.ones(2, n2d + 8), atol=1e-5)
    assert torch.equal(out.attention[:, 0].flatten(2), full[:, :n2d, n2d:].transpose(1, 2))
    halted = out.extras["halt_mask"]
    assert halted.any() and (out.attention[:, 0][halted] == 0).all()


def test_epsilon_bins_and_adaptive():
    m = tiny_model()
    assert m.epsilon_bins([0.0, 0.005, 0.03, 0.065, 0.08, 0.38, 0.5], 7).tolist() == [0, 0, 3, 7, 8, 18, 18]
    x = _images(2)
    res = m.adaptive(x, [0.03, 0.09], max_budget=16)
    assert res.num_tokens.tolist() == (16 - res.output.extras["halt_mask"].sum(1)).tolist()
    assert res.epsilon_bin.tolist() == [3, 8] and res.reconstruction.shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="halting"):
        m.adaptive(x, 0.05, max_budget=16, halting="off")


def test_budgets_and_bad_input():
    from alit_eval.tokenizers.base import AdaptiveTokenizer

    m = tiny_model()
    assert isinstance(m, AdaptiveTokenizer) and m.image_size == 32 and m.name == "karl"
    assert m.budgets == tuple(range(1, 25)) and m.default_budgets == (4, 8, 16)
    assert m.rollout(_images(1), decode=False).budgets == [4, 8, 16]
    assert m.rollout(_images(1), [1, 24], decode=False)[1].latent.shape == (1, 1, 64)
    for bad in ([0], [25]):
        with pytest.raises(BudgetError, match="1..24"):
            m.rollout(_images(1), bad)


def test_not_karl_and_mismatch_errors(tmp_path):
    from conftest import make_tiny_alit

    sd, meta = read_checkpoint(make_tiny_alit(tmp_path / "alit.safetensors"))
    assert not looks_like_karl(sd)
    with pytest.raises(CheckpointError, match="not a KARL checkpoint"):
        from_state_dict(sd, source="alit.safetensors")
    good = tiny_model().state_dict()
    assert looks_like_karl(good)
    partial = {k: v for k, v in good.items() if not k.startswith("decoder.ffn")}
    with pytest.raises(CheckpointError, match="missing: decoder.ffn"):
        from_state_dict(partial, config=tiny_config())
    # width 64 / depth 1 is no preset and the tiny base is not the official geometry: its GroupNorm
    # groups (and heads) cannot be inferred from the weights, so loading refuses, naming the field.
    with pytest.raises(CheckpointError, match="heads|norm_groups"):
        from_state_dict(good)


def test_safetensors_round_trip(tmp_path):
    m = tiny_model("vae", False)
    path = save_tokenizer(m, tmp_path / "k.safetensors")
    back = load_karl(path, halting="off")
    assert back.cfg == m.cfg and back.halting == "off"
    x, g = _images(1), torch.Generator().manual_seed(3)
    a = m.rollout(x, [8], generator=g, halting="off")[8].reconstruction
    b = back.rollout(x, [8], generator=torch.Generator().manual_seed(3))[8].reconstruction
    assert torch.equal(a, b)
    args = {"norm_groups": m.cfg.base.norm_groups}  # not visible in the weights of a non-official base
    assert infer_config(m.state_dict(), heads=2, image_size=32, args=args).width == 64


def test_family_ingredients():
    cfg = KarlConfig.from_variant("karl_small_vqgan_quantized")
    assert family.describe(cfg) == ("KARL karl_small, vqgan base, VQ 4096x12, w1024 d8 h8, T 1..512, "
                                    "halting p>0.75")
    assert family.bits_per_token(cfg) == 12.0
    assert family.bits_per_token(KarlConfig.from_variant("karl_small_vae_continuous")) is None
    from alit_eval.analysis.flops import count_flops

    m, x = tiny_model(), _images(1)
    counted = count_flops(lambda: m.rollout(x, [8], decode=False), family.flop_components(m))
    closed = family.transformer_flops(m.cfg, 8)
    for name in ("encoder_transformer", "halting_head", "latent_decoder"):
        assert counted[name] == closed[name], name
