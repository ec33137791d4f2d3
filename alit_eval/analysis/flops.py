"""Compute accounting: FLOPs, parameter counts and latency per token budget (a primitive).

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
Used by `alit-eval profile` (`alit_eval.analysis.profile`) and by `fid` (FLOPs only).
"""

from __future__ import annotations

import os
import statistics
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from alit_eval.engine import fastpath
from alit_eval.tokenizers.base import check_budgets
from alit_eval.tokenizers.family_queries import family_or_none, inference_kwargs
from alit_eval.tokenizers.generators import per_image_generators


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
    """Sub-modules per FLOP component: the tokenizer family's own split (`Family.components`), else
    the encoder/decoder/base split of tokenizers built like ALIT (empty for another structure)."""
    fam = family_or_none(tokenizer)
    if fam is not None and fam.flop_components:
        return fam.components(tokenizer)
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
    with fastpath.precision(precision, device):
        yield


def _halting_generator(tokenizer: Any, images: torch.Tensor, seed: int) -> Any:
    """Generators for one rollout of a family that draws random numbers: per image under its default
    policy; one local generator under an official global-stream policy (never the global RNG: the
    draws do not change the cost, only which tokens are masked); None for a deterministic family."""
    from alit_eval.tokenizers.family_queries import family_or_none, option_values

    fam = family_or_none(tokenizer)
    if fam is not None and not fam.random:
        return None
    if fam is not None and fam.uses_global_stream(option_values(tokenizer)):
        base = getattr(getattr(tokenizer, "cfg", None), "base", None)
        # VQGAN draws Bernoulli masks on the images' device; the VAE noise is drawn on the CPU.
        on = images.device if getattr(base, "kind", None) == "vqgan" else torch.device("cpu")
        g = torch.Generator(device=on)
        g.manual_seed(seed)
        return g
    return per_image_generators(seed, [str(i) for i in range(len(images))])


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
    dev = torch.device(device)
    budgets = check_budgets(budgets, tokenizer.budgets)
    if hasattr(tokenizer, "to"):
        tokenizer = tokenizer.to(dev)
    if hasattr(tokenizer, "eval"):
        tokenizer.eval()
    prof = _Profiler(tokenizer, dev, batch_size=batch_size, repeats=repeats, warmup=warmup, precision=precision,
                     latency=latency, seed=seed)
    rows: list[dict[str, Any]] = []
    for b in budgets:
        rows += prof.budget_rows(b)
    rows.append(prof.measure("sweep", None, prof.rollout(budgets, decode=True)))
    if fid:
        if inception is None:
            from alit_eval.metrics.inception import InceptionFeatures  # torch-fidelity: only when FID is timed

            inception = InceptionFeatures(None, "tf1", dev)
        rows.append(prof.fid_row(inception))
    df = pd.DataFrame(rows)
    # The component columns are the tokenizer family's own (ALIT: FLOP_COMPONENTS); see `flop_components`.
    columns = [*COLUMNS[:3], *(f"gflops_{c}" for c in prof.components), *COLUMNS[3 + len(FLOP_COMPONENTS):]]
    for col in columns:
        if col not in df:
            df[col] = np.nan
    df = df[columns]
    df["budget"] = pd.array(df["budget"].to_numpy(dtype=object), dtype="Int64")
    return df


