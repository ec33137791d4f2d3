"""Random streams for every family whose inference draws random numbers (per image, or global).

ALIT (halting draws, VAE noise) and KARL (VAE noise) take ``generator=`` one `torch.Generator` per
image, seeded from (seed, image id), so results do not depend on batch size or order; deterministic
families (One-D-Piece, TiTok) ignore it. The engine and analyses import them from here, so they name
no family module (the implementation lives with ALIT's halting policies, where it began). The
global-stream policies (``official``) seed the global RNG once per run; for a tokenizer that is
not ALIT `start_global_stream` only seeds.
"""

from __future__ import annotations

from alit_eval.tokenizers.alit.halting import image_seed, per_image_generators, start_global_stream, uses_global_stream

__all__ = ["image_seed", "per_image_generators", "start_global_stream", "uses_global_stream"]
