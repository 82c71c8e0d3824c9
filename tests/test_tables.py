"""Tables from a real SQLite MLflow store written by the trials' own `TrialRun`: every cell is the mean of its runs,
the p-value is a paired t-test over seeds (checked against R's published value), one seed prints none."""

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from analysis.figures import identity_chart
from analysis.stats import aggregate
from analysis.tables import build_table, main, render
from llvfsr.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig
from llvfsr.tracking import TrialRun, client, ensure_experiment, start_parent_run, trial_tags

EXPERIMENT = "tables"
# Student's sleep data (Cushny & Peebles 1905), R `t.test(extra ~ group, data = sleep, paired = TRUE)`:
# t = -4.0621, df = 9, p-value = 0.002833 (R documentation of `sleep`). Here as test PSNR of 10 seeds of two rows.
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory):
    """An empty SQLite MLflow store, made once: creating its tables takes seconds, copying the file does not."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    client(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(empty_db, tmp_path, monkeypatch):
    """A fresh SQLite store with one experiment; restores MLflow's process-wide tracking URI afterwards."""
    import mlflow.tracking._tracking_service.utils as tracking_utils

    monkeypatch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    shutil.copy(empty_db, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = ensure_experiment(uri, EXPERIMENT)
    return {"uri": uri, "experiment_id": experiment_id, "tmp": tmp_path, "parents": {}}


def log_trial(store, grid, variant, seed, test, scale=8, sweep="s", val=(), params=None, finished=True, trial_id=None):
    """One trial's run as `sweeps/trial.py` writes it: its tags, flat params, epochs, then the test summary."""
    if sweep not in store["parents"]:
        store["parents"][sweep] = start_parent_run(store["uri"], store["experiment_id"], sweep, grid, resume=False)
    params = params or {}
    config = ExperimentConfig(
        data=DataConfig(scale=scale),
        model=ModelConfig("llvfsr", tuple(sorted({"width": params.get("width", 32)}.items()))),
        train=TrainConfig(seed=seed, lr=params.get("lr", 2e-4), batch_size=params.get("batch_size", 16)),
        out_dir=str(store["tmp"] / f"{sweep}-{variant}-{seed}"),
    )
    trial_id = trial_id or f"{sweep}_{variant}_{scale}_{seed}"
    tags = trial_tags(config, variant, grid, sweep, trial_id, set())
    run = TrialRun(store["uri"], store["experiment_id"], store["parents"][sweep], tags, config, system_metrics=False)
    out = store["tmp"] / trial_id
    out.mkdir()
    for epoch, value in enumerate(val):
        run.log_epoch(epoch, {"val_psnr": value}, out / "checkpoint.pt")
    if finished:
        (out / "summary.json").write_text(json.dumps(test))
        run.log_test({f"test_{k}": v for k, v in test.items()}, out)
    run.close()  # an untested run never gets the `finished` status tag that the tables read
    return run.run_id


def table_cells(text: str, title: str) -> pd.DataFrame:
    """Parse the markdown table under a title back into strings (row label -> column -> cell)."""
    section = text.split(title)[1].split("###")[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [h.strip() for h in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return pd.DataFrame([r[1:] for r in rows], index=[r[0] for r in rows], columns=header[1:])


def number(cell: str) -> tuple[float, float | None]:
    """'**20.61 ± 0.03**' -> (20.61, 0.03); '<u>0.3924</u>' -> (0.3924, None)."""
    found = [float(x) for x in re.findall(r"-?\d+\.\d+", cell)]
    return found[0], (found[1] if len(found) > 1 else None)


def test_every_cell_is_the_mean_and_std_of_its_runs(store, capsys):
    rng = np.random.default_rng(7)
    truth = {}
    for variant, base in (("llvfsr-model1", 20.0), ("llvfsr-model2", 20.3), ("llvfsr", 20.6)):
        for seed in range(3):
            test = {"psnr": base + rng.normal(0, 0.3), "ssim": 0.4 + rng.normal(0, 0.02), "lpips": 0.3 + rng.random()}
            log_trial(store, "ablation", variant, seed, test)
            truth.setdefault(variant, []).append(test)
    log_trial(store, "ablation", "llvfsr", 3, {"psnr": 99.0}, finished=False)  # a failed run is no part of any mean
    assert main(["--tracking-uri", store["uri"], "--experiment", EXPERIMENT, "--grid", "ablation"]) == 0
    out, err = capsys.readouterr()
    cells = table_cells(out, "Table 2, x8")
    assert list(cells.index) == ["llvfsr-model1", "llvfsr-model2", "llvfsr"]
    for variant, tests in truth.items():
        for metric, digits in (("psnr", 2), ("ssim", 4), ("lpips", 4)):
            values = [t[metric] for t in tests]
            mean, std = number(cells.loc[variant, metric.upper()])
            assert mean == pytest.approx(np.mean(values), abs=0.6 * 10**-digits), (variant, metric)
            assert std == pytest.approx(np.std(values, ddof=1), abs=0.6 * 10**-digits), (variant, metric)
        assert cells.loc[variant, "seeds"] == "3"
    assert "not finished and left out: llvfsr x8 seed 3" in err  # on stderr: stdout stays a clean table


def test_p_value_is_the_paired_t_test_over_seeds_rs_published_value(store, capsys):
    for seed, (a, b) in enumerate(zip(SLEEP_1, SLEEP_2, strict=True)):
        log_trial(store, "ablation", "llvfsr-model1", seed, {"psnr": 20 + a})
        log_trial(store, "ablation", "llvfsr", seed, {"psnr": 20 + b})
    assert main(["--tracking-uri", store["uri"], "--experiment", EXPERIMENT, "--grid", "ablation"]) == 0
    out = capsys.readouterr().out
    cells = table_cells(out, "Table 2, x8")
    assert cells.loc["llvfsr-model1", "p vs LLV-FSR"] == "0.0028"  # R: p-value = 0.002833
    assert cells.loc["llvfsr", "p vs LLV-FSR"] == "—"
    assert "paired t-test over seeds" in out and "over the 10 seeds" in out


def test_one_seed_prints_no_p_value(store, capsys):
    log_trial(store, "ablation", "llvfsr-model1", 0, {"psnr": 20.1, "ssim": 0.40})
    log_trial(store, "ablation", "llvfsr", 0, {"psnr": 20.9, "ssim": 0.43})
    assert main(["--tracking-uri", store["uri"], "--experiment", EXPERIMENT]) == 0
    out = capsys.readouterr().out
    cells = table_cells(out, "Table 2, x8")
    assert "p vs LLV-FSR" not in cells.columns and not re.search(r"\de-\d", out)
    assert number(cells.loc["llvfsr", "PSNR"]) == (20.9, None)  # one seed: no ± std
    assert "No p-values" in out and "training variance" in out


def test_a_missing_store_or_experiment_is_one_error_line(store, tmp_path, capsys):
    missing = tmp_path / "typo.db"
    assert main(["--tracking-uri", f"sqlite:///{missing}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err and err.count("\n") == 1
    assert not missing.exists()  # not created empty by opening it
    assert main(["--tracking-uri", store["uri"], "--experiment", "nowhere", "--grid", "hpo"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no MLflow experiment 'nowhere'") and err.count("\n") == 1


RUNS = pd.DataFrame(
    {
        "variant": ["llvfsr", "llvfsr", "srcnn", "srcnn", "bicubic"],
        "scale": [8, 8, 8, 8, 8],
        "seed": [0, 1, 0, 1, 0],
        "psnr": [29.0, 29.2, 26.0, 26.4, 25.0],
        "lpips": [0.10, 0.12, 0.20, 0.22, 0.30],
        "identity": [0.2, 0.3, 0.5, 0.4, 0.7],
    }
)


def test_table_marks_best_and_second_and_shows_paper_deltas():
    stats = aggregate(RUNS, ["variant", "scale"], ["psnr", "lpips", "identity"]).xs(8, level="scale")
    paper = {"llvfsr": (29.35, 0.814, 9.419, 0.1122), "srcnn": (26.42, 0.724, 12.016, 0.2030)}
    table = build_table(stats, ["bicubic", "srcnn", "llvfsr"], ["psnr", "lpips", "identity"], paper, "markdown",
                        {"srcnn": 0.012})  # fmt: skip
    assert table.loc["llvfsr", "PSNR"] == "**29.10 ± 0.14**"  # mean and sample std over two seeds
    assert table.loc["srcnn", "PSNR"] == "<u>26.20 ± 0.28</u>"
    assert table.loc["bicubic", "PSNR"] == "25.00"  # one seed: no std
    assert table.loc["llvfsr", "LPIPS"].startswith("**0.1100")  # lower is better for LPIPS
    assert table.loc["llvfsr", "IDENTITY"].startswith("**0.2500")
    assert table.loc["llvfsr", "PSNR paper"] == "29.35" and table.loc["llvfsr", "PSNR Δ"] == "-0.25"
    assert table.loc["srcnn", "p vs LLV-FSR"] == "0.012" and table.loc["llvfsr", "p vs LLV-FSR"] == "—"
    latex = render(build_table(stats, ["srcnn", "llvfsr"], ["psnr"], None, "latex"), "latex", "t", ["a note"])
    assert "\\textbf{29.10 ± 0.14}" in latex and "\\underline{26.20 ± 0.28}" in latex and "% a note" in latex


def test_identity_chart_writes_a_png(tmp_path):
    identity_chart(RUNS, tmp_path / "fig7.png")
    assert (tmp_path / "fig7.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_controls_table_shows_attribute_accuracy_with_chance_and_a_seed_test(store, capsys):
    """The controls grid's rows: iris balanced accuracy per variant (mean of its seeds), chance in the title, and the
    paired test over seeds on the iris accuracy, not on PSNR."""
    iris = {"llvfsr": [0.9, 0.8, 0.85], "llvfsr-wo-description": [0.2, 0.25, 0.2],
            "llvfsr+shuffled-description": [0.2, 0.18, 0.22]}  # fmt: skip
    args = ["--tracking-uri", store["uri"], "--experiment", EXPERIMENT, "--grid", "controls"]
    for variant, values in iris.items():
        if variant == "llvfsr+shuffled-description":  # the Fig. 9 rows alone make no controls table
            assert main(args) == 0 and "Controls of the description" not in capsys.readouterr().out
        for seed, value in enumerate(values):
            test = {"psnr": 20.0 + seed * 0.01, "ssim": 0.5, "attr_eye_colour_centred_bacc": value}
            log_trial(store, "controls", variant, seed, test, sweep="c")
    assert main(args) == 0
    out = capsys.readouterr().out
    cells = table_cells(out, "Controls of the description, x8")
    for variant, values in iris.items():
        mean, std = number(cells.loc[variant, "IRIS centred bacc (0.20)"])
        assert mean == pytest.approx(np.mean(values), abs=0.005) and std == pytest.approx(
            np.std(values, ddof=1), abs=0.005
        )
    assert "on test ATTR_EYE_COLOUR_CENTRED_BACC" in out
    assert float(cells.loc["llvfsr-wo-description", "p vs LLV-FSR"]) < 0.05  # 0.85 vs 0.22 over 3 seeds
