"""MLflow runs -> the paper's Table 1, Table 2 and the per-prior ablation, with the published numbers alongside.

    python analysis/tables.py                          # every table the runs allow, markdown
    python analysis/tables.py --grid ablation --format latex
    python analysis/tables.py --grid hpo               # Optuna trials, best configuration, parameter importances

Cells are mean ± std over seeds; the best value of a column is bold and the second underlined, as in the paper.
"p vs LLV-FSR" is a two-sided paired t-test on test PSNR over seeds (`analysis.stats` says why); with one seed per
row no p-value is printed, because a per-face test of two fixed networks says nothing about training variance.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

from analysis.columns import present
from analysis.hpo import hpo_tables, load_hpo
from analysis.paper_numbers import METRICS, PRIOR_ORDER, TABLE1, TABLE1_ORDER, TABLE2, TABLE2_ORDER
from analysis.render import decorate, rank_marks, render
from analysis.runs import RunsMissing, load_runs
from analysis.stats import TEST_NAME, aggregate, seed_tests
from llvfsr.cli import check_tracking_uri
from llvfsr.errors import cli_entry
from llvfsr.models.official import AUTHORS_SUFFIX
from llvfsr.tracking import default_tracking_uri

REFERENCE = "llvfsr"
TESTED_METRIC = "psnr"
P_COLUMN = "p vs LLV-FSR"
# the controls grid (sweeps/grids.py): true description, none, another face's, one for all; tested on the iris
CONTROL_ORDER = ["llvfsr", "llvfsr-wo-description", "llvfsr+shuffled-description", "llvfsr+constant-description"]
# tested on the iris, with the matched reader (sees a faint stated colour per face) where the runs logged it; runs
# evaluated before it existed fall back to the centred reading
CONTROL_METRICS = ("attr_eye_colour_matched_bacc", "attr_eye_colour_centred_bacc")


def build_table(
    stats: pd.DataFrame, rows: list, metrics: list[str], paper: dict | None, fmt: str, pvalues: dict | None = None
) -> pd.DataFrame:
    """One formatted table: a row per entry of `rows` (index values of `stats`), paper value and delta beside ours.

    `metrics` are column names (`analysis.columns`); `pvalues` maps a row to its p-value (NaN: none), None: no column.
    """
    rows = [r for r in rows if r in stats.index]
    logged = [m for m in metrics if f"{m}_mean" in stats.columns and stats.loc[rows, f"{m}_mean"].notna().any()]
    columns = present(logged)
    marks = {c.name: rank_marks(stats.loc[rows, f"{c.name}_mean"], c.higher_is_better) for c in columns}
    table = {}
    for row in rows:
        cells = {}
        seeds = int(stats.loc[row, "seeds"])
        for column in columns:
            m, d = column.name, column.digits
            mean, std = stats.loc[row, f"{m}_mean"], stats.loc[row, f"{m}_std"]
            ours = "n/a" if pd.isna(mean) else f"{mean:.{d}f}" + (f" ± {std:.{d}f}" if seeds > 1 else "")
            cells[column.title] = decorate(ours, marks[m].get(row), fmt)
            published = (paper or {}).get(row)
            if published is not None and m in METRICS:
                value = published[METRICS.index(m)]
                cells[f"{m.upper()} paper"] = f"{value:.{d}f}"
                cells[f"{m.upper()} Δ"] = "n/a" if pd.isna(mean) else f"{mean - value:+.{d}f}"
        cells["seeds"] = str(seeds)
        if pvalues is not None:
            p = pvalues.get(row, float("nan"))
            cells[P_COLUMN] = "—" if np.isnan(p) else f"{p:.2g}"
        table[row] = cells
    return pd.DataFrame.from_dict(table, orient="index")


def significance(
    runs: pd.DataFrame, rows: list[str], scale: int, metric: str = TESTED_METRIC
) -> tuple[dict | None, list[str]]:
    """The p-value column of a table (None when no row has two seeds shared with LLV-FSR) and its note."""
    if REFERENCE not in rows:
        return None, []
    tests = seed_tests(runs, rows, REFERENCE, scale, metric)
    if all(t is None for t in tests.values()):
        return None, [
            "No p-values: fewer than two seeds shared with LLV-FSR. A per-face test of two fixed networks measures "
            "test-face noise, not training variance; run the sweep with --seeds 3 or more for a test over seeds."
        ]
    pvalues = {row: (float("nan") if t is None else t.p) for row, t in tests.items()}
    counts = sorted({t.seeds for t in tests.values() if t is not None})
    return pvalues, [
        f"{P_COLUMN}: {TEST_NAME}, on test {metric.upper()}, over the {'/'.join(map(str, counts))} seeds a row "
        "shares with LLV-FSR; — where fewer than two are shared."
    ]


def tables(runs: pd.DataFrame, fmt: str, with_p: bool = True) -> list[str]:
    """Every table the runs form, rendered: Table 1 and 2 per scale, and the per-prior ablation."""
    out = []
    metrics = [c.name for c in present(set(runs.columns))]
    stats = aggregate(runs, ["variant", "scale"], metrics)
    for scale in sorted(runs.scale.unique()):
        at = stats.xs(scale, level="scale")
        available = set(at.index)
        sections = []
        # A method run on the authors' released weights sits under the one retrained here, beside the same paper row.
        t1_rows = [r for m in TABLE1_ORDER for r in (m, f"{m}{AUTHORS_SUFFIX}") if r in available]
        if len(t1_rows) > 1 and set(t1_rows) - {REFERENCE}:
            paper = {k: v[scale] for k, v in TABLE1.items() if scale in v}
            paper.update({f"{k}{AUTHORS_SUFFIX}": v for k, v in paper.items()})
            title = f"Table 1, x{scale}: methods (ours: mean ± std over seeds; paper: MM-CelebA-HQ)"
            sections.append((title, t1_rows, paper, TESTED_METRIC))
        t2_rows = [r for r in TABLE2_ORDER if r in available]
        if len(t2_rows) > 1:
            title = f"Table 2, x{scale}: LVPFB ablation (Model 1: no priors; Model 2: concatenation; LLV-FSR)"
            sections.append((title, t2_rows, TABLE2 if scale == 8 else None, TESTED_METRIC))
        prior_rows = [r for r in PRIOR_ORDER if r in available and r != "llvfsr-model1"]
        prior_rows += sorted(r for r in available if r.startswith("priors:"))
        if len(prior_rows) > 1:
            title = f"Per-prior ablation (Fig. 9), x{scale}: LLV-FSR without each prior"
            sections.append((title, prior_rows, None, TESTED_METRIC))
        control_rows = [r for r in CONTROL_ORDER if r in available]
        if set(control_rows) - set(PRIOR_ORDER):  # a negative control ran (not only the Fig. 9 rows again)
            title = f"Controls of the description, x{scale}: does the SR face show what only the text states?"
            tested = next((m for m in CONTROL_METRICS if m in runs and runs[m].notna().any()), CONTROL_METRICS[-1])
            sections.append((title, control_rows, None, tested))
        for title, rows, paper, tested in sections:  # tested: the metric of the p-value column
            pvalues, notes = significance(runs, rows, scale, tested) if with_p else (None, [])
            out.append(render(build_table(at, rows, metrics, paper, fmt, pvalues), fmt, title, notes))
    return [t for t in out if t]


def robustness_tables(uri: str, experiment: str, sweep: str | None, fmt: str) -> list[str]:
    """The counterfactual-prior table of `sweeps/robustness.py` runs (empty when there are none)."""
    from analysis.robustness import robustness_runs, robustness_table

    frame = robustness_runs(uri, experiment, sweep)
    if frame.empty:
        raise RunsMissing(
            "no robustness runs: run `python sweeps/robustness.py --sweep NAME` on a finished sweep first"
        )
    table = robustness_table(frame).set_index("variant")  # a pair index would print as a tuple
    title = "Robustness: counterfactual priors at test time (Δ against the same checkpoints on the true priors)"
    notes = ["iris halluc.: share of faces whose SR iris shows the colour the wrong text states (chance 0.20)."]
    return [render(table, fmt, title, notes)]


def dropout_tables(uri: str, experiment: str, sweep: str | None, runs: pd.DataFrame, fmt: str) -> list[str]:
    """Prior dropout beside the architectural ablations, when a dropout model's withheld priors were evaluated."""
    from analysis.dropout import dropout_comparison
    from analysis.robustness import robustness_runs

    table = dropout_comparison(runs, robustness_runs(uri, experiment, sweep))
    notes = [
        "mean ± std (seeds); gap: the dropout model minus the LVPFB architecture trained with those priors alone "
        "(-: not in these runs; the `priors` grid trains every subset). Withheld priors come from "
        "`python sweeps/robustness.py --sweep NAME` on the dropout sweep."
    ]
    out = []
    for (model, scale), rows in table.groupby(["dropout model", "scale"], sort=True) if not table.empty else ():
        title = f"Prior dropout, x{scale}: {model} given a subset of its priors vs the architecture trained with it"
        out.append(render(rows.drop(columns=["dropout model", "scale"]).set_index("priors given"), fmt, title, notes))
    return out


