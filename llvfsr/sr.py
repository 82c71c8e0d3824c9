"""Super-resolve a user's LR face with a trained checkpoint, extracting its priors on the fly.

    python -m llvfsr.sr --checkpoint runs/llvfsr-x8/checkpoint.pt --input face_32px.png --output face_256px.png

The prior sources are the ones the checkpoint was trained with, unless ``--source KIND=NAME`` replaces them
(a model trained on synthetic priors needs real sources, or ``--synthetic-index N`` to super-resolve synthetic
face N with its exact priors).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from llvfsr.checkpoint import load_checkpoint
from llvfsr.config import ExperimentConfig, from_flat
from llvfsr.data.loading import make_text_encoder, source_names
from llvfsr.priors.types import Priors, TextEmbedding
from llvfsr.train import build_model, required_fields


def read_checkpoint_config(path: Path) -> ExperimentConfig:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return from_flat(state["config"])


def extract_priors(lr: np.ndarray, config: ExperimentConfig, fields: set[str], dataset=None, index: int = 0) -> Priors:
    """Priors of one LR face (uint8 [h,w,3]) from the configured sources, as a batch of one."""
    from llvfsr.priors.sources import make_source
    from llvfsr.priors.sources.base import ItemContext

    names = source_names(config.data)
    item = ItemContext(index, str(index), dataset)
    values = {kind: make_source(kind, names[kind])(lr[None], config.data.hr_size, [item])[0] for kind in fields}
    priors = {}
    if "mask" in values:
        priors["mask"] = torch.from_numpy(np.asarray(values["mask"], dtype=np.int64))[None]
    if "depth" in values:
        priors["depth"] = torch.from_numpy(np.asarray(values["depth"], dtype=np.float32))[None, None]
    if "landmarks" in values:
        priors["landmarks"] = torch.from_numpy(np.asarray(values["landmarks"], dtype=np.float32))[None]
    texts = [kind for kind in ("caption", "description") if kind in values]
    if texts:
        encoder = make_text_encoder(config.data)
        for kind in texts:
            tokens, pooled, valid = encoder.encode([values[kind]])
            priors[kind] = TextEmbedding(tokens.float(), pooled.float(), valid)
    return Priors(**priors)


def super_resolve(
    checkpoint: Path, lr: np.ndarray, sources: dict[str, str] | None = None, synthetic_index: int | None = None
) -> np.ndarray:
    """uint8 LR face [h,w,3] -> uint8 SR face [h*s,w*s,3] with the checkpoint's model and priors."""
    config = read_checkpoint_config(checkpoint)
    if sources:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, **sources))
    model = build_model(config)
    load_checkpoint(checkpoint, None, model)
    model.eval()
    expected = config.data.hr_size // config.data.scale
    if lr.shape[:2] != (expected, expected):
        raise ValueError(
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
        raise ValueError(
            "this checkpoint was trained with synthetic priors: pass --source KIND=NAME for "
            f"{sorted(fields)} (e.g. mask=face-parser) or --synthetic-index N"
        )
    priors = extract_priors(lr, config, fields, dataset, synthetic_index or 0)
    with torch.no_grad():
        x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
        sr = model(x, priors).clamp(0, 1)
    return (sr[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Super-resolve an LR face with a trained llvfsr checkpoint.")
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--input", required=True, type=Path, help="LR face image (PNG/JPEG, RGB)")
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--source", action="append", metavar="KIND=NAME", help="replace a prior source, e.g. mask=sam")
    parser.add_argument("--synthetic-index", type=int, default=None, help="use synthetic test face N's exact priors")
    args = parser.parse_args(argv)
    for path, what in ((args.checkpoint, "--checkpoint"), (args.input, "--input")):
        if not path.is_file():
            parser.error(f"{what} {path}: no such file")
    sources = {}
    for item in args.source or []:
        kind, _, name = item.partition("=")
        if kind not in ("mask", "depth", "caption", "description") or not name:
            parser.error(f"--source expects KIND=NAME (mask, depth, caption, description), got {item!r}")
        sources[f"{kind}_source"] = name
    try:
        lr = np.array(Image.open(args.input).convert("RGB"))
        sr = super_resolve(args.checkpoint, lr, sources, args.synthetic_index)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sr).save(args.output)
    print(f"wrote {args.output} ({sr.shape[1]}x{sr.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
