"""`ensure_priors` (run by the sweep driver and `llvfsr.train` before any trial) repairs damaged prior stores."""

import torch
from tiny import flip_a_byte, tiny_synthetic_data

from llvfsr.config import DataConfig
from llvfsr.priors.ensure import ensure_priors, open_store
from llvfsr.priors.store import PriorStore

FIELDS = {"mask", "caption"}


def tiny_data(root) -> DataConfig:
    return tiny_synthetic_data(root, train_n=12, test_n=4)


def test_damaged_shards_are_named_and_re_extracted_before_training(tmp_path, capsys):
    data = tiny_data(tmp_path)
    ensure_priors(data, FIELDS, splits=("train",), progress=False)
    store = open_store(data, "train")
    before = store.load(FIELDS)
    mask, caption_emb = store.shard_path("mask", 0), store.shard_path("caption_emb", 0)
    stamps = {path: path.stat().st_mtime_ns for path in (store.directory / "mask").iterdir()}
    capsys.readouterr()

    ensure_priors(data, FIELDS, splits=("train",), progress=False)  # intact: nothing said, nothing rewritten
    assert capsys.readouterr().err == ""
    assert {path: path.stat().st_mtime_ns for path in (store.directory / "mask").iterdir()} == stamps

    flip_a_byte(mask)
    flip_a_byte(caption_emb)
    assert len(PriorStore.at(store.directory).verify(raise_on_error=False)) == 2
    ensure_priors(data, FIELDS, splits=("train",), progress=False)
    err = capsys.readouterr().err
    assert f"prior store: {mask}: checksum mismatch" in err and f"prior store: {caption_emb}: checksum" in err
    assert err.count("re-extracting it") == 2
    repaired = PriorStore.at(store.directory)
    assert repaired.verify(raise_on_error=False) == []
    after = repaired.load(FIELDS)
    assert torch.equal(after.mask, before.mask)  # the synthetic sources are exact: the same priors come back
    assert torch.equal(after.caption.tokens, before.caption.tokens)


def test_a_split_is_not_loaded_from_a_store_holding_another_source_of_a_prior(tmp_path):
    import dataclasses

    import pytest

    from llvfsr.priors.store import PriorStoreError
    from llvfsr.trial_data import load_split

    true = tiny_data(tmp_path)
    shuffled = dataclasses.replace(true, description_source="synthetic-shuffled")
    ensure_priors(true, {"mask", "description"}, splits=("test",), progress=False)
    ensure_priors(shuffled, {"description"}, splits=("test",), progress=False)  # the same store: it now holds these
    with pytest.raises(PriorStoreError, match="'description' is from source 'synthetic-shuffled', this run needs "
                       "'synthetic'"):  # fmt: skip
        load_split(true, "test", {"mask", "description"}, torch.device("cpu"))
    assert load_split(true, "test", {"mask"}, torch.device("cpu")).priors.description is None  # the mask is fine
    ensure_priors(true, {"description"}, splits=("test",), progress=False)  # what a run does first: put it back
    loaded = load_split(true, "test", {"mask", "description"}, torch.device("cpu"))
    assert loaded.priors.description.tokens.shape[0] == 4
