"""Make sure a split's priors exist: extract whatever its prior store still lacks, before any trial reads it.

Prior stores are produced ahead of the trials (called by the sweep driver and the single-run CLI) and only read by
them (`llvfsr.trial_data.load_split`).
"""

from __future__ import annotations

import sys

from llvfsr.config import DataConfig
from llvfsr.data.splits import open_split
from llvfsr.priors.extract import extract_priors
from llvfsr.priors.sources import make_source
from llvfsr.priors.store import PriorStore, PriorStoreError
from llvfsr.priors.text_encoder import make_text_encoder
from llvfsr.priors.types import TEXT_KINDS


def source_names(data: DataConfig) -> dict[str, str]:
    return {
        "mask": data.mask_source,
        "depth": data.depth_source,
        "caption": data.caption_source,
        "description": data.description_source,
        "landmarks": data.landmarks_source,
    }


def open_store(data: DataConfig, split: str):
    """The prior store of a split of `data` (opened, not filled: see `ensure_priors`)."""
    return PriorStore.open(data.priors_root, open_split(data, split), split, data.scale)


def ensure_priors(data: DataConfig, fields: set[str], splits=("train", "test"), progress: bool = True) -> None:
    """Extract whatever the prior stores of these splits still lack for `fields` (resumable, idempotent).

    Every shard the fields need is checked against its checksum first: a shard that is damaged or missing is
    re-extracted (with a line on stderr naming it) instead of failing every trial that later reads it.
    """
    if not fields:
        return
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
        encoder = make_text_encoder(data) if missing & set(TEXT_KINDS) else None
        extract_priors(store, dataset, sources, encoder, progress=progress)


def _store_fields(kind: str) -> list[str]:
    """The store fields that hold a prior kind: the texts and their embeddings, or the kind itself."""
    return [f"{kind}_text", f"{kind}_emb"] if kind in TEXT_KINDS else [kind]


def check_sources(store, data: DataConfig, fields: set[str]) -> None:
    """Raise `PriorStoreError` unless `store` holds each prior kind of `fields` complete and from the source `data`
    names: a store keeps one source per prior, and reading another's (a negative control's shuffled descriptions
    extracted into the same store since) would silently give a run the wrong priors."""
    names, status = source_names(data), store.status()
    for kind in sorted(fields):
        if _complete(status, kind, names[kind], data.text_chunking):
            continue
        held = status.get(_store_fields(kind)[0], {})
        raise PriorStoreError(
            f"prior store {store.directory}: {kind!r} is "
            + (f"from source {held['source']!r}" if held.get("complete") else "incomplete")
            + f", this run needs {names[kind]!r} ({kind}_source). Extract it again (`python -m llvfsr.priors "
            "extract`, or run the sweep again): a store holds one source per prior, so runs that use different "
            "sources of a prior must not share a --priors-root at the same time."
        )


def _complete(status: dict, kind: str, source: str, text_chunking: str = "truncate") -> bool:
    """`store.status()` says it holds `kind` from the source of that name (and, for texts, its embeddings, made
    with this text chunking: another one re-embeds the texts, the texts themselves are kept)."""
    fields = _store_fields(kind)
    if kind in TEXT_KINDS and status.get(fields[1], {}).get("text_chunking", "truncate") != text_chunking:
        return False
    return all(status.get(f, {}).get("complete") for f in fields) and status[fields[0]]["source"] == source
