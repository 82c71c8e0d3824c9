"""The paper's figures, drawn from prior stores and MLflow runs; `priors` draws Fig. 4 (the language-vision priors).

    python -m analysis.figures priors --store STORE_DIR --n 4 --out fig4.png
    python -m analysis.figures identity --grid table1              # Fig. 7
    python -m analysis.figures compare --grid table1 --scale 8     # Fig. 5 (--scale 16: Fig. 6)
    python -m analysis.figures compare --grid ablation             # Figs. 8 and 9

STORE_DIR is one prior store (``<root>/<dataset-key>/<split>/x<scale>``). Its faces are read from the dataset the
store was made for, rebuilt from the manifest's dataset fingerprint, or named with ``--dataset`` (synthetic or
an image folder, with ``--split-file`` / ``--text-dir``); the LR is the one the sources saw (antialiased bicubic,
rounded to uint8).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from llvfsr.errors import cli_entry

FIG4_COLUMNS = ("(a) HR", "(b) LR", "(c) Semantic mask", "(d) Depth", "(e) Caption", "(f) Description")


def open_store_dataset(store: Any, dataset: str | None = None, **options: Any) -> Any:
    """The `FaceDataset` a store was made for: named by `dataset` (+ options), else rebuilt from its manifest.

    Raises:
        ValueError: the dataset cannot be rebuilt, or its fingerprint differs from the store's (names the key).
    """
    from llvfsr.data.datasets import open_dataset
    from llvfsr.priors.store import normalise

    stored = store.manifest["dataset"]
    split = store.manifest.get("split") or stored.get("split")
    if dataset is None:
        dataset = stored.get("root") or stored.get("name")
        keep = ("n", "seed", "hr_size", "split_file", "text_dir")
        options = {**{k: stored[k] for k in keep if stored.get(k) is not None}, **options}
        if dataset is None:
            raise ValueError(f"{store.directory}: the manifest does not say where the faces are; pass --dataset")
    data = open_dataset(str(dataset), split, **options)
    current = normalise(data.fingerprint())
    for key in sorted(set(current) | set(stored)):
        if current.get(key) != stored.get(key):
            raise ValueError(f"the dataset differs from the one of {store.directory}: {key!r} is {current.get(key)!r}, "
                             f"the store has {stored.get(key)!r}")  # fmt: skip
    return data


def _available(store: Any, field: str) -> bool:
    return store.record(field) is not None and store.is_complete(field)


def priors_figure(store: Any, dataset: Any, indices: list[int], wrap: int = 70) -> Any:
    """Fig. 4: one row per face with HR, LR, mask (CelebAMask-HQ palette), depth, caption and description.

    Args:
        store: a `PriorStore`; fields it lacks are drawn as empty panels.
        dataset: the store's `FaceDataset` (HR faces via `load_hr_batch`, uint8 [B, H, W, 3]).
        indices: the faces to draw.
        wrap: characters per line of the description (the caption uses half).

    Returns:
        The matplotlib Figure (Agg backend); images are drawn with `imshow`, texts with `text`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from llvfsr.data.degrade import lr_faces
    from llvfsr.data.synthetic import colourise_mask
    from llvfsr.priors.types import TEXT_KINDS

    hr = dataset.load_hr_batch(list(indices))
    lr = lr_faces(hr, store.scale)
    prior = store.load({k for k in ("mask", "depth") if _available(store, k)}, indices=indices)
    texts = {k: store.texts(k, indices) if _available(store, f"{k}_text") else None for k in TEXT_KINDS}

    rows, ratios, width = len(indices), [1, 1, 1, 1, 1.6, 3.4], 15.0
    # Rows as tall as an image column is wide, so image and text panels share their bottom edge (and labels).
    fig = plt.figure(figsize=(width, 1.04 * rows * width / sum(ratios)), dpi=100)
    grid = fig.add_gridspec(rows, 6, width_ratios=ratios, wspace=0.05, hspace=0.08)
    for r in range(rows):
        axes = [fig.add_subplot(grid[r, c]) for c in range(6)]
        axes[0].imshow(hr[r])
        axes[1].imshow(lr[r], interpolation="nearest")
        if prior.mask is not None:
            axes[2].imshow(colourise_mask(prior.mask[r].numpy().astype(np.uint8)), interpolation="nearest")
        if prior.depth is not None:
            axes[3].imshow(prior.depth[r, 0].numpy(), cmap="gray", vmin=0.0, vmax=1.0)
        for ax, key, width in ((axes[4], "caption", wrap // 2), (axes[5], "description", wrap)):
            if texts[key] is not None:
                ax.text(0.02, 0.5, textwrap.fill(texts[key][r], width), va="center", ha="left", fontsize=7, wrap=True)
        for c, ax in enumerate(axes):
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= 4:
                for spine in ax.spines.values():
                    spine.set_visible(False)
            if r == rows - 1:
                ax.set_xlabel(FIG4_COLUMNS[c], fontsize=9)
    return fig


def _priors_command(args: argparse.Namespace) -> int:
    from llvfsr.priors.store import PriorStore, PriorStoreError

    try:
        store = PriorStore.at(args.store)
        options = {k: v for k, v in (("split_file", args.split_file), ("text_dir", args.text_dir)) if v is not None}
        dataset = open_store_dataset(store, args.dataset, **options)
    except (PriorStoreError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    indices = args.indices if args.indices else list(range(min(args.n, store.n)))
    fig = priors_figure(store, dataset, indices, wrap=args.wrap)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, bbox_inches="tight")
    print(f"wrote {args.out} ({len(indices)} faces from {store.directory})")
    return 0


def identity_chart(runs: Any, out: Path) -> Any:
    """Fig. 7: mean identity distance (DeepFace cosine distance, SR vs HR) per method and scale, as bars."""
    import matplotlib.pyplot as plt

    from analysis.paper_numbers import TABLE1_ORDER

    means = runs.groupby(["variant", "scale"])["identity"].agg(["mean", "std"]).reset_index()
    methods = [m for m in TABLE1_ORDER if m in set(means.variant)] + sorted(set(means.variant) - set(TABLE1_ORDER))
    scales = sorted(means.scale.unique())
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(methods), 3.2))
    width = 0.8 / len(scales)
    for i, scale in enumerate(scales):
        at = means[means.scale == scale].set_index("variant").reindex(methods)
        xs = [j + (i - (len(scales) - 1) / 2) * width for j in range(len(methods))]
        ax.bar(xs, at["mean"], width, yerr=at["std"].fillna(0), label=f"x{scale}", capsize=2)
    ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
    ax.set_ylabel("identity distance (lower is better)")
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return fig


