"""One synthesis job (harness, yosys, nextpnr, parse, power) and a parallel batch of them.

The tool chain (:func:`run_chain`), the job directory (:func:`fresh_job_dir`) and the cache
look-up and store (:func:`cached_result`, :func:`store_result`) are shared with the whole-design
flow, :func:`hwq.synth.design.synthesize_design`.

Every job runs in its own directory ``<build_dir>/<module>-<target>[-dsp]-f<MHz>-s<seed>/`` with
``yosys/`` (harness and PE Verilog, ``yosys.log``, ``stat.json``, ``netlist.json``) and
``nextpnr/`` (``nextpnr.log``, ``report.json``). Everything is checked (tools on PATH, targets,
manifests, Verilog files) before the first tool starts.

Result dictionary of one job (all counts are ints, frequencies MHz):

``module``, ``format``, ``a_bits``, ``w_bits``, ``acc_bits``
    from the manifest;
``target``, ``part``, ``use_dsp``, ``freq_target_mhz``, ``seed``
    the job;
``lut4``, ``carry``, ``ff``, ``dsp``, ``ram``
    the PE's own cells (SB_LUT4, SB_CARRY, SB_DFF*, SB_MAC16, SB_RAM40_4K*);
``harness``, ``total``
    the same five counts for the harness alone and for the whole synthesized design;
``lcs``
    logic cells used after placement (whole design);
``utilization``
    ``{"lc"|"io"|"dsp"|"ram": {"used", "available"}}`` (plus ``"spram"`` on the UP5K) from nextpnr;
``fmax_mhz``
    nextpnr's achieved Fmax of ``clk`` (not a real figure when ``dsp > 0``, see ``notes``);
``fmax_dsp_path_mhz``
    ``None``, or with a combinational SB_MAC16 an upper bound of the real Fmax from the path
    through it (:mod:`hwq.synth.nextpnr`);
``power``, ``power_mw_12mhz``, ``power_mw_fmax``
    :func:`hwq.synth.power.estimate_power` at 12 MHz and at the achieved Fmax (the lower of the
    two Fmax figures), ``None`` for targets the model is not calibrated for;
``notes``
    list of one-line caveats;
``fits``, ``overfull``
    only in the result of a design too big for the part (nextpnr stopped with
    :class:`~hwq.synth.nextpnr.DoesNotFit`): ``fits`` is ``False`` and ``overfull``
    ``{key: [used, available]}`` names every resource over capacity. Such a result is a
    measured outcome, not an error: the batch goes on, the cache stores it, and it has the
    PE's cells from yosys, ``lcs`` and ``utilization`` from nextpnr's log, no Fmax and no power
    (``None``), and one note, :func:`hwq.synth.report.does_not_fit_text` (e.g.
    ``does not fit: 7330 of 5280 logic cells``). A result that fits has neither key;
``timing``
    ``{"yosys_s", "nextpnr_s", "wall_s"}`` wall-clock seconds (not deterministic);
``cached``
    ``True`` when the result came from the synthesis cache (no tool ran; ``yosys_s`` and
    ``nextpnr_s`` are 0 and ``wall_s`` is the look-up), else ``False``.

Synthesis cache (:mod:`hwq.synth.cache`): with ``cache=`` given to :func:`synthesize_all`, a job
whose inputs (Verilog, manifest, harness, options, flow, hwq/synth source, tool versions) were
synthesized before is answered from the cache without running yosys or nextpnr; its directory
then holds ``CACHED``, a note naming the entry, and the netlist the run wrote
(``yosys/netlist.v``, kept beside the entry), but no tool logs. The figures equal a tool run's (the flow is
deterministic). ``timing`` and ``cached`` describe the run, not the design: they stay out of
cache entries and of ``report.json`` / ``report.md``.
"""

import concurrent.futures
import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path

