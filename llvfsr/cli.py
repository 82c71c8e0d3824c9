"""Command-line flags generated from the config dataclasses (each field's trailing comment is its help text), and the
prior-source flags that `python -m llvfsr.priors extract` and `python -m llvfsr.sr` share.

Bad values exit with status 2 and a message that names the flag and what was expected (argparse's convention).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import json
import pickle
import tokenize
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any

from llvfsr import config as config_module
from llvfsr.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig
from llvfsr.errors import UsageError, UserError, describe_os_error


@cache
def field_help(cls: type) -> dict[str, str]:
    """Map each field of a config dataclass to the comment written after it in config.py."""
    helps, pending = {}, None
    source = inspect.getsource(cls)
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.NAME and token.start[1] == 4 and pending is None:
            pending = token.string
        elif token.type == tokenize.COMMENT and pending:
            helps[pending] = token.string.lstrip("# ").strip()
        if token.type == tokenize.NEWLINE:
            pending = None
    return helps


def _parser_for(annotation: Any):
    """An argparse `type` for a field annotation such as 'int | None' or 'tuple[float, float] | None'."""
    hint = eval(annotation, vars(config_module), {"typing": typing}) if isinstance(annotation, str) else annotation
    args = [a for a in typing.get_args(hint) if a is not type(None)] if isinstance(hint, types.UnionType) else [hint]
    base = args[0]
    if base is bool:
        return None
    if typing.get_origin(base) is tuple:
        inner = typing.get_args(base)[0]
        return lambda text: tuple(inner(part) for part in text.split(","))
    return base


def add_config_flags(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Add one ``--field-name`` flag per dataclass field (booleans become --flag / --no-flag)."""
    helps = field_help(cls)
    group = parser.add_argument_group(cls.__name__)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        kind = _parser_for(f.type)
        text = f"{helps.get(f.name, '')} (default: {default})"
        if kind is None:
            group.add_argument(
                flag, dest=f"{cls.__name__}.{f.name}", action=argparse.BooleanOptionalAction, default=None, help=text
            )
        else:
            group.add_argument(flag, dest=f"{cls.__name__}.{f.name}", type=kind, default=None, help=text)


def config_from_args(args: argparse.Namespace, cls: type, base: Any = None) -> Any:
    """Build `cls` from the parsed flags; flags left unset keep `base`'s value (or the field default)."""
    values = {f.name: getattr(args, f"{cls.__name__}.{f.name}", None) for f in dataclasses.fields(cls)}
    base = base if base is not None else cls()
    return dataclasses.replace(base, **{k: v for k, v in values.items() if v is not None})


def parse_overrides(items: list[str] | None) -> tuple[tuple[str, Any], ...]:
    """``["width=32", "transformer=window"]`` -> (("transformer", "window"), ("width", 32)); values parsed as
    int, float, bool or comma lists when they look like one."""

    def value(text: str) -> Any:
        if "," in text:
            return tuple(value(part) for part in text.split(",") if part)
        for cast in (int, float):
            try:
                return cast(text)
            except ValueError:
                pass
        return {"true": True, "false": False}.get(text.lower(), text)

    out = []
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--set expects KEY=VALUE, got {item!r}")
        out.append((key, value(raw)))
    return tuple(sorted(out))


def experiment_parser(description: str) -> argparse.ArgumentParser:
    """A parser with --model, --set KEY=VALUE (architecture overrides), --out, and every data/train field."""
    from llvfsr.models import list_models

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", default="llvfsr", choices=list_models(), help="registry name of the model")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        metavar="KEY=VALUE",
        help="architecture override passed to the model factory, e.g. --set width=32",
    )
    parser.add_argument("--out", default=None, help="output folder (checkpoint, per-image CSV, samples)")
    add_config_flags(parser, DataConfig)
    add_config_flags(parser, TrainConfig)
    return parser


