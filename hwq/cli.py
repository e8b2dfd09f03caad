"""What the command lines share: argument types, registry choices and the exit-status convention.

Every hwq command line (``hwq-build``, ``hwq-quantize``, ``hwq-sim``, ``hwq-board``) runs its work
through :func:`run_command`: bad input exits 2 before any work (:class:`~hwq.errors.InputError`),
a failed tool exits 1 and names its log (:class:`~hwq.errors.ToolError`), success exits 0.
"""

import argparse
import importlib.metadata
import sys

from .errors import HwqError, ToolError

__all__ = ["ArgumentParser", "positive_int", "run_command"]


class ArgumentParser(argparse.ArgumentParser):
    """:class:`argparse.ArgumentParser` whose usage errors are one line, ``<prog>: error: <message>``,
    with exit status 2, like every other bad input, and which has ``--version``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_argument("--version", action="version", version=f"%(prog)s {_version()}")

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _version():
    try:
        return importlib.metadata.version("hwq")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def _int_at_least(text, minimum, kind):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a {kind} integer, not {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected a {kind} integer, not {value}")
    return value


def positive_int(text):
    """``argparse`` type: a positive integer, or a usage error naming the bad value."""
    return _int_at_least(text, 1, "positive")


def non_negative_int(text):
    """``argparse`` type: a non-negative integer, or a usage error naming the bad value."""
    return _int_at_least(text, 0, "non-negative")


def run_command(prog, call):
    """Run ``call()`` and return the command's exit status.

    Parameters
    ----------
    prog : str
        The program name that prefixes an error message (``<prog>: error: <message>``).
    call : callable
        The work, argument parsing included (so that an error raised while the parser is built,
        e.g. by a plug-in that cannot be imported, is one line too); its return value is ignored
        unless it is an int (then it is the exit status).

    Returns
    -------
    int
        0 on success, :attr:`HwqError.exit_status <hwq.errors.HwqError.exit_status>` on an
        :class:`~hwq.errors.HwqError` (2 for bad input, 1 for a tool failure, whose log path is
        printed on a second line), 130 on Ctrl-C (one line, no traceback).
    """
    try:
        status = call()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except HwqError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        if isinstance(exc, ToolError) and exc.log is not None and str(exc.log) not in str(exc):
            print(f"{prog}: log: {exc.log}", file=sys.stderr)
        return exc.exit_status
    return status if isinstance(status, int) and not isinstance(status, bool) else 0