from ..errors import InputError
from ..fileio import check_writable_dir
from ..manifest import read_manifest, verilog_path
from ..tools import find_tools, tool_versions
from .cache import CACHE_FORMAT, as_cache, cache_key, source_digest
from .harness import harness_name, harness_verilog
from .nextpnr import OPTIONAL_UTILIZATION, UTILIZATION, DoesNotFit, nextpnr_args, parse_report, run_nextpnr
from .power import UNCERTAINTY, estimate_power
from .report import does_not_fit_text
from .targets import get_target
from .yosys import NETLIST, NETLIST_VERILOG, parse_stat, run_yosys, yosys_script

__all__ = ["SYNTH_TOOLS", "DEFAULT_FREQ_MHZ", "DEFAULT_SEED", "POWER_FREQ_MHZ", "RUN_KEYS", "SynthJob",
           "SynthResults", "synthesize", "synthesize_all", "run_chain", "job_dirname", "fresh_job_dir", "cached_result",
           "store_result", "usable_cpus"]

#: the tools a synthesis job runs (keys of :data:`hwq.tools.TOOLS`)
SYNTH_TOOLS = ("yosys", "nextpnr-ice40")

#: nextpnr ``--freq`` target unless a job says otherwise
DEFAULT_FREQ_MHZ = 48.0

#: nextpnr ``--seed`` unless a job says otherwise
DEFAULT_SEED = 1

#: the fixed frequency every power estimate is also given at (the calibration's)
POWER_FREQ_MHZ = 12.0

#: result keys that describe one run, not the design: left out of cache entries and reports
RUN_KEYS = ("timing", "cached")

#: the design keys every result has (a cache entry's result must hold them all; a result of a
#: design too big for the part has ``fits`` and ``overfull`` after them)
DESIGN_KEYS = ("module", "format", "a_bits", "w_bits", "acc_bits", "target", "part", "use_dsp",
               "freq_target_mhz", "seed", "lut4", "carry", "ff", "dsp", "ram", "harness", "total",
               "submodules", "lcs", "utilization", "fmax_mhz", "fmax_dsp_path_mhz", "power",
               "power_mw_12mhz", "power_mw_fmax", "notes")


@dataclasses.dataclass(frozen=True)
class SynthJob:
    """One synthesis job: a PE manifest on one target.

    Parameters
    ----------
    manifest : str or pathlib.Path
        ``<module>.json`` written beside ``<module>.v``.
    target : str
        ``"up5k"`` or ``"hx8k"`` (:data:`hwq.synth.targets.TARGETS`).
    dsp : bool
        Map multipliers to SB_MAC16 (``synth_ice40 -dsp``; UP5K only).
    freq_mhz : float
        nextpnr timing target.
    seed : int
        nextpnr placer seed.
    activity : float
        Toggle-rate factor of the power estimate.
    """

    manifest: Path
    target: str = "up5k"
    dsp: bool = False
    freq_mhz: float = DEFAULT_FREQ_MHZ
    seed: int = DEFAULT_SEED
    activity: float = 1.0


class SynthResults(list):
    """The result dicts of :func:`synthesize_all`, in job order, with the batch's wall time.

    Attributes
    ----------
    wall_s : float
        Seconds from the first tool start to the last tool end, for the whole batch.
    """

    wall_s = 0.0


def _check_job(job):
    """Check one job before any work; return the plan ``_run_job`` needs."""
    if not isinstance(job, SynthJob):
        raise InputError(f"synthesis job must be a SynthJob, dict or manifest path, not {job!r}")
    target = get_target(job.target)
    if job.dsp and not target.has_dsp:
        raise InputError(f"target {target.name} ({target.part}) has no SB_MAC16 DSP; drop dsp or use target up5k")
    freq = job.freq_mhz
    if isinstance(freq, bool) or not isinstance(freq, (int, float)) or not math.isfinite(freq) or freq <= 0:
        raise InputError(f"frequency target must be a positive number of MHz, got {freq!r}")
    if isinstance(job.seed, bool) or not isinstance(job.seed, int) or not 0 <= job.seed < 2**31:
        raise InputError(f"nextpnr seed must be an int in [0, 2**31), got {job.seed!r}")
    act = job.activity
    if isinstance(act, bool) or not isinstance(act, (int, float)) or not math.isfinite(act) or act < 0:
        raise InputError(f"activity factor must be a finite number >= 0, got {act!r}")
    manifest = read_manifest(job.manifest)      # schema, Verilog beside it, its sha256
    verilog = verilog_path(manifest, job.manifest)
    harness = harness_verilog(manifest)  # also checks the module name is a Verilog identifier
    dirname = job_dirname(manifest["module"], target.name, job.dsp, freq, job.seed)
    return {"job": job, "target": target, "manifest": manifest, "verilog": verilog, "harness": harness,
            "dirname": dirname}


