"""`python -m bench`: the CSV's counts against direct counts, the projection arithmetic, GPU packing, errors."""

from __future__ import annotations

import types

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import bench.__main__ as bench_cli
from bench import measure
from bench.measure import build_for_bench, random_inputs
from bench.rows import BenchRow, format_table, read_csv, write_csv
from llvfsr.measure import MemoryMeter, bf16_peak_tflops, flop_counter
from llvfsr.models import list_models
from llvfsr.models.registry import _REGISTRY, ModelEntry
from llvfsr.train import pixel_loss
from sweeps.resources import auto_gpu_fraction, project_grid, trial_hours

HR, BATCH, MODELS = 32, 2, ("srcnn", "llvfsr-model1")


@pytest.fixture(scope="module")
def bench_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "bench.csv"
    code = bench_cli.main(["--models", ",".join(MODELS), "--scales", "8", "--hr-size", str(HR), "--batch", str(BATCH),
                       "--steps", "1", "--device", "cpu", "--csv", str(path)])  # fmt: skip
    assert code == 0
    return read_csv(path)


def direct_counts(name: str) -> tuple[float, float, float]:
    """Per-image GFLOPs of an eval forward (torch's counter), of a train step (the bench's counter) and of the
    same train step with torch's unmodified counter."""
    model = build_for_bench(name, 8, HR)
    lr, hr, priors = random_inputs(model, name, BATCH, HR, 8, torch.device("cpu"))
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as forward:
        model(lr, priors)
    model.train()
    train_counts = []
    for counter in (flop_counter(), FlopCounterMode(display=False)):
        with counter:
            pixel_loss("l1", model(lr, priors), hr).backward()
        train_counts.append(counter.get_total_flops())
    return forward.get_total_flops() / 1e9 / BATCH, train_counts[0] / 1e9 / BATCH, train_counts[1] / 1e9 / BATCH


def test_csv_has_both_paths_for_each_model(bench_csv):
    assert sorted((r.model, r.path) for r in bench_csv) == sorted((m, p) for m in MODELS for p in ("fp32", "fast"))
    for row in bench_csv:
        assert row.error == "" and row.hr_size == HR and row.batch == BATCH and row.scale == 8
        assert row.train_images_s > 0 and row.infer_images_s > 0
        assert row.train_peak_mib > 0 and row.infer_peak_mib > 0
        assert row.train_mfu is None  # no bf16 peak for a CPU
        assert row.train_tflops == pytest.approx(row.gflops_train * row.train_images_s / 1000)


@pytest.mark.parametrize("name", MODELS)
def test_csv_params_and_gflops_equal_direct_counts(bench_csv, name):
    model = build_for_bench(name, 8, HR)
    forward, train, torch_train = direct_counts(name)
    for row in (r for r in bench_csv if r.model == name):
        assert row.params == sum(p.numel() for p in model.parameters())
        assert row.gflops_forward == pytest.approx(forward, rel=1e-9)
        assert row.gflops_train == pytest.approx(train, rel=1e-9)
    if name == "srcnn":  # no grouped convolutions: the bench's counter is torch's
        assert train == pytest.approx(torch_train, rel=1e-9)
    else:  # LLV-FSR's depth-wise convolutions: torch's counter over-counts their backward
        assert train < torch_train


