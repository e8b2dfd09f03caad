"""``python -m hwq.quantize``: the worked example — every format on a real CNN, end to end.

Trains a small CNN on scikit-learn's digits (ships offline), then, for every format and every
configuration (``w8a8``, ``w4a8``, ``w4a4`` by default): post-training quantization with the
format's own calibration, accuracy of the fake-quantized and of the integer-only model, output
SQNR, BOPs, and accuracy after training (straight-through QAT; UNIQ's gradual noise injection
for uniq). Then each format's **accelerator** (:mod:`hwq.accel_build`, the whole CNN on the
largest PE array that fits, ``--array auto``) at one configuration (w4a4 if it ran; ``--accel-all``: every one) is built from the
run's export, verified bit-exact on 20 test images on Verilator and synthesized for the
iCE40UP5K: the table's cost columns are its logic cells, EBR, DSP, Fmax and inferences/s, and
the plot shows accuracy against them with the FP32 line. The cost of each run's closest single
PE (ESB's ``k`` chosen for the largest layer, UNIQ's loadable table, ANT's unified PE) follows
in a second table. Writes ``report.md``, ``report.json``,
``accuracy_vs_cells.png``, per-run histograms, every run's integer model (``exports/<format>_wNaM/``,
:func:`hwq.integer.export`, for ``hwq-build --model``) and the test images (``test_images.npy``)
into ``--out``, and prints the table with the time
each step took. Progress bars (float training, the runs) go to stderr; ``--quiet`` prints
nothing but errors.

Like :mod:`hwq.build`, this module wires the parts together (quant, pe, synth, accel); nothing else
does.
"""

import copy
import json
import re
import sys
import time
from pathlib import Path

import torch

from .cli import ArgumentParser, positive_int, run_command
from .errors import InputError, ToolError
from .formats.base import check_int
from .fileio import check_output_dir, save_npy, staged_output, write_atomic
from .tools import find_tools
from .pe import PE_CLASSES, check_pe, discard, pe_variants, write_pe

__all__ = ["CONFIGS", "TEST_IMAGES", "PLOT", "parse_config", "activation_spec", "run", "main"]

#: the report's plot: accuracy against the accelerator's logic cells
PLOT = "accuracy_vs_cells.png"

#: the digits test images (float, (N, 1, 8, 8)) the run writes beside its exports, for
#: ``hwq-build --model DIR --images`` and ``hwq-board --model DIR --images``
TEST_IMAGES = "test_images.npy"

#: default (weight bits, activation bits) configurations
CONFIGS = ("w8a8", "w4a8", "w4a4")
_CONFIG = re.compile(r"^w(\d+)a(\d+)$")


def parse_config(text):
    """``(weight bits, activation bits)`` of a configuration ``"w<bits>a<bits>"`` (e.g. ``"w4a8"``).

    Raises
    ------
    InputError
        If ``text`` is not of that form.
    """
    match = _CONFIG.match(text)
    if match is None:
        raise InputError(f"configuration {text!r} is not of the form w<bits>a<bits>, e.g. w4a8")
    return int(match[1]), int(match[2])


def _formats(names, log):
    """The formats to run: ``names``, or every format with both a PE and a calibrator (the
    others are named in one log line, never dropped silently)."""
    from .formats import CALIBRATORS, FORMATS
    usable = [name for name in PE_CLASSES if name in CALIBRATORS]
    if not names or "all" in names:
        missing = {name: [part for part, registry in (("a PE", PE_CLASSES), ("a calibrator", CALIBRATORS))
                          if name not in registry] for name in FORMATS if name not in usable}
        if missing:
            log("not in the example: " + "; ".join(f"{name} (no {' and no '.join(p[2:] for p in parts)})"
                                                    for name, parts in missing.items()))
        return usable
    for name in names:
        if name not in usable:
            raise InputError(f"format {name!r} cannot run the example (it needs a PE and a calibrator); "
                             f"choose from {', '.join(usable)}")
    return list(dict.fromkeys(names))


def activation_spec(fmt, bits):
    """The activation spec a format's PE takes: its own format, or the one the PE accepts."""
    return f"{PE_CLASSES[fmt].operand_formats('activation')[0]}{bits}"


def _accuracy(logits, y):
    return float((torch.as_tensor(logits).argmax(1) == y).float().mean())


def _timed(timing, key, fn):
    start = time.perf_counter()
    result = fn()
    timing[key] = round(time.perf_counter() - start, 3)
    return result