def _identity_command(args: argparse.Namespace) -> int:
    from analysis.runs import RunsMissing, load_runs
    from llvfsr.tracking import default_tracking_uri

    try:
        runs = load_runs(args.tracking_uri or default_tracking_uri(), args.experiment, args.grid)
    except RunsMissing as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if "identity" not in runs.columns or runs["identity"].isna().all():
        print("error: no run has identity distances; train with --identity (and --identity-weights)", file=sys.stderr)
        return 1
    identity_chart(runs.dropna(subset=["identity"]), args.out)
    print(f"wrote {args.out}")
    return 0


def _compare_command(args: argparse.Namespace) -> int:
    from analysis.compare import (
        ComparisonError,
        common_ids,
        comparison_figure,
        fixed_boxes,
        landmark_boxes,
        load_columns,
        log_to_parent,
        pick_runs,
        synthetic_landmarks,
    )
    from analysis.runs import RunsMissing, load_runs
    from llvfsr.tracking import client, default_tracking_uri

    uri = args.tracking_uri or default_tracking_uri()
    methods = args.methods.split(",") if args.methods else None
    try:
        runs = pick_runs(load_runs(uri, args.experiment, args.grid, args.sweep), args.scale, methods, args.grid)
        columns, shared = load_columns(uri, runs)
        ids = common_ids(columns, shared, args.ids, args.faces)
    except (RunsMissing, ComparisonError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    size = shared[f"{ids[0]}_hr"].shape[0]
    landmarks = synthetic_landmarks(client(uri).get_run(columns[0].run_id).data.params, ids) or {}
    boxes = {i: landmark_boxes(landmarks[i], size) if i in landmarks else fixed_boxes(size) for i in ids}
    sweep = runs.sweep.iloc[0]
    fig = comparison_figure(columns, shared, ids, boxes, title=f"{sweep}, x{args.scale}: LR | methods | HR")
    out = args.out or Path(f"compare_{args.grid}_x{args.scale}.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    parent = log_to_parent(uri, columns[0].run_id, out)
    print(f"wrote {out} ({len(ids)} faces x {len(columns)} methods from sweep {sweep})")
    if parent:
        print(f"logged to the sweep's parent run {parent} as figures/{out.name}")
    return 0


@cli_entry()
def main(argv: list[str] | None = None) -> int:
    """CLI entry point: `python -m analysis.figures <figure> ...`."""
    parser = argparse.ArgumentParser(prog="python -m analysis.figures", description=__doc__.split("\n")[0])
    figures = parser.add_subparsers(dest="figure", required=True)
    priors = figures.add_parser("priors", help="Fig. 4: HR, LR, mask, depth, caption and description of a few faces")
    priors.add_argument("--store", type=Path, required=True, help="a prior store folder (holds manifest.json)")
    priors.add_argument("--n", type=int, default=4, help="draw the first N faces")
    priors.add_argument("--indices", type=int, nargs="+", default=None, help="draw these faces instead")
    priors.add_argument("--out", type=Path, default=Path("fig4.png"), help="output image (png, pdf, svg)")
    priors.add_argument("--dataset", default=None, help="'synthetic' or an image folder (default: from the manifest)")
    priors.add_argument("--split-file", default=None, help="split list of a folder dataset")
    priors.add_argument("--text-dir", default=None, help="MM-CelebA-HQ text folder of a folder dataset")
    priors.add_argument("--wrap", type=int, default=70, help="characters per description line")
    priors.set_defaults(run=_priors_command)
    identity = figures.add_parser("identity", help="Fig. 7: identity distance per method, from MLflow runs")
    identity.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: ./mlflow.db)")
    identity.add_argument("--experiment", default="llvfsr", help="MLflow experiment name")
    identity.add_argument("--grid", default="table1", help="the grid whose runs to draw")
    identity.add_argument("--out", type=Path, default=Path("fig7_identity.png"), help="output image")
    identity.set_defaults(run=_identity_command)
    compare = figures.add_parser(
        "compare", help="Figs. 5, 6 (table1) and 8, 9 (ablation): LR | every method | HR with eye and mouth zooms"
    )
    compare.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: ./mlflow.db)")
    compare.add_argument("--experiment", default="llvfsr", help="MLflow experiment name")
    compare.add_argument("--grid", default="table1", help="the grid whose runs to draw (table1, ablation, ...)")
    compare.add_argument("--scale", type=int, choices=(8, 16), default=8, help="x8 (Fig. 5) or x16 (Fig. 6)")
    compare.add_argument("--sweep", default=None, help="the sweep to draw, when the grid ran more than once")
    compare.add_argument(
        "--methods", default=None, help="comma-separated variants, in order (e.g. Fig. 8: llvfsr-model1,llvfsr-model2,"
        "llvfsr); default: every variant of the grid"
    )  # fmt: skip
    compare.add_argument("--faces", type=int, default=3, help="draw the first N saved test faces")
    compare.add_argument("--ids", nargs="+", default=None, help="draw these saved test face ids instead")
    compare.add_argument("--out", type=Path, default=None, help="output image (default: compare_GRID_xSCALE.png)")
    compare.set_defaults(run=_compare_command)
    args = parser.parse_args(argv)
    if hasattr(args, "tracking_uri"):  # an unreachable server fails now, not after MLflow's minutes of retries
        from llvfsr.cli import check_tracking_uri
        from llvfsr.tracking import default_tracking_uri

        check_tracking_uri(args.tracking_uri or default_tracking_uri(), must_exist=True)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
