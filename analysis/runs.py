"""Read a sweep's MLflow runs into pandas: one row per finished trial, plus its per-image metrics on demand."""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path

import pandas as pd

from llvfsr.errors import UserError
from llvfsr.tracking import client

TEST_PREFIX = "test_"


class RunsMissing(UserError, RuntimeError):
    """No finished runs match the request; the message says what to run."""


def trial_runs(tracking_uri: str, experiment: str, grid: str | None = None, sweep: str | None = None) -> list:
    """The MLflow runs of every trial (finished or not) of `experiment`, optionally of one grid and one sweep.

    Raises `RunsMissing` when the experiment does not exist.
    """
    if tracking_uri.startswith("sqlite:///"):  # opening a missing SQLite file would create an empty store
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        if not path.is_absolute():
            path = Path.cwd() / path
        if not path.exists():
            raise RunsMissing(
                f"no MLflow store at {path} (--tracking-uri / MLFLOW_TRACKING_URI): run a sweep first, "
                "or point --tracking-uri at the sweep's mlflow.db"
            )
    mlflow_client = client(tracking_uri)
    found = mlflow_client.get_experiment_by_name(experiment)
    if found is None:
        raise RunsMissing(
            f"no MLflow experiment {experiment!r} at {tracking_uri}; run `python sweeps/run.py --grid ...` first"
        )
    query = ["tags.role = 'trial'"]
    if grid:
        query.append(f"tags.grid = '{grid}'")
    if sweep:
        query.append(f"tags.sweep = '{sweep}'")
    return mlflow_client.search_runs([found.experiment_id], " and ".join(query), max_results=50_000)


def load_runs(tracking_uri: str, experiment: str, grid: str | None = None, sweep: str | None = None) -> pd.DataFrame:
    """Finished trial runs as a frame: run_id, variant, model, scale, seed, status + one column per test metric.

    Raises `RunsMissing` (with the unfinished runs named) when nothing matches.
    """
    runs = trial_runs(tracking_uri, experiment, grid, sweep)
    rows, unfinished = [], []
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        row = {
            "run_id": run.info.run_id,
            "variant": tags.get("variant"),
            "model": tags.get("model"),
            "scale": int(tags.get("scale", 0)),
            "seed": int(tags.get("seed", 0)),
            "grid": tags.get("grid"),
            "sweep": tags.get("sweep"),
            "priors": tags.get("priors"),
            "convention": tags.get("metric.convention"),
        }
        row.update({k.removeprefix(TEST_PREFIX): v for k, v in metrics.items() if k.startswith(TEST_PREFIX)})
        (rows if tags.get("status") == "finished" else unfinished).append(row)
    if unfinished:
        names = ", ".join(sorted(f"{r['variant']} x{r['scale']} seed {r['seed']}" for r in unfinished))
        print(
            f"note: {len(unfinished)} run(s) not finished and left out: {names} (finish them with --resume)",
            file=sys.stderr,
        )
    if not rows:
        where = f"grid {grid!r}" if grid else "any grid"
        raise RunsMissing(
            f"no finished runs for {where} in experiment {experiment!r} at {tracking_uri}; "
            f"run `python sweeps/run.py --grid {grid or 'ablation'}` (or --resume) first"
        )
    frame = pd.DataFrame(rows)
    conventions = frame["convention"].dropna().unique()
    if len(conventions) > 1:
        raise RunsMissing(f"runs mix metric conventions {sorted(conventions)}; select one sweep with --sweep")
    fixed = frame[frame.grid != "hpo"]  # an hpo sweep's trials all share variant and seed by design
    repeats = fixed.duplicated(["variant", "scale", "seed"], keep=False)
    if repeats.any():
        sweeps = ", ".join(sorted(fixed.loc[repeats, "sweep"].dropna().unique()))
        print(
            f"note: {int(repeats.sum())} runs repeat a variant x scale x seed (sweeps: {sweeps}); "
            "each run counts once in a row's mean, std and seed count; select one sweep with --sweep",
            file=sys.stderr,
        )
    return frame


@cache
def _per_image(tracking_uri: str, run_id: str) -> pd.DataFrame:
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one small file per run: no bars
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="per_image.csv", tracking_uri=tracking_uri)
    return pd.read_csv(Path(path), dtype={"id": str})


def per_image(tracking_uri: str, run_ids: list[str], metric: str) -> pd.Series:
    """Per-image values of `metric` averaged over the given runs (seeds), indexed by image id."""
    frames = [_per_image(tracking_uri, run_id).set_index("id")[metric] for run_id in run_ids]
    return pd.concat(frames, axis=1).mean(axis=1)
