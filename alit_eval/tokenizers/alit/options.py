"""ALIT's inference options, declared once (stdlib only: ``--help`` reads them without torch).

``halting`` selects where ALIT's random draws come from (`alit_eval.tokenizers.alit.halting`):
``seeded`` is the family's default policy (one generator per image); ``official`` and
``official-reseeded`` are the official global-stream policies.
"""

from __future__ import annotations

from alit_eval.tokenizers.options import InferenceOption

HALTING_CHOICES = ("official", "official-reseeded", "seeded", "off")
GLOBAL_STREAM_POLICIES = ("official", "official-reseeded")

OPTIONS = (
    InferenceOption(
        "halting", "seeded",
        "2D-token halting between iterations: official (the official draws on the global RNG), "
        "official-reseeded, seeded (per-image generators, batch-independent), off",
        choices=HALTING_CHOICES, top_level=True, global_stream=GLOBAL_STREAM_POLICIES),
)
