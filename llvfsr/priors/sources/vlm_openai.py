"""Description prior from any OpenAI-compatible chat-completions endpoint with image input (the paper's GPT-4 route).

Each LR face is sent as a base64 PNG data URL together with the versioned prompt
(`llvfsr/priors/prompts/description_<version>.txt`). Requests are rate limited, retried with exponential
backoff on transient failures (HTTP 408/409/429/5xx, timeouts, connection errors, malformed replies), and a
face that still fails raises `DescriptionAPIError`; the store then keeps every shard finished before it.
The API key is read from an environment variable and never logged or put in an error message.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import time
import urllib.error
import urllib.request
from importlib import resources
from urllib.parse import urlparse

import numpy as np

from llvfsr.errors import UserError
from llvfsr.priors.sources.base import ItemContext, PriorSource, upsample_lr

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}


class DescriptionAPIError(UserError, RuntimeError):
    """A description request failed for good (non-retryable status, or retries exhausted)."""


def load_prompt(version: str = "v1") -> str:
    """The description prompt of a given version, from the package's `priors/prompts` folder."""
    path = resources.files("llvfsr.priors").joinpath("prompts", f"description_{version}.txt")
    if not path.is_file():
        raise FileNotFoundError(f"no description prompt {version!r} (looked for {path})")
    return path.read_text(encoding="utf-8").strip()


def png_data_url(image: np.ndarray) -> str:
    """A `data:image/png;base64,...` URL of one uint8 [H, W, 3] RGB image (lossless, so nothing is added to the LR)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class OpenAIDescription(PriorSource):
    """Detailed description of each LR face by a vision-language chat model behind an OpenAI-compatible API.

    Args:
        model_id: the endpoint's model name (the paper used GPT-4; "gpt-4o" is its current vision model).
        base_url: API root; any compatible server (vLLM, Ollama, LM Studio, Azure-style proxies) works.
        api_key_env: environment variable holding the key; it may be unset only for a non-OpenAI host.
        prompt_version: which `description_<version>.txt` to send.
        requests_per_second: client-side rate limit (minimum spacing between request starts).
        max_retries: retries after the first attempt for transient failures.
        backoff_s: first retry delay; doubled each retry (a server's Retry-After wins when larger).
        timeout_s: socket timeout per request.
        max_tokens: reply length limit.
        temperature: 0 for the most repeatable descriptions.
        upsample: send the LR face bicubic-upsampled to HR (True) or at its LR size (False).
        batch_size: faces per call (requests are still made one face at a time).
    """

    kind = "description"
    name = "openai"

    def __init__(
        self,
        model_id: str = "gpt-4o",
        base_url: str = DEFAULT_BASE_URL,
        api_key_env: str = "OPENAI_API_KEY",
        prompt_version: str = "v1",
        requests_per_second: float = 1.0,
        max_retries: int = 5,
        backoff_s: float = 2.0,
        timeout_s: float = 60.0,
        max_tokens: int = 300,
        temperature: float = 0.0,
        upsample: bool = True,
        batch_size: int = 8,
    ) -> None:
        self.device = "remote"
        self.batch_size = batch_size
        self.model_id = model_id
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key_env = api_key_env
        if not os.environ.get(api_key_env) and urlparse(base_url).hostname == "api.openai.com":
            raise ValueError(f"set the API key in the environment variable {api_key_env} to use {base_url}")
        self.prompt_version = prompt_version
        self.prompt = load_prompt(prompt_version)
        self.min_interval_s = 1.0 / requests_per_second if requests_per_second > 0 else 0.0
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.upsample = upsample
        self._last_request = float("-inf")

    def fingerprint(self) -> dict:
        from llvfsr import __version__

        return {"source": self.name, "model_id": self.model_id, "revision": None, "version": __version__,
                "base_url": self.url.removesuffix("/chat/completions"), "prompt_version": self.prompt_version,
                "prompt_sha256": hashlib.sha256(self.prompt.encode()).hexdigest()[:16],
                "max_tokens": self.max_tokens, "temperature": self.temperature, "upsample": self.upsample}  # fmt: skip

    def request_body(self, image: np.ndarray) -> dict:
        """The chat-completions JSON body for one uint8 [H, W, 3] face."""
        content = [
            {"type": "text", "text": self.prompt},
            {"type": "image_url", "image_url": {"url": png_data_url(image)}},
        ]
        return {"model": self.model_id, "messages": [{"role": "user", "content": content}],
                "max_tokens": self.max_tokens, "temperature": self.temperature}  # fmt: skip

    def __call__(self, lr: np.ndarray, hr_size: int, items: list[ItemContext]) -> list[str]:
        """Descriptions, one str per LR face (uint8 [B,h,w,3]).

        Raises:
            DescriptionAPIError: a face could not be described (message names the item, never the key).
        """
        images = [np.asarray(im) for im in upsample_lr(lr, hr_size)] if self.upsample else list(lr)
        return [self._describe(image, item.item_id) for image, item in zip(images, items, strict=True)]

    def _describe(self, image: np.ndarray, item_id: str) -> str:
        data = json.dumps(self.request_body(image)).encode()
        delay, last_error = self.backoff_s, "no attempt"
        for attempt in range(self.max_retries + 1):
            retry_after = 0.0
            try:
                return self._post_once(data)
            except urllib.error.HTTPError as err:
                last_error = f"HTTP {err.code}: {_error_text(err)}"
                if err.code not in _RETRYABLE_STATUS:
                    raise DescriptionAPIError(f"item {item_id}: {self.url} answered {last_error}") from None
                retry_after = _retry_after_s(err)
            except (TimeoutError, urllib.error.URLError, ConnectionError) as err:
                last_error = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
            except _MalformedReply as err:
                last_error = f"malformed reply: {err}"
            if attempt < self.max_retries:
                time.sleep(max(delay, retry_after))
                delay *= 2
        raise DescriptionAPIError(
            f"item {item_id}: {self.max_retries + 1} attempts to {self.url} failed; last: {last_error}"
        )

    def _post_once(self, data: bytes) -> str:
        wait = self._last_request + self.min_interval_s - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last_request = time.monotonic()
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            raw = response.read()
        return _parse_reply(raw)


class _MalformedReply(ValueError):
    pass


def _parse_reply(raw: bytes) -> str:
    try:
        text = json.loads(raw)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise _MalformedReply(f"{type(err).__name__} in {raw[:200]!r}") from None
    if isinstance(text, list):  # some servers return content parts
        text = " ".join(part.get("text", "") for part in text if isinstance(part, dict))
    if not isinstance(text, str) or not text.strip():
        raise _MalformedReply(f"empty content in {raw[:200]!r}")
    return " ".join(text.split())


def _error_text(err: urllib.error.HTTPError) -> str:
    try:
        return err.read(300).decode("utf-8", "replace")
    except Exception:  # the body is only a hint for the message
        return str(err.reason)


def _retry_after_s(err: urllib.error.HTTPError) -> float:
    try:
        return float(err.headers.get("Retry-After", 0))
    except (TypeError, ValueError):
        return 0.0
