"""``hwq-explore`` (``python -m hwq.explore``): sweep format x bits x PE array for the digits CNN on Dask, and write
the table of every point, the Pareto fronts and their plots.

Steps, each timed: check every argument (one clear error, nothing written), connect to Dask (a
``LocalCluster`` of one single-threaded process per CPU, or ``--scheduler tcp://HOST:PORT``),
train the digits CNN (scikit-learn's digits, offline; seeded, single-threaded: the same weights
on every machine), run the sweep (:func:`hwq.explore.sweep`: accuracy once per format x bits,
then every point's accelerator synthesized in the workers, results cached in ``--cache`` as they
arrive), then write ``--out`` as a whole (:func:`hwq.fileio.staged_output`): ``points.json``,
``points.csv``, ``points.md``, ``pareto.md``, ``cheapest.md`` and the plots
(:mod:`hwq.explore.report`). docs/explore.md has the details.
"""

import argparse
import sys
import time
from pathlib import Path

from ..cli import ArgumentParser, non_negative_int, positive_int, run_command
from ..errors import InputError
from .space import DEFAULT_SPACE, MAPPINGS, TARGETS, Space

__all__ = ["main", "parse_loss"]

#: the float model's training epochs (the worked example's)
DEFAULT_EPOCHS = 15
#: post-training quantization's calibration samples (from the training set)
DEFAULT_CALIBRATION = 64


def parse_loss(text):
    """A tolerated accuracy loss: ``"0.5%"`` or a fraction ``"0.005"``, as a fraction in [0, 1]."""
    text = str(text).strip()
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a loss such as 0.5% or 0.005, not {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a loss between 0 and 100 %, not {text!r}")
    return value


def _parser():
    parser = ArgumentParser(prog="hwq-explore", description=" ".join(__doc__.split("\n\n")[0].split()))
    space = parser.add_argument_group("the space (every combination)")
    space.add_argument("--formats", nargs="+", default=list(DEFAULT_SPACE["formats"]), metavar="NAME",
                       help=f"formats (default {' '.join(DEFAULT_SPACE['formats'])})")
    space.add_argument("--bits", nargs="+", default=list(DEFAULT_SPACE["bits"]), metavar="wNaM",
                       help=f"weight/activation widths (default {' '.join(DEFAULT_SPACE['bits'])})")
    space.add_argument("--arrays", nargs="+", default=list(DEFAULT_SPACE["arrays"]), metavar="RxC",
                       help=f"PE arrays, rows x columns (default {' '.join(DEFAULT_SPACE['arrays'])})")
    space.add_argument("--mappings", nargs="+", default=["auto"], choices=MAPPINGS,
                       help="products in SB_MAC16 where they fit (auto, default), in LUTs (fabric) or in SB_MAC16 "
                            "(dsp)")
    space.add_argument("--seeds", nargs="+", type=non_negative_int, default=[1], metavar="N",
                       help="nextpnr placer seeds (default 1)")
    space.add_argument("--pipelines", nargs="+", type=non_negative_int, default=[0], metavar="N",
                       help="the PE array's product register stages (default 0)")
    space.add_argument("--target", default="up5k", choices=TARGETS, help="iCE40 part (default up5k)")
    model = parser.add_argument_group("the model (the digits CNN)")
    model.add_argument("--epochs", type=positive_int, default=DEFAULT_EPOCHS,
                       help=f"float training epochs (default {DEFAULT_EPOCHS})")
    model.add_argument("--calibration", type=positive_int, default=DEFAULT_CALIBRATION,
                       help=f"training samples for post-training quantization (default {DEFAULT_CALIBRATION})")
    model.add_argument("--qat-epochs", type=non_negative_int, default=0, metavar="N",
                       help="epochs of quantization-aware training per format x bits (default 0: post-training "
                            "quantization only)")
    model.add_argument("--verify", type=non_negative_int, default=0,
                       help="test images run bit-exact on each point's RTL, cycles measured (default 0: the "
                            "schedule's cycles)")
    model.add_argument("--netlist", type=non_negative_int, default=0,
                       help="test images run on each point's synthesized netlist: activity-based energy "
                            "(default 0: first-order energy)")
    out = parser.add_argument_group("results")
    out.add_argument("--out", default="explore_out", help="output directory, replaced as a whole (default "
                                                          "explore_out)")
    out.add_argument("--max-loss", type=parse_loss, default=0.005, metavar="LOSS",
                     help="per format, the cheapest point within LOSS of FP32 accuracy (default 0.5%%)")
    out.add_argument("--cache", metavar="DIR",
                     help="result cache (default: hwq's cache directory, $HWQ_CACHE_DIR or ~/.cache/hwq)")
    out.add_argument("--no-cache", action="store_true", help="run every point (and cache nothing)")
    out.add_argument("--no-plots", action="store_true", help="no matplotlib plots")
    out.add_argument("--quiet", action="store_true", help="print nothing but errors (no progress bar)")
    dask = parser.add_argument_group("Dask")
    dask.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                      help="an existing Dask scheduler (default: a LocalCluster on this machine)")
    dask.add_argument("--workers", type=positive_int,
                      help="LocalCluster worker processes (default: one per CPU)")
    return parser


