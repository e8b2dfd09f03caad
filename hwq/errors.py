"""hwq's error taxonomy: bad input (exit status 2) and tool failures (exit status 1).

Every command line (``hwq-build``, ``hwq-quantize``, ``hwq-sim``, ``hwq-board``) maps these to
its exit status through :func:`hwq.cli.run_command`:

========================  ===========  ======================================================
exception                 exit status  meaning
========================  ===========  ======================================================
:class:`InputError`       2            bad input or a missing tool, found before any work
:class:`ToolError`        1            a tool ran and failed; :attr:`ToolError.log` names its log
========================  ===========  ======================================================
"""

__all__ = ["HwqError", "InputError", "ToolError"]


class HwqError(Exception):
    """Base class of every error hwq raises on purpose; the message is one line.

    Attributes
    ----------
    exit_status : int
        The command lines' exit status for this error.
    """

    exit_status = 1


class InputError(HwqError, ValueError):
    """Bad input or a missing tool, found before any work starts.

    The message is one line naming the layer, option, parameter or file at fault and how to fix
    it. Nothing has been written when it is raised.
    """

    exit_status = 2


class ToolError(HwqError, RuntimeError):
    """An external tool (yosys, nextpnr, a simulator, sby) ran and failed, or ran too long.

    Parameters
    ----------
    message : str
        One line: what ran and the tool's last error line.
    log : path-like or None
        The tool's log file, kept for the user to read.
    """

    exit_status = 1

    def __init__(self, message, log=None):
        super().__init__(message)
        self.log = log
