"""Integration: real sweeps through Ray Tune into real SQLite MLflow stores (smoke, resume, DDP, Optuna, cluster).

Every test reads MLflow's own run status (``run.info.status``, what the UI shows), not only the ``status`` tag.
"""

import contextlib
import dataclasses
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mlflow.tracking import MlflowClient
from tiny import flip_a_byte

from analysis.tables import main as tables_main
from sweeps.grids import GRIDS, Variant
from sweeps.run import main as sweep_main
from sweeps.trial import KILL_AFTER_EPOCH_ENV

REPO = Path(__file__).resolve().parent.parent
EXPERIMENT = "itest"
SMOKE_PRIORS = {"caption", "depth", "description", "mask"}  # what the smoke grid's LLV-FSR reads
BROKEN = Variant("broken", "llvfsr-model1", (("no_such_option", 1),))  # raises in every attempt: fails for good


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


def damage_a_prior_shard() -> Path:
    """Extract the smoke grid's priors in the working directory, then flip one byte of a mask shard."""
    from llvfsr.priors.ensure import ensure_priors, open_store
    from sweeps.run import base_config, parse_args

    base, _ = base_config(parse_args(["--grid", "smoke"]), GRIDS["smoke"])
    ensure_priors(base.data, SMOKE_PRIORS, progress=False)
    path = open_store(base.data, "train").shard_path("mask", 0)
    flip_a_byte(path)
    return path


def ray_worker_logs() -> str:
    """Every log file of the current Ray session (a worker's "Fatal Python error" lands there)."""
    import ray

    logs = Path(ray._private.worker._global_node.get_logs_dir_path())  # no public API names the session's logs
    return "\n".join(path.read_text(errors="replace") for path in logs.glob("*") if path.is_file())


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One real smoke sweep shared by the tests that read it: LLV-FSR and Model 1, which must finish; a variant
    that raises, which must fail and be named; a prior store with one flipped byte, which must be repaired."""
    import ray

    tmp = tmp_path_factory.mktemp("smoke")
    stderr = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        # Sample system metrics every 0.2 s (MLflow's own settings) so that a one-second trial records some.
        patch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
        patch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
        patch.chdir(tmp)  # the preset's prior store lives in ./priors_cache
        damaged = damage_a_prior_shard()
        smoke_grid = GRIDS["smoke"]
        patch.setitem(GRIDS, "smoke", dataclasses.replace(smoke_grid, variants=(*smoke_grid.variants, BROKEN)))
        try:
            with contextlib.redirect_stderr(stderr):
                code = sweep_main(["--grid", "smoke", *sweep_args(tmp)])
            logs = ray_worker_logs()
        finally:
            ray.shutdown()
    return SimpleNamespace(tmp=tmp, code=code, stderr=stderr.getvalue(), logs=logs, damaged=damaged)


def test_every_trial_ends_in_its_true_mlflow_status(smoke):
    """Trials that trained and tested are FINISHED; the one that raised is FAILED and named, in its run and in the
    sweep's run; no worker aborts (a "done" report once made Tune stop each trial inside its last report)."""
    assert smoke.code == 1  # one trial failed for good
    runs = trial_runs(smoke.tmp)
    assert len(runs) == 3  # the failed trial's retries reused its one run
    by_variant = {r.data.tags["variant"]: r for r in runs}
    assert {v: r.info.status for v, r in by_variant.items()} == {
        "llvfsr": "FINISHED",
        "llvfsr-model1": "FINISHED",
        "broken": "FAILED",
    }
    broken = by_variant["broken"].data.tags
    assert broken["status"] == "failed" and "no_such_option" in broken["error"]
    client = MlflowClient(tracking_uri=f"sqlite:///{smoke.tmp / 'mlflow.db'}")
    (parent,) = client.search_runs([runs[0].info.experiment_id], "tags.role = 'sweep'")
    failed = parent.data.tags["failed_trials"]
    assert parent.info.status == "FAILED"
    assert failed.startswith("broken x8 seed 0: ") and "no_such_option" in failed and ";" not in failed
    assert "Fatal Python error" not in smoke.logs and "Fatal Python error" not in smoke.stderr


def test_driver_repairs_a_damaged_prior_shard_before_trials(smoke):
    from llvfsr.priors.store import PriorStore

    assert f"prior store: {smoke.damaged}: checksum mismatch" in smoke.stderr and "re-extracting it" in smoke.stderr
    assert PriorStore.at(smoke.damaged.parent.parent).verify(raise_on_error=False) == []
    (llvfsr,) = trial_runs(smoke.tmp, variant="llvfsr")  # it read the repaired masks
    assert llvfsr.info.status == "FINISHED" and "test_psnr" in llvfsr.data.metrics


