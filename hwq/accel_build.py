"""``python -m hwq.build --model DIR``: an exported model's accelerator, checked, emitted, verified
and synthesized.

Wires :mod:`hwq.integer` (the export), :mod:`hwq.accel` (schedule, hardware, fit, manifest),
:mod:`hwq.sim` (the cocotb bench) and :mod:`hwq.synth` (yosys and nextpnr). Steps, each timed:

1. **check**, before anything is written: the export (every checksum and shape), the array, the
   target, the output directory, the tools; the schedule (an op the accelerator cannot run is
   refused naming the op and the parameter); the hardware's construction (:func:`hardware`);
   the memories against the target's (:func:`hwq.accel.fit.check_fit`, naming each memory and
   the shortfall). With ``array="auto"`` every array of :data:`AUTO_ARRAYS` whose memories fit
   is a candidate.
2. **emit**: ``hwq_accel.v``, its manifest ``hwq_accel.json`` and, with a weight store,
   ``hwq_accel_preload.hex`` (:mod:`hwq.accel.emit`).
3. **synthesize** (unless ``synth=False`` or the target is ``sim``): yosys and nextpnr for the
   part; logic cells, EBR, SPRAM, DSP, Fmax. With ``auto``, a candidate that does not fit (logic
   cells, SB_MAC16) gives way to the next one, emitted and synthesized in turn.
4. **verify** (unless ``verify=0``): the chosen design on the cocotb bench, ``verify`` inputs
   (real samples from ``images``, else seeded random codes), output codes bit-exact with the
   integer model, and the cycles per inference measured.
5. **report**: ``report.json`` and ``report.md`` (:mod:`hwq.accel.report`).

Output is staged and replaces ``out`` as a whole only when every step succeeded
(:func:`hwq.fileio.staged_output`).
"""

import gc
import hashlib
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from .errors import InputError
from .fileio import check_output_dir, staged_output

__all__ = ["build_accelerator", "load_images", "TARGETS", "AUTO_ARRAYS", "ARRAY_MAPPINGS"]

#: what ``--target`` may name for an accelerator
TARGETS = ("up5k", "hx8k", "sim")
#: the arrays ``array="auto"`` tries, in order: one row (a single read port, so the activation
#: banks fit the UP5K's SPRAMs), 16, 8, 4 and 2 output channels (the digits CNN's channel counts
#: are multiples of 8: no idle column at 8 or fewer)
AUTO_ARRAYS = ("1x16", "1x8", "1x4", "1x2")
#: where the PE array's products go (``mapping``): SB_MAC16 blocks where the part has them and the
#: operands fit (``"auto"``), always LUT fabric, or SB_MAC16 blocks or an error
ARRAY_MAPPINGS = ("auto", "fabric", "dsp")
MODULE = "hwq_accel"
#: SB_MAC16 left to yosys's inference on a part with DSPs, outside the PE array: the shared
#: requantizer's 32 x 16 product takes 2, the vector unit's multiplier 1 (measured with
#: benchmarks/accelerator_synth.py --blocks)
DSP_RESERVED = 3


