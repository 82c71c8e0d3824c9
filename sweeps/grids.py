"""The sweep grids, as data: each grid is a list of named variants (a model plus architecture overrides).

Ray Tune runs one trial per variant x scale x seed. The `hpo` grid instead searches lr, batch size and width for
one model with Optuna. Schedules (epochs, sizes) are not part of a grid: they come from the data preset.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path

from llvfsr.config import DataConfig
from llvfsr.models import list_models
from llvfsr.models.lvpfb import BRANCHES
from llvfsr.models.official import AUTHORS_SUFFIX, official_format, official_in, official_overrides


@dataclass(frozen=True)
class Variant:
    name: str  # the row label in tables and the MLflow `variant` tag
    model: str  # registry name
    overrides: tuple[tuple[str, object], ...] = ()  # architecture overrides for this variant
    data: tuple[tuple[str, object], ...] = ()  # DataConfig changes for this variant (e.g. another prior source)
    train: tuple[tuple[str, object], ...] = ()  # TrainConfig changes for this variant (e.g. prior dropout)


@dataclass(frozen=True)
class Grid:
    name: str
    summary: str
    variants: tuple[Variant, ...]
    scales: tuple[int, ...] | None = None  # None: the --scale flag decides
    search: bool = False  # hpo: Optuna searches instead of a fixed list
    preset: str | None = None  # the synthetic preset this grid runs with when --preset is not given


def _ablation() -> tuple[Variant, ...]:
    names = ["llvfsr-model1", "llvfsr-model2", "llvfsr"] + [f"llvfsr-wo-{p}" for p in BRANCHES]
    return tuple(Variant(name, name) for name in names)


def _prior_subsets() -> tuple[Variant, ...]:
    variants = []
    for k in range(len(BRANCHES) + 1):
        for subset in itertools.combinations(BRANCHES, k):
            label = "+".join(subset) or "none"
            variants.append(Variant(f"priors:{label}", "llvfsr", (("branches", subset),)))
    return tuple(variants)


def _controls() -> tuple[Variant, ...]:
    """Does the model read what the description says? With it, without it, and two descriptions that carry
    nothing about the face: another face's (a fixed derangement) and one text for every face."""
    return (
        Variant("llvfsr", "llvfsr"),
        Variant("llvfsr-wo-description", "llvfsr-wo-description"),
        Variant("llvfsr+shuffled-description", "llvfsr", data=(("description_source", "synthetic-shuffled"),)),
        Variant("llvfsr+constant-description", "llvfsr", data=(("description_source", "synthetic-constant"),)),
    )


def _dropout() -> tuple[Variant, ...]:
    """One LLV-FSR trained with prior dropout (any subset of its priors at inference: `sweeps/robustness.py`
    withholds each in turn) beside the architectural ablations it stands in for."""
    return (Variant("llvfsr+prior-dropout", "llvfsr", train=(("prior_dropout", 0.5),)), *_ablation())


def _table1() -> tuple[Variant, ...]:
    baselines = [name for name in list_models() if not name.startswith("llvfsr")]
    return tuple(Variant(name, name) for name in ["llvfsr", *baselines])


GRIDS: dict[str, Grid] = {
    grid.name: grid
    for grid in (
        Grid(
            "smoke",
            "LLV-FSR and Model 1, tiny: checks the whole pipeline in seconds per trial",
            (Variant("llvfsr", "llvfsr"), Variant("llvfsr-model1", "llvfsr-model1")),
            preset="smoke",
        ),
        Grid("ablation", "Table 2 (Model 1, Model 2, LLV-FSR) and Fig. 9 (LLV-FSR without each prior)", _ablation()),
        Grid("priors", "LLV-FSR with every subset of the four priors (16 trials)", _prior_subsets()),
        Grid(
            "controls",
            "positive and negative controls of the description: true, none, another face's, constant (synthetic "
            "faces zoomed on the eyes; read back by the attribute readers)",
            _controls(),
            preset="control",
        ),
        Grid(
            "dropout",
            "LLV-FSR trained with prior dropout 0.5, beside the Table 2 / Fig. 9 ablations (then sweeps/robustness.py)",
            _dropout(),
        ),
        Grid("table1", "Table 1: LLV-FSR, the seven baselines and bicubic at x8 and x16", _table1(), scales=(8, 16)),
        Grid(
            "hpo",
            "Optuna search over lr, batch size and width for one model (--model)",
            (Variant("hpo", "llvfsr"),),
            search=True,
        ),
    )
}


def variant_data(base: DataConfig, changes: tuple[tuple[str, object], ...], **also) -> DataConfig:
    """`base` with a variant's data `changes` (`Variant.data`) and `also`. A variant that reads a prior from another
    source keeps its priors in a store of its own (``<priors_root>/<source>``): a store holds one source per prior,
    and the variants of one sweep train side by side."""
    data = dataclasses.replace(base, **dict(changes), **also)
    sources = sorted(f"{v}" for k, v in changes if k.endswith("_source") and v != getattr(base, k))
    if sources:
        data = dataclasses.replace(data, priors_root=str(Path(base.priors_root) / "+".join(sources)))
    return data


def variant_priors(variant: Variant) -> set[str]:
    """The prior fields a variant reads (its branches override, else the registry entry)."""
    from llvfsr.models import get_entry

    overrides = dict(variant.overrides)
    if "branches" in overrides:
        return set(overrides["branches"])
    entry = get_entry(variant.model)
    return set(entry.priors) | set(entry.targets)


def with_official(grid: Grid, releases: list[tuple[str, str]]) -> Grid:
    """`grid` plus one variant per authors' release (NAME, PATH): "<model> (authors)", evaluated on their weights
    instead of trained (DIC's hourglass alone: "dic (authors' hourglass)", trained from it)."""
    extra = []
    for name, path in releases:
        fmt = official_format(name)
        label = AUTHORS_SUFFIX if fmt.evaluate_only else " (authors' hourglass)"
        extra.append(Variant(f"{fmt.model}{label}", fmt.model, official_overrides(name, path)))
    return dataclasses.replace(grid, variants=grid.variants + tuple(extra))


def evaluated_only(variant: Variant) -> bool:
    """Whether a variant's trial evaluates without training (bicubic, or a whole model on the authors' weights)."""
    from llvfsr.models import get_entry

    release = official_in(dict(variant.overrides))
    if release is not None and official_format(release[0]).evaluate_only:
        return True
    return not get_entry(variant.model).trained
