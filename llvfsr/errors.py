"""User errors: mistakes a user can fix, shown as one ``error: ...`` line instead of a traceback.

A missing or damaged file, missing model weights, an unreachable server or a bad value is the user's to fix, and
the fix is in the message (the file, flag or value, and what was expected); a traceback only hides it. The library
raises `UserError` (or wraps a third-party exception in one, naming the file or option that caused it), and every
command-line `main` is decorated with `cli_entry`, which prints the message and returns the exit status. Anything
else is a bug and keeps its traceback. ``LLVFSR_TRACEBACK=1`` shows the traceback of user errors too.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable


class UserError(Exception):
    """A mistake the user can fix; the message names the file, flag or value and what was expected.

    Attributes:
        exit_code: the process exit status a CLI returns for it (1; `UsageError` 2, argparse's convention).
    """

    exit_code = 1


class UsageError(UserError):
    """A bad command line (a flag's value that argparse could not check); exit status 2."""

    exit_code = 2


class TextEncoderError(UserError, RuntimeError):
    """A text encoder cannot be built as asked (no weights and no permission to use random ones)."""


def describe_os_error(error: OSError) -> str:
    """'PATH: reason' for an OSError that names a file (FileNotFoundError, PermissionError, ...), else its text."""
    if error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror.lower()}"
    return str(error)


def cli_entry(*also: type[BaseException]) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Decorate a CLI ``main(argv) -> int`` so that user errors end as ``error: <message>`` on stderr.

    `UserError` (every library error type a user can cause derives from it) returns its `exit_code`; an `OSError`
    (a file that cannot be read or written, a refused connection) and the types in `also` return 1. Any other
    exception is a bug and keeps its traceback.
    """
    handled = (UserError, OSError, *also)

    def decorate(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def wrapper(*args, **kwargs) -> int:
            try:
                return main(*args, **kwargs)
            except Exception as error:
                if not isinstance(error, handled) or os.environ.get("LLVFSR_TRACEBACK"):
                    raise
                message = describe_os_error(error) if isinstance(error, OSError) else str(error)
                print(f"error: {' '.join(message.split())}", file=sys.stderr)
                return error.exit_code if isinstance(error, UserError) else 1

        return wrapper

    return decorate