def experiment_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> ExperimentConfig:
    try:
        overrides = parse_overrides(args.overrides)
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    data = config_from_args(args, DataConfig)
    if data.scale not in (8, 16):
        parser.error(f"--scale must be 8 or 16, got {data.scale}")
    from llvfsr.priors.text_encoder import CHUNKINGS

    if data.text_chunking not in CHUNKINGS:
        parser.error(f"--text-chunking must be {' or '.join(map(repr, CHUNKINGS))}, got {data.text_chunking!r}")
    train = config_from_args(args, TrainConfig)
    if train.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            parser.error(f"--device {train.device}: CUDA is not available here (use --device cpu or auto)")
    for name, value in (("--batch-size", train.batch_size), ("--hr-size", data.hr_size)):
        if value is not None and value < 1:
            parser.error(f"{name} must be >= 1, got {value}")
    model = ModelConfig(args.model, overrides)
    out = args.out or f"runs/{args.model}-x{data.scale}"
    return ExperimentConfig(data=data, model=model, train=train, out_dir=out)


def add_source_option_flag(parser: argparse.ArgumentParser) -> None:
    """``--source-option KIND.KEY=VALUE`` (repeatable): a constructor option of one prior source."""
    parser.add_argument(
        "--source-option",
        action="append",
        default=[],
        metavar="KIND.KEY=VALUE",
        help="a constructor option of one source, e.g. mask.model_id=/models/face-parser (repeatable; JSON values)",
    )


def parse_source_options(pairs: list[str] | None) -> dict[str, dict[str, Any]]:
    """``["mask.checkpoint=/m/sam.pth", "caption.max_new_tokens=20"]`` -> {kind: {key: value}}; values are JSON
    where they parse as JSON (numbers, booleans, objects), else strings.

    Raises:
        UsageError: an item is not KIND.KEY=VALUE with KIND a prior kind.
    """
    from llvfsr.priors.sources import KINDS

    options: dict[str, dict[str, Any]] = {}
    for pair in pairs or []:
        target, _, value = pair.partition("=")
        kind, _, key = target.partition(".")
        if kind not in KINDS or not key or not value:
            raise UsageError(f"--source-option {pair!r}: expected KIND.KEY=VALUE with KIND one of {', '.join(KINDS)}")
        try:
            options.setdefault(kind, {})[key] = json.loads(value)
        except json.JSONDecodeError:
            options.setdefault(kind, {})[key] = value
    return options


def build_source(kind: str, name: str, options: dict[str, Any] | None = None, device: str | None = None):
    """A registered prior source made with the user's `--source-option`s (and `device`, where it takes one).

    Loading a source is where missing weights, a wrong path or a missing package show up; they become one
    `UserError` naming the source and its options instead of a third-party traceback.

    Raises:
        UsageError: the source takes no such option.
        UserError: the source could not load (missing or damaged weights, package not installed, bad value).
    """
    from llvfsr.priors.sources import source_class

    cls = source_class(kind, name)
    kwargs = dict(options or {})
    if device and "device" in inspect.signature(cls.__init__).parameters:
        kwargs.setdefault("device", device)
    given = ", ".join(f"{kind}.{key}={value}" for key, value in kwargs.items() if key != "device") or "no options"
    try:
        return cls(**kwargs)
    except TypeError as err:  # an option the source does not take: a usage error, not a crash
        raise UsageError(f"{kind} source {name!r} rejected --source-option {given}: {err}") from err
    except (OSError, ValueError, RuntimeError, ImportError, pickle.UnpicklingError) as err:
        reason = describe_os_error(err) if isinstance(err, OSError) else str(err)
        raise UserError(f"{kind} source {name!r} ({given}) could not load: {reason}") from err


def check_tracking_uri(uri: str, flag: str = "--tracking-uri", must_exist: bool = False, timeout: float = 10) -> None:
    """Fail at once on an MLflow tracking URI that cannot work, instead of MLflow's minutes of retries.

    An http(s) server must answer (any HTTP status counts: an authenticating proxy is reachable); with
    `must_exist` (readers: tables, figures) a SQLite file must exist, where MLflow would create an empty one.

    Raises:
        UserError: naming `flag`, the URI and what was expected.
    """
    import urllib.error
    import urllib.request
    from urllib.parse import urlparse

    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).close()
        except urllib.error.HTTPError:
            return  # it answered
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise UserError(
                f"{flag} {uri}: no MLflow server answers there ({reason}); start one (`mlflow server --port ...`) "
                "or fix the address"
            ) from error
    elif parsed.scheme == "sqlite" and must_exist:
        path = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
        if path is not None and str(path) not in ("", ":memory:") and not path.is_file():
            raise UserError(
                f"{flag} {uri}: no MLflow database at {path} (run a sweep first, or point at its mlflow.db)"
            )
