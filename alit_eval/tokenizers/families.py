"""The tokenizer-family registry and the family contract: what a family declares, and nothing else.

A family is **one folder** under ``tokenizers/`` plus **one** `register` line (here, or in any module
that imports `FAMILIES`: a test can register a toy family). Engine, analyses and CLI reach families
only through this module and its three companions, none of which names a family: `family_options`
(every family's options: `all_options`, `run_identity`, the global-stream policy), `family_loading`
(`detect_family`, `load_any`, `convert_any`) and `family_queries` (what a loaded tokenizer's family
says: `family_of`, `budgets_for`, `inference_kwargs`, `attention_for`, `tokens_used`). Every callable
is a lazy ``"module:attr"`` target, so importing these modules (``alit-eval --help``,
``alit-eval models``) imports no torch.

How a family declares itself (the `Family` fields):

1. **Inference options** (``options``): a tuple of `alit_eval.tokenizers.options.InferenceOption`,
   kept in the family's folder in a stdlib-only module (``alit/options.py``: ``OPTIONS``). Each has a
   name (loader and ``rollout`` keyword, CLI flag ``--<name>``), kind (``choice``/``float``/``int``/
   ``bool``/``str``), choices or ``low``/``high`` bounds (NaN/inf always refused), default, help, and
   ``changes_numbers`` (then part of the run identity, under ``config.json``'s ``options``). From
   that one declaration come: the CLI flags of every sweep command and their ``--help``
   (`family_options.all_options`), `SweepConfig.options`, the defaults of pretrained entries (an entry's
   ``options`` overrides them), ``meta.json``'s ``resolved_from``, ``compare``'s per-tokenizer
   options (an option a family lacks is dropped for it), ``alit-eval models`` and the run identity
   (`family_options.run_identity`). The loader receives the resolved values as keywords (``load(..., halting=...)``)
   and the engine passes them to ``rollout`` (only those its signature takes,
   `family_queries.inference_kwargs`).
   The loaded tokenizer exposes each option's value as an attribute of the same name.
2. **Randomness** (``random``): True when inference draws random numbers. The engine then passes
   ``generator=`` a list of one CPU `torch.Generator` per image, seeded from (run seed, image id)
   (`alit_eval.tokenizers.generators.per_image_generators`), for *every* option value: draws must
   come from these generators under the family's default policy, so results do not depend on batch
   size, order, resume or the number of processes. A rollout called without generators (Python API
   ``tok.rollout(x, [8, 64])``) must still work: seed per image from
   `alit_eval.tokenizers.generators.DEFAULT_SEED` and the image's content
   (`generators.default_generators`). Where the official code draws from the global RNG instead,
   that is a *named policy*: an option value listed in the option's ``global_stream`` (ALIT/KARL
   ``--halting official``). Then the engine seeds the global RNG once per run with the family's
   ``stream_start`` (``"module:attr"`` of ``f(values, seed, cfg)``; default: ``torch.manual_seed``),
   records the batch size in the run identity, refuses several processes and resumes the RNG state.
3. **Loading** (``loader``, ``config_type``, ``config_fields``): ``loader(sd, meta, *, name, source,
   heads, **options) -> tokenizer`` receives the cleaned state_dict (`checkpoints.read_checkpoint`:
   safe unpickling, float32, container unwrapped) and goes through the one pipeline
   `alit_eval.tokenizers.loading`: detect (``sentinels``/``excludes`` here) -> validate the config dict
   against the family's field table (``config_fields``: ``"module:attr"`` of ``{field: (kind, low,
   high)}``, kinds of `alit_eval.tokenizers.validate.check_value`; every family has one, so a hostile
   config is refused in milliseconds before anything is built) -> check the weights (floating point,
   finite, naming the tensor) -> build on the meta device -> strict load with the one key-mismatch
   message (`loading.key_mismatch`). `loading.load_checked` does the last three steps.

The rest (``describe``, ``bits_per_token``, ``flop_components``, ``flops_per_budget``, attention,
notes, budgets) are optional ingredients for tables and analyses. Adding a family with one inference
option touches no file outside its folder except the registry line (and the checked-in list of CLI
flags, ``tests/data/cli_options.json``, when the option's flag is new). ``tests/test_family_contract.py``
shows it with a toy family defined in the test file.
"""

