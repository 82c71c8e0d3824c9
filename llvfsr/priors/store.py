"""The prior store: the priors of one (dataset, split, scale), on disk, versioned by source, in checksummed shards.

Layout: ``<root>/<dataset-key>/<split>/x<scale>/manifest.json`` (see `dataset_key`) plus one folder per field,
each holding fixed-size shards (``shard_00000.npz`` / ``.json``) written to a temporary file and renamed, so a
killed extraction loses at most the shard in progress. The manifest records the dataset fingerprint, the scale
and sizes, and per field the fingerprint of the source that produced it, each shard's sha256 and the extraction
cost. A changed source fingerprint invalidates exactly that field (and the embeddings of a changed text field);
a missing, corrupt or mismatched store is reported as a `PriorStoreError` naming the file or the differing field.

Field encodings (all shards of a field alike):
    mask: ``mask`` uint8 [n, H, W], ids into `MASK_CLASSES` (npz, compressed: label maps shrink ~20x).
    depth: ``depth`` uint16 [n, H, W] = round(depth * 65535), so the stored depth is within 7.7e-6 of the
        source's float depth in [0, 1] (npz, compressed).
    landmarks: ``landmarks`` float32 [n, 68, 2], (x, y) in HR pixels (npz).
    caption_text, description_text: a JSON list of n strings.
    caption_emb, description_emb: ``tokens`` float16 [n, L, D] holding only the first L rows, L = the longest
        valid length in the shard (rows past an item's length are zero), ``pooled`` float16 [n, E] and ``lengths``
        int16 [n]; `load` pads the tokens back to the encoder's context length T (npz).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llvfsr.errors import UserError
from llvfsr.priors.text_encoder import pad_tokens
from llvfsr.priors.types import SOURCE_KINDS, TEXT_KINDS, Priors, TextEmbedding

FORMAT_VERSION = 1
DEFAULT_SHARD_SIZE = 256
DEPTH_LEVELS = 65535
FIELDS: tuple[str, ...] = (
    "mask", "depth", "landmarks", "caption_text", "description_text", "caption_emb", "description_emb",
)  # fmt: skip
FIELD_OF_KIND = {"mask": "mask", "depth": "depth", "landmarks": "landmarks",
                 "caption": "caption_text", "description": "description_text"}  # fmt: skip
EMBEDDING_OF_TEXT = {"caption_text": "caption_emb", "description_text": "description_emb"}
_COMPRESSED = {"mask", "depth"}


logger = logging.getLogger(__name__)


class PriorStoreError(UserError, RuntimeError):
    """The store on disk is missing, damaged, incomplete or was made for other data."""


def normalise(value: Any) -> Any:
    """The JSON round trip of `value`, so fingerprints compare equal before and after the manifest (tuples -> lists)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def dataset_key(dataset: Any) -> str:
    """The folder name of a dataset in the store root: ``<name>-<8 hex digits of its fingerprint's sha256>``.

    The hash lets stores of differently sized or seeded variants of a dataset (a 64-face smoke run beside a
    1000-face run) live side by side under one root instead of refusing each other.
    """
    fingerprint = normalise(dataset.fingerprint())
    name = str(getattr(dataset, "name", None) or fingerprint.get("name") or type(dataset).__name__)
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{name}-{digest}")


def _take(index: torch.Tensor, tensor: torch.Tensor) -> torch.Tensor:
    return tensor[index]


