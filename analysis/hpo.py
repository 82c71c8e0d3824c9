"""The `hpo` grid's report: each trial's parameters -> validation and test PSNR, the best one, parameter importances.

Optuna searched the space in the sweep (`sweeps/launch.py`, objective: the last validation PSNR). Here the study is
rebuilt from the MLflow runs (`optuna.create_study` + `add_trial(optuna.trial.create_trial(...))`), so the
importances come from what was recorded, not from a live searcher. The best configuration is chosen on validation
PSNR, as the searcher chose; test PSNR is shown beside it and never used to choose.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import pandas as pd

from analysis.columns import BY_NAME, present
from analysis.render import decorate, render
from analysis.runs import RunsMissing, trial_runs

OBJECTIVE = "val_psnr"
# The sweep's search space as flat MLflow params (HPO_SPACE in sweeps/launch.py): always shown, even for one trial.
# Any other param that differs between the trials of a sweep is shown and ranked too.
SEARCHED = ("train.lr", "train.batch_size", "model.width")
PER_TRIAL = {"out_dir"}  # differs between trials by construction; not a hyperparameter
# fANOVA fits a random forest to (parameters -> objective); with fewer trials than this it only fits noise.
MIN_TRIALS_FOR_IMPORTANCE = 6


@dataclass
class HpoReport:
    """One hpo sweep: its finished trials (a frame), the best row, importances (None when too few trials)."""

    sweep: str
    model: str
    scale: int
    trials: pd.DataFrame  # index: trial name; columns: searched params, val_psnr, test metrics
    params: list[str]
    best: str | None
    importances: dict[str, float] | None
    notes: list[str] = field(default_factory=list)


def _value(raw: str) -> object:
    """A flat param's value: JSON scalars decoded; lists and objects kept as their text (hashable, comparable)."""
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return raw
    return value if value is None or isinstance(value, (bool, int, float, str)) else raw


def _searched(frames: list[dict]) -> list[str]:
    keys = set().union(*(f.keys() for f in frames)) - PER_TRIAL
    varying = {k for k in keys if len({json.dumps(f.get(k)) for f in frames}) > 1}
    return [k for k in SEARCHED if k in keys] + sorted(varying - set(SEARCHED))


def _distribution(values: list):
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    if all(isinstance(v, float) for v in values):  # lr: tune.loguniform
        low, high = min(values), max(values)
        return FloatDistribution(low, high, log=low > 0)
    return CategoricalDistribution(sorted(set(values), key=json.dumps))  # tune.choice


