"""Super-resolve a user's LR face with a trained checkpoint, extracting its priors on the fly.

    python -m llvfsr.sr --checkpoint runs/llvfsr-x8/checkpoint.pt --input face_32px.png --output face_256px.png

The prior sources are the ones the checkpoint was trained with, unless ``--source KIND=NAME`` replaces them
(a model trained on synthetic priors needs real sources, or ``--synthetic-index N`` to super-resolve synthetic
face N with its exact priors). ``--source-option KIND.KEY=VALUE`` passes a source its options (local weights,
model id) exactly as ``python -m llvfsr.priors extract`` does:

    python -m llvfsr.sr --checkpoint ckpt.pt --input lr.png --output sr.png --source mask=face-parser \
        --source-option mask.model_id=/models/face-parser
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from llvfsr.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from llvfsr.cli import add_source_option_flag, build_source, parse_source_options
from llvfsr.config import ExperimentConfig, from_flat
from llvfsr.errors import UsageError, UserError, cli_entry
from llvfsr.models.from_config import build_model, required_fields
from llvfsr.priors.ensure import source_names
from llvfsr.priors.text_encoder import make_text_encoder
from llvfsr.priors.types import PRIOR_KINDS, TEXT_KINDS, Priors, TextEmbedding


def read_checkpoint_config(path: Path, state: dict | None = None) -> ExperimentConfig:
    """The experiment config a checkpoint was trained with (`CheckpointError` naming a damaged file); `state`: the
    checkpoint already read (`read_checkpoint`)."""
    state = read_checkpoint(path) if state is None else state
    try:
        return from_flat(state["config"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path}: its config cannot be read ({error})") from error


def load_trained(checkpoint: Path, sources: dict[str, str] | None = None) -> tuple[ExperimentConfig, nn.Module]:
    """A checkpoint's config (its prior sources replaced by `sources`) and its trained model in eval mode, the file
    read once."""
    state = read_checkpoint(checkpoint)
    config = read_checkpoint_config(checkpoint, state)
    if sources:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, **sources))
    model = build_model(config)
    load_checkpoint(checkpoint, None, model, state=state)
    return config, model.eval()


def extract_priors(
    lr: np.ndarray,
    config: ExperimentConfig,
    fields: set[str],
    dataset=None,
    index: int = 0,
    options: dict[str, dict] | None = None,
) -> Priors:
    """Priors of one LR face (uint8 [h,w,3]) from the configured sources, as a batch of one.

    `options` maps a prior kind to its source's constructor options (`llvfsr.cli.parse_source_options`).
    """
    from llvfsr.priors.sources.base import ItemContext

    names = source_names(config.data)
    item = ItemContext(index, str(index), dataset)
    values = {}
    for kind in sorted(fields):
        source = build_source(kind, names[kind], (options or {}).get(kind))
        try:
            values[kind] = source(lr[None], config.data.hr_size, [item])[0]
        finally:
            source.close()
    priors = {}
    if "mask" in values:
        priors["mask"] = torch.from_numpy(np.asarray(values["mask"], dtype=np.int64))[None]
    if "depth" in values:
        priors["depth"] = torch.from_numpy(np.asarray(values["depth"], dtype=np.float32))[None, None]
    if "landmarks" in values:
        priors["landmarks"] = torch.from_numpy(np.asarray(values["landmarks"], dtype=np.float32))[None]
    texts = [kind for kind in TEXT_KINDS if kind in values]
    if texts:
        encoder = make_text_encoder(config.data)
        for kind in texts:
            tokens, pooled, valid = encoder.encode([values[kind]])
            priors[kind] = TextEmbedding(tokens.float(), pooled.float(), valid)
    return Priors(**priors)


def super_resolve(
    checkpoint: Path,
    lr: np.ndarray,
    sources: dict[str, str] | None = None,
    synthetic_index: int | None = None,
    options: dict[str, dict] | None = None,
) -> np.ndarray:
    """uint8 LR face [h,w,3] -> uint8 SR face [h*s,w*s,3] with the checkpoint's model and priors.

    Args:
        sources: ``{"mask_source": "face-parser", ...}`` replacing the checkpoint's sources.
        options: per-kind source options, e.g. ``{"mask": {"model_id": "/models/face-parser"}}``.

    Raises:
        UserError: a damaged checkpoint, an input of the wrong size, synthetic priors without a synthetic face,
            or a source that cannot load.
    """
    config, model = load_trained(checkpoint, sources)
    expected = config.data.hr_size // config.data.scale
    if lr.shape[:2] != (expected, expected):
        raise UserError(
            f"input is {lr.shape[1]}x{lr.shape[0]}, the checkpoint expects {expected}x{expected} LR faces "
            f"(x{config.data.scale} to {config.data.hr_size})"
        )
    fields = required_fields(model, config.model.name) - {"landmarks"}
    dataset = None
    if synthetic_index is not None:
        from llvfsr.data.datasets import open_dataset

        dataset = open_dataset(
            "synthetic", "test", n=synthetic_index + 1, seed=config.data.data_seed, hr_size=config.data.hr_size
        )
    elif any(source_names(config.data)[kind] == "synthetic" for kind in fields):
        raise UsageError(
            "this checkpoint was trained with synthetic priors: pass --source KIND=NAME for "
            f"{sorted(fields)} (e.g. mask=face-parser) or --synthetic-index N"
        )
    priors = extract_priors(lr, config, fields, dataset, synthetic_index or 0, options)
    with torch.no_grad():
        x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
        sr = model(x, priors).clamp(0, 1)
    return (sr[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@cli_entry()
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Super-resolve an LR face with a trained llvfsr checkpoint.")
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--input", required=True, type=Path, help="LR face image (PNG/JPEG, RGB)")
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--source", action="append", metavar="KIND=NAME", help="replace a prior source, e.g. mask=sam")
    add_source_option_flag(parser)
    parser.add_argument("--synthetic-index", type=int, default=None, help="use synthetic test face N's exact priors")
    args = parser.parse_args(argv)
    for path, what in ((args.checkpoint, "--checkpoint"), (args.input, "--input")):
        if not path.is_file():
            parser.error(f"{what} {path}: no such file")
    sources = {}
    for item in args.source or []:
        kind, _, name = item.partition("=")
        if kind not in PRIOR_KINDS or not name:
            parser.error(f"--source expects KIND=NAME ({', '.join(PRIOR_KINDS)}), got {item!r}")
        sources[f"{kind}_source"] = name
    options = parse_source_options(args.source_option)
    try:
        with Image.open(args.input) as image:
            lr = np.array(image.convert("RGB"))
    except OSError as error:
        raise UsageError(f"--input {args.input}: not a readable image ({error})") from error
    sr = super_resolve(args.checkpoint, lr, sources, args.synthetic_index, options)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sr).save(args.output)
    print(f"wrote {args.output} ({sr.shape[1]}x{sr.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