def _atomic_write(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_bytes(data)
    os.replace(temporary, path)


class PriorStore:
    """The priors of one (dataset, split, scale); use `PriorStore.open` or `PriorStore.at` to get one.

    Args:
        directory: the store's folder (``<root>/<dataset-key>/<split>/x<scale>``).
        manifest: its manifest (loaded or new).
    """

    def __init__(self, directory: str | Path, manifest: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.manifest = manifest

    # ----------------------------------------------------------------------------------------------- opening
    @classmethod
    def open(
        cls, root: str | Path, dataset: Any, split: str | None = None, scale: int = 8,
        shard_size: int = DEFAULT_SHARD_SIZE,
    ) -> PriorStore:  # fmt: skip
        """Open (or prepare, without writing anything yet) the store of a dataset split at one scale.

        Args:
            root: the store root; the store lives in ``<root>/<dataset-key>/<split>/x<scale>``.
            dataset: a `FaceDataset` (``fingerprint()``, ``hr_size``, ``split``, ``len``).
            split: the split name; defaults to ``dataset.split`` and must agree with it.
            scale: the down-sampling factor of the LR faces the priors are computed from.
            shard_size: items per shard of a new store (an existing store keeps its own).

        Raises:
            PriorStoreError: an existing manifest was made for other data; the message names the differing field.
        """
        dataset_split = getattr(dataset, "split", None)
        split = split or dataset_split
        if split is None or (dataset_split is not None and split != dataset_split):
            raise PriorStoreError(f"split {split!r} does not match the dataset's split {dataset_split!r}")
        header = normalise({"format": FORMAT_VERSION, "dataset": dataset.fingerprint(), "split": split,
                            "scale": int(scale), "hr_size": int(dataset.hr_size), "n": len(dataset)})  # fmt: skip
        directory = Path(root) / dataset_key(dataset) / split / f"x{scale}"
        if not (directory / "manifest.json").exists():
            return cls(directory, {**header, "shard_size": int(shard_size), "fields": {}})
        store = cls.at(directory)
        store._check_header(header)
        return store

    @classmethod
    def at(cls, directory: str | Path) -> PriorStore:
        """Open an existing store by its folder (for status, verify and loading without the dataset object)."""
        path = Path(directory) / "manifest.json"
        try:
            manifest = json.loads(path.read_text())
        except FileNotFoundError:
            raise PriorStoreError(f"no prior store at {directory}: {path} is missing") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise PriorStoreError(f"damaged manifest {path}: {err}") from None
        missing = {"format", "dataset", "scale", "hr_size", "n", "shard_size", "fields"} - set(manifest)
        if missing:
            raise PriorStoreError(f"damaged manifest {path}: no {', '.join(sorted(missing))}")
        if manifest["format"] != FORMAT_VERSION:
            raise PriorStoreError(f"{path} has store format {manifest['format']}, this code reads {FORMAT_VERSION}")
        return cls(directory, manifest)

    def _check_header(self, header: dict[str, Any]) -> None:
        for key, wanted in header.items():
            if key == "dataset":
                stored = self.manifest["dataset"]
                for name in sorted(set(stored) | set(wanted)):
                    if stored.get(name) != wanted.get(name):
                        raise PriorStoreError(
                            f"prior store {self.directory} was made for another dataset: dataset field {name!r} is "
                            f"{stored.get(name)!r} in the manifest, {wanted.get(name)!r} requested"
                        )
            elif self.manifest.get(key) != wanted:
                raise PriorStoreError(f"prior store {self.directory} does not match: {key!r} is "
                                      f"{self.manifest.get(key)!r} in the manifest, {wanted!r} requested")  # fmt: skip

    # ------------------------------------------------------------------------------------------ geometry
    @property
    def n(self) -> int:
        return int(self.manifest["n"])

    @property
    def scale(self) -> int:
        return int(self.manifest["scale"])

    @property
    def hr_size(self) -> int:
        return int(self.manifest["hr_size"])

    @property
    def shard_size(self) -> int:
        return int(self.manifest["shard_size"])

    @property
    def num_shards(self) -> int:
        return -(-self.n // self.shard_size)

    def shard_range(self, shard: int) -> range:
        """The item indices of one shard."""
        return range(shard * self.shard_size, min((shard + 1) * self.shard_size, self.n))

    def shard_path(self, field: str, shard: int) -> Path:
        suffix = "json" if field.endswith("_text") else "npz"
        return self.directory / field / f"shard_{shard:05d}.{suffix}"

    # -------------------------------------------------------------------------------------------- status
    def record(self, field: str) -> dict[str, Any] | None:
        """The manifest entry of a field (source fingerprint, inputs, shards, cost), or None if never extracted."""
        return self.manifest["fields"].get(field)

    def shard_done(self, field: str, shard: int) -> bool:
        record = self.record(field)
        return record is not None and str(shard) in record["shards"] and self.shard_path(field, shard).exists()

    def is_complete(self, field: str) -> bool:
        return all(self.shard_done(field, s) for s in range(self.num_shards))

    def _records(self) -> list[tuple[str, dict[str, Any]]]:
        return [(field, self.manifest["fields"][field]) for field in FIELDS if field in self.manifest["fields"]]

    def status(self) -> dict[str, dict[str, Any]]:
        """Per extracted field: its source name, shards done / total, completeness and (embeddings) random_init."""
        out = {}
        for field, record in self._records():
            done = sum(self.shard_done(field, s) for s in range(self.num_shards))
            source = record["source"]
            out[field] = {"source": source.get("source") or source.get("arch"), "shards_done": done,
                          "shards": self.num_shards, "complete": done == self.num_shards}  # fmt: skip
            if "random_init" in source:
                out[field]["random_init"] = source["random_init"]
            if source.get("encoder") == "open_clip":  # stores made before the switch existed truncated
                out[field]["text_chunking"] = source.get("text_chunking", "truncate")
        return out

    def costs(self) -> dict[str, dict[str, Any]]:
        """Per extracted field: seconds per image, images measured, peak RSS / CUDA memory (MiB) of its source."""
        return {field: dict(record["cost"]) for field, record in self._records()}

    def verify(self, raise_on_error: bool = True) -> list[str]:
        """Check every recorded shard against its sha256; return the problems (or raise them).

        Raises:
            PriorStoreError: when ``raise_on_error`` and a shard is missing or its checksum differs; names the files.
        """
        problems = [p for field in self.manifest["fields"] for p in self._shard_problems(field).values()]
        if problems and raise_on_error:
            raise PriorStoreError("damaged prior store:\n" + "\n".join(problems))
        return problems

    def damaged_shards(self, fields: list[str]) -> dict[str, list[str]]:
        """Per field of `fields` that the manifest records: the problems of its shards whose file is missing or
        fails its sha256 (reads every shard; `status` only sees that files exist)."""
        damaged = {field: list(self._shard_problems(field).values()) for field in fields}
        return {field: problems for field, problems in damaged.items() if problems}

    def _shard_problems(self, field: str) -> dict[str, str]:
        """Shard key -> what is wrong with it (missing file, sha256 mismatch), for the recorded shards of `field`."""
        record = self.record(field)
        problems = {}
        for shard in sorted(record["shards"] if record else [], key=int):
            try:
                self._read_bytes(field, int(shard))
            except PriorStoreError as err:
                problems[shard] = str(err)
        return problems

    # --------------------------------------------------------------------------------------------- writing
    def prepare_field(self, field: str, source: dict[str, Any], inputs: dict[str, Any]) -> bool:
        """Make the field's record match a source fingerprint and inputs, discarding it (and dependants) if not.

        Returns:
            True when the existing shards were discarded (the field's source or inputs changed).
        """
        wanted = {"source": normalise(source), "inputs": normalise(inputs)}
        record = self.record(field)
        if record is not None and {"source": record["source"], "inputs": record["inputs"]} == wanted:
            return False
        self.discard_field(field)
        self.manifest["fields"][field] = {**wanted, "shards": {}, "extra": {},
                                          "cost": {"seconds": 0.0, "images": 0, "seconds_per_image": None,
                                                   "peak_rss_mib": None, "peak_cuda_mib": None}}  # fmt: skip
        return record is not None

    def drop_damaged_shards(self, field: str) -> list[int]:
        """Forget the shards of a field whose file is missing or fails its checksum, so `extract` recomputes them."""
        problems = self._shard_problems(field)
        for shard, problem in problems.items():
            logger.warning("%s; it will be recomputed", problem)
            del self.manifest["fields"][field]["shards"][shard]
        return [int(shard) for shard in problems]

    def discard_field(self, field: str) -> None:
        """Delete a field's shards and record, and those of the embeddings computed from it."""
        folder = self.directory / field
        if folder.exists():
            for path in folder.iterdir():
                path.unlink()
        self.manifest["fields"].pop(field, None)
        if field in EMBEDDING_OF_TEXT:
            self.discard_field(EMBEDDING_OF_TEXT[field])

    def write_shard(
        self, field: str, shard: int, value: dict[str, np.ndarray] | list[str], cost: dict[str, Any]
    ) -> None:
        """Write one shard atomically, then record its checksum and cost in the manifest (also written atomically).

        Args:
            field: one of `FIELDS` (its record must exist: see `prepare_field`).
            shard: shard number.
            value: the named arrays of the field's encoding (see the module docstring), or the texts.
            cost: ``seconds``, ``images``, ``peak_rss_mib``, ``peak_cuda_mib`` of computing it.
        """
        expected = len(self.shard_range(shard))
        count = len(value) if isinstance(value, list) else len(next(iter(value.values())))
        if count != expected:
            raise ValueError(f"{field} shard {shard}: {count} items, expected {expected}")
        if isinstance(value, list):
            data = json.dumps(value, ensure_ascii=False).encode()
        else:
            buffer = io.BytesIO()
            (np.savez_compressed if field in _COMPRESSED else np.savez)(buffer, **value)
            data = buffer.getvalue()
        path = self.shard_path(field, shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, data)
        record = self.manifest["fields"][field]
        record["shards"][str(shard)] = {"file": path.name, "sha256": hashlib.sha256(data).hexdigest(), "items": count}
        total = record["cost"]
        total["seconds"] += float(cost["seconds"])
        total["images"] += int(cost["images"])
        total["seconds_per_image"] = total["seconds"] / max(total["images"], 1)
        for key in ("peak_rss_mib", "peak_cuda_mib"):
            if cost.get(key) is not None:
                total[key] = max(total[key] or 0.0, float(cost[key]))
        self.save_manifest()

    def save_manifest(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.directory / "manifest.json", json.dumps(self.manifest, indent=1, sort_keys=True).encode())

    # --------------------------------------------------------------------------------------------- reading
    def _read_bytes(self, field: str, shard: int) -> bytes:
        record = self.record(field)
        path = self.shard_path(field, shard)
        if record is None or str(shard) not in record["shards"]:
            raise PriorStoreError(f"{path}: shard {shard} of {field!r} was never extracted; run "
                                  "`python -m llvfsr.priors extract` for this store")  # fmt: skip
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise PriorStoreError(f"{path}: shard file is missing (rerun extract to recompute it)") from None
        if hashlib.sha256(data).hexdigest() != record["shards"][str(shard)]["sha256"]:
            raise PriorStoreError(f"{path}: checksum mismatch, the shard is corrupt (rerun extract to recompute it)")
        return data

    def read_shard(self, field: str, shard: int) -> dict[str, np.ndarray] | list[str]:
        """One verified shard: the named arrays of the field's encoding, or the list of texts."""
        data = self._read_bytes(field, shard)
        if field.endswith("_text"):
            return json.loads(data)
        with np.load(io.BytesIO(data)) as archive:
            return {name: archive[name] for name in archive.files}

    def _shards_for(self, indices: np.ndarray | None) -> list[int]:
        if indices is None:
            return list(range(self.num_shards))
        return sorted({int(i) // self.shard_size for i in indices})

    def _gather(self, field: str, indices: np.ndarray | None) -> tuple[list[Any], np.ndarray | None]:
        """Read the shards holding `indices` and return them with the positions of `indices` in their concatenation."""
        if self.record(field) is None:
            raise PriorStoreError(f"{self.directory}: field {field!r} was never extracted")
        shards = self._shards_for(indices)
        parts = [self.read_shard(field, s) for s in shards]
        if indices is None:
            return parts, None
        offsets = {s: k * self.shard_size for k, s in enumerate(shards)}
        positions = np.array([offsets[int(i) // self.shard_size] + int(i) % self.shard_size for i in indices])
        return parts, positions

    def texts(self, field: str, indices: list[int] | np.ndarray | None = None) -> list[str]:
        """The raw texts of ``"caption"`` / ``"description"`` (or their ``*_text`` field names)."""
        field = field if field.endswith("_text") else f"{field}_text"
        indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        self._check_indices(indices)
        parts, positions = self._gather(field, indices)
        texts = [text for part in parts for text in part]
        return texts if positions is None else [texts[p] for p in positions]

    def _check_indices(self, indices: np.ndarray | None) -> None:
        if indices is not None and len(indices) and (indices.min() < 0 or indices.max() >= self.n):
            raise IndexError(f"indices out of range for a store of {self.n} items")

    def load(self, fields: set[str] | frozenset[str], indices: list[int] | np.ndarray | None = None,
             compact: bool = False) -> Priors:  # fmt: skip
        """Load priors as tensors, verifying every shard read against its checksum.

        Args:
            fields: `Priors` field names: ``mask``, ``depth``, ``caption``, ``description``, ``landmarks``.
            indices: item indices to load (any order, repeats allowed); None loads the whole split.
            compact: keep the mask uint8 and the depth float16 (a quarter / half of the memory: for holding a
                whole split on the GPU and converting per batch).

        Returns:
            `Priors` with the requested fields: mask long [N, H, W] (uint8 if compact), depth float32 [N, 1, H, W]
            in [0, 1] (float16 if compact), caption / description `TextEmbedding` (tokens float16 [N, T, D],
            pooled float16 [N, E], valid bool [N, T]), landmarks float32 [N, 68, 2].

        Raises:
            PriorStoreError: a field was not extracted or a shard is missing or corrupt (the message names it).
        """
        unknown = set(fields) - set(SOURCE_KINDS)
        if unknown:
            raise ValueError(f"unknown prior fields {sorted(unknown)}; valid: {', '.join(SOURCE_KINDS)}")
        indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        self._check_indices(indices)
        out: dict[str, Any] = {}
        for name in fields:
            field = f"{name}_emb" if name in TEXT_KINDS else name
            parts, positions = self._gather(field, indices)
            if field.endswith("_emb"):
                context_length = int(self.record(field)["source"]["context_length"])
                padded = [pad_tokens(p["tokens"], p["lengths"], context_length) for p in parts]
                value = TextEmbedding(torch.cat([t for t, _ in padded]),
                                      torch.from_numpy(np.concatenate([p["pooled"] for p in parts])),
                                      torch.cat([v for _, v in padded]))  # fmt: skip
                out[name] = value if positions is None else value.map(partial(_take, torch.from_numpy(positions)))
                continue
            array = np.concatenate([p[field] for p in parts])
            array = array if positions is None else array[positions]
            if field == "mask":
                out[name] = torch.from_numpy(array) if compact else torch.from_numpy(array).long()
            elif field == "depth":
                depth = torch.from_numpy(np.multiply(array, np.float32(1.0 / DEPTH_LEVELS), dtype=np.float32))
                out[name] = (depth.half() if compact else depth)[:, None]
            else:
                out[name] = torch.from_numpy(np.ascontiguousarray(array))
        return Priors(**out)

    def __repr__(self) -> str:
        fields = list(self.manifest["fields"])
        return f"PriorStore({str(self.directory)!r}, n={self.n}, scale={self.scale}, fields={fields})"
