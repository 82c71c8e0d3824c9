"""Shared test helpers: a tiny synthetic data config (32 px faces, the tiny random text tower, no downloads), and a
damaged file."""

from llvfsr.config import DataConfig


def tiny_synthetic_data(priors_root, **changes) -> DataConfig:
    """A `DataConfig` of 32 px synthetic faces whose texts the tiny random text tower embeds; `changes` set the split
    sizes (train_n, val_n, test_n) or any other field."""
    return DataConfig(
        dataset="synthetic",
        hr_size=32,
        priors_root=str(priors_root),
        text_encoder="tiny",
        text_pretrained=None,
        allow_random_text_encoder=True,
        **changes,
    )


def flip_a_byte(path) -> None:
    """Damage a file the way a bad disk or copy would: one byte in its middle inverted."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