def _quantize_run(model, data, fmt, w_bits, a_bits, qat_epochs, seed, progress=False):
    from .quant import evaluate, quantize
    from .quant.train import quantization_aware_training
    from .quant.analysis import analyse, sqnr_db
    from .quant.integer import integer_model
    x_train, y_train, x_test, y_test = data
    timing = {}
    weights, activations = f"{fmt}{w_bits}", activation_spec(fmt, a_bits)
    qmodel = _timed(timing, "ptq_s", lambda: quantize(model, weights, activations, calibration=[x_train[:256]]))
    with torch.no_grad():
        float_logits = model(x_test).double().numpy()
        fake_logits = qmodel(x_test).double().numpy()
    integer = integer_model(qmodel)
    int_logits = _timed(timing, "integer_s", lambda: integer.run(x_test))
    layers = analyse(qmodel, x_test[:64])
    qat = copy.deepcopy(qmodel)
    _timed(timing, "qat_s", lambda: quantization_aware_training(qat, x_train, y_train, epochs=qat_epochs, seed=seed,
                                                                          progress=progress))
    return qmodel, integer, {
        "format": fmt, "weights": weights, "activations": activations, "w_bits": w_bits, "a_bits": a_bits,
        "ptq_accuracy": _accuracy(fake_logits, y_test),
        "integer_accuracy": _accuracy(int_logits, y_test),
        "qat_accuracy": evaluate(qat, x_test, y_test),
        "output_sqnr_db": round(sqnr_db(float_logits, fake_logits), 2),
        "bops": round(sum(layer["bops"] for layer in layers)),
        "layers": layers, "timing": timing,
        "chosen": {name: {"weights": layer["weight_format"], "activations": layer["activation_format"]}
                   for name, layer in zip(qmodel.layers, layers)},
    }


def _closest_pe(fmt, a_bits, w_bits, weight_format):
    """The emitted PE that fits a model best: the variant whose weight format is the one chosen for
    the model's largest layer (ESB's k), else a loadable one (UNIQ: every layer has its own
    table), else the first (ANT's unified PE, fxp, AUSN)."""
    variants = pe_variants(fmt, a_bits, w_bits)
    chosen = next((pe for pe in variants if pe.w_format == weight_format), None) or \
        next((pe for pe in variants if pe.init_sequence() is not None), variants[0])
    discard(*(pe for pe in variants if pe is not chosen))
    return chosen


def _pe_costs(runs, weight_formats, stage, out, jobs, log):
    """Synthesize the PE of every run. A PE too big for the part is a result (``fits: false``,
    a measured outcome) whose ``error`` is its does-not-fit note; a PE whose synthesis fails for
    another reason gets ``failed`` and an ``error`` entry instead of figures, and the other runs
    keep theirs. Returns the errors of PEs whose synthesis failed."""
    from .synth import SYNTH_TOOLS, SynthJob, synthesize_all
    find_tools(*SYNTH_TOOLS)
    manifests = {}
    for run_, weight_format in zip(runs, weight_formats):
        key = (run_["format"], run_["a_bits"], run_["w_bits"], weight_format)
        if key not in manifests:
            manifests[key] = write_pe(_closest_pe(*key), stage / "rtl")
    jobs_list = [SynthJob(stage / "rtl" / f"{m['module']}.json") for m in manifests.values()]
    log(f"synthesizing {len(jobs_list)} PE(s) for the iCE40UP5K ...")
    start = time.perf_counter()
    try:
        results = synthesize_all(jobs_list, stage / "rtl" / "synth", jobs=jobs)
    except ToolError:           # a tool failed and stopped the batch: one job at a time, to name the ones that fail
        results = []
        for job, manifest in zip(jobs_list, manifests.values()):
            try:
                results.extend(synthesize_all([job], stage / "rtl" / "synth"))
            except ToolError as exc:
                results.append({"module": manifest["module"], "failed": True,
                                "error": str(exc).replace(str(stage), str(out)),
                                "log": str(exc.log).replace(str(stage), str(out)) if exc.log else None})
    log(f"synthesized {len(results)} PE(s) in {time.perf_counter() - start:.1f} s")
    costs = {key: ({**result, "error": result["notes"][0]} if result.get("fits") is False else result)
             for key, result in zip(manifests, results)}
    keys = ("module", "fits", "error", "lut4", "carry", "ff", "dsp", "fmax_mhz", "power_mw_12mhz")
    for run_, weight_format in zip(runs, weight_formats):
        result = costs[run_["format"], run_["a_bits"], run_["w_bits"], weight_format]
        run_["pe"] = {k: result[k] for k in keys if k in result}
    return [result for result in results if result.get("failed")]


