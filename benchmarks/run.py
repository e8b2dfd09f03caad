"""Print hwq's speed on this machine: golden model, verification, and the whole build.

Run with ``python benchmarks/run.py`` (``--quick`` skips the cold-cache build). Figures:

* golden quantize throughput (``FixedPoint(8).quantize`` of 10 M float32 values, best of 3);
* golden accumulate throughput (the PE contract over 10 M cycles);
* exhaustive verification of the fxp 8x8 PE (every code pair, back to back) per simulator,
  build and run separately;
* ``python -m hwq.build`` wall time with a cold YoWASP/wasmtime cache and with a warm one.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hwq.formats import FixedPoint, accumulate  # noqa: E402
from hwq.pe import FixedPointPE, write_pe  # noqa: E402


def best_of(n, fn):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def golden(rows):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(10_000_000).astype(np.float32)
    fmt = FixedPoint(8, frac=5)
    seconds = best_of(3, lambda: fmt.quantize(x, 0.5))
    rows.append(("golden quantize, 10 M values (fxp8)", f"{seconds:.3f} s", f"{10 / seconds:.0f} M values/s"))
    a, w = FixedPoint(8, signed=False), FixedPoint(8)
    codes = rng.integers(0, 256, (2, 10_000_000))
    flags = rng.random((2, 10_000_000)) < 0.5
    seconds = best_of(3, lambda: accumulate(a, codes[0], w, codes[1], flags[0], flags[1]))
    rows.append(("golden accumulate, 10 M cycles (8x8)", f"{seconds:.3f} s", f"{10 / seconds:.0f} M cycles/s"))


def verification(rows, work):
    from hwq.sim.runner import available_simulators, run_bench
    write_pe(FixedPointPE.from_bits(8, 8), work / "pe")
    manifest = work / "pe" / "fxp_pe_a8_w8.json"
    for simulator in available_simulators():
        start = time.perf_counter()
        run_bench(manifest, simulator, work / f"sim-{simulator}", testcase="exhaustive")
        cold = time.perf_counter() - start
        start = time.perf_counter()
        run_bench(manifest, simulator, work / f"sim-{simulator}", testcase="exhaustive")
        warm = time.perf_counter() - start
        rows.append((f"exhaustive 8x8 (65,536 pairs), {simulator}", f"{cold:.1f} s first",
                     f"{warm:.1f} s rebuilt in place"))


def build_time(rows, work, cold):
    env = dict(os.environ)
    label = "warm cache"
    if cold:
        cache = work / "cold-cache"
        env.update(YOWASP_CACHE_DIR=str(cache / "yowasp"), XDG_CACHE_HOME=str(cache / "xdg"))
        label = "cold cache (YoWASP compiles its WebAssembly)"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hwq.build", "--out", str(work / f"out-{cold}")], check=True,
                   cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    rows.append((f"python -m hwq.build, {label}", f"{time.perf_counter() - start:.1f} s", ""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the cold-cache build")
    args = parser.parse_args()
    rows = [("machine", f"{os.cpu_count()} CPUs", sys.platform)]
    golden(rows)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        verification(rows, work)
        if not args.quick:
            build_time(rows, work, cold=True)
        build_time(rows, work, cold=False)
    width = max(len(r[0]) for r in rows)
    for name, value, extra in rows:
        print(f"{name:<{width}}  {value:>14}  {extra}")


if __name__ == "__main__":
    main()
