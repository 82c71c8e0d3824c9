"""FSRNet baseline: sizes, prior heads, parsing targets and the paper's auxiliary loss."""

import pytest
import torch
import torch.nn.functional as F

from baselines.fsrnet import PARSING_GROUPS, mask_to_parsing_ids, parsing_targets
from llvfsr.heatmaps import heatmap_peaks, render_heatmaps
from llvfsr.models import build
from llvfsr.priors.types import MASK_CLASSES, Priors

TINY = dict(width=8, num_blocks=1, num_coarse_blocks=1, num_decoder_blocks=1, hg_stacks=1, hg_depth=2)


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _priors(batch: int, hr: int, seed: int = 0) -> Priors:
    g = torch.Generator().manual_seed(seed)
    landmarks = torch.rand(batch, 68, 2, generator=g) * (hr - 1)
    mask = torch.randint(0, len(MASK_CLASSES), (batch, hr // 4, hr // 4), generator=g)
    return Priors(mask=mask.repeat_interleave(4, 1).repeat_interleave(4, 2), landmarks=landmarks)


@pytest.mark.parametrize("scale", [8, 16])
def test_paper_size_shapes_and_parameter_count(scale):
    torch.manual_seed(0)
    model = build("fsrnet", scale=scale).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 256 // scale, 256 // scale))
    assert out.shape == (1, 3, 256, 256) and torch.isfinite(out).all()
    assert model.aux["coarse"].shape == (1, 3, 256, 256)
    assert model.aux["heatmaps"].shape == (1, 68, 128, 128)
    assert model.aux["parsing"].shape == (1, 11, 128, 128)
    # No official model: the paper's layer list (module docstring) at 256 px gives exactly this count, inside the
    # brief's range of ~2-3.5 M; any change to the layers changes it.
    assert _count(model) == 3_218_645


def test_auxiliary_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    model = build("fsrnet", scale=8, hr_size=64, **TINY)
    hr = F.interpolate(torch.rand(2, 3, 8, 8), size=64, mode="bilinear", align_corners=False)
    lr = F.interpolate(hr, scale_factor=1 / 8, mode="bicubic", antialias=True)
    priors = _priors(2, 64)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(12):
        optimiser.zero_grad()
        model(lr)
        loss = model.auxiliary_loss(hr, priors)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_auxiliary_loss_follows_the_paper_weighting():
    # Heads equal to their targets leave only the coarse MSE; a unit error on every prior value adds
    # lambda * (number of prior values) / (number of HR image values).
    model = build("fsrnet", scale=8, hr_size=64, **TINY)
    hr = torch.rand(2, 3, 64, 64)
    priors = _priors(2, 64)
    heat = render_heatmaps(priors.landmarks, (64, 64), (32, 32), model.heatmap_sigma)
    parsing = parsing_targets(priors.mask, (32, 32))
    coarse = torch.rand_like(hr)
    model.aux = {"coarse": coarse, "heatmaps": heat, "parsing": parsing}
    torch.testing.assert_close(model.auxiliary_loss(hr, priors), F.mse_loss(coarse, hr))
    model.aux = {"coarse": hr.clone(), "heatmaps": heat + 1, "parsing": parsing - 1}
    expected = torch.tensor((heat.numel() + parsing.numel()) / hr.numel())
    torch.testing.assert_close(model.auxiliary_loss(hr, priors), expected)


def test_auxiliary_loss_names_the_missing_target():
    model = build("fsrnet", scale=8, hr_size=64, **TINY)
    hr = torch.rand(1, 3, 64, 64)
    model(torch.rand(1, 3, 8, 8))
    full = _priors(1, 64)
    with pytest.raises(ValueError, match="landmarks"):
        model.auxiliary_loss(hr, None)
    with pytest.raises(ValueError, match="priors.mask is None"):
        model.auxiliary_loss(hr, Priors(landmarks=full.landmarks))
    with pytest.raises(ValueError, match="priors.landmarks is None"):
        model.auxiliary_loss(hr, Priors(mask=full.mask))


def test_parsing_groups_cover_each_celebamask_class_once():
    grouped = [name for names in PARSING_GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(MASK_CLASSES)
    ids = mask_to_parsing_ids(torch.arange(len(MASK_CLASSES)))
    names = list(PARSING_GROUPS)
    assert names[ids[MASK_CLASSES.index("l_ear")]] == "skin"
    assert names[ids[MASK_CLASSES.index("mouth")]] == "inner_mouth"
    assert names[ids[MASK_CLASSES.index("cloth")]] == "background"
    assert names[ids[MASK_CLASSES.index("r_eye")]] == "r_eye"


def test_parsing_targets_are_area_averaged_one_hot_maps():
    hair, nose = MASK_CLASSES.index("hair"), MASK_CLASSES.index("nose")
    mask = torch.full((1, 4, 4), hair)
    mask[0, 0, 0] = nose  # one of four pixels of the top-left 2x2 cell
    maps = parsing_targets(mask, (2, 2))
    names = list(PARSING_GROUPS)
    assert maps.shape == (1, 11, 2, 2)
    torch.testing.assert_close(maps.sum(1), torch.ones(1, 2, 2))
    assert maps[0, names.index("nose"), 0, 0] == 0.25 and maps[0, names.index("hair"), 0, 0] == 0.75
    assert maps[0, names.index("hair"), 1, 1] == 1.0


def test_heatmap_targets_peak_at_the_landmarks_at_half_resolution():
    priors = _priors(1, 256, seed=5)
    heat = render_heatmaps(priors.landmarks, (256, 256), (128, 128), 2.0)
    assert (heatmap_peaks(heat, (256, 256)) - priors.landmarks).abs().max() <= 1.0 + 1e-4
