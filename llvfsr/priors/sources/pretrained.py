"""The base of the prior sources backed by a transformers model: loading by hub id or local folder with a pinned
revision, device and dtype, the revision recorded, the common fingerprint, and letting go of the model.

A source sets `model_class` and `processor_class` (transformers class names) and calls `load` in its `__init__`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from llvfsr.priors.sources.base import PriorSource, resolve_device


def load_pretrained(auto_class: Any, model_id: str, revision: str | None, **kwargs: Any) -> Any:
    """`auto_class.from_pretrained` for a hub id or a local folder, with a hint when the weights are not available."""
    import transformers

    if "dtype" in kwargs and int(transformers.__version__.split(".")[0]) < 5:
        kwargs["torch_dtype"] = kwargs.pop("dtype")  # the keyword's name before transformers 5
    try:
        return auto_class.from_pretrained(model_id, revision=revision, **kwargs)
    except OSError as err:  # no network / HF_HUB_OFFLINE and not cached, or a bad path
        raise OSError(
            f"cannot load {model_id!r} (revision {revision!r}): {str(err).rstrip('.')}. Pass a local folder with the "
            "model files (save_pretrained layout; on the command line --source-option KIND.model_id=FOLDER) or make "
            "the hub reachable."
        ) from err


def model_revision(model: Any, requested: str | None) -> str | None:
    """The revision to record: the one asked for, else the commit hash transformers recorded when loading."""
    return requested or getattr(getattr(model, "config", None), "_commit_hash", None)


class PretrainedSource(PriorSource):
    """A prior source that runs a transformers model and its processor on the HR-upsampled LR faces."""

    model_class: ClassVar[str]  # e.g. "AutoModelForDepthEstimation", looked up in transformers when loading
    processor_class: ClassVar[str]  # e.g. "AutoImageProcessor"

    def load(self, model_id: str, revision: str | None, model: Any, processor: Any, device: str | None,
             batch_size: int, dtype: str | None = None) -> None:  # fmt: skip
        """Set up `model`/`processor` (or load them by `model_id` at `revision`) on the device.

        Args:
            model_id: hub id or local folder; used when `model` is None.
            revision: hub revision (branch, tag or commit) to pin.
            model: a ready model (tests); then `processor` is required too.
            processor: the matching processor.
            device: "cuda", "cpu", ...; default CUDA when present.
            batch_size: faces per call.
            dtype: weights dtype on CUDA (e.g. "float16"); the CPU always uses float32. None: the model's own.
        """
        self.device = resolve_device(device)
        self.batch_size = batch_size
        if dtype is not None:
            self.dtype = getattr(torch, dtype) if self.device.type == "cuda" else torch.float32
        self.model_id = model_id if model is None else getattr(model.config, "name_or_path", "") or "in-memory"
        if model is None:
            import transformers

            kwargs = {} if dtype is None else {"dtype": self.dtype}
            model = load_pretrained(getattr(transformers, self.model_class), model_id, revision, **kwargs)
            processor = processor or load_pretrained(getattr(transformers, self.processor_class), model_id, revision)
        if processor is None:
            raise ValueError(f"{type(self).__name__}(model=...) needs the matching processor too")
        self.revision = model_revision(model, revision)
        self.model = (model.to(self.device) if dtype is None else model.to(self.device, self.dtype)).eval()
        self.processor = processor

    def model_fingerprint(self) -> dict:
        """What every such source records: its name, the model id and revision, the transformers version."""
        import transformers

        return {"source": self.name, "model_id": self.model_id, "revision": self.revision,
                "version": transformers.__version__}  # fmt: skip

    def close(self) -> None:
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
