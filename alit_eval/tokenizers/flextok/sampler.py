"""The rectified-flow Euler sampler with classifier-free guidance and APG (flextok_official.md §2.7).

- Steps: for i = T, T−1, …, 1 the decoder is evaluated at t = i/T and x ← x − (1/T)·v; it is never
  evaluated at t = 0 (T forward passes; 2T-worth of rows with guidance, run as one batch per step).
- Guidance is active iff g ≠ 1; then the conditional and unconditional velocities come from one
  decoder call over the concatenated batch.
- CFG: v = v_u + g·(v_c − v_u).
- APG (norm guidance): per image, a momentum buffer r (reset per decode) with r ← Δ − 0.5·r,
  Δ = r clipped to L2 norm ≤ 2.5 over (C, H, W), split in float64 into parts parallel and orthogonal
  to v_c, v = v_c + (g − 1)·Δ_⊥ (eta 0: the parallel part is dropped).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from alit_eval.errors import AlitEvalError
from alit_eval.tokenizers.flextok.options import MAX_GUIDANCE, MAX_STEPS

APG_MOMENTUM = -0.5
APG_THRESHOLD = 2.5
APG_ETA = 0.0

# velocity(x [N,C,h,w], t (python float), guided) -> (v_cond, v_uncond or None)
Velocity = Callable[[torch.Tensor, float, bool], "tuple[torch.Tensor, torch.Tensor | None]"]


def check_decode_options(steps: object, guidance: object, apg: object) -> tuple[int, float, bool]:
    """Validate the decode options; one line per bad value.

    Raises:
        AlitEvalError: steps not a whole number in 1..1000, guidance NaN/infinite/negative or > 100,
            apg not a bool.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise AlitEvalError(f"FlexTok flow steps must be a whole number from 1 to {MAX_STEPS} (official README: 20); "
                            f"got {steps!r}")
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not math.isfinite(guidance) \
            or not 0.0 <= guidance <= MAX_GUIDANCE:
        raise AlitEvalError(f"FlexTok guidance scale must be a finite number from 0 to {MAX_GUIDANCE:g} (1 = no "
                            f"guidance; official README: 7.5); got {guidance!r}")
    if not isinstance(apg, bool):
        raise AlitEvalError(f"FlexTok APG (norm guidance) must be true or false; got {apg!r}")
    return steps, float(guidance), apg


def _dims(x: torch.Tensor) -> list[int]:
    return list(range(1, x.ndim))


def cfg_velocity(v_c: torch.Tensor, v_u: torch.Tensor, g: float) -> torch.Tensor:
    return v_u + g * (v_c - v_u)


class ApgState:
    """Adaptive projected guidance with its per-decode momentum buffer (per image = per row)."""

    def __init__(self) -> None:
        self.running: torch.Tensor | float = 0.0

    def __call__(self, v_c: torch.Tensor, v_u: torch.Tensor, g: float) -> torch.Tensor:
        diff = v_c - v_u
        self.running = diff + APG_MOMENTUM * self.running
        diff = self.running
        norm = diff.norm(p=2, dim=_dims(diff), keepdim=True)
        diff = diff * torch.minimum(torch.ones_like(diff), APG_THRESHOLD / norm)
        # Projection in float64, as the official helper does.
        d64, u = diff.double(), torch.nn.functional.normalize(v_c.double(), dim=_dims(v_c))
        parallel = (d64 * u).sum(dim=_dims(d64), keepdim=True) * u
        orthogonal = (d64 - parallel).to(diff.dtype)
        return v_c + (g - 1) * (orthogonal + APG_ETA * parallel.to(diff.dtype))


def euler_sample(velocity: Velocity, noise: torch.Tensor, steps: int, guidance: float, apg: bool,
                 record: dict[str, list[torch.Tensor]] | None = None) -> torch.Tensor:
    """Integrate dx/dt = v from t = 1 (`noise`) to t = 0 in `steps` Euler steps.

    Args:
        velocity: the decoder (see `Velocity`); called once per step.
        noise: ``[N,C,h,w]`` float32 initial state.
        steps, guidance, apg: T, g and norm guidance (checked by `check_decode_options`).
        record: if given, lists ``x``, ``t``, ``v_cond``, ``v_uncond``, ``v_guided`` per step are appended.

    Returns:
        ``[N,C,h,w]`` the final latents.
    """
    guided = guidance != 1.0
    apg_state = ApgState() if (guided and apg) else None
    dt = 1.0 / steps
    x = noise
    for i in range(steps, 0, -1):
        t = i / steps
        v_c, v_u = velocity(x, t, guided)
        if not guided:
            v = v_c
        elif apg_state is not None:
            v = apg_state(v_c, v_u, guidance)
        else:
            v = cfg_velocity(v_c, v_u, guidance)
        if record is not None:
            for key, val in (("x", x), ("t", torch.full((len(x),), t)), ("v_cond", v_c), ("v_uncond", v_u),
                             ("v_guided", v)):
                if val is not None:
                    record.setdefault(key, []).append(val)
        x = x - dt * v
    return x
