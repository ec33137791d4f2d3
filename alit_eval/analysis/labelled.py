"""``LABEL=VALUE`` option values (``--ckpt small=alit_s.pt``, ``--data cats=/data/cats``), read one way.

Used by the commands that take several tokenizers or datasets (`compare`, `familiarity`).
"""

from __future__ import annotations


def split_labelled(text: str) -> tuple[str | None, str]:
    """``"label=value"`` as ``(label, value)``; ``(None, text)`` when there is no label.

    A value that merely contains "=" (a path such as ``runs/a=b``) is kept whole: the part before
    "=" counts as a label only when it has no slash.
    """
    name, sep, value = text.partition("=")
    if sep and name and "/" not in name and "\\" not in name:
        return name.strip(), value.strip()
    return None, text.strip()
