"""The train loop: one function that runs alone, under Ray Train (DDP) or inside a Ray Tune trial.

Setup -> data -> model -> optimiser -> (resume) -> epochs of L1 training with periodic validation and full
checkpoints -> test evaluation (per-image CSV, summary, sample images). Paper Sec. 4.2: L1 loss, Adam (lr 2e-4,
betas 0.9/0.99, eps 1e-8), 30 epochs. Whoever drives the loop (CLI, Tune, MLflow) listens through `TrainHooks`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from llvfsr.checkpoint import load_checkpoint, save_checkpoint
from llvfsr.config import ExperimentConfig, flatten, resolve_train
from llvfsr.data.degrade import make_lr
from llvfsr.errors import UsageError, cli_entry
from llvfsr.evaluate import evaluate_split
from llvfsr.memory import check_batch_fits, free_memory, probe_step_memory
from llvfsr.models import get_entry
from llvfsr.models.from_config import build_model, required_fields
from llvfsr.models.official import official_format, official_in
from llvfsr.priors.types import PRIOR_KINDS
from llvfsr.trial_data import SplitData, load_split

log = logging.getLogger(__name__)


class TrainHooks:
    """Callbacks of the train loop; the default does nothing. Every DDP rank calls them; only rank 0 passes a
    checkpoint and a test summary (the others pass None and {})."""

    def restore_path(self) -> Path | None:
        """A checkpoint file to resume from (e.g. the one Ray Tune restored), or None."""
        return None

    def on_epoch(self, epoch: int, metrics: dict[str, float], checkpoint: Path | None) -> None:
        """After each epoch, with that epoch's metrics and the checkpoint file just written."""

    def on_test(self, summary: dict[str, float], out_dir: Path) -> None:
        """After the final test evaluation; `out_dir` holds per_image.csv, summary.json and samples.png."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def trains(config: ExperimentConfig) -> bool:
    """Whether the run trains: not for bicubic, nor for a whole model on the authors' released weights."""
    release = official_in(config.model.kwargs())
    return get_entry(config.model.name).trained and (release is None or not official_format(release[0]).evaluate_only)


def pixel_loss(kind: str, sr: Tensor, hr: Tensor) -> Tensor:
    if kind == "l1":
        return F.l1_loss(sr, hr)
    if kind == "l2":
        return F.mse_loss(sr, hr)
    raise ValueError(f"train.loss must be 'l1' or 'l2', got {kind!r}")


def train_step(core: nn.Module, forward, optimizer: torch.optim.Optimizer, autocast, tcfg, lr: Tensor, hr: Tensor,
               priors) -> Tensor:  # fmt: skip
    """One optimiser step: pixel loss (+ the model's auxiliary loss); returns the detached loss (no host sync).

    `forward` is the model as called (possibly compiled or DDP-wrapped), `core` the plain module that owns
    `auxiliary_loss`; `tcfg` is a resolved `TrainConfig` (loss, aux_weight).
    """
    with autocast:
        sr = forward(lr, priors)
        loss = pixel_loss(tcfg.loss, sr.float(), hr)
        if hasattr(core, "auxiliary_loss"):
            loss = loss + tcfg.aux_weight * core.auxiliary_loss(hr, priors)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def make_autocast(tcfg, device: torch.device) -> torch.autocast:
    """The train step's autocast context: bf16 on CUDA when `tcfg.bf16`; on the CPU only with `cpu_autocast` too."""
    enabled = tcfg.bf16 and (device.type == "cuda" or (device.type == "cpu" and tcfg.cpu_autocast))
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def train_batch(data: SplitData, index: Tensor, scale: int, channels_last: bool, prior_dropout: float = 0.0):
    """(LR, HR, priors) of the faces at `index`, as a train step takes them (LR degraded here, on the device); with
    `prior_dropout`, each of a face's four LLV-FSR priors is withheld with that probability (`Priors.withheld`)."""
    hr, priors = data.batch(index)
    if prior_dropout > 0:
        withheld = torch.rand(len(index), len(PRIOR_KINDS), device=hr.device) < prior_dropout
        priors = dataclasses.replace(priors, withheld=withheld)
    lr = make_lr(hr, scale)
    if channels_last:
        hr, lr = hr.contiguous(memory_format=torch.channels_last), lr.contiguous(memory_format=torch.channels_last)
    return lr, hr, priors


