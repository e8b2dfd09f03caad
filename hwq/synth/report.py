"""``report.json``, ``report.md`` and the plain-text summary table of synthesis results.

Both files are deterministic: the same results give byte-identical files. They hold no absolute
paths, no timestamps and no run times: each result's ``timing`` entry (wall-clock seconds, which
vary run to run) and ``cached`` flag (whether the synthesis cache answered) are left out of them,
so a run served from the cache writes the same files as the run that filled it.
:func:`format_table` shows both on the console, and :func:`progress_line` describes one finished job.

A PE too big for the part is a result, not a failure: its result has ``fits: false``,
``overfull`` (``{"lc": [needed, available], ...}``, every resource over capacity), no Fmax or
power, and the note :func:`does_not_fit_text` (e.g. ``does not fit: 7330 of 5280 logic cells``),
which the table and ``report.md`` show in its LCs column. Results that fit carry neither key.
"""

import json
from pathlib import Path

from ..fileio import write_atomic
from ..tools import tool_versions

__all__ = ["REPORT_JSON", "REPORT_MD", "BASELINE_FORMAT", "gops_per_klut4", "comparisons", "report_data", "report_json", "report_markdown", "format_table",
           "progress_line", "write_report", "does_not_fit_text", "RESOURCE_WORDS"]

REPORT_JSON = "report.json"
REPORT_MD = "report.md"

#: result keys that are not deterministic and stay out of the report files
VOLATILE_KEYS = ("timing", "cached")

HEADERS = ("module", "format", "widths", "target", "LUT4", "carry", "FF", "DSP", "LCs", "Fmax MHz",
           "GOPS/kLUT4", "mW @12MHz", "mW @Fmax")


#: format every other format is compared with
BASELINE_FORMAT = "fxp"

#: what a utilisation key counts, in a does-not-fit text
RESOURCE_WORDS = {"lc": "logic cells", "ram": "EBR (SB_RAM40_4K)", "dsp": "SB_MAC16", "spram": "SPRAM",
                  "io": "I/O pins"}


def does_not_fit_text(overfull):
    """``"does not fit: 7330 of 5280 logic cells"``: every resource of ``overfull``
    (``{key: (needed, available)}``, keys of :data:`RESOURCE_WORDS`) over capacity."""
    return "does not fit: " + ", ".join(f"{used} of {available} {RESOURCE_WORDS.get(key, key)}"
                                        for key, (used, available) in overfull.items())


def gops_per_klut4(result):
    """Peak throughput per 1000 LUT4 of the PE: 2 ops per MAC x Fmax / LUT4 x 1000, in GOPS.

    ``None`` when the PE uses a DSP (its LUT4 count leaves the multiplier out, and nextpnr's Fmax
    through an SB_MAC16 is not real) or has no LUT4 or Fmax.
    """
    if result["dsp"] or not result["lut4"] or not result["fmax_mhz"]:
        return None
    return round(2 * result["fmax_mhz"] / result["lut4"], 3)


def comparisons(results):
    """Every non-baseline result against the baseline format at the same widths, target and mapping.

    Returns
    -------
    list of dict
        ``module``, ``baseline`` (module), ``target``, ``use_dsp`` and the ratios ``lut4``, ``ff``,
        ``lcs``, ``fmax`` (this PE / baseline; ``None`` where the baseline's figure is 0 or missing).
    """
    key = lambda r: (r["a_bits"], r["w_bits"], r["target"], r["use_dsp"])
    baselines = {key(r): r for r in results if r["format"] == BASELINE_FORMAT}
    rows = []
    for result in results:
        base = baselines.get(key(result))
        if result["format"] == BASELINE_FORMAT or base is None:
            continue
        ratio = lambda k: round(result[k] / base[k], 3) if base[k] and result[k] is not None else None
        rows.append({"module": result["module"], "baseline": base["module"], "target": result["target"],
                     "use_dsp": result["use_dsp"], "lut4": ratio("lut4"), "ff": ratio("ff"),
                     "lcs": ratio("lcs"), "fmax": ratio("fmax_mhz")})
    return rows


def report_data(results):
    """The ``report.json`` content: tool versions, the results without their timings (plus
    ``gops_per_klut4``), and the comparisons with the baseline format."""
    return {
        "generator": "hwq.synth",
        "tools": tool_versions(),
        "results": [{**{k: v for k, v in result.items() if k not in VOLATILE_KEYS},
                     "gops_per_klut4": gops_per_klut4(result)} for result in results],
        "comparisons": comparisons(results),
    }


