"""Build the model an `ExperimentConfig` describes, as a trial does, and name the priors it reads.

One place for what the train loop, the single-image CLI (`llvfsr.sr`), the sweeps and the benchmark build.
"""

from __future__ import annotations

from torch import nn

from llvfsr.config import ExperimentConfig
from llvfsr.models.official import OFFICIAL_FORMAT, OFFICIAL_PATH, load_official, official_in
from llvfsr.models.registry import build, get_entry
from llvfsr.priors.text_encoder import text_width


def required_fields(model: nn.Module, name: str) -> set[str]:
    """Prior fields the model reads in forward plus the targets of its auxiliary loss."""
    entry = get_entry(name)
    return set(getattr(model, "required_priors", entry.priors)) | set(entry.targets)


def build_model(config: ExperimentConfig, text_dim: int | None = None) -> nn.Module:
    """The configured model, as a trial builds it: LLV-FSR variants get the text width of the configured CLIP encoder
    (or `text_dim`, when the caller knows it without the encoder: the benchmark's random CLIP-width inputs),
    baselines the HR size they check their LR against; a release (`--official NAME=PATH`) is loaded instead."""
    kwargs = config.model.kwargs()
    factory = get_entry(config.model.name).factory
    if factory.startswith("llvfsr.models.llvfsr:") and "text_dim" not in kwargs:
        kwargs["text_dim"] = text_dim if text_dim is not None else text_width(config.data)
    elif factory.startswith("baselines."):  # baselines check the LR size they were built for
        kwargs.setdefault("hr_size", config.data.hr_size)
    release = official_in(kwargs)
    if release is not None:  # the authors' released weights (`--official NAME=PATH`)
        kwargs.pop(OFFICIAL_PATH), kwargs.pop(OFFICIAL_FORMAT, None)
        return load_official(*release, scale=config.data.scale, **kwargs).train()
    return build(config.model.name, scale=config.data.scale, **kwargs)
