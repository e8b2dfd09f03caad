"""Time ANT's per-tensor type selection (hwq.formats.ant.calibrate_ant) on a model's weights.

Run with ``.venv/bin/python benchmarks/ant_type_selection.py`` (``--weights`` sets the size,
20 M by default). The weights are seeded and shaped like a transformer's: blocks of four
``512 x 512`` attention matrices (Q, K, V, output) and a ``2048 x 512`` / ``512 x 2048`` feed-forward
pair, repeated until the total is reached (the last matrix is cut short). Matrices alternate
between Gaussian and Laplace entries, every output channel has its own spread (log-normal), and
they are float32 like a PyTorch ``state_dict``.

Each matrix is calibrated the way the front end does it for weights: ``role="weight"``,
``per_channel=True`` (one scale per output channel, axis 0), the default candidates int, flint and
PoT (PoT drops out at 8 bits). The script prints, per width, the wall time, the weights per
second, how often each type won, and a digest of every choice (types and scales, bit for bit), so
two runs -- e.g. before and after a change of the search -- can be compared for identical results.
It also prints the machine's core count and load average, and the CPU time beside the wall time:
the figures are only meaningful with them (on a busy machine the wall time grows, the CPU time
much less).
"""

import argparse
import collections
import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hwq.formats.ant import calibrate_ant  # noqa: E402

#: one transformer block (d_model 512, feed-forward 2048): Q, K, V, output, FFN up, FFN down
BLOCK = [(512, 512)] * 4 + [(2048, 512), (512, 2048)]


def build_weights(total, seed=0):
    """Seeded float32 matrices of :data:`BLOCK` shapes, ``total`` entries in all.

    Parameters
    ----------
    total : int
        Number of weights.
    seed : int
        Seed of :func:`numpy.random.default_rng`.

    Returns
    -------
    list of numpy.ndarray
        2-D float32 matrices, output channels on axis 0.
    """
    rng = np.random.default_rng(seed)
    matrices, left, j = [], int(total), 0
    while left > 0:
        rows, cols = BLOCK[j % len(BLOCK)]
        if rows * cols > left:                       # the last matrix: cut short
            rows, cols = (left // cols, cols) if left >= cols else (1, left)
        draw = rng.standard_normal if j % 2 == 0 else rng.laplace
        spread = rng.lognormal(0.0, 0.3, size=(rows, 1))
        matrices.append((0.02 * spread * draw(size=(rows, cols))).astype(np.float32))
        left -= rows * cols
        j += 1
    return matrices


def run(matrices, bits):
    """Calibrate every matrix at ``bits`` bits.

    Returns
    -------
    seconds : float
        Wall time of all the calls.
    cpu : float
        CPU time of this process over the calls (all threads).
    wins : collections.Counter
        How many matrices chose each type.
    digest : str
        SHA-256 (first 16 hex digits) of every chosen type and scale.
    """
    sha = hashlib.sha256()
    wins = collections.Counter()
    seconds = cpu = 0.0
    for w in matrices:
        start, start_cpu = time.perf_counter(), time.process_time()
        result = calibrate_ant(w, bits, role="weight", per_channel=True, options={})
        seconds += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        wins[result.format.type] += 1
        sha.update(result.format.type.encode())
        sha.update(np.ascontiguousarray(result.scale, dtype=np.float64).tobytes())
    return seconds, cpu, wins, sha.hexdigest()[:16]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=int, default=20_000_000, help="number of weights (default: 20,000,000)")
    parser.add_argument("--bits", type=int, nargs="+", default=[4, 8], help="widths to time (default: 4 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights (default: 0)")
    args = parser.parse_args()
    if args.weights < 1:
        parser.error("--weights must be at least 1")
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:                           # not on Linux
        usable = os.cpu_count()
    matrices = build_weights(args.weights, args.seed)
    n = sum(w.size for w in matrices)
    rows = sum(w.shape[0] for w in matrices)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(f"machine: {os.cpu_count()} cores ({usable} usable by this process), load average {load}, "
          f"numpy {np.__version__}")
    print(f"weights: {n:,} in {len(matrices)} matrices, {rows:,} output channels (per-channel scales)")
    for bits in args.bits:
        seconds, cpu, wins, digest = run(matrices, bits)
        types = ", ".join(f"{t} {c}" for t, c in sorted(wins.items()))
        print(f"ant{bits}: {seconds:8.2f} s wall ({cpu:.2f} s CPU)  {n / seconds / 1e6:6.2f} M weights/s  "
              f"types chosen: {types}  digest {digest}")


if __name__ == "__main__":
    main()
