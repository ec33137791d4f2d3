"""KARL's inference options, declared once (stdlib only: ``--help`` reads them without torch).

``epsilon`` conditions the model on a desired reconstruction error (L1 of images in [0, 1], so
0..1): it maps to the first of the 19 ε bins at or above it (karl_official.md §2.3), and every value
above the last bin (0.38) to the last bin; NaN, infinities and values outside 0..1 are refused.
``halting`` selects the learned slot halting and where the VAE noise comes from; ``official`` is
the official global-stream policy.
"""

from __future__ import annotations

from alit_eval.tokenizers.options import InferenceOption

HALTING_POLICIES = {
    "official": "learned halting applied in the decoder; VAE noise drawn image by image from the generator "
                "(or the global CPU RNG), as consecutive official batch-of-one calls draw it",
    "seeded": "learned halting applied; VAE noise from one generator per image (batch- and order-independent)",
    "off": "no slot halted: all T slots are decoded (VAE noise as 'official')",
}

OPTIONS = (
    InferenceOption(
        "epsilon", 0.0,
        "desired reconstruction error (L1) conditioning KARL, mapped to the first of its 19 bins at or above it "
        "(above 0.38: the last bin); 0 = the evaluate.py protocol (lowest bin 0.005); the adaptive mode uses "
        "0.03/0.05/0.09 with 256 slots",
        low=0.0, high=1.0),
    InferenceOption(
        "halting", "seeded",
        "official/seeded apply the learned slot halting (VAE noise from the global RNG / per image); off decodes "
        "all T slots",
        choices=tuple(HALTING_POLICIES), top_level=True, global_stream=("official",)),
)