def importances(trials: pd.DataFrame, params: list[str]) -> dict[str, float]:
    """fANOVA importance of each param for the objective, on a study rebuilt from the trials (seeded: repeatable)."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator

    optuna.logging.set_verbosity(logging.WARNING)
    records = trials[params].to_dict("records")  # python scalars, each column its own type
    distributions = {p: _distribution([r[p] for r in records]) for p in params}
    study = optuna.create_study(direction="maximize")
    for record, value in zip(records, trials[OBJECTIVE], strict=True):
        study.add_trial(optuna.trial.create_trial(params=record, distributions=distributions, value=float(value)))
    found = optuna.importance.get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
    return {p: float(found.get(p, 0.0)) for p in sorted(params, key=lambda p: -found.get(p, 0.0))}


def _report(sweep: str, runs: list) -> HpoReport:
    finished = [r for r in runs if r.data.tags.get("status") == "finished" and OBJECTIVE in r.data.metrics]
    first = runs[0].data.tags
    notes = []
    if len(finished) < len(runs):
        done = {r.info.run_id for r in finished}
        left = sorted(r.data.tags.get("trial_id", r.info.run_id) for r in runs if r.info.run_id not in done)
        notes.append(f"{len(left)} trial(s) not finished and left out: {', '.join(left)}")
    frames = [{k: _value(v) for k, v in r.data.params.items()} for r in finished]
    params = _searched(frames) if finished else []
    rows = {}
    for run, flat in zip(finished, frames, strict=True):
        row = {p: flat.get(p) for p in params}
        row[OBJECTIVE] = run.data.metrics[OBJECTIVE]
        row.update({c.name: run.data.metrics.get(f"test_{c.name}") for c in present(_test_names(finished))})
        rows[run.data.tags.get("trial_id", run.info.run_id)] = row
    trials = pd.DataFrame.from_dict(rows, orient="index")
    if not trials.empty:
        trials = trials.sort_values(OBJECTIVE, ascending=False)
    best = None if trials.empty else str(trials.index[0])
    ranked = None
    varying = [p for p in params if not trials.empty and trials[p].astype(str).nunique() > 1]
    if len(trials) < MIN_TRIALS_FOR_IMPORTANCE:
        notes.append(
            f"parameter importances need at least {MIN_TRIALS_FOR_IMPORTANCE} finished trials, this sweep has "
            f"{len(trials)}: too few for fANOVA to tell a parameter's effect from noise (run with --trials 8 or more)"
        )
    elif not varying:
        notes.append("no parameter importances: every parameter took one value in every trial")
    else:
        ranked = importances(trials, varying)
        if constant := [p for p in params if p not in varying]:
            notes.append(f"not ranked, one value in every trial: {', '.join(constant)}")
    return HpoReport(sweep, first.get("model", "?"), int(first.get("scale", 0)), trials, params, best, ranked, notes)


def _test_names(runs: list) -> set[str]:
    return {k.removeprefix("test_") for r in runs for k in r.data.metrics if k.startswith("test_")}


def load_hpo(tracking_uri: str, experiment: str, sweep: str | None = None) -> list[HpoReport]:
    """One report per hpo sweep in the experiment (or only `sweep`). Raises `RunsMissing` when there is none."""
    by_sweep: dict[str, list] = {}
    for run in trial_runs(tracking_uri, experiment, "hpo", sweep):
        by_sweep.setdefault(run.data.tags.get("sweep", "?"), []).append(run)
    if not by_sweep:
        raise RunsMissing(
            f"no hpo trials in experiment {experiment!r} at {tracking_uri}; run `python sweeps/run.py --grid hpo` first"
        )
    reports = [_report(name, runs) for name, runs in sorted(by_sweep.items())]
    if all(r.trials.empty for r in reports):
        raise RunsMissing(
            f"no finished hpo trials in experiment {experiment!r} at {tracking_uri}; finish them with --resume"
        )
    return reports


def _short(param: str) -> str:
    return param.partition(".")[2] or param


def _shown(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def hpo_tables(reports: list[HpoReport], fmt: str) -> list[str]:
    """Per sweep: the trials (best validation PSNR first, bold), the best configuration, the importances."""
    out = []
    for report in reports:
        if report.trials.empty:
            continue
        shown = pd.DataFrame(index=report.trials.index)
        for param in report.params:
            shown[_short(param)] = [_shown(v) for v in report.trials[param]]
        metrics = [OBJECTIVE, *(c for c in report.trials.columns if c not in report.params and c != OBJECTIVE)]
        for metric in metrics:
            digits = BY_NAME[metric].digits if metric in BY_NAME else 2
            label = "val PSNR" if metric == OBJECTIVE else f"test {metric.upper()}"
            shown[label] = ["n/a" if pd.isna(v) else f"{v:.{digits}f}" for v in report.trials[metric]]
        shown.loc[report.best, "val PSNR"] = decorate(shown.loc[report.best, "val PSNR"], "best", fmt)
        best = report.trials.loc[report.best]
        config = ", ".join(f"{_short(p)}={_shown(best[p])}" for p in report.params)
        test = "" if pd.isna(best.get("psnr")) else f", test PSNR {best['psnr']:.2f}"
        notes = [
            f"best configuration (chosen on validation PSNR): trial {report.best}: {config} -> "
            f"val PSNR {best[OBJECTIVE]:.2f}{test}",
            "val PSNR: the train loop's RGB PSNR without crop on faces held out of the train split, last epoch (what "
            "the searcher received); test metrics: the run's metric convention (default `paper`: Y, 8 px crop)",
            *report.notes,
        ]
        title = (
            f"HPO sweep {report.sweep}: {report.model} x{report.scale}, {len(report.trials)} finished trial(s) "
            "(Optuna; objective: validation PSNR)"
        )
        out.append(render(shown.rename_axis("trial"), fmt, title, notes))
        if report.importances is not None:
            frame = pd.DataFrame(
                {"importance": [f"{v:.3f}" for v in report.importances.values()]},
                index=pd.Index([_short(p) for p in report.importances], name="parameter"),
            )
            why = "fANOVA (optuna.importance, seed 0) on the study rebuilt from the runs; importances sum to 1"
            out.append(render(frame, fmt, f"Parameter importances for validation PSNR, sweep {report.sweep}", [why]))
    return out
