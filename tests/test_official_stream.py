"""The ``official`` halting stream starts where the official ``evaluate_rfid.py``'s does (issue 18).

The official script seeds 0, then builds the model (base tokenizer, ALIT, 8 LPIPS/PatchGAN loss
modules), then draws its halting masks. The reference here is a test-local *replica* of that
construction built from real ``torch.nn`` modules and real ``torch.nn.init`` calls in the official
order (written from the official sources named in `alit_eval.tokenizers.alit.halting`), independent of
the closed-form draw count the package uses. Its order and initialisers are checked against the
fixture checkpoint, whose weights the official code generated from ``torch.manual_seed(1234)``
(fixture README: seed, build the base tokenizer, then ALIT without the loss modules).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from alit_eval.tokenizers.alit import halting
from alit_eval.tokenizers.base2d.klvae import KLVAE
from alit_eval.tokenizers.base2d.vqgan import VQGAN
from alit_eval.tokenizers.checkpoints import load_alit_checkpoint, read_checkpoint

VARIANTS = ["vqgan_quantized", "vae_continuous"]


class _Block(nn.Module):
    """Official ResidualAttentionBlock's parameterised layers, in its registration order."""

    def __init__(self, w: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(w)
        self.attn = nn.MultiheadAttention(w, heads)
        self.ln_2 = nn.LayerNorm(w)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(w, 4 * w))
        self.mlp.add_module("gelu", nn.GELU())
        self.mlp.add_module("c_proj", nn.Linear(4 * w, w))


def _replica_alit(cfg) -> dict[str, torch.Tensor]:
    """ALIT's constructor (adaptive_vqgan.py / adaptive_vae.py) on the current global CPU generator."""
    w, wd = cfg.width, cfg.dec_width
    scale, dscale = w ** -0.5, wd ** -0.5
    m = nn.Module()
    for name in ("encoder_ln_pre", "encoder_ln_post", "encoder_ln_recursive"):
        m.add_module(name, nn.LayerNorm(w))
    m.pre_quantizer_mlp = nn.Linear(w, cfg.token_dim)
    m.encoder = nn.Module()
    m.encoder.transformer = nn.ModuleList([_Block(w, cfg.heads) for _ in range(cfg.depth)])
    m.decoder = nn.Module()
    m.decoder.decoder_embed = nn.Linear(cfg.token_dim, wd)
    m.decoder.ln_pre = nn.LayerNorm(wd)
    m.decoder.transformer = nn.ModuleList([_Block(wd, cfg.dec_heads) for _ in range(cfg.dec_depth)])
    m.decoder.ln_post = nn.LayerNorm(wd)
    m.decoder.ffn = nn.Sequential(nn.Linear(wd, 2 * wd), nn.Tanh(), nn.Linear(2 * wd, cfg.decoder_out))
    m.decoder.latent_token_positional_embedding = nn.Parameter(dscale * torch.randn(256, wd))
    n2d, t = cfg.num_2d, cfg.tokens_per_iter
    m.encoder_positional_embedding = nn.Parameter(scale * torch.randn(n2d + 1, w))
    m.encoder_class_embedding = nn.Parameter(scale * torch.randn(1, w))
    m.encoder_mask_token = nn.Parameter(scale * torch.randn(1, 1, w))
    m.decoder_positional_embedding = nn.Parameter(scale * torch.randn(n2d + 1, wd))
    m.decoder_class_embedding = nn.Parameter(scale * torch.randn(1, wd))
    m.decoder_mask_token = nn.Parameter(scale * torch.randn(1, 1, wd))
    m.latent_tokens = nn.Parameter(scale * torch.randn(t, w))
    m.latent_token_positional_embedding = nn.Parameter(scale * torch.randn(t, w))
    m.timestep_embedding = nn.Parameter(scale * torch.randn(cfg.iterations, t, w))
    m.patch_embed = nn.Conv2d(3, w - cfg.base.embed_dim, cfg.patch_size, cfg.patch_size)

    def init(mod: nn.Module) -> None:  # the official _init_weights
        if isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            nn.init.trunc_normal_(mod.weight.data, mean=0.0, std=0.02)
            if mod.bias is not None:
                mod.bias.data.zero_()
        elif isinstance(mod, nn.LayerNorm):
            mod.bias.data.zero_()
            mod.weight.data.fill_(1.0)

    m.apply(init)
    if cfg.quantize:
        m.quantize = nn.Module()
        m.quantize.embedding = nn.Embedding(cfg.codebook_size, cfg.token_dim)
        m.quantize.embedding.weight.data.uniform_(-1.0 / cfg.codebook_size, 1.0 / cfg.codebook_size)
    return m.state_dict()


