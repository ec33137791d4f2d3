"""Named pretrained checkpoints: the official ALIT releases and the bundled demo tokenizer.

One table (`PRETRAINED`, the timm ``PretrainedCfg`` / open_clip ``pretrained.py`` pattern) says
per name what the file is, where it comes from, its sha256 and its default halting and preprocess.
`resolve_checkpoint` turns a name or path into a local file: an existing local path > the cache
(``<cache>/checkpoints/<train_set>/<filename>``) > download (streamed to a temp file, hashed while
reading, renamed when complete). Offline, its error names the file, the exact path to put it at
and where to fetch it. Stdlib only at import time (``alit-eval models`` lists this table).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import secrets
import urllib.request
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from alit_eval import __version__
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
        halting: default halting policy (``official``, ``seeded``, ``off``).
        preprocess: default preprocess mode (``center-crop``, ``resize-center-crop``).
        licence: licence of the weights, as far as known.
        notes: anything a user should know (which figures used it, quirks).
        bundled: file name under ``alit_eval/assets`` for checkpoints shipped with the package.
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
    halting: str = "seeded"
    preprocess: str = "center-crop"
    licence: str = _OFFICIAL_LICENCE
    notes: str = ""
    bundled: str | None = None

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
    # seeded: batch-independent halting, so demo numbers do not depend on --batch-size.
    halting="seeded", preprocess="resize-center-crop",
    licence="Apache-2.0 (as alit-eval)", notes="tiny CPU-friendly tokenizer for the demo run",
    bundled="demo_tokenizer.safetensors",
    # sha256 of the bundled file (tests/test_cli_ux.py checks it against the file).
    sha256="8673150eb8a4b10f2e42a7374b97949aeff4b437f74247f539d41b04d159c8f6",
))


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
    owners = [e.name for e in entries if Path(name).name in (e.filename, *e.alt_filenames)]
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
        text = str(name_or_path)
        local = Path(text).expanduser()
        if local.is_file():
            return local
        if local.is_dir() and text not in PRETRAINED:
            raise CheckpointError(f"{text} is a folder; pass the checkpoint file inside it")
        entry = _entry_for(text)

    if entry.bundled:
        path = entry.cache_path()
        if not path.is_file():
            raise CheckpointError(
                f"the {entry.name} tokenizer is not bundled in this installation yet "
                f"(expected {entry.bundled} in alit_eval/assets); pass another checkpoint"
            )
        return path

    root = cache_dir if cache_dir is not None else default_cache_dir()
    found = _find_cached(entry, root)
    if found is not None:
        _verify_cached(found, entry)
        return found

    dest = entry.cache_path(root)
    if offline or env_offline():
        raise _missing(entry, dest, "alit-eval is offline (--offline, ALIT_EVAL_OFFLINE or HF_HUB_OFFLINE)")
    if entry.url is None:
        raise _missing(entry, dest, "alit-eval has no direct download URL for it")
    _download(entry, dest, progress=progress)
    return dest


def _missing(entry: PretrainedEntry, dest: Path, why: str) -> OfflineError:
    where = entry.url or entry.source
    return OfflineError(
        f"{entry.name} is not in the cache and {why}: download {entry.filename} from {where} "
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
        if entry.sha256 and digest != entry.sha256.lower():
            raise CheckpointError(
                f"downloaded {entry.filename} has sha256 {digest[:16]}..., expected "
                f"{entry.sha256[:16]}...; the file was discarded (rerun, or fetch it from {entry.source})"
            )
        previous = _read_sidecar(dest)
        if entry.sha256 is None and previous and previous != digest:
            warnings.warn(f"{entry.filename} downloaded with sha256 {digest[:16]}..., but {previous[:16]}... "
                          "was recorded before; the file behind the URL changed", ChecksumWarning, stacklevel=3)
        os.replace(tmp, dest)
        _write_sidecar(dest, digest)
    finally:
        tmp.unlink(missing_ok=True)


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
    halting: str | None = None,
    device: str = "cpu",
) -> tuple[Any, dict[str, Any]]:
    """Resolve and load a tokenizer; return it with provenance for meta.json.

    The halting policy defaults to the entry's (`PretrainedEntry.halting`) for named checkpoints and
    to ``seeded`` (batch-independent) for local files.
    """
    from alit_eval.paths import portable
    from alit_eval.tokenizers.checkpoints import load_tokenizer

    path = resolve_checkpoint(name_or_path, offline=offline)
    entry = (PRETRAINED.get(str(name_or_path)) if str(name_or_path) in PRETRAINED else None) if not isinstance(name_or_path, Path) else None
    policy = halting or (entry.halting if entry else "seeded")
    model = load_tokenizer(path, trust_checkpoint=trust_checkpoint, heads=heads, halting=policy,
                           name=entry.name if entry else path.stem, device=device)
    info = {"name": model.name, "path": portable(path), "sha256": checkpoint_sha256(path),
            "config": model.cfg.to_dict(), "halting": policy,
            "default_preprocess": entry.preprocess if entry else None}
    return model, info
