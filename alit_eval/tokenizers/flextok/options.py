"""FlexTok's inference options, declared once (stdlib only: ``--help`` reads them without torch).

The decode options change every number of a generative decoder and are part of the run identity;
their defaults are the official README's (T = 20, g = 7.5, APG on). ``noise`` selects where the
random draws come from: ``seeded`` (the family's default policy: one generator per image, so numbers
do not depend on batch size, order or resume) or ``official`` (the official code's global-RNG stream,
seeded once per run; batch-size dependent, as the official code is).
"""

from __future__ import annotations

from alit_eval.tokenizers.options import InferenceOption

MAX_STEPS = 1000
MAX_GUIDANCE = 100.0

OPTIONS = (
    InferenceOption("steps", 20, "flow (Euler) steps T of the rectified-flow decoder; official README 20",
                    kind="int", low=1, high=MAX_STEPS),
    InferenceOption("guidance", 7.5, "classifier-free guidance scale g (1 = no guidance, no unconditional "
                    "pass); official README 7.5", kind="float", low=0.0, high=MAX_GUIDANCE),
    InferenceOption("apg", True, "norm guidance (APG: momentum -0.5, norm threshold 2.5, eta 0) on/off; "
                    "official README on", kind="bool"),
    InferenceOption("noise", "seeded", "decoder noise: seeded (one generator per image, batch-independent) "
                    "or official (the official global-RNG stream, list order)", choices=("seeded", "official"),
                    global_stream=("official",)),
)
