"""Family ingredients of FlexTok as plain functions (for the family registry to point at).

- `load_state_dict`: the registry's uniform loader (config from the file, strict load, decode options).
- `describe`, `bits_per_token` (log2 of the FSQ codebook: log2(64000) ≈ 15.97 bits for the releases),
  `flop_components` (VAE encoder, register encoder, flow decoder — run T or 2T times per k —, VAE decoder);
  the closed form of the same split is `flops.flops_per_budget`.
- Decoder attention (`ATTENTION_DEFINITION`): FlexTok's decoder attends jointly over [256 noisy-latent
  patch tokens; 256 registers]; "attention of 2D position p to token j" is the softmax weight,
  averaged over heads, from the patch query p (row-major over the 16x16 grid of 2x2 latent patches,
  i.e. 16x16 pixel cells) to register key 256 + j, in the **conditional** pass of the **last** Euler
  step (t = 1/T, the state closest to the final latents), per decoder block. Registers j ≥ k hold the
  mask token and are not reported. It describes where the decoder reads each token while finishing
  the image; other steps can attend differently (earlier steps see mostly noise).

Precision and provenance, to record with numbers: the official code has no evaluation; its notebook
runs bf16 autocast on GPU; alit-eval runs float32 and reproduces the official CPU float32 outputs
within the fixture tolerances. Decoding is generative: every number depends on the seed, the step
count T, the guidance scale g and APG (README defaults T = 20, g = 7.5, APG on), recorded with it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from alit_eval.errors import AlitEvalError
from alit_eval.tokenizers.flextok.config import FlexTokConfig

if TYPE_CHECKING:
    from torch import nn

    from alit_eval.tokenizers.flextok.model import FlexTokTokenizer

ATTENTION_DEFINITION = (
    "head-averaged decoder self-attention from the patch query of 2D position p (of 16x16 latent 2x2 patches) to "
    "register j (key 256+j, j < k), conditional pass of the last Euler step (t = 1/T), per decoder block"
)
PRECISION_NOTE = ("generative decoder: numbers depend on seed, flow steps T, guidance g and APG (README: T 20, g 7.5, "
                  "APG on); the official notebook runs bf16 autocast on GPU, alit-eval float32")
RELEASE_NOTE = ("release configs are read from each file's metadata (VAE scaling factor, posterior sampling and null "
                "condition are not documented elsewhere); weights under the Apple AMLR licence (research only)")


def describe(cfg: FlexTokConfig) -> str:
    """One line for tables, e.g. ``FlexTok d18-d28 (1152w enc, 1792w dec), prefix 1..256, FSQ 64000``."""
    return (f"FlexTok d{cfg.enc_depth}-d{cfg.dec_depth} ({cfg.enc_width}w enc, {cfg.dec_width}w dec), prefix "
            f"1..{cfg.n_registers}, FSQ {cfg.codebook_size} {list(cfg.fsq_levels)}")


def bits_per_token(cfg: FlexTokConfig) -> float:
    """Bits one register token costs: log2 of the FSQ codebook (Σ log2 L_d)."""
    return math.log2(cfg.codebook_size)


def flop_components(model: "FlexTokTokenizer") -> dict[str, list["nn.Module"]]:
    """Sub-modules per FLOP component (disjoint subtrees), for hook-based FLOP counting."""
    vae = model.vae.vae
    return {"vae_encoder": [vae.encoder, vae.quant_conv], "encoder": [model.encoder], "decoder": [model.decoder],
            "vae_decoder": [vae.post_quant_conv, vae.decoder]}


def load_state_dict(sd: Any, meta: Any = None, *, name: str = "flextok", source: str = "<state_dict>",
                    heads: int | None = None, steps: int | None = None, guidance: float | None = None,
                    apg: bool | None = None, noise: str | None = None, preset: str | None = None) -> "FlexTokTokenizer":
    """The family registry's uniform loader: state_dict + reader meta -> `FlexTokTokenizer`.

    Args:
        heads: not applicable (FlexTok's head dims are in its config); must be None.
        steps, guidance, apg, noise: default inference options (None: the declared defaults, i.e. the
            official README's T 20, g 7.5, APG on, and seeded noise).
        preset: the released variant, when loading a named pretrained entry (recorded in the config).
    """
    from alit_eval.tokenizers.flextok.checkpoint import from_state_dict
    from alit_eval.tokenizers.flextok.options import OPTIONS

    if heads is not None:
        raise AlitEvalError("--heads does not apply to FlexTok: its head dims are read from the file's config")
    given = {"steps": steps, "guidance": guidance, "apg": apg, "noise": noise}
    options = {o.name: o.default if given[o.name] is None else o.check(given[o.name], owner="FlexTok")
               for o in OPTIONS}
    return from_state_dict(sd, meta=meta, name=name, source=source, preset=preset, **options)
