"""Stage 1: ALIT latent distillation on top of the frozen base VQGAN (alit_official.md §1.11, stage 1).

At every rollout iteration ``t`` the loss is

    lambda_t * CE(logits_t, gt) + 1.0 * MSE(softmax(logits_t) @ sg(codebook), codebook[gt]) + VQ_t

with ``lambda = [2.5, 2.0, 1.5, 1.25, 1.0, ...]`` and ``VQ_t = 0.25 ||sg(q) - z||^2 + ||q - sg(z)||^2`` on
the L2-normalised 12-d vectors. The differentiable forward is assembled from the model's own pieces
(`initial_sequence`, `encoder`, `quantize_latents`, `decode_tokens`, `latent_template`,
`encoder_ln_recursive`) and mirrors `AlitTokenizer.rollout`, including the 2D-token halting between
iterations (Bernoulli draws from a per-step seeded generator, the model's 0.55 threshold), so the
network is trained on the same inputs it sees at inference. Gradients flow through all iterations.

One addition to the official recipe, a warm start for a cold start on 2 CPU cores (documented in the
model card): for the first ``teacher_warmup`` fraction of the steps the decoder reads `teacher_tokens`
(region means of the base features, coarse to fine) and the encoder regresses them; until
``continuous_warmup`` the decoder reads the L2-normalised encoder output (the 1D VQ is bypassed); then
the 1D codebook is initialised from encoder outputs and codes unused for ``reinit_every`` steps are
restarted from random encoder outputs (until 80% of training). Measured without it: the latents are
nearly image-independent at init, the decoder learns the code marginal, the 1D codes collapse, and
training sits on that plateau (CE = entropy of the code histogram at every iteration, one flat
reconstruction for every budget).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from alit_eval.tokenizers.generators import per_image_generators
from alit_eval.tokenizers.alit.config import AlitConfig
from alit_eval.tokenizers.alit.model import AlitTokenizer
from alit_eval.tokenizers.base2d.config import Base2DConfig
from alit_eval.tokenizers.base2d.vqgan import VQGAN
from alit_eval.train.base_vqgan import demo_base_config
from alit_eval.train.common import (
    MONITOR_INDEX_START, Logger, decay_groups, load_state, lr_at, monitor_batch, optimizer_step,
    save_state, seeded_init, set_lr, step_generator, train_batch, train_steps,
)

STAGE1_LOG_KEYS = ("loss", "ce0", "ce3", "ce7", "acc_last", "vq_last", "codes_used", "reinit")

# alit_official.md §1.11: per-iteration CE weights (iterations past the list use 1.0).
CE_WEIGHTS: tuple[float, ...] = (2.5, 2.0, 1.5, 1.25, 1.0, 1.0, 1.0, 1.0)
TEACHER_WEIGHT = 10.0


def demo_alit_config(base: Base2DConfig | None = None) -> AlitConfig:
    """The demo ALIT: 32x32 images, 8x8 grid, width 128, 2+2 layers, 4 heads, 8 tokens x 8 iterations
    (budgets 8..64), 12-d VQ x 1024."""
    return AlitConfig(
        width=128, depth=2, heads=4, image_size=32, patch_size=4, tokens_per_iter=8, iterations=8,
        quantize=True, codebook_size=1024, token_dim=12, halting_threshold=0.55,
        base=base or demo_base_config(),
    )


@dataclass
class DistillConfig:
    steps: int = 5000
    batch: int = 8
    lr: float = 1e-3
    warmup: int = 40
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    seed: int = 1
    log_every: int = 25
    ckpt_every: int = 25
    monitor_images: int = 32
    teacher_warmup: float = 0.05  # fraction of steps in warm-start mode (`teacher_tokens`)
    continuous_warmup: float = 0.08  # fraction of steps with the 1D VQ bypassed (includes the above)
    reinit_every: int = 25  # dead 1D-code restarts (until 80% of the steps); 0 = never
    alit: dict = field(default_factory=dict)  # AlitConfig.to_dict() of the model being trained


def init_official(model: AlitTokenizer) -> None:
    """alit_official.md §1.10: Linear/Conv trunc-normal(0.02) with zero bias, LayerNorm (1, 0); the
    MHA ``in_proj_weight`` keeps PyTorch's xavier default; the 1D VQ codebook uniform +-1/K."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if model.cfg.quantize:
        k = model.cfg.codebook_size
        nn.init.uniform_(model.quantize.embedding.weight, -1.0 / k, 1.0 / k)


