"""Counterfactual priors at test time: what does a trained model do when a prior is wrong, swapped or missing?

Each counterfactual rewrites the priors of a test split (the faces stay the same) and may state a text-only
attribute that differs from the truth; evaluating the model on it measures the PSNR / SSIM cost of the wrong prior
and, for text edits, the **hallucination rate**: how often the super-resolved face shows the attribute the wrong
text states instead of the true one (read back by `llvfsr.data.synthetic_attributes`).

Counterfactuals (a model is only given those on priors it reads):

- ``description:eye-colour``: each description with its iris colour changed to the next colour of the list;
- ``description:swap`` / ``caption:swap``: the texts of another test face (a fixed derangement);
- ``mask:shift``: the label map moved by 1/32 of the image (2 px at 64 px) right and down;
- ``mask:erode``: every region's boundary (a band of 1/32 of the image) relabelled background;
- ``depth:noise``: Gaussian noise of standard deviation 0.1 added to the depth, clipped to [0, 1];
- ``blank:<prior>``: the prior carries nothing: background mask, zero depth, or the embedding of an empty text;
- ``withhold:<priors>``: for a model trained with prior dropout, a set of priors switched off (`Priors.withheld`:
  their branches add nothing), e.g. ``withhold:mask``, ``withhold:mask+depth``, ``withhold:all``: every subset, so
  the one model stands beside each architectural ablation (Fig. 9, the `priors` grid, Model 1).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F

from llvfsr.config import DataConfig
from llvfsr.data.splits import open_split
from llvfsr.data.synthetic_attributes import ATTRIBUTES
from llvfsr.models.lvpfb import BRANCHES
from llvfsr.priors.types import TextEmbedding
from llvfsr.trial_data import SplitData

NONE = "none"


@dataclass
class Counterfactual:
    """One rewritten test split.

    Attributes:
        name: e.g. ``"description:eye-colour"``.
        prior: the prior field it changes (the model must read it), or None for the reference.
        data: the split with the rewritten priors.
        stated: per attribute, what the rewritten text states for each face where that differs from the truth
            (None where it states the truth), for the hallucination rate; empty for non-text counterfactuals.
    """

    name: str
    prior: str | None
    data: SplitData
    stated: dict[str, list[str | None]]


class _Split:
    """A test split being rewritten: its data, and what the rewrites share, made once (the faces' attributes, the
    text encoder)."""

    def __init__(self, data: SplitData, config: DataConfig, seed: int):
        self.data, self.config, self.seed = data, config, seed
        self.step = max(1, data.hr.shape[-1] // 32)  # "a few pixels": 1/32 of the image

    @cached_property
    def dataset(self):
        dataset = open_split(self.config, "test")
        if dataset.name != "synthetic":
            raise ValueError("text counterfactuals need the synthetic faces (their true attributes are known)")
        return dataset

    @cached_property
    def attributes(self) -> list[dict]:
        return [self.dataset.exact_priors(i).attributes for i in range(len(self.data))]

    @cached_property
    def encoder(self):
        from llvfsr.priors.text_encoder import make_text_encoder

        return make_text_encoder(self.config)

    def encode(self, texts: list[str], like: TextEmbedding) -> TextEmbedding:
        """Embed texts with the split's own text encoder, in the dtypes and on the device of `like`."""
        tokens, pooled, valid = self.encoder.encode(texts)
        device = like.tokens.device
        return TextEmbedding(tokens.to(device, like.tokens.dtype), pooled.to(device, like.pooled.dtype),
                             valid.to(device))  # fmt: skip

    def description_stating(self, index: int, colour: str) -> str:
        """Face `index`'s description with its iris colour set to `colour` (every other word unchanged)."""
        from llvfsr.data.synthetic import render_face

        d = self.dataset
        return render_face(d.family_seed, index, d.hr_size, {"eye_colour": colour}, d.zoom, d.iris).description

    def close(self) -> None:
        if "encoder" in self.__dict__:
            self.encoder.close()


def _with(split: _Split, **fields) -> SplitData:
    data = split.data
    return SplitData(data.ids, data.hr, replace(data.priors, **fields))


