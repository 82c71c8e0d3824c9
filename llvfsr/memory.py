"""Before a run trains: estimate its train step's peak memory from a small probe, refuse a batch that cannot fit.

A run whose batch does not fit used to die late and silently: WFEN at HR 256, batch 16 on a 24 GiB CPU machine was
killed by the kernel's OOM killer after 49 s with no message (issue 12). The probe runs the train loop's own step
(`llvfsr.train.train_step`: forward, pixel + auxiliary loss, backward) on a batch of one or two faces, with an
optimiser that does not step, and restores the weights and RNG afterwards, so training is unchanged. Peak memory is
taken as linear in the batch: ``Adam state (2 x parameters) + gradients + batch x per face``, per face being the
probe's peak less the gradients, divided by its faces (the activations saved for backward grow with the batch, the
rest does not). Compared with the device's free memory (CUDA: `torch.cuda.mem_get_info`; CPU: MemAvailable, capped
by a cgroup limit), it fails at once with the batch size that fits. ``LLVFSR_SKIP_MEMORY_CHECK=1`` trains anyway.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from llvfsr.errors import UserError
from llvfsr.measure import MemoryMeter

HEADROOM = 0.9  # a suggested batch leaves 10% of the free memory for the allocator's slack and evaluation
SKIP_ENV = "LLVFSR_SKIP_MEMORY_CHECK"
GIB = 2**30


class InsufficientMemory(UserError):
    """The configured batch's train step needs more memory than the device has free."""


@dataclass(frozen=True)
class StepMemory:
    """A train step's memory in bytes: what does not grow with the batch, and what one face adds."""

    fixed: int
    per_face: int

    def at(self, batch: int) -> int:
        return self.fixed + batch * self.per_face

    def largest_batch(self, budget: float) -> int:
        """The largest batch whose step fits in `budget` bytes (0 when not even one face does)."""
        if self.per_face <= 0:  # the step does not grow with the batch: any batch fits, or none
            return 1 << 20 if self.fixed <= budget else 0
        return max(0, math.floor((budget - self.fixed) / self.per_face))


class _NoStep:
    """Stands in for the optimiser during the probe: clears gradients, never changes a weight."""

    def __init__(self, model: nn.Module):
        self.model = model

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.model.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        pass


def _cgroup_free() -> int | None:
    """Bytes left under a cgroup v2 / v1 memory limit, or None when there is no limit."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:  # "max" or a huge number: no limit
            return max(0, int(limit) - usage)
    return None


def free_memory(device: torch.device) -> int | None:
    """Bytes the device can still give this process (None where it cannot be read)."""
    if device.type == "cuda":  # free on the device, plus what this process's caching allocator holds unused
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(torch.cuda.mem_get_info(device)[0]) + cached
    if device.type != "cpu":
        return None
    try:
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        available = next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None
    cgroup = _cgroup_free()
    return available if cgroup is None else min(available, cgroup)


def probe_step_memory(core: nn.Module, step, lr: torch.Tensor, hr: torch.Tensor, priors) -> StepMemory | None:
    """Measure a small batch's train step and scale it to `StepMemory`; the model's weights and the RNG are restored.

    Args:
        core: the plain model (not compiled, not DDP-wrapped), on its training device.
        step: ``step(optimizer, lr, hr, priors)`` running one train step with the given optimiser.
        lr, hr, priors: a small batch (one or two faces) as the train loop feeds it.
    """
    device = hr.device
    weights = {key: value.detach().clone() for key, value in core.state_dict().items()}
    rng = torch.get_rng_state()
    rng_cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    try:
        with MemoryMeter(device) as meter:
            step(_NoStep(core), lr, hr, priors)
    except torch.cuda.OutOfMemoryError as error:
        what = f"a {len(hr)}-face train step"
        raise InsufficientMemory(f"{what} does not fit in {device}'s free memory: {error}") from error
    finally:
        core.zero_grad(set_to_none=True)
        core.load_state_dict(weights)  # batch-norm statistics and the like, as they were
        torch.set_rng_state(rng)
        if rng_cuda is not None:
            torch.cuda.set_rng_state(rng_cuda, device)
    if meter.peak is None:
        return None
    params = sum(p.numel() * p.element_size() for p in core.parameters() if p.requires_grad)
    peak = int(meter.peak * 2**20)
    return StepMemory(fixed=3 * params, per_face=max(0, peak - params) // len(hr))


def check_batch_fits(memory: StepMemory, batch: int, free: int, device: torch.device, what: str) -> None:
    """Raise `InsufficientMemory` naming a batch size that fits when `batch` faces' step exceeds `free` bytes.

    Args:
        batch: the faces per step on this device (per rank under DDP).
        what: the run, as the message should name it (model, HR size).
    """
    if os.environ.get(SKIP_ENV) or memory.at(batch) <= free:
        return
    fits = memory.largest_batch(HEADROOM * free)
    advice = (
        f"--batch-size {fits} fits (about {memory.at(fits) / GIB:.1f} GiB)"
        if fits >= 1
        else "not even one face fits: a smaller --hr-size or a device with more memory is needed"
    )
    raise InsufficientMemory(
        f"{what}: a train step at batch {batch} needs about {memory.at(batch) / GIB:.1f} GiB "
        f"({memory.per_face / GIB:.2f} GiB per face, measured), {device} has {free / GIB:.1f} GiB free; "
        f"{advice}. {SKIP_ENV}=1 trains anyway"
    )
