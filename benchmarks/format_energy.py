"""Energy per inference of every format's accelerator on the digits CNN, from the synthesized
netlist's switching activity over whole inferences (issue 13's format comparison).

Run with ``python benchmarks/format_energy.py`` (``--formats fxp ant``, ``--configs w4a4 w8a8``,
``--images 2`` inferences simulated on each netlist, ``--arrays fxp_w8a8=1x8 uniq=1x1``, ``--out build/format_energy``,
``--jobs 2``, ``--reuse`` to resume an interrupted run from the points it finished).
Steps, each timed: train the digits CNN (scikit-learn's digits, offline), quantize and export it
per format and configuration, measure each integer model's accuracy on the 450 test images, then
per point :func:`hwq.accel_build.build_accelerator` for the iCE40UP5K with ``--array auto`` (the
largest PE array that fits), one image bit-exact on the RTL and ``--images`` images bit-exact on
the synthesized netlist on Verilator, whose SAIF gives the activity-based power estimate
(:mod:`hwq.synth.power`). Writes ``energy.json``, ``energy.md`` and ``energy.png`` (energy per
inference against accuracy) into ``--out`` and prints the table; ``--replot DIR/energy.json``
redraws them (several files: their points together, into ``--out``). Every energy is an ESTIMATE
with the stated uncertainty of its model; ``--images 0`` gives the first-order estimate only.
"""

import argparse
import concurrent.futures
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from accelerator_sweep import FORMATS, _exports  # noqa: E402

from hwq.errors import InputError  # noqa: E402


def wilson(correct, total, z=1.96):
    """95 % Wilson score interval of a binomial proportion (Wilson, JASA 1927), as fractions."""
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return centre - half, centre + half


def _point(fmt, config, model_dir, images, netlist_images, out, array="auto", reuse=False):
    from hwq.accel_build import build_accelerator
    start = time.perf_counter()
    point = {"format": fmt, "config": config}
    point_dir = out / "points" / f"{fmt}_{config}"
    earlier = point_dir / "report.json"
    report = json.loads(earlier.read_text()) if reuse and earlier.is_file() else None
    if report is not None and report.get("fits", True) and (report.get("netlist_verified_inputs") or 0) < netlist_images:
        report = None                # simulated on fewer netlist images than asked: build it again
    if report is not None:           # --reuse: an earlier (interrupted) run's finished point
        point["reused"] = True
    else:
        try:
            report = build_accelerator(model_dir, array=array, target="up5k", out=point_dir, verify=1,
                                       images=images, netlist=netlist_images, quiet=True)["report"]
        except InputError as exc:
            point.update(fits=False, reason=str(exc))
            report = None
    if report is not None:
        point["netlist_images"] = report.get("netlist_verified_inputs")
        point.update({key: report.get(key) for key in ("array", "pes", "lcs", "ebr", "spram", "dsp", "fmax_mhz",
                                                       "cycles", "macs", "inferences_per_s", "fits")})
        power = report.get("power")
        if not power and report.get("fits") and report.get("fmax_mhz"):   # no netlist run: first-order only
            from hwq.accel_build import accelerator_power
            power = accelerator_power(None, report, cycles=report["cycles"], macs=report["macs"])
        if power:
            for key in ("activity", "first_order"):
                if power[key]:
                    at_fmax = power[key]["energy"][-1]
                    point[key] = {"power_mw": at_fmax["power_mw"], "freq_mhz": at_fmax["freq_mhz"],
                                  **{k: v for k, v in at_fmax.items() if k.startswith("energy_")}}
                    if key == "activity":
                        p = power[key]["points"][-1]
                        point[key].update(static_mw=p["static_mw"], dynamic_mw=p["dynamic_mw"],
                                          uncertainty=power[key]["uncertainty"])
        elif not report.get("fits", True):
            point["reason"] = report["summary"]
    point["wall_s"] = round(time.perf_counter() - start, 1)
    return point


