"""Synthetic faces: determinism, alignment of image / mask / depth / landmarks, texts, and what the LR image hides."""

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from llvfsr.data import synthetic_text as text
from llvfsr.data.synthetic import (
    SyntheticFace,
    contact_sheet,
    eye_region_mask,
    face_region_mask,
    render_face,
)
from llvfsr.priors import MASK_CLASSES

ID = {name: i for i, name in enumerate(MASK_CLASSES)}
FACES = range(8)


def _labels_at(face: SyntheticFace, points: np.ndarray) -> list[str]:
    xy = np.round(points).astype(int).clip(0, face.mask.shape[0] - 1)
    return [MASK_CLASSES[k] for k in face.mask[xy[:, 1], xy[:, 0]]]


def _downscale(image: np.ndarray, factor: int) -> np.ndarray:
    """The design's degradation: PIL's antialiased BICUBIC, as float for differences."""
    size = image.shape[0] // factor
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC), np.float64)


@pytest.fixture(scope="module")
def faces() -> list[SyntheticFace]:
    return [render_face(5, i) for i in FACES]


def test_types_shapes_and_ranges(faces):
    for face in faces:
        assert face.image.shape == (256, 256, 3) and face.image.dtype == np.uint8
        assert face.mask.shape == (256, 256) and face.mask.dtype == np.uint8
        assert face.mask.max() < len(MASK_CLASSES)
        assert face.depth.shape == (256, 256) and face.depth.dtype == np.float32
        assert 0.0 <= face.depth.min() and face.depth.max() <= 1.0
        assert face.landmarks.shape == (68, 2) and face.landmarks.dtype == np.float32
        assert np.all((face.landmarks >= 0) & (face.landmarks < 256))


