"""Visual comparisons (Figs. 5, 6, 8, 9) and identity distance (Fig. 7) drawn from a real smoke sweep's MLflow runs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from analysis.compare import (
    MethodFaces,
    comparison_figure,
    crop_box,
    fixed_boxes,
    landmark_boxes,
    synthetic_landmarks,
)
from analysis.figures import main as figures_main
from analysis.tables import main as tables_main
from sweeps.run import main as sweep_main

EXPERIMENT = "compare"


def test_crop_box_is_padded_two_to_one_and_inside():
    points = np.array([[20.0, 30.0], [40.0, 34.0]])  # 20 px wide, 4 px tall
    assert crop_box(points, 64) == (17, 26, 43, 39)  # 26 px wide (30 % pad), 13 tall, centred on (30, 32)
    assert crop_box(points - [18, 0], 64)[0] == 0  # shifted right to stay inside, not shrunk
    assert crop_box(points - [18, 0], 64)[2] - crop_box(points - [18, 0], 64)[0] == 26
    assert fixed_boxes(256) == {"eyes": (68, 85, 188, 145), "mouth": (100, 156, 154, 183)}


def test_synthetic_landmark_boxes_hold_the_eyes_and_mouth():
    from llvfsr.data.synthetic import eye_region_mask, render_face

    face = render_face(0, 5, 64)
    boxes = landmark_boxes(face.landmarks, 64)
    x0, y0, x1, y1 = boxes["eyes"]
    eyes = eye_region_mask(face.mask)
    assert eyes[y0:y1, x0:x1].sum() > 0.9 * eyes.sum()  # the generator's exact eye region lies in the box
    assert boxes["mouth"][1] > y1 - 2  # the mouth box is below the eyes


def test_synthetic_landmarks_from_recorded_params():
    from llvfsr.config import DataConfig, ExperimentConfig, flatten
    from llvfsr.data.splits import open_split

    data = DataConfig(dataset="synthetic", hr_size=32, test_n=3, data_seed=4)
    params = flatten(ExperimentConfig(data=data))
    params["data.field_of_another_version"] = "1"  # a run recorded by another version
    found = synthetic_landmarks(params, ["2", "9"])
    assert list(found) == ["2"]  # id 9 is not in a 3-face test split
    # The recorded seed and size are used: the landmarks of that face, not of the default data seed's.
    np.testing.assert_array_equal(found["2"], open_split(data, "test").exact_priors(2).landmarks)
    other = open_split(DataConfig(dataset="synthetic", hr_size=32, test_n=3), "test").exact_priors(2).landmarks
    assert np.abs(found["2"] - other).max() > 0.5
    real = flatten(ExperimentConfig(data=DataConfig(dataset="/data/mmceleba")))
    assert synthetic_landmarks(real, ["0"]) is None  # real data: the fixed boxes are used


def test_comparison_figure_shows_the_given_faces_and_scores():
    rng = np.random.default_rng(0)
    ids = ["3", "7"]
    shared = {f"{i}_hr": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for i in ids}
    shared |= {f"{i}_lr": rng.integers(0, 255, (4, 4, 3), dtype=np.uint8) for i in ids}
    columns = [
        MethodFaces(
            m,
            "run",
            {i: rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for i in ids},
            {i: (20.0 + k + int(i), 0.5) for i in ids},
        )  # fmt: skip
        for k, m in enumerate(["model-a", "model-b"])
    ]
    boxes = {i: {"eyes": (4, 8, 28, 20), "mouth": (10, 22, 22, 28)} for i in ids}
    fig = comparison_figure(columns, shared, ids, boxes)
    ncol = 4
    assert len(fig.axes) == len(ids) * ncol * 3
    for r, face_id in enumerate(ids):
        for c in range(ncol):
            whole, eyes, mouth = fig.axes[3 * (r * ncol + c) : 3 * (r * ncol + c) + 3]
            image = np.asarray(whole.images[0].get_array())
            if c == 0:  # the LR face, enlarged by pixel repetition
                np.testing.assert_array_equal(image[::8, ::8], shared[f"{face_id}_lr"])
            elif c == ncol - 1:
                np.testing.assert_array_equal(image, shared[f"{face_id}_hr"])
            else:
                np.testing.assert_array_equal(image, columns[c - 1].sr[face_id])
                psnr = 20.0 + (c - 1) + int(face_id)
                assert mouth.get_xlabel() == f"{psnr:.2f} dB / 0.5000"
            np.testing.assert_array_equal(np.asarray(eyes.images[0].get_array()), image[8:20, 4:28])
            np.testing.assert_array_equal(np.asarray(mouth.images[0].get_array()), image[22:28, 10:22])
    assert [fig.axes[3 * c].get_title() for c in range(ncol)] == ["LR", "model-a", "model-b", "HR"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A real smoke sweep with identity distance on random DeepFace weights (the plumbing, not the values)."""
    tmp = tmp_path_factory.mktemp("compare")
    cwd = os.getcwd()
    os.chdir(tmp)  # the preset's prior store lives in ./priors_cache
    argv = ["--grid", "smoke", "--identity", "--allow-random-identity", "--storage", str(tmp / "ray"),
            "--tracking-uri", f"sqlite:///{tmp / 'mlflow.db'}", "--experiment", EXPERIMENT]  # fmt: skip
    try:
        assert sweep_main(argv) == 0
    finally:
        os.chdir(cwd)
        import ray

        ray.shutdown()
    return tmp


