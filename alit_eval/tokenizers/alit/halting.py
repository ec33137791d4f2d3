"""Halting policies: where ALIT's random draws come from (2D-token masking and VAE posterior noise).

ALIT masks 2D tokens between iterations (alit_official.md §1.4): ``p`` = decoder probability of the
true base code, ``draw ~ Bernoulli(p)``, mask where ``draw == 1 and p >= threshold``. Policies:

- ``official``: the same draws, in the same order, from the same generator as the official code:
  one ``torch.bernoulli`` of shape ``(B, N2d)`` per iteration (including the last one, whose draw
  has no effect: the official ``iter`` bug) on the global RNG of the tensor's device. The VAE posterior
  noise is one ``torch.randn`` on the global CPU generator. The stream also *starts* where the
  official ``evaluate_rfid.py``'s does (`start_global_stream`): that script seeds *before building
  the model*, and construction consumes CPU draws before the first halting draw, so after seeding
  the CPU generator is advanced by exactly those draws (`official_construction_draws`). Results
  depend on batch size and order (use batch size 1, like the official script).
- ``official-reseeded``: the same draws, but the stream starts at the bare seed, as if the official
  code were re-seeded right before its data loop (what ``official`` did before issue 18; the official
  fixtures' ``expected_halt_seed0.pt`` were made this way).
- ``seeded``: one CPU `torch.Generator` per image, seeded from (seed, image id): results are
  independent of batch size, order and device.
- ``off``: no masking (the VAE noise then follows the ``official`` source).

The official VAE halting rule is a no-op (§1.4, §6.3), so VAE models never mask under any policy.

**Construction draws** (source: the official ``evaluate_rfid.py``, ``adaptive_tokenizers/adaptive_vqgan.py``
/ ``adaptive_vae.py``, ``modules/base.py``, ``modules/latent_distillation_modules.py``,
``modules/losses/{lpips,vqperceptual}.py`` at 8c0b4ec; taming's PatchGAN and torchvision's VGG16).
``evaluate_rfid.py`` seeds, builds the base tokenizer, then ALIT with ``train_stage="full_finetuning"``,
then loads weights (no draws). In order, each initialiser that draws on the CPU generator:

1. base tokenizer: every Conv2d's default init (kaiming-uniform weight, uniform bias); VQGAN codebook
   ``nn.Embedding`` (normal) then ``uniform_(±1/n)``;
2. ALIT: ``pre_quantizer_mlp`` Linear default init; per encoder block: MHA ``out_proj`` Linear init,
   ``xavier_uniform_(in_proj_weight)``, ``c_fc`` and ``c_proj`` Linear inits; decoder: ``decoder_embed``,
   its blocks, ``ffn.0``/``ffn.2`` Linear inits, then ``randn(256, w)``; the 9 top-level
   ``scale * randn`` embeddings (§1.9 order); ``patch_embed`` Conv2d init; then ``_init_weights``
   re-draws every Linear/Conv weight with ``trunc_normal_(std=0.02)`` (module order); the 1D VQ codebook
   (quantised variants): Embedding normal then ``uniform_``;
3. ``gan_losses``: ``iterations`` x (LPIPS: torchvision ``vgg16(pretrained=True)``, i.e. the default
   init of its 13 convs and 3 classifier Linears with ``init_weights=False``, plus 5 bias-free 1x1
   ``lin`` convs; PatchGAN: default init of its 5 convs, then ``weights_init``: ``normal_`` on the conv
   weights and BatchNorm weights).

On the CPU (float32) ``uniform_``/kaiming/xavier consume one 32-bit draw per element; ``normal_`` on
``n >= 16`` elements consumes ``n`` draws plus 16 when ``n % 16 != 0`` (the last 16 are redrawn);
``trunc_normal_`` consumes ``n`` draws in torch releases that draw it by inverse CDF (2.3, the
official environment) and a ``normal_``'s worth in releases that sample it from ``normal_`` (2.14); the
count follows the installed torch (`trunc_normal_draws` probes it), i.e. it reproduces the official
script run under the same torch. The VGG16 download and checkpoint loading draw nothing; the data
loader's base-seed draw comes next in both the official script and `alit_eval.engine.sweep` (which
creates its loader after `start_global_stream`). With the fixtures' seed the test-local replica of
this construction regenerates both fixture checkpoints bit for bit, which pins the order. On CUDA
the official halting draws come from the CUDA generator, which construction does not touch; only
the CPU generator is advanced, so VAE noise and CPU halting follow the official stream there too.

Draws per released configuration (32-bit CPU draws, loss modules included; checked by
``tests/test_official_stream.py``, advancing takes seconds):

=================================================== ============= ==============
Released file (.pth)                                 total draws   without losses
=================================================== ============= ==============
imagenet/alit_small_vqgan_quantized_latents         1,569,108,695    418,008,463
imagenet100/alit_small_vqgan_quantized_latents      1,569,108,695    418,008,463
imagenet100/alit_base_vqgan_quantized_latents       1,510,500,567    359,400,335
imagenet100/alit_semilarge_vqgan_quantized_latents  1,921,528,535    770,428,303
imagenet100/alit_small_vqgan_continuous_latents     1,569,010,391    417,910,159
imagenet100/alit_small_vae_quantized_latents        1,577,016,871    425,916,639
imagenet100/alit_small_vae_continuous_latents       1,576,918,567    425,818,335
=================================================== ============= ==============

The 8 loss modules are 1,151,100,232 of each total (143,887,529 each); the unreleased ``alit_tiny``
(VQGAN, quantised) would consume 1,298,202,327. Both ``trunc_normal_`` samplers give the same counts here
(every re-drawn weight has a multiple of 16 elements).
"""

