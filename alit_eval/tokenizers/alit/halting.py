"""Halting policies: where ALIT's random draws come from (2D-token masking and VAE posterior noise).

ALIT masks 2D tokens between iterations (alit_official.md §1.4): ``p`` = decoder probability of the
true base code, ``draw ~ Bernoulli(p)``, mask where ``draw == 1 and p >= threshold``. Policies:

- ``official``: the same draws, in the same order, from the same generator as the official code:
  one ``torch.bernoulli`` of shape ``(B, N2d)`` per iteration (including the last one, whose draw
  has no effect: the official ``iter`` bug) on the global RNG of the tensor's device. The VAE posterior
  noise is one ``torch.randn`` on the global CPU generator. Seeding 0 reproduces the official outputs,
  but results depend on batch size and order.
- ``seeded``: one CPU `torch.Generator` per image, seeded from (seed, image id): results are
  independent of batch size, order and device.
- ``off``: no masking (the VAE noise then follows the ``official`` source).

The official VAE halting rule is a no-op (§1.4, §6.3), so VAE models never mask under any policy.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import torch

from alit_eval.registry import Registry

HALTING_POLICIES: Registry[str] = Registry("halting policy")
HALTING_POLICIES.register("official", "official draw order on the global RNG (reproduces official numbers)")
HALTING_POLICIES.register("seeded", "per-image generators seeded from (seed, image id); batch-independent")
HALTING_POLICIES.register("off", "no 2D-token masking")


def image_seed(seed: int, image_id: str) -> int:
    """A stable 63-bit seed for one image, the same on every machine and Python version."""
    digest = hashlib.sha256(f"{int(seed)}\x00{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def per_image_generators(seed: int, image_ids: Sequence[str]) -> list[torch.Generator]:
    """CPU generators for the ``seeded`` policy, one per image id."""
    gens = []
    for image_id in image_ids:
        g = torch.Generator(device="cpu")
        g.manual_seed(image_seed(seed, image_id))
        gens.append(g)
    return gens


def _per_image(generator: object, batch: int) -> list[torch.Generator]:
    if not isinstance(generator, (list, tuple)) or len(generator) != batch:
        raise ValueError(
            "the 'seeded' halting policy needs one torch.Generator per image "
            "(use alit_eval.tokenizers.alit.halting.per_image_generators(seed, image_ids))"
        )
    return list(generator)


def bernoulli(p: torch.Tensor, policy: str, generator: object = None) -> torch.Tensor:
    """Draw the halting Bernoulli variables for probabilities ``p`` ``[B, N]`` (float, 0/1)."""
    if policy == "seeded":
        gens = _per_image(generator, p.shape[0])
        pc = p.detach().float().cpu()
        draws = [torch.bernoulli(pc[i], generator=gens[i]) for i in range(p.shape[0])]
        return torch.stack(draws).to(p.device)
    g = generator if isinstance(generator, torch.Generator) else None
    if g is not None and g.device != p.device:  # e.g. a CPU generator for a CUDA run
        return torch.bernoulli(p.detach().to(g.device), generator=g).to(p.device)
    return torch.bernoulli(p, generator=g)


def normal(shape: Sequence[int], policy: str, generator: object = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard normal noise of `shape` (VAE posterior sample), drawn on the CPU then moved."""
    if policy == "seeded":
        gens = _per_image(generator, shape[0])
        noise = torch.stack([torch.randn(tuple(shape[1:]), generator=g) for g in gens])
    else:
        g = generator if isinstance(generator, torch.Generator) else None
        # The official wrapper draws torch.randn(shape) on the CPU generator even on GPU.
        noise = torch.randn(tuple(shape), generator=g)
    return noise.to(device)
