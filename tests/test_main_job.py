"""The README's main job, run as a new user runs it: every default PE, synthesized (slow suite).

``hwq-build`` with no option, from a directory outside the repository and with nothing activated
(the console script beside the interpreter, no PYTHONPATH), into a fresh ``rtl_out/``, with an
empty synthesis cache: every PE of every registered format at its default widths, fabric and DSP
mapping on the iCE40UP5K. A second run answers every job from the cache with identical reports.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hwq.build import plan_pes
from hwq.manifest import read_manifest
from hwq.pe import discard

pytestmark = pytest.mark.slow


def test_main_job_from_any_directory(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HWQ_CACHE_DIR"] = str(tmp_path / "cache")
    env["PATH"] = "/usr/bin:/bin"                         # nothing of the venv on PATH
    script = Path(sys.executable).parent / "hwq-build"
    work = tmp_path / "somewhere"
    work.mkdir()
    proc = subprocess.run([str(script)], cwd=work, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]

    out = work / "rtl_out"
    pes = plan_pes()
    modules = sorted(pe.module_name for pe in pes)
    discard(*pes)
    assert sorted(p.stem for p in out.glob("*.json") if p.name != "report.json") == modules
    for module in modules:
        read_manifest(out / f"{module}.json")             # schema, signedness, the Verilog's sha256
    rows = json.loads((out / "report.json").read_text())["results"]
    # every PE once in fabric and once with SB_MAC16s allowed, each with real figures
    assert sorted((r["module"], r["use_dsp"]) for r in rows) == sorted(
        (m, dsp) for m in modules for dsp in (False, True))
    for row in rows:
        assert row["target"] == "up5k" and row["lut4"] > 0 and row["fmax_mhz"] > 1, row
    assert all(module in proc.stdout for module in modules)

    reports = {name: (out / name).read_bytes() for name in ("report.json", "report.md")}
    again = subprocess.run([str(script), "--quiet"], cwd=work, env=env, capture_output=True, text=True,
                           check=False)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    assert {name: (out / name).read_bytes() for name in reports} == reports
    assert sorted(p.name for p in (out / "synth").rglob("*") if p.is_file()) == sorted(["CACHED", "netlist.v"] * len(rows))
