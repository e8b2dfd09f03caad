# amaranth: UnusedElaboratable=no
"""hwq.synth.design.synthesize_design: real yosys + nextpnr runs of whole designs (no mocks).

A small accelerator (a conv and a linear layer, fxp4, a 1x4 array, activations in two SPRAM
banks) must fit the UP5K with sane, consistent counts; a design with more multipliers than the
UP5K has SB_MAC16 must come back ``fits=False`` naming the shortfall; the digits CNN at fxp8 on
1x16 runs in the slow suite.
"""

import math

import pytest
import torch
from torch import nn

from hwq.errors import InputError
from hwq.synth import synthesize_design
from hwq.synth.design import module_ports


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8 * 8 * 8, 4)

    def forward(self, x):
        return self.fc(self.flatten(self.relu(self.conv(x))))


def _accelerator_verilog(imodel, array, path, banks):
    from amaranth.back import verilog

    from hwq.accel.schedule import schedule
    from hwq.accel.top import Accelerator
    sched = schedule(imodel, (1, 8, 8), array, banks=banks)
    path.write_text(verilog.convert(Accelerator(sched), name="accel", emit_src=False), encoding="utf-8")
    return sched


@pytest.fixture(scope="module")
def tiny_accel(tmp_path_factory):
    from hwq.accel.schedule import Array
    from hwq.quant import quantize
    from hwq.quant.integer import integer_model
    torch.manual_seed(0)
    model = Tiny().eval()
    imodel = integer_model(quantize(model, "fxp4", "fxp4", calibration=[torch.randn(16, 1, 8, 8)]))
    out = tmp_path_factory.mktemp("tiny")
    sched = _accelerator_verilog(imodel, Array(1, 4), out / "accel.v", banks=2)
    result = synthesize_design(out / "accel.v", "accel", out / "build")
    return sched, result


def test_small_accelerator_fits_with_consistent_counts(tiny_accel):
    sched, r = tiny_accel
    assert r["fits"] and not r["overfull"] and all("MAC16" in note for note in r["notes"])
    assert r["harness_used"] and r["utilization"]["io"]["used"] == 4      # streams + 32-bit counter > 39 pins
    weight_bits = sched.weights.size * sched.weight_bits
    assert r["ebr"] >= math.ceil(weight_bits / 4096)                     # the weights are in block RAM
    assert r["spram"] == 2 == sched.banks                                 # one SPRAM per activation bank
    assert r["utilization"]["spram"] == {"used": 2, "available": 4}
    assert r["utilization"]["ram"]["used"] == r["ebr"] + r["harness"]["ram"]
    assert 0 < r["lut4"] <= r["lcs"] <= 5280 and r["ff"] > 0 and r["carry"] > 0
    assert r["fmax_mhz"] > 0
    for key in ("lut4", "carry", "ff", "dsp", "spram"):
        assert r[key] + r["harness"][key] == r["total"][key]
        assert sum(m[key] for m in r["modules"].values()) == r[key]
    assert r["total"]["ram"] == r["ebr"] + r["harness"]["ram"]
    assert r["timing"]["yosys_s"] > 0 and r["cached"] is False


def test_the_cache_answers_the_same_design(tiny_accel, tmp_path):
    from hwq.synth.cache import SynthCache
    sched, first = tiny_accel
    cache = SynthCache(tmp_path / "cache")
    verilog = tmp_path / "accel.v"
    # the same model and schedule give the same text (deterministic Verilog)
    from hwq.accel.schedule import Array
    _accelerator_verilog(sched.model, Array(1, 4), verilog, banks=2)
    run = synthesize_design(verilog, "accel", tmp_path / "b1", cache=cache)
    hit = synthesize_design(verilog, "accel", tmp_path / "b2", cache=cache)
    assert hit["cached"] and not run["cached"]
    assert (tmp_path / "b2" / "accel-up5k-dsp-spram-f48-s1" / "CACHED").is_file()
    for key in ("lcs", "lut4", "ff", "ebr", "spram", "dsp", "fmax_mhz", "fits"):
        assert hit[key] == run[key] == first[key]