def _replica_base(cfg) -> dict[str, torch.Tensor]:
    """The base tokenizer: default module inits in key order; taming's codebook re-init."""
    if cfg.base.kind == "vqgan":
        base = VQGAN(cfg.base)
        n = cfg.base.n_embed
        base.quantize.embedding.weight.data.uniform_(-1.0 / n, 1.0 / n)
        return {f"base_tokenizer.vqgan.{k}": v for k, v in base.state_dict().items()}
    # LDM/MAR KL-VAE: the same layers, but built in LDM's order (each level's res block then its
    # attention block; the decoder's levels from the deepest up, after its middle).
    with torch.device("meta"):
        shapes = KLVAE(cfg.base)
    convs = sorted(((n, m) for n, m in shapes.named_modules() if isinstance(m, nn.Conv2d)),
                   key=lambda nm: _ldm_order(nm[0]))
    sd = {k: (torch.ones(v.shape) if k.endswith("weight") else torch.zeros(v.shape))
          for k, v in shapes.state_dict().items()}  # GroupNorms
    for name, m in convs:
        real = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, bias=m.bias is not None)
        sd[f"{name}.weight"] = real.weight.data
        if m.bias is not None:
            sd[f"{name}.bias"] = real.bias.data
    return {f"base_tokenizer.vae.{k}": v for k, v in sd.items()}


def _ldm_order(name: str) -> tuple[int, ...]:
    """Construction position of a KL-VAE conv from its state_dict name."""
    parts = name.split(".")
    top = ("encoder", "decoder", "quant_conv", "post_quant_conv").index(parts[0])
    if len(parts) == 1:
        return (top, 0, 0, 0, 0)
    head = parts[1]
    if head == "conv_in":
        return (top, 0, 0, 0, 0)
    if head == "mid":
        return (top, 2 if top == 0 else 1, 0, ("block_1", "attn_1", "block_2").index(parts[2]), 0)
    if head in ("down", "up"):
        level = int(parts[2]) if top == 0 else -int(parts[2])
        if parts[3] in ("block", "attn"):
            return (top, 1 if top == 0 else 2, level, int(parts[4]), parts[3] == "attn")
        return (top, 1 if top == 0 else 2, level, 10**6, 0)  # downsample / upsample
    return (top, 3, 0, 0, head == "conv_out")


def _replica_loss_module() -> None:
    """One VQLPIPSWithDiscriminator: LPIPS (torchvision VGG16 as vgg16(pretrained=True) builds it) + PatchGAN."""
    tv = pytest.importorskip("torchvision")
    tv.models.vgg16(weights=None, init_weights=False)  # pretrained=True sets init_weights=False
    for c in (64, 128, 256, 512, 512):
        nn.Conv2d(c, 1, 1, bias=False)
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 4, 2, 1), nn.LeakyReLU(0.2)]
    for ci, co, s in ((64, 128, 2), (128, 256, 2), (256, 512, 1)):
        layers += [nn.Conv2d(ci, co, 4, s, 1, bias=False), nn.BatchNorm2d(co), nn.LeakyReLU(0.2)]
    layers.append(nn.Conv2d(512, 1, 4, 1, 1))
    for mod in nn.Sequential(*layers).modules():  # taming weights_init, via .apply (children first)
        if isinstance(mod, nn.Conv2d):
            nn.init.normal_(mod.weight.data, 0.0, 0.02)
        elif isinstance(mod, nn.BatchNorm2d):
            nn.init.normal_(mod.weight.data, 1.0, 0.02)


