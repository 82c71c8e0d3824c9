"""Frozen configuration dataclasses for one experiment: data, model, training.

The field docstrings (the comments after each field) double as CLI help; `flatten` turns a config into the flat
``section.field`` parameters that MLflow records once per run, and `from_flat` reads them back.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any

PAPER_EPOCHS = 30  # paper Sec. 4.2


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "synthetic"  # "synthetic" (built-in faces) or the root of prepared CelebA-HQ / MM-CelebA-HQ
    scale: int = 8  # up-scaling factor: 8 (32 -> 256) or 16 (16 -> 256)
    hr_size: int = 256  # HR side in pixels; the paper uses 256
    train_n: int | None = None  # synthetic: faces in the train split; folder: None = the whole split list
    val_n: int | None = None  # faces held out of train for validation (synthetic: its own split)
    test_n: int | None = None  # synthetic: faces in the test split; folder: None = the whole test list
    data_seed: int = 0  # synthetic data seed (the faces, not the training seed)
    synthetic_zoom: float = 1.0  # synthetic: magnify faces about the eyes (3: irises fill ~1/10 of the image)
    synthetic_iris: str = "pinwheel"  # synthetic: the iris texture carrying the eye colour ("pinwheel", "checker")
    split_dir: str | None = None  # folder with train.txt / test.txt id lists (default: <dataset>/splits)
    text_dir: str | None = None  # MM-CelebA-HQ text folder (optional)
    priors_root: str = "priors_cache"  # root of the prior stores, shared by every trial
    mask_source: str = "synthetic"  # prior source names, see llvfsr.priors.sources
    depth_source: str = "synthetic"
    caption_source: str = "synthetic"
    description_source: str = "synthetic"
    landmarks_source: str = "synthetic"
    text_encoder: str = "ViT-B-32"  # open_clip architecture of the CLIP text encoder
    text_pretrained: str | None = "openai"  # open_clip pretrained tag or a local checkpoint path
    allow_random_text_encoder: bool = False  # use a random-initialised text encoder when no weights exist (recorded)
    text_chunking: str = "truncate"  # over 77 tokens: "truncate" (CLIP's cut) or "sentences" (see text_encoder)
    skip_bad: bool = False  # skip corrupt/missing images (counted and logged) instead of failing


@dataclass(frozen=True)
class ModelConfig:
    name: str = "llvfsr"  # registry name, see `python -m llvfsr.train --list-models`
    overrides: tuple[tuple[str, Any], ...] = ()  # architecture overrides passed to the factory, e.g. (("width", 32),)

    def kwargs(self) -> dict[str, Any]:
        return dict(self.overrides)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = PAPER_EPOCHS  # training epochs (paper: 30)
    batch_size: int = 16  # images per optimiser step (summed over all workers)
    lr: float | None = None  # Adam learning rate; None = the model's paper setting, else 2e-4 (LLV-FSR)
    betas: tuple[float, float] | None = None  # Adam betas; None = paper setting, else (0.9, 0.99)
    eps: float = 1e-8  # Adam epsilon
    loss: str | None = None  # pixel loss "l1" or "l2"; None = the model's paper setting, else l1
    aux_weight: float = 1.0  # weight of auxiliary losses (FSRNet/DIC landmark and parsing heads)
    prior_dropout: float = 0.0  # LLV-FSR: each prior of each training face withheld with this probability
    max_steps_per_epoch: int | None = None  # cap steps per epoch (quick runs)
    val_every: int = 1  # validate every N epochs
    val_max: int = 64  # images used for periodic validation
    seed: int = 0  # training seed (initialisation, batch order)
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    bf16: bool = False  # bf16 autocast on CUDA
    channels_last: bool = False  # channels-last memory format
    cpu_autocast: bool = False  # with bf16: autocast on the CPU too (slow on most CPUs; lets tests run the fast path)
    compile: bool = False  # torch.compile the model
    fused_adam: bool = False  # fused Adam kernel (CUDA)
    convention: str = "paper"  # metric convention, see llvfsr.metrics.CONVENTIONS
    lpips: bool = True  # compute LPIPS at test time (needs the AlexNet trunk weights, see README)
    niqe: bool = True  # compute NIQE at test time
    lpips_trunk: str | None = None  # local AlexNet trunk weights for LPIPS
    allow_random_lpips: bool = False  # plumbing only: LPIPS with a random trunk (values meaningless)
    identity: bool = False  # identity distance at test time (paper Fig. 7): DeepFace ArcFace cosine distance SR vs HR
    identity_weights: str | None = None  # local DeepFace ArcFace weights (arcface_weights.pth)
    allow_random_identity: bool = False  # plumbing only: identity distance with random weights (values meaningless)
    n_samples: int = 4  # SR/LR/HR sample images written at the end
    sr_faces: int = 4  # first N test faces saved as sr_faces/<id>.png (+ _lr, _hr) for the visual comparisons

    DEFAULT_LR = 2e-4  # paper Sec. 4.2
    DEFAULT_BETAS = (0.9, 0.99)


@dataclass(frozen=True)
class ExperimentConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    out_dir: str = "runs/default"  # checkpoints, per-image CSV, samples


def resolve_train(train: TrainConfig, model_name: str) -> TrainConfig:
    """Fill the unset (None) optimiser/loss fields from the model's paper settings, then the LLV-FSR defaults."""
    from llvfsr.models import get_entry

    paper = dict(get_entry(model_name).train_defaults)
    return dataclasses.replace(
        train,
        lr=train.lr if train.lr is not None else paper.get("lr", TrainConfig.DEFAULT_LR),
        betas=tuple(train.betas) if train.betas is not None else tuple(paper.get("betas", TrainConfig.DEFAULT_BETAS)),
        loss=train.loss if train.loss is not None else paper.get("loss", "l1"),
    )


def flatten(config: ExperimentConfig) -> dict[str, str]:
    """``{"data.scale": "8", "model.name": "llvfsr", "model.width": "32", ...}``: flat strings for MLflow params."""
    flat = {}
    for section in ("data", "train"):
        for f in fields(getattr(config, section)):
            flat[f"{section}.{f.name}"] = json.dumps(getattr(getattr(config, section), f.name))
    flat["model.name"] = json.dumps(config.model.name)
    for key, value in config.model.overrides:
        flat[f"model.{key}"] = json.dumps(value)
    flat["out_dir"] = json.dumps(config.out_dir)
    return flat


def from_flat(flat: dict[str, str]) -> ExperimentConfig:
    """Inverse of `flatten`."""
    sections: dict[str, dict[str, Any]] = {"data": {}, "train": {}}
    model_name, overrides = "llvfsr", []
    for key, raw in flat.items():
        value = json.loads(raw)
        section, _, name = key.partition(".")
        if section in sections:
            sections[section][name] = tuple(value) if isinstance(value, list) else value
        elif key == "model.name":
            model_name = value
        elif section == "model":
            overrides.append((name, value))
    return ExperimentConfig(
        data=DataConfig(**sections["data"]),
        model=ModelConfig(model_name, tuple(sorted(overrides))),
        train=TrainConfig(**sections["train"]),
        out_dir=json.loads(flat.get("out_dir", '"runs/default"')),
    )
