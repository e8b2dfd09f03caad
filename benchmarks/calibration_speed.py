"""Time every format's calibrator (``hwq.formats.CALIBRATORS``) on activations and on weights.

Run with ``.venv/bin/python benchmarks/calibration_speed.py`` (``--activations`` and ``--weights``
set the sizes, 1 M and 20 M by default; ``--bits`` the widths, 4 and 8; ``--formats`` a subset).
The tensors are seeded:

* activations: one tensor of ReLU outputs (the positive part of a standard normal, so about half
  zeros), calibrated as the front end does it for an activation: ``role="activation"``, one scale
  per tensor, unsigned;
* weights: one tensor of ``--weights`` values shaped ``(rows, 512)``, Laplace entries with a
  log-normal spread per output channel, float32 like a PyTorch ``state_dict``, calibrated with
  ``role="weight"`` and ``per_channel=False`` (one scale per tensor: AUSN's own layer-wise search
  on every value) unless ``--per-channel`` is given.

Each line is a format and a width with the wall time and the CPU time of one call (after one
warm-up call on a small tensor of the same kind, which builds the per-width tables a format
caches, e.g. AUSN's candidate superpositions). The machine's core count and load average are
printed first: the figures are only meaningful with them (on a busy machine the wall time grows,
the CPU time much less). Reference: AUSN's layer-wise search encoded the tensor once per candidate
superposition (2926 unsigned 8-bit candidates); on 10**6 activations that took minutes.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hwq.errors import InputError  # noqa: E402
from hwq.formats import CALIBRATORS, FORMATS, calibrate_tensor  # noqa: E402


def activations(size, seed=0):
    """ReLU outputs: ``max(N(0, 1), 0)``, ``size`` values (float32)."""
    return np.maximum(np.random.default_rng(seed).standard_normal(size), 0.0).astype(np.float32)


def weights(size, seed=1, columns=512):
    """``(rows, columns)`` float32 Laplace weights with a log-normal spread per row, ``size`` values
    (the last row cut short by trimming ``size`` to whole rows, at least one)."""
    rng = np.random.default_rng(seed)
    rows = max(1, size // columns)
    spread = np.exp(rng.normal(0.0, 0.5, rows)).astype(np.float32)[:, None]
    return (rng.laplace(size=(rows, columns)).astype(np.float32) * 0.02 * spread)


def timed(name, x, bits, **kwargs):
    """``(wall seconds, CPU seconds, calibration)`` of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = calibrate_tensor(name, x, bits, **kwargs)
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activations", type=int, default=1_000_000, help="activation values (default 1 M)")
    parser.add_argument("--weights", type=int, default=20_000_000, help="weight values (default 20 M)")
    parser.add_argument("--bits", type=int, nargs="+", default=[4, 8], help="code widths (default 4 8)")
    parser.add_argument("--formats", nargs="+", default=sorted(CALIBRATORS), help="formats (default: all)")
    parser.add_argument("--per-channel", action="store_true", help="per-channel weight scales")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.formats) - set(CALIBRATORS))
    if unknown:
        parser.error(f"unknown format(s) {', '.join(unknown)}; known: {', '.join(sorted(CALIBRATORS))}")
    if args.activations < 1 or args.weights < 1:
        parser.error("--activations and --weights must be positive")
    print(f"cores: {os.cpu_count()}, load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    tensors = {"activations": (activations(args.activations), dict(role="activation")),
               "weights": (weights(args.weights), dict(role="weight", per_channel=args.per_channel))}
    warm = {"activations": activations(1000, seed=2), "weights": weights(1024, seed=3)}
    print(f"activations: {tensors['activations'][0].size:,} ReLU outputs, per tensor; weights: "
          f"{tensors['weights'][0].size:,} in {tensors['weights'][0].shape}, "
          f"{'per channel' if args.per_channel else 'per tensor'}")
    print(f"{'format':8s} {'bits':>4s} {'tensor':12s} {'wall s':>8s} {'cpu s':>8s}  chosen")
    for name in args.formats:
        low, high = FORMATS[name].bit_range
        for bits in args.bits:
            if not low <= bits <= high:
                print(f"{name:8s} {bits:4d} {'':12s} {'-':>8s} {'-':>8s}  (widths {low} to {high})")
                continue
            for kind, (x, kwargs) in tensors.items():
                try:
                    calibrate_tensor(name, warm[kind], bits, **kwargs)
                except InputError as exc:                 # e.g. UNIQ calibrates weights only
                    print(f"{name:8s} {bits:4d} {kind:12s} {'-':>8s} {'-':>8s}  ({exc})")
                    continue
                wall, cpu, result = timed(name, x, bits, **kwargs)
                chosen = repr(result.format)
                chosen = chosen if len(chosen) <= 90 else chosen[:87] + "..."
                print(f"{name:8s} {bits:4d} {kind:12s} {wall:8.2f} {cpu:8.2f}  {chosen}", flush=True)


if __name__ == "__main__":
    main()