from __future__ import annotations

import functools
import hashlib
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch

from alit_eval.registry import Registry
from alit_eval.tokenizers.alit.options import GLOBAL_STREAM_POLICIES
from alit_eval.tokenizers.generators import normal as draw_normal
from alit_eval.tokenizers.generators import per_image_list

if TYPE_CHECKING:
    from alit_eval.tokenizers.alit.config import AlitConfig

HALTING_POLICIES: Registry[str] = Registry("halting policy")
HALTING_POLICIES.register(
    "official", "official draw order on the global RNG, starting where evaluate_rfid.py's does (after construction)"
)
HALTING_POLICIES.register("official-reseeded", "official draw order on the global RNG, starting at the bare seed")
HALTING_POLICIES.register("seeded", "per-image generators seeded from (seed, image id); batch-independent")
HALTING_POLICIES.register("off", "no 2D-token masking")

# Policies that draw from the global RNG in the official order (one stream for the whole run):
# GLOBAL_STREAM_POLICIES, declared with the option in alit/options.py.

# Official PatchGAN (taming NLayerDiscriminator, n_layers=3, ndf=64): (c_in, c_out, bias) per 4x4 conv;
# a BatchNorm follows each bias-free conv.
_DISC_CONVS = ((3, 64, True), (64, 128, False), (128, 256, False), (256, 512, False), (512, 1, True))
# torchvision VGG16 ("D"): 3x3 conv widths; then Linear 512*7*7 -> 4096 -> 4096 -> 1000.
_VGG16_CONVS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
_LPIPS_CHANNELS = (64, 128, 256, 512, 512)
# (preset, base, quantised) of the released checkpoints (alit_official.md §1.13; the two alit_small
# VQGAN quantised files share one configuration), for the table in the module docstring.
RELEASED_CONFIGS = (
    ("alit_small", "vqgan", True), ("alit_base", "vqgan", True), ("alit_semilarge", "vqgan", True),
    ("alit_small", "vqgan", False), ("alit_small", "vae", True), ("alit_small", "vae", False),
)


