"""Bicubic degradation against PIL, on scikit-image's bundled photographs and on smooth random images."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import gaussian_filter
from skimage import data as skdata

from llvfsr.data.degrade import degradation_matrix, degrade_bicubic, to_float, to_uint8, upsample_bicubic


def _square_256(img: np.ndarray) -> np.ndarray:
    """Centre-crop a uint8 HWC photograph to a square and resize it to 256x256 with PIL (test input only)."""
    im = Image.fromarray(img).convert("RGB")
    w, h = im.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return np.asarray(im.crop((left, top, left + s, top + s)).resize((256, 256), Image.BICUBIC)).copy()


def _smooth_random(seed: int) -> np.ndarray:
    """A 256x256 colour image of blurred noise with a few sharp edges, uint8 HWC."""
    rng = np.random.default_rng(seed)
    img = gaussian_filter(rng.random((256, 256, 3)), sigma=(6, 6, 0))
    img = (img - img.min()) / (img.max() - img.min())
    img[96:160, 64:192] = 0.15 + 0.7 * rng.random(3)  # a flat block: strong edges test the ringing clip
    return (img * 255).round().astype(np.uint8)


PHOTOS = {name: _square_256(getattr(skdata, name)()) for name in ("astronaut", "chelsea", "coffee", "rocket")}
IMAGES = {**PHOTOS, "smooth0": _smooth_random(0), "smooth1": _smooth_random(1)}


def _pil_resize(img: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize((size, size), Image.BICUBIC)).astype(np.float64)


def _as_batch(imgs: list[np.ndarray]) -> torch.Tensor:
    return to_float(torch.from_numpy(np.stack(imgs)))


@pytest.mark.parametrize("scale", [8, 16])
def test_degrade_matches_pil(scale):
    names = list(IMAGES)
    lr = degrade_bicubic(_as_batch([IMAGES[n] for n in names]), scale)
    assert lr.shape == (len(names), 3, 256 // scale, 256 // scale) and lr.dtype == torch.float32
    ours = to_uint8(lr, channels_last=True).numpy().astype(np.float64)
    for i, name in enumerate(names):
        pil = _pil_resize(IMAGES[name], 256 // scale)
        mae = np.abs(ours[i] - pil).mean()
        # PIL rounds to uint8 between its two passes, torch does not: a few +-1 levels, not a different filter.
        assert mae < 0.5, f"{name} x{scale}: MAE {mae:.3f} levels vs PIL"
        assert np.mean(np.abs(ours[i] - pil) <= 1) > 0.97


@pytest.mark.parametrize("scale", [8, 16])
def test_non_antialiased_bicubic_is_far_from_pil(scale):
    """The test can tell the filters apart: torch's plain bicubic (aliasing) misses PIL by many levels."""
    hr = _as_batch([PHOTOS["astronaut"]])
    plain = F.interpolate(hr, scale_factor=1 / scale, mode="bicubic", align_corners=False).clamp(0, 1)
    pil = _pil_resize(PHOTOS["astronaut"], 256 // scale)
    assert np.abs(to_uint8(plain, channels_last=True)[0].numpy() - pil).mean() > 3.0


@pytest.mark.parametrize("scale", [8, 16])
def test_upsample_matches_pil(scale):
    for name in ("astronaut", "coffee", "smooth0"):
        lr_u8 = _pil_resize(IMAGES[name], 256 // scale).astype(np.uint8)
        up = upsample_bicubic(_as_batch([lr_u8]), scale)
        assert up.shape == (1, 3, 256, 256)
        ours = to_uint8(up, channels_last=True)[0].numpy().astype(np.float64)
        pil = _pil_resize(lr_u8, 256)
        assert np.abs(ours - pil).mean() < 0.5, name
        # torch's a = -0.75 kernel is measurably different: the option is not a no-op.
        other = to_uint8(upsample_bicubic(_as_batch([lr_u8]), scale, kernel="torch"), channels_last=True)[0]
        assert np.abs(other.numpy() - pil).mean() > 0.6


def test_degrade_is_per_image_and_clipped():
    batch = _as_batch([IMAGES["smooth0"], IMAGES["chelsea"]])
    joint = degrade_bicubic(batch, 8)
    single = torch.cat([degrade_bicubic(batch[i : i + 1], 8) for i in range(2)])
    torch.testing.assert_close(joint, single, rtol=0, atol=1e-6)
    assert joint.min() >= 0 and joint.max() <= 1
    # A hard black/white edge overshoots under bicubic; the output must still be a valid image.
    edge = torch.zeros(1, 3, 64, 64)
    edge[..., 32:] = 1.0
    out = degrade_bicubic(edge, 8)
    assert out.min() >= 0 and out.max() <= 1 and out.shape == (1, 3, 8, 8)


def test_degrade_rejects_bad_input():
    with pytest.raises(ValueError):
        degrade_bicubic(torch.rand(1, 3, 250, 256), 8)
    with pytest.raises(TypeError):
        degrade_bicubic(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), 8)
    with pytest.raises(ValueError):
        upsample_bicubic(torch.rand(1, 3, 8, 8), 8, kernel="lanczos")


def test_uint8_round_trip_and_rounding():
    values = torch.arange(256, dtype=torch.uint8)
    nhwc = values.reshape(1, 16, 16, 1).expand(1, 16, 16, 3).contiguous()
    as_float = to_float(nhwc)
    assert as_float.shape == (1, 3, 16, 16) and as_float.dtype == torch.float32
    assert torch.equal(to_uint8(as_float, channels_last=True), nhwc)
    assert torch.equal(to_float(nhwc.permute(0, 3, 1, 2)), as_float)  # NCHW input reads the same
    # Rounding equals numpy's round-half-to-even on float32 x * 255, with clipping.
    x = torch.rand(2, 3, 8, 8) * 1.2 - 0.1
    ref = np.clip(x.numpy().astype(np.float32) * np.float32(255), 0, 255).round().astype(np.uint8)
    assert np.array_equal(to_uint8(x).numpy(), ref)
    assert to_uint8(torch.tensor([[[[0.5]]]]).expand(1, 3, 1, 1)).flatten().tolist() == [128] * 3  # 127.5 -> 128


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_degrade_on_gpu_matches_cpu():
    hr = _as_batch([IMAGES["astronaut"], IMAGES["smooth1"]])
    cpu = degrade_bicubic(hr, 16)
    gpu = degrade_bicubic(hr.cuda(), 16)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=2e-5)


@pytest.mark.parametrize(("size", "scale"), [(64, 8), (64, 16), (96, 8)])
def test_degradation_matrix_is_the_degradation(size, scale):
    """A X A^T per channel equals degrade_bicubic(X) (no clipping inside [0, 1]); used to hide what the LR must
    not show (`llvfsr.data.synthetic.hide_from_lr`)."""
    a = degradation_matrix(size, scale)
    x = torch.rand(2, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    assert a.shape == (size // scale, size)
    torch.testing.assert_close(torch.einsum("ij,bcjk,lk->bcil", a, x, a), degrade_bicubic(x, scale), atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="not divisible"):
        degradation_matrix(60, 8)
