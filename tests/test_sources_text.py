"""The caption and description sources (blip2, local-vlm, mmcelebahq) on tiny random-initialised models."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from llvfsr.priors.sources import ItemContext, make_source  # noqa: E402
from llvfsr.priors.sources.blip2 import Blip2Caption  # noqa: E402
from llvfsr.priors.sources.mmcelebahq import MMCelebAHQCaption, MMCelebAHQDescription  # noqa: E402
from llvfsr.priors.sources.vlm_local import LocalVLMDescription  # noqa: E402
from llvfsr.priors.sources.vlm_openai import load_prompt  # noqa: E402

HR = 32
# "face" first: a zeroed language-model head makes greedy decoding emit token 0 forever, a known answer.
WORDS = ["face", "<pad>", "<s>", "</s>", "<unk>", "a", "photo", "of", "woman", "man", "smiling"]
VOCAB = len(WORDS) + 1  # Blip2Processor appends its "<image>" token to the tokenizer
QUERY_TOKENS = 4


def tiny_blip2(zero_head: bool = False):
    vocab = {w: i for i, w in enumerate(WORDS)}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tok.decoder = tokenizers.decoders.WordPiece()  # joins word tokens with spaces
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    processor = transformers.Blip2Processor(
        image_processor=transformers.BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer,
        num_query_tokens=QUERY_TOKENS,
    )  # fmt: skip
    config = transformers.Blip2Config(
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        qformer_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                            encoder_hidden_size=32, vocab_size=VOCAB),
        text_config=dict(model_type="opt", vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, ffn_dim=37,
                         num_attention_heads=2, word_embed_proj_dim=32, max_position_embeddings=128,
                         bos_token_id=2, eos_token_id=3, pad_token_id=1),
        num_query_tokens=QUERY_TOKENS, image_token_index=len(WORDS),
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.Blip2ForConditionalGeneration(config).eval()
    if zero_head:
        with torch.no_grad():
            model.get_output_embeddings().weight.zero_()
    return model, processor


def lr_faces(n: int = 2, size: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def items(n: int, dataset=None) -> list[ItemContext]:
    return [ItemContext(index=i, item_id=str(i), dataset=dataset) for i in range(n)]


def test_blip2_caption_decodes_generated_tokens_only():
    model, processor = tiny_blip2(zero_head=True)
    source = Blip2Caption(model=model, processor=processor, max_new_tokens=3, device="cpu")
    assert source(lr_faces(2), HR, items(2)) == ["face face face"] * 2
    prompted = Blip2Caption(model=model, processor=processor, prompt="a photo of", max_new_tokens=2, device="cpu")
    assert prompted(lr_faces(2), HR, items(2)) == ["face face"] * 2  # the prompt is not echoed into the caption
    fp = prompted.fingerprint()
    assert fp["source"] == "blip2" and fp["prompt"] == "a photo of" and fp["max_new_tokens"] == 2


def test_blip2_random_model_matches_reference_generate_and_is_deterministic():
    model, processor = tiny_blip2()
    source = Blip2Caption(model=model, processor=processor, max_new_tokens=4, device="cpu")
    lr = lr_faces(3)
    out = source(lr, HR, items(3))
    assert len(out) == 3 and all(isinstance(c, str) for c in out)
    from PIL import Image

    images = [Image.fromarray(im).resize((HR, HR), Image.BICUBIC) for im in lr]
    with torch.no_grad():
        ids = model.generate(**processor(images=images, return_tensors="pt"), max_new_tokens=4, do_sample=False)
    assert out == [t.strip() for t in processor.batch_decode(ids, skip_special_tokens=True)]
    assert source(lr, HR, items(3)) == out


def test_blip2_loads_from_local_folder_offline(tmp_path):
    model, processor = tiny_blip2(zero_head=True)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    source = make_source("caption", "blip2", model_id=str(tmp_path), max_new_tokens=2, device="cpu")
    assert isinstance(source, Blip2Caption) and source.fingerprint()["model_id"] == str(tmp_path)
    assert source(lr_faces(1), HR, items(1)) == ["face face"]


def test_local_vlm_uses_versioned_prompt_and_strips_it():
    model, processor = tiny_blip2(zero_head=True)
    source = LocalVLMDescription(model=model, processor=processor, max_new_tokens=3, device="cpu")
    assert source.prompt == load_prompt("v1") and "face" in source.prompt.lower()
    assert source.prompt_text() == source.prompt  # no chat template on this processor: the bare prompt
    assert source(lr_faces(2), HR, items(2)) == ["face face face"] * 2
    fp = source.fingerprint()
    assert fp["source"] == "local-vlm" and fp["prompt_version"] == "v1" and len(fp["prompt_sha256"]) == 16


def test_local_vlm_uses_chat_template_when_the_processor_has_one():
    model, processor = tiny_blip2(zero_head=True)
    processor.chat_template = (
        "{% for m in messages %}{% for c in m['content'] %}{% if c['type'] == 'text' %}USER: {{ c['text'] }}"
        "{% endif %}{% endfor %}{% endfor %}{% if add_generation_prompt %} ASSISTANT:{% endif %}"
    )
    source = LocalVLMDescription(model=model, processor=processor, max_new_tokens=2, device="cpu")
    assert source.prompt_text() == f"USER: {load_prompt('v1')} ASSISTANT:"
    assert source(lr_faces(1), HR, items(1)) == ["face face"]


class TextDataset:
    """The slice of the FaceDataset interface the MM-CelebA-HQ sources read."""

    def __init__(self, texts: list[list[str]]):
        self._texts = texts

    def texts(self, i: int) -> dict | None:
        return {"captions": self._texts[i]} if self._texts[i] is not None else None


def test_mmcelebahq_caption_first_sentence_description_all_joined():
    sentences = [[f"Sentence {k} of face {i}.  " for k in range(10)] for i in range(3)]
    data = TextDataset(sentences)
    captions = make_source("caption", "mmcelebahq")(lr_faces(3), HR, items(3, data))
    descriptions = make_source("description", "mmcelebahq")(lr_faces(3), HR, items(3, data))
    assert captions == [f"Sentence 0 of face {i}." for i in range(3)]
    assert descriptions[1] == " ".join(f"Sentence {k} of face 1." for k in range(10))
    assert MMCelebAHQCaption().fingerprint()["sentences"] != MMCelebAHQDescription().fingerprint()["sentences"]
    with pytest.raises(ValueError, match="item 0"):
        MMCelebAHQCaption()(lr_faces(1), HR, items(1, TextDataset([None])))