def hardware(model, array, target, mapping="auto", pipeline=0):
    """The schedule and the :class:`~hwq.accel.top.Accelerator` for ``target`` (a part name).

    - **Activations**: on a part with SPRAM, in single-port banks (``schedule(..., banks=n)``,
      the fewest banks the model schedules in) when ``n x R`` SPRAM blocks are available;
      else one memory with ``R`` read ports (EBR).
    - **Weights**: in block RAM, initialised in the bitstream, when they fit beside the other
      initialised memories; else, on a part with an SPRAM left, as many as fit stay there
      (``weight_capacity``, :func:`~hwq.accel.fit.ebr_capacity` of the EBR the rest leaves) and
      the other layers' weights go to the weight store in SPRAM, filled over the input stream
      after reset (:mod:`hwq.accel.loader`).
    - **Products**: on a part with SB_MAC16, two 8 x 8 products per block (``mapping="dsp"``),
      at most ``dsp - DSP_RESERVED`` blocks, when every decoded operand fits 8 bits; else fabric.
      AUSN weights always stay in fabric: their code fields drive shift-add cells, no decoder
      and no multiplier (the format's point, :class:`~hwq.accel.array.PEArray`). That is
      ``mapping="auto"``; ``"fabric"`` keeps every product in LUTs, ``"dsp"`` puts them in
      SB_MAC16 blocks or refuses the model (:data:`ARRAY_MAPPINGS`). ``pipeline``: the PE
      array's product register stages (:class:`~hwq.accel.array.PEArray`).

    Returns
    -------
    (Schedule, Accelerator)

    Raises
    ------
    InputError
        What :func:`~hwq.accel.schedule.schedule` and :class:`~hwq.accel.top.Accelerator` refuse;
        ``mapping`` not one of :data:`ARRAY_MAPPINGS`; ``"dsp"`` for a part without SB_MAC16 or
        AUSN weights.
    """
    if not isinstance(mapping, str) or mapping not in ARRAY_MAPPINGS:
        raise InputError(f"mapping must be one of {', '.join(ARRAY_MAPPINGS)}, not {mapping!r}")
    from .accel.fit import PARTS, ebr_blocks, ebr_capacity, memories, memory_budget
    from .accel.schedule import schedule
    from .accel.top import Accelerator
    from amaranth.hdl import UnusedElaboratable
    part = PARTS[target]
    options = {}
    if target != "sim" and part.spram:
        for banks in range(2, int(part.spram // array.rows) + 1):
            try:
                schedule(model, model.input_shape, array, banks=banks)
                options["banks"] = banks
                break
            except InputError:
                continue
    sched = schedule(model, model.input_shape, array, **options)
    ausn = all(step.w_format.name == "ausn" for step in sched.steps if step.kind == "conv")
    dsp = target != "sim" and part.dsp > DSP_RESERVED and not ausn and mapping != "fabric"
    if mapping == "dsp" and not dsp:
        why = ("AUSN weights drive shift-add cells, with no multiplier" if ausn
               else f"the {target} target has no SB_MAC16 for the PE array")
        raise InputError(f"mapping 'dsp': {why}; use 'auto' or 'fabric'")

    def build(sched):
        if dsp:
            # a refused DSP design's half-built blocks are never elaborated: collect them here,
            # without amaranth's UnusedElaboratable warning for each
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UnusedElaboratable)
                try:
                    return Accelerator(sched, mapping="dsp", max_dsp=int(part.dsp) - DSP_RESERVED,
                                       pipeline=pipeline)
                except InputError:
                    if mapping == "dsp":
                        raise
                    # operands wider than 8 bits: fabric
                gc.collect()
        return Accelerator(sched, pipeline=pipeline)

    acc = build(sched)
    if target != "sim" and acc.conv is not None and part.spram > options.get("banks", 0):
        _, used = memory_budget(memories(acc), part)
        width = sched.array.cols * sched.weight_bits
        if used["ebr"] > part.ebr:                        # weights to the store, as many as needed
            others = used["ebr"] - ebr_blocks(width, len(sched.weights))
            capacity = ebr_capacity(width, max(0, int(part.ebr) - others))
            if capacity:
                sched = schedule(model, model.input_shape, array, weight_capacity=capacity, **options)
                acc = build(sched)
    return sched, acc


def load_images(path, model):
    """Input codes of the samples in ``path`` (a ``.npy`` of float samples, ``(N, *input_shape)``).

    Raises
    ------
    InputError
        If the file cannot be read, or its samples do not have the model's input shape.
    """
    path = Path(path)
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"--images {path}: cannot read it as a .npy array ({exc})") from None
    shape = tuple(model.input_shape)
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape or x.shape[0] < 1:
        raise InputError(f"--images {path}: holds an array of shape {x.shape}; expected (N, "
                         f"{', '.join(map(str, shape))}) float samples for the model's input")
    if not np.issubdtype(x.dtype, np.floating) or not np.isfinite(x).all():
        raise InputError(f"--images {path}: samples must be finite floats (dtype {x.dtype})")
    return model.quantize_input(x)


