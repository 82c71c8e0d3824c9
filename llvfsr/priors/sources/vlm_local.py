"""Description prior from a local transformers image-text-to-text model (e.g. Qwen2-VL, LLaVA, SmolVLM, BLIP-2)."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from llvfsr.priors.sources.base import ItemContext, upsample_lr
from llvfsr.priors.sources.pretrained import PretrainedSource
from llvfsr.priors.sources.vlm_openai import load_prompt

DEFAULT_LOCAL_VLM = "Qwen/Qwen2-VL-2B-Instruct"


class LocalVLMDescription(PretrainedSource):
    """Detailed description of each LR face by a local vision-language model (the versioned prompt of `openai`).

    When the processor has a chat template the prompt goes in as one user turn holding the image and the text;
    otherwise (BLIP-2-style models) the prompt is the plain text input. Greedy decoding; only the new tokens are
    decoded.

    Args:
        model_id: hub id or local folder (AutoModelForImageTextToText + AutoProcessor); used when `model` is None.
        revision: hub revision to pin.
        model: a ready model (tests; `processor` required too).
        processor: its processor.
        prompt_version: which `description_<version>.txt` to use.
        max_new_tokens: description length limit.
        dtype: weights dtype on CUDA; the CPU always uses float32.
        device: default CUDA when present.
        batch_size: faces per call.
    """

    kind = "description"
    name = "local-vlm"
    model_class = "AutoModelForImageTextToText"
    processor_class = "AutoProcessor"

    def __init__(
        self,
        model_id: str = DEFAULT_LOCAL_VLM,
        revision: str | None = None,
        model: Any = None,
        processor: Any = None,
        prompt_version: str = "v1",
        max_new_tokens: int = 200,
        dtype: str = "bfloat16",
        device: str | None = None,
        batch_size: int = 8,
    ) -> None:
        self.prompt_version = prompt_version
        self.prompt = load_prompt(prompt_version)
        self.max_new_tokens = max_new_tokens
        self.load(model_id, revision, model, processor, device, batch_size, dtype)
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is not None and tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if tokenizer is not None:
            tokenizer.padding_side = "left"  # decoder-only generation continues from the right end

    def fingerprint(self) -> dict:
        return {**self.model_fingerprint(), "prompt_version": self.prompt_version,
                "prompt_sha256": hashlib.sha256(self.prompt.encode()).hexdigest()[:16],
                "max_new_tokens": self.max_new_tokens, "decoding": "greedy",
                "dtype": str(self.dtype).removeprefix("torch.")}  # fmt: skip

    def prompt_text(self) -> str:
        """The text input for one face: the chat-templated user turn, or the bare prompt."""
        if getattr(self.processor, "chat_template", None):
            turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt}]}]
            return self.processor.apply_chat_template(turn, add_generation_prompt=True)
        return self.prompt

    @torch.inference_mode()
    def __call__(self, lr: np.ndarray, hr_size: int, items: list[ItemContext]) -> list[str]:
        """Descriptions, one str per LR face (uint8 [B,h,w,3])."""
        images = upsample_lr(lr, hr_size)
        texts = [self.prompt_text()] * len(images)
        inputs = self.processor(images=images, text=texts, return_tensors="pt", padding=True).to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1)
        prompt_len = inputs["input_ids"].shape[1]
        if out.shape[1] > prompt_len and torch.equal(out[:, :prompt_len], inputs["input_ids"]):
            out = out[:, prompt_len:]  # decoder-only models echo the prompt; encoder-decoder ones do not
        texts = self.processor.batch_decode(out, skip_special_tokens=True)
        return [" ".join(text.split()) for text in texts]
