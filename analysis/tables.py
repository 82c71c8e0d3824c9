"""MLflow runs -> the paper's Table 1, Table 2 and the per-prior ablation, with the published numbers alongside.

    python analysis/tables.py                          # every table the runs allow, markdown
    python analysis/tables.py --grid ablation --format latex

Cells are mean +- std over seeds; the best value of a column is bold and the second underlined, as in the paper.
"p vs LLV-FSR" is a two-sided Wilcoxon signed-rank test on per-image PSNR (averaged over seeds), paired by face.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from analysis.paper_numbers import HIGHER_IS_BETTER, METRICS, PRIOR_ORDER, TABLE1, TABLE1_ORDER, TABLE2, TABLE2_ORDER
from analysis.runs import RunsMissing, load_runs, per_image
from llvfsr.tracking import default_tracking_uri

REFERENCE = "llvfsr"


def aggregate(runs: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """Mean, std and seed count per group of `keys`."""
    present = [m for m in metrics if m in runs.columns]
    grouped = runs.groupby(keys)[present]
    out = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=1).fillna(0.0).add_suffix("_std"))
    out["seeds"] = runs.groupby(keys).size()
    return out


def paired_p(tracking_uri: str, runs: pd.DataFrame, variant: str, scale: int, metric: str = "psnr") -> float:
    """Wilcoxon p-value of `variant` vs LLV-FSR on per-image `metric` at `scale` (NaN when not computable)."""
    mine = runs[(runs.variant == variant) & (runs.scale == scale)]
    ref = runs[(runs.variant == REFERENCE) & (runs.scale == scale)]
    if variant == REFERENCE or mine.empty or ref.empty:
        return float("nan")
    a = per_image(tracking_uri, list(mine.run_id), metric)
    b = per_image(tracking_uri, list(ref.run_id), metric)
    a, b = a.align(b, join="inner")
    diff = (a - b).dropna()
    if len(diff) < 2 or np.allclose(diff, 0):
        return float("nan")
    return float(wilcoxon(diff).pvalue)


def rank_marks(values: pd.Series, higher: bool) -> dict:
    """index -> "best" / "second" for a column."""
    order = values.dropna().sort_values(ascending=not higher).index.tolist()
    return {idx: mark for idx, mark in zip(order, ("best", "second"), strict=False)}


def decorate(text: str, mark: str | None, fmt: str) -> str:
    if mark is None or fmt == "csv":
        return text
    if fmt == "latex":
        return f"\\textbf{{{text}}}" if mark == "best" else f"\\underline{{{text}}}"
    return f"**{text}**" if mark == "best" else f"<u>{text}</u>"


def digits(metric: str) -> int:
    return {"psnr": 2, "psnr_eyes": 2, "psnr_face": 2, "ssim": 4, "niqe": 3, "lpips": 4, "landmark_error": 2}.get(
        metric, 4
    )


def build_table(
    stats: pd.DataFrame, rows: list, metrics: list[str], paper: dict | None, fmt: str, pvalues: dict | None = None
) -> pd.DataFrame:
    """One formatted table: a row per entry of `rows` (index values of `stats`), paper value and delta beside ours."""
    rows = [r for r in rows if r in stats.index]
    metrics = [m for m in metrics if f"{m}_mean" in stats.columns and stats.loc[rows, f"{m}_mean"].notna().any()]
    marks = {m: rank_marks(stats.loc[rows, f"{m}_mean"], HIGHER_IS_BETTER[m]) for m in metrics}
    table = {}
    for row in rows:
        cells = {}
        for m in metrics:
            mean, std, d = stats.loc[row, f"{m}_mean"], stats.loc[row, f"{m}_std"], digits(m)
            seeds = int(stats.loc[row, "seeds"])
            ours = "n/a" if pd.isna(mean) else f"{mean:.{d}f}" + (f" ± {std:.{d}f}" if seeds > 1 else "")
            cells[m.upper()] = decorate(ours, marks[m].get(row), fmt)
            published = (paper or {}).get(row)
            if published is not None and m in METRICS:
                value = published[METRICS.index(m)]
                cells[f"{m.upper()} paper"] = f"{value:.{d}f}"
                cells[f"{m.upper()} Δ"] = "n/a" if pd.isna(mean) else f"{mean - value:+.{d}f}"
        cells["seeds"] = str(int(stats.loc[row, "seeds"]))
        if pvalues is not None:
            p = pvalues.get(row, float("nan"))
            cells["p vs LLV-FSR"] = "—" if np.isnan(p) else f"{p:.2g}"
        table[row] = cells
    return pd.DataFrame.from_dict(table, orient="index")


def render(frame: pd.DataFrame, fmt: str, title: str) -> str:
    if frame.empty:
        return ""
    if fmt == "csv":
        return f"# {title}\n{frame.to_csv()}"
    if fmt == "latex":
        return f"% {title}\n{frame.to_latex(escape=False)}"
    return f"### {title}\n\n{frame.to_markdown()}\n"


def tables(tracking_uri: str, runs: pd.DataFrame, fmt: str, with_p: bool = True) -> list[str]:
    out = []
    extra = [m for m in ("psnr_eyes", "psnr_face", "identity", "landmark_error") if m in runs.columns]
    stats = aggregate(runs, ["variant", "scale"], [*METRICS, *extra])
    for scale in sorted(runs.scale.unique()):
        at = stats.xs(scale, level="scale")
        present = set(at.index)

        def pvals(rows, scale=scale):
            return {r: paired_p(tracking_uri, runs, r, scale) for r in rows} if with_p else None

        t1_rows = [r for r in TABLE1_ORDER if r in present]
        if len(t1_rows) > 1 and set(t1_rows) - {"llvfsr"}:
            paper = {k: v[scale] for k, v in TABLE1.items() if scale in v}
            title = f"Table 1, x{scale}: methods (ours: mean ± std over seeds; paper: MM-CelebA-HQ)"
            out.append(render(build_table(at, t1_rows, [*METRICS, *extra], paper, fmt, pvals(t1_rows)), fmt, title))
        t2_rows = [r for r in TABLE2_ORDER if r in present]
        if len(t2_rows) > 1:
            paper = TABLE2 if scale == 8 else None
            title = f"Table 2, x{scale}: LVPFB ablation (Model 1: no priors; Model 2: concatenation; LLV-FSR)"
            out.append(render(build_table(at, t2_rows, [*METRICS, *extra], paper, fmt, pvals(t2_rows)), fmt, title))
        prior_rows = [r for r in PRIOR_ORDER if r in present and r != "llvfsr-model1"]
        prior_rows += sorted(r for r in present if r.startswith("priors:"))
        if len(prior_rows) > 1:
            title = f"Per-prior ablation (Fig. 9), x{scale}: LLV-FSR without each prior"
            out.append(
                render(build_table(at, prior_rows, [*METRICS, *extra], None, fmt, pvals(prior_rows)), fmt, title)
            )
    return [t for t in out if t]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print Table 1 / Table 2 / the per-prior ablation from MLflow runs.")
    parser.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or ./mlflow.db)"
    )
    parser.add_argument("--experiment", default="llvfsr", help="MLflow experiment name")
    parser.add_argument(
        "--grid", default=None, choices=["smoke", "ablation", "priors", "table1", "hpo"], help="only this grid"
    )
    parser.add_argument("--sweep", default=None, help="only this sweep (a sweep name tag)")
    parser.add_argument("--format", default="markdown", choices=["markdown", "latex", "csv"])
    parser.add_argument("--no-significance", action="store_true", help="skip the paired tests (no artifact downloads)")
    args = parser.parse_args(argv)
    uri = args.tracking_uri or default_tracking_uri()
    try:
        runs = load_runs(uri, args.experiment, args.grid, args.sweep)
    except RunsMissing as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    rendered = tables(uri, runs, args.format, with_p=not args.no_significance)
    if not rendered:
        print("error: the finished runs do not form any of the tables (need at least two methods)", file=sys.stderr)
        return 1
    print("\n".join(rendered))
    return 0


if __name__ == "__main__":
    sys.exit(main())
