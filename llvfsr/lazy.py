"""Lazy package exports: a package names what it offers without loading it (PEP 562 module `__getattr__`)."""

from __future__ import annotations

from importlib import import_module


def lazy_exports(package: str, exports: dict[str, str]):
    """The module `__getattr__` of `package` that imports each name of `exports` (name -> module) on first use."""

    def __getattr__(name: str):
        if name in exports:
            return getattr(import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
