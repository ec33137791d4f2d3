"""The KARL model: 2D tokens + ε condition -> one encoder pass per budget -> halting -> decoder -> pixels.

Semantics follow the official inference exactly (karl_official.md §2; fixture README items 1-9):
``[patch embedding ; base features]`` 2D tokens without normalisation plus a nearest-resized
positional table, the ε-bin embedding at position 0, ``latent_tokens[:T]`` as the latent slots, one
independent encoder pass per budget T, a halting head (slot halted iff p > 0.75), VQ or continuous
12-d latents, and a decoder in which halted slots are masked out. Unlike the official batched
forward (which repeats the mask per head in the wrong order, §6.1), every image gets its own mask in
every head, so each image's result is its batch-of-one result at any batch size.

Modes:
- `KarlTokenizer.rollout`: fixed budgets T (default the official evaluate.py list 32..256 at ε = 0,
  the 0.005 bin). With ``halting="official"`` (or ``"seeded"``) the learned halting still applies, as
  in the official evaluation: "T tokens" means T slots minus those the model halts (``extras
  ["num_active"]``). ``halting="off"`` decodes all T slots (a strict fixed token count).
- `KarlTokenizer.adaptive`: the ε-conditioned mode of the README/notebook, ``encode(img, [256], ε)``:
  the chosen token count per image is the number of non-halted slots.

The golden fixtures cover the VQGAN base with quantised latents. The VAE base (features, noise, code
decode) is ALIT's, verified against ALIT's fixtures; KARL's continuous path only skips the VQ step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from alit_eval.tokenizers import generators as rng
from alit_eval.tokenizers.base import BudgetError, BudgetOutput, GeneratorArg, Rollout, check_images
from alit_eval.tokenizers.common.base_holder import BaseTokenizer
from alit_eval.tokenizers.common.blocks import ResidualAttentionBlock, Transformer, embedding_param
from alit_eval.tokenizers.common.quantizer import VectorQuantizer
from alit_eval.tokenizers.generators import default_generators
from alit_eval.tokenizers.karl.config import KarlConfig
from alit_eval.tokenizers.karl.options import HALTING_POLICIES  # declared with the option
ATTENTION_MODES = (True, "corrected", "full")


def _block(block: ResidualAttentionBlock, x: torch.Tensor, mask: torch.Tensor | None,
           need_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """ALIT's pre-LN block with an attention mask (``[B*heads, L, L]`` bool, True = blocked)."""
    h = block.ln_1(x)
    a, w = block.attn(h, h, h, attn_mask=mask, need_weights=need_weights, average_attn_weights=True)
    x = x + a
    return x + block.mlp(block.ln_2(x)), w


class KarlDecoder(nn.Module):
    """The latent decoder (keys ``decoder.*``): sequence -> base logits (VQGAN) or VAE code."""

    def __init__(self, cfg: KarlConfig) -> None:
        super().__init__()
        w = cfg.dec_width
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = nn.ModuleList(
            ResidualAttentionBlock(w, cfg.dec_heads, cfg.mlp_ratio) for _ in range(cfg.dec_depth)
        )
        self.ln_post = nn.LayerNorm(w)
        self.ffn = nn.Sequential(nn.Linear(w, 2 * w), nn.Tanh(), nn.Linear(2 * w, cfg.decoder_out))


@dataclass
class AdaptiveResult:
    """Result of the ε-conditioned mode for one batch.

    Attributes:
        num_tokens: ``[B]`` int64, the tokens each image keeps (non-halted slots; KARL's chosen length).
        reconstruction: ``[B,3,H,W]`` in [0,1] (clamped), or None without decode.
        output: the full `BudgetOutput` of the ``max_budget`` pass (halting, logits, raw pixels, ...).
        epsilon_bin: ``[B]`` int64 index of the ε bin each image was conditioned on.
    """

    num_tokens: torch.Tensor
    reconstruction: torch.Tensor | None
    output: BudgetOutput
    epsilon_bin: torch.Tensor


