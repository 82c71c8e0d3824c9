"""PSNR/SSIM/LPIPS/NIQE against scikit-image, pyiqa and the lpips package, with the conventions lined up."""

import hashlib
import urllib.error
from pathlib import Path

import cv2
import lpips
import numpy as np
import pytest
import scipy.io
import torch
import torchvision
from PIL import Image
from skimage import data as skdata
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from llvfsr.data.degrade import degrade_bicubic, to_float, upsample_bicubic
from llvfsr.metrics import (
    ASSETS_DIR,
    CONVENTIONS,
    DEFAULT_NIQE_PARAMS,
    Convention,
    Evaluator,
    LPIPSMetric,
    NIQEMetric,
    convention_tags,
    load_niqe_params,
    psnr,
    rgb_to_y,
    ssim,
)


def _square_256(img: np.ndarray) -> np.ndarray:
    im = Image.fromarray(img).convert("RGB")
    w, h = im.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return np.asarray(im.crop((left, top, left + s, top + s)).resize((256, 256), Image.BICUBIC)).copy()


@pytest.fixture(scope="module")
def pair():
    """HR photographs and their x8 bicubic reconstructions: float [3, 3, 256, 256] in [0, 1]."""
    hr = to_float(
        torch.from_numpy(np.stack([_square_256(getattr(skdata, n)()) for n in ("astronaut", "chelsea", "coffee")]))
    )
    sr = upsample_bicubic(degrade_bicubic(hr, 8), 8)
    return sr, hr


def _uint8(x: torch.Tensor) -> np.ndarray:
    """Independent uint8 rounding: numpy on the float32 values, NHWC."""
    return np.clip(x.numpy() * np.float32(255), 0, 255).round().astype(np.uint8).transpose(0, 2, 3, 1)


def _reference_y(x: torch.Tensor, border: int, rounded: bool = True) -> np.ndarray:
    """MATLAB Y by scikit-image's rgb2ycbcr (BT.601, 16-235), float64 [B, H', W']."""
    u8 = _uint8(x)[:, border:-border, border:-border] if border else _uint8(x)
    y = np.stack([rgb2ycbcr(im)[..., 0] for im in u8])
    return np.round(y) if rounded else y


def test_y_channel_is_matlab_bt601():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    np.testing.assert_allclose(rgb_to_y(rgb, round_y=False), rgb2ycbcr(rgb)[..., 0], atol=1e-9)
    assert np.array_equal(rgb_to_y(rgb), np.round(rgb2ycbcr(rgb)[..., 0]))
    corners = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0]]], dtype=np.uint8)
    assert rgb_to_y(corners).tolist() == [[16.0, 235.0, 81.0]]  # 16 + 65.481 = 81.481


def test_paper_psnr_ssim_equal_skimage(pair):
    sr, hr = pair
    ys, yh = _reference_y(sr, 8), _reference_y(hr, 8)
    ref_psnr = [peak_signal_noise_ratio(a, b, data_range=255) for a, b in zip(yh, ys, strict=True)]
    ref_ssim = [structural_similarity(a, b, data_range=255) for a, b in zip(ys, yh, strict=True)]
    np.testing.assert_allclose(psnr(sr, hr, "paper", scale=8), ref_psnr, rtol=0, atol=1e-10)
    np.testing.assert_allclose(ssim(sr, hr, "paper", scale=8), ref_ssim, rtol=0, atol=1e-10)
    # The crop is 8 px at x16 too, unlike crop = scale.
    np.testing.assert_allclose(psnr(sr, hr, "paper", scale=16), ref_psnr, rtol=0, atol=1e-10)
    assert 18 < np.mean(ref_psnr) < 35 and 0.3 < np.mean(ref_ssim) < 0.95  # a real degradation, not a no-op


