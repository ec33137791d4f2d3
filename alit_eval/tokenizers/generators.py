"""Random streams for every family whose inference draws random numbers (the randomness contract).

The default policy: one CPU `torch.Generator` per image, seeded from (run seed, image id)
(`per_image_generators`), so results do not depend on batch size, order, resume or the number of
processes. The engine passes them to every family that declares ``random=True``, whatever its
options. A rollout called without generators (the Python API, ``tok.rollout(x, [8, 64])``) seeds
each image from `DEFAULT_SEED` and the image's content (`default_generators`): the same image
gives the same draws in any batch. A family's official global-stream behaviour is a named policy
(an option value in its declaration's ``global_stream``):
`alit_eval.tokenizers.family_options.start_global_stream` seeds the global RNG once per run through
the family's ``stream_start``. This module names no family and imports no other tokenizer module.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import torch

# The seed of generators made for a rollout called without any (documented in the README's Python API).
DEFAULT_SEED = 0


def image_seed(seed: int, image_id: str) -> int:
    """A stable 63-bit seed for one image, the same on every machine and Python version."""
    digest = hashlib.sha256(f"{int(seed)}\x00{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def per_image_generators(seed: int, image_ids: Sequence[str]) -> list["torch.Generator"]:
    """CPU generators of the default policy, one per image id, seeded from (seed, id)."""
    import torch

    gens = []
    for image_id in image_ids:
        g = torch.Generator(device="cpu")
        g.manual_seed(image_seed(seed, image_id))
        gens.append(g)
    return gens


def content_id(image: "torch.Tensor") -> str:
    """An image's identity from its pixels (float32 bytes on the CPU): ``sha256:<hex>``."""
    import torch

    data = image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def default_generators(images: "torch.Tensor", seed: int = DEFAULT_SEED) -> list["torch.Generator"]:
    """Generators for a rollout called without any: per image, from `seed` and the image's content."""
    return per_image_generators(seed, [content_id(x) for x in images])


def normal(shape: Sequence[int], generator: Any = None, device: Any = "cpu", *,
           per_image: bool = False) -> "torch.Tensor":
    """Standard normal noise of `shape`, drawn on the CPU then moved to `device` (as the official VAE
    wrappers draw it). `per_image`: `generator` is one generator per row of `shape[0]`; else one
    `torch.Generator` or None (the global CPU RNG)."""
    import torch

    if per_image:
        gens = per_image_list(generator, shape[0])
        noise = torch.stack([torch.randn(tuple(shape[1:]), generator=g) for g in gens])
    else:
        g = generator if isinstance(generator, torch.Generator) else None
        noise = torch.randn(tuple(shape), generator=g)
    return noise.to(device)


def per_image_list(generator: Any, batch: int) -> list["torch.Generator"]:
    """`generator` as one generator per image, or a ValueError saying how to make them."""
    if not isinstance(generator, (list, tuple)) or len(generator) != batch:
        raise ValueError(
            "the 'seeded' policy needs one torch.Generator per image "
            "(use alit_eval.tokenizers.generators.per_image_generators(seed, image_ids))"
        )
    return list(generator)
