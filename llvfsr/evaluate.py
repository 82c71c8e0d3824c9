"""Test-set evaluation of a trained model: per-image metrics CSV, their means, and a sample image grid.

Per-image values are kept (not only means) so that analysis can compute confidence intervals and paired tests.
On the synthetic faces, PSNR is also reported over the eye region and the face region, from the generator's exact
label maps: that is where the text priors (eye colour, glasses) can help.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.utils import save_image

from llvfsr.config import ExperimentConfig, TrainConfig
from llvfsr.data.degrade import make_lr
from llvfsr.data.splits import open_split
from llvfsr.heatmaps import landmark_error
from llvfsr.metrics import Evaluator
from llvfsr.trial_data import SplitData

log = logging.getLogger(__name__)


def region_psnr(sr: Tensor, hr: Tensor, region: Tensor) -> np.ndarray:
    """PSNR (dB) over the pixels where `region` (bool [B,H,W]) is True, on 8-bit RGB; NaN where it is empty."""
    sr8, hr8 = (sr.clamp(0, 1) * 255).round(), (hr * 255).round()
    err = (sr8 - hr8).pow(2).sum(1)  # [B, H, W]
    area = region.sum((1, 2)).float() * 3
    mse = (err * region).sum((1, 2)) / area.clamp_min(1)
    psnr = 10 * torch.log10(255.0**2 / mse.clamp_min(1e-10))
    return torch.where(area > 0, psnr, torch.nan).cpu().numpy().astype(np.float64)


def synthetic_regions(dataset, count: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Eye-region and face-region masks of the first `count` faces of a synthetic split (exact, from the
    generator), or None without one."""
    if dataset is None:
        return None
    from llvfsr.data.synthetic import eye_region_mask, face_region_mask

    masks = [dataset.exact_priors(i).mask for i in range(count)]
    return np.stack([eye_region_mask(m) for m in masks]), np.stack([face_region_mask(m) for m in masks])


def save_sr_faces(lr: Tensor, sr: Tensor, hr: Tensor, ids: list[str], folder: Path) -> None:
    """Write each face as ``<id>.png`` (SR), ``<id>_lr.png`` and ``<id>_hr.png`` (uint8 PNG, no resizing).

    The visual comparisons (``python -m analysis.figures compare``) put the same faces of every run of a sweep
    side by side; the first test ids are the same in every run of a dataset, so each run saves its own SR of them.
    """
    from PIL import Image

    from llvfsr.data.degrade import to_uint8

    folder.mkdir(parents=True, exist_ok=True)
    for suffix, images in (("", sr), ("_lr", lr), ("_hr", hr)):
        pixels = to_uint8(images.float().clamp(0, 1), channels_last=True).cpu().numpy()
        for face_id, image in zip(ids, pixels, strict=True):
            Image.fromarray(image).save(folder / f"{face_id}{suffix}.png")


def synthetic_attribute_reader(dataset, count: int):
    """The text-only attribute reader of the first `count` faces of a synthetic split (`synthetic_attributes`), or
    None without one."""
    if dataset is None:
        return None
    from llvfsr.data.synthetic_attributes import AttributeReader

    return AttributeReader(dataset.family_seed, list(range(count)), dataset.hr_size, dataset.zoom, dataset.iris)


def save_samples(lr: Tensor, sr: Tensor, hr: Tensor, path: Path) -> None:
    """A grid with one row per face: LR (nearest-upsampled) | SR | HR."""
    lr_big = F.interpolate(lr, size=hr.shape[-2:], mode="nearest")
    rows = torch.stack([lr_big, sr.clamp(0, 1), hr], dim=1).flatten(0, 1)
    save_image(rows.float().cpu(), path, nrow=3, padding=2)


