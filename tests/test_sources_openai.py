"""The `openai` description source against a local fake chat-completions server (http.server in a thread)."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from llvfsr.priors.extract import extract_priors
from llvfsr.priors.sources import ItemContext, make_source
from llvfsr.priors.sources.vlm_openai import DescriptionAPIError, OpenAIDescription, load_prompt

SECRET = "sk-test-not-a-real-key-0123456789"
HR = 32


class FakeServer:
    """Answers POST /v1/chat/completions with scripted replies: ("ok", text) | ("status", code) | ("hang", None) |
    ("raw", bytes). The last script entry repeats. Every request body and header set is recorded.

    "hang" holds the reply until the server closes, so a client timeout fires however slow the machine is (a
    fixed sleep raced the client's timeout on a loaded machine).
    """

    def __init__(self, script: list[tuple]):
        self.script = list(script)
        self.requests: list[dict] = []
        self.closing = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                action, arg = server.script.pop(0) if len(server.script) > 1 else server.script[0]
                if action == "hang":
                    server.closing.wait(timeout=60)  # bounded, so a broken client cannot hang the suite
                    action, arg = "ok", "late reply"
                if action == "status":
                    self.send_response(arg)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(json.dumps({"error": {"message": f"scripted {arg}"}}).encode())
                    return
                payload = (
                    arg
                    if action == "raw"
                    else json.dumps(
                        {"choices": [{"index": 0, "message": {"role": "assistant", "content": arg}}]}
                    ).encode()
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def lr_faces(n: int = 2, size: int = 8) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def items(n: int) -> list[ItemContext]:
    return [ItemContext(index=i, item_id=f"face{i}", dataset=None) for i in range(n)]


def source(url: str, **kw) -> OpenAIDescription:
    options = dict(model_id="test-vlm", base_url=url, requests_per_second=0, max_retries=2, backoff_s=0.01)
    options["timeout_s"] = 2.0
    return OpenAIDescription(**{**options, **kw})


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)


def test_sends_well_formed_request_with_lr_image_and_versioned_prompt():
    lr = lr_faces(2)
    with FakeServer([("ok", "  A young woman\nwith long hair. ")]) as server:
        out = make_source("description", "openai", model_id="test-vlm", base_url=server.url, requests_per_second=0)(
            lr, HR, items(2)
        )
    assert out == ["A young woman with long hair."] * 2
    assert len(server.requests) == 2
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert request["headers"]["Content-Type"] == "application/json"
    body = request["body"]
    assert body["model"] == "test-vlm" and body["temperature"] == 0.0 and body["max_tokens"] > 0
    (message,) = body["messages"]
    assert message["role"] == "user"
    text, image = message["content"]
    assert text == {"type": "text", "text": load_prompt("v1")}
    url = image["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    sent = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))
    expected = np.asarray(Image.fromarray(lr[0]).resize((HR, HR), Image.BICUBIC))
    np.testing.assert_array_equal(sent, expected)  # the LR face, upsampled with the stated filter, losslessly


def test_sends_lr_size_when_not_upsampling():
    lr = lr_faces(1)
    with FakeServer([("ok", "x")]) as server:
        source(server.url, upsample=False)(lr, HR, items(1))
    url = server.requests[0]["body"]["messages"][0]["content"][1]["image_url"]["url"]
    sent = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))
    np.testing.assert_array_equal(sent, lr[0])


def test_retries_server_errors_then_succeeds():
    with FakeServer([("status", 503), ("status", 429), ("ok", "fine")]) as server:
        assert source(server.url)(lr_faces(1), HR, items(1)) == ["fine"]
    assert len(server.requests) == 3


def test_non_retryable_error_fails_at_once_without_leaking_the_key():
    with FakeServer([("status", 401)]) as server:
        with pytest.raises(DescriptionAPIError, match="face0.*HTTP 401") as err:
            source(server.url)(lr_faces(1), HR, items(1))
    assert len(server.requests) == 1
    assert SECRET not in str(err.value)


def test_retries_exhausted_raises_typed_error():
    with FakeServer([("status", 500)]) as server:
        with pytest.raises(DescriptionAPIError, match="3 attempts.*HTTP 500"):
            source(server.url, max_retries=2)(lr_faces(1), HR, items(1))
    assert len(server.requests) == 3


def test_timeout_is_retried_and_then_reported():
    # A hung request always times out; the 1 s timeout only has to cover a prompt local reply to the retry.
    with FakeServer([("hang", None), ("ok", "after timeout")]) as server:
        assert source(server.url, timeout_s=1.0)(lr_faces(1), HR, items(1)) == ["after timeout"]
    assert len(server.requests) == 2
    with FakeServer([("hang", None)]) as server:
        with pytest.raises(DescriptionAPIError, match="(?i)timeout|timed out"):
            source(server.url, timeout_s=0.2, max_retries=1)(lr_faces(1), HR, items(1))
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    "raw", [b"not json at all", b'{"choices": []}', b'{"choices": [{"message": {"content": ""}}]}', b'{"id": 1}']
)
def test_malformed_reply_is_retried_and_reported(raw):
    with FakeServer([("raw", raw), ("ok", "recovered")]) as server:
        assert source(server.url)(lr_faces(1), HR, items(1)) == ["recovered"]
    with FakeServer([("raw", raw)]) as server:
        with pytest.raises(DescriptionAPIError, match="malformed reply"):
            source(server.url, max_retries=1)(lr_faces(1), HR, items(1))


def test_rate_limit_spaces_requests():
    with FakeServer([("ok", "x")]) as server:
        start = time.monotonic()
        source(server.url, requests_per_second=20)(lr_faces(4), HR, items(4))
        elapsed = time.monotonic() - start
    assert len(server.requests) == 4
    assert elapsed >= 3 / 20 - 0.01  # 4 requests, at least 3 gaps of 50 ms


def test_missing_key_for_openai_host_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        OpenAIDescription()
    fp = source("http://127.0.0.1:9/v1").fingerprint()  # a local server needs no key
    assert fp["source"] == "openai" and fp["model_id"] == "test-vlm" and fp["prompt_version"] == "v1"
    assert SECRET not in json.dumps(fp)


class SmallRandomFaces:
    """The slice of the FaceDataset interface the prior store reads, over seeded random HR images."""

    name, split, hr_size = "random", "test", 64

    def __len__(self) -> int:
        return 6

    def item_id(self, i: int) -> str:
        return str(i)

    def load_hr_batch(self, idx: list[int]) -> np.ndarray:
        return np.stack([np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8) for i in idx])

    def fingerprint(self) -> dict:
        return {"name": "random-openai-test", "seed": 7, "n": 6, "hr_size": self.hr_size, "split": "test"}


def test_store_keeps_finished_shards_when_the_api_fails(tmp_path):
    from llvfsr.priors.store import PriorStore

    data = SmallRandomFaces()
    store = PriorStore.open(tmp_path, data, scale=8, shard_size=2)
    replies = [("ok", f"first run {k}") for k in range(2)] + [("status", 500)]
    with FakeServer(replies) as server:
        with pytest.raises(DescriptionAPIError, match="HTTP 500"):
            extract_priors(
                store, data, {"description": source(server.url, max_retries=1)}, batch_size=2, progress=False
            )
        assert store.shard_done("description_text", 0) and not store.shard_done("description_text", 1)
        server.script, server.requests = [("ok", "second run")], []  # the endpoint is back (same URL, same source)
        store = PriorStore.open(tmp_path, data, scale=8, shard_size=2)
        extract_priors(store, data, {"description": source(server.url, max_retries=1)}, batch_size=2, progress=False)
    assert len(server.requests) == 4  # only the two unfinished shards were asked for again
    assert store.texts("description") == ["first run 0", "first run 1"] + ["second run"] * 4