def report_json(results):
    """``report.json`` text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(report_data(results), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _num(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"


def _row(result):
    """One table row of strings, in :data:`HEADERS` order."""
    target = result["target"] + (" dsp" if result["use_dsp"] else "")
    fmax = _num(result["fmax_mhz"]) + ("*" if result["dsp"] and result.get("fits", True) else "")
    lcs = str(result["lcs"]) if result.get("fits", True) else does_not_fit_text(result["overfull"])
    return (result["module"], result["format"] or "-", f"a{result['a_bits']} w{result['w_bits']}", target,
            str(result["lut4"]), str(result["carry"]), str(result["ff"]), str(result["dsp"]), lcs, fmax,
            _num(gops_per_klut4(result), 3), _num(result["power_mw_12mhz"], 3), _num(result["power_mw_fmax"], 3))


def format_table(results, timing=False):
    """Plain-text table of the results, columns aligned, for the command line.

    Parameters
    ----------
    results : list of dict
        Results of :func:`hwq.synth.synthesize_all`.
    timing : bool
        Add a column with each job's wall time in seconds, or ``cached`` for a result the
        synthesis cache answered.

    A result from the cache is marked ``cached`` in the time column, or with ``+`` after its
    module name without ``timing``; a footnote counts them.
    """
    headers = HEADERS + (("time s",) if timing else ())

    def row(r):
        if timing:
            return _row(r) + ("cached" if r.get("cached") else _num(r["timing"]["wall_s"], 1),)
        cells = _row(r)
        return (cells[0] + ("+" if r.get("cached") else ""),) + cells[1:]
    rows = [row(r) for r in results]
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells):
        return "  ".join(c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    text = [line(headers), line(["-" * w for w in widths]), *map(line, rows)]
    if any(r["dsp"] for r in results):
        text.append("* nextpnr's Fmax through SB_MAC16 is not a real figure; see the notes in report.md")
    cached = sum(bool(r.get("cached")) for r in results)
    if cached:
        mark = "'cached' in the time column" if timing else "'+' after the module"
        text.append(f"{cached} of {len(results)} result(s) from the synthesis cache ({mark}); no tool ran for them")
    return "\n".join(text) + "\n"


def progress_line(result, done, total):
    """One line for a finished job: ``[ 3/38] fxp_pe_a8_w8 up5k dsp  4.1 s`` (or ``cached``)."""
    width = len(str(total))
    what = f"{result['module']} {result['target']}" + (" dsp" if result.get("use_dsp") else "")
    took = "cached" if result.get("cached") else f"{result['timing']['wall_s']:.1f} s"
    if result.get("fits") is False:
        took += "  " + does_not_fit_text(result["overfull"])
    return f"[{done:>{width}}/{total}] {what}  {took}"


def _label(result):
    return f"`{result['module']}` {result['target']}" + (" dsp" if result["use_dsp"] else "")


def report_markdown(results):
    """``report.md`` text: a table of the results and their notes."""
    versions = ", ".join(f"{name} {version}" for name, version in sorted(tool_versions().items()))
    lines = [
        "# iCE40 synthesis report",
        "",
        f"Generated by `hwq.synth` with {versions}.",
        "Each PE is synthesized inside a four-pin harness that drives its inputs from flip-flops and",
        "XOR-reduces its outputs into a register. LUT4, carry, FF and DSP count the PE's own cells;",
        "LCs (logic cells after placement), Fmax and power are for the whole placed design, harness included.",
        "Power is a first-order core-rail estimate, ±50 % at best (`hwq.synth.power`).",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join("---" if i < 4 else "---:" for i in range(len(HEADERS))) + "|",
    ]
    lines += ["| " + " | ".join(cell.replace("*", "\\*") for cell in _row(r)) + " |" for r in results]
    compared = comparisons(results)
    if compared:
        lines += ["", f"## Against {BASELINE_FORMAT} at the same widths, target and mapping", "",
                  "Ratios of this PE to the baseline (below 1: smaller or slower).", "",
                  "| module | baseline | target | LUT4 × | FF × | LCs × | Fmax × |",
                  "|---|---|---|---:|---:|---:|---:|"]
        for row in compared:
            target = row["target"] + (" dsp" if row["use_dsp"] else "")
            lines.append(f"| {row['module']} | {row['baseline']} | {target} | " +
                         " | ".join(_num(row[k], 2) for k in ("lut4", "ff", "lcs", "fmax")) + " |")
    with_parts = [r for r in results if r.get("submodules")]
    if with_parts:
        lines += ["", "## PE submodules", "",
                  "Each submodule's own cells (decoders, multipliers, tables), from yosys `-noflatten`.", "",
                  "| module | target | submodule | LUT4 | carry | FF |", "|---|---|---|---:|---:|---:|"]
        for r in with_parts:
            target = r["target"] + (" dsp" if r["use_dsp"] else "")
            for name, counts in r["submodules"].items():
                lines.append(f"| {r['module']} | {target} | {name} | {counts['lut4']} | {counts['carry']} | "
                             f"{counts['ff']} |")
    notes = {}
    for result in results:
        for note in result["notes"]:
            notes.setdefault(note, []).append(_label(result))
    lines += ["", "## Notes", "",
              "- GOPS/kLUT4 = 2 ops per MAC × Fmax / LUT4 × 1000 (left out for PEs that use a DSP)."]
    for note, labels in notes.items():
        lines.append(f"- {note}" + ("" if len(labels) == len(results) else f" ({'; '.join(labels)})"))
    if any(r["dsp"] for r in results):
        lines.append("- \\* marks an Fmax that nextpnr computed through an SB_MAC16 (not a real figure).")
    return "\n".join(lines) + "\n"


def write_report(results, out_dir):
    """Write ``report.json`` and ``report.md`` into ``out_dir`` (atomically); return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / REPORT_JSON, "md": out_dir / REPORT_MD}
    write_atomic(paths["json"], report_json(results))
    write_atomic(paths["md"], report_markdown(results))
    return paths
