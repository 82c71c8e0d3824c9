"""DIC: deep iterative collaboration of a recurrent SR branch and a landmark-estimation branch (Table 1 baseline).

Paper: C. Ma, Z. Jiang, Y. Rao, J. Lu, J. Zhou, "Deep Face Super-Resolution with Iterative Collaboration between
Attentive Recovery and Landmark Estimation", CVPR 2020. Facts (layer counts, widths, where up-sampling happens,
loss weights) follow the authors' code, github.com/Maclory/Deep-Iterative-Collaboration (``code/networks/
dic_arch.py``, ``srfbn_arch.py``, ``srfbn_hg_arch.py``, ``blocks.py``, ``modules/StackedHourGlass.py``,
``options/train/train_DIC_CelebA.json``); every line here is written anew.

Structure (x8, 128 HR in the paper; here 256 HR): a 3x3 conv to 4 * width channels and a 2x PixelShuffle lift the
LR image to features at HR / 4. For `num_steps` steps a feedback block (SRFBN-style dense up/down projections,
`num_groups` groups) refines them: step 0 uses its own first block; later steps feed back the previous block
output and fuse the features with attention from the previous landmark heatmaps (68 maps merged into 5 parts,
softmax over parts, `num_fusion_blocks` grouped residual blocks). Each step decodes an image (deconv x4 + conv,
added to a bilinear up-sampling of the LR input, bilinear as in the authors' code) and a recurrent hourglass
estimates 68 heatmaps at HR / 4 from it, carrying its own hidden state to the next step. The authors' code builds
the projections with SRFBN's x8 setting (12x12 kernels, stride 8: HR / 4 <-> 2 HR), not the 4x that its
PixelShuffle comment suggests: the 24 projections hold 7.96 M of DIC's 21.80 M parameters (3.54 M at 8x8
kernels), so it is kept (``projection_scale=4`` gives the cheaper reading, 4.42 M fewer parameters).

Loss (as in the authors' solver): sum over steps of L1(SR_t, HR) + 0.1 * MSE(heatmap_t, Gaussian targets, sigma 1
at 32 x 32 for 128 HR). The train loop's pixel loss covers the last step; `auxiliary_loss` adds the other steps'
L1 terms and all alignment terms, so train-loop L1 + `auxiliary_loss` is the authors' total loss.

Deviations, and why:
- x16 is not in the authors' code (it raises for any scale but 8). The natural extension keeps every block as
  at x8 and lets the first PixelShuffle take the extra factor: PixelShuffle(scale / 4), 4x at x16, so features
  and heatmaps stay at HR / 4 and the parameter count is that of x8 (only the first conv widens).
- 256 HR instead of 128: heatmaps are HR / 4 = 64 x 64 (the authors' HR / 4 ratio); the Gaussian sigma scales
  with the image, sigma = max(1, hr_size / 128) heatmap pixels (1 at the authors' 128).
- The authors initialise the hourglass from a pretrained landmark model (``FB_HG_68_CelebA.pth``, by its name the
  same feedback hourglass trained on CelebA) and freeze it for the first 2000 iterations. That checkpoint cannot
  be fetched here, so `DIC.warm_up` (called by the train loop before the first epoch) pretrains the hourglass alone
  on the train split's HR faces and landmarks (`hourglass_pretrain_steps` Adam steps at `hourglass_pretrain_lr`,
  every recurrent step scored; on 64 px synthetic faces 600 steps reach 4.4 px held-out error at 1e-3, 8.0 px at
  3e-4), and the freeze then holds its weights for `hourglass_freeze_steps` training steps (their gradients are
  zeroed, so DDP still sees every parameter, and `attach_optimizer` keeps them out of Adam's state as the
  authors' ``requires_grad = False`` does). Trained from scratch end to end instead, the head barely beat chance
  on a short CPU run (24.7 px error at 64 px against 26.8 px for a uniform guess). Weights use PyTorch's default
  initialisation.
- Heatmap coordinates are centre-aligned (`llvfsr.heatmaps`: HR x -> (x + 0.5) / 4 - 0.5); the authors' targets
  sit at x / 4, a 0.375-cell offset. ``heatmap_convention="authors"`` switches to theirs, and
  `llvfsr.models.load_official` sets it for their weights and their hourglass (``load_official("dic-hourglass",
  "FB_HG_68_CelebA.pth")`` replaces the pretraining above and starts the freeze, as the authors do).
- The input mean shift (CelebA mean 0.509, 0.424, 0.378, done in the authors' data loader) happens inside the
  model, so inputs and outputs are plain [0, 1] RGB.
- The 68 -> 5 part merge and the hourglass residual block without batch norm (no ReLU between its 3x3 and last
  1x1 conv) mirror the authors' code as is.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from llvfsr.heatmaps import landmark_error, render_heatmaps, require_target
from llvfsr.models.hourglass import Hourglass
from llvfsr.models.official import OfficialFormat, rename
from llvfsr.priors.types import NUM_LANDMARKS, Priors

CELEBA_RGB_MEAN = (0.509, 0.424, 0.378)  # the authors' data-loader normalisation
# SRFBN's projection kernels (kernel, stride, padding) per projection factor: one stride-s step keeps sizes exact.
PROJECTION_KERNELS = {2: (6, 2, 2), 3: (7, 3, 2), 4: (8, 4, 2), 8: (12, 8, 2)}
# 68-point iBUG layout grouped into DIC's five attention parts (left eye, right eye, nose, mouth, silhouette+brows).
PART_SLICES = (slice(36, 42), slice(42, 48), slice(27, 36), slice(48, 68), slice(0, 27))


def _act(kind: str | None) -> nn.Module:
    if kind == "prelu":
        return nn.PReLU(init=0.2)
    if kind == "lrelu":
        return nn.LeakyReLU(0.2, inplace=True)
    return nn.Identity()


def _conv(
    cin: int, cout: int, k: int, act: str | None = "prelu", stride: int = 1, padding: int | None = None, groups: int = 1
) -> nn.Sequential:
    padding = (k - 1) // 2 if padding is None else padding
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding, groups=groups), _act(act))


def _deconv(cin: int, cout: int, k: int, stride: int, padding: int, act: str | None = "prelu") -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, k, stride, padding), _act(act))


def merge_heatmaps_to_parts(heatmaps: Tensor) -> Tensor:
    """Normalise each of the 68 heatmaps by its peak (at least 0.05) and sum them into 5 part maps [B, 5, h, w]."""
    peak = heatmaps.amax(dim=(2, 3), keepdim=True).clamp_min(0.05)
    normalised = heatmaps / peak
    return torch.stack([normalised[:, part].sum(1) for part in PART_SLICES], dim=1)


class GroupedResBlock(nn.Module):
    """conv3x3 + LeakyReLU + conv3x3 with a skip, grouped so each part keeps its own features."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(channels, channels, 3, "lrelu", groups=groups), _conv(channels, channels, 3, None, groups=groups)
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class HeatmapAttentionFusion(nn.Module):
    """Split features into one copy per face part and sum them weighted by softmax part attention."""

    def __init__(self, width: int, num_parts: int = 5, num_blocks: int = 7) -> None:
        super().__init__()
        self.num_parts = num_parts
        self.expand = _conv(width, width * num_parts, 1, "lrelu")
        self.body = nn.Sequential(*[GroupedResBlock(width * num_parts, num_parts) for _ in range(num_blocks)])

    def forward(self, features: Tensor, parts: Tensor) -> Tensor:
        b, _, h, w = features.shape
        per_part = self.body(self.expand(features)).view(b, self.num_parts, -1, h, w)
        attention = torch.softmax(parts, dim=1).unsqueeze(2)
        return (per_part * attention).sum(1)