@torch.no_grad()
def evaluate_split(
    model: nn.Module, data: SplitData, config: ExperimentConfig, tcfg: TrainConfig, out_dir: Path
) -> dict[str, float]:
    """Super-resolve every face of `data`, write per_image.csv and samples.png to `out_dir`, return the means."""
    model.eval()
    device = data.hr.device
    scale = config.data.scale
    wanted = ("psnr", "ssim") + (("lpips",) if tcfg.lpips else ()) + (("niqe",) if tcfg.niqe else ())
    evaluator = Evaluator(
        convention=tcfg.convention,
        scale=scale,
        metrics=wanted,
        device=device,
        lpips_trunk_weights=tcfg.lpips_trunk,
        allow_random_lpips_trunk=tcfg.allow_random_lpips,
    )
    identity = None
    if tcfg.identity:
        from llvfsr.identity import IdentityDistance

        identity = IdentityDistance(weights_path=tcfg.identity_weights, allow_random=tcfg.allow_random_identity)
    synthetic = open_split(config.data, "test") if config.data.dataset == "synthetic" else None
    regions = synthetic_regions(synthetic, len(data))
    attributes = synthetic_attribute_reader(synthetic, len(data))
    rows: dict[str, list] = {"id": list(data.ids)}
    batch_size = max(1, min(tcfg.batch_size, 32))
    for start in range(0, len(data), batch_size):
        index = torch.arange(start, min(start + batch_size, len(data)), device=device)
        hr, priors = data.batch(index)
        lr = make_lr(hr, scale)
        sr = model(lr, priors).float().clamp(0, 1)
        for name, values in evaluator(sr, hr).items():
            rows.setdefault(name, []).extend(np.asarray(values, dtype=np.float64).tolist())
        if identity is not None:
            rows.setdefault("identity", []).extend(np.asarray(identity(sr, hr), dtype=np.float64).tolist())
        if regions is not None:
            span = slice(start, start + len(index))
            for name, masks in zip(("psnr_eyes", "psnr_face"), regions, strict=False):
                region = torch.from_numpy(masks[span]).to(device)
                rows.setdefault(name, []).extend(region_psnr(sr, hr, region).tolist())
        if attributes is not None:  # which iris colour, frames, earrings the SR face shows (text-only attributes)
            for name, values in attributes(sr, list(range(start, start + len(index)))).items():
                rows.setdefault(name, []).extend(values)
        heatmaps = getattr(model, "aux", {}).get("heatmaps")
        if heatmaps is not None and priors.landmarks is not None:
            rows.setdefault("landmark_error", []).extend(
                landmark_error(heatmaps, priors.landmarks, tuple(hr.shape[-2:])).cpu().double().tolist()
            )
            # Chance reference: the error of a head that always points at the image centre.
            centre = (hr.shape[-1] - 1) / 2
            rows.setdefault("landmark_error_centre", []).extend(
                (priors.landmarks.float() - centre).norm(dim=-1).mean(-1).cpu().double().tolist()
            )
        if start < tcfg.sr_faces:
            n = min(tcfg.sr_faces - start, len(index))
            save_sr_faces(lr[:n], sr[:n], hr[:n], list(data.ids[start : start + n]), out_dir / "sr_faces")
        if start == 0 and tcfg.n_samples > 0:
            n = min(tcfg.n_samples, len(index))
            save_samples(lr[:n], sr[:n], hr[:n], out_dir / "samples.png")
    frame = pd.DataFrame(rows)
    frame.to_csv(out_dir / "per_image.csv", index=False)
    summary = {
        f"test_{name}": float(frame[name].mean())
        for name in frame.columns
        if name != "id" and not name.startswith("attr_")
    }
    if attributes is not None:
        from llvfsr.data.synthetic_attributes import attribute_summary

        summary.update({f"test_{name}": value for name, value in attribute_summary(frame).items()})
    for name, reason in evaluator.unavailable.items():
        log.warning("test %s not computed: %s", name, reason)
    (out_dir / "metric_tags.json").write_text(json.dumps(evaluator.tags, indent=2))  # conventions + skipped metrics
    summary["test_images"] = float(len(frame))
    return summary
