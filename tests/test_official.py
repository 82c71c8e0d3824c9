"""The authors' checkpoints: official key fixtures load strictly, outputs survive the mapping; WFEN's roll/memory."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from baselines import wfen
from llvfsr.heatmaps import heatmap_peaks, render_heatmaps
from llvfsr.models import build
from llvfsr.models.official import (
    OfficialCheckpointError,
    load_official,
    map_official,
    official_format,
    to_official,
)


def _saved_bytes(fn) -> int:
    """Bytes of the distinct storages autograd keeps for backward while `fn()` runs."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def _reference_window_attention(q, k, v, temperature):
    """The official computation with the [C, C] map built explicitly."""
    q, k = torch.nn.functional.normalize(q, dim=-1), torch.nn.functional.normalize(k, dim=-1)
    return v @ torch.relu((q.transpose(-2, -1) @ k) * temperature)


def test_one_pixel_window_attention_needs_no_channel_map():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 50, 1, 16, dtype=torch.float64) for _ in range(3))
    for temperature in (torch.tensor([[[1.7]]], dtype=torch.float64), torch.tensor([[[-0.6]]], dtype=torch.float64)):
        got = wfen.window_attention(q, k, v, temperature)
        torch.testing.assert_close(got, _reference_window_attention(q, k, v, temperature), rtol=0, atol=1e-12)


