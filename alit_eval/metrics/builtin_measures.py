"""The built-in measures: pixel metrics, LPIPS and Inception features (rFID, KID).

Registered in `alit_eval.metrics.measures` (the measure contract is described there). Their metric
specs are the ones `alit_eval.metrics.specs` declares; their switches are the sweep options already
recorded in ``config.json`` (``fid``, ``fid_resize``, ``inception_weights``, ``lpips_weights``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alit_eval.metrics.measures import Measure, Meter, SetView, feature_keys, register_measure
from alit_eval.metrics.specs import METRICS
from alit_eval.paths import portable

log = logging.getLogger(__name__)

FEATURE_CHUNK = 64  # images per Inception call: bounds memory whatever the batch size


class _PixelMeter(Meter):
    def per_image(self, rec_u8: Any, ref_u8: Any, *, raw: Any = None, x: Any = None) -> dict[str, Any]:
        from alit_eval.metrics.pixel import pixel_metrics

        values = dict(pixel_metrics(rec_u8, ref_u8))
        if raw is not None and x is not None:  # the official encode() criterion's error, before rounding
            values["l1_raw"] = (raw.float() - x).abs().flatten(1).mean(1)
        return values


@dataclass
class PixelMeasure(Measure):
    """L1, MSE, PSNR, SSIM of the uint8 images, and L1 of the raw float reconstruction."""

    def open(self, cfg: Any, device: Any) -> tuple[Meter | None, Any]:
        return _PixelMeter(), None


class _LpipsMeter(Meter):
    def __init__(self, net: Any) -> None:
        self.net = net

    def per_image(self, rec_u8: Any, ref_u8: Any, *, raw: Any = None, x: Any = None) -> dict[str, Any]:
        return {"lpips": self.net(rec_u8, ref_u8)}


@dataclass
class LpipsMeasure(Measure):
    """LPIPS (AlexNet) when its backbone weights are here; otherwise the reason is recorded."""

    def open(self, cfg: Any, device: Any) -> tuple[Meter | None, Any]:
        from alit_eval.metrics.perceptual import load_lpips

        net, reason = load_lpips(cfg.lpips_weights, device=device, offline=cfg.offline)
        if reason:
            # Not a warning: most commands never show LPIPS. Commands whose tables would hold it say so
            # (fid), and --lpips-weights or --criterion lpips fail loudly when it is missing.
            log.info("%s", reason)
        # The reason names where the weights were looked for; record it without the home folder.
        return (_LpipsMeter(net) if net is not None else None), (reason or "computed").replace(str(Path.home()), "~")


class _InceptionMeter(Meter):
    def __init__(self, inception: Any) -> None:
        self.inception = inception

    @property
    def net(self) -> Any:
        """The network, for the engine's device-speed choices (channels-last, compile)."""
        return self.inception.net

    @net.setter
    def net(self, value: Any) -> None:
        self.inception.net = value

    def features(self, images_u8: Any) -> Any:
        import numpy as np
        import torch

        chunks = [self.inception(images_u8[i : i + FEATURE_CHUNK]).cpu() for i in range(0, len(images_u8), FEATURE_CHUNK)]
        return torch.cat(chunks).numpy().astype(np.float32)


@dataclass
class InceptionMeasure(Measure):
    """Inception pool features of the originals and every budget; rFID (and KID) per budget."""

    def enabled(self, cfg: Any) -> bool:
        return bool(cfg.fid)

    def open(self, cfg: Any, device: Any) -> tuple[Meter | None, Any]:
        from alit_eval.metrics.inception import InceptionFeatures

        inception = InceptionFeatures(cfg.inception_weights, cfg.fid_resize, device, offline=cfg.offline)
        w = inception.weights
        return _InceptionMeter(inception), {"path": portable(w.path), "source": w.source, "sha256": w.sha256,
                                            "resize": cfg.fid_resize}

    def set_rows(self, view: SetView) -> list[dict[str, Any]]:
        """rFID per budget against the originals (or ``fid_ref``) and, with ``kid``, KID."""
        import numpy as np

        from alit_eval.metrics.feature_distance import FrechetReference
        from alit_eval.metrics.kid import kernel_inception_distance

        if not view.options.get("fid", True):
            return []
        result, fid_ref = view.result, view.options.get("fid_ref")
        stats = view.accumulate(result.store, feature_keys(result.budgets, "feat"))
        # prepared once for all budgets
        if fid_ref is None:
            reference, ref_kind = FrechetReference.of(stats["feat_ref"]), "originals"
        else:
            reference, ref_kind = FrechetReference(fid_ref.mu, fid_ref.sigma), "npz"
        cond = {"reference": ref_kind, "resize": (result.info.get("inception") or {}).get("resize", "tf1")}
        rows = []
        for b in result.budgets:
            s = stats[f"feat_{b}"]
            rows.append({"budget": b, "metric": "rfid", "value": reference.distance_to(s),
                         "n": int(s.n), "ci_low": None, "ci_high": None, "condition": cond})
        if view.options.get("kid"):
            ref = result.store.concat("feat_ref")
            for b in result.budgets:
                mean, std = kernel_inception_distance(result.store.concat(f"feat_{b}"), ref,
                                                      generator=np.random.default_rng(view.seed))
                rows.append({"budget": b, "metric": "kid", "value": mean, "n": int(len(ref)),
                             "ci_low": mean - 1.96 * std, "ci_high": mean + 1.96 * std, "condition": cond})
        return rows


PIXEL = register_measure(PixelMeasure(
    "pixel", specs=tuple(METRICS.get(n) for n in ("l1", "mse", "psnr", "ssim", "l1_raw")),
    columns=("l1", "mse", "psnr", "ssim", "l1_raw"), builtin=True))
LPIPS = register_measure(LpipsMeasure("lpips", specs=(METRICS.get("lpips"),), columns=("lpips",), builtin=True,
                                      info_key="lpips"))
INCEPTION = register_measure(InceptionMeasure("inception", specs=(METRICS.get("fid"), METRICS.get("kid")),
                                              feature_key="feat", builtin=True, info_key="inception"))
