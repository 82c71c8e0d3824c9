"""SRCNN: three convolutions on the bicubic-upsampled image (Table 1 baseline).

Paper: C. Dong, C. C. Loy, K. He, X. Tang, "Image Super-Resolution Using Deep Convolutional Networks",
TPAMI 38(2), 2016 (SRCNN). No code is needed: the network is patch extraction (f1 x f1, n1 filters), non-linear
mapping (f2 x f2, n2 filters) and reconstruction (f3 x f3), with ReLU after the first two layers, applied to the
bicubic interpolation of the LR image. Defaults: the paper's 9-5-5 network with n1 = 64, n2 = 32 on the three RGB
channels (its Sec. 4.4 trains on RGB as well as Y); the smaller 9-1-5 network is ``kernel_sizes=(9, 1, 5)``.

Deviations, and why:
- Zero "same" padding instead of the paper's valid convolutions, so that the output is the full HR image like
  every other model of the table (the paper crops the border of its 33 x 33 training patches instead).
- (Not a deviation) the up-sampling happens inside the model (project contract) with `upsample_bicubic`, whose
  default kernel is MATLAB ``imresize``'s, as in the paper; the result is clamped to [0, 1].
- Otherwise as in the paper, including its weight initialisation (zero-mean Gaussian, std 0.001, zero bias).

Paper training settings: MSE loss, SGD (momentum 0.9 in the ECCV 2014 version) with learning rate 1e-4 for the
first two layers and 1e-5 for the last. The registry's ``train_defaults`` keep the loss and the 1e-4, but the train
loop gives every model one Adam learning rate (a deviation: Adam's steps do not scale with the gradient, so the
SGD-era per-layer split does not carry over); `SRCNN.param_groups` returns the paper's split for anyone who wants
it. Being non-residual and initialised near zero, SRCNN first has to learn to pass the bicubic image through: on
the 64 px synthetic faces it is below bicubic after 25 and 60 epochs and above it after 150 (3000 steps; README).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from llvfsr.data.degrade import upsample_bicubic
from llvfsr.priors.types import Priors


class SRCNN(nn.Module):
    """SRCNN on RGB: bicubic up-sampling by `scale`, then f1-f2-f3 convolutions with n1, n2 filters.

    Args:
        scale: up-scaling factor (8 or 16 in this project).
        width: n1, the number of first-layer filters; the second layer has n1 // 2 unless `mapping_width` is set.
        kernel_sizes: (f1, f2, f3).
        mapping_width: n2; defaults to width // 2 (the paper's 64 / 32).
        init_std: std of the Gaussian weight initialisation (the paper's 0.001); None keeps PyTorch's default.
        num_mapping_layers: number of f2 x f2 non-linear mapping layers (1 in SRCNN; the paper's Sec. 4.3.3
            studies deeper variants such as 9-1-1-5).
    """

    def __init__(
        self,
        scale: int = 8,
        width: int = 64,
        kernel_sizes: tuple[int, int, int] = (9, 5, 5),
        mapping_width: int | None = None,
        init_std: float | None = 1e-3,
        num_mapping_layers: int = 1,
    ) -> None:
        super().__init__()
        self.scale = scale
        n1, n2 = width, mapping_width or max(width // 2, 1)
        f1, f2, f3 = kernel_sizes
        self.extract = nn.Conv2d(3, n1, f1, padding=f1 // 2)
        self.mapping = nn.Sequential()
        for i in range(num_mapping_layers):
            self.mapping.append(nn.Conv2d(n1 if i == 0 else n2, n2, f2, padding=f2 // 2))
            self.mapping.append(nn.ReLU(inplace=True))
        self.reconstruct = nn.Conv2d(n2, 3, f3, padding=f3 // 2)
        if init_std is not None:
            for conv in self.modules():
                if isinstance(conv, nn.Conv2d):
                    nn.init.normal_(conv.weight, std=init_std)
                    nn.init.zeros_(conv.bias)

    def forward(self, lr: Tensor, priors: Priors | None = None) -> Tensor:
        """Super-resolve float RGB NCHW images in [0, 1] from [B, 3, h, w] to [B, 3, h*scale, w*scale]."""
        x = upsample_bicubic(lr, self.scale)
        x = F.relu(self.extract(x))
        x = self.mapping(x)
        return self.reconstruct(x)

    def param_groups(self, lr: float = 1e-4) -> list[dict]:
        """The paper's optimiser groups: `lr` for the extraction and mapping layers, lr / 10 for reconstruction."""
        return [
            {"params": [*self.extract.parameters(), *self.mapping.parameters()], "lr": lr},
            {"params": list(self.reconstruct.parameters()), "lr": lr / 10},
        ]


def build(scale: int = 8, hr_size: int = 256, **overrides) -> SRCNN:
    """SRCNN at the paper's 9-5-5 (64, 32) size; overrides: width, kernel_sizes, mapping_width,
    init_std, num_mapping_layers.

    `hr_size` is accepted for the common factory signature; SRCNN is fully convolutional and has no size knob.
    """
    if scale < 1 or hr_size % scale:
        raise ValueError(f"SRCNN: hr_size {hr_size} is not a multiple of scale {scale}")
    return SRCNN(scale=scale, **overrides)
