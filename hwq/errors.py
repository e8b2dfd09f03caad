"""The one exception type every hwq check raises."""

__all__ = ["HwqError"]


class HwqError(ValueError):
    """Bad input or a missing tool, found before any work starts.

    The message is one line naming the problem and how to fix it.
    """
