"""Shared pieces of the demo-tokenizer training: data batches, LR schedule, seeded init, resumable state.

Randomness is a pure function of ``(seed, step)``: the batch of step ``s`` and every draw made at that
step come from generators seeded with ``(seed, s)``. Resuming from a checkpoint therefore needs only
the step counter, the model and the optimiser, and gives bit-identical training to an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from alit_eval.data.demo import TRAIN_SEED, generate

# Training draws indices from [0, TRAIN_INDEX_RANGE); monitoring uses indices above it (same seed 1),
# so neither touches the evaluation seed 0.
TRAIN_INDEX_RANGE = 10_000_000
MONITOR_INDEX_START = 20_000_000


def step_rng(seed: int, step: int, stream: int = 0) -> np.random.Generator:
    """A numpy generator that depends only on ``(seed, step, stream)``."""
    return np.random.default_rng([int(seed), int(step), int(stream)])


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A CPU torch generator that depends only on ``(seed, step, stream)``."""
    g = torch.Generator(device="cpu")
    g.manual_seed(int(step_rng(seed, step, stream).integers(0, 2**62)))
    return g


def scene_batch(indices: np.ndarray, size: int, seed: int = TRAIN_SEED) -> torch.Tensor:
    """Generate `demo-scenes` images ``[B,3,size,size]`` float32 in [0,1] for the given indices."""
    arr = np.stack([generate("demo-scenes", int(i), seed=seed, size=size).image for i in indices])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0).contiguous()


def train_batch(seed: int, step: int, batch: int, size: int) -> torch.Tensor:
    """The training batch of one step (random scene indices, horizontal flips), ``[B,3,S,S]`` in [0,1]."""
    rng = step_rng(seed, step, 1)
    x = scene_batch(rng.integers(0, TRAIN_INDEX_RANGE, size=batch), size)
    flip = torch.from_numpy(rng.random(batch) < 0.5)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def monitor_batch(n: int, size: int) -> torch.Tensor:
    """A fixed held-out (seed 1, disjoint indices) batch for progress logging."""
    return scene_batch(np.arange(MONITOR_INDEX_START, MONITOR_INDEX_START + n), size)


def lr_at(step: int, total: int, peak: float, warmup: int, floor: float = 0.0) -> float:
    """Linear warm-up then half-cosine decay to ``floor`` (per-iteration, like the official lr_sched)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * frac))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def decay_groups(model: torch.nn.Module, weight_decay: float, trainable_only: bool = True) -> list[dict[str, Any]]:
    """timm-style ``add_weight_decay``: no decay on 1-D parameters and biases (alit_official.md §1.12)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if trainable_only and not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


@contextlib.contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """Module constructors draw from the global RNG; fork it so construction is seeded and isolated."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def save_state(path: Path, **state: Any) -> None:
    """Atomically write a training checkpoint (tensors, ints, floats, dicts; readable with weights_only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


class Logger:
    """Append-only text log (and stdout) with elapsed wall time."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.t0 = time.time()

    def __call__(self, msg: str) -> None:
        line = f"[{time.time() - self.t0:7.1f}s] {msg}"
        print(line, flush=True)
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(line + "\n")


def optimizer_step(opt: torch.optim.Optimizer, model: torch.nn.Module, loss: torch.Tensor, grad_clip: float) -> float:
    """One update: zero the grads, backprop ``loss``, clip the trainable parameters' grad norm, step.

    Returns the grad norm before clipping (for the log).
    """
    opt.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], grad_clip)
    opt.step()
    return float(gnorm)


def progress_line(stage: str, step: int, steps: int, logs: dict[str, float], keys: tuple[str, ...], gnorm: float,
                  sps: float, l1s: list[float]) -> str:
    """The ALIT stages' log line: chosen losses, grad norm, speed and the monitor L1 per budget."""
    shown = " ".join(f"{k}={v:.4g}" for k, v in logs.items() if k in keys)
    return (f"{stage} step {step}/{steps} {shown} gnorm={gnorm:.3g} s/step={sps:.2f} L1/budget="
            + ",".join(f"{v:.4f}" for v in l1s))


def train_steps(stage: str, step: int, steps: int, one_step: Callable[[int], tuple[dict[str, float], float]], *,
                save: Callable[[int], None], monitor: Callable[[], list[float]], log_keys: tuple[str, ...],
                log_every: int, ckpt_every: int, deadline: float | None, stop_at: int | None, log: Logger) -> bool:
    """The resumable loop of the ALIT stages: run ``one_step(s)`` for s = step .. steps - 1.

    `one_step` does step s (LR, batch, loss, update) and returns its logs and grad norm. Every
    `log_every` steps (and at the last) the loop logs the chosen losses and the monitor L1 per budget
    (`monitor`); every `ckpt_every` steps it saves (``save(steps_done)``). When `deadline` (a
    ``time.time()`` value) passes or step `stop_at` is reached it saves and stops.

    Returns:
        Whether all `steps` were done (the caller saves the final state).
    """
    t_last, s_last = time.time(), step
    while step < steps:
        if (deadline is not None and time.time() > deadline) or (stop_at is not None and step >= stop_at):
            save(step)
            log(f"{stage}: stopped at step {step}; resume with --resume")
            return False
        logs, gnorm = one_step(step)
        step += 1
        if step % log_every == 0 or step == steps:
            sps = (time.time() - t_last) / max(1, step - s_last)
            t_last, s_last = time.time(), step
            log(progress_line(stage, step, steps, logs, log_keys, gnorm, sps, monitor()))
        if step % ckpt_every == 0:
            save(step)
    return True