def test_same_seed_and_index_are_bit_identical_and_indices_differ():
    a, b, c = render_face(3, 7), render_face(3, 7), render_face(3, 8)
    for name in ("image", "mask", "depth", "landmarks"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert (a.attributes, a.caption, a.description) == (b.attributes, b.caption, b.description)
    assert np.abs(a.image.astype(int) - c.image).mean() > 5
    assert not np.array_equal(a.landmarks, c.landmarks)
    assert not np.array_equal(render_face(4, 7).image, a.image)  # the seed matters too


def test_landmarks_lie_on_their_parts(faces):
    for face in faces:
        labels = _labels_at(face, face.landmarks)
        assert labels[27:36] == ["nose"] * 9
        assert labels[36:42] == ["l_eye"] * 6  # iBUG 36-41: the subject's right eye, on the image left
        assert labels[42:48] == ["r_eye"] * 6
        assert all(label in ("mouth", "u_lip", "l_lip") for label in labels[48:68]), labels[48:68]
        # jaw points sit on the face outline: face and non-face labels both within 2 px
        for x, y in np.round(face.landmarks[:17]).astype(int):
            window = face.mask[y - 2 : y + 3, x - 2 : x + 3]
            assert np.isin(window, [ID["skin"]]).any() and not np.isin(window, [ID["skin"]]).all()


def test_landmarks_scale_with_the_image_size():
    big, small = render_face(2, 3, 256), render_face(2, 3, 128)
    np.testing.assert_allclose(small.landmarks, big.landmarks / 2, atol=1e-3)
    assert small.attributes == big.attributes and small.image.shape == (128, 128, 3)
    # the 128 px label map is the 256 px one seen at half resolution (edges may move by a pixel)
    assert (small.mask == big.mask[::2, ::2]).mean() > 0.95


def test_depth_is_zero_on_background_positive_on_the_face_and_peaks_at_the_nose(faces):
    for face in faces:
        assert np.all(face.depth[face.mask == ID["background"]] == 0)
        assert np.all(face.depth[face.mask != ID["background"]] > 0)
        peak_y, peak_x = np.unravel_index(np.argmax(face.depth), face.depth.shape)
        nose_x, nose_y = face.landmarks[30]
        assert np.hypot(peak_x - nose_x, peak_y - nose_y) < 0.05 * 256
        assert face.depth.max() == pytest.approx(1.0)
        # skin is nearer than the neck below it, which is nearer than the background
        assert face.depth[face.mask == ID["skin"]].mean() > face.depth[face.mask == ID["neck"]].mean()


def test_parts_are_present_as_their_attributes_say():
    for i in range(12):
        face = render_face(9, i)
        labels, attrs = set(np.unique(face.mask)), face.attributes
        assert (ID["eye_g"] in labels) == (attrs["glasses"] != "none")
        assert (ID["ear_r"] in labels) == (attrs["earrings"] != "none")
        assert (ID["neck_l"] in labels) == (attrs["necklace"] != "none")
        assert (ID["hat"] in labels) == (attrs["hat"] != "none")
        assert (ID["mouth"] in labels) == (attrs["mouth"] == "open smile")
        assert (ID["hair"] in labels) == (attrs["hair_style"] != "bald")
        assert {ID[c] for c in ("skin", "nose", "l_eye", "r_eye", "l_brow", "r_brow", "u_lip", "l_lip")} <= labels


def test_override_changes_only_that_attribute():
    base = render_face(1, 4, overrides={"eye_colour": "blue", "glasses": "none"})
    other = render_face(1, 4, overrides={"eye_colour": "amber", "glasses": "none"})
    assert base.attributes["eye_colour"] == "blue" and other.attributes["eye_colour"] == "amber"
    for name in ("mask", "depth", "landmarks"):
        assert np.array_equal(getattr(base, name), getattr(other, name)), name
    changed = np.any(base.image != other.image, axis=2)
    eyes = np.isin(base.mask, [ID["l_eye"], ID["r_eye"]])
    assert changed.any() and changed[eyes].mean() > 0.2
    # the iris lives inside the eye labels, up to the one-pixel antialiased rim of the eye outline
    assert not (changed & ~ndimage.binary_dilation(eyes)).any()
    with pytest.raises(KeyError, match="eye_color"):
        render_face(1, 4, overrides={"eye_color": "blue"})


@pytest.mark.parametrize("colour", list(text.EYE_COLOURS))
def test_iris_sectors_carry_the_stated_colour(colour):
    """The most changed pixels across eye colours are the vivid sectors, and they move towards the stated colour."""
    variants = {c: render_face(6, 2, overrides={"eye_colour": c}).image.astype(np.float64) for c in text.EYE_COLOURS}
    mean_image = np.mean(list(variants.values()), axis=0)
    deviation = (variants[colour] - mean_image).reshape(-1, 3)
    top = deviation[np.argsort(np.linalg.norm(deviation, axis=1))[-30:]].mean(axis=0)
    expected = np.asarray(text.EYE_COLOURS[colour], float) - np.mean(list(text.EYE_COLOURS.values()), axis=0)
    cosine = top @ expected / (np.linalg.norm(top) * np.linalg.norm(expected))
    assert cosine > 0.9


@pytest.mark.parametrize("factor", [8, 16])
def test_eye_colour_is_invisible_at_low_resolution_but_clear_at_hr(factor):
    for i in range(3):
        blue = render_face(7, i, overrides={"eye_colour": "blue"})
        brown = render_face(7, i, overrides={"eye_colour": "brown"})
        eyes = np.isin(blue.mask, [ID["l_eye"], ID["r_eye"]])
        hr_diff = np.abs(blue.image.astype(float) - brown.image)[eyes].mean()
        assert hr_diff > 10  # clearly different in the HR eyes (levels of 255)
        region = eye_region_mask(blue.mask)
        size = 256 // factor
        lr_region = np.asarray(Image.fromarray(region.astype(np.uint8)).resize((size, size), Image.BOX)) > 0
        lr_diff = np.abs(_downscale(blue.image, factor) - _downscale(brown.image, factor))[lr_region]
        assert lr_diff.mean() < 2.0, lr_diff.mean()  # < 2/255 on average over the LR eye area


def test_thin_glasses_frames_are_faint_at_low_resolution():
    with_glasses = render_face(8, 1, overrides={"glasses": "black"})
    without = render_face(8, 1, overrides={"glasses": "none"})
    region = eye_region_mask(with_glasses.mask)
    hr_max = np.abs(with_glasses.image.astype(float) - without.image)[region].max(axis=-1)
    assert hr_max.max() > 60  # the frames are visible at HR
    lr = np.abs(_downscale(with_glasses.image, 8) - _downscale(without.image, 8))
    assert lr.mean() < 2.0


def test_caption_is_short_and_coarse_description_states_every_attribute(faces):
    for face in faces:
        attrs, description = face.attributes, face.description.lower()
        assert len(face.caption) < len(description) and face.caption.startswith("a photo of a")
        assert attrs["gender"] in face.caption
        assert f"eyes are {attrs['eye_colour']}" in description
        assert attrs["eye_colour"] not in face.caption.replace(attrs["hair_colour"], "")  # invisible at LR
        assert attrs["skin_tone"] in description and attrs["cloth_colour"] in description
        assert ("no glasses" in description) == (attrs["glasses"] == "none")
        assert ("no earrings" in description) == (attrs["earrings"] == "none")
        assert attrs["background_colour"] in description
        assert description.count(".") >= 6


def test_attribute_sampler_covers_every_value():
    rng = np.random.default_rng(0)
    seen: dict[str, set] = {}
    for _ in range(600):
        for key, value in text.sample_attributes(rng).items():
            seen.setdefault(key, set()).add(value)
    assert seen["eye_colour"] == set(text.EYE_COLOURS)
    assert seen["hair_style"] == set(text.HAIR_STYLES)
    assert seen["skin_tone"] == set(text.SKIN_TONES)
    assert seen["glasses"] == {"none", *text.FRAME_COLOURS}
    assert seen["earrings"] == {"none", *text.METALS} and seen["mouth"] == set(text.MOUTHS)


def test_iris_palette_balances_to_the_shared_mean():
    for colour in text.EYE_COLOURS:
        fibre, gap = text.iris_palette(colour, 0.3)
        np.testing.assert_allclose(0.3 * fibre + 0.7 * gap, text.IRIS_MEAN, atol=1e-9)


def test_region_masks(faces):
    face = faces[0]
    eyes = eye_region_mask(face.mask)
    parts = np.isin(face.mask, [ID[c] for c in ("l_eye", "r_eye", "l_brow", "r_brow", "eye_g")])
    assert eyes.dtype == bool and eyes[parts].all()
    assert eyes.sum() > parts.sum()  # dilated
    assert np.array_equal(eye_region_mask(face.mask, dilate=0), parts)
    inner = face_region_mask(face.mask)
    assert inner[face.mask == ID["nose"]].all() and not inner[face.mask == ID["hair"]].any()
    assert not inner[face.mask == ID["background"]].any()
    batch = eye_region_mask(np.stack([f.mask for f in faces[:2]]))
    assert batch.shape == (2, 256, 256) and np.array_equal(batch[0], eyes)


def test_contact_sheet_writes_a_grid(tmp_path, faces):
    path = tmp_path / "sheet.png"
    contact_sheet(faces[:6], str(path), tile=32, columns=3)
    with Image.open(path) as sheet:
        assert sheet.size == (3 * (3 * 32 + 8), 2 * (32 + 4))
        pixels = np.asarray(sheet.convert("RGB"))
    np.testing.assert_array_equal(pixels[0, 0], np.asarray(Image.fromarray(faces[0].image).resize((32, 32)))[0, 0])
