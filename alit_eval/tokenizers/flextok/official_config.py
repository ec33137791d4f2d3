"""Reading the official FlexTok hydra config **as data** (never instantiated, never imported).

The released files carry the model's hydra config: ``model.safetensors`` in its metadata (one entry
per top-level key, each the Python ``str()`` of the value, parsed back here with `ast.literal_eval`,
which evaluates literals only), and the hub folder as ``config.json`` (flextok_official.md §3, §5.1).
Every ``_target_`` in it is checked against `KNOWN_TARGETS`, the official classes whose computation
this package re-implements; any other target is a one-line refusal naming it. Every key of the
computational modules is either read (`_READ`) or known not to change inference (`_IGNORED`); an
unrecognised key is refused rather than silently ignored. The VAE's block widths are not part of the
official config (they are hard-coded in the official wrapper), so they come from the tensor shapes.
"""

from __future__ import annotations

import ast
import re
from typing import Any, Mapping

from alit_eval.errors import ConfigError
from alit_eval.tokenizers.flextok.config import FlexTokConfig
from alit_eval.tokenizers.validate import safe_text, show_value

MAX_METADATA_CHARS = 1 << 20  # the fixture's whole config is 10 kB
_P = "flextok."
KNOWN_TARGETS = frozenset(_P + t for t in (
    "flextok_wrapper.FlexTok", "vae_wrapper.StableDiffusionVAE", "model.utils.wrappers.SequentialModuleDictWrapper",
    "model.utils.dict_ops.PerSampleOp", "model.utils.dict_ops.channels_first_to_last",
    "model.utils.dict_ops.channels_last_to_first", "model.preprocessors.patching.PatchEmbedder",
    "model.utils.posembs.PositionalEmbeddingAdder", "model.preprocessors.registers.Registers1D",
    "model.preprocessors.flex_seq_packing.BlockWiseSequencePacker", "model.trunks.transformers.FlexTransformer",
    "model.postprocessors.seq_unpacking.SequenceUnpacker", "model.postprocessors.heads.LinearHead",
    "model.preprocessors.linear.LinearLayer", "model.preprocessors.token_dropout.MaskedNestedDropout",
    "model.preprocessors.nullcond.ZeroNullCond", "model.preprocessors.nullcond.LearnedNullCond",
    "model.preprocessors.time_embedding.TimestepEmbedder", "model.postprocessors.heads.ToPatchesLinearHead",
    "regularizers.quantize_fsq.FSQ", "flow_matching.noise_modules.MinRFNoiseModule",
    "flow_matching.pipelines.MinRFPipeline",
))
TOP_KEYS = ("vae", "encoder", "decoder", "regularizer", "flow_matching_noise_module", "pipeline")

# Keys that only name data-dict entries or training/compilation switches: no effect on inference.
_IGNORED = re.compile(r"^(_target_|_partial_|.*_key|.*_keys|use_act_checkpoint|weight_init_style|dtype_override|"
                      r"use_mup_readout|compile_encode_fn|force_vae_encode|frozen|learnable_logvar|dropout_prob|"
                      r"size_sampling_mode|ordering_mode|n_min|drop_quant_p|corrupt_tokens_p|packed_call|"
                      r"pad_to_multiple|per_subseq_embs|flatten_patches|posemb_scaling|images_read_key|"
                      r"hf_hub_path)$")
