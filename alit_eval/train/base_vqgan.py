"""Stage 0: train the tiny base VQGAN (the `base2d.vqgan` architecture) on `demo-scenes`.

MaskGIT-style objective, scaled down (no perceptual or GAN term: the demo has 2 CPU cores):
``L1 + L2`` reconstruction + VQ loss ``||sg(z) - q||^2 + 0.25 ||z - sg(q)||^2`` with the
straight-through estimator. Two additions, both documented in the model card:

- the codebook is initialised from encoder outputs and unused codes are re-initialised from random
  encoder outputs every ``reinit_every`` steps (dead-code restarts), so all codes carry information;
- for a fraction of each batch the decoder is fed *soft* codes (a softmax-weighted mixture of the
  codebook, random temperature). ALIT decodes ``softmax(logits) @ codebook`` (alit_official.md §1.7),
  and at small budgets those mixtures are far from any single code; this teaches the decoder to turn
  them into a plausible blur rather than artefacts.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from alit_eval.tokenizers.base2d.config import Base2DConfig
from alit_eval.tokenizers.base2d.vqgan import VQGAN
from alit_eval.train.common import (
    Logger, load_state, lr_at, monitor_batch, optimizer_step, save_state, seeded_init, set_lr, step_generator,
    train_batch,
)


def demo_base_config() -> Base2DConfig:
    """The demo base VQGAN: 32x32 -> 8x8 grid (two halvings), ch 64 at every level, one res block,
    32-d codes x 512, GroupNorm with 8 groups.

    Why: with the official 32 groups at 32-64 channels each group holds 1-2 channels (an instance
    norm), and a flat image loses its colour; the MaskGIT blocks that change width drop their input
    (``h + nin(h)``), so the width stays 64. 4-pixel cells let the base beat the 8x8-pixel patch-mean
    baseline (measured: the 64x64, 8-pixel-cell base stayed above it, L1 0.101 vs 0.065).
    """
    return Base2DConfig(
        kind="vqgan", ch=64, ch_mult=(1, 1, 1), num_res_blocks=1, z_channels=32, embed_dim=32,
        n_embed=512, attn_levels=(), norm_groups=8,
    )


@dataclass
class BaseTrainConfig:
    steps: int = 3000
    batch: int = 16
    crop: int = 32  # equal to image_size: whole images
    ae_warmup: float = 0.2  # fraction of steps trained as a plain autoencoder before VQ is switched on
    soft_start: float = 0.5  # fraction of steps after which soft codes are mixed in
    lr: float = 1e-3
    warmup: int = 30
    beta: float = 0.25
    l2_weight: float = 1.0
    soft_fraction: float = 0.25
    reinit_every: int = 25
    image_size: int = 32
    seed: int = 1
    log_every: int = 25
    ckpt_every: int = 50
    monitor_images: int = 32


def distances(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Squared distances ``[B*h*w, K]`` between row-major flattened features ``z [B,C,h,w]`` and codes."""
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    return flat.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1) - 2.0 * flat @ codebook.t()


def vq_step(
    model: VQGAN, x: torch.Tensor, cfg: BaseTrainConfig, gen: torch.Generator | None = None,
    quantize: bool = True,
) -> tuple[torch.Tensor, dict[str, float], torch.Tensor, torch.Tensor]:
    """One forward pass with losses.

    Args:
        x: ``[B,3,S,S]`` in [0,1].
        gen: when given, the first ``soft_fraction`` of the batch is decoded from soft codes.
        quantize: False during the autoencoder warm-up (the decoder reads ``z`` directly).

    Returns:
        ``(loss, logs, indices [B*h*w], z [B,C,h,w])``.
    """
    z = model.encoder(x)
    e = model.codebook
    d = distances(z, e)
    idx = d.argmin(1)
    b, c, h, w = z.shape
    q = e[idx].reshape(b, h, w, c).permute(0, 3, 1, 2)
    vq = F.mse_loss(q, z.detach()) + cfg.beta * F.mse_loss(z, q.detach())
    zq = z + (q - z).detach()
    if not quantize:
        vq, zq = vq * 0.0, z
    elif gen is not None and cfg.soft_fraction > 0:
        n_soft = int(round(b * cfg.soft_fraction))
        if n_soft:
            dd = d.reshape(b, h * w, -1)[:n_soft]
            scale = dd.min(-1, keepdim=True).values.mean().detach() + 1e-6
            tau = torch.exp(torch.empty(n_soft, 1, 1).uniform_(-2.0, 1.5, generator=gen)) * scale
            soft = torch.softmax(-dd / tau, dim=-1) @ e
            soft = soft.reshape(n_soft, h, w, c).permute(0, 3, 1, 2)
            zq = torch.cat([soft, zq[n_soft:]])
    y = model.decoder(zq)
    l1 = (y - x).abs().mean()
    l2 = F.mse_loss(y, x)
    loss = l1 + cfg.l2_weight * l2 + vq
    return loss, {"l1": l1.item(), "l2": l2.item(), "vq": vq.item()}, idx, z


