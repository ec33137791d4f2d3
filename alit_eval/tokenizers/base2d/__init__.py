"""The frozen 2D tokenizers ALIT builds on: MaskGIT-style VQGAN (vqgan.py) and KL-16 VAE (klvae.py)."""