def _as_job(spec):
    if isinstance(spec, SynthJob):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        return SynthJob(Path(spec))
    if isinstance(spec, dict):
        try:
            return SynthJob(**spec)
        except TypeError as exc:
            raise InputError(f"bad synthesis job {spec!r}: {exc}") from None
    return spec


def _port_width(manifest, key):
    entry = manifest["ports"].get(key)
    return entry.get("width") if isinstance(entry, dict) else None


def _notes(pe, fmax, dsp_path_ns, job, target, power):
    notes = []
    if pe["dsp"]:
        note = ("nextpnr's Fmax through SB_MAC16 is not a real figure: it models every MAC16 port as "
                "registered (docs/toolchain.md, 'SB_MAC16 Fmax')")
        if dsp_path_ns:
            note += (f"; the path through the DSP is at least {dsp_path_ns:.2f} ns plus the MAC16's own delay, "
                     f"so the real Fmax is below {1000 / dsp_path_ns:.1f} MHz")
        notes.append(note)
    elif job.dsp:
        notes.append("synth_ice40 -dsp mapped nothing to SB_MAC16 (no multiplier, or one below its minimum size)")
    if fmax is None:
        notes.append("nextpnr found no register-to-register path, so there is no Fmax")
    if power is None:
        notes.append(f"no power estimate: the model is calibrated on iCE40UP5K only, not {target.part}")
    else:
        notes.append(f"power is a first-order estimate (±{UNCERTAINTY:.0%}) from UP5K measurements at "
                     f"activity {job.activity:g}, core rail only (hwq.synth.power)")
    return notes


def run_chain(tools, sources, top, job_dir, target, *, dsp, spram=False, freq_mhz, seed):
    """yosys, then nextpnr, in ``job_dir/yosys`` and ``job_dir/nextpnr``: the tool chain every job runs.

    Parameters
    ----------
    tools : dict
        :func:`hwq.tools.find_tools` of :data:`SYNTH_TOOLS`.
    sources : list of str
        Verilog file names already in ``job_dir/yosys``.
    top : str
        The top module.
    job_dir : pathlib.Path
    target : hwq.synth.targets.Target
    dsp, spram : bool
        :func:`hwq.synth.yosys.yosys_script`.
    freq_mhz : float
        nextpnr ``--freq``.
    seed : int
        nextpnr ``--seed``.

    Returns
    -------
    dict
        ``stat`` (yosys ``stat -json``), ``yosys_s``; then either ``timing``
        (:func:`hwq.synth.nextpnr.parse_report`) and ``nextpnr_s``, with ``does_not_fit`` None,
        or ``does_not_fit``, the :class:`~hwq.synth.nextpnr.DoesNotFit` nextpnr stopped with
        (``timing`` None).

    Raises
    ------
    ToolError
        If a tool fails for any other reason than a design too big for the part.
    """
    job_dir = Path(job_dir)
    synth = run_yosys(tools["yosys"], sources, top, job_dir / "yosys", device=target.yosys_device, dsp=dsp,
                      spram=spram)
    start = time.perf_counter()
    try:
        pnr = run_nextpnr(tools["nextpnr-ice40"], Path("..") / "yosys" / synth["netlist"].name, target,
                          job_dir / "nextpnr", freq_mhz=freq_mhz, seed=seed)
    except DoesNotFit as exc:
        return {"stat": synth["stat"], "yosys_s": synth["seconds"], "timing": None,
                "nextpnr_s": time.perf_counter() - start, "does_not_fit": exc}
    return {"stat": synth["stat"], "yosys_s": synth["seconds"], "timing": parse_report(pnr["report"]),
            "nextpnr_s": pnr["seconds"], "does_not_fit": None}


