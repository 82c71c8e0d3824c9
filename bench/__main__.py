"""``python -m bench``: measure the registered models, print the table, write the CSV, project grids into hours.

The projection of sweep grids (``--project``) is the sweeps' (`sweeps.resources`): the command line hands it to
`main`, so that the benchmark itself never reads a grid.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import ModuleType

import torch

from bench.measure import BenchSettings, count_model, run_bench
from bench.rows import BenchRow, fmt, format_counts, format_table, read_csv, write_csv
from llvfsr.errors import UserError, cli_entry
from llvfsr.measure import bf16_peak_tflops, device_label
from llvfsr.models import list_models


def sweeps_projection() -> ModuleType:
    """The projection of measured images/s into a sweep grid's device-hours: `sweeps.resources`, which provides
    `grid_names()`, `grid_models(grids)`, `project_grid(...)` and `format_projection(...)`."""
    from sweeps import resources

    return resources


def parse_args(argv: list[str] | None, projection: ModuleType | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--models", default=None, help="comma-separated registry names (default: all, or the --project grids')"
    )
    p.add_argument("--scales", default="8,16", help="comma-separated up-scaling factors")
    p.add_argument("--batch", type=int, default=None, help="images per step (default: 16 on CUDA, 2 on the CPU)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default: 20 on CUDA, 2 on the CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 3 on CUDA, 1 on the CPU)")
    p.add_argument("--hr-size", type=int, default=None, help="HR side (default: 256 on CUDA, 64 on the CPU)")
    p.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    p.add_argument("--csv", default=None, help="also write the rows to this CSV file")
    p.add_argument("--no-fast", action="store_true", help="measure only the plain fp32 eager path")
    p.add_argument("--no-compile", action="store_true", help="fast path without torch.compile")
    p.add_argument("--count-only", action="store_true", help="parameters and GFLOPs only (HR 256 unless --hr-size)")
    p.add_argument("--project", default=None, help="comma-separated sweep grids to project into device-hours")
    p.add_argument("--seeds", type=int, default=1, help="--project: seeds (trials) per variant and scale")
    p.add_argument("--project-path", choices=("best", "fp32", "fast"), default="best",
                   help="--project: the measured path a trial will run (best: the faster one per model)")  # fmt: skip
    p.add_argument("--from-csv", default=None, help="--project: read the measurements from this CSV, measure nothing")
    args = p.parse_args(argv)
    valid = list_models()
    if args.models:
        args.models = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = [m for m in args.models if m not in valid]
        if unknown:
            p.error(f"--models: unknown {', '.join(unknown)}; valid names: {', '.join(valid)}")
    try:
        args.scales = [int(s) for s in args.scales.split(",")]
    except ValueError:
        p.error(f"--scales must be comma-separated integers, got {args.scales!r}")
    if any(s < 1 for s in args.scales) or args.seeds < 1:
        p.error("--scales and --seeds must be positive")
    if any(v is not None and v < 1 for v in (args.batch, args.steps, args.warmup, args.hr_size)):
        p.error("--batch, --steps, --warmup and --hr-size must be >= 1 (the first warm-up step counts the FLOPs)")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {args.device}: CUDA is not available here (use --device cpu or auto)")
    if args.project:
        grids = (projection or sweeps_projection()).grid_names()
        args.project = [g.strip() for g in args.project.split(",") if g.strip()]
        unknown = [g for g in args.project if g not in grids]
        if unknown:
            p.error(f"--project: unknown grid {', '.join(unknown)}; grids: {', '.join(grids)}")
    elif args.from_csv:
        p.error("--from-csv goes with --project")
    if args.from_csv and not Path(args.from_csv).is_file():
        p.error(f"--from-csv {args.from_csv}: no such file (a CSV written by --csv)")
    if args.count_only and args.project:
        p.error("--count-only measures no images/s to project")
    return args


@cli_entry()
def main(argv: list[str] | None = None, projection: ModuleType | None = None) -> int:
    """The benchmark's command line; `projection` turns rows into a grid's hours (default: `sweeps_projection()`)."""
    args = parse_args(argv, projection)
    if args.project and projection is None:
        projection = sweeps_projection()
    if args.from_csv:
        try:
            rows = read_csv(args.from_csv)
        except (ValueError, TypeError) as error:  # a damaged or foreign CSV
            raise UserError(f"--from-csv {args.from_csv}: not a CSV written by --csv ({error})") from error
    elif args.count_only:
        rows = [count_model(m, s, args.hr_size or 256) for m in args.models or list_models() for s in args.scales]
        print(format_counts(rows))
        if args.csv:
            write_csv(rows, args.csv)
    else:
        settings = BenchSettings.for_device(args.device, args.hr_size, args.batch, args.steps, args.warmup,
                                            compile=not args.no_compile)  # fmt: skip
        models = args.models
        if models is None:
            models = list_models()
            if args.project:
                models = projection.grid_models(args.project)
        device = torch.device(settings.device)
        if device.type == "cuda":
            print(f"device: {device_label(device)}; bf16 peak {fmt(bf16_peak_tflops(device), '.0f')} TFLOP/s")
        else:
            print(f"device: {device_label(device)}. No GPU: a small size on the CPU (not the paper's), MFU n/a.")
        timing = "total time" if device.type == "cuda" else "median step"
        print(f"HR {settings.hr_size}, batch {settings.batch}, {settings.warmup} warm-up + {settings.steps} timed "
              f"steps ({timing}); fast path = bf16 autocast + channels-last"
              + (" + fused Adam" + (" + torch.compile" if settings.compile else "") if device.type == "cuda" else "")
              + "\n", flush=True)  # fmt: skip

        done: list[BenchRow] = []

        def progress(row: BenchRow) -> None:
            status = (
                row.error
                or f"train {fmt(row.train_images_s, '.2f')} img/s, infer {fmt(row.infer_images_s, '.2f')} img/s"
            )
            print(f"  {row.model} x{row.scale} {row.path}: {status}", file=sys.stderr, flush=True)
            done.append(row)
            if args.csv:  # after every row: a run stopped by a time limit (scripts/gpu_check.sh) keeps what it measured
                write_csv(done, args.csv)

        start = time.perf_counter()
        rows = run_bench(models, args.scales, settings, fast=not args.no_fast, progress=progress)
        print(format_table(rows))
        print(f"\nmeasured in {time.perf_counter() - start:.0f} s")
        if args.csv:  # written after every row by `progress`
            print(f"\nCSV: {args.csv}")
    if args.project:
        for grid in args.project:
            projections = projection.project_grid(grid, rows, args.seeds, args.scales, args.project_path)
            print()
            print(projection.format_projection(grid, projections, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