# Per module role: the keys read into the config (with the role's official class, short name).
_ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "enc_patch_emb": ("PatchEmbedder", ("channels_in", "dim", "patch_sizes")),
    "enc_posemb_module": ("PositionalEmbeddingAdder", ("dim", "max_sizes", "posemb_type")),
    "enc_register_module": ("Registers1D", ("dim", "n_max")),
    "enc_seq_packer": ("BlockWiseSequencePacker", ("mask_mode",)),
    "enc_transformer": ("FlexTransformer", ("dim", "depth", "head_dim", "mlp_ratio")),
    "enc_to_latents": ("LinearHead", ("dim", "dim_out")),
    "dec_from_latents": ("LinearLayer", ("dim_in", "dim")),
    "dec_registers_posemb_module": ("PositionalEmbeddingAdder", ("dim", "max_sizes", "posemb_type")),
    "dec_nested_dropout": ("MaskedNestedDropout", ("dim",)),
    "dec_latent_dropout": ("NullCond", ()),
    "dec_noise_patch_emb": ("PatchEmbedder", ("channels_in", "dim", "patch_sizes")),
    "dec_patches_posemb_module": ("PositionalEmbeddingAdder", ("dim", "max_sizes", "posemb_type")),
    "dec_seq_packer": ("BlockWiseSequencePacker", ("mask_mode",)),
    "dec_time_embedder": ("TimestepEmbedder", ("dim", "frequency_embedding_size", "max_timestep")),
    "dec_transformer": ("FlexTransformer", ("dim", "depth", "head_dim", "mlp_ratio", "adaLN_expansion")),
    "dec_to_patches": ("ToPatchesLinearHead", ("dim", "channels_out", "patch_sizes")),
}


def parse_metadata(meta: Mapping[str, str], source: str = "<file>") -> dict[str, Any] | None:
    """The hydra config from safetensors metadata (``str()`` per top-level key), or None without one.

    Raises:
        ConfigError: an entry that is too long or not a Python literal (one line naming it).
    """
    if not any(k in meta for k in TOP_KEYS):
        return None
    out: dict[str, Any] = {}
    for key, text in meta.items():
        if key not in TOP_KEYS and key != "_target_":
            continue
        if not isinstance(text, str) or len(text) > MAX_METADATA_CHARS:
            raise ConfigError(f"the FlexTok config entry {safe_text(key, 40)} in {source} is not text of at most "
                              f"{MAX_METADATA_CHARS} characters")
        if key == "_target_":
            out[key] = text
            continue
        try:  # literals only: no name lookup, no call, no attribute access
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError) as e:
            raise ConfigError(f"the FlexTok config entry {safe_text(key, 40)} in {source} is not a Python literal "
                              f"({type(e).__name__}); the file is damaged") from None
    return out


def check_targets(node: Any, path: str = "config", depth: int = 0) -> None:
    """Refuse any ``_target_`` outside `KNOWN_TARGETS` (one line naming it and where it is)."""
    if depth > 12:
        raise ConfigError(f"the FlexTok config is nested too deeply at {safe_text(path, 80)}")
    if isinstance(node, Mapping):
        target = node.get("_target_")
        if target is not None and target not in KNOWN_TARGETS:
            raise ConfigError(f"unknown _target_ {safe_text(repr(target), 100)} at {safe_text(path, 80)}: alit-eval "
                              "never imports config targets and re-implements only the official FlexTok classes")
        for key, value in node.items():
            check_targets(value, f"{path}.{key}", depth + 1)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            check_targets(value, f"{path}[{i}]", depth + 1)


def _module(cfg: Mapping[str, Any], part: str, name: str) -> dict[str, Any]:
    """The settings of module `name` of the encoder/decoder, with every key accounted for."""
    md = (cfg.get(part) or {}).get("module_dict") if isinstance(cfg.get(part), Mapping) else None
    if not isinstance(md, Mapping) or not isinstance(md.get(name), Mapping):
        raise ConfigError(f"the FlexTok config has no {part}.module_dict.{name} (a released FlexTok config has it)")
    mod = dict(md[name])
    short, read = _ROLES[name]
    target = str(mod.get("_target_", ""))
    if not target.endswith(short) and not (short == "NullCond" and target.endswith("NullCond")):
        raise ConfigError(f"{part}.module_dict.{name} is {safe_text(target, 80)}, expected the official {short}")
    _check_keys(mod, read, f"{part}.module_dict.{name}")
    return mod


