"""The fast path (bf16 autocast + channels-last) agrees with plain fp32 eager within bf16 tolerance.

The train loop's switches (`TrainConfig.bf16`, `channels_last`) must change speed, not results. These tests run the
project's own code with the switches on: the train loop's autocast (`make_autocast`, with `cpu_autocast` so that
it autocasts on the CPU), its `train_step`, and `train()` end to end. bf16 keeps 8 mantissa bits (relative
rounding 2^-9 = 0.002 per value), so outputs and losses agree to about 1e-2; a stride mix-up in a channels-last
tensor or a value kept in bf16 that should not be is off by far more (see the planted bugs below).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from tiny import tiny_synthetic_data

from bench.measure import random_inputs
from llvfsr.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig
from llvfsr.models import build
from llvfsr.models.blocks import LayerNorm2d
from llvfsr.priors.ensure import ensure_priors
from llvfsr.train import make_autocast, train, train_step

CPU = torch.device("cpu")
BF16_RTOL = 2e-2
HR = 32

CASES = {
    "llvfsr": (HR, 2, dict(width=8, num_blocks=1, heads=2, text_dim=16, body_down=2)),
    "srcnn": (HR, 2, dict(width=16, mapping_width=8, init_std=0.05)),  # not the paper's 1e-3: outputs far from zero
    # FSRNet's BatchNorms see few values per channel in the hourglass: at 32 px / batch 2 bf16 rounding alone gave a
    # gradient cosine of 0.77-0.83 (1-4 threads); at 64 px / batch 4 it is 0.974-0.976, so it runs at that size.
    "fsrnet": (64, 4, dict(hr_size=64, width=16, num_blocks=1, num_coarse_blocks=1, num_decoder_blocks=1,
                           hg_stacks=1, hg_depth=2)),
}  # fmt: skip
# Minimum cosine between the fast and fp32 gradients, well below the measured values at 1, 2 and 4 threads
# (llvfsr and srcnn 0.99999-1.0, fsrnet 0.974-0.976); the planted stride bug below gives 0.88.
GRAD_COSINE = {"llvfsr": 0.99, "srcnn": 0.99, "fsrnet": 0.9}


def switches(fast: bool) -> TrainConfig:
    return TrainConfig(bf16=fast, cpu_autocast=fast, channels_last=fast, loss="l1", device="cpu")


def make_case(name: str, fast: bool):
    """A fresh model and inputs, in channels-last memory on the fast path (as `train()` lays them out)."""
    hr_size, batch, kwargs = CASES[name]
    torch.manual_seed(0)
    model = build(name, scale=8, **kwargs)
    lr, hr, priors = random_inputs(model, name, batch, hr_size, 8, CPU, text_dim=16)
    if fast:
        model = model.to(memory_format=torch.channels_last)
        lr, hr = lr.contiguous(memory_format=torch.channels_last), hr.contiguous(memory_format=torch.channels_last)
    return model, lr, hr, priors


def forward(name: str, fast: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The eval-mode output (float) and the bicubic up-sampling of the same LR input."""
    model, lr, _, priors = make_case(name, fast)
    with torch.no_grad(), make_autocast(switches(fast), CPU):
        sr = model.eval()(lr, priors).float()
    return sr, F.interpolate(lr, scale_factor=8, mode="bicubic", align_corners=False)


