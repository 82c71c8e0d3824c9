"""MLflow tracking: where runs go, the sweep's parent run, one child run per trial, and what each run records.

Default store: SQLite at ``./mlflow.db`` with artifacts in ``./mlartifacts`` (MLflow 3 refuses ``file:`` stores);
any tracking server by ``--tracking-uri`` or ``MLFLOW_TRACKING_URI``. A trial's run is found again by its
``trial_id`` tag, so a restored or retried trial continues its own run instead of starting a duplicate.
"""

from __future__ import annotations

import json
import os
import subprocess
from importlib import metadata
from pathlib import Path

from llvfsr.config import ExperimentConfig, flatten

PACKAGES = ("llvfsr", "torch", "torchvision", "ray", "mlflow", "open_clip_torch", "transformers", "pyiqa", "lpips")


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else an absolute SQLite URI in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').absolute()}"


def client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def ensure_experiment(tracking_uri: str, name: str) -> str:
    """The experiment's id, creating it (artifacts under ./mlartifacts for a SQLite store) if needed."""
    mlflow_client = client(tracking_uri)
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if tracking_uri.startswith("sqlite:"):
        location = (Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts").absolute().as_uri()
    return mlflow_client.create_experiment(name, artifact_location=location)


def git_commit() -> str:
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def start_parent_run(tracking_uri: str, experiment_id: str, sweep_name: str, grid: str, resume: bool) -> str:
    """The sweep's parent run id: reused on --resume (found by its sweep tag), else created."""
    mlflow_client = client(tracking_uri)
    if resume:
        found = mlflow_client.search_runs([experiment_id], f"tags.sweep = '{sweep_name}' and tags.role = 'sweep'")
        if found:
            mlflow_client.update_run(found[0].info.run_id, status="RUNNING")
            return found[0].info.run_id
    tags = {
        "role": "sweep",
        "sweep": sweep_name,
        "grid": grid,
        "git.commit": git_commit(),
        "mlflow.runName": sweep_name,
    }
    tags.update({f"version.{k}": v for k, v in package_versions().items()})
    return mlflow_client.create_run(experiment_id, tags=tags).info.run_id


def trial_tags(config: ExperimentConfig, variant: str, grid: str, sweep: str, trial_id: str, priors: set[str]) -> dict:
    from llvfsr.metrics import convention_tags

    tags = {
        "role": "trial",
        "trial_id": trial_id,
        "sweep": sweep,
        "grid": grid,
        "variant": variant,
        "model": config.model.name,
        "priors": ",".join(sorted(priors)) or "none",
        "scale": str(config.data.scale),
        "seed": str(config.train.seed),
        "dataset": config.data.dataset,
    }
    tags.update(convention_tags(config.train.convention, config.data.scale))
    return tags


def find_trial_run(tracking_uri: str, experiment_id: str, parent_run_id: str, trial_id: str):
    """The MLflow run of a trial of this sweep, or None."""
    query = f"tags.trial_id = '{trial_id}' and tags.mlflow.parentRunId = '{parent_run_id}'"
    found = client(tracking_uri).search_runs([experiment_id], query)
    return found[0] if found else None


class TrialRun:
    """The MLflow child run of one trial: created once, found again by trial id on restore."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        tags: dict[str, str],
        config: ExperimentConfig,
        system_metrics: bool = True,
    ):
        import mlflow

        self.mlflow = mlflow
        self.client = client(tracking_uri)
        mlflow.set_tracking_uri(tracking_uri)
        existing = find_trial_run(tracking_uri, experiment_id, parent_run_id, tags["trial_id"])
        self.logged_epochs: set[int] = set()
        if existing is not None:
            self.run_id = existing.info.run_id
            self.client.set_tag(self.run_id, "restored", "true")
            # A retried trial resumes from its last checkpoint; epochs its dead attempt logged after that checkpoint
            # are not logged twice.
            self.logged_epochs = {m.step for m in self.client.get_metric_history(self.run_id, "train_loss")}
        else:
            run_tags = {
                **tags,
                "mlflow.parentRunId": parent_run_id,
                "mlflow.runName": f"{tags['variant']}-s{tags['seed']}",
            }
            self.run_id = self.client.create_run(experiment_id, tags=run_tags).info.run_id
            params = [mlflow.entities.Param(k, v[:6000]) for k, v in flatten(config).items()]
            for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
                self.client.log_batch(self.run_id, params=params[start : start + 100])
        self.tested = False
        self.active = mlflow.start_run(run_id=self.run_id, log_system_metrics=system_metrics)

    def log_epoch(self, epoch: int, metrics: dict[str, float], checkpoint: Path) -> None:
        if epoch not in self.logged_epochs:
            self.mlflow.log_metrics(metrics, step=epoch)
        self.client.set_tag(self.run_id, "checkpoint", str(checkpoint))
        self.client.set_tag(self.run_id, "epochs_done", str(epoch))

    def log_test(self, summary: dict[str, float], out_dir: Path) -> None:
        self.mlflow.log_metrics(summary)
        tags_file = out_dir / "metric_tags.json"
        if tags_file.exists():  # the convention actually used, and why a metric was skipped
            for key, value in json.loads(tags_file.read_text()).items():
                self.client.set_tag(self.run_id, key, value)
        for name in ("per_image.csv", "samples.png", "summary.json", "config.json"):
            if (out_dir / name).exists():
                self.mlflow.log_artifact(str(out_dir / name))
        if (out_dir / "sr_faces").is_dir():  # the faces `python -m analysis.figures compare` sets side by side
            self.mlflow.log_artifacts(str(out_dir / "sr_faces"), "sr_faces")
        self.client.set_tag(self.run_id, "status", "finished")
        self.tested = True

    def close(self, error: BaseException | None = None, stopped: bool = False) -> None:
        """End the run: FINISHED; FAILED with the error named in tags; KILLED if stopped before its test."""
        status = "FINISHED"
        if error is not None:
            status = "FAILED"
            self.client.set_tag(self.run_id, "status", "failed")
            self.client.set_tag(self.run_id, "error", f"{type(error).__name__}: {error}"[:5000])
        elif stopped and not self.tested:
            status = "KILLED"
            self.client.set_tag(self.run_id, "status", "stopped")
        self.mlflow.end_run(status)


def close_finished_run(tracking_uri: str, run) -> None:
    """Mark FINISHED a trial run that was tested but whose process died before it could end the run."""
    if run.info.status != "FINISHED":
        client(tracking_uri).set_terminated(run.info.run_id, "FINISHED")


def end_parent_run(tracking_uri: str, parent_run_id: str, failed: list[str]) -> None:
    """End the sweep's run: FAILED naming the trials that failed for good (tag ``failed_trials``), else FINISHED."""
    mlflow_client = client(tracking_uri)
    mlflow_client.set_tag(parent_run_id, "failed_trials", "; ".join(failed)[:5000] if failed else "none")
    mlflow_client.set_terminated(parent_run_id, "FAILED" if failed else "FINISHED")
