"""Measuring instruments: FLOP counting, peak memory, device peaks, synchronisation.

`flop_counter` is torch's `FlopCounterMode` with a group-aware convolution-backward formula; `MemoryMeter` reads
CUDA's allocator peak or, on the CPU, the process's resident-set high-water mark. Used by the benchmark (`bench`)
and by the train loop's memory probe (`llvfsr.memory`).
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, without 2:4 sparsity. The first substring
# found in `torch.cuda.get_device_name()` wins, so the specific names come before the generic ones.
BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),  # SXM
    ("H200", 989.4),
    ("GH200", 989.4),
    ("A100", 312.0),
    ("L40S", 362.1),
    ("RTX 4090", 165.2),
    ("L4", 121.0),
)


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({torch.get_num_threads()} threads)"


def bf16_peak_tflops(device: torch.device) -> float | None:
    """The device's dense bf16 peak in TFLOP/s, or None when it is not in `BF16_PEAK_TFLOPS` (and on the CPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK_TFLOPS if key in name), None)


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                         _output_padding, _groups, output_mask, out_shape=None, **_) -> int:  # fmt: skip
    # Each of grad_input and grad_weight is one convolution as costly as the forward one. torch's own formula
    # (2.14) counts grad_weight as if groups were 1, so a depthwise conv's backward came out `groups` times too high
    # (65x the forward for 64 channels): LLV-FSR's train GFLOPs were 7x its forward instead of about 3x.
    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def flop_counter() -> FlopCounterMode:
    """`FlopCounterMode` with a group-aware convolution-backward formula; the forward formulas are torch's own."""
    return FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flops})


class MemoryMeter:
    """Peak memory (MiB) a block of work adds to what the process held when the meter started.

    CUDA: `torch.cuda.max_memory_allocated` above the allocation at the start (tensors only; the CUDA context and
    the caching allocator's slack are not included). CPU: the process's resident-set high-water mark (VmHWM, reset
    through /proc/self/clear_refs) above its resident set at the start, after returning freed heap to the OS
    (malloc_trim), so model, gradients, optimiser state, inputs and activations count, as on the GPU. None where
    /proc is unavailable.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.base = 0.0
        self.peak: float | None = None

    def __enter__(self) -> MemoryMeter:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device) / 2**20
        else:
            _release_heap()
            self.base = _proc_status_mib("VmRSS") or 0.0
            _reset_rss_peak()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) / 2**20 - self.base
        else:
            high = _proc_status_mib("VmHWM")
            self.peak = None if high is None else high - self.base


def _proc_status_mib(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def _reset_rss_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: reset VmHWM to the current RSS
    except OSError:
        pass


def _release_heap() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def counting(counter: FlopCounterMode | None) -> Iterator[None]:
    with counter if counter is not None else nullcontext():
        yield
