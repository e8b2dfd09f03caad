"""Post-synthesis simulation (``python -m hwq.sim MANIFEST --netlist FILE``): the PE as the
reporting flow synthesized it (yosys ``synth_ice40 -noflatten``, written as Verilog with the
hierarchy kept, in its job's ``yosys/`` directory) runs the same manifest-driven bench with
yosys's iCE40 cell models, on Icarus and Verilator; a netlist with one LUT changed fails it."""

import re
import subprocess
import sys

import pytest

from hwq.errors import InputError
from hwq.pe import FixedPointPE
from hwq.sim import runner
from hwq.synth import synthesize
from hwq.synth.yosys import NETLIST_VERILOG
from tests.sim.test_bench import emit, require


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    """A 4x4 fxp PE: its manifest and the netlist of its synthesis job (no cache: the job runs)."""
    root = tmp_path_factory.mktemp("netlist")
    manifest = emit(FixedPointPE.from_bits(4, 4), root / "rtl")
    result = synthesize(manifest, root / "synth")
    netlists = list((root / "synth").glob(f"*/yosys/{NETLIST_VERILOG}"))
    assert result["lut4"] > 0 and len(netlists) == 1
    return manifest, netlists[0]


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_the_synthesized_netlist_passes_the_exhaustive_bench(synthesized, simulator, tmp_path):
    require(simulator)
    manifest, netlist = synthesized
    text = netlist.read_text()
    assert "SB_LUT4" in text and "module fxp_pe_a4_w4(" in text          # cells, hierarchy kept
    ntests, nfail = runner.run_bench(manifest, simulator, tmp_path / "build", netlist=netlist,
                                     testcase=["exhaustive", "reset_mid_sum"])
    assert (ntests, nfail) == (2, 0)


def test_a_netlist_with_one_lut_changed_fails(synthesized, tmp_path):
    """Flip every LUT4's truth table in turn until one changes the PE's sums: the bench must
    catch it (the same check the RTL mutants get)."""
    require("icarus")
    manifest, netlist = synthesized
    text = netlist.read_text()
    inits = list(re.finditer(r"\.LUT_INIT\(16'h([0-9a-f]{4})\)", text))
    assert inits
    caught = 0
    for match in inits[:6]:
        flipped = f"{int(match.group(1), 16) ^ 0xFFFF:04x}"
        mutant = tmp_path / f"mutant{caught}.v"
        mutant.write_text(text[:match.start(1)] + flipped + text[match.end(1):])
        try:
            runner.run_bench(manifest, "icarus", tmp_path / "build", netlist=mutant, testcase="exhaustive")
        except runner.BenchFailed as exc:
            assert "exhaustive" in str(exc)
            caught += 1
            break
    assert caught == 1


def test_bad_netlists_are_refused_before_any_work(synthesized, tmp_path):
    manifest, netlist = synthesized
    with pytest.raises(InputError, match="--netlist .*missing.v: cannot read it"):
        runner.run_bench(manifest, "icarus", tmp_path / "b", netlist=tmp_path / "missing.v")
    other = tmp_path / "other.v"
    other.write_text("module something_else(a); input a; endmodule\n")
    with pytest.raises(InputError, match="has no module 'fxp_pe_a4_w4'"):
        runner.run_bench(manifest, "icarus", tmp_path / "b", netlist=other)
    proc = subprocess.run([sys.executable, "-m", "hwq.sim", str(manifest), "--sim", "icarus", "--netlist",
                           str(other), "--build-dir", str(tmp_path / "c")], capture_output=True, text=True)
    assert proc.returncode == 2 and "has no module 'fxp_pe_a4_w4'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
