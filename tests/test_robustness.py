"""Counterfactual priors at test time: each rewrite does what it says, hallucination rates count the right faces,
and `sweeps/robustness.py` logs one finished MLflow child run per trial x counterfactual, resumes, and tabulates."""

import numpy as np
import pandas as pd
import pytest
import torch
from tiny import tiny_synthetic_data

from llvfsr.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig
from llvfsr.counterfactual import (
    colour_response,
    counterfactual_names,
    counterfactuals,
    hallucination_rates,
    next_colour,
)
from llvfsr.data.datasets import SyntheticFaces
from llvfsr.data.synthetic import render_face
from llvfsr.data.synthetic_attributes import ATTRIBUTES
from llvfsr.priors.ensure import ensure_priors
from llvfsr.priors.text_encoder import make_text_encoder
from llvfsr.tracking import client, ensure_experiment
from llvfsr.trial_data import load_split

FIELDS = {"mask", "depth", "caption", "description"}


@pytest.fixture(scope="module")
def data_config(tmp_path_factory) -> DataConfig:
    config = tiny_synthetic_data(tmp_path_factory.mktemp("priors"), train_n=12, val_n=2, test_n=6)
    ensure_priors(config, FIELDS, progress=False)
    return config


@pytest.fixture(scope="module")
def rewritten(data_config):
    data = load_split(data_config, "test", FIELDS, torch.device("cpu"))
    return data, {cf.name: cf for cf in counterfactuals(data, data_config, counterfactual_names(FIELDS))}


def test_every_counterfactual_is_built_for_the_priors_a_model_reads(rewritten):
    _, by_name = rewritten
    assert list(by_name) == counterfactual_names(FIELDS)
    assert counterfactual_names({"mask"}) == ["none", "mask:shift", "mask:erode", "blank:mask"]


def test_a_prior_dropout_model_is_also_given_every_subset_of_its_priors_withheld(rewritten, data_config):
    data, _ = rewritten
    names = counterfactual_names({"mask", "description"}, withholds=True)
    assert names[-3:] == ["withhold:mask", "withhold:description", "withhold:mask+description"]
    assert "withhold:all" not in names  # the model reads only two of the four priors
    full = [n for n in counterfactual_names(FIELDS, withholds=True) if n.startswith("withhold:")]
    assert len(full) == 15 and full[:4] == [
        "withhold:mask",
        "withhold:depth",
        "withhold:caption",
        "withhold:description",
    ]
    assert full[4] == "withhold:mask+depth" and full[-1] == "withhold:all"
    wanted = ["withhold:depth", "withhold:caption+description", "withhold:all"]
    built = {cf.name: cf for cf in counterfactuals(data, data_config, wanted)}
    depth_only = built["withhold:depth"].data.priors.withheld
    assert depth_only[:, 1].all() and not depth_only[:, [0, 2, 3]].any()
    text = built["withhold:caption+description"].data.priors.withheld
    assert (
        text[:, 2:].all()
        and not text[:, :2].any()
        and built["withhold:caption+description"].prior == "caption+description"
    )
    assert built["withhold:all"].data.priors.withheld.all() and built["withhold:all"].prior == "all"
    assert torch.equal(built["withhold:depth"].data.priors.depth, data.priors.depth)  # the values stay


def test_rewrites_change_only_their_prior(rewritten):
    data, by_name = rewritten
    p = data.priors
    shifted = by_name["mask:shift"].data.priors
    assert torch.equal(shifted.mask, torch.roll(p.mask, (1, 1), dims=(-2, -1)))  # 32 px: 1/32 of the image
    assert torch.equal(shifted.depth, p.depth) and torch.equal(shifted.description.tokens, p.description.tokens)
    eroded = by_name["mask:erode"].data.priors.mask
    changed = eroded != p.mask
    assert changed.any() and (eroded[changed] == 0).all()  # boundaries became background, nothing else moved
    noisy = by_name["depth:noise"].data.priors.depth.float()
    assert noisy.min() >= 0 and noisy.max() <= 1 and (noisy - p.depth.float()).abs().mean() > 0.02
    assert (by_name["blank:mask"].data.priors.mask == 0).all() and (by_name["blank:depth"].data.priors.depth == 0).all()
    swapped = by_name["description:swap"].data.priors.description.tokens
    assert torch.equal(swapped[1:], p.description.tokens[:-1]) and torch.equal(swapped[0], p.description.tokens[-1])
    blank = by_name["blank:caption"].data.priors.caption.valid
    assert (blank.sum(1) == 2).all()  # start and end-of-text tokens only


