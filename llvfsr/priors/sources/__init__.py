"""The prior-source registry: every source by (kind, name), imported only when it is made.

Lazy imports keep heavy dependencies (SAM, transformers, dlib) out of `import llvfsr`, and one broken source
breaks only its own name. Names are the lowercase strings used in CLI flags, manifests and tables. An entry is
``"module:Class"``, or just ``"module"``: then the module's `PriorSource` subclass whose ``kind`` and ``name``
match the entry is used, so a source module may name its class as it likes.
"""

from __future__ import annotations

import importlib
from typing import Any

from llvfsr.priors.sources.base import KINDS, ItemContext, PriorSource

SOURCES: dict[tuple[str, str], str] = {
    ("mask", "synthetic"): "llvfsr.priors.sources.synthetic:SyntheticMask",
    ("mask", "sam"): "llvfsr.priors.sources.sam",
    ("mask", "face-parser"): "llvfsr.priors.sources.face_parser",
    ("depth", "synthetic"): "llvfsr.priors.sources.synthetic:SyntheticDepth",
    ("depth", "depth-anything"): "llvfsr.priors.sources.depth_anything",
    ("caption", "synthetic"): "llvfsr.priors.sources.synthetic:SyntheticCaption",
    ("caption", "blip2"): "llvfsr.priors.sources.blip2",
    ("caption", "mmcelebahq"): "llvfsr.priors.sources.mmcelebahq",
    ("description", "synthetic"): "llvfsr.priors.sources.synthetic:SyntheticDescription",
    ("description", "synthetic-shuffled"): "llvfsr.priors.sources.synthetic:ShuffledDescription",
    ("description", "synthetic-constant"): "llvfsr.priors.sources.synthetic:ConstantDescription",
    ("description", "openai"): "llvfsr.priors.sources.vlm_openai",
    ("description", "local-vlm"): "llvfsr.priors.sources.vlm_local",
    ("description", "mmcelebahq"): "llvfsr.priors.sources.mmcelebahq",
    ("landmarks", "synthetic"): "llvfsr.priors.sources.synthetic:SyntheticLandmarks",
    ("landmarks", "dlib"): "llvfsr.priors.sources.dlib_landmarks",
}


def source_names(kind: str) -> list[str]:
    """The registered source names for one prior kind, in registration order."""
    if kind not in KINDS:
        raise ValueError(f"unknown prior kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    return [name for (k, name) in SOURCES if k == kind]


def make_source(kind: str, name: str, **options: Any) -> PriorSource:
    """Build a registered prior source.

    Args:
        kind: one of `KINDS`.
        name: the source's registry name (see `source_names(kind)`).
        **options: constructor arguments of the source (model path, device, ...); None values are dropped so
            a CLI can pass every optional flag through.

    Raises:
        ValueError: unknown kind or name; the message lists the valid names for the kind.
    """
    return source_class(kind, name)(**{k: v for k, v in options.items() if v is not None})


def source_class(kind: str, name: str) -> type[PriorSource]:
    """The class of a registered source (imports its module), e.g. to inspect which options it takes."""
    names = source_names(kind)
    if name not in names:
        raise ValueError(f"unknown {kind} source {name!r}; valid {kind} sources: {', '.join(names)}")
    module_name, _, class_name = SOURCES[(kind, name)].partition(":")
    module = importlib.import_module(module_name)
    if class_name:
        return getattr(module, class_name)
    matches = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, PriorSource)
        and getattr(obj, "kind", None) == kind
        and getattr(obj, "name", None) == name
    ]
    if len(matches) != 1:
        raise ImportError(f"{module_name} defines {len(matches)} PriorSource classes with kind={kind!r}, name={name!r}")
    return matches[0]


__all__ = ["KINDS", "SOURCES", "ItemContext", "PriorSource", "make_source", "source_class", "source_names"]
