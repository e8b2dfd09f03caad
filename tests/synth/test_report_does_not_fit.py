"""A PE too big for the part is a result, not a failure: hwq.synth.flow returns it with ``fits:
false`` and the rest of the batch goes on, and hwq-build's row and report.json say ``does not fit:
N of 5280 logic cells`` (issue 13). The figures here are written by hand (7330 is what nextpnr's
packer counted for the 8-bit loadable UNIQ PE with its table in registers), and yosys and nextpnr
are stubbed."""

import json
import re

import pytest

import hwq.build
import hwq.synth
from hwq.pe import FixedPointPE, UniqPE
from hwq.synth import SynthJob, flow, format_table, report_json, report_markdown, synthesize_all
from hwq.synth.nextpnr import DoesNotFit, log_utilization, overfull
from hwq.synth.report import progress_line

from .conftest import A4, A8

TEXT = "does not fit: 7330 of 5280 logic cells"

NEXTPNR_LOG = ("Info: Device utilisation:\n"
               "Info: \t         ICESTORM_LC:    7330/   5280   138%\n"
               "Info: \t        ICESTORM_RAM:       0/     30     0%\n"
               "Info: \t               SB_IO:       4/     39    10%\n"
               "Info: \t        ICESTORM_DSP:       0/      8     0%\n"
               "Info: \t      ICESTORM_SPRAM:       0/      4     0%\n"
               "ERROR: Unable to place cell 'pe.table.level_LC', no BELs remaining to implement cell type "
               "'ICESTORM_LC'\n")


def fitting(module, fmt, bits):
    """A hand-written result of a PE that fits."""
    return {"module": module, "format": fmt, "a_bits": bits, "w_bits": bits, "acc_bits": 20, "target": "up5k",
            "part": "iCE40UP5K-SG48", "use_dsp": False, "freq_target_mhz": 48.0, "seed": 1, "lut4": 100,
            "carry": 10, "ff": 30, "dsp": 0, "ram": 0, "harness": {}, "total": {}, "submodules": {}, "lcs": 180,
            "utilization": {"lc": {"used": 180, "available": 5280}}, "fmax_mhz": 40.0, "fmax_dsp_path_mhz": None,
            "power": None, "power_mw_12mhz": 1.0, "power_mw_fmax": 2.0, "notes": [],
            "timing": {"yosys_s": 1.0, "nextpnr_s": 1.0, "wall_s": 2.0}, "cached": False}


def not_fitting():
    """A hand-written result of the 8-bit loadable UNIQ PE with its table in registers."""
    result = fitting("uniq_pe_a8_w8_load_fabric", "uniq", 8)
    result.update(lut4=6700, ff=3140, lcs=7330, fmax_mhz=None, power_mw_12mhz=None, power_mw_fmax=None,
                  utilization={"lc": {"used": 7330, "available": 5280}}, fits=False, overfull={"lc": [7330, 5280]},
                  notes=[TEXT])
    return result


def test_report_files_and_table_say_does_not_fit_with_the_figures():
    results = [fitting("fxp_pe_a8_w8", "fxp", 8), not_fitting()]
    table = format_table(results, timing=True)
    row = next(line for line in table.splitlines() if line.startswith("uniq_pe_a8_w8_load_fabric"))
    assert TEXT in row and "failed" not in table
    assert re.search(r"\b40\.00\b", table) and "180" in table              # the PE that fits keeps its figures
    md = report_markdown(results)
    row = next(line for line in md.splitlines() if line.startswith("| uniq_pe_a8_w8_load_fabric "))
    assert TEXT in row and row.split(" | ")[9] == "-"                        # no Fmax
    assert f"- {TEXT} (`uniq_pe_a8_w8_load_fabric` up5k)" in md
    data = json.loads(report_json(results))
    entry = data["results"][1]
    assert entry["fits"] is False and entry["overfull"] == {"lc": [7330, 5280]} and entry["notes"] == [TEXT]
    assert entry["fmax_mhz"] is None and entry["gops_per_klut4"] is None
    assert "fits" not in data["results"][0]
    assert progress_line(not_fitting(), 2, 2) == f"[2/2] uniq_pe_a8_w8_load_fabric up5k  2.0 s  {TEXT}"


