"""The `dlib` landmark source with a tiny 68-point shape predictor trained in the test (no model download)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from llvfsr.priors.sources import ItemContext, make_source
from llvfsr.priors.sources.dlib_landmarks import DlibLandmarks, default_predictor_path, import_dlib

HR = 64


def items(n: int) -> list[ItemContext]:
    return [ItemContext(index=i, item_id=str(i), dataset=None) for i in range(n)]


def lr_faces(n: int = 3, size: int = 16) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def dlib():
    return pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def predictor(dlib):
    """A real dlib 68-point shape predictor, trained for a moment on random images and random point sets."""
    rng = np.random.default_rng(0)
    images, objects = [], []
    for _ in range(4):
        images.append(rng.integers(0, 256, (HR, HR, 3), dtype=np.uint8))
        points = [dlib.point(int(x), int(y)) for x, y in rng.integers(12, 52, (68, 2))]
        objects.append([dlib.full_object_detection(dlib.rectangle(8, 8, 56, 56), points)])
    options = dlib.shape_predictor_training_options()
    options.tree_depth, options.cascade_depth, options.num_trees_per_cascade_level = 2, 2, 3
    options.oversampling_amount, options.num_threads, options.be_verbose = 1, 1, False
    return dlib.train_shape_predictor(images, objects, options)


def reference(predictor, dlib, lr: np.ndarray, box) -> np.ndarray:
    out = []
    for im in lr:
        image = np.asarray(Image.fromarray(im).resize((HR, HR), Image.BICUBIC))
        shape = predictor(image, box)
        out.append([(shape.part(i).x, shape.part(i).y) for i in range(68)])
    return np.clip(np.asarray(out, dtype=np.float32), 0, HR - 1)


def test_landmarks_fall_back_to_full_image_box(predictor, dlib):
    lr = lr_faces()
    source = make_source("landmarks", "dlib", predictor=predictor)
    out = source(lr, HR, items(3))
    assert all(p.shape == (68, 2) and p.dtype == np.float32 for p in out)
    assert source.fallback_count == 3  # noise has no face for the HOG detector
    np.testing.assert_array_equal(np.stack(out), reference(predictor, dlib, lr, dlib.rectangle(0, 0, HR - 1, HR - 1)))
    assert np.stack(out).std() > 0  # not a constant answer
    np.testing.assert_array_equal(np.stack(source(lr, HR, items(3))), np.stack(out))


def test_canonical_fallback_box(predictor, dlib):
    lr = lr_faces()
    out = DlibLandmarks(predictor=predictor, fallback_box="canonical")(lr, HR, items(3))
    box = dlib.rectangle(round(0.24 * 63), round(0.30 * 63), round(0.76 * 63), round(0.86 * 63))
    np.testing.assert_array_equal(np.stack(out), reference(predictor, dlib, lr, box))
    with pytest.raises(ValueError, match="fallback_box"):
        DlibLandmarks(predictor=predictor, fallback_box="centre")


def test_largest_detection_is_used(predictor, dlib):
    source = DlibLandmarks(predictor=predictor)
    small, large = dlib.rectangle(0, 0, 9, 9), dlib.rectangle(10, 10, 49, 49)
    source.detector = lambda image, upsample: [small, large]  # stands in for HOG's detections
    assert source.face_box(np.zeros((HR, HR, 3), np.uint8)) == large and source.fallback_count == 0


def test_loads_predictor_file(predictor, tmp_path):
    path = tmp_path / "tiny_68.dat"
    predictor.save(str(path))
    lr = lr_faces(2)
    source = DlibLandmarks(predictor_path=str(path))
    np.testing.assert_array_equal(
        np.stack(source(lr, HR, items(2))), np.stack(DlibLandmarks(predictor=predictor)(lr, HR, items(2)))
    )
    assert source.fingerprint()["model_id"] == "tiny_68.dat" and source.fingerprint()["fallback_box"] == "full"


def test_clear_errors_when_dlib_or_model_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)
    with pytest.raises(ImportError, match="dlib-bin"):
        import_dlib()
    monkeypatch.setitem(sys.modules, "face_recognition_models", None)
    with pytest.raises(ImportError, match="face-recognition-models"):
        default_predictor_path()
