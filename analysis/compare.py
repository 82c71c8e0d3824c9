"""Visual comparisons (paper Figs. 5, 6, 8 and 9): the same faces from every run of a sweep, side by side.

Each trial's evaluation saves its first test faces as ``sr_faces/<id>.png`` (with ``<id>_lr.png`` and
``<id>_hr.png``, see `llvfsr.evaluate.save_sr_faces`); this module downloads them from MLflow and draws, per face,
LR | every method | HR, with zoomed eye and mouth crops below and each method's PSNR / SSIM on that face (from
the run's ``per_image.csv``) underneath. As in the paper's figures the LR face is shown enlarged (nearest).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.paper_numbers import PRIOR_ORDER, TABLE1_ORDER

# Column order: Figs. 5 / 6 (the paper leaves Bicubic out; it is the first row of Table 1, so it stays in), and
# Figs. 8 and 9 in one image (Model 1 is Fig. 9's "w/o prior"); --methods picks a subset, e.g. Fig. 8 alone.
METHOD_ORDER = {"table1": TABLE1_ORDER, "ablation": ("llvfsr-model1", "llvfsr-model2", *PRIOR_ORDER[1:])}

# iBUG 68-point indices of the two zoomed regions.
REGIONS = {"eyes": range(36, 48), "mouth": range(48, 68)}

# Fixed crop boxes (x0, y0, x1, y1 as fractions of the side) for faces without landmarks (real data): the boxes
# `crop_box` gives on the mean 68-point layout of 200 synthetic faces, which are aligned like CelebA-HQ's crops
# (eye corners at x 0.32-0.68, y 0.41-0.48; mouth at x 0.42-0.58, y 0.64-0.69).
FIXED_BOXES = {"eyes": (0.266, 0.331, 0.733, 0.565), "mouth": (0.392, 0.611, 0.602, 0.716)}


class ComparisonError(RuntimeError):
    """The sweep cannot give a comparison (no runs, runs without saved faces, ids missing); says what to do."""


@dataclass
class MethodFaces:
    """One column: a method's label, its run, and its SR faces and per-face (PSNR, SSIM) by id."""

    label: str
    run_id: str
    sr: dict[str, np.ndarray]
    scores: dict[str, tuple[float, float]]


def crop_box(points: np.ndarray, size: int, pad: float = 0.3, aspect: float = 2.0) -> tuple[int, int, int, int]:
    """A box around landmark `points` ([K, 2] pixel x, y), padded by `pad` of its width, `aspect` wide:tall.

    Returns integer (x0, y0, x1, y1), at least 4 pixels each way, shifted (not shrunk) to stay inside the image.
    """
    (x0, y0), (x1, y1) = points.min(0), points.max(0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    w = max((x1 - x0) * (1 + pad), (y1 - y0) * (1 + pad) * aspect, 4 * aspect)
    w = min(w, size)
    h = w / aspect
    left = int(round(min(max(cx - w / 2, 0), size - w)))
    top = int(round(min(max(cy - h / 2, 0), size - h)))
    return left, top, left + int(round(w)), top + int(round(h))


def fixed_boxes(size: int) -> dict[str, tuple[int, int, int, int]]:
    """`FIXED_BOXES` in pixels of a `size` x `size` face."""
    return {k: tuple(int(round(f * size)) for f in box) for k, box in FIXED_BOXES.items()}  # type: ignore[misc]


def landmark_boxes(landmarks: np.ndarray, size: int) -> dict[str, tuple[int, int, int, int]]:
    """Eye and mouth boxes of one face from its 68 landmarks ([68, 2] pixel x, y)."""
    return {name: crop_box(landmarks[list(idx)], size) for name, idx in REGIONS.items()}


def synthetic_landmarks(params: dict[str, str], ids: list[str]) -> dict[str, np.ndarray] | None:
    """The exact landmarks of synthetic test faces, rebuilt from a run's recorded config; None for real data."""
    import dataclasses
    import json

    from llvfsr.config import DataConfig
    from llvfsr.data.splits import open_split

    # Only the fields this version knows: a run recorded by another version may have more or fewer.
    known = {f.name for f in dataclasses.fields(DataConfig)}
    values = {k[5:]: json.loads(v) for k, v in params.items() if k.startswith("data.") and k[5:] in known}
    data = DataConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    if data.dataset != "synthetic":
        return None
    dataset = open_split(data, "test")
    index = {dataset.item_id(i): i for i in range(len(dataset))}
    return {face_id: dataset.exact_priors(index[face_id]).landmarks for face_id in ids if face_id in index}


def _download_faces(tracking_uri: str, run_id: str) -> dict[str, np.ndarray]:
    """Every PNG of a run's ``sr_faces`` artifact folder, by file stem; empty if it has none."""
    import mlflow
    from PIL import Image

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        folder = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="sr_faces", tracking_uri=tracking_uri)
    except Exception:  # MLflow raises its own errors (or OSError) for a missing artifact path
        return {}
    return {p.stem: np.asarray(Image.open(p).convert("RGB")) for p in sorted(Path(folder).glob("*.png"))}


