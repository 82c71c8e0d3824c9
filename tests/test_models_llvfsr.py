"""LLV-FSR and its ablation variants: ablations really lack their branch, each prior reaches the output.

That every variant builds, runs and trains at x8 and x16 is the registry's contract (tests/test_models.py)."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from llvfsr.models import build, get_entry, list_models
from llvfsr.models.lvpfb import BRANCHES, DescriptionAttention
from llvfsr.priors import Priors, TextEmbedding

TINY = {"width": 8, "num_blocks": 2, "heads": 2, "text_dim": 16, "body_down": 2}
LLVFSR_VARIANTS = [name for name in list_models() if name.startswith("llvfsr")]


def make_priors(batch: int, hr: int, seed: int = 0, text_dim: int = 16, tokens: int = 12) -> Priors:
    g = torch.Generator().manual_seed(seed)
    valid = torch.arange(tokens)[None].expand(batch, tokens) < torch.tensor([[5], [9]])[:batch]

    def text():
        return TextEmbedding(
            torch.randn(batch, tokens, text_dim, generator=g), torch.randn(batch, text_dim, generator=g), valid.clone()
        )

    return Priors(
        mask=torch.randint(0, 19, (batch, hr, hr), generator=g),
        depth=torch.rand(batch, 1, hr, hr, generator=g),
        caption=text(),
        description=text(),
    )


@pytest.mark.parametrize("prior", BRANCHES)
def test_ablation_lacks_branch_parameters_and_input(prior):
    full = build("llvfsr", scale=8, **TINY)
    ablated = build(f"llvfsr-wo-{prior}", scale=8, **TINY)
    assert prior not in ablated.required_priors and prior not in get_entry(f"llvfsr-wo-{prior}").priors
    attribute = {"mask": "seg", "depth": "dep", "caption": "cap", "description": "des"}[prior]
    assert all(getattr(block, attribute) is None for block in ablated.fusions)
    assert all(getattr(block, attribute) is not None for block in full.fusions)
    n_full = sum(p.numel() for p in full.parameters())
    n_ablated = sum(p.numel() for p in ablated.parameters())
    assert n_ablated < n_full
    # The ablated model runs without that input at all (removed, not zero-filled).
    priors = make_priors(2, 32)
    setattr(priors, prior, None)
    assert ablated(torch.rand(2, 3, 4, 4), priors).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match=prior):
        full(torch.rand(2, 3, 4, 4), priors)


# Smallest effect a prior must have on the output: the change when only that prior is swapped, relative to what
# the network adds to a bicubic up-sampling. Measured at 1, 2 and 4 threads: mask 0.023, depth 0.032, caption
# 0.022, description 0.196; with the branch's output scaled down 10^4 times: 2.2e-6 to 2.0e-5.
PRIOR_EFFECT = 2e-3
BRANCH_MODULE = {"mask": "seg", "depth": "dep", "caption": "cap", "description": "des"}


def prior_effect(model, prior: str) -> float:
    """How much swapping only `prior` (seeded random priors) changes `model`'s output, relative to its residual."""
    torch.manual_seed(0)
    lr = torch.rand(2, 3, 4, 4)
    base, changed = make_priors(2, 32, seed=1), make_priors(2, 32, seed=2)
    mixed = Priors(**{**{f: getattr(base, f) for f in BRANCHES}, prior: getattr(changed, prior)})
    with torch.no_grad():
        out, out_mixed = model(lr, base), model(lr, mixed)
    residual = out - F.interpolate(lr, scale_factor=8, mode="bicubic", align_corners=False)
    return ((out - out_mixed).norm() / residual.norm()).item()


@pytest.mark.parametrize("prior", BRANCHES)
def test_each_prior_reaches_the_output(prior):
    torch.manual_seed(0)
    assert prior_effect(build("llvfsr", scale=8, **TINY), prior) > PRIOR_EFFECT
    assert prior_effect(build(f"llvfsr-wo-{prior}", scale=8, **TINY), prior) == 0


@pytest.mark.parametrize("prior", BRANCHES)
def test_the_prior_effect_bound_fails_a_branch_scaled_down_ten_thousand_times(prior):
    torch.manual_seed(0)
    model = build("llvfsr", scale=8, **TINY)
    for block in model.fusions:
        getattr(block, BRANCH_MODULE[prior]).register_forward_hook(lambda module, args, out: out * 1e-4)
    assert prior_effect(model, prior) < PRIOR_EFFECT


def test_model1_needs_no_priors_and_model2_fuses_by_concatenation():
    model1 = build("llvfsr-model1", scale=8, **TINY)
    assert model1.fusions is None and model1.mask_encoder is None and not model1.required_priors
    assert model1(torch.rand(1, 3, 4, 4), None).shape == (1, 3, 32, 32)
    model2 = build("llvfsr-model2", scale=8, **TINY)
    assert type(model2.fusions[0]).__name__ == "ConcatFusion"
    assert model2.required_priors == frozenset(BRANCHES)


@pytest.mark.parametrize("query", ["text", "image"])
def test_description_attention_is_spatial_and_ignores_padding(query):
    torch.manual_seed(0)
    attention = DescriptionAttention(channels=8, text_dim=16, heads=2, query=query)
    x = torch.randn(2, 8, 6, 5)
    text = make_priors(2, 8).description
    out = attention(x, text)
    assert out.shape == x.shape
    padded = TextEmbedding(text.tokens.clone(), text.pooled, text.valid)
    padded.tokens[~text.valid] = 100.0  # change only padding positions
    assert torch.allclose(attention(x, padded), out, atol=1e-5)
    other = TextEmbedding(text.tokens + 1.0, text.pooled, text.valid)
    assert not torch.allclose(attention(x, other), out, atol=1e-4)


def test_window_transformer_option_and_bad_values():
    model = build("llvfsr", scale=8, transformer="window", window=4, **TINY)
    assert model(torch.rand(1, 3, 4, 4), make_priors(1, 32)).shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="transformer kind"):
        build("llvfsr", scale=8, transformer="bogus", **TINY)
    with pytest.raises(KeyError, match="registered models"):
        build("no-such-model")


def test_a_withheld_prior_reaches_nothing_and_a_kept_one_still_does():
    """Prior dropout's switch: for a face whose mask is withheld the output ignores the mask; the other face still
    reads it; withholding nothing is the plain model; Model 2's concatenation refuses the switch."""
    torch.manual_seed(0)
    model = build("llvfsr", scale=8, **TINY).eval()
    lr, priors = torch.rand(2, 3, 4, 4), make_priors(2, 32)
    other = dataclasses.replace(
        priors, mask=torch.randint(0, 19, (2, 32, 32), generator=torch.Generator().manual_seed(9))
    )
    withheld = torch.tensor([[True, False, False, False], [False, False, False, False]])  # face 0: no mask
    with torch.no_grad():
        plain = model(lr, priors)
        a = model(lr, dataclasses.replace(priors, withheld=withheld))
        b = model(lr, dataclasses.replace(other, withheld=withheld))
        nothing = model(lr, dataclasses.replace(priors, withheld=torch.zeros(2, 4, dtype=torch.bool)))
    assert torch.equal(nothing, plain)
    assert torch.allclose(a[0], b[0], atol=1e-6)  # face 0 ignores its mask
    assert (a[1] - b[1]).abs().max() > 1e-3  # face 1 still reads it
    assert (a[0] - plain[0]).abs().max() > 1e-3  # and withholding changed face 0
    model2 = build("llvfsr-model2", scale=8, **TINY)
    with pytest.raises(ValueError, match="cannot withhold"):
        model2(lr, dataclasses.replace(priors, withheld=withheld))