def uses_global_stream(policy: str | None) -> bool:
    """Whether `policy` draws from the global RNG in the official order (one stream per run)."""
    return policy in GLOBAL_STREAM_POLICIES


def official_construction_ops(cfg: "AlitConfig", *, loss_modules: bool = True) -> list[tuple[str, str, int]]:
    """The CPU-generator draws of the official model construction, in order (see the module docstring).

    Args:
        cfg: the checkpoint's configuration.
        loss_modules: include the ``gan_losses`` (LPIPS + PatchGAN per iteration) that
            ``train_stage="full_finetuning"`` builds; the official evaluation always does.

    Returns:
        ``(what, kind, numel)`` per initialiser call; kind is ``uniform``, ``normal`` or ``trunc_normal``.
    """
    ops: list[tuple[str, str, int]] = []
    linear = functools.partial(_linear, ops)
    _base_ops(cfg, ops)
    w, wd, t, r = cfg.width, cfg.dec_width, cfg.tokens_per_iter, cfg.iterations
    assert wd is not None
    linear("pre_quantizer_mlp", w, cfg.token_dim)

    def block(name: str, width: int) -> None:
        linear(f"{name}.attn.out_proj", width, width)  # built inside nn.MultiheadAttention first
        ops.append((f"{name}.attn.in_proj_weight", "uniform", 3 * width * width))  # xavier_uniform_
        linear(f"{name}.mlp.c_fc", width, cfg.mlp_ratio * width)
        linear(f"{name}.mlp.c_proj", cfg.mlp_ratio * width, width)

    for i in range(cfg.depth):
        block(f"encoder.transformer.{i}", w)
    linear("decoder.decoder_embed", cfg.token_dim, wd)
    for i in range(cfg.dec_depth or 0):
        block(f"decoder.transformer.{i}", wd)
    linear("decoder.ffn.0", wd, 2 * wd)
    linear("decoder.ffn.2", 2 * wd, cfg.decoder_out)
    ops.append(("decoder.latent_token_positional_embedding", "normal", cfg.num_2d * wd))
    for name, n in (
        ("encoder_positional_embedding", (cfg.num_2d + 1) * w), ("encoder_class_embedding", w),
        ("encoder_mask_token", w), ("decoder_positional_embedding", (cfg.num_2d + 1) * wd),
        ("decoder_class_embedding", wd), ("decoder_mask_token", wd), ("latent_tokens", t * w),
        ("latent_token_positional_embedding", t * w), ("timestep_embedding", r * t * w),
    ):
        ops.append((name, "normal", n))
    c_pix = w - cfg.base.embed_dim
    linear("patch_embed", 3, c_pix, k=cfg.patch_size)
    # self.apply(_init_weights): every Linear/Conv weight again, in module (post-)order.
    redraw = [(n, k) for n, kind, k in ops if n.endswith(".weight") and not n.startswith("base.")
              and "in_proj" not in n]
    ops.extend((f"{n} (_init_weights)", "trunc_normal", k) for n, k in redraw)
    if cfg.quantize:
        ops.append(("quantize.embedding.weight", "normal", cfg.codebook_size * cfg.token_dim))
        ops.append(("quantize.embedding.weight (uniform_)", "uniform", cfg.codebook_size * cfg.token_dim))
    if loss_modules:
        for it in range(r):
            _gan_loss_ops(ops, f"gan_losses.{it}")
    return ops


def _linear(ops: list[tuple[str, str, int]], name: str, fan_in: int, fan_out: int, bias: bool = True,
            k: int = 1) -> None:
    """The default init of a Linear (or a k x k Conv): weight, then bias, both uniform."""
    ops.append((f"{name}.weight", "uniform", fan_in * fan_out * k * k))
    if bias:
        ops.append((f"{name}.bias", "uniform", fan_out))