def test_two_resources_over_capacity_are_both_named():
    result = not_fitting()
    result["overfull"] = {"lc": [7330, 5280], "dsp": [9, 8]}
    assert "does not fit: 7330 of 5280 logic cells, 9 of 8 SB_MAC16" in format_table([result])


def test_build_keeps_going_past_a_pe_that_does_not_fit(tmp_path, monkeypatch):
    """hwq-build with synthesis stubbed: the middle job comes back as synthesize_all returns a
    PE too big for the part (``fits: false``, its nextpnr log in the job's directory). The build
    runs one batch, exits normally, the other jobs keep their results, the reports say it does
    not fit."""
    pes = [FixedPointPE.from_bits(4, 4), UniqPE.from_bits(4, 4, loadable=True), UniqPE.from_bits(4, 2)]
    monkeypatch.setattr(hwq.build, "plan_pes", lambda *args, **kwargs: pes)
    monkeypatch.setattr(hwq.build, "find_tools", lambda *tools: {})
    calls = []
    stopped = "uniq_pe_a4_w4_load"

    def fake_synthesize_all(specs, build_dir, *, jobs=None, cache=None, progress=None):
        calls.append(([job.manifest.stem for job in specs], progress))
        results = []
        for job in specs:
            module = job.manifest.stem
            if module == stopped:
                log = build_dir / f"{module}-up5k-f48-s1" / "nextpnr" / "nextpnr.log"   # hwq.synth.flow's job directory
                log.parent.mkdir(parents=True)
                log.write_text(NEXTPNR_LOG)
                result = not_fitting()
                result.update(module=module, a_bits=4, w_bits=4, carry=40)
            else:
                result = fitting(module, module.split("_")[0], 4)
            results.append(result)
        return results

    monkeypatch.setattr(hwq.synth, "synthesize_all", fake_synthesize_all)
    messages = []
    out = tmp_path / "out"
    run = hwq.build.build(["all"], out=out, mapping="fabric", cache=None, log=messages.append)
    modules = ["fxp_pe_a4_w4", stopped, pes[2].module_name]
    assert calls == [(modules, True)]          # one batch, with the progress bar and lines; nothing runs twice
    assert [r["module"] for r in run["results"]] == modules
    big = run["results"][1]
    assert big["fits"] is False and big["lcs"] == 7330 and big["overfull"] == {"lc": [7330, 5280]}
    assert big["notes"] == [TEXT]
    data = json.loads((out / "report.json").read_text())
    assert data["results"][1]["notes"] == [TEXT] and data["results"][1]["fits"] is False
    assert "fits" not in data["results"][0] and data["results"][2]["lcs"] == 180
    assert TEXT in (out / "report.md").read_text()
    assert any(TEXT in m and stopped in m for m in messages)
    table = next(m for m in messages if m.startswith("module"))
    assert TEXT in next(line for line in table.splitlines() if line.startswith(stopped))
    assert (out / "synth" / f"{stopped}-up5k-f48-s1" / "nextpnr" / "nextpnr.log").is_file()   # its log is kept


#: a nextpnr ``--report`` of a design that fits (what hwq.synth.nextpnr.parse_report reads)
FITTING_REPORT = {
    "fmax": {"clk$SB_IO_IN_$glb_clk": {"achieved": 61.234, "constraint": 48.0}},
    "utilization": {"ICESTORM_LC": {"used": 180, "available": 5280}, "ICESTORM_RAM": {"used": 0, "available": 30},
                    "SB_IO": {"used": 4, "available": 39}, "ICESTORM_DSP": {"used": 0, "available": 8},
                    "ICESTORM_SPRAM": {"used": 0, "available": 4}},
    "critical_paths": [],
}