def _table(points, accuracy):
    fp32 = accuracy.get("fp32")
    lines = []
    if fp32:
        lines.append(f"FP32 accuracy: {100 * fp32[0] / fp32[1]:.1f} % ({fp32[0]} of {fp32[1]} test images).\n")
    lines += ["| format | config | accuracy (95 % CI) | array | LCs | Fmax MHz | cycles | netlist images | power mW "
              "| static / dynamic mW | µJ/inference (band) | pJ/MAC | vs fxp | first-order µJ/inference |",
              "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    fxp = {p["config"]: p["activity"]["energy_per_inference_uj"] for p in points
           if p["format"] == "fxp" and p.get("activity")}
    for p in points:
        acc = accuracy.get(f"{p['format']}_{p['config']}")
        acc_text = ""
        if acc:
            lo, hi = wilson(*acc)
            acc_text = f"{100 * acc[0] / acc[1]:.1f} % ({100 * lo:.1f}–{100 * hi:.1f})"
        if not p.get("activity") and p.get("fits") and p.get("first_order"):   # no netlist run (--images 0)
            lines.append(f"| {p['format']} | {p['config']} | {acc_text} | {p['array']} | {p['lcs']} | {p['fmax_mhz']:.1f} "
                         f"| {p['cycles']} | 0 | – | – | – | – | – | {p['first_order']['energy_per_inference_uj']:.2f} |")
            continue
        if not p.get("activity"):
            lines.append(f"| {p['format']} | {p['config']} | {acc_text} | {p.get('array', '')} | "
                         f"{p.get('reason', 'no activity')[:100]} | | | | | | | | | |")
            continue
        a, f = p["activity"], p.get("first_order") or {}
        ratio = a["energy_per_inference_uj"] / fxp[p["config"]] if p["config"] in fxp else None
        lines.append(f"| {p['format']} | {p['config']} | {acc_text} | {p['array']} | {p['lcs']} | {p['fmax_mhz']:.1f} "
                     f"| {p['cycles']} | {p.get('netlist_images', '')} | {a['power_mw']:.2f} | {a['static_mw']:.2f} / {a['dynamic_mw']:.2f} "
                     f"| {a['energy_per_inference_uj']:.2f} ({a['energy_per_inference_uj_low']:.2f}–"
                     f"{a['energy_per_inference_uj_high']:.2f}) | {a['energy_per_mac_pj']:.1f} "
                     f"| {'' if ratio is None else f'{ratio:.2f}'} "
                     f"| {f.get('energy_per_inference_uj', float('nan')):.2f} |")
    return "\n".join(lines) + "\n"