def test_smoke_sweep_records_what_analysis_needs(smoke, capsys):
    client = MlflowClient(tracking_uri=f"sqlite:///{smoke.tmp / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    parents = client.search_runs([experiment.experiment_id], "tags.role = 'sweep'")
    assert len(parents) == 1 and parents[0].data.tags["grid"] == "smoke"
    assert "version.torch" in parents[0].data.tags and "git.commit" in parents[0].data.tags
    runs = [r for r in trial_runs(smoke.tmp) if r.data.tags["variant"] != BROKEN.name]
    assert sorted(r.data.tags["model"] for r in runs) == ["llvfsr", "llvfsr-model1"]
    for run in runs:
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        assert run.info.status == "FINISHED"  # what the MLflow UI shows
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
    assert tables_main(["--tracking-uri", f"sqlite:///{smoke.tmp / 'mlflow.db'}", "--experiment", EXPERIMENT]) == 0
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
            f"sqlite:///{smoke.tmp / 'mlflow.db'}",
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
        query = "tags.role = 'trial' and attributes.status = 'FINISHED'"
        body = json.dumps({"experiment_ids": [experiment_id], "filter": query}).encode()
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
    # the first trial finishes in about a minute on 2 idle cores; 400 s ran out with two trainings beside the suite
    deadline = time.time() + 900
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
    assert all(r.data.tags.get("status") == "finished" and r.info.status == "FINISHED" for r in runs)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    (parent,) = client.search_runs([experiment.experiment_id], "tags.role = 'sweep'")
    assert parent.info.status == "FINISHED" and parent.data.tags["failed_trials"] == "none"
    assert "Fatal Python error" not in resumed.stdout + resumed.stderr
    for _trial_id, run_id in finished_before.items():
        run = client.get_run(run_id)
        assert "restored" not in run.data.tags  # a finished trial was not started again
        assert [m.step for m in client.get_metric_history(run_id, "train_loss")] == [1, 2, 3]


def run_sweep(tmp: Path, *argv: str) -> int:
    """One sweep in this process (cwd: `tmp`, where the preset's prior store lives), Ray shut down after."""
    import ray

    try:
        return sweep_main([*argv, *sweep_args(tmp)])
    finally:
        ray.shutdown()


def test_trial_whose_worker_dies_is_retried_from_its_checkpoint(tmp_path, monkeypatch):
    """The trial's process is SIGKILLed after its first epoch's checkpoint: Tune retries it from that checkpoint,
    it keeps its one MLflow run, logs each epoch once and ends FINISHED."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(KILL_AFTER_EPOCH_ENV, "1")  # inherited by the Ray workers of this process's local cluster
    assert run_sweep(tmp_path, "--grid", "smoke", "--only", "llvfsr-model1", "--epochs", "3") == 0
    (run,) = trial_runs(tmp_path)
    assert run.info.status == "FINISHED" and run.data.tags["status"] == "finished"
    assert run.data.tags["restored"] == "true" and run.data.tags["resumed_from_epoch"] == "1"
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2, 3]
    assert "test_psnr" in run.data.metrics


def test_ddp_trial_with_two_workers_trains_as_one_process_with_the_global_batch(tmp_path, monkeypatch):
    """Ray Train's two DDP workers (gloo) split each batch of 8 into 4 + 4 and average gradients: the weights
    after two epochs equal those of one process that trains on the batches of 8 (`train()` without Ray)."""
    from llvfsr.config import from_flat
    from llvfsr.train import train

    monkeypatch.chdir(tmp_path)
    assert run_sweep(tmp_path, "--grid", "smoke", "--only", "llvfsr-model1", "--workers-per-trial", "2") == 0
    (run,) = trial_runs(tmp_path)
    assert run.info.status == "FINISHED" and run.data.metrics["world_size"] == 2  # measured by torch.distributed
    config = dataclasses.replace(from_flat(run.data.params), out_dir=str(tmp_path / "single"))
    assert config.train.batch_size == 8 and config.train.epochs == 2
    train(config)
    ddp = torch.load(run.data.tags["checkpoint"], weights_only=True)["model"]
    single = torch.load(tmp_path / "single" / "checkpoint.pt", weights_only=True)["model"]
    assert ddp.keys() == single.keys()
    for name in ddp:
        # Measured: max |difference| 3.0e-8 over all weights (summation order only). One process on batches of 4
        # (a rank's half) ends 1.1e-3 to 2.9e-3 away (largest difference per tensor).
        torch.testing.assert_close(ddp[name], single[name], rtol=0, atol=1e-5, msg=name)


def test_hpo_grid_feeds_each_trials_val_psnr_to_optuna(tmp_path, monkeypatch):
    """Optuna's study (kept in <storage>/<sweep>/optuna.db) holds each trial's parameters and its final validation
    PSNR, equal to the MLflow run's: the searcher was told the metric (a random search keeps no study)."""
    import optuna

    monkeypatch.chdir(tmp_path)
    argv = ["--grid", "hpo", "--model", "llvfsr-model1", "--trials", "3", "--preset", "smoke"]
    assert run_sweep(tmp_path, *argv) == 0
    runs = trial_runs(tmp_path, grid="hpo")
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)
    storage = f"sqlite:///{tmp_path / 'ray_results' / 'hpo-x8-smoke' / 'optuna.db'}"
    study = optuna.load_study(study_name="hpo-x8-smoke", storage=storage)
    told = {
        (t.params["lr"], t.params["batch_size"], t.params["width"]): t.value
        for t in study.trials
        if t.state == optuna.trial.TrialState.COMPLETE
    }
    tracked = {
        (
            float(r.data.params["train.lr"]),
            int(r.data.params["train.batch_size"]),
            int(r.data.params["model.width"]),
        ): r.data.metrics["val_psnr"]
        for r in runs
    }
    assert len(told) == 3 and told == tracked