def test_a_pe_too_big_is_a_result_of_the_flow_and_the_batch_goes_on(emitted, tmp_path, monkeypatch):
    """hwq.synth.flow with yosys and nextpnr stubbed: nextpnr stops the middle job with
    DoesNotFit, as the real one does. That job's result has fits False, the PE's cells from yosys,
    the utilisation from nextpnr's log and the does-not-fit note; the other jobs of the batch
    complete, each job runs once, and a rerun with the cache runs no tool and gives the same results."""
    too_big = flow.job_dirname(A8, "up5k", False, 48.0, 1)
    ran = []

    def fake_yosys(yosys, sources, top, work_dir, *, device, dsp, spram=False):
        (work_dir / "netlist.v").write_text("// the stub's netlist\n")
        stat = {"design": {"num_cells_by_type": {"SB_LUT4": 6702, "SB_DFF": 3150, "SB_CARRY": 40}},
                "modules": {f"\\{top}": {"num_cells_by_type": {"SB_LUT4": 2, "SB_DFF": 10}}}}
        return {"netlist": work_dir / "netlist.json", "stat": stat, "seconds": 0.5}

    def fake_nextpnr(nextpnr, netlist, target, work_dir, *, freq_mhz, seed):
        work_dir.mkdir()
        ran.append(work_dir.parent.name)
        log = work_dir / "nextpnr.log"
        if work_dir.parent.name == too_big:
            log.write_text(NEXTPNR_LOG)
            raise DoesNotFit(f"the design does not fit the {target.part}: ICESTORM_LC 7330/5280; see {log}", log,
                             overfull(NEXTPNR_LOG), log_utilization(NEXTPNR_LOG))
        log.write_text("Info: Program finished normally.\n")
        return {"report": FITTING_REPORT, "seconds": 0.25}

    monkeypatch.setattr(flow, "find_tools", lambda *names: {name: name for name in names})
    monkeypatch.setattr(flow, "tool_versions", lambda *names: {name: "stub" for name in names})
    monkeypatch.setattr(flow, "run_yosys", fake_yosys)
    monkeypatch.setattr(flow, "run_nextpnr", fake_nextpnr)
    specs = [SynthJob(emitted / f"{A4}.json"), SynthJob(emitted / f"{A8}.json"),
             SynthJob(emitted / f"{A4}.json", target="hx8k")]
    seen = []
    results = synthesize_all(specs, tmp_path / "build", jobs=2, cache=tmp_path / "cache",
                             progress=lambda result, done, total: seen.append(progress_line(result, done, total)))
    assert sorted(ran) == sorted(flow.job_dirname(job.manifest.stem, job.target, job.dsp, job.freq_mhz, job.seed)
                                 for job in specs)                          # every job ran, once
    fit_a4, big, fit_hx = results
    assert [r["module"] for r in results] == [A4, A8, A4] and [r["cached"] for r in results] == [False] * 3
    for r in (fit_a4, fit_hx):
        assert "fits" not in r and "overfull" not in r and r["lcs"] == 180 and r["fmax_mhz"] == 61.23
        assert list(r) == [*flow.DESIGN_KEYS, "timing", "cached"]
    assert fit_a4["power_mw_12mhz"] > 0 and fit_hx["power"] is None
    assert big["fits"] is False and big["overfull"] == {"lc": [7330, 5280]} and big["notes"] == [TEXT]
    assert list(big) == [*flow.DESIGN_KEYS, "fits", "overfull", "timing", "cached"]
    assert (big["lut4"], big["ff"], big["carry"]) == (6700, 3140, 40)          # the PE's cells, harness not
    assert big["harness"]["ff"] == 10 and big["total"]["lut4"] == 6702
    assert big["lcs"] == 7330 and big["utilization"] == {
        "lc": {"used": 7330, "available": 5280}, "io": {"used": 4, "available": 39},
        "dsp": {"used": 0, "available": 8}, "ram": {"used": 0, "available": 30}, "spram": {"used": 0, "available": 4}}
    assert big["fmax_mhz"] is big["fmax_dsp_path_mhz"] is big["power"] is None
    assert big["power_mw_12mhz"] is big["power_mw_fmax"] is None
    assert big["timing"]["yosys_s"] == 0.5 and set(big["timing"]) == {"yosys_s", "nextpnr_s", "wall_s"}
    assert (tmp_path / "build" / too_big / "nextpnr" / "nextpnr.log").read_text() == NEXTPNR_LOG
    assert len(seen) == 3 and any(line.endswith(TEXT) and A8 in line for line in seen)
    # the report files take it as they take the results of hwq-build
    data = json.loads(report_json(results))
    assert data["results"][1]["fits"] is False and "fits" not in data["results"][0]
    # a rerun with the cache runs no tool: the too-big PE is a cache hit with the same result
    again = synthesize_all(specs, tmp_path / "again", jobs=2, cache=tmp_path / "cache")
    assert len(ran) == 3 and [r["cached"] for r in again] == [True] * 3
    design = lambda r: {k: v for k, v in r.items() if k not in flow.RUN_KEYS}
    assert [design(r) for r in again] == [design(r) for r in results]
    assert [list(r) for r in again] == [list(r) for r in results]
    assert report_json(again) == report_json(results)


