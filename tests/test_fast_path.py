"""The fast path (bf16 autocast + channels-last) agrees with plain fp32 eager within bf16 tolerance.

The train loop's switches (`TrainConfig.bf16`, `channels_last`) must change speed, not results. On the CPU the
test runs `torch.autocast("cpu", dtype=torch.bfloat16)` directly (the train loop enables autocast only on CUDA,
whose op list is similar: matmuls and convolutions in bf16, reductions and losses in fp32). bf16 keeps 8 mantissa
bits (relative rounding 2^-9 = 0.002 per value), so a network's outputs and loss should agree to about 1e-2; a
wrong layout or a dtype bug is off by O(1).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from llvfsr.bench import random_inputs
from llvfsr.models import build
from llvfsr.train import pixel_loss

BF16_RTOL = 2e-2
HR = 32

CASES = {
    "llvfsr": dict(width=8, num_blocks=1, heads=2, text_dim=16, body_down=2),
    "srcnn": dict(width=16, mapping_width=8, init_std=0.05),  # not the paper's 1e-3: outputs far from zero
    "fsrnet": dict(hr_size=HR, width=8, num_blocks=1, num_coarse_blocks=1, num_decoder_blocks=1, hg_stacks=1,
                   hg_depth=2),
}  # fmt: skip
# Minimum cosine between the fast and fp32 gradients. FSRNet's deep BatchNorm stack on a batch of 2 at 32 px
# amplifies bf16 rounding in its first layers (cosine 0.84 here, 0.98 at 64 px / batch 4 / width 16): noise of the
# tiny test size, not of the fast path, so it gets a looser bound; its loss must still agree to 2e-2.
GRAD_COSINE = {"llvfsr": 0.99, "srcnn": 0.99, "fsrnet": 0.8}


def make_case(name: str):
    torch.manual_seed(0)
    model = build(name, scale=8, **CASES[name])
    lr, hr, priors = random_inputs(model, name, 2, HR, 8, torch.device("cpu"), text_dim=16)
    return model, lr, hr, priors


def run_path(model, lr, hr, priors, fast: bool, train: bool):
    """One forward (eval) or one train step (forward, loss, backward) on a fresh copy of `model`."""
    model = copy.deepcopy(model)
    if fast:
        model = model.to(memory_format=torch.channels_last)
        lr, hr = lr.contiguous(memory_format=torch.channels_last), hr.contiguous(memory_format=torch.channels_last)
    model.train(train)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast)
    with torch.set_grad_enabled(train), autocast:
        sr = model(lr, priors)
        loss = pixel_loss("l1", sr.float(), hr)
        if train and hasattr(model, "auxiliary_loss"):
            loss = loss + model.auxiliary_loss(hr, priors)
    if train:
        loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]) if train else None
    return sr.float(), loss.detach(), grads


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("name", list(CASES))
def test_forward_agrees_within_bf16(name):
    model, lr, hr, priors = make_case(name)
    plain, _, _ = run_path(model, lr, hr, priors, fast=False, train=False)
    fast, _, _ = run_path(model, lr, hr, priors, fast=True, train=False)
    assert fast.shape == plain.shape == (2, 3, HR, HR)
    # Compare what the network adds to a bicubic up-sampling, so the exact bicubic part cannot hide an error.
    base = F.interpolate(lr, scale_factor=8, mode="bicubic", align_corners=False)
    assert (plain - base).norm() > 1e-3 * base.norm()  # the network contributes something to compare
    error = ((fast - plain).norm() / (plain - base).norm()).item()
    assert error < BF16_RTOL, f"{name}: fast-path forward differs by {error:.3g} (relative)"
    assert error > 0, "the fast path ran in fp32: bf16 autocast had no effect"


@pytest.mark.parametrize("name", list(CASES))
def test_train_step_loss_and_gradients_agree_within_bf16(name):
    model, lr, hr, priors = make_case(name)
    _, plain_loss, plain_grads = run_path(model, lr, hr, priors, fast=False, train=True)
    _, fast_loss, fast_grads = run_path(model, lr, hr, priors, fast=True, train=True)
    assert torch.isfinite(fast_loss) and plain_loss > 0
    assert relative(fast_loss, plain_loss) < BF16_RTOL
    # Gradients through bf16 activations are noisier than the loss; they must still point the same way.
    cosine = F.cosine_similarity(fast_grads, plain_grads, dim=0).item()
    assert cosine > GRAD_COSINE[name], f"{name}: gradient cosine {cosine:.4f}"


def test_fast_path_detects_a_layout_bug():
    """The tolerance is tight enough to catch a channels-last mix-up: swapping H and W of the input fails it."""
    model, lr, hr, priors = make_case("srcnn")
    plain, _, _ = run_path(model, lr, hr, priors, fast=False, train=False)
    wrong, _, _ = run_path(model, lr.transpose(2, 3), hr, priors, fast=True, train=False)
    base = F.interpolate(lr, scale_factor=8, mode="bicubic", align_corners=False)
    assert ((wrong - plain).norm() / (plain - base).norm()).item() > BF16_RTOL