def test_psnr_matches_pyiqa_where_conventions_agree(pair):
    from pyiqa.archs.psnr_arch import psnr as pyiqa_psnr

    sr, hr = pair
    q = lambda x: torch.from_numpy(_uint8(x).transpose(0, 3, 1, 2).astype(np.float32) / 255)  # noqa: E731
    c = 8
    # pyiqa on MATLAB's rounded Y (color_space="ycbcr", data_range=255) with the same crop = our `paper`.
    ours = psnr(sr, hr, "paper")
    theirs = pyiqa_psnr(
        q(sr)[..., c:-c, c:-c], q(hr)[..., c:-c, c:-c], test_y_channel=True, data_range=255.0, color_space="ycbcr"
    ).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-3)
    # pyiqa's default PSNR is on RGB without crop = our `rgb`; it is clearly lower than the paper's Y PSNR.
    rgb = psnr(sr, hr, "rgb")
    np.testing.assert_allclose(rgb, pyiqa_psnr(q(sr), q(hr)).numpy(), atol=1e-3)
    assert np.all(ours - rgb > 0.5)
    # pyiqa's default Y is YIQ's, not MATLAB's: a measurable difference.
    yiq = pyiqa_psnr(q(sr)[..., c:-c, c:-c], q(hr)[..., c:-c, c:-c], test_y_channel=True, data_range=255.0).numpy()
    assert np.all(np.abs(yiq - ours) > 0.01)


def _basicsr_style_ssim(a: np.ndarray, b: np.ndarray, clip_cs: bool = False) -> float:
    """Wang et al.'s SSIM as BasicSR computes it: 11x11 Gaussian (sigma 1.5) window, valid region, float64.

    ``clip_cs`` clips the contrast-structure term at 0, as pyiqa does.
    """
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    k = cv2.getGaussianKernel(11, 1.5)
    w = k @ k.T
    f = lambda x: cv2.filter2D(x, -1, w)[5:-5, 5:-5]  # noqa: E731
    mu_a, mu_b = f(a), f(b)
    va, vb, cov = f(a * a) - mu_a**2, f(b * b) - mu_b**2, f(a * b) - mu_a * mu_b
    cs = (2 * cov + c2) / (va + vb + c2)
    if clip_cs:
        cs = np.maximum(cs, 0.0)
    return float(np.mean((2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1) * cs))


def test_basicsr_convention_ssim_and_pyiqa(pair):
    from pyiqa.archs.ssim_arch import SSIM as PyiqaSSIM

    sr, hr = pair
    for scale in (8, 16):
        ys, yh = _reference_y(sr, scale, rounded=False), _reference_y(hr, scale, rounded=False)
        ref = [_basicsr_style_ssim(a, b) for a, b in zip(ys, yh, strict=True)]
        np.testing.assert_allclose(ssim(sr, hr, "basicsr", scale=scale), ref, atol=1e-6)
        np.testing.assert_allclose(
            psnr(sr, hr, "basicsr", scale=scale),
            [peak_signal_noise_ratio(b, a, data_range=255) for a, b in zip(ys, yh, strict=True)],
            atol=1e-9,
        )
    # pyiqa's SSIM is the Gaussian one on rounded Y, except that it clips the contrast-structure term at 0 ...
    q = lambda x: torch.from_numpy(_uint8(x).transpose(0, 3, 1, 2).astype(np.float32) / 255)  # noqa: E731
    theirs = PyiqaSSIM(color_space="ycbcr", crop_border=8)(q(sr), q(hr)).numpy()
    ys, yh = _reference_y(sr, 8), _reference_y(hr, 8)
    np.testing.assert_allclose(
        theirs, [_basicsr_style_ssim(a, b, clip_cs=True) for a, b in zip(ys, yh, strict=True)], atol=1e-5
    )
    gaussian_rounded = Convention("gaussian-rounded-y", True, 8, "gaussian", round_y=True)
    ours = ssim(sr, hr, gaussian_rounded)
    np.testing.assert_allclose(ours, [_basicsr_style_ssim(a, b) for a, b in zip(ys, yh, strict=True)], atol=1e-6)
    assert np.all(np.abs(ours - theirs) < 0.01)  # the clip matters little, on these images at most 0.004
    # ... and clearly not the paper's uniform-window SSIM (BasicSR/pyiqa-style SSIM reads higher).
    assert np.all(theirs - ssim(sr, hr, "paper") > 0.003)


