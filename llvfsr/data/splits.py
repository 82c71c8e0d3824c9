"""A split of the configured data: the `FaceDataset` that a `DataConfig` names for "train" or "test"."""

from __future__ import annotations

from llvfsr.config import DataConfig

SYNTHETIC_DEFAULT_N = {"train": 1000, "test": 200}


def split_size(data: DataConfig, split: str) -> int | None:
    n = data.train_n if split == "train" else data.test_n
    if n is None and data.dataset == "synthetic":
        n = SYNTHETIC_DEFAULT_N[split]
    return n


def open_split(data: DataConfig, split: str):
    """The `FaceDataset` of a split ("train" or "test") described by `data`."""
    from llvfsr.data.datasets import open_dataset

    if data.dataset == "synthetic":
        return open_dataset(
            "synthetic", split, n=split_size(data, split), seed=data.data_seed, hr_size=data.hr_size,
            zoom=data.synthetic_zoom, iris=data.synthetic_iris,
        )  # fmt: skip
    return open_dataset(
        data.dataset,
        split,
        n=split_size(data, split),
        hr_size=data.hr_size,
        split_dir=data.split_dir,
        text_dir=data.text_dir,
        skip_bad=data.skip_bad,
    )
