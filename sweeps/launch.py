"""Hand a grid to Ray Tune: prior stores first, then the MLflow parent run, then the Tuner (new or restored)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from llvfsr.config import ExperimentConfig
from llvfsr.models.official import official_in
from llvfsr.priors.ensure import ensure_priors
from llvfsr.tracking import default_tracking_uri, end_parent_run, ensure_experiment, start_parent_run
from sweeps.grids import Grid, variant_data, variant_priors
from sweeps.presets import PRESETS
from sweeps.trial import SweepContext, trial_fn

HPO_SPACE = {"lr": (1e-4, 1e-3), "batch_size": (8, 16, 32), "width": (16, 32, 64)}


def param_space(grid: Grid, args: argparse.Namespace) -> dict:
    from ray import tune

    if grid.search:
        return {
            "variant": grid.variants[0].name,
            "seed": 0,
            "scale": grid.scales[0],
            "lr": tune.loguniform(*HPO_SPACE["lr"]),
            "batch_size": tune.choice(list(HPO_SPACE["batch_size"])),
            "width": tune.choice(list(HPO_SPACE["width"])),
        }
    return {
        "variant": tune.grid_search([v.name for v in grid.variants]),
        "scale": tune.grid_search(list(grid.scales)),
        "seed": tune.grid_search(list(range(args.seeds))),
    }


def sweep_name(grid: Grid, preset_name: str | None) -> str:
    """The default sweep name says what runs: the grid, its scales and the synthetic preset, e.g. table1-x8x16-smoke."""
    return f"{grid.name}-" + "".join(f"x{s}" for s in grid.scales) + (f"-{preset_name}" if preset_name else "")


def prepare_priors(grid: Grid, base: ExperimentConfig, scales: tuple[int, ...]) -> None:
    """Extract every prior field any variant needs, once per scale (and per variant data change), before any trial
    starts."""
    needed: dict[tuple, set[str]] = {}
    for variant in grid.variants:
        needed.setdefault(variant.data, set()).update(variant_priors(variant))
    for changes, fields in needed.items():
        for scale in scales:
            ensure_priors(variant_data(base.data, changes, scale=scale), fields)


def init_ray(args: argparse.Namespace) -> None:
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if args.address:
        ray.init(address=args.address, log_to_driver=True)
    else:
        # Trials that drive a TorchTrainer hold a slot while their workers hold others: declare enough logical CPUs.
        needed = args.cpus_per_trial * args.workers_per_trial + (1 if args.workers_per_trial > 1 else 0)
        # "local": a new instance even when another Ray runs on this machine (plain ray.init() would join the
        # latest one found, another user's sweep or test, and then refuse num_cpus).
        ray.init(address="local", num_cpus=max(os.cpu_count() or 1, int(needed + 0.999)), include_dashboard=False)


def launch(args: argparse.Namespace, grid: Grid, base: ExperimentConfig, preset_name: str, gpus: float) -> int:
    from ray import tune
    from ray.tune import CheckpointConfig, FailureConfig, RunConfig

    scales = grid.scales  # sweeps/run.py sets them: --scale, else the grid's own
    sweep = args.name or sweep_name(grid, preset_name if not args.data else None)
    storage = str(Path(args.storage).absolute()) if "://" not in args.storage else args.storage
    work_dir = str(Path(storage if "://" not in storage else "ray_results").absolute() / sweep / "work")
    prepare_priors(grid, base, scales)

    tracking_uri = args.tracking_uri or default_tracking_uri()
    experiment_id = ensure_experiment(tracking_uri, args.experiment)
    parent = start_parent_run(tracking_uri, experiment_id, sweep, grid.name, resume=args.resume)
    preset = PRESETS[preset_name]
    ctx = SweepContext(
        grid=grid.name,
        sweep=sweep,
        base=base,
        variants={v.name: v for v in grid.variants},
        # The authors' releases keep their own sizes: no preset size overrides.
        model_overrides={
            v.name: () if official_in(dict(v.overrides)) else preset.overrides_for(v.model) for v in grid.variants
        },
        work_dir=work_dir,
        tracking_uri=tracking_uri,
        experiment_id=experiment_id,
        parent_run_id=parent,
        workers_per_trial=args.workers_per_trial,
        use_gpu=gpus > 0,
        cpus_per_trial=args.cpus_per_trial,
    )
    init_ray(args)
    if args.workers_per_trial > 1:
        resources = {"cpu": 0.5, "gpu": 0}  # the Tune function only drives; the TorchTrainer workers hold the rest
    else:
        resources = {"cpu": args.cpus_per_trial, "gpu": gpus}
    trainable = tune.with_resources(tune.with_parameters(trial_fn, ctx=ctx), resources)

    experiment_path = os.path.join(storage, sweep)
    if args.resume and tune.Tuner.can_restore(experiment_path):
        print(f"resuming {experiment_path}: finished trials are kept, unfinished ones continue from checkpoints")
        tuner = tune.Tuner.restore(experiment_path, trainable, resume_unfinished=True, resume_errored=True)
    else:
        if args.resume:
            print(f"nothing to resume at {experiment_path}; starting the sweep")
        tune_config = tune.TuneConfig(max_concurrent_trials=args.max_concurrent or None)
        if grid.search:
            from ray.tune.search.optuna import OptunaSearch

            tune_config = tune.TuneConfig(
                search_alg=OptunaSearch(
                    metric="val_psnr", mode="max", seed=0, study_name=sweep, storage=optuna_storage(work_dir)
                ),
                num_samples=args.trials,
                max_concurrent_trials=args.max_concurrent or None,
            )
        run_config = RunConfig(
            name=sweep,
            storage_path=storage,
            failure_config=FailureConfig(max_failures=2),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
        )
        tuner = tune.Tuner(
            trainable, param_space=param_space(grid, args), tune_config=tune_config, run_config=run_config
        )
    results = tuner.fit()
    failed = [r for r in results if r.error is not None]
    end_parent_run(tracking_uri, parent, [failed_trial_name(r) for r in failed])
    print(
        f"\nsweep {sweep}: {len(results) - len(failed)} trial(s) finished, {len(failed)} failed; "
        f"MLflow: {tracking_uri} experiment {args.experiment!r}"
    )
    for result in failed:
        print(f"  failed: {failed_trial_name(result)} ({result.path})")
    return 1 if failed else 0


def failed_trial_name(result) -> str:
    """A failed trial as the parent run names it: variant, scale, seed and the last line of its error."""
    config = result.config or {}
    error = str(result.error).strip().splitlines() or ["unknown error"]
    return f"{config.get('variant')} x{config.get('scale')} seed {config.get('seed')}: {error[-1]}"


def optuna_storage(work_dir: str):
    """The hpo grid's Optuna study on disk (``<sweep>/optuna.db``): what the searcher was told, kept for analysis."""
    from optuna.storages import RDBStorage

    path = Path(work_dir).parent / "optuna.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return RDBStorage(f"sqlite:///{path}")
