"""Compute accounting: FLOPs, parameter counts and latency per token budget (`alit-eval profile`).

The cost structure of an adaptive tokenizer is what decides whether "fewer tokens" saves anything:

- ``rollout`` at budget b: the base 2D encoder plus the recurrence up to b tokens (for ALIT every
  iteration re-processes all earlier tokens, and VQGAN halting decodes latents at every iteration),
  so its cost grows with the budget;
- ``pixel_decode`` at budget b: turning that budget's decoder output into pixels (ALIT: the base
  decoder from the soft codes), paid once per budget that is decoded;
- ``sweep``: one rollout to the largest budget that decodes every budget (what ``alit-eval fid``
  pays per image), and ``fid_features``: the Inception features of one image.

FLOPs come from `torch.utils.flop_counter.FlopCounterMode` (2 FLOPs per multiply-add; matmuls,
convolutions and attention only, so norms and activations are not counted). Two attention kernels
the counter does not know are added here: PyTorch's CPU flash attention and the fused
``_native_multi_head_attention`` fast path of `nn.MultiheadAttention`. FLOPs are split by component
with forward hooks on ALIT's sub-modules (anything outside them, e.g. the VQ distance matmul, is
``other``). Latency is the median wall time of repeated calls after warm-up, per image.
"""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

FLOP_COMPONENTS = ("base_encoder", "encoder_transformer", "alit_decoder", "base_decoder", "other")
PARAM_COMPONENTS = ("encoder_transformer", "alit_decoder", "base_encoder", "base_decoder", "base_codebook",
                    "embeddings", "quantizer_1d", "other")
STAGES = ("rollout", "pixel_decode", "sweep", "fid_features")
COLUMNS = ["stage", "budget", "gflops", *(f"gflops_{c}" for c in FLOP_COMPONENTS), "latency_ms", "latency_ms_min",
           "repeats", "batch_size", "device", "precision"]


# ---- FLOP formulas the counter lacks (shapes arrive through torch's shape_wrapper)
def _sdpa_flops(query_shape: Sequence[int], key_shape: Sequence[int], value_shape: Sequence[int], *args: Any,
                out_shape: Any = None, **kwargs: Any) -> int:
    """``softmax(Q K^T) V`` on ``[B, H, Lq, d]`` x ``[B, H, Lk, d]``: two batched matmuls."""
    b, h, lq, d = query_shape
    lk, dv = key_shape[-2], value_shape[-1]
    return 2 * b * h * lq * lk * d + 2 * b * h * lq * lk * dv


