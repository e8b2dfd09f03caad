# amaranth: UnusedElaboratable=no
"""Post-synthesis simulation: the iCE40 netlist that :func:`hwq.synth.yosys.run_yosys` makes of
the accelerator computes what the RTL computes.

The tiny CNN (a padded 3 x 3 conv with ReLU, a max pool, a linear layer; fxp4) on a 1 x 4 array
with the UP5K's choices: products in SB_MAC16 (``mapping="dsp"``, two 8x8 products per block),
``synth_ice40 -dsp`` (the requantizer's multiplier in SB_MAC16 too) and the activation memory in
three single-port banks mapped to SB_SPRAM256KA (``-spram``). The netlist (``netlist.v``,
hierarchy kept) runs the dump bench on Icarus with yosys's ``cells_sim.v``: every tensor of two
images must equal the integer model's.

Regression: ``synth_ice40 -dsp``'s ``ice40_dsp`` pass rewrote the SB_MAC16 cells the PE array
instantiates into unregistered 16x16 multipliers (``MODE_8x8 = 0``, ``CLK = 0``), so the netlist's
first conv layer already differed from the RTL; :func:`hwq.synth.yosys.yosys_script` hides those
cells from the pass, and the board demo's build (:func:`hwq.boards.accel_demo.build_demo`, Amaranth's
iCE40 script) does the same. Cost: yosys ~10 s, Icarus ~5 s, the board build ~12 s.
"""

import json
import re

import numpy as np
import pytest

from hwq.accel.schedule import Array, schedule
from hwq.accel.top import Accelerator
from hwq.sim.accel_runner import TOP, run_accel_bench
from hwq.synth.yosys import run_yosys
from hwq.tools import find_tool
from tests.sim.test_inputs import require

#: the tiny CNN's input shape and array
INPUT_SHAPE = (1, 4, 4)
ARRAY = Array(1, 4)
#: SPRAM banks (a bank per tensor a step reads or writes)
BANKS = 3


def _tiny_model():
    """The tiny CNN of the formal proofs as an integer model (fxp4) and two inputs' codes."""
    import torch

    from tests.accel.test_formal import _tiny_model as tiny_integer_model
    imodel = tiny_integer_model()
    torch.manual_seed(1)
    return imodel, imodel.quantize_input(torch.randn(2, *INPUT_SHAPE).numpy())


def _mac16_cells(netlist):
    """``[(parameters, connections)]`` of every SB_MAC16 in a ``write_verilog`` netlist."""
    cells = re.findall(r"SB_MAC16 #\((.*?)\) \S+ \((.*?)\);", netlist, re.S)
    return [(dict(re.findall(r"\.(\w+)\(([^)]*)\)", params)), dict(re.findall(r"\.(\w+)\(([^)]*)\)", ports)))
            for params, ports in cells]


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    """``(imodel, codes, work dir, run_yosys result)`` of the verification build, dsp and spram on."""
    from amaranth.back import verilog

    imodel, codes = _tiny_model()
    sched = schedule(imodel, INPUT_SHAPE, ARRAY, keep_all=True, banks=BANKS)
    dut = Accelerator(sched, dump=True, mapping="dsp")
    assert dut.conv.dsp_blocks == 2 and dut.spram
    work = tmp_path_factory.mktemp("netlist")
    (work / f"{TOP}.v").write_text(verilog.convert(dut, name=TOP, emit_src=False))
    result = run_yosys(find_tool("yosys"), [f"{TOP}.v"], TOP, work, device="u", dsp=True, spram=True)
    return imodel, codes, work, result


def test_instantiated_mac16_keep_their_8x8_mode(synthesized):
    """The PE array's two SB_MAC16 come out of ``synth_ice40 -dsp`` as instantiated (8x8 mode,
    registered products, clocked with the pipeline's enable); the requantizer's multiplier is
    mapped to SB_MAC16 as before."""
    *_, result = synthesized
    cells = result["stat"]["design"]["num_cells_by_type"]
    assert cells["SB_MAC16"] == 4 and cells["SB_SPRAM256KA"] == BANKS
    mac16 = _mac16_cells(result["netlist_verilog"].read_text())
    eight = [(p, c) for p, c in mac16 if p.get("MODE_8x8") == "1'h1"]
    assert len(eight) == 2, [p for p, _ in mac16]
    for params, ports in eight:
        assert params["TOP_8x8_MULT_REG"] == params["BOT_8x8_MULT_REG"] == "1'h1"
        assert params["TOPOUTPUT_SELECT"] == params["BOTOUTPUT_SELECT"] == "2'h2"
        assert ports["CLK"] == "clk" and ports["CE"] not in ("1'h0", "1'h1")


def test_netlist_matches_the_integer_model_on_icarus(synthesized, tmp_path):
    """Every tensor of two images, read back from the netlist's simulation, equals the integer
    model's, in the RTL's cycle count."""
    require("icarus")
    imodel, codes, work, result = synthesized
    run = run_accel_bench(imodel, codes, input_shape=INPUT_SHAPE, array=ARRAY, simulator="icarus",
                          build_dir=tmp_path / "sim", dump=True, banks=BANKS, mapping="dsp",
                          netlist=result["netlist_verilog"])
    assert run["mismatches"] == 0 and run["netlist"] == result["netlist_verilog"].resolve()
    assert run["cycles"] == [run["expected_cycles"]] * len(codes)
    assert np.array_equal(run["outputs"].reshape(len(codes), -1), imodel.run_codes(codes).reshape(len(codes), -1))


def test_board_demo_keeps_the_mac16_8x8_mode(tmp_path):
    """The UP5K board demo's bitstream netlist (Amaranth's script: ``synth_ice40 -dsp -spram``,
    flattened) has the PE array's SB_MAC16 as instantiated too."""
    from hwq.boards.accel_demo import build_demo

    imodel, codes = _tiny_model()
    acc = Accelerator(schedule(imodel, INPUT_SHAPE, ARRAY, banks=BANKS), mapping="dsp")
    build_demo(acc, codes, "icebreaker", tmp_path, name="demo")
    cells = [(name, cell) for module in json.loads((tmp_path / "demo.json").read_text())["modules"].values()
             for name, cell in module.get("cells", {}).items() if cell["type"] == "SB_MAC16"]
    array = [cell for name, cell in cells if "array.cells.mac16_" in name]
    assert len(cells) == 4 and len(array) == 2, [name for name, _ in cells]
    for cell in array:
        assert int(cell["parameters"]["MODE_8x8"], 2) == 1 and int(cell["parameters"]["TOP_8x8_MULT_REG"], 2) == 1
        assert cell["connections"]["CLK"] not in (["0"], ["1"])
