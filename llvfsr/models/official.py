"""The authors' released baseline weights, loaded by name onto this project's modules (issue 18).

Table 1's baseline rows are claims about other people's models; with the authors' own weights they cost an hour
of evaluation instead of days of training, and they check our retrained rows. Each baseline module declares how
its official checkpoint maps onto it (an `OfficialFormat` named in `OFFICIAL_FORMATS`, imported only on use, as
the model registry does): a rename of every key (no transposes are needed), the official keys that have no
counterpart here (unused modules, fixed filters), the release's scale and size, and the switch to the official
behaviour where ours differs (WFEN's roll). Loading is strict: a file that does not match names the keys it
expected and the keys it found.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from llvfsr.errors import UsageError, UserError
from llvfsr.models.registry import build

OFFICIAL_FORMATS = {
    "wfen": "baselines.wfen:OFFICIAL",
    "sfmnet": "baselines.sfmnet:OFFICIAL",
    "sisn": "baselines.sisn:OFFICIAL",
    "dic": "baselines.dic:OFFICIAL",
    "dic-hourglass": "baselines.dic:OFFICIAL_HOURGLASS",
}
# Wrappers the released files use around the state dict (DIC: "state_dict"; GAN-style repos: "netG", "model").
WRAPPERS = ("state_dict", "netG", "model", "params", "params_ema")
SHOWN = 5  # keys named per list in a mismatch message
# Model-config overrides that make `llvfsr.models.from_config.build_model` load a release instead of building afresh.
OFFICIAL_FORMAT, OFFICIAL_PATH = "official_format", "official_checkpoint"
AUTHORS_SUFFIX = " (authors)"  # the sweep variant and Table 1 row of a model run on the authors' weights


class OfficialCheckpointError(UserError):
    """A released checkpoint that cannot be read or does not match the model it was given for."""


@dataclass(frozen=True)
class OfficialFormat:
    """How one baseline's released checkpoint maps onto the project's module.

    Attributes:
        model: registry name of the model to build.
        official_key: our state-dict key -> the official key, or None for state of ours the release does not
            hold (kept as built, e.g. DIC's freeze counter).
        unused: regexes of official keys with no counterpart here (modules the official forward never calls);
            dropped when present.
        fixed: official key -> the value it must hold (constant filters stored as parameters), else None;
            checked, then dropped.
        release: the release's own build arguments (scale, size), read from its state dict.
        prepare: switches a built model to the official behaviour where ours differs.
        submodule: load into this submodule of the built model only (DIC's hourglass alone).
        evaluate_only: the release is a whole model, evaluated as is; False for a part that training starts from
            (DIC's hourglass).
    """

    model: str
    official_key: Callable[[str], str | None]
    unused: tuple[str, ...] = ()
    fixed: Callable[[str, torch.Size], Tensor | None] = field(default=lambda key, shape: None)
    release: Callable[[Mapping[str, Tensor]], dict[str, Any]] = field(default=lambda state: {})
    prepare: Callable[[nn.Module], None] | None = None
    submodule: str = ""
    evaluate_only: bool = True


def parse_official(item: str) -> tuple[str, str]:
    """``"wfen=/models/WFEN.pth"`` -> ("wfen", absolute path), for ``--official NAME=PATH``.

    Raises:
        UsageError: not NAME=PATH, an unknown NAME, or no file at PATH.
    """
    name, sep, path = item.partition("=")
    if not sep or name not in OFFICIAL_FORMATS or not path:
        raise UsageError(f"--official {item!r}: expected NAME=PATH with NAME one of {', '.join(OFFICIAL_FORMATS)}")
    if not Path(path).is_file():
        raise UsageError(f"--official {item!r}: no such file {path} (the authors' released checkpoint)")
    return name, str(Path(path).absolute())


def official_overrides(name: str, path: str) -> tuple[tuple[str, str], ...]:
    """The model-config overrides of a run on the release `name` at `path` (see
    `llvfsr.models.from_config.build_model`)."""
    return ((OFFICIAL_PATH, path), (OFFICIAL_FORMAT, name))


def official_in(overrides: Mapping[str, Any]) -> tuple[str, str] | None:
    """(format name, path) when a model config's overrides name a release, else None."""
    if overrides.get(OFFICIAL_PATH) is None:
        return None
    return overrides.get(OFFICIAL_FORMAT), overrides[OFFICIAL_PATH]


def official_format(name: str) -> OfficialFormat:
    if name not in OFFICIAL_FORMATS:
        known = ", ".join(OFFICIAL_FORMATS)
        raise OfficialCheckpointError(f"no official checkpoint format for {name!r}; known: {known}")
    module_name, attribute = OFFICIAL_FORMATS[name].split(":")
    return getattr(importlib.import_module(module_name), attribute)


def rename(key: str, rules: tuple[tuple[str, str], ...]) -> str:
    """Apply ``re.sub(pattern, replacement, key)`` for each rule in order."""
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key)
    return key


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a released checkpoint: unwraps ``state_dict`` / ``netG`` / ``model`` and strips ``module.``.

    Raises:
        OfficialCheckpointError: the file is missing, unreadable, or holds no state dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise OfficialCheckpointError(f"official checkpoint {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # zip, pickle and tensor errors alike: not a readable checkpoint
        raise OfficialCheckpointError(f"official checkpoint {path}: not a readable PyTorch file ({error})") from error
    while isinstance(state, Mapping) and not any(isinstance(v, Tensor) for v in state.values()):
        inner = next((state[w] for w in WRAPPERS if isinstance(state.get(w), Mapping)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        wrappers = ", ".join(WRAPPERS)
        raise OfficialCheckpointError(
            f"official checkpoint {path}: expected a state dict of tensors (possibly under one of {wrappers})"
        )
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}


def _target(model: nn.Module, fmt: OfficialFormat) -> nn.Module:
    return model.get_submodule(fmt.submodule) if fmt.submodule else model


def to_official(name: str, model: nn.Module) -> dict[str, Tensor]:
    """`model`'s state dict under the official key names (what the release would hold, minus unused modules)."""
    fmt = official_format(name)
    out = {}
    for key, value in _target(model, fmt).state_dict().items():
        official = fmt.official_key(key)
        if official is not None:
            out[official] = value
    return out


def _listing(keys: list[str]) -> str:
    """'N: a, b, c, ...' with the first `SHOWN` keys."""
    return f"{len(keys)}: {', '.join(keys[:SHOWN])}{', ...' if len(keys) > SHOWN else ''}"


def map_official(name: str, model: nn.Module, official: Mapping[str, Tensor], source: str) -> dict[str, Tensor]:
    """The official state dict renamed to `model`'s keys (the target submodule's), checked key by key.

    Raises:
        OfficialCheckpointError: keys missing or unexpected, a shape differs, or a fixed filter differs; the
            message names the first few keys of each kind and their counts.
    """
    fmt = official_format(name)
    ours = _target(model, fmt).state_dict()
    wanted = {fmt.official_key(k): k for k in ours}
    wanted.pop(None, None)
    found, problems = {}, []
    for key, value in official.items():
        expected = fmt.fixed(key, value.shape)
        if expected is not None:
            if value.shape != expected.shape or not torch.allclose(value.double(), expected.double(), atol=1e-6):
                problems.append(f"{key} should hold the fixed filter of the official code")
        elif not any(re.fullmatch(pattern, key) for pattern in fmt.unused):
            found[key] = value
    missing = [k for k in wanted if k not in found]
    unexpected = [k for k in found if k not in wanted]
    shapes = [
        f"{k} {tuple(found[k].shape)} (expected {tuple(ours[wanted[k]].shape)})"
        for k in wanted
        if k in found and found[k].shape != ours[wanted[k]].shape
    ]
    if missing or unexpected or shapes or problems:
        parts = [f"{source} is not an official {name} checkpoint of the expected format"]
        parts.append(f"expected keys {_listing(list(wanted))}")
        parts.append(f"found keys {_listing(list(found))}")
        if missing:
            parts.append(f"missing: {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected: {_listing(unexpected)}")
        if shapes:
            parts.append(f"shape mismatch: {_listing(shapes)}")
        if problems:
            parts.append(f"fixed filters: {_listing(problems)}")
        raise OfficialCheckpointError("; ".join(parts))
    state = dict(ours)  # state the release does not hold keeps its built value
    state.update({wanted[k]: v.to(ours[wanted[k]].dtype) for k, v in found.items()})
    return state


def load_official(name: str, path: str | Path, **overrides: Any) -> nn.Module:
    """Build the baseline `name` as the authors released it and load their checkpoint strictly.

    Args:
        name: a key of `OFFICIAL_FORMATS` (``dic-hourglass`` loads DIC's landmark hourglass alone into a DIC).
        path: the released file (``.pth``/``.pt``; ``module.`` prefixes and ``state_dict``/``netG``/``model``
            wrappers are accepted).
        **overrides: build arguments over the release's own (e.g. ``hr_size``); None values are ignored.

    Returns:
        The model in eval mode, switched to the official behaviour where ours differs, with
        ``model.official_checkpoint`` set to the file's path.

    Raises:
        OfficialCheckpointError: unreadable file or keys that do not match (see `map_official`).
    """
    fmt = official_format(name)
    official = read_state_dict(path)
    kwargs = {**fmt.release(official), **{k: v for k, v in overrides.items() if v is not None}}
    try:
        model = build(fmt.model, **kwargs)
    except ValueError as error:
        raise OfficialCheckpointError(f"official {name} checkpoint {path}: {error}") from error
    _target(model, fmt).load_state_dict(map_official(name, model, official, str(path)), strict=True)
    if fmt.prepare is not None:
        fmt.prepare(model)
    model.official_checkpoint = str(path)
    return model.eval()