#: test images each accelerator runs bit-exact on the Verilator bench
ACCEL_IMAGES = 20
#: the configuration whose accelerator the example builds by default (else the first given)
ACCEL_CONFIG = (4, 4)


def _accelerator_costs(runs, stage, out, synth, every, log):
    """Build, verify and (with ``synth``) synthesize the accelerator of each run at one
    configuration (:data:`ACCEL_CONFIG` if it ran, else the first; every one with ``every``),
    from the run's export, on :data:`ACCEL_IMAGES` test images (:mod:`hwq.accel_build`). A
    model whose memories do not fit the part is a result (``fits: false`` and the reason);
    returns the runs whose build failed for another reason."""
    from .accel_build import build_accelerator
    configs = list(dict.fromkeys((r["w_bits"], r["a_bits"]) for r in runs))
    chosen = configs if every else [ACCEL_CONFIG if ACCEL_CONFIG in configs else configs[0]]
    failed = []
    for r in runs:
        if (r["w_bits"], r["a_bits"]) not in chosen:
            continue
        name = f"accel/{r['format']}_w{r['w_bits']}a{r['a_bits']}"
        start = time.perf_counter()
        try:
            result = build_accelerator(stage / r["export"], out=stage / name, synth=synth, verify=ACCEL_IMAGES,
                                       images=stage / TEST_IMAGES, quiet=True)
        except InputError as exc:
            text = str(exc).replace(str(stage), str(out))
            r["accelerator"] = {"fits": False, "error": text} if "does not fit" in text else \
                {"failed": True, "error": text}
        except ToolError as exc:
            r["accelerator"] = {"failed": True, "error": str(exc).replace(str(stage), str(out)),
                                "log": str(exc.log).replace(str(stage), str(out)) if exc.log else None}
        else:
            report = result["report"]
            r["accelerator"] = {"dir": name, **{k: report.get(k) for k in (
                "array", "lcs", "ebr", "spram", "dsp", "fmax_mhz", "fits", "cycles", "macs_per_cycle", "utilization",
                "inferences_per_s", "verified_inputs")}}
        if r["accelerator"].get("failed"):
            failed.append(r["accelerator"])
        log(f"accelerator {r['format']} w{r['w_bits']}a{r['a_bits']}: "
            + (r["accelerator"].get("error") or report["summary"]) + f" ({time.perf_counter() - start:.1f} s)")
    return failed


def _accel_cells(r):
    """The accelerator columns of one run's table row."""
    acc = r.get("accelerator")
    if acc is None:
        return ["-"] * 6
    if "error" in acc:
        return ["-", "does not fit the iCE40UP5K" if acc.get("fits") is False else "failed, see report.json"] + \
            ["-"] * 4
    fmax = acc.get("fmax_mhz")
    return [str(acc.get("array") or "-"), str(acc.get("lcs") if acc.get("lcs") is not None else "-"), str(acc.get("ebr", "-")),
            str(acc.get("dsp", "-")), "-" if fmax is None else f"{fmax:.1f}",
            "-" if not acc.get("inferences_per_s") else f"{acc['inferences_per_s']:.0f}"]