class FeedbackBlock(nn.Module):
    """SRFBN's projection groups: dense up (deconv) / down (conv) projections by `projection_scale`.

    Args:
        width: feature channels.
        num_groups: number of up/down projection pairs.
        in_channels: channels entering the 1x1 compression (width for the first step, 2 * width after).
        projection_scale: factor of each up/down projection (a key of `PROJECTION_KERNELS`).
        fusion: heatmap attention applied after compression (steps after the first), or None.
    """

    def __init__(
        self,
        width: int,
        num_groups: int,
        in_channels: int,
        projection_scale: int = 8,
        fusion: HeatmapAttentionFusion | None = None,
    ) -> None:
        super().__init__()
        k, s, p = PROJECTION_KERNELS[projection_scale]
        self.compress_in = _conv(in_channels, width, 1)
        self.fusion = fusion
        self.up = nn.ModuleList([_deconv(width, width, k, s, p) for _ in range(num_groups)])
        self.down = nn.ModuleList([_conv(width, width, k, stride=s, padding=p) for _ in range(num_groups)])
        self.up_transition = nn.ModuleList([_conv(width * (i + 1), width, 1) for i in range(1, num_groups)])
        self.down_transition = nn.ModuleList([_conv(width * (i + 1), width, 1) for i in range(1, num_groups)])
        self.compress_out = _conv(num_groups * width, width, 1)

    def forward(self, x: Tensor, parts: Tensor | None = None) -> Tensor:
        x = self.compress_in(x)
        if self.fusion is not None:
            x = self.fusion(x, parts)
        low, high = [x], []
        for i, (up, down) in enumerate(zip(self.up, self.down, strict=True)):
            lo = torch.cat(low, 1)
            high.append(up(self.up_transition[i - 1](lo) if i else lo))
            hi = torch.cat(high, 1)
            low.append(down(self.down_transition[i - 1](hi) if i else hi))
        return self.compress_out(torch.cat(low[1:], 1))


