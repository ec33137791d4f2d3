"""Budget-selection rules that a family's official code defines, usable on any family's per-budget errors.

`official_decision` is the token selection criterion of the official ALIT ``encode()`` (first budget
whose L1 is below the threshold, else the lowest L1); analyses import it from here, so they name no
family module.
"""

from __future__ import annotations

from alit_eval.tokenizers.alit.selection import official_decision

__all__ = ["official_decision"]
