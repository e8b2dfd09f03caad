"""One synthesis job (harness, yosys, nextpnr, parse, power) and a parallel batch of them.

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
    ``{"lc"|"io"|"dsp"|"ram": {"used", "available"}}`` from nextpnr;
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
``timing``
    ``{"yosys_s", "nextpnr_s", "wall_s"}`` wall-clock seconds (not deterministic).
"""

import concurrent.futures
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import time
from pathlib import Path

from ..errors import InputError
from ..fileio import check_writable_dir
from ..tools import find_tools
from .harness import harness_name, harness_verilog, pe_ports
from .nextpnr import parse_report, run_nextpnr
from .power import UNCERTAINTY, estimate_power
from .targets import get_target
from .yosys import parse_stat, run_yosys

__all__ = ["SYNTH_TOOLS", "DEFAULT_FREQ_MHZ", "DEFAULT_SEED", "POWER_FREQ_MHZ", "SynthJob", "SynthResults",
           "load_manifest", "synthesize", "synthesize_all"]

#: the tools a synthesis job runs (keys of :data:`hwq.tools.TOOLS`)
SYNTH_TOOLS = ("yosys", "nextpnr-ice40")

#: nextpnr ``--freq`` target unless a job says otherwise
DEFAULT_FREQ_MHZ = 48.0

#: nextpnr ``--seed`` unless a job says otherwise
DEFAULT_SEED = 1

#: the fixed frequency every power estimate is also given at (the calibration's)
POWER_FREQ_MHZ = 12.0


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


def load_manifest(path):
    """Read and check a PE manifest and its Verilog file.

    Returns
    -------
    manifest : dict
    verilog : pathlib.Path
        The Verilog file the manifest names, in the manifest's directory.

    Raises
    ------
    InputError
        If the manifest is missing or malformed, or its Verilog file is missing, does not define
        the module, or does not match the manifest's ``sha256``.
    """
    path = Path(path)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"manifest {path} not found; emit the PE first (python -m hwq.build --no-synth)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"manifest {path} is not readable JSON ({exc}); re-emit the PE") from None
    if not isinstance(manifest, dict) or not all(k in manifest for k in ("module", "verilog", "ports")):
        raise InputError(f"manifest {path} lacks module/verilog/ports; re-emit the PE with hwq.pe.write_pe")
    name = manifest["verilog"]
    if not isinstance(name, str) or Path(name).name != name:
        raise InputError(f"manifest {path} names Verilog {name!r}, not a plain file name; re-emit the PE")
    verilog = path.parent / name
    try:
        text = verilog.read_bytes()
    except FileNotFoundError:
        raise InputError(f"Verilog file {verilog} named by {path.name} not found; re-emit the PE") from None
    expected = manifest.get("sha256")
    if expected is not None and hashlib.sha256(text).hexdigest() != expected:
        raise InputError(f"{verilog.name} does not match the sha256 in {path.name}; re-emit the PE")
    if not re.search(rb"\bmodule\s+" + re.escape(str(manifest["module"]).encode()) + rb"\b", text):
        raise InputError(f"{verilog.name} defines no module {manifest['module']!r}; re-emit the PE")
    pe_ports(manifest)  # raises on malformed ports
    return manifest, verilog


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
    manifest, verilog = load_manifest(job.manifest)
    harness = harness_verilog(manifest)  # also checks the module name is a Verilog identifier
    dirname = f"{manifest['module']}-{target.name}{'-dsp' if job.dsp else ''}-f{freq:g}-s{job.seed}"
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


