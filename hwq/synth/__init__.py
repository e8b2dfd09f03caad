"""iCE40 synthesis of emitted PEs: YoWASP yosys and nextpnr runs, their reports, a power estimate.

Works on Verilog files and manifests only (it imports no front end, no :mod:`hwq.pe`, no
Amaranth); tools are found and run by :mod:`hwq.tools`. One module per concern:

* :mod:`~hwq.synth.harness` -- the four-pin register-to-register harness around a PE;
* :mod:`~hwq.synth.targets` -- the iCE40 parts (``up5k``, ``hx8k``);
* :mod:`~hwq.synth.yosys` -- ``synth_ice40`` and its cell counts;
* :mod:`~hwq.synth.nextpnr` -- place and route, Fmax and utilisation;
* :mod:`~hwq.synth.power` -- iCE40UP5K power estimates: activity-based (from a simulation's SAIF)
  and a first-order fallback;
* :mod:`~hwq.synth.activity` -- per-cell-type switching activity from a netlist and a SAIF file;
* :mod:`~hwq.synth.flow` -- one job and parallel batches of jobs;
* :mod:`~hwq.synth.design` -- a whole design (e.g. the accelerator), ``fits`` or not;
* :mod:`~hwq.synth.report` -- ``report.json``, ``report.md`` and the console table.

Example::

    from hwq.synth import SynthJob, synthesize_all, write_report, format_table
    results = synthesize_all([SynthJob("rtl_out/fxp_pe_a8_w8.json"),
                              SynthJob("rtl_out/fxp_pe_a8_w8.json", dsp=True)], "build/synth")
    write_report(results, "rtl_out")
    print(format_table(results))
"""

from .flow import (SYNTH_TOOLS, DEFAULT_FREQ_MHZ, DEFAULT_SEED, POWER_FREQ_MHZ, SynthJob, SynthResults,
                   synthesize, synthesize_all)
from .design import synthesize_design
from .harness import harness_name, harness_verilog
from .activity import Activity, cell_activity, read_saif
from .power import calibration_report, estimate_activity_power, estimate_power
from .report import format_table, report_json, report_markdown, write_report
from .targets import TARGETS, Target, get_target

__all__ = [
    "DEFAULT_FREQ_MHZ", "DEFAULT_SEED", "POWER_FREQ_MHZ", "SynthJob", "SynthResults",
    "synthesize", "synthesize_all", "synthesize_design", "harness_name", "harness_verilog", "estimate_power", "format_table",
    "Activity", "cell_activity", "read_saif", "estimate_activity_power", "calibration_report",
    "report_json", "report_markdown", "write_report", "TARGETS", "Target", "get_target", "SYNTH_TOOLS",
]
