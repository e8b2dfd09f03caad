# amaranth: UnusedElaboratable=no
"""hwq-sim refuses bad input before any work: one line, exit status 2, nothing built.

Plug-ins that cannot be imported, manifest values the golden model refutes, a build directory
that cannot be one, out-of-range options and unknown test names are all found before the
simulator builds anything; a SIGTERM stops the simulator too. The long bench stream is checked in
chunks (against a Python stand-in for the DUT, no simulator).
"""

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from hwq.errors import InputError
from hwq.manifest import read_manifest
from hwq.pe import FixedPointPE, pe_variants, write_pe
from hwq.sim import runner

ROOT = Path(__file__).resolve().parents[2]

#: the bench's tests, as pe_bench.py defines them (hand-copied, so a renamed test fails here)
BENCH_TESTS = ("exhaustive", "random_sums", "max_terms", "reset_mid_sum")


def require(simulator):
    """Fail (never skip) when a simulator is missing: CI installs both."""
    try:
        runner.check_simulator(simulator)
    except runner.SimulatorMissing as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="module")
def emitted(tmp_path_factory):
    """``{module: (json path)}`` of a 4x4 fxp PE, a 12x16 one and ANT's unified 4x4 PE (with modes)."""
    out = tmp_path_factory.mktemp("rtl")
    pes = [FixedPointPE.from_bits(4, 4), FixedPointPE.from_bits(12, 16), *pe_variants("ant", 4, 4)]
    return {data["module"]: out / f"{data['module']}.json" for data in (write_pe(pe, out) for pe in pes)}


def changed(emitted, module, dest, change):
    """A copy of an emitted PE in ``dest`` whose manifest went through ``change(data)``."""
    src = emitted[module]
    dest.mkdir(parents=True, exist_ok=True)
    (dest / src.with_suffix(".v").name).write_bytes(src.with_suffix(".v").read_bytes())
    data = json.loads(src.read_text())
    change(data)
    path = dest / src.name
    path.write_text(json.dumps(data))
    return path


def cli(*args, cwd, env=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "hwq.sim.runner", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, **kwargs)