@pytest.mark.parametrize("groups", [1, 4, 16])
def test_flop_counter_conv_backward_is_twice_the_forward(groups):
    conv = torch.nn.Conv2d(16, 32, 3, padding=1, groups=groups)
    x = torch.randn(2, 16, 10, 10, requires_grad=True)
    analytic = 2 * 2 * 32 * (16 // groups) * 9 * 10 * 10  # 2 flops per MAC x batch x Cout x Cin/g x k^2 x H x W
    with flop_counter() as forward:
        y = conv(x)
    with flop_counter() as backward:
        y.sum().backward()
    assert forward.get_total_flops() == analytic
    assert backward.get_total_flops() == 2 * analytic  # grad_input and grad_weight


def test_bad_model_name_exits_2_listing_valid_names(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_cli.main(["--models", "srcnn,not-a-model"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "not-a-model" in err and all(name in err for name in list_models())


def test_broken_model_becomes_an_error_row(monkeypatch):
    monkeypatch.setitem(_REGISTRY, "broken", ModelEntry("broken", "baselines.no_such_module:build", "test"))
    settings = measure.BenchSettings(device="cpu", hr_size=HR, batch=BATCH, steps=1, warmup=1)
    rows = measure.run_bench(["broken", "srcnn"], [8], settings, fast=False)
    assert rows[0].error.startswith("ModuleNotFoundError") and rows[0].train_images_s is None
    assert rows[1].error == "" and rows[1].train_images_s > 0
    assert "broken x8 fp32: ModuleNotFoundError" in format_table(rows)


def fake_rows(train: float, infer: float) -> list[BenchRow]:
    names = ["llvfsr", "llvfsr-model1", "llvfsr-model2"] + [f"llvfsr-wo-{p}" for p in ("mask", "depth", "caption",
                                                                                      "description")]  # fmt: skip
    return [BenchRow(n, 8, "fast", "NVIDIA H100 80GB HBM3", 256, 16, train_images_s=train, infer_images_s=infer)
            for n in names]  # fmt: skip


def test_project_prints_hours_from_given_images_per_second(tmp_path, capsys):
    path = tmp_path / "given.csv"
    write_csv(fake_rows(train=100.0, infer=500.0), path)
    assert bench_cli.main(["--project", "ablation", "--from-csv", str(path), "--seeds", "3", "--scales", "8"]) == 0
    out = capsys.readouterr().out
    per_trial = (30 * 24_000 / 100.0 + 6_000 / 500.0) / 3600  # 2.0033 h
    assert trial_hours(100.0, 500.0) == pytest.approx(per_trial)
    llvfsr_line = next(line for line in out.splitlines() if line.startswith("llvfsr "))
    assert f"{per_trial:.2f}" in llvfsr_line and f"{3 * per_trial:.2f}" in llvfsr_line
    assert f"total: {7 * 3 * per_trial:.2f} device-hours" in out  # 7 variants x 3 seeds


def test_project_table1_counts_missing_models_and_untrained_bicubic(tmp_path, capsys):
    rows = fake_rows(train=50.0, infer=100.0)[:1] + [BenchRow("bicubic", 8, "fp32", "NVIDIA H100", 256, 16,
                                                              infer_images_s=10.0)]  # fmt: skip
    path = tmp_path / "given.csv"
    write_csv(rows, path)
    bench_cli.main(["--project", "table1", "--from-csv", str(path)])
    out = capsys.readouterr().out
    bicubic_x8 = next(line for line in out.splitlines() if line.startswith("bicubic") and " 8 " in line)
    assert f"{6_000 / 10.0 / 3600:.2f}" in bicubic_x8 and "evaluated only" in bicubic_x8
    assert "no successful measurement" in out  # x16 rows and the baselines were not measured


@pytest.fixture
def fake_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda _: types.SimpleNamespace(total_memory=80 * 2**30))


def packing_csv(tmp_path, peak_mib: float, mfu: float | None):
    path = tmp_path / "gpu.csv"
    write_csv([BenchRow("llvfsr", 8, "fast", "NVIDIA H100 80GB HBM3", 256, 16, train_images_s=100.0,
                        train_peak_mib=peak_mib, train_mfu=mfu, device_memory_mib=81559.0)], path)  # fmt: skip
    return path


def test_auto_gpu_fraction_packs_by_memory_and_utilisation(tmp_path, fake_gpu):
    # 80% of 80 GiB = 65,536 MiB: six trials of 9,000 + 1,024 MiB fit; MFU 0.05 leaves room for eight before 0.4.
    assert auto_gpu_fraction("llvfsr", 8, packing_csv(tmp_path, 9_000, 0.05)) == pytest.approx(1 / 6)
    assert auto_gpu_fraction("llvfsr", 8, packing_csv(tmp_path, 10_000, 0.05)) == pytest.approx(1 / 5)
    # memory for 32 trials, but MFU 0.1 allows four; capped at PACK_MAX_TRIALS otherwise
    assert auto_gpu_fraction("llvfsr", 8, packing_csv(tmp_path, 1_000, 0.1)) == pytest.approx(1 / 4)
    assert auto_gpu_fraction("llvfsr", 8, packing_csv(tmp_path, 1_000, 0.001)) == pytest.approx(1 / 8)
    # a busy GPU (MFU 0.3) or a large model (40 GiB) gets a whole GPU
    assert auto_gpu_fraction("llvfsr", 8, packing_csv(tmp_path, 1_000, 0.3)) == 1.0
    assert auto_gpu_fraction("llvfsr", 8, packing_csv(tmp_path, 40_000, 0.01)) == 1.0


def test_auto_gpu_fraction_defaults_to_a_whole_gpu(tmp_path, monkeypatch, fake_gpu):
    path = packing_csv(tmp_path, 10_000, 0.05)
    assert auto_gpu_fraction("llvfsr", 16, path) == 1.0  # no row for x16
    assert auto_gpu_fraction("srcnn", 8, path) == 1.0  # no row for the model
    assert auto_gpu_fraction("llvfsr", 8, tmp_path / "missing.csv") == 1.0
    assert auto_gpu_fraction("llvfsr", 8, packing_csv(tmp_path, 10_000, None)) == 1.0  # unknown GPU: no MFU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert auto_gpu_fraction("llvfsr", 8, packing_csv(tmp_path, 10_000, 0.05)) == 1.0


@pytest.mark.parametrize(("name", "peak"), [("NVIDIA H100 80GB HBM3", 989.4), ("NVIDIA H100 PCIe", 756.0),
                                            ("NVIDIA H200", 989.4), ("NVIDIA A100-SXM4-80GB", 312.0),
                                            ("NVIDIA GeForce RTX 4090", 165.2), ("Tesla T4", None)])  # fmt: skip
def test_bf16_peak_table(monkeypatch, name, peak):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda _=None: name)
    assert bf16_peak_tflops(torch.device("cuda")) == peak
    assert bf16_peak_tflops(torch.device("cpu")) is None


def test_memory_meter_sees_a_cpu_allocation():
    with MemoryMeter(torch.device("cpu")) as small:
        torch.ones(1024)
    with MemoryMeter(torch.device("cpu")) as large:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        del block
    assert large.peak >= 60 and large.peak > small.peak + 50


@pytest.mark.parametrize("name", MODELS)
def test_count_only_on_meta_equals_a_real_cpu_count(name):
    row = measure.count_model(name, 8, HR, batch=BATCH)
    forward, train, _ = direct_counts(name)
    assert row.device == "meta" and row.error == ""
    assert row.params == sum(p.numel() for p in build_for_bench(name, 8, HR).parameters())
    assert row.gflops_forward == pytest.approx(forward, rel=1e-9)
    assert row.gflops_train == pytest.approx(train, rel=1e-9)


def test_count_only_falls_back_to_the_cpu(monkeypatch):
    real_build = measure.build_for_bench

    def no_meta(name, scale, hr_size):  # a model with an op that has no meta kernel
        model = real_build(name, scale, hr_size)
        if next(model.parameters()).is_meta:
            raise NotImplementedError("no meta kernel")
        return model

    monkeypatch.setattr(measure, "build_for_bench", no_meta)
    row = measure.count_model("srcnn", 8, HR, batch=BATCH)
    assert row.device == "cpu" and row.error == "" and row.gflops_forward == pytest.approx(direct_counts("srcnn")[0])


def test_project_path_picks_fp32_fast_or_the_faster():
    rows = [BenchRow("srcnn", 8, "fp32", "cpu", 64, 2, train_images_s=30.0, infer_images_s=90.0),
            BenchRow("srcnn", 8, "fast", "cpu", 64, 2, train_images_s=20.0, infer_images_s=60.0)]  # fmt: skip
    picked = {path: next(p for p in project_grid("table1", rows, 1, (8,), path) if p.model == "srcnn")
              for path in ("fp32", "fast", "best")}  # fmt: skip
    assert picked["fp32"].train_images_s == 30.0 and picked["fast"].train_images_s == 20.0
    assert picked["best"].path == "fp32"
    assert picked["best"].hours_per_trial == pytest.approx(trial_hours(30.0, 90.0))
    with pytest.raises(ValueError, match="path must be one of"):
        project_grid("table1", rows, 1, (8,), "bf16")


@pytest.mark.parametrize("argv", [["--warmup", "0"], ["--scales", "8,x"], ["--project", "nope"],
                                  ["--from-csv", "x.csv"], ["--count-only", "--project", "smoke"]])  # fmt: skip
def test_bad_arguments_exit_2(argv):
    with pytest.raises(SystemExit) as exit_info:
        bench_cli.main(argv)
    assert exit_info.value.code == 2
