"""Face datasets: synthetic splits, real-face folders, their errors, skip_bad, texts and fingerprints."""

import logging

import numpy as np
import pytest
from PIL import Image

from llvfsr.data.datasets import (
    DatasetError,
    FolderFaces,
    SyntheticFaces,
    open_dataset,
    read_id_list,
)
from llvfsr.data.synthetic import render_face

HR = 32


def _face(k: int) -> np.ndarray:
    rng = np.random.default_rng(k)
    return rng.integers(0, 256, (HR, HR, 3), dtype=np.uint8)


def _write_folder(root, ids=("0", "1", "2", "3"), suffix=".png"):
    root.mkdir(parents=True, exist_ok=True)
    for k, image_id in enumerate(ids):
        Image.fromarray(_face(k)).save(root / f"{image_id}{suffix}")
    return root


def _split(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_folder_loads_the_listed_faces_in_list_order(tmp_path):
    root = _write_folder(tmp_path / "faces")
    split = _split(tmp_path / "test.txt", ["2", "0.jpg", "", "# comment", "3.png"])  # names and ids both accepted
    data = FolderFaces(root, "test", split_file=split, hr_size=HR)
    assert len(data) == 3 and [data.item_id(i) for i in range(3)] == ["2", "0", "3"]
    np.testing.assert_array_equal(data.load_hr(0), _face(2))  # PNG is lossless: exactly what was written
    batch = data.load_hr_batch([2, 1])
    assert batch.shape == (2, HR, HR, 3) and batch.dtype == np.uint8
    np.testing.assert_array_equal(batch[0], _face(3))
    np.testing.assert_array_equal(batch[1], _face(0))
    assert data.exact_priors(0) is None and data.texts(0) is None


def test_folder_without_split_list_takes_every_image_in_numeric_order(tmp_path):
    root = _write_folder(tmp_path / "faces", ids=("10", "9", "100"))
    data = FolderFaces(root, "test", hr_size=HR)
    assert [data.item_id(i) for i in range(3)] == ["9", "10", "100"]


def test_numeric_ids_match_zero_padded_file_names(tmp_path):
    root = _write_folder(tmp_path / "faces", ids=("00012", "00007"))
    data = FolderFaces(root, "test", split_file=_split(tmp_path / "s.txt", ["7", "12"]), hr_size=HR)
    np.testing.assert_array_equal(data.load_hr(1), _face(0))


def test_truncated_file_raises_naming_it(tmp_path):
    root = _write_folder(tmp_path / "faces")
    bad = root / "1.png"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    data = FolderFaces(root, "test", hr_size=HR)  # existence only at construction: cheap
    data.load_hr(0)
    with pytest.raises(DatasetError, match=r"1\.png"):
        data.load_hr(1)
    with pytest.raises(DatasetError, match=r"1\.png"):
        data.load_hr_batch([0, 1])


def test_corrupt_file_raises_naming_it(tmp_path):
    root = _write_folder(tmp_path / "faces")
    (root / "2.png").write_bytes(b"this is not an image at all")
    data = FolderFaces(root, "test", hr_size=HR)
    with pytest.raises(DatasetError, match=r"cannot decode image .*2\.png"):
        data.load_hr(2)
    assert isinstance(DatasetError("x"), ValueError)


def test_missing_listed_image_raises_naming_it(tmp_path):
    root = _write_folder(tmp_path / "faces")
    split = _split(tmp_path / "train.txt", ["0", "17", "1"])
    with pytest.raises(DatasetError, match=r"1 image\(s\) listed in .*train.txt not found .*first: \['17'\]"):
        FolderFaces(root, "train", split_file=split, hr_size=HR)
    with pytest.raises(DatasetError, match="split file"):
        FolderFaces(root, "train", split_file=tmp_path / "nope.txt", hr_size=HR)


def test_wrongly_sized_image_raises_with_the_expected_size(tmp_path):
    root = _write_folder(tmp_path / "faces")
    Image.fromarray(np.zeros((HR * 2, HR * 2, 3), np.uint8)).save(root / "3.png")
    data = FolderFaces(root, "test", hr_size=HR)
    with pytest.raises(DatasetError, match=rf"3\.png is 64x64, expected {HR}x{HR}"):
        data.load_hr(3)


def test_skip_bad_drops_missing_and_broken_images_and_logs_the_count(tmp_path, caplog):
    root = _write_folder(tmp_path / "faces", ids=("0", "1", "2", "3", "4"))
    (root / "1.png").write_bytes(b"garbage")
    Image.fromarray(np.zeros((HR + 1, HR, 3), np.uint8)).save(root / "3.png")
    split = _split(tmp_path / "test.txt", ["0", "1", "2", "3", "4", "99"])
    with caplog.at_level(logging.WARNING, logger="llvfsr.data.datasets"):
        data = FolderFaces(root, "test", split_file=split, hr_size=HR, skip_bad=True)
    assert [data.item_id(i) for i in range(len(data))] == ["0", "2", "4"]
    np.testing.assert_array_equal(data.load_hr_batch([0, 1, 2])[2], _face(4))
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "1 image(s)" in messages and "99" in messages  # the missing one
    assert "skipped 2 bad image(s) of 5" in messages  # the undecodable and the wrongly sized one


def test_validate_without_skip_bad_raises_on_the_first_bad_image(tmp_path):
    root = _write_folder(tmp_path / "faces")
    (root / "2.png").write_bytes(b"garbage")
    data = FolderFaces(root, "test", hr_size=HR)
    with pytest.raises(DatasetError, match=r"2\.png"):
        data.validate(progress=False)


def test_mmcelebahq_texts(tmp_path):
    root = _write_folder(tmp_path / "faces")
    texts = tmp_path / "text"
    texts.mkdir()
    sentences = [f"sentence {k} about the face." for k in range(10)]
    (texts / "0.txt").write_text("\n".join(sentences) + "\n\n")
    data = FolderFaces(root, "test", text_dir=texts, hr_size=HR)
    assert data.texts(0) == {"captions": sentences}
    with pytest.raises(DatasetError, match=r"1\.txt"):
        data.texts(1)


def test_prepared_root_layout_is_found(tmp_path):
    root = tmp_path / "prepared"
    _write_folder(root / "images", ids=("5", "6", "7"))
    (root / "splits").mkdir()
    _split(root / "splits" / "train.txt", ["5", "7"])
    _split(root / "splits" / "test.txt", ["6"])
    (root / "text").mkdir()
    (root / "text" / "6.txt").write_text("a woman.\n")
    train = open_dataset(root, "train", hr_size=HR)
    test = open_dataset(str(root), "test", hr_size=HR)
    assert isinstance(train, FolderFaces) and [train.item_id(i) for i in range(2)] == ["5", "7"]
    assert len(test) == 1 and test.texts(0) == {"captions": ["a woman."]}
    np.testing.assert_array_equal(test.load_hr(0), _face(1))
    with pytest.raises(DatasetError, match=r"no list for split 'val'.*val\.txt"):
        open_dataset(root, "val", hr_size=HR)  # never silently "every image" when the data has split lists


def test_fingerprint_identifies_the_data_and_rebuilds_it(tmp_path):
    root = _write_folder(tmp_path / "faces")
    data = open_dataset(root, "test", hr_size=HR)
    print_ = data.fingerprint()
    assert print_["name"] == "folder" and print_["n"] == 4 and print_["hr_size"] == HR and print_["split"] == "test"
    head = data.head(2)
    assert len(head) == 2 and len(data) == 4 and head.fingerprint() != print_
    rebuilt = open_dataset(print_["root"], "test", n=2, hr_size=HR, split_file=None, text_dir=None, seed=None)
    assert rebuilt.fingerprint() == head.fingerprint()


def test_synthetic_faces_are_the_generator_faces_with_disjoint_splits():
    train = SyntheticFaces("train", n=3, seed=1, hr_size=64)
    test = open_dataset("synthetic", "test", n=3, seed=1, hr_size=64)
    assert isinstance(test, SyntheticFaces) and len(test) == 3 and test.item_id(2) == "2"
    np.testing.assert_array_equal(train.load_hr(1), render_face(10, 1, 64).image)
    np.testing.assert_array_equal(test.load_hr(1), render_face(12, 1, 64).image)
    assert not np.array_equal(train.load_hr(0), test.load_hr(0))
    face = test.exact_priors(1)
    assert face.mask.shape == (64, 64) and face.depth.shape == (64, 64)
    assert test.texts(0) is None
    assert test.load_hr_batch([0, 2]).shape == (2, 64, 64, 3)
    with pytest.raises(IndexError):
        test.load_hr(3)
    fingerprint = test.fingerprint()
    assert {k: fingerprint[k] for k in ("name", "split", "n", "seed", "hr_size")} == {
        "name": "synthetic", "split": "test", "n": 3, "seed": 1, "hr_size": 64}  # fmt: skip
    assert test.head(2).fingerprint()["n"] == 2 and train.fingerprint() != test.fingerprint()
    assert open_dataset("synthetic", "train", n=3, seed=2, hr_size=64).fingerprint() != train.fingerprint()


def test_open_dataset_rejects_unknown_names(tmp_path):
    with pytest.raises(DatasetError, match="'celeba'.*synthetic"):
        open_dataset("celeba", "test")
    with pytest.raises(ValueError, match="unknown split"):
        open_dataset("synthetic", "dev")


def test_read_id_list_strips_extensions_only_for_images(tmp_path):
    path = _split(tmp_path / "ids.txt", ["12.jpg", "sub/13.png", "14", "a.b"])
    assert read_id_list(path) == ["12", "13", "14", "a.b"]