@cli_entry()
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Print Table 1 / Table 2 / the per-prior ablation (or an hpo sweep's trials) from MLflow runs."
    )
    parser.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or ./mlflow.db)"
    )
    parser.add_argument("--experiment", default="llvfsr", help="MLflow experiment name")
    parser.add_argument(
        "--grid", default=None, help="only this grid's runs (its name in sweeps/grids.py: ablation, table1, hpo, ...)"
    )
    parser.add_argument("--sweep", default=None, help="only this sweep (a sweep name tag)")
    parser.add_argument("--format", default="markdown", choices=["markdown", "latex", "csv"])
    parser.add_argument("--no-significance", action="store_true", help="leave out the p-value column")
    args = parser.parse_args(argv)
    uri = args.tracking_uri or default_tracking_uri()
    check_tracking_uri(uri, must_exist=True)
    if args.grid == "hpo":  # RunsMissing (a UserError) ends as one error: line through cli_entry
        rendered = hpo_tables(load_hpo(uri, args.experiment, args.sweep), args.format)
    elif args.grid == "robustness":
        rendered = robustness_tables(uri, args.experiment, args.sweep, args.format)
    else:
        runs = load_runs(uri, args.experiment, args.grid, args.sweep)
        rendered = tables(runs, args.format, with_p=not args.no_significance)
        if args.grid in (None, "dropout"):
            rendered += dropout_tables(uri, args.experiment, args.sweep, runs, args.format)
        if args.grid is None and (runs.grid == "hpo").any():
            rendered += hpo_tables(load_hpo(uri, args.experiment, args.sweep), args.format)
    if not rendered:
        print("error: the finished runs do not form any of the tables (need at least two methods)", file=sys.stderr)
        return 1
    print("\n".join(rendered))
    return 0


if __name__ == "__main__":
    sys.exit(main())
