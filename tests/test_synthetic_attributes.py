"""Attribute readers of the synthetic faces: exact on HR faces, at chance on bicubic up-sampled LR faces, and they
see a colour put there on purpose (re-rendered iris, uniform tint) and nothing where there is none."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import balanced_accuracy_score, confusion_matrix
from tiny import tiny_synthetic_data

from llvfsr.config import ExperimentConfig, ModelConfig, TrainConfig
from llvfsr.data import synthetic_text as text
from llvfsr.data.datasets import SyntheticFaces
from llvfsr.data.degrade import degrade_bicubic
from llvfsr.data.synthetic import render_face
from llvfsr.data.synthetic_attributes import (
    ATTRIBUTES,
    AttributeReader,
    attribute_summary,
    balanced_accuracy,
    confusion,
    face_references,
    iris_axes,
    read_iris_matched,
)
from llvfsr.priors.ensure import ensure_priors
from llvfsr.priors.types import MASK_CLASSES

SEED, N, SIZE = 5, 60, 64


def images(faces) -> torch.Tensor:
    return torch.from_numpy(np.stack([f.image for f in faces])).permute(0, 3, 1, 2).float() / 255


@pytest.fixture(scope="module")
def reader() -> AttributeReader:
    return AttributeReader(SEED, list(range(N)), SIZE)


@pytest.fixture(scope="module")
def hr() -> torch.Tensor:
    return images([render_face(SEED, i, SIZE) for i in range(N)])


def read(reader, x) -> pd.DataFrame:
    return pd.DataFrame(reader(x, list(range(len(x)))))


def test_hr_faces_read_back_their_own_attributes(reader, hr):
    frame = read(reader, hr)
    for name in ATTRIBUTES:  # measured: 128 of 128 faces right for every attribute at 64 px
        assert (frame[f"attr_{name}"] == frame[f"attr_{name}_true"]).all(), name
    assert (frame.attr_eye_colour_matched == frame.attr_eye_colour_true).all()
    summary = attribute_summary(frame)
    assert summary["attr_eye_colour_bacc"] == 1.0 and summary["attr_eye_colour_chance"] == 0.2
    assert summary["attr_eye_colour_matched_bacc"] == 1.0
    assert summary["attr_glasses_present_acc"] == 1.0 and summary["attr_earrings_present_acc"] == 1.0


def test_bicubic_faces_read_at_chance(reader, hr):
    """The x8 LR face holds (almost) nothing of the text-only attributes: balanced accuracy near 1 / options."""
    lr = degrade_bicubic(hr, 8).clamp(0, 1).mul(255).round().div(255)
    bicubic = F.interpolate(lr, scale_factor=8, mode="bicubic", align_corners=False).clamp(0, 1)
    summary = attribute_summary(read(reader, bicubic))
    # measured on 128 faces: eye colour 0.21 (chance 0.20; every blurred iris reads "grey", the luminance axis),
    # glasses 0.37 (0.25: thick black frames leave a faint trace), earrings 0.31 (0.33)
    assert summary["attr_eye_colour_bacc"] < 0.4
    assert summary["attr_eye_colour_matched_bacc"] < 0.4  # measured 0.25 on these 60 faces
    assert summary["attr_glasses_bacc"] < 0.6
    assert summary["attr_earrings_bacc"] < 0.6


@pytest.mark.parametrize("iris", ["pinwheel", "checker"])
def test_the_eye_colour_stays_out_of_the_lr_face_when_zoomed_on_the_eyes(iris):
    """The control preset's faces (zoom 3: irises of ~8 px radius, a whole LR pixel) put the iris colour in the null
    space of the x8 degradation: the LR faces of a face's five colours are equal up to rounding (x8 and x16), the
    HR irises differ, and even the centred reading, which sees a partial move, is at chance on bicubic faces.
    Concentric rings gave 0.61 there; the pinwheel alone 0.17, but a trained network still read it at 0.41; hidden,
    0.20 on 100 faces (chance 0.20). The same holds for the checker iris."""
    colours = ATTRIBUTES["eye_colour"]
    for index in range(3):
        versions = images([render_face(SEED, index, SIZE, {"eye_colour": c}, zoom=3.0, iris=iris) for c in colours])
        assert (versions - versions[:1]).abs().amax() > 0.3  # HR: clearly different irises
        for scale in (8, 16):
            lr = degrade_bicubic(versions, scale).mul(255).round()
            assert (lr - lr[:1]).abs().max() <= 1, scale  # LR: equal up to one grey level of rounding
    faces = list(range(50))  # 50 faces: chance 0.20 +- ~0.06, so a leak like the pinwheel's 0.41 still fails
    zoomed = AttributeReader(SEED, faces, SIZE, zoom=3.0, iris=iris)
    hr = images([render_face(SEED, i, SIZE, zoom=3.0, iris=iris) for i in faces])
    lr = degrade_bicubic(hr, 8).clamp(0, 1).mul(255).round().div(255)
    bicubic = F.interpolate(lr, scale_factor=8, mode="bicubic", align_corners=False).clamp(0, 1)
    assert attribute_summary(read(zoomed, hr))["attr_eye_colour_centred_bacc"] == 1.0
    assert attribute_summary(read(zoomed, hr))["attr_eye_colour_matched_bacc"] == 1.0
    assert attribute_summary(read(zoomed, bicubic))["attr_eye_colour_centred_bacc"] < 0.35
    assert attribute_summary(read(zoomed, bicubic))["attr_eye_colour_matched_bacc"] < 0.35  # measured 0.20


def test_the_checker_iris_alternates_vivid_and_counter_tinted_pixels_and_only_there():
    """`iris="checker"` changes the iris alone: the rest of the face, its mask and its texts are those of the
    pinwheel face; inside the iris, neighbouring pixels depart from the face's colour-neutral iris in opposite
    directions along the eye colour's axis (a checkerboard), and the face's fingerprint names the texture."""
    pinwheel, checker = render_face(SEED, 0, SIZE, zoom=3.0), render_face(SEED, 0, SIZE, zoom=3.0, iris="checker")
    np.testing.assert_array_equal(pinwheel.mask, checker.mask)
    assert pinwheel.description == checker.description and pinwheel.caption == checker.caption
    change = np.abs(pinwheel.image.astype(int) - checker.image.astype(int)).sum(-1)
    eyes = np.isin(checker.mask, [MASK_CLASSES.index("l_eye"), MASK_CLASSES.index("r_eye")])
    # the rest: the eyes' antialiased rims and the faint blur that hiding the colour from the LR face spreads
    assert change[eyes].sum() > 0.75 * change.sum()  # measured 0.84-0.89 on 4 faces
    ref = face_references(SEED, 0, SIZE, 3.0, "checker")["eye_colour"]
    top, left, h, w = ref.box
    own = ref.renders[ATTRIBUTES["eye_colour"].index(checker.attributes["eye_colour"])]
    axis = torch.from_numpy(iris_axes()).float()[ATTRIBUTES["eye_colour"].index(checker.attributes["eye_colour"])]
    along = np.einsum("chw,c->hw", own - ref.renders.mean(0), axis.numpy())  # departure along the colour's axis
    rows, cols = np.nonzero(np.abs(along) > 0.05)
    parity = (rows + top + cols + left) % 2
    signs = np.sign(along[rows, cols])
    assert len(rows) > 50 and abs(np.corrcoef(parity, signs)[0, 1]) > 0.95  # the sign follows the pixel's parity
    assert SyntheticFaces("test", 4, iris="checker").fingerprint()["iris"] == "checker"
    assert "iris" not in SyntheticFaces("test", 4).fingerprint()  # pinwheel stores keep their fingerprint
    with pytest.raises(ValueError, match="iris"):
        SyntheticFaces("test", 4, iris="fibres")


def test_a_recoloured_iris_is_read_as_its_new_colour(reader):
    """Counterfactual: the same faces with every iris re-rendered blue (or amber) read blue (amber)."""
    for colour in ("blue", "amber"):
        x = images([render_face(SEED, i, SIZE, {"eye_colour": colour}) for i in range(12)])
        assert (read(reader, x).attr_eye_colour == colour).all()


def test_a_uniform_tint_along_a_colour_axis_is_read_as_that_colour(reader, hr):
    """A model that knows the colour but not where the vivid sectors are renders a tint; the reader counts it. A
    tint of 0.1 along each axis over the neutral iris moves every answer."""
    axes = torch.from_numpy(iris_axes()).float()
    faces = list(range(12))
    for k, colour in enumerate(ATTRIBUTES["eye_colour"]):
        x = hr[faces].clone()
        for i in faces:  # replace the iris pixels by the neutral iris plus a tint along this colour's axis
            ref = reader.refs[i]["eye_colour"]
            top, left, h, w = ref.box
            tinted = torch.from_numpy(ref.neutral) + 0.1 * axes[k][:, None, None]
            weight = torch.from_numpy(ref.weight)
            region = x[i, :, top : top + h, left : left + w]
            x[i, :, top : top + h, left : left + w] = region + weight * (tinted.clamp(0, 1) - region)
        assert (read(reader, x).attr_eye_colour == colour).all(), colour


def blend_towards(reader, hr, fraction: float, shift: int = 0) -> torch.Tensor:
    """Each iris `fraction` of the way from the average of its five colour renders to colour ``true + shift``."""
    colours = ATTRIBUTES["eye_colour"]
    x = hr.clone()
    for i in range(len(x)):
        ref = reader.refs[i]["eye_colour"]
        top, left, h, w = ref.box
        renders = torch.from_numpy(ref.renders)  # [5, 3, h, w]
        target = renders[(colours.index(reader.truth[i]["eye_colour"]) + shift) % len(colours)]
        x[i, :, top : top + h, left : left + w] = (1 - fraction) * renders.mean(0) + fraction * target
    return x


def test_matched_reading_sees_a_faint_pattern_per_face_and_names_a_wrong_one(reader, hr):
    """A twentieth of the stated colour's pattern over the average iris: the matched reader names every face's
    colour (the second-moment reader answers one colour for all); a twentieth of the *next* colour is read as that
    colour, never as the true one: it sees the pattern drawn, not the truth."""
    frame = read(reader, blend_towards(reader, hr, 0.05))
    assert (frame.attr_eye_colour_matched == frame.attr_eye_colour_true).all()  # measured: 60 of 60
    assert attribute_summary(frame)["attr_eye_colour_bacc"] < 0.5  # measured 0.20
    colours = ATTRIBUTES["eye_colour"]
    frame = read(reader, blend_towards(reader, hr, 0.05, shift=1))
    planted = [colours[(colours.index(t) + 1) % 5] for t in frame.attr_eye_colour_true]
    assert (frame.attr_eye_colour_matched == planted).all()
    assert attribute_summary(frame)["attr_eye_colour_matched_bacc"] == 0.0


def test_matched_reading_ignores_a_uniform_tint(reader, hr):
    """The pattern field averages to about zero over the iris, so a tint along any colour axis leaves every answer
    where it was (the second-moment reader follows the tint, as `test_a_uniform_tint...` shows)."""
    axes = torch.from_numpy(iris_axes()).float()
    faces = list(range(12))
    refs = [reader.refs[i]["eye_colour"] for i in faces]
    answers = []
    for k in range(len(axes)):
        x = hr[faces].clone()
        for i, ref in zip(faces, refs, strict=True):
            top, left, h, w = ref.box
            tinted = (torch.from_numpy(ref.neutral) + 0.1 * axes[k][:, None, None]).clamp(0, 1)
            region = x[i, :, top : top + h, left : left + w]
            x[i, :, top : top + h, left : left + w] = region + torch.from_numpy(ref.weight) * (tinted - region)
        answers.append(read_iris_matched(x, refs).argmax(1).tolist())
    assert all(a == answers[0] for a in answers)  # measured: the same answer under all five tints


def test_balanced_accuracy_and_confusion_match_scikit_learn():
    rng = np.random.default_rng(0)
    options = ATTRIBUTES["eye_colour"]
    truth = list(rng.choice(options, 50))
    answers = ["grey" if rng.random() < 0.6 else t for t in truth]
    assert balanced_accuracy(truth, answers) == pytest.approx(balanced_accuracy_score(truth, answers))
    np.testing.assert_array_equal(
        confusion(truth, answers, options), confusion_matrix(truth, answers, labels=list(options))
    )
    # a reader that always answers one class scores exactly chance
    assert balanced_accuracy(truth, ["grey"] * 50) == pytest.approx(1 / len(options))


def test_reader_classes_cover_the_generator():
    assert set(ATTRIBUTES["eye_colour"]) == set(text.EYE_COLOURS)
    assert set(ATTRIBUTES["glasses"]) == {"none", *text.FRAME_COLOURS}
    assert set(ATTRIBUTES["earrings"]) == {"none", *text.METALS}


def test_evaluation_writes_attribute_columns_and_summary(tmp_path):
    """`evaluate_split` (via train of the bicubic model) writes the reader's columns per face and their summary."""
    from llvfsr.train import train

    data = tiny_synthetic_data(tmp_path / "priors", train_n=8, val_n=2, test_n=10)
    ensure_priors(data, set(), progress=False)
    train_cfg = TrainConfig(epochs=1, batch_size=4, lpips=False, niqe=False, n_samples=0, device="cpu")
    config = ExperimentConfig(data=data, model=ModelConfig("bicubic"), train=train_cfg, out_dir=str(tmp_path / "run"))
    summary = train(config)
    frame = pd.read_csv(tmp_path / "run" / "per_image.csv")
    family = SyntheticFaces("test", n=10, seed=data.data_seed).family_seed
    truth = [render_face(family, i, 32).attributes["eye_colour"] for i in range(10)]
    assert frame.attr_eye_colour_true.tolist() == truth
    assert summary["test_attr_eye_colour_acc"] == pytest.approx(frame.attr_eye_colour_correct.mean())
    assert summary["test_attr_glasses_chance"] == 0.25
    assert "test_attr_eye_colour_correct" not in summary