def pick_runs(runs: pd.DataFrame, scale: int, methods: list[str] | None, grid: str) -> pd.DataFrame:
    """One run per method at `scale` (the lowest seed), in the figure's column order.

    Raises:
        ComparisonError: several sweeps are mixed, or a named method has no run.
    """
    runs = runs[runs.scale == scale]
    if runs.empty:
        raise ComparisonError(f"no finished x{scale} runs in grid {grid!r}")
    sweeps = sorted(runs.sweep.dropna().unique())
    if len(sweeps) > 1:
        raise ComparisonError(f"runs of several sweeps ({', '.join(sweeps)}): choose one with --sweep")
    present = list(runs.variant.unique())
    order = list(METHOD_ORDER.get(grid, ()))
    wanted = methods or [m for m in order if m in present] + sorted(set(present) - set(order))
    missing = [m for m in wanted if m not in present]
    if missing:
        raise ComparisonError(f"no x{scale} run for {missing}; runs exist for {sorted(present)}")
    first = runs.sort_values("seed").groupby("variant").head(1).set_index("variant")
    return first.loc[wanted].reset_index()


def load_columns(tracking_uri: str, runs: pd.DataFrame) -> tuple[list[MethodFaces], dict[str, np.ndarray]]:
    """Download each run's saved faces and per-face scores: the method columns, and the LR / HR faces by key.

    Raises:
        ComparisonError: a run saved no faces (trained before ``sr_faces`` existed, or with ``sr_faces=0``).
    """
    from analysis.runs import per_image

    columns, shared = [], {}
    for row in runs.itertuples():
        files = _download_faces(tracking_uri, row.run_id)
        if not files:
            raise ComparisonError(
                f"run {row.run_id} ({row.variant} x{row.scale}) saved no sr_faces/*.png; re-run it with "
                f"train.sr_faces > 0 (the default is 4)"
            )
        sr = {k: v for k, v in files.items() if not k.endswith(("_lr", "_hr"))}
        shared.update({k: v for k, v in files.items() if k.endswith(("_lr", "_hr"))})
        psnr, ssim = (per_image(tracking_uri, [row.run_id], metric) for metric in ("psnr", "ssim"))
        scores = {i: (float(psnr[i]), float(ssim[i])) for i in sr if i in psnr.index}
        columns.append(MethodFaces(row.variant, row.run_id, sr, scores))
    return columns, shared


def common_ids(columns: list[MethodFaces], shared: dict[str, np.ndarray], wanted: list[str] | None, n: int) -> list:
    """The face ids every column (and the LR / HR pair) has: `wanted` if given, else the first `n`, by number."""
    have = set.intersection(*(set(c.sr) for c in columns))
    have = {i for i in have if f"{i}_lr" in shared and f"{i}_hr" in shared}
    if wanted:
        missing = [i for i in wanted if i not in have]
        if missing:
            raise ComparisonError(f"faces {missing} were not saved by every run; saved: {sorted(have)}")
        return list(wanted)
    if not have:
        raise ComparisonError("the runs saved no face in common; re-run them with the same data and sr_faces")
    return sorted(have, key=lambda i: (len(i), i))[:n]