def job_dirname(module, target, dsp, freq_mhz, seed):
    """The directory of a PE's synthesis job below ``build_dir``:
    ``<module>-<target>[-dsp]-f<MHz>-s<seed>``."""
    return f"{module}-{target}{'-dsp' if dsp else ''}-f{float(freq_mhz):g}-s{seed}"


def fresh_job_dir(job_dir):
    """Empty ``job_dir`` and create ``job_dir/yosys`` (``nextpnr/`` is made by its run); return
    the yosys directory."""
    job_dir = Path(job_dir)
    shutil.rmtree(job_dir, ignore_errors=True)
    ydir = job_dir / "yosys"
    ydir.mkdir(parents=True)
    return ydir


def _log_utilization(does_not_fit):
    """``{key: {"used", "available"}}`` (keys as :func:`hwq.synth.nextpnr.parse_report`'s) from
    the utilisation lines of the log of a nextpnr run that stopped with ``does_not_fit``."""
    found = does_not_fit.utilization
    return {key: {"used": found[bel][0], "available": found[bel][1]}
            for bel, key in {**UTILIZATION, **OPTIONAL_UTILIZATION}.items() if bel in found}


def _overfull(util, does_not_fit):
    """``{key: [used, available]}`` of every resource over capacity; nextpnr's own cell names
    if it stopped on a cell type hwq does not report."""
    over = {key: [u["used"], u["available"]] for key, u in util.items() if u["used"] > u["available"]}
    return over or {bel: list(counts) for bel, counts in does_not_fit.overfull.items()}


def _result(plan, cells, util, chain, start, *, fmax=None, fmax_dsp=None, power=None, notes, overfull=None):
    """The result dict of a job (module docstring), fitting or, with ``overfull``, not."""
    job, target, manifest = plan["job"], plan["target"], plan["manifest"]
    fmt = manifest.get("format")
    result = {
        "module": manifest["module"],
        "format": fmt.get("name") if isinstance(fmt, dict) else None,
        "a_bits": _port_width(manifest, "a"),
        "w_bits": _port_width(manifest, "w"),
        "acc_bits": _port_width(manifest, "acc"),
        "target": target.name,
        "part": target.part,
        "use_dsp": bool(job.dsp),
        "freq_target_mhz": float(job.freq_mhz),
        "seed": job.seed,
        **cells["pe"],
        "harness": cells["harness"],
        "total": cells["total"],
        "submodules": cells["submodules"],
        "lcs": util.get("lc", {}).get("used"),
        "utilization": util,
        "fmax_mhz": round(fmax, 2) if fmax is not None else None,
        "fmax_dsp_path_mhz": fmax_dsp,
        "power": power,
        "power_mw_12mhz": power["points"][0]["power_mw"] if power else None,
        "power_mw_fmax": power["points"][1]["power_mw"] if power and len(power["points"]) > 1 else None,
        "notes": notes,
    }
    if overfull is not None:
        result.update(fits=False, overfull=overfull)
    result["timing"] = {"yosys_s": round(chain["yosys_s"], 2), "nextpnr_s": round(chain["nextpnr_s"], 2),
                        "wall_s": round(time.perf_counter() - start, 2)}
    return result