def post_synthesis(model, codes, synth_dir, *, array, sched, acc, simulator, synthesis, macs):
    """Run ``codes`` on the accelerator's synthesized netlist, checked bit-exact, and estimate its
    power from their switching activity.

    Parameters
    ----------
    model : hwq.integer.IntegerModel
    codes : numpy.ndarray
        ``(N,) + input shape`` input codes, N >= 1.
    synth_dir : pathlib.Path
        The synthesis build directory: its one job's ``yosys/netlist.v`` is simulated.
    array, sched, acc
        The array, schedule and :class:`~hwq.accel.top.Accelerator` the netlist was built from.
    simulator : str
        ``verilator`` records the activity (SAIF); ``icarus`` only checks the netlist.
    synthesis : dict
        :func:`hwq.synth.synthesize_design`'s result (logic cells, SB_MAC16 count, Fmax).
    macs : int
        Multiply-accumulates per inference.

    Returns
    -------
    dict
        :func:`accelerator_power` of the measured cycles, with ``netlist_verified_inputs``.

    Raises
    ------
    hwq.sim.runner.BenchFailed
        A code or cycle count of the netlist differs from the integer model.
    """
    import tempfile

    from .sim.accel_runner import run_accel_bench
    from .synth.yosys import NETLIST_VERILOG
    path = next(iter(sorted(Path(synth_dir).glob(f"*/yosys/{NETLIST_VERILOG}"))), None)
    if path is None:
        raise InputError(f"no {NETLIST_VERILOG} in {synth_dir}: synthesize again with --no-cache")
    with tempfile.TemporaryDirectory(prefix="hwq-accel-netlist-") as sim_dir:
        saif = Path(sim_dir) / "activity.saif" if simulator == "verilator" else None
        run = run_accel_bench(model, codes, input_shape=model.input_shape, array=array, simulator=simulator,
                              build_dir=Path(sim_dir) / "build", dump=False, banks=sched.banks,
                              mapping=acc.conv.mapping if acc.conv else "fabric",
                              max_dsp=acc.conv.max_dsp if acc.conv else None, weight_capacity=sched.weight_capacity,
                              pipeline=acc.conv.pipeline if acc.conv else 0,
                              netlist=path, saif=saif)
        activity = None
        if saif is not None:
            from .synth.activity import cell_activity, read_saif
            parsed = read_saif(saif)                            # parsed once, for its duration and its nets
            cycles = round(parsed.duration * parsed.timescale_s / (run["clock_ns"] * 1e-9))
            activity = cell_activity(parsed, path, top=MODULE, cycles=cycles)
    power = accelerator_power(activity, synthesis, cycles=int(run["cycles"][0]), macs=macs)
    power["netlist_verified_inputs"] = len(codes)
    return power


