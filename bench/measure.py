"""Measuring the models: one train step and one inference forward of a registered model on random inputs.

Both paths run in the same process, side by side (see the package docstring); failures become rows with `error`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from bench.rows import BenchRow
from llvfsr.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig, resolve_train
from llvfsr.measure import MemoryMeter, bf16_peak_tflops, counting, device_label, flop_counter, sync
from llvfsr.models import get_entry
from llvfsr.models.from_config import build_model, required_fields
from llvfsr.priors.types import NUM_LANDMARKS, NUM_MASK_CLASSES, Priors, TextEmbedding

TEXT_DIM, TEXT_TOKENS, TEXT_VALID = 512, 77, 20  # CLIP ViT-B-32 text tower; ~20 real tokens in a caption


@dataclass(frozen=True)
class BenchSettings:
    """What one benchmark run measures; `for_device` fills the defaults of the device."""

    device: str = "cpu"
    hr_size: int = 64
    batch: int = 2
    steps: int = 2  # timed steps per measurement (CUDA: total time; CPU: the median step)
    warmup: int = 1  # untimed steps before them (the first one also counts FLOPs on the fp32 path)
    compile: bool = True  # fast path on CUDA: torch.compile

    @staticmethod
    def for_device(device: str = "auto", hr_size: int | None = None, batch: int | None = None, steps: int | None = None,
                   warmup: int | None = None, compile: bool = True) -> BenchSettings:  # fmt: skip
        """The paper's sizes on CUDA (HR 256, batch 16, 20 steps); a small size on the CPU (HR 64, batch 2, 2 steps)."""
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        gpu = torch.device(device).type == "cuda"
        return BenchSettings(
            device=device,
            hr_size=hr_size or (256 if gpu else 64),
            batch=batch or (TrainConfig.batch_size if gpu else 2),
            steps=steps or (20 if gpu else 2),
            warmup=warmup if warmup is not None else (3 if gpu else 1),
            compile=compile,
        )


def build_for_bench(name: str, scale: int, hr_size: int) -> nn.Module:
    """Build a registered model as a trial would (`build_model`): LLV-FSR variants with CLIP's text width, baselines
    at `hr_size`."""
    config = ExperimentConfig(data=DataConfig(scale=scale, hr_size=hr_size), model=ModelConfig(name=name))
    return build_model(config, text_dim=TEXT_DIM)