def random_crops(x: torch.Tensor, crop: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """Random ``crop``-pixel crops aligned to an 8-pixel grid (the VQGAN is fully convolutional, so
    crops are cheaper and the weights apply unchanged to full images); ``crop >= size``: no crop."""
    if crop >= size:
        return x
    cells = (size - crop) // 8 + 1
    off = torch.randint(0, cells, (x.shape[0], 2), generator=gen) * 8
    return torch.stack([xi[:, r : r + crop, c : c + crop] for xi, (r, c) in zip(x, off.tolist())])


def build_base(seed: int, base_cfg: Base2DConfig | None = None) -> VQGAN:
    with seeded_init(seed):
        return VQGAN(base_cfg or demo_base_config())


@torch.no_grad()
def _init_codebook(model: VQGAN, x: torch.Tensor, gen: torch.Generator) -> None:
    flat = model.encoder(x).permute(0, 2, 3, 1).reshape(-1, model.codebook.shape[1])
    pick = torch.randint(0, flat.shape[0], (model.codebook.shape[0],), generator=gen)
    noise = 0.01 * flat.std() * torch.randn(model.codebook.shape, generator=gen)
    model.codebook.copy_(flat[pick] + noise)


@torch.no_grad()
def _reinit_dead(model: VQGAN, usage: torch.Tensor, z: torch.Tensor, gen: torch.Generator) -> int:
    dead = torch.nonzero(usage == 0).flatten()
    if dead.numel() == 0:
        return 0
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    pick = torch.randint(0, flat.shape[0], (dead.numel(),), generator=gen)
    noise = 0.01 * flat.std() * torch.randn(dead.numel(), flat.shape[1], generator=gen)
    model.codebook[dead] = flat[pick] + noise
    return int(dead.numel())


@torch.no_grad()
def evaluate_base(model: VQGAN, x: torch.Tensor) -> dict[str, float]:
    """Hard-code reconstruction L1 (uint8-rounded) and codebook usage on a batch ``[B,3,S,S]``."""
    model.eval()
    z, idx = model.encode(x)
    q = model.codebook[idx].reshape(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
    y = model.decoder(q).clamp(0, 1)
    l1 = ((y * 255).add(0.5).floor() / 255 - x).abs().mean()
    model.train()
    return {"l1_u8": float(l1), "codes_used": int(idx.unique().numel())}


def train_base(
    cfg: BaseTrainConfig, out_dir: Path, *, resume: bool, deadline: float | None, log: Logger,
    base_cfg: Base2DConfig | None = None, stop_at: int | None = None,
) -> tuple[VQGAN, bool]:
    """Train (or resume) the base VQGAN; returns the model and whether training finished.

    Checkpoints ``out_dir/base_state.pt`` every ``ckpt_every`` steps and when ``deadline`` (a
    ``time.time()`` value) passes or step ``stop_at`` is reached; the final weights go to
    ``out_dir/base_final.pt``. ``base_cfg`` defaults to `demo_base_config` (tests use a tinier one).
    """
    final = out_dir / "base_final.pt"
    state_path = out_dir / "base_state.pt"
    model = build_base(cfg.seed, base_cfg)
    if final.exists() and resume:
        model.load_state_dict(load_state(final)["model"])
        log(f"stage 0: loaded finished base from {final.name}")
        return model.eval(), True
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    usage, step = _resume_state(model, opt, state_path if resume else None, log)
    ae_steps = int(cfg.ae_warmup * cfg.steps)
    mon = monitor_batch(cfg.monitor_images, cfg.image_size)
    model.train()
    t_last, s_last = time.time(), step
    while step < cfg.steps:
        if (deadline is not None and time.time() > deadline) or (stop_at is not None and step >= stop_at):
            save_state(state_path, model=model.state_dict(), opt=opt.state_dict(), usage=usage, step=step)
            log(f"stage 0: stopped at step {step}; resume with --resume")
            return model.eval(), False
        set_lr(opt, lr_at(step, cfg.steps, cfg.lr, cfg.warmup, floor=0.05 * cfg.lr))
        gen = step_generator(cfg.seed, step, 2)
        x = random_crops(train_batch(cfg.seed, step, cfg.batch, cfg.image_size), cfg.crop, cfg.image_size, gen)
        if step == ae_steps:
            # VQ starts here: codebook from encoder outputs of a dedicated batch, usage restarted.
            _init_codebook(model, train_batch(cfg.seed, 10**9, 64, cfg.image_size), step_generator(cfg.seed, 10**9, 3))
            usage.zero_()
        soft = gen if step >= int(cfg.soft_start * cfg.steps) else None
        loss, logs, idx, z = vq_step(model, x, cfg, soft, quantize=step >= ae_steps)
        optimizer_step(opt, model, loss, 1.0)
        usage += torch.bincount(idx, minlength=usage.numel())
        step += 1
        if step % cfg.reinit_every == 0 and ae_steps < step < int(0.8 * cfg.steps):
            n_dead = _reinit_dead(model, usage, z, gen)
            usage.zero_()
            if n_dead:
                logs["reinit"] = n_dead
        if step % cfg.log_every == 0 or step == cfg.steps:
            sps = (time.time() - t_last) / max(1, step - s_last)
            t_last, s_last = time.time(), step
            ev = evaluate_base(model, mon)
            log(f"stage 0 step {step}/{cfg.steps} " + " ".join(f"{k}={v:.4g}" for k, v in {**logs, **ev}.items())
                + f" s/step={sps:.2f}")
        if step % cfg.ckpt_every == 0:
            save_state(state_path, model=model.state_dict(), opt=opt.state_dict(), usage=usage, step=step)
    save_state(final, model=model.state_dict(), config=asdict(cfg))
    log(f"stage 0: finished, {final.name} written")
    return model.eval(), True


def _resume_state(model: VQGAN, opt: torch.optim.Optimizer, state_path: Path | None,
                  log: Logger) -> tuple[torch.Tensor, int]:
    """Code usage counts and step: restored with the model and optimiser from `state_path` when it exists."""
    usage = torch.zeros(model.codebook.shape[0], dtype=torch.long)
    step = 0
    if state_path is not None and state_path.exists():
        st = load_state(state_path)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        usage, step = st["usage"], int(st["step"])
        log(f"stage 0: resumed at step {step}")
    return usage, step
