"""One-D-Piece / TiTok tokenizer implementing the `AdaptiveTokenizer` protocol.

Budgets are prefix lengths. `rollout` encodes once (the encoder always produces all N tokens; there
is no early exit, one_d_piece_official.md §1.6), quantises once, then decodes each requested prefix
k from the first k tokens only, with decoder positional rows 0..k-1 and nothing filling the tail,
and turns the decoder's code logits into pixels through the softmax mixture of the 1024 pixel-codebook
rows (no argmax) and the MaskGIT-VQGAN pixel decoder. One-D-Piece decodes every k in 1..N; TiTok,
the same code path, only k = N (the official strict length assertion).

Numerics note: the official evaluation ran under bf16 autocast with TF32 on GPU (only the VQ step in
float32); this re-implementation matches the official code in float32 on CPU (the fixture
tolerances), and GPU/bf16 numbers agree with the official ones only statistically. The released
One-D-Piece weights were uploaded before the repository's tail-drop fix (commit 473665d), so they
were presumably trained with prefix lengths 1..N-1 only: the k = N decode uses a latent position the
decoder never saw in training.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from alit_eval.tokenizers.base import BudgetError, BudgetOutput, GeneratorArg, Rollout, check_images
from alit_eval.tokenizers.one_d_piece.config import OneDPieceConfig
from alit_eval.tokenizers.one_d_piece.modules import TiTokDecoder, TiTokEncoder, VectorQuantizer
from alit_eval.tokenizers.one_d_piece.pixel_decoder import PixelCodebook, PixelDecoder


def check_prefix_budgets(requested: Iterable[int], cfg: OneDPieceConfig) -> list[int]:
    """Validate and sort requested prefix lengths.

    Raises:
        BudgetError: one line naming the valid range (never the list of N numbers).
    """
    n = cfg.num_latent_tokens
    try:
        req = sorted({int(b) for b in requested})
    except (TypeError, ValueError):
        raise BudgetError(f"budgets must be integers; {_valid(cfg)}") from None
    if not req:
        raise BudgetError(f"no budget requested; {_valid(cfg)}")
    bad = [b for b in req if not (1 <= b <= n) or (cfg.strict_length and b != n)]
    if bad:
        shown = ", ".join(map(str, bad[:5])) + (f" (+{len(bad) - 5} more)" if len(bad) > 5 else "")
        raise BudgetError(f"budget(s) {shown} not available; {_valid(cfg)}")
    return req


def _valid(cfg: OneDPieceConfig) -> str:
    n = cfg.num_latent_tokens
    if cfg.strict_length:
        return f"this {cfg.family} tokenizer decodes only its full length {n} (fixed-length TiTok)"
    return f"this {cfg.family} tokenizer decodes any prefix length from 1 to {n}"


class OneDPieceTokenizer(nn.Module):
    """One-D-Piece or TiTok with the official parameter names (state_dict = released file layout).

    Args:
        cfg: model configuration.
        name: display name used in results.
    """

    def __init__(self, cfg: OneDPieceConfig, *, name: str = "one_d_piece") -> None:
        super().__init__()
        self.cfg = cfg
        self.name = name
        self.latent_tokens = nn.Parameter(cfg.width ** -0.5 * torch.randn(cfg.num_latent_tokens, cfg.width))
        self.encoder = TiTokEncoder(cfg)
        self.decoder = TiTokDecoder(cfg)
        self.quantize = VectorQuantizer(cfg)
        self.pixel_quantize = PixelCodebook(cfg)
        self.pixel_decoder = PixelDecoder(cfg)

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

    # -- building blocks -----------------------------------------------------------------------
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode all N tokens.

        Args:
            images: ``[B,3,S,S]`` float in [0,1].

        Returns:
            ``(latent [B,N,W] pre-ln_post, z [B,N,d] unquantised, z_quantized [B,N,d], indices [B,N] int64)``.
        """
        latent, z = self.encoder(images, self.latent_tokens)
        zq, idx = self.quantize(z)
        return latent, z, zq, idx

    def decode_logits(
        self, tokens: torch.Tensor, need_weights: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Decoder on a prefix ``[B, k, d]`` -> logits ``[B, g*g, C]`` and attention weights per layer."""
        return self.decoder(tokens, need_weights=need_weights)

    def soft_code(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax mixture of pixel-codebook rows: logits ``[B, g*g, C]`` -> soft code ``[B, z, g, g]``."""
        return self.pixel_quantize(logits)

    def to_pixels(self, logits: torch.Tensor) -> torch.Tensor:
        """Decoder logits ``[B, g*g, C]`` -> unclamped pixels ``[B,3,S,S]``."""
        return self.pixel_decoder(self.soft_code(logits).contiguous())

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Pixels in [0,1] from stored indices ``[B, k]`` (a prefix; the official ``decode_tokens``)."""
        check_prefix_budgets([indices.shape[1]], self.cfg)
        with torch.no_grad():
            logits, _ = self.decode_logits(self.quantize.lookup(indices.to(self.device)))
            return self.to_pixels(logits).clamp(0.0, 1.0)

    def attention_maps(self, weights: Sequence[torch.Tensor], k: int) -> torch.Tensor:
        """Per-layer maps ``[B, layers, k, g, g]``: attention of 2D position p to token j.

        In the decoder sequence ``[class ; 256 mask queries ; k tokens]`` the query of 2D position
        p (row-major) is row ``1 + p`` and token j is key ``1 + g*g + j``; weights are head-averaged.
        """
        g, n2d = self.cfg.grid, self.cfg.num_2d
        maps = [w[:, 1 : 1 + n2d, 1 + n2d : 1 + n2d + k].transpose(1, 2) for w in weights]
        return torch.stack(maps, dim=1).reshape(weights[0].shape[0], len(weights), k, g, g)

    # -- the protocol ------------------------------------------------------------------------------
    def rollout(
        self,
        images: torch.Tensor,
        budgets: Iterable[int] | None = None,
        *,
        decode: bool = True,
        attention: bool | str = False,
        generator: GeneratorArg = None,
    ) -> Rollout:
        """Encode once; return per-prefix tokens, logits and reconstructions.

        Args:
            images: ``[B,3,S,S]`` float in [0,1].
            budgets: prefix lengths (default: all of `budgets`).
            decode: decode pixels at the requested budgets.
            attention: False, True, or "full" (adds raw weights ``[B, layers, 257+k, 257+k]`` to
                ``extras["attention_full"]``).
            generator: unused (inference is deterministic); accepted for the protocol.

        Returns:
            `Rollout` whose outputs per k hold ``latent`` = the unquantised 1D tokens z ``[B,k,d]``
            (the encoder's own latent outputs are not per token because of the legacy reshape; they
            are in ``extras["encoder_latent_tokens"]`` ``[B,N,W]``), ``tokens`` = quantised tokens
            ``[B,k,d]``, ``indices`` ``[B,k]``, clamped ``reconstruction``, ``extras["logits"]``
            ``[B, g*g, C]`` and ``extras["reconstruction_raw"]``; no halting mask.
        """
        del generator
        check_images(images, self.image_size)
        req = check_prefix_budgets(self.budgets if budgets is None else budgets, self.cfg)
        if attention not in (False, True, "full"):
            raise ValueError("attention must be False, True or 'full'")
        # Contiguous NCHW for the same reason as ALIT: other layouts take other conv kernels.
        images = images.to(self.device, torch.float32).contiguous()
        outputs: dict[int, BudgetOutput] = {}
        with torch.no_grad():
            latent, z, zq, idx = self.encode(images)
            for k in req:
                logits, weights = self.decode_logits(zq[:, :k], need_weights=bool(attention))
                extras = {"logits": logits}
                recon = None
                if decode:
                    raw = self.to_pixels(logits)
                    extras["reconstruction_raw"] = raw
                    recon = raw.clamp(0.0, 1.0)
                maps = self.attention_maps(weights, k) if attention else None
                if attention == "full":
                    extras["attention_full"] = torch.stack(weights, dim=1)
                outputs[k] = BudgetOutput(
                    budget=k, latent=z[:, :k], tokens=zq[:, :k], indices=idx[:, :k], reconstruction=recon,
                    attention=maps, extras=extras,
                )
        return Rollout(outputs=outputs, extras={"encoder_latent_tokens": latent, "z": z, "z_quantized": zq,
                                                "codebook_indices": idx})
