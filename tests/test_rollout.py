"""Rollout semantics: budget subsets, seeded halting invariances, and input validation."""

from __future__ import annotations

import pytest
import torch

from alit_eval.errors import AlitEvalError
from alit_eval.tokenizers.generators import per_image_generators
from alit_eval.tokenizers.base import BudgetError
from alit_eval.tokenizers.checkpoints import load_alit_checkpoint


@pytest.fixture(scope="module")
def model(fixture_dir):
    return load_alit_checkpoint(fixture_dir / "vqgan_quantized" / "checkpoint.pth")


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(3)
    # Smooth random images: enough structure for the (random-weight) model to behave differently per image.
    low = torch.rand(2, 3, 8, 8, generator=g)
    return torch.nn.functional.interpolate(low, size=(256, 256), mode="bilinear", align_corners=False)


@pytest.mark.parametrize("policy", ["off", "official"])
def test_budget_subset_equals_full_rollout(model, images, policy):
    # Three iterations keep the test fast; the same code path runs to 256.
    torch.manual_seed(0)
    full = model.rollout(images, [32, 64, 96], halting=policy)
    torch.manual_seed(0)
    part = model.rollout(images, [96, 32], halting=policy)  # order of the request must not matter
    assert part.budgets == [32, 96]
    for b in (32, 96):
        assert torch.allclose(part[b].latent, full[b].latent, atol=1e-6, rtol=0)
        assert torch.equal(part[b].indices, full[b].indices)
        assert torch.allclose(part[b].reconstruction, full[b].reconstruction, atol=1e-5, rtol=0)
        assert torch.equal(part[b].halting_mask, full[b].halting_mask)


def test_rollout_stops_at_largest_budget(model, images):
    calls = []
    hook = model.encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        model.rollout(images[:1], [64], halting="off", decode=False)
    finally:
        hook.remove()
    assert len(calls) == 2  # two iterations for 64 tokens, not eight


def test_seeded_halting_is_batch_and_order_independent(model, images):
    ids, budgets = ["a.png", "b.png"], [32, 96]
    both = model.rollout(images, budgets, generator=per_image_generators(7, ids), halting="seeded")
    rev = model.rollout(images.flip(0), budgets, generator=per_image_generators(7, ids[::-1]), halting="seeded",
                        decode=False)  # its masks and latents are compared, not its images
    ones = [model.rollout(images[i : i + 1], budgets, generator=per_image_generators(7, [ids[i]]), halting="seeded")
            for i in range(2)]
    assert sum(int(both[b].halting_mask.sum()) for b in both.budgets) > 0, "halting never triggered"
    for b in both.budgets:
        for i in range(2):
            assert torch.equal(both[b].halting_mask[i], ones[i][b].halting_mask[0])
            assert torch.equal(both[b].halting_mask[i], rev[b].halting_mask[1 - i])
            assert torch.equal(both[b].indices[i], ones[i][b].indices[0])
            assert torch.allclose(both[b].reconstruction[i], ones[i][b].reconstruction[0], atol=1e-3, rtol=0)
            assert torch.allclose(both[b].latent[i], rev[b].latent[1 - i], atol=1e-4, rtol=0)


def test_seeded_needs_one_generator_per_image(model, images):
    with pytest.raises(ValueError, match="one torch.Generator per image"):
        model.rollout(images, [32], halting="seeded", generator=per_image_generators(0, ["only one"]))


def test_seeded_without_generators_uses_the_documented_default(model, images):
    from alit_eval.tokenizers.generators import DEFAULT_SEED, content_id

    # masks only: no decode (the VQGAN decoder is most of a rollout's time)
    plain = model.rollout(images, [64], halting="seeded", decode=False)  # the Python API's plain call works
    ids = [content_id(x) for x in images.float()]
    explicit = model.rollout(images, [64], halting="seeded", generator=per_image_generators(DEFAULT_SEED, ids),
                             decode=False)
    assert torch.equal(plain[64].halting_mask, explicit[64].halting_mask)
    alone = model.rollout(images[1:], [64], halting="seeded", decode=False)  # the same draws in any batch
    assert torch.equal(plain[64].halting_mask[1:], alone[64].halting_mask)


def test_official_halting_depends_on_global_seed(model, images):
    torch.manual_seed(0)
    a = model.rollout(images, [64], decode=False)
    torch.manual_seed(1)
    b = model.rollout(images, [64], decode=False)
    assert not torch.equal(a[64].halting_mask, b[64].halting_mask)


def test_bad_budgets_and_images(model, images):
    with pytest.raises(BudgetError, match=r"not available.*\[32, 64, 96"):
        model.rollout(images, [48])
    with pytest.raises(BudgetError):
        model.rollout(images, [])
    with pytest.raises(AlitEvalError, match=r"\[0,1\]"):
        model.rollout(images * 255, [32])
    with pytest.raises(AlitEvalError, match="256x256"):
        model.rollout(images[..., :128, :128], [32])
    with pytest.raises(AlitEvalError, match=r"\[B,3,H,W\]"):
        model.rollout(images[:, :1], [32])
    with pytest.raises(AlitEvalError, match="float"):
        model.rollout((images * 255).to(torch.uint8), [32])


def test_attention_maps_and_indexing(model, images):
    r = model.rollout(images[:1], [32], attention="full", halting="off")
    o = model.rollout(images[:1], [32], attention="official-notebook", halting="off")
    full = r[32].extras["attention_full"]  # [B, layers, L, L]
    maps = r[32].attention
    assert maps.shape == (1, 1, 32, 16, 16)
    # corrected: latent j is key 257 + j; official-notebook reads key 256 + j (one to the left).
    assert torch.allclose(maps[0, 0, 5].flatten(), full[0, 0, 1:257, 257 + 5])
    assert torch.allclose(o[32].attention[0, 0, 5].flatten(), full[0, 0, 1:257, 256 + 5])
    assert torch.allclose(o[32].attention[0, 0, 6], maps[0, 0, 5])