def _check_keys(mod: Mapping[str, Any], read: tuple[str, ...], where: str) -> None:
    for key in mod:
        if key not in read and not _IGNORED.match(str(key)):
            raise ConfigError(f"{where} sets {safe_text(key, 40)} = {show_value(mod[key])}, a setting alit-eval "
                              "does not implement; refusing rather than ignoring it")


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"the FlexTok config's {what} = {show_value(value)} is not a whole number")
    return value


def _square(value: Any, what: str) -> int:
    if not isinstance(value, (list, tuple)) or len(value) != 2 or value[0] != value[1]:
        raise ConfigError(f"the FlexTok config's {what} = {show_value(value)} is not a square [n, n]")
    return _int(value[0], what)


def vae_shape(sd: Mapping[str, Any], source: str) -> dict[str, Any]:
    """VAE block widths, resnets per block and latent channels from the ``vae.vae.*`` tensor shapes."""
    pre = "vae.vae.encoder.down_blocks."
    widths, i = [], 0
    while f"{pre}{i}.resnets.0.conv1.weight" in sd and i < 9:
        widths.append(int(sd[f"{pre}{i}.resnets.0.conv1.weight"].shape[0]))
        i += 1
    if not widths or "vae.vae.post_quant_conv.weight" not in sd:
        raise ConfigError(f"{source} holds no VAE weights (vae.vae.*); the released FlexTok files include their VAE")
    layers = len({m.group(1) for k in sd if (m := re.match(re.escape(pre) + r"0\.resnets\.(\d+)\.", k))})
    return {"vae_channels": tuple(widths), "vae_layers_per_block": layers,
            "latent_channels": int(sd["vae.vae.post_quant_conv.weight"].shape[0])}


def _check_top_level(cfg: Any, source: str) -> None:
    """The config is a mapping of known targets with the four sections and the VAE settings alit-eval needs."""
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"the FlexTok config of {source} is {type(cfg).__name__}, not a mapping")
    check_targets(cfg)
    missing = [k for k in ("vae", "encoder", "decoder", "regularizer") if not isinstance(cfg.get(k), Mapping)]
    if missing:
        raise ConfigError(f"the FlexTok config of {source} lacks {', '.join(missing)}")
    vae = cfg["vae"]
    _check_keys(vae, ("latent_channels", "scaling_factor", "sample_posterior", "shift_factor"), "vae")
    _check_keys(cfg["regularizer"], ("levels",), "regularizer")
    for key in ("scaling_factor", "sample_posterior"):  # unknown for the releases: never assumed
        if key not in vae:
            raise ConfigError(f"the FlexTok config of {source} does not say vae.{key}; alit-eval will not guess it")
    if vae.get("shift_factor") not in (None, 0, 0.0):
        raise ConfigError(f"vae.shift_factor = {show_value(vae.get('shift_factor'))} is not supported (official: none)")


def _check_embeddings_and_masks(m: Mapping[str, Mapping[str, Any]]) -> str:
    """Position embeddings and sequence masks are the implemented ones; returns the encoder's mask mode."""
    for name in ("enc_posemb_module", "dec_patches_posemb_module"):
        if m[name].get("posemb_type") != "sincos":
            raise ConfigError(f"{name}.posemb_type = {show_value(m[name].get('posemb_type'))}, expected 'sincos'")
    if m["dec_registers_posemb_module"].get("posemb_type") != "learnable_sum":
        raise ConfigError("dec_registers_posemb_module.posemb_type is not 'learnable_sum' (the official decoder's)")
    enc_mask = m["enc_seq_packer"].get("mask_mode")
    if m["dec_seq_packer"].get("mask_mode") != "full" or enc_mask not in ("causal_last", "full"):
        raise ConfigError(f"unsupported sequence masks (encoder {show_value(enc_mask)}, decoder "
                          f"{show_value(m['dec_seq_packer'].get('mask_mode'))}); supported: causal_last/full, full")
    return enc_mask


