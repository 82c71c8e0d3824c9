"""Landmark heatmaps for the prior-guided baselines (FSRNet, DIC): render targets, read peaks, score errors.

Coordinate convention: landmarks are (x, y) in HR pixel units with pixel centres at integer coordinates
(``Priors.landmarks``). A heatmap of size (h, w) for an HR image of size (H, W) covers the same field of view,
so HR point x maps to heatmap point ``(x + 0.5) * w / W - 0.5`` (the centre-aligned mapping that
``F.interpolate(..., align_corners=False)`` uses); `heatmap_peaks` applies the inverse. DIC's authors map x to
``x * w / W`` (their data loader divides by 4): ``convention="authors"``, a 0.375-cell offset at w / W = 1/4, for
models that use their released hourglass (``FB_HG_68_CelebA.pth``) or weights.
"""

from __future__ import annotations

import torch
from torch import Tensor

from llvfsr.priors.types import Priors

CONVENTIONS = ("centre", "authors")


def _half(convention: str) -> float:
    if convention not in CONVENTIONS:
        raise ValueError(f"heatmap convention must be one of {CONVENTIONS}, got {convention!r}")
    return 0.5 if convention == "centre" else 0.0


def hr_to_heatmap_coords(
    landmarks: Tensor, hr_size: tuple[int, int], heat_size: tuple[int, int], convention: str = "centre"
) -> Tensor:
    """Map HR pixel coordinates (x, y) [..., 2] to heatmap pixel coordinates (same layout)."""
    (hr_h, hr_w), (h, w) = hr_size, heat_size
    ratio, half = landmarks.new_tensor([w / hr_w, h / hr_h]), _half(convention)
    return (landmarks + half) * ratio - half


def heatmap_to_hr_coords(
    points: Tensor, hr_size: tuple[int, int], heat_size: tuple[int, int], convention: str = "centre"
) -> Tensor:
    """Inverse of `hr_to_heatmap_coords`."""
    (hr_h, hr_w), (h, w) = hr_size, heat_size
    ratio, half = points.new_tensor([hr_w / w, hr_h / h]), _half(convention)
    return (points + half) * ratio - half


def render_heatmaps(
    landmarks: Tensor, hr_size: tuple[int, int], heat_size: tuple[int, int], sigma: float, convention: str = "centre"
) -> Tensor:
    """Render one unnormalised Gaussian per landmark, peak 1, as both FSRNet and DIC train their heads.

    Args:
        landmarks: float [B, K, 2], (x, y) in HR pixels.
        hr_size: (H, W) of the HR image the landmarks refer to.
        heat_size: (h, w) of the heatmaps to render.
        sigma: Gaussian standard deviation in heatmap pixels.
        convention: ``"centre"`` or DIC's ``"authors"`` (module docstring).

    Returns:
        float [B, K, h, w] in [0, 1], ``exp(-d^2 / (2 sigma^2))`` with d the distance to the landmark.
    """
    h, w = heat_size
    centres = hr_to_heatmap_coords(landmarks.float(), hr_size, heat_size, convention)  # [B, K, 2]
    xs = torch.arange(w, dtype=centres.dtype, device=centres.device)
    ys = torch.arange(h, dtype=centres.dtype, device=centres.device)
    dx2 = (xs.view(1, 1, 1, w) - centres[..., 0, None, None]) ** 2
    dy2 = (ys.view(1, 1, h, 1) - centres[..., 1, None, None]) ** 2
    return torch.exp(-(dx2 + dy2) / (2.0 * sigma**2))


def heatmap_peaks(heatmaps: Tensor, hr_size: tuple[int, int], convention: str = "centre") -> Tensor:
    """The argmax of each heatmap, in HR pixel coordinates.

    Args:
        heatmaps: float [B, K, h, w].
        hr_size: (H, W) of the HR image.

    Returns:
        float [B, K, 2], (x, y) in HR pixels (resolution: one heatmap pixel).
    """
    b, k, h, w = heatmaps.shape
    index = heatmaps.reshape(b, k, h * w).argmax(dim=-1)
    points = torch.stack([index % w, index // w], dim=-1).float()
    return heatmap_to_hr_coords(points, hr_size, (h, w), convention)


def landmark_error(heatmaps: Tensor, landmarks: Tensor, hr_size: tuple[int, int], convention: str = "centre") -> Tensor:
    """Mean distance (HR pixels) between each heatmap's argmax and its true landmark, per face.

    Args:
        heatmaps: float [B, K, h, w] from a landmark head.
        landmarks: float [B, K, 2] true (x, y) in HR pixels.
        hr_size: (H, W) of the HR image.

    Returns:
        float [B].
    """
    peaks = heatmap_peaks(heatmaps.detach().float(), hr_size, convention)
    return (peaks - landmarks.float()).norm(dim=-1).mean(-1)


def require_target(priors: Priors | None, name: str, model: str) -> Tensor:
    """Return ``priors.<name>``, or raise a ValueError that names the missing field and the model needing it."""
    value = None if priors is None else getattr(priors, name)
    if value is None:
        where = "priors is None" if priors is None else f"priors.{name} is None"
        raise ValueError(f"{model}.auxiliary_loss needs the training target priors.{name}, but {where}")
    return value
