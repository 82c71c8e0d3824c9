"""Full training checkpoints (model, optimiser, RNG, epoch, history) that load with ``weights_only=True``.

A checkpoint records the flat experiment config; loading it into another model, scale or config is refused
with an error naming the field that differs, and a truncated or foreign file with an error naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from llvfsr.config import ExperimentConfig, flatten
from llvfsr.errors import UserError

# Fields that may change between a checkpoint and the run that resumes from it (where it runs, how long it
# runs, what it writes where), not what it learns.
RESUMABLE_CHANGES = frozenset(
    {
        "train.epochs",
        "train.device",
        "train.val_every",
        "train.val_max",
        "train.lpips",
        "train.niqe",
        "train.lpips_trunk",
        "train.allow_random_lpips",
        "train.n_samples",
        "train.compile",
        "train.identity",
        "train.identity_weights",
        "train.allow_random_identity",
        "out_dir",
        "data.priors_root",
        "data.skip_bad",
    }
)


class CheckpointError(UserError, ValueError):
    """The checkpoint file cannot be used: damaged, truncated, not an llvfsr checkpoint, or for another model."""


class CheckpointMismatch(CheckpointError):
    """The checkpoint belongs to another model, scale or configuration."""


def save_checkpoint(
    path: Path,
    config: ExperimentConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    epoch: int,
    history: list[dict],
) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves a half-written checkpoint."""
    state = {
        "config": flatten(config),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "epoch": epoch,
        "history": history,
    }
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def check_compatible(saved: dict[str, str], config: ExperimentConfig, path: Path) -> None:
    current = flatten(config)
    defaults = flatten(ExperimentConfig())
    for key in sorted(set(saved) | set(current)):
        if key in RESUMABLE_CHANGES or saved.get(key) == current.get(key):
            continue
        if key not in saved and key.startswith(("data.", "train.")) and current[key] == defaults.get(key):
            continue  # a field added since the checkpoint was written, at the default that behaves as before
        raise CheckpointMismatch(
            f"checkpoint {path} was written with {key}={saved.get(key, '<unset>')}, "
            f"but this run has {key}={current.get(key, '<unset>')}"
        )


def read_checkpoint(path: Path) -> dict:
    """The raw state of a checkpoint file (config, model, optimiser, RNG, epoch, history), on the CPU.

    Raises:
        CheckpointError: the file is missing, truncated or damaged (torch's "failed finding central directory"),
            or holds no llvfsr checkpoint; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # zip, pickle and tensor errors alike: the file is not a readable checkpoint
        reason = " ".join(str(error).split())[:300]
        raise CheckpointError(
            f"checkpoint {path} is damaged or truncated ({path.stat().st_size} bytes; torch: {reason}); "
            "copy it again or retrain"
        ) from error
    if not isinstance(state, dict) or not {"config", "model"} <= set(state):
        raise CheckpointError(f"{path} is not an llvfsr checkpoint (no 'config' and 'model' entries)")
    return state


def load_checkpoint(
    path: Path,
    config: ExperimentConfig | None,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    state: dict | None = None,
) -> dict:
    """Restore model (+ optimiser and RNG) from `path`; returns the raw state (epoch, history, config).

    With `config` None (inference), only the model weights are loaded and no compatibility check is made
    beyond the state dict's own keys and shapes. `state`: what `read_checkpoint(path)` returned, when the caller
    has read it already (the file is then not read again).
    """
    path = Path(path)
    state = read_checkpoint(path) if state is None else state
    if config is not None:
        check_compatible(state["config"], config, path)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:  # missing / unexpected keys or shapes: another architecture
        raise CheckpointMismatch(
            f"checkpoint {path} does not fit the model: {' '.join(str(error).split())[:300]}"
        ) from error
    if optimizer is not None and state["optimizer"]:
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng_cpu"])
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
    return state
