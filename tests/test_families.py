"""The family registry: detection on every family's checkpoints, errors, --family override, options,
ingredients, and every official pretrained entry's key layout loading strictly into its preset (meta)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch

from alit_eval.errors import AlitEvalError, CheckpointError
from alit_eval.tokenizers.checkpoints import read_checkpoint
from alit_eval.tokenizers.families import FAMILIES
from alit_eval.tokenizers.family_loading import detect_family, load_any
from alit_eval.tokenizers.family_queries import family_of
from alit_eval.tokenizers.pretrained import PRETRAINED
from alit_eval.tokenizers.resolve import load_pretrained
from conftest import REPO, shared_dir

FIX = shared_dir() / "fixtures"
REF = shared_dir() / "reference"
ALIT_VQ = FIX / "official_alit" / "vqgan_quantized" / "checkpoint.pth"
ALIT_VAE = FIX / "official_alit" / "vae_continuous" / "checkpoint.pth"
KARL_VQ = FIX / "official_karl" / "vqgan_quantized" / "checkpoint.pth"
ODP_TINY = FIX / "official_one_d_piece" / "one_d_piece_tiny" / "pytorch_model.bin"
ODP_KEYS = REF / "one_d_piece_official_keys.txt"
ALIT_KEYS = REF / "alit_official_keys.txt"
needs = pytest.mark.skipif(not all(p.is_file() for p in (ALIT_VQ, KARL_VQ, ODP_TINY)),
                           reason="shared fixtures not available (set ALIT_EVAL_SHARED)")


def _keys_sections(path, header: str) -> dict[str, dict[str, tuple[int, ...]]]:
    """Parse a reference key listing into {section title: {key: shape}} (sections start with `header`)."""
    out: dict[str, dict[str, tuple[int, ...]]] = {}
    current = None
    for line in path.read_text().splitlines():
        if line.startswith(header):
            current = out.setdefault(line[len(header):].strip(), {})
        elif current is not None and line and not line.startswith("#"):
            key, shape = line.split("\t")[:2]
            current[key] = tuple(int(s) for s in re.findall(r"\d+", shape))
    return out


def _meta(layout: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    return {k: torch.empty(s, device="meta") for k, s in layout.items()}


# ------------------------------------------------------------------ the table itself

def test_registry_entries_are_complete_and_light():
    assert FAMILIES.names() == ["alit", "karl", "one_d_piece", "titok", "flextok"]
    # FlexTok's presets need the settings its released files carry (never guessed): give them here.
    unknown = {"flextok": {"scaling_factor": 1.0, "sample_posterior": False, "null_cond": "zero"}}
    for name, fam in FAMILIES.items():
        assert fam.name == name and fam.sentinels and fam.presets and fam.budgets
        cfg_cls = fam.config_cls()
        for preset in fam.presets:  # every preset named by the entry builds a config of its type
            assert isinstance(cfg_cls.from_preset(preset, **unknown.get(name, {})), cfg_cls)
        assert fam.has_attention and len(fam.attention_text()) > 40
    assert [o.name for o in FAMILIES.get("alit").options] == ["halting"]
    assert [o.name for o in FAMILIES.get("karl").options] == ["epsilon", "halting"]
    assert FAMILIES.get("one_d_piece").options == () == FAMILIES.get("titok").options
    # importing the registry (and the pretrained table and its resolver) must not import torch:
    # `alit-eval models` stays light
    code = ("import sys; import alit_eval.tokenizers.families, alit_eval.tokenizers.family_options, "
            "alit_eval.tokenizers.family_loading, alit_eval.tokenizers.family_queries, "
            "alit_eval.tokenizers.pretrained, alit_eval.tokenizers.resolve, alit_eval.budgets; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------ detection on real state_dicts

@needs
@pytest.mark.parametrize("path, family", [(ALIT_VQ, "alit"), (ALIT_VAE, "alit"), (KARL_VQ, "karl"),
                                          (ODP_TINY, "one_d_piece")])
def test_detects_each_fixture_family(path, family):
    sd, _ = read_checkpoint(path)
    assert detect_family(sd).name == family


def test_detects_tiny_alit(tiny_ckpt):
    model = load_any(tiny_ckpt)
    assert model.family == "alit" and family_of(model).name == "alit" and model.halting == "seeded"


def test_ambiguous_and_unknown_checkpoints_are_one_line_errors():
    both = {k: torch.zeros(1) for k in (*FAMILIES.get("alit").sentinels, *FAMILIES.get("karl").sentinels)}
    # KARL's sentinels and ALIT's together: ALIT excludes rec_loss_embeddings, so this is KARL-only...
    assert detect_family(both).name == "karl"
    # ...but a layout matching two auto-detected families asks for --family
    with pytest.raises(CheckpointError) as err:
        detect_family({**{k: torch.zeros(1) for k in FAMILIES.get("karl").sentinels},
                       **{k: torch.zeros(1) for k in FAMILIES.get("one_d_piece").sentinels}}, source="x.pth")
    msg = str(err.value)
    assert "several families (karl, one_d_piece)" in msg and "--family karl or --family one_d_piece" in msg
    assert "\n" not in msg
    with pytest.raises(CheckpointError) as err:
        load_any({"backbone.conv.weight": torch.zeros(1)}, source="resnet.pth")
    msg = str(err.value)
    assert "resnet.pth" in msg and "alit, karl, one_d_piece, titok" in msg and "--family" in msg
    assert "backbone.conv.weight" in msg and "\n" not in msg


@needs
def test_family_override_and_options():
    odp = load_any(ODP_TINY, heads=4)
    assert odp.family == "one_d_piece" and odp.budgets == tuple(range(1, 257))
    titok = load_any(ODP_TINY, heads=4, family="titok")  # same weights, fixed-length semantics
    assert titok.family == "titok" and titok.budgets == (256,) and family_of(titok).title == "TiTok"
    back = load_any(ODP_TINY, heads=4, family="one_d_piece")
    assert back.family == "one_d_piece" and len(back.budgets) == 256
    with pytest.raises(AlitEvalError, match=r"^--halting applies only to alit, karl; this checkpoint is One-D-Piece"):
        load_any(ODP_TINY, heads=4, halting="off")
    with pytest.raises(AlitEvalError, match=r"^--epsilon applies only to karl; this checkpoint is ALIT"):
        load_any(ALIT_VQ, epsilon=0.05)
    karl = load_any(KARL_VQ, epsilon=0.05, halting="off")
    assert (karl.family, karl.epsilon, karl.halting) == ("karl", 0.05, "off")
    with pytest.raises(CheckpointError, match="not an ALIT checkpoint"):  # --family forces the loader
        load_any(KARL_VQ, family="alit")
    with pytest.raises(AlitEvalError, match="unknown tokenizer family 'karll'. Did you mean 'karl'"):
        load_any(KARL_VQ, family="karll")


@needs
@pytest.mark.parametrize("path, heads", [(ALIT_VQ, None), (KARL_VQ, None), (ODP_TINY, 4)])
def test_ingredients_through_the_registry(path, heads):
    model = load_any(path, heads=heads)
    fam = family_of(model)
    line = fam.describe_config(model.cfg)
    assert fam.title.split("-")[0] in line and "\n" not in line
    assert fam.bits(model.cfg) == 12.0  # every fixture is quantised with 4096 codes
    comps = fam.components(model)
    mods = [m for ms in comps.values() for m in ms]
    assert comps and all(isinstance(m, torch.nn.Module) for m in mods)
    assert len({id(m) for m in mods}) == len(mods)  # disjoint components
    flops = fam.flops(model.cfg, 8)
    if fam.flops_per_budget:
        assert flops and all(v > 0 for v in flops.values())
    else:
        assert flops is None


@needs
def test_continuous_alit_has_no_code_rate():
    model = load_any(ALIT_VAE)
    assert family_of(model).bits(model.cfg) is None


@needs
def test_load_pretrained_on_a_path_records_the_family():
    model, info = load_pretrained(KARL_VQ)
    assert info["family"] == "karl" and info["options"] == {"epsilon": 0.0, "halting": "seeded"}
    assert info["halting"] == "seeded" and info["describe"].startswith("KARL")
    model, info = load_pretrained(ODP_TINY, heads=4)
    assert info["family"] == "one_d_piece" and info["halting"] is None and info["options"] == {}


# ------------------------------------------------------------------ official layouts of every pretrained entry

def _odp_layouts() -> dict[str, dict[str, tuple[int, ...]]]:
    # section titles look like "configs/one-d-piece_s256.yaml  class=OneDPiece ..." -> preset one_d_piece_s256
    out = {}
    for title, layout in _keys_sections(ODP_KEYS, "## ").items():
        yaml = title.split()[0].rsplit("/", 1)[-1].removesuffix(".yaml")
        out[yaml.replace("one-d-piece", "one_d_piece")] = layout
    return out


@pytest.mark.skipif(not ODP_KEYS.is_file(), reason="official One-D-Piece key listing not available")
@pytest.mark.parametrize("name", [n for n, e in PRETRAINED.items() if e.family in ("one_d_piece", "titok")])
def test_one_d_piece_and_titok_entries_load_their_official_layout(name):
    entry = PRETRAINED.get(name)
    layout = _odp_layouts()[entry.preset]
    model = load_any(_meta(layout), device=None, source=name)  # detection, loader, strict load: all on meta
    assert model.family == entry.family and model.cfg.preset == entry.preset
    assert model.latent_tokens.is_meta and set(model.state_dict()) == set(layout)
    assert FAMILIES.get(entry.family).presets.count(entry.preset) == 1


@pytest.mark.skipif(not ALIT_KEYS.is_file(), reason="official ALIT key listing not available")
@pytest.mark.parametrize("name", [n for n, e in PRETRAINED.items() if e.family == "karl"])
def test_karl_entries_load_their_official_layout(name):
    from test_karl_model import official_karl_layout  # the layout of karl_official.md §1 (not duplicated here)

    entry = PRETRAINED.get(name)
    variant = f"{entry.preset}_{entry.base}_{'quantized' if entry.quantized else 'continuous'}"
    model = load_any({"ema": _meta(official_karl_layout(variant)), "epoch": 199}, device=None, source=name)
    assert model.family == "karl" and model.cfg.variant == variant and model.cfg.preset == entry.preset
    assert model.latent_tokens.is_meta and not any(k.startswith("gan_losses.") for k in model.state_dict())


@pytest.mark.skipif(not ALIT_KEYS.is_file(), reason="official ALIT key listing not available")
@pytest.mark.parametrize("name", [n for n, e in PRETRAINED.items() if e.family == "alit" and not e.bundled])
def test_alit_entries_load_their_official_layout(name):
    entry = PRETRAINED.get(name)
    sections = {t.split()[0].rsplit("/", 1)[-1]: v for t, v in _keys_sections(ALIT_KEYS, "# VARIANT:").items()}
    model = load_any({"ema": _meta(sections[entry.filename])}, device=None, source=name)
    assert model.family == "alit" and model.cfg.preset in (entry.preset, None)
    assert (model.cfg.base.kind, model.cfg.quantize) == (entry.base, entry.quantized)


def test_attention_modes_and_rollout_options():
    alit, karl, odp = (FAMILIES.get(n) for n in ("alit", "karl", "one_d_piece"))
    assert [alit.attention_arg(m) for m in (None, True, "corrected", "official-notebook")] == [
        False, True, "corrected", "official-notebook"]
    assert odp.attention_arg("corrected") is True and odp.attention_arg("full") == "full"
    with pytest.raises(AlitEvalError, match="'official-notebook' exists only for alit; KARL offers"):
        karl.attention_arg("official-notebook")
    values = {"halting": "off", "epsilon": 0.05, "other": 1}
    assert alit.rollout_kwargs(values) == {"halting": "off"}
    assert karl.rollout_kwargs(values) == {"epsilon": 0.05, "halting": "off"}
    assert odp.rollout_kwargs(values) == {} and karl.rollout_kwargs({"epsilon": None}) == {}


@needs
def test_budgets_for_and_inference_kwargs():
    from alit_eval.tokenizers.family_queries import budgets_for, inference_kwargs

    odp = load_any(ODP_TINY, heads=4)
    assert budgets_for(odp) == [1, 2, 4, 8, 16, 32, 64, 128, 256]  # the family default
    assert budgets_for(odp, "8-32:8") == [8, 16, 24, 32] and budgets_for(odp, [3, 5]) == [3, 5]
    assert budgets_for(odp, None, "1,3,...") == list(range(1, 256, 2))  # an entry default is taken as written
    with pytest.raises(AlitEvalError, match=r"^--budgets '300': budget\(s\) 300 not available; this tokenizer produces 1\.\.256$"):
        budgets_for(odp, "300")
    titok = load_any(ODP_TINY, heads=4, family="titok")
    assert budgets_for(titok) == [256]
    with pytest.raises(AlitEvalError, match="this tokenizer produces 256$"):
        budgets_for(titok, "1,2,4,...")
    karl = load_any(KARL_VQ)
    assert budgets_for(karl) == list(karl.cfg.default_budgets) and budgets_for(karl, None, "32-256:32")[-1] == 256
    alit = load_any(ALIT_VQ)
    assert budgets_for(alit, "32,64,...") == list(range(32, 257, 32))
    with pytest.raises(AlitEvalError, match="produces 32, 64, ..., 256"):
        budgets_for(alit, "48")
    values = {"halting": "off", "epsilon": 0.05, "generator": None}
    assert inference_kwargs(alit, values) == {"halting": "off"}
    assert inference_kwargs(karl, values) == {"halting": "off", "epsilon": 0.05}
    assert inference_kwargs(odp, values) == {}


@needs
def test_tokens_used_reports_kept_slots():
    from alit_eval.tokenizers.family_queries import tokens_used

    x = torch.rand(2, 3, 256, 256)
    karl = load_any(KARL_VQ)
    r = karl.rollout(x, [32], decode=False)
    assert torch.equal(tokens_used(r[32]), 32 - r[32].extras["halt_mask"].sum(1))
    assert FAMILIES.get("karl").model_criteria == {"epsilon": "epsilon"}
    odp = load_any(ODP_TINY, heads=4)
    assert tokens_used(odp.rollout(x, [5], decode=False)[5]).tolist() == [5, 5]


@needs
@pytest.mark.parametrize("path, family, heads", [(KARL_VQ, None, None), (ODP_TINY, "titok", 4), (ALIT_VQ, None, None)])
def test_convert_any_round_trip(tmp_path, path, family, heads):
    from alit_eval.tokenizers.family_loading import convert_any

    summary = convert_any(path, tmp_path / "m.safetensors", family=family, heads=heads)
    before = load_any(path, family=family, heads=heads)
    after = load_any(tmp_path / "m.safetensors")  # no heads, no --family: both come from the stored config
    assert after.family == before.family == summary["family"] and after.cfg == before.cfg
    sd0, sd1 = before.state_dict(), after.state_dict()
    assert sd0.keys() == sd1.keys() and all(torch.equal(sd0[k], sd1[k]) for k in sd0)