def test_regional_attention_keeps_no_channel_maps_for_backward():
    torch.manual_seed(0)
    channels, size = 128, 16
    x = torch.randn(1, channels, size, size)
    for window in (1, 2):
        attention = wfen.WindowChannelAttention(channels, window, shift=False)
        saved = _saved_bytes(lambda: attention(x))  # noqa: B023
        one_map_set = (size // window) ** 2 * channels**2 * 4  # [tiles, C, C] float32: 16 / 4 MiB at window 1 / 2
        # Measured 1.26 MiB at both windows (qkv convolutions, q, k, v); 33.5 / 9.5 MiB when the maps were kept.
        assert saved < one_map_set / 2, (window, saved)


def test_checkpointed_attention_gives_the_same_gradients():
    torch.manual_seed(0)
    attention = wfen.WindowChannelAttention(8, 2, shift=True).double()
    x = torch.randn(2, 8, 8, 8, dtype=torch.float64, requires_grad=True)
    attention(x).square().sum().backward()
    got = [p.grad.clone() for p in attention.parameters()] + [x.grad.clone()]
    attention.zero_grad()
    x.grad = None
    b, c, h, w = x.shape
    rolled = torch.roll(x, shifts=(-1, -1), dims=(2, 3))
    q, k, v = (
        t.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 3, 5, 1).reshape(b, -1, 4, c)
        for t in attention.qkv(rolled).chunk(3, dim=1)
    )
    out = _reference_window_attention(q, k, v, attention.temperature)
    out = out.reshape(b, h // 2, w // 2, 2, 2, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)
    attention.project_out(torch.roll(out, shifts=(1, 1), dims=(2, 3))).square().sum().backward()
    expected = [p.grad for p in attention.parameters()] + [x.grad]
    for a, e in zip(got, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)


def test_official_roll_rolls_the_qkv_input_of_one_pixel_windows_only():
    torch.manual_seed(0)
    x = torch.randn(1, 8, 8, 8)
    plain = wfen.WindowChannelAttention(8, 1, shift=True)
    official = wfen.WindowChannelAttention(8, 1, shift=True, official_roll=True)
    official.load_state_dict(plain.state_dict())
    expected = plain(torch.roll(x, shifts=(-1, -1), dims=(2, 3)))  # rolled input, output not rolled back
    torch.testing.assert_close(official(x), expected)
    assert (official(x) - plain(x)).abs().max() > 1e-2  # measured 1.1: the roll changes the output
    even_plain = wfen.WindowChannelAttention(8, 4, shift=True)
    even_official = wfen.WindowChannelAttention(8, 4, shift=True, official_roll=True)
    even_official.load_state_dict(even_plain.state_dict())
    torch.testing.assert_close(even_official(x), even_plain(x))


def test_wfen_official_roll_switch_reaches_every_regional_attention():
    model = wfen.WFEN(width=8, depth=3)
    model.set_official_roll(True)
    flags = [m.official_roll for m in model.modules() if isinstance(m, wfen.WindowChannelAttention)]
    assert flags and all(flags)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        rolled = model(x)
        model.set_official_roll(False)
        plain = model(x)
    assert (rolled - plain).abs().max() > 1e-6  # differs only through the shifted 1-pixel bottleneck block


# --- the authors' checkpoints (llvfsr.models.official) -----------------------------------------------------------

FIXTURES = Path(__file__).parent / "fixtures" / "official_keys"
# Smallest sizes each official-size model runs at, and its LR input (H, W).
CASES = {
    "wfen": ({"hr_size": 32}, (4, 4)),
    "sfmnet": ({"hr_size": 16}, (2, 2)),
    "sisn": ({}, (6, 5)),  # x4, non-square
    "dic": ({"hr_size": 64}, (8, 8)),
    "dic-hourglass": ({"hr_size": 64}, (8, 8)),
}


def _fixture(name: str) -> dict[str, list[int]]:
    return json.loads((FIXTURES / f"{name}.json").read_text())["keys"]


def _official_file(tmp_path: Path, state: dict[str, torch.Tensor], wrap: str = "state_dict") -> Path:
    """Save `state` as a release might: DataParallel's ``module.`` prefix inside a wrapper dict."""
    path = tmp_path / "release.pth"
    torch.save({wrap: {f"module.{k}": v for k, v in state.items()}}, path)
    return path


def _random_official(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict in the official format, from the fixture's names and shapes (fixed filters as stored)."""
    fmt = official_format(name)
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in _fixture(name).items():
        fixed = fmt.fixed(key, torch.Size(shape))
        if fixed is not None:
            state[key] = fixed
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        else:
            state[key] = torch.rand(shape, generator=generator) + (0.5 if key.endswith("running_var") else -0.5)
    return state


@pytest.mark.parametrize("name", list(CASES))
def test_random_official_state_dict_loads_strictly_onto_the_named_tensors(name, tmp_path):
    official = _random_official(name)
    model = load_official(name, _official_file(tmp_path, official), **CASES[name][0])
    loaded = to_official(name, model)
    fmt = official_format(name)
    dropped = {
        k
        for k in official
        if fmt.fixed(k, official[k].shape) is not None or any(re.fullmatch(p, k) for p in fmt.unused)
    }
    assert set(loaded) == set(official) - dropped  # every official key has a home, and only those
    for key, value in loaded.items():
        torch.testing.assert_close(value, official[key].to(value.dtype), rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("name", list(CASES))
def test_a_model_survives_the_round_trip_through_the_official_names(name, tmp_path):
    torch.manual_seed(0)
    overrides, lr_size = CASES[name]
    fmt = official_format(name)
    release = fmt.release({k: torch.empty(v) for k, v in _fixture(name).items()})
    own = build(fmt.model, **{**release, **overrides})
    if fmt.prepare is not None:
        fmt.prepare(own)  # the same switches (WFEN's roll, DIC's heatmap convention) on both sides
    state = to_official(name, own)
    state.update(
        {k: fmt.fixed(k, torch.Size(s)) for k, s in _fixture(name).items() if fmt.fixed(k, torch.Size(s)) is not None}
    )
    loaded = load_official(name, _official_file(tmp_path, state, wrap="model"), **overrides)
    lr = torch.rand(2, 3, *lr_size)
    if name == "dic-hourglass":  # the release holds the hourglass alone: compare its heatmaps on an HR face
        own, loaded, lr = own.landmark_net, loaded.landmark_net, torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = own.eval()(lr), loaded(lr)
    if name == "dic-hourglass":
        expected, got = expected[0], got[0]
    assert expected.abs().mean() > 1e-3  # measured 0.02-0.6: the outputs are not trivially zero
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_wfen_release_runs_the_official_roll():
    official = _random_official("wfen")
    model = build("wfen", hr_size=32)
    model.load_state_dict(map_official("wfen", model, official, "release"))
    assert not model.official_roll
    official_format("wfen").prepare(model)
    assert all(m.official_roll for m in model.modules() if isinstance(m, wfen.WindowChannelAttention))


def test_sfmnet_fusion_fre_holds_the_spatial_weights_and_spa_the_frequency_weights():
    """The trap: the official fuse block is called as (frequency, spatial) but names its arguments (spa, fre)."""
    official = _random_official("sfmnet")
    spatial_conv, frequency_conv = torch.full((64, 64, 3, 3), 1.0), torch.full((64, 64, 3, 3), 2.0)
    official["conv_fuse.3.fre.weight"], official["conv_fuse.3.spa.weight"] = spatial_conv, frequency_conv
    model = build("sfmnet", hr_size=16)
    model.load_state_dict(map_official("sfmnet", model, official, "release"))
    torch.testing.assert_close(model.fusions[3].spatial_in.weight.detach(), spatial_conv)
    torch.testing.assert_close(model.fusions[3].frequency_in.weight.detach(), frequency_conv)
    # fre_att (queries from the spatial side first) is the one attention the official block calls.
    torch.testing.assert_close(
        model.fusions[3].attend_spatial.temperature.detach(), official["conv_fuse.3.fre_att.temperature"]
    )


def test_sisn_release_is_x4_and_takes_44_by_54_faces(tmp_path):
    model = load_official("sisn", _official_file(tmp_path, _random_official("sisn")))
    assert model.scale == 4
    with torch.no_grad():
        assert model(torch.rand(1, 3, 54, 44)).shape == (1, 3, 216, 176)


def test_dic_hourglass_release_replaces_pretraining_and_starts_the_freeze(tmp_path):
    official = _random_official("dic-hourglass")
    model = load_official("dic-hourglass", _official_file(tmp_path, official), hr_size=64)
    assert model.hourglass_pretrain_steps == 0 and int(model.hourglass_freeze_left) == model.hourglass_freeze_steps
    torch.testing.assert_close(model.landmark_net.compress_in.weight.detach(), official["compress_in.weight"])


def test_a_wrong_file_names_the_expected_and_found_keys(tmp_path):
    path = _official_file(tmp_path, _random_official("wfen"))
    with pytest.raises(OfficialCheckpointError) as error:
        load_official("sfmnet", path, hr_size=16)
    message = str(error.value)
    assert str(path) in message
    assert "expected keys 500: head_fre.0.layers.weight, head_fre.0.act.weight," in message  # 584 less 14 x 6 spa_att
    assert "found keys 363: first_conv.weight, first_conv.bias," in message  # all of WFEN's
    assert "missing: 500: " in message and "unexpected: 363: " in message


def test_a_damaged_file_is_named(tmp_path):
    path = tmp_path / "WFEN.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(OfficialCheckpointError, match="WFEN.pth: not a readable PyTorch file"):
        load_official("wfen", path)
    with pytest.raises(OfficialCheckpointError, match="no such file"):
        load_official("wfen", tmp_path / "missing.pth")


def test_dic_freeze_keeps_no_adam_state_for_the_hourglass_until_the_release():
    torch.manual_seed(0)
    model = build("dic", hr_size=32, width=8, num_groups=1, num_steps=2, num_fusion_blocks=1, hg_width=16, hg_depth=1)
    model.hourglass_freeze_left.fill_(2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.attach_optimizer(optimizer)
    hourglass = list(model.landmark_net.parameters())
    before = [p.detach().clone() for p in hourglass]
    lr, hr = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 32, 32)
    for step in range(3):
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.l1_loss(model.train()(lr), hr).backward()
        optimizer.step()
        if step < 2:  # frozen: no state, no change (the authors' requires_grad = False)
            assert all(p not in optimizer.state for p in hourglass)
            assert all(torch.equal(p, b) for p, b in zip(hourglass, before, strict=True))
    # Released: Adam starts the hourglass at step 1 while the rest of the model is at step 3.
    steps = {int(optimizer.state[p]["step"]) for p in hourglass if p in optimizer.state}
    assert steps == {1}
    assert int(optimizer.state[model.head[0][0].weight]["step"]) == 3


def test_authors_heatmap_convention_centres_targets_at_x_over_4():
    landmarks = torch.tensor([[[30.0, 34.0]]])
    for convention, expected in (("centre", (7.125, 8.125)), ("authors", (7.5, 8.5))):
        maps = render_heatmaps(landmarks, (64, 64), (16, 16), sigma=1.0, convention=convention)
        xs, ys = torch.arange(16.0), torch.arange(16.0)
        centre_x = (maps[0, 0].sum(0) * xs).sum() / maps[0, 0].sum()
        centre_y = (maps[0, 0].sum(1) * ys).sum() / maps[0, 0].sum()
        assert abs(centre_x - expected[0]) < 1e-3 and abs(centre_y - expected[1]) < 1e-3, convention
        on_cell = torch.full((1, 1, 2), 9.5 if convention == "centre" else 8.0)  # HR points on heatmap cell 2
        peak = heatmap_peaks(render_heatmaps(on_cell, (64, 64), (16, 16), 1.0, convention), (64, 64), convention)
        torch.testing.assert_close(peak, on_cell)  # the inverse of the same convention


def test_train_cli_evaluates_the_authors_weights_without_training(tmp_path, capsys):
    from llvfsr.train import main

    own = build("wfen", hr_size=32)
    state = to_official("wfen", own)
    state.update({k: v for k, v in _random_official("wfen").items() if k not in state})  # the fixed Haar filters
    release = _official_file(tmp_path, state)
    common = ["--dataset", "synthetic", "--hr-size", "32", "--train-n", "8", "--val-n", "2", "--test-n", "4"]
    common += ["--allow-random-text-encoder", "--priors-root", str(tmp_path / "priors"), "--no-lpips", "--no-niqe"]
    common += ["--device", "cpu", "--epochs", "3"]
    assert main([*common, "--official", f"wfen={release}", "--out", str(tmp_path / "authors")]) == 0
    summary = json.loads((tmp_path / "authors" / "summary.json").read_text())
    assert summary["test_psnr"] > 5  # measured 13.8 dB: the released weights ran on the test faces
    assert not (tmp_path / "authors" / "checkpoint.pt").exists()  # no epoch was trained
    config = json.loads((tmp_path / "authors" / "config.json").read_text())
    assert any("official_checkpoint" in key for key in config), sorted(config)[:10]
    capsys.readouterr()
    assert main([*common, "--official", f"sfmnet={release}"]) == 1  # parsed, then the load fails
    err = capsys.readouterr().err
    assert "error: " in err and "not an official sfmnet checkpoint" in err and "expected keys 500" in err
    assert main([*common, "--official", "wfen"]) == 2
    assert "expected NAME=PATH" in capsys.readouterr().err


def test_table1_sweep_shows_an_authors_weights_row(tmp_path, capsys, monkeypatch):
    """A smoke table1 sweep with --official wfen=FILE: the release is evaluated (tag weights=official, not trained)
    and Table 1 prints "wfen (authors)" with the paper's WFEN numbers beside it."""
    from mlflow.tracking import MlflowClient

    from analysis.tables import main as tables_main
    from sweeps.run import main as sweep_main

    own = build("wfen", hr_size=32)
    state = to_official("wfen", own)
    state.update({k: v for k, v in _random_official("wfen").items() if k not in state})
    release = _official_file(tmp_path, state)
    monkeypatch.chdir(tmp_path)  # the preset's prior store lives in ./priors_cache
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = ["--grid", "table1", "--preset", "smoke", "--scale", "8", "--only", "bicubic,wfen (authors)"]
    argv += ["--official", f"wfen={release}", "--storage", str(tmp_path / "ray"), "--tracking-uri", uri]
    try:
        assert sweep_main([*argv, "--experiment", "official"]) == 0
    finally:
        import ray

        ray.shutdown()
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("official")
    runs = client.search_runs([experiment.experiment_id], "tags.role = 'trial'")
    authors = [r for r in runs if r.data.tags["variant"] == "wfen (authors)"]
    assert len(authors) == 1 and authors[0].data.tags["weights"] == "official"
    assert "train_loss" not in authors[0].data.metrics and authors[0].data.metrics["test_psnr"] > 5  # measured 14.35
    capsys.readouterr()
    assert tables_main(["--tracking-uri", uri, "--experiment", "official", "--grid", "table1"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| wfen (authors)"))
    assert "| 29.10 " in row, row  # the paper's WFEN x8 PSNR beside the authors'-weights row
    with pytest.raises(SystemExit) as exit_:
        sweep_main(["--grid", "ablation", "--official", f"wfen={release}", "--dry-run"])
    assert exit_.value.code == 2
    assert "--official adds authors'-weights rows to the table1 grid" in capsys.readouterr().err