def _replica_construction(cfg) -> dict[str, torch.Tensor]:
    """The base tokenizer, then ALIT (the loss modules follow: `_replica_loss_module`)."""
    sd = _replica_base(cfg)
    sd.update(_replica_alit(cfg))
    return sd


@pytest.fixture(scope="module")
def models(fixture_dir):
    return {v: load_alit_checkpoint(fixture_dir / v / "checkpoint.pth") for v in VARIANTS}


@pytest.mark.parametrize("variant", VARIANTS)
def test_replica_reproduces_official_fixture_weights(fixture_dir, models, variant):
    """The replica's order and initialisers are the official ones: with the fixture's seed it
    regenerates every checkpoint tensor (fp16-rounded; the README's power-of-two edits undone)."""
    cfg = models[variant].cfg
    sd, _ = read_checkpoint(fixture_dir / variant / "checkpoint.pth", trust_checkpoint=True)
    meta = json.loads((fixture_dir / variant / "config.json").read_text())["weights"]
    factors = {e["key"]: e["factor"] for e in meta["mul_edits"]}
    edited_at = {e["key"]: e["index"] for e in meta["add_edits"]}
    torch.manual_seed(meta["seed"])
    replica = _replica_construction(cfg)
    assert set(replica) == set(sd)
    for key, ref in sd.items():
        got = (replica[key].half().float() * factors.get(key, 1.0)).half().float()
        ref = ref.float()
        if key in edited_at:
            keep = torch.ones(ref.shape[0], dtype=torch.bool)
            keep[edited_at[key]] = False
            got, ref = got[keep], ref[keep]
        assert torch.equal(got, ref), key


@pytest.mark.parametrize("variant", VARIANTS)
def test_draw_count_equals_replica_without_loss_modules(models, variant):
    """The closed-form count consumes exactly what the real constructor consumes (ALIT + base)."""
    cfg = models[variant].cfg
    torch.manual_seed(7)
    _replica_construction(cfg)
    expected = torch.get_rng_state()
    torch.manual_seed(7)
    halting.advance_cpu_generator(halting.official_construction_draws(cfg, loss_modules=False))
    assert torch.equal(torch.get_rng_state(), expected)


def test_a_repeated_skip_restores_the_state_the_first_one_reached():
    g = torch.Generator().manual_seed(3)
    start = g.get_state()
    by_hand = torch.Generator().manual_seed(3)
    torch.empty(12345, dtype=torch.uint8).random_(generator=by_hand)  # one 32-bit draw per element
    halting.advance_cpu_generator(12345, g)
    assert torch.equal(g.get_state(), by_hand.get_state())
    g.set_state(start)
    halting.advance_cpu_generator(12345, g)  # remembered: restored, not stepped
    assert torch.equal(g.get_state(), by_hand.get_state())
    halting.advance_cpu_generator(12345, g)  # from the new state: stepped again
    torch.empty(12345, dtype=torch.uint8).random_(generator=by_hand)
    assert torch.equal(g.get_state(), by_hand.get_state())


