"""Adaptive tokenizers: the protocol (base.py), the ALIT re-implementation, base 2D tokenizers."""
