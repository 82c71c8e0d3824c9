"""Prepare MM-CelebA-HQ for training: 256x256 PNG faces, the text folder and the train/test split lists.

`python -m llvfsr.data.prepare --images DIR --text DIR --out DIR` writes

    OUT/images/<id>.png      256x256 RGB, PIL antialiased bicubic from the >= 512 px originals, lossless PNG
    OUT/text/<id>.txt        the face's MM-CelebA-HQ sentences, one per line (ten per face)
    OUT/splits/train.txt     one id per line (24,000 in the official split)
    OUT/splits/test.txt      one id per line (6,000)
    OUT/prepare_report.json  what was written, skipped, missing or damaged, and which split and filter were used

which `llvfsr.data.datasets.FolderFaces(OUT/images, split, split_file=OUT/splits/<split>.txt, text_dir=OUT/text)`
reads. Image ids are CelebA-HQ indices as written in file names (`0.jpg` .. `29999.jpg`, also `00000.png`).

The split. MM-CelebA-HQ (Xia et al., TediGAN, CVPR 2021) defines it by two lists shipped with the dataset in
the AttnGAN layout: `train/filenames.pickle` (24,000 names) and `test/filenames.pickle` (6,000 names), next to
its `image/` and `text/` folders; LLV-FSR follows this "official setting" (paper Sec. 4.1). This tool reads
those pickles (from `--split-dir`, or beside the text folder), or the user's own lists (`--train-list`,
`--test-list`: text files of ids or file names, or such pickles). Without them it stops, unless
`--sequential-split` is given: ids 0-23999 train, 24000-29999 test, recorded as not the official split.

The resize. Every image is resized to 256x256 with PIL's BICUBIC filter, which is antialiased (its support
widens with the downscale factor) and matches the degradation's filter family. Inputs must be square and at
least 512 px (CelebA-HQ's 1024 px originals, MM-CelebA-HQ's 512 px copies). 256 px JPEGs are refused: the
re-compressed copies found on the web are softer and blockier and inflate every score (DESIGN.md);
`--allow-256-jpeg` takes them anyway, with a warning in the report. 256 px PNGs are taken as they are. A 256 px
input that is taken is copied at `--size 256` and resized like any other at a smaller `--size`.

The tool is idempotent and resumable: an output that exists and decodes at 256x256 is kept, new files are
written to a temporary name and renamed, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from llvfsr.errors import UserError, cli_entry

OFFICIAL_SIZES = {"train": 24_000, "test": 6_000}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
RESIZE_FILTER = "PIL Image.resize BICUBIC (antialiased), RGB, saved as PNG"
MIN_SOURCE_SIZE = 512
WEB_COPY_SIZE = 256  # the side of the prepared copies found on the web (PNG: taken; JPEG: only if allowed)
_IMAGE_SUBDIRS = ("CelebA-HQ-img", "CelebAMask-HQ/CelebA-HQ-img", "image", "images", "celeba-hq", "CelebA-HQ")


class PrepareError(UserError, ValueError):
    """The inputs cannot be prepared (no images, no split lists, inconsistent lists); the message says what to do.

    A bad command line: the CLI exits with status 2."""

    exit_code = 2


@dataclass
class PrepareReport:
    """What a `prepare` run found and did (written to OUT/prepare_report.json)."""

    images_found: int = 0
    written: int = 0
    kept_existing: int = 0
    missing: list[str] = field(default_factory=list)  # ids in a split list with no image
    damaged: dict[str, str] = field(default_factory=dict)  # id -> why (undecodable, not square, too small, ...)
    texts_written: int = 0
    missing_text: list[str] = field(default_factory=list)
    bad_text: dict[str, str] = field(default_factory=dict)
    split_source: str = ""
    split_sizes: dict[str, int] = field(default_factory=dict)
    source_sizes: dict[str, int] = field(default_factory=dict)  # "1024x1024 JPEG" -> count
    resize_filter: str = RESIZE_FILTER
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.damaged or self.missing_text or self.bad_text)


def _image_id(path: Path) -> str | None:
    match = re.fullmatch(r"0*(\d+)", path.stem)
    return str(int(match.group(1))) if match else None


def find_images(root: Path) -> dict[str, Path]:
    """Map CelebA-HQ id -> image file, for `root/<id>.<ext>` or one of the common sub-folders (CelebA-HQ-img/, ...)."""
    root = Path(root)
    for folder in (root, *(root / sub for sub in _IMAGE_SUBDIRS)):
        if not folder.is_dir():
            continue
        found = {}
        for path in folder.iterdir():
            image_id = _image_id(path) if path.suffix.lower() in IMAGE_SUFFIXES else None
            if image_id is not None:
                found.setdefault(image_id, path)
        if found:
            return found
    raise PrepareError(f"no CelebA-HQ images (<id>.jpg / <id>.png) in {root} or its sub-folders {_IMAGE_SUBDIRS}")


class _ListUnpickler(pickle.Unpickler):
    """Only plain containers and strings: a split list never needs code, so nothing else is loaded."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a split list")


