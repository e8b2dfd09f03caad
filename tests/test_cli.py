"""The five command lines share one convention and work from any directory after installation.

Each is run as a new user runs it: the console script beside the interpreter (or ``python -m``),
from a fresh directory outside the repository, with no PYTHONPATH and nothing of the venv on PATH.
Bad input is one line, ``<prog>: error: ...``, exit status 2, and nothing is written.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent

#: console script -> its ``python -m`` module
COMMANDS = {"hwq-build": "hwq.build", "hwq-quantize": "hwq.quantize", "hwq-sim": "hwq.sim",
            "hwq-board": "hwq.boards", "hwq-explore": "hwq.explore"}

#: console script -> (arguments that are bad input, a regular expression for the message)
BAD_INPUT = {
    "hwq-build": (["--format", "posit", "--no-synth"], r"hwq-build: error: unknown format 'posit'"),
    "hwq-quantize": (["--config", "w4x8", "--no-synth"], r"hwq-quantize: error: configuration 'w4x8' is not"),
    "hwq-sim": (["missing.json", "--sim", "icarus"], r"hwq-sim: error: manifest \S*/missing.json not found"),
    "hwq-board": (["--board", "de0"], r"hwq-board: error: argument --board: invalid choice: 'de0'"),
    "hwq-explore": (["--formats", "posit"], r"hwq-explore: error: format 'posit': unknown"),
}


def run(argv, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = "/usr/bin:/bin"
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("script", COMMANDS)
def test_console_script_and_module_run_from_anywhere(script, tmp_path):
    for argv in ([str(BIN / script), "--help"], [sys.executable, "-m", COMMANDS[script], "--help"]):
        proc = run(argv, tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"usage: {script} "), proc.stdout[:200]
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("script", COMMANDS)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(script, tmp_path):
    args, message = BAD_INPUT[script]
    proc = run([str(BIN / script), *args], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and proc.stderr.count("\n") == 1 and re.match(message, proc.stderr), proc.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("script", COMMANDS)
def test_version(script, tmp_path):
    from importlib.metadata import version
    proc = run([str(BIN / script), "--version"], tmp_path)
    assert (proc.returncode, proc.stdout) == (0, f"{script} {version('hwq')}\n")


@pytest.mark.parametrize("script, args", [("hwq-build", ["--help"]), ("hwq-board", ["--help"]),
                                          ("hwq-quantize", ["--format", "fxp", "--no-synth"])])
def test_a_plugin_that_cannot_be_imported_is_one_line(script, args, tmp_path, monkeypatch):
    monkeypatch.setenv("HWQ_PLUGINS", "no_such_plugin_module")
    proc = run([str(BIN / script), *args], tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (f"{script}: error: $HWQ_PLUGINS names module 'no_such_plugin_module', which cannot be "
                           "imported: No module named 'no_such_plugin_module'\n")


def test_ctrl_c_is_one_line_and_exit_130(capsys):
    from hwq.cli import run_command

    def interrupted():
        raise KeyboardInterrupt
    assert run_command("hwq-build", interrupted) == 130
    assert capsys.readouterr().err == "hwq-build: interrupted\n"
