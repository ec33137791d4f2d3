"""Training code for the small demo ALIT tokenizer bundled in `alit_eval/assets` (see MODEL_CARD.md)."""
