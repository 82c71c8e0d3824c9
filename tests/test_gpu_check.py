"""The prepared GPU check (scripts/gpu_check.sh, issue 17): its summariser's arithmetic, its command line, and its
CPU rehearsal run the way the GPU machine runs it, with ray, mlflow, open_clip, lpips, pyiqa and deepface impossible
to import. The rehearsal starts a dozen Python processes (1-5 minutes on a shared 2-core machine): a slow test, with
a quick import guard in the default run."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import gpu_check_summary as summary  # noqa: E402
from gpu_check_runs import prepare  # noqa: E402

from bench.rows import BenchRow, read_csv, write_csv  # noqa: E402

ABSENT_ON_GPU = ("ray", "mlflow", "open_clip", "lpips", "pyiqa", "deepface")
BLOCKER = f"""
import sys

BLOCKED = {set(ABSENT_ON_GPU)!r}


class _Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not installed on the GPU machine (blocked by the rehearsal)")
        return None


sys.meta_path.insert(0, _Absent())
"""
T0 = 1_800_000_000.0  # a unix time; log stamps are local time, as `llvfsr.train` writes them


def log_line(t: float, epoch: int, images_s: float, seconds: float) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f",{round((t % 1) * 1000):03d}"
    metrics = {"train_loss": 0.1, "epoch_seconds": seconds, "world_size": 1, "images_per_second": images_s}
    return f"{stamp} INFO epoch {epoch}/100000 {json.dumps(metrics)}"


def write_level(folder: Path, epochs: dict[int, list[tuple[float, float, float]]], samples, warm, stop, exits=None):
    """A level folder as `gpu_check_train.run_level` writes it; epochs: trainer -> [(time, img/s, seconds)]."""
    folder.mkdir(parents=True)
    for i, rows in epochs.items():
        lines = ["2026-01-01 00:00:00,000 INFO loaded train split"]
        lines += [log_line(t, k + 1, ips, sec) for k, (t, ips, sec) in enumerate(rows)]
        (folder / f"p{i}.log").write_text("\n".join(lines) + "\n")
    (folder / "smi.csv").write_text("".join(f"{t:.3f}, {u}, {m}\n" for t, u, m in samples) + "garbage\n")
    level = {"processes": len(epochs), "start": T0, "warm": warm, "stop": stop, "steady_target_s": 10,
             "budget_s": 30, "exit_before_stop": exits or [None] * len(epochs)}  # fmt: skip
    (folder / "level.json").write_text(json.dumps(level))


def test_level_rates_count_only_the_steady_window(tmp_path):
    # Trainer 0: epoch 1 at T0+5 (start-up), then 320 faces every 2 s; the window opens at T0+6 (trainer 1's
    # first epoch), so trainer 0's epochs 2-4 (ending T0+7, +9, +11) count: 960 faces in 6 s = 160 img/s.
    # Trainer 1: epoch 1 at T0+6, epochs 2-3 at T0+10, +14: 640 faces in 8 s = 80 img/s.
    # The steps rate is the median of the logged images/s (what the steps alone ran at).
    epochs = {
        0: [(T0 + 5, 100.0, 3.2), (T0 + 7, 200.0, 1.6), (T0 + 9, 180.0, 1.6 * 200 / 180), (T0 + 11, 160.0, 2.0)],
        1: [(T0 + 6, 50.0, 6.4), (T0 + 10, 90.0, 320 / 90), (T0 + 14, 100.0, 3.2), (T0 + 20, 999.0, 0.32)],
    }
    samples = [(T0 + 3, 0, 100), (T0 + 8, 90, 2000), (T0 + 12, 70, 2500), (T0 + 16, 0, 9000)]
    write_level(tmp_path / "n2", epochs, samples, warm=T0 + 6, stop=T0 + 15)
    write_level(tmp_path / "n1", {0: [(T0 + 5, 100.0, 3.2), (T0 + 7, 200.0, 1.6), (T0 + 9, 200.0, 1.6)]},
                [(T0 + 8, 95, 1000)], warm=T0 + 5, stop=T0 + 9)  # fmt: skip
    rows = summary.summarise_runs(tmp_path)
    assert [r["processes"] for r in rows] == [1, 2]
    one, two = rows
    assert one["img_s_wall"] == pytest.approx(160.0, rel=1e-3)  # 640 faces from T0+5 to T0+9
    assert two["ok"] and two["epochs"] == 5
    assert two["img_s_wall"] == pytest.approx(160.0 + 80.0, rel=1e-3)
    assert two["per_trainer_img_s_wall"] == pytest.approx(120.0, rel=1e-3)
    assert two["img_s_steps"] == pytest.approx(180.0 + 95.0, rel=1e-6)
    assert two["vs_one"] == pytest.approx(1.5, rel=1e-3)
    assert (two["util_mean"], two["util_min"], two["mem_max_mib"], two["samples"]) == (80, 70, 2500, 2)
    assert two["steady_s"] == pytest.approx(9.0)
    text = summary.write_tables(rows, tmp_path, title="pack")
    assert "| 2 | 275.0 | 240.0 | 120.0 | 1.50 | 80 / 70 | 2500 | 5 | 9 | ok |" in text
    with (tmp_path / "table.csv").open() as handle:
        assert [r["processes"] for r in csv.DictReader(handle)] == ["1", "2"]


def test_level_flags_crashes_and_cold_starts(tmp_path):
    epochs = {0: [(T0 + 5, 100.0, 3.2), (T0 + 7, 200.0, 1.6)], 1: [(T0 + 6, 50.0, 6.4)]}
    write_level(tmp_path / "n2", epochs, [], warm=T0 + 6, stop=T0 + 8, exits=[None, 1])
    row = summary.summarise_level(tmp_path / "n2")
    assert not row["ok"] and "[1] ended before the stop" in row["note"] and "1 trainer(s) without" in row["note"]
    assert row["img_s_wall"] == pytest.approx(160.0, rel=1e-3) and row["util_mean"] is None
    write_level(tmp_path / "n4", {i: [] for i in range(4)}, [], warm=None, stop=T0 + 30)
    cold = summary.summarise_level(tmp_path / "n4")
    assert not cold["ok"] and "not every trainer" in cold["note"] and "img_s_wall" not in cold


def test_merge_bench_labels_compiled_rows_and_drops_repeated_fp32(tmp_path):
    def row(model, path, train, error=""):
        return BenchRow(model, 8, path, "GPU", 256, 16, params=10, gflops_train=70.0, train_images_s=train,
                        infer_images_s=3 * train, train_mfu=train * 70 / 1000 / 989, error=error)  # fmt: skip

    write_csv([row("llvfsr", "fp32", 100.0), row("llvfsr", "fast", 150.0), row("wfen", "fp32", 0.0, "OOM")],
              tmp_path / "eager.csv")  # fmt: skip
    write_csv([row("llvfsr", "fp32", 101.0), row("llvfsr", "fast", 260.0), row("wfen", "fp32", 20.0),
               row("wfen", "fast", 30.0)], tmp_path / "compile.csv")  # fmt: skip
    assert summary.merge_bench(tmp_path / "eager.csv", tmp_path / "compile.csv", tmp_path / "merged.csv") == 6
    merged = [(r.model, r.path, r.train_images_s) for r in read_csv(tmp_path / "merged.csv")]
    compiled = [("llvfsr", "fast-compile", 260.0), ("wfen", "fp32", 20.0), ("wfen", "fast-compile", 30.0)]
    assert merged == [("llvfsr", "fp32", 100.0), ("llvfsr", "fast", 150.0), ("wfen", "fp32", 0.0), *compiled]
    table = summary.compile_table(tmp_path / "merged.csv")
    assert "| llvfsr | 8 | 100.0 | 150.0 | 260.0 | 1.50 | 2.60 | 0.018 |" in table  # 260 x 70 GFLOPs / 989 TFLOP/s
    assert "| wfen | 8 | 20.0 | n/a | 30.0 | n/a | 1.50 |" in table  # the eager fp32 row failed: the compiled run's


@pytest.fixture(scope="module")
def blocker(tmp_path_factory) -> dict[str, str]:
    """The environment of a process that cannot import the packages absent on the GPU machine."""
    folder = tmp_path_factory.mktemp("block")
    (folder / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": str(folder), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    blocked = subprocess.run([sys.executable, "-c", "import open_clip"], env=env, capture_output=True, text=True)
    assert blocked.returncode != 0 and "blocked by the rehearsal" in blocked.stderr  # the blocker works
    return env


def test_check_code_imports_without_the_absent_packages(blocker):
    """The quick guard (the whole rehearsal is a slow test): every module the check runs imports."""
    code = ("import bench.__main__, sweeps.resources, llvfsr.train, llvfsr.trial_data, llvfsr.priors.ensure, "
            "llvfsr.evaluate, sweeps.grids, gpu_check_runs, gpu_check_summary, gpu_check_train; "
            "from llvfsr.priors.text_encoder import text_width; from llvfsr.config import DataConfig; "
            "print(text_width(DataConfig(text_encoder='tiny')))")  # fmt: skip
    env = {**blocker, "PYTHONPATH": f"{blocker['PYTHONPATH']}:{REPO}:{REPO / 'scripts'}"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "32"  # the tiny text tower's width, known without building it


@pytest.mark.parametrize(
    "argv, message",
    [([], "error: OUT_DIR is missing"), (["out", "--only", "bench,nope"], "error: --only: unknown step 'nope'"),
     (["out", "--fast"], "error: unknown option --fast")],
)  # fmt: skip
def test_check_bad_command_lines(tmp_path, argv, message):
    result = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), *argv], capture_output=True, text=True,
                            cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and message in result.stderr and not (tmp_path / "out").exists()


def test_check_refuses_missing_prior_stores(tmp_path):
    env = {**os.environ, "GPU_CHECK_PRIORS": str(tmp_path / "nowhere")}
    result = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), str(tmp_path / "out"), "--only", "pack"],
                            capture_output=True, text=True, env=env)  # fmt: skip
    assert result.returncode == 2 and f"error: {tmp_path / 'nowhere'}: no prepared prior stores" in result.stderr


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory, blocker):
    """The whole check in --tiny mode on the CPU, as the GPU machine would run it, imports of its absent
    packages blocked; the prior stores prepared first in this process (where open_clip is installed)."""
    root = tmp_path_factory.mktemp("gpu_check")
    prepare(["pack-tiny", "paper-tiny"], root / "priors")
    env = {**blocker, "GPU_CHECK_PRIORS": str(root / "priors")}
    start = time.perf_counter()
    result = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), str(root / "out"), "--tiny"],
                            env=env, capture_output=True, text=True, timeout=800)  # fmt: skip
    print(f"rehearsal took {time.perf_counter() - start:.0f} s")
    return root / "out", result


@pytest.mark.slow
def test_rehearsal_every_step_passes(rehearsal):
    out, result = rehearsal
    with (out / "steps.tsv").open() as handle:
        steps = {r["step"]: r["exit"] for r in csv.DictReader(handle, delimiter="\t")}
    assert steps == dict.fromkeys(("env", "bench", "compile", "project", "pack", "paper", "report"), "0"), (
        result.stdout[-3000:] + result.stderr[-2000:]
    )
    assert result.returncode == 0
    assert (out.parent / "out.tgz").stat().st_size > 1000
    env = (out / "env.txt").read_text()
    assert "torch" in env and "absent (as on the GPU machine): " + str(dict.fromkeys(ABSENT_ON_GPU, True)) in env


@pytest.mark.slow
def test_rehearsal_benchmark_and_projection(rehearsal):
    out, _ = rehearsal
    rows = read_csv(out / "bench_gpu.csv")
    paths = {(r.model, r.path) for r in rows if not r.error and (r.infer_images_s or 0) > 0}
    assert {("llvfsr", "fp32"), ("llvfsr", "fast"), ("llvfsr", summary.BENCH_COMPILED), ("srcnn", "fast")} <= paths
    assert all(r.hr_size == 32 and r.batch == 2 and r.scale == 8 for r in rows)
    llvfsr = next(r for r in rows if r.model == "llvfsr" and r.path == "fp32")
    assert llvfsr.train_images_s > 0 and 1.0 < llvfsr.gflops_train < 1.4  # measured 1.17 GFLOPs at HR 32
    project = (out / "project.log").read_text()
    assert "grid table1" in project and "grid ablation" in project and "device-hours" in project
    text = (out / "summary.md").read_text()
    for section in ("## Environment", "## Benchmark", "## torch.compile", "## Projection", "## Packing",
                    "## LLV-FSR x8 at the paper's size"):  # fmt: skip
        assert section in text
    assert "| llvfsr | 8 |" in text  # the compile table has the compiled model


@pytest.mark.slow
@pytest.mark.parametrize("run, levels", [("pack", ["1", "2"]), ("paper", ["1"])])
def test_rehearsal_training_runs(rehearsal, run, levels):
    out, _ = rehearsal
    with (out / run / "table.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["processes"] for r in rows] == levels
    for row in rows:
        assert row["ok"] == "True", row
        assert float(row["img_s_wall"]) > 1 and int(row["epochs"]) >= 1  # CPU, HR 32: ~100 img/s per trainer
    assert (out / run / "n1" / "smi.csv").exists() and (out / run / "n1" / "p0.log").stat().st_size > 0