def test_official_stream_matches_seed_before_construction(fixture_dir, models):
    """Expected draws: ``torch.manual_seed(0)``, then the replica of the full official construction
    (base + ALIT + 8 LPIPS-VGG16/PatchGAN modules), then one ``torch.bernoulli`` per iteration on the
    fixture's official ``halt_prob_t`` (t = 0..7). The ``official`` stream must give the same draws;
    ``official-reseeded`` must give the fixture's own ``halt_draw_t`` (seeded right before the forward).

    The first loss module is built for real; the other seven skip the same number of draws. Every
    initialiser of a loss module is a uniform or a normal on at least 16 elements, whose draw count does
    not depend on the generator's state, so eight constructions consume eight times the draws of one
    (building all eight took 12 s: 1.1e9 draws). That one module's count is the package's (checked here on
    the real construction); the base + ALIT part is checked by the test above.
    """
    model = models["vqgan_quantized"]
    cfg = model.cfg
    exp = torch.load(fixture_dir / "vqgan_quantized" / "expected_halt_seed0.pt", weights_only=True)
    probs = [exp[f"halt_prob_{t}"] for t in range(8)]
    per_module, rest = divmod(halting.official_construction_draws(cfg) - halting.official_construction_draws(
        cfg, loss_modules=False), cfg.iterations)
    assert rest == 0 and per_module > 1e8  # VGG16 alone has 138 million parameters
    torch.manual_seed(0)
    _replica_construction(cfg)
    before = torch.get_rng_state()
    _replica_loss_module()
    built = torch.get_rng_state()
    torch.set_rng_state(before)
    halting.advance_cpu_generator(per_module)
    assert torch.equal(torch.get_rng_state(), built), "one loss module's draw count differs from the package's"
    halting.advance_cpu_generator(per_module * (cfg.iterations - 1))  # modules 2..8
    expected = [torch.bernoulli(p) for p in probs]

    halting.start_global_stream("official", 0, cfg)
    got = [halting.bernoulli(p, "official") for p in probs]
    assert all(torch.equal(g, e) for g, e in zip(got, expected))
    halting.start_global_stream("official-reseeded", 0, cfg)
    reseeded = [halting.bernoulli(p, "official-reseeded") for p in probs]
    assert all(torch.equal(r.to(torch.uint8), exp[f"halt_draw_{t}"]) for t, r in enumerate(reseeded))
    # The two streams really differ (otherwise this test would show nothing).
    assert not torch.equal(got[0], reseeded[0])


def test_official_rollout_draws_from_the_advanced_stream(fixture_dir, models, monkeypatch):
    """A full rollout under ``official`` draws its 8 masks in order from the advanced stream: replaying
    ``torch.bernoulli`` on the recorded probabilities from seed + construction draws gives its draws,
    and at t = 0 (independent of earlier masks) its mask is the official rule on the fixture's p."""
    model = models["vqgan_quantized"]
    exp = torch.load(fixture_dir / "vqgan_quantized" / "expected_halt_seed0.pt", weights_only=True)
    arrs = [np.array(Image.open(fixture_dir / "inputs" / f"img{i}.png").convert("RGB")) for i in range(2)]
    x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float() / 255.0
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    real = halting.bernoulli

    def spy(p, policy, generator=None):
        draw = real(p, policy, generator)
        seen.append((p.detach().clone(), draw.clone()))
        return draw

    monkeypatch.setattr(halting, "bernoulli", spy)
    draws = halting.official_construction_draws(model.cfg)
    halting.start_global_stream("official", 0, model.cfg)
    with torch.no_grad():
        out = model.rollout(x, list(model.cfg.budgets), decode=False, halting="official")
    assert len(seen) == 8
    torch.manual_seed(0)
    halting.advance_cpu_generator(draws)
    for p, d in seen:
        assert torch.equal(torch.bernoulli(p), d)
    p0 = exp["halt_prob_0"]
    assert torch.allclose(seen[0][0], p0, atol=2e-5, rtol=0)
    mask0 = seen[0][1].bool() & (p0 >= model.cfg.halting_threshold)
    assert torch.equal(out[32].halting_mask.cpu(), mask0)


def test_official_draw_counts_table():
    """The released configurations' counts in the halting module docstring are what the code computes."""
    from alit_eval.tokenizers.alit.config import AlitConfig

    doc = halting.__doc__ or ""
    for preset, base, quantize in halting.RELEASED_CONFIGS:
        n = halting.official_construction_draws(AlitConfig.from_preset(preset, base=base, quantize=quantize))
        assert f"{n:,}" in doc, (preset, base, quantize)


def test_reseeded_is_a_policy_and_global():
    assert "official-reseeded" in halting.HALTING_POLICIES
    assert halting.uses_global_stream("official") and halting.uses_global_stream("official-reseeded")
    assert not halting.uses_global_stream("seeded")
