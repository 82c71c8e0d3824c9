"""What a sweep needs from the benchmark's rows: a grid's projected device-hours, and packing trials on a GPU.

Projection (`python -m bench --project table1,ablation`: the benchmark's command line is handed this module),
paper Sec. 4.1-4.2: 30 epochs over the 24,000 training faces of CelebA-HQ, then the 6,000 test faces. One trial's
hours = 30 x 24,000 / (train images/s) + 6,000 / (inference images/s); a grid's bill is the sum over its variants,
scales and seeds. Periodic validation, metric computation (LPIPS, NIQE, identity) and prior extraction are not
included, so the projection is a lower bound on wall time and an estimate of the device-hours the models themselves
need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.rows import BenchRow, fmt, read_csv
from llvfsr.config import PAPER_EPOCHS
from llvfsr.models import get_entry
from sweeps.grids import GRIDS

DEFAULT_GPU_CSV = Path(__file__).resolve().parent.parent / "docs" / "bench_gpu.csv"
PAPER_TRAIN_IMAGES = 24_000  # CelebA-HQ train split (paper Sec. 4.1)
PAPER_TEST_IMAGES = 6_000
PROJECT_PATHS = ("best", "fp32", "fast")


@dataclass(frozen=True)
class TrialProjection:
    """The projected cost of the trials of one variant at one scale."""

    variant: str
    model: str
    scale: int
    trials: int  # seeds
    path: str  # the benchmark path the images/s come from ("fp32" or "fast")
    train_images_s: float | None
    infer_images_s: float | None
    hours_per_trial: float | None  # None: the model has no successful measurement
    note: str = ""


def trial_hours(train_images_s: float | None, infer_images_s: float, trained: bool = True,
                epochs: int = PAPER_EPOCHS, train_images: int = PAPER_TRAIN_IMAGES,
                test_images: int = PAPER_TEST_IMAGES) -> float:  # fmt: skip
    """Hours of one trial: `epochs` passes over `train_images` (skipped for untrained models) plus one test pass."""
    seconds = test_images / infer_images_s
    if trained:
        seconds += epochs * train_images / train_images_s
    return seconds / 3600


def grid_names() -> list[str]:
    """The sweep grids a projection can be asked for."""
    return list(GRIDS)


def grid_models(grids: list[str]) -> list[str]:
    """The registry names that the named grids train or evaluate, in first-seen order."""
    names: list[str] = []
    for grid in grids:
        for variant in GRIDS[grid].variants:
            if variant.model not in names:
                names.append(variant.model)
    return names


def _pick_rows(rows: list[BenchRow], path: str) -> dict[tuple[str, int], BenchRow]:
    """Per (model, scale), the successful row of `path` ("fp32" or "fast"), or with "best" the faster of the two."""
    if path not in PROJECT_PATHS:
        raise ValueError(f"path must be one of {PROJECT_PATHS}, got {path!r}")
    picked: dict[tuple[str, int], BenchRow] = {}
    for row in rows:
        if row.error or row.infer_images_s is None or (path != "best" and row.path != path):
            continue
        key = (row.model, row.scale)
        old = picked.get(key)
        if old is None or _speed(row) > _speed(old):
            picked[key] = row
    return picked


def _speed(row: BenchRow) -> float:
    return row.train_images_s or row.infer_images_s or 0.0


def project_grid(grid_name: str, rows: list[BenchRow], seeds: int = 1, default_scales: tuple[int, ...] = (8, 16),
                 path: str = "best") -> list[TrialProjection]:  # fmt: skip
    """One `TrialProjection` per variant and scale of the grid (its own scales, else `default_scales`), from the
    rows of `path`: "fp32", "fast", or "best" (the faster of the two for each model; the row says which)."""
    grid = GRIDS[grid_name]
    best = _pick_rows(rows, path)
    out = []
    for variant in grid.variants:
        trained = get_entry(variant.model).trained
        for scale in grid.scales or tuple(default_scales):
            row = best.get((variant.model, scale))
            note = "measured without the variant's overrides" if variant.overrides else ""
            if row is None or (trained and not row.train_images_s):
                out.append(TrialProjection(variant.name, variant.model, scale, seeds, "-", None, None, None,
                                           "no successful measurement"))  # fmt: skip
                continue
            hours = trial_hours(row.train_images_s, row.infer_images_s, trained)
            out.append(TrialProjection(variant.name, variant.model, scale, seeds, row.path, row.train_images_s,
                                       row.infer_images_s, hours, note if trained else "evaluated only"))  # fmt: skip
    return out


def format_projection(grid_name: str, projections: list[TrialProjection], rows: list[BenchRow] | None = None) -> str:
    """A table of hours per trial and per variant, and the grid's total over the variants that were measured."""
    lines = [
        f"grid {grid_name}: {PAPER_EPOCHS} epochs x {PAPER_TRAIN_IMAGES:,} faces + test on {PAPER_TEST_IMAGES:,}",
        f"{'variant':24s} {'x':>3s} {'path':>5s} {'train img/s':>11s} {'infer img/s':>11s} {'h/trial':>9s} "
        f"{'trials':>6s} {'hours':>10s}  note",
    ]  # fmt: skip
    total, missing = 0.0, 0
    for p in projections:
        hours = None if p.hours_per_trial is None else p.hours_per_trial * p.trials
        total += hours or 0.0
        missing += hours is None
        lines.append(f"{p.variant:24s} {p.scale:3d} {p.path:>5s} {fmt(p.train_images_s, '.2f'):>11s} "
                     f"{fmt(p.infer_images_s, '.2f'):>11s} {fmt(p.hours_per_trial, '.2f'):>9s} {p.trials:6d} "
                     f"{fmt(hours, '.2f'):>10s}  {p.note}")  # fmt: skip
    suffix = f" ({missing} rows without a measurement not included)" if missing else ""
    lines.append(f"total: {total:.2f} device-hours{suffix}")
    devices = sorted({(r.device, r.hr_size) for r in rows or []})
    for device, hr_size in devices:
        if hr_size != 256 or not device.startswith(("NVIDIA", "AMD")):
            lines.append(f"note: measured on {device} at HR {hr_size}, not a GPU at the paper's HR 256: these are not "
                         "the GPU-hours of the paper's runs")  # fmt: skip
    return "\n".join(lines)


