"""The text-chunking switch end to end: DataConfig -> prior store; changing it re-embeds the texts only."""

import huggingface_hub.constants
import pytest
import torch
from tiny import tiny_synthetic_data

from llvfsr.config import DataConfig
from llvfsr.priors.ensure import ensure_priors, open_store


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _data(root, chunking: str) -> DataConfig:
    return tiny_synthetic_data(root, train_n=4, test_n=4, text_chunking=chunking)


@pytest.fixture
def one_thread():
    """One torch thread (the re-embedding comparison below), the caller's count restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_switching_chunking_re_embeds_texts_and_keeps_them(tmp_path):
    truncate = _data(tmp_path, "truncate")
    ensure_priors(truncate, {"description", "mask"}, splits=("test",), progress=False)
    store = open_store(truncate, "test")
    before = {f: store.record(f) for f in ("description_text", "description_emb", "mask")}
    assert before["description_emb"]["source"]["text_chunking"] == "truncate"
    assert store.status()["description_emb"]["text_chunking"] == "truncate"
    truncated = store.load({"description"}).description
    assert truncated.tokens.shape[1] == 77

    sentences = _data(tmp_path, "sentences")
    ensure_priors(sentences, {"description", "mask"}, splits=("test",), progress=False)
    store = open_store(sentences, "test")
    after = {f: store.record(f) for f in ("description_text", "description_emb", "mask")}
    # The texts and the mask are the same shards (same checksums); only the embeddings were recomputed.
    assert after["description_text"]["shards"] == before["description_text"]["shards"]
    assert after["mask"]["shards"] == before["mask"]["shards"]
    assert after["description_emb"]["source"]["text_chunking"] == "sentences"
    assert after["description_emb"]["shards"] != before["description_emb"]["shards"]
    loaded = store.load({"description"}).description
    assert loaded.tokens.shape[1] == 231
    # The synthetic descriptions have several sentences: sentence-wise encoding has more valid positions.
    texts = store.texts("description", list(range(4)))
    assert all(len(t.split(". ")) > 1 for t in texts)
    assert (loaded.valid.sum(1) > truncated.valid.sum(1)).all()

    # Asking again with the same switch is a no-op; asking for truncation re-embeds back.
    ensure_priors(sentences, {"description"}, splits=("test",), progress=False)
    assert open_store(sentences, "test").record("description_emb")["shards"] == after["description_emb"]["shards"]
    ensure_priors(truncate, {"description"}, splits=("test",), progress=False)
    assert open_store(truncate, "test").record("description_emb")["source"]["text_chunking"] == "truncate"


def test_command_lines_set_and_check_the_switch(capsys):
    from llvfsr.train import main as train_main
    from sweeps.grids import GRIDS
    from sweeps.run import base_config, parse_args

    args = parse_args(["--grid", "ablation", "--text-chunking", "sentences"])
    assert base_config(args, GRIDS["ablation"])[0].data.text_chunking == "sentences"
    assert base_config(parse_args(["--grid", "ablation"]), GRIDS["ablation"])[0].data.text_chunking == "truncate"
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--text-chunking", "paragraphs"])
    assert exit_info.value.code == 2
    assert "--text-chunking must be 'truncate' or 'sentences', got 'paragraphs'" in capsys.readouterr().err
