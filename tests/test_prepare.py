"""MM-CelebA-HQ preparation: resize filter, split lists, damaged/missing files, idempotence."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from PIL import Image

from llvfsr.data.prepare import PrepareError, find_images, load_id_list, main, prepare

SIZE = 256


def face(seed: int, side: int) -> Image.Image:
    """A smooth random image (random noise would make JPEG size and resize tests meaningless)."""
    coarse = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((side, side), Image.BICUBIC)


@pytest.fixture
def celeba(tmp_path):
    """CelebAMask-HQ layout (CelebA-HQ-img/<id>.jpg, 512 px), ids 0-5, id 3 truncated; MM-CelebA-HQ text/ and lists."""
    root = tmp_path / "CelebAMask-HQ"
    images = root / "CelebA-HQ-img"
    images.mkdir(parents=True)
    for i in range(6):
        face(i, 512).save(images / f"{i}.jpg", quality=95)
    data = (images / "3.jpg").read_bytes()
    (images / "3.jpg").write_bytes(data[: len(data) // 3])  # truncated download
    mm = tmp_path / "multi-modal-celeba"
    (mm / "text").mkdir(parents=True)
    for i in range(7):
        if i != 5:  # no text for face 5
            (mm / "text" / f"{i}.txt").write_text("".join(f"sentence {k} about face {i}. \n" for k in range(10)))
    for split, ids in (("train", ["0", "1", "2", "3"]), ("test", ["4", "5", "6"])):  # face 6 has no image
        (mm / split).mkdir()
        with open(mm / split / "filenames.pickle", "wb") as f:
            pickle.dump(ids, f, protocol=2)
    return root, mm


def test_prepare_resizes_with_the_stated_filter_and_reports_problems(celeba, tmp_path):
    root, mm = celeba
    out = tmp_path / "out"
    report = prepare(root, out, text_dir=mm / "text", workers=2, progress=False)
    assert report.images_found == 6 and report.written == 5 and report.kept_existing == 0
    assert report.missing == ["6"]
    assert set(report.damaged) == {"3"} and "decode" in report.damaged["3"]
    assert report.missing_text == ["5"] and report.texts_written == 6
    assert "filenames.pickle" in report.split_source and report.split_sizes == {"train": 4, "test": 3}
    assert any("official split has 24000" in w for w in report.warnings)
    assert any("5 faces came from copies under 1024 px" in w for w in report.warnings)
    assert report.source_sizes == {"512x512 JPEG": 5}
    assert not report.ok
    for i in ("0", "4"):
        written = np.asarray(Image.open(out / "images" / f"{i}.png"))
        with Image.open(root / "CelebA-HQ-img" / f"{i}.jpg") as src:
            expected = np.asarray(src.convert("RGB").resize((SIZE, SIZE), Image.BICUBIC))
        np.testing.assert_array_equal(written, expected)  # PIL antialiased bicubic, stored losslessly
    assert (out / "splits" / "train.txt").read_text().split() == ["0", "1", "2"]  # the damaged face left out
    assert (out / "splits" / "test.txt").read_text().split() == ["4", "5"]  # the missing face left out
    assert (out / "text" / "0.txt").read_text().splitlines()[9] == "sentence 9 about face 0."
    saved = json.loads((out / "prepare_report.json").read_text())
    assert saved["missing"] == ["6"] and "BICUBIC" in saved["resize_filter"]


def test_prepare_is_idempotent_and_resumes(celeba, tmp_path):
    root, mm = celeba
    out = tmp_path / "out"
    prepare(root, out, text_dir=mm / "text", progress=False)
    before = (out / "images" / "1.png").stat().st_mtime_ns
    (out / "images" / "2.png").unlink()  # as if the first run had been killed before this face
    (out / "images" / "4.png").write_bytes(b"half a png")  # or killed while writing it
    again = prepare(root, out, text_dir=mm / "text", progress=False)
    assert again.written == 2 and again.kept_existing == 3
    assert (out / "images" / "1.png").stat().st_mtime_ns == before
    assert Image.open(out / "images" / "4.png").size == (SIZE, SIZE)


def test_small_jpeg_refused_unless_allowed_and_small_png_copied(tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    face(0, 256).save(images / "0.jpg", quality=75)
    face(1, 256).save(images / "1.png")
    face(2, 300).save(images / "2.png")
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.txt").write_text("0.jpg\n1\n")
    (lists / "test.txt").write_text("00002.png\n")
    report = prepare(images, tmp_path / "out", split_dir=lists, progress=False)
    assert set(report.damaged) == {"0", "2"}
    assert "re-compressed" in report.damaged["0"] and "too small" in report.damaged["2"]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out/images/1.png")), np.asarray(face(1, 256)))
    allowed = prepare(images, tmp_path / "out2", split_dir=lists, allow_small_jpeg=True, progress=False)
    assert "0" not in allowed.damaged and any("JPEG" in w for w in allowed.warnings)


def test_split_sources(tmp_path, celeba):
    root, mm = celeba
    (tmp_path / "mine_train.txt").write_text("0\n1\n")
    (tmp_path / "mine_test.txt").write_text("2\n")
    report = prepare(root, tmp_path / "a", train_list=tmp_path / "mine_train.txt", test_list=tmp_path / "mine_test.txt",
                     progress=False)  # fmt: skip
    assert report.split_source.startswith("user lists") and report.split_sizes == {"train": 2, "test": 1}
    with pytest.raises(PrepareError, match="--sequential-split"):
        prepare(root, tmp_path / "b", progress=False)
    seq = prepare(root, tmp_path / "c", sequential_split=True, progress=False)
    assert seq.split_sizes == {"train": 24000, "test": 6000} and "NOT the official" in seq.split_source
    assert len(seq.missing) == 30000 - 6 and not any("official split has" in w for w in seq.warnings)
    (tmp_path / "mine_test.txt").write_text("1\n")
    with pytest.raises(PrepareError, match="share 1 ids"):
        prepare(root, tmp_path / "d", train_list=tmp_path / "mine_train.txt", test_list=tmp_path / "mine_test.txt")


def test_id_lists_and_layouts(tmp_path):
    (tmp_path / "x.pickle").write_bytes(pickle.dumps([b"12", "00034.jpg", "celeba/7"]))
    assert load_id_list(tmp_path / "x.pickle") == ["12", "34", "7"]
    (tmp_path / "evil.pickle").write_bytes(pickle.dumps([np.int64(3)]))  # any class at all is refused
    with pytest.raises(PrepareError, match="refusing"):
        load_id_list(tmp_path / "evil.pickle")
    (tmp_path / "cut.pickle").write_bytes(pickle.dumps(["1", "2"])[:-3])  # a truncated download
    with pytest.raises(PrepareError, match="cut.pickle: not a list"):
        load_id_list(tmp_path / "cut.pickle")
    flat = tmp_path / "flat"
    flat.mkdir()
    face(0, 8).save(flat / "00042.png")
    (flat / "notes.txt").write_text("not an image")
    assert list(find_images(flat)) == ["42"]
    with pytest.raises(PrepareError, match="no CelebA-HQ images"):
        find_images(tmp_path / "x.pickle").keys()


def test_cli_exit_codes(celeba, tmp_path, capsys):
    root, mm = celeba
    assert main(["--images", str(root), "--out", str(tmp_path / "o"), "--text", str(mm / "text")]) == 1
    assert "missing images: 1" in capsys.readouterr().out
    assert main(["--images", str(root), "--out", str(tmp_path / "p")]) == 2  # no split lists
    lists = tmp_path / "ok"
    lists.mkdir()
    (lists / "train.txt").write_text("0\n1\n")
    (lists / "test.txt").write_text("2\n")
    assert main(["--images", str(root), "--out", str(tmp_path / "q"), "--split-dir", str(lists)]) == 0


def test_prepared_folder_reads_as_a_dataset_with_text(celeba, tmp_path):
    import llvfsr.data.datasets as datasets
    from llvfsr.priors.sources import ItemContext, make_source

    root, mm = celeba
    out = tmp_path / "out"
    prepare(root, out, text_dir=mm / "text", progress=False)
    data = datasets.open_dataset(
        out / "images", "train", split_file=out / "splits" / "train.txt", text_dir=out / "text"
    )
    assert len(data) == 3 and data.load_hr(2).shape == (SIZE, SIZE, 3)
    np.testing.assert_array_equal(data.load_hr(1), np.asarray(Image.open(out / "images" / "1.png")))
    items = [ItemContext(i, data.item_id(i), data) for i in range(len(data))]
    captions = make_source("caption", "mmcelebahq")(None, SIZE, items)
    assert captions == [f"sentence 0 about face {i}." for i in range(3)]


def test_256_px_inputs_at_a_smaller_size_follow_the_same_rule(tmp_path, capsys):
    """--size 64 takes what --size 256 takes (issue 12 item 4): 256 px PNGs, and 256 px JPEGs with the flag."""
    images = tmp_path / "imgs"
    images.mkdir()
    face(0, 256).save(images / "0.jpg", quality=75)
    face(1, 256).save(images / "1.png")
    (tmp_path / "train.txt").write_text("0\n")
    (tmp_path / "test.txt").write_text("1\n")
    lists = ["--train-list", str(tmp_path / "train.txt"), "--test-list", str(tmp_path / "test.txt")]
    argv = ["--images", str(images), *lists, "--size", "64", "--workers", "1"]
    assert main([*argv, "--out", str(tmp_path / "refused")]) == 1  # no flag: the JPEG is refused, not "too small"
    assert "re-compressed" in capsys.readouterr().out
    assert main([*argv, "--out", str(tmp_path / "out"), "--allow-256-jpeg"]) == 0
    assert "256 px JPEG inputs were used" in capsys.readouterr().out
    for i, suffix in ((0, "jpg"), (1, "png")):
        with Image.open(images / f"{i}.{suffix}") as src:
            expected = np.asarray(src.convert("RGB").resize((64, 64), Image.BICUBIC))
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "images" / f"{i}.png")), expected)