def config_from_official(cfg: Mapping[str, Any], sd: Mapping[str, Any], *, source: str = "<file>",
                         preset: str | None = None) -> FlexTokConfig:
    """A `FlexTokConfig` from the official hydra config (a dict) and the tensor shapes (VAE widths).

    Raises:
        ConfigError: an unknown target, a missing module, an unimplemented setting or value.
    """
    _check_top_level(cfg, source)
    vae = cfg["vae"]
    m = {name: _module(cfg, "encoder" if name.startswith("enc") else "decoder", name) for name in _ROLES}
    enc_mask = _check_embeddings_and_masks(m)
    levels = cfg["regularizer"].get("levels")
    if not isinstance(levels, (list, tuple)):
        raise ConfigError(f"regularizer.levels = {show_value(levels)} is not a list")
    patch = _square(m["enc_patch_emb"].get("patch_sizes"), "enc_patch_emb.patch_sizes")
    if _square(m["dec_noise_patch_emb"].get("patch_sizes"), "dec_noise_patch_emb.patch_sizes") != patch:
        raise ConfigError("encoder and decoder patch sizes differ; not supported")
    grid = _square(m["enc_posemb_module"].get("max_sizes"), "enc_posemb_module.max_sizes")
    et, dt = m["enc_transformer"], m["dec_transformer"]
    if et.get("mlp_ratio", 4.0) != dt.get("mlp_ratio", 4.0):
        raise ConfigError("encoder and decoder MLP ratios differ; not supported")
    n_reg = _int(m["enc_register_module"].get("n_max"), "enc_register_module.n_max")
    regpos = m["dec_registers_posemb_module"].get("max_sizes")
    if not isinstance(regpos, (list, tuple)) or list(regpos) != [n_reg]:
        raise ConfigError(f"dec_registers_posemb_module.max_sizes = {show_value(regpos)} is not [{n_reg}]")
    shape = vae_shape(sd, source)
    if shape["latent_channels"] != vae.get("latent_channels", shape["latent_channels"]):
        raise ConfigError(f"vae.latent_channels = {show_value(vae.get('latent_channels'))} disagrees with the VAE "
                          f"tensors ({shape['latent_channels']} channels)")
    null = str(m["dec_latent_dropout"].get("_target_", ""))
    expansion = dt.get("adaLN_expansion")
    if expansion is None:  # not in the config: the adaLN rows say it (6 chunks x expansion x width)
        rows = sd.get("decoder.module_dict.dec_transformer.blocks.0.adaLN_modulation.1.weight")
        expansion = int(rows.shape[0]) // (6 * int(dt.get("dim", 1))) if rows is not None else 1
    for name in ("dim", "depth", "head_dim"):
        _int(et.get(name), f"enc_transformer.{name}")
        _int(dt.get(name), f"dec_transformer.{name}")
    return FlexTokConfig(
        scaling_factor=vae["scaling_factor"], sample_posterior=vae["sample_posterior"],
        null_cond="learned" if null.endswith("LearnedNullCond") else "zero",
        image_size=grid * patch * 2 ** (len(shape["vae_channels"]) - 1), **shape,
        patch_size=patch, posemb_grid=grid,
        enc_width=et["dim"], enc_depth=et["depth"], enc_head_dim=et["head_dim"], enc_mask=enc_mask,
        dec_width=dt["dim"], dec_depth=dt["depth"], dec_head_dim=dt["head_dim"], adaln_expansion=expansion,
        mlp_ratio=float(et.get("mlp_ratio", 4.0)), n_registers=n_reg, fsq_levels=tuple(levels),
        freq_size=m["dec_time_embedder"].get("frequency_embedding_size", 256),
        max_timestep=m["dec_time_embedder"].get("max_timestep", 1.0), preset=preset,
    )