from __future__ import annotations

import fnmatch
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Mapping

from alit_eval.errors import AlitEvalError
from alit_eval.registry import Registry, resolve_target
from alit_eval.tokenizers.options import InferenceOption

__all__ = ["FAMILIES", "Family", "get_family", "text_of"]


@dataclass(frozen=True)


class Family:
    """One tokenizer family.

    Attributes:
        name: registry name, also ``--family`` value and the pretrained table's ``family`` field.
        title: display name (``One-D-Piece``).
        summary: one line on what the family is and where it comes from.
        config_type, tokenizer_type: ``"module:attr"`` of the config dataclass and the model class.
        loader: ``"module:attr"`` of ``loader(sd, meta, *, name, source, heads, **options) -> tokenizer``.
        sentinels: key patterns (`fnmatch`) that must all match some key of a checkpoint of this family.
        excludes: key patterns none of whose matches may be present.
        detect_as: another family whose checkpoints have the same layout; this one is then never
            auto-detected, only chosen by ``--family`` or by the loaded config's ``family``.
        explicit: loader keywords added when the user names this family with ``--family``.
        presets: architecture presets (names the config type's ``from_preset`` accepts).
        options: the family's inference options (`InferenceOption`; see the module docstring).
        random: whether inference draws random numbers (then ``rollout`` gets one generator per image).
        stream_start: ``"module:attr"`` of ``f(values, seed, cfg)`` seeding the global RNG for a
            global-stream policy (None: ``torch.manual_seed(seed)``).
        config_fields: ``"module:attr"`` of the config's field table ``{field: (kind, low, high)}``
            (`alit_eval.tokenizers.validate.check_fields`), checked before anything is built.
        model_criteria: allocation criteria the model applies itself: criterion name -> the inference
            option each threshold sets (KARL: ``epsilon``); the tokens it keeps are `tokens_used`.
        budgets: how its budgets work, in words (``32, 64, ..., 256``; ``prefix 1..N``).
        default_budgets: what a sweep evaluates when neither ``--budgets`` nor a pretrained entry says
            (budget syntax); None: the tokenizer's ``default_budgets``, else all its budgets.
        has_attention / attention_definition: decoder attention maps and what they mean.
        attention_modes: values the tokenizer's ``rollout(attention=...)`` accepts besides False.
        describe, bits_per_token: ``"module:attr"`` of ``f(cfg) -> str`` and ``f(cfg) -> float | None``.
        flop_components: ``"module:attr"`` of ``f(tokenizer) -> {component: [modules]}``.
        flops_per_budget: ``"module:attr"`` of a closed form ``f(cfg, budget) -> {component: flops}``, or None.
        precision_note, release_note: what to record with numbers.
    """

    name: str
    title: str
    summary: str
    config_type: str
    tokenizer_type: str
    loader: str
    sentinels: tuple[str, ...]
    excludes: tuple[str, ...] = ()
    detect_as: str | None = None
    explicit: Mapping[str, Any] = field(default_factory=dict)
    presets: tuple[str, ...] = ()
    options: tuple[InferenceOption, ...] | str = ()  # or "module:attr" of the tuple (resolved at registration)
    model_criteria: Mapping[str, str] = field(default_factory=dict)
    budgets: str = ""
    default_budgets: str | None = None
    has_attention: bool = False
    attention_definition: str = ""
    attention_modes: tuple[bool | str, ...] = (True, "full")
    describe: str | None = None
    bits_per_token: str | None = None
    flop_components: str | None = None
    flops_per_budget: str | None = None
    precision_note: str = ""
    release_note: str = ""
    random: bool = False
    stream_start: str | None = None
    config_fields: str | None = None

    def __post_init__(self) -> None:
        # The registry line may point at the declaration in the family's folder ("module:attr" of a
        # stdlib-only module), so the declaration lives in one place.
        if isinstance(self.options, str):
            object.__setattr__(self, "options", tuple(resolve_target(self.options)))

    # -- recognition -------------------------------------------------------------------------------
    def matches(self, keys: Collection[str]) -> bool:
        """True when every sentinel pattern matches a key and no exclude pattern does."""
        keys = [k.removeprefix("module.") for k in keys]
        return (all(fnmatch.filter(keys, p) for p in self.sentinels)
                and not any(fnmatch.filter(keys, p) for p in self.excludes))

    # -- ingredients (each imports its module on first use) -------------------------------------
    def option_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options)

    def option_defaults(self) -> dict[str, Any]:
        return {o.name: o.default for o in self.options}

    def option(self, name: str) -> InferenceOption | None:
        return next((o for o in self.options if o.name == name), None)

    def field_table(self) -> Mapping[str, tuple[Any, ...]]:
        """The config's field table (`config_fields`), empty when the family declares none."""
        return resolve_target(self.config_fields) if self.config_fields else {}

    def uses_global_stream(self, values: Mapping[str, Any]) -> bool:
        """Whether `values` select one of this family's official global-stream policies."""
        return any(values.get(o.name) in o.global_stream for o in self.options if o.global_stream)

    def load_fn(self) -> Callable[..., Any]:
        return resolve_target(self.loader)

    def config_cls(self) -> type:
        return resolve_target(self.config_type)

    def tokenizer_cls(self) -> type:
        return resolve_target(self.tokenizer_type)

    def describe_config(self, cfg: Any) -> str:
        """One line for tables (the family's ``describe``, else its title)."""
        return resolve_target(self.describe)(cfg) if self.describe else self.title

    def bits(self, cfg: Any) -> float | None:
        """Bits one token costs (rate–distortion), or None when the family's tokens have no code rate."""
        return resolve_target(self.bits_per_token)(cfg) if self.bits_per_token else None

    def components(self, tokenizer: Any) -> dict[str, list[Any]]:
        """Sub-modules per FLOP component (empty when the family declares none)."""
        return resolve_target(self.flop_components)(tokenizer) if self.flop_components else {}

    def flops(self, cfg: Any, budget: int, options: Mapping[str, Any] | None = None) -> dict[str, int] | None:
        """Closed-form FLOPs per component at one budget, or None when the family has no closed form.

        `options` (the run's inference options) reach a closed form that takes them as keywords (a
        decoder whose cost depends on an option, e.g. a number of sampling steps); others get none.
        """
        if not self.flops_per_budget:
            return None
        fn = resolve_target(self.flops_per_budget)
        params = inspect.signature(fn).parameters
        given = {k: v for k, v in (options or {}).items() if k in params and v is not None}
        return fn(cfg, budget, **given)

    def attention_text(self) -> str:
        """What "attention of 2D position p to token j" means for this family ('' without attention)."""
        return text_of(self.attention_definition) if self.has_attention else ""

    def notes(self) -> str:
        """The precision and release notes to record with numbers, joined."""
        return "; ".join(t for t in (text_of(self.precision_note), text_of(self.release_note)) if t)

    def require_attention(self, what: str = "this command") -> None:
        """Raise one line when the family has no decoder attention maps."""
        if not self.has_attention:
            with_attn = ", ".join(n for n, f in FAMILIES.items() if f.has_attention)
            raise AlitEvalError(f"{what} needs decoder attention maps, which {self.title} does not offer "
                                f"(families with attention: {with_attn})")

    def attention_arg(self, requested: bool | str | None) -> bool | str:
        """The ``rollout(attention=...)`` value for a requested mode (False/None: no maps).

        ``True`` and ``"corrected"`` both mean the family's own definition (`attention_text`);
        other modes (``"official-notebook"``, ``"full"``) pass through where the family has them.

        Raises:
            AlitEvalError: attention for a family without it, or a mode only other families have.
        """
        if requested in (False, None):
            return False
        self.require_attention()
        if requested in self.attention_modes:
            return requested
        if requested in (True, "corrected"):
            return True
        owners = [n for n, f in FAMILIES.items() if requested in f.attention_modes]
        raise AlitEvalError(f"attention mode {requested!r} exists only for {', '.join(owners) or 'no family'}; "
                            f"{self.title} offers {', '.join(map(str, self.attention_modes))}")

    def rollout_kwargs(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The family's inference options among `values` (None dropped), as ``rollout`` keywords."""
        return {k: values[k] for k in self.option_names() if values.get(k) is not None}

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The given options (None dropped) checked against this family's declarations.

        Raises:
            AlitEvalError: one line for an option this family does not have (e.g. --halting for TiTok),
                or a value its declaration refuses (KARL ``--halting official-reseeded``, ε = NaN).
        """
        out = {}
        for key, value in options.items():
            if value is None:
                continue
            declared = self.option(key)
            if declared is None:
                owners = [n for n, f in FAMILIES.items() if key in f.option_names()]
                mine = ", ".join(o.flag for o in self.options) or "none"
                flag = "--" + key.replace("_", "-")
                raise AlitEvalError(
                    f"{flag} applies only to {', '.join(owners) or 'no family'}; this checkpoint is {self.title} "
                    f"(family {self.name}, inference options: {mine})"
                )
            out[key] = declared.check(value, owner=self.title)
        return out


FAMILIES: Registry[Family] = Registry("tokenizer family")

FAMILIES.register("alit", Family(
    name="alit", title="ALIT",
    summary="Adaptive Length Image Tokenization (Duggal et al., ICLR 2025): recurrent, +32 tokens per iteration",
    config_type="alit_eval.tokenizers.alit.config:AlitConfig",
    tokenizer_type="alit_eval.tokenizers.alit.model:AlitTokenizer",
    loader="alit_eval.tokenizers.alit.family:load_state_dict",
    sentinels=("latent_tokens", "timestep_embedding", "encoder_positional_embedding"),
    excludes=("rec_loss_embeddings",),
    presets=("alit_tiny", "alit_small", "alit_base", "alit_semilarge"),
    options="alit_eval.tokenizers.alit.options:OPTIONS", random=True,
    stream_start="alit_eval.tokenizers.alit.halting:start_stream",
    config_fields="alit_eval.tokenizers.alit.config:FIELDS", budgets="iterations x 32 tokens (32, 64, ..., 256)",
    has_attention=True, attention_definition="alit_eval.tokenizers.alit.family:ATTENTION_DEFINITION",
    attention_modes=(True, "corrected", "official-notebook", "full"),
    describe="alit_eval.tokenizers.alit.family:describe",
    bits_per_token="alit_eval.tokenizers.alit.family:bits_per_token",
    flop_components="alit_eval.tokenizers.alit.family:flop_components",
    precision_note="official evaluation: float32, batch size 1",
))
FAMILIES.register("karl", Family(
    name="karl", title="KARL",
    summary="Single-pass adaptive tokenizer (Duggal et al., arXiv 2507.07995): one pass per budget, ε-conditioned halting",
    config_type="alit_eval.tokenizers.karl.config:KarlConfig",
    tokenizer_type="alit_eval.tokenizers.karl.model:KarlTokenizer",
    loader="alit_eval.tokenizers.karl.family:load_state_dict",
    sentinels=("rec_loss_embeddings", "halting_mlp.0.weight", "decoder_latent_tokens_timestep_embed", "latent_tokens"),
    presets=("karl_tiny", "karl_small", "karl_base", "karl_semilarge"),
    options="alit_eval.tokenizers.karl.options:OPTIONS", random=True,
    config_fields="alit_eval.tokenizers.karl.config:FIELDS", model_criteria={"epsilon": "epsilon"},
    budgets="any slot count 1..512 (official sweep 32, 64, ..., 256)",
    has_attention=True, attention_modes=(True, "corrected", "full"),
    attention_definition=("head-averaged decoder attention from mask query row p (of g*g) to latent slot j "
                          "(key g*g+j), per decoder layer; halted slots receive 0"),
    describe="alit_eval.tokenizers.karl.family:describe",
    bits_per_token="alit_eval.tokenizers.karl.family:bits_per_token",
    flop_components="alit_eval.tokenizers.karl.family:flop_components",
    flops_per_budget="alit_eval.tokenizers.karl.family:transformer_flops",
    precision_note="official evaluation: float32 on GPU, batch size 1 (the official batched forward mixes masks)",
))
_ODP = "alit_eval.tokenizers.one_d_piece"
for _name, _title, _summary, _presets, _budgets, _detect_as in (
    ("one_d_piece", "One-D-Piece",
     "TiTok trained with tail-token drop (Miwa et al., arXiv 2501.10064): any prefix of the 1D tokens decodes",
     ("one_d_piece_s256", "one_d_piece_b256", "one_d_piece_l256"), "prefix lengths 1..N", None),
    ("titok", "TiTok",
     "1D tokenizer of Yu et al. (fixed length): the One-D-Piece code path with one budget, N",
     ("titok_s128", "titok_b64", "titok_l32"), "N only (fixed length)", "one_d_piece"),
):
    FAMILIES.register(_name, Family(
        name=_name, title=_title, summary=_summary,
        config_type=f"{_ODP}.config:OneDPieceConfig", tokenizer_type=f"{_ODP}.model:OneDPieceTokenizer",
        loader=f"{_ODP}.family:load_state_dict",
        sentinels=("latent_tokens", "encoder.positional_embedding", "encoder.latent_token_positional_embedding",
                   "decoder.mask_token", "pixel_quantize.embedding.weight"),
        excludes=("timestep_embedding",), detect_as=_detect_as, explicit={"kind": _name}, presets=_presets,
        config_fields=f"{_ODP}.config:FIELDS",
        budgets=_budgets, has_attention=True, attention_definition=f"{_ODP}.family:ATTENTION_DEFINITION",
        # All N prefixes would be N decodes per image; doublings 1, 2, 4, ..., N (+ N itself) by default.
        default_budgets="1,2,4,..." if _name == "one_d_piece" else None,
        describe=f"{_ODP}.family:describe", bits_per_token=f"{_ODP}.family:bits_per_token",
        flop_components=f"{_ODP}.family:flop_components", flops_per_budget=f"{_ODP}.family:flops_per_budget",
        precision_note=f"{_ODP}.family:PRECISION_NOTE", release_note=f"{_ODP}.family:RELEASE_NOTE",
    ))


_FT = "alit_eval.tokenizers.flextok"
FAMILIES.register("flextok", Family(
    name="flextok", title="FlexTok",
    summary="Register tokens decoded by a rectified-flow decoder (Bachmann et al., ICML 2025): any prefix 1..256",
    config_type=f"{_FT}.config:FlexTokConfig", tokenizer_type=f"{_FT}.model:FlexTokTokenizer",
    loader=f"{_FT}.family:load_state_dict",
    sentinels=("encoder.module_dict.enc_register_module.registers", "decoder.module_dict.dec_nested_dropout.dropout_mask_token"),
    options=f"{_FT}.options:OPTIONS", random=True, config_fields=f"{_FT}.config:FIELDS",
    presets=("flextok_d12_d12_in1k", "flextok_d18_d18_in1k", "flextok_d18_d28_in1k", "flextok_d18_d28_dfn"),
    budgets="prefix lengths 1..256", default_budgets="1,2,4,...", has_attention=True,
    attention_definition=f"{_FT}.family:ATTENTION_DEFINITION", attention_modes=(True,),
    describe=f"{_FT}.family:describe", bits_per_token=f"{_FT}.family:bits_per_token",
    flop_components=f"{_FT}.family:flop_components", flops_per_budget=f"{_FT}.flops:flops_per_budget",
    precision_note=f"{_FT}.family:PRECISION_NOTE", release_note=f"{_FT}.family:RELEASE_NOTE",
))


def get_family(name: str) -> Family:
    """The family called `name` (one-line error listing the families otherwise)."""
    return FAMILIES.get(name)


def text_of(value: str) -> str:
    """A note or definition field: either literal text or a ``"module:attr"`` naming a string constant."""
    if value and ":" in value and " " not in value and value.split(":")[0].startswith("alit_eval."):
        return str(resolve_target(value))
    return value