def test_two_node_cluster_runs_the_trials_on_the_node_with_the_cpus(tmp_path, monkeypatch):
    """The driver joins a two-node cluster whose head has no CPUs: every trial must run on the other node and
    still record into the driver's one MLflow store (no timing: no trial can be placed on the head)."""
    from ray.cluster_utils import Cluster

    monkeypatch.chdir(tmp_path)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    head, worker = cluster.head_node.node_id, cluster.add_node(num_cpus=2).node_id
    try:
        assert run_sweep(tmp_path, "--grid", "smoke", "--address", cluster.address) == 0
    finally:
        cluster.shutdown()
    runs = trial_runs(tmp_path)
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert head != worker and {r.data.tags["node_id"] for r in runs} == {worker}


def test_bad_command_lines_exit_2(capsys):
    for argv in (
        ["--grid", "nope"],
        ["--grid", "smoke", "--scale", "3"],
        ["--grid", "hpo", "--model", "nope"],
        ["--grid", "smoke", "--gpus-per-trial", "lots"],
        ["--grid", "smoke", "--data", "/no/such/dir"],
        ["--grid", "table1", "--preset", "paper"],
        ["--grid", "table1", "--preset", "smoke", "--data", "."],
        ["--grid", "smoke", "--scale", "8,x"],
        ["--grid", "hpo", "--scale", "8,16"],
        ["--grid", "table1", "--only-scale", "8"],
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


def test_the_scale_has_one_flag_and_the_sweep_name_says_what_ran(capsys):
    """--scale takes one or more factors, the grid's own are the default; --only-scale names its replacement."""
    from sweeps.launch import sweep_name
    from sweeps.run import parse_args

    assert sweep_main(["--grid", "table1", "--scale", "8", "--dry-run"]) == 0
    assert "9 trial(s)" in capsys.readouterr().out
    assert sweep_main(["--grid", "ablation", "--scale", "8,16", "--dry-run"]) == 0
    assert "14 trial(s)" in capsys.readouterr().out
    assert parse_args(["--grid", "table1"]).scales == (8, 16) and parse_args(["--grid", "ablation"]).scales == (8,)
    assert sweep_name(GRIDS["table1"], "smoke") == "table1-x8x16-smoke"
    assert sweep_name(dataclasses.replace(GRIDS["ablation"], scales=(8,)), "synthetic") == "ablation-x8-synthetic"
    assert sweep_name(dataclasses.replace(GRIDS["table1"], scales=(16,)), None) == "table1-x16"
    with pytest.raises(SystemExit):
        parse_args(["--grid", "table1", "--only-scale", "8"])
    assert "--only-scale is gone: the scale has one flag, --scale 8" in capsys.readouterr().err


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
