"""One-D-Piece/TiTok's official evaluation way, reproduced step by step for bench_families.py.

The official ``eval_tokenizer.py`` (one_d_piece_official.md §3.1) is one whole run per prefix length
k (``--length k``), so this runs one fresh Python process per requested k, and each process does
all of it again:

1. imports; build the model and load the weights;
2. read every image (PIL) with the eval transform: ``Resize(256)`` bicubic antialias,
   ``CenterCrop(256)``, ``ToTensor``; batches of ``per_gpu_batch_size`` = 256;
3. ``model(images, length=k)`` = encode all N tokens + decode the k-token prefix; recon clamped and
   rounded to k/255;
4. the streaming evaluator: torch-fidelity's Inception (pool ``2048`` + ``logits_unbiased``) over
   the originals AND the reconstructions of the batch as uint8, float64 running sums of features
   and outer products, the Inception Score's logits, codebook usage of the first k indices;
5. at the end, covariances and scipy ``sqrtm`` for rFID, the Inception Score.

    python benchmarks/official_one_d_piece.py --child CKPT FOLDER K [--device cpu] [--heads H]  (one run)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BATCH = 256  # per_gpu_batch_size of the official yaml files

LEAVES_OUT = ("Accelerate's launch and bf16 autocast/TF32 (CPU float32 here); the WebDataset tar shards "
              "(JPEG decode; PNG files here) and the restore of an Accelerate training checkpoint (the "
              "weights file is loaded directly); the data-loader workers")


def child(ckpt: str, folder: str, k: int, device: str, heads: int | None) -> None:
    """One official evaluation run at prefix length k; prints ``rFID`` and ``IS``."""
    import numpy as np
    import torch
    from PIL import Image
    from scipy import linalg
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torchvision import transforms

    from alit_eval import load_tokenizer
    from alit_eval.metrics.inception_weights import resolve_inception_weights

    model = load_tokenizer(ckpt, device=device, offline=True, heads=heads)
    weights = resolve_inception_weights(None, offline=True)
    inception = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                            feature_extractor_weights_path=str(weights.path)).to(device).eval()
    tf = transforms.Compose([transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC,
                                               antialias=True), transforms.CenterCrop(256), transforms.ToTensor()])
    files = sorted(Path(folder).glob("*.png"))
    sums = {name: [0, np.zeros(2048), np.zeros((2048, 2048))] for name in ("real", "rec")}
    logits, used = [], set()
    with torch.no_grad():
        for i in range(0, len(files), BATCH):
            x = torch.stack([tf(Image.open(f).convert("RGB")) for f in files[i:i + BATCH]]).to(device)
            r = model.rollout(x, [k])[k]
            rec = torch.round(r.extras["reconstruction_raw"].clamp(0, 1) * 255) / 255
            used.update(r.indices[:, :k].flatten().tolist())
            for name, img in (("real", x.clamp(0, 1)), ("rec", rec)):
                feats, logit = inception((img * 255).to(torch.uint8))
                f = feats.double().cpu().numpy()
                s = sums[name]
                s[0] += len(f)
                s[1] += f.sum(0)
                s[2] += f.T @ f
                if name == "rec":
                    logits.append(logit.double().cpu())
    stats = []
    for n, s1, s2 in sums.values():
        mu = s1 / n
        stats.append((mu, (s2 - n * np.outer(mu, mu)) / max(n - 1, 1)))
    (mu1, c1), (mu2, c2) = stats
    covmean = linalg.sqrtm(c1.dot(c2), disp=False)[0].real
    fid = float(((mu1 - mu2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * np.trace(covmean))
    p = torch.cat(logits).softmax(1)
    kl = (p * (p.log() - p.mean(0, keepdim=True).log())).sum(1).mean()
    print(f"rFID: {fid}  IS: {float(kl.exp())}  codebook usage: {len(used) / 4096}")


def official_way(ckpt: Path, paths: list[Path], budgets: list[int], work: Path, device: str,
                 heads: int | None = None) -> dict[str, float]:
    """One fresh evaluation process per prefix length; seconds: ``total`` and ``per_run``."""
    del work
    extra = ["--heads", str(heads)] if heads else []
    t0 = time.perf_counter()
    for k in budgets:
        out = subprocess.run([sys.executable, __file__, "--child", str(ckpt), str(paths[0].parent), str(k),
                              "--device", device, *extra], check=True, capture_output=True, text=True).stdout
        assert "rFID:" in out, out
    total = time.perf_counter() - t0
    return {"total": total, "per_run": total / len(budgets)}


def describe(t: dict[str, float], budgets: list[int]) -> str:
    return f"{len(budgets)} evaluation processes, one per prefix length, {t['per_run']:.1f} s each"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs=3, metavar=("CKPT", "FOLDER", "K"), required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--heads", type=int, default=None, help="attention heads, when the weights file does not say")
    a = ap.parse_args()
    sys.exit(child(a.child[0], a.child[1], int(a.child[2]), a.device, a.heads))
