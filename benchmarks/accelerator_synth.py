"""The whole digits-CNN accelerator (hwq.accel.top.Accelerator) synthesized for the iCE40UP5K:
logic cells, LUT4, flip-flops, EBR, SPRAM, SB_MAC16, Fmax and whether it fits, per number format
and PE array.

Run with ``python benchmarks/accelerator_synth.py`` (``--configs fxp8/fxp8 ant4/ant4 ...``,
``--arrays 1x16 2x8``, ``--no-dsp``, ``--jobs 2``, ``--build build/accel_synth``,
``--no-cache``). Steps: train the digits CNN (offline), then per configuration quantize it,
build its integer model, schedule it (``banks=3`` and the activation memory in SPRAM when the
array has one row: ``banks * R`` single-port copies must fit the UP5K's four SPRAMs; else one
block-RAM memory), emit the Verilog (Amaranth) and run :func:`hwq.synth.synthesize_design`
(yosys ``synth_ice40 -dsp -spram`` and nextpnr, in a four-pin harness), several at once. The
synthesis cache (:mod:`hwq.synth.cache`) answers a design synthesized before.

Prints one Markdown table (a row per configuration, the times last) and, per configuration, the
cells of each block (the modules of the ``-noflatten`` synthesis). A configuration that does not
fit is a row with ``fits`` "no" and the shortfall.
"""

import argparse
import concurrent.futures
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hwq.accel.schedule import Array  # noqa: E402

#: (weights, activations) of the default run: every format at W8A8 and W4A4 (UNIQ's activations
#: are uniform: fxp)
FORMATS = ("fxp", "ant", "esb", "ausn", "uniq")
DEFAULT_RUNS = [(f"{f}{b}/{'fxp' if f == 'uniq' else f}{b}", "1x16") for b in (8, 4) for f in FORMATS] + \
    [("fxp8/fxp8", "2x8"), ("fxp8/fxp8", "1x8"), ("fxp4/fxp4", "2x8"), ("fxp4/fxp4", "1x8")]

#: SB_SPRAM256KA of the UP5K
SPRAMS = 4


def accelerator_verilog(imodel, array, path, *, banks=None):
    """Schedule ``imodel`` (the digits CNN, input 1x8x8) on ``array``, write the Accelerator's
    Verilog (top module ``accel``) to ``path``; return ``(schedule, accelerator)``.

    ``banks``: activation banks; None: 3 in SPRAM when ``3 * rows <= 4``, else one EBR memory.
    """
    from amaranth.back import verilog

    from hwq.accel.schedule import schedule
    from hwq.accel.top import Accelerator
    if banks is None:
        banks = 3 if 3 * array.rows <= SPRAMS else 1
    sched = schedule(imodel, (1, 8, 8), array, banks=banks)
    dut = Accelerator(sched)
    text = verilog.convert(dut, name="accel", emit_src=False)
    Path(path).write_text(text, encoding="utf-8")
    return sched, dut


def _row(label, array, r, sched):
    util = r["utilization"]
    fits = "yes" if r["fits"] else "no: " + ", ".join(f"{k} {u}/{a}" for k, (u, a) in r["overfull"].items())
    fmax = f"{r['fmax_mhz']:.1f}" if r["fmax_mhz"] else "-"
    when = "cached" if r["cached"] else f"{r['timing']['yosys_s']:.0f} + {r['timing']['nextpnr_s']:.0f}"
    weight_kbit = sched.weights.size * sched.weight_bits / 1024
    return (f"| {label} | {array} | {r['lcs']} / {util['lc']['available']} | {r['lut4']} | {r['ff']} | {r['carry']} "
            f"| {r['ebr']} | {r['spram']} | {r['dsp']} | {weight_kbit:.0f} | {fmax} | {fits} | {when} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", metavar="W/A@RxC", default=None,
                        help="configurations, e.g. fxp8/fxp8@1x16 (default: every format at W8A8 and W4A4 on "
                             "1x16, fxp also on 2x8 and 1x8)")
    parser.add_argument("--no-dsp", action="store_true", help="no SB_MAC16 (synth_ice40 without -dsp)")
    parser.add_argument("--jobs", type=int, default=2, help="synthesis jobs at once (default 2)")
    parser.add_argument("--build", default=str(ROOT / "build" / "accel_synth"), help="build directory")
    parser.add_argument("--no-cache", action="store_true", help="run the tools even for a cached design")
    parser.add_argument("--blocks", action="store_true", help="print each block's cells too")
    args = parser.parse_args(argv)
    runs = DEFAULT_RUNS if args.runs is None else [tuple(text.split("@")) for text in args.runs]

    import torch

    from hwq.quant import quantize
    from hwq.quant.digits import train_digits_cnn
    from hwq.quant.integer import integer_model
    from hwq.synth import synthesize_design
    build = Path(args.build)
    build.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    torch.manual_seed(0)
    model, (x_train, _, _, _) = train_digits_cnn(epochs=8, device="cpu")
    print(f"train: {time.perf_counter() - start:.1f} s", file=sys.stderr)

    designs, models = [], {}
    for config, array_text in runs:
        array = Array.parse(array_text)
        label = f"{config}@{array}"
        weights, _, activations = config.partition("/")
        start = time.perf_counter()
        try:
            if config not in models:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    models[config] = integer_model(quantize(model, weights, activations,
                                                            calibration=[x_train[:64]]))
            path = build / f"accel_{weights}_{activations}_{array}.v"
            sched, _ = accelerator_verilog(models[config], array, path)
        except Exception as exc:                                   # reported, the others go on
            print(f"{label}: not built: {type(exc).__name__}: {exc}", file=sys.stderr)
            designs.append((label, array, None, None, f"{type(exc).__name__}: {exc}"))
            continue
        print(f"{label}: Verilog in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        designs.append((label, array, path, sched, None))

    def synth(design):
        label, array, path, sched, error = design
        if error:
            return None
        return synthesize_design(path, "accel", build / label.replace("/", "_").replace("@", "_"),
                                 dsp=not args.no_dsp, spram=True, cache=not args.no_cache)

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(synth, designs))
    print(f"synthesis: {time.perf_counter() - start:.1f} s", file=sys.stderr)

    print(f"## Digits CNN accelerator on the iCE40UP5K ({'no DSP' if args.no_dsp else 'synth_ice40 -dsp -spram'})\n")
    print("| W/A | array | LCs | LUT4 | FF | carry | EBR | SPRAM | DSP | weights kbit | Fmax MHz | fits "
          "| yosys + nextpnr s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (label, array, _, sched, error), r in zip(designs, results):
        if r is None:
            print(f"| {label.split('@')[0]} | {array} | not built: {error} |")
        else:
            print(_row(label.split("@")[0], array, r, sched))
    if args.blocks:
        for (label, *_), r in zip(designs, results):
            if r is None:
                continue
            print(f"\n### {label}: cells per block (own cells of each module)\n")
            print("| block | LUT4 | carry | FF | EBR | DSP |")
            print("|---|---|---|---|---|---|")
            for name, c in sorted(r["modules"].items(), key=lambda item: -item[1]["lut4"]):
                if c["lut4"] or c["ram"] or c["dsp"]:
                    print(f"| {name or '(top)'} | {c['lut4']} | {c['carry']} | {c['ff']} | {c['ram']} | {c['dsp']} |")


if __name__ == "__main__":
    main()
