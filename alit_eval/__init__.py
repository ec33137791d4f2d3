"""alit-eval: analysis and evaluation toolkit for adaptive-length image tokenizers.

Kept import-light on purpose: `alit-eval --help` must not import torch.
"""

__version__ = "0.1.0"