def test_colour_edit_states_the_next_colour_and_changes_only_that_text(rewritten, data_config):
    data, by_name = rewritten
    edit = by_name["description:eye-colour"]
    faces = SyntheticFaces("test", 6, hr_size=32)
    truth = [faces.exact_priors(i).attributes["eye_colour"] for i in range(6)]
    assert edit.stated["eye_colour"] == [next_colour(c) for c in truth]
    assert not torch.equal(edit.data.priors.description.tokens, data.priors.description.tokens)
    assert torch.equal(edit.data.priors.caption.tokens, data.priors.caption.tokens)


class ColourOracle:
    """A stand-in model that knows each face's five HR colour versions and which colour its description states
    (nearest of the five encoded descriptions); it draws `blend` of the way from the colour-blind average (the mean
    of the five versions) to the stated version, or to the version after it with `shift`."""

    def __init__(self, data, config: DataConfig, blend: float, shift: int = 0):
        faces = SyntheticFaces("test", len(data), hr_size=config.hr_size)
        colours = ATTRIBUTES["eye_colour"]
        encoder = make_text_encoder(config)
        self.masks, self.blend, self.shift, self.versions, self.texts = data.priors.mask, blend, shift, [], []
        for i in range(len(data)):
            renders = [render_face(faces.family_seed, i, config.hr_size, {"eye_colour": c}) for c in colours]
            self.versions.append(torch.from_numpy(np.stack([r.image for r in renders])).permute(0, 3, 1, 2) / 255)
            self.texts.append(encoder.encode([r.description for r in renders])[0].float())
        encoder.close()

    def __call__(self, lr, priors):
        face = int((priors.mask[:1] != self.masks).flatten(1).sum(1).argmin())  # which test face this batch shows
        versions, texts = self.versions[face], self.texts[face]
        stated = torch.cdist(priors.description.tokens.flatten(1), texts.flatten(1)).argmin(1)
        drawn = versions[(stated + self.shift) % len(versions)]
        average = versions.mean(0, keepdim=True)
        return average + self.blend * (drawn - average)


def test_colour_response_is_the_fraction_of_the_stated_colour_drawn(rewritten, data_config):
    """1 for a model that draws the stated colour, its blend for a partial move, 0 when the text is ignored, and
    negative-to-small for one that draws another colour: the instrument of the positive control."""
    data, _ = rewritten
    assert colour_response(ColourOracle(data, data_config, 1.0), data, data_config, 8, count=3) == pytest.approx(1.0)
    assert colour_response(ColourOracle(data, data_config, 0.3), data, data_config, 8, count=3) == pytest.approx(0.3)
    assert colour_response(ColourOracle(data, data_config, 0.0), data, data_config, 8, count=3) == pytest.approx(0.0)
    assert colour_response(ColourOracle(data, data_config, 1.0, shift=1), data, data_config, 8, count=3) < 0.5


def test_colour_figure_shows_each_stated_colour_and_the_iris_crop(rewritten, data_config, tmp_path):
    """`render_under_colours` gives the SR face under each stated colour and the box where the colour versions
    differ (the irises); the figure draws a second row of that crop."""
    from PIL import Image

    from analysis.robustness import draw_colour_counterfactuals
    from llvfsr.counterfactual import render_under_colours

    data, _ = rewritten
    views = render_under_colours(ColourOracle(data, data_config, 1.0), data, data_config, 8, index=1)
    top, left, height, width = views["iris_box"]
    family = SyntheticFaces("test", 2, hr_size=data_config.hr_size).family_seed
    versions = np.stack(
        [render_face(family, 1, data_config.hr_size, {"eye_colour": c}).image for c in ATTRIBUTES["eye_colour"]]
    ).astype(float)
    changed = np.abs(versions - versions.mean(0)).max((0, 3)) > 4  # [H, W], in grey levels
    assert changed.any() and changed[top : top + height, left : left + width].sum() == changed.sum()
    assert torch.allclose(views[views["true"]], views["hr"], atol=1e-6)  # the oracle draws the stated colour
    draw_colour_counterfactuals(views, tmp_path / "one.png")
    assert Image.open(tmp_path / "one.png").size[1] > 300  # two rows (one row: 253 px)
    del views["iris_box"]
    draw_colour_counterfactuals(views, tmp_path / "flat.png")
    assert Image.open(tmp_path / "flat.png").size[1] < 300


def test_hallucination_rate_counts_faces_showing_the_stated_value():
    frame = pd.DataFrame({"attr_eye_colour": ["blue", "green", "grey", "amber"]})
    stated = {"eye_colour": ["blue", "blue", None, "grey"]}  # None: the text states the truth there
    assert hallucination_rates(frame, stated) == {"hallucination_eye_colour": pytest.approx(1 / 3)}
    frame["attr_eye_colour_matched"] = ["blue", "blue", "grey", "green"]  # the matched reader, where it was run
    assert hallucination_rates(frame, stated) == {
        "hallucination_eye_colour": pytest.approx(1 / 3),
        "hallucination_eye_colour_matched": pytest.approx(2 / 3),
    }