def _native_mha_flops(query_shape: Sequence[int], key_shape: Sequence[int], value_shape: Sequence[int],
                      embed_dim: int, num_heads: int, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """The fused fast path of `nn.MultiheadAttention` (batch-first ``[B, L, E]``): in-projections of
    Q, K, V, the two attention matmuls and the out-projection."""
    b, lq, e = query_shape
    lk = key_shape[1]
    proj = 2 * b * lq * e * e + 2 * 2 * b * lk * e * e + 2 * b * lq * e * e
    return proj + 2 * 2 * b * lq * lk * e


def _custom_mapping() -> dict[Any, Callable[..., int]]:
    mapping: dict[Any, Callable[..., int]] = {}
    for name, fn in (("_scaled_dot_product_flash_attention_for_cpu", _sdpa_flops),
                     ("_native_multi_head_attention", _native_mha_flops)):
        op = getattr(torch.ops.aten, name, None)
        if op is not None:
            mapping[op] = fn
    return mapping


def count_flops(fn: Callable[[], Any], components: dict[str, list[nn.Module]] | None = None) -> dict[str, int]:
    """FLOPs of one call of `fn`, in total and per component.

    Args:
        fn: a no-argument callable (runs once, under ``torch.no_grad``).
        components: name -> modules whose calls (including everything nested inside) are
            attributed to that name; the subtrees must be disjoint. FLOPs outside them are ``other``.

    Returns:
        ``{"total": n, <component>: n, ..., "other": n}`` in FLOPs (2 per multiply-add).
    """
    components = components or {}
    counts = {name: 0 for name in components}
    state: dict[str, Any] = {"depth": 0, "start": 0, "name": None}
    handles = []
    with FlopCounterMode(display=False, custom_mapping=_custom_mapping()) as counter:
        def pre(name: str) -> Callable[..., None]:
            def hook(module: nn.Module, args: Any) -> None:
                if state["depth"] == 0:  # only the outermost hooked call counts: no double counting
                    state["start"], state["name"] = counter.get_total_flops(), name
                state["depth"] += 1
            return hook

        def post(module: nn.Module, args: Any, output: Any) -> None:
            state["depth"] -= 1
            if state["depth"] == 0:
                counts[state["name"]] += counter.get_total_flops() - state["start"]

        try:
            for name, mods in components.items():
                for root in mods:
                    for m in root.modules():
                        handles.append(m.register_forward_pre_hook(pre(name)))
                        handles.append(m.register_forward_hook(post))
            with torch.no_grad():
                fn()
        finally:
            for h in handles:
                h.remove()
        total = int(counter.get_total_flops())
    counts = {k: int(v) for k, v in counts.items()}
    counts["other"] = total - sum(counts.values())
    counts["total"] = total
    return counts


# ---- ALIT structure
def _base(tokenizer: Any) -> nn.Module | None:
    base = getattr(tokenizer, "base_tokenizer", None)
    if base is None:
        return None
    return getattr(base, "vqgan", None) or getattr(base, "vae", None)


def flop_components(tokenizer: Any) -> dict[str, list[nn.Module]]:
    """ALIT's sub-modules per FLOP component (empty for tokenizers with another structure)."""
    base = _base(tokenizer)
    if base is None or not hasattr(tokenizer, "encoder") or not hasattr(tokenizer, "decoder"):
        return {}
    enc = [base.encoder] + ([base.quant_conv] if hasattr(base, "quant_conv") else [])
    dec = [base.decoder] + ([base.post_quant_conv] if hasattr(base, "post_quant_conv") else [])
    return {"base_encoder": enc, "encoder_transformer": [tokenizer.encoder],
            "alit_decoder": [tokenizer.decoder], "base_decoder": dec}


_PARAM_RULES: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("encoder_transformer", lambda n: n.startswith("encoder.")),
    ("alit_decoder", lambda n: n.startswith("decoder.") or n.startswith("decoder_")),
    ("base_encoder", lambda n: n.startswith("base_tokenizer.") and (".encoder." in n or ".quant_conv." in n)),
    ("base_decoder", lambda n: n.startswith("base_tokenizer.") and (".decoder." in n or ".post_quant_conv." in n)),
    ("base_codebook", lambda n: n.startswith("base_tokenizer.") and ".quantize." in n),
    ("embeddings", lambda n: n.split(".")[0] in {
        "encoder_positional_embedding", "encoder_class_embedding", "encoder_mask_token", "latent_tokens",
        "latent_token_positional_embedding", "timestep_embedding", "patch_embed"}),
    ("quantizer_1d", lambda n: n.startswith("quantize.") or n.startswith("pre_quantizer_mlp.")),
)


def param_table(tokenizer: nn.Module) -> "Any":
    """Parameter counts per component (ALIT names; everything unmatched is ``other``).

    Returns:
        DataFrame with columns component, params, share (of the total), in `PARAM_COMPONENTS`
        order, plus a final ``total`` row; components with no parameters are left out.
    """
    import pandas as pd

    counts = dict.fromkeys(PARAM_COMPONENTS, 0)
    for name, p in tokenizer.named_parameters():
        comp = next((c for c, rule in _PARAM_RULES if rule(name)), "other")
        counts[comp] += p.numel()
    total = sum(counts.values())
    rows = [{"component": c, "params": n, "share": n / total if total else float("nan")}
            for c, n in counts.items() if n]
    rows.append({"component": "total", "params": total, "share": 1.0})
    return pd.DataFrame(rows, columns=["component", "params", "share"])


# ---- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device, *, repeats: int = 5, warmup: int = 1) -> list[float]:
    """Wall times in seconds of `repeats` calls of `fn` after `warmup` calls (synchronised on CUDA)."""
    with torch.no_grad():
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t0)
    return times


@contextmanager
def _numerics(precision: str, device: torch.device) -> Iterator[None]:
    from alit_eval.engine import fastpath

    with fastpath.precision(precision, device):
        yield


def _halting_generator(tokenizer: Any, images: torch.Tensor, seed: int) -> Any:
    """Generators for one rollout: per image for ``seeded``; one local generator for ``official``
    (never the global RNG: the draws do not change the cost, only which tokens are masked)."""
    from alit_eval.tokenizers.alit.halting import per_image_generators

    policy = getattr(tokenizer, "halting", None)
    if policy == "seeded":
        return per_image_generators(seed, [str(i) for i in range(len(images))])
    if policy == "official":
        cfg = getattr(tokenizer, "cfg", None)
        # VQGAN draws Bernoulli masks on the images' device; the VAE noise is drawn on the CPU.
        on = images.device if cfg is not None and cfg.base.kind == "vqgan" else torch.device("cpu")
        g = torch.Generator(device=on)
        g.manual_seed(seed)
        return g
    return None


