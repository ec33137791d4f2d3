"""Metrics: per-image pixel metrics, Inception features and FID/KID, LPIPS; their specs.

Submodules import torch, so import them directly (``from alit_eval.metrics.pixel import ...``);
this package file stays import-light so the CLI can list metric names from `specs` cheaply.
"""
