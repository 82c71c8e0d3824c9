"""Tests of the prior store, its resumable extraction, the synthetic sources and the `python -m llvfsr.priors` CLI."""

import json
import shutil
from dataclasses import dataclass

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from tiny import flip_a_byte

from llvfsr.data.degrade import degrade_bicubic
from llvfsr.priors import Priors, PriorStore, PriorStoreError
from llvfsr.priors.__main__ import main
from llvfsr.priors.extract import extract_priors
from llvfsr.priors.sources import make_source, source_names
from llvfsr.priors.sources.synthetic import (
    SyntheticCaption,
    SyntheticDepth,
    SyntheticDescription,
    SyntheticLandmarks,
    SyntheticMask,
)
from llvfsr.priors.text_encoder import ClipTextEncoder, tiny_clip_config

N, HR, SCALE, SHARD = 12, 64, 8, 4


@dataclass
class FakeFace:
    mask: np.ndarray
    depth: np.ndarray
    landmarks: np.ndarray
    caption: str
    description: str


class FakeFaces:
    """A small dataset with the `FaceDataset` interface and random exact priors (independent of the renderer)."""

    name = "fake"

    def __init__(self, n: int = N, hr_size: int = HR, split: str = "train", seed: int = 0) -> None:
        self.n, self.hr_size, self.split, self.seed = n, hr_size, split, seed

    def __len__(self) -> int:
        return self.n

    def item_id(self, i: int) -> str:
        return f"face{i:03d}"

    def load_hr_batch(self, idx: list[int]) -> np.ndarray:
        return np.stack([np.random.default_rng((self.seed, i, 1)).integers(0, 256, (self.hr_size,) * 2 + (3,), np.uint8)
                         for i in idx])  # fmt: skip

    def exact_priors(self, i: int) -> FakeFace:
        rng = np.random.default_rng((self.seed, i))
        size = (self.hr_size, self.hr_size)
        words = " and ".join(f"detail{k}" for k in range(i % 5 + 1))
        return FakeFace(rng.integers(0, 19, size, dtype=np.uint8), rng.random(size, dtype=np.float32),
                        (rng.random((68, 2)) * self.hr_size).astype(np.float32), f"a face number {i}",
                        f"A face number {i} with {words}. Eyes of colour {i * 7 % 11}.")  # fmt: skip

    def fingerprint(self) -> dict:
        return {"name": self.name, "split": self.split, "n": self.n, "seed": self.seed, "hr_size": self.hr_size}


def counting(base):
    """A synthetic source class that counts its calls, can fail after some calls, and carries a version tag."""

    class Counting(base):
        def __init__(self, fail_after: int | None = None, tag: str = "v1") -> None:
            self.calls, self.indices, self.fail_after, self.tag, self.lr_seen = 0, [], fail_after, tag, []

        def __call__(self, lr, hr_size, items):
            if self.fail_after is not None and self.calls >= self.fail_after:
                raise RuntimeError("simulated crash")
            self.calls += 1
            self.indices += [item.index for item in items]
            self.lr_seen.append(lr)
            return super().__call__(lr, hr_size, items)

        def fingerprint(self):
            return {**super().fingerprint(), "tag": self.tag}

    return Counting


CLASSES = {"mask": SyntheticMask, "depth": SyntheticDepth, "landmarks": SyntheticLandmarks,
           "caption": SyntheticCaption, "description": SyntheticDescription}  # fmt: skip


def make_sources(kinds=tuple(CLASSES), **options):
    return {kind: counting(CLASSES[kind])(**options.get(kind, {})) for kind in kinds}


@pytest.fixture(autouse=True)
def offline(hub_offline):
    """Every test here runs without the Hugging Face Hub (`conftest.hub_offline`)."""


@pytest.fixture(scope="module")
def encoder():
    return ClipTextEncoder(pretrained=None, allow_random=True, seed=0, model_cfg=tiny_clip_config())


def open_store(root, dataset=None, scale=SCALE):
    return PriorStore.open(root, dataset or FakeFaces(), "train", scale, shard_size=SHARD)