def _table(runs, float_accuracy):
    headers = ["format", "config", "weights", "activations", "PTQ acc", "int acc", "QAT acc", "SQNR dB",
               "MBOPs", "PE array", "accel LCs", "EBR", "DSP", "Fmax MHz", "inf/s"]
    rows = []
    for r in runs:
        rows.append([r["format"], f"w{r['w_bits']}a{r['a_bits']}", r["weights"], r["activations"],
                     f"{100 * r['ptq_accuracy']:.2f}", f"{100 * r['integer_accuracy']:.2f}",
                     f"{100 * r['qat_accuracy']:.2f}", f"{r['output_sqnr_db']:.1f}", f"{r['bops'] / 1e6:.2f}",
                     *_accel_cells(r)])
    lines = [f"FP32 accuracy: {100 * float_accuracy:.2f} %", "",
             "| " + " | ".join(headers) + " |", "|" + "|".join("---" if i < 4 or headers[i] == "PE array" else "---:"
                                                             for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "Accelerator columns: the whole digits CNN on the iCE40UP5K (`hwq-build --model`; PE array: the "
              "first of 1x16, 1x8, 1x4, 1x2 that fits, `--array auto`), "
              f"verified bit-exact on {ACCEL_IMAGES} test images on Verilator; `-`: not built for this configuration."]
    return "\n".join(lines) + "\n"


def _pe_table(runs):
    """The single PE closest to each run (its iCE40UP5K cost), as before the accelerator."""
    headers = ["format", "config", "PE", "LUT4", "FF", "Fmax MHz"]
    lines = ["## Single PEs", "", "The emitted PE closest to each run, synthesized alone (`hwq.pe`, `hwq.synth`).", "",
             "| " + " | ".join(headers) + " |", "|---|---|---|---:|---:|---:|"]
    for r in runs:
        pe = r.get("pe", {})
        lines.append("| " + " | ".join([
            r["format"], f"w{r['w_bits']}a{r['a_bits']}",
            pe.get("module", "-") + ("" if "error" not in pe else " (does not fit the iCE40UP5K)"
                                     if not pe.get("fits", True) else " (failed, see report.json)"),
            str(pe.get("lut4", "-")), str(pe.get("ff", "-")),
            "-" if pe.get("fmax_mhz") is None else f"{pe['fmax_mhz']:.1f}"]) + " |")
    return "\n".join(lines) + "\n"


#: marker of each configuration in the accuracy plot, in the order the configurations run
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _plot(runs, float_accuracy, path):
    """Accuracy against the accelerator's logic cells: a colour per format, a marker per
    configuration; the integer path's accuracy filled, after QAT hollow (joined by a line); the
    FP32 model's accuracy as a dashed line; legends outside the axes. Runs without a synthesized
    accelerator are left out and counted in the title."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    formats = list(dict.fromkeys(r["format"] for r in runs))
    configs = list(dict.fromkeys(f"w{r['w_bits']}a{r['a_bits']}" for r in runs))
    plotted = [r for r in runs if (r.get("accelerator") or {}).get("lcs")]
    fig, ax = plt.subplots(figsize=(10, 6))
    ax.axhline(100 * float_accuracy, color="black", linestyle="--", linewidth=1, zorder=1)
    for r in plotted:
        color = f"C{formats.index(r['format']) % 10}"
        marker = _MARKERS[configs.index(f"w{r['w_bits']}a{r['a_bits']}") % len(_MARKERS)]
        cells, integer, qat = r["accelerator"]["lcs"], 100 * r["integer_accuracy"], 100 * r["qat_accuracy"]
        ax.plot([cells, cells], [integer, qat], color=color, linewidth=1, alpha=0.5, zorder=2)
        ax.scatter([cells], [integer], marker=marker, s=80, color=color, edgecolors="black", linewidths=0.6,
                   zorder=3)
        ax.scatter([cells], [qat], marker=marker, s=80, facecolors="white", edgecolors=color, linewidths=1.6,
                   zorder=3)
    ax.set_xlabel("accelerator logic cells (iCE40UP5K, nextpnr; whole digits CNN, the largest PE array that fits)",
                  fontsize=11)
    ax.set_ylabel("top-1 accuracy on digits (%)", fontsize=11)
    missing = len(runs) - len(plotted)
    ax.set_title("Accuracy vs accelerator cost" + (f" ({missing} run(s) without a synthesized accelerator not "
                                                   "shown)" if missing else ""), fontsize=12)
    ax.tick_params(labelsize=10)
    ax.grid(alpha=0.3, which="both")
    legends = [
        ("format", [Line2D([], [], color=f"C{i % 10}", marker="o", linestyle="", markersize=9, label=fmt)
                    for i, fmt in enumerate(formats)]),
        ("configuration", [Line2D([], [], color="gray", marker=_MARKERS[i % len(_MARKERS)], linestyle="",
                                  markersize=9, label=config) for i, config in enumerate(configs)]),
        ("accuracy", [Line2D([], [], color="gray", marker="o", markeredgecolor="black", linestyle="",
                             markersize=9, label="integer path (the hardware's)"),
                      Line2D([], [], color="gray", marker="o", markerfacecolor="white", linestyle="",
                             markersize=9, markeredgewidth=1.6, label="after QAT"),
                      Line2D([], [], color="black", linestyle="--", label=f"FP32 ({100 * float_accuracy:.1f} %)")]),
    ]
    top = 1.0
    for i, (title, handles) in enumerate(legends):
        legend = ax.legend(handles=handles, title=title, loc="upper left", bbox_to_anchor=(1.02, top), fontsize=10,
                           title_fontsize=10, frameon=False, borderaxespad=0)
        if i < len(legends) - 1:
            # each ax.legend replaces the last: keep the earlier ones as artists. add_artist clips them to the
            # Axes, and matplotlib leaves artists clipped to the Axes out of tight_layout and
            # bbox_inches="tight" (these lie outside, so they were cropped away): unclip them. The last stays
            # the Axes' own legend, unclipped; adding it too would draw it twice and clip it
            ax.add_artist(legend)
            legend.set_clip_on(False)
        top -= 0.07 + 0.045 * len(handles)
    fig.tight_layout()
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)


def _short_format(text):
    """A format's repr for a table: long lists (UNIQ's levels) elided."""
    return re.sub(r"\[[^\]]{24,}\]", "[…]", text)


def _layer_tables(runs):
    """report.md's per-layer section: a table per run of :func:`hwq.quant.analysis.analyse`."""
    lines = ["## Per-layer analysis", "",
             "Each layer's weights and input activations on 64 test images after PTQ: SQNR, and the mean squared "
             "error split into clipping (beyond the least/largest level × scale) and rounding (within them), "
             "AUSN's definitions (`hwq.formats.metrics`); BOPs per input sample. Per-channel weight scales are "
             "measured channel by channel. Histograms with the levels and the clipping range: `histograms/`.", ""]
    headers = ["layer", "weight format", "activation format", "W SQNR dB", "W clipping", "W rounding",
               "A SQNR dB", "A clipping", "A rounding", "kBOPs"]
    for r in runs:
        lines += [f"### {r['format']} w{r['w_bits']}a{r['a_bits']}", "",
                  "| " + " | ".join(headers) + " |", "|" + "|".join("---" if i < 3 else "---:"
                                                                  for i in range(len(headers))) + "|"]
        for layer in r["layers"]:
            w, a = layer["weights"], layer["activations"]
            lines.append("| " + " | ".join([
                layer["name"], f"`{_short_format(layer['weight_format'])}`",
                f"`{_short_format(layer['activation_format'])}`",
                f"{w['sqnr_db']:.1f}", f"{w['clipping']:.2e}", f"{w['rounding']:.2e}",
                f"{a['sqnr_db']:.1f}", f"{a['clipping']:.2e}", f"{a['rounding']:.2e}",
                f"{layer['bops'] / 1e3:.1f}"]) + " |")
        lines.append("")
    return "\n".join(lines)


