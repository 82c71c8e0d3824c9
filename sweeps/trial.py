"""The Ray Tune trial: build the experiment config of one variant x seed, train it, record it in MLflow.

One worker: the Tune function trains directly (Ray Train on 2 CPUs costs seconds per report). More workers: the
Tune function becomes the driver of a Ray Train `TorchTrainer` (DDP), the current Ray pattern (no
``Tuner(trainer)``); rank 0 of the workers does the MLflow logging.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from llvfsr.config import ExperimentConfig, ModelConfig
from llvfsr.models.official import official_in
from llvfsr.train import TrainHooks, train
from sweeps.grids import Variant, variant_data, variant_priors


@dataclass(frozen=True)
class SweepContext:
    """What every trial of a sweep shares (passed with `tune.with_parameters`)."""

    grid: str
    sweep: str
    base: ExperimentConfig
    variants: dict[str, Variant]
    model_overrides: dict[str, tuple]  # variant name -> the preset's size overrides for its model
    work_dir: str  # absolute: trial outputs live in <work_dir>/<trial_id>
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    workers_per_trial: int = 1
    use_gpu: bool = False
    cpus_per_trial: float = 1


def experiment_for(ctx: SweepContext, params: dict, trial_id: str) -> tuple[Variant, ExperimentConfig]:
    """The config of one trial from the Tune params (variant, seed, scale, and the hpo search values)."""
    variant = ctx.variants[params["variant"]]
    overrides = dict(ctx.model_overrides.get(variant.name, ()))
    overrides.update(dict(variant.overrides))
    if "width" in params:
        overrides["width"] = params["width"]
    train_changes = {**dict(variant.train), "seed": params.get("seed", ctx.base.train.seed)}
    for key in ("lr", "batch_size"):
        if key in params:
            train_changes[key] = params[key]
    config = dataclasses.replace(
        ctx.base,
        data=variant_data(ctx.base.data, variant.data, scale=params.get("scale", ctx.base.data.scale)),
        model=ModelConfig(variant.model, tuple(sorted(overrides.items()))),
        train=dataclasses.replace(ctx.base.train, **train_changes),
        out_dir=str(Path(ctx.work_dir) / trial_id),
    )
    return variant, config


# Tests set this to an epoch number: a trial's first attempt then dies (SIGKILL, as from the OOM killer) right
# after reporting that epoch's checkpoint, so that Tune's retry from the checkpoint is exercised for real.
KILL_AFTER_EPOCH_ENV = "LLVFSR_TEST_KILL_TRIAL_AFTER_EPOCH"


class TuneHooks(TrainHooks):
    """Reports each epoch to Tune with its checkpoint and mirrors everything into the trial's MLflow run."""

    def __init__(self, run, report, restored: Path | None):
        self.run, self.report, self.restored = run, report, restored
        self.last: dict[str, float] = {}

    def restore_path(self) -> Path | None:
        return self.restored

    def on_epoch(self, epoch: int, metrics: dict[str, float], checkpoint: Path) -> None:
        from ray.tune import Checkpoint

        if self.restored is not None and not self.last:  # the first epoch of a retried or resumed attempt
            self.run.client.set_tag(self.run.run_id, "resumed_from_epoch", str(epoch - 1))
        self.last = {**metrics, "epoch": epoch}
        self.run.log_epoch(epoch, metrics, checkpoint)
        with tempfile.TemporaryDirectory() as folder:
            shutil.copy(checkpoint, Path(folder) / "checkpoint.pt")
            self.report({**metrics, "epoch": epoch}, checkpoint=Checkpoint.from_directory(folder))
        if self.restored is None and os.environ.get(KILL_AFTER_EPOCH_ENV) == str(epoch):
            os.kill(os.getpid(), signal.SIGKILL)  # fault injection for tests: the OS kills the worker mid-trial

    def on_test(self, summary: dict[str, float], out_dir: Path) -> None:
        self.run.log_test(summary, out_dir)
        # No "done": True here. Tune answers a done result by stopping the trial inside `report` (SystemExit(0) in
        # this thread) before the MLflow run is closed; the run then ended FAILED and the actor was torn down under
        # the still-running thread ("Fatal Python error: Aborted"). The trial ends when this function returns, and
        # the searcher reads val_psnr from this, the last report.
        self.report({**self.last, **summary})


