"""The family contract (issue 22): a toy family defined in this file only works end to end.

The toy has one inference option that changes the numbers (``gain``, a float in 0..2) and a random
decode (noise from the generator of each image). It is registered here, its registry line pointing
at this module; nothing outside this file is changed. Then ``--help``, ``models``, ``fid`` (run
identity, batch-size independence), resume and ``compare`` work with it, and a hostile toy header is
refused by the shared pipeline. The import graph of ``tokenizers/`` has no cycle and the neutral
modules name no family.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import json
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import pytest
import torch
from torch import nn

from alit_eval.tokenizers.base import BudgetOutput, Rollout, check_budgets, check_images
from alit_eval.tokenizers.families import FAMILIES, Family
from alit_eval.tokenizers.generators import default_generators, per_image_list
from alit_eval.tokenizers.options import InferenceOption

HERE = __name__
TOY_FIELDS = {"image_size": ("int", 8, 256), "channels": ("int", 1, 64), "depth": ("int", 1, 8)}
TOY_OPTIONS = (InferenceOption("gain", 1.0, "scales the toy decoder's output", low=0.0, high=2.0),)


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    image_size: int = 32
    channels: int = 4
    depth: int = 2

    @property
    def budgets(self) -> tuple[int, ...]:
        return (1, 2, 4, 8)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ToyConfig":
        return cls(**d)


class ToyTokenizer(nn.Module):
    """k tokens = k mean-pooled channels; the decode adds per-image noise and multiplies by ``gain``."""

    def __init__(self, cfg: ToyConfig, *, gain: float = 1.0, name: str = "toy") -> None:
        super().__init__()
        self.cfg, self.gain, self.name, self.image_size, self.budgets = cfg, gain, name, cfg.image_size, cfg.budgets
        self.toy_proj = nn.Parameter(torch.full((cfg.depth, 3), 0.5))

    @torch.no_grad()
    def rollout(self, images, budgets, *, decode=True, attention=False, generator=None, gain=None) -> Rollout:
        check_images(images, self.image_size)
        req = check_budgets(budgets, self.budgets)
        gens = per_image_list(default_generators(images) if generator is None else generator, len(images))
        gain = self.gain if gain is None else gain
        outputs = {}
        for b in req:
            pooled = torch.nn.functional.avg_pool2d(images, self.image_size // b)
            smooth = torch.nn.functional.interpolate(pooled, size=images.shape[-2:], mode="nearest")
            noise = torch.stack([torch.randn(images.shape[1:], generator=g) for g in gens]) * 0.05
            rec = (smooth * self.toy_proj.mean() * 2 * gain + noise).clamp(0, 1)
            tokens = pooled.flatten(2).transpose(1, 2)
            outputs[b] = BudgetOutput(budget=b, latent=tokens, tokens=tokens, reconstruction=rec if decode else None)
        return Rollout(outputs)


def load_toy(sd, meta=None, *, name="toy", source="<state_dict>", heads=None, gain=1.0) -> ToyTokenizer:
    from alit_eval.tokenizers.loading import load_checked

    return load_checked(sd, title="Toy", source=source, fields=TOY_FIELDS, raw_config=(meta or {}).get("config"),
                        from_dict=ToyConfig.from_dict, infer=ToyConfig, describe=lambda c: f"depth {c.depth}",
                        build=lambda c: ToyTokenizer(c, gain=gain, name=name))


def _modules_to_rebuild() -> list[str]:
    from alit_eval.cli.app import COMMANDS

    # The shared options first: each command reads them when its module is (re)loaded.
    return ["alit_eval.cli.options", *sorted({t.partition(":")[0] for t in COMMANDS.values()})]


def _rebuild_cli() -> None:
    # The CLI declares its flags when its modules are imported; rebuild them as a fresh process would.
    for name in _modules_to_rebuild():
        importlib.reload(importlib.import_module(name))
    importlib.reload(importlib.import_module("alit_eval.cli.app"))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from alit_eval.tokenizers.checkpoints import save_tokenizer

    # The one registry line of the toy family.
    FAMILIES.register("toy", Family(
        name="toy", title="Toy", summary="a test-only family: pooled tokens, a noisy decoder",
        config_type=f"{HERE}:ToyConfig", tokenizer_type=f"{HERE}:ToyTokenizer", loader=f"{HERE}:load_toy",
        sentinels=("toy_proj",), options=f"{HERE}:TOY_OPTIONS", random=True, config_fields=f"{HERE}:TOY_FIELDS",
        budgets="1, 2, 4, 8"))
    _rebuild_cli()
    path = save_tokenizer(ToyTokenizer(ToyConfig()), tmp_path_factory.mktemp("toy") / "toy.safetensors")
    try:
        yield path
    finally:
        FAMILIES._entries.pop("toy")
        _rebuild_cli()


def _cli(capsys, *args: str) -> tuple[int, str]:
    from alit_eval.cli.app import main

    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out = capsys.readouterr()
    return exit_info.value.code, out.out + out.err


def _fid(capsys, results: Path, ckpt: Path, *args: str) -> Path:
    code, out = _cli(capsys, "--results-dir", str(results), "--device", "cpu", "fid", "--ckpt", str(ckpt),
                     "--data", "demo-scenes", "--limit", "4", "--budgets", "1,4", "--no-fid", *args)
    assert code == 0, out[-3000:]
    runs = sorted((results / "fid").iterdir(), key=lambda p: p.stat().st_mtime)
    return runs[-1]


def test_help_and_models_show_the_toy_option(toy, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one help line per option
    code, out = _cli(capsys, "fid", "--help")
    assert code == 0 and "--gain" in out and "Toy only" in out and "0..2" in out
    code, out = _cli(capsys, "models", "--json")
    group = json.loads(out)["families"]["toy"]
    assert group["options"] == {"gain": 1.0} and group["random"] is True
    assert group["option_details"]["gain"]["accepts"] == "0..2"
    code, out = _cli(capsys, "models")
    assert code == 0 and "Toy (toy)" in out and "--gain 0..2" in out


def test_fid_records_the_option_and_is_batch_independent(toy, tmp_path, capsys):
    a = _fid(capsys, tmp_path / "a", toy, "--batch-size", "4")
    b = _fid(capsys, tmp_path / "b", toy, "--batch-size", "1")
    c = _fid(capsys, tmp_path / "c", toy, "--gain", "0.5")
    config_a, config_c = (json.loads((r / "config.json").read_text()) for r in (a, c))
    assert config_a["options"] == {"gain": 1.0} and config_c["options"] == {"gain": 0.5}
    assert config_a["halting"] is None  # the keys of earlier runs stay; the toy has no halting
    assert a.name == b.name and a.name != c.name  # batch size is not identity; the option is
    pa, pb, pc = (pd.read_parquet(r / "per_image.parquet") for r in (a, b, c))
    assert pa["l1"].tolist() == pb["l1"].tolist()  # random decode, per-image generators
    assert pa["l1"].tolist() != pc["l1"].tolist()
    meta = json.loads((c / "meta.json").read_text())["extra"]
    assert meta["resolved_from"]["gain"] == "option" and meta["checkpoint"]["options"] == {"gain": 0.5}
    code, out = _cli(capsys, "--results-dir", str(tmp_path / "d"), "fid", "--ckpt", str(toy), "--gain", "3",
                     "--no-fid")
    assert code == 2 and "--gain 3.0 is out of range (allowed 0..2)" in out


def test_resume_gives_the_same_numbers(toy, tmp_path):
    from alit_eval.analysis.reconstruction import run
    from alit_eval.engine.config import SweepConfig

    def cfg():
        return SweepConfig(ckpt=str(toy), data="demo-scenes", limit=4, budgets=[1, 4], batch_size=1, fid=False,
                           gain=0.7)

    kw = dict(seed=3, device="cpu", offline=True, progress=False)
    full, _ = run(cfg(), results_dir=tmp_path / "full", **kw)
    seen = []

    def stop(n):
        seen.append(n)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(cfg(), results_dir=tmp_path / "cut", on_batch=stop, **kw)
    resumed, _ = run(cfg(), results_dir=tmp_path / "cut", **kw)
    a, b = (pd.read_parquet(r.path / "per_image.parquet") for r in (full, resumed))
    assert a["l1"].tolist() == b["l1"].tolist() and len(a) == 8


def test_compare_plans_the_toy_with_its_option(toy, tmp_path, capsys, tiny_ckpt):
    code, out = _cli(capsys, "--results-dir", str(tmp_path), "--device", "cpu", "compare", "--ckpt", f"toy={toy}",
                     "--ckpt", f"alit={tiny_ckpt}", "--data", "demo-scenes", "--limit", "4", "--budgets", "4",
                     "--no-fid", "--gain", "0.5", "--halting", "off", "--n-boot", "10")
    assert code == 0, out[-3000:]
    configs = [json.loads(p.read_text()) for p in (tmp_path / "compare").rglob("config.json")]
    options = json.dumps(configs)
    assert '"gain": 0.5' in options and '"halting": "off"' in options  # each option reached its own family


def test_the_shared_pipeline_refuses_a_hostile_toy_header(toy, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from alit_eval.errors import ConfigError
    from alit_eval.tokenizers.family_loading import load_any

    with safe_open(str(toy), framework="pt") as f:
        sd, meta = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())
    bad = tmp_path / "bad.safetensors"
    save_file(sd, str(bad), metadata={**meta, "config": json.dumps({"image_size": 32, "channels": 4, "depth": 10**6})})
    with pytest.raises(ConfigError, match="depth = 1000000 is out of range"):
        load_any(bad)


# -- the import graph of tokenizers/ ------------------------------------------------------------------

TOKENIZERS = Path(__file__).resolve().parents[1] / "alit_eval" / "tokenizers"
NEUTRAL = ("validate", "loading", "options", "generators", "base", "families", "family_options",
           "family_loading", "family_queries", "common")


def _graph() -> dict[str, set[str]]:
    mods = {}
    for p in TOKENIZERS.rglob("*.py"):
        parts = p.relative_to(TOKENIZERS.parents[1]).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text())):  # module-level and function-level imports alike
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            graph[m] |= {n for n in names if n in mods and n != m}
    return graph


def test_no_import_cycle_among_tokenizers_and_neutral_modules_name_no_family():
    graph = _graph()
    done: set[str] = set()

    def visit(m: str, path: list[str]) -> None:
        assert m not in path, f"import cycle: {' -> '.join(path[path.index(m):] + [m])}"
        if m in done:
            return
        for n in graph[m]:
            visit(n, path + [m])
        done.add(m)

    for m in graph:
        visit(m, [])
    families = ("alit", "karl", "one_d_piece", "flextok")
    for m, deps in graph.items():
        short = m.removeprefix("alit_eval.tokenizers.")
        if short.split(".")[0] in NEUTRAL and short != "families":
            assert not [d for d in deps if d.removeprefix("alit_eval.tokenizers.").split(".")[0] in families], m
    text = (TOKENIZERS / "validate.py").read_text().lower()
    assert not any(f"{name}" in text for name in ("alit_eval.tokenizers.alit", "karl", "one_d_piece", "presets"))