def _gan_loss_ops(ops: list[tuple[str, str, int]], p: str) -> None:
    """The draws of one iteration's loss modules `p`: LPIPS (VGG16 + lin layers), then PatchGAN and its weights_init."""
    c_in = 3
    for j, c in enumerate(_VGG16_CONVS):
        _linear(ops, f"{p}.perceptual_loss.vgg16.conv{j}", c_in * 9, c)
        c_in = c
    for j, (fi, fo) in enumerate(((512 * 7 * 7, 4096), (4096, 4096), (4096, 1000))):
        _linear(ops, f"{p}.perceptual_loss.vgg16.classifier{j}", fi, fo)
    for j, c in enumerate(_LPIPS_CHANNELS):
        _linear(ops, f"{p}.perceptual_loss.lin{j}", c, 1, bias=False)
    for j, (ci, co, bias) in enumerate(_DISC_CONVS):
        _linear(ops, f"{p}.discriminator.conv{j}", ci * 16, co, bias=bias)
    for j, (ci, co, bias) in enumerate(_DISC_CONVS):  # weights_init, in module order
        ops.append((f"{p}.discriminator.conv{j}.weight (weights_init)", "normal", ci * co * 16))
        if not bias:
            ops.append((f"{p}.discriminator.bn{j}.weight (weights_init)", "normal", co))


def _base_ops(cfg: "AlitConfig", ops: list[tuple[str, str, int]]) -> None:
    """Default inits of the base tokenizer (built before ALIT), read off its module structure."""
    from torch import nn

    from alit_eval.tokenizers.base2d.klvae import KLVAE
    from alit_eval.tokenizers.base2d.vqgan import VQGAN

    with torch.device("meta"):  # shapes only: no memory, no draws
        base = VQGAN(cfg.base) if cfg.base.kind == "vqgan" else KLVAE(cfg.base)
    for name, m in base.named_modules():
        if isinstance(m, nn.Conv2d):
            ops.append((f"base.{name}.weight", "uniform", m.weight.numel()))
            if m.bias is not None:
                ops.append((f"base.{name}.bias", "uniform", m.bias.numel()))
        elif isinstance(m, nn.Embedding):  # taming VectorQuantizer2: Embedding init, then uniform_
            ops.append((f"base.{name}.weight", "normal", m.weight.numel()))
            ops.append((f"base.{name}.weight (uniform_)", "uniform", m.weight.numel()))
        elif any(True for _ in m.parameters(recurse=False)) and not isinstance(m, nn.GroupNorm):
            raise TypeError(f"unexpected parameterised module {type(m).__name__} in the base tokenizer")


def trunc_normal_draws(n: int) -> int:
    """CPU draws of ``nn.init.trunc_normal_(std=0.02)`` on `n` float32 elements with the installed torch."""
    probe = torch.Generator().manual_seed(0)
    ref = torch.Generator().manual_seed(0)
    torch.nn.init.trunc_normal_(torch.empty(17), std=0.02, generator=probe)
    torch.empty(17).uniform_(generator=ref)
    if torch.equal(probe.get_state(), ref.get_state()):
        return n  # inverse-CDF sampling: one uniform per element
    return _normal_draws(n)  # sampled from normal_ (rejection never fires at +-100 std)


def _normal_draws(n: int) -> int:
    if n < 16:  # per-element double normals with a cached second sample: never in official models
        raise ValueError(f"normal_ on {n} < 16 elements has no fixed draw count")
    return n + (16 if n % 16 else 0)


def op_draws(kind: str, n: int, *, trunc_normal: str = "installed") -> int:
    """32-bit CPU draws of one initialiser call (`trunc_normal`: ``installed``, ``inverse-cdf`` or ``normal``)."""
    if kind == "uniform":
        return n
    if kind == "normal":
        return _normal_draws(n)
    if kind == "trunc_normal":
        return {"installed": trunc_normal_draws, "inverse-cdf": int, "normal": _normal_draws}[trunc_normal](n)
    raise ValueError(f"unknown initialiser kind {kind!r}")