def accelerator_power(activity, synthesis, *, cycles, macs):
    """The accelerator's power and energy ESTIMATES: activity-based and first-order.

    Parameters
    ----------
    activity : hwq.synth.activity.Activity or None
        Switching activity of the netlist over whole inferences (None: first-order only).
    synthesis : dict
        :func:`hwq.synth.synthesize_design`'s result: ``lcs``, ``dsp``, ``fmax_mhz``.
    cycles, macs : int
        Clock cycles and MACs per inference.

    Returns
    -------
    dict
        ``activity`` (:func:`hwq.synth.power.estimate_activity_power` at 12 MHz, the
        calibration's clock, and at Fmax; or None), ``first_order``
        (:func:`hwq.synth.power.estimate_power`, activity factor 1: the fallback), each with
        ``energy`` (:func:`hwq.synth.power.inference_energy`: per inference and per MAC), and
        ``summary`` (one line, labelled as an estimate).
    """
    from .synth.power import estimate_activity_power, estimate_power, inference_energy
    fmax = synthesis.get("fmax_mhz")
    freqs = [12.0] + ([round(fmax, 2)] if fmax else [])
    first = estimate_power(synthesis["lcs"], synthesis["dsp"], freqs)
    first["energy"] = inference_energy(first, cycles, macs)
    result = {"activity": None, "first_order": first}
    if activity is not None:
        est = estimate_activity_power(activity, freqs)
        est["energy"] = inference_energy(est, cycles, macs)
        result["activity"] = est
    best = (result["activity"] or first)["energy"][-1]
    kind = "activity-based" if result["activity"] else "first-order"
    spread = ""
    if "energy_per_inference_uj_low" in best:
        spread = f" ({best['energy_per_inference_uj_low']:.2f} to {best['energy_per_inference_uj_high']:.2f})"
    result["summary"] = (f"ESTIMATE ({kind}): {best['power_mw']:.2f} mW at {best['freq_mhz']:g} MHz, "
                         f"{best['energy_per_inference_uj']:.2f} uJ{spread} per inference, "
                         f"{best['energy_per_mac_pj']:.1f} pJ per MAC")
    return result


def _random_codes(model, count, seed):
    n_codes = len(model.tensors[model.input].format.int_values)
    return np.random.default_rng(seed).integers(0, n_codes, size=(count,) + tuple(model.input_shape))


