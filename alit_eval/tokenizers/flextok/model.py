"""FlexTok tokenizer implementing the `AdaptiveTokenizer` protocol (flextok_official.md §2).

Budgets are prefix lengths k = 1..256. `rollout` encodes once (VAE → register encoder with the
causal register mask → FSQ: all 256 tokens), draws the initial noise once per image, then decodes all
requested k **together**: the (image, k) rows of a batch form one decoder batch per Euler step, with
the conditional and unconditional passes concatenated (official: one ``detokenize`` call per k, one
pass per guidance branch). Every k of an image starts from the same noise, as the official code does
when each k's ``detokenize`` gets a generator seeded the same way.

Randomness (all of it): the decoder's initial noise, one ``(1, C, h, w)`` draw per image, and the VAE
posterior sample when the file's config enables it. ``generator``:

- a sequence of one generator per image (alit-eval's default): each image draws from its own
  generator (posterior ε first, then the noise), so numbers do not depend on batch size or order;
- one ``torch.Generator``: the official draw, images in list order from that one generator (the
  posterior, if sampled, comes from the global RNG as diffusers does); reproduces the fixtures;
- None: per-image generators seeded from each image's content (`generators.default_generators`);
- the option ``noise="official"`` (whatever `generator` holds): the official global-RNG stream,
  including the ``torch.bernoulli`` the official FSQ eval path calls on every ``tokenize`` (it
  advances the global RNG).

The lower-level `tokenize` / `draw_noise` take ``generator=None`` as the global RNG, as the official code.

Decode options (recorded with every number): ``steps`` (T, README 20), ``guidance`` (g, README 7.5),
``apg`` (norm guidance, README on).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from alit_eval.errors import AlitEvalError
from alit_eval.tokenizers.base import BudgetError, BudgetOutput, GeneratorArg, Rollout, check_images
from alit_eval.tokenizers.flextok.config import FlexTokConfig
from alit_eval.tokenizers.flextok.modules import (FSQ, AdaLNBlock, Block, Linear, PatchEmbed, Table, TimeEmbed,
                                                  ToPatchesHead, Trunk, layer_norm, patchify, unpatchify)
from alit_eval.tokenizers.flextok.sampler import check_decode_options, euler_sample
from alit_eval.tokenizers.flextok.vae import VaeWrapper

MAX_ROWS = 256  # decoder rows (image x k x guidance branch) per forward pass


class _Holder(nn.Module):
    """``<part>.module_dict.<name>``: the official wrappers' naming, with a hard-coded execution order."""

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        super().__init__()
        self.module_dict = nn.ModuleDict(modules)


class _Param(nn.Module):
    def __init__(self, name: str, *shape: int) -> None:
        super().__init__()
        self.register_parameter(name, nn.Parameter(torch.zeros(*shape)))


def check_prefix(requested: Iterable[int], n: int) -> list[int]:
    """Sorted prefix lengths, each 1..n (one line naming the range otherwise)."""
    try:
        req = sorted({int(b) for b in requested})
    except (TypeError, ValueError):
        raise BudgetError(f"budgets must be integers; FlexTok decodes any prefix length from 1 to {n}") from None
    bad = [b for b in req if not 1 <= b <= n]
    if not req or bad:
        raise BudgetError(f"budget(s) {bad[:5] or 'none'} not available; FlexTok decodes any prefix length from 1 to {n}")
    return req