def _restored_checkpoint(checkpoint) -> Path | None:
    if checkpoint is None:
        return None
    folder = Path(checkpoint.to_directory())
    return folder / "checkpoint.pt" if (folder / "checkpoint.pt").exists() else None


def _run_and_track(ctx: SweepContext, params: dict, trial_id: str, report, checkpoint) -> dict:
    import ray

    from llvfsr.tracking import TrialRun, close_finished_run, find_trial_run, trial_tags

    variant, config = experiment_for(ctx, params, trial_id)
    done = find_trial_run(ctx.tracking_uri, ctx.experiment_id, ctx.parent_run_id, trial_id)
    if done is not None and done.data.tags.get("status") == "finished":
        # The driver died after this trial finished but before Tune recorded it: report, do not run it again.
        close_finished_run(ctx.tracking_uri, done)
        report(dict(done.data.metrics))
        return dict(done.data.metrics)
    tags = trial_tags(config, variant.name, ctx.grid, ctx.sweep, trial_id, variant_priors(variant))
    tags.update({"node_id": ray.get_runtime_context().get_node_id(), "world_size": str(ctx.workers_per_trial)})
    if official_in(config.model.kwargs()) is not None:
        tags["weights"] = "official"  # the authors' released checkpoint (Table 1's "authors' weights" rows)
    run = TrialRun(ctx.tracking_uri, ctx.experiment_id, ctx.parent_run_id, tags, config)
    try:
        summary = train(config, TuneHooks(run, report, _restored_checkpoint(checkpoint)))
    except Exception as error:
        run.close(error=error)
        raise
    except BaseException:  # SystemExit(0) from `report`: Tune stopped the trial (a scheduler, the driver ending)
        run.close(stopped=True)
        raise
    run.close()
    return summary


def _ddp_worker(args: dict) -> None:
    """One Ray Train worker: DDP is set up by Ray; rank 0 tracks and reports."""
    import ray.train

    ctx, params, trial_id = args["ctx"], args["params"], args["trial_id"]
    rank = ray.train.get_context().get_world_rank()
    if rank == 0:
        _run_and_track(ctx, params, trial_id, ray.train.report, ray.train.get_checkpoint())
    else:
        _, config = experiment_for(ctx, params, trial_id)
        train(config, ReportOnlyHooks(ray.train.report))


class ReportOnlyHooks(TrainHooks):
    """Ranks other than 0 join each collective report without a checkpoint or MLflow logging."""

    def __init__(self, report):
        self.report = report

    def on_epoch(self, epoch: int, metrics: dict[str, float], checkpoint: Path | None) -> None:
        self.report({**metrics, "epoch": epoch})

    def on_test(self, summary: dict[str, float], out_dir: Path) -> None:
        self.report({})


def trial_fn(params: dict, ctx: SweepContext) -> None:
    """The Tune function of every trial."""
    from ray import tune

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    trial_id = tune.get_context().get_trial_id()
    torch.set_num_threads(max(1, int(ctx.cpus_per_trial)))
    if ctx.workers_per_trial <= 1:
        _run_and_track(ctx, params, trial_id, tune.report, tune.get_checkpoint())
        return
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    trainer = TorchTrainer(
        _ddp_worker,
        train_loop_config={"ctx": ctx, "params": params, "trial_id": trial_id},
        scaling_config=ScalingConfig(num_workers=ctx.workers_per_trial, use_gpu=ctx.use_gpu),
        torch_config=TorchConfig(backend="nccl" if ctx.use_gpu else "gloo"),
        run_config=RunConfig(name=f"{ctx.sweep}-{trial_id}", storage_path=os.path.join(ctx.work_dir, "ray_train")),
    )
    result = trainer.fit()
    tune.report(dict(result.metrics or {}))
