"""Counterfactual priors at test time over the checkpoints of a finished sweep, logged as MLflow child runs of it.

    python sweeps/robustness.py --sweep controls-x8-control       # every finished trial of that sweep
    python analysis/tables.py --grid robustness                    # PSNR / SSIM change and hallucination rates

For every finished trial that trained a model reading priors, each counterfactual of `llvfsr.counterfactual` that
touches a prior the model reads is evaluated on the test split (the faces are unchanged, the priors are not) and
recorded as one child run of the sweep's parent run (tags ``role=robustness``, ``counterfactual``,
``source_run``), with ``delta_psnr`` / ``delta_ssim`` against the same model on the true priors and, for text
edits, the hallucination rate. A run that exists and finished is not evaluated again, so an interrupted pass
resumes; ``--rerun`` evaluates the chosen counterfactuals again and replaces their runs (after a reader changed:
``--only none --rerun`` re-reads every trial on its true priors). A figure shows one face super-resolved under a
description stating each iris colour.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch

log = logging.getLogger(__name__)
ROLE = "robustness"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sweep", required=True, help="name of a finished sweep (its MLflow parent run's `sweep` tag)")
    p.add_argument("--experiment", default="llvfsr", help="MLflow experiment name")
    p.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or ./mlflow.db)"
    )
    p.add_argument("--only", default=None, help="comma-separated counterfactual names (default: all)")
    p.add_argument("--device", default="cpu", help="torch device for evaluation")
    p.add_argument(
        "--rerun", action="store_true", help="evaluate the chosen counterfactuals again, replacing their finished runs"
    )
    p.add_argument("--figure", default=None, help="also write the colour-counterfactual figure to this PNG")
    return p.parse_args(argv)


def _load_model(checkpoint: Path, device: torch.device):
    """A trial's config and trained model, as `llvfsr.sr` loads them (a damaged file is named)."""
    from llvfsr.sr import load_trained

    config, model = load_trained(checkpoint)
    return config, model.to(device)


def _existing(mlflow_client, experiment_id: str, parent: str) -> dict[tuple[str, str], object]:
    query = f"tags.role = '{ROLE}' and tags.mlflow.parentRunId = '{parent}'"
    runs = mlflow_client.search_runs([experiment_id], query, max_results=10000)
    return {(r.data.tags.get("source_run"), r.data.tags.get("counterfactual")): r for r in runs}


def evaluate_trial(run, args, mlflow_client, experiment_id: str, parent: str, done: dict) -> int:
    """Evaluate every applicable counterfactual of one trial's model; returns how many runs it logged."""
    from llvfsr.config import resolve_train
    from llvfsr.counterfactual import colour_response, counterfactual_names, counterfactuals, hallucination_rates
    from llvfsr.evaluate import evaluate_split
    from llvfsr.models.from_config import required_fields
    from llvfsr.priors.ensure import ensure_priors
    from llvfsr.priors.types import PRIOR_KINDS
    from llvfsr.trial_data import load_split

    checkpoint = Path(run.data.tags.get("checkpoint", ""))
    if not checkpoint.is_file():
        log.warning("skipping run %s (%s): its checkpoint %s is gone", run.info.run_id, run.data.tags.get("variant"),
                    checkpoint)  # fmt: skip
        return 0
    device = torch.device(args.device)
    config, model = _load_model(checkpoint, device)
    reads = set(getattr(model, "required_priors", ()))
    dropout = config.train.prior_dropout > 0 and getattr(model, "accepts_withheld_priors", False)
    wanted = counterfactual_names(reads, withholds=dropout)
    if args.only:
        wanted = [n for n in wanted if n == "none" or n in args.only.split(",")]
    todo = [
        n
        for n in wanted
        if args.rerun or (run.info.run_id, n) not in done or done[(run.info.run_id, n)].info.status != "FINISHED"
    ]
    if not todo:
        return 0
    fields = required_fields(model, config.model.name)
    ensure_priors(config.data, fields & set(PRIOR_KINDS), splits=("test",), progress=False)  # its sources, not the last
    data = load_split(config.data, "test", fields, device)
    tcfg = resolve_train(config.train, config.model.name)
    reference: dict[str, float] | None = None
    logged = 0
    for cf in counterfactuals(data, config.data, wanted):  # "none" first: the reference of the deltas
        with tempfile.TemporaryDirectory() as folder:
            summary = evaluate_split(model, cf.data, config, tcfg, Path(folder))
            frame = pd.read_csv(Path(folder) / "per_image.csv")
            if cf.name == "none":
                reference = summary
                if "description" in reads:  # how much of the stated iris colour it draws (1: all, 0: ignores it)
                    summary["test_colour_response"] = colour_response(model, data, config.data, config.data.scale)
            summary.update({f"test_{k}": v for k, v in hallucination_rates(frame, cf.stated).items()})
            if reference is not None:
                summary["delta_psnr"] = summary["test_psnr"] - reference["test_psnr"]
                summary["delta_ssim"] = summary["test_ssim"] - reference["test_ssim"]
            if cf.name not in todo:
                continue
            tags = {
                "role": ROLE,
                "mlflow.parentRunId": parent,
                "mlflow.runName": f"{run.data.tags.get('variant')}-s{run.data.tags.get('seed')}-{cf.name}",
                "counterfactual": cf.name,
                "counterfactual_prior": cf.prior or "none",
                "source_run": run.info.run_id,
                **{
                    k: run.data.tags[k]
                    for k in ("variant", "model", "seed", "scale", "sweep", "grid")
                    if k in run.data.tags
                },
            }
            replaced = done.get((run.info.run_id, cf.name))
            if replaced is not None:  # --rerun, or an unfinished run of an interrupted pass
                mlflow_client.delete_run(replaced.info.run_id)
            new = mlflow_client.create_run(experiment_id, tags=tags).info.run_id
            mlflow_client.log_batch(new, metrics=_metrics(summary))
            mlflow_client.log_artifact(new, str(Path(folder) / "per_image.csv"))
            mlflow_client.set_terminated(new, "FINISHED")
            logged += 1
            print(f"  {tags['mlflow.runName']}: PSNR {summary['test_psnr']:.3f} dB "
                  f"({summary.get('delta_psnr', 0.0):+.3f})", flush=True)  # fmt: skip
    return logged