def _run_job(plan, build_dir, tools):
    """Run one checked job with the tools.

    Returns
    -------
    dict
        The result dictionary (module docstring). A design too big for the part is a result
        too, with ``fits`` False, not an exception: nextpnr's log stays in the job directory.

    Raises
    ------
    ToolError
        If a tool fails for any other reason.
    """
    job, target, manifest = plan["job"], plan["target"], plan["manifest"]
    start = time.perf_counter()
    job_dir = Path(build_dir) / plan["dirname"]
    ydir = fresh_job_dir(job_dir)
    top = harness_name(manifest)
    shutil.copyfile(plan["verilog"], ydir / plan["verilog"].name)
    (ydir / f"{top}.v").write_text(plan["harness"], encoding="utf-8")

    chain = run_chain(tools, [plan["verilog"].name, f"{top}.v"], top, job_dir, target, dsp=job.dsp,
                      freq_mhz=job.freq_mhz, seed=job.seed)
    cells = parse_stat(chain["stat"], top, manifest["module"])
    if chain["does_not_fit"] is not None:
        util = _log_utilization(chain["does_not_fit"])
        over = _overfull(util, chain["does_not_fit"])
        return _result(plan, cells, util, chain, start, notes=[does_not_fit_text(over)], overfull=over)
    timing = chain["timing"]

    fmax = timing["fmax_mhz"]
    dsp_path_ns = timing["dsp_path_ns"] if cells["total"]["dsp"] else None
    fmax_dsp = round(1000 / dsp_path_ns, 2) if dsp_path_ns else None
    candidates = [f for f in (fmax, fmax_dsp) if f]
    fmax_eff = min(candidates) if candidates else None
    util = timing["utilization"]
    power = None
    if target.power_calibrated:
        freqs = [POWER_FREQ_MHZ] + ([round(fmax_eff, 2)] if fmax_eff else [])
        power = estimate_power(util["lc"]["used"], util["dsp"]["used"], freqs, activity=job.activity)
    return _result(plan, cells, util, chain, start, fmax=fmax, fmax_dsp=fmax_dsp, power=power,
                   notes=_notes(cells["pe"], fmax, dsp_path_ns, job, target, power))


def _cache_inputs(plan, versions, source):
    """Everything a job's result depends on, as a JSON-able dict (its sha256 is the cache key)."""
    job, target, manifest, verilog = plan["job"], plan["target"], plan["manifest"], plan["verilog"]
    top = harness_name(manifest)
    sha = lambda data: hashlib.sha256(data).hexdigest()
    return {
        "cache_format": CACHE_FORMAT,
        "verilog": {"name": verilog.name, "sha256": sha(verilog.read_bytes())},
        "manifest_sha256": sha(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()),
        "harness_sha256": sha(plan["harness"].encode()),
        "job": {"target": target.name, "dsp": bool(job.dsp), "freq_mhz": float(job.freq_mhz),
                "seed": int(job.seed), "activity": float(job.activity)},
        "target": dataclasses.asdict(target),
        "flow": {"yosys": yosys_script([verilog.name, f"{top}.v"], top, device=target.yosys_device, dsp=job.dsp),
                 "nextpnr": nextpnr_args(Path("..") / "yosys" / NETLIST, target, freq_mhz=job.freq_mhz,
                                         seed=job.seed)},
        "hwq_synth_source_sha256": source,
        "tools": versions,
    }


def cached_result(cache, key, required, job_dir, accept=None):
    """The cached result of a job (``cached: True``), or ``None`` on a miss.

    Parameters
    ----------
    cache : hwq.synth.cache.SynthCache
    key : str
        The job's :func:`~hwq.synth.cache.cache_key`.
    required : tuple of str
        Keys the stored result must have (they come first in the returned dict).
    job_dir : pathlib.Path
        The job's directory: on a hit it is emptied and holds ``CACHED``, naming the entry, and
        ``yosys/netlist.v`` when the cache kept the job's netlist (:func:`store_result`).
    accept : callable, optional
        ``accept(stored) -> bool``, a last check of the stored result against the job.

    Returns
    -------
    dict or None
        The stored result with ``timing`` of the look-up (tool times 0) and ``cached`` True.
    """
    start = time.perf_counter()
    stored = cache.get(key, required)
    if stored is None or (accept is not None and not accept(stored)):
        return None
    job_dir = Path(job_dir)
    shutil.rmtree(job_dir, ignore_errors=True)
    (job_dir / "yosys").mkdir(parents=True)
    if cache.get_file(key, NETLIST_VERILOG, job_dir / "yosys" / NETLIST_VERILOG):
        kept = f"The netlist is the one that run wrote: yosys/{NETLIST_VERILOG}."
    else:
        (job_dir / "yosys").rmdir()
        kept = f"Run without the cache (hwq-build --no-cache) for the netlist (yosys/{NETLIST_VERILOG})."
    (job_dir / "CACHED").write_text(f"Result from the hwq synthesis cache, entry {key} (hwq.synth.cache);\n"
                                    f"no tool ran, so there are no tool logs. {kept}\n", encoding="utf-8")
    result = {k: stored[k] for k in required}
    result.update((k, v) for k, v in stored.items() if k not in result and k not in RUN_KEYS)
    result["timing"] = {"yosys_s": 0.0, "nextpnr_s": 0.0, "wall_s": round(time.perf_counter() - start, 2)}
    result["cached"] = True
    return result


