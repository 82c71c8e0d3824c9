"""Integration: real sweeps through Ray Tune into real SQLite MLflow stores (smoke, resume, DDP, Optuna, cluster)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from analysis.tables import main as tables_main
from sweeps.run import main as sweep_main

REPO = Path(__file__).resolve().parent.parent
EXPERIMENT = "itest"


def sweep_args(tmp: Path, *extra: str) -> list[str]:
    return [
        "--storage",
        str(tmp / "ray_results"),
        "--tracking-uri",
        f"sqlite:///{tmp / 'mlflow.db'}",
        "--experiment",
        EXPERIMENT,
        *extra,
    ]


def trial_runs(tmp: Path, **tag_filters) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    query = " and ".join(["tags.role = 'trial'"] + [f"tags.{k} = '{v}'" for k, v in tag_filters.items()])
    return client.search_runs([experiment.experiment_id], query)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One real smoke sweep (LLV-FSR + Model 1) shared by the tests that read it."""
    tmp = tmp_path_factory.mktemp("smoke")
    # Sample system metrics every 0.2 s (MLflow's own settings) so that a one-second trial records some.
    os.environ["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"] = "0.2"
    os.environ["MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING"] = "1"
    cwd = os.getcwd()
    os.chdir(tmp)  # the preset's prior store lives in ./priors_cache
    try:
        assert sweep_main(["--grid", "smoke", *sweep_args(tmp)]) == 0
    finally:
        os.chdir(cwd)
        import ray

        ray.shutdown()
    return tmp


def test_smoke_sweep_records_what_analysis_needs(smoke, capsys):
    client = MlflowClient(tracking_uri=f"sqlite:///{smoke / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    parents = client.search_runs([experiment.experiment_id], "tags.role = 'sweep'")
    assert len(parents) == 1 and parents[0].data.tags["grid"] == "smoke"
    assert "version.torch" in parents[0].data.tags and "git.commit" in parents[0].data.tags
    runs = trial_runs(smoke)
    assert sorted(r.data.tags["model"] for r in runs) == ["llvfsr", "llvfsr-model1"]
    for run in runs:
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        assert tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert tags["status"] == "finished" and tags["metric.convention"] == "paper" and tags["scale"] == "8"
        assert tags["priors"] == ("caption,depth,description,mask" if tags["model"] == "llvfsr" else "none")
        assert json.loads(params["model.name"]) == tags["model"] and json.loads(params["data.scale"]) == 8
        assert {"test_psnr", "test_ssim", "test_psnr_eyes", "train_loss", "val_psnr"} <= set(metrics)
        assert (
            "test_niqe" not in metrics and "192 px" in tags["metric.niqe.unavailable"]
        )  # 32 px faces: said, not faked
        history = client.get_metric_history(run.info.run_id, "train_loss")
        assert [m.step for m in history] == [1, 2]
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"per_image.csv", "samples.png", "summary.json"} <= artifacts
        assert Path(tags["checkpoint"]).name == "checkpoint.pt"
        assert any(k.startswith("system/") for k in metrics)  # system metrics were on
    assert tables_main(["--tracking-uri", f"sqlite:///{smoke / 'mlflow.db'}", "--experiment", EXPERIMENT]) == 0
    out = capsys.readouterr().out
    assert "Table 2, x8" in out and "Model" not in out.split("Table 2")[0]
    assert "29.35" in out  # the paper's LLV-FSR PSNR printed alongside


