"""Measure the demo tokenizer against its quality bar; the model card's numbers come from here.

Usage: ``python -m alit_eval.train.evaluate_demo PATH [--n 500] [--threshold T] [--json OUT] [--card]``;
``--card`` rewrites the measured section of ``alit_eval/assets/MODEL_CARD.md`` (between the
``<!-- measured:begin -->`` and ``<!-- measured:end -->`` markers) with the new table.

Protocol: ``n`` held-out `demo-scenes` and `demo-unfamiliar` images (seed 0, indices ``0..n-1``, generated
at the tokenizer's size), all budgets in one `rollout` per batch with the ``seeded`` halting policy
(one generator per image from ``per_image_generators(0, image_ids)``, so numbers do not depend on
the batch size). Reconstructions are rounded to uint8 (`metrics.pixel.to_uint8`, "round") before the per-image L1. Baselines: per-image
mean/median colour, 8-px patch means (a fixed 8x8-pixel patch) and the base VQGAN's own hard-code
reconstruction (the ceiling for ALIT). Allocation: the official L1 criterion per image
(`analysis.token_selection.select_official`, the smallest budget with L1 < threshold, otherwise the budget with
the lowest L1, counted as "never reached").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alit_eval.analysis.token_selection import select_official
from alit_eval.data.demo import EVAL_SEED, generate, sample_id
from alit_eval.metrics.pixel import l1 as pixel_l1
from alit_eval.metrics.pixel import to_uint8
from alit_eval.tokenizers.generators import per_image_generators
from alit_eval.tokenizers.checkpoints import load_alit_checkpoint
from alit_eval.train.baselines import baseline_l1

# Chosen after training on held-out *training-seed* images (seed 1, 300 monitor indices; see
# MODEL_CARD.md): a round value inside the range 0.095-0.12 where the censored share is flat (24%),
# with the highest Spearman rho there. Seed 0 (evaluation) played no part in the choice.
THRESHOLD = 0.10
BATCH = 50
CARD = Path(__file__).resolve().parent.parent / "assets" / "MODEL_CARD.md"
CARD_BEGIN, CARD_END = "<!-- measured:begin -->", "<!-- measured:end -->"


def update_card(table: str, card: Path = CARD) -> None:
    """Replace the text between the card's measured-section markers with `table`."""
    text = card.read_text()
    if CARD_BEGIN not in text or CARD_END not in text:
        raise SystemExit(f"{card} has no {CARD_BEGIN} ... {CARD_END} section to update")
    head, rest = text.split(CARD_BEGIN, 1)
    card.write_text(f"{head}{CARD_BEGIN}\n{table}\n{CARD_END}{rest.split(CARD_END, 1)[1]}")


def _load_split(split: str, n: int, size: int) -> tuple[np.ndarray, list[str], list[float | None]]:
    samples = [generate(split, i, seed=EVAL_SEED, size=size) for i in range(n)]
    return (np.stack([s.image for s in samples]), [sample_id(split, i) for i in range(n)],
            [s.complexity for s in samples])


@torch.no_grad()
def per_image_l1(model: Any, images: np.ndarray, ids: list[str]) -> np.ndarray:
    """Per-image, per-budget L1 ``[n, n_budgets]`` (uint8-rounded reconstructions, seeded halting)."""
    rows = []
    for s in range(0, len(images), BATCH):
        ref = torch.from_numpy(images[s : s + BATCH]).permute(0, 3, 1, 2).contiguous()
        gens = per_image_generators(EVAL_SEED, ids[s : s + BATCH])
        ro = model.rollout(ref.float() / 255.0, halting="seeded", generator=gens)
        rows.append(torch.stack([pixel_l1(to_uint8(ro[b].reconstruction), ref) for b in model.budgets], 1))
    return torch.cat(rows).numpy()