def test_extract_and_load_match_the_exact_priors(tmp_path, encoder):
    dataset = FakeFaces()
    store = open_store(tmp_path, dataset)
    sources = make_sources()
    computed = extract_priors(store, dataset, sources, encoder, batch_size=3, progress=False)
    assert computed == {f: 3 for f in ("mask", "depth", "landmarks", "caption_text", "description_text",
                                       "caption_emb", "description_emb")}  # fmt: skip
    assert store.directory.relative_to(tmp_path).parts[1:] == ("train", "x8")
    assert sorted(p.name for p in (store.directory / "mask").iterdir()) == [f"shard_0000{s}.npz" for s in range(3)]
    assert sources["mask"].calls == 6 and sorted(sources["mask"].indices) == list(range(N))  # batches of 3

    # The sources saw the uint8 antialiased-bicubic LR of the HR faces.
    lr = np.concatenate(sources["depth"].lr_seen)
    hr = torch.from_numpy(dataset.load_hr_batch(list(range(N)))).permute(0, 3, 1, 2).float() / 255
    expected_lr = (degrade_bicubic(hr, SCALE) * 255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    assert lr.shape == (N, HR // SCALE, HR // SCALE, 3) and lr.dtype == np.uint8 and np.array_equal(lr, expected_lr)

    priors = PriorStore.at(store.directory).load({"mask", "depth", "landmarks", "caption", "description"})
    exact = [dataset.exact_priors(i) for i in range(N)]
    assert priors.mask.dtype == torch.long and priors.mask.shape == (N, HR, HR)
    assert torch.equal(priors.mask, torch.from_numpy(np.stack([f.mask for f in exact])).long())
    assert priors.depth.dtype == torch.float32 and priors.depth.shape == (N, 1, HR, HR)
    depth = torch.from_numpy(np.stack([f.depth for f in exact]))[:, None]
    assert (priors.depth - depth).abs().max() <= 0.5 / 65535 + 1e-7  # uint16 quantisation
    assert torch.equal(priors.landmarks, torch.from_numpy(np.stack([f.landmarks for f in exact])))
    assert store.texts("caption") == [f.caption for f in exact]
    assert store.texts("description", [3, 0]) == [exact[3].description, exact[0].description]

    # Embeddings are the encoder's own output for the stored texts, padded back to the context length.
    tokens, pooled, valid = encoder.encode(store.texts("description"))
    assert torch.equal(priors.description.tokens, tokens) and torch.equal(priors.description.pooled, pooled)
    assert torch.equal(priors.description.valid, valid) and priors.description.tokens.shape == (N, 77, 32)
    assert not torch.equal(priors.caption.pooled, priors.description.pooled)

    subset = store.load({"mask", "caption"}, indices=[11, 0, 5, 5])
    index = torch.tensor([11, 0, 5, 5])
    assert torch.equal(subset.mask, priors.mask[index]) and torch.equal(
        subset.caption.tokens, priors.caption.tokens[index]
    )
    assert subset.depth is None and isinstance(subset, Priors)
    compact = store.load({"mask", "depth"}, compact=True)
    assert compact.mask.dtype == torch.uint8 and compact.depth.dtype == torch.float16

    status, costs = store.status(), store.costs()
    assert all(s["complete"] and s["shards_done"] == 3 for s in status.values()) and len(status) == 7
    assert costs["mask"]["images"] == N and costs["mask"]["seconds_per_image"] > 0
    assert costs["caption_emb"]["peak_rss_mib"] > 10


def test_interrupted_extraction_resumes_with_only_missing_shards(tmp_path):
    dataset = FakeFaces()
    store = open_store(tmp_path, dataset)
    crashing = make_sources(("mask", "depth"), mask={"fail_after": 2})  # one call per shard: crash in shard 2
    with pytest.raises(RuntimeError, match="simulated crash"):
        extract_priors(store, dataset, crashing, batch_size=SHARD, progress=False)
    state = open_store(tmp_path, dataset).status()
    assert (state["mask"]["shards_done"], state["depth"]["shards_done"]) == (2, 2)

    resumed = make_sources(("mask", "depth"))
    store = open_store(tmp_path, dataset)
    assert extract_priors(store, dataset, resumed, batch_size=SHARD, progress=False) == {"mask": 1, "depth": 1}
    assert resumed["mask"].indices == list(range(8, 12)) and resumed["depth"].indices == list(range(8, 12))
    loaded = store.load({"mask"})
    assert torch.equal(loaded.mask, torch.from_numpy(np.stack([dataset.exact_priors(i).mask for i in range(N)])).long())

    again = make_sources(("mask", "depth"))
    assert extract_priors(store, dataset, again, progress=False) == {"mask": 0, "depth": 0}
    assert again["mask"].calls == again["depth"].calls == 0


def test_changed_source_recomputes_only_what_it_produced(tmp_path, encoder):
    dataset = FakeFaces()
    store = open_store(tmp_path, dataset)
    extract_priors(store, dataset, make_sources(("mask", "depth", "caption", "description")), encoder, progress=False)
    identity = {p.relative_to(store.directory): (p.stat().st_ino, p.stat().st_mtime_ns)
                for p in store.directory.rglob("shard_*")}  # fmt: skip

    changed = make_sources(("mask", "depth", "caption", "description"), caption={"tag": "v2"})
    computed = extract_priors(store, dataset, changed, encoder, progress=False)
    assert computed == {"mask": 0, "depth": 0, "caption_text": 3, "description_text": 0,
                        "caption_emb": 3, "description_emb": 0}  # fmt: skip
    assert changed["caption"].calls == 3 and changed["mask"].calls == changed["description"].calls == 0
    for path, (inode, mtime) in identity.items():
        stat = (store.directory / path).stat()
        rewritten = path.parts[0] in ("caption_text", "caption_emb")
        assert ((stat.st_ino, stat.st_mtime_ns) != (inode, mtime)) == rewritten, path
    manifest = json.loads((store.directory / "manifest.json").read_text())
    assert manifest["fields"]["caption_text"]["source"]["tag"] == "v2"
    assert manifest["fields"]["caption_emb"]["inputs"]["text_source"]["tag"] == "v2"

    # A new text encoder recomputes the embeddings only; a changed text source without an encoder drops its
    # now stale embeddings.
    other = ClipTextEncoder(pretrained=None, allow_random=True, seed=1, model_cfg=tiny_clip_config())
    assert extract_priors(store, dataset, {}, other, progress=False) == {"caption_emb": 3, "description_emb": 3}
    extract_priors(store, dataset, make_sources(("description",), description={"tag": "v3"}), None, progress=False)
    assert "description_emb" not in store.status() and store.status()["caption_emb"]["complete"]


def test_damaged_shards_are_detected_and_recomputed(tmp_path):
    dataset = FakeFaces()
    store = open_store(tmp_path, dataset)
    extract_priors(store, dataset, make_sources(("mask", "depth")), progress=False)
    corrupt = store.directory / "depth" / "shard_00001.npz"
    flip_a_byte(corrupt)
    with pytest.raises(PriorStoreError, match="shard_00001.npz.*checksum"):
        store.load({"depth"})
    assert store.load({"depth"}, indices=[0, 9]).depth.shape == (2, 1, HR, HR)  # other shards still load
    missing = store.directory / "mask" / "shard_00002.npz"
    missing.unlink()
    with pytest.raises(PriorStoreError, match="shard_00002.npz.*missing"):
        store.load({"mask"})
    problems = store.verify(raise_on_error=False)
    assert len(problems) == 2 and any(str(corrupt) in p for p in problems) and any(str(missing) in p for p in problems)
    with pytest.raises(PriorStoreError, match="damaged prior store"):
        store.verify()
    assert main(["verify", "--out", str(tmp_path)]) == 1

    again = make_sources(("mask", "depth"))
    assert extract_priors(store, dataset, again, progress=False) == {"mask": 1, "depth": 1}
    assert again["depth"].indices == [4, 5, 6, 7] and again["mask"].indices == [8, 9, 10, 11]
    assert store.verify() == [] and main(["verify", "--out", str(tmp_path)]) == 0

    (store.directory / "manifest.json").write_text("{ not json")
    with pytest.raises(PriorStoreError, match="damaged manifest"):
        open_store(tmp_path, dataset)


def test_mismatched_store_names_the_differing_field(tmp_path):
    store = open_store(tmp_path)
    extract_priors(store, FakeFaces(), make_sources(("mask",)), progress=False)
    # Variants of a dataset get their own stores side by side ...
    bigger, reseeded = open_store(tmp_path, FakeFaces(n=16)), open_store(tmp_path, FakeFaces(seed=1))
    assert len({store.directory, bigger.directory, reseeded.directory}) == 3
    assert all(d.parent.parent.name.startswith("fake-") for d in (store.directory, bigger.directory))
    # ... and a store found in the wrong place (copied, moved) is refused, naming what differs.
    shutil.copytree(store.directory, bigger.directory)
    with pytest.raises(PriorStoreError, match="dataset field 'n' is 12 in the manifest, 16 requested"):
        open_store(tmp_path, FakeFaces(n=16))
    shutil.copytree(store.directory, reseeded.directory)
    with pytest.raises(PriorStoreError, match="dataset field 'seed' is 0 in the manifest, 1 requested"):
        open_store(tmp_path, FakeFaces(seed=1))
    store.directory.rename(store.directory.parent / "x16")  # a store moved to the wrong scale's folder
    with pytest.raises(PriorStoreError, match="'scale' is 8 in the manifest, 16 requested"):
        open_store(tmp_path, scale=16)
    with pytest.raises(PriorStoreError, match="was never extracted"):
        PriorStore.at(store.directory.parent / "x16").load({"depth"})
    with pytest.raises(PriorStoreError, match="no prior store"):
        PriorStore.at(tmp_path / "elsewhere")


def test_random_text_encoder_is_recorded_in_the_manifest(tmp_path, encoder):
    dataset = FakeFaces(n=4)
    store = open_store(tmp_path, dataset)
    extract_priors(store, dataset, make_sources(("caption",)), encoder, progress=False)
    manifest = json.loads((store.directory / "manifest.json").read_text())
    assert manifest["fields"]["caption_emb"]["source"]["random_init"] is True
    assert store.status()["caption_emb"]["random_init"] is True


def test_source_registry():
    assert source_names("mask") == ["synthetic", "sam", "face-parser"]
    assert source_names("description") == [
        "synthetic",
        "synthetic-shuffled",
        "synthetic-constant",
        "openai",
        "local-vlm",
        "mmcelebahq",
    ]
    assert isinstance(make_source("depth", "synthetic"), SyntheticDepth)
    with pytest.raises(ValueError, match="valid mask sources: synthetic, sam, face-parser"):
        make_source("mask", "segformer")
    with pytest.raises(ValueError, match="not-a-face"):
        SyntheticMask()(np.zeros((1, 8, 8, 3), np.uint8), 64, [_item_without_priors()])


def _item_without_priors():
    from llvfsr.priors.sources import ItemContext

    class NoPriors(FakeFaces):
        def exact_priors(self, i):
            return None

    return ItemContext(0, "not-a-face", NoPriors())


def test_cli_rejects_bad_values(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["extract", "--dataset", "synthetic", "--scale", "8", "--out", "x", "--mask", "segformer"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'segformer'" in err and all(name in err for name in ("sam", "face-parser", "none"))
    argv = ["extract", "--dataset", "synthetic", "--scale", "8", "--out", str(tmp_path), "--text-encoder", "none"]
    assert main([*argv, "--source-option", "mask:model_id"]) == 2  # a bad command line
    assert "expected KIND.KEY=VALUE" in capsys.readouterr().err
    assert main([*argv, "--source-option", "mask.model_id=x"]) == 2  # the synthetic source takes no options
    assert "mask source 'synthetic' rejected --source-option mask.model_id=x" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.fixture
def no_cached_weights(monkeypatch, tmp_path_factory):
    """Empty Hugging Face and open_clip caches, so that "no CLIP weights" holds on a machine that has them cached."""
    empty = tmp_path_factory.mktemp("empty-cache")
    for var in ("HOME", "XDG_CACHE_HOME", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.setenv(var, str(empty))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HOME", str(empty))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(empty))  # read at import, so patched too


def test_cli_extracts_the_synthetic_dataset_end_to_end(tmp_path, capsys, no_cached_weights):
    argv = ["extract", "--dataset", "synthetic", "--split", "test", "--n", "5", "--hr-size", "64", "--scale", "8",
            "--out", str(tmp_path), "--shard-size", "2", "--no-progress", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 1  # no CLIP weights on the machine and no permission to use random ones
    assert "--allow-random-text-encoder" in capsys.readouterr().err
    assert main([*argv, "--allow-random-text-encoder"]) == 0
    out = capsys.readouterr().out
    assert "RANDOM-INIT" in out and "computed shards" in out
    (directory,) = tmp_path.glob("synthetic-*/test/x8")
    store = PriorStore.at(directory)
    priors = store.load({"mask", "depth", "caption", "description", "landmarks"})
    assert priors.mask.shape == (5, 64, 64) and priors.caption.tokens.shape == (5, 77, 512)
    assert store.manifest["fields"]["description_emb"]["source"]["arch"] == "ViT-B-32"
    assert main(["status", "--out", str(tmp_path)]) == 0 and "3/3 shards complete" in capsys.readouterr().out
    assert main([*argv, "--allow-random-text-encoder"]) == 0  # nothing left to compute
    assert '"mask": 0' in capsys.readouterr().out
