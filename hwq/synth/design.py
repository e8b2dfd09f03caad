"""Synthesis of a whole design (not a PE): a Verilog file and its top module, on one iCE40 part.

:func:`synthesize_design` runs the same tool chain as the PE flow (:func:`hwq.synth.flow.run_chain`:
``synth_ice40 -noflatten``, then nextpnr), with the same cache (:mod:`hwq.synth.cache`), and
answers a design too big for the part with ``fits=False`` and its counts instead of an error.

Ports: a design whose ports (other than the clock) need more pins than the package has
(:attr:`~hwq.synth.targets.Target.io_pins`; the accelerator's streams and 32-bit cycle counter
do on the UP5K-SG48) is synthesized inside the four-pin harness of :mod:`hwq.synth.harness`
(every input from a shift register, every output bit into a registered XOR tree), so that no
port is optimized away and every path is register to register; its own cells are counted apart
(``harness``). The top module's ports are read from the Verilog text (``input``/``output``
declarations of the module, as Amaranth and most generators write them).

Job directory: ``<build_dir>/<top>-<target>[-dsp][-spram]-f<MHz>-s<seed>/`` with ``yosys/`` and
``nextpnr/`` as in :mod:`hwq.synth.flow`.
"""

import dataclasses
import hashlib
import math
import re
import shutil
import time
from pathlib import Path

from ..errors import InputError
from ..fileio import check_writable_dir
from ..tools import find_tools, tool_versions
from .cache import CACHE_FORMAT, as_cache, cache_key, source_digest
from .flow import (DEFAULT_FREQ_MHZ, DEFAULT_SEED, SYNTH_TOOLS, cached_result, fresh_job_dir, run_chain,
                   store_result)
from .harness import wrap_verilog
from .nextpnr import OPTIONAL_UTILIZATION, UTILIZATION, nextpnr_args
from .targets import get_target
from .yosys import DESIGN_CELL_KEYS, NETLIST, cell_counts, parse_stat, yosys_script

__all__ = ["RESULT_KEYS", "module_ports", "synthesize_design"]

#: the design keys of every :func:`synthesize_design` result (a cache entry must hold them all)
RESULT_KEYS = ("top", "target", "part", "use_dsp", "use_spram", "freq_target_mhz", "seed", "harness_used",
               "lcs", "lut4", "carry", "ff", "dsp", "ebr", "spram", "harness", "total", "modules",
               "fmax_mhz", "utilization", "fits", "overfull", "notes")

#: the clock port every design has (the harness drives it from its own ``clk`` pin)
CLOCK = "clk"

#: the reset port the harness drives (registered) when the design has one
RESET = "rst"

#: one port declaration: ``input [15:0] name`` followed by ``;`` (in the body) or ``,``/``)`` (in
#: an ANSI header)
_DECL = re.compile(r"(?:^|[(,;])\s*(input|output|inout)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?"
                   r"(?:\[(\d+):(\d+)\]\s*)?([A-Za-z_][\w$]*)\s*(?=[;,)])", re.MULTILINE)


def module_ports(text, top):
    """The ports of module ``top`` in Verilog ``text``.

    Parameters
    ----------
    text : str
        Verilog source with ``module top(...)`` and one ``input``/``output`` declaration per
        port, in the module body (as Amaranth writes it) or in an ANSI header.
    top : str

    Returns
    -------
    list of (str, str, int)
        ``(direction, name, width)`` in declaration order.

    Raises
    ------
    InputError
        No module ``top``, an ``inout`` port, or no ports declared.
    """
    match = re.search(rf"^\s*module\s+{re.escape(top)}\s*[(#;]", text, re.MULTILINE)
    if match is None:
        raise InputError(f"top: the Verilog has no module {top!r}")
    end = text.find("endmodule", match.end())
    body = text[match.end():end if end >= 0 else len(text)]
    ports = []
    for direction, msb, lsb, name in _DECL.findall(body):
        if direction == "inout":
            raise InputError(f"top: module {top!r} has an inout port {name!r}; synthesize_design takes none")
        width = abs(int(msb) - int(lsb)) + 1 if msb else 1
        ports.append((direction, name, width))
    if not ports:
        raise InputError(f"top: found no input/output declarations in module {top!r}")
    return ports