class KarlTokenizer(nn.Module):
    """KARL with the official parameter names; implements the `AdaptiveTokenizer` protocol.

    Args:
        cfg: model configuration.
        halting: default policy, a key of `HALTING_POLICIES`.
        epsilon: default desired reconstruction error for `rollout` (0.0: the evaluate.py protocol).
        name: display name used in results.
    """

    def __init__(self, cfg: KarlConfig, *, halting: str = "official", epsilon: float = 0.0,
                 name: str = "karl") -> None:
        super().__init__()
        _check_policy(halting)
        self.cfg, self.halting, self.epsilon, self.name = cfg, halting, float(epsilon), name
        w, dw, g = cfg.width, cfg.dec_width, cfg.pos_grid
        self.encoder_positional_embedding = embedding_param(w, g, g, width=w)
        self.decoder_positional_embedding = embedding_param(dw, g, g, width=dw)
        self.decoder_mask_token = embedding_param(1, 1, dw, width=dw)
        self.latent_tokens = embedding_param(cfg.max_tokens, w, width=w)
        self.decoder_latent_tokens_timestep_embed = embedding_param(cfg.max_tokens, dw, width=dw)
        # Official init: bin value x ones(w) (karl_official.md §2.3); LayerNorm erases it, so an
        # untrained model ignores ε.
        self.rec_loss_embeddings = nn.Parameter(torch.tensor(cfg.eps_bins).unsqueeze(1).repeat(1, w))
        self.encoder = Transformer(w, cfg.depth, cfg.heads, cfg.mlp_ratio)
        self.encoder_ln_pre = nn.LayerNorm(w)
        self.encoder_ln_post = nn.LayerNorm(w)
        self.encoder_ln_post_halt = nn.LayerNorm(w)
        self.halting_mlp = nn.Sequential(nn.Linear(w, cfg.halting_hidden), nn.Tanh(), nn.Linear(cfg.halting_hidden, 1))
        self.pre_quantizer_mlp = nn.Linear(w, cfg.token_dim)
        self.decoder_embed = nn.Linear(cfg.token_dim, dw)
        self.decoder = KarlDecoder(cfg)
        self.patch_embed = nn.Conv2d(3, w - cfg.base.embed_dim, cfg.patch_size, stride=cfg.patch_size)
        if cfg.quantize:
            self.quantize = VectorQuantizer(cfg.codebook_size, cfg.token_dim)
        self.base_tokenizer = BaseTokenizer(cfg)  # type: ignore[arg-type]  # reads only cfg.base

    # -- protocol attributes -------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return self.cfg.image_size

    @property
    def budgets(self) -> tuple[int, ...]:
        """Every producible token count (1..max_tokens); see `default_budgets` for a sweep's default."""
        return self.cfg.budgets

    @property
    def default_budgets(self) -> tuple[int, ...]:
        return self.cfg.default_budgets

    @property
    def device(self) -> torch.device:
        return self.latent_tokens.device

    # -- building blocks -------------------------------------------------------------------------
    def epsilon_bins(self, epsilon: float | Sequence[float] | torch.Tensor, batch: int) -> torch.Tensor:
        """Index ``[B]`` of the ε bin per image: the smallest bin >= ε in float32, else the last.

        Args:
            epsilon: one desired reconstruction error (L1) for all images, or one per image.
            batch: number of images.
        """
        # float32 on the CPU, as the official comparison (float(0.03) rounds down and keeps its bin).
        eps = torch.as_tensor(epsilon).detach().to("cpu", torch.float32).reshape(-1)
        if not bool(torch.isfinite(eps).all()):
            raise ValueError(f"epsilon must be finite; got {epsilon!r}")
        if eps.numel() == 1:
            eps = eps.expand(batch)
        if eps.numel() != batch:
            raise ValueError(f"epsilon needs one value or one per image ({batch}); got {eps.numel()}")
        bins = torch.tensor(self.cfg.eps_bins, dtype=torch.float32)
        ok = bins.unsqueeze(0) >= eps.unsqueeze(1)  # [B, n_bins]
        first = torch.where(ok.any(1), ok.float().argmax(1), torch.full_like(eps, len(bins) - 1, dtype=torch.long))
        return first.long()

    def base_features(self, images: torch.Tensor, policy: str,
                      generator: GeneratorArg = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Base features ``[B, C_b, g, g]`` (VQGAN: continuous pre-quantisation output; VAE:
        ``(mean + std * noise) * 0.2325``) and tensors for inspection."""
        if self.cfg.base.kind == "vqgan":
            z, idx = self.base_tokenizer.vqgan.encode(images)
            return z, {"base_z": z, "gt_indices": idx}
        mean, std = self.base_tokenizer.vae.posterior(images)
        if policy == "seeded":
            noise = rng.normal(mean.shape, generator, device=mean.device, per_image=True)
        else:
            # Image by image from one stream: what consecutive official B=1 encode() calls draw
            # (torch.randn on the CPU generator, then moved), so batching does not change it.
            shape = (1, *mean.shape[1:])
            noise = torch.cat([rng.normal(shape, generator, device=mean.device)
                               for _ in range(mean.shape[0])])
        z = (mean + std * noise) * self.cfg.base.vae_scale
        return z, {"base_z": z, "vae_posterior_mean": mean, "vae_posterior_std": std, "vae_noise": noise}

    def _table(self, table: torch.Tensor) -> torch.Tensor:
        """(w, G, G) positional table -> ``[g*g, w]``: F.interpolate's default nearest mode, as official."""
        g = self.cfg.grid
        return F.interpolate(table.unsqueeze(0), size=(g, g), mode="nearest")[0].flatten(1).t()

    def tokens_2d(self, images: torch.Tensor, base_z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The 2D encoder tokens ``[B, g*g, w]`` (with positions) and the patch embedding."""
        pix = self.patch_embed(images)
        tok = torch.cat([pix, base_z], dim=1).flatten(2).transpose(1, 2)  # patch channels first, no L2 norm
        return tok + self._table(self.encoder_positional_embedding), pix

    def encode_budget(self, tok2d: torch.Tensor, cond: torch.Tensor, budget: int) -> torch.Tensor:
        """One encoder pass: ``[cond ; 2D ; latent_tokens[:T]]`` -> raw latents ``[B, T, w]``."""
        b = tok2d.shape[0]
        lat = self.latent_tokens[:budget].unsqueeze(0).expand(b, -1, -1)
        x = self.encoder_ln_pre(torch.cat([cond.unsqueeze(1), tok2d, lat], dim=1))
        return self.encoder(x)[:, 1 + self.cfg.num_2d:]

    def halt(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Halting logits, probabilities ``[B, T]`` and decisions (bool, p > threshold strictly)."""
        logit = self.halting_mlp(self.encoder_ln_post_halt(latent)).squeeze(-1)
        prob = torch.sigmoid(logit)
        return logit, prob, prob > self.cfg.halting_threshold

    def quantize_latents(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw latents ``[B, T, w]`` -> decoder input ``[B, T, d]`` and VQ indices (all slots)."""
        z = self.pre_quantizer_mlp(self.encoder_ln_post(latent))
        if self.cfg.quantize:
            return self.quantize(z)
        return z, None

    def decoder_mask(self, halted: torch.Tensor) -> torch.Tensor | None:
        """Per-image, per-head attention mask ``[B*heads, L, L]`` (True = blocked), or None.

        Entry (i, j) is blocked when i or j is a halted latent, except i == j (karl_official.md §2.5).
        Rows are image-major (``repeat_interleave``), the order `nn.MultiheadAttention` reads.
        """
        if not bool(halted.any()):
            return None
        b, n2d = halted.shape[0], self.cfg.num_2d
        h = torch.cat([halted.new_zeros(b, n2d), halted], dim=1)
        blocked = h.unsqueeze(2) | h.unsqueeze(1)
        blocked &= ~torch.eye(h.shape[1], dtype=torch.bool, device=h.device)
        return blocked.repeat_interleave(self.cfg.dec_heads, dim=0)

    def decode_tokens(self, tokens: torch.Tensor, halted: torch.Tensor | None = None,
                      need_weights: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Decoder: tokens ``[B, T, d]`` (+ halted ``[B, T]``) -> logits ``[B, g*g, K]`` or VAE code
        ``[B, g*g, C_b]``, and per-layer head-averaged attention ``[B, L, L]`` if asked."""
        b, n, _ = tokens.shape
        lat = self.decoder_embed(tokens) + self.decoder_latent_tokens_timestep_embed[:n]
        masked = self.decoder_mask_token.reshape(1, -1) + self._table(self.decoder_positional_embedding)
        seq = self.decoder.ln_pre(torch.cat([masked.unsqueeze(0).expand(b, -1, -1), lat], dim=1))
        mask = self.decoder_mask(halted) if halted is not None else None
        weights = []
        for block in self.decoder.transformer:
            seq, w = _block(block, seq, mask, need_weights)
            if need_weights:
                weights.append(w)
        return self.decoder.ffn(self.decoder.ln_post(seq[:, : self.cfg.num_2d])), weights

    def to_pixels(self, out: torch.Tensor) -> torch.Tensor:
        """Decoder output -> unclamped pixels: soft-code VQGAN decode, or the VAE decoder (no 1/0.2325)."""
        g = self.cfg.grid
        if self.cfg.base.kind == "vqgan":
            return self.base_tokenizer.vqgan.decode_soft(torch.softmax(out.float(), dim=-1), g)
        return self.base_tokenizer.vae.decode(out.reshape(out.shape[0], g, g, -1).permute(0, 3, 1, 2))

    def decode_indices(self, indices: torch.Tensor, halted: torch.Tensor | None = None) -> torch.Tensor:
        """Pixels in [0,1] from stored VQ indices ``[B, T]`` and optional halting decisions ``[B, T]``."""
        if not self.cfg.quantize:
            raise ValueError("decode_indices needs a quantised KARL; this one has continuous latents")
        with torch.no_grad():
            out, _ = self.decode_tokens(self.quantize.lookup(indices), halted)
            return self.to_pixels(out).clamp(0.0, 1.0)

    def attention_maps(self, weights: list[torch.Tensor], n: int) -> torch.Tensor:
        """``[B, layers, n, g, g]``: the attention of each 2D position (decoder query row p < g*g) to
        latent slot j (key g*g + j), head-averaged, per decoder layer. Halted slots receive 0."""
        g, n2d = self.cfg.grid, self.cfg.num_2d
        maps = [w[:, :n2d, n2d : n2d + n].transpose(1, 2) for w in weights]
        return torch.stack(maps, dim=1).reshape(weights[0].shape[0], len(weights), n, g, g)

    # -- the protocol ------------------------------------------------------------------------------
    def check_budgets(self, budgets: Iterable[int] | None) -> list[int]:
        """Sorted unique budgets (default `default_budgets`); `BudgetError` outside 1..max_tokens."""
        req = sorted({int(b) for b in (self.default_budgets if budgets is None else budgets)})
        bad = [b for b in req if not 1 <= b <= self.cfg.max_tokens]
        if not req or bad:
            raise BudgetError(f"budget(s) {bad or 'none'} not available; KARL produces any token count "
                              f"1..{self.cfg.max_tokens}")
        return req

    def rollout(
        self,
        images: torch.Tensor,
        budgets: Iterable[int] | None = None,
        *,
        decode: bool = True,
        attention: bool | str = False,
        generator: GeneratorArg = None,
        halting: str | None = None,
        epsilon: float | Sequence[float] | torch.Tensor | None = None,
    ) -> Rollout:
        """Run one independent encoder + decoder pass per budget (shared base features).

        Args:
            images: ``[B,3,S,S]`` float in [0,1].
            budgets: slot counts T in 1..max_tokens (default `default_budgets`).
            decode: decode pixels (``reconstruction``, ``extras["reconstruction_raw"]``, ``rec_l1``).
            attention: False, True/"corrected" (maps, see `attention_maps`) or "full" (also the raw
                ``[B, layers, L, L]`` weights in ``extras["attention_full"]``).
            generator: VAE noise source: a CPU `torch.Generator` (``official``/``off``; default the
                global CPU RNG) or one per image (``seeded``; None: per image from
                `generators.DEFAULT_SEED` and the image's pixels). VQGAN models draw nothing.
            halting: a key of `HALTING_POLICIES` (default the model's).
            epsilon: desired reconstruction error, one or one per image (default the model's, 0.0).

        Returns:
            `Rollout`; per budget ``extras`` hold ``halt_logit``, ``halt_prob``, ``halt_mask`` (bool
            ``[B, T]``, the slots masked in the decoder), ``num_active`` (``[B]`` int64, tokens used),
            ``logits``/``decoded_code``, and with decode ``reconstruction_raw`` and ``rec_l1`` (the
            official printed L1 on unclamped pixels). ``halting_mask`` (2D positions) is None.
        """
        check_images(images, self.image_size)
        req = self.check_budgets(budgets)
        policy = halting or self.halting
        _check_policy(policy)
        if attention not in (False, None) and attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be False, True, 'corrected' or 'full'; got {attention!r}")
        need_weights = attention not in (False, None)
        eps = self.epsilon if epsilon is None else epsilon
        # Contiguous NCHW float32, as ALIT does: other layouts take conv kernels with other rounding.
        images = images.to(self.device, torch.float32).contiguous()
        if policy == "seeded" and generator is None:
            # Called without generators (the Python API): per image, from the default seed and its pixels.
            generator = default_generators(images)
        outputs: dict[int, BudgetOutput] = {}
        with torch.no_grad():
            base_z, extras = self.base_features(images, policy, generator)
            tok2d, pix = self.tokens_2d(images, base_z)
            extras["patch_embed_out"] = pix
            bins = self.epsilon_bins(eps, images.shape[0]).to(self.device)
            extras["eps_bin"] = bins
            cond = self.rec_loss_embeddings[bins]
            for t in req:
                outputs[t] = self._budget(images, tok2d, cond, t, policy, decode, need_weights, attention)
        return Rollout(outputs=outputs, extras=extras)

    def _budget(self, images, tok2d, cond, t, policy, decode, need_weights, attention) -> BudgetOutput:
        latent = self.encode_budget(tok2d, cond, t)
        logit, prob, decided = self.halt(latent)
        halted = decided if policy != "off" else torch.zeros_like(decided)
        tokens, indices = self.quantize_latents(latent)
        out, weights = self.decode_tokens(tokens, halted, need_weights)
        key = "logits" if self.cfg.base.kind == "vqgan" else "decoded_code"
        extras = {key: out, "halt_logit": logit, "halt_prob": prob, "halt_mask": halted,
                  "num_active": t - halted.sum(1)}
        recon = None
        if decode:
            raw = self.to_pixels(out)
            extras["reconstruction_raw"] = raw
            extras["rec_l1"] = (images - raw).abs().mean(dim=(1, 2, 3))
            recon = raw.clamp(0.0, 1.0)
        maps = None
        if need_weights:
            maps = self.attention_maps(weights, t)
            if attention == "full":
                extras["attention_full"] = torch.stack(weights, dim=1)
        return BudgetOutput(budget=t, latent=latent, tokens=tokens, indices=indices, reconstruction=recon,
                            attention=maps, halting_mask=None, extras=extras)

    def adaptive(
        self,
        images: torch.Tensor,
        epsilon: float | Sequence[float] | torch.Tensor = 0.05,
        max_budget: int = 256,
        *,
        decode: bool = True,
        generator: GeneratorArg = None,
        halting: str | None = None,
    ) -> AdaptiveResult:
        """KARL's ε-conditioned single-pass mode, as the official ``encode(img, [max_budget], ε)``.

        The image is encoded once with ``max_budget`` slots under the condition "reconstruction L1
        about ε"; the halting head drops slots, and the tokens kept (``num_tokens``) are KARL's chosen
        length, the official "approx. kolmogorov complexity". The README's values are ε = 0.03 / 0.05
        (default) / 0.07 and the paper's 0.03 / 0.05 / 0.09, always with ``max_budget`` 256.

        Args:
            images: ``[B,3,S,S]`` float in [0,1].
            epsilon: desired reconstruction error, one or one per image (mapped to the 19 bins).
            max_budget: slots offered to the model (1..max_tokens).
            decode: decode pixels.
            generator: VAE noise source, as in `rollout`.
            halting: ``official`` or ``seeded`` (``off`` would keep every slot and is refused).

        Returns:
            `AdaptiveResult` with per-image token counts and reconstructions.
        """
        policy = halting or (self.halting if self.halting != "off" else "official")
        if policy == "off":
            raise ValueError("the ε mode needs halting ('official' or 'seeded'); 'off' keeps every slot")
        r = self.rollout(images, [max_budget], decode=decode, generator=generator, halting=policy, epsilon=epsilon)
        out = r[max_budget]
        return AdaptiveResult(num_tokens=out.extras["num_active"], reconstruction=out.reconstruction, output=out,
                              epsilon_bin=r.extras["eps_bin"])


def _check_policy(policy: str) -> None:
    if policy not in HALTING_POLICIES:
        raise ValueError(f"unknown KARL halting policy {policy!r}; valid: {', '.join(HALTING_POLICIES)}")
