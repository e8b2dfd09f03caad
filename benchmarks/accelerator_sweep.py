"""The digits CNN's accelerator in every format over PE array sizes: logic cells, Fmax, cycles,
inferences/s (issue 12's plot: inferences/s against logic cells, one line per format).

Run with ``python benchmarks/accelerator_sweep.py`` (``--formats fxp ant``, ``--configs w4a4
w8a8``, ``--arrays 1x4 1x8 1x16``, ``--out build/accel_sweep``, ``--jobs 2``). Steps, each
timed: train the digits CNN (scikit-learn's digits, offline), quantize and export it per format
and configuration (the worked example's activation formats), then build every point with
:func:`hwq.accel_build.build_accelerator` for the iCE40UP5K: Verilog, one test image bit-exact on
Verilator (the measured cycles), yosys and nextpnr. A point whose memories do not fit is kept,
with the reason. Writes ``sweep.json``, ``sweep.md`` and ``sweep.png`` into ``--out`` and prints
the table (``--replot DIR/sweep.json`` redraws them from an earlier run). The figures in the
README are ``--configs w4a4 w8a8``.
"""

import argparse
import concurrent.futures
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hwq.errors import InputError  # noqa: E402

FORMATS = ("fxp", "ant", "esb", "ausn", "uniq")