def _metrics(summary: dict[str, float]):
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, 0) for k, v in summary.items() if v == v]  # NaN-free


def main(argv: list[str] | None = None) -> int:
    from llvfsr.tracking import client, default_tracking_uri

    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    tracking_uri = args.tracking_uri or default_tracking_uri()
    mlflow_client = client(tracking_uri)
    experiment = mlflow_client.get_experiment_by_name(args.experiment)
    if experiment is None:
        print(f"error: --experiment {args.experiment!r}: no such MLflow experiment at {tracking_uri}", file=sys.stderr)
        return 2
    eid = experiment.experiment_id
    parents = mlflow_client.search_runs([eid], f"tags.sweep = '{args.sweep}' and tags.role = 'sweep'")
    if not parents:
        print(
            f"error: --sweep {args.sweep!r}: no sweep of that name in experiment {args.experiment!r}", file=sys.stderr
        )
        return 2
    parent = parents[0].info.run_id
    trials = mlflow_client.search_runs([eid], f"tags.role = 'trial' and tags.mlflow.parentRunId = '{parent}'")
    trials = [r for r in trials if r.info.status == "FINISHED" and r.data.tags.get("priors", "none") != "none"]
    if not trials:
        print(f"error: --sweep {args.sweep!r} has no finished trial of a model that reads priors", file=sys.stderr)
        return 2
    done = _existing(mlflow_client, eid, parent)
    logged = 0
    for run in sorted(trials, key=lambda r: (r.data.tags.get("variant", ""), r.data.tags.get("seed", ""))):
        print(f"{run.data.tags.get('variant')} seed {run.data.tags.get('seed')}:", flush=True)
        logged += evaluate_trial(run, args, mlflow_client, eid, parent, done)
    print(f"logged {logged} robustness run(s) under sweep {args.sweep!r} ({tracking_uri})")
    if args.figure:
        _figure(trials, args, Path(args.figure), mlflow_client, parent)
    return 0


def _figure(trials, args, path: Path, mlflow_client, parent: str) -> None:
    """One face super-resolved under descriptions stating each iris colour (the first trial reading descriptions)."""
    from analysis.robustness import draw_colour_counterfactuals
    from llvfsr.counterfactual import render_under_colours
    from llvfsr.models.from_config import required_fields
    from llvfsr.trial_data import load_split

    for run in trials:
        if "description" not in run.data.tags.get("priors", "").split(","):
            continue
        checkpoint = Path(run.data.tags.get("checkpoint", ""))
        if not checkpoint.is_file():
            continue
        config, model = _load_model(checkpoint, torch.device(args.device))
        data = load_split(config.data, "test", required_fields(model, config.model.name), torch.device(args.device))
        views = render_under_colours(model, data, config.data, config.data.scale)
        draw_colour_counterfactuals(
            views, path, title=f"{run.data.tags.get('variant')} seed {run.data.tags.get('seed')}"
        )
        mlflow_client.log_artifact(parent, str(path))
        print(f"figure: {path}")
        return
    print("no trial reads descriptions: no colour figure")


if __name__ == "__main__":
    sys.exit(main())