def check_memory(core: nn.Module, autocast, tcfg, data: SplitData, config: ExperimentConfig, batch: int) -> None:
    """Refuse at once a batch whose train step cannot fit the device's free memory (`llvfsr.memory`)."""
    free = free_memory(data.hr.device)
    if free is None:
        return
    # Two faces, not one: batch norm over a 1x1 map needs more than one value per channel (FSRNet, DIC at small sizes).
    index = torch.arange(min(2, batch, len(data)), device=data.hr.device)
    lr, hr, priors = train_batch(data, index, config.data.scale, tcfg.channels_last, tcfg.prior_dropout)
    memory = probe_step_memory(
        core, lambda optimizer, *batch_: train_step(core, core, optimizer, autocast, tcfg, *batch_), lr, hr, priors
    )
    if memory is not None:
        what = f"{config.model.name} x{config.data.scale} at HR {config.data.hr_size}"
        log.info("memory check: %s, batch %d needs about %.2f GiB of %.1f GiB free", what, batch,
                 memory.at(batch) / 2**30, free / 2**30)  # fmt: skip
        check_batch_fits(memory, batch, free, data.hr.device, what)


def world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def validate(model: nn.Module, data: SplitData, scale: int, batch_size: int) -> float:
    """Mean RGB PSNR (dB, float, no crop) on up to the whole split: a cheap signal for training curves."""
    model.eval()
    total = 0.0
    for start in range(0, len(data), batch_size):
        index = torch.arange(start, min(start + batch_size, len(data)), device=data.hr.device)
        hr, priors = data.batch(index)
        sr = model(make_lr(hr, scale), priors).clamp(0, 1)
        mse = (sr - hr).pow(2).flatten(1).mean(1).clamp_min(1e-10)
        total += (-10 * torch.log10(mse)).sum().item()
    model.train()
    return total / len(data)