def official_construction_draws(cfg: "AlitConfig", *, loss_modules: bool = True, trunc_normal: str = "installed") -> int:
    """Total 32-bit CPU draws the official construction consumes for `cfg` (see the module docstring)."""
    ops = official_construction_ops(cfg, loss_modules=loss_modules)
    return sum(op_draws(kind, n, trunc_normal=trunc_normal) for _, kind, n in ops)


# (state before, draws) -> state after, for `advance_cpu_generator`: one process starts the same official
# stream again and again (each budget subset, resume, compare's runs), and each skip costs seconds.
_ADVANCED: dict[tuple[bytes, int], torch.Tensor] = {}


def advance_cpu_generator(draws: int, generator: torch.Generator | None = None, chunk: int = 1 << 24) -> None:
    """Consume exactly `draws` 32-bit outputs of the CPU generator (global one by default).

    ``random_()`` on uint8 takes one 32-bit output per element (like float ``uniform_``), and is the
    cheapest way to step the Mersenne Twister; chunks keep memory flat. The state reached from a given
    state and count is remembered for the process, so repeating a skip restores it instead.
    """
    if draws <= 0:
        return
    gen = generator if generator is not None else torch.default_generator
    key = (hashlib.sha256(gen.get_state().numpy().tobytes()).digest(), int(draws))
    if key in _ADVANCED:
        gen.set_state(_ADVANCED[key])
        return
    buf = torch.empty(min(draws, chunk), dtype=torch.uint8)
    left = draws
    while left > 0:
        k = min(left, chunk)
        buf[:k].random_(generator=gen)
        left -= k
    _ADVANCED[key] = gen.get_state()


def start_stream(values: Mapping[str, Any], seed: int, cfg: "AlitConfig") -> None:
    """ALIT's ``stream_start`` (family contract): after ``torch.manual_seed(seed)``, ``official`` skips
    the official model construction's draws; ``official-reseeded`` starts at the bare seed."""
    if values.get("halting") == "official":
        advance_cpu_generator(official_construction_draws(cfg))


def start_global_stream(policy: str, seed: int, cfg: object = None) -> None:
    """Seed the global RNG for a global-stream policy, and for ``official`` skip the construction draws.

    Args:
        policy: ``official`` or ``official-reseeded``.
        seed: the run's seed (the official script's ``--seed``, 0).
        cfg: the ALIT configuration; anything else (None, another tokenizer family) seeds only.
    """
    from alit_eval.tokenizers.alit.config import AlitConfig

    torch.manual_seed(seed)
    if policy == "official" and isinstance(cfg, AlitConfig):
        advance_cpu_generator(official_construction_draws(cfg))


_per_image = per_image_list  # its former name


def bernoulli(p: torch.Tensor, policy: str, generator: object = None) -> torch.Tensor:
    """Draw the halting Bernoulli variables for probabilities ``p`` ``[B, N]`` (float, 0/1)."""
    if policy == "seeded":
        gens = _per_image(generator, p.shape[0])
        pc = p.detach().float().cpu()
        draws = [torch.bernoulli(pc[i], generator=gens[i]) for i in range(p.shape[0])]
        return torch.stack(draws).to(p.device)
    g = generator if isinstance(generator, torch.Generator) else None
    if g is not None and g.device != p.device:  # e.g. a CPU generator for a CUDA run
        return torch.bernoulli(p.detach().to(g.device), generator=g).to(p.device)
    return torch.bernoulli(p, generator=g)


def normal(shape: Sequence[int], policy: str, generator: object = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard normal noise of `shape` (VAE posterior sample), drawn on the CPU then moved (the official
    wrapper draws ``torch.randn(shape)`` on the CPU generator even on GPU); ``seeded``: per image."""
    return draw_normal(shape, generator, device, per_image=policy == "seeded")
