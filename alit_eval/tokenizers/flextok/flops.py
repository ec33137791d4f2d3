"""Closed-form FLOPs of one FlexTok image at prefix length k (2 per multiply-add).

Conventions of `torch.utils.flop_counter` (matmuls, convolutions and attention; norms, activations,
softmax, interpolation and the sampler's vector arithmetic not counted). The decoder always runs all
256 registers (positions ≥ k hold the mask token), so one decoder forward costs the same for every k;
a decode runs T forwards, 2T-worth with guidance (g ≠ 1: conditional and unconditional passes), and
maps the codes to register embeddings once.
"""

from __future__ import annotations

from alit_eval.tokenizers.flextok.config import FlexTokConfig


def _trunk(cfg: FlexTokConfig, width: int, depth: int, adaln: int = 0) -> int:
    n, hidden = cfg.n_patches + cfg.n_registers, cfg.mlp_hidden(width)
    per_layer = 2 * n * (4 * width * width + 3 * width * hidden) + 4 * n * n * width
    return depth * (per_layer + 2 * width * adaln)


def _conv(cin: int, cout: int, side: int, k: int = 3) -> int:
    return 2 * k * k * cin * cout * side * side


def _resnet(cin: int, cout: int, side: int) -> int:
    return _conv(cin, cout, side) + _conv(cout, cout, side) + (_conv(cin, cout, side, 1) if cin != cout else 0)


def _mid(c: int, side: int) -> int:
    hw = side * side
    return 2 * _resnet(c, c, side) + 2 * hw * 4 * c * c + 4 * hw * hw * c


def _vae(cfg: FlexTokConfig) -> tuple[int, int]:
    ch, s, n, lat = cfg.vae_channels, cfg.image_size, cfg.vae_layers_per_block, cfg.latent_channels
    enc, c = _conv(3, ch[0], s), ch[0]
    for i, cout in enumerate(ch):
        for j in range(n):
            enc += _resnet(c if j == 0 else cout, cout, s)
            c = cout
        if i < len(ch) - 1:
            s //= 2
            enc += _conv(c, c, s)
    enc += _mid(c, s) + _conv(c, 2 * lat, s) + _conv(2 * lat, 2 * lat, s, 1)
    dec = _conv(lat, lat, s, 1) + _conv(lat, ch[-1], s) + _mid(ch[-1], s)
    c = ch[-1]
    for i, cout in enumerate(reversed(ch)):
        for j in range(n + 1):
            dec += _resnet(c if j == 0 else cout, cout, s)
            c = cout
        if i < len(ch) - 1:
            s *= 2
            dec += _conv(c, c, s)
    return enc, dec + _conv(c, 3, s)


def flops_per_budget(cfg: FlexTokConfig, k: int, *, steps: int = 20, guidance: float = 7.5) -> dict[str, int]:
    """FLOPs per component (``vae_encoder``, ``encoder``, ``decoder``, ``vae_decoder``, ``total``) of one
    image decoded at prefix k with T = `steps` and guidance `guidance` (the run's options)."""
    del k  # every k costs the same: all registers always enter the decoder
    p, n, pd, d = cfg.n_patches, cfg.n_registers, cfg.patch_dim, cfg.fsq_dim
    we, wd = cfg.enc_width, cfg.dec_width
    enc = 2 * p * pd * we + _trunk(cfg, we, cfg.enc_depth) + 2 * n * we * d
    registers = 2 * n * d * wd  # Linear(codes): once per decode, shared by every step
    forward = (2 * p * pd * wd + 2 * (cfg.freq_size * wd + wd * wd)
               + _trunk(cfg, wd, cfg.dec_depth, adaln=6 * cfg.adaln_expansion * wd)
               + 2 * wd * 2 * wd + 2 * p * wd * pd)
    vae_enc, vae_dec = _vae(cfg)
    out = {"vae_encoder": vae_enc, "encoder": enc,
           "decoder": registers + forward * steps * (1 if guidance == 1.0 else 2), "vae_decoder": vae_dec}
    out["total"] = sum(out.values())
    return out
