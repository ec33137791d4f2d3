"""``alit-eval convert``: an official checkpoint of any tokenizer family -> alit-eval ``.safetensors``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from alit_eval.cli.options import Family, get_globals
from alit_eval.errors import AlitEvalError


def convert(
    ctx: typer.Context,
    ckpt: str = typer.Argument(..., help="Official .pth file, or a pretrained name (see `alit-eval models`)."),
    out: Path = typer.Argument(..., help="Output file; must end in .safetensors."),
    heads: Optional[int] = typer.Option(
        None, "--heads", min=1,
        help="Attention heads (not inferable from weight shapes; default from the preset).",
    ),
    trust_checkpoint: bool = typer.Option(
        False, "--trust-checkpoint",
        help="Allow full unpickling, which can run code from the file. Only for files you trust.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
    family: Family = None,
) -> None:
    """Convert an official checkpoint (ALIT, KARL, One-D-Piece, TiTok) to alit-eval safetensors
    (weights + config + family).

    Reads the file safely (no arbitrary unpickling unless --trust-checkpoint), drops the
    training-only gan_losses, infers the architecture and writes one .safetensors file that
    loads without pickle. CKPT may be a pretrained name: it is then taken from the cache or
    downloaded.

    Example:

        alit-eval convert alit_small.vqgan_quantized.in100 alit_small_in100.safetensors
    """
    options = get_globals(ctx)
    if out.suffix != ".safetensors":
        raise AlitEvalError(f"OUT must end in .safetensors; got {out}")
    if out.exists() and not overwrite:
        raise AlitEvalError(f"{out} already exists; pass --overwrite to replace it")

    from alit_eval.tokenizers.resolve import resolve_checkpoint

    src = resolve_checkpoint(ckpt, offline=options.offline)
    if src.resolve() == out.resolve():
        raise AlitEvalError(f"OUT {out} is the input file itself; choose another name")
    out.parent.mkdir(parents=True, exist_ok=True)

    from alit_eval.tokenizers.family_loading import convert_any

    summary = convert_any(src, out, family=family, trust_checkpoint=trust_checkpoint, heads=heads)
    _print_summary(src, out, summary)


def _print_summary(src: Path, out: Path, summary: dict) -> None:
    from rich.console import Console

    console = Console(highlight=False)
    console.print(f"converted {src} -> {out}" + (f" ({summary['family']})" if summary.get("family") else ""))
    config = summary.get("config")
    if isinstance(config, dict):
        console.print("config: " + ", ".join(f"{k}={v}" for k, v in config.items()))
    if "num_params" in summary:
        console.print(f"parameters: {summary['num_params'] / 1e6:.1f} M")
    for key in ("source_sha256", "sha256"):
        if summary.get(key):
            console.print(f"{key}: {summary[key]}")