def store_result(cache, key, inputs, result, job_dir):
    """Store a tool run's ``result`` (without its :data:`RUN_KEYS`) under ``key``, with the
    netlist the run wrote in ``job_dir/yosys``, if ``cache``."""
    if cache is not None:
        netlist = Path(job_dir) / "yosys" / NETLIST_VERILOG
        if netlist.is_file():
            cache.put_file(key, NETLIST_VERILOG, netlist)
        cache.put(key, inputs, {k: v for k, v in result.items() if k not in RUN_KEYS})


def _from_cache(plan, build_dir, cache, key):
    """The cached result of a planned job (``cached: True``), or ``None`` on a miss."""
    def accept(stored):
        return (stored["module"] == plan["manifest"]["module"] and stored["target"] == plan["target"].name
                and stored["use_dsp"] == bool(plan["job"].dsp))
    return cached_result(cache, key, DESIGN_KEYS, Path(build_dir) / plan["dirname"], accept)


def _run_and_store(plan, build_dir, tools, cache, key, inputs):
    """Run a job with the tools (``cached: False``) and store its result in ``cache``."""
    result = _run_job(plan, build_dir, tools)
    result["cached"] = False
    store_result(cache, key, inputs, result, Path(build_dir) / plan["dirname"])
    return result


def _estimated_cost(plan):
    """A rough relative run time of a job, to start the longest first (a heuristic; only the
    order in which jobs start depends on it, never a result)."""
    manifest = plan["manifest"]
    bits = (_port_width(manifest, "a") or 8) * (_port_width(manifest, "w") or 8)
    return (plan["verilog"].stat().st_size + 64 * bits) * (0.8 if plan["job"].dsp else 1.0)


