"""Points per minute of a design-space sweep: a serial loop against Dask LocalClusters of 1, 2, ...
workers, on the same points (issue 14's benchmark).

Run with ``python benchmarks/explore_scaling.py`` (``--formats fxp ausn``, ``--bits w4a4 w8a8``,
``--arrays 1x2 1x4``, ``--workers 1 2``, ``--skip-serial``). Steps, each timed: train the digits
CNN, then the same space three ways, with no result cache and an empty synthesis cache per run
(every point runs yosys and nextpnr):

- *serial*: :func:`hwq.explore.tasks.accuracy_task` per pair and
  :func:`hwq.explore.tasks.build_task` per point, one after the other in this process;
- *LocalCluster, N workers*: :func:`hwq.explore.sweep` on ``N`` single-threaded worker
  processes, for each ``--workers`` value.

Prints one line per run: wall time, points per minute and the speed-up over the serial loop,
and checks that every run gives the same figures for every point (logic cells, Fmax, cycles):
the scheduler changes when a point runs, never what it computes.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hwq.explore import Space, sweep  # noqa: E402
from hwq.explore.cluster import connect  # noqa: E402
from hwq.explore.tasks import accuracy_task, build_task  # noqa: E402

FIGURES = ("status", "lcs", "fmax_mhz", "cycles")


def serial(model, data, space):
    """Every pair, then every point, in this process; returns ``{point name: figures}``."""
    accuracy = {key: accuracy_task(model, data, *key) for key in space.accuracy_keys()}
    return {p.name: build_task(accuracy[p.accuracy_key], p, target=space.target) for p in space.points()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--formats", nargs="+", default=["fxp", "ausn"])
    parser.add_argument("--bits", nargs="+", default=["w4a4", "w8a8"])
    parser.add_argument("--arrays", nargs="+", default=["1x2", "1x4"])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--skip-serial", action="store_true", help="only the LocalCluster runs")
    args = parser.parse_args(argv)
    import torch

    from hwq.quant.digits import train_digits_cnn
    start = time.perf_counter()
    torch.manual_seed(0)
    model, (x_train, _, x_test, y_test) = train_digits_cnn(epochs=15, device="cpu")
    data = {"calibration": x_train[:64].numpy(), "x": x_test.numpy(), "y": y_test.numpy()}
    print(f"train: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    space = Space(formats=tuple(args.formats), bits=tuple(args.bits), arrays=tuple(args.arrays))
    n = len(space)
    runs = {}
    scratch = tempfile.TemporaryDirectory(prefix="hwq-explore-scaling-")   # removed at exit, failed or not
    if not args.skip_serial:
        # every run gets an empty synthesis cache ($HWQ_CACHE_DIR, inherited by the workers it
        # starts): otherwise a run after the first, or after any earlier sweep, reads its
        # syntheses from the cache instead of running yosys and nextpnr
        os.environ["HWQ_CACHE_DIR"] = os.path.join(scratch.name, "serial")
        start = time.perf_counter()
        runs["serial"] = (time.perf_counter() - start, serial(model, data, space))
        runs["serial"] = (time.perf_counter() - start, runs["serial"][1])
    for workers in args.workers:
        os.environ["HWQ_CACHE_DIR"] = os.path.join(scratch.name, f"workers{workers}")
        start = time.perf_counter()
        with connect(workers=workers) as client:
            result = sweep(model, data, space, client=client, cache=None, progress=False, log=lambda *_: None)
        runs[f"LocalCluster, {workers} worker(s)"] = (time.perf_counter() - start,
                                                      {p["name"]: p for p in result["points"]})
    base = runs.get("serial", next(iter(runs.values())))[0]
    print(f"| run | wall s | points/min | speed-up over {'serial' if 'serial' in runs else 'the first run'} |")
    print("|---|---:|---:|---:|")
    for name, (seconds, _) in runs.items():
        print(f"| {name} | {seconds:.0f} | {60 * n / seconds:.2f} | {base / seconds:.2f} |")
    reference = next(iter(runs.values()))[1]
    for name, (_, points) in runs.items():
        for point, figures in reference.items():
            same = all(points[point].get(k) == figures.get(k) for k in FIGURES)
            if not same:
                print(f"MISMATCH {name} {point}: {[points[point].get(k) for k in FIGURES]} != "
                      f"{[figures.get(k) for k in FIGURES]}", file=sys.stderr)
                raise SystemExit(1)
    print(f"{n} points, same figures in every run", file=sys.stderr)


if __name__ == "__main__":
    main()