def test_rgb_convention_equals_skimage_rgb(pair):
    sr, hr = pair
    a, b = _uint8(sr).astype(np.float64), _uint8(hr).astype(np.float64)
    np.testing.assert_allclose(
        psnr(sr, hr, "rgb"),
        [peak_signal_noise_ratio(y, x, data_range=255) for x, y in zip(a, b, strict=True)],
        atol=1e-10,
    )
    ref = [structural_similarity(x, y, data_range=255, channel_axis=-1) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(ssim(sr, hr, "rgb"), ref, atol=1e-10)


def test_border_is_cropped(pair):
    sr, hr = pair
    corrupted = sr.clone()
    corrupted[..., :8, :] = 1 - corrupted[..., :8, :]
    corrupted[..., :, -8:] = 0.0
    for name in ("paper", "basicsr"):
        np.testing.assert_array_equal(psnr(corrupted, hr, name, scale=8), psnr(sr, hr, name, scale=8))
        np.testing.assert_array_equal(ssim(corrupted, hr, name, scale=8), ssim(sr, hr, name, scale=8))
    assert np.all(psnr(corrupted, hr, "rgb") < psnr(sr, hr, "rgb") - 1)  # no crop: the border counts
    # crop = scale at x16 cuts 16 px, so an error in rows 8..15 is seen by `paper` but not by `basicsr`.
    inner = sr.clone()
    inner[..., 8:16, :] = 0.0
    assert np.all(psnr(inner, hr, "paper", 16) < psnr(sr, hr, "paper", 16))
    np.testing.assert_array_equal(psnr(inner, hr, "basicsr", 16), psnr(sr, hr, "basicsr", 16))


def test_identical_images_and_per_image_batching(pair):
    sr, hr = pair
    for name in CONVENTIONS:
        assert np.all(np.isposinf(psnr(hr, hr, name)))
        np.testing.assert_allclose(ssim(hr, hr, name), 1.0, atol=1e-12)
    # Differences below half a level vanish in the uint8 rounding, as when the SR is saved and reloaded.
    assert np.all(np.isposinf(psnr(hr + 0.4 / 255 * (2 * torch.rand_like(hr) - 1), hr)))
    batch = psnr(sr, hr)
    assert batch.shape == (3,) and batch.dtype == np.float64
    np.testing.assert_array_equal(batch, np.concatenate([psnr(sr[i : i + 1], hr[i : i + 1]) for i in range(3)]))
    np.testing.assert_array_equal(psnr(sr.flip(0), hr.flip(0)), batch[::-1])
    with pytest.raises(ValueError):
        psnr(sr, hr[:, :, :128])
    with pytest.raises(ValueError):
        psnr(sr, hr, "matlab2")


def test_convention_tags():
    assert convention_tags("paper", 16) == {
        "metric.convention": "paper",
        "metric.y_channel": "bt601-matlab",
        "metric.crop_border": "8",
        "metric.ssim_impl": "skimage",
        "metric.round_y": "true",
    }
    assert convention_tags("basicsr", 16)["metric.crop_border"] == "16"
    assert convention_tags("basicsr", 8)["metric.crop_border"] == "8"
    assert convention_tags("rgb", 8)["metric.y_channel"] == "rgb"


# ---- LPIPS -----------------------------------------------------------------------------------------------------


@pytest.fixture
def offline_torchvision(monkeypatch):
    """torchvision weight downloads fail as they do without network (deterministic, whatever the machine)."""

    def refuse(url, *args, **kwargs):
        raise urllib.error.URLError(f"offline test: refused {url}")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", refuse)


def test_lpips_without_weights_offline_raises_clearly(offline_torchvision):
    with pytest.raises(RuntimeError, match="trunk_weights=PATH"):
        LPIPSMetric()


def test_lpips_random_trunk_plumbing(pair, offline_torchvision):
    sr, hr = pair
    metric = LPIPSMetric(allow_random_trunk=True)
    assert metric.random_trunk
    d = metric(sr, hr)
    assert d.shape == (3,) and d.dtype == np.float64 and np.all(d > 0)
    np.testing.assert_allclose(metric(hr, hr), 0.0, atol=1e-7)
    np.testing.assert_allclose(metric(hr, sr), d, rtol=1e-5)  # symmetric


def test_lpips_matches_pyiqa_with_the_same_trunk(pair, tmp_path, monkeypatch):
    """Our loader (torchvision cache path) and pyiqa's LPIPS, both given one trunk file, agree."""
    from pyiqa.archs.lpips_arch import LPIPS as PyiqaLPIPS

    sr, hr = pair
    torch.manual_seed(0)
    trunk = torchvision.models.alexnet().state_dict()  # random but fixed: stands in for the ImageNet weights
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    filename = Path(torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url).name
    torch.save(trunk, cache / filename)
    torch.save(trunk, tmp_path / "trunk.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    ours_cached = LPIPSMetric()  # found in the torchvision cache, no download
    assert not ours_cached.random_trunk
    ours_file = LPIPSMetric(trunk_weights=tmp_path / "trunk.pth")
    lin_weights = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    theirs = PyiqaLPIPS(net="alex", pretrained_model_path=str(lin_weights)).eval()
    np.testing.assert_array_equal(
        theirs.lin0.model[1].weight.detach().numpy(), ours_file.model.lin0.model[1].weight.detach().numpy()
    )
    q = lambda x: torch.from_numpy(_uint8(x).transpose(0, 3, 1, 2).astype(np.float32) / 255)  # noqa: E731
    with torch.no_grad():  # LPIPSMetric sees uint8-rounded images, so pyiqa gets the same
        ref = theirs(q(sr), q(hr), normalize=True).flatten().double().numpy()
    np.testing.assert_allclose(ours_file(sr, hr), ref, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ours_cached(sr, hr), ref, rtol=1e-4, atol=1e-6)
    # A different trunk gives a different value: the weights were really loaded.
    torch.manual_seed(1)
    torch.save(torchvision.models.alexnet().state_dict(), tmp_path / "other.pth")
    assert np.all(np.abs(LPIPSMetric(trunk_weights=tmp_path / "other.pth")(sr, hr) - ref) > 1e-4)


# ---- NIQE ------------------------------------------------------------------------------------------------------


def test_niqe_bundled_params_match_pyiqa_called_directly(pair, tmp_path):
    import pyiqa

    sr, hr = pair
    mu, cov = load_niqe_params()
    assert mu.shape == (36,) and cov.shape == (36, 36) and np.allclose(cov, cov.T)
    mat = tmp_path / "niqe_params.mat"
    scipy.io.savemat(mat, {"mu_prisparam": mu[None], "cov_prisparam": cov})
    mu2, cov2 = load_niqe_params(mat)
    np.testing.assert_array_equal(mu2, mu)
    np.testing.assert_array_equal(cov2, cov)

    ours = NIQEMetric()(hr)
    direct = pyiqa.create_metric("niqe", pretrained_model_path=str(mat), device="cpu")
    q = torch.from_numpy(_uint8(hr).transpose(0, 3, 1, 2).astype(np.float32) / 255)
    with torch.no_grad():
        ref = direct(q).flatten().double().numpy()
    assert ours.shape == (3,)
    np.testing.assert_allclose(ours, ref, rtol=1e-6)


def test_bundled_niqe_params_are_basicsr_file_unchanged():
    # sha256 of basicsr-1.4.2.tar.gz's basicsr/metrics/niqe_pris_params.npz (llvfsr/assets/NOTICE-niqe.txt).
    digest = hashlib.sha256((ASSETS_DIR / DEFAULT_NIQE_PARAMS).read_bytes()).hexdigest()
    assert digest == "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296"


# The NIQE MATLAB release (Mittal et al. 2013) on the five distorted images that pyiqa ships for calibration
# (site-packages/ResultsCalibra/dist_dir), as published in IQA-PyTorch's ResultsCalibra/results_compare/
# niqe_org_result.txt. Ours: 15.656, 3.655, 3.234, 3.192, 9.073, at most 3.6 % off (pyiqa's ports are not exact:
# its own published port was 0.3 % off); a 5 % change of the pristine mean moves them by 1-12 %.
NIQE_MATLAB = {"I03.bmp": 15.7978, "I04.bmp": 3.7764, "I06.bmp": 3.1794, "I08.bmp": 3.1704, "I19.bmp": 8.7574}


def test_niqe_reproduces_the_matlab_release_on_published_images():
    import pyiqa

    folder = Path(pyiqa.__file__).parent.parent / "ResultsCalibra" / "dist_dir"
    images = [np.asarray(Image.open(folder / name).convert("RGB")) for name in NIQE_MATLAB]
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    ours = NIQEMetric()(batch)
    np.testing.assert_allclose(ours, list(NIQE_MATLAB.values()), rtol=0.08)


def test_niqe_prefers_natural_images(pair):
    sr, hr = pair
    metric = NIQEMetric()
    clean, blurred = metric(hr), metric(sr)
    assert np.all(blurred > clean + 1.0), (clean, blurred)
    assert np.all((clean > 1.0) & (clean < 8.0))  # natural photographs: the usual NIQE range
    noisy = (hr + 0.08 * torch.randn(hr.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert np.all(metric(noisy) > clean + 1.0)
    with pytest.raises(ValueError):
        metric(hr[..., :128, :128])


# ---- Evaluator -------------------------------------------------------------------------------------------------


def test_evaluator_skips_unavailable_lpips(pair, offline_torchvision, caplog):
    sr, hr = pair
    evaluator = Evaluator("paper", scale=8)
    assert set(evaluator.unavailable) == {"lpips"} and "trunk_weights" in evaluator.unavailable["lpips"]
    assert "lpips" in caplog.text
    out = evaluator(sr, hr)
    assert set(out) == {"psnr", "ssim", "niqe"}
    np.testing.assert_array_equal(out["psnr"], psnr(sr, hr, "paper", 8))
    np.testing.assert_array_equal(out["ssim"], ssim(sr, hr, "paper", 8))
    tags = evaluator.tags
    assert tags["metric.convention"] == "paper" and "metric.lpips.unavailable" in tags


def test_evaluator_all_metrics(pair, offline_torchvision):
    sr, hr = pair
    evaluator = Evaluator("basicsr", scale=16, allow_random_lpips_trunk=True)
    assert evaluator.unavailable == {}
    out = evaluator(sr, hr)
    assert set(out) == {"psnr", "ssim", "lpips", "niqe"}
    assert all(v.shape == (3,) and v.dtype == np.float64 for v in out.values())
    np.testing.assert_array_equal(out["ssim"], ssim(sr, hr, "basicsr", 16))
    assert Evaluator(metrics=("psnr",))(sr, hr).keys() == {"psnr"}
    with pytest.raises(ValueError):
        Evaluator(metrics=("fid",))
    # NIQE cannot score images below 192 px: skipped and recorded, not a crash.
    small = Evaluator(metrics=("psnr", "niqe"))
    assert small.unavailable == {}
    assert small(sr[..., :128, :128], hr[..., :128, :128]).keys() == {"psnr"}
    assert "NIQE" in small.unavailable["niqe"]