def _run_job(plan, build_dir, tools):
    """Run one checked job; return its result dict."""
    job, target, manifest = plan["job"], plan["target"], plan["manifest"]
    start = time.perf_counter()
    job_dir = Path(build_dir) / plan["dirname"]
    shutil.rmtree(job_dir, ignore_errors=True)
    ydir, pdir = job_dir / "yosys", job_dir / "nextpnr"
    ydir.mkdir(parents=True)
    top = harness_name(manifest)
    shutil.copyfile(plan["verilog"], ydir / plan["verilog"].name)
    (ydir / f"{top}.v").write_text(plan["harness"], encoding="utf-8")

    synth = run_yosys(tools["yosys"], [plan["verilog"].name, f"{top}.v"], top, ydir,
                      device=target.yosys_device, dsp=job.dsp)
    cells = parse_stat(synth["stat"], top, manifest["module"])
    pnr = run_nextpnr(tools["nextpnr-ice40"], Path("..") / "yosys" / synth["netlist"].name, target, pdir,
                      freq_mhz=job.freq_mhz, seed=job.seed)
    timing = parse_report(pnr["report"])

    fmax = timing["fmax_mhz"]
    dsp_path_ns = timing["dsp_path_ns"] if cells["total"]["dsp"] else None
    fmax_dsp = round(1000 / dsp_path_ns, 2) if dsp_path_ns else None
    candidates = [f for f in (fmax, fmax_dsp) if f]
    fmax_eff = min(candidates) if candidates else None
    util = timing["utilization"]
    fmt = manifest.get("format")
    power = None
    if target.power_calibrated:
        freqs = [POWER_FREQ_MHZ] + ([round(fmax_eff, 2)] if fmax_eff else [])
        power = estimate_power(util["lc"]["used"], util["dsp"]["used"], freqs, activity=job.activity)
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
        "lcs": util["lc"]["used"],
        "utilization": util,
        "fmax_mhz": round(fmax, 2) if fmax is not None else None,
        "fmax_dsp_path_mhz": fmax_dsp,
        "power": power,
        "power_mw_12mhz": power["points"][0]["power_mw"] if power else None,
        "power_mw_fmax": power["points"][1]["power_mw"] if power and len(power["points"]) > 1 else None,
        "notes": _notes(cells["pe"], fmax, dsp_path_ns, job, target, power),
        "timing": {"yosys_s": round(synth["seconds"], 2), "nextpnr_s": round(pnr["seconds"], 2),
                   "wall_s": round(time.perf_counter() - start, 2)},
    }
    return result


def synthesize(manifest_path, build_dir, target="up5k", dsp=False, freq_mhz=DEFAULT_FREQ_MHZ,
               seed=DEFAULT_SEED, activity=1.0):
    """Synthesize, place and route one PE inside its harness and estimate its power.

    Parameters
    ----------
    manifest_path : str or pathlib.Path
        The PE's ``<module>.json``; ``<module>.v`` must be beside it.
    build_dir : str or pathlib.Path
        Directory for the tools' working directories (created if missing).
    target, dsp, freq_mhz, seed, activity
        As in :class:`SynthJob`.

    Returns
    -------
    dict
        The result dictionary described in the module docstring.

    Raises
    ------
    InputError
        Before any tool runs: missing tool, unknown target, DSP on a target without one, bad
        manifest or Verilog. :class:`~hwq.errors.ToolError` if a tool fails.
    """
    return synthesize_all([SynthJob(manifest_path, target, dsp, freq_mhz, seed, activity)], build_dir, jobs=1)[0]


def synthesize_all(specs, build_dir, jobs=None):
    """Run many synthesis jobs in parallel; results in the order of ``specs``.

    Parameters
    ----------
    specs : list of SynthJob, dict or path
        The jobs; a dict holds :class:`SynthJob` keyword arguments, a path is a manifest with
        the default settings.
    build_dir : str or pathlib.Path
        Parent of every job's working directory (created if missing).
    jobs : int or None
        Jobs run at once (each is a chain of tool subprocesses); ``None``: one per CPU.

    Returns
    -------
    SynthResults
        A list of result dicts, one per spec in the same order, with ``wall_s`` for the batch.

    Raises
    ------
    InputError
        If any job is bad (checked for all jobs before the first starts), if two jobs would
        share a directory, or if a tool fails.
    """
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise InputError(f"jobs must be a positive int, got {jobs!r}")
    tools = find_tools(*SYNTH_TOOLS)
    plans = [_check_job(_as_job(spec)) for spec in specs]
    dirnames = [plan["dirname"] for plan in plans]
    duplicates = sorted({d for d in dirnames if dirnames.count(d) > 1})
    if duplicates:
        raise InputError(f"duplicate synthesis jobs {', '.join(duplicates)}; list each job once")
    build_dir = check_writable_dir(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    results = SynthResults()
    start = time.perf_counter()
    workers = min(jobs or os.cpu_count() or 1, max(len(plans), 1))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_run_job, plan, build_dir, tools) for plan in plans]
        try:
            results.extend(future.result() for future in futures)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    results.wall_s = round(time.perf_counter() - start, 2)
    return results
