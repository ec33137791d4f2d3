"""KARL (Single-pass Adaptive Image Tokenization, arXiv 2507.07995): config, model, checkpoints, family."""