def test_mlflow_server_serves_the_sweep_runs_over_rest(smoke):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{smoke / 'mlflow.db'}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}/api/2.0/mlflow"
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"{base}/experiments/get-by-name?experiment_name={EXPERIMENT}") as r:
                    experiment_id = json.load(r)["experiment"]["experiment_id"]
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not come up")
        body = json.dumps({"experiment_ids": [experiment_id], "filter": "tags.role = 'trial'"}).encode()
        request = urllib.request.Request(f"{base}/runs/search", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request) as r:
            runs = json.load(r)["runs"]
        models = sorted(next(t["value"] for t in run["data"]["tags"] if t["key"] == "model") for run in runs)
        assert models == ["llvfsr", "llvfsr-model1"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_killed_driver_resumes_without_rerunning_or_duplicating(tmp_path):
    command = [
        sys.executable,
        str(REPO / "sweeps" / "run.py"),
        "--grid",
        "smoke",
        "--seeds",
        "2",
        "--epochs",
        "3",
        "--max-concurrent",
        "1",
        *sweep_args(tmp_path),
    ]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    driver = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 400
    while time.time() < deadline:
        if (tmp_path / "mlflow.db").exists():
            try:
                if any(r.data.tags.get("status") == "finished" for r in trial_runs(tmp_path)):
                    break
            except Exception:  # the experiment may not exist yet
                pass
        time.sleep(1)
    else:
        os.killpg(driver.pid, signal.SIGKILL)
        pytest.fail("no trial finished before the deadline")
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray cluster it started
    driver.wait()
    finished_before = {
        r.data.tags["trial_id"]: r.info.run_id for r in trial_runs(tmp_path) if r.data.tags.get("status") == "finished"
    }
    assert 1 <= len(finished_before) < 4

    resumed = subprocess.run([*command, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    runs = trial_runs(tmp_path)
    trial_ids = [r.data.tags["trial_id"] for r in runs]
    assert len(runs) == 4 and len(set(trial_ids)) == 4  # one run per trial, no duplicates
    assert all(r.data.tags.get("status") == "finished" for r in runs)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    for _trial_id, run_id in finished_before.items():
        run = client.get_run(run_id)
        assert "restored" not in run.data.tags  # a finished trial was not started again
        assert [m.step for m in client.get_metric_history(run_id, "train_loss")] == [1, 2, 3]


def test_one_trial_through_ray_train_with_two_ddp_workers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        assert (
            sweep_main(
                ["--grid", "smoke", "--only", "llvfsr-model1", "--workers-per-trial", "2", *sweep_args(tmp_path)]
            )
            == 0
        )
    finally:
        import ray

        ray.shutdown()
    (run,) = trial_runs(tmp_path)
    assert run.data.tags["status"] == "finished" and run.data.tags["world_size"] == "2"
    assert run.data.metrics["world_size"] == 2 and "test_psnr" in run.data.metrics


def test_hpo_grid_runs_optuna_trials(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        assert sweep_main(["--grid", "hpo", "--model", "llvfsr-model1", "--trials", "3", *sweep_args(tmp_path)]) == 0
    finally:
        import ray

        ray.shutdown()
    runs = trial_runs(tmp_path, grid="hpo")
    assert len(runs) == 3 and all(r.data.tags["status"] == "finished" for r in runs)
    searched = {
        (r.data.params["train.lr"], r.data.params["train.batch_size"], r.data.params["model.width"]) for r in runs
    }
    assert len(searched) == 3  # Optuna proposed three different points


def test_two_node_cluster_places_trials_on_both_nodes(tmp_path, monkeypatch):
    from ray.cluster_utils import Cluster

    monkeypatch.chdir(tmp_path)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        assert sweep_main(["--grid", "smoke", "--address", cluster.address, *sweep_args(tmp_path)]) == 0
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()
    runs = trial_runs(tmp_path)
    assert len(runs) == 2 and all(r.data.tags["status"] == "finished" for r in runs)
    assert len({r.data.tags["node_id"] for r in runs}) == 2  # one trial on each node, one MLflow store


def test_bad_command_lines_exit_2(capsys):
    for argv in (
        ["--grid", "nope"],
        ["--grid", "smoke", "--scale", "3"],
        ["--grid", "hpo", "--model", "nope"],
        ["--grid", "smoke", "--gpus-per-trial", "lots"],
        ["--grid", "smoke", "--data", "/no/such/dir"],
        ["--grid", "table1", "--preset", "paper"],
        ["--grid", "table1", "--preset", "smoke", "--data", "."],
    ):
        with pytest.raises(SystemExit) as error:
            sweep_main(argv)
        assert error.value.code == 2
    capsys.readouterr()
    assert sweep_main(["--grid", "smoke", "--only", "nope"]) == 2
    assert "its variants: llvfsr, llvfsr-model1" in capsys.readouterr().err


def test_dry_run_lists_trials(capsys):
    assert sweep_main(["--grid", "ablation", "--seeds", "2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "14 trial(s): 14 trained" in out and "variant=llvfsr-wo-depth" in out
    assert sweep_main(["--grid", "table1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "18 trial(s): 16 trained, 2 evaluated only" in out and "variant=wfen  model=wfen  scale=16" in out


def test_smoke_sized_table1_ends_in_a_full_table1(tmp_path, capsys, monkeypatch):
    """Every Table 1 model at both scales through the real sweep, then both scales of Table 1 from analysis."""
    monkeypatch.chdir(tmp_path)  # the preset's prior store lives in ./priors_cache
    try:
        argv = ["--grid", "table1", "--preset", "smoke", "--max-concurrent", "2", *sweep_args(tmp_path)]
        assert sweep_main(argv) == 0
    finally:
        import ray

        ray.shutdown()
    runs = trial_runs(tmp_path)
    models = ["bicubic", "dic", "faceformer", "fsrnet", "llvfsr", "sfmnet", "sisn", "srcnn", "wfen"]
    assert sorted((r.data.tags["model"], r.data.tags["scale"]) for r in runs) == sorted(
        (m, s) for m in models for s in ("8", "16")
    )
    assert all(r.data.tags["status"] == "finished" and "test_psnr" in r.data.metrics for r in runs)
    dic = [r for r in runs if r.data.tags["model"] == "dic"]
    assert all(r.data.metrics["hourglass_pretrain_loss"] > 0 and r.data.metrics["test_landmark_error"] > 0 for r in dic)
    capsys.readouterr()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert tables_main(["--tracking-uri", uri, "--experiment", EXPERIMENT, "--grid", "table1"]) == 0
    out = capsys.readouterr().out
    for scale in (8, 16):
        section = out.split(f"Table 1, x{scale}")[1].split("Table 1, x")[0]
        rows = {line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| ")}
        assert set(models) <= rows, (scale, rows)
    assert "28.8" in out and "26.07" in out  # the paper's DIC and bicubic x8 PSNR alongside
