"""Time the main job, ``python -m hwq.build``, with a cold and a warm synthesis cache.

Usage (from the repository root)::

    .venv/bin/python benchmarks/main_job.py              # 3 rounds
    .venv/bin/python benchmarks/main_job.py --runs 1 -- --format fxp

Each round runs ``<python> -m hwq.build --out <tmp>/out <extra args>`` twice: first with a fresh,
empty ``$HWQ_CACHE_DIR`` (cold: every job runs yosys and nextpnr), then again with the cache that
run filled (warm). YoWASP's own cache of compiled WebAssembly (``~/.cache/YoWASP``) is left alone:
it is warm after the first tool run on a machine, as in the issue's baseline. The script prints
every wall time with hwq.build's own emit / synthesis split and cache hits, the median of the cold
and of the warm runs, the machine's CPU count and load average (the figures are only as quiet as
the machine), and checks that the warm run wrote the same ``report.json`` as the cold one.

The runs use a copy of ``hwq/`` taken at the start (``python -m`` from the copy's directory), so
that edits to the working tree during the benchmark (which change the cache key: it holds the
hwq/synth source) do not turn a warm run into a cold one; ``--live`` runs the working tree.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_build(python, src, out, cache, extra):
    """``(wall seconds, what hwq.build said about its steps)`` of one run into ``out``."""
    env = {**os.environ, "HWQ_CACHE_DIR": str(cache)}
    start = time.perf_counter()
    proc = subprocess.run([python, "-m", "hwq.build", "--out", str(out), *extra], cwd=src, env=env,
                          capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"main_job: hwq.build failed (exit {proc.returncode}):\n{proc.stderr}")
    emit = re.search(r"emitted (\d+) PE\(s\) in ([\d.]+) s", proc.stdout)
    synth = re.search(r"synthesized (\d+) job\(s\) in ([\d.]+) s \((\d+) from the cache", proc.stdout)
    steps = []
    if emit:
        steps.append(f"emit {float(emit[2]):5.1f} s")
    if synth:
        steps.append(f"synth {float(synth[2]):5.1f} s, {synth[3]}/{synth[1]} cached")
    return seconds, ", ".join(steps)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="rounds of one cold and one warm run (default 3)")
    parser.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"),
                        help="interpreter that runs hwq.build (default .venv/bin/python)")
    parser.add_argument("--live", action="store_true", help="run the working tree, not a copy of hwq/")
    parser.add_argument("extra", nargs="*", help="more hwq.build arguments, after --")
    args = parser.parse_args()
    cold, warm = [], []
    print(f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} before the runs",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="hwq-main-job.") as tmp:
        tmp = Path(tmp)
        src = ROOT
        if not args.live:
            src = tmp / "src"
            shutil.copytree(ROOT / "hwq", src / "hwq", ignore=shutil.ignore_patterns("__pycache__"))
        for i in range(args.runs):
            cache, out = tmp / f"cache{i}", tmp / "out"
            seconds, cold_steps = run_build(args.python, src, out, cache, args.extra)
            cold.append(seconds)
            report = (out / "report.json").read_bytes() if (out / "report.json").exists() else None
            seconds, warm_steps = run_build(args.python, src, out, cache, args.extra)
            warm.append(seconds)
            same = report == ((out / "report.json").read_bytes() if report is not None else None)
            print(f"round {i + 1}: cold {cold[-1]:6.1f} s ({cold_steps})   warm {warm[-1]:5.1f} s ({warm_steps})   "
                  f"report.json {'identical' if same else 'DIFFERS'}   load {os.getloadavg()[0]:.2f}", flush=True)
            if not same:
                sys.exit("main_job: the warm run's report.json differs from the cold run's")
    print(f"median of {args.runs}: cold cache {statistics.median(cold):.1f} s, "
          f"warm cache {statistics.median(warm):.1f} s")


if __name__ == "__main__":
    main()