def step(name: str, fast: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss and the gradients of one `train_step` (an optimiser with lr 0 leaves the gradients to read)."""
    model, lr, hr, priors = make_case(name, fast)
    tcfg = switches(fast)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    loss = train_step(model, model, optimizer, make_autocast(tcfg, CPU), tcfg, lr, hr, priors)
    return loss, torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def forward_error(name: str) -> float:
    """Fast-path error relative to what the network adds to a bicubic up-sampling (the exact part cannot hide it)."""
    plain, base = forward(name, fast=False)
    fast, _ = forward(name, fast=True)
    assert fast.shape == plain.shape == (CASES[name][1], 3, CASES[name][0], CASES[name][0])
    assert (plain - base).norm() > 1e-3 * base.norm()  # the network contributes something to compare
    return ((fast - plain).norm() / (plain - base).norm()).item()


def gradient_cosine(name: str) -> tuple[float, float]:
    """Relative loss difference and gradient cosine of the fast and the plain train step."""
    plain_loss, plain_grads = step(name, fast=False)
    fast_loss, fast_grads = step(name, fast=True)
    assert torch.isfinite(fast_loss) and plain_loss > 0
    return abs(fast_loss / plain_loss - 1).item(), F.cosine_similarity(fast_grads, plain_grads, dim=0).item()


def test_cpu_autocast_is_opt_in():
    for tcfg, dtype in [(TrainConfig(bf16=True), torch.float32), (switches(True), torch.bfloat16)]:
        with make_autocast(tcfg, CPU):
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == dtype
    assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32  # and autocast ends with its block


@pytest.mark.parametrize("name", list(CASES))
def test_forward_agrees_within_bf16(name):
    # Measured at 1, 2 and 4 threads: llvfsr 0.0046, srcnn 0.0007, fsrnet 0.0002 (fp32 would give 0).
    error = forward_error(name)
    assert error < BF16_RTOL, f"{name}: fast-path forward differs by {error:.3g} (relative)"
    assert error > 1e-5, "the fast path ran in fp32: bf16 autocast had no effect"


@pytest.mark.parametrize("name", list(CASES))
def test_train_step_loss_and_gradients_agree_within_bf16(name):
    # Measured at 1, 2 and 4 threads: loss difference 1e-4 (llvfsr, srcnn) and 0.0007-0.0010 (fsrnet).
    loss_error, cosine = gradient_cosine(name)
    assert loss_error < BF16_RTOL
    assert cosine > GRAD_COSINE[name], f"{name}: gradient cosine {cosine:.4f}"


def nchw_strided_layer_norm(self, x):
    """A planted layout bug: the NHWC view of `x` written as strides that assume NCHW memory (as a kernel that
    reads raw memory would); right for plain tensors, silently wrong for channels-last ones."""
    b, c, h, w = x.shape
    nhwc = x.as_strided((b, h, w, c), (c * h * w, w, 1, h * w))
    return self.norm(nhwc).permute(0, 3, 1, 2)


def test_the_bounds_catch_a_planted_stride_bug(monkeypatch):
    monkeypatch.setattr(LayerNorm2d, "forward", nchw_strided_layer_norm)
    plain, _ = forward("llvfsr", fast=False)
    monkeypatch.undo()
    assert torch.equal(plain, forward("llvfsr", fast=False)[0])  # the bug is invisible on the plain path
    monkeypatch.setattr(LayerNorm2d, "forward", nchw_strided_layer_norm)
    error = forward_error("llvfsr")  # measured 0.32
    _, cosine = gradient_cosine("llvfsr")  # measured 0.88
    assert error > 5 * BF16_RTOL and cosine < GRAD_COSINE["llvfsr"] - 0.05


TINY_LLVFSR = (("body_down", 2), ("heads", 2), ("num_blocks", 1), ("width", 8))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> DataConfig:
    config = tiny_synthetic_data(tmp_path_factory.mktemp("priors"), train_n=20, val_n=4, test_n=6)
    ensure_priors(config, {"mask", "depth", "caption", "description"}, progress=False)
    return config


def test_train_end_to_end_with_the_switches_on(tiny_data, tmp_path):
    """`train()` with bf16 autocast and channels-last gives the fp32 run's losses and test PSNR within bf16."""
    base = TrainConfig(epochs=2, batch_size=4, lr=1e-3, lpips=False, niqe=False, n_samples=1, device="cpu")
    runs = {}
    for fast in (False, True):
        tcfg = dataclasses.replace(base, bf16=fast, cpu_autocast=fast, channels_last=fast)
        config = ExperimentConfig(tiny_data, ModelConfig("llvfsr", TINY_LLVFSR), tcfg, str(tmp_path / str(fast)))
        runs[fast] = train(config), torch.load(tmp_path / str(fast) / "checkpoint.pt", weights_only=True)
    (plain, plain_ckpt), (fast, fast_ckpt) = runs[False], runs[True]
    for epoch_plain, epoch_fast in zip(plain_ckpt["history"], fast_ckpt["history"], strict=True):
        # Measured at 1, 2 and 4 threads: train loss within 0.09 % (the planted stride bug in LVPFB's image tokens:
        # 2.7 %), validation PSNR within 0.01 dB.
        assert epoch_fast["train_loss"] == pytest.approx(epoch_plain["train_loss"], rel=5e-3)
        assert epoch_fast["val_psnr"] == pytest.approx(epoch_plain["val_psnr"], abs=0.05)
    assert fast["test_psnr"] == pytest.approx(plain["test_psnr"], abs=0.05)  # measured within 0.005 dB
    assert fast["test_psnr"] != plain["test_psnr"], "the switches changed nothing: bf16 autocast did not run"
    # The fast run's weights are channels-last in memory and still load as ordinary weights.
    assert fast_ckpt["model"].keys() == plain_ckpt["model"].keys()
