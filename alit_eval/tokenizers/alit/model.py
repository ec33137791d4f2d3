"""The ALIT model: 2D tokens -> recurrent 1D-token encoder -> ALIT decoder -> base decoder -> pixels.

Semantics follow the official code exactly (alit_official.md §1.2-1.7): L2-normalised concatenation
of base features and a learned patch embedding, ``LN_recursive`` over the whole sequence, the same
learned latent template plus a timestep embedding each iteration, soft-code VQGAN decoding, and
halting between iterations. `rollout` stops after the largest requested budget (identical outputs
to the full run, since later iterations never write back) and decodes pixels only where asked.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from alit_eval.tokenizers.alit import halting as halting_rng
from alit_eval.tokenizers.common.blocks import ResidualAttentionBlock, Transformer, embedding_param
from alit_eval.tokenizers.alit.config import AlitConfig
from alit_eval.tokenizers.common.quantizer import VectorQuantizer
from alit_eval.tokenizers.generators import default_generators
from alit_eval.tokenizers.base import (
    BudgetOutput,
    GeneratorArg,
    Rollout,
    check_budgets,
    check_images,
)
from alit_eval.tokenizers.common.base_holder import BaseTokenizer

ATTENTION_INDEXING = ("corrected", "official-notebook")


class AlitDecoder(nn.Module):
    """The ALIT latent decoder (keys ``decoder.*``): 1D tokens -> base codes (logits or VAE code)."""

    def __init__(self, cfg: AlitConfig) -> None:
        super().__init__()
        w = cfg.dec_width
        self.latent_token_positional_embedding = embedding_param(cfg.tokens_per_iter * cfg.iterations, w, width=w)
        self.decoder_embed = nn.Linear(cfg.token_dim, w)
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = nn.ModuleList(
            ResidualAttentionBlock(w, cfg.dec_heads, cfg.mlp_ratio) for _ in range(cfg.dec_depth)
        )
        self.ln_post = nn.LayerNorm(w)
        self.ffn = nn.Sequential(nn.Linear(w, 2 * w), nn.Tanh(), nn.Linear(2 * w, cfg.decoder_out))


class AlitTokenizer(nn.Module):
    """ALIT with official parameter names; implements the `AdaptiveTokenizer` protocol.

    Args:
        cfg: model configuration.
        halting: default halting policy (``official``, ``seeded`` or ``off``).
        name: display name used in results.
    """

    def __init__(self, cfg: AlitConfig, *, halting: str = "official", name: str = "alit") -> None:
        super().__init__()
        halting_rng.HALTING_POLICIES.get(halting)
        self.cfg = cfg
        self.halting = halting
        self.name = name
        w, dw, n = cfg.width, cfg.dec_width, cfg.num_2d
        self.encoder_positional_embedding = embedding_param(n + 1, w, width=w)
        self.encoder_class_embedding = embedding_param(1, w, width=w)
        self.encoder_mask_token = embedding_param(1, 1, w, width=w)
        self.decoder_positional_embedding = embedding_param(n + 1, dw, width=dw)
        self.decoder_class_embedding = embedding_param(1, dw, width=dw)
        self.decoder_mask_token = embedding_param(1, 1, dw, width=dw)
        self.latent_tokens = embedding_param(cfg.tokens_per_iter, w, width=w)
        self.latent_token_positional_embedding = embedding_param(cfg.tokens_per_iter, w, width=w)
        self.timestep_embedding = embedding_param(cfg.iterations, cfg.tokens_per_iter, w, width=w)
        self.encoder_ln_pre = nn.LayerNorm(w)
        self.encoder_ln_post = nn.LayerNorm(w)
        self.encoder_ln_recursive = nn.LayerNorm(w)
        self.pre_quantizer_mlp = nn.Linear(w, cfg.token_dim)
        self.patch_embed = nn.Conv2d(3, w - cfg.base.embed_dim, cfg.patch_size, stride=cfg.patch_size)
        self.encoder = Transformer(w, cfg.depth, cfg.heads, cfg.mlp_ratio)
        self.decoder = AlitDecoder(cfg)
        if cfg.quantize:
            self.quantize = VectorQuantizer(cfg.codebook_size, cfg.token_dim)
        self.base_tokenizer = BaseTokenizer(cfg)

    # -- protocol attributes -------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return self.cfg.image_size

    @property
    def budgets(self) -> tuple[int, ...]:
        return self.cfg.budgets

    @property
    def device(self) -> torch.device:
        return self.latent_tokens.device

    # -- building blocks (also used by training code) ------------------------------------------
    def base_features(
        self, images: torch.Tensor, policy: str, generator: GeneratorArg = None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Base 2D features ``[B, C_b, g, g]``, the target (VQGAN code indices ``[B, g*g]`` or the VAE
        code ``[B, g*g, C_b]``) and extra tensors for inspection."""
        if self.cfg.base.kind == "vqgan":
            z, idx = self.base_tokenizer.vqgan.encode(images)
            return z, idx, {"base_z": z, "gt_indices": idx}
        vae = self.base_tokenizer.vae
        mean, std = vae.posterior(images)
        noise = halting_rng.normal(mean.shape, policy, generator, device=mean.device)
        z = (mean + std * noise) * self.cfg.base.vae_scale
        target = z.flatten(2).transpose(1, 2)
        return z, target, {"base_z": z, "vae_posterior_mean": mean, "vae_posterior_std": std, "vae_noise": noise}

    def latent_template(self, t: int) -> torch.Tensor:
        """The new latent tokens appended at iteration ``t``: ``[T, w]``."""
        return self.latent_tokens + self.latent_token_positional_embedding + self.timestep_embedding[t]

    def initial_sequence(self, images: torch.Tensor, base_z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder input ``[B, 1 + g*g + T, w]`` after ``encoder_ln_pre``, and the patch embedding."""
        b = images.shape[0]
        pix = self.patch_embed(images)
        tok = torch.cat([base_z, pix], dim=1).flatten(2).transpose(1, 2)
        tok = F.normalize(tok, dim=-1, eps=1e-12)
        cls = self.encoder_class_embedding.unsqueeze(0).expand(b, -1, -1)
        enc = torch.cat([cls, tok], dim=1) + self.encoder_positional_embedding
        new = self.latent_template(0).unsqueeze(0).expand(b, -1, -1)
        return self.encoder_ln_pre(torch.cat([enc, new], dim=1)), pix

    def quantize_latents(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw encoder latents ``[B, N, w]`` -> decoder input tokens ``[B, N, d]`` and VQ indices."""
        z = self.pre_quantizer_mlp(self.encoder_ln_post(latent))
        if self.cfg.quantize:
            return self.quantize(z)
        return z, None

    def decode_tokens(
        self, tokens: torch.Tensor, need_weights: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """ALIT decoder: tokens ``[B, N, d]`` -> logits ``[B, g*g, K]`` (or VAE code) and per-layer
        head-averaged attention ``[B, L, L]`` (empty unless `need_weights`)."""
        b, n, _ = tokens.shape
        dec = self.decoder
        lat = dec.decoder_embed(tokens) + dec.latent_token_positional_embedding[:n]
        masked = torch.cat(
            [self.decoder_class_embedding, self.decoder_mask_token.reshape(1, -1).expand(self.cfg.num_2d, -1)]
        ) + self.decoder_positional_embedding
        seq = dec.ln_pre(torch.cat([masked.unsqueeze(0).expand(b, -1, -1), lat], dim=1))
        weights = []
        for block in dec.transformer:
            seq, w = block(seq, need_weights=need_weights)
            if need_weights:
                weights.append(w)
        out = dec.ffn(dec.ln_post(seq[:, 1 : 1 + self.cfg.num_2d]))
        return out, weights

    def to_pixels(self, out: torch.Tensor) -> torch.Tensor:
        """Decoder output -> unclamped pixels ``[B,3,H,W]`` through the base decoder."""
        g = self.cfg.grid
        if self.cfg.base.kind == "vqgan":
            return self.base_tokenizer.vqgan.decode_soft(torch.softmax(out.float(), dim=-1), g)
        code = out.reshape(out.shape[0], g, g, -1).permute(0, 3, 1, 2)
        return self.base_tokenizer.vae.decode(code)

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Reconstruct pixels in [0,1] from stored 1D VQ indices ``[B, N]`` (quantised models only)."""
        if not self.cfg.quantize:
            raise ValueError("decode_indices needs a quantised model; this one has continuous tokens")
        with torch.no_grad():
            out, _ = self.decode_tokens(self.quantize.lookup(indices))
            return self.to_pixels(out).clamp(0.0, 1.0)

    def _attention_maps(self, weights: list[torch.Tensor], n: int, indexing: str) -> torch.Tensor:
        g, n2d = self.cfg.grid, self.cfg.num_2d
        # Latent token j is key 1 + n2d + j; the official notebook read key n2d + j (off by one).
        start = 1 + n2d if indexing == "corrected" else n2d
        maps = [w[:, 1 : 1 + n2d, start : start + n].transpose(1, 2) for w in weights]
        return torch.stack(maps, dim=1).reshape(weights[0].shape[0], len(weights), n, g, g)

    # -- the protocol ------------------------------------------------------------------------------
    def rollout(
        self,
        images: torch.Tensor,
        budgets: Iterable[int] | None = None,
        *,
        decode: bool = True,
        attention: bool | str = False,
        generator: GeneratorArg = None,
        halting: str | None = None,
    ) -> Rollout:
        """Encode once up to the largest budget; return per-budget tokens and reconstructions.

        Args:
            images: ``[B,3,S,S]`` float in [0,1].
            budgets: token counts from `budgets` (default: all).
            decode: decode pixels at the requested budgets.
            attention: False, True/"corrected", "official-notebook", or "full" (adds the raw
                ``[B, layers, L, L]`` weights to ``extras["attention_full"]``; maps use "corrected").
            generator: for ``official`` an optional `torch.Generator` (else the global RNG); for
                ``seeded`` one generator per image (`generators.per_image_generators`); None:
                per image from `generators.DEFAULT_SEED` and the image's pixels.
            halting: override the model's halting policy for this call.

        Over 60 lines because its loop (encode, quantise, decode, halt 2D tokens, append the next
        latents) follows the official rollout step by step, and the halting draws must stay in that order.
        """
        check_images(images, self.image_size)
        req = check_budgets(self.budgets if budgets is None else budgets, self.budgets)
        policy = halting or self.halting
        halting_rng.HALTING_POLICIES.get(policy)
        indexing = "corrected" if attention in (True, "full") else attention
        if indexing and indexing not in ATTENTION_INDEXING:
            raise ValueError(f"attention must be False, True, 'full' or one of {ATTENTION_INDEXING}")
        cfg, n2d, tpi = self.cfg, self.cfg.num_2d, self.cfg.tokens_per_iter
        wanted = {b // tpi - 1: b for b in req}
        masks_2d = cfg.base.kind == "vqgan" and policy != "off"
        # Contiguous NCHW on purpose: channels-last inputs take other conv kernels whose rounding
        # moves base features by ~4e-4 (measured), so numbers would depend on the caller's layout.
        images = images.to(self.device, torch.float32).contiguous()
        if policy == "seeded" and generator is None:
            # Called without generators (the Python API): per image, from the default seed and its pixels.
            generator = default_generators(images)
        outputs: dict[int, BudgetOutput] = {}
        with torch.no_grad():
            base_z, target, extras = self.base_features(images, policy, generator)
            x, pix = self.initial_sequence(images, base_z)
            extras["patch_embed_out"] = pix
            replacement = self.encoder_positional_embedding[1:] + self.encoder_mask_token.reshape(1, -1)
            last = max(wanted)
            for t in range(last + 1):
                x = self.encoder(x)
                latent = x[:, 1 + n2d :]
                if t not in wanted and not masks_2d:
                    x = self._next(x, t)
                    continue
                tokens, indices = self.quantize_latents(latent)
                out, weights = self.decode_tokens(tokens, need_weights=t in wanted and bool(indexing))
                mask = torch.zeros(images.shape[0], n2d, dtype=torch.bool, device=self.device)
                halt: dict[str, torch.Tensor] = {}
                if masks_2d:
                    p = torch.softmax(out.float(), dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
                    draw = halting_rng.bernoulli(p, policy, generator)
                    mask = draw.bool() & (p >= cfg.halting_threshold)
                    halt = {"halt_prob": p, "halt_draw": draw.to(torch.uint8)}
                    x = torch.cat([x[:, :1], torch.where(mask.unsqueeze(-1), replacement, x[:, 1 : 1 + n2d]),
                                   x[:, 1 + n2d :]], dim=1)
                elif policy != "off" and t in wanted:
                    # The official VAE rule compares this error with its threshold but never applies
                    # the mask (alit_official.md §6.3); kept for inspection only.
                    halt = {"halt_err": (out - target).abs().mean(-1)}
                if t in wanted:
                    outputs[wanted[t]] = self._budget_output(
                        wanted[t], latent, tokens, indices, out, weights, mask, halt, decode, indexing, attention
                    )
                if t < last:
                    x = self._next(x, t)
        return Rollout(outputs=outputs, extras=extras)

    def _next(self, x: torch.Tensor, t: int) -> torch.Tensor:
        if t + 1 >= self.cfg.iterations:
            return x
        new = self.latent_template(t + 1).unsqueeze(0).expand(x.shape[0], -1, -1)
        return self.encoder_ln_recursive(torch.cat([x, new], dim=1))

    def _budget_output(self, budget, latent, tokens, indices, out, weights, mask, halt, decode, indexing, attention):
        key = "logits" if self.cfg.base.kind == "vqgan" else "decoded_code"
        extras = {key: out, **halt}
        recon = None
        if decode:
            raw = self.to_pixels(out)
            extras["reconstruction_raw"] = raw
            recon = raw.clamp(0.0, 1.0)
        maps = None
        if indexing:
            maps = self._attention_maps(weights, latent.shape[1], indexing)
            if attention == "full":
                extras["attention_full"] = torch.stack(weights, dim=1)
        return BudgetOutput(
            budget=budget, latent=latent, tokens=tokens, indices=indices, reconstruction=recon,
            attention=maps, halting_mask=mask, extras=extras,
        )
