"""Named pretrained checkpoints: the official ALIT, KARL, One-D-Piece, TiTok and FlexTok releases and the demo.

One table (`PRETRAINED`, the timm ``PretrainedCfg`` / open_clip ``pretrained.py`` pattern) says
per name which tokenizer family it is, what the file is, where it comes from, its sha256 and its
default inference options, preprocess and budgets. This file is the table only: `resolve.py` turns
a name or path into a local file and loads it (`resolve_checkpoint`, `load_pretrained`),
`download.py` fetches missing files and `digests.py` keeps their sha256 sidecars. Stdlib only at
import time (``alit-eval models`` lists this table).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from alit_eval.paths import checkpoints_dir
from alit_eval.registry import Registry

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"

# The release table below was read from the official README "Pretrained Checkpoints" (commit
# 033a0c9, which added the ImageNet-1K link) and adaptive_tokenizers/pretrained_models/download.py.
_OFFICIAL_SOURCE = (
    "github.com/ShivamDuggal4/adaptive-length-tokenizer (README 'Pretrained Checkpoints' / "
    "adaptive_tokenizers/pretrained_models/download.py)"
)
_OFFICIAL_LICENCE = "no licence stated in the official README; weights by the ALIT authors"


@dataclass(frozen=True)
class PretrainedEntry:
    """One named checkpoint.

    Attributes:
        name: registry name, ``<preset>.<base>_<quantized|continuous>.<train set>`` or ``demo``.
        preset: architecture preset (``alit_small``, ``alit_base``, ``alit_semilarge``, ``demo``).
        base: frozen 2D base tokenizer, ``vqgan`` or ``vae``.
        quantized: whether the 1D tokens are vector-quantised (else 12-d continuous).
        train_set: ``imagenet100``, ``imagenet1k`` or ``demo``; also the cache sub-folder.
        filename: the official file name; the cached file is stored under this name.
        url: direct-download URL, or None when the toolkit cannot download it itself.
        source: human-readable origin (repository and file that publish the URL).
        sha256: hex digest when known, else None (then recorded on first download).
        alt_filenames: other names the same file is known by (accepted in the cache).
        options: the family's inference options where this checkpoint's default differs from the
            family's declared one (`alit_eval.tokenizers.options`); read one as ``entry.<name>``.
        preprocess: default preprocess mode (``center-crop``, ``resize-center-crop``).
        licence: licence of the weights, as far as known.
        notes: anything a user should know (which figures used it, quirks).
        bundled: file name under ``alit_eval/assets`` for checkpoints shipped with the package.
        family: tokenizer family (a name of `alit_eval.tokenizers.families.FAMILIES`).
        hf_repo, hf_filename, hf_revision: Hugging Face source (repo id, file in the repo, revision);
            such files are fetched with ``huggingface_hub`` and cached under `filename`.
        budgets: default budgets in the budget syntax of `alit_eval.budgets` (None: the tokenizer's).
        precision: the numerics of the official evaluation, to record with numbers.
    """

    name: str
    preset: str
    base: str
    quantized: bool
    train_set: str
    filename: str
    url: str | None = None
    source: str = _OFFICIAL_SOURCE
    sha256: str | None = None
    alt_filenames: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    preprocess: str = "center-crop"
    licence: str = _OFFICIAL_LICENCE
    notes: str = ""
    bundled: str | None = None
    family: str = "alit"
    hf_repo: str | None = None
    hf_filename: str | None = None
    hf_revision: str | None = None
    budgets: str | None = None
    precision: str = ""

    def __getattr__(self, name: str) -> Any:
        # Reached only for names that are not fields: an inference option reads as this entry's value,
        # else its family's declared default (None when the family has no such option).
        from alit_eval.tokenizers.families import FAMILIES
        from alit_eval.tokenizers.family_options import all_option_names

        if name.startswith("__") or name not in all_option_names():
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        options = self.__dict__.get("options", {})
        if name in options:
            return options[name]
        fam = FAMILIES.get(self.family) if self.family in FAMILIES else None
        return fam.option_defaults().get(name) if fam else None

    @property
    def remote_filename(self) -> str:
        """The file's name at its source (a Hugging Face repo may call several files the same)."""
        return self.hf_filename or self.filename

    def cache_path(self, cache_dir: Path | None = None) -> Path:
        """Where this checkpoint lives in the cache (or, if bundled, in the package)."""
        if self.bundled:
            return ASSETS_DIR / self.bundled
        return checkpoints_dir(cache_dir) / self.train_set / self.filename


PRETRAINED: Registry[PretrainedEntry] = Registry("pretrained checkpoint")


def _official(
    preset: str, base: str, quantized: bool, train_set: str, file_id: str, rlkey: str, st: str,
    *, dropbox_name: str | None = None, notes: str = "",
) -> PretrainedEntry:
    kind = "quantized" if quantized else "continuous"
    filename = f"{preset}_{base}_{kind}_latents.pth"
    short = {"imagenet100": "in100", "imagenet1k": "in1k"}[train_set]
    # Official links end in dl=0 (a preview page); dl=1 asks Dropbox for the file itself.
    url = (
        f"https://www.dropbox.com/scl/fi/{file_id}/{dropbox_name or filename}"
        f"?rlkey={rlkey}&st={st}&dl=1"
    )
    entry = PretrainedEntry(
        name=f"{preset}.{base}_{kind}.{short}", preset=preset, base=base, quantized=quantized,
        train_set=train_set, filename=filename, url=url,
        alt_filenames=(dropbox_name,) if dropbox_name else (), notes=notes,
    )
    return PRETRAINED.register(entry.name, entry)


# The 7 released files (alit_official.md §1.13). `alit_tiny` exists as a preset but was never
# released, so it is deliberately absent. The VQGAN variants halt stochastically; the default
# `seeded` policy makes that batch-independent, and `--halting official` (with batch size 1)
# reproduces the official random draws. VAE halting is a no-op in the official code.
_official("alit_small", "vqgan", True, "imagenet1k", "u8jyro5wysttp5mvs6gir",
          "1py1s9755gjhdyw5ifd9h2wff", "swdbevjk",
          dropbox_name="alit_vqgan_small_quantized_latent.pth",
          notes="the only ImageNet-1K release; official folder pretrained_models/imagenet/")
_official("alit_small", "vqgan", True, "imagenet100", "iszluhiop09z3afo2gw5f",
          "klt0zgeunb60l1snuzhjdzdq2", "zgwzgc2r",
          notes="used for all token-visualisation figures of the paper")
_official("alit_base", "vqgan", True, "imagenet100", "6cygifz37knpqtkxgfj81",
          "r8hn0d4d8j8eg2wjorzl9c67s", "c5iv7wor")
_official("alit_semilarge", "vqgan", True, "imagenet100", "wcp7s6w86slh1yy4m3egc",
          "cf2s13c6ah3ru4ly9tb911gi7", "d11uoq0i")
_official("alit_small", "vqgan", False, "imagenet100", "twbxjch2hutxjsy3sd85y",
          "68ycbjp6upkrxt22w5rm58cjv", "5nyk6uvu")
_official("alit_small", "vae", True, "imagenet100", "svykasoyyoapfzlghjuz2",
          "dtvyj74zq593zc7c63miwkhs3", "dwm9w2sp")
_official("alit_small", "vae", False, "imagenet100", "bq2yzr7dufvrpnycb856b",
          "hjx6jpr6vvfzhtgkp1cc1rnrs", "4aa1vyh9",
          notes="used in the official adaptive_tokenizer_demo.ipynb")

PRETRAINED.register("demo", PretrainedEntry(
    name="demo", preset="demo", base="vqgan", quantized=True, train_set="demo",
    filename="demo_tokenizer.safetensors", url=None,
    source="bundled with alit-eval (trained by alit_eval/train; see alit_eval/assets/MODEL_CARD.md)",
    # The family's default inference options (per-image generators), so demo numbers do not depend on
    # --batch-size.
    preprocess="resize-center-crop",
    licence="Apache-2.0 (as alit-eval)", notes="tiny CPU-friendly tokenizer for the demo run",
    bundled="demo_tokenizer.safetensors",
    # sha256 of the bundled file (tests/test_cli_ux.py checks it against the file).
    sha256="8673150eb8a4b10f2e42a7374b97949aeff4b437f74247f539d41b04d159c8f6",
))

# KARL (karl_official.md §1): the README table and kolmogorov_tokenizers/pretrained_models/download.py of
# github.com/ShivamDuggal4/karl (commit 5c1a569). All five are karl_small (w1024, 8 layers, 8 heads).
_KARL_SOURCE = ("github.com/ShivamDuggal4/karl (README 'Pretrained Checkpoints' / "
                "kolmogorov_tokenizers/pretrained_models/download.py)")
_KARL_NOTES = ("evaluate.py protocol: eps 0 (bin 0.005), budgets 32..256 step 32, CenterCrop(256), batch size 1; "
               "the adaptive (eps) mode uses 256 slots at eps 0.03/0.05/0.09")


def _karl(base: str, quantized: bool, train_set: str, file_id: str, rlkey: str, st: str, notes: str = "") -> None:
    kind = "quantized" if quantized else "continuous"
    filename = f"karl_small_{base}_{kind}_latents.pth"
    short = {"imagenet100": "in100", "imagenet1k": "in1k"}[train_set]
    entry = PretrainedEntry(
        name=f"karl_small.{base}_{kind}.{short}", preset="karl_small", base=base, quantized=quantized,
        train_set=train_set, filename=filename, family="karl", source=_KARL_SOURCE,
        # Official links end in dl=0 (a preview page); dl=1 asks Dropbox for the file itself.
        url=f"https://www.dropbox.com/scl/fi/{file_id}/{filename}?rlkey={rlkey}&st={st}&dl=1",
        licence="no licence stated in the official README; weights by the KARL authors",
        budgets="32-256:32", preprocess="center-crop",  # options: KARL's declared defaults (evaluate.py)
        precision="official evaluation: float32, batch size 1", notes="; ".join(filter(None, (notes, _KARL_NOTES))),
    )
    PRETRAINED.register(entry.name, entry)


_karl("vqgan", True, "imagenet1k", "4a2zwpceavl92ij56ja3m", "lc49wt2igsdhzfrqwvl62q30z", "j3f9up9q",
      notes="the only ImageNet-1K release; official folder pretrained_models/imagenet/")
_karl("vqgan", True, "imagenet100", "60plmx9s1jsu5axqb1frj", "v0y3fsureyfijy5m28ba4vpl7", "haisv8qx")
_karl("vqgan", False, "imagenet100", "ipvxil7ubb41wxs25du5p", "opmua15uarn2yt60yo9j7v5uo", "bii053ux")
_karl("vae", True, "imagenet100", "gynbn6onb5tm1t8pmca0x", "93nz1j334ex57myea0qdxu7y5", "9hjwvyc2")
_karl("vae", False, "imagenet100", "v5t6trgczpaprvoow58zk", "0tldlcy8ir0lrectdk1o42tch", "qzfw7g1h",
      notes="used in the official kolmogorov_tokenizer_demo.ipynb")

# One-D-Piece and TiTok (one_d_piece_official.md §2): Hugging Face files, plain float32 state_dicts.
_ODP_PRECISION = "official evaluation: bf16 autocast + TF32 on GPU (VQ in float32); alit-eval runs float32"


def _hf(name: str, preset: str, family: str, repo: str, hf_filename: str, filename: str, *, budgets: str,
        notes: str, licence: str) -> None:
    entry = PretrainedEntry(
        name=name, preset=preset, base="vqgan", quantized=True, train_set="imagenet1k", filename=filename,
        family=family, hf_repo=repo, hf_filename=hf_filename, source=f"Hugging Face repo {repo} (file {hf_filename})",
        budgets=budgets, preprocess="resize-center-crop", precision=_ODP_PRECISION, licence=licence,
        notes=notes,
    )
    PRETRAINED.register(entry.name, entry)


for _size, _letter, _rfid in (("s256", "S", "1.48"), ("b256", "B", "1.11"), ("l256", "L", "1.08")):
    _repo = f"turing-motors/One-D-Piece-{_letter}-256"
    _hf(f"one_d_piece_{_size}.in1k", f"one_d_piece_{_size}", "one_d_piece", _repo, "pytorch_model.bin",
        f"One-D-Piece-{_letter}-256.pytorch_model.bin", budgets="1,2,4,...,256", licence="Apache-2.0",
        notes=(f"README rFID {_rfid} at 256 tokens (ImageNet-1K val, reference = the same 50k images); the released "
               "weights (Nov 2024) predate the tail-drop fix 473665d: token 256 was never seen in training"))
for _size, _tokens, _rfid in (("s128", 128, "1.71"), ("b64", 64, "1.70"), ("l32", 32, "2.21")):
    _file = f"tokenizer_titok_{_size}.bin"
    _hf(f"titok_{_size}.in1k", f"titok_{_size}", "titok", "fun-research/TiTok", _file, _file, budgets=str(_tokens),
        licence="Apache-2.0 (bytedance/1d-tokenizer)",
        notes=(f"Bytedance README rFID {_rfid}; fixed length {_tokens} (official eval never decodes a prefix); the "
               "file names are those of the One-D-Piece titok_*.yaml init_weight, strict loading not checked upstream"))


# FlexTok (flextok_official.md §5.1): Hugging Face files whose safetensors metadata carries the model config (read as
# data by tokenizers/flextok) and which include the VAE weights (vae.vae.*); budgets are prefix lengths 1..256.
def _flextok() -> None:
    from alit_eval.tokenizers.flextok.config import RELEASES

    for preset, (d_enc, d_dec, train_set, repo) in RELEASES.items():
        short = "in1k" if train_set == "imagenet1k" else train_set
        entry = PretrainedEntry(
            name=f"flextok_d{d_enc}_d{d_dec}.{short}", preset=preset, base="vae", quantized=True, train_set=train_set,
            filename=f"{preset}.model.safetensors", family="flextok", hf_repo=repo, hf_filename="model.safetensors",
            source=f"Hugging Face repo {repo} (file model.safetensors)", budgets="1,2,4,...,256",
            preprocess="resize-center-crop", licence="Apple Machine Learning Research Model licence (research only)",
            precision="official code: no evaluation; notebook bf16 autocast on GPU; alit-eval float32",
            notes=("decode options T 20, g 7.5, APG on (README) unless given; the official demo resizes bilinearly, "
                   "resize-center-crop is bicubic" + ("; README: for non-ImageNet images" if train_set == "dfn" else "")),
        )
        PRETRAINED.register(entry.name, entry)


_flextok()
