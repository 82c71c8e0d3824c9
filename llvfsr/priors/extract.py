"""Prior extraction: run prior sources and the CLIP text encoder over a dataset split into its `PriorStore`.

Resumable by construction: the work is cut into the store's shards, every finished shard is written atomically
and recorded in the manifest before the next starts, and a rerun computes only the shards that are missing
(for each field separately). Sources see the LR faces as a pretrained model would: the HR faces bicubic
down-sampled with anti-aliasing (`degrade_bicubic`, the paper's degradation) and rounded to uint8, since
priors are computed from the LR image (paper Sec. 3.3). Each source's seconds per image and peak memory are
measured around its calls and kept in the manifest (issue 7: the analysis reports the prior inference cost).
"""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from llvfsr.data.degrade import lr_faces
from llvfsr.priors.sources.base import ItemContext, PriorSource
from llvfsr.priors.store import EMBEDDING_OF_TEXT, FIELD_OF_KIND, FIELDS, PriorStore, PriorStoreError, normalise
from llvfsr.priors.text_encoder import ClipTextEncoder
from llvfsr.priors.types import NUM_LANDMARKS, NUM_MASK_CLASSES

logger = logging.getLogger(__name__)

# Recorded with every image-derived field: a change of the LR the sources see invalidates what they produced.
LR_DEGRADATION = "llvfsr.data.degrade.degrade_bicubic+uint8"