def run(formats=None, configs=CONFIGS, *, out="build/quantize", epochs=30, qat_epochs=2, synth=True, jobs=None,
        seed=0, histograms=True, log=print, progress=False, accelerators=True, every_accelerator=False):
    """Run the worked example; returns the report dict. Checks every input before any work.

    ``log`` gets a line per step and the final table; ``progress=True`` shows progress bars (tqdm,
    on stderr) of the float training's epochs and of the format/configuration runs.
    ``accelerators`` builds and verifies each format's accelerator at one configuration
    (``every_accelerator``: at every one), synthesized with ``synth``
    (:func:`_accelerator_costs`).
    """
    from tqdm import tqdm
    from .quant.analysis import plot_histograms
    from .quant.digits import train_digits_cnn
    from .quant.train import evaluate
    formats = _formats(formats, log)
    check_int("epochs", epochs, 1, 10_000)
    check_int("qat_epochs", qat_epochs, 1, 10_000)
    if jobs is not None:
        check_int("jobs", jobs, 1, 1024)
    configs = [parse_config(c) for c in configs]
    if not configs:
        raise InputError("no configuration given; use e.g. --config w4a8")
    out = check_output_dir(out)
    for fmt in formats:
        for w_bits, a_bits in configs:
            check_pe(fmt, a_bits, w_bits)
    if synth:
        from .synth import SYNTH_TOOLS
        find_tools(*SYNTH_TOOLS)
    torch.manual_seed(seed)
    timing = {}
    model, data = _timed(timing, "train_float_s", lambda: train_digits_cnn(epochs=epochs, seed=seed,
                                                                           progress=progress))
    float_accuracy = evaluate(model, data[2], data[3])
    log(f"trained the digits CNN in {timing['train_float_s']:.1f} s: {100 * float_accuracy:.2f} % test accuracy")
    runs, weight_formats = [], []
    from .integer import export
    with staged_output(out) as stage, tqdm(total=len(formats) * len(configs), desc="format × config runs",
                                           unit="run", disable=not progress) as bar:
        for fmt in formats:
            for w_bits, a_bits in configs:
                bar.set_postfix_str(f"{fmt} w{w_bits}a{a_bits}")
                qmodel, integer, result = _quantize_run(model, data, fmt, w_bits, a_bits, qat_epochs, seed, progress)
                runs.append(result)
                result["export"] = f"exports/{fmt}_w{w_bits}a{a_bits}"
                export(integer, stage / result["export"])
                largest = max(qmodel.layers.values(), key=lambda layer: layer.layer.weight.numel())
                weight_formats.append(largest.weight_quantizer.format)
                log(f"{fmt} w{w_bits}a{a_bits}: PTQ {100 * result['ptq_accuracy']:.2f} %, "
                    f"QAT {100 * result['qat_accuracy']:.2f} % ({result['timing']})")
                if histograms:
                    (stage / "histograms").mkdir(exist_ok=True)
                    plot_histograms(qmodel, data[2][:256], stage / "histograms" / f"{fmt}_w{w_bits}a{a_bits}.png")
                bar.update()
        bar.close()
        save_npy(stage / TEST_IMAGES, data[2].numpy())
        failures = []
        if synth:
            failures = _pe_costs(runs, weight_formats, stage, out, jobs, log)
        if accelerators:
            start = time.perf_counter()
            failures += _accelerator_costs(runs, stage, out, synth, every_accelerator, log)
            timing["accelerators_s"] = time.perf_counter() - start
        if synth:
            _plot(runs, float_accuracy, stage / PLOT)
        table = _table(runs, float_accuracy)
        report = {"float_accuracy": float_accuracy, "timing": timing, "runs": runs}
        plot_link = f"![accuracy vs accelerator logic cells]({PLOT})\n\n" if synth else ""
        write_atomic(stage / "report.md", "# hwq worked example: digits CNN in every format\n\n" + table + "\n"
                     + plot_link + (_pe_table(runs) + "\n" if synth else "") + _layer_tables(runs))
        write_atomic(stage / "report.json", json.dumps(report, indent=2, default=float) + "\n")
    log(table)
    if failures:
        # the report is written (it names every failure); the exit status still says a tool failed
        what = "PE(s)" if all("module" in f for f in failures) else "PE(s) or accelerator(s)"
        raise ToolError(f"synthesis of {len(failures)} {what} failed: {failures[0]['error']}", failures[0].get("log"))
    return report


