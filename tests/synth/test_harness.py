"""hwq.synth.harness: the four-pin register-to-register harness around a PE (no tools)."""

import subprocess

import pytest

from hwq.errors import HwqError
from hwq.pe import FixedPointPE, write_pe
from hwq.synth import harness_verilog
from hwq.synth.harness import pe_ports
from hwq.tools import find_tool

from .conftest import A8, manifest_of


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
