"""FSRNet: coarse SR, then a fine SR encoder-decoder guided by estimated landmark heatmaps and parsing maps.

Paper: Y. Chen, Y. Tai, X. Liu, C. Shen, J. Yang, "FSRNet: End-to-End Learning Face Super-Resolution with Facial
Priors", CVPR 2018 (Sec. 3). There is no official code; community ports disagree (e.g. cydiachen/FSRNET_pytorch
feeds the decoder the 128 hourglass features rather than the estimated priors), so this follows the paper, where
the decoder reads the image features and the priors, y = D(f, p). Every line is written here.

Structure (paper sizes for 128 HR; all sizes scale with the input, nothing is hard-coded):
- input: the LR face bicubic-upsampled to HR (inside the model, `upsample_bicubic`: MATLAB's kernel);
- coarse SR network: 3x3 conv (64) + 3 residual blocks + 3x3 conv -> coarse HR image y_c;
- fine SR encoder: 3x3 conv with stride 2 (to HR / 2) + 12 residual blocks -> image features f;
- prior estimation network: 7x7 conv with stride 2 (to HR / 2) + 3 bottleneck residual blocks (to 128 channels)
  + 2 stacked hourglass modules, then 1x1 convs to the priors p: 68 landmark heatmaps and 11 parsing maps;
- fine SR decoder: concat(f, p) -> 3x3 conv (64) + 4x4 deconv with stride 2 (to HR) + 3 residual blocks +
  3x3 conv -> the output image.
Residual blocks are conv-BN-ReLU-conv-BN with an identity skip; hourglass blocks are Newell et al.'s
pre-activation bottlenecks (BN-ReLU-conv 1x1, 3x3, 1x1) with nearest-neighbour up-sampling.

Loss (paper Sec. 3): (1 / 2N) sum ||y_c - y||^2 + ||y_f - y||^2 + lambda ||p - p_hat||^2 with lambda = 1. The train
loop's MSE on y_f gives the second term; `auxiliary_loss` returns the first and third, normalised by the same
count of image values (N * 3 * H * W) so that the paper's relative weights hold.

Deviations, and why:
- Parsing targets: the paper's 11 Helen-style parsing maps, grouped from the 19 CelebAMask-HQ ids of
  ``Priors.mask`` (see `PARSING_GROUPS`: ears and eyeglasses count as skin; hat, earring, necklace, neck and
  cloth as background), as soft maps (one-hot, area-averaged to HR / 2). The paper's targets came from external
  landmark and parsing estimators.
- Heatmap targets: Gaussians with sigma = max(1, hr_size / 128) heatmap pixels (the paper does not state sigma).
- 256 HR instead of 128: the same network, so priors are 128 x 128 (the paper's HR / 2). x16 (16 -> 256) uses the
  same network on the bicubic-upsampled input, the natural extension of a bicubic-input model.
- No tanh / clamping of outputs; PyTorch's default initialisation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llvfsr.data.degrade import upsample_bicubic
from llvfsr.heatmaps import render_heatmaps, require_target
from llvfsr.models.hourglass import Hourglass
from llvfsr.priors.types import MASK_CLASSES, NUM_LANDMARKS, NUM_MASK_CLASSES, Priors

# The paper's 11 parsing maps (Helen's labels) and which CelebAMask-HQ classes each gathers.
PARSING_GROUPS: dict[str, tuple[str, ...]] = {
    "background": ("background", "hat", "ear_r", "neck_l", "neck", "cloth"),
    "skin": ("skin", "l_ear", "r_ear", "eye_g"),
    "l_brow": ("l_brow",),
    "r_brow": ("r_brow",),
    "l_eye": ("l_eye",),
    "r_eye": ("r_eye",),
    "nose": ("nose",),
    "u_lip": ("u_lip",),
    "inner_mouth": ("mouth",),
    "l_lip": ("l_lip",),
    "hair": ("hair",),
}
NUM_PARSING_MAPS = len(PARSING_GROUPS)


def mask_to_parsing_ids(mask: Tensor) -> Tensor:
    """Map CelebAMask-HQ ids (long [B, H, W], values < 19) to the 11 parsing-group ids (same shape)."""
    lookup = torch.empty(NUM_MASK_CLASSES, dtype=torch.long)
    for group_id, names in enumerate(PARSING_GROUPS.values()):
        for name in names:
            lookup[MASK_CLASSES.index(name)] = group_id
    return lookup.to(mask.device)[mask]


def parsing_targets(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """Soft parsing maps float [B, 11, h, w] in [0, 1] (summing to 1 per pixel) from a [B, H, W] label map."""
    one_hot = F.one_hot(mask_to_parsing_ids(mask), NUM_PARSING_MAPS).permute(0, 3, 1, 2).float()
    return F.interpolate(one_hot, size=size, mode="area")


def _conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class ResBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus identity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn_relu(channels, channels),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Bottleneck(nn.Module):
    """Newell et al.'s pre-activation bottleneck residual, with a 1x1 skip when the widths differ."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        mid = cout // 2
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.ReLU(inplace=True),
            nn.Conv2d(cin, mid, 1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 1),
        )
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.body(x)


