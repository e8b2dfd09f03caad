"""What the command lines share: argument types and the one-line error exit."""

import argparse
import sys

from .errors import HwqError

__all__ = ["positive_int", "run_command"]


def positive_int(text):
    """``argparse`` type: a positive integer, or a usage error naming the bad value."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {value}")
    return value


def run_command(prog, call):
    """Run ``call()``; print an :class:`HwqError` as ``<prog>: error: <message>`` and return 2,
    else return 0."""
    try:
        call()
    except HwqError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0
