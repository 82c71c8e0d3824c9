"""Tests of the CLIP text encoder wrapper on tiny random-initialised open_clip configs (no downloads)."""

import logging

import open_clip
import pytest
import torch

from llvfsr.priors.text_encoder import (
    ClipTextEncoder,
    TextEncoderError,
    pad_tokens,
    split_sentences,
    tiny_clip_config,
)

TEXTS = ["a photo of a smiling woman with long brown hair", "a man with short black hair and a beard", "a face"]


@pytest.fixture(autouse=True)
def offline(hub_offline):
    """Every test here runs without the Hugging Face Hub (`conftest.hub_offline`)."""


@pytest.fixture(scope="module")
def encoder():
    torch.set_num_threads(1)
    return ClipTextEncoder(pretrained=None, allow_random=True, seed=3, model_cfg=tiny_clip_config())


def _reference_model(seed: int) -> torch.nn.Module:
    """The same tiny CLIP built directly with open_clip under the same seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return open_clip.create_model("ViT-B-32", pretrained=None, **tiny_clip_config()).eval()


def test_shapes_dtypes_and_valid_mask(encoder):
    tokens, pooled, valid = encoder.encode(TEXTS)
    assert tokens.shape == (3, 77, 32) and tokens.dtype == torch.float16
    assert pooled.shape == (3, 24) and pooled.dtype == torch.float16
    assert valid.shape == (3, 77) and valid.dtype == torch.bool
    assert valid.sum(dim=1).tolist() == encoder.token_lengths(TEXTS)
    assert valid[:, 0].all()  # the start token
    assert (tokens[~valid] == 0).all() and (tokens[valid].abs().sum(dim=-1) > 0).all()
    assert encoder.fingerprint()["random_init"] is True and encoder.random_init


def test_matches_open_clip_reference(encoder):
    """pooled = open_clip's encode_text; tokens = ln_final of the final transformer layer, on valid positions."""
    reference = _reference_model(seed=3)
    ids = open_clip.get_tokenizer("ViT-B-32")(TEXTS)
    with torch.no_grad():
        expected_pooled = reference.encode_text(ids)
        x = reference.token_embedding(ids) + reference.positional_embedding
        expected_tokens = reference.ln_final(reference.transformer(x, attn_mask=reference.attn_mask))
    tokens, pooled, valid = encoder.encode(TEXTS)
    torch.testing.assert_close(pooled.float(), expected_pooled, atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(tokens[valid].float(), expected_tokens[valid], atol=5e-3, rtol=2e-3)
    eot = ids.argmax(dim=-1)  # the end-of-text id is the largest: the pooled token is the last valid one
    assert (valid.sum(dim=1) - 1).tolist() == eot.tolist()


def test_deterministic_and_text_dependent(encoder):
    again = ClipTextEncoder(pretrained=None, allow_random=True, seed=3, model_cfg=tiny_clip_config())
    other_seed = ClipTextEncoder(pretrained=None, allow_random=True, seed=4, model_cfg=tiny_clip_config())
    first, second = encoder.encode(TEXTS), again.encode(TEXTS)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(first[1], other_seed.encode(TEXTS)[1])
    pooled = first[1].float()
    distances = torch.cdist(pooled, pooled)
    assert (distances + torch.eye(3) * 1e9).min() > 1e-2  # three different texts, three different embeddings
    batched = encoder.encode(TEXTS[:1])[1]
    assert torch.equal(batched[0], first[1][0])  # independent of the other texts in the batch


def test_long_text_is_truncated(encoder):
    words = " ".join(f"word{i}" for i in range(120))
    texts = [words + " the end is blue", words + " the end is green"]
    assert all(n > 77 for n in encoder.token_lengths(texts))
    before = encoder.num_truncated
    tokens, pooled, valid = encoder.encode(texts)
    assert encoder.num_truncated == before + 2
    assert valid.all()
    ids = encoder.tokenize(texts)
    assert (ids[:, -1] == encoder.tokenizer.eot_token_id).all()
    assert torch.equal(pooled[0], pooled[1])  # they differ only after the context length


def test_no_weights_without_flag_raises_clear_error(tmp_path):
    with pytest.raises(TextEncoderError, match="--allow-random-text-encoder"):
        ClipTextEncoder("ViT-B-32", "openai", model_cfg=tiny_clip_config())
    with pytest.raises(TextEncoderError, match="local checkpoint"):
        ClipTextEncoder("ViT-B-32", str(tmp_path / "missing.pt"), model_cfg=tiny_clip_config())
    with pytest.raises(TextEncoderError):
        ClipTextEncoder("ViT-B-32", None, model_cfg=tiny_clip_config())


def test_random_fallback_only_with_flag_is_recorded():
    encoder = ClipTextEncoder("ViT-B-32", "openai", allow_random=True, model_cfg=tiny_clip_config())
    fingerprint = encoder.fingerprint()
    assert fingerprint["random_init"] is True and fingerprint["requested_pretrained"] == "openai"
    assert fingerprint["pretrained"] is None and "Failed" in encoder.load_error


def test_loads_local_checkpoint(tmp_path):
    reference = _reference_model(seed=11)
    path = tmp_path / "tiny_clip.pt"
    torch.save(reference.state_dict(), path)
    encoder = ClipTextEncoder("ViT-B-32", str(path), model_cfg=tiny_clip_config())
    assert not encoder.random_init
    fingerprint = encoder.fingerprint()
    assert fingerprint["random_init"] is False and fingerprint["pretrained"]["bytes"] == path.stat().st_size
    with torch.no_grad():
        expected = reference.encode_text(encoder.tokenize(TEXTS))
    torch.testing.assert_close(encoder.encode(TEXTS)[1].float(), expected, atol=2e-3, rtol=2e-3)


def test_pad_tokens_restores_context_length():
    tokens = torch.randn(2, 5, 4).half()
    tokens[1, 3:] = 0
    full, valid = pad_tokens(tokens.numpy(), torch.tensor([5, 3]).numpy(), 9)
    assert full.shape == (2, 9, 4) and torch.equal(full[:, :5], tokens) and (full[:, 5:] == 0).all()
    assert valid.sum(dim=1).tolist() == [5, 3]


def test_prefix_forward_equals_full_forward(encoder, monkeypatch):
    """The causal prefix-only forward gives what the full 77-token encode_text gives."""
    assert encoder._trimmable
    trimmed = encoder.encode(TEXTS)
    monkeypatch.setattr(encoder, "_trimmable", False)
    full = encoder.encode(TEXTS)
    assert torch.equal(trimmed[2], full[2])
    torch.testing.assert_close(trimmed[0].float(), full[0].float(), atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(trimmed[1].float(), full[1].float(), atol=2e-3, rtol=2e-3)


LONG = (
    "She has long wavy brown hair parted in the middle. Her eyes are green and wide open. "
    "She wears small round glasses with thin black frames. Her mouth is closed in a gentle smile; her lips are "
    "full and pink. Her skin is fair with a few freckles across her nose and cheeks. The background is a plain "
    "light grey wall. A thin silver necklace hangs around her neck, and she wears small pearl earrings."
)


@pytest.fixture(scope="module")
def sentence_encoder():
    return ClipTextEncoder(pretrained=None, allow_random=True, seed=3, model_cfg=tiny_clip_config(),
                           chunking="sentences")  # fmt: skip


def test_split_sentences():
    assert split_sentences("One. Two!  Three? Four; five") == ["One.", "Two!", "Three?", "Four;", "five"]
    assert split_sentences("  ") == [""] and split_sentences("no stop") == ["no stop"]
    assert split_sentences("Dr.Smith is 1.5 m tall.") == ["Dr.Smith is 1.5 m tall."]  # no space: no split


def test_sentences_keep_what_truncation_cuts(encoder, sentence_encoder):
    # Measured: the description is 87 tokens, CLIP's window 77, so truncation drops 10; sentence-wise keeps all
    # (94 positions: each of the 8 sentences brings its own end-of-text token).
    assert encoder.token_lengths([LONG])[0] > 77
    assert encoder.cut_tokens([LONG])[0] == encoder.token_lengths([LONG])[0] - 77
    assert sentence_encoder.cut_tokens([LONG]) == [0]
    before = sentence_encoder.num_truncated
    tokens, pooled, valid = sentence_encoder.encode([LONG, TEXTS[0]])
    assert sentence_encoder.num_truncated == before
    assert tokens.shape == (2, 231, 32) and valid.shape == (2, 231) and pooled.shape == (2, 24)
    parts = split_sentences(LONG)
    lengths = encoder.token_lengths(parts)
    assert valid[0].sum() == 1 + sum(n - 1 for n in lengths)  # one start token, then each sentence's tokens
    assert (tokens[~valid] == 0).all()
    # Values: the concatenation is each sentence encoded alone (truncate mode), the start token kept once, and
    # the pooled embedding their mean.
    alone, alone_pooled, alone_valid = encoder.encode(parts)
    expected = torch.cat([alone[k][alone_valid[k]][(0 if k == 0 else 1) :] for k in range(len(parts))])
    torch.testing.assert_close(tokens[0][valid[0]].float(), expected.float(), atol=1e-3, rtol=0)
    torch.testing.assert_close(pooled[0].float(), alone_pooled.float().mean(0), atol=2e-3, rtol=0)
    # The last sentence (past CLIP's window) reaches the states: change it and the tail changes, not the head.
    changed = LONG.replace("small pearl earrings", "large gold hoops")
    assert torch.equal(encoder.encode([changed])[0], encoder.encode([LONG])[0])  # truncation never reads it
    other = sentence_encoder.encode([changed])[0][0]
    head = 1 + sum(n - 1 for n in lengths[:-1])
    assert torch.equal(other[:head], tokens[0][:head]) and not torch.equal(other[head:], tokens[0][head:])
    # A one-sentence text: identical to truncate mode, padded to 231 positions.
    short, short_pooled, short_valid = encoder.encode(TEXTS[:1])
    assert torch.equal(valid[1, :77], short_valid[0]) and not valid[1, 77:].any()
    torch.testing.assert_close(tokens[1, :77].float(), short[0].float(), atol=1e-3, rtol=0)
    torch.testing.assert_close(pooled[1].float(), short_pooled[0].float(), atol=1e-3, rtol=0)


def test_sentences_cut_at_max_tokens():
    small = ClipTextEncoder(pretrained=None, allow_random=True, seed=3, model_cfg=tiny_clip_config(),
                            chunking="sentences", max_tokens=20)  # fmt: skip
    kept = 1 + sum(n - 1 for n in small.token_lengths(split_sentences(LONG)))
    assert small.cut_tokens([LONG]) == [kept - 20]
    before = small.num_truncated
    tokens, _, valid = small.encode([LONG])
    assert tokens.shape == (1, 20, 32) and valid.all() and small.num_truncated == before + 1


def test_chunking_is_recorded_and_checked(encoder, sentence_encoder):
    assert encoder.fingerprint()["text_chunking"] == "truncate" and encoder.fingerprint()["max_tokens"] is None
    fingerprint = sentence_encoder.fingerprint()
    assert fingerprint["text_chunking"] == "sentences" and fingerprint["max_tokens"] == fingerprint["context_length"]
    with pytest.raises(ValueError, match="'paragraphs'"):
        ClipTextEncoder(pretrained=None, allow_random=True, model_cfg=tiny_clip_config(), chunking="paragraphs")


def test_a_random_encoder_is_announced_once_with_its_real_shape(caplog):
    with caplog.at_level(logging.INFO):
        ClipTextEncoder(pretrained=None, allow_random=True, model_cfg=tiny_clip_config())
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    # the tiny tower is not ViT-B-32's text tower: the warning says it was resized, and open_clip's own
    # "No pretrained weights loaded for model 'ViT-B-32'" (misleading here, and a repeat) is held back
    assert len(warnings) == 1 and "resized by model_cfg (text width 32)" in warnings[0], warnings
    assert not logging.getLogger().filters  # the filter is gone after the build
