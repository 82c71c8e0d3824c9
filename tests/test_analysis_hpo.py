"""`analysis/tables.py --grid hpo` on trials written as the hpo sweep writes them: every trial's parameters and
validation / test PSNR, the best configuration chosen on validation, and fANOVA importances (or why there are none)."""

import numpy as np
import pytest
import test_tables
from test_tables import EXPERIMENT, log_trial, table_cells

from analysis.hpo import MIN_TRIALS_FOR_IMPORTANCE, load_hpo
from analysis.tables import main

empty_db, store = test_tables.empty_db, test_tables.store  # the same fixtures: a fresh SQLite store per test
WIDTHS, BATCHES = (16, 32, 64), (8, 16, 32)


def log_search(store, n: int, sweep: str = "hpo-a") -> dict:
    """`n` trials whose final validation PSNR is driven by width (2 dB per step) and barely by lr and batch size."""
    rng = np.random.default_rng(3)
    trials = {}
    for i in range(n):
        params = {"lr": float(10 ** rng.uniform(-4, -3)), "batch_size": BATCHES[i % 3], "width": WIDTHS[(i // 3) % 3]}
        val = 18.0 + 2.0 * WIDTHS.index(params["width"]) + 0.05 * rng.standard_normal()
        test = 30.0 if i == 0 else val - 0.3  # trial 0 (width 16) has the best test PSNR, never the best validation
        trial_id = f"{sweep}_{i:05d}"
        # The epochs' validation PSNR: the searcher got the last one, not the best one.
        log_trial(store, "hpo", "hpo", 0, {"psnr": test, "ssim": 0.5}, sweep=sweep, val=(val + 1.0, val),
                  params=params, trial_id=trial_id)  # fmt: skip
        trials[trial_id] = {**params, "val": val, "test": test}
    return trials


def test_hpo_report_lists_trials_best_configuration_and_importances(store, capsys):
    trials = log_search(store, 9)
    assert main(["--tracking-uri", store["uri"], "--experiment", EXPERIMENT, "--grid", "hpo"]) == 0
    out = capsys.readouterr().out
    cells = table_cells(out, "HPO sweep hpo-a: llvfsr x8, 9 finished trial(s)")
    assert set(cells.index) == set(trials)
    for trial_id, truth in trials.items():
        row = cells.loc[trial_id]
        assert float(row["val PSNR"].strip("*")) == round(truth["val"], 2)  # last epoch's value
        assert float(row["test PSNR"]) == round(truth["test"], 2)
        assert (float(row["lr"]), int(row["batch_size"]), int(row["width"])) == (
            float(f"{truth['lr']:.3g}"), truth["batch_size"], truth["width"]
        )  # fmt: skip
    best = max(trials, key=lambda t: trials[t]["val"])
    assert cells.index[0] == best and cells.loc[best, "val PSNR"].startswith("**")
    assert f"best configuration (chosen on validation PSNR): trial {best}: lr=" in out
    assert f"width={trials[best]['width']}" in out.split("best configuration")[1].splitlines()[0]
    importance = table_cells(out, "Parameter importances for validation PSNR")
    assert list(importance.index)[0] == "width"  # the one parameter that moves validation PSNR
    assert float(importance.loc["width", "importance"]) > 0.6  # measured 0.888 (lr 0.080, batch 0.031)
    assert sum(float(v) for v in importance["importance"]) == pytest.approx(1.0, abs=0.01)


def test_too_few_trials_give_no_importances_and_say_why(store, capsys):
    log_search(store, MIN_TRIALS_FOR_IMPORTANCE - 1)
    log_trial(store, "hpo", "hpo", 0, {}, sweep="hpo-a", val=(17.0,), finished=False, trial_id="hpo-a_crashed")
    assert main(["--tracking-uri", store["uri"], "--experiment", EXPERIMENT, "--grid", "hpo", "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "Parameter importances" not in out
    assert f"importances need at least {MIN_TRIALS_FOR_IMPORTANCE} finished trials, this sweep has 5" in out
    assert "1 trial(s) not finished and left out: hpo-a_crashed" in out
    (report,) = load_hpo(store["uri"], EXPERIMENT)
    assert report.params == ["train.lr", "train.batch_size", "model.width"] and report.importances is None


def test_parameters_that_never_varied_are_not_ranked(store, capsys):
    for i in range(MIN_TRIALS_FOR_IMPORTANCE):
        params = {"lr": 3e-4, "batch_size": 16, "width": 32}  # fANOVA would split 1/3 each over constant parameters
        log_trial(store, "hpo", "hpo", 0, {"psnr": 20.0}, sweep="flat", val=(20.0 + i,), params=params,
                  trial_id=f"flat_{i}")  # fmt: skip
    assert main(["--tracking-uri", store["uri"], "--experiment", EXPERIMENT, "--grid", "hpo"]) == 0
    out = capsys.readouterr().out
    assert "Parameter importances" not in out
    assert "no parameter importances: every parameter took one value in every trial" in out
