"""The accelerator's report: resources, clock, cycles, throughput and PE utilization.

:func:`accelerator_report` combines an accelerator's manifest (:mod:`hwq.accel.emit`), its
synthesis result (:func:`hwq.synth.synthesize_design`, optional) and its bench run
(:func:`hwq.sim.accel_runner.run_accel_bench`, optional) into one dict; :func:`write_report`
writes it as ``report.json`` and ``report.md``.

Figures and where they come from:

- ``cycles``: cycles per inference, **measured** on the bench (the design's ``cycles`` port)
  when it ran, else the manifest's ``cycles_per_inference`` (the schedule plus the pipeline
  overheads, ``cycles_source`` says which);
- ``macs_per_cycle`` = the model's MACs / ``cycles``; ``utilization`` = MACs / (``cycles`` x PEs)
  over the whole inference (steps the array does not run, pooling and adds, count as idle);
  ``layers``: per conv/linear step, its MACs over its steady-state cycles x PEs;
- ``fmax_mhz``, ``lcs``, ``ebr``, ``spram``, ``dsp``: nextpnr and yosys (post-placement logic
  cells, blocks by type);
- ``inferences_per_s`` = ``fmax_mhz * 1e6 / cycles``; ``macs_per_s_per_lc`` = MACs/s at Fmax over
  logic cells;
- ``weight_store``: the layers whose weights the SPRAM store holds, the payloads the host
  preloads after reset and the cycles per inference spent copying them (part of ``cycles``),
  or None;
- ``power`` (with ``hwq-build --netlist N``): ESTIMATES of core power and energy per
  inference and per MAC, activity-based (the synthesized netlist's switching activity over N
  whole inferences, :mod:`hwq.synth.power`) and first-order (the fallback), each labelled with
  its uncertainty; ``netlist_verified_inputs``: inputs run bit-exact on that netlist;
- ``array_search`` (added by :func:`hwq.accel_build.build_accelerator` with ``array="auto"``):
  every array tried, whether it fit and why not.
"""

import json

from ..fileio import write_atomic

__all__ = ["accelerator_report", "report_markdown", "write_report"]


def accelerator_report(manifest, *, synthesis=None, verification=None, power=None):
    """One accelerator's figures (module docstring) as a dict of JSON types.

    Parameters
    ----------
    manifest : dict
        :func:`hwq.accel.emit.accelerator_manifest`.
    synthesis : dict or None
        :func:`hwq.synth.synthesize_design`'s result.
    verification : dict or None
        :func:`hwq.sim.accel_runner.run_accel_bench`'s result.
    power : dict or None
        :func:`hwq.accel_build.post_synthesis`'s result.
    """
    latency = manifest["latency"]
    pes = manifest["array"]["pes"]
    if verification is not None:
        cycles, source = int(verification["cycles"][0]), "measured in simulation"
    else:
        cycles, source = int(latency["cycles_per_inference"]), "from the schedule, not simulated"
    macs = int(latency["macs"])
    layers = [{"name": s["name"], "macs": s["macs"], "cycles": s["cycles"],
               "macs_per_cycle": s["macs"] / s["cycles"], "utilization": s["macs"] / (s["cycles"] * pes)}
              for s in manifest["steps"] if s["kind"] == "conv" and s["cycles"]]
    report = {
        "module": manifest["module"], "target": manifest["target"],
        "array": f"{manifest['array']['rows']}x{manifest['array']['cols']}", "pes": pes,
        "input": manifest["model"]["input"], "output": manifest["model"]["output"],
        "macs": macs, "cycles": cycles, "cycles_source": source,
        "macs_per_cycle": macs / cycles, "utilization": macs / (cycles * pes), "layers": layers,
        "verified_inputs": len(verification["cycles"]) if verification is not None else 0,
        "memories": manifest["memories"],
        "weight_store": None if not manifest.get("preload") else {
            "layers": manifest["preload"]["layers"], "preload_payloads": manifest["preload"]["payloads"],
            "load_cycles": sum(s["cycles"] for s in manifest["steps"] if s["kind"] == "load")},
    }
    if synthesis is not None:
        fmax = synthesis.get("fmax_mhz")
        report.update({key: synthesis.get(key) for key in ("lcs", "lut4", "carry", "ff", "ebr", "spram", "dsp",
                                                            "fmax_mhz", "fits")})
        report["part"] = synthesis.get("part")
        if fmax and synthesis.get("fits", True):
            report["inferences_per_s"] = fmax * 1e6 / cycles
            report["macs_per_s_per_lc"] = fmax * 1e6 * macs / cycles / synthesis["lcs"] if synthesis.get("lcs") else None
    report["netlist_verified_inputs"] = power.get("netlist_verified_inputs", 0) if power else 0
    report["power"] = power
    report["summary"] = _summary(report)
    return report


def _summary(r):
    text = (f"{r['module']} on {r['array']} ({r['pes']} PEs): {r['cycles']} cycles per inference "
            f"[{r['cycles_source']}], {r['macs_per_cycle']:.2f} MACs/cycle, utilization {100 * r['utilization']:.1f} %")
    if "lcs" in r:
        if r.get("fits") is False:
            text += f"; does not fit the {r.get('part') or r['target']}"
        else:
            text += (f"; {r['lcs']} logic cells, {r['ebr']} EBR, {r['spram']} SPRAM, {r['dsp']} DSP, "
                     f"Fmax {r['fmax_mhz']:.1f} MHz, {r.get('inferences_per_s', 0):.0f} inferences/s")
    if r.get("power"):
        text += f"; {r['power']['summary']}"
    return text