def build_alit(cfg: AlitConfig, base: VQGAN, seed: int) -> AlitTokenizer:
    """A freshly initialised ALIT around a trained (frozen) base VQGAN."""
    with seeded_init(seed):
        model = AlitTokenizer(cfg, halting="official", name="alit-demo")
        init_official(model)
    model.base_tokenizer.vqgan.load_state_dict(base.state_dict())
    freeze_base(model)
    return model


def freeze_base(model: AlitTokenizer) -> None:
    for p in model.base_tokenizer.parameters():
        p.requires_grad_(False)


# Region grids of the warm-start teacher, coarse to fine (a 2x4 grid of regions, then 4x4, ...).
TEACHER_LEVELS: tuple[tuple[int, int], ...] = ((2, 4), (4, 4), (4, 8), (8, 8), (16, 16))


def teacher_tokens(base_z: torch.Tensor, n: int, dim: int, seed: int = 0) -> torch.Tensor:
    """Warm-start targets ``[B, n, dim]``: unit vectors from region means of the base features.

    Slot ``j`` holds a fixed random projection of the mean base feature over one region of a
    coarse-to-fine pyramid (`TEACHER_LEVELS`), so the first tokens describe the image coarsely and
    later ones add detail -- a starting "language" the decoder can read from step 0.
    """
    proj = torch.randn(base_z.shape[1], dim, generator=torch.Generator().manual_seed(seed)).to(base_z)
    feats, have = [], 0
    for size in TEACHER_LEVELS:
        feats.append(F.adaptive_avg_pool2d(base_z, size).flatten(2).transpose(1, 2))
        have += feats[-1].shape[1]
        if have >= n:
            break
    return F.normalize(torch.cat(feats, 1)[:, :n] @ proj, dim=-1)


def distill_forward(
    model: AlitTokenizer, images: torch.Tensor, gen: torch.Generator | None, halting: bool = True,
    quantize: bool = True, teacher: bool = False, pixel_weight: float | Sequence[float] = 0.0,
) -> tuple[torch.Tensor, dict[str, float], dict[str, torch.Tensor]]:
    """Differentiable stage-1 rollout over all iterations with the official per-iteration loss.

    Args:
        images: ``[B,3,S,S]`` in [0,1].
        gen: generator for the halting Bernoulli draws (one draw ``[B, N2d]`` per iteration).
        halting: mask 2D tokens between iterations as the model does at inference.
        quantize: False during the continuous warm-up (decoder reads the normalised encoder output).
        teacher: warm-start mode: the decoder reads `teacher_tokens` instead of the encoder's, the
            encoder regresses them (MSE on the normalised latents, weight `TEACHER_WEIGHT`); no halting.
        pixel_weight: stage 2 (`finetune.py`): add ``pixel_weight * L1(image_t, images)`` at every
            iteration, ``image_t`` being the base decoder's soft-code reconstruction (the inference path);
            a sequence gives one weight per iteration.

    Returns:
        The summed loss, logs (per-iteration CE, mean token accuracy at the last iteration) and the
        last iteration's detached normalised latents ``z [B*N, d]`` and code indices ``idx [B*N]``.
    """
    cfg, n2d = model.cfg, model.cfg.num_2d
    vqgan = model.base_tokenizer.vqgan
    with torch.no_grad():
        base_z, gt = vqgan.encode(images)
        target = vqgan.codebook[gt]  # [B, N2d, C]
    codebook = vqgan.codebook.detach()
    if teacher:
        target_tokens = teacher_tokens(base_z, cfg.tokens_per_iter * cfg.iterations, cfg.token_dim)
        halting, quantize = False, False
    x, _ = model.initial_sequence(images, base_z)
    replacement = model.encoder_positional_embedding[1:] + model.encoder_mask_token.reshape(1, -1)
    total = images.new_zeros(())
    logs: dict[str, float] = {}
    for t in range(cfg.iterations):
        x = model.encoder(x)
        latent = x[:, 1 + n2d :]
        z = model.pre_quantizer_mlp(model.encoder_ln_post(latent))
        tokens, idx, zn, vq = _iteration_tokens(model, z, quantize, target_tokens if teacher else None)
        logits, _ = model.decode_tokens(tokens)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), gt.reshape(-1))
        probs = torch.softmax(logits.float(), dim=-1)
        mse = F.mse_loss(probs @ codebook, target)
        lam = CE_WEIGHTS[t] if t < len(CE_WEIGHTS) else 1.0
        total = total + lam * ce + mse + vq
        logs[f"ce{t}"] = ce.item()
        w_pix = pixel_weight[t] if isinstance(pixel_weight, Sequence) else pixel_weight
        if w_pix:
            pix = F.l1_loss(model.to_pixels(logits), images)
            total = total + w_pix * pix
            logs[f"l1_{t}"] = pix.item()
        if t + 1 < cfg.iterations:
            x = _next_sequence(model, x, probs, gt, halting, gen, replacement, t)
        if t + 1 == cfg.iterations:
            logs["acc_last"] = (logits.argmax(-1) == gt).float().mean().item()
            logs["vq_last"] = vq.item()
            logs["codes_used"] = int(idx.unique().numel())
            aux = {"z": zn.detach().reshape(-1, zn.shape[-1]), "idx": idx.reshape(-1)}
    logs["loss"] = total.item()
    return total, logs, aux