def _exports(formats, configs, out, accuracy=None):
    """Train, quantize and export; returns {(format, config): export dir} and the images file.

    With a dict ``accuracy``, it receives the float model's (key ``"fp32"``) and each integer
    model's ``(correct, total)`` on the whole digits test set (key ``(format, config)``)."""
    import torch

    from hwq.fileio import save_npy
    from hwq.integer import export
    from hwq.quant import quantize
    from hwq.quant.digits import train_digits_cnn
    from hwq.quant.integer import integer_model
    from hwq.quantize import activation_spec, parse_config
    start = time.perf_counter()
    torch.manual_seed(0)
    model, (x_train, _, x_test, y_test) = train_digits_cnn(epochs=8, device="cpu")
    if accuracy is not None:
        with torch.no_grad():
            accuracy["fp32"] = (int((model(x_test).argmax(1) == y_test).sum()), len(y_test))
    print(f"train: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    images = out / "test_images.npy"
    save_npy(images, x_test[:8].numpy())
    exports = {}
    start = time.perf_counter()
    for fmt in formats:
        for config in configs:
            w_bits, a_bits = parse_config(config)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                imodel = integer_model(quantize(model, f"{fmt}{w_bits}", activation_spec(fmt, a_bits),
                                                calibration=[x_train[:64]]))
            exports[fmt, config] = out / "exports" / f"{fmt}_{config}"
            export(imodel, exports[fmt, config])
            if accuracy is not None:
                logits = imodel.run(x_test.numpy())
                accuracy[fmt, config] = (int((logits.argmax(1) == y_test.numpy()).sum()), len(y_test))
    print(f"quantize and export: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return exports, images


def _point(fmt, config, array, model_dir, images, out):
    from hwq.accel_build import build_accelerator
    start = time.perf_counter()
    point = {"format": fmt, "config": config, "array": array}
    try:
        result = build_accelerator(model_dir, array=array, target="up5k", out=out / "points" / f"{fmt}_{config}_{array}",
                                   verify=1, images=images, quiet=True)
    except InputError as exc:
        point.update(fits=False, reason=str(exc))
    else:
        report = result["report"]
        point.update({key: report.get(key) for key in ("pes", "lcs", "lut4", "ff", "ebr", "spram", "dsp", "fmax_mhz",
                                                       "cycles", "macs", "macs_per_cycle", "utilization",
                                                       "inferences_per_s", "macs_per_s_per_lc", "fits")})
        if not report.get("fits", True):
            point["reason"] = report["summary"]
    point["wall_s"] = round(time.perf_counter() - start, 1)
    return point


def _table(points):
    lines = ["| format | config | array | LCs | EBR | SPRAM | DSP | Fmax MHz | cycles | MACs/cycle | util | inf/s "
             "| MAC/s per LC |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in points:
        if not p.get("fits"):
            what = f"{p['lcs']} of 5280: does not fit" if p.get("lcs") else f"does not fit: {p.get('reason', '')[:120]}"
            lines.append(f"| {p['format']} | {p['config']} | {p['array']} | {what} | {p.get('ebr', '')} | "
                         f"{p.get('spram', '')} | {p.get('dsp', '')} | | {p.get('cycles', '')} | | | | |")
            continue
        lines.append(f"| {p['format']} | {p['config']} | {p['array']} | {p['lcs']} | {p['ebr']} | {p['spram']} | "
                     f"{p['dsp']} | {p['fmax_mhz']:.1f} | {p['cycles']} | {p['macs_per_cycle']:.2f} | "
                     f"{100 * p['utilization']:.0f} % | {p['inferences_per_s']:.0f} | {p['macs_per_s_per_lc']:.0f} |")
    return "\n".join(lines) + "\n"


def _plot(points, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5))
    keys = list(dict.fromkeys((p["format"], p["config"]) for p in points))
    formats = list(dict.fromkeys(fmt for fmt, _ in keys))
    configs = list(dict.fromkeys(config for _, config in keys))
    for fmt, config in keys:                         # a colour per format, a line style per configuration
        mine = sorted((p for p in points if (p["format"], p["config"]) == (fmt, config) and p.get("fits")),
                      key=lambda p: p["lcs"])
        if mine:
            style = configs.index(config)
            ax.plot([p["lcs"] for p in mine], [p["inferences_per_s"] for p in mine], marker="os^D"[style % 4],
                    linestyle=("-", "--", ":", "-.")[style % 4], color=f"C{formats.index(fmt) % 10}",
                    label=f"{fmt} {config}")
            for p in mine:
                ax.annotate(p["array"], (p["lcs"], p["inferences_per_s"]), textcoords="offset points",
                            xytext=(4, 4), fontsize=8)
    ax.axvline(5280, color="gray", linestyle="--", linewidth=1, label="iCE40UP5K: 5 280 logic cells")
    ax.set_xlabel("logic cells (iCE40UP5K, nextpnr)")
    ax.set_ylabel("inferences/s at nextpnr's Fmax (cycles measured on Verilator)")
    ax.set_title("Digits CNN accelerator: throughput against logic cells, by PE array")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replot", type=Path, metavar="SWEEP_JSON",
                        help="only redraw the table and plot of an earlier run's sweep.json (beside it)")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS))
    parser.add_argument("--configs", nargs="+", default=["w4a4", "w8a8"])
    parser.add_argument("--arrays", nargs="+", default=["1x4", "1x8", "1x16"])
    parser.add_argument("--out", default="build/accel_sweep", type=Path)
    parser.add_argument("--jobs", type=int, default=2, help="points built at once (default 2)")
    args = parser.parse_args(argv)
    if args.replot:
        points = json.loads(args.replot.read_text())
        (args.replot.parent / "sweep.md").write_text("# Digits CNN accelerator sweep (iCE40UP5K)\n\n" + _table(points))
        _plot(points, args.replot.parent / "sweep.png")
        print(_table(points))
        return
    exports, images = _exports(args.formats, args.configs, args.out)
    start = time.perf_counter()
    tasks = [(fmt, config, array) for fmt in args.formats for config in args.configs for array in args.arrays]
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(_point, fmt, config, array, exports[fmt, config], images, args.out)
                   for fmt, config, array in tasks]
        points = []
        for future, task in zip(futures, tasks):
            points.append(future.result())
            print(f"{' '.join(task)}: {points[-1].get('lcs', '-')} LCs, {points[-1]['wall_s']} s", file=sys.stderr)
    print(f"build {len(points)} points: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    (args.out / "sweep.json").write_text(json.dumps(points, indent=1) + "\n")
    table = _table(points)
    (args.out / "sweep.md").write_text("# Digits CNN accelerator sweep (iCE40UP5K)\n\n" + table)
    _plot(points, args.out / "sweep.png")
    print(table)


if __name__ == "__main__":
    main()
