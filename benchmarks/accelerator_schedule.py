"""Cycles, MACs per cycle and PE utilization of the digits CNN on the accelerator's PE array,
per layer and per array shape, from the schedule (:mod:`hwq.accel.schedule`).

Run with ``python benchmarks/accelerator_schedule.py`` (``--arrays 1x16 2x8 4x4``, ``--config
fxp8/fxp8``). Steps, each timed: train the digits CNN (scikit-learn's digits, offline), quantize
it, build its integer model, then schedule it on every array. The figures are the schedule's
steady-state counts (docs/accelerator.md, "Tiles"); the RTL adds a fixed overhead per step
(about 1 % of an inference, ``tests/accel/test_top.py`` measures it in simulation).
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hwq.accel.schedule import Array, schedule  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arrays", nargs="+", default=["1x16", "2x8", "4x4", "1x8"], help="PE arrays, ROWSxCOLS")
    parser.add_argument("--config", default="fxp8/fxp8", help="weights/activations (default fxp8/fxp8)")
    args = parser.parse_args(argv)
    arrays = [Array.parse(text) for text in args.arrays]
    weights, _, activations = args.config.partition("/")
    if not activations:
        parser.error("--config must be WEIGHTS/ACTIVATIONS, e.g. fxp8/fxp8")

    import torch

    from hwq.quant import quantize
    from hwq.quant.digits import train_digits_cnn
    from hwq.quant.integer import integer_model
    start = time.perf_counter()
    torch.manual_seed(0)
    model, (x_train, _, _, _) = train_digits_cnn(epochs=8, device="cpu")
    print(f"train: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imodel = integer_model(quantize(model, weights, activations, calibration=[x_train[:64]]))
    print(f"quantize: {time.perf_counter() - start:.1f} s", file=sys.stderr)

    print(f"## Digits CNN ({args.config}) on the PE array: schedule figures\n")
    print("| array | step | MACs | cycles | MACs/cycle | utilization |")
    print("|---|---|---|---|---|---|")
    for array in arrays:
        sched = schedule(imodel, (1, 8, 8), array)
        convs = [step for step in sched.steps if step.kind == "conv"]
        for step in convs:
            print(f"| {array} | {step.name} | {step.macs} | {step.cycles} | {step.macs / step.cycles:.2f} "
                  f"| {100 * sched.utilization([step]):.1f} % |")
        print(f"| {array} | **inference** | {sched.macs} | {sched.cycles} | {sched.macs / sched.cycles:.2f} "
              f"| {100 * sched.macs / (sched.cycles * array.pes):.1f} % |")
        print(f"| {array} | every layer but conv1 | | | | {100 * sched.utilization(convs[1:]):.1f} % |")


if __name__ == "__main__":
    main()