def one_line(proc):
    """Exit status 2 and a single ``hwq-sim: error: ...`` line on stderr; returns the line."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == "" and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("hwq-sim: error: "), proc.stderr
    return proc.stderr


# ---------------------------------------------------------------------- plug-ins


def test_a_plugin_that_cannot_be_imported_stops_before_the_build(emitted, tmp_path, monkeypatch):
    require("icarus")
    monkeypatch.setenv("HWQ_PLUGINS", "no.such.module")
    with pytest.raises(InputError, match=r"^\$HWQ_PLUGINS names module 'no\.such\.module', which cannot be "
                                         r"imported"):
        runner.run_bench(emitted["fxp_pe_a4_w4"], "icarus", tmp_path / "build", random_cycles=100)
    assert not (tmp_path / "build").exists()
    line = one_line(cli(emitted["fxp_pe_a4_w4"], "--sim", "icarus", "--build-dir", tmp_path / "cli",
                        cwd=tmp_path, env={**os.environ, "HWQ_PLUGINS": "no.such.module"}))
    assert "$HWQ_PLUGINS names module 'no.such.module'" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- manifest values vs the golden model


def _set(path, value):
    """A change that sets the key path ``path`` (a tuple) of the manifest to ``value``."""
    def change(data):
        for key in path[:-1]:
            data = data[key]
        data[path[-1]] = value
    return change


BAD_VALUES = [
    # (id, module, change, key named in the message, more text in the message)
    ("unknown_format_name", "fxp_pe_a4_w4", _set(("format", "name"), "nosuch"), "format.name",
     "unknown format 'nosuch'"),
    ("bad_rounding", "fxp_pe_a4_w4", _set(("format", "a", "rounding"), "bogus"), "format.a.rounding",
     "unknown rounding mode 'bogus'"),
    ("bits_out_of_range", "fxp_pe_a4_w4", _set(("format", "a", "bits"), 99), "format.a.bits", "99"),
    ("bits_not_the_port_width", "fxp_pe_a4_w4", _set(("format", "w", "bits"), 5), "format.w.bits",
     "is 5 but port w (ports.w.width) is 4 bits"),
    ("unknown_parameter", "fxp_pe_a4_w4", _set(("format", "a", "colour"), "red"), "format.a.colour",
     "no parameter 'colour'"),
    # unsigned a: 0..15; the reader's signed rule holds either way, only the golden model refutes it
    ("codebook_disagrees", "fxp_pe_a4_w4", _set(("codebook", "a", 3), "5"), "codebook.a",
     "code 3 is 5 in the manifest but 3 in the golden model"),
    # frac 2 makes code 1 worth 1/4: the (unchanged) codebook says 1
    ("frac_changed", "fxp_pe_a4_w4", _set(("format", "a", "frac"), 2), "codebook.a",
     "code 1 is 1 in the manifest but 1/4 in the golden model"),
    ("acc_lsb_exp_wrong", "fxp_pe_a4_w4", _set(("acc_lsb_exp",), -1), "acc_lsb_exp",
     "is -1 but the golden model gives 0"),
    # 1024 terms of -8 * 15 = -120 need 18 bits (-122880); 17 hold -65536 .. 65535
    ("acc_too_narrow", "fxp_pe_a4_w4", _set(("ports", "acc", "width"), 17), "ports.acc.width",
     "-65536 .. 65535"),
    # 4-bit flint (sign-magnitude): code 4 is 16; 12 keeps the codebook sign-magnitude for the reader
    ("mode_codebook_disagrees", "ant_pe_a4_w4", _set(("modes", "int_flint", "codebook", "w", 4), "12"),
     "modes.int_flint.codebook.w", "code 4 is 12 in the manifest but 16 in the golden model"),
    ("mode_without_format", "ant_pe_a4_w4", lambda d: d["modes"]["int_flint"].pop("format"),
     "modes.int_flint.format", "is missing"),
    ("mode_acc_lsb_exp_wrong", "ant_pe_a4_w4", _set(("modes", "int_int", "acc_lsb_exp"), 3),
     "modes.int_int.acc_lsb_exp", "is 3 but the golden model gives 0"),
    # 12-bit codes list no codebook; without a/w parameters nothing can supply it
    ("wide_codebook_unknown", "fxp_pe_a12_w16", lambda d: d["format"].pop("a"),
     "codebook.a", "is missing and the golden model cannot supply it"),
]


@pytest.mark.parametrize("module, change, key, text", [pytest.param(*c[1:], id=c[0]) for c in BAD_VALUES])
def test_manifest_values_are_checked_before_the_build(emitted, tmp_path, module, change, key, text):
    require("icarus")
    path = changed(emitted, module, tmp_path / "rtl", change)
    read_manifest(path)                                # the schema holds: only the values are wrong
    with pytest.raises(InputError) as info:
        runner.run_bench(path, "icarus", tmp_path / "build", random_cycles=100)
    message = str(info.value)
    assert "\n" not in message and f"manifest {path}: key '{key}' " in message and text in message, message
    assert not (tmp_path / "build").exists()


def test_a_bad_value_on_the_command_line_is_one_line_exit_2(emitted, tmp_path):
    require("icarus")
    path = changed(emitted, "fxp_pe_a4_w4", tmp_path / "rtl", _set(("format", "a", "bits"), 5))
    line = one_line(cli(path, "--sim", "icarus", "--build-dir", tmp_path / "build", cwd=tmp_path))
    assert f"manifest {path}: key 'format.a.bits' is 5 but port a (ports.a.width) is 4 bits" in line
    assert not (tmp_path / "build").exists()


def test_the_simulator_repeats_the_same_checks(emitted, tmp_path, monkeypatch):
    """With the runner's own check switched off, the bench inside the simulator refuses the manifest
    with the same message (one function, hwq.sim.golden.bench_models, on both sides)."""
    require("icarus")
    path = changed(emitted, "fxp_pe_a4_w4", tmp_path / "rtl", _set(("codebook", "a", 3), "5"))
    monkeypatch.setattr(runner, "bench_models", lambda manifest, where: None)
    with pytest.raises(runner.BenchFailed) as info:
        runner.run_bench(path, "icarus", tmp_path / "build", random_cycles=100, testcase="reset_mid_sum")
    assert info.value.failures and all(
        f"manifest {path}: key 'codebook.a' disagrees with the golden model of format.a" in message
        for _, message in info.value.failures), info.value.failures


def test_every_emitted_variant_passes_the_checks(tmp_path):
    """No PE hwq emits is refused: the checks agree with the writer on every default variant."""
    from hwq.pe import PE_CLASSES
    from hwq.sim.golden import bench_models
    checked = 0
    for fmt, cls in PE_CLASSES.items():
        for a_bits, w_bits in cls.default_widths:
            for pe in pe_variants(fmt, a_bits, w_bits):
                data = write_pe(pe, tmp_path)
                built = bench_models(read_manifest(tmp_path / f"{data['module']}.json"), data["module"])
                assert built.golden.endswith("checked against hwq.formats"), data["module"]
                assert len(built.models) == len(data.get("modes") or [None])
                checked += 1
    assert checked >= 10


# ---------------------------------------------------------------------- --build-dir


@pytest.mark.parametrize("where", ["file", "under_file", "proc"])
def test_a_build_dir_that_cannot_be_one_is_refused(emitted, tmp_path, where):
    require("icarus")
    (tmp_path / "f").write_text("not a directory\n")
    build_dir = {"file": tmp_path / "f", "under_file": tmp_path / "f" / "sub", "proc": Path("/proc/hwq-sim")}[where]
    if where == "proc" and not Path("/proc/self").is_dir():
        pytest.skip("no /proc here")
    with pytest.raises(InputError, match=rf"^--build-dir {build_dir} (is|cannot)"):
        runner.run_bench(emitted["fxp_pe_a4_w4"], "icarus", build_dir, random_cycles=100)
    line = one_line(cli(emitted["fxp_pe_a4_w4"], "--sim", "icarus", "--build-dir", build_dir, cwd=tmp_path))
    assert f"--build-dir {build_dir} " in line and "choose another --build-dir" in line
    assert (tmp_path / "f").read_text() == "not a directory\n" and sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_every_build_dir_is_checked_before_the_first_simulator_runs(emitted, tmp_path):
    require("icarus")
    require("verilator")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "verilator").write_text("")           # the second simulator's directory is a file
    line = one_line(cli(emitted["fxp_pe_a4_w4"], "--sim", "icarus", "--sim", "verilator", "--build-dir",
                        tmp_path / "out", cwd=tmp_path))
    assert f"--build-dir {tmp_path / 'out' / 'verilator'} is a file, not a directory" in line
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["verilator"]     # icarus never built


# ---------------------------------------------------------------------- options: caps and test names


def test_random_cycles_is_capped(emitted, tmp_path):
    require("icarus")
    assert runner.MAX_RANDOM_CYCLES == 2_000_000
    for bad in (0, 2_000_001, 99999999999, True, 2.5):
        with pytest.raises(InputError, match=r"random_cycles \(--random-cycles\) must be an integer from 1 to "
                                             r"2000000"):
            runner.run_bench(emitted["fxp_pe_a4_w4"], "icarus", tmp_path / "build", random_cycles=bad)
    line = one_line(cli(emitted["fxp_pe_a4_w4"], "--sim", "icarus", "--random-cycles", "99999999999", cwd=tmp_path))
    assert line == "hwq-sim: error: argument --random-cycles: expected an integer from 1 to 2000000, not 99999999999\n"
    # the cap itself is accepted (the missing manifest is the next error)
    line = one_line(cli(tmp_path / "nope.json", "--sim", "icarus", "--random-cycles", "2000000", cwd=tmp_path))
    assert "nope.json not found" in line
    assert not list(tmp_path.iterdir())


def test_test_names_are_checked_before_the_build(emitted, tmp_path):
    require("icarus")
    for bad in ("nosuch", ["exhaustive", "nosuch"], [], ""):
        with pytest.raises(InputError, match=r"^testcase \(--test\) "):
            runner.run_bench(emitted["fxp_pe_a4_w4"], "icarus", tmp_path / "build", testcase=bad)
    line = one_line(cli(emitted["fxp_pe_a4_w4"], "--sim", "icarus", "--test", "nosuch", cwd=tmp_path))
    assert "argument --test: invalid choice: 'nosuch'" in line
    assert not list(tmp_path.iterdir())


def test_the_test_names_are_the_benchs_tests():
    tree = ast.parse((ROOT / "sim" / "pe_bench.py").read_text())
    defined = tuple(node.name for node in tree.body if isinstance(node, ast.AsyncFunctionDef)
                    and any(ast.unparse(d) == "cocotb.test()" for d in node.decorator_list))
    assert defined == BENCH_TESTS + (runner.WORKLOAD_TEST,)
    assert runner.TESTS == BENCH_TESTS


# ---------------------------------------------------------------------- SIGTERM


def _descendants(pid):
    """Every process below ``pid`` (Linux /proc)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            out += [child, *_descendants(child)]
    return out


