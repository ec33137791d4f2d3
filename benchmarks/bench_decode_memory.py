"""Peak memory of decoding a large 16-bit RGBA PNG through alit-eval's decode path (issue 17 item 4).

Writes constant 16-bit RGBA PNGs of 9400^2 and 4700^2 pixels into a temporary folder (streamed row
by row, so writing them costs a few MB; the 9400^2 file is ~700 KB), then decodes each in a fresh
subprocess with ``alit_eval.data.decode.load_image`` followed by the ``resize-center-crop``
preprocess to 256 px, and prints the child's peak resident memory (``ru_maxrss``) next to that of
a child that only imports the same modules.

The subprocess imports ``alit_eval`` from the current directory first, so running this file from
another checkout's root measures that checkout's code::

    python benchmarks/bench_decode_memory.py            # this checkout
    python benchmarks/bench_decode_memory.py 4700       # one size only

It needs several GB of free memory on code without the bounded decode path.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

_CHILD = r"""
import resource, sys, time
from alit_eval.data.decode import load_image
from alit_eval.data.transforms import preprocess
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if sys.argv[1] != "-":
    t = time.perf_counter()
    try:
        out = preprocess(load_image(sys.argv[1]), "resize-center-crop", 256)
        result = f"decoded to {tuple(out.shape)}"
    except Exception as err:
        result = f"refused: {' '.join(str(err).split())[:160]}"
    result += f" in {time.perf_counter() - t:.1f} s"
else:
    result = "imports only"
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"{peak / 2**20:.2f} {base / 2**20:.2f} {result}")
"""


def write_png16_rgba(path: Path, side: int, value: tuple[int, int, int, int] = (40000, 20000, 50000, 65535)) -> None:
    """A constant side x side 16-bit RGBA PNG, compressed row by row (bounded memory)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + struct.pack(">4H", *value) * side  # filter type 0, then RGBA samples big-endian
    comp = zlib.compressobj(9)
    parts = [comp.compress(row) for _ in range(side)]
    idat = b"".join(parts) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 16, 6, 0, 0, 0)  # bit depth 16, colour type 6 (RGBA)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def peak_rss(file: str) -> str:
    """Run the decode in a fresh interpreter from the current directory; its peak RSS line."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", _CHILD, file], capture_output=True, text=True, env=env,
                          cwd=os.getcwd(), timeout=1800)
    if proc.returncode != 0:
        return f"child failed (rc {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}"
    peak, base, result = proc.stdout.strip().split(" ", 2)
    return f"peak RSS {float(peak):6.2f} GiB (imports alone {float(base):.2f} GiB), {result}"


def main(argv: list[str]) -> None:
    sides = [int(a) for a in argv] or [4700, 9400]
    import alit_eval  # noqa: F401 - only to print which checkout is measured

    print(f"alit_eval from {Path(alit_eval.__file__).parent.parent.name}/ ; "
          f"ALIT_EVAL_MAX_DECODE_BYTES={os.environ.get('ALIT_EVAL_MAX_DECODE_BYTES', '(default)')}")
    print(f"{'imports only':>28}: {peak_rss('-')}")
    with tempfile.TemporaryDirectory() as tmp:
        for side in sides:
            path = Path(tmp) / f"rgba16_{side}.png"
            write_png16_rgba(path, side)
            label = f"{side}x{side} RGBA16 ({path.stat().st_size / 1024:.0f} KB)"
            print(f"{label:>28}: {peak_rss(str(path))}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
