"""The seed-level test behind the tables' p-values: pairs by seed, needs two shared seeds, never invents a p."""

import math

import pandas as pd
import pytest
from test_tables import SLEEP_1, SLEEP_2

from analysis.stats import paired_over_seeds


def test_pairs_by_seed_not_by_position():
    mine = pd.Series(SLEEP_1, index=range(10))
    reference = pd.Series(SLEEP_2, index=range(10)).iloc[::-1]  # same seeds, listed in the other order
    result = paired_over_seeds(mine, reference)
    assert result.seeds == 10 and result.mean_difference == pytest.approx(-1.58)  # R: mean difference -1.58
    assert result.p == pytest.approx(0.002833, abs=5e-7)  # R: p-value = 0.002833


def test_only_shared_seeds_count():
    mine = pd.Series([20.0, 20.5, 21.0], index=[0, 1, 7])
    assert paired_over_seeds(mine, pd.Series([19.0], index=[0])) is None  # one shared seed: no test
    shared = paired_over_seeds(mine, pd.Series([19.0, 19.0, 5.0], index=[0, 1, 2]))
    assert shared.seeds == 2 and shared.mean_difference == pytest.approx(1.25)


def test_constant_differences_give_no_p_value():
    result = paired_over_seeds(pd.Series([20.0, 21.0, 22.0]), pd.Series([19.0, 20.0, 21.0]))
    assert result.mean_difference == pytest.approx(1.0) and math.isnan(result.p)
