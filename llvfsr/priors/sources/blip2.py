"""Caption prior from BLIP-2 (paper Sec. 3.3: "we feed LR images into BLIP2 to generate the ... captions")."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from llvfsr.priors.sources.base import ItemContext, upsample_lr
from llvfsr.priors.sources.pretrained import PretrainedSource

DEFAULT_BLIP2 = "Salesforce/blip2-opt-2.7b"


class Blip2Caption(PretrainedSource):
    """One-sentence caption of each LR face by BLIP-2 (greedy decoding, so the same face gives the same caption).

    Args:
        model_id: hub id or local folder of a `Blip2ForConditionalGeneration` checkpoint; used when `model` is None.
        revision: hub revision to pin.
        model: a ready BLIP-2 model (tests; `processor` required too).
        processor: its `Blip2Processor`.
        prompt: optional text prefix (e.g. "a photo of"); None = unconditional captioning, as in the paper.
        max_new_tokens: caption length limit.
        dtype: weights dtype on CUDA ("float16" halves the 2.7B model's memory); the CPU always uses float32.
        device: default CUDA when present.
        batch_size: faces per call.
    """

    kind = "caption"
    name = "blip2"
    model_class = "Blip2ForConditionalGeneration"
    processor_class = "Blip2Processor"

    def __init__(
        self,
        model_id: str = DEFAULT_BLIP2,
        revision: str | None = None,
        model: Any = None,
        processor: Any = None,
        prompt: str | None = None,
        max_new_tokens: int = 30,
        dtype: str = "float16",
        device: str | None = None,
        batch_size: int = 16,
    ) -> None:
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.load(model_id, revision, model, processor, device, batch_size, dtype)

    def fingerprint(self) -> dict:
        return {**self.model_fingerprint(), "prompt": self.prompt, "max_new_tokens": self.max_new_tokens,
                "decoding": "greedy", "dtype": str(self.dtype).removeprefix("torch.")}  # fmt: skip

    @torch.inference_mode()
    def __call__(self, lr: np.ndarray, hr_size: int, items: list[ItemContext]) -> list[str]:
        """Captions, one str per LR face (uint8 [B,h,w,3])."""
        images = upsample_lr(lr, hr_size)
        kwargs = {"text": [self.prompt] * len(images)} if self.prompt else {}
        inputs = self.processor(images=images, return_tensors="pt", **kwargs).to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1)
        prompt_ids = inputs.get("input_ids")
        if (
            prompt_ids is not None
            and out.shape[1] > prompt_ids.shape[1]
            and torch.equal(out[:, : prompt_ids.shape[1]], prompt_ids)
        ):
            out = out[:, prompt_ids.shape[1] :]  # decoder-only language models echo the prompt
        return [text.strip() for text in self.processor.batch_decode(out, skip_special_tokens=True)]
