"""Prior dropout beside the architectural ablations (issue 14, item 5).

One LLV-FSR trained with prior dropout (`TrainConfig.prior_dropout`) is given a subset of its priors at test time,
the others withheld (`sweeps/robustness.py`, the counterfactuals `llvfsr.counterfactual.WITHHOLDS`). Each subset is
set beside the LLV-FSR architecture trained with that subset alone: Fig. 9's "LLV-FSR w/o <prior>", the `priors` grid's
``priors:<subset>`` and Model 1 (no priors). A small gap means the one dropout model stands in for the ablation
runs; a large one means the ablation's answer depends on retraining without the prior.
"""

from __future__ import annotations

import pandas as pd

from llvfsr.counterfactual import WITHHOLDS
from llvfsr.models.lvpfb import BRANCHES

NOT_LVPFB = {"llvfsr-model2"}  # reads all four priors, but fused by concatenation: not the same architecture


def priors_of(tag: object) -> frozenset[str]:
    """The `priors` tag of a run ("mask,depth" / "none") as a set."""
    if not isinstance(tag, str) or tag in ("", "none"):
        return frozenset()
    return frozenset(tag.split(","))


def subset_label(priors: frozenset[str]) -> str:
    if priors == frozenset(BRANCHES):
        return "all four"
    return "+".join(p for p in BRANCHES if p in priors) or "none"


def _cell(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "-"
    if len(values) == 1:
        return f"{values.iloc[0]:.2f} (1)"
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f} ({len(values)})"


def dropout_comparison(trials: pd.DataFrame, robustness: pd.DataFrame, metric: str = "psnr") -> pd.DataFrame:
    """Rows: dropout variant x scale x the priors it is given; cells 'mean ± std (seeds)' of `metric`.

    Args:
        trials: finished trial runs (`analysis.runs.load_runs`: variant, model, scale, seed, priors, metrics
            without the ``test_`` prefix).
        robustness: robustness runs (`analysis.robustness.robustness_runs`: variant, scale, seed, counterfactual,
            ``test_<metric>``).
    """
    if robustness.empty or "counterfactual" not in robustness:
        return pd.DataFrame()
    withheld = robustness[robustness.counterfactual.isin(WITHHOLDS)]
    architectural = trials[trials.model.astype(str).str.startswith("llvfsr") & ~trials.model.isin(NOT_LVPFB)]
    rows = []
    for (variant, scale), runs in withheld.groupby(["variant", "scale"], sort=True):
        own = trials[(trials.variant == variant) & (trials.scale == int(scale))]
        reads = priors_of(own.priors.iloc[0]) if not own.empty else frozenset(BRANCHES)
        given = [(reads, own[metric] if metric in own else pd.Series(dtype=float))]
        for name, group in runs.groupby("counterfactual", sort=False):
            given.append((reads - frozenset(WITHHOLDS[name][0]), group[f"test_{metric}"]))
        others = architectural[(architectural.variant != variant) & (architectural.scale == int(scale))]
        for priors, values in sorted(given, key=lambda g: (-len(g[0]), subset_label(g[0]))):
            match = others[others.priors.map(priors_of) == priors]
            names = sorted(match.variant.unique(), key=lambda v: (v.startswith("priors:"), v))
            same = match[match.variant == names[0]][metric] if names else pd.Series(dtype=float)
            gap = values.mean() - same.mean() if names and not values.dropna().empty else float("nan")
            rows.append({
                "dropout model": variant, "scale": int(scale), "priors given": subset_label(priors),
                f"{metric.upper()}, others withheld": _cell(values),
                "trained with them alone": names[0] if names else "-",
                f"its {metric.upper()}": _cell(same),
                "gap (dB)" if metric == "psnr" else "gap": "-" if gap != gap else f"{gap:+.2f}",
            })  # fmt: skip
    return pd.DataFrame(rows)