class PriorEstimator(nn.Module):
    """Coarse HR image -> (landmark heatmaps [B, 68, H/2, W/2], parsing maps [B, 11, H/2, W/2])."""

    def __init__(self, width: int, prior_width: int, num_stacks: int, depth: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            _conv_bn_relu(3, width, 7, 2),
            Bottleneck(width, prior_width),
            Bottleneck(prior_width, prior_width),
            Bottleneck(prior_width, prior_width),
        )
        self.stacks = nn.Sequential(
            *[
                nn.Sequential(
                    Hourglass(depth, prior_width, Bottleneck),
                    Bottleneck(prior_width, prior_width),
                    _conv_bn_relu(prior_width, prior_width, 1),
                )
                for _ in range(num_stacks)
            ]
        )
        self.to_heatmaps = nn.Conv2d(prior_width, NUM_LANDMARKS, 1)
        self.to_parsing = nn.Conv2d(prior_width, NUM_PARSING_MAPS, 1)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        features = self.stacks(self.stem(image))
        return self.to_heatmaps(features), self.to_parsing(features)


class FSRNet(nn.Module):
    """FSRNet: see the module docstring. Input float RGB NCHW in [0, 1], [B, 3, h, w]; output [B, 3, h*s, w*s].

    After each forward, ``self.aux`` holds ``coarse`` ([B, 3, H, W]), ``heatmaps`` ([B, 68, H/2, W/2]) and
    ``parsing`` ([B, 11, H/2, W/2]).
    """

    def __init__(
        self,
        scale: int = 8,
        hr_size: int = 256,
        width: int = 64,
        num_blocks: int = 12,
        num_coarse_blocks: int = 3,
        num_decoder_blocks: int = 3,
        prior_width: int | None = None,
        hg_stacks: int = 2,
        hg_depth: int = 4,
        heatmap_sigma: float | None = None,
        prior_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if hr_size % scale:
            raise ValueError(f"FSRNet: hr_size {hr_size} is not a multiple of scale {scale}")
        self.scale, self.hr_size, self.prior_weight = scale, hr_size, prior_weight
        # At least one heatmap pixel: below that (HR < 128) the Gaussian target is a sub-pixel spike.
        self.heatmap_sigma = max(1.0, hr_size / 128) if heatmap_sigma is None else heatmap_sigma
        prior_width = prior_width or 2 * width
        self.coarse = nn.Sequential(
            _conv_bn_relu(3, width), *[ResBlock(width) for _ in range(num_coarse_blocks)], nn.Conv2d(width, 3, 3, 1, 1)
        )
        self.encoder = nn.Sequential(_conv_bn_relu(3, width, 3, 2), *[ResBlock(width) for _ in range(num_blocks)])
        self.prior = PriorEstimator(width, prior_width, hg_stacks, hg_depth)
        self.decoder = nn.Sequential(
            _conv_bn_relu(width + NUM_LANDMARKS + NUM_PARSING_MAPS, width),
            nn.ConvTranspose2d(width, width, 4, 2, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            *[ResBlock(width) for _ in range(num_decoder_blocks)],
            nn.Conv2d(width, 3, 3, 1, 1),
        )
        self.aux: dict[str, Tensor] = {}

    def forward(self, lr: Tensor, priors: Priors | None = None) -> Tensor:
        """Super-resolve [B, 3, h, w] -> [B, 3, h*scale, w*scale]; float RGB in [0, 1]."""
        coarse = self.coarse(upsample_bicubic(lr, self.scale))
        heatmaps, parsing = self.prior(coarse)
        out = self.decoder(torch.cat((self.encoder(coarse), heatmaps, parsing), 1))
        self.aux = {"coarse": coarse, "heatmaps": heatmaps, "parsing": parsing}
        return out

    def auxiliary_loss(self, hr: Tensor, priors: Priors | None) -> Tensor:
        """Coarse-image MSE plus lambda * prior L2, both per HR image value (paper Eq. 5 next to an MSE on y_f).

        Args:
            hr: the HR batch of the last forward, float RGB NCHW in [0, 1].
            priors: needs ``landmarks`` (float [B, 68, 2], HR pixels) and ``mask`` (long [B, H, W], 19 ids).
        """
        landmarks = require_target(priors, "landmarks", "FSRNet")
        mask = require_target(priors, "mask", "FSRNet")
        if "heatmaps" not in self.aux:
            raise RuntimeError("FSRNet.auxiliary_loss reads the outputs of the last forward; call forward first")
        heatmaps, parsing = self.aux["heatmaps"], self.aux["parsing"]
        heat_size = tuple(heatmaps.shape[-2:])
        heat_target = render_heatmaps(landmarks, tuple(hr.shape[-2:]), heat_size, self.heatmap_sigma)
        prior_sq = (heatmaps - heat_target).square().sum() + (parsing - parsing_targets(mask, heat_size)).square().sum()
        return F.mse_loss(self.aux["coarse"], hr) + self.prior_weight * prior_sq / hr.numel()


def build(scale: int = 8, hr_size: int = 256, **overrides) -> FSRNet:
    """FSRNet at the paper's size (width 64, 12 encoder blocks, 2 hourglasses of depth 4 at 128 channels).

    Overrides: width, num_blocks (fine-encoder residual blocks), num_coarse_blocks, num_decoder_blocks,
    prior_width, hg_stacks, hg_depth, heatmap_sigma, prior_weight.
    """
    return FSRNet(scale=scale, hr_size=hr_size, **overrides)