def test_robustness_pass_logs_finished_runs_resumes_and_tabulates(data_config, tmp_path, capsys):
    from analysis.robustness import robustness_runs, robustness_table
    from llvfsr.train import train
    from sweeps.robustness import main

    out = tmp_path / "trial"
    train_cfg = TrainConfig(epochs=1, batch_size=4, lpips=False, niqe=False, n_samples=0, device="cpu")
    tiny = (("body_down", 2), ("heads", 2), ("num_blocks", 1), ("width", 8))
    train(ExperimentConfig(data=data_config, model=ModelConfig("llvfsr", tiny), train=train_cfg, out_dir=str(out)))
    # a finished sweep as `sweeps/run.py` records it: a parent run and one trial child run with its checkpoint
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow_client = client(uri)
    eid = ensure_experiment(uri, "llvfsr")
    parent = mlflow_client.create_run(eid, tags={"role": "sweep", "sweep": "s1"}).info.run_id
    trial_tags = {"role": "trial", "mlflow.parentRunId": parent, "variant": "llvfsr", "seed": "0", "sweep": "s1",
                  "priors": "caption,depth,description,mask", "checkpoint": str(out / "checkpoint.pt")}  # fmt: skip
    trial = mlflow_client.create_run(eid, tags=trial_tags).info.run_id
    mlflow_client.set_terminated(trial, "FINISHED")

    assert main(["--sweep", "s1", "--tracking-uri", uri, "--only", "description:eye-colour,mask:shift"]) == 0
    runs = mlflow_client.search_runs([eid], "tags.role = 'robustness'")
    assert sorted(r.data.tags["counterfactual"] for r in runs) == ["description:eye-colour", "mask:shift", "none"]
    assert all(r.info.status == "FINISHED" and r.data.tags["mlflow.parentRunId"] == parent for r in runs)
    by_name = {r.data.tags["counterfactual"]: r.data.metrics for r in runs}
    assert by_name["none"]["delta_psnr"] == 0.0
    assert 0 <= by_name["description:eye-colour"]["test_hallucination_eye_colour"] <= 1
    assert np.isfinite(by_name["mask:shift"]["delta_psnr"])

    capsys.readouterr()
    assert main(["--sweep", "s1", "--tracking-uri", uri, "--only", "description:eye-colour,mask:shift"]) == 0
    assert "logged 0 robustness run(s)" in capsys.readouterr().out  # resumed: nothing evaluated twice
    assert len(mlflow_client.search_runs([eid], "tags.role = 'robustness'")) == 3
    before = {r.data.tags["counterfactual"]: r.info.run_id for r in runs}
    assert main(["--sweep", "s1", "--tracking-uri", uri, "--only", "none", "--rerun"]) == 0  # e.g. a new reader
    assert "logged 1 robustness run(s)" in capsys.readouterr().out
    after = {
        r.data.tags["counterfactual"]: r.info.run_id
        for r in mlflow_client.search_runs([eid], "tags.role = 'robustness'")
    }
    assert len(after) == 3 and after["none"] != before["none"] and after["mask:shift"] == before["mask:shift"]
    assert "test_attr_eye_colour_matched_bacc" in mlflow_client.get_run(after["none"]).data.metrics

    table = robustness_table(robustness_runs(uri, "llvfsr", sweep="s1"))
    assert list(table.counterfactual) == ["description:eye-colour", "mask:shift", "none"]
    assert table.loc[table.counterfactual == "none", "ΔPSNR (dB)"].item() == "0.000"


def test_robustness_cli_names_a_missing_sweep(tmp_path, capsys):
    from sweeps.robustness import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ensure_experiment(uri, "llvfsr")
    assert main(["--sweep", "nope", "--tracking-uri", uri]) == 2
    assert "--sweep 'nope'" in capsys.readouterr().err


def test_tables_cli_prints_the_robustness_table_or_says_what_to_run(tmp_path, capsys):
    from analysis.tables import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow_client = client(uri)
    eid = ensure_experiment(uri, "llvfsr")
    assert main(["--tracking-uri", uri, "--grid", "robustness"]) == 1
    assert "sweeps/robustness.py" in capsys.readouterr().err
    for seed, delta in enumerate((-0.5, -0.7)):
        for name, value in (("none", 0.0), ("mask:shift", delta)):
            tags = {"role": "robustness", "variant": "llvfsr", "seed": str(seed), "counterfactual": name}
            run = mlflow_client.create_run(eid, tags=tags).info.run_id
            mlflow_client.log_metric(run, "delta_psnr", value)
            mlflow_client.set_terminated(run, "FINISHED")
    assert main(["--tracking-uri", uri, "--grid", "robustness"]) == 0
    out = capsys.readouterr().out
    assert "-0.600 ± 0.141" in out and "Robustness: counterfactual priors" in out
    assert "| llvfsr    | mask:shift " in out and "('llvfsr'" not in out  # one variant column, not a tuple index
