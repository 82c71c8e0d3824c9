"""The robustness table (counterfactual priors at test time, `sweeps/robustness.py`) and its colour figure.

One row per variant x counterfactual, mean ± std over seeds: PSNR / SSIM change against the same checkpoints on
the true priors, iris-colour balanced accuracy (chance 0.20) and the hallucination rate of the text edits (how
often the SR face shows the iris colour the wrong text states), and on the true priors of a model that reads the
description its colour response (`llvfsr.counterfactual.colour_response`: the fraction of the stated iris colour it
draws when only the description changes; 0 when it ignores the text).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

COLUMNS = {  # metric -> column title
    "delta_psnr": "ΔPSNR (dB)",
    "delta_ssim": "ΔSSIM",
    "test_attr_eye_colour_bacc": "iris bacc",
    "test_attr_eye_colour_matched_bacc": "iris matched bacc",
    "test_colour_response": "colour resp.",
    "test_hallucination_eye_colour": "iris halluc.",
    "test_hallucination_eye_colour_matched": "iris matched halluc.",
    "test_hallucination_glasses": "frames halluc.",
}


def robustness_runs(tracking_uri: str, experiment: str, sweep: str | None = None) -> pd.DataFrame:
    """One row per robustness run: variant, seed, counterfactual and its metrics."""
    from llvfsr.tracking import client

    mlflow_client = client(tracking_uri)
    found = mlflow_client.get_experiment_by_name(experiment)
    if found is None:
        return pd.DataFrame()
    query = "tags.role = 'robustness'" + (f" and tags.sweep = '{sweep}'" if sweep else "")
    rows = []
    for run in mlflow_client.search_runs([found.experiment_id], query, max_results=10000):
        if run.info.status != "FINISHED":
            continue
        tags = run.data.tags
        rows.append({"variant": tags.get("variant"), "seed": tags.get("seed"), "scale": int(tags.get("scale", 0)),
                     "sweep": tags.get("sweep"), "counterfactual": tags.get("counterfactual"),
                     **run.data.metrics})  # fmt: skip
    return pd.DataFrame(rows)


def robustness_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Variant x counterfactual rows; cells 'mean ± std (n seeds)' of each metric present."""
    metrics = [m for m in COLUMNS if m in frame]
    out = []
    for (variant, name), group in frame.groupby(["variant", "counterfactual"], sort=True):
        row = {"variant": variant, "counterfactual": name, "seeds": len(group)}
        for metric in metrics:
            values = group[metric].dropna()
            if values.empty:
                row[COLUMNS[metric]] = "-"
            elif len(values) == 1:
                row[COLUMNS[metric]] = f"{values.iloc[0]:.3f}"
            else:
                row[COLUMNS[metric]] = f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"
        out.append(row)
    return pd.DataFrame(out)


def draw_colour_counterfactuals(views: dict, path: Path, title: str = "") -> None:
    """LR | HR | SR under a description stating each iris colour (the true one marked), one row, as a PNG; with an
    ``iris_box`` in `views`, a second row shows that crop of each, pixel by pixel (a checker iris's colour lives
    in single pixels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch.nn.functional as F

    from llvfsr.data.synthetic_attributes import ATTRIBUTES

    colours = ATTRIBUTES["eye_colour"]
    hr_size = views["hr"].shape[-1]
    lr_shown = F.interpolate(views["lr"][None], size=hr_size, mode="nearest")[0]  # the LR pixels, at the HR size
    panels = [("LR", lr_shown), ("HR", views["hr"])] + [
        (f"'{c}'" + (" (true)" if c == views["true"] else ""), views[c]) for c in colours
    ]
    box = views.get("iris_box")
    rows = 2 if box is not None else 1
    fig, axes = plt.subplots(rows, len(panels), figsize=(1.9 * len(panels), 2.3 if rows == 1 else 4.2), squeeze=False)
    for column, (label, image) in enumerate(panels):
        axes[0, column].imshow(image.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
        axes[0, column].set_title(label, fontsize=9)
        if box is not None:
            top, left, height, width = box
            width = width // 2 if width > 2 * height else width  # two eyes side by side: the image-left one
            crop = image[:, top : top + height, left : left + width]
            axes[1, column].imshow(crop.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(f"one test face, its description stating each iris colour — {title}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