# Packing several trials on one GPU (sweeps/run.py --gpus-per-trial auto).
PACK_MEMORY_FRACTION = 0.8  # of the device's memory that packed trials may fill together
PACK_SATURATION_MFU = 0.4  # the MFU at which we take a GPU as busy: beyond it, packing only splits the throughput
PACK_MAX_TRIALS = 8
PACK_TRIAL_OVERHEAD_MIB = 1024  # per trial, beyond its measured tensors: CUDA context, cuDNN workspace, allocator slack


def auto_gpu_fraction(model: str, scale: int, csv_path: str | Path | None = None) -> float:
    """The GPU fraction for one trial of `model` at `scale`, from the benchmark's GPU table: 1/k for k trials per GPU.

    k is the largest number of trials that fit together in 80% of the memory of the GPU this process sees (each
    needs its measured train peak plus `PACK_TRIAL_OVERHEAD_MIB`) while their summed MFU stays under
    `PACK_SATURATION_MFU`, so that each trial keeps about its solo throughput instead of splitting a busy GPU; at
    most `PACK_MAX_TRIALS`. The fast-path row is used when present, else the fp32 row. Returns 1.0 (one trial per
    GPU, the safe choice) without a GPU, without the CSV, without a successful CUDA row for the model and scale,
    or without a known bf16 peak (no MFU).
    """
    if not torch.cuda.is_available():
        return 1.0
    path = Path(csv_path) if csv_path is not None else DEFAULT_GPU_CSV
    if not path.exists():
        return 1.0
    rows = {r.path: r for r in read_csv(path) if r.model == model and r.scale == scale and not r.error
            and r.device_memory_mib and r.train_peak_mib}  # fmt: skip
    row = rows.get("fast") or rows.get("fp32")
    if row is None or not row.train_mfu:
        return 1.0
    memory = torch.cuda.get_device_properties(0).total_memory / 2**20
    fit = math.floor(PACK_MEMORY_FRACTION * memory / (row.train_peak_mib + PACK_TRIAL_OVERHEAD_MIB))
    busy = math.floor(PACK_SATURATION_MFU / row.train_mfu)
    trials = max(1, min(fit, busy, PACK_MAX_TRIALS))
    return 1.0 / trials