def random_inputs(model: nn.Module, name: str, batch: int, hr_size: int, scale: int, device: torch.device,
                  text_dim: int = TEXT_DIM) -> tuple[Tensor, Tensor, Priors]:  # fmt: skip
    """LR float [B,3,h,w] and HR float [B,3,H,W] in [0,1], and random priors with the fields the model reads."""
    generator = torch.Generator().manual_seed(0)
    lr = torch.rand(batch, 3, hr_size // scale, hr_size // scale, generator=generator)
    hr = torch.rand(batch, 3, hr_size, hr_size, generator=generator)
    wanted = required_fields(model, name)

    def text() -> TextEmbedding:
        valid = (torch.arange(TEXT_TOKENS) < TEXT_VALID).expand(batch, TEXT_TOKENS).clone()
        return TextEmbedding(torch.randn(batch, TEXT_TOKENS, text_dim, generator=generator),
                             torch.randn(batch, text_dim, generator=generator), valid)  # fmt: skip

    priors = Priors(
        mask=torch.randint(0, NUM_MASK_CLASSES, (batch, hr_size, hr_size), generator=generator),
        depth=torch.rand(batch, 1, hr_size, hr_size, generator=generator),
        caption=text(),
        description=text(),
        landmarks=torch.rand(batch, NUM_LANDMARKS, 2, generator=generator) * hr_size,
    ).only(wanted)
    return lr.to(device), hr.to(device), priors.to(device)


def _timed(device: torch.device, step: Callable[[], None], settings: BenchSettings,
           counter: FlopCounterMode | None) -> float:  # fmt: skip
    """Images per second of `step` after `settings.warmup` untimed calls (the first one counted by `counter`)."""
    for i in range(settings.warmup):
        with counting(counter if i == 0 else None):
            step()
    sync(device)
    if device.type == "cuda":  # total time, no sync per step: the train loop keeps the GPU queue full too
        start = time.perf_counter()
        for _ in range(settings.steps):
            step()
        sync(device)
        return settings.steps * settings.batch / (time.perf_counter() - start)
    # CPU: the median step, robust to the other processes that share the cores
    times = []
    for _ in range(settings.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return settings.batch / statistics.median(times)


def _prepare(name: str, scale: int, settings: BenchSettings, fast: bool, device: torch.device,
             ) -> tuple[nn.Module, Callable, Tensor, Tensor, Priors]:  # fmt: skip
    torch.manual_seed(0)
    model = build_for_bench(name, scale, settings.hr_size).to(device)
    lr, hr, priors = random_inputs(model, name, settings.batch, settings.hr_size, scale, device)
    if fast:
        model = model.to(memory_format=torch.channels_last)
        lr, hr = lr.contiguous(memory_format=torch.channels_last), hr.contiguous(memory_format=torch.channels_last)
    forward = model
    if fast and settings.compile and device.type == "cuda":
        # Every LLV-FSR variant shares one forward's code: without a reset, dynamo's recompile limit would silently
        # send the later variants back to eager.
        torch._dynamo.reset()
        forward = torch.compile(model)
    return model, forward, lr, hr, priors


def measure_train(name: str, scale: int, settings: BenchSettings, fast: bool,
                  counter: FlopCounterMode | None = None) -> tuple[float, float | None]:  # fmt: skip
    """Train images/s and peak MiB of the train loop's step (`llvfsr.train.train`) on random inputs."""
    from llvfsr.train import train_step

    device = torch.device(settings.device)
    tcfg = resolve_train(TrainConfig(aux_weight=1.0), name)
    with MemoryMeter(device) as meter:
        model, forward, lr, hr, priors = _prepare(name, scale, settings, fast, device)
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=tcfg.lr, betas=tcfg.betas, eps=tcfg.eps,
                                     fused=fast and device.type == "cuda")  # fmt: skip
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast)

        def step() -> None:
            train_step(model, forward, optimizer, autocast, tcfg, lr, hr, priors)

        images_s = _timed(device, step, settings, counter)
    return images_s, meter.peak


def measure_infer(name: str, scale: int, settings: BenchSettings, fast: bool,
                  counter: FlopCounterMode | None = None) -> tuple[float, float | None]:  # fmt: skip
    """Inference images/s and peak MiB of one eval-mode forward under `torch.inference_mode`."""
    device = torch.device(settings.device)
    with MemoryMeter(device) as meter:
        model, forward, lr, _, priors = _prepare(name, scale, settings, fast, device)
        model.eval()
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast)

        def step() -> None:
            with torch.inference_mode(), autocast:
                forward(lr, priors)

        images_s = _timed(device, step, settings, counter)
    return images_s, meter.peak