def _erode_labels(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Label map long [B,H,W]: pixels within `radius` of another label become background (0)."""
    m = mask.float()[:, None]
    size = 2 * radius + 1
    high = F.max_pool2d(m, size, stride=1, padding=radius)
    low = -F.max_pool2d(-m, size, stride=1, padding=radius)
    return torch.where((high != low)[:, 0], torch.zeros_like(mask), mask)


def next_colour(colour: str) -> str:
    options = ATTRIBUTES["eye_colour"]
    return options[(options.index(colour) + 1) % len(options)]


def _eye_colour_edit(split: _Split) -> tuple[SplitData, dict]:
    """Each description stating the next iris colour of the list."""
    stated = [next_colour(a["eye_colour"]) for a in split.attributes]
    texts = [split.description_stating(i, colour) for i, colour in enumerate(stated)]
    return _with(split, description=split.encode(texts, split.data.priors.description)), {"eye_colour": stated}


def _swap(field: str) -> Callable[[_Split], tuple[SplitData, dict]]:
    """The texts of another face (a fixed derangement); a swapped description states that face's attributes."""

    def rewrite(split: _Split) -> tuple[SplitData, dict]:
        n = len(split.data)
        order = (torch.roll(torch.arange(n), 1) if n > 1 else torch.arange(n)).to(split.data.hr.device)
        text = getattr(split.data.priors, field)
        swapped = TextEmbedding(text.tokens[order], text.pooled[order], text.valid[order])
        stated: dict[str, list[str | None]] = {}
        if field == "description":
            for name in ATTRIBUTES:
                truth = [a[name] for a in split.attributes]
                stated[name] = [truth[j] if truth[j] != truth[i] else None for i, j in enumerate(order.tolist())]
        return _with(split, **{field: swapped}), stated

    return rewrite


def _blank_text(field: str) -> Callable[[_Split], tuple[SplitData, dict]]:
    def rewrite(split: _Split) -> tuple[SplitData, dict]:
        like = getattr(split.data.priors, field)
        return _with(split, **{field: split.encode([""] * len(split.data), like)}), {}

    return rewrite


def _noisy_depth(split: _Split) -> tuple[SplitData, dict]:
    depth = split.data.priors.depth
    noise = torch.randn(depth.shape, generator=torch.Generator().manual_seed(split.seed)).to(depth.device) * 0.1
    return _with(split, depth=(depth.float() + noise).clamp(0, 1).to(depth.dtype)), {}


# name -> (the prior it rewrites, the rewrite), in the order of the tables
REWRITES: dict[str, tuple[str, Callable[[_Split], tuple[SplitData, dict]]]] = {
    "description:eye-colour": ("description", _eye_colour_edit),
    "description:swap": ("description", _swap("description")),
    "blank:description": ("description", _blank_text("description")),
    "caption:swap": ("caption", _swap("caption")),
    "blank:caption": ("caption", _blank_text("caption")),
    "mask:shift": ("mask", lambda s: (_with(s, mask=torch.roll(s.data.priors.mask, (s.step, s.step), (-2, -1))), {})),
    "mask:erode": (
        "mask",
        lambda s: (_with(s, mask=_erode_labels(s.data.priors.mask.long(), s.step).to(s.data.priors.mask.dtype)), {}),
    ),
    "blank:mask": ("mask", lambda s: (_with(s, mask=s.data.priors.mask * 0), {})),
    "depth:noise": ("depth", _noisy_depth),
    "blank:depth": ("depth", lambda s: (_with(s, depth=s.data.priors.depth * 0), {})),
}


def _withhold(priors: tuple[str, ...]) -> Callable[[_Split], tuple[SplitData, dict]]:
    def rewrite(split: _Split) -> tuple[SplitData, dict]:
        withheld = torch.zeros(len(split.data), len(BRANCHES), dtype=torch.bool, device=split.data.hr.device)
        withheld[:, [BRANCHES.index(p) for p in priors]] = True
        return _with(split, withheld=withheld), {}

    return rewrite


def withhold_name(priors: tuple[str, ...]) -> str:
    """``withhold:mask+depth``; ``withhold:all`` for every prior."""
    return "withhold:" + ("all" if set(priors) == set(BRANCHES) else "+".join(priors))


# a model trained with prior dropout: every non-empty subset of its priors withheld, singles first, all last
WITHHOLDS: dict[str, tuple[tuple[str, ...], Callable[[_Split], tuple[SplitData, dict]]]] = {
    withhold_name(subset): (subset, _withhold(subset))
    for k in range(1, len(BRANCHES) + 1)
    for subset in itertools.combinations(BRANCHES, k)
}


def counterfactual_names(reads: set[str], withholds: bool = False) -> list[str]:
    """The reference and the counterfactuals on the priors a model `reads`, in order; with `withholds` (a model
    trained with prior dropout), also every subset of the priors it reads withheld."""
    names = [NONE] + [name for name, (prior, _) in REWRITES.items() if prior in reads]
    if withholds:
        names += [name for name, (priors, _) in WITHHOLDS.items() if set(priors) <= reads]
    return names


def counterfactuals(data: SplitData, config: DataConfig, names: list[str], seed: int = 0) -> list[Counterfactual]:
    """The counterfactuals `names` (see `counterfactual_names`) of `data`, a synthetic test split, in that order."""
    split = _Split(data, config, seed)
    out = []
    try:
        for name in names:
            if name == NONE:
                out.append(Counterfactual(NONE, None, data, {}))
                continue
            if name in WITHHOLDS:
                priors, rewrite = WITHHOLDS[name]
                prior = withhold_name(priors).removeprefix("withhold:")
            else:
                prior, rewrite = REWRITES[name]
            rewritten, stated = rewrite(split)
            out.append(Counterfactual(name, prior, rewritten, stated))
    finally:
        split.close()
    return out


def hallucination_rates(frame, stated: dict[str, list[str | None]]) -> dict[str, float]:
    """Per attribute, the fraction of faces whose wrong stated value the SR face shows (``hallucination_<name>``),
    over the faces where the counterfactual text states a value other than the truth; for the iris, also with the
    matched reader (``hallucination_eye_colour_matched``), which sees a faintly drawn colour."""
    rates = {}
    for name, values in stated.items():
        readings = [name, f"{name}_matched"] if f"attr_{name}_matched" in frame else [name]  # the iris: both readers
        for reading in readings:
            answers = frame[f"attr_{reading}"].tolist()
            pairs = [(a, s) for a, s in zip(answers, values, strict=True) if s is not None]
            if pairs:
                rates[f"hallucination_{reading}"] = sum(a == s for a, s in pairs) / len(pairs)
    return rates


def _under_colours(model, data: SplitData, config: DataConfig, scale: int, indices: list[int]) -> dict:
    """Test faces `indices` super-resolved under a description stating each iris colour in turn (the LR and every
    other prior unchanged), and rendered by the generator in each colour. Values: "sr" and "hr_by_colour" float
    [n, K, 3, H, W] (K colours, in `ATTRIBUTES` order), "lr" [n, 3, h, w], "hr" [n, 3, H, W], "truths" (colours)."""
    from llvfsr.data.degrade import make_lr
    from llvfsr.data.synthetic import render_face

    colours = ATTRIBUTES["eye_colour"]
    split = _Split(data, config, seed=0)
    views, lrs, hrs, renders, truths = [], [], [], [], []
    try:
        dataset = split.dataset
        for index in indices:
            hr, priors = data.batch(torch.full((len(colours),), index, device=data.hr.device))
            texts = [split.description_stating(index, colour) for colour in colours]
            priors = replace(priors, description=split.encode(texts, priors.description))  # float, as batch() gives
            lr = make_lr(hr, scale)
            with torch.no_grad():
                views.append(model(lr, priors).float().clamp(0, 1).cpu())
            lrs.append(lr[0].cpu())
            hrs.append(hr[0].cpu())
            truths.append(dataset.exact_priors(index).attributes["eye_colour"])
            faces = [render_face(dataset.family_seed, index, dataset.hr_size, {"eye_colour": c}, dataset.zoom,
                                 dataset.iris).image
                     for c in colours]  # fmt: skip
            renders.append(torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).float() / 255)
    finally:
        split.close()
    return {"sr": torch.stack(views), "lr": torch.stack(lrs), "hr": torch.stack(hrs),
            "hr_by_colour": torch.stack(renders), "truths": truths}  # fmt: skip


