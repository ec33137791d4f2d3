"""Named pretrained checkpoints: the official ALIT, KARL, One-D-Piece, TiTok and FlexTok releases and the demo.

One table (`PRETRAINED`, the timm ``PretrainedCfg`` / open_clip ``pretrained.py`` pattern) says
per name which tokenizer family it is, what the file is, where it comes from, its sha256 and its
default inference options, preprocess and budgets. `resolve_checkpoint` turns a name or path into a
local file: an existing local path > the cache (``<cache>/checkpoints/<train_set>/<filename>``) >
download (Dropbox URLs streamed to a temp file, hashed while reading, renamed when complete;
Hugging Face files through ``huggingface_hub.hf_hub_download`` into a staging folder, then hashed
and moved into the same cache layout). Offline, its error names the file, the exact path to put it
at and where to fetch it. Stdlib only at import time (``alit-eval models`` lists this table).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import secrets
import shutil
import urllib.request
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Mapping

from alit_eval.version import __version__
from alit_eval.errors import CheckpointError, OfflineError
from alit_eval.paths import cache_dir as default_cache_dir
from alit_eval.paths import checkpoints_dir, env_offline, sha256_file
from alit_eval.registry import Registry

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"

# The release table below was read from the official README "Pretrained Checkpoints" (commit
# 033a0c9, which added the ImageNet-1K link) and adaptive_tokenizers/pretrained_models/download.py.
_OFFICIAL_SOURCE = (
    "github.com/ShivamDuggal4/adaptive-length-tokenizer (README 'Pretrained Checkpoints' / "
    "adaptive_tokenizers/pretrained_models/download.py)"
)
_OFFICIAL_LICENCE = "no licence stated in the official README; weights by the ALIT authors"

_CHUNK = 1 << 20
_TIMEOUT_S = 60


class ChecksumWarning(UserWarning):
    """A file whose sha256 was recorded earlier now hashes differently."""


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


@dataclass(frozen=True)
class LocalStatus:
    """Whether an entry's file is present locally, for ``alit-eval models``."""

    state: str  # "bundled", "not yet bundled", "cached" or "not cached"
    path: Path  # where the file is, or where it would be put
    sha256: str | None  # the known digest, or the one recorded at first use


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


def sidecar_path(path: Path) -> Path:
    """The ``<file>.sha256`` file that records a checkpoint's digest (``sha256sum`` format)."""
    return path.with_name(path.name + ".sha256")


def _read_sidecar(path: Path) -> str | None:
    """The digest a sidecar *claims* (unverified: for display only, never as the file's identity)."""
    return _read_sidecar_record(path)[0]


def _read_sidecar_record(path: Path) -> tuple[str | None, int | None, int | None]:
    """(digest, size, mtime_ns) recorded in the sidecar; size/mtime are None in sidecars without them."""
    try:
        lines = sidecar_path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None, None, None
    first = lines[0].split() if lines else []
    digest = first[0].lower() if first else None
    if digest is not None and (len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest)):
        return None, None, None
    fields = dict(f.split("=", 1) for line in lines[1:] if line.startswith("#") for f in line[1:].split() if "=" in f)
    try:
        return digest, int(fields["size"]), int(fields["mtime_ns"])
    except (KeyError, ValueError):
        return digest, None, None


