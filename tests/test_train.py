"""Smoke tests of the demo-tokenizer training code on a tiny configuration (16x16 images)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors import safe_open

from alit_eval.tokenizers.alit.config import AlitConfig
from alit_eval.tokenizers.base2d.config import Base2DConfig
from alit_eval.tokenizers.checkpoints import load_alit_checkpoint, save_tokenizer
from alit_eval.train import baselines
from alit_eval.train.base_vqgan import BaseTrainConfig, build_base, train_base, vq_step
from alit_eval.train.common import Logger, lr_at, step_generator, train_batch
from alit_eval.train.distill import (
    DistillConfig,
    build_alit,
    distill_forward,
    teacher_tokens,
    train_distill,
)
from alit_eval.train.evaluate_demo import CARD_BEGIN, CARD_END, allocate, update_card
from alit_eval.train.finetune import FinetuneConfig, pixel_weights, train_finetune

SIZE = 16


def tiny_base_cfg() -> Base2DConfig:
    return Base2DConfig(kind="vqgan", ch=32, ch_mult=(1, 1, 1), num_res_blocks=1, z_channels=32,
                        embed_dim=32, n_embed=16, attn_levels=())


def tiny_alit_cfg() -> AlitConfig:
    return AlitConfig(width=64, depth=1, heads=2, image_size=SIZE, patch_size=4, tokens_per_iter=2,
                      iterations=3, codebook_size=32, token_dim=4, base=tiny_base_cfg())


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _decreasing(losses: list[float]) -> bool:
    return float(np.mean(losses[-4:])) < 0.9 * float(np.mean(losses[:4]))


def test_base_vqgan_losses_finite_and_decreasing():
    model = build_base(0, tiny_base_cfg())
    cfg = BaseTrainConfig(image_size=SIZE, batch=8)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = train_batch(1, 0, 8, SIZE)  # a fixed batch: the loss must go down when overfitting it
    losses = []
    for step in range(20):
        loss, logs, idx, _ = vq_step(model, x, cfg, step_generator(1, step, 2))
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert np.isfinite(loss.item()) and all(np.isfinite(v) for v in logs.values())
        assert idx.shape == (8 * (SIZE // 4) ** 2,)
        losses.append(loss.item())
    assert _decreasing(losses)


def test_distill_losses_finite_and_decreasing():
    model = build_alit(tiny_alit_cfg(), build_base(0, tiny_base_cfg()), seed=0)
    assert not any(p.requires_grad for p in model.base_tokenizer.parameters())
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-3, betas=(0.9, 0.95))
    x = train_batch(1, 0, 8, SIZE)
    losses = []
    for step in range(20):
        loss, logs, _ = distill_forward(model, x, step_generator(1, step, 5))
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in model.base_tokenizer.parameters())
        opt.step()
        assert np.isfinite(loss.item()) and logs["ce0"] > 0
        losses.append(loss.item())
    assert _decreasing(losses)


def _check_resume(run, tmp_path, stop_at: int, state_file: str | None = None):
    """Run uninterrupted, then stopped at `stop_at` and resumed; the weights must be bit-identical.
    Returns the uninterrupted model."""
    full, done = run(tmp_path / "a")
    assert done
    _, done = run(tmp_path / "b", stop_at=stop_at)
    assert not done
    if state_file:
        assert (tmp_path / "b" / state_file).exists()
    resumed, done = run(tmp_path / "b", resume=True)
    assert done
    a, b = full.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    return full


def _run(out, stop_at=None, resume=False):
    # 1 teacher step, 1 continuous step, then the codebook switch and a dead-code restart at step 4.
    cfg = DistillConfig(steps=8, batch=4, warmup=2, log_every=100, ckpt_every=100, monitor_images=2,
                        teacher_warmup=0.125, continuous_warmup=0.25, reinit_every=2)
    base = build_base(0, tiny_base_cfg())
    model, done = train_distill(cfg, base, out, resume=resume, deadline=None, log=Logger(None),
                                alit_cfg=tiny_alit_cfg(), stop_at=stop_at)
    return model, done


def test_distill_resume_matches_uninterrupted(tmp_path):
    full = _check_resume(_run, tmp_path, 3, "distill_state.pt")
    # The switch to VQ initialised the 1D codebook from (unit-norm) encoder outputs.
    fresh = build_alit(tiny_alit_cfg(), build_base(0, tiny_base_cfg()), seed=1)
    codes = full.quantize.embedding.weight
    assert not torch.allclose(codes, fresh.quantize.embedding.weight)
    assert torch.allclose(codes.norm(dim=-1), torch.ones(codes.shape[0]), atol=0.05)


def test_pixel_term_is_the_l1_of_the_inference_reconstructions():
    model = build_alit(tiny_alit_cfg(), build_base(0, tiny_base_cfg()), seed=0).eval()
    x = train_batch(1, 3, 4, SIZE)
    with torch.no_grad():
        plain, _, _ = distill_forward(model, x, None, halting=False)
        with_pixels, logs, _ = distill_forward(model, x, None, halting=False, pixel_weight=7.0)
        ro = model.rollout(x, halting="off")
    per_budget = [(ro[b].extras["reconstruction_raw"] - x).abs().mean() for b in model.budgets]
    assert np.allclose([logs[f"l1_{t}"] for t in range(len(per_budget))], [float(v) for v in per_budget], rtol=1e-5)
    assert torch.allclose(with_pixels - plain, 7.0 * torch.stack(per_budget).sum(), rtol=1e-4)


def _finetune(out, stop_at=None, resume=False, **kw):
    model = build_alit(tiny_alit_cfg(), build_base(0, tiny_base_cfg()), seed=0)
    cfg = FinetuneConfig(steps=4, batch=4, warmup=1, log_every=100, ckpt_every=100, monitor_images=2, **kw)
    return train_finetune(cfg, model, out, resume=resume, deadline=None, log=Logger(None), stop_at=stop_at)


def _changed(model) -> set[str]:
    start = build_alit(tiny_alit_cfg(), build_base(0, tiny_base_cfg()), seed=0).state_dict()
    return {k for k, v in model.state_dict().items() if not torch.equal(v, start[k])}


def test_finetune_resume_matches_uninterrupted_and_trains_only_the_base_decoder(tmp_path):
    full = _check_resume(_finetune, tmp_path, 2, "finetune_state.pt")
    changed = _changed(full)
    base = {k for k in changed if k.startswith("base_tokenizer.")}
    assert changed - base and base  # ALIT and the base decoder moved ...
    assert all(k.startswith("base_tokenizer.vqgan.decoder.") for k in base)  # ... the base encoder and codebook did not
    before = {k: v.clone() for k, v in full.state_dict().items()}
    same, done = train_finetune(FinetuneConfig(steps=0), full, tmp_path / "c", resume=False, deadline=None,
                                log=Logger(None))
    assert done and not (tmp_path / "c" / "finetune_state.pt").exists()
    assert all(torch.equal(v, before[k]) for k, v in same.state_dict().items())  # 0 steps: a no-op


def test_finetune_can_keep_the_whole_base_frozen(tmp_path):
    model, done = _finetune(tmp_path, base_decoder=False)
    assert done and _changed(model) and not any(k.startswith("base_tokenizer.") for k in _changed(model))


def test_pixel_weights_tilt_toward_late_iterations_and_keep_their_mean():
    flat = pixel_weights(FinetuneConfig(pixel_weight=300.0, late_emphasis=0.0), 8)
    assert flat == [300.0] * 8
    tilted = pixel_weights(FinetuneConfig(pixel_weight=300.0, late_emphasis=0.75), 8)
    assert tilted[0] == pytest.approx(75.0) and tilted[-1] == pytest.approx(525.0)
    assert np.all(np.diff(tilted) > 0) and np.mean(tilted) == pytest.approx(300.0)
    assert pixel_weights(FinetuneConfig(pixel_weight=2.0, late_emphasis=0.5), 1) == [2.0]


def test_per_iteration_pixel_weights_scale_each_iteration():
    model = build_alit(tiny_alit_cfg(), build_base(0, tiny_base_cfg()), seed=0).eval()
    x = train_batch(1, 3, 4, SIZE)
    w = [float(t + 1) for t in range(model.cfg.iterations)]
    with torch.no_grad():
        plain, _, _ = distill_forward(model, x, None, halting=False)
        weighted, logs, _ = distill_forward(model, x, None, halting=False, pixel_weight=w)
    expect = sum(wt * logs[f"l1_{t}"] for t, wt in enumerate(w))
    assert float(weighted - plain) == pytest.approx(expect, rel=1e-4)


def test_base_resume_matches_uninterrupted(tmp_path):
    cfg = BaseTrainConfig(steps=4, batch=4, image_size=SIZE, warmup=2, reinit_every=2, log_every=100,
                          ckpt_every=100, monitor_images=2)

    def run(out, stop_at=None, resume=False):
        return train_base(cfg, out, resume=resume, deadline=None, log=Logger(None), base_cfg=tiny_base_cfg(),
                          stop_at=stop_at)

    _check_resume(run, tmp_path, 3)


def test_saved_tokenizer_round_trip(tmp_path):
    model = build_alit(tiny_alit_cfg(), build_base(0, tiny_base_cfg()), seed=0).eval()
    path = save_tokenizer(model, tmp_path / "t.safetensors")
    loaded = load_alit_checkpoint(path, halting="off")
    x = train_batch(1, 7, 2, SIZE)
    r1, r2 = model.rollout(x, halting="off"), loaded.rollout(x)
    for b in model.budgets:
        assert torch.equal(r1[b].reconstruction, r2[b].reconstruction)


def test_lr_schedule():
    assert lr_at(0, 100, 1.0, 10) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, 10) == pytest.approx(1.0)
    assert lr_at(55, 100, 1.0, 10) == pytest.approx(0.5)
    assert lr_at(100, 100, 1.0, 10) == pytest.approx(0.0, abs=1e-12)


def test_baselines_against_naive():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(3, 16, 16, 3), dtype=np.uint8)
    res = baselines.baseline_l1(imgs, patch=8)
    for i in range(3):
        img = imgs[i].astype(np.float64)
        mean = np.floor(img.reshape(-1, 3).mean(0) + 0.5)
        assert res["mean_colour"][i] == pytest.approx(np.abs(img - mean).mean() / 255)
        recon = np.zeros_like(img)
        for r in range(0, 16, 8):
            for c in range(0, 16, 8):
                recon[r:r + 8, c:c + 8] = np.floor(img[r:r + 8, c:c + 8].reshape(-1, 3).mean(0) + 0.5)
        assert res["patch_mean_8px"][i] == pytest.approx(np.abs(img - recon).mean() / 255)
    flat = np.full((1, 16, 16, 3), 77, np.uint8)
    assert all(v[0] == 0 for v in baselines.baseline_l1(flat).values())


def test_allocate_official_criterion():
    l1s = np.array([[0.5, 0.2, 0.1], [0.5, 0.4, 0.3], [0.01, 0.5, 0.5], [0.5, 0.3, 0.4]])
    req, never = allocate(l1s, (2, 4, 6), threshold=0.25)
    assert req.tolist() == [4, 6, 2, 4]  # last row: never below 0.25, fallback to the lowest L1
    assert never.tolist() == [False, True, False, True]


def test_teacher_tokens_are_coarse_to_fine_region_means():
    z = torch.randn(2, 6, 8, 8)
    t = teacher_tokens(z, 30, 5)
    assert t.shape == (2, 30, 5)
    assert torch.allclose(t.norm(dim=-1), torch.ones(2, 30), atol=1e-5)
    proj = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    first = torch.nn.functional.normalize(z[:, :, :4, :2].mean((2, 3)) @ proj, dim=-1)  # region (0,0) of 2x4
    assert torch.allclose(t[:, 0], first, atol=1e-5)
    ninth = torch.nn.functional.normalize(z[:, :, :2, :2].mean((2, 3)) @ proj, dim=-1)  # first 4x4 region
    assert torch.allclose(t[:, 8], ninth, atol=1e-5)


def test_update_card_rewrites_only_the_measured_section(tmp_path):
    card = tmp_path / "card.md"
    card.write_text(f"# title\nkeep\n{CARD_BEGIN}\nold numbers\n{CARD_END}\nafter\n")
    update_card("| new | table |", card)
    assert card.read_text() == f"# title\nkeep\n{CARD_BEGIN}\n| new | table |\n{CARD_END}\nafter\n"
    (tmp_path / "bad.md").write_text("no markers")
    with pytest.raises(SystemExit):
        update_card("x", tmp_path / "bad.md")


def test_demo_command_runs_every_stage_and_records_them(tmp_path):
    from alit_eval.train import demo

    argv = ["--out", str(tmp_path), "--base-steps", "2", "--base-codes", "64", "--distill-steps", "2",
            "--distill-batch", "2", "--finetune-steps", "1", "--finetune-batch", "2",
            "--monitor-images", "2", "--threads", "1"]
    assert demo.main(argv) == 0
    assert {p.name for p in tmp_path.iterdir()} >= {"base_final.pt", "distill_state.pt", "finetune_state.pt"}
    path = tmp_path / "demo_tokenizer.safetensors"
    model = load_alit_checkpoint(path)
    assert model.cfg.base.n_embed == 64 and model.cfg.decoder_out == 64
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert "stage 2 pixel fine-tuning (1 steps)" in meta["training"] and meta["finished"] == "True"
    assert "'monitor_images': 2" in meta["distill_train_config"]
    assert "L1/budget=" in (tmp_path / "train.log").read_text()  # the monitor ran and was logged