def _iteration_tokens(model: AlitTokenizer, z: torch.Tensor, quantize: bool, teacher_targets: torch.Tensor | None,
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The tokens the decoder reads at one iteration, the code indices, normalised latents and the VQ loss.

    Quantised codes with the commitment + codebook loss; the normalised latents (no VQ loss) in the
    continuous warm-up; the teacher's tokens with the regression loss in warm-start mode.
    """
    tokens, idx = model.quantize(z)
    zn = F.normalize(z.float(), dim=-1)
    if quantize:
        q = model.quantize.normalized_codebook()[idx]
        vq = 0.25 * F.mse_loss(zn, q.detach()) + F.mse_loss(q, zn.detach())
    else:
        tokens, vq = zn, zn.new_zeros(())
    if teacher_targets is not None:
        tokens = teacher_targets[:, : zn.shape[1]]
        vq = TEACHER_WEIGHT * F.mse_loss(zn, tokens)
    return tokens, idx, zn, vq


def _next_sequence(model: AlitTokenizer, x: torch.Tensor, probs: torch.Tensor, gt: torch.Tensor, halting: bool,
                   gen: torch.Generator | None, replacement: torch.Tensor, t: int) -> torch.Tensor:
    """The encoder input of iteration ``t + 1``: 2D tokens halted (if `halting`) and new latents appended.

    A 2D token is masked with probability = the decoder's probability of its true code, and only
    above the halting threshold, as the model does at inference.
    """
    n2d = model.cfg.num_2d
    if halting:
        p = probs.detach().gather(-1, gt.unsqueeze(-1)).squeeze(-1)
        mask = torch.bernoulli(p, generator=gen).bool() & (p >= model.cfg.halting_threshold)
        x = torch.cat([x[:, :1], torch.where(mask.unsqueeze(-1), replacement, x[:, 1 : 1 + n2d]),
                       x[:, 1 + n2d :]], dim=1)
    new = model.latent_template(t + 1).unsqueeze(0).expand(x.shape[0], -1, -1)
    return model.encoder_ln_recursive(torch.cat([x, new], dim=1))


@torch.no_grad()
def restart_codes(model: AlitTokenizer, usage: torch.Tensor, z: torch.Tensor, gen: torch.Generator,
                  all_codes: bool = False) -> int:
    """Set unused (or, with ``all_codes``, all) 1D codes to random normalised encoder outputs ``z``."""
    weight = model.quantize.embedding.weight
    dead = torch.arange(weight.shape[0]) if all_codes else torch.nonzero(usage == 0).flatten()
    if dead.numel() == 0:
        return 0
    pick = torch.randint(0, z.shape[0], (dead.numel(),), generator=gen)
    weight[dead] = F.normalize(z[pick] + 0.01 * torch.randn(dead.numel(), z.shape[1], generator=gen), dim=-1)
    return int(dead.numel())


@torch.no_grad()
def monitor_l1(model: AlitTokenizer, images: torch.Tensor) -> list[float]:
    """Mean uint8-rounded L1 per budget on a fixed batch (``seeded`` halting, seed 1)."""
    model.eval()
    ids = [f"monitor/{MONITOR_INDEX_START + i}" for i in range(images.shape[0])]
    ro = model.rollout(images, halting="seeded", generator=per_image_generators(1, ids))
    model.train()
    ref = (images * 255).round()
    return [float(((ro[b].reconstruction * 255 + 0.5).floor() - ref).abs().mean() / 255) for b in model.budgets]


def train_distill(
    cfg: DistillConfig, base: VQGAN, out_dir: Path, *, resume: bool, deadline: float | None, log: Logger,
    alit_cfg: AlitConfig | None = None, stop_at: int | None = None,
) -> tuple[AlitTokenizer, bool]:
    """Train (or resume) stage 1; returns the model and whether training finished.

    Checkpoints ``out_dir/distill_state.pt`` (model, optimiser, step) every ``ckpt_every`` steps, and
    when ``deadline`` (a ``time.time()`` value) passes or step ``stop_at`` is reached (tests).
    """
    alit_cfg = alit_cfg or demo_alit_config(base.cfg)
    cfg.alit = alit_cfg.to_dict()
    state_path = out_dir / "distill_state.pt"
    model = build_alit(alit_cfg, base, cfg.seed)
    opt = torch.optim.AdamW(decay_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.95))
    usage = torch.zeros(alit_cfg.codebook_size, dtype=torch.long)
    step = 0
    if resume and state_path.exists():
        st = load_state(state_path)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step, usage = int(st["step"]), st["usage"]
        log(f"stage 1: resumed at step {step}")
    vq_start = int(cfg.continuous_warmup * cfg.steps)
    teacher_end = int(cfg.teacher_warmup * cfg.steps)

    def save(done: int) -> None:
        save_state(state_path, model=model.state_dict(), opt=opt.state_dict(), step=done, usage=usage)

    def one_step(step: int) -> tuple[dict[str, float], float]:
        set_lr(opt, lr_at(step, cfg.steps, cfg.lr, cfg.warmup))
        x = train_batch(cfg.seed + 100, step, cfg.batch, alit_cfg.image_size)
        if step == vq_start and vq_start > 0 and alit_cfg.quantize:
            # Codebook from encoder outputs of this step's batch (all iterations' tokens).
            with torch.no_grad():
                _, _, aux = distill_forward(model, x, step_generator(cfg.seed, step, 5), quantize=False)
            restart_codes(model, usage, aux["z"], step_generator(cfg.seed, step, 6), all_codes=True)
            usage.zero_()
        loss, logs, aux = distill_forward(model, x, step_generator(cfg.seed, step, 5), quantize=step >= vq_start,
                                         teacher=step < teacher_end)
        gnorm = optimizer_step(opt, model, loss, cfg.grad_clip)
        done = step + 1
        if alit_cfg.quantize and done > vq_start:
            usage.add_(torch.bincount(aux["idx"], minlength=usage.numel()))
            if cfg.reinit_every and done % cfg.reinit_every == 0 and done < int(0.8 * cfg.steps):
                n_dead = restart_codes(model, usage, aux["z"], step_generator(cfg.seed, done, 7))
                usage.zero_()
                logs["reinit"] = n_dead
        return logs, gnorm

    mon = monitor_batch(cfg.monitor_images, alit_cfg.image_size)
    model.train()
    if not train_steps("stage 1", step, cfg.steps, one_step, save=save, monitor=lambda: monitor_l1(model, mon),
                       log_keys=STAGE1_LOG_KEYS, log_every=cfg.log_every, ckpt_every=cfg.ckpt_every,
                       deadline=deadline, stop_at=stop_at, log=log):
        return model.eval(), False
    save(cfg.steps)
    log("stage 1: finished")
    return model.eval(), True
