"""The train loop: outputs, exact resume, determinism, checkpoint compatibility, and the single-run CLI."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from tiny import tiny_synthetic_data

from llvfsr.checkpoint import CheckpointMismatch, load_checkpoint
from llvfsr.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig
from llvfsr.data.datasets import SyntheticFaces
from llvfsr.errors import UsageError
from llvfsr.metrics import psnr
from llvfsr.priors.ensure import ensure_priors
from llvfsr.train import TrainHooks, build_model, main, required_fields, train

TINY_MODEL = (("body_down", 2), ("heads", 2), ("num_blocks", 1), ("width", 8))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> DataConfig:
    root = tmp_path_factory.mktemp("priors")
    config = tiny_synthetic_data(root, train_n=20, val_n=4, test_n=6)
    ensure_priors(config, {"mask", "depth", "caption", "description", "landmarks"}, progress=False)
    return config


def experiment(data: DataConfig, out, model="llvfsr", epochs=3, seed=0) -> ExperimentConfig:
    train_cfg = TrainConfig(epochs=epochs, batch_size=4, seed=seed, lpips=False, niqe=False, n_samples=2, device="cpu")
    return ExperimentConfig(data=data, model=ModelConfig(model, TINY_MODEL), train=train_cfg, out_dir=str(out))


class StopAfter(TrainHooks):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch(self, epoch, metrics, checkpoint):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def final_weights(out_dir):
    return torch.load(out_dir / "checkpoint.pt", weights_only=True)["model"]


def test_train_writes_outputs_and_resumes_bit_identically(data, tmp_path):
    summary = train(experiment(data, tmp_path / "straight"))
    frame = pd.read_csv(tmp_path / "straight" / "per_image.csv")
    assert len(frame) == 6 and {"psnr", "ssim", "psnr_eyes", "psnr_face"} <= set(frame.columns)
    assert summary["test_psnr"] == pytest.approx(frame.psnr.mean())
    assert 10 < summary["test_psnr"] < 60 and 0 < summary["test_ssim"] <= 1
    assert (tmp_path / "straight" / "samples.png").stat().st_size > 0

    interrupted = experiment(data, tmp_path / "resumed")
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, StopAfter(epoch=1))
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    resumed_summary = train(interrupted)  # finds its checkpoint, continues at epoch 2
    straight, resumed = final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert resumed_summary["test_psnr"] == summary["test_psnr"]


def test_same_seed_same_result_other_seed_differs(data, tmp_path):
    a = train(experiment(data, tmp_path / "a", model="llvfsr-model1", epochs=1, seed=3))
    b = train(experiment(data, tmp_path / "b", model="llvfsr-model1", epochs=1, seed=3))
    c = train(experiment(data, tmp_path / "c", model="llvfsr-model1", epochs=1, seed=4))
    assert a == b
    assert a["test_psnr"] != c["test_psnr"]


def test_checkpoint_of_another_model_or_scale_is_refused(data, tmp_path):
    config = experiment(data, tmp_path / "run", model="llvfsr-model1", epochs=1)
    train(config)
    path = tmp_path / "run" / "checkpoint.pt"
    other_scale = dataclasses.replace(config, data=dataclasses.replace(config.data, scale=16))
    with pytest.raises(CheckpointMismatch, match="data.scale"):
        load_checkpoint(path, other_scale, build_model(other_scale))
    wider = tuple((k, 16 if k == "width" else v) for k, v in TINY_MODEL)
    other_model = dataclasses.replace(config, model=ModelConfig("llvfsr-model1", wider))
    with pytest.raises(CheckpointMismatch, match="model.width"):
        load_checkpoint(path, other_model, build_model(config))
    longer = dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=5))
    assert load_checkpoint(path, longer, build_model(config))["epoch"] == 1  # more epochs: a legal resume
    # a checkpoint written before a config field existed resumes while the field keeps its default, not otherwise
    state = torch.load(path, weights_only=True)
    del state["config"]["data.synthetic_iris"]
    torch.save(state, tmp_path / "older.pt")
    assert load_checkpoint(tmp_path / "older.pt", config, build_model(config))["epoch"] == 1
    checker = dataclasses.replace(config, data=dataclasses.replace(config.data, synthetic_iris="checker"))
    with pytest.raises(CheckpointMismatch, match="data.synthetic_iris"):
        load_checkpoint(tmp_path / "older.pt", checker, build_model(config))


def test_required_fields_follow_the_built_branches(data):
    config = experiment(data, "unused")
    assert required_fields(build_model(config), "llvfsr") == {"mask", "depth", "caption", "description"}
    no_text = dataclasses.replace(config, model=ModelConfig("llvfsr", TINY_MODEL + (("branches", ("mask",)),)))
    assert required_fields(build_model(no_text), "llvfsr") == {"mask"}


def test_cli_runs_one_experiment_and_rejects_bad_flags(data, tmp_path, capsys):
    args = [
        "--model",
        "bicubic",
        "--scale",
        "8",
        "--hr-size",
        "32",
        "--train-n",
        "20",
        "--val-n",
        "4",
        "--test-n",
        "6",
        "--priors-root",
        data.priors_root,
        "--no-lpips",
        "--no-niqe",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "cli"),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "cli" / "per_image.csv").exists()
    printed = dict(line.split() for line in out.splitlines() if line.startswith("test_"))
    # The same faces independently: PIL's bicubic down (antialiased, 8-bit LR) and up, scored by llvfsr.metrics.
    faces = SyntheticFaces("test", n=6, hr_size=32)
    hr = [Image.fromarray(faces.load_hr(i)) for i in range(6)]
    sr = [im.resize((4, 4), Image.BICUBIC).resize((32, 32), Image.BICUBIC) for im in hr]
    as_float = lambda images: torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    expected = psnr(as_float(sr), as_float(hr), "paper", scale=8).mean()
    # Measured 20.0951 printed vs 20.0928; a non-antialiased LR gives 18.91, RGB PSNR 17.65.
    assert float(printed["test_psnr"]) == pytest.approx(expected, abs=0.05), (printed, expected)
    with pytest.raises(SystemExit) as error:
        main(["--model", "no-such-model"])
    assert error.value.code == 2
    with pytest.raises(SystemExit) as error:
        main(["--scale", "3"])
    assert error.value.code == 2


class Recorder(TrainHooks):
    def __init__(self):
        self.metrics = {}

    def on_epoch(self, epoch, metrics, checkpoint):
        self.metrics[epoch] = metrics


def test_dic_warm_up_runs_once_before_training_and_resume_keeps_the_freeze(data, tmp_path, monkeypatch):
    from baselines.dic import DIC

    calls = []
    original = DIC.warm_up
    monkeypatch.setattr(DIC, "warm_up", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    tiny_dic = (
        ("hg_depth", 2),
        ("hg_width", 16),
        ("hourglass_freeze_steps", 6),
        ("hourglass_pretrain_steps", 3),
        ("num_fusion_blocks", 1),
        ("num_groups", 1),
        ("num_steps", 2),
        ("width", 8),
    )  # 4 steps an epoch

    def config(name):
        return dataclasses.replace(experiment(data, tmp_path / name, epochs=3), model=ModelConfig("dic", tiny_dic))

    recorder = Recorder()
    train(config("straight"), recorder)
    assert len(calls) == 1
    assert recorder.metrics[1]["hourglass_pretrain_loss"] > 0 and "hourglass_pretrain_loss" not in recorder.metrics[2]
    assert int(final_weights(tmp_path / "straight")["hourglass_freeze_left"]) == 0

    with pytest.raises(KeyboardInterrupt):
        train(config("resumed"), StopAfter(epoch=1))
    assert int(final_weights(tmp_path / "resumed")["hourglass_freeze_left"]) == 2  # 6 - 4 steps of epoch 1
    train(config("resumed"))
    assert len(calls) == 2  # the resumed run restored the pretrained hourglass instead of pretraining again
    straight, resumed = final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_identity_distance_and_landmark_error_columns(data, tmp_path):
    """Fig. 7's identity distance (random DeepFace weights: plumbing, not values) and a landmark head's error."""
    config = experiment(data, tmp_path / "id", model="llvfsr-model1", epochs=1)
    config = dataclasses.replace(
        config, train=dataclasses.replace(config.train, identity=True, allow_random_identity=True)
    )
    summary = train(config)
    frame = pd.read_csv(tmp_path / "id" / "per_image.csv")
    assert frame.identity.between(0, 2).all() and summary["test_identity"] == pytest.approx(frame.identity.mean())

    tiny_fsrnet = (("num_blocks", 1), ("prior_width", 16), ("width", 8))
    config = dataclasses.replace(
        experiment(data, tmp_path / "fsrnet", epochs=1), model=ModelConfig("fsrnet", tiny_fsrnet)
    )
    summary = train(config)
    frame = pd.read_csv(tmp_path / "fsrnet" / "per_image.csv")
    assert (frame.landmark_error > 0).all() and (frame.landmark_error < 32 * 1.5).all()
    # The centre guess's error, from the generator's landmarks directly.
    from llvfsr.data.datasets import SyntheticFaces

    faces = SyntheticFaces("test", n=6, hr_size=32)
    centre = [np.linalg.norm(faces.exact_priors(i).landmarks - 15.5, axis=-1).mean() for i in range(6)]
    np.testing.assert_allclose(frame.landmark_error_centre, centre, rtol=1e-5)


def test_sr_cli_super_resolves_with_priors_extracted_on_the_fly(data, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from llvfsr.data.degrade import make_lr
    from llvfsr.sr import main as sr_main
    from llvfsr.trial_data import load_split

    config = experiment(data, tmp_path / "run", epochs=1)
    train(config)
    test = load_split(data, "test", {"mask", "depth", "caption", "description"}, torch.device("cpu"))
    hr, priors = test.batch(torch.tensor([2]))
    lr = make_lr(hr, data.scale)
    Image.fromarray((lr[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(tmp_path / "lr.png")
    args = ["--checkpoint", str(tmp_path / "run" / "checkpoint.pt"), "--input", str(tmp_path / "lr.png"),
            "--output", str(tmp_path / "sr.png")]  # fmt: skip
    assert sr_main([*args, "--synthetic-index", "2"]) == 0
    sr = np.asarray(Image.open(tmp_path / "sr.png")).astype(np.float64)
    model = build_model(config)
    load_checkpoint(tmp_path / "run" / "checkpoint.pt", None, model)
    with torch.no_grad():
        expected = model.eval()(lr, priors).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255
    assert sr.shape == (32, 32, 3) and np.abs(sr - expected).max() <= 1.0  # same priors as the store, same SR
    assert sr_main(args) == 2  # synthetic priors need --synthetic-index or real sources
    assert "synthetic priors" in capsys.readouterr().err
    with pytest.raises(SystemExit) as error:
        sr_main([*args[:2], "--input", str(tmp_path / "missing.png"), "--output", "x.png"])
    assert error.value.code == 2


def test_prior_dropout_trains_llvfsr_withholding_priors_and_refuses_other_models(data, tmp_path, monkeypatch):
    """With --prior-dropout the train step withholds about that share of the priors (face by face); a model that
    cannot withhold them (a baseline, Model 2) is refused with the flag named."""
    import llvfsr.train as train_module

    seen = []
    original = train_module.train_batch

    def spy(*args, **kwargs):
        lr, hr, priors = original(*args, **kwargs)
        seen.append(priors.withheld)
        return lr, hr, priors

    monkeypatch.setattr(train_module, "train_batch", spy)
    config = experiment(data, tmp_path / "dropout", epochs=2)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, prior_dropout=0.5))
    summary = train(config)
    withheld = torch.cat([w for w in seen if w is not None])
    assert withheld.shape[1] == 4 and len(withheld) >= 16 and 0.2 < withheld.float().mean() < 0.8
    assert 10 < summary["test_psnr"] < 60
    for model in ("srcnn", "llvfsr-model2"):
        refused = dataclasses.replace(config, model=ModelConfig(model, ()), out_dir=str(tmp_path / model))
        with pytest.raises(UsageError, match="--prior-dropout 0.5"):
            train(refused)
