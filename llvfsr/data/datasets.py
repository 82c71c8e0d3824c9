"""Face datasets behind one interface: the built-in synthetic faces and folders of real HR faces.

A dataset is a plain indexable collection of uint8 RGB HR faces with stable ids; the trainer loads a whole split
into memory (`llvfsr.trial_data`), so there is no DataLoader here. `fingerprint()` identifies the data for
the prior-store manifests: two datasets with equal fingerprints hold the same faces in the same order.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from llvfsr.data.synthetic import GENERATOR_VERSION, SyntheticFace, render_face
from llvfsr.data.synthetic_render import IRIS_TEXTURES
from llvfsr.errors import UserError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# Synthetic splits are disjoint face families: family seed = 10 * seed + offset, unique over (seed, split).
SYNTHETIC_SPLIT_OFFSET = {"train": 0, "val": 1, "test": 2}


class DatasetError(UserError, ValueError):
    """A face image or list entry is missing, unreadable or not what the dataset expects (the message names it)."""


class FaceDataset:
    """Base of every face dataset.

    Attributes:
        name: "synthetic" or "folder".
        split: "train", "val" or "test".
        hr_size: side of the square HR faces in pixels.
    """

    name: str
    split: str
    hr_size: int

    def __len__(self) -> int:
        raise NotImplementedError

    def item_id(self, i: int) -> str:
        """Stable id of item `i` (e.g. "12" for a synthetic face, "12345" for CelebA-HQ's 12345.jpg)."""
        raise NotImplementedError

    def load_hr(self, i: int) -> np.ndarray:
        """HR face `i`, uint8 [H, W, 3] RGB."""
        raise NotImplementedError

    def load_hr_batch(self, idx: list[int]) -> np.ndarray:
        """HR faces `idx`, uint8 [B, H, W, 3] RGB."""
        out = np.empty((len(idx), self.hr_size, self.hr_size, 3), np.uint8)
        for row, i in enumerate(idx):
            out[row] = self.load_hr(i)
        return out

    def exact_priors(self, i: int) -> SyntheticFace | None:
        """The generator's exact priors of item `i` (synthetic faces only; None otherwise)."""
        return None

    def texts(self, i: int) -> dict | None:
        """Human-written text of item `i`, ``{"captions": [sentences]}``, when the dataset has a text folder."""
        return None

    def fingerprint(self) -> dict:
        """What identifies the data (goes into prior-store manifests): name, split, size, seed or root, ..."""
        raise NotImplementedError

    def head(self, n: int) -> FaceDataset:
        """The dataset restricted to its first `n` items."""
        raise NotImplementedError


class SyntheticFaces(FaceDataset):
    """`n` procedural faces of `llvfsr.data.synthetic`; item i is ``render_face(10 * seed + split offset, i)``.

    Rendering is deterministic, so nothing is stored; a small cache keeps the last faces because the prior store
    asks for the mask, depth, texts and landmarks of the same face one after another.
    """

    name = "synthetic"

    def __init__(
        self,
        split: str = "train",
        n: int = 1000,
        seed: int = 0,
        hr_size: int = 256,
        cache: int = 64,
        zoom: float = 1.0,
        iris: str = "pinwheel",
    ):
        if split not in SYNTHETIC_SPLIT_OFFSET:
            raise ValueError(f"unknown split {split!r}; synthetic splits are {SPLITS}")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if iris not in IRIS_TEXTURES:
            raise ValueError(f"synthetic iris must be one of {IRIS_TEXTURES}, got {iris!r}")
        self.split, self.n, self.seed, self.hr_size, self.zoom = split, int(n), int(seed), int(hr_size), float(zoom)
        self.iris = iris
        self.family_seed = 10 * self.seed + SYNTHETIC_SPLIT_OFFSET[split]
        self._cache: OrderedDict[int, SyntheticFace] = OrderedDict()
        self._cache_size = cache

    def __len__(self) -> int:
        return self.n

    def _check(self, i: int) -> int:
        if not 0 <= i < self.n:
            raise IndexError(f"synthetic {self.split} index {i} out of range [0, {self.n})")
        return int(i)

    def item_id(self, i: int) -> str:
        return str(self._check(i))

    def exact_priors(self, i: int) -> SyntheticFace:
        i = self._check(i)
        face = self._cache.get(i)
        if face is None:
            face = render_face(self.family_seed, i, self.hr_size, zoom=self.zoom, iris=self.iris)
            self._cache[i] = face
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(i)
        return face

    def load_hr(self, i: int) -> np.ndarray:
        return self.exact_priors(i).image

    def fingerprint(self) -> dict:
        found = {"name": self.name, "split": self.split, "n": self.n, "seed": self.seed, "hr_size": self.hr_size,
                 "generator": "llvfsr.data.synthetic", "generator_version": GENERATOR_VERSION}  # fmt: skip
        if self.zoom != 1:  # only when set, so stores of unzoomed faces keep their fingerprint
            found["zoom"] = self.zoom
        if self.iris != "pinwheel":  # likewise
            found["iris"] = self.iris
        return found

    def head(self, n: int) -> SyntheticFaces:
        return SyntheticFaces(
            self.split, min(int(n), self.n), self.seed, self.hr_size, self._cache_size, self.zoom, self.iris
        )


def read_id_list(path: str | os.PathLike) -> list[str]:
    """Ids from a split file: one id or file name per line (extensions dropped); blank and # lines ignored."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"split file {path} does not exist")
    ids = []
    for line in path.read_text().splitlines():
        entry = line.strip()
        if entry and not entry.startswith("#"):
            name = Path(entry).name
            ids.append(Path(name).stem if Path(name).suffix.lower() in IMAGE_SUFFIXES else name)
    return ids


def _numeric_key(stem: str) -> str | None:
    return str(int(stem)) if stem.isdigit() else None


class FolderFaces(FaceDataset):
    """Real HR faces from a folder: CelebA-HQ / MM-CelebA-HQ prepared by `llvfsr.data.prepare`, or any folder.

    `root` is either a folder of images (`<id>.png|jpg`) or a prepared root holding `images/`, `splits/` and
    `text/` (used as defaults for the image folder, `split_dir` and `text_dir`). Ids match file stems; a numeric
    id also matches a zero-padded name (id "12" finds 00012.png).

    Args:
        root: image folder or prepared root.
        split: "train", "val" or "test".
        split_file: list of the split's ids (one per line; file names accepted). Default: `split_dir/<split>.txt`
            (an error when missing), or every image of the folder in numeric/sorted order when there is no split_dir.
        text_dir: MM-CelebA-HQ text folder (`<id>.txt`, ten sentences one per line), optional.
        hr_size: the expected side of every image; other sizes raise `DatasetError`.
        skip_bad: drop missing, unreadable or wrongly sized images (counted in a logged warning) instead of raising.
            Existence is checked when the dataset is built; with `skip_bad` every image is also decoded then
            (`validate()`), so the dataset's items are stable from the start.
        split_dir: folder of `<split>.txt` lists (default `root/splits` when present).
    """

    name = "folder"

    def __init__(self, root: str | os.PathLike, split: str = "test", split_file: str | os.PathLike | None = None,
                 text_dir: str | os.PathLike | None = None, hr_size: int = 256, skip_bad: bool = False,
                 split_dir: str | os.PathLike | None = None):  # fmt: skip
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise DatasetError(f"dataset folder {self.root} does not exist")
        prepared = (self.root / "images").is_dir()
        self.image_dir = self.root / "images" if prepared else self.root
        if split_dir is None and (self.root / "splits").is_dir():
            split_dir = self.root / "splits"
        if split_file is None and split_dir is not None:
            split_file = Path(split_dir) / f"{split}.txt"
            if not split_file.is_file():  # never fall back to "every image" when the data has split lists
                raise DatasetError(f"no list for split {split!r}: expected {split_file}")
        if text_dir is None and prepared and (self.root / "text").is_dir():
            text_dir = self.root / "text"
        self.split, self.hr_size, self.skip_bad = split, int(hr_size), skip_bad
        self.split_file = str(Path(split_file).resolve()) if split_file is not None else None
        self.text_dir = Path(text_dir).resolve() if text_dir is not None else None
        if self.text_dir is not None and not self.text_dir.is_dir():
            raise DatasetError(f"text folder {self.text_dir} does not exist")
        self.ids, self.files = self._resolve_files()
        if skip_bad:
            self.validate()

    def _resolve_files(self) -> tuple[list[str], list[Path]]:
        by_stem, by_number = {}, {}
        with os.scandir(self.image_dir) as entries:
            for entry in entries:
                stem, suffix = os.path.splitext(entry.name)
                if suffix.lower() in IMAGE_SUFFIXES and entry.is_file():
                    by_stem.setdefault(stem, entry.name)
                    number = _numeric_key(stem)
                    if number is not None:
                        by_number.setdefault(number, entry.name)
        if self.split_file is None:
            wanted = sorted(by_stem, key=lambda s: (_numeric_key(s) is None, int(s) if s.isdigit() else 0, s))
        else:
            wanted = read_id_list(self.split_file)
        ids, files, missing = [], [], []
        for image_id in wanted:
            name = by_stem.get(image_id) or (by_number.get(_numeric_key(image_id) or ""))
            if name is None:
                missing.append(image_id)
            else:
                ids.append(image_id)
                files.append(self.image_dir / name)
        if missing:
            where = f"listed in {self.split_file} " if self.split_file else ""
            detail = (f"{len(missing)} image(s) {where}not found in {self.image_dir} (expected "
                      f"{self.image_dir / (missing[0] + '.png')} or .jpg), first: {missing[:5]}")  # fmt: skip
            if not self.skip_bad:
                raise DatasetError(detail)
            log.warning("skipping %s", detail)
        if not ids:
            raise DatasetError(f"no images for split {self.split!r} in {self.image_dir}")
        return ids, files

    def __len__(self) -> int:
        return len(self.ids)

    def item_id(self, i: int) -> str:
        return self.ids[i]

    def _read(self, path: Path) -> np.ndarray:
        try:
            with Image.open(path) as image:
                image.load()  # decodes fully: truncated or corrupt files fail here, not later
                rgb = np.asarray(image.convert("RGB"))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            raise DatasetError(f"cannot decode image {path}: {err}") from err
        if rgb.shape[:2] != (self.hr_size, self.hr_size):
            raise DatasetError(f"image {path} is {rgb.shape[1]}x{rgb.shape[0]}, expected {self.hr_size}x{self.hr_size}"
                               " (prepare real faces with `python -m llvfsr.data.prepare`)")  # fmt: skip
        return rgb

    def load_hr(self, i: int) -> np.ndarray:
        return self._read(self.files[i])

    def validate(self, progress: bool = True) -> list[tuple[str, str]]:
        """Decode every image; drop the bad ones (`skip_bad`) with a logged count, or raise on the first one.

        Returns:
            (file, reason) of every dropped image.
        """
        bad, keep = [], []
        for k, path in enumerate(tqdm(self.files, desc=f"checking {self.split} faces", disable=not progress)):
            try:
                self._read(path)
                keep.append(k)
            except DatasetError as err:
                if not self.skip_bad:
                    raise
                bad.append((str(path), str(err)))
        if bad:
            log.warning("skipped %d bad image(s) of %d in %s (first: %s)", len(bad), len(self.files), self.image_dir,
                        bad[0][1])  # fmt: skip
            self.ids = [self.ids[k] for k in keep]
            self.files = [self.files[k] for k in keep]
            if not self.ids:
                raise DatasetError(f"every image of split {self.split!r} in {self.image_dir} is bad")
        return bad

    def texts(self, i: int) -> dict | None:
        if self.text_dir is None:
            return None
        image_id = self.ids[i]
        candidates = [self.text_dir / f"{image_id}.txt"]
        if _numeric_key(image_id) is not None:
            candidates.append(self.text_dir / f"{_numeric_key(image_id)}.txt")
        for path in candidates:
            if path.is_file():
                sentences = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
                return {"captions": sentences}
        raise DatasetError(f"no text for face {image_id!r}: expected {candidates[0]}")

    def fingerprint(self) -> dict:
        digest = hashlib.sha1("\n".join(self.ids).encode()).hexdigest()
        return {"name": self.name, "root": str(self.root), "split": self.split, "split_file": self.split_file,
                "text_dir": str(self.text_dir) if self.text_dir else None, "hr_size": self.hr_size,
                "n": len(self.ids), "ids_sha1": digest}  # fmt: skip

    def head(self, n: int) -> FolderFaces:
        clone = object.__new__(FolderFaces)
        clone.__dict__.update(self.__dict__)
        clone.ids, clone.files = self.ids[: int(n)], self.files[: int(n)]
        return clone


def open_dataset(name_or_root: str | os.PathLike, split: str, n: int | None = None, **kwargs) -> FaceDataset:
    """The dataset named "synthetic", or the `FolderFaces` at a path.

    Args:
        name_or_root: "synthetic", or a folder (see `FolderFaces`).
        split: "train", "val" or "test".
        n: synthetic: number of faces (default 1000); folder: keep the first `n` items (default all).
        **kwargs: passed to `SyntheticFaces` (seed, hr_size) or `FolderFaces` (split_file, text_dir, hr_size,
            skip_bad, split_dir); None values are ignored.

    Raises:
        DatasetError: `name_or_root` is neither "synthetic" nor an existing folder.
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if str(name_or_root) == "synthetic":
        return SyntheticFaces(split, 1000 if n is None else n, **kwargs)
    if not Path(name_or_root).expanduser().is_dir():
        raise DatasetError(f"unknown dataset {str(name_or_root)!r}: expected 'synthetic' or an existing folder of "
                           "HR faces (e.g. the output of `python -m llvfsr.data.prepare`)")  # fmt: skip
    kwargs.pop("seed", None)  # a folder has no generator seed (kept in manifests of synthetic stores only)
    dataset = FolderFaces(name_or_root, split, **kwargs)
    return dataset if n is None else dataset.head(n)