def build_accelerator(model_dir, *, array="auto", target="up5k", out="accel_out", synth=True, verify=2,
                      images=None, simulator="verilator", seed=0, cache=True, quiet=False, log=print, netlist=0,
                      mapping="auto", pipeline=0, pnr_seed=None):
    """Build the accelerator of the export in ``model_dir`` into ``out`` (module docstring).

    Parameters
    ----------
    model_dir : str or Path
        An export written by :func:`hwq.integer.export` (version 3).
    array : str or Array
        PE array, ``"RxC"`` (rows: output positions, columns: output channels), or ``"auto"``
        (default): the first of :data:`AUTO_ARRAYS` that fits the target, by its memories and,
        when synthesizing, by synthesis (each one tried is in the report's ``array_search``);
        ``1x16`` for ``sim``.
    target : str
        ``up5k``, ``hx8k`` or ``sim`` (no fit check, no synthesis).
    out : str or Path
        Output directory, replaced as a whole on success.
    synth : bool
        Synthesize (ignored for ``sim``).
    verify : int
        Inputs to run on the cocotb bench (0: none).
    images : str or Path or None
        ``.npy`` of real input samples to verify on; else seeded random codes.
    simulator : str
        ``verilator`` or ``icarus``.
    netlist : int
        Inputs to run on the synthesized netlist (post-synthesis simulation, 0: none): checked
        bit-exact like ``verify``, and on Verilator their switching activity (SAIF) gives the
        activity-based power and energy estimate (:func:`accelerator_power`). Needs synthesis.
    mapping : str
        The PE array's products: ``"auto"`` (default), ``"fabric"`` or ``"dsp"``
        (:func:`hardware`, :data:`ARRAY_MAPPINGS`).
    pipeline : int
        The PE array's product register stages, 0 (default) to
        :data:`hwq.accel.array.MAX_PIPELINE` (:class:`~hwq.accel.array.PEArray`).
    pnr_seed : int or None
        nextpnr's placer seed (default: :data:`hwq.synth.flow.DEFAULT_SEED`); Fmax varies with it
        by a few per cent.

    Returns
    -------
    dict
        ``manifest``, ``verification`` (or None), ``synthesis`` (or None), ``report``, ``timing``.

    Raises
    ------
    InputError
        Before anything is written, for every bad input (naming it), an op the accelerator
        cannot run, or memories that do not fit the target (with ``auto``: with no array).
    """
    from .accel.emit import accelerator_manifest, write_accelerator
    from .accel.fit import check_fit
    from .accel.report import accelerator_report, write_report
    from .accel.schedule import Array
    from .integer import load
    from .integer.export import MANIFEST

    if quiet:
        log = lambda *args, **kwargs: None
    timing = {}
    start = time.perf_counter()
    if target not in TARGETS:
        raise InputError(f"--target {target!r}: choose one of {', '.join(TARGETS)}")
    if isinstance(verify, bool) or not isinstance(verify, int) or verify < 0:
        raise InputError(f"--verify must be a non-negative number of inputs, not {verify!r}")
    if isinstance(netlist, bool) or not isinstance(netlist, int) or netlist < 0:
        raise InputError(f"--netlist must be a non-negative number of inputs, not {netlist!r}")
    if not isinstance(mapping, str) or mapping not in ARRAY_MAPPINGS:
        raise InputError(f"--mapping {mapping!r}: choose one of {', '.join(ARRAY_MAPPINGS)}")
    from .accel.array import MAX_PIPELINE
    if isinstance(pipeline, bool) or not isinstance(pipeline, int) or not 0 <= pipeline <= MAX_PIPELINE:
        raise InputError(f"--pipeline {pipeline!r}: the PE array takes 0 to {MAX_PIPELINE} product register stages")
    if pnr_seed is not None and (isinstance(pnr_seed, bool) or not isinstance(pnr_seed, int) or pnr_seed < 0):
        raise InputError(f"pnr_seed must be a non-negative integer (nextpnr --seed), not {pnr_seed!r}")
    if netlist and not (synth and target != "sim"):
        raise InputError("--netlist simulates the synthesized netlist: it needs synthesis (no --no-synth, a target "
                         "other than sim)")
    auto = isinstance(array, str) and array.strip().lower() == "auto"
    if auto:
        arrays = [Array.parse(a) for a in (AUTO_ARRAYS if target != "sim" else AUTO_ARRAYS[:1])]
    else:
        arrays = [array if isinstance(array, Array) else Array.parse(array)]
    from .accel.array import MAX_COLS, MAX_ROWS
    for candidate in arrays:
        if candidate.rows > MAX_ROWS or candidate.cols > MAX_COLS:
            raise InputError(f"--array {candidate}: the PE array takes 1 to {MAX_ROWS} rows and 1 to {MAX_COLS} "
                             "columns")
    model_dir = Path(model_dir)
    model = load(model_dir)
    export_sha = hashlib.sha256((model_dir / MANIFEST).read_bytes()).hexdigest()
    out = check_output_dir(out)
    codes = None
    if verify or netlist:
        from .sim.runner import check_simulator
        check_simulator(simulator)
        count = max(verify, netlist)
        codes = load_images(images, model)[:count] if images is not None else _random_codes(model, count, seed)
    elif images is not None:
        raise InputError("--images needs --verify N or --netlist N (N > 0)")
    do_synth = synth and target != "sim"
    if do_synth:
        from .synth import SYNTH_TOOLS
        from .tools import find_tools
        find_tools(*SYNTH_TOOLS)
    if out.resolve() == model_dir.resolve() or out.resolve() in model_dir.resolve().parents:
        raise InputError(f"--out {out}: replacing it would delete the export --model {model_dir}; choose another "
                         "directory")
    candidates, refused = [], []
    for candidate in arrays:
        try:
            sched, acc = hardware(model, candidate, target, mapping, pipeline)
            memories, _ = check_fit(acc, target)
        except InputError as exc:
            if not auto:
                raise
            refused.append((str(candidate), str(exc)))
            continue
        candidates.append((candidate, sched, acc, memories))
        if not do_synth:                                     # the first that fits is the one built
            break
    if not candidates:
        reasons = {reason for _, reason in refused}
        if len(reasons) == 1:                                # the model's, whatever the array
            raise InputError(reasons.pop())
        raise InputError(f"--array auto: no array fits the {target}: "
                         + "; ".join(f"{name}: {reason}" for name, reason in refused))
    search = [{"array": name, "fits": False, "reason": reason} for name, reason in refused]
    timing["check_s"] = time.perf_counter() - start
    log(f"checked {model_dir} in {timing['check_s']:.1f} s: {len(candidates[0][1].steps)} steps, "
        f"{candidates[0][1].macs} MACs; array {' or '.join(str(c[0]) for c in candidates)}")

    verification = synthesis = power = None
    with staged_output(out) as stage:
        from .synth import synthesize_design
        from .synth.cache import as_cache
        timing["emit_s"] = timing["synth_s"] = 0.0
        for index, (array, sched, acc, memories) in enumerate(candidates):
            manifest = accelerator_manifest(acc, module=MODULE, target=target, memories=memories,
                                            export_sha256=export_sha)
            t = time.perf_counter()
            for stale in stage.glob(f"{MODULE}_preload.hex"):       # a previous candidate's
                stale.unlink()
            v_path, _ = write_accelerator(acc, stage, manifest)
            timing["emit_s"] += time.perf_counter() - t
            log(f"emitted {v_path.name} ({array}: {acc.expected_cycles} cycles per inference) in "
                f"{time.perf_counter() - t:.1f} s")
            if not do_synth:
                search.append({"array": str(array), "fits": None, "reason": "memories fit; not synthesized"})
                break
            t = time.perf_counter()
            synthesis = synthesize_design(v_path, MODULE, stage / "synth", target=target, cache=as_cache(cache),
                                          **({} if pnr_seed is None else {"seed": pnr_seed}))
            timing["synth_s"] += time.perf_counter() - t
            fits = synthesis.get("fits", True)
            search.append({"array": str(array), "fits": bool(fits), "lcs": synthesis.get("lcs"),
                           "dsp": synthesis.get("dsp"), "ebr": synthesis.get("ebr"),
                           "reason": "; ".join(synthesis.get("notes") or []) if not fits else ""})
            log(f"synthesized {array} in {time.perf_counter() - t:.1f} s: "
                + ("fits" if fits else "does not fit: " + search[-1]["reason"]))
            if fits or not auto or index == len(candidates) - 1:
                break
        if verify:
            import tempfile

            from .sim.accel_runner import run_accel_bench
            t = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="hwq-accel-sim-") as sim_dir:
                verification = run_accel_bench(model, codes[:verify], input_shape=model.input_shape, array=array,
                                               simulator=simulator, build_dir=Path(sim_dir) / "build", dump=False,
                                               banks=sched.banks, mapping=acc.conv.mapping if acc.conv else "fabric",
                                               max_dsp=acc.conv.max_dsp if acc.conv else None,
                                               pipeline=acc.conv.pipeline if acc.conv else 0,
                                               weight_capacity=sched.weight_capacity)
            timing["verify_s"] = time.perf_counter() - t
            log(f"verified {verify} input(s) on {simulator} in {timing['verify_s']:.1f} s: bit-exact, "
                f"{verification['cycles'][0]} cycles per inference")
        if netlist and synthesis.get("fits", True):
            t = time.perf_counter()
            power = post_synthesis(model, codes[:netlist], stage / "synth", array=array, sched=sched, acc=acc,
                                   simulator=simulator, synthesis=synthesis, macs=int(manifest["latency"]["macs"]))
            timing["netlist_s"] = time.perf_counter() - t
            log(f"netlist: {netlist} input(s) bit-exact on {simulator} in {timing['netlist_s']:.1f} s"
                + (f"; {power['summary']}" if power.get("summary") else ""))
        report = accelerator_report(manifest, synthesis=synthesis, verification=verification, power=power)
        if auto:
            report["array_search"] = search
        write_report(report, stage)
        log(report["summary"])
    timing["total_s"] = time.perf_counter() - start
    log(f"wrote {out}/ in {timing['total_s']:.1f} s")
    return {"manifest": manifest, "verification": verification, "synthesis": synthesis, "report": report,
            "timing": timing}