class FlexTokTokenizer(nn.Module):
    """FlexTok with the official parameter names (its state_dict is the released file layout)."""

    def __init__(self, cfg: FlexTokConfig, *, name: str = "flextok", steps: int = 20, guidance: float = 7.5,
                 apg: bool = True, noise: str = "seeded") -> None:
        super().__init__()
        self.cfg, self.name = cfg, name
        self.steps, self.guidance, self.apg = check_decode_options(steps, guidance, apg)
        self.noise = _check_noise(noise)
        we, wd, g, n, pd = cfg.enc_width, cfg.dec_width, cfg.posemb_grid, cfg.n_registers, cfg.patch_dim
        self.vae = VaeWrapper(cfg.vae_channels, cfg.vae_layers_per_block, cfg.vae_norm_groups, cfg.latent_channels,
                              cfg.scaling_factor)
        self.encoder = _Holder({
            "enc_patch_emb": PatchEmbed(pd, we), "enc_posemb_module": Table(1, we, g, g),
            "enc_register_module": _Param("registers", n, we),
            "enc_transformer": Trunk([Block(we, cfg.enc_head_dim, cfg.mlp_hidden(we)) for _ in range(cfg.enc_depth)]),
            "enc_to_latents": Linear(we, cfg.fsq_dim),
        })
        self.decoder = _Holder({
            "dec_from_latents": Linear(cfg.fsq_dim, wd), "dec_registers_posemb_module": Table(1, 1, wd, n),
            "dec_nested_dropout": _Param("dropout_mask_token", wd),
            "dec_latent_dropout": _Param("nullcond", wd) if cfg.null_cond == "learned" else nn.Module(),
            "dec_noise_patch_emb": PatchEmbed(pd, wd), "dec_patches_posemb_module": Table(1, wd, g, g),
            "dec_time_embedder": TimeEmbed(wd, cfg.freq_size, cfg.max_timestep),
            "dec_transformer": Trunk([AdaLNBlock(wd, cfg.dec_head_dim, cfg.mlp_hidden(wd), cfg.adaln_expansion)
                                      for _ in range(cfg.dec_depth)]),
            "dec_to_patches": ToPatchesHead(wd, pd),
        })
        self.fsq = FSQ(cfg.fsq_levels)

    # -- protocol attributes -----------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return self.cfg.image_size

    @property
    def budgets(self) -> tuple[int, ...]:
        return self.cfg.budgets

    @property
    def device(self) -> torch.device:
        return self.encoder.module_dict["enc_register_module"].registers.device

    def decode_options(self) -> dict[str, object]:
        """The decode options numbers are produced with (to record with them)."""
        return {"steps": self.steps, "guidance": self.guidance, "apg": self.apg, "noise": self.noise}

    # -- encoding ----------------------------------------------------------------------------------
    def _posemb(self, table: Table) -> torch.Tensor:
        g = self.cfg.grid  # the stored tables are cropped top-left to the grid, as the official adder does
        return table.posembs[0, :, :g, :g].permute(1, 2, 0)

    def _enc_mask(self, device: torch.device) -> torch.Tensor | None:
        p, n = self.cfg.n_patches, self.cfg.n_registers
        if self.cfg.enc_mask == "full":
            return None
        # causal_last: patches see patches only; register i sees all patches and registers 0..i.
        q = torch.arange(p + n, device=device)[:, None]
        k = torch.arange(p + n, device=device)[None, :]
        return (k < p) | ((q >= p) & (k <= q))

    def encode_latents(self, latents: torch.Tensor, record: dict | None = None) -> torch.Tensor:
        """Scaled VAE latents ``[B,C,h,w]`` -> register outputs before quantisation ``[B,256,d]``."""
        md, cfg = self.encoder.module_dict, self.cfg
        emb = md["enc_patch_emb"].patch_proj(patchify(latents.permute(0, 2, 3, 1), cfg.patch_size))
        with_pos = emb + self._posemb(md["enc_posemb_module"])
        b = len(latents)
        seq = torch.cat([with_pos.reshape(b, cfg.n_patches, -1),
                         md["enc_register_module"].registers.expand(b, -1, -1)], dim=1)
        mask = self._enc_mask(seq.device)
        for block in md["enc_transformer"].blocks:
            seq = block(seq, mask)
        regs = seq[:, cfg.n_patches:]
        z = md["enc_to_latents"].proj(layer_norm(regs))
        if record is not None:
            record.update(enc_patch_emb=emb, enc_patches_with_posemb=with_pos, enc_transformer_out=seq,
                          enc_registers_out=regs, fsq_input=z)
        return z

    def tokenize(self, images_pm1: torch.Tensor, generator: GeneratorArg = None) -> dict[str, torch.Tensor]:
        """Images ``[B,3,H,W]`` in [-1,1] -> every intermediate of the official ``tokenize``
        (``vae_*``, ``enc_*``, ``fsq_input``, ``fsq_*``, ``tokens`` ``[B,256]`` int64)."""
        out: dict[str, torch.Tensor] = {}
        # Contiguous NCHW: other memory layouts take other conv kernels (differences up to 5e-4 here).
        images_pm1 = images_pm1.contiguous()
        eps = self._posterior_eps(images_pm1, generator)
        out.update(self.vae.encode(images_pm1, eps))
        if eps is not None:
            out["vae_posterior_eps"] = eps
        z = self.encode_latents(out["vae_latents"], out)
        if generator is None:
            # The official FSQ eval path draws torch.bernoulli of a zero tensor (value unused); replaying
            # it keeps the global stream where the official code leaves it (flextok_official.md §4).
            torch.bernoulli(torch.zeros(1, device=z.device))
        out.update(self.fsq.quantize(z))
        return out

    def _posterior_eps(self, images: torch.Tensor, generator: GeneratorArg) -> torch.Tensor | None:
        if not self.cfg.sample_posterior:
            return None
        lat = self.cfg.latent_size
        shape = (len(images), self.cfg.latent_channels, lat, lat)
        if generator is None or isinstance(generator, torch.Generator):
            return torch.randn(shape, device=images.device)  # diffusers: global RNG, whole batch at once
        gens = _per_image(generator, len(images))
        return torch.cat([torch.randn((1, *shape[1:]), generator=g, device=g.device) for g in gens]).to(images.device)

    # -- decoding ----------------------------------------------------------------------------------
    def draw_noise(self, batch: int, generator: GeneratorArg = None) -> torch.Tensor:
        """Initial noise ``[B,C,h,w]`` float32: one ``(1,C,h,w)`` draw per image (see the module docstring)."""
        lat = self.cfg.latent_size
        shape = (1, self.cfg.latent_channels, lat, lat)
        if generator is None or isinstance(generator, torch.Generator):
            dev = generator.device if generator is not None else self.device
            draws = [torch.randn(shape, generator=generator, device=dev) for _ in range(batch)]
        else:
            draws = [torch.randn(shape, generator=g, device=g.device) for g in _per_image(generator, batch)]
        return torch.cat(draws).to(self.device)

    def decoder_registers(self, codes: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Codes ``[N,256,d]`` and prefix lengths ``[N]`` -> register inputs ``[N,256,W]``: Linear(codes)
        + learned positions, positions ≥ k **replaced** by the mask token (no position added)."""
        md = self.decoder.module_dict
        regs = md["dec_from_latents"].proj(codes) + md["dec_registers_posemb_module"].posembs[0, 0].t()
        masked = torch.arange(regs.shape[1], device=regs.device)[None, :] >= keep[:, None]
        return torch.where(masked[..., None], md["dec_nested_dropout"].dropout_mask_token, regs)

    def null_registers(self, like: torch.Tensor) -> torch.Tensor:
        """The unconditional pass's registers: all zero, or the learned null condition everywhere."""
        if self.cfg.null_cond == "learned":
            return self.decoder.module_dict["dec_latent_dropout"].nullcond.expand_as(like)
        return torch.zeros_like(like)

    def velocity(self, x: torch.Tensor, t: torch.Tensor, regs: torch.Tensor, record: dict | None = None,
                 weights: list | None = None) -> torch.Tensor:
        """One decoder call: noisy latents ``[N,C,h,w]``, times ``[N]``, registers -> velocity ``[N,C,h,w]``."""
        md, cfg = self.decoder.module_dict, self.cfg
        emb = md["dec_noise_patch_emb"].patch_proj(patchify(x.permute(0, 2, 3, 1), cfg.patch_size))
        emb = emb + self._posemb(md["dec_patches_posemb_module"])
        temb = md["dec_time_embedder"](t)
        n, p = len(x), cfg.n_patches
        seq = torch.cat([emb.reshape(n, p, -1), regs], dim=1)
        for block in md["dec_transformer"].blocks:
            seq = block(seq, temb, p, weights)
        out = md["dec_to_patches"](seq[:, :p].reshape(n, cfg.grid, cfg.grid, -1), temb)
        if record is not None:
            record.update(dec_patches_with_posemb=emb, dec_temb=temb, dec_seq_out=seq)
        return unpatchify(out, cfg.patch_size, cfg.latent_channels).permute(0, 3, 1, 2)

    def sample(self, codes: torch.Tensor, keep: torch.Tensor, noise: torch.Tensor, *, steps: int, guidance: float,
               apg: bool, record: dict | None = None, weights: list | None = None) -> torch.Tensor:
        """Decoder latents ``[N,C,h,w]`` for rows of (codes ``[N,256,d]``, prefix ``[N]``, noise ``[N,C,h,w]``).

        ``record`` gets the per-step trace; ``weights`` the conditional pass's head-averaged decoder
        attention of the last step (t = 1/T), one ``[N, 512, 512]`` per block.
        """
        steps, guidance, apg = check_decode_options(steps, guidance, apg)
        cond = self.decoder_registers(codes, keep)
        both = torch.cat([cond, self.null_registers(cond)])

        def velocity(x: torch.Tensor, t: float, guided: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
            xs, regs = (torch.cat([x, x]), both) if guided else (x, cond)
            last = weights is not None and t == 1 / steps  # attention only of the last step (t = 1/T)
            ts = torch.full((len(xs),), t, device=x.device)
            if last or len(xs) <= MAX_ROWS:
                v = self.velocity(xs, ts, regs, None, weights if last else None)
            else:  # rows are independent: chunks bound the activation memory of large (k, image) batches
                v = torch.cat([self.velocity(xs[i: i + MAX_ROWS], ts[i: i + MAX_ROWS], regs[i: i + MAX_ROWS])
                               for i in range(0, len(xs), MAX_ROWS)])
            if last:
                weights[:] = [w[: len(x)] for w in weights]  # the conditional rows
            return (v[: len(x)], v[len(x):]) if guided else (v, None)

        return euler_sample(velocity, noise, steps, guidance, apg, record)

    def decode_pixels(self, latents: torch.Tensor, chunk: int = 16) -> torch.Tensor:
        """Decoder latents -> images in [-1,1] (not clamped), in chunks to bound the VAE's memory."""
        return torch.cat([self.vae.decode(latents[i: i + chunk].contiguous()) for i in range(0, len(latents), chunk)])

    # -- the protocol ------------------------------------------------------------------------------
    def rollout(self, images: torch.Tensor, budgets: Iterable[int] | None = None, *, decode: bool = True,
                attention: bool | str = False, generator: GeneratorArg = None, steps: int | None = None,
                guidance: float | None = None, apg: bool | None = None, noise: str | None = None,
                initial_noise: torch.Tensor | None = None) -> Rollout:
        """Encode once; decode every requested prefix k in one batched flow sampling.

        Args:
            images: ``[B,3,S,S]`` float in [0,1] (mapped to [-1,1] as (x − 0.5)/0.5).
            budgets: prefix lengths (default: all 1..256).
            decode: run the flow decoder and the VAE decoder (False: tokens only).
            attention: True: the decoder attention of `ATTENTION_DEFINITION` (family module).
            generator: per-image generators, one generator, or None (module docstring).
            steps, guidance, apg: decode options (None: the model's, README defaults unless loaded otherwise).
            noise: ``seeded`` (the generators as given; without any, per image from its content,
                `generators.default_generators`) or ``official`` (the official code's global-RNG stream,
                whatever `generator` holds); None: the model's.
            initial_noise: ``[B,C,h,w]`` injected initial noise (replaces the draw; the official noise_read_key).

        Returns:
            `Rollout`; per k: ``latent`` = register outputs before FSQ ``[B,k,6]``, ``tokens`` = FSQ codes
            ``[B,k,6]``, ``indices`` = token ids ``[B,k]``, ``reconstruction`` in [0,1], extras
            ``latents`` (decoder output before the VAE) and ``reconstruction_raw``; rollout extras hold
            the full ``tokens``, ``fsq_input`` and the initial ``noise``.
        """
        check_images(images, self.image_size)
        req = check_prefix(self.budgets if budgets is None else budgets, self.cfg.n_registers)
        opts = check_decode_options(self.steps if steps is None else steps,
                                    self.guidance if guidance is None else guidance, self.apg if apg is None else apg)
        if attention not in (False, True):
            raise AlitEvalError(f"FlexTok offers attention=True (decoder attention of the last flow step), not {attention!r}")
        if _check_noise(self.noise if noise is None else noise) == "official":
            generator = None
        elif generator is None:
            from alit_eval.tokenizers.generators import default_generators

            generator = default_generators(images)
        x = (images.to(self.device, torch.float32).contiguous() - 0.5) / 0.5
        b = len(x)
        with torch.no_grad():
            enc = self.tokenize(x, generator)
            codes = self.fsq.codes_from_tokens(enc["tokens"])
            extras = {"tokens": enc["tokens"], "fsq_input": enc["fsq_input"]}
            decoded: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
            maps: list[torch.Tensor] = []
            if decode or attention:
                start = self._initial_noise(b, generator, initial_noise)
                extras["noise"] = start
                kk = len(req)
                keep = torch.tensor(req, device=self.device).repeat_interleave(b)
                lat = self.sample(codes.repeat(kk, 1, 1), keep, start.repeat(kk, 1, 1, 1), steps=opts[0],
                                  guidance=opts[1], apg=opts[2], weights=maps if attention else None)
                pix = self.decode_pixels(lat) if decode else None
                for i, k in enumerate(req):
                    rows = slice(i * b, (i + 1) * b)
                    decoded[k] = (lat[rows], pix[rows] * 0.5 + 0.5 if pix is not None else None)
            outputs = {k: self._budget_output(k, enc, codes, decoded.get(k, (None, None)),
                                              self._maps(maps, i * b, b, k) if attention else None)
                       for i, k in enumerate(req)}
        return Rollout(outputs=outputs, extras=extras)

    def _initial_noise(self, b: int, generator: GeneratorArg, initial_noise: torch.Tensor | None) -> torch.Tensor:
        """The flow's starting noise: drawn from `generator`, or the injected `initial_noise` (shape checked)."""
        if initial_noise is None:
            start = self.draw_noise(b, generator)
        elif tuple(initial_noise.shape) != (b, self.cfg.latent_channels, self.cfg.latent_size,
                                            self.cfg.latent_size):
            raise AlitEvalError(f"injected noise must have shape {(b, self.cfg.latent_channels)} + latent "
                                f"grid; got {tuple(initial_noise.shape)}")
        else:
            start = initial_noise
        return start.to(self.device, torch.float32)

    @staticmethod
    def _budget_output(k: int, enc: dict[str, torch.Tensor], codes: torch.Tensor,
                       decoded: tuple[torch.Tensor | None, torch.Tensor | None],
                       attention: torch.Tensor | None) -> BudgetOutput:
        """Prefix k's output: its tokens, and its decoder latents and reconstruction when decoded."""
        lat_k, raw = decoded
        ex = {} if lat_k is None else {"latents": lat_k}
        if raw is not None:
            ex["reconstruction_raw"] = raw
        return BudgetOutput(
            budget=k, latent=enc["fsq_input"][:, :k], tokens=codes[:, :k], indices=enc["tokens"][:, :k],
            reconstruction=raw.clamp(0.0, 1.0) if raw is not None else None, attention=attention, extras=ex)

    def _maps(self, weights: Sequence[torch.Tensor], start: int, b: int, k: int) -> torch.Tensor:
        """``[B, layers, k, g, g]``: attention from patch query p to register j < k (see the family's definition)."""
        p, g = self.cfg.n_patches, self.cfg.grid
        per_layer = [w[start: start + b, :p, p: p + k].transpose(1, 2) for w in weights]
        return torch.stack(per_layer, dim=1).reshape(b, len(weights), k, g, g)


def _check_noise(noise: object) -> str:
    if noise not in ("seeded", "official"):
        raise AlitEvalError(f"FlexTok noise policy must be seeded or official; got {noise!r}")
    return noise  # type: ignore[return-value]


def _per_image(generator: Sequence[torch.Generator], batch: int) -> list[torch.Generator]:
    gens = list(generator)
    if len(gens) != batch:
        raise AlitEvalError(f"got {len(gens)} generators for {batch} images; pass one per image, one generator, or None")
    return gens