def _decoder_output(out: Any) -> torch.Tensor | None:
    return out.extras.get("logits", out.extras.get("decoded_code"))


# ---- the table
def compute_table(tokenizer: Any, budgets: Sequence[int], device: str | torch.device = "cpu", *,
                  batch_size: int = 1, repeats: int = 5, warmup: int = 1, precision: str = "fp32",
                  fid: bool = True, inception: Any = None, latency: bool = True, seed: int = 0) -> "Any":
    """FLOPs and latency per image of every stage at every budget (see the module docstring).

    Inputs are random images: ALIT's cost depends only on shapes (halting masks 2D tokens in place,
    it never shortens the sequence), so content does not matter.

    Args:
        tokenizer: an `AdaptiveTokenizer` (component split and direct decode timing need ALIT).
        budgets: token budgets to profile (validated against ``tokenizer.budgets``).
        device: where to run.
        batch_size: images per call; FLOPs and latency are divided by it.
        repeats, warmup: timed calls (median and minimum reported) and untimed calls before them.
        precision: ``fp32``, ``bf16`` (autocast) or ``tf32`` (CUDA matmuls); FLOPs do not change.
        fid: also profile the FID Inception feature extractor (built with default weights unless
            `inception` is given).
        inception: a ready `alit_eval.metrics.inception.InceptionFeatures`.
        latency: measure latency (False: FLOPs only, latency columns NaN).
        seed: seed of the random inputs and of the halting generators.

    Returns:
        DataFrame with `COLUMNS`: one row per (``rollout``, budget) and (``pixel_decode``, budget),
        one ``sweep`` row (all budgets, one rollout) and one ``fid_features`` row; FLOPs in GFLOPs
        per image, latency in ms per image.
    """
    import pandas as pd

    from alit_eval.tokenizers.base import check_budgets

    dev = torch.device(device)
    budgets = check_budgets(budgets, tokenizer.budgets)
    if hasattr(tokenizer, "to"):
        tokenizer = tokenizer.to(dev)
    if hasattr(tokenizer, "eval"):
        tokenizer.eval()
    g = torch.Generator().manual_seed(seed)
    size = int(tokenizer.image_size)
    images = torch.rand(batch_size, 3, size, size, generator=g).to(dev)
    comps = flop_components(tokenizer)
    base_row = {"repeats": repeats if latency else 0, "batch_size": batch_size, "device": str(dev),
                "precision": precision}
    rows: list[dict[str, Any]] = []

    def rollout(bs: Sequence[int], decode: bool) -> Callable[[], Any]:
        def call() -> Any:
            with _numerics(precision, dev):
                return tokenizer.rollout(images, list(bs), decode=decode,
                                         generator=_halting_generator(tokenizer, images, seed))
        return call

    def measure(stage: str, budget: int | None, fn: Callable[[], Any]) -> dict[str, Any]:
        flops = count_flops(fn, comps)
        row: dict[str, Any] = {"stage": stage, "budget": budget, "gflops": flops["total"] / 1e9 / batch_size}
        for c in FLOP_COMPONENTS:
            row[f"gflops_{c}"] = flops.get(c, 0) / 1e9 / batch_size if comps or c == "other" else float("nan")
        if latency:
            t = time_call(fn, dev, repeats=repeats, warmup=warmup)
            row["latency_ms"] = 1e3 * statistics.median(t) / batch_size
            row["latency_ms_min"] = 1e3 * min(t) / batch_size
        return {**row, **base_row}

    direct_decode = hasattr(tokenizer, "to_pixels")
    for b in budgets:
        rows.append(measure("rollout", b, rollout([b], decode=False)))
        if direct_decode:
            with torch.no_grad():
                out = _decoder_output(rollout([b], decode=False)()[b])

            def decode(out: torch.Tensor = out) -> Any:
                with _numerics(precision, dev):
                    return tokenizer.to_pixels(out)

            rows.append(measure("pixel_decode", b, decode))
        else:  # another tokenizer: decoding = rollout with pixels minus rollout without
            with_px = measure("pixel_decode", b, rollout([b], decode=True))
            without = rows[-1]
            rows.append({k: (v - without[k] if k.startswith(("gflops", "latency")) else v) for k, v in with_px.items()})
    rows.append(measure("sweep", None, rollout(budgets, decode=True)))
    if fid:
        if inception is None:
            from alit_eval.metrics.inception import InceptionFeatures

            inception = InceptionFeatures(None, "tf1", dev)
        images_u8 = (images * 255).round().to(torch.uint8)

        def features() -> Any:
            with _numerics(precision, dev):
                return inception(images_u8)

        row = measure("fid_features", None, features)
        for c in FLOP_COMPONENTS:  # the tokenizer's components do not apply to Inception
            row[f"gflops_{c}"] = float("nan")
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df:
            df[col] = np.nan
    df = df[COLUMNS]
    df["budget"] = pd.array(df["budget"].to_numpy(dtype=object), dtype="Int64")
    return df


