"""Per-image random generators for every family whose inference draws random numbers.

ALIT (halting draws, VAE noise) and KARL (VAE noise) take ``generator=`` one `torch.Generator` per
image, seeded from (seed, image id), so results do not depend on batch size or order; deterministic
families (One-D-Piece, TiTok) ignore it. The engine and analyses import them from here, so they name
no family module (the implementation lives with ALIT's halting policies, where it began).
"""

from __future__ import annotations

from alit_eval.tokenizers.alit.halting import image_seed, per_image_generators

__all__ = ["image_seed", "per_image_generators"]