def run(args, log=print):
    """Run the command for parsed ``args``; return the sweep's result and the report summary."""
    from ..fileio import check_output_dir, staged_output
    from ..synth.cache import default_cache_dir
    from .cache import ExploreCache
    from .cluster import connect
    from .report import summary_text, write_report
    from .sweep import sweep
    timing = {}
    start = time.perf_counter()
    space = Space(formats=tuple(args.formats), bits=tuple(args.bits), arrays=tuple(args.arrays),
                  mappings=tuple(args.mappings), seeds=tuple(args.seeds), pipelines=tuple(args.pipelines),
                  target=args.target)
    out = check_output_dir(Path(args.out))
    cache = None if args.no_cache else ExploreCache(Path(args.cache) if args.cache else default_cache_dir())
    with connect(args.scheduler, args.workers) as client:
        timing["connect_s"] = time.perf_counter() - start
        t = time.perf_counter()
        import torch

        from ..quant.digits import train_digits_cnn
        torch.manual_seed(0)
        model, (x_train, y_train, x_test, y_test) = train_digits_cnn(epochs=args.epochs, device="cpu")
        timing["train_s"] = time.perf_counter() - t
        log(f"trained the digits CNN ({args.epochs} epochs) in {timing['train_s']:.1f} s")
        data = {"calibration": x_train[:args.calibration].numpy(), "x": x_test.numpy(), "y": y_test.numpy()}
        if args.qat_epochs:
            data.update(train_x=x_train.numpy(), train_y=y_train.numpy())
        t = time.perf_counter()
        result = sweep(model, data, space, client=client, cache=cache, verify=args.verify, netlist=args.netlist,
                       qat_epochs=args.qat_epochs, progress=not args.quiet, log=log)
        timing["sweep_s"] = time.perf_counter() - t
    t = time.perf_counter()
    with staged_output(out) as stage:
        summary = write_report(result, stage, max_loss=args.max_loss, plots=not args.no_plots)
    timing["report_s"] = time.perf_counter() - t
    timing["total_s"] = time.perf_counter() - start
    log(summary_text(result, summary))
    log("time: " + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in timing.items()) + f"; wrote {out}/")
    return result, summary


def main(argv=None):
    """Command-line entry point; returns the exit status (2 for bad input, with one line naming it)."""
    def call():
        args = _parser().parse_args(argv)
        if args.no_cache and args.cache:
            raise InputError("--cache and --no-cache: give one of them")
        from tqdm import tqdm
        run(args, log=(lambda *_: None) if args.quiet else tqdm.write)
    return run_command("hwq-explore", call)


if __name__ == "__main__":
    sys.exit(main())