def report_markdown(report):
    """``report`` as Markdown: the summary, a figures table and the per-layer table."""
    r = report
    lines = [f"# Accelerator report: {r['module']}", "", r["summary"], "", "| figure | value |", "|---|---|"]
    rows = [("target", r["target"]), ("array", f"{r['array']} ({r['pes']} PEs)"), ("MACs per inference", r["macs"]),
            ("cycles per inference", f"{r['cycles']} ({r['cycles_source']})"),
            ("MACs per cycle", f"{r['macs_per_cycle']:.2f}"), ("PE utilization", f"{100 * r['utilization']:.1f} %"),
            ("inputs verified bit-exact", r["verified_inputs"])]
    for key, label in (("lcs", "logic cells"), ("lut4", "SB_LUT4"), ("ff", "flip-flops"), ("ebr", "EBR"),
                       ("spram", "SPRAM"), ("dsp", "SB_MAC16")):
        if key in r:
            rows.append((label, r[key]))
    if r.get("fmax_mhz"):
        rows.append(("Fmax (nextpnr)", f"{r['fmax_mhz']:.1f} MHz"))
    if r.get("inferences_per_s"):
        rows.append(("inferences/s at Fmax", f"{r['inferences_per_s']:.0f}"))
    if r.get("macs_per_s_per_lc"):
        rows.append(("MAC/s per logic cell", f"{r['macs_per_s_per_lc']:.0f}"))
    if r.get("weight_store"):
        w = r["weight_store"]
        rows.append(("weight store (SPRAM)", f"{', '.join(w['layers'])}: {w['preload_payloads']} payloads preloaded "
                                             f"after reset, {w['load_cycles']} load cycles per inference"))
    lines += [f"| {label} | {value} |" for label, value in rows]
    if r.get("power"):
        lines += _power_markdown(r["power"], r["netlist_verified_inputs"])
    if r.get("array_search"):
        lines += ["", "## Array search (`--array auto`)", "", "| array | fits | logic cells | SB_MAC16 | why not |",
                  "|---|---|---|---|---|"]
        lines += [f"| {a['array']} | {'yes' if a['fits'] else 'no'} | {a.get('lcs') or ''} | {a.get('dsp') or ''} "
                  f"| {a.get('reason') or ''} |" for a in r["array_search"]]
    lines += ["", "## Layers on the PE array", "", "| layer | MACs | cycles | MACs/cycle | utilization |",
              "|---|---|---|---|---|"]
    lines += [f"| {l['name']} | {l['macs']} | {l['cycles']} | {l['macs_per_cycle']:.2f} | {100 * l['utilization']:.1f} % |"
              for l in r["layers"]]
    lines += ["", "## Memories", "", "| memory | words x bits | read ports | initialised | maps to | blocks |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {m['name']} | {m['depth']} x {m['width']} | {m['read_ports']} | {'yes' if m['initialised'] else 'no'} "
              f"| {m['kind']} | {m['blocks']} |" for m in r["memories"]]
    return "\n".join(lines) + "\n"


def _power_markdown(power, inputs):
    """The power section: both models' estimates at each frequency, and their caveats."""
    lines = ["", "## Power and energy (ESTIMATES)", "",
             f"Post-synthesis simulation: {inputs} input(s) ran bit-exact on the synthesized netlist"
             + (", and their switching activity gives the activity-based estimate." if power["activity"] else
                " (on Icarus: no switching activity recorded, first-order estimate only)."), "",
             "| model | clock | core power | energy per inference | energy per MAC | uncertainty |",
             "|---|---|---|---|---|---|"]
    for name, key in (("activity-based", "activity"), ("first-order (fallback)", "first_order")):
        est = power[key]
        if not est:
            continue
        u = est["uncertainty"]
        band = f"static ±{100 * u['static']:.0f} %, dynamic ±{100 * u['dynamic']:.0f} %" if isinstance(u, dict) \
            else f"±{100 * u:.0f} %"
        for row in est["energy"]:
            lines.append(f"| {name} | {row['freq_mhz']:g} MHz | {row['power_mw']:.2f} mW "
                         f"| {row['energy_per_inference_uj']:.2f} µJ | {row['energy_per_mac_pj']:.1f} pJ | {band} |")
    if power["activity"]:
        point = power["activity"]["points"][-1]
        lines += ["", f"Activity-based, at {point['freq_mhz']:g} MHz: static {point['static_mw']:.3f} mW, "
                      f"dynamic {point['dynamic_mw']:.3f} mW.", ""]
        lines += [f"- {note}" for note in power["activity"]["notes"]]
    return lines


def write_report(report, out_dir):
    """Write ``report.json`` and ``report.md`` into ``out_dir`` (atomically)."""
    write_atomic(out_dir / "report.json", json.dumps(report, indent=1, sort_keys=True) + "\n")
    write_atomic(out_dir / "report.md", report_markdown(report))
