"""Bicubic degradation (HR -> LR), bicubic up-sampling, and the uint8 <-> float image conversions.

The paper's LR faces are HR 256x256 faces bicubic down-sampled x8 (32x32) or x16 (16x16) *with* anti-aliasing,
as MATLAB ``imresize`` and PIL ``Image.resize(..., BICUBIC)`` do. torch's ``F.interpolate(mode="bicubic",
antialias=True)`` implements PIL's separable anti-aliased filter (Keys kernel with a = -0.5, support stretched
by the scale factor, weights renormalised at the image border), so it runs batched on any device without a
numpy round-trip. It differs from PIL only in that PIL rounds and clips to uint8 between its horizontal and
vertical passes; on natural images the uint8 results agree to about 0.1/255 mean absolute error
(tests/test_degrade.py measures it). Without ``antialias=True`` torch uses a = -0.75 and no kernel stretching,
which aliases badly and costs 1.2-1.5 dB on the paper's bicubic row (docs: DESIGN.md, Metrics).

All float images are float32 RGB NCHW in [0, 1]; uint8 images are what is stored on disk.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def _check_batch(images: Tensor, name: str) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{name} must be a [B, 3, H, W] RGB batch, got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be a float tensor in [0, 1] (use to_float for uint8), got {images.dtype}")


def degrade_bicubic(hr: Tensor, scale: int) -> Tensor:
    """Down-sample HR faces by bicubic interpolation with anti-aliasing, as PIL ``BICUBIC`` / MATLAB ``imresize``.

    Args:
        hr: float [B, 3, H, W] RGB in [0, 1], on any device; H and W must be multiples of ``scale``.
        scale: integer down-sampling factor (8 or 16 in the paper).

    Returns:
        float [B, 3, H / scale, W / scale] in [0, 1] (the bicubic overshoot is clipped, as PIL's uint8
        output is), same dtype and device as ``hr``.
    """
    _check_batch(hr, "hr")
    if scale < 1 or hr.shape[-2] % scale or hr.shape[-1] % scale:
        raise ValueError(f"HR size {tuple(hr.shape[-2:])} is not divisible by scale {scale}")
    size = (hr.shape[-2] // scale, hr.shape[-1] // scale)
    # antialias=True selects PIL's filter (a = -0.5, support widened by the scale); see the module docstring.
    lr = F.interpolate(hr, size=size, mode="bicubic", align_corners=False, antialias=True)
    return lr.clamp_(0.0, 1.0)


def degradation_matrix(size: int, scale: int) -> Tensor:
    """The 1-D operator of `degrade_bicubic` (before its clipping), float64 [size // scale, size]: the LR of an
    image ``X`` of ``size`` x ``size`` is ``A @ X @ A.T`` per channel, since the filter is separable."""
    if scale < 1 or size % scale:
        raise ValueError(f"size {size} is not divisible by scale {scale}")
    basis = torch.eye(size, dtype=torch.float64)[:, None, None, :]  # one row image per input pixel
    rows = F.interpolate(basis, size=(1, size // scale), mode="bicubic", align_corners=False, antialias=True)
    return rows[:, 0, 0, :].T.contiguous()


def upsample_bicubic(lr: Tensor, scale: int, kernel: str = "pil") -> Tensor:
    """Up-sample by plain bicubic interpolation: the Bicubic row of Table 1 and the input of models that refine it.

    Args:
        lr: float [B, 3, h, w] RGB in [0, 1], on any device.
        scale: integer up-sampling factor.
        kernel: ``"pil"`` (default) uses the Keys kernel with a = -0.5 of PIL ``BICUBIC`` and MATLAB ``imresize``;
            ``"torch"`` uses torch's default a = -0.75 (OpenCV's ``INTER_CUBIC``), for models whose official
            code up-samples that way.

    Returns:
        float [B, 3, h * scale, w * scale] in [0, 1] (overshoot clipped), same dtype and device as ``lr``.
    """
    _check_batch(lr, "lr")
    if kernel not in ("pil", "torch"):
        raise ValueError(f"kernel must be 'pil' or 'torch', got {kernel!r}")
    size = (lr.shape[-2] * scale, lr.shape[-1] * scale)
    # When up-sampling the anti-aliased path does not widen the kernel; it only switches to a = -0.5.
    hr = F.interpolate(lr, size=size, mode="bicubic", align_corners=False, antialias=kernel == "pil")
    return hr.clamp_(0.0, 1.0)


def to_float(images: Tensor) -> Tensor:
    """Convert uint8 images from disk to the library's float layout.

    Args:
        images: uint8 [B, H, W, 3] (NHWC, as decoded from PNG) or [B, 3, H, W] (NCHW), RGB. A batch whose
            last dimension is 3 is read as NHWC, so a 3-pixel-wide NCHW image is ambiguous: pass NHWC then.

    Returns:
        float32 [B, 3, H, W] in [0, 1] (value / 255), contiguous, on the input's device.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise TypeError(
            f"expected a uint8 [B, H, W, 3] or [B, 3, H, W] tensor, got {images.dtype} {tuple(images.shape)}"
        )
    if images.shape[-1] == 3:
        images = images.permute(0, 3, 1, 2)
    elif images.shape[1] != 3:
        raise ValueError(f"expected 3 RGB channels first or last, got shape {tuple(images.shape)}")
    return images.contiguous().to(torch.float32).div_(255.0)


def to_uint8(images: Tensor, channels_last: bool = False) -> Tensor:
    """Quantise float images to uint8, as they would be written to disk.

    Rounding is round-half-to-even (``torch.round``), the same as ``numpy.round`` in the public SR evaluation
    scripts (BasicSR ``tensor2img``, SFMNet ``quantize``); MATLAB's ``im2uint8`` rounds halves away from zero,
    which differs only where value * 255 is exactly k + 0.5.

    Args:
        images: float [B, 3, H, W] RGB in [0, 1] (values outside are clipped).
        channels_last: return [B, H, W, 3] (for writing with PIL) instead of [B, 3, H, W].

    Returns:
        uint8 tensor of the same images, on the input's device.
    """
    if not images.is_floating_point():
        raise TypeError(f"expected a float tensor, got {images.dtype}")
    # Quantise in float32 like the reference scripts, so x * 255 rounds identically to theirs.
    out = (images.to(torch.float32) * 255.0).clamp_(0.0, 255.0).round_().to(torch.uint8)
    return out.permute(0, 2, 3, 1).contiguous() if channels_last else out


def make_lr(hr: Tensor, scale: int) -> Tensor:
    """Bicubic LR from HR (design contract), quantised to 8 bits as a stored LR face would be.

    Args:
        hr: float [B, 3, H, W] RGB in [0, 1].
        scale: down-sampling factor.

    Returns:
        float [B, 3, H / scale, W / scale] RGB in [0, 1], on multiples of 1/255.
    """
    return degrade_bicubic(hr, scale).clamp_(0, 1).mul_(255).round_().div_(255)


def lr_faces(hr: np.ndarray, scale: int) -> np.ndarray:
    """The LR faces that prior sources see: `make_lr`'s degradation on uint8 arrays.

    Args:
        hr: uint8 [B, H, W, 3] RGB HR faces.
        scale: down-sampling factor.

    Returns:
        uint8 [B, H / scale, W / scale, 3] RGB: antialiased bicubic down-sampling, rounded to uint8.
    """
    return to_uint8(degrade_bicubic(to_float(torch.from_numpy(np.ascontiguousarray(hr))), scale), True).numpy()