def _trials(tmp: Path) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([experiment.experiment_id], "tags.role = 'trial'")


def test_sweep_identity_flag_reaches_every_trial(sweep, capsys):
    runs = _trials(sweep)
    assert len(runs) == 2
    for run in runs:
        assert run.data.params["train.identity"] == "true"
        assert 0 <= run.data.metrics["test_identity"] <= 2
    uri = f"sqlite:///{sweep / 'mlflow.db'}"
    assert tables_main(["--tracking-uri", uri, "--experiment", EXPERIMENT, "--grid", "smoke"]) == 0
    assert "IDENTITY" in capsys.readouterr().out
    out = sweep / "fig7.png"
    assert figures_main(["identity", "--tracking-uri", uri, "--experiment", EXPERIMENT, "--grid", "smoke",
                         "--out", str(out)]) == 0  # fmt: skip
    assert Image.open(out).size[0] > 100


def test_compare_draws_the_runs_saved_faces_and_logs_to_the_parent(sweep, capsys, monkeypatch):
    import matplotlib.figure

    uri = f"sqlite:///{sweep / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    drawn = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, path, **kw: drawn.append((fig, path)) or
                        Path(path).write_bytes(b"png"))  # fmt: skip
    out = sweep / "compare.png"
    argv = ["compare", "--tracking-uri", uri, "--experiment", EXPERIMENT, "--grid", "smoke", "--out", str(out)]
    assert figures_main([*argv, "--faces", "2", "--methods", "llvfsr-model1,llvfsr"]) == 0
    fig = drawn[-1][0]
    runs = {r.data.tags["variant"]: r for r in _trials(sweep)}
    ncol = 4  # LR, Model 1, LLV-FSR, HR
    assert len(fig.axes) == 2 * ncol * 3
    for c, variant in enumerate(["llvfsr-model1", "llvfsr"], start=1):
        run_id = runs[variant].info.run_id
        saved = client.download_artifacts(run_id, "sr_faces", str(sweep / variant))
        table = pd.read_csv(client.download_artifacts(run_id, "per_image.csv", str(sweep / variant)), dtype={"id": str})
        for r, face_id in enumerate(["0", "1"]):
            whole, _, mouth = fig.axes[3 * (r * ncol + c) : 3 * (r * ncol + c) + 3]
            sr = np.asarray(Image.open(Path(saved) / f"{face_id}.png"))
            np.testing.assert_array_equal(np.asarray(whole.images[0].get_array()), sr)
            row = table.set_index("id").loc[face_id]
            assert mouth.get_xlabel() == f"{row.psnr:.2f} dB / {row.ssim:.4f}"
    parent = runs["llvfsr"].data.tags["mlflow.parentRunId"]
    assert [a.path for a in client.list_artifacts(parent, "figures")] == ["figures/compare.png"]
    assert "logged to the sweep's parent run" in capsys.readouterr().out


def test_compare_errors_name_what_is_missing(sweep, capsys):
    uri = f"sqlite:///{sweep / 'mlflow.db'}"
    base = ["compare", "--tracking-uri", uri, "--experiment", EXPERIMENT, "--grid", "smoke"]
    assert figures_main([*base, "--methods", "srcnn"]) == 1
    assert "no x8 run for ['srcnn']" in capsys.readouterr().err
    assert figures_main([*base, "--ids", "999"]) == 1
    assert "faces ['999'] were not saved" in capsys.readouterr().err
    assert figures_main([*base, "--scale", "16"]) == 1
    assert "no finished x16 runs" in capsys.readouterr().err


def test_identity_flags_on_the_command_line(tmp_path, capsys):
    weights = tmp_path / "arcface_weights.pth"
    weights.write_bytes(b"stand-in")
    data = str(tmp_path)
    # table1 with data and weights: on by default (the paper's Fig. 7); --no-identity turns it off.
    assert sweep_main(["--grid", "table1", "--data", data, "--identity-weights", str(weights), "--dry-run"]) == 0
    assert f"identity distance in every trial: DeepFace ArcFace, weights {weights}" in capsys.readouterr().out
    assert sweep_main(["--grid", "table1", "--data", data, "--identity-weights", str(weights), "--no-identity",
                       "--dry-run"]) == 0  # fmt: skip
    assert "identity distance" not in capsys.readouterr().out
    assert sweep_main(["--grid", "ablation", "--dry-run"]) == 0  # synthetic, no weights: off
    assert "identity distance" not in capsys.readouterr().out
    for argv, message in (
        (["--grid", "smoke", "--identity"], "--identity needs --identity-weights PATH"),
        (["--grid", "smoke", "--identity-weights", str(tmp_path / "nope.pth")], "nope.pth: no such file"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            sweep_main([*argv, "--dry-run"])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