def _plot(points, accuracy, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5))
    formats = list(dict.fromkeys(p["format"] for p in points))
    configs = list(dict.fromkeys(p["config"] for p in points))
    for p in points:
        acc = accuracy.get(f"{p['format']}_{p['config']}")
        if not p.get("activity") or not acc:
            continue
        a = p["activity"]
        lo, hi = wilson(*acc)
        y = a["energy_per_inference_uj"]
        ax.errorbar(100 * acc[0] / acc[1], y, xerr=[[100 * (acc[0] / acc[1] - lo)], [100 * (hi - acc[0] / acc[1])]],
                    yerr=[[y - a["energy_per_inference_uj_low"]], [a["energy_per_inference_uj_high"] - y]],
                    marker="os^D"[configs.index(p["config"]) % 4], color=f"C{formats.index(p['format']) % 10}",
                    capsize=3, linestyle="none", label=f"{p['format']} {p['config']} ({p['array']})")
    if accuracy.get("fp32"):
        fp32 = accuracy["fp32"]
        ax.axvline(100 * fp32[0] / fp32[1], color="gray", linestyle="--", linewidth=1, label="FP32")
    ax.set_xlabel("accuracy on the 450 digits test images, % (95 % Wilson interval)")
    ax.set_ylabel("energy per inference, µJ at Fmax (ESTIMATE, activity-based)")
    ax.set_title("Digits CNN on the iCE40UP5K: energy against accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def _write(points, accuracy, out):
    out.mkdir(parents=True, exist_ok=True)
    (out / "energy.json").write_text(json.dumps({"points": points, "accuracy": accuracy}, indent=1) + "\n")
    table = _table(points, accuracy)
    (out / "energy.md").write_text("# Digits CNN: energy per inference by format (iCE40UP5K, ESTIMATES)\n\n" + table)
    _plot(points, accuracy, out / "energy.png")
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replot", type=Path, nargs="+", metavar="ENERGY_JSON",
                        help="only redraw the table and plot of an earlier run's energy.json (beside it), or of "
                             "several runs' points together (into --out), e.g. runs of different --images")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS))
    parser.add_argument("--configs", nargs="+", default=["w4a4", "w8a8"])
    parser.add_argument("--images", type=int, default=2, help="inferences simulated on each netlist (default 2)")
    parser.add_argument("--out", default="build/format_energy", type=Path)
    parser.add_argument("--jobs", type=int, default=2, help="points built at once (default 2)")
    parser.add_argument("--reuse", action="store_true",
                        help="take a point whose report.json an earlier run left in --out/points instead of "
                             "building it again (resume an interrupted run)")
    parser.add_argument("--arrays-from", type=Path, metavar="SWEEP_JSON",
                        help="take each point's array from an accelerator_sweep.py sweep.json (the largest that "
                             "fitted) instead of --array auto, which synthesizes each larger array first")
    parser.add_argument("--arrays", nargs="+", default=[], metavar="FORMAT=RxC",
                        help="a format's array (fxp=1x8), or a format's at one configuration (fxp_w8a8=1x8), over "
                             "--arrays-from and --array auto")
    args = parser.parse_args(argv)
    if args.replot:
        points, accuracy = [], {}
        for path in args.replot:
            data = json.loads(path.read_text())
            points += data["points"]
            for key, value in data["accuracy"].items():
                if accuracy.setdefault(key, value) != value:
                    parser.error(f"--replot {path}: its {key} accuracy {value} differs from an earlier file's "
                                 f"{accuracy[key]} (a different model)")
        print(_write(points, accuracy, args.replot[0].parent if len(args.replot) == 1 else args.out))
        return
    raw = {}
    exports, images = _exports(args.formats, args.configs, args.out, accuracy=raw)
    accuracy = {("fp32" if key == "fp32" else "_".join(key)): value for key, value in raw.items()}
    start = time.perf_counter()
    arrays = {}
    if args.arrays_from:
        for p in json.loads(args.arrays_from.read_text()):
            if p.get("fits") and p.get("lcs"):
                best = arrays.get((p["format"], p["config"]))
                if best is None or p["pes"] > best[1]:
                    arrays[p["format"], p["config"]] = (p["array"], p["pes"])
    for item in args.arrays:
        name, _, array = item.partition("=")
        fmt, _, config = name.partition("_")
        if fmt not in args.formats or (config and config not in args.configs) or not array:
            parser.error(f"--arrays {item!r}: expected FORMAT=RxC or FORMAT_CONFIG=RxC with FORMAT one of "
                         f"{', '.join(args.formats)} and CONFIG one of {', '.join(args.configs)}")
        for config in [config] if config else args.configs:
            arrays[fmt, config] = (array, None)
    tasks = [(fmt, config) for fmt in args.formats for config in args.configs]
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(_point, fmt, config, exports[fmt, config], images, args.images, args.out,
                               arrays.get((fmt, config), ("auto",))[0], args.reuse)
                   for fmt, config in tasks]
        points = []
        for future, task in zip(futures, tasks):
            points.append(future.result())
            print(f"{' '.join(task)}: {points[-1].get('array', '-')}, {points[-1]['wall_s']} s", file=sys.stderr)
    print(f"build {len(points)} points: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    print(_write(points, accuracy, args.out))


if __name__ == "__main__":
    main()