def bench_model(name: str, scale: int, settings: BenchSettings, fast: bool,
                flops: tuple[float | None, float | None] = (None, None)) -> BenchRow:  # fmt: skip
    """Measure one model on one path. The fp32 path counts the FLOPs; the fast path reuses them via `flops`.

    Any failure (a baseline that does not build, an out-of-memory, a compile error) is caught and returned as a
    row whose `error` says what happened, so one model never stops the benchmark.
    """
    device = torch.device(settings.device)
    row = BenchRow(name, scale, "fast" if fast else "fp32", device_label(device), settings.hr_size, settings.batch)
    if device.type == "cuda":
        row.device_memory_mib = torch.cuda.get_device_properties(device).total_memory / 2**20
    try:
        row.params = sum(p.numel() for p in build_for_bench(name, scale, settings.hr_size).parameters())
        trained = get_entry(name).trained and row.params > 0
        count = not fast
        train_counter = flop_counter() if count and trained else None
        infer_counter = flop_counter() if count else None
        if trained:
            row.train_images_s, row.train_peak_mib = measure_train(name, scale, settings, fast, train_counter)
        row.infer_images_s, row.infer_peak_mib = measure_infer(name, scale, settings, fast, infer_counter)
        if count:
            row.gflops_forward = infer_counter.get_total_flops() / 1e9 / settings.batch
            row.gflops_train = train_counter.get_total_flops() / 1e9 / settings.batch if train_counter else None
        else:
            row.gflops_forward, row.gflops_train = flops
    except Exception as error:  # noqa: BLE001 - any model failure becomes an error row
        row.error = f"{type(error).__name__}: {error}".replace("\n", " ")[:300]
        if device.type == "cuda":
            torch.cuda.empty_cache()
    _fill_rates(row, bf16_peak_tflops(device))
    return row


def _fill_rates(row: BenchRow, peak: float | None) -> None:
    for kind in ("train", "infer"):
        gflops = row.gflops_train if kind == "train" else row.gflops_forward
        images_s = getattr(row, f"{kind}_images_s")
        if gflops is None or images_s is None:
            continue
        tflops = gflops * images_s / 1000
        setattr(row, f"{kind}_tflops", tflops)
        setattr(row, f"{kind}_mfu", tflops / peak if peak else None)


def count_model(name: str, scale: int, hr_size: int = 256, batch: int = 2) -> BenchRow:
    """Parameters and per-image GFLOPs (forward, train step) without timing: fast at the paper's size on any machine.

    Counts on the meta device (shapes only, no arithmetic); a model with an op that has no meta kernel (e.g.
    SFMNet's FFT) is counted by a real pass on the CPU instead. Batch 2, as SISN's BatchNorm needs more than one.
    """
    from llvfsr.train import pixel_loss

    row = BenchRow(name, scale, "count", "meta", hr_size, batch)
    for device in (torch.device("meta"), torch.device("cpu")):
        row.device = device.type
        try:
            with device:
                model = build_for_bench(name, scale, hr_size)
            lr, hr, priors = random_inputs(model, name, batch, hr_size, scale, device)
            row.params = sum(p.numel() for p in model.parameters())
            with torch.no_grad(), flop_counter() as forward:
                model.eval()(lr, priors)
            row.gflops_forward = forward.get_total_flops() / 1e9 / batch
            if get_entry(name).trained and row.params:
                with flop_counter() as train:
                    loss = pixel_loss(resolve_train(TrainConfig(), name).loss, model.train()(lr, priors), hr)
                    if hasattr(model, "auxiliary_loss"):
                        loss = loss + model.auxiliary_loss(hr, priors)
                    loss.backward()
                row.gflops_train = train.get_total_flops() / 1e9 / batch
            row.error = ""
            return row
        except Exception as error:  # noqa: BLE001 - try the CPU, then report
            row.error = f"{type(error).__name__}: {error}".replace("\n", " ")[:300]
    return row


def run_bench(models: list[str], scales: list[int], settings: BenchSettings, fast: bool = True,
              progress: Callable[[BenchRow], None] | None = None) -> list[BenchRow]:  # fmt: skip
    """Every model x scale on the fp32 path and (unless `fast` is False) the fast path, in that order; `progress`
    hears of each row as soon as it is measured (a run stopped by a time limit keeps the rows it reported)."""
    rows = []

    def done(row: BenchRow) -> BenchRow:
        rows.append(row)
        if progress:
            progress(row)
        return row

    for name in models:
        for scale in scales:
            plain = done(bench_model(name, scale, settings, fast=False))
            if fast:
                done(bench_model(name, scale, settings, fast=True, flops=(plain.gflops_forward, plain.gflops_train)))
    return rows