def test_another_tool_error_still_stops_the_batch(emitted, tmp_path, monkeypatch):
    from hwq.errors import ToolError

    def broken_nextpnr(nextpnr, netlist, target, work_dir, *, freq_mhz, seed):
        raise ToolError("nextpnr (up5k) failed", None)
    monkeypatch.setattr(flow, "find_tools", lambda *names: {name: name for name in names})
    monkeypatch.setattr(flow, "run_yosys", lambda *args, **kwargs: {
        "stat": {"design": {}, "modules": {}}, "seconds": 0.0, "netlist": tmp_path / "netlist.json"})
    monkeypatch.setattr(flow, "run_nextpnr", broken_nextpnr)
    with pytest.raises(ToolError, match="nextpnr"):
        synthesize_all([SynthJob(emitted / f"{A4}.json")], tmp_path / "build")


def test_build_fails_on_another_tool_error(tmp_path, monkeypatch):
    from hwq.errors import ToolError
    monkeypatch.setattr(hwq.build, "plan_pes", lambda *args, **kwargs: [FixedPointPE.from_bits(4, 4)])
    monkeypatch.setattr(hwq.build, "find_tools", lambda *tools: {})

    def broken(specs, build_dir, **kwargs):
        raise ToolError("nextpnr (up5k) failed", None)
    monkeypatch.setattr(hwq.synth, "synthesize_all", broken)
    with pytest.raises(ToolError, match="nextpnr"):
        hwq.build.build(["fxp"], out=tmp_path / "out", mapping="fabric", cache=None, quiet=True)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_pe_too_big_for_the_up5k_is_a_row_of_the_build(tmp_path, monkeypatch):
    """Real yosys and nextpnr: the 8-bit loadable UNIQ PE forced to keep its table in registers."""
    pes = [UniqPE.from_bits(8, 8, loadable=True, table_storage="fabric")]
    monkeypatch.setattr(hwq.build, "plan_pes", lambda *args, **kwargs: pes)
    out = tmp_path / "out"
    status = hwq.build.main(["--format", "uniq", "--mapping", "fabric", "--no-cache", "--quiet", "--out", str(out)])
    assert status == 0
    [entry] = json.loads((out / "report.json").read_text())["results"]
    assert entry["module"] == "uniq_pe_a8_w8_load_fabric" and entry["fits"] is False
    needed, available = entry["overfull"]["lc"]
    assert available == 5280 and needed > 6000 and entry["lcs"] == needed
    assert entry["notes"] == [f"does not fit: {needed} of 5280 logic cells"]
    assert entry["ff"] > 256 * 12                                             # the table's registers
    assert f"does not fit: {needed} of 5280 logic cells" in (out / "report.md").read_text()
