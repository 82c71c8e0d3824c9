"""Load a trial's data once: uint8 HR faces and their priors, resident on the training device.

The design's performance rule: a trial's split is small enough to live on the GPU, so it is loaded once, degraded
on the device and indexed there; the data pipeline never stalls the step. Prior stores are produced ahead of the
trials (`ensure_priors`, called by the sweep driver and the single-run CLI) and only read here.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from llvfsr.config import DataConfig
from llvfsr.priors.types import Priors

log = logging.getLogger(__name__)

SYNTHETIC_DEFAULT_N = {"train": 1000, "test": 200}
TEXT_FIELDS = ("caption", "description")


@dataclass
class SplitData:
    """One split in memory: ids, HR faces (uint8 [N,3,H,W]) and priors (any subset of fields)."""

    ids: list[str]
    hr: Tensor
    priors: Priors

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, index: Tensor) -> tuple[Tensor, Priors]:
        """HR float [B,3,H,W] in [0,1] and the matching priors (mask long, the rest float32) on the data's device."""
        priors = self.priors.select(index).map(
            lambda t: t if t.dtype in (torch.bool, torch.float32) else t.long() if t.dtype == torch.uint8 else t.float()
        )
        return self.hr[index].float().div_(255.0), priors

    def subset(self, index: Tensor) -> SplitData:
        return SplitData([self.ids[i] for i in index.tolist()], self.hr[index], self.priors.select(index))


def split_size(data: DataConfig, split: str) -> int | None:
    n = data.train_n if split == "train" else data.test_n
    if n is None and data.dataset == "synthetic":
        n = SYNTHETIC_DEFAULT_N[split]
    return n


def open_split(data: DataConfig, split: str):
    """The `FaceDataset` of a split ("train" or "test") described by `data`."""
    from llvfsr.data.datasets import open_dataset

    if data.dataset == "synthetic":
        return open_dataset(
            "synthetic", split, n=split_size(data, split), seed=data.data_seed, hr_size=data.hr_size,
            zoom=data.synthetic_zoom,
        )  # fmt: skip
    return open_dataset(
        data.dataset,
        split,
        n=split_size(data, split),
        hr_size=data.hr_size,
        split_dir=data.split_dir,
        text_dir=data.text_dir,
        skip_bad=data.skip_bad,
    )


def source_names(data: DataConfig) -> dict[str, str]:
    return {
        "mask": data.mask_source,
        "depth": data.depth_source,
        "caption": data.caption_source,
        "description": data.description_source,
        "landmarks": data.landmarks_source,
    }


def open_store(data: DataConfig, split: str):
    from llvfsr.priors.store import PriorStore

    return PriorStore.open(data.priors_root, open_split(data, split), split, data.scale)


def ensure_priors(data: DataConfig, fields: set[str], splits=("train", "test"), progress: bool = True) -> None:
    """Extract whatever the prior stores of these splits still lack for `fields` (resumable, idempotent).

    Every shard the fields need is checked against its checksum first: a shard that is damaged or missing is
    re-extracted (with a line on stderr naming it) instead of failing every trial that later reads it.
    """
    if not fields:
        return
    from llvfsr.priors.extract import extract_priors
    from llvfsr.priors.sources import make_source
    from llvfsr.priors.store import PriorStore

    names = source_names(data)
    for split in splits:
        dataset = open_split(data, split)
        store = PriorStore.open(data.priors_root, dataset, split, data.scale)
        status = store.status()
        missing = {kind for kind in fields if not _complete(status, kind, names[kind], data.text_chunking)}
        damaged = store.damaged_shards([f for kind in sorted(fields - missing) for f in _store_fields(kind)])
        for problems in damaged.values():
            for problem in problems:
                print(f"prior store: {problem}; re-extracting it", file=sys.stderr)
        missing |= {kind for kind in fields if set(_store_fields(kind)) & set(damaged)}
        if not missing:
            continue  # e.g. extracted beforehand with `python -m llvfsr.priors extract --source-option ...`
        sources = {kind: make_source(kind, names[kind]) for kind in sorted(missing)}
        encoder = make_text_encoder(data) if missing & set(TEXT_FIELDS) else None
        extract_priors(store, dataset, sources, encoder, progress=progress)


def _store_fields(kind: str) -> list[str]:
    """The store fields that hold a prior kind: the texts and their embeddings, or the kind itself."""
    return [f"{kind}_text", f"{kind}_emb"] if kind in TEXT_FIELDS else [kind]


def _complete(status: dict, kind: str, source: str, text_chunking: str = "truncate") -> bool:
    """`store.status()` says it holds `kind` from the source of that name (and, for texts, its embeddings, made
    with this text chunking: another one re-embeds the texts, the texts themselves are kept)."""
    fields = _store_fields(kind)
    if kind in TEXT_FIELDS and status.get(fields[1], {}).get("text_chunking", "truncate") != text_chunking:
        return False
    return all(status.get(f, {}).get("complete") for f in fields) and status[fields[0]]["source"] == source


TINY_TEXT_ENCODER = "tiny"  # a 2-layer open_clip text tower for the synthetic presets (random weights, fast on a CPU)


def make_text_encoder(data: DataConfig):
    """The CLIP text encoder `data` names: an open_clip architecture, or "tiny" for the synthetic presets."""
    from llvfsr.priors.text_encoder import ClipTextEncoder, tiny_clip_config

    if data.text_encoder == TINY_TEXT_ENCODER:  # no published weights exist for the tiny tower
        return ClipTextEncoder(
            "ViT-B-32",
            None,
            allow_random=data.allow_random_text_encoder,
            model_cfg=tiny_clip_config(),
            chunking=data.text_chunking,
        )
    return ClipTextEncoder(
        data.text_encoder,
        data.text_pretrained,
        allow_random=data.allow_random_text_encoder,
        chunking=data.text_chunking,
    )


def text_width(data: DataConfig) -> int:
    """D of the token-level text embeddings that `data`'s text encoder writes (without building it)."""
    if data.text_encoder == TINY_TEXT_ENCODER:
        from llvfsr.priors.text_encoder import tiny_clip_config

        return tiny_clip_config()["text_cfg"]["width"]
    import open_clip

    config = open_clip.get_model_config(data.text_encoder)
    if config is None:
        raise ValueError(f"unknown open_clip architecture {data.text_encoder!r} (data.text_encoder)")
    return config["text_cfg"]["width"]


def load_split(data: DataConfig, split: str, fields: set[str], device: torch.device) -> SplitData:
    """Load a split's HR faces and the requested prior fields onto `device` (priors must already be extracted)."""
    dataset = open_split(data, split)
    hr = np.ascontiguousarray(dataset.load_hr_batch(list(range(len(dataset)))).transpose(0, 3, 1, 2))
    priors = Priors()
    if fields:
        from llvfsr.priors.store import PriorStore

        store = PriorStore.open(data.priors_root, dataset, split, data.scale)
        priors = store.load(set(fields), compact=True)  # uint8 masks, float16 depth/text: 4-8x less memory
    ids = [dataset.item_id(i) for i in range(len(dataset))]
    log.info("loaded %s split: %d faces, priors %s", split, len(ids), sorted(fields))
    return SplitData(ids, torch.from_numpy(hr).to(device), priors.to(device))