#: nine registered 16 x 16 multipliers: one SB_MAC16 each, the UP5K has eight
NINE_MULTIPLIERS = """
module nine(input clk, input [15:0] a, input [15:0] b, output [31:0] y);
    reg [15:0] ra [0:8];
    reg [15:0] rb [0:8];
    reg [31:0] p [0:8];
    integer i;
    always @(posedge clk) begin
        ra[0] <= a; rb[0] <= b;
        for (i = 1; i < 9; i = i + 1) begin ra[i] <= ra[i - 1] ^ b; rb[i] <= rb[i - 1] + a; end
        for (i = 0; i < 9; i = i + 1) p[i] <= ra[i] * rb[i];
    end
    assign y = p[0] ^ p[1] ^ p[2] ^ p[3] ^ p[4] ^ p[5] ^ p[6] ^ p[7] ^ p[8];
endmodule
"""


def test_a_design_too_big_comes_back_not_fitting(tmp_path):
    (tmp_path / "nine.v").write_text(NINE_MULTIPLIERS)
    r = synthesize_design(tmp_path / "nine.v", "nine", tmp_path / "build", spram=False)
    assert r["fits"] is False and r["fmax_mhz"] is None
    assert r["dsp"] == 9 and r["overfull"] == {"dsp": [9, 8]}
    assert r["harness_used"]                                              # 65 port bits > 39 pins
    assert any("does not fit the iCE40UP5K-SG48: 9 of 8 SB_MAC16" in note for note in r["notes"])
    # without DSP its multipliers are logic: no SB_MAC16, and whether it fits follows the counts
    r = synthesize_design(tmp_path / "nine.v", "nine", tmp_path / "build", dsp=False, spram=False)
    assert r["dsp"] == 0 and r["lut4"] > 9 * 100 and "dsp" not in r["overfull"]
    assert r["fits"] == (not r["overfull"]) and (r["fmax_mhz"] is not None) == r["fits"]


def test_module_ports_and_errors(tmp_path):
    assert module_ports(NINE_MULTIPLIERS, "nine") == [("input", "clk", 1), ("input", "a", 16), ("input", "b", 16),
                                                      ("output", "y", 32)]
    (tmp_path / "nine.v").write_text(NINE_MULTIPLIERS)
    with pytest.raises(InputError, match="top: the Verilog has no module 'other'"):
        synthesize_design(tmp_path / "nine.v", "other", tmp_path)
    with pytest.raises(InputError, match="verilog_path"):
        synthesize_design(tmp_path / "missing.v", "nine", tmp_path)
    with pytest.raises(InputError, match="spram: target hx8k"):
        synthesize_design(tmp_path / "nine.v", "nine", tmp_path, target="hx8k", spram=True)
    with pytest.raises(InputError, match="dsp: target hx8k"):
        synthesize_design(tmp_path / "nine.v", "nine", tmp_path, target="hx8k", dsp=True)
    with pytest.raises(InputError, match="dsp must be None"):
        synthesize_design(tmp_path / "nine.v", "nine", tmp_path, dsp="yes")
    with pytest.raises(InputError, match="freq_mhz"):
        synthesize_design(tmp_path / "nine.v", "nine", tmp_path, freq_mhz=-1)
    with pytest.raises(InputError, match="harness"):
        synthesize_design(tmp_path / "nine.v", "nine", tmp_path, harness="yes")


COUNTER = """
module counter(clk, rst, en, q);
  input clk;
  input rst;
  input en;
  output [7:0] q;
  reg [7:0] q = 8'd0;
  always @(posedge clk) if (rst) q <= 8'd0; else if (en) q <= q + 8'd1;
endmodule
"""


def test_few_ports_need_no_harness_and_hx8k_has_no_dsp_or_spram(tmp_path):
    (tmp_path / "counter.v").write_text(COUNTER)
    r = synthesize_design(tmp_path / "counter.v", "counter", tmp_path / "build", target="hx8k")
    assert not r["harness_used"] and r["harness"] == dict.fromkeys(r["harness"], 0)
    assert r["utilization"]["io"]["used"] == 11 and "spram" not in r["utilization"]
    assert (r["use_dsp"], r["use_spram"], r["dsp"], r["spram"]) == (False, False, 0, 0)
    assert r["fits"] and r["ff"] == 8 and r["fmax_mhz"] > 0 and r["modules"][""]["ff"] == 8
