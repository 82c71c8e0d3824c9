"""The model contract, for every registered model (timm's tests/test_models.py): what each model's own test file
would otherwise repeat.

Each model is built as a trial builds it (`build_model`): small, with the smoke preset's sizes, for the forward and
train-step checks at x8 and x16; at the paper's size on the meta device (no memory, no arithmetic) for the parameter
count documented in the README's model table.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bench.measure import random_inputs
from llvfsr.config import DataConfig, ExperimentConfig, ModelConfig
from llvfsr.models import get_entry, list_models
from llvfsr.models.from_config import build_model, required_fields
from llvfsr.priors.types import PRIOR_KINDS, SOURCE_KINDS
from llvfsr.train import pixel_loss
from sweeps.presets import PRESETS

SMOKE = PRESETS["smoke"]
HR, BATCH = 64, 2  # x16: 4 px LR faces
CLIP_WIDTH = 512  # the README's counts: LLV-FSR variants read CLIP ViT-B-32 text embeddings

# README, "Models": parameters (M) at x8 and HR 256, to the digits printed there.
DOCUMENTED_PARAMS_M = {
    "llvfsr": "3.28", "llvfsr-model1": "0.70", "llvfsr-model2": "2.90", "llvfsr-wo-mask": "2.24-3.03",
    "llvfsr-wo-depth": "2.24-3.03", "llvfsr-wo-caption": "2.24-3.03", "llvfsr-wo-description": "2.24-3.03",
    "bicubic": "0", "srcnn": "0.069", "fsrnet": "3.22", "dic": "21.80", "sisn": "8.30", "faceformer": "8.30",
    "sfmnet": "8.55", "wfen": "6.78",
}  # fmt: skip


# Some parameters start with an all-zero gradient by design (zero-initialised tails; WFEN's official init keeps its
# bottleneck below LayerNorm's eps): their own files check them under a set-up where every gradient flows.
ZERO_GRADIENTS_AT_INIT = {"dic", "sfmnet", "wfen"}
# Beyond the smoke sizes: DIC's feedback block reads its own last state (compress_in) from the second step on.
MORE = {"dic": (("num_steps", 2),)}


def tiny_config(name: str, scale: int) -> ExperimentConfig:
    """The smoke preset's model at `scale` on `HR` px faces, as a smoke trial configures it (and `MORE`)."""
    data = dataclasses.replace(SMOKE.data, scale=scale, hr_size=HR)
    overrides = dict(SMOKE.overrides_for(name)) | dict(MORE.get(name, ()))
    return ExperimentConfig(data=data, model=ModelConfig(name, tuple(sorted(overrides.items()))))


def text_width() -> int:
    from llvfsr.priors.text_encoder import text_width as width

    return width(SMOKE.data)


def test_every_model_is_documented():
    assert set(DOCUMENTED_PARAMS_M) == set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_registry_entry(name):
    entry = get_entry(name)
    module, _, function = entry.factory.partition(":")
    assert name == name.lower() and module and function and entry.summary and entry.paper_name
    assert entry.priors <= set(PRIOR_KINDS) and entry.targets <= set(SOURCE_KINDS)


@pytest.mark.parametrize("scale", [8, 16])
@pytest.mark.parametrize("name", list_models())
def test_forward_shape_with_the_declared_priors(name, scale):
    """[B,3,h,w] LR and the priors the entry declares (no other field) give [B,3,h*scale,w*scale], finite."""
    torch.manual_seed(0)
    model = build_model(tiny_config(name, scale)).eval()
    entry = get_entry(name)
    assert set(getattr(model, "required_priors", entry.priors)) <= entry.priors
    lr, _, priors = random_inputs(model, name, BATCH, HR, scale, torch.device("cpu"), text_dim=text_width())
    with torch.no_grad():
        sr = model(lr, priors.only(entry.priors))
    assert sr.shape == (BATCH, 3, HR, HR)
    assert torch.isfinite(sr).all()


@pytest.mark.parametrize("scale", [8, 16])
@pytest.mark.parametrize("name", list_models(trained_only=True))
def test_train_step_reaches_every_parameter(name, scale):
    """The train loop's loss (pixel loss plus any auxiliary loss on the entry's targets) gives every parameter a
    finite gradient, non-zero unless the model is in `ZERO_GRADIENTS_AT_INIT`."""
    torch.manual_seed(0)
    config = tiny_config(name, scale)
    model = build_model(config).train()
    lr, hr, priors = random_inputs(model, name, BATCH, HR, scale, torch.device("cpu"), text_dim=text_width())
    assert {f.name for f in dataclasses.fields(priors) if getattr(priors, f.name) is not None} == required_fields(
        model, name
    )
    loss = pixel_loss(get_entry(name).train_defaults.get("loss", "l1"), model(lr, priors), hr)
    if hasattr(model, "auxiliary_loss"):
        loss = loss + model.auxiliary_loss(hr, priors)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name}: no finite gradient for {pname}"
        if name not in ZERO_GRADIENTS_AT_INIT:
            assert p.grad.abs().sum() > 0, f"{name}: all-zero gradient for {pname}"


def paper_size_count(name: str, scale: int) -> int:
    config = ExperimentConfig(data=DataConfig(scale=scale, hr_size=256), model=ModelConfig(name))
    with torch.device("meta"):
        return sum(p.numel() for p in build_model(config, text_dim=CLIP_WIDTH).parameters())


@pytest.mark.parametrize("name", list_models())
def test_paper_size_parameter_count(name):
    """At HR 256 and x8 the count is the README's; at x16 only the up-sampling differs (within 10 %)."""
    x8, x16 = paper_size_count(name, 8), paper_size_count(name, 16)
    documented = DOCUMENTED_PARAMS_M[name]
    low, _, high = documented.partition("-")
    millions = round(x8 / 1e6, len(low.partition(".")[2]))
    assert float(low) <= millions <= float(high or low), f"{name}: {x8:,} parameters, documented {documented} M"
    assert abs(x16 - x8) <= 0.1 * x8, f"{name}: {x16:,} parameters at x16, {x8:,} at x8"