class HGResidual(nn.Module):
    """The authors' batch-norm-free bottleneck residual: 1x1 + ReLU, 3x3, 1x1, with a 1x1 skip if widths differ."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        mid = cout // 2
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 1), nn.ReLU(inplace=True), nn.Conv2d(mid, mid, 3, padding=1), nn.Conv2d(mid, cout, 1)
        )
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.body(x)


class FeedbackHourglass(nn.Module):
    """Recurrent landmark estimator: SR image -> 68 heatmaps at 1/4 size, plus a hidden state for the next step."""

    def __init__(self, width: int = 256, num_landmarks: int = NUM_LANDMARKS, depth: int = 4) -> None:
        super().__init__()
        self.width = width
        self.stem = nn.Sequential(
            nn.Conv2d(3, width // 4, 7, 2, 3),
            nn.ReLU(inplace=True),
            HGResidual(width // 4, width // 2),
            nn.MaxPool2d(2),
            HGResidual(width // 2, width // 2),
            HGResidual(width // 2, width),
        )
        self.compress_in = nn.Conv2d(2 * width, 2 * width, 1)
        self.hourglass = Hourglass(depth, 2 * width, HGResidual, upsample="bilinear")  # as in the authors' code
        self.head = nn.Sequential(
            HGResidual(width, width),
            nn.Conv2d(width, width, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, num_landmarks, 1),
        )

    def forward(self, image: Tensor, hidden: Tensor | None = None) -> tuple[Tensor, Tensor]:
        feature = self.stem(image)
        feature = self.hourglass(self.compress_in(torch.cat((feature, feature if hidden is None else hidden), 1)))
        return self.head(feature[:, : self.width]), feature[:, self.width :]


class DIC(nn.Module):
    """DIC: see the module docstring. Input float RGB NCHW in [0, 1], [B, 3, h, w]; output [B, 3, h*s, w*s].

    After each forward, ``self.aux`` holds ``heatmaps`` (last step, [B, 68, H/4, W/4]), ``heatmap_steps``
    ([B, T, 68, H/4, W/4]) and ``sr_steps`` (the T-1 earlier images, [B, T-1, 3, H, W], [0, 1] range).
    """

    def __init__(
        self,
        scale: int = 8,
        hr_size: int = 256,
        width: int = 48,
        num_groups: int = 6,
        num_steps: int = 4,
        num_fusion_blocks: int = 7,
        hg_width: int = 256,
        hg_depth: int = 4,
        num_landmarks: int = NUM_LANDMARKS,
        heatmap_sigma: float | None = None,
        align_weight: float = 0.1,
        intermediate_pixel_loss: bool = True,
        projection_scale: int = 8,
        hourglass_pretrain_steps: int = 2000,
        hourglass_freeze_steps: int = 2000,
        hourglass_pretrain_lr: float = 1e-3,
        heatmap_convention: str = "centre",
    ) -> None:
        super().__init__()
        if scale % 4 or hr_size % scale:
            raise ValueError(f"DIC needs scale divisible by 4 and hr_size divisible by scale, got {scale}, {hr_size}")
        self.scale, self.hr_size, self.num_steps = scale, hr_size, num_steps
        # At least one heatmap pixel: below that (HR < 128) the Gaussian target is a sub-pixel spike.
        self.heatmap_sigma = max(1.0, hr_size / 128) if heatmap_sigma is None else heatmap_sigma
        self.align_weight, self.intermediate_pixel_loss = align_weight, intermediate_pixel_loss
        self.register_buffer("rgb_mean", torch.tensor(CELEBA_RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        shuffle = scale // 4  # the feedback blocks do the last 4x
        self.head = nn.Sequential(_conv(3, width * shuffle**2, 3), nn.PixelShuffle(shuffle))
        self.first_block = FeedbackBlock(width, num_groups, width, projection_scale)
        fusion = HeatmapAttentionFusion(width, 5, num_fusion_blocks)
        self.block = FeedbackBlock(width, num_groups, 2 * width, projection_scale, fusion)
        self.tail = nn.Sequential(_deconv(width, width, 8, 4, 2), _conv(width, 3, 3, None))
        self.landmark_net = FeedbackHourglass(hg_width, num_landmarks, hg_depth)
        self.aux: dict[str, Tensor] = {}
        self.hourglass_pretrain_steps, self.hourglass_pretrain_lr = hourglass_pretrain_steps, hourglass_pretrain_lr
        self.hourglass_freeze_steps = hourglass_freeze_steps
        self.heatmap_convention = heatmap_convention  # "authors" for their released weights (llvfsr.heatmaps)
        self._frozen_step = False  # whether the last training forward ran the hourglass frozen
        # Training steps the pretrained hourglass stays frozen for; set by `warm_up`, saved with checkpoints.
        self.register_buffer("hourglass_freeze_left", torch.zeros((), dtype=torch.long))

    def _estimate_landmarks(self, image: Tensor, hidden: Tensor | None, frozen: bool) -> tuple[Tensor, Tensor]:
        if not frozen:
            return self.landmark_net(image, hidden)
        # Frozen: the same weights with zero gradients (DDP still sees every parameter used; Adam, whose moments
        # start at zero, leaves them unchanged).
        held = {name: p.detach() + 0.0 * p for name, p in self.landmark_net.named_parameters()}
        return torch.func.functional_call(self.landmark_net, held, (image, hidden))

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Keep the frozen hourglass out of `optimizer`'s state, as the authors' ``requires_grad = False`` does.

        The freeze gives the hourglass zero gradients (so DDP still reduces every parameter); left at zero, Adam
        would count steps and decay moments for it, and its first updates after the release would be 2.9x (update
        1), 6.1x (10) and 3.0x (100) the authors' size. A step pre-hook drops those gradients before each frozen
        step, so Adam keeps no state for the hourglass until the release and starts it fresh then.
        """

        def drop_frozen_gradients(_optimizer, _args, _kwargs) -> None:
            if self._frozen_step:
                for parameter in self.landmark_net.parameters():
                    parameter.grad = None

        optimizer.register_step_pre_hook(drop_frozen_gradients)

    def warm_up(self, data, seed: int = 0, batch_size: int = 16, progress: bool = True) -> dict[str, float]:
        """Pretrain the landmark hourglass alone on HR faces, then start its freeze (see the module docstring).

        Args:
            data: the train split, with ``batch(index) -> (hr [B,3,H,W] in [0,1], priors with landmarks)``
                (`llvfsr.trial_data.SplitData`).
            seed: seeds the batch draws, so every DDP rank pretrains alike.

        Returns:
            ``hourglass_pretrain_loss`` (mean heatmap MSE of the last tenth of the steps) and
            ``hourglass_pretrain_error_px`` (mean landmark argmax error of the last batch, HR pixels); {} when
            `hourglass_pretrain_steps` is 0.
        """
        if self.hourglass_pretrain_steps <= 0:
            return {}
        net, device = self.landmark_net, self.rgb_mean.device
        optimizer = torch.optim.Adam(net.parameters(), lr=self.hourglass_pretrain_lr)
        generator = torch.Generator().manual_seed(seed)
        losses = []
        for _ in tqdm(range(self.hourglass_pretrain_steps), desc="DIC hourglass pretraining", disable=not progress):
            index = torch.randint(len(data), (min(batch_size, len(data)),), generator=generator).to(device)
            hr, priors = data.batch(index)
            landmarks = require_target(priors, "landmarks", "DIC.warm_up")
            x, hidden, loss = hr - self.rgb_mean, None, 0.0
            for _step in range(self.num_steps):  # scored at every recurrent step, as DIC uses it
                heatmaps, hidden = net(x, hidden)
                target = render_heatmaps(
                    landmarks,
                    tuple(hr.shape[-2:]),
                    tuple(heatmaps.shape[-2:]),
                    self.heatmap_sigma,
                    self.heatmap_convention,
                )
                loss = loss + F.mse_loss(heatmaps, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach() / self.num_steps)
        error = landmark_error(heatmaps, landmarks, tuple(hr.shape[-2:]), self.heatmap_convention).mean()
        self.hourglass_freeze_left.fill_(self.hourglass_freeze_steps)
        tail = losses[-max(1, len(losses) // 10) :]
        return {"hourglass_pretrain_loss": torch.stack(tail).mean().item(), "hourglass_pretrain_error_px": error.item()}

    def forward(self, lr: Tensor, priors: Priors | None = None) -> Tensor:
        """Super-resolve [B, 3, h, w] -> [B, 3, h*scale, w*scale]; float RGB in [0, 1]."""
        frozen = False
        if self.training and torch.is_grad_enabled():
            # One host read per training step; the buffer survives checkpoints, so a resumed run keeps the freeze.
            frozen = bool(self.hourglass_freeze_left > 0)
            if frozen:
                self.hourglass_freeze_left -= 1
            self._frozen_step = frozen
        x = lr - self.rgb_mean
        base = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        features = self.head(x)
        hidden_sr, hidden_hg, heatmaps = None, None, None
        srs, all_heatmaps = [], []
        for step in range(self.num_steps):
            if step == 0:
                hidden_sr = self.first_block(features)
            else:
                parts = merge_heatmaps_to_parts(heatmaps)
                hidden_sr = self.block(torch.cat((features, hidden_sr), 1), parts)
            sr = base + self.tail(hidden_sr)
            heatmaps, hidden_hg = self._estimate_landmarks(sr, hidden_hg, frozen)
            srs.append(sr + self.rgb_mean)
            all_heatmaps.append(heatmaps)
        self.aux = {"heatmaps": heatmaps, "heatmap_steps": torch.stack(all_heatmaps, 1)}
        if len(srs) > 1:
            self.aux["sr_steps"] = torch.stack(srs[:-1], 1)
        return srs[-1]

    def auxiliary_loss(self, hr: Tensor, priors: Priors | None) -> Tensor:
        """0.1 * sum_t MSE(heatmap_t, target) + sum_{t<T} L1(SR_t, HR), from the last forward's ``aux``.

        Args:
            hr: the HR batch of the last forward, float RGB NCHW in [0, 1].
            priors: needs ``landmarks`` (float [B, 68, 2], (x, y) in HR pixels).
        """
        landmarks = require_target(priors, "landmarks", "DIC")
        if "heatmap_steps" not in self.aux:
            raise RuntimeError("DIC.auxiliary_loss reads the outputs of the last forward; call forward first")
        steps = self.aux["heatmap_steps"]
        target = render_heatmaps(
            landmarks, tuple(hr.shape[-2:]), tuple(steps.shape[-2:]), self.heatmap_sigma, self.heatmap_convention
        )
        loss = self.align_weight * sum(F.mse_loss(steps[:, t], target) for t in range(steps.shape[1]))
        if self.intermediate_pixel_loss and "sr_steps" in self.aux:
            sr_steps = self.aux["sr_steps"]
            loss = loss + sum(F.l1_loss(sr_steps[:, t], hr) for t in range(sr_steps.shape[1]))
        return loss


def build(scale: int = 8, hr_size: int = 256, **overrides) -> DIC:
    """DIC at the authors' CelebA size (width 48, 6 groups, 4 steps, 7 fusion blocks, hourglass width 256).

    Overrides: width, num_groups (the block count), num_steps, num_fusion_blocks, hg_width, hg_depth,
    heatmap_sigma, align_weight, intermediate_pixel_loss, projection_scale (8 in the authors' code; 4 is cheaper),
    hourglass_pretrain_steps, hourglass_freeze_steps (the authors' 2000), hourglass_pretrain_lr.
    """
    return DIC(scale=scale, hr_size=hr_size, **overrides)


# The authors' released weights (`llvfsr.models.load_official`): key names of
# github.com/Maclory/Deep-Iterative-Collaboration (code/networks/dic_arch.py, srfbn_hg_arch.py, blocks.py,
# modules/architecture.py, modules/StackedHourGlass.py), x8 on 16 -> 128 faces; FB_HG_68_CelebA.pth holds the
# hourglass ("HG") alone.
_OFFICIAL_RULES = (
    (r"^head\.0\.", "conv_in."),
    (r"^tail\.0\.", "out."),
    (r"^tail\.1\.", "conv_out."),
    (r"\.up\.(\d+)\.", r".upBlocks.\1."),
    (r"\.down\.(\d+)\.", r".downBlocks.\1."),
    (r"\.up_transition\.", ".uptranBlocks."),
    (r"\.down_transition\.", ".downtranBlocks."),
    (r"\.fusion\.expand\.", ".fusion_block.conv_in."),
    (r"\.fusion\.body\.(\d+)\.body\.0\.0\.", r".fusion_block.resnet.\1.res.0."),
    (r"\.fusion\.body\.(\d+)\.body\.1\.0\.", r".fusion_block.resnet.\1.res.2."),
)
_OFFICIAL_HOURGLASS_RULES = (
    (r"^stem\.", "pre_conv_block."),
    (r"^head\.0\.", "hg_conv_out.0."),
    (r"^head\.1\.", "hg_conv_out.1.conv_block.0."),
    (r"^head\.3\.", "hg_conv_out.2."),
    (r"\.body\.", ".conv_block."),
    (r"\.skip\.(weight|bias)$", r".skip_layer.\1"),
)


def _official_hourglass_key(key: str, depth: int = 4) -> str:
    """FeedbackHourglass key -> the official HG key (the recursion's levels are named res<level>_<1|2|3>)."""
    match = re.match(r"^hourglass\.((?:inner\.)*)(skip\.|down\.|up\.)?(.*)$", key)
    if match:
        inners, branch, rest = match.groups()
        level = depth - inners.count("inner.")
        if branch is None:  # the innermost block
            key = f"hg.res_center.{rest}"
        else:
            key = f"hg.res{level}_{ {'skip.': 1, 'down.': 2, 'up.': 3}[branch] }.{rest}"
    return rename(key, _OFFICIAL_HOURGLASS_RULES)


def _official_key(key: str) -> str | None:
    if key == "hourglass_freeze_left":
        return None  # ours: the freeze counter, not in the release
    if key.startswith("landmark_net."):
        return "HG." + _official_hourglass_key(key[len("landmark_net.") :])
    return rename(key, _OFFICIAL_RULES)


def _official_release(state) -> dict:
    return {"scale": 8}


def _official_prepare(model: DIC) -> None:
    """The authors' weights were trained with their heatmap convention (targets centred at x / 4)."""
    model.heatmap_convention = "authors"


def _hourglass_prepare(model: DIC) -> None:
    """The authors' recipe with their pretrained hourglass: no pretraining here, frozen for the first steps."""
    model.hourglass_pretrain_steps = 0
    model.hourglass_freeze_left.fill_(model.hourglass_freeze_steps)
    model.heatmap_convention = "authors"


OFFICIAL = OfficialFormat("dic", _official_key, release=_official_release, prepare=_official_prepare)
OFFICIAL_HOURGLASS = OfficialFormat(
    "dic",
    _official_hourglass_key,
    release=_official_release,
    prepare=_hourglass_prepare,
    submodule="landmark_net",
    evaluate_only=False,  # DIC trains from the released hourglass, as the authors do
)