def train(config: ExperimentConfig, hooks: TrainHooks | None = None) -> dict[str, float]:
    """Train and test one experiment; returns the test summary (means of the per-image metrics)."""
    hooks = hooks or TrainHooks()
    rank, world_size = world()
    tcfg = resolve_train(config.train, config.model.name)
    scale = config.data.scale
    device = pick_device(tcfg.device)
    if device.type == "cuda" and world_size > 1:
        device = torch.device("cuda", torch.cuda.current_device())
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(tcfg.seed)

    # Model first: the prior fields to load depend on the branches it was built with.
    trained = trains(config)
    model = build_model(config).to(device)
    if trained and not 0.0 <= tcfg.prior_dropout < 1.0:
        raise UsageError(f"--prior-dropout {tcfg.prior_dropout}: give a probability in [0, 1)")
    if trained and tcfg.prior_dropout > 0 and not getattr(model, "accepts_withheld_priors", False):
        raise UsageError(
            f"--prior-dropout {tcfg.prior_dropout}: {config.model.name} cannot withhold its priors per face "
            "(prior dropout is for LLV-FSR with its LVPFB fusion)"
        )
    fields = required_fields(model, config.model.name)
    train_data = load_split(config.data, "train", fields, device)
    # Validation faces are held out from the tail of the train split (the test split is never looked at).
    val_n = config.data.val_n if config.data.val_n is not None else max(1, min(32, len(train_data) // 10))
    order = torch.arange(len(train_data), device=device)
    val_data, train_data = train_data.subset(order[-val_n:]), train_data.subset(order[:-val_n])
    if tcfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    core = model

    start_epoch, history, warm_up = 0, [], {}
    optimizer = None
    if trained:
        optimizer = torch.optim.Adam(
            core.parameters(),
            lr=tcfg.lr,
            betas=tcfg.betas,
            eps=tcfg.eps,
            fused=tcfg.fused_adam and device.type == "cuda",
        )
        if hasattr(core, "attach_optimizer"):  # a model that keeps frozen weights out of Adam's state (DIC)
            core.attach_optimizer(optimizer)
        checkpoint = out_dir / "checkpoint.pt"
        restore = hooks.restore_path() or (checkpoint if checkpoint.exists() else None)
        if restore is not None:
            state = load_checkpoint(restore, config, core, optimizer)
            start_epoch, history = state["epoch"], state["history"]
            log.info("resumed from %s at epoch %d", restore, start_epoch)
        elif hasattr(core, "warm_up"):
            # A model-specific stage before the first epoch (DIC pretrains its landmark hourglass). It runs before
            # the DDP wrap, which then broadcasts rank 0's result; a resumed run has it in its checkpoint.
            # Its figures travel with the first epoch's metrics (history, MLflow, Tune).
            warm_up = core.warm_up(train_data, seed=tcfg.seed, progress=rank == 0)
    if world_size > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    forward = torch.compile(model) if tcfg.compile else model

    per_rank = max(1, tcfg.batch_size // world_size)
    steps = len(train_data) // (per_rank * world_size)
    if tcfg.max_steps_per_epoch is not None:
        steps = min(steps, tcfg.max_steps_per_epoch)
    if trained and steps == 0:
        raise UsageError(
            f"--batch-size {tcfg.batch_size}: the train split has only {len(train_data)} faces after holding out "
            f"{len(val_data)} for validation; lower --batch-size or raise --train-n"
        )
    autocast = make_autocast(tcfg, device)
    if trained and start_epoch < tcfg.epochs:
        check_memory(core, autocast, tcfg, train_data, config, per_rank)

    for epoch in range(start_epoch, tcfg.epochs if trained else 0):
        t0 = time.perf_counter()
        # The batch order depends on (seed, epoch) only, so a resumed run draws the same batches.
        generator = torch.Generator().manual_seed(tcfg.seed * 100_003 + epoch)
        order = torch.randperm(len(train_data), generator=generator).to(device)
        running = torch.zeros((), device=device)
        for step in range(steps):
            index = order[step * per_rank * world_size :][rank * per_rank : (rank + 1) * per_rank]
            lr, hr, priors = train_batch(train_data, index, scale, tcfg.channels_last, tcfg.prior_dropout)
            running += train_step(core, forward, optimizer, autocast, tcfg, lr, hr, priors)  # no host sync
        metrics = {
            **warm_up,
            "train_loss": running.item() / steps,
            "epoch_seconds": time.perf_counter() - t0,
            "world_size": world_size,
            "images_per_second": steps * per_rank * world_size / (time.perf_counter() - t0),
        }
        if (epoch + 1) % tcfg.val_every == 0 or epoch + 1 == tcfg.epochs:
            metrics["val_psnr"] = validate(
                core, val_data.subset(torch.arange(min(tcfg.val_max, len(val_data)))), scale, per_rank
            )
        history.append({"epoch": epoch + 1, **metrics})
        path = None
        if rank == 0:
            path = save_checkpoint(out_dir / "checkpoint.pt", config, core, optimizer, epoch + 1, history)
            log.info("epoch %d/%d %s", epoch + 1, tcfg.epochs, json.dumps({k: round(v, 4) for k, v in metrics.items()}))
        hooks.on_epoch(epoch + 1, metrics, path)
        warm_up = {}

    if rank != 0:  # every rank calls the hooks (Ray Train's report is collective); only rank 0 evaluates
        hooks.on_test({}, out_dir)
        return {}
    test_data = load_split(config.data, "test", fields, device)
    summary = evaluate_split(core, test_data, config, tcfg, out_dir)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    (out_dir / "config.json").write_text(json.dumps(flatten(dataclasses.replace(config, train=tcfg)), indent=2))
    hooks.on_test(summary, out_dir)
    return summary


@cli_entry()
def main(argv: list[str] | None = None) -> int:
    """``python -m llvfsr.train --model llvfsr --scale 8 --dataset synthetic ...``: one experiment, no Ray."""
    from llvfsr.cli import experiment_from_args, experiment_parser
    from llvfsr.models.official import official_overrides, parse_official
    from llvfsr.priors.ensure import ensure_priors

    parser = experiment_parser("Train and test one model (no Ray), print the test summary.")
    parser.add_argument("--list-models", action="store_true", help="print the registered models and exit")
    parser.add_argument(
        "--official",
        metavar="NAME=PATH",
        default=None,
        help="evaluate the authors' released weights instead of training (wfen, sfmnet, sisn, dic); "
        "dic-hourglass=PATH trains DIC from the authors' landmark hourglass",
    )
    args = parser.parse_args(argv)
    if args.list_models:
        from llvfsr.models import get_entry, list_models

        for name in list_models():
            print(f"{name:24s} {get_entry(name).summary}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.official:
        name, path = parse_official(args.official)
        args.model = official_format(name).model
    config = experiment_from_args(parser, args)
    if args.official:
        overrides = config.model.overrides + official_overrides(name, path)
        out_dir = args.out or f"runs/{name}-authors-x{config.data.scale}"  # apart from a run trained here
        config = dataclasses.replace(
            config, model=dataclasses.replace(config.model, overrides=overrides), out_dir=out_dir
        )
    try:
        model = build_model(config)
    except (TypeError, ValueError) as error:  # an override the model does not take, or a bad value for it
        given = " ".join(f"--set {key}={value}" for key, value in config.model.overrides)
        parser.error(f"--model {config.model.name} {given}: {error}")
    ensure_priors(config.data, required_fields(model, config.model.name))
    summary = train(config)
    width = max(map(len, summary))
    for key, value in summary.items():
        print(f"{key:{width}s} {value:.4f}")
    print(f"outputs in {config.out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
