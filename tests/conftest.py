"""Suite-wide settings."""

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def private_llvfsr_cache(tmp_path_factory):
    """Rendered attribute references go to a folder of this run, not the user's ~/.cache/llvfsr (trials started by
    the suite's sweeps inherit it)."""
    os.environ["LLVFSR_CACHE"] = str(tmp_path_factory.mktemp("llvfsr-cache"))
    yield


@pytest.fixture
def hub_offline(monkeypatch):
    """No Hugging Face Hub access, whatever the environment says: a test that reaches for the network fails."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