def metrics_rows(table: "Any", params: "Any", *, dataset: str = "random-inputs") -> list[dict[str, Any]]:
    """Long-format metric rows (`alit_eval.results.schema`) of a compute table and a param table."""
    import pandas as pd

    from alit_eval.results.schema import format_condition

    base = {"command": "profile", "dataset": dataset, "preprocess": "none", "n": 1}
    rows = []
    for r in table.itertuples(index=False):
        budget = None if pd.isna(r.budget) else int(r.budget)
        rows.append({**base, "budget": budget, "metric": "gflops", "value": float(r.gflops),
                     "condition": format_condition(stage=r.stage)})
        if not np.isnan(r.latency_ms):
            rows.append({**base, "budget": budget, "metric": "latency_ms", "value": float(r.latency_ms),
                         "n": int(r.repeats), "condition": format_condition(
                             stage=r.stage, device=r.device, precision=r.precision, batch_size=r.batch_size)})
    for r in params.itertuples(index=False):
        rows.append({**base, "metric": "params", "value": float(r.params),
                     "condition": format_condition(component=r.component)})
    return rows


def run(ckpt: str, budgets: Sequence[int] | None, *, device: str, seed: int, offline: bool, results_dir: Any,
        batch_size: int = 1, repeats: int = 5, warmup: int = 1, precision: str = "fp32", fid: bool = True,
        inception_weights: str | None = None, heads: int | None = None, trust_checkpoint: bool = False,
        run_id: str | None = None, overwrite: bool = False) -> tuple[Any, Any, Any]:
    """`alit-eval profile` end to end; returns ``(run_dir, compute table, param table)``.

    Writes ``compute.csv`` (the `compute_table`), ``params.csv`` (`param_table`), ``metrics.csv``
    (`metrics_rows`), ``figures/cost_structure`` and ``meta.json`` under
    ``<results_dir>/profile/<run_id>/``.
    """
    from alit_eval.engine.sweep import resolve_device
    from alit_eval.results import plots, plots_cost
    from alit_eval.results.io import open_run, write_csv
    from alit_eval.results.schema import metrics_frame
    from alit_eval.tokenizers.base import check_budgets
    from alit_eval.tokenizers.pretrained import load_pretrained

    dev = resolve_device(device)
    tok, info = load_pretrained(ckpt, offline=offline, trust_checkpoint=trust_checkpoint, heads=heads,
                                device=str(dev))
    chosen = check_budgets(budgets or tok.budgets, tok.budgets)
    inception = None
    if fid:
        from alit_eval.metrics.inception import InceptionFeatures

        inception = InceptionFeatures(inception_weights, "tf1", dev, offline=offline)
    # Latency depends on the device, so the device is part of the config (and of the default run id).
    config = {"checkpoint": {"name": info["name"], "sha256": info["sha256"], "heads": heads}, "budgets": chosen,
              "batch_size": batch_size, "repeats": repeats, "warmup": warmup, "precision": precision,
              "fid": fid, "device": str(dev), "seed": seed, "halting": info["halting"]}
    run_dir = open_run(results_dir, "profile", run_id=run_id, config=config, overwrite=overwrite)
    try:
        table = compute_table(tok, chosen, dev, batch_size=batch_size, repeats=repeats, warmup=warmup,
                              precision=precision, fid=fid, inception=inception, seed=seed)
        params = param_table(tok)
        write_csv(table, run_dir.file("compute.csv"))
        write_csv(params, run_dir.file("params.csv"))
        run_dir.write_metrics(metrics_frame(metrics_rows(table, params)))
        plots.save(plots_cost.cost_structure(table), run_dir.figures, "cost_structure")
        extra = {"checkpoint": info, "precision": precision, "approximate_precision": precision != "fp32",
                 "torch_threads": torch.get_num_threads(), "inputs": "random uniform images (cost is content-free)",
                 "halting": info["halting"],
                 "inception": {"path": str(inception.weights.path), "sha256": inception.weights.sha256}
                 if inception is not None else None}
        if dev.type == "cuda":
            extra["device_name"] = torch.cuda.get_device_name(dev)
        run_dir.finish(seed=seed, device=str(dev), extra=extra)
    finally:
        run_dir.release()
    return run_dir, table, params