def comparison_figure(
    columns: list[MethodFaces],
    shared: dict[str, np.ndarray],
    ids: list[str],
    boxes: dict[str, dict[str, tuple[int, int, int, int]]],
    title: str | None = None,
) -> Any:
    """Per face three rows: the whole face (boxes outlined), the eye crop and the mouth crop; PSNR / SSIM below.

    Args:
        columns: the methods, left to right (between LR and HR).
        shared: ``<id>_lr`` and ``<id>_hr`` uint8 HWC faces.
        ids: the faces, top to bottom.
        boxes: per id, ``{"eyes": (x0, y0, x1, y1), "mouth": ...}`` in HR pixels.

    Returns:
        The matplotlib Figure; ``fig.axes`` runs face by face, column by column: whole face, eyes, mouth.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    labels = ["LR", *[c.label for c in columns], "HR"]
    ncol, tile = len(labels), 1.35
    # Per face: the whole face (1 tile tall), eye and mouth crops (half a tile each, 2:1 boxes), then a gap that
    # holds the scores; cells are as tall as wide, so every image fills its cell.
    ratios = [1, 0.5, 0.5, 0.22] * len(ids)
    top = 0.3 if title else 0.1
    height = sum(ratios) * tile * 1.03 + top
    fig = plt.figure(figsize=(ncol * tile, height), dpi=110)
    grid = fig.add_gridspec(len(ratios), ncol, height_ratios=ratios, wspace=0.04, hspace=0.03, top=1 - top / height,
                            bottom=0.0, left=0.02, right=0.99)  # fmt: skip
    colours = {"eyes": "#ffd700", "mouth": "#00e5ff"}
    for r, face_id in enumerate(ids):
        hr = shared[f"{face_id}_hr"]
        size = hr.shape[0]
        lr = shared[f"{face_id}_lr"]
        lr_big = np.repeat(np.repeat(lr, size // lr.shape[0], axis=0), size // lr.shape[1], axis=1)
        images = [lr_big, *[c.sr[face_id] for c in columns], hr]
        for c, image in enumerate(images):
            whole = fig.add_subplot(grid[4 * r, c])
            whole.imshow(image, interpolation="nearest", aspect="auto")
            for name, (x0, y0, x1, y1) in boxes[face_id].items():
                whole.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, lw=0.8,
                                          edgecolor=colours[name]))  # fmt: skip
            if r == 0:
                whole.set_title(labels[c], fontsize=7)
            crops = []
            for k, name in enumerate(("eyes", "mouth")):
                x0, y0, x1, y1 = boxes[face_id][name]
                ax = fig.add_subplot(grid[4 * r + 1 + k, c])
                ax.imshow(image[y0:y1, x0:x1], interpolation="nearest", aspect="auto")
                for spine in ax.spines.values():
                    spine.set_edgecolor(colours[name])
                crops.append(ax)
            if 0 < c < ncol - 1:
                psnr, ssim = columns[c - 1].scores.get(face_id, (float("nan"), float("nan")))
                crops[-1].set_xlabel(f"{psnr:.2f} dB / {ssim:.4f}", fontsize=6.5, labelpad=2)
            elif c == ncol - 1:
                crops[-1].set_xlabel("PSNR / SSIM", fontsize=6.5, labelpad=2)
            for ax in (whole, *crops):
                ax.set_xticks([])
                ax.set_yticks([])
        fig.axes[-3 * ncol].set_ylabel(f"face {face_id}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=8, y=0.999, va="top")
    return fig


def log_to_parent(tracking_uri: str, run_id: str, path: Path) -> str | None:
    """Log `path` under ``figures/`` of the sweep's parent run (the trial run's parent); returns its id."""
    from llvfsr.tracking import client

    mlflow_client = client(tracking_uri)
    parent = mlflow_client.get_run(run_id).data.tags.get("mlflow.parentRunId")
    if parent:
        mlflow_client.log_artifact(parent, str(path), artifact_path="figures")
    return parent