def _peak_rss_mib() -> float:
    # ru_maxrss is the process's high-water mark (KiB on Linux): an upper bound on the source's own peak.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(fn: Callable[[], Any], images: int) -> tuple[Any, dict[str, Any]]:
    """Run `fn` and return its result with its cost: seconds, images, peak RSS and peak CUDA memory (MiB)."""
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = fn()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    cost = {"seconds": seconds, "images": images, "peak_rss_mib": _peak_rss_mib(),
            "peak_cuda_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None}  # fmt: skip
    return result, cost


def _run_source(source: PriorSource, lr: np.ndarray, hr_size: int, items: list[ItemContext], batch_size: int) -> list:
    outputs: list = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        batch = source(lr[start : start + batch_size], hr_size, chunk)
        if len(batch) != len(chunk):
            raise ValueError(f"{source!r} returned {len(batch)} outputs for {len(chunk)} items")
        outputs.extend(batch)
    return outputs


def pack(field: str, outputs: list, hr_size: int) -> dict[str, np.ndarray] | list[str]:
    """Check a source's outputs and encode them as the store's shard arrays (see `llvfsr.priors.store`)."""
    if field.endswith("_text"):
        if not all(isinstance(text, str) for text in outputs):
            raise TypeError(f"{field}: a text source must return str per item")
        return list(outputs)
    array = np.stack([np.asarray(out) for out in outputs])
    expected = (NUM_LANDMARKS, 2) if field == "landmarks" else (hr_size, hr_size)
    if array.shape[1:] != expected:
        raise ValueError(f"{field}: source output has shape {array.shape[1:]}, expected {expected}")
    if field == "mask":
        if array.min() < 0 or array.max() >= NUM_MASK_CLASSES:
            raise ValueError(f"mask: label ids must lie in [0, {NUM_MASK_CLASSES}), got [{array.min()}, {array.max()}]")
        return {"mask": array.astype(np.uint8)}
    if field == "depth":
        if not np.isfinite(array).all() or array.min() < -1e-3 or array.max() > 1 + 1e-3:
            raise ValueError(f"depth: values must be finite and in [0, 1], got [{array.min()}, {array.max()}]")
        return {"depth": np.round(np.clip(array, 0.0, 1.0) * 65535.0).astype(np.uint16)}
    return {"landmarks": array.astype(np.float32)}


def embed(encoder: ClipTextEncoder, texts: list[str]) -> tuple[dict[str, np.ndarray], int]:
    """Encode texts into the store's embedding arrays; also return how many texts were truncated."""
    truncated = sum(n > 0 for n in encoder.cut_tokens(texts))
    tokens, pooled, valid = encoder.encode(texts)
    lengths = valid.sum(dim=1)
    stored = int(lengths.max()) if len(texts) else 0
    lengths = lengths.numpy().astype(np.int16)
    return {"tokens": tokens[:, :stored].numpy(), "pooled": pooled.numpy(), "lengths": lengths}, truncated


def _plan(store: PriorStore, sources: dict[str, PriorSource], encoder: ClipTextEncoder | None) -> dict[str, Any]:
    """Bring the manifest in line with the requested producers and return them per field, in `FIELDS` order."""
    producers: dict[str, Any] = {}
    for kind, source in sources.items():
        if kind not in FIELD_OF_KIND or getattr(source, "kind", None) != kind:
            kinds = ", ".join(FIELD_OF_KIND)
            raise ValueError(f"sources[{kind!r}] must be a PriorSource of kind {kind!r} (kinds: {kinds})")
        field = FIELD_OF_KIND[kind]
        if store.prepare_field(field, source.fingerprint(), {"lr": LR_DEGRADATION, "scale": store.scale}):
            logger.info("%s: source changed, recomputing it (and the embeddings of its text)", field)
        producers[field] = source
    if encoder is not None:
        for text_field, emb_field in EMBEDDING_OF_TEXT.items():
            text_record = store.record(text_field)
            if text_record is not None:
                if store.prepare_field(emb_field, encoder.fingerprint(), {"text_source": text_record["source"]}):
                    logger.info("%s: text encoder changed, recomputing it", emb_field)
                producers[emb_field] = encoder
    return {field: producers[field] for field in FIELDS if field in producers}


def extract_priors(
    store: PriorStore, dataset: Any, sources: dict[str, PriorSource], text_encoder: ClipTextEncoder | None = None,
    batch_size: int | None = None, progress: bool = True,
) -> dict[str, int]:  # fmt: skip
    """Compute every shard the store still lacks for the given sources (and the embeddings of their texts).

    Args:
        store: the store of `dataset` (from `PriorStore.open`).
        dataset: the `FaceDataset` the store was opened for (``load_hr_batch``, ``item_id``, ``fingerprint``).
        sources: prior kind (``mask``, ``depth``, ``caption``, ``description``, ``landmarks``) -> source. A source
            whose fingerprint differs from the manifest's replaces that field (and its embeddings) entirely.
        text_encoder: encodes every caption / description field of the store into ``*_emb``; None skips them.
        batch_size: faces per source call; None uses each source's own ``batch_size``.
        progress: draw a tqdm progress bar.

    Returns:
        The number of shards computed per field (0 for fields that were already complete).
    """
    if normalise(dataset.fingerprint()) != store.manifest["dataset"] or len(dataset) != store.n:
        raise PriorStoreError(f"{store.directory}: the dataset is not the one this store was opened for")
    producers = _plan(store, sources, text_encoder)
    for field in producers:
        for stale in (store.directory / field).glob(".shard_*.tmp-*"):  # temporary files of a killed run
            stale.unlink()
        store.drop_damaged_shards(field)
    store.save_manifest()
    todo = [(s, [f for f in producers if not store.shard_done(f, s)]) for s in range(store.num_shards)]
    todo = [(s, fields) for s, fields in todo if fields]
    computed = dict.fromkeys(producers, 0)
    total = sum(len(store.shard_range(s)) for s, _ in todo)
    with tqdm(total=total, unit="img", desc=f"priors x{store.scale}", disable=not progress) as bar:
        for shard, fields in todo:
            _extract_shard(store, dataset, shard, fields, producers, batch_size)
            for field in fields:
                computed[field] += store.shard_done(field, shard)
            bar.update(len(store.shard_range(shard)))
    return computed


def _extract_shard(store: PriorStore, dataset: Any, shard: int, fields: list[str], producers: dict[str, Any],
                   batch_size: int | None) -> None:  # fmt: skip
    """Compute the missing fields of one shard and write each of them atomically."""
    indices = list(store.shard_range(shard))
    image_fields = [field for field in fields if not field.endswith("_emb")]
    if image_fields:
        # Item-major within the shard: every source sees a chunk before the next chunk is loaded, so a dataset
        # that renders or decodes faces on demand (with a small cache) does that once per face, not once per source.
        outputs: dict[str, list] = {field: [] for field in image_fields}
        costs = {
            field: {"seconds": 0.0, "images": 0, "peak_rss_mib": None, "peak_cuda_mib": None} for field in image_fields
        }
        chunk = batch_size or max(producers[field].batch_size for field in image_fields)
        for start in range(0, len(indices), chunk):
            part = indices[start : start + chunk]
            items = [ItemContext(i, dataset.item_id(i), dataset) for i in part]
            lr = lr_faces(dataset.load_hr_batch(part), store.scale)
            for field in image_fields:
                source = producers[field]
                run = partial(_run_source, source, lr, store.hr_size, items, batch_size or source.batch_size)
                result, cost = measure(run, len(part))
                outputs[field].extend(result)
                _accumulate(costs[field], cost)
        for field in image_fields:
            store.write_shard(field, shard, pack(field, outputs[field], store.hr_size), costs[field])
    for field in fields:
        if not field.endswith("_emb"):
            continue
        text_field = next(t for t, e in EMBEDDING_OF_TEXT.items() if e == field)
        if not store.shard_done(text_field, shard):
            logger.warning("%s shard %d: its texts are not extracted, skipping", field, shard)
            continue
        texts = store.read_shard(text_field, shard)
        (value, truncated), cost = measure(partial(embed, producers[field], texts), len(indices))
        extra = store.record(field)["extra"]
        extra["truncated_texts"] = extra.get("truncated_texts", 0) + truncated
        store.write_shard(field, shard, value, cost)


def _accumulate(total: dict[str, Any], cost: dict[str, Any]) -> None:
    total["seconds"] += cost["seconds"]
    total["images"] += cost["images"]
    for key in ("peak_rss_mib", "peak_cuda_mib"):
        if cost[key] is not None:
            total[key] = max(total[key] or 0.0, cost[key])