def _parser():
    parser = ArgumentParser(prog="hwq-quantize", description=__doc__.splitlines()[0])
    parser.add_argument("--format", action="append", dest="formats", metavar="NAME",
                        help="format (repeatable, or 'all'; default every format with a PE and a calibrator)")
    parser.add_argument("--config", action="append", dest="configs", metavar="wNaM",
                        help=f"weight/activation bits (repeatable; default {' '.join(CONFIGS)})")
    parser.add_argument("--out", default="build/quantize", metavar="DIR",
                        help="output directory, replaced as a whole on success (default build/quantize)")
    parser.add_argument("--epochs", type=positive_int, default=30, help="float training epochs (default 30)")
    parser.add_argument("--qat-epochs", type=positive_int, default=2, help="QAT epochs (default 2)")
    parser.add_argument("--no-synth", action="store_true", help="skip the PE and accelerator synthesis")
    parser.add_argument("--no-accel", action="store_true",
                        help="build no accelerator (default: each format's at w4a4, else the first --config)")
    parser.add_argument("--accel-all", action="store_true", help="build each format's accelerator at every --config")
    parser.add_argument("--jobs", type=positive_int, help="parallel synthesis jobs (default: one per CPU)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars, step lines or final table (errors still print)")
    return parser


def main(argv=None):
    """Command-line entry point; returns the exit status (:func:`hwq.cli.run_command`: 2 for bad
    input or a missing tool, 1 when a PE's synthesis failed; the report is written either way)."""
    def call():
        args = _parser().parse_args(argv)
        from tqdm import tqdm
        # tqdm.write prints a line above the progress bars instead of through them
        log = (lambda *_: None) if args.quiet else tqdm.write
        run(args.formats, args.configs or CONFIGS, out=Path(args.out), epochs=args.epochs,
            qat_epochs=args.qat_epochs, synth=not args.no_synth, jobs=args.jobs, log=log, progress=not args.quiet,
            accelerators=not args.no_accel, every_accelerator=args.accel_all)
    return run_command("hwq-quantize", call)


if __name__ == "__main__":
    sys.exit(main())