@torch.no_grad()
def base_vqgan_l1(model: Any, images: np.ndarray) -> np.ndarray:
    """Per-image L1 of the base VQGAN decoding its own hard codes (ALIT's ceiling)."""
    vq = model.base_tokenizer.vqgan
    out = []
    for s in range(0, len(images), BATCH):
        ref = torch.from_numpy(images[s : s + BATCH]).permute(0, 3, 1, 2).contiguous()
        z, idx = vq.encode(ref.float() / 255.0)
        q = vq.codebook[idx].reshape(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
        out.append(pixel_l1(to_uint8(vq.decoder(q).clamp(0, 1)), ref))
    return torch.cat(out).numpy()


def allocate(l1s: np.ndarray, budgets: tuple[int, ...], threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Required tokens per image ``[n]`` and whether the threshold was never reached ``[n]`` (bool)."""
    picks = [select_official(row, threshold) for row in l1s]
    return (np.array([budgets[i] for i, _ in picks]), np.array([how != "first_below_threshold" for _, how in picks]))


def evaluate(model_path: str | Path, n: int = 500, threshold: float = THRESHOLD) -> dict[str, Any]:
    """Compute every quality-bar number of the demo tokenizer.

    Args:
        model_path: an alit-eval safetensors file.
        n: images per split (seed 0, indices ``0..n-1``).
        threshold: the L1 threshold of the official token-selection criterion.

    Returns:
        A JSON-able dict: per-budget mean L1 (scenes, unfamiliar), baselines, allocation statistics
        and a ``bar`` dict of pass/fail booleans.
    """
    from scipy.stats import spearmanr

    model = load_alit_checkpoint(model_path, halting="seeded").eval()
    budgets = tuple(model.budgets)
    scenes, scene_ids, complexity = _load_split("demo-scenes", n, model.image_size)
    unfam, unfam_ids, _ = _load_split("demo-unfamiliar", n, model.image_size)
    l1_s = per_image_l1(model, scenes, scene_ids)
    l1_u = per_image_l1(model, unfam, unfam_ids)
    base = {k: float(v.mean()) for k, v in baseline_l1(scenes).items()}
    base["base_vqgan"] = float(base_vqgan_l1(model, scenes).mean())
    req_s, never_s = allocate(l1_s, budgets, threshold)
    req_u, never_u = allocate(l1_u, budgets, threshold)
    rho = float(spearmanr(req_s, np.asarray(complexity, dtype=float)).statistic)
    mean_s = l1_s.mean(0)
    bar = {
        "l1_strictly_decreasing": bool(np.all(np.diff(mean_s) < 0)),
        "smallest_below_mean_colour": bool(mean_s[0] < base["mean_colour"]),
        "largest_30pct_below_smallest": bool(mean_s[-1] <= 0.7 * mean_s[0]),
        "largest_below_patch_mean": bool(mean_s[-1] < base["patch_mean_8px"]),
        "distinct_budgets_ge_4": bool(len(np.unique(req_s)) >= 4),
        "never_reached_lt_25pct": bool(never_s.mean() < 0.25),
        "spearman_ge_0.5": bool(rho >= 0.5),
        "unfamiliar_needs_more": bool(req_u.mean() > req_s.mean()),
    }
    return {
        "n": n, "budgets": list(budgets), "halting": "seeded (seed 0, per image)", "threshold": threshold,
        "l1_scenes": mean_s.tolist(), "l1_unfamiliar": l1_u.mean(0).tolist(), "baselines_scenes": base,
        "required_tokens_scenes_mean": float(req_s.mean()), "required_tokens_unfamiliar_mean": float(req_u.mean()),
        "selected_budget_counts_scenes": {int(b): int((req_s == b).sum()) for b in budgets},
        "never_reached_scenes": float(never_s.mean()), "never_reached_unfamiliar": float(never_u.mean()),
        "spearman_tokens_complexity": rho, "bar": bar,
    }


def format_table(res: dict[str, Any]) -> str:
    """A plain-text (Markdown-compatible) rendering of `evaluate`'s result."""
    lines = [f"n = {res['n']} per split, halting {res['halting']}, threshold {res['threshold']}", "",
             "| budget | L1 demo-scenes | L1 demo-unfamiliar | selected (scenes) |", "|---:|---:|---:|---:|"]
    counts = res["selected_budget_counts_scenes"]
    for b, s, u in zip(res["budgets"], res["l1_scenes"], res["l1_unfamiliar"]):
        lines.append(f"| {b} | {s:.4f} | {u:.4f} | {counts.get(b, counts.get(str(b), 0))} |")
    lines += ["", "| baseline (demo-scenes) | L1 |", "|---|---:|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in res["baselines_scenes"].items()]
    lines += ["", f"mean required tokens: scenes {res['required_tokens_scenes_mean']:.2f}, "
              f"unfamiliar {res['required_tokens_unfamiliar_mean']:.2f}",
              f"never reach the threshold: scenes {100 * res['never_reached_scenes']:.1f}%, "
              f"unfamiliar {100 * res['never_reached_unfamiliar']:.1f}%",
              f"Spearman rho (required tokens vs complexity): {res['spearman_tokens_complexity']:.3f}", "",
              "| bar item | pass |", "|---|---|"]
    lines += [f"| {k} | {'PASS' if v else 'FAIL'} |" for k, v in res["bar"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_path")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--threshold", type=float, default=THRESHOLD)
    ap.add_argument("--json", default=None, help="also write the result dict here")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--card", action="store_true", help="write the table into the package's MODEL_CARD.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    res = evaluate(args.model_path, n=args.n, threshold=args.threshold)
    print(format_table(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    if args.card:
        update_card(format_table(res))


if __name__ == "__main__":
    main()