def load_id_list(path: Path) -> list[str]:
    """Ids from a split list: a pickle of names (AttnGAN style) or a text file, one id or file name per line."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        if path.suffix in (".pickle", ".pkl"):
            names = _ListUnpickler(io.BytesIO(raw), encoding="latin1").load()
        else:
            names = [line.strip() for line in raw.decode("utf-8").splitlines() if line.strip()]
    except (pickle.UnpicklingError, EOFError, UnicodeDecodeError, ValueError) as err:  # damaged or foreign file
        raise PrepareError(f"{path}: not a list of CelebA-HQ ids ({err})") from err
    ids = []
    for name in names:
        name = name.decode() if isinstance(name, bytes) else str(name)
        image_id = _image_id(Path(name.strip()))
        if image_id is None:
            raise PrepareError(f"{path}: {name!r} is not a CelebA-HQ id or file name")
        ids.append(image_id)
    return ids


def resolve_split(
    text_dir: Path | None, split_dir: Path | None, train_list: Path | None, test_list: Path | None, sequential: bool
) -> tuple[dict[str, list[str]], str]:
    """The train/test id lists and where they came from (see the module docstring for the order)."""
    if train_list or test_list:
        if not (train_list and test_list):
            raise PrepareError("give both --train-list and --test-list")
        return {
            "train": load_id_list(train_list),
            "test": load_id_list(test_list),
        }, f"user lists {train_list}, {test_list}"
    candidates = [d for d in (split_dir, text_dir and Path(text_dir).parent) if d]
    for folder in candidates:
        for pattern in ("{}/filenames.pickle", "{}.txt", "{}_list.txt"):
            paths = {s: Path(folder) / pattern.format(s) for s in ("train", "test")}
            if all(p.is_file() for p in paths.values()):
                return {
                    s: load_id_list(p) for s, p in paths.items()
                }, f"MM-CelebA-HQ lists {paths['train']}, {paths['test']}"
    if sequential:
        ids = {"train": [str(i) for i in range(24_000)], "test": [str(i) for i in range(24_000, 30_000)]}
        return ids, "sequential 0-23999 / 24000-29999 (NOT the official MM-CelebA-HQ lists)"
    raise PrepareError(
        "no split lists: pass --split-dir with MM-CelebA-HQ's train/filenames.pickle and test/filenames.pickle, or "
        "--train-list/--test-list, or --sequential-split to use ids 0-23999 / 24000-29999 (not the official split)"
    )


def _check_split(split: dict[str, list[str]], report: PrepareReport) -> None:
    overlap = set(split["train"]) & set(split["test"])
    if overlap:
        raise PrepareError(f"train and test lists share {len(overlap)} ids, e.g. {sorted(overlap, key=int)[:5]}")
    for name, ids in split.items():
        if len(set(ids)) != len(ids):
            raise PrepareError(f"the {name} list repeats ids")
        if len(ids) != OFFICIAL_SIZES[name]:
            report.warnings.append(f"{name} list has {len(ids)} ids; the official split has {OFFICIAL_SIZES[name]}")
    report.split_sizes = {name: len(ids) for name, ids in split.items()}


def _is_done(path: Path, size: int) -> bool:
    try:
        with Image.open(path) as im:
            im.load()
            return im.size == (size, size) and im.mode == "RGB"
    except (OSError, ValueError):
        return False


def prepare_image(source: Path, target: Path, size: int = 256, allow_small_jpeg: bool = False) -> str:
    """Resize one face to size x size and store it as PNG (atomically).

    Returns:
        A description of the source ("1024x1024 JPEG"), for the report.

    Raises:
        ValueError: the source cannot be decoded, is not square, is too small, or is a refused 256 px JPEG.
    """
    try:
        with Image.open(source) as im:
            im.load()
            fmt, (w, h) = im.format or source.suffix.upper().lstrip("."), im.size
            rgb = im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot decode: {err}") from None
    desc = f"{w}x{h} {fmt}"
    if w != h:
        raise ValueError(f"not square ({desc})")
    jpeg = fmt in ("JPEG", "MPO")
    if w == WEB_COPY_SIZE and jpeg and not allow_small_jpeg:
        raise ValueError(f"refused: a {desc} is a re-compressed copy; use the 1024 px originals (or --allow-256-jpeg)")
    web_copy = w == WEB_COPY_SIZE and (fmt == "PNG" or jpeg) and size <= WEB_COPY_SIZE
    if w < max(MIN_SOURCE_SIZE, size) and not web_copy:
        raise ValueError(f"too small ({desc}); need square images of at least {max(MIN_SOURCE_SIZE, size)} px")
    # A source already at the target size is copied pixel for pixel (a PNG losslessly); any other is resized.
    out = rgb if w == size else rgb.resize((size, size), Image.BICUBIC)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    out.save(tmp, format="PNG")
    os.replace(tmp, target)
    return desc


def prepare_text(source: Path, target: Path) -> int:
    """Copy one MM-CelebA-HQ text file as clean UTF-8 lines; returns the number of sentences."""
    lines = [" ".join(line.split()) for line in source.read_text(encoding="utf-8", errors="strict").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise ValueError("no sentences")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return len(lines)


def prepare(
    images: Path,
    out: Path,
    text_dir: Path | None = None,
    split_dir: Path | None = None,
    train_list: Path | None = None,
    test_list: Path | None = None,
    sequential_split: bool = False,
    size: int = 256,
    allow_small_jpeg: bool = False,
    workers: int = 4,
    progress: bool = True,
) -> PrepareReport:
    """Prepare the split's faces, texts and lists under `out` (see the module docstring); never raises on a bad file.

    Raises:
        PrepareError: no images found, or no usable split lists.
    """
    out = Path(out)
    report = PrepareReport()
    found = find_images(images)
    report.images_found = len(found)
    split, report.split_source = resolve_split(text_dir, split_dir, train_list, test_list, sequential_split)
    _check_split(split, report)
    wanted = [i for name in ("train", "test") for i in split[name]]
    report.missing = [i for i in wanted if i not in found]
    for sub in ("images", "splits") + (("text",) if text_dir else ()):
        (out / sub).mkdir(parents=True, exist_ok=True)

    def one(image_id: str) -> tuple[str, str, str | None]:
        target = out / "images" / f"{image_id}.png"
        if _is_done(target, size):
            return image_id, "kept", None
        try:
            return image_id, "written", prepare_image(found[image_id], target, size, allow_small_jpeg)
        except ValueError as err:
            return image_id, "damaged", f"{found[image_id].name}: {err}"

    present = [i for i in wanted if i in found]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # PIL decodes and resizes without the GIL
        for image_id, status, info in tqdm(
            pool.map(one, present), total=len(present), desc="faces", disable=not progress
        ):
            if status == "kept":
                report.kept_existing += 1
            elif status == "written":
                report.written += 1
                report.source_sizes[info] = report.source_sizes.get(info, 0) + 1
            else:
                report.damaged[image_id] = info
    below_originals = sum(n for desc, n in report.source_sizes.items() if int(desc.split("x")[0]) < 1024)
    if below_originals:
        report.warnings.append(f"{below_originals} faces came from copies under 1024 px, not the CelebA-HQ originals")
    if any(desc.startswith(f"{WEB_COPY_SIZE}x{WEB_COPY_SIZE} JPEG") for desc in report.source_sizes):
        report.warnings.append("256 px JPEG inputs were used (--allow-256-jpeg): scores will not be comparable")

    if text_dir is not None:
        for image_id in tqdm(wanted, desc="texts", disable=not progress):
            source = Path(text_dir) / f"{image_id}.txt"
            if not source.is_file():
                report.missing_text.append(image_id)
                continue
            try:
                n = prepare_text(source, out / "text" / f"{image_id}.txt")
            except (OSError, ValueError) as err:
                report.bad_text[image_id] = f"{source.name}: {err}"
                continue
            report.texts_written += 1
            if n != 10:
                report.bad_text[image_id] = f"{source.name}: {n} sentences, MM-CelebA-HQ has 10"

    bad = set(report.missing) | set(report.damaged)
    for name, ids in split.items():
        (out / "splits" / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids if i not in bad))
    (out / "prepare_report.json").write_text(json.dumps(asdict(report), indent=1))
    return report


def _summary(report: PrepareReport) -> str:
    lines = [
        f"images found: {report.images_found}; written {report.written}, kept {report.kept_existing}",
        f"split: {report.split_source} {report.split_sizes}",
        f"resize: {report.resize_filter}; sources {report.source_sizes}",
        f"missing images: {len(report.missing)} {report.missing[:10]}",
        f"damaged images: {len(report.damaged)} {list(report.damaged.items())[:5]}",
        f"texts written: {report.texts_written}; missing {len(report.missing_text)}; bad {len(report.bad_text)}",
    ]
    return "\n".join(lines + [f"warning: {w}" for w in report.warnings])


@cli_entry()
def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns 0 when every listed face and text was prepared, 1 when some are missing or damaged."""
    parser = argparse.ArgumentParser(prog="python -m llvfsr.data.prepare", description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=Path, required=True, help="CelebA-HQ images: <id>.jpg files or CelebA-HQ-img/")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--text", type=Path, default=None, help="MM-CelebA-HQ text/ folder (<id>.txt, ten sentences)")
    parser.add_argument("--split-dir", type=Path, default=None, help="folder holding train/filenames.pickle, test/...")
    parser.add_argument("--train-list", type=Path, default=None, help="your own train list (ids or file names)")
    parser.add_argument("--test-list", type=Path, default=None, help="your own test list")
    parser.add_argument("--sequential-split", action="store_true", help="ids 0-23999 / 24000-29999 (not official)")
    parser.add_argument("--size", type=int, default=256, help="output side in pixels")
    parser.add_argument("--allow-256-jpeg", action="store_true", help="accept re-compressed 256 px JPEG inputs")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    if args.size < 1:
        parser.error(f"--size must be a positive number of pixels, got {args.size}")
    report = prepare(args.images, args.out, args.text, args.split_dir, args.train_list, args.test_list,
                     args.sequential_split, args.size, args.allow_256_jpeg, args.workers)  # fmt: skip
    print(_summary(report))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
