"""The tokenizer protocol every evaluated adaptive tokenizer implements, and its result type.

`rollout` runs the recurrence once, only as far as the largest requested budget, and decodes
pixels only at the requested budgets. Everything downstream (engine, analyses) sees tokenizers
only through this protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Protocol, Sequence, Union, runtime_checkable

from alit_eval.errors import AlitEvalError

if TYPE_CHECKING:
    import torch

GeneratorArg = Union["torch.Generator", Sequence["torch.Generator"], None]


class BudgetError(AlitEvalError, ValueError):
    """A requested token budget is not one the tokenizer can produce."""


@dataclass
class BudgetOutput:
    """What a rollout produced at one token budget.

    Attributes:
        budget: number of 1D tokens.
        latent: ``[B, N, w]`` raw encoder output for the N tokens (pre-LN, unquantised; what the
            official ``encode()`` returns as the embedding).
        tokens: ``[B, N, d]`` the 1D tokens handed to the decoder (L2-normalised codebook rows
            for quantised models, the raw factorised vectors for continuous ones).
        indices: ``[B, N]`` int64 code indices for quantised models, else None.
        reconstruction: ``[B, 3, H, W]`` float32 in [0, 1] (clamped), or None without decode.
        attention: ``[B, layers, N, gh, gw]`` head-averaged decoder attention from each 2D-grid
            query to each latent token, or None when not requested.
        halting_mask: ``[B, gh*gw]`` bool, the 2D positions masked after this iteration (all
            False when halting is off), or None when the model has no halting.
        extras: model-specific tensors (e.g. ``logits``, ``reconstruction_raw``, ``halt_prob``).
    """

    budget: int
    latent: "torch.Tensor"
    tokens: "torch.Tensor"
    indices: "torch.Tensor | None" = None
    reconstruction: "torch.Tensor | None" = None
    attention: "torch.Tensor | None" = None
    halting_mask: "torch.Tensor | None" = None
    extras: dict[str, "torch.Tensor"] = field(default_factory=dict)


@dataclass
class Rollout:
    """Outputs of one `rollout` call, keyed by budget (ascending).

    ``extras`` holds per-rollout model tensors that do not depend on the budget (e.g. ALIT's base
    features ``base_z`` and ``gt_indices``).
    """

    outputs: dict[int, BudgetOutput]
    extras: dict[str, "torch.Tensor"] = field(default_factory=dict)

    @property
    def budgets(self) -> list[int]:
        return sorted(self.outputs)

    def __getitem__(self, budget: int) -> BudgetOutput:
        try:
            return self.outputs[budget]
        except KeyError:
            raise BudgetError(
                f"budget {budget} was not requested in this rollout; it holds {self.budgets}"
            ) from None

    def __iter__(self):
        return iter(self.budgets)


@runtime_checkable
class AdaptiveTokenizer(Protocol):
    """What alit-eval needs from an adaptive-length tokenizer."""

    name: str
    image_size: int
    budgets: tuple[int, ...]

    def rollout(
        self,
        images: "torch.Tensor",
        budgets: Iterable[int],
        *,
        decode: bool = True,
        attention: bool | str = False,
        generator: GeneratorArg = None,
    ) -> Rollout:
        """Encode `images` ``[B,3,H,W]`` float32 in [0,1] once and return outputs per budget."""
        ...


def check_budgets(requested: Iterable[int], valid: Sequence[int]) -> list[int]:
    """Validate and sort requested budgets; raise `BudgetError` naming the valid ones."""
    req = sorted({int(b) for b in requested})
    if not req:
        raise BudgetError(f"no budget requested; valid budgets: {list(valid)}")
    bad = [b for b in req if b not in valid]
    if bad:
        raise BudgetError(
            f"budget(s) {bad} not available; this tokenizer produces {list(valid)}"
        )
    return req


def check_images(images: "torch.Tensor", image_size: int) -> None:
    """Raise a clear `AlitEvalError` unless images are float ``[B,3,S,S]`` in [0,1]."""
    import torch

    if not isinstance(images, torch.Tensor):
        raise AlitEvalError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise AlitEvalError(f"images must be [B,3,H,W]; got shape {tuple(images.shape)}")
    if images.shape[-2:] != (image_size, image_size):
        raise AlitEvalError(
            f"images must be {image_size}x{image_size} for this tokenizer; got "
            f"{images.shape[-2]}x{images.shape[-1]} (preprocess them first, e.g. resize-center-crop)"
        )
    if not images.is_floating_point():
        raise AlitEvalError(f"images must be float in [0,1]; got dtype {images.dtype}")
    if images.numel() and (float(images.min()) < 0.0 or float(images.max()) > 1.0):
        raise AlitEvalError(
            f"images must lie in [0,1]; got range [{float(images.min()):.3g}, "
            f"{float(images.max()):.3g}] (divide uint8 images by 255)"
        )
