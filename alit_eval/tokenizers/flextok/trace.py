"""Localising a FlexTok divergence: the official tolerances per tensor and the first tensor out of them.

The fixture README orders the intermediates from input to output (VAE latents → encoder → FSQ input →
tokens; then, from the same noise, the decoder's step-0 registers, patches, time embedding, trunk
output, the step-0 velocities, later steps, the latents and the images). `first_divergence` walks that
order and names the first tensor whose max |difference| exceeds its tolerance, so a failing end
result points at the computation that broke. `trace_of` computes our side of that chain.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch

# Recommended absolute tolerances of the official fixture (README "Tolerances"); 0 = exact.
EXACT = ("tokens", "fsq_level_indices", "sampled_posterior_tokens", "fsq_codes", "fsq_codes_from_tokens",
         "noise_seed1000")
ORDER = ("vae_posterior_mean", "vae_posterior_logvar", "vae_latents", "enc_patch_emb", "enc_patches_with_posemb",
         "enc_transformer_out", "enc_registers_out", "fsq_input", "fsq_bounded", "fsq_codes", "fsq_level_indices",
         "tokens", "noise_seed1000", "step0_cond_dec_registers_after_nested_dropout",
         "step0_uncond_dec_registers_after_nullcond", "step0_cond_dec_patches_with_posemb", "step0_cond_dec_temb",
         "step0_cond_dec_seq_out", "trace_v_cond", "trace_v_uncond", "trace_v_guided", "trace_x")


def tolerance(name: str) -> float:
    """The recommended absolute tolerance of a fixture tensor (0.0 = must be identical)."""
    if name in EXACT:
        return 0.0
    if name.startswith(("vae_", "sampled_posterior")):
        return 1e-4
    if name == "fsq_input":
        return 2e-5
    if name.startswith("enc_") or name == "fsq_bounded":
        return 5e-5
    if name.startswith("latents_cfg"):
        return 1e-3
    if name.startswith(("latents_", "trace_x")):
        return 1e-4
    if name == "step0_cond_dec_seq_out":
        return 2e-3
    if name.startswith(("trace_v", "step0_")):
        return 2e-4
    if name.startswith("images_"):
        return 5e-4
    if name == "trace_t":
        return 0.0
    raise KeyError(f"no tolerance for {name}")


def max_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """Max |ours − ref| (inf on a shape mismatch)."""
    if tuple(ours.shape) != tuple(ref.shape):
        return float("inf")
    return float((ours.double().cpu() - ref.double()).abs().max()) if ref.numel() else 0.0


def compare(ours: Mapping[str, torch.Tensor], ref: Mapping[str, torch.Tensor],
            names: Iterable[str] | None = None) -> dict[str, tuple[float, float]]:
    """``name -> (max error, tolerance)`` for every name present on both sides."""
    keys = [n for n in (names if names is not None else ref) if n in ours and n in ref]
    return {n: (max_error(ours[n], ref[n]), tolerance(n)) for n in keys}


def first_divergence(ours: Mapping[str, torch.Tensor], ref: Mapping[str, torch.Tensor]) -> str:
    """One line naming the first tensor (in `ORDER`) out of tolerance, or saying none is."""
    for name, (err, tol) in compare(ours, ref, ORDER).items():
        if err > tol:
            return f"first divergence: {name} (max |diff| {err:.3g} > tolerance {tol:g})"
    return "no divergence along the traced chain (encode, noise, step-0 internals, per-step velocities)"


@torch.no_grad()
def trace_of(model: Any, images_pm1: torch.Tensor, noise: torch.Tensor, *, k: int, steps: int, guidance: float,
             apg: bool) -> dict[str, torch.Tensor]:
    """Our side of the traced chain for images in [-1,1], injected noise and one (k, T, g, APG) setting."""
    out = dict(model.tokenize(images_pm1, torch.Generator()))
    codes = model.fsq.codes_from_tokens(out["tokens"])
    keep = torch.full((len(codes),), k, device=codes.device)
    regs = model.decoder_registers(codes, keep)
    out["step0_cond_dec_registers_after_nested_dropout"] = regs
    out["step0_uncond_dec_registers_after_nullcond"] = model.null_registers(regs)
    inner: dict[str, torch.Tensor] = {}
    model.velocity(noise, torch.ones(len(noise), device=noise.device), regs, inner)
    out.update({f"step0_cond_{n}": v for n, v in inner.items()})
    out["noise_seed1000"] = noise
    record: dict[str, list[torch.Tensor]] = {}
    model.sample(codes, keep, noise, steps=steps, guidance=guidance, apg=apg, record=record)
    out.update({f"trace_{n}": torch.stack(v) for n, v in record.items()})
    return out