def colour_response(model, data: SplitData, config: DataConfig, scale: int, count: int = 16) -> float:
    """The fraction of the iris-colour difference the model draws when only its description's colour changes.

    For each of the first `count` test faces, the model super-resolves the same LR face under a description stating
    each colour in turn, and the generator renders the HR face in each colour. With d_SR and d_HR each version minus
    the face's mean over the five versions, the response is sum <d_SR, d_HR> / sum |d_HR|^2 over all faces: 1 for a
    model that draws the stated colour exactly, 0 for one that ignores it, in between for a partial move. Unlike a
    classifier's accuracy it is linear, so it sees a small effect and cannot be fooled by a shared departure."""
    views = _under_colours(model, data, config, scale, list(range(min(count, len(data)))))
    sr, hr = views["sr"].double(), views["hr_by_colour"].double()
    d_sr, d_hr = sr - sr.mean(1, keepdim=True), hr - hr.mean(1, keepdim=True)
    return float((d_sr * d_hr).sum() / (d_hr * d_hr).sum())


def render_under_colours(model, data: SplitData, config: DataConfig, scale: int, index: int = 0) -> dict:
    """Test face `index` super-resolved under a description stating each iris colour in turn.

    Returns:
        {"lr": float [3,h,w], "hr": float [3,H,W], "true": its colour, <colour>: SR float [3,H,W] per colour,
        "iris_box": (top, left, height, width) of the pixels where the face's colour versions differ}.
    """
    views = _under_colours(model, data, config, scale, [index])
    rendered = views["hr_by_colour"][0]  # [K, 3, H, W]
    rows, cols = torch.nonzero((rendered - rendered.mean(0)).abs().amax((0, 1)) > 4 / 255, as_tuple=True)
    box = (int(rows.min()), int(cols.min()), int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1)
    out = {"lr": views["lr"][0], "hr": views["hr"][0], "true": views["truths"][0], "iris_box": box}
    out.update({colour: views["sr"][0, k] for k, colour in enumerate(ATTRIBUTES["eye_colour"])})
    return out