def _write_sidecar(path: Path, digest: str) -> None:
    """Record `digest` with the file's size and mtime_ns; the ``#`` line is ignored by ``sha256sum -c``."""
    st = path.stat()
    side = sidecar_path(path)
    tmp = side.with_name(f".{side.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(f"{digest}  {path.name}\n# size={st.st_size} mtime_ns={st.st_mtime_ns}\n")
        os.replace(tmp, side)
    except OSError:  # a read-only folder: the digest is simply recomputed next time
        tmp.unlink(missing_ok=True)


def _verified_sidecar(path: Path) -> str | None:
    """The recorded digest if it still describes `path` (same size and mtime_ns as recorded), else None.

    A sidecar is a claim, not an identity: one without size/mtime (older format, or hand-written),
    or whose file changed since, is never trusted; the caller re-hashes the file.
    """
    digest, size, mtime_ns = _read_sidecar_record(path)
    if digest is None or size is None:
        return None
    st = path.stat()
    return digest if (st.st_size, st.st_mtime_ns) == (size, mtime_ns) else None


def checkpoint_sha256(path: str | Path) -> str:
    """Lowercase hex sha256 of a checkpoint file (for ``meta.json`` and the run id).

    A sidecar's digest is reused only while the file keeps the size and mtime_ns recorded with it;
    otherwise the file is hashed again (a swapped file with an old digest beside it gets its true hash).
    """
    path = Path(path)
    return _verified_sidecar(path) or sha256_file(path)


def local_status(entry: PretrainedEntry, cache_dir: Path | None = None) -> LocalStatus:
    """Say whether `entry`'s file is present locally, without hashing or downloading anything."""
    if entry.bundled:
        path = entry.cache_path()
        state = "bundled" if path.is_file() else "not yet bundled"
        return LocalStatus(state, path, entry.sha256 or (_read_sidecar(path) if path.is_file() else None))
    found = _find_cached(entry, cache_dir)
    if found is None:
        return LocalStatus("not cached", entry.cache_path(cache_dir), entry.sha256)
    return LocalStatus("cached", found, entry.sha256 or _read_sidecar(found))


def _find_cached(entry: PretrainedEntry, cache_dir: Path | None) -> Path | None:
    folder = entry.cache_path(cache_dir).parent
    for name in (entry.filename, *entry.alt_filenames):
        if (folder / name).is_file():
            return folder / name
    return None


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or text.endswith((".pth", ".pt", ".ckpt", ".safetensors", ".bin"))


def _entry_for(name: str) -> PretrainedEntry:
    """Look up a pretrained name, with errors that help for near-misses and official file names."""
    if name in PRETRAINED:
        return PRETRAINED.get(name)
    entries = [entry for _, entry in PRETRAINED.items()]
    owners = [e.name for e in entries if Path(name).name in (e.filename, e.remote_filename, *e.alt_filenames)]
    if owners:
        raise CheckpointError(
            f"file not found: {name}; it is the official file of {' or '.join(owners)}: pass that "
            "name to use the cache (or download), or the path of your copy"
        )
    if _looks_like_path(name):
        raise CheckpointError(
            f"checkpoint file not found: {name} (and it is not a pretrained name; see `alit-eval models`)"
        )
    if name.startswith("alit_tiny"):
        raise CheckpointError(
            f"alit_tiny was never released by the ALIT authors; pick one of {', '.join(PRETRAINED.names())}"
        )
    # Names are long, so difflib misses partial ones like "alit_small": suggest containing names.
    partial = [e.name for e in entries if name and name in e.name]
    if partial:
        raise CheckpointError(
            f"unknown pretrained checkpoint {name!r}. Did you mean {', '.join(map(repr, partial))}?"
        )
    return PRETRAINED.get(name)


def _local_file(text: str) -> Path | None:
    """The checkpoint file `text` names on this machine (a file, or a Hugging Face model folder), else None."""
    local = Path(text).expanduser()
    if local.is_file():
        return local
    if local.is_dir() and text not in PRETRAINED:
        # A Hugging Face model folder (FlexTok's hub layout: config.json + model.safetensors).
        if (local / "model.safetensors").is_file():
            return local / "model.safetensors"
        raise CheckpointError(f"{text} is a folder; pass the checkpoint file inside it")
    return None


def _bundled_path(entry: PretrainedEntry) -> Path:
    """The file of a checkpoint shipped in alit_eval/assets; refuses one not bundled yet."""
    path = entry.cache_path()
    if not path.is_file():
        raise CheckpointError(
            f"the {entry.name} tokenizer is not bundled in this installation yet "
            f"(expected {entry.bundled} in alit_eval/assets); pass another checkpoint"
        )
    return path


def resolve_checkpoint(
    name_or_path: str | Path | PretrainedEntry,
    *,
    offline: bool = False,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> Path:
    """Return a local checkpoint file for a path, a pretrained name or a `PretrainedEntry`.

    Order: an existing local file > the cache > download (skipped when offline). Cached files are
    checked against the known sha256, or against the digest recorded at first download.

    Args:
        name_or_path: a file path, a name from `PRETRAINED` (see ``alit-eval models``), or an entry.
        offline: never use the network (also set by ``ALIT_EVAL_OFFLINE=1``/``HF_HUB_OFFLINE=1``).
        cache_dir: cache root; default ``$ALIT_EVAL_CACHE`` or ``~/.cache/alit-eval``.
        progress: show a progress bar on stderr while downloading.

    Returns:
        Path of the checkpoint file.

    Raises:
        CheckpointError: unknown name, missing file, unbundled demo, or sha256 mismatch.
        OfflineError: the file must be downloaded but the network is disabled, unavailable, or
            the toolkit has no URL for it. The message names the file, the cache path and the source.
    """
    if isinstance(name_or_path, PretrainedEntry):
        entry = name_or_path
    else:
        local = _local_file(str(name_or_path))
        if local is not None:
            return local
        entry = _entry_for(str(name_or_path))
    if entry.bundled:
        return _bundled_path(entry)

    root = cache_dir if cache_dir is not None else default_cache_dir()
    found = _find_cached(entry, root)
    if found is not None:
        _verify_cached(found, entry)
        return found

    dest = entry.cache_path(root)
    if offline or env_offline():
        raise _missing(entry, dest, "alit-eval is offline (--offline, ALIT_EVAL_OFFLINE or HF_HUB_OFFLINE)")
    if entry.hf_repo is not None:
        _download_hf(entry, dest)
        return dest
    if entry.url is None:
        raise _missing(entry, dest, "alit-eval has no direct download URL for it")
    _download(entry, dest, progress=progress)
    return dest


def _missing(entry: PretrainedEntry, dest: Path, why: str) -> OfflineError:
    where = entry.url or entry.source
    return OfflineError(
        f"{entry.name} is not in the cache and {why}: download {entry.remote_filename} from {where} "
        f"and put it at {dest}"
    )


def _verify_cached(path: Path, entry: PretrainedEntry) -> None:
    """Check a cached file's digest, hashing unless its sidecar matches the file's size and mtime."""
    recorded = _read_sidecar(path)
    verified = _verified_sidecar(path)
    if verified is not None and (entry.sha256 is None or verified == entry.sha256.lower()):
        return
    digest = sha256_file(path)
    if entry.sha256 and digest != entry.sha256.lower():
        raise CheckpointError(
            f"{path} has sha256 {digest[:16]}..., expected {entry.sha256[:16]}... for {entry.name}; "
            "delete it to download it again, or pass the file by path to use it as it is"
        )
    if entry.sha256 is None and recorded and digest != recorded:
        warnings.warn(f"{path} changed since its sha256 was recorded ({recorded[:16]}... -> "
                      f"{digest[:16]}...); results will record the new digest", ChecksumWarning, stacklevel=3)
    _write_sidecar(path, digest)


def _download(entry: PretrainedEntry, dest: Path, *, progress: bool) -> None:
    """Stream `entry.url` to `dest` atomically, verifying or recording its sha256."""
    assert entry.url is not None
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkstemp: its 0600 mode would stick to the cached file; 0666 lets the umask decide.
    tmp = dest.parent / f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.part"
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                received, total, digest = _fetch(entry.url, out, entry.filename, progress)
            except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError is an OSError
                reason = getattr(exc, "reason", None) or exc
                raise _missing(entry, dest, f"the download failed ({type(exc).__name__}: {reason})") from exc
        if total is not None and received != total:
            raise _missing(entry, dest, f"the download was cut short ({received} of {total} bytes)")
        _accept_download(entry, tmp, dest, digest, entry.filename, "the file behind the URL")
    finally:
        tmp.unlink(missing_ok=True)


def _accept_download(entry: PretrainedEntry, got: Path, dest: Path, digest: str, label: str, origin: str) -> None:
    """Check a finished download against the known sha256 (else discard it), warn when it differs from
    the digest recorded before, then move it into the cache with its sidecar (both download paths)."""
    if entry.sha256 and digest != entry.sha256.lower():
        raise CheckpointError(
            f"downloaded {label} has sha256 {digest[:16]}..., expected "
            f"{entry.sha256[:16]}...; the file was discarded (rerun, or fetch it from {entry.source})"
        )
    previous = _read_sidecar(dest)
    if entry.sha256 is None and previous and previous != digest:
        warnings.warn(f"{label} downloaded with sha256 {digest[:16]}..., but {previous[:16]}... "
                      f"was recorded before; {origin} changed", ChecksumWarning, stacklevel=4)
    os.replace(got, dest)
    _write_sidecar(dest, digest)


def _download_hf(entry: PretrainedEntry, dest: Path) -> None:
    """Fetch a Hugging Face file with ``huggingface_hub`` into a staging folder, then hash it and move
    it to `dest` (the same cache layout, sha256 check and sidecar as `_download`)."""
    import huggingface_hub

    assert entry.hf_repo is not None
    dest.parent.mkdir(parents=True, exist_ok=True)
    # A private staging folder next to the cache file: the rename stays on one file system, and
    # huggingface_hub's own metadata (written inside local_dir) is removed with it.
    staging = dest.parent / f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.hf"
    try:
        try:
            got = Path(huggingface_hub.hf_hub_download(
                repo_id=entry.hf_repo, filename=entry.remote_filename, revision=entry.hf_revision,
                local_dir=staging,
            ))
        except Exception as exc:  # HTTP, connection and offline errors differ across huggingface_hub versions
            first = (str(exc).strip().splitlines() or [""])[0][:160]
            raise _missing(entry, dest, f"the download failed ({type(exc).__name__}: {first})") from exc
        _accept_download(entry, got, dest, sha256_file(got), entry.remote_filename, "the file in the repo")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _fetch(url: str, out: BinaryIO, label: str, progress: bool) -> tuple[int, int | None, str]:
    """Copy the body at `url` into `out`; return (bytes received, Content-Length or None, sha256)."""
    request = urllib.request.Request(url, headers={"User-Agent": f"alit-eval/{__version__}"})
    digest, received = hashlib.sha256(), 0
    with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with _progress(f"downloading {label}", total, enabled=progress) as advance:
            while chunk := response.read(_CHUNK):
                # A share link that stopped working answers with an HTML page, not the file.
                if received == 0 and chunk.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
                    raise ValueError("the server sent a web page instead of the file")
                digest.update(chunk)
                out.write(chunk)
                received += len(chunk)
                advance(received)
    return received, total, digest.hexdigest()


@contextmanager
def _progress(description: str, total: int | None, *, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A rich download bar on stderr; yields ``advance(bytes_done)``."""
    if not enabled:
        yield lambda done: None
        return
    from rich import progress as rp
    from rich.console import Console

    columns = (rp.BarColumn(), rp.DownloadColumn(), rp.TransferSpeedColumn(), rp.TimeRemainingColumn())
    with rp.Progress("{task.description}", *columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.update(task, completed=done)


def load_pretrained(
    name_or_path: str | Path,
    *,
    offline: bool = False,
    trust_checkpoint: bool = False,
    heads: int | None = None,
    device: str = "cpu",
    family: str | None = None,
    **options: Any,
) -> tuple[Any, dict[str, Any]]:
    """Resolve and load a tokenizer of any family; return it with provenance for meta.json.

    The family comes from `family` (``--family``), else from the file's keys (the family registry).
    Inference options (`options`, by their declared names: ``halting=``, ``epsilon=``) default to the
    entry's for named checkpoints, then to the family's declared defaults; an option the family does
    not have (``halting`` for One-D-Piece) or a value its declaration refuses is a one-line error.

    Returns:
        ``(tokenizer, info)``; info holds name, path, sha256, family, config, the inference options
        used (``options``; the top-level ones, e.g. ``halting``, also as keys, None for families
        without them), default preprocess and budgets.
    """
    from alit_eval.paths import portable
    from alit_eval.tokenizers.family_loading import load_any
    from alit_eval.tokenizers.family_options import top_level_names
    from alit_eval.tokenizers.family_queries import family_of

    path = resolve_checkpoint(name_or_path, offline=offline)
    text = None if isinstance(name_or_path, Path) else str(name_or_path)
    entry = PRETRAINED.get(text) if text is not None and text in PRETRAINED else None
    options = dict(options)
    if entry is not None and (family is None or family == entry.family):
        for key, value in entry.options.items():
            if options.get(key) is None and value is not None:
                options[key] = value
    model = load_any(path, family=family, heads=heads, trust_checkpoint=trust_checkpoint,
                     name=entry.name if entry else path.stem, device=device, **options)
    fam = family_of(model)
    defaults = {**fam.option_defaults(), **{k: v for k, v in options.items() if v is not None}}
    used = {o: getattr(model, o, defaults.get(o)) for o in fam.option_names()}
    info = {"name": model.name, "path": portable(path), "sha256": checkpoint_sha256(path), "family": fam.name,
            "describe": fam.describe_config(model.cfg), "config": model.cfg.to_dict(),
            **{name: used.get(name) for name in top_level_names()}, "options": used,
            "default_preprocess": entry.preprocess if entry else None,
            "default_budgets": entry.budgets if entry else None,
            "notes": "; ".join(filter(None, (entry.precision, entry.notes))) if entry else fam.notes()}
    return model, info