def _command(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return ""


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_sigterm_stops_the_simulator(emitted, tmp_path):
    require("icarus")
    proc = subprocess.Popen([sys.executable, "-m", "hwq.sim.runner", str(emitted["fxp_pe_a4_w4"]), "--sim", "icarus",
                             "--build-dir", str(tmp_path / "build"), "--test", "random_sums",
                             "--random-cycles", "2000000"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        sims = []
        while not sims and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            sims = [p for p in _descendants(proc.pid) if os.path.basename(_command(p)) == "vvp"]
        assert sims, "the simulator (vvp) never started"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.endswith("hwq-sim: terminated\n"), err
    deadline = time.monotonic() + 10
    while any(map(_alive, sims)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_alive, sims)), f"simulator {sims} still running after hwq-sim ended"


# ---------------------------------------------------------------------- the stream, in chunks


class FakePE:
    """The PE contract in Python (registered sum, ``latency - 1`` more stages), as handles that a
    :class:`hwq.sim.pe_bench.Bench` drives; ``bug_at`` adds 1 to ``acc`` from that clock cycle on."""

    def __init__(self, table, latency, width, bug_at=None):
        self.table, self.width, self.bug_at = table, width, bug_at
        self.ports = {k: SimpleNamespace(value=0) for k in ("clk", "rst", "valid", "clear", "a", "w")}
        self.sum = 0
        self.shown = [0] * latency              # shown[-1]: sum after this cycle, shown[0]: acc
        self.cycles = 0
        outer = self

        class Acc:
            @property
            def value(self):
                v = outer.shown[0] + (1 if outer.bug_at is not None and outer.cycles > outer.bug_at else 0)
                return format(v & ((1 << outer.width) - 1), f"0{outer.width}b")
        self.ports["acc"] = Acc()

    def step(self):
        p = {k: v.value for k, v in self.ports.items() if k != "acc"}
        if p["rst"]:
            self.sum = 0
        else:
            self.sum = (0 if p["clear"] else self.sum) + (self.table[p["a"]][p["w"]] if p["valid"] else 0)
        self.shown = self.shown[1:] + [self.sum]
        self.cycles += 1

    def __await__(self):
        self.step()
        return
        yield                                   # a generator: awaiting it takes one clock cycle


def _bench(pe_bench, dut, latency):
    from hwq.sim.reference import Mode, ProductModel
    values = ["0", "1", "-2", "-1"]             # 2-bit two's complement
    b = pe_bench.Bench.__new__(pe_bench.Bench)
    b.s = SimpleNamespace(seed=1, max_terms=1000, widths={"a": 2, "w": 2, "acc": dut.width}, path="fake.json")
    b.dut, b.test, b.latency, b.cycle = None, "chunks", latency, 0
    b.handle = dut.ports
    b.acc_width, b.acc_mask = dut.width, (1 << dut.width) - 1
    b.extra, b.last, b.fall = {}, {}, dut
    b.mode, b.model = Mode(None), ProductModel(values, values, 0)
    b.sum, b.pending = 0, [0] * (latency - 1)
    return b


def _run(coroutine):
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the stream waited on something other than the clock")


@pytest.mark.parametrize("latency", [1, 2, 4])
def test_streams_are_checked_across_chunks(latency, monkeypatch):
    import random
    from hwq.sim import pe_bench
    monkeypatch.setattr(pe_bench, "CHUNK", 5)
    monkeypatch.setattr(pe_bench, "get_sim_time", lambda unit: 0)
    lengths = []                                 # cycles of each expected-sums computation

    def expected_sums(product, a, *args, **kwargs):
        lengths.append(len(a))
        return ref_sums(product, a, *args, **kwargs)
    ref_sums = pe_bench.expected_sums
    monkeypatch.setattr(pe_bench, "expected_sums", expected_sums)
    table = [[x * y for y in (0, 1, -2, -1)] for x in (0, 1, -2, -1)]
    rng = random.Random(latency)
    streams = []
    for n in (0, 1, 4, 5, 6, 11, 23, 3, 10):
        streams.append(([rng.randrange(4) for _ in range(n)], [rng.randrange(4) for _ in range(n)],
                        [int(rng.random() < 0.8) for _ in range(n)], [int(rng.random() < 0.2) for _ in range(n)]))
    # a correct PE passes every stream, drained or not, and the sums carry over between streams
    dut = FakePE(table, latency, 12)
    b = _bench(pe_bench, dut, latency)
    for k, (a, w, valid, clear) in enumerate(streams):
        total = _run(b.stream("chunks", a, w, valid, clear, drain=k % 2 == 1))
        assert total == dut.sum and b.sum == dut.sum and b.cycle == dut.cycles
    # never more than a chunk of expected sums at a time: a long stream's memory stays bounded
    assert max(lengths) == 5 and sum(lengths) == sum(len(a) for a, *_ in streams)
    # a PE whose acc goes wrong in cycle 17 fails there, whichever chunk it falls in
    dut = FakePE(table, latency, 12, bug_at=17)
    b = _bench(pe_bench, dut, latency)
    with pytest.raises(AssertionError, match=r"^chunks \[mode default\] FAILED at cycle 18 "):
        for k, (a, w, valid, clear) in enumerate(streams):
            _run(b.stream("chunks", a, w, valid, clear, drain=k % 2 == 1))
