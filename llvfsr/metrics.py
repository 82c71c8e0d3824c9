"""Image-quality metrics of the paper's tables: PSNR, SSIM, LPIPS and NIQE, per image, under one named convention.

PSNR and SSIM numbers depend on choices that papers rarely print (uint8 rounding, which Y channel, border crop,
SSIM window). A `Convention` names those choices; the default, ``paper``, is the one that reproduces the
paper's bicubic row and is what SFMNet's public evaluation code (``utils/metric.py``; SFMNet shares its first
author with LLV-FSR) does (DESIGN.md, Metrics):

- SR and HR rounded to uint8 (round-half-to-even, as ``numpy.round``);
- an 8-pixel border cropped at x8 and x16;
- the Y channel of MATLAB's ``rgb2ycbcr`` on uint8 RGB (BT.601, 16-235):
  ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` with R, G, B in 0..255, rounded to an integer;
- PSNR on Y in 0..255 per image; SSIM per image = ``skimage.metrics.structural_similarity(data_range=255)``,
  i.e. its 7x7 uniform window with sample covariance.

``basicsr`` is BasicSR's ``calculate_psnr/ssim(test_y_channel=True)``: Y not rounded, crop = scale, SSIM with an
11x11 Gaussian window (sigma 1.5, population covariance, valid region). ``rgb`` is PSNR/SSIM on the three RGB
channels without crop. Conventions are never mixed in one table: `convention_tags` writes the one used on every
MLflow run. LPIPS and NIQE do not depend on the convention: they see the uint8-rounded RGB images, uncropped.

Every function takes float32 RGB NCHW batches in [0, 1] and returns one float64 value per image.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from skimage.metrics import structural_similarity
from torch import Tensor

from llvfsr.data.degrade import to_uint8

log = logging.getLogger(__name__)

# MATLAB rgb2ycbcr's luma row for RGB in 0..255 (before the division by 255), BT.601 studio swing.
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])


@dataclass(frozen=True)
class Convention:
    """How PSNR and SSIM are measured.

    Attributes:
        name: registry name, written in tables and on MLflow runs.
        y_channel: measure on MATLAB's BT.601 Y channel (True) or on the three RGB channels (False).
        crop_border: pixels cut from every side before measuring, or ``"scale"`` for as many as the SR factor.
        ssim_impl: ``"skimage"`` (7x7 uniform window, sample covariance: scikit-image's default) or
            ``"gaussian"`` (11x11 Gaussian window, sigma 1.5, population covariance: Wang et al. 2004, BasicSR).
        round_y: round Y to integers, as MATLAB's ``rgb2ycbcr`` does on uint8 input.
    """

    name: str
    y_channel: bool
    crop_border: int | Literal["scale"]
    ssim_impl: Literal["skimage", "gaussian"]
    round_y: bool = True

    def border(self, scale: int) -> int:
        """The number of border pixels cropped at this SR factor."""
        return scale if self.crop_border == "scale" else int(self.crop_border)


CONVENTIONS: dict[str, Convention] = {
    "paper": Convention("paper", y_channel=True, crop_border=8, ssim_impl="skimage", round_y=True),
    "basicsr": Convention("basicsr", y_channel=True, crop_border="scale", ssim_impl="gaussian", round_y=False),
    "rgb": Convention("rgb", y_channel=False, crop_border=0, ssim_impl="skimage", round_y=False),
}


def get_convention(convention: str | Convention) -> Convention:
    """Look a convention up by name (a `Convention` passes through)."""
    if isinstance(convention, Convention):
        return convention
    try:
        return CONVENTIONS[convention]
    except KeyError:
        raise ValueError(f"unknown metric convention {convention!r}; known: {sorted(CONVENTIONS)}") from None


def convention_tags(convention: str | Convention = "paper", scale: int = 8) -> dict[str, str]:
    """The MLflow tags that say how a run's PSNR/SSIM were measured (DESIGN.md: written on every run)."""
    conv = get_convention(convention)
    return {
        "metric.convention": conv.name,
        "metric.y_channel": "bt601-matlab" if conv.y_channel else "rgb",
        "metric.crop_border": str(conv.border(scale)),
        "metric.ssim_impl": conv.ssim_impl,
        "metric.round_y": str(conv.round_y).lower(),
    }


def rgb_to_y(rgb_uint8: np.ndarray, round_y: bool = True) -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` luma of uint8 RGB images.

    Args:
        rgb_uint8: uint8 [..., 3] RGB (channels last) in 0..255.
        round_y: round to integers (half to even, as numpy), as MATLAB does for uint8 input.

    Returns:
        float64 [...] Y in [16, 235].
    """
    # Same operation order as the reference scripts, so the rounding of Y is bit-identical to theirs.
    y = np.dot(rgb_uint8.astype(np.float64), _Y_WEIGHTS) / 255.0 + 16.0
    return np.round(y) if round_y else y


def _prepare(images: Tensor, conv: Convention, scale: int) -> np.ndarray:
    """uint8-round, crop and convert a float batch: float64 [B, H', W'] (Y) or [B, H', W', 3] (RGB) in 0..255."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected a float [B, 3, H, W] RGB batch in [0, 1], got shape {tuple(images.shape)}")
    u8 = to_uint8(images.detach(), channels_last=True).cpu().numpy()
    b = conv.border(scale)
    if b > 0:
        u8 = u8[:, b:-b, b:-b, :]
    return rgb_to_y(u8, conv.round_y) if conv.y_channel else u8.astype(np.float64)


def _check_pair(sr: Tensor, hr: Tensor) -> None:
    if sr.shape != hr.shape:
        raise ValueError(f"SR {tuple(sr.shape)} and HR {tuple(hr.shape)} shapes differ")


def psnr(sr: Tensor, hr: Tensor, convention: str | Convention = "paper", scale: int = 8) -> np.ndarray:
    """Peak signal-to-noise ratio per image, peak 255.

    Args:
        sr: float [B, 3, H, W] RGB in [0, 1], the super-resolved faces.
        hr: float [B, 3, H, W] RGB in [0, 1], the ground truth.
        convention: a name in `CONVENTIONS` or a `Convention`.
        scale: the SR factor (sets the crop of conventions with ``crop_border="scale"``).

    Returns:
        float64 [B] in dB. Identical images (zero error after rounding) give ``inf``, as scikit-image and the
        reference scripts do; average with care (the paper's test sets never contain such a pair).
    """
    _check_pair(sr, hr)
    conv = get_convention(convention)
    a, b = _prepare(sr, conv, scale), _prepare(hr, conv, scale)
    mse = ((a - b) ** 2).reshape(len(a), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(255.0**2 / mse)


def ssim(sr: Tensor, hr: Tensor, convention: str | Convention = "paper", scale: int = 8) -> np.ndarray:
    """Structural similarity per image, on the data range 255.

    Args:
        sr: float [B, 3, H, W] RGB in [0, 1], the super-resolved faces.
        hr: float [B, 3, H, W] RGB in [0, 1], the ground truth.
        convention: a name in `CONVENTIONS` or a `Convention`.
        scale: the SR factor (sets the crop of conventions with ``crop_border="scale"``).

    Returns:
        float64 [B], 1.0 for identical images. On RGB the three channels' SSIMs are averaged.
    """
    _check_pair(sr, hr)
    conv = get_convention(convention)
    a, b = _prepare(sr, conv, scale), _prepare(hr, conv, scale)
    kwargs: dict = {"data_range": 255.0, "channel_axis": None if conv.y_channel else -1}
    if conv.ssim_impl == "gaussian":
        # scikit-image's Gaussian variant with these options is BasicSR's / Wang et al.'s SSIM: an 11x11 window
        # (radius int(3.5 * 1.5 + 0.5) = 5) and the mean over the valid region.
        kwargs.update(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    elif conv.ssim_impl != "skimage":
        raise ValueError(f"unknown ssim_impl {conv.ssim_impl!r}")
    return np.array([structural_similarity(x, y, **kwargs) for x, y in zip(a, b, strict=True)], dtype=np.float64)


def _quantised(images: Tensor) -> Tensor:
    """The float image that the uint8 file on disk would decode to: float32 [B, 3, H, W] in [0, 1]."""
    return to_uint8(images).to(torch.float32) / 255.0


# The torchvision ImageNet weights of each LPIPS trunk (what `lpips` would download).
_LPIPS_TRUNK_WEIGHTS = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights", "squeeze": "SqueezeNet1_1_Weights"}


class LPIPSMetric:
    """LPIPS (Zhang et al., CVPR 2018) per image, with the `lpips` package's calibrated linear layers.

    The `lpips` package ships its linear layers but takes the trunk (AlexNet by default) from torchvision's
    ImageNet weights, downloaded at run time. Offline, give the trunk as a local file or let torchvision find it
    in its cache (``$TORCH_HOME/hub/checkpoints``); otherwise construction fails with instructions.

    Args:
        net: ``"alex"`` (the paper's choice), ``"vgg"`` or ``"squeeze"``.
        trunk_weights: a torchvision state dict of the trunk (e.g. ``alexnet-owt-7be5be79.pth``).
        allow_random_trunk: use a randomly initialised trunk when no weights are given. For plumbing tests
            only: the values are meaningless.
        device: where the network runs.
    """

    def __init__(
        self,
        net: str = "alex",
        trunk_weights: str | Path | None = None,
        allow_random_trunk: bool = False,
        device: str | torch.device = "cpu",
    ) -> None:
        import lpips  # imported here: it pulls in torchvision models, too slow for `import llvfsr.metrics`

        if net not in _LPIPS_TRUNK_WEIGHTS:
            raise ValueError(f"net must be one of {sorted(_LPIPS_TRUNK_WEIGHTS)}, got {net!r}")
        self.net = net
        self.random_trunk = False
        state = self._trunk_state(net, trunk_weights)
        if state is None:
            if not allow_random_trunk:
                raise RuntimeError(self._missing_weights_message(net))
            self.random_trunk = True
            log.warning("LPIPS with a RANDOM %s trunk: values are meaningless (plumbing tests only)", net)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's deprecation notice for lpips' `pretrained=False`
            # pnet_rand=True builds the trunk without downloading; the linear layers come from the package.
            model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        if state is not None:
            _load_trunk(model.net, state)
        self.model = model.eval().to(device)
        self.device = torch.device(device)

    @staticmethod
    def _trunk_state(net: str, trunk_weights: str | Path | None) -> dict[str, Tensor] | None:
        if trunk_weights is not None:
            return torch.load(trunk_weights, map_location="cpu", weights_only=True)
        import torchvision

        weights = getattr(torchvision.models, _LPIPS_TRUNK_WEIGHTS[net]).IMAGENET1K_V1
        try:  # from torchvision's cache; offline and uncached this fails fast
            return weights.get_state_dict(progress=False)
        except OSError as err:  # URLError is an OSError
            log.info("torchvision %s weights unavailable: %s", net, err)
            return None

    @staticmethod
    def _missing_weights_message(net: str) -> str:
        import torchvision

        url = getattr(torchvision.models, _LPIPS_TRUNK_WEIGHTS[net]).IMAGENET1K_V1.url
        return (
            f"LPIPS needs the torchvision ImageNet weights of its {net} trunk, and they could not be loaded "
            f"(offline?). Download {url} on a machine with network access and either pass "
            f"trunk_weights=PATH (LPIPSMetric / Evaluator(lpips_trunk_weights=PATH)) or put the file in "
            f"$TORCH_HOME/hub/checkpoints/ (default ~/.cache/torch/hub/checkpoints/)."
        )

    @torch.no_grad()
    def __call__(self, sr: Tensor, hr: Tensor) -> np.ndarray:
        """LPIPS distance per image (lower is closer).

        Args:
            sr: float [B, 3, H, W] RGB in [0, 1]; rounded to uint8 levels first, as saved images are.
            hr: float [B, 3, H, W] RGB in [0, 1], the ground truth.

        Returns:
            float64 [B].
        """
        _check_pair(sr, hr)
        x, y = _quantised(sr).to(self.device), _quantised(hr).to(self.device)
        return self.model(x, y, normalize=True).flatten().double().cpu().numpy()


def _load_trunk(lpips_trunk: torch.nn.Module, torchvision_state: dict[str, Tensor]) -> None:
    """Copy a torchvision ``features`` state dict into `lpips`' sliced trunk.

    `lpips` splits ``features`` into ``slice1..N`` whose children keep their index in ``features`` as name.
    """
    loaded = set()
    for slice_module in lpips_trunk.children():
        for index, layer in slice_module.named_children():
            prefix = f"features.{index}."
            own = {k[len(prefix) :]: v for k, v in torchvision_state.items() if k.startswith(prefix)}
            layer.load_state_dict(own, strict=True)
            loaded.update(prefix + k for k in own)
    expected = {k for k in torchvision_state if k.startswith("features.")}
    if not expected or loaded != expected:
        raise ValueError(f"trunk state dict does not match the LPIPS trunk (missing {sorted(expected - loaded)[:4]})")


ASSETS_DIR = Path(__file__).with_name("assets")
DEFAULT_NIQE_PARAMS = "niqe_pris_params.npz"


def load_niqe_params(params_path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The pristine multivariate-Gaussian model of NIQE: (mu [36], cov [36, 36]), float64.

    Args:
        params_path: ``None`` for the bundled file (NIQE's MATLAB release parameters as redistributed by BasicSR,
            see ``llvfsr/assets/NOTICE-niqe.txt``), a BasicSR-style ``.npz`` (``mu_pris_param``,
            ``cov_pris_param``) or a MATLAB/pyiqa ``.mat`` (``mu_prisparam``, ``cov_prisparam``).
    """
    if params_path is None:
        params_path = ASSETS_DIR / DEFAULT_NIQE_PARAMS
    path = Path(params_path)
    if path.suffix == ".npz":
        data = dict(np.load(path))
        return np.ravel(data["mu_pris_param"]).astype(np.float64), data["cov_pris_param"].astype(np.float64)
    import scipy.io

    data = scipy.io.loadmat(path)
    return np.ravel(data["mu_prisparam"]).astype(np.float64), data["cov_prisparam"].astype(np.float64)


NIQE_MIN_SIZE = 192  # two 96x96 blocks per side at full size, so that the half-size scale has blocks too


class NIQEMetric:
    """NIQE (Mittal et al., 2013) per image, computed by pyiqa with a local pristine-parameter file.

    pyiqa downloads its parameter file at run time; here it reads the bundled one instead, so NIQE works offline.
    pyiqa's defaults are kept (luma of YIQ, rounded to 0..255 levels; 96x96 blocks; two scales).

    Args:
        params_path: see `load_niqe_params`; ``None`` for the bundled file.
        device: where the computation runs.
        color_space: pyiqa's luma definition, ``"yiq"`` (pyiqa's default) or ``"ycbcr"`` (MATLAB/BasicSR's).
    """

    def __init__(
        self, params_path: str | Path | None = None, device: str | torch.device = "cpu", color_space: str = "yiq"
    ) -> None:
        import scipy.io
        from pyiqa.archs.niqe_arch import NIQE  # lazy: pyiqa imports many model definitions

        mu, cov = load_niqe_params(params_path)
        # pyiqa's NIQE reads its parameters with scipy.io.loadmat, which also accepts a file object.
        mat = io.BytesIO()
        scipy.io.savemat(mat, {"mu_prisparam": mu[None, :], "cov_prisparam": cov})
        mat.seek(0)
        self.model = NIQE(test_y_channel=True, color_space=color_space, pretrained_model_path=mat).eval().to(device)
        self.device = torch.device(device)

    @torch.no_grad()
    def __call__(self, sr: Tensor) -> np.ndarray:
        """NIQE per image (lower is more natural).

        Args:
            sr: float [B, 3, H, W] RGB in [0, 1], at least 192x192 (two 96x96 blocks at half size);
                rounded to uint8 levels first, as saved images are.

        Returns:
            float64 [B].
        """
        if sr.ndim != 4 or sr.shape[1] != 3 or min(sr.shape[-2:]) < NIQE_MIN_SIZE:
            raise ValueError(f"NIQE needs a [B, 3, H, W] batch with H, W >= {NIQE_MIN_SIZE}, got {tuple(sr.shape)}")
        score = self.model(_quantised(sr).to(self.device))  # float32, as pyiqa is normally fed
        return score.reshape(-1).double().cpu().numpy()


METRIC_NAMES = ("psnr", "ssim", "lpips", "niqe")


class Evaluator:
    """All image-quality metrics of a batch, per image, under one convention.

    LPIPS or NIQE that cannot be built offline (missing weights) are skipped with a logged warning, and the
    reason is kept in `unavailable` (name -> reason) so that a run can record it instead of a number.

    Args:
        convention: PSNR/SSIM convention, a name in `CONVENTIONS` or a `Convention`.
        scale: the SR factor.
        metrics: which of ``METRIC_NAMES`` to compute.
        device: where LPIPS and NIQE run.
        lpips_trunk_weights: local torchvision weights of the LPIPS trunk (see `LPIPSMetric`).
        allow_random_lpips_trunk: tests only: LPIPS with a random trunk rather than none.
        niqe_params_path: NIQE's pristine parameters; ``None`` for the bundled file.
    """

    def __init__(
        self,
        convention: str | Convention = "paper",
        scale: int = 8,
        metrics: tuple[str, ...] = METRIC_NAMES,
        device: str | torch.device = "cpu",
        lpips_trunk_weights: str | Path | None = None,
        allow_random_lpips_trunk: bool = False,
        niqe_params_path: str | Path | None = None,
    ) -> None:
        unknown = set(metrics) - set(METRIC_NAMES)
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}; known: {METRIC_NAMES}")
        self.convention = get_convention(convention)
        self.scale = scale
        self.metrics = tuple(metrics)
        self.unavailable: dict[str, str] = {}
        self.lpips: LPIPSMetric | None = None
        self.niqe: NIQEMetric | None = None
        if "lpips" in metrics:
            try:
                self.lpips = LPIPSMetric(
                    trunk_weights=lpips_trunk_weights, allow_random_trunk=allow_random_lpips_trunk, device=device
                )
            except (RuntimeError, OSError, ImportError) as err:
                self._skip("lpips", err)
        if "niqe" in metrics:
            try:
                self.niqe = NIQEMetric(params_path=niqe_params_path, device=device)
            except (RuntimeError, OSError, ImportError, KeyError) as err:
                self._skip("niqe", err)

    def _skip(self, name: str, err: BaseException) -> None:
        self.unavailable[name] = f"{type(err).__name__}: {err}"
        log.warning("metric %s unavailable, skipped: %s", name, self.unavailable[name])

    @property
    def tags(self) -> dict[str, str]:
        """Convention tags plus ``metric.<name>.unavailable`` reasons, for the MLflow run."""
        tags = convention_tags(self.convention, self.scale)
        tags.update({f"metric.{name}.unavailable": reason[:500] for name, reason in self.unavailable.items()})
        return tags

    def __call__(self, sr: Tensor, hr: Tensor) -> dict[str, np.ndarray]:
        """Per-image metrics of a batch.

        Args:
            sr: float [B, 3, H, W] RGB in [0, 1], the super-resolved faces.
            hr: float [B, 3, H, W] RGB in [0, 1], the ground truth.

        Returns:
            name -> float64 [B] for each available metric (unavailable ones are absent).
        """
        _check_pair(sr, hr)
        out: dict[str, np.ndarray] = {}
        if "psnr" in self.metrics:
            out["psnr"] = psnr(sr, hr, self.convention, self.scale)
        if "ssim" in self.metrics:
            out["ssim"] = ssim(sr, hr, self.convention, self.scale)
        if self.lpips is not None:
            out["lpips"] = self.lpips(sr, hr)
        if self.niqe is not None and min(sr.shape[-2:]) < NIQE_MIN_SIZE:
            # Small images (quick synthetic runs) cannot be scored: record why rather than fail the evaluation.
            self._skip("niqe", ValueError(f"images of {tuple(sr.shape[-2:])} are below NIQE's {NIQE_MIN_SIZE} px"))
            self.niqe = None
        if self.niqe is not None:
            out["niqe"] = self.niqe(sr)
        return out
