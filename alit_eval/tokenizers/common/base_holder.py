"""The holder of a frozen base 2D tokenizer under its official key (``base_tokenizer.vqgan`` / ``.vae``).

ALIT and KARL both wrap their base VQGAN or KL-VAE this way (the official key layout), so the holder
lives here rather than in either family's folder.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from alit_eval.tokenizers.base2d.klvae import KLVAE
from alit_eval.tokenizers.base2d.vqgan import VQGAN


class BaseTokenizer(nn.Module):
    """Holds the base 2D tokenizer of ``cfg.base`` under ``vqgan`` or ``vae``."""

    def __init__(self, cfg: Any) -> None:
        super().__init__()
        self.kind = cfg.base.kind
        if self.kind == "vqgan":
            self.vqgan = VQGAN(cfg.base)
        else:
            self.vae = KLVAE(cfg.base)
