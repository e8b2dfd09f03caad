"""Post-synthesis simulation of every PE the main job builds (slow suite).

For each format, ``python -m hwq.build --format NAME`` (default widths, UP5K, fabric and SB_MAC16
mappings) runs with a cache of the test's own, so yosys and nextpnr really run; then every job's
``yosys/netlist.v`` (the PE as the reporting flow synthesized it, hierarchy kept) runs the PE's
manifest-driven bench with yosys's iCE40 cell models: exhaustive over every code pair (all codes
here are at most 8 bits), random sums, the longest sum and a reset mid-sum. Netlists of 4-bit
operands run on Icarus (it starts at once), wider ones on Verilator (it runs 65 536 pairs faster
than Icarus builds and runs them).
"""

import json
import os
import subprocess
import sys

import pytest

from hwq.pe import PE_CLASSES
from hwq.sim import runner
from hwq.synth.yosys import NETLIST_VERILOG
from tests.sim.test_bench import require


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PE_CLASSES.names()))
def test_every_pe_netlist_of_the_main_job_passes_its_bench(name, tmp_path):
    out = tmp_path / "rtl"
    env = dict(os.environ, HWQ_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-m", "hwq.build", "--format", name, "--out", str(out), "--quiet"],
                          env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "report.json").read_text())["results"]
    assert results and {r["format"] for r in results} == {name}
    jobs = sorted((out / "synth").iterdir())
    assert len(jobs) == len(results)
    for job in jobs:
        module = job.name.split("-up5k")[0]
        netlist = job / "yosys" / NETLIST_VERILOG
        assert netlist.is_file() and f"module {module}(" in netlist.read_text(), job
        manifest = json.loads((out / f"{module}.json").read_text())
        simulator = "icarus" if max(manifest["ports"]["a"]["width"], manifest["ports"]["w"]["width"]) <= 4 \
            else "verilator"
        require(simulator)
        ntests, nfail = runner.run_bench(out / f"{module}.json", simulator, tmp_path / "sim" / job.name,
                                         netlist=netlist)
        assert (ntests, nfail) == (len(runner.TESTS), 0), job.name