def test_centred_reading_sees_a_partial_move_towards_the_true_colour(reader, hr):
    """Each iris a tenth of the way from the average of its five colours to its own: every face reads as one
    colour (raw balanced accuracy at chance), the centred reading of the run finds most true colours."""
    frame = read(reader, blend_towards(reader, hr, 0.1))
    summary = attribute_summary(frame)
    assert summary["attr_eye_colour_bacc"] < 0.5  # measured 0.20: every face reads as one colour
    assert summary["attr_eye_colour_centred_bacc"] > 0.6  # measured 0.80 (0.80 at a twentieth of the way too)
    bicubic = F.interpolate(
        degrade_bicubic(hr, 8).clamp(0, 1).mul(255).round().div(255), scale_factor=8, mode="bicubic"
    ).clamp(0, 1)
    assert attribute_summary(read(reader, bicubic))["attr_eye_colour_centred_bacc"] < 0.4  # measured 0.19 (128 faces)


def test_references_are_cached_on_disk_and_a_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    import llvfsr.data.synthetic_attributes as attributes

    monkeypatch.setenv("LLVFSR_CACHE", str(tmp_path))
    first = attributes.cached_references(SEED, [0, 1], 32, 1.0)
    (path,) = (tmp_path / "attribute_references").glob("*.pkl")

    def no_render(*args):
        raise AssertionError("rendered a face the cache holds")

    monkeypatch.setattr(attributes, "face_references", no_render)
    again = attributes.cached_references(SEED, [1, 0], 32, 1.0)  # from disk, in the order asked
    assert again[0][0] == first[1][0] == render_face(SEED, 1, 32).attributes
    for name in ATTRIBUTES:
        assert np.array_equal(again[1][1][name].renders, first[0][1][name].renders)
        assert again[1][1][name].box == first[0][1][name].box
    with pytest.raises(AssertionError, match="cache holds"):
        attributes.cached_references(SEED, [0, 2], 32, 1.0)  # face 2 is not cached: it must be rendered
    monkeypatch.undo()
    monkeypatch.setenv("LLVFSR_CACHE", str(tmp_path))
    path.write_bytes(b"not a pickle")
    rebuilt = attributes.cached_references(SEED, [0], 32, 1.0)
    assert np.array_equal(rebuilt[0][1]["eye_colour"].renders, first[0][1]["eye_colour"].renders)
    assert path.stat().st_size > 1000 and not list(path.parent.glob("*.tmp"))
