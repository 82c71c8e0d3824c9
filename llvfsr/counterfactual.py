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
- ``blank:<prior>``: the prior carries nothing: background mask, zero depth, or the embedding of an empty text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from llvfsr.config import DataConfig
from llvfsr.data.loading import SplitData, open_split
from llvfsr.data.synthetic_attributes import ATTRIBUTES
from llvfsr.priors.types import TextEmbedding

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


def _encode(data_config: DataConfig, texts: list[str], like: TextEmbedding) -> TextEmbedding:
    """Embed texts with the split's own text encoder, in the stored (compact) dtypes."""
    from llvfsr.data.loading import make_text_encoder

    encoder = make_text_encoder(data_config)
    try:
        tokens, pooled, valid = encoder.encode(texts)
    finally:
        encoder.close()
    device = like.tokens.device
    return TextEmbedding(tokens.to(device, like.tokens.dtype), pooled.to(device, like.pooled.dtype), valid.to(device))


def _derangement(n: int) -> torch.Tensor:
    return torch.roll(torch.arange(n), 1) if n > 1 else torch.arange(n)


def _with(data: SplitData, **fields) -> SplitData:
    return SplitData(data.ids, data.hr, replace(data.priors, **fields))


def _erode_labels(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Label map long [B,H,W]: pixels within `radius` of another label become background (0)."""
    m = mask.float()[:, None]
    size = 2 * radius + 1
    high = F.max_pool2d(m, size, stride=1, padding=radius)
    low = -F.max_pool2d(-m, size, stride=1, padding=radius)
    return torch.where((high != low)[:, 0], torch.zeros_like(mask), mask)


def counterfactuals(data: SplitData, config: DataConfig, reads: set[str], seed: int = 0) -> list[Counterfactual]:
    """The reference and every counterfactual of `data` (a synthetic test split) on the priors a model `reads`."""
    priors, n, size = data.priors, len(data), data.hr.shape[-1]
    step = max(1, size // 32)
    out = [Counterfactual(NONE, None, data, {})]
    makers: dict[str, Callable[[], Counterfactual]] = {}
    if "description" in reads:
        makers["description:eye-colour"] = lambda: _eye_colour_edit(data, config)
        makers["description:swap"] = lambda: _swap(data, config, "description")
        makers["blank:description"] = lambda: Counterfactual(
            "blank:description", "description", _with(data, description=_encode(config, [""] * n, priors.description)),
            {},
        )  # fmt: skip
    if "caption" in reads:
        makers["caption:swap"] = lambda: _swap(data, config, "caption")
        makers["blank:caption"] = lambda: Counterfactual(
            "blank:caption", "caption", _with(data, caption=_encode(config, [""] * n, priors.caption)), {}
        )
    if "mask" in reads:
        makers["mask:shift"] = lambda: Counterfactual(
            "mask:shift", "mask", _with(data, mask=torch.roll(priors.mask, (step, step), dims=(-2, -1))), {}
        )
        makers["mask:erode"] = lambda: Counterfactual(
            "mask:erode", "mask", _with(data, mask=_erode_labels(priors.mask.long(), step).to(priors.mask.dtype)), {}
        )
        makers["blank:mask"] = lambda: Counterfactual("blank:mask", "mask", _with(data, mask=priors.mask * 0), {})
    if "depth" in reads:

        def noisy_depth() -> Counterfactual:
            generator = torch.Generator().manual_seed(seed)
            noise = torch.randn(priors.depth.shape, generator=generator).to(priors.depth.device) * 0.1
            depth = (priors.depth.float() + noise).clamp(0, 1).to(priors.depth.dtype)
            return Counterfactual("depth:noise", "depth", _with(data, depth=depth), {})

        makers["depth:noise"] = noisy_depth
        makers["blank:depth"] = lambda: Counterfactual("blank:depth", "depth", _with(data, depth=priors.depth * 0), {})
    return out + [make() for make in makers.values()]


def counterfactual_names(reads: set[str]) -> list[str]:
    """The names `counterfactuals` gives for a model that reads `reads`, without building any."""
    names = [NONE]
    if "description" in reads:
        names += ["description:eye-colour", "description:swap", "blank:description"]
    if "caption" in reads:
        names += ["caption:swap", "blank:caption"]
    if "mask" in reads:
        names += ["mask:shift", "mask:erode", "blank:mask"]
    if "depth" in reads:
        names += ["depth:noise", "blank:depth"]
    return names


def _faces(config: DataConfig, n: int):
    dataset = open_split(config, "test")
    if dataset.name != "synthetic":
        raise ValueError("text counterfactuals need the synthetic faces (their true attributes are known)")
    return dataset, [dataset.exact_priors(i) for i in range(n)]


def next_colour(colour: str) -> str:
    options = ATTRIBUTES["eye_colour"]
    return options[(options.index(colour) + 1) % len(options)]


def _eye_colour_edit(data: SplitData, config: DataConfig, colour_of=None) -> Counterfactual:
    """Each description stating another iris colour (`colour_of(true) -> stated`, default: the next colour)."""
    from llvfsr.data.synthetic import render_face

    dataset, faces = _faces(config, len(data))
    colour_of = colour_of or next_colour
    stated = [colour_of(face.attributes["eye_colour"]) for face in faces]
    texts = [
        render_face(dataset.family_seed, i, dataset.hr_size, {"eye_colour": c}, dataset.zoom).description
        for i, c in enumerate(stated)
    ]
    description = _encode(config, texts, data.priors.description)
    return Counterfactual("description:eye-colour", "description", _with(data, description=description),
                          {"eye_colour": stated})  # fmt: skip


def _swap(data: SplitData, config: DataConfig, field: str) -> Counterfactual:
    """The texts of another face; the attributes it states are that face's."""
    order = _derangement(len(data)).to(data.hr.device)
    text = getattr(data.priors, field)
    swapped = TextEmbedding(text.tokens[order], text.pooled[order], text.valid[order])
    stated: dict[str, list[str | None]] = {}
    if field == "description":
        _, faces = _faces(config, len(data))
        for name in ATTRIBUTES:
            truth = [face.attributes[name] for face in faces]
            stated[name] = [truth[j] if truth[j] != truth[i] else None for i, j in enumerate(order.tolist())]
    return Counterfactual(f"{field}:swap", field, _with(data, **{field: swapped}), stated)


def hallucination_rates(frame, stated: dict[str, list[str | None]]) -> dict[str, float]:
    """Per attribute, the fraction of faces whose wrong stated value the SR face shows (``hallucination_<name>``),
    over the faces where the counterfactual text states a value other than the truth."""
    rates = {}
    for name, values in stated.items():
        answers = frame[f"attr_{name}"].tolist()
        pairs = [(a, s) for a, s in zip(answers, values, strict=True) if s is not None]
        if pairs:
            rates[f"hallucination_{name}"] = sum(a == s for a, s in pairs) / len(pairs)
    return rates


def render_under_colours(model, data: SplitData, config: DataConfig, scale: int, index: int = 0) -> dict:
    """Test face `index` super-resolved under a description stating each iris colour in turn.

    Returns:
        {"lr": float [3,h,w], "hr": float [3,H,W], "true": its colour, <colour>: SR float [3,H,W] per colour}.
    """
    from llvfsr.data.synthetic import render_face
    from llvfsr.train import make_lr

    dataset, faces = _faces(config, index + 1)
    colours = ATTRIBUTES["eye_colour"]
    texts = [
        render_face(dataset.family_seed, index, dataset.hr_size, {"eye_colour": c}, dataset.zoom).description
        for c in colours
    ]
    rows = torch.full((len(colours),), index, device=data.hr.device)
    hr, priors = data.batch(rows)
    priors = replace(priors, description=_encode(config, texts, priors.description).map(lambda t: t.float()
                     if t.is_floating_point() else t))  # fmt: skip
    lr = make_lr(hr, scale)
    with torch.no_grad():
        sr = model(lr, priors).float().clamp(0, 1).cpu()
    out = {"lr": lr[0].cpu(), "hr": hr[0].cpu(), "true": faces[index].attributes["eye_colour"]}
    out.update({colour: sr[k] for k, colour in enumerate(colours)})
    return out
