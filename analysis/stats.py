"""The tables' numbers: mean ± std over seeds per row, and the significance test against LLV-FSR, over seeds.

Why the test is over seeds. A trained network is one draw of a random process (initialisation, batch order). A
signed-rank test on the per-face differences of two fixed networks asks only whether *those two networks* differ on
these faces: with 64 faces it gives p ~ 1e-9 for gaps inside the seed-to-seed spread, and says nothing about
training variance. The unit of replication is the training run (Henderson et al., "Deep Reinforcement Learning that
Matters", AAAI 2018; Agarwal et al., "Deep RL at the Edge of the Statistical Precipice", NeurIPS 2021). So each
seed contributes one number, its run's mean test metric, and two rows are compared with a two-sided paired t-test
over the seeds both have: seed s of every variant draws the same batch order (`llvfsr.train`), so pairing removes
what they share. With fewer than two shared seeds there is no test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import ttest_rel

TEST_NAME = "two-sided paired t-test over seeds (per-seed mean test metric, paired by seed)"


@dataclass(frozen=True)
class SeedTest:
    """A paired t-test of one row against the reference row on one metric."""

    seeds: int  # seeds both rows have
    mean_difference: float  # row minus reference, averaged over those seeds
    p: float  # two-sided; NaN when the per-seed differences do not vary (the t statistic is undefined)


def aggregate(runs: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """Mean, sample std (ddof 1; 0 for one run) and run count (`seeds`) of each metric per group of `keys`."""
    present = [m for m in metrics if m in runs.columns]
    grouped = runs.groupby(keys)[present]
    out = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=1).fillna(0.0).add_suffix("_std"))
    out["seeds"] = runs.groupby(keys).size()
    return out


def per_seed(runs: pd.DataFrame, variant: str, scale: int, metric: str) -> pd.Series:
    """`metric` of `variant` at `scale`, one value per seed (the mean where a seed was run more than once)."""
    rows = runs[(runs.variant == variant) & (runs.scale == scale)]
    if metric not in rows.columns:
        return pd.Series(dtype=float)
    return rows.groupby("seed")[metric].mean().dropna()


def paired_over_seeds(mine: pd.Series, reference: pd.Series) -> SeedTest | None:
    """Paired t-test of two per-seed series (indexed by seed); None with fewer than two shared seeds."""
    a, b = mine.align(reference, join="inner")
    if len(a) < 2:
        return None
    diff = (a - b).to_numpy(dtype=float)
    if np.ptp(diff) <= 1e-12 * max(1.0, float(np.abs(diff).max())):
        return SeedTest(len(diff), float(diff.mean()), float("nan"))
    return SeedTest(len(diff), float(diff.mean()), float(ttest_rel(a.to_numpy(), b.to_numpy()).pvalue))


def seed_tests(runs: pd.DataFrame, rows: list[str], reference: str, scale: int, metric: str) -> dict:
    """row -> `SeedTest` (or None) of each row against `reference` at `scale`; the reference itself is left out."""
    ref = per_seed(runs, reference, scale, metric)
    return {row: paired_over_seeds(per_seed(runs, row, scale, metric), ref) for row in rows if row != reference}
