"""The controls of the text priors: faces zoomed on the eyes (positive control), descriptions that say nothing about
their face (negative controls), and the `controls` grid that runs them."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from llvfsr.config import ExperimentConfig
from llvfsr.data.datasets import SyntheticFaces
from llvfsr.data.synthetic import render_face
from llvfsr.data.synthetic_attributes import AttributeReader, attribute_summary
from llvfsr.priors.sources import make_source
from llvfsr.priors.sources.base import ItemContext
from llvfsr.priors.types import MASK_CLASSES


def test_zoom_magnifies_about_the_eyes_and_keeps_the_face():
    plain, zoomed = render_face(2, 7, 64), render_face(2, 7, 64, zoom=3.0)
    assert plain.attributes == zoomed.attributes and plain.description == zoomed.description
    eyes = np.isin(zoomed.mask, [MASK_CLASSES.index("l_eye"), MASK_CLASSES.index("r_eye")])
    plain_eyes = np.isin(plain.mask, [MASK_CLASSES.index("l_eye"), MASK_CLASSES.index("r_eye")])
    # area grows with the square of the zoom (measured 8.6x at 64 px: antialiasing and rounding of tiny eyes)
    assert 6 < eyes.sum() / plain_eyes.sum() < 12
    rows, cols = np.nonzero(eyes)
    assert abs(rows.mean() - 31.5) < 4 and abs(cols.mean() - 31.5) < 4  # the eyes' midpoint is the image centre
    assert (
        SyntheticFaces("test", 4, hr_size=64).fingerprint()
        != SyntheticFaces("test", 4, hr_size=64, zoom=3).fingerprint()
    )
    assert "zoom" not in SyntheticFaces("test", 4, hr_size=64).fingerprint()  # unzoomed stores keep their fingerprint


def test_readers_read_zoomed_faces():
    reader = AttributeReader(4, list(range(16)), 64, zoom=3.0)
    hr = torch.from_numpy(np.stack([render_face(4, i, 64, zoom=3.0).image for i in range(16)]))
    frame = pd.DataFrame(reader(hr.permute(0, 3, 1, 2).float() / 255, list(range(16))))
    summary = attribute_summary(frame)
    assert summary["attr_eye_colour_acc"] == 1.0 and summary["attr_glasses_acc"] == 1.0


def _texts(name: str, faces: SyntheticFaces) -> list[str]:
    source = make_source("description", name)
    items = [ItemContext(i, faces.item_id(i), faces) for i in range(len(faces))]
    return source(np.zeros((len(faces), 8, 8, 3), np.uint8), faces.hr_size, items)


def test_shuffled_description_is_another_faces_and_always_the_same_one():
    faces = SyntheticFaces("train", 12, hr_size=32)
    true = _texts("synthetic", faces)
    shuffled = _texts("synthetic-shuffled", faces)
    assert sorted(shuffled) == sorted(true)  # the same texts, each given to another face
    assert all(s != t for s, t in zip(shuffled, true, strict=True))
    assert shuffled == _texts("synthetic-shuffled", SyntheticFaces("train", 12, hr_size=32))  # train = test = rerun


def test_constant_description_is_one_text_for_every_face():
    faces = SyntheticFaces("test", 6, hr_size=32)
    constant = _texts("synthetic-constant", faces)
    assert set(constant) == {faces.exact_priors(0).description}


def test_controls_grid_gives_each_variant_its_description_source(tmp_path):
    from sweeps.grids import GRIDS
    from sweeps.presets import PRESETS
    from sweeps.trial import SweepContext, experiment_for

    grid = GRIDS["controls"]
    base = ExperimentConfig(data=PRESETS["control"].data, train=PRESETS["control"].train)
    ctx = SweepContext(
        grid="controls", sweep="s", base=base, variants={v.name: v for v in grid.variants}, model_overrides={},
        work_dir=str(tmp_path), tracking_uri="", experiment_id="", parent_run_id="",
    )  # fmt: skip
    sources = {
        name: experiment_for(ctx, {"variant": name, "seed": 0}, "t")[1].data.description_source for name in ctx.variants
    }
    assert sources == {
        "llvfsr": "synthetic",
        "llvfsr-wo-description": "synthetic",
        "llvfsr+shuffled-description": "synthetic-shuffled",
        "llvfsr+constant-description": "synthetic-constant",
    }
    assert base.data.synthetic_zoom == 3.0  # the control preset zooms on the eyes
    roots = {name: experiment_for(ctx, {"variant": name, "seed": 0}, "t")[1].data.priors_root for name in ctx.variants}
    # a store holds one source per prior: the negative controls keep theirs apart from the true descriptions
    assert roots["llvfsr"] == roots["llvfsr-wo-description"] == base.data.priors_root
    assert roots["llvfsr+shuffled-description"] == str(Path(base.data.priors_root) / "synthetic-shuffled")
    assert roots["llvfsr+constant-description"] == str(Path(base.data.priors_root) / "synthetic-constant")


def test_controls_grid_refuses_real_data(tmp_path, capsys):
    from sweeps.run import main

    with pytest.raises(SystemExit) as stop:
        main(["--grid", "controls", "--data", str(tmp_path), "--dry-run"])
    assert stop.value.code == 2 and "synthetic faces only" in capsys.readouterr().err


def test_text_encoder_flag_picks_the_encoder_and_refuses_clip_weights_beside_it(capsys):
    from sweeps.grids import GRIDS
    from sweeps.run import base_config, parse_args

    def data(*flags):
        return base_config(parse_args(["--grid", "controls", *flags]), GRIDS["controls"])[0].data

    assert (data().text_encoder, data().allow_random_text_encoder) == ("minilm", False)  # the control preset
    tiny = data("--text-encoder", "tiny")
    assert (tiny.text_encoder, tiny.text_pretrained, tiny.allow_random_text_encoder) == ("tiny", None, True)
    with pytest.raises(SystemExit) as stop:
        parse_args(["--grid", "controls", "--text-encoder", "minilm", "--text-pretrained", "openai"])
    assert stop.value.code == 2 and "give one of them" in capsys.readouterr().err
