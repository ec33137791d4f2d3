"""FlexTok beyond parity: randomness and batching, decode options, bad input, registry and loading.

Uses a tiny random-weight FlexTok (32 px images, 16 registers) so every test runs in seconds.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time

import pytest
import torch

from alit_eval.errors import AlitEvalError, CheckpointError, ConfigError
from alit_eval.tokenizers.base import BudgetError
from alit_eval.tokenizers.checkpoints import save_tokenizer
from alit_eval.tokenizers.family_loading import load_any
from alit_eval.tokenizers.family_queries import family_of
from alit_eval.tokenizers.flextok.config import FlexTokConfig
from alit_eval.tokenizers.flextok.model import FlexTokTokenizer
from alit_eval.tokenizers.flextok.official_config import config_from_official
from alit_eval.tokenizers.generators import per_image_generators
from conftest import shared_dir

TINY = dict(scaling_factor=0.7, sample_posterior=False, null_cond="learned", image_size=32, vae_channels=(32, 32),
            vae_layers_per_block=1, latent_channels=4, posemb_grid=8, enc_width=32, enc_depth=1, enc_head_dim=16,
            dec_width=32, dec_depth=2, dec_head_dim=8, n_registers=16, fsq_levels=(4, 3))
HUB = shared_dir() / "fixtures" / "official_flextok" / "flextok_tiny" / "hub"


def make_tiny_flextok(seed: int = 0, **overrides) -> FlexTokTokenizer:
    torch.manual_seed(seed)
    model = FlexTokTokenizer(FlexTokConfig(**{**TINY, **overrides}), name="tiny_flextok", steps=3)
    with torch.no_grad():  # zero-initialised tables would make every register alike
        for name, p in model.named_parameters():
            if name.endswith(("registers", "posembs", "dropout_mask_token", "nullcond")):
                p.normal_(0, 1.0)
    return model.eval()


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # One torch thread: on a shared 2-core machine oversubscribed threads made these decodes ~8x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model():
    return make_tiny_flextok()


@pytest.fixture(scope="module")
def images():
    return torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_protocol_budgets_and_outputs(model, images):
    assert model.budgets == tuple(range(1, 17)) and model.image_size == 32
    ro = model.rollout(images[:2], [16, 1, 4], generator=per_image_generators(0, ["a", "b"]))
    assert ro.budgets == [1, 4, 16]
    out = ro[4]
    assert out.indices.shape == (2, 4) and out.tokens.shape == (2, 4, 2) and out.latent.shape == (2, 4, 2)
    assert out.reconstruction.shape == (2, 3, 32, 32) and 0 <= out.reconstruction.min() <= out.reconstruction.max() <= 1
    assert int(out.indices.max()) < 12
    # every prefix decodes from the same tokens; different k give different images
    assert not torch.allclose(ro[1].reconstruction, ro[16].reconstruction)


def test_seeded_decode_is_batch_size_invariant(model, images):
    ids = [f"img{i}" for i in range(5)]
    full = model.rollout(images, [2, 16], generator=per_image_generators(3, ids))
    parts = [model.rollout(images[s], [2, 16], generator=per_image_generators(3, ids[s]))
             for s in (slice(0, 1), slice(1, 3), slice(3, 5))]
    for k in (2, 16):
        joined = torch.cat([p[k].extras["reconstruction_raw"] for p in parts])
        torch.testing.assert_close(joined, full[k].extras["reconstruction_raw"], atol=2e-5, rtol=0)
    assert torch.equal(torch.cat([p.extras["noise"] for p in parts]), full.extras["noise"])


def test_official_draw_is_one_generator_in_list_order(model):
    one = model.draw_noise(3, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    expected = torch.cat([torch.randn((1, 4, 16, 16), generator=g) for _ in range(3)])
    assert torch.equal(one, expected)
    per_image = model.draw_noise(3, [torch.Generator().manual_seed(5) for _ in range(3)])
    assert torch.equal(per_image[1], per_image[0]) and not torch.equal(one[1], one[0])


def test_official_noise_policy_uses_the_global_stream(model, images):
    gens = per_image_generators(0, ["a", "b"])
    torch.manual_seed(123)
    a = model.rollout(images[:2], [2], generator=gens, noise="official")
    torch.manual_seed(123)
    b = model.rollout(images[:2], [2], generator=None, noise="official")
    assert torch.equal(a.extras["noise"], b.extras["noise"])
    # without generators the default policy seeds each image from its content: batch-independent
    c = model.rollout(images[:2], [2])
    assert torch.equal(c.extras["noise"][1:], model.rollout(images[1:2], [2]).extras["noise"])
    assert not torch.equal(a.extras["noise"], model.rollout(images[:2], [2], generator=gens).extras["noise"])


def test_batched_k_equals_one_decode_per_k(model, images):
    """All k in one decoder batch per step (cond and uncond together) = the official one call per k."""
    gens = lambda: per_image_generators(1, ["x", "y"])  # noqa: E731
    together = model.rollout(images[:2], [1, 7, 16], generator=gens(), guidance=3.0, apg=True)
    for k in (1, 7, 16):
        alone = model.rollout(images[:2], [k], generator=gens(), guidance=3.0, apg=True)
        torch.testing.assert_close(alone[k].extras["latents"], together[k].extras["latents"], atol=2e-5, rtol=0)


def test_guidance_one_skips_the_unconditional_pass_and_apg(model, images):
    gens = lambda: per_image_generators(2, ["x"])  # noqa: E731
    a = model.rollout(images[:1], [5], generator=gens(), guidance=1.0, apg=True)
    b = model.rollout(images[:1], [5], generator=gens(), guidance=1.0, apg=False)
    assert torch.equal(a[5].extras["latents"], b[5].extras["latents"])
    c = model.rollout(images[:1], [5], generator=gens(), guidance=4.0, apg=False)
    assert not torch.allclose(a[5].extras["latents"], c[5].extras["latents"])


def test_injected_noise_replaces_the_draw(model, images):
    noise = torch.randn(2, 4, 16, 16)
    a = model.rollout(images[:2], [3], initial_noise=noise, generator=per_image_generators(0, ["p", "q"]))
    b = model.rollout(images[:2], [3], initial_noise=noise, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a[3].extras["latents"], b[3].extras["latents"])


@pytest.mark.parametrize("kwargs,match", [
    ({"guidance": float("nan")}, "guidance"), ({"guidance": -1.0}, "guidance"), ({"steps": 0}, "steps"),
    ({"steps": 2.5}, "steps"), ({"apg": "yes"}, "APG"),
])
def test_bad_decode_options_are_one_line(model, images, kwargs, match):
    with pytest.raises(AlitEvalError, match=match) as e:
        model.rollout(images[:1], [1], **kwargs)
    assert "\n" not in str(e.value)


def test_prefix_out_of_range(model, images):
    with pytest.raises(BudgetError, match="from 1 to 16"):
        model.rollout(images[:1], [17])
    with pytest.raises(BudgetError, match="from 1 to 16"):
        model.rollout(images[:1], [0])


def test_hostile_sizes_refused_before_building():
    start = time.perf_counter()
    for bad in ({"dec_depth": 10 ** 6}, {"enc_width": 10 ** 9}, {"n_registers": 10 ** 7}, {"fsq_levels": (10 ** 6,) * 8},
                {"scaling_factor": float("nan")}, {"null_cond": "bogus"}, {"dec_head_dim": 7}):
        with pytest.raises(ConfigError):
            FlexTokConfig(**{**TINY, **bad})
    assert time.perf_counter() - start < 1.0
    with pytest.raises(ConfigError, match="scaling_factor"):
        FlexTokConfig.from_preset("flextok_d18_d28_in1k", sample_posterior=False, null_cond="zero")


def _official_config() -> dict:
    if not (HUB / "config.json").is_file():
        pytest.skip("official FlexTok fixture not found")
    return json.loads((HUB / "config.json").read_text())


def test_unknown_target_and_unimplemented_setting_are_refused():
    from alit_eval.tokenizers.checkpoints import read_checkpoint

    sd, _ = read_checkpoint(HUB / "model.safetensors") if (HUB / "model.safetensors").is_file() else ({}, {})
    cfg = _official_config()
    evil = json.loads(json.dumps(cfg))
    evil["decoder"]["module_dict"]["dec_time_embedder"]["_target_"] = "os.system"
    with pytest.raises(ConfigError, match="unknown _target_ 'os.system'"):
        config_from_official(evil, sd)
    odd = json.loads(json.dumps(cfg))
    odd["encoder"]["module_dict"]["enc_transformer"]["qkv_bias"] = True
    with pytest.raises(ConfigError, match="qkv_bias"):
        config_from_official(odd, sd)
    unknown = json.loads(json.dumps(cfg))
    del unknown["vae"]["scaling_factor"]
    with pytest.raises(ConfigError, match="will not guess"):
        config_from_official(unknown, sd)


def test_metadata_config_disagreeing_with_tensors_is_one_line(tmp_path):
    from safetensors.torch import load_file, save_file

    if not (HUB / "model.safetensors").is_file():
        pytest.skip("official FlexTok fixture not found")
    cfg = _official_config()
    cfg["decoder"]["module_dict"]["dec_transformer"]["depth"] = 4  # the file has 3 decoder blocks
    meta = {k: str(v) for k, v in cfg.items()}
    path = tmp_path / "model.safetensors"
    save_file(load_file(str(HUB / "model.safetensors")), str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="does not match the FlexTok config.*missing") as e:
        load_any(path)
    assert "\n" not in str(e.value)
    (path.with_name("model2.safetensors")).write_bytes(b"")
    save_file(load_file(str(HUB / "model.safetensors")), str(tmp_path / "bare.safetensors"))
    with pytest.raises(ConfigError, match="carries no FlexTok config"):
        load_any(tmp_path / "bare.safetensors")


def test_registry_loads_official_file_and_own_format(tmp_path):
    if not (HUB / "model.safetensors").is_file():
        pytest.skip("official FlexTok fixture not found")
    tok = load_any(HUB / "model.safetensors", guidance=3.0)
    fam = family_of(tok)
    assert fam.name == "flextok" and tok.decode_options() == {"steps": 20, "guidance": 3.0, "apg": True,
                                                              "noise": "seeded"}
    with pytest.raises(AlitEvalError, match="--guidance nan"):
        load_any(HUB / "model.safetensors", guidance=float("nan"))
    assert fam.bits(tok.cfg) == pytest.approx(math.log2(64000))
    assert "FlexTok d2-d3" in fam.describe_config(tok.cfg)
    again = load_any(save_tokenizer(tok, tmp_path / "own.safetensors"))
    assert again.cfg == tok.cfg
    sd = tok.state_dict()
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in sd.items())
    with pytest.raises(AlitEvalError, match="--heads does not apply"):
        load_any(HUB / "model.safetensors", heads=4)


def test_attention_maps_definition(model, images):
    ro = model.rollout(images[:2], [3, 16], attention=True, generator=per_image_generators(0, ["a", "b"]))
    maps = ro[3].attention
    assert maps.shape == (2, 2, 3, 8, 8)  # [B, decoder blocks, k, grid, grid]
    assert float(maps.min()) >= 0 and float(ro[16].attention.sum(dim=2).max()) <= 1 + 1e-5
    with pytest.raises(AlitEvalError, match="attention"):
        model.rollout(images[:1], [1], attention="full")


def test_sampled_posterior_per_image_is_batch_invariant(images):
    m = make_tiny_flextok(sample_posterior=True)
    ids = [f"i{j}" for j in range(3)]
    full = m.rollout(images[:3], [2], generator=per_image_generators(0, ids), decode=False)
    one = m.rollout(images[1:2], [2], generator=per_image_generators(0, ids[1:2]), decode=False)
    assert torch.equal(full[2].indices[1:2], one[2].indices)
    det = dataclasses.replace(m.cfg, sample_posterior=False)
    assert det.sample_posterior is False


def test_row_chunks_do_not_change_the_decode(model, images, monkeypatch):
    from alit_eval.tokenizers.flextok import model as model_module

    gens = lambda: per_image_generators(4, ["a", "b"])  # noqa: E731
    whole = model.rollout(images[:2], [1, 9], generator=gens(), guidance=2.0)
    monkeypatch.setattr(model_module, "MAX_ROWS", 3)
    chunked = model.rollout(images[:2], [1, 9], generator=gens(), guidance=2.0)
    for k in (1, 9):
        torch.testing.assert_close(chunked[k].extras["latents"], whole[k].extras["latents"], atol=2e-5, rtol=0)


def test_metadata_is_parsed_as_literals_only():
    from alit_eval.tokenizers.flextok.official_config import MAX_METADATA_CHARS, parse_metadata

    assert parse_metadata({"format": "pt"}) is None  # not a FlexTok config at all
    assert parse_metadata({"vae": "{'scaling_factor': 1.5, 'hf_hub_path': None}"}) == {
        "vae": {"scaling_factor": 1.5, "hf_hub_path": None}}
    for evil in ("__import__('os').system('echo hi')", "[" * 100000, "x" * (MAX_METADATA_CHARS + 1)):
        with pytest.raises(ConfigError, match="vae") as e:
            parse_metadata({"vae": evil})
        assert "\n" not in str(e.value)


def test_closed_form_flops_match_the_flop_counter(model):
    from alit_eval.analysis.flops import count_flops
    from alit_eval.tokenizers.family_queries import family_of
    from alit_eval.tokenizers.flextok.family import flop_components
    from alit_eval.tokenizers.flextok.flops import flops_per_budget

    x = torch.rand(1, 3, 32, 32)
    for k, g in ((4, 1.0), (16, 3.0)):
        counted = count_flops(lambda: model.rollout(x, [k], steps=2, guidance=g), flop_components(model))
        expected = flops_per_budget(model.cfg, k, steps=2, guidance=g)
        assert counted["other"] == 0 and {c: counted[c] for c in expected} == expected
    model.family = "flextok"
    assert family_of(model).flops(model.cfg, 4, {"steps": 2, "guidance": 3.0}) == flops_per_budget(
        model.cfg, 4, steps=2, guidance=3.0)
