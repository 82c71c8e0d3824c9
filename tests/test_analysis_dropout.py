"""The prior-dropout comparison: each subset of priors given to the dropout model, beside the ablation trained on it."""

import pandas as pd
import pytest

from analysis.dropout import dropout_comparison, priors_of, subset_label

ALL = "mask,depth,caption,description"


def _trials():
    rows = []
    for seed, shift in ((0, 0.0), (1, 0.2)):
        rows += [
            {"variant": "llvfsr+prior-dropout", "model": "llvfsr", "priors": ALL, "psnr": 25.0 + shift},
            {"variant": "llvfsr", "model": "llvfsr", "priors": ALL, "psnr": 25.5 + shift},
            {"variant": "llvfsr-model2", "model": "llvfsr-model2", "priors": ALL, "psnr": 30.0},  # not LVPFB
            {"variant": "llvfsr-wo-depth", "model": "llvfsr-wo-depth", "priors": "mask,caption,description",
             "psnr": 24.0 + shift},
            {"variant": "llvfsr-model1", "model": "llvfsr-model1", "priors": "none", "psnr": 23.0 + shift},
            {"variant": "srcnn", "model": "srcnn", "priors": "none", "psnr": 99.0},  # another architecture
        ]  # fmt: skip
        for row in rows[-6:]:
            row.update(seed=seed, scale=8)
    return pd.DataFrame(rows)


def _robustness():
    rows = []
    for seed, shift in ((0, 0.0), (1, 0.2)):
        for name, psnr in (("withhold:depth", 24.5), ("withhold:all", 22.0), ("withhold:mask+depth", 23.5)):
            rows.append({"variant": "llvfsr+prior-dropout", "seed": str(seed), "scale": 8, "counterfactual": name,
                         "test_psnr": psnr + shift})  # fmt: skip
        rows.append(
            {"variant": "llvfsr", "seed": str(seed), "scale": 8, "counterfactual": "mask:shift", "test_psnr": 1.0}
        )  # fmt: skip  (not a withheld subset: ignored)
    return pd.DataFrame(rows)


def test_each_subset_is_set_beside_the_lvpfb_ablation_trained_with_it():
    table = dropout_comparison(_trials(), _robustness()).set_index("priors given")
    assert list(table.index) == ["all four", "mask+caption+description", "caption+description", "none"]
    assert table.loc["all four", "trained with them alone"] == "llvfsr"  # not Model 2, which reads the same priors
    assert table.loc["mask+caption+description", "trained with them alone"] == "llvfsr-wo-depth"
    assert table.loc["none", "trained with them alone"] == "llvfsr-model1"  # not SRCNN
    assert table.loc["caption+description", "trained with them alone"] == "-"  # no such ablation ran
    assert table.loc["all four", "PSNR, others withheld"] == "25.10 ± 0.14 (2)"
    assert table.loc["mask+caption+description", "its PSNR"] == "24.10 ± 0.14 (2)"
    gaps = table["gap (dB)"].to_dict()
    assert gaps == {"all four": "-0.50", "mask+caption+description": "+0.50", "caption+description": "-",
                    "none": "-1.00"}  # fmt: skip


@pytest.mark.parametrize(
    ("tag", "label"), [(ALL, "all four"), ("none", "none"), ("description,mask", "mask+description")]
)
def test_subset_labels_follow_the_prior_order(tag, label):
    assert subset_label(priors_of(tag)) == label


def test_no_withheld_runs_no_table():
    robustness = _robustness()
    assert dropout_comparison(_trials(), robustness[robustness.counterfactual == "mask:shift"]).empty
    assert dropout_comparison(_trials(), pd.DataFrame()).empty