def _check(verilog_path, top, target, dsp, spram, freq_mhz, seed, harness):
    verilog = Path(verilog_path)
    if not verilog.is_file():
        raise InputError(f"verilog_path {str(verilog)!r} is not a file")
    if not isinstance(top, str) or not top.isidentifier():
        raise InputError(f"top must be a Verilog identifier, not {top!r}")
    part = get_target(target)
    for name, value in (("dsp", dsp), ("spram", spram)):
        if value not in (None, True, False):
            raise InputError(f"{name} must be None (when the part has it), True or False, not {value!r}")
    if dsp and not part.has_dsp:
        raise InputError(f"dsp: target {part.name} ({part.part}) has no SB_MAC16; pass dsp=False")
    if spram and not part.has_spram:
        raise InputError(f"spram: target {part.name} ({part.part}) has no SB_SPRAM256KA; pass spram=False")
    freq = DEFAULT_FREQ_MHZ if freq_mhz is None else freq_mhz
    if isinstance(freq, bool) or not isinstance(freq, (int, float)) or not math.isfinite(freq) or freq <= 0:
        raise InputError(f"freq_mhz must be a positive number of MHz, not {freq_mhz!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise InputError(f"seed must be an int in [0, 2**31), not {seed!r}")
    if harness not in (None, True, False):
        raise InputError(f"harness must be None (when needed), True or False, not {harness!r}")
    text = verilog.read_text(encoding="utf-8")
    ports = module_ports(text, top)
    names = [name for _, name, _ in ports]
    if CLOCK not in names:
        raise InputError(f"top: module {top!r} has no {CLOCK!r} port")
    pins = sum(width for _, name, width in ports)
    wrap = pins > part.io_pins if harness is None else harness
    dsp = part.has_dsp if dsp is None else dsp
    spram = part.has_spram if spram is None else spram
    return verilog, text, part, float(freq), ports, wrap, dsp, spram


def _harness(top, ports):
    inputs = [(name, width) for direction, name, width in ports if direction == "input" and name not in (CLOCK, RESET)]
    outputs = [(name, width) for direction, name, width in ports if direction == "output"]
    has_reset = any(name == RESET for _, name, _ in ports)
    return f"{top}_harness", wrap_verilog(top, inputs, outputs, f"{top}_harness", clk=CLOCK,
                                          rst=RESET if has_reset else None)


def _utilization(timing, does_not_fit):
    """``{key: {"used", "available"}}`` from nextpnr's report, or from its log when it stopped."""
    if timing is not None:
        return timing["utilization"]
    found = does_not_fit.utilization
    names = {**UTILIZATION, **OPTIONAL_UTILIZATION}
    return {key: {"used": found[bel][0], "available": found[bel][1]} for bel, key in names.items() if bel in found}


def synthesize_design(verilog_path, top, build_dir, *, target="up5k", dsp=None, spram=None, freq_mhz=None,
                      seed=DEFAULT_SEED, cache=None, harness=None):
    """Synthesize, place and route a whole design for an iCE40 part.

    Parameters
    ----------
    verilog_path : str or pathlib.Path
        One Verilog file holding ``top`` and every module below it (e.g. Amaranth's
        ``verilog.convert``).
    top : str
        The top module; it must have a ``clk`` port (and may have a synchronous ``rst``).
    build_dir : str or pathlib.Path
        Parent of the job's directory (created if missing).
    target : str, optional
        ``"up5k"`` (default) or ``"hx8k"`` (:data:`hwq.synth.targets.TARGETS`).
    dsp : bool or None, optional
        Map multipliers to SB_MAC16 (``synth_ice40 -dsp``; UP5K only). None (default): when the
        part has them.
    spram : bool or None, optional
        Map single-port memories named with :data:`hwq.synth.yosys.SPRAM_MARK` to
        SB_SPRAM256KA (``synth_ice40 -spram``; UP5K only). None (default): when the part has
        them.
    freq_mhz : float, optional
        nextpnr's timing target in MHz (default :data:`hwq.synth.flow.DEFAULT_FREQ_MHZ`).
    seed : int, optional
        nextpnr placer seed (default 1).
    cache : None, True, path or hwq.synth.cache.SynthCache, optional
        As :func:`hwq.synth.synthesize_all` (default: no cache).
    harness : bool or None, optional
        Wrap the design in the four-pin harness: None (default) when its ports need more pins
        than the package has, True or False to force it.

    Returns
    -------
    dict
        ``top``, ``target``, ``part``, ``use_dsp``, ``use_spram``, ``freq_target_mhz``, ``seed``;
        ``harness_used``;
        ``lut4``, ``carry``, ``ff``, ``dsp`` (SB_MAC16), ``ebr`` (SB_RAM40_4K), ``spram``
        (SB_SPRAM256KA): the design's own cells after ``synth_ice40`` (without the harness);
        ``harness`` and ``total``: the same counts (keys ``lut4 carry ff dsp ram spram``) for the
        harness alone and the whole netlist; ``modules``: each module's own cells, by its name
        below ``top`` (``""`` for the top's own);
        ``lcs``: logic cells after placement (whole netlist; when the design does not fit,
        what nextpnr's packer counted);
        ``utilization``: ``{"lc"|"io"|"dsp"|"ram"[|"spram"]: {"used", "available"}}``;
        ``fits``: whether nextpnr placed and routed it; ``overfull``: ``{key: [used, available]}``
        of every resource over capacity (empty when it fits);
        ``fmax_mhz``: nextpnr's achieved Fmax of ``clk`` (None when it does not fit or has no
        register-to-register path; with SB_MAC16 see :mod:`hwq.synth.nextpnr`);
        ``notes``: one-line caveats (the shortfall, e.g. ``"does not fit: 6012 of 5280 logic
        cells"``);
        ``timing``: ``{"yosys_s", "nextpnr_s", "wall_s"}`` (run, not design); ``cached``.

    Raises
    ------
    InputError
        Before any tool runs, naming the parameter: a missing file, a bad ``top`` or one without
        ``clk``, an unknown target, ``dsp``/``spram`` on a part without them, a bad frequency,
        seed or ``harness``; or a missing tool.
    ToolError
        If yosys or nextpnr fails for another reason than a design too big for the part.
    """
    verilog, text, part, freq, ports, wrap, dsp, spram = _check(verilog_path, top, target, dsp, spram, freq_mhz,
                                                                seed, harness)
    tools = find_tools(*SYNTH_TOOLS)
    cache = as_cache(cache)
    build_dir = check_writable_dir(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    job_dir = build_dir / f"{top}-{part.name}{'-dsp' if dsp else ''}{'-spram' if spram else ''}-f{freq:g}-s{seed}"
    name, wrapper = _harness(top, ports) if wrap else (top, None)
    sources = [verilog.name] + ([f"{name}.v"] if wrap else [])
    options = dict(device=part.yosys_device, dsp=bool(dsp), spram=bool(spram))

    key = inputs = None
    if cache is not None:
        sha = lambda data: hashlib.sha256(data.encode()).hexdigest()
        inputs = {
            "cache_format": CACHE_FORMAT, "kind": "design",
            "verilog": {"name": verilog.name, "sha256": sha(text)},
            "top": top, "harness_sha256": sha(wrapper) if wrap else None,
            "job": {"target": part.name, "dsp": bool(dsp), "spram": bool(spram), "freq_mhz": freq, "seed": seed},
            "target": dataclasses.asdict(part),
            "flow": {"yosys": yosys_script(sources, name, **options),
                     "nextpnr": nextpnr_args(Path("..") / "yosys" / NETLIST, part, freq_mhz=freq, seed=seed)},
            "hwq_synth_source_sha256": source_digest(),
            "tools": tool_versions(*SYNTH_TOOLS),
        }
        key = cache_key(inputs)
        hit = cached_result(cache, key, RESULT_KEYS, job_dir)
        if hit is not None:
            return hit

    start = time.perf_counter()
    ydir = fresh_job_dir(job_dir)
    shutil.copyfile(verilog, ydir / verilog.name)
    if wrap:
        (ydir / f"{name}.v").write_text(wrapper, encoding="utf-8")
    chain = run_chain(tools, sources, name, job_dir, part, dsp=bool(dsp), spram=bool(spram), freq_mhz=freq,
                      seed=seed)
    cells = parse_stat(chain["stat"], name, top, DESIGN_CELL_KEYS)
    zero = dict.fromkeys(DESIGN_CELL_KEYS, 0)
    own, harness_cells = (cells["pe"], cells["harness"]) if wrap else (cells["total"], zero)
    modules = {"": cells["harness"] if not wrap else _own(chain["stat"], top)}
    modules.update(cells["submodules"])
    util = _utilization(chain["timing"], chain["does_not_fit"])
    over = {key: [u["used"], u["available"]] for key, u in util.items() if u["used"] > u["available"]}
    fits = chain["does_not_fit"] is None
    notes = []
    if not fits:
        words = {"lc": "logic cells", "ram": "EBR (SB_RAM40_4K)", "dsp": "SB_MAC16", "spram": "SPRAM",
                 "io": "I/O pins"}
        shortfall = ", ".join(f"{used} of {available} {words.get(key, key)}" for key, (used, available) in
                              over.items()) or str(chain["does_not_fit"])
        notes.append(f"does not fit the {part.part}: {shortfall}")
    fmax = chain["timing"]["fmax_mhz"] if fits else None
    if fits and own["dsp"]:
        notes.append("nextpnr's Fmax through SB_MAC16 is not a real figure: it models every MAC16 port as "
                     "registered (docs/toolchain.md, 'SB_MAC16 Fmax')")
    result = {
        "top": top, "target": part.name, "part": part.part, "use_dsp": bool(dsp), "use_spram": bool(spram),
        "freq_target_mhz": freq, "seed": seed, "harness_used": bool(wrap),
        "lcs": util.get("lc", {}).get("used"),
        "lut4": own["lut4"], "carry": own["carry"], "ff": own["ff"], "dsp": own["dsp"], "ebr": own["ram"],
        "spram": own["spram"], "harness": harness_cells, "total": cells["total"], "modules": modules,
        "fmax_mhz": round(fmax, 2) if fmax is not None else None,
        "utilization": util, "fits": fits, "overfull": over, "notes": notes,
        "timing": {"yosys_s": round(chain["yosys_s"], 2), "nextpnr_s": round(chain["nextpnr_s"], 2),
                   "wall_s": round(time.perf_counter() - start, 2)},
        "cached": False,
    }
    store_result(cache, key, inputs, result, job_dir)
    return result


def _own(stat, module):
    """The cells of ``module`` itself (not its submodules) in ``stat -json``."""
    modules = stat.get("modules", {})
    entry = modules.get(f"\\{module}") or modules.get(module) or {}
    return cell_counts(entry.get("num_cells_by_type", {}), DESIGN_CELL_KEYS)