class _Profiler:
    """The measurements of `compute_table`: one random batch, FLOPs by component and latency per call."""

    def __init__(self, tokenizer: Any, dev: torch.device, *, batch_size: int, repeats: int, warmup: int,
                 precision: str, latency: bool, seed: int) -> None:
        self.tokenizer, self.dev, self.batch_size = tokenizer, dev, batch_size
        self.repeats, self.warmup, self.precision, self.latency, self.seed = repeats, warmup, precision, latency, seed
        size = int(tokenizer.image_size)
        self.images = torch.rand(batch_size, 3, size, size, generator=torch.Generator().manual_seed(seed)).to(dev)
        self.comps = flop_components(tokenizer)
        self.components = (*self.comps, "other") if self.comps else FLOP_COMPONENTS
        self.base_row = {"repeats": repeats if latency else 0, "batch_size": batch_size, "device": str(dev),
                         "precision": precision}

    def rollout(self, bs: Sequence[int], decode: bool) -> Callable[[], Any]:
        """A call of the rollout to budgets `bs` (with pixels when `decode`)."""
        def call() -> Any:
            with _numerics(self.precision, self.dev):
                gen = _halting_generator(self.tokenizer, self.images, self.seed)
                return self.tokenizer.rollout(self.images, list(bs), decode=decode,
                                              **inference_kwargs(self.tokenizer, {"generator": gen}))
        return call

    def measure(self, stage: str, budget: int | None, fn: Callable[[], Any]) -> dict[str, Any]:
        """One table row: GFLOPs (total and per component) and latency per image of `fn`."""
        flops = count_flops(fn, self.comps)
        n = self.batch_size
        row: dict[str, Any] = {"stage": stage, "budget": budget, "gflops": flops["total"] / 1e9 / n}
        for c in self.components:
            row[f"gflops_{c}"] = flops.get(c, 0) / 1e9 / n if self.comps or c == "other" else float("nan")
        if self.latency:
            t = time_call(fn, self.dev, repeats=self.repeats, warmup=self.warmup)
            row["latency_ms"] = 1e3 * statistics.median(t) / n
            row["latency_ms_min"] = 1e3 * min(t) / n
        return {**row, **self.base_row}

    def budget_rows(self, b: int) -> list[dict[str, Any]]:
        """The ``rollout`` and ``pixel_decode`` rows of budget `b`."""
        roll = self.measure("rollout", b, self.rollout([b], decode=False))
        if hasattr(self.tokenizer, "to_pixels"):
            with torch.no_grad():
                out = _decoder_output(self.rollout([b], decode=False)()[b])

            def decode(out: torch.Tensor = out) -> Any:
                with _numerics(self.precision, self.dev):
                    return self.tokenizer.to_pixels(out)

            return [roll, self.measure("pixel_decode", b, decode)]
        # another tokenizer: decoding = rollout with pixels minus rollout without
        with_px = self.measure("pixel_decode", b, self.rollout([b], decode=True))
        return [roll, {k: (v - roll[k] if k.startswith(("gflops", "latency")) else v) for k, v in with_px.items()}]

    def fid_row(self, inception: Any) -> dict[str, Any]:
        """The ``fid_features`` row: the Inception features of the batch."""
        images_u8 = (self.images * 255).round().to(torch.uint8)

        def features() -> Any:
            with _numerics(self.precision, self.dev):
                return inception(images_u8)

        row = self.measure("fid_features", None, features)
        for c in self.components:  # the tokenizer's components do not apply to Inception
            row[f"gflops_{c}"] = float("nan")
        return row


FLOPS_CACHE_VERSION = 1  # bump when the counting changes, so cached tables are recounted


def architecture_key(tokenizer: Any, budgets: Sequence[int], device: str | torch.device, fid: bool) -> str:
    """What FLOPs depend on: the family, the model config (shapes, not weights), the budgets, whether
    Inception is counted, the device type (its attention kernels) and the torch version."""
    import hashlib

    fam = family_or_none(tokenizer)
    text = repr((FLOPS_CACHE_VERSION, type(tokenizer).__name__, getattr(fam, "name", None),
                 repr(getattr(tokenizer, "cfg", None)), int(tokenizer.image_size), sorted(int(b) for b in budgets),
                 bool(fid), torch.device(device).type, torch.__version__))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cached_compute_table(tokenizer: Any, budgets: Sequence[int], device: str | torch.device = "cpu", *,
                         fid: bool = True, seed: int = 0, say: Callable[[str], None] | None = None) -> "Any":
    """`compute_table` FLOPs only (no latency), counted once per architecture and cached.

    FLOPs depend on shapes only (`architecture_key`), so the table of one architecture serves every
    later run of it, whatever its weights; the cache is ``<cache>/flops/<key>.csv``. `say` gets one
    line before a count that is not cached (it can take minutes on a busy CPU) and one after.
    """
    from alit_eval.paths import cache_dir

    path = cache_dir() / "flops" / f"{architecture_key(tokenizer, budgets, device, fid)}.csv"
    if path.is_file():
        try:
            df = pd.read_csv(path)
            df["budget"] = pd.array(df["budget"].to_numpy(dtype=object), dtype="Int64")
            return df
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is recounted
    t0 = time.perf_counter()
    if say:
        say(f"compute: counting FLOPs per budget for this architecture ({len(budgets)} budgets; once, then cached)")
    df = compute_table(tokenizer, budgets, device, latency=False, fid=fid, inception=None, seed=seed)
    if say:
        say(f"compute: done in {time.perf_counter() - t0:.0f} s (cached in {path.parent})")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        df.to_csv(tmp, index=False)
        os.replace(tmp, path)  # atomic: a concurrent run never reads half a table
    except OSError:
        pass  # a read-only cache only costs the recount next time
    return df