def usable_cpus():
    """CPUs this process may run on (its affinity mask, e.g. under ``taskset``), else all."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _check_progress(progress):
    if not (progress is None or isinstance(progress, bool) or callable(progress)):
        raise InputError(f"progress must be None, a bool or a callable, not {progress!r}")


def _reporter(progress, total):
    """``(callback or None, tqdm bar or None)`` for a checked ``progress`` argument."""
    if progress is None or progress is False:
        return None, None
    if progress is True:
        import sys
        from tqdm import tqdm
        from .report import progress_line
        bar = tqdm(total=total, desc="synthesis", unit="job", file=sys.stderr, disable=None, leave=False,
                   dynamic_ncols=True)

        def report(result, done, total):
            bar.write(progress_line(result, done, total), file=sys.stderr)
            bar.update(1)
        return report, bar
    return progress, None


def synthesize(manifest_path, build_dir, target="up5k", dsp=False, freq_mhz=DEFAULT_FREQ_MHZ,
               seed=DEFAULT_SEED, activity=1.0, *, cache=None):
    """Synthesize, place and route one PE inside its harness and estimate its power.

    Parameters
    ----------
    manifest_path : str or pathlib.Path
        The PE's ``<module>.json``; ``<module>.v`` must be beside it.
    build_dir : str or pathlib.Path
        Directory for the tools' working directories (created if missing).
    target, dsp, freq_mhz, seed, activity
        As in :class:`SynthJob`.
    cache
        As in :func:`synthesize_all` (default: no cache).

    Returns
    -------
    dict
        The result dictionary described in the module docstring. A PE too big for the part is
        a result with ``fits`` False (and ``overfull``), not an exception.

    Raises
    ------
    InputError
        Before any tool runs: missing tool, unknown target, DSP on a target without one, bad
        manifest or Verilog.
    ToolError
        If a tool fails for any other reason than a design too big for the part.
    """
    return synthesize_all([SynthJob(manifest_path, target, dsp, freq_mhz, seed, activity)], build_dir, jobs=1,
                          cache=cache)[0]


def synthesize_all(specs, build_dir, jobs=None, *, cache=None, progress=None):
    """Run many synthesis jobs in parallel; results in the order of ``specs``.

    Jobs start longest first (by a size estimate), which shortens the batch's tail; the
    results do not depend on the order.

    Parameters
    ----------
    specs : list of SynthJob, dict or path
        The jobs; a dict holds :class:`SynthJob` keyword arguments, a path is a manifest with
        the default settings.
    build_dir : str or pathlib.Path
        Parent of every job's working directory (created if missing).
    jobs : int or None
        Jobs run at once (each is a chain of tool subprocesses); ``None``: one per CPU this
        process may use.
    cache : None, True, path or hwq.synth.cache.SynthCache
        The synthesis result cache (:mod:`hwq.synth.cache`): ``None`` (default) or ``False``
        for none, ``True`` for the default directory (``$HWQ_CACHE_DIR``, else
        ``$XDG_CACHE_HOME/hwq`` or ``~/.cache/hwq``), or a directory. A job found there runs no
        tool; every job run is stored.
    progress : None, bool or callable
        ``True``: a tqdm progress bar on stderr (on a terminal) and one line per finished job
        (module, target, seconds or ``cached``); a callable is called as
        ``progress(result, done, total)`` in the calling thread as each job finishes (cache hits
        first); ``None`` / ``False``: quiet.

    Returns
    -------
    SynthResults
        A list of result dicts, one per spec in the same order, with ``wall_s`` for the batch.
        A PE too big for the part is a result with ``fits`` False (and ``overfull``), not an
        exception: the other jobs of the batch go on, and the cache stores it like any other.

    Raises
    ------
    InputError
        If any job is bad (checked for all jobs before the first starts) or if two jobs would
        share a directory.
    ToolError
        If a tool fails for any other reason than a design too big for the part (the batch
        stops: jobs not yet started are cancelled).
    """
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise InputError(f"jobs must be a positive int, got {jobs!r}")
    tools = find_tools(*SYNTH_TOOLS)
    plans = [_check_job(_as_job(spec)) for spec in specs]
    dirnames = [plan["dirname"] for plan in plans]
    duplicates = sorted({d for d in dirnames if dirnames.count(d) > 1})
    if duplicates:
        raise InputError(f"duplicate synthesis jobs {', '.join(duplicates)}; list each job once")
    cache = as_cache(cache)
    _check_progress(progress)
    build_dir = check_writable_dir(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    found, inputs, keys = [None] * len(plans), [None] * len(plans), [None] * len(plans)
    report, bar = _reporter(progress, len(plans))
    done = 0
    try:
        if cache is not None:           # look-ups first: a hit runs no tool and takes no worker
            versions, source = tool_versions(*SYNTH_TOOLS), source_digest()
            for i, plan in enumerate(plans):
                inputs[i] = _cache_inputs(plan, versions, source)
                keys[i] = cache_key(inputs[i])
                found[i] = _from_cache(plan, build_dir, cache, keys[i])
                if found[i] is not None and report:
                    done += 1
                    report(found[i], done, len(plans))
        todo = sorted((i for i, result in enumerate(found) if result is None),
                      key=lambda i: -_estimated_cost(plans[i]))
        workers = min(jobs or usable_cpus(), max(len(todo), 1))
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(_run_and_store, plans[i], build_dir, tools, cache, keys[i], inputs[i]): i
                       for i in todo}
            try:
                for future in concurrent.futures.as_completed(futures):
                    found[futures[future]] = future.result()
                    if report:
                        done += 1
                        report(found[futures[future]], done, len(plans))
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    finally:
        if bar is not None:
            bar.close()
    results = SynthResults(found)
    results.wall_s = round(time.perf_counter() - start, 2)
    return results
