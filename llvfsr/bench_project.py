"""Project benchmark images/s into the device-hours of a sweep grid at the paper's schedule, before running it.

Paper Sec. 4.1-4.2: 30 epochs over the 24,000 training faces of CelebA-HQ, then the 6,000 test faces. One trial's
hours = 30 x 24,000 / (train images/s) + 6,000 / (inference images/s); a grid's bill is the sum over its variants,
scales and seeds. Periodic validation, metric computation (LPIPS, NIQE, identity) and prior extraction are not
included, so the projection is a lower bound on wall time and an estimate of the GPU-hours the models need.
"""

from __future__ import annotations

from dataclasses import dataclass

from llvfsr.bench import BenchRow
from llvfsr.config import PAPER_EPOCHS

PAPER_TRAIN_IMAGES = 24_000  # CelebA-HQ train split (paper Sec. 4.1)
PAPER_TEST_IMAGES = 6_000


@dataclass(frozen=True)
class TrialProjection:
    """The projected cost of the trials of one variant at one scale."""

    variant: str
    model: str
    scale: int
    trials: int  # seeds
    path: str  # the benchmark path the images/s come from ("fast" when measured, else "fp32")
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


def grid_models(grids: list[str]) -> list[str]:
    """The registry names that the named grids train or evaluate, in first-seen order."""
    from sweeps.grids import GRIDS

    names: list[str] = []
    for grid in grids:
        for variant in GRIDS[grid].variants:
            if variant.model not in names:
                names.append(variant.model)
    return names


def _best_rows(rows: list[BenchRow]) -> dict[tuple[str, int], BenchRow]:
    """The fast-path row of each (model, scale) when it succeeded, else the fp32 row."""
    best: dict[tuple[str, int], BenchRow] = {}
    for row in rows:
        if row.error or row.infer_images_s is None:
            continue
        key = (row.model, row.scale)
        if key not in best or (row.path == "fast" and best[key].path != "fast"):
            best[key] = row
    return best


def project_grid(grid_name: str, rows: list[BenchRow], seeds: int = 1,
                 default_scales: list[int] | tuple[int, ...] = (8, 16)) -> list[TrialProjection]:  # fmt: skip
    """One `TrialProjection` per variant and scale of the grid (its own scales, else `default_scales`)."""
    from llvfsr.models import get_entry
    from sweeps.grids import GRIDS

    grid = GRIDS[grid_name]
    best = _best_rows(rows)
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

    def num(value: float | None, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

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
        lines.append(f"{p.variant:24s} {p.scale:3d} {p.path:>5s} {num(p.train_images_s, '.2f'):>11s} "
                     f"{num(p.infer_images_s, '.2f'):>11s} {num(p.hours_per_trial, '.2f'):>9s} {p.trials:6d} "
                     f"{num(hours, '.2f'):>10s}  {p.note}")  # fmt: skip
    suffix = f" ({missing} rows without a measurement not included)" if missing else ""
    lines.append(f"total: {total:.2f} device-hours{suffix}")
    devices = sorted({(r.device, r.hr_size) for r in rows or []})
    for device, hr_size in devices:
        if hr_size != 256 or not device.startswith(("NVIDIA", "AMD")):
            lines.append(f"note: measured on {device} at HR {hr_size}, not a GPU at the paper's HR 256: these are not "
                         "the GPU-hours of the paper's runs")  # fmt: skip
    return "\n".join(lines)
