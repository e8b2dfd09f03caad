"""hwq.explore.report on a hand-made sweep result: the files, the fronts, the cheapest point per
format, the loss limit, determinism and errors. No Dask, no tools."""

import copy
import csv
import json

import pytest

from hwq.errors import InputError
from hwq.explore.report import CSV_COLUMNS, PLOTS, summary_text, write_report
from hwq.explore.stats import wilson

N = 20
FP32 = "1" * 19 + "0"                              # 19 of 20: 95 %
OUTCOMES = {
    "fxp_4_4": "1" * 18 + "00",                    # 18: 90 %
    "fxp_8_8": "1" * 19 + "0",                     # 19: 95 %, the same images as FP32
    "ant_4_4": "1" * 18 + "01",                    # 19: 95 %
    "ant_8_8": "0" + "1" * 19,                     # 19: 95 %; against fxp_8_8: 1 discordant each way
    "ausn_4_4": "0" * 6 + "1" * 13 + "0",          # 13: 65 %; 6 images fxp_8_8 and ant_8_8 get right, none back
    "ausn_8_8": "0" * 4 + "1" * 16,                # 16: 80 %
}
TMP = "/tmp/hwq-explore-abc123/out/yosys.log"      # a worker's temporary directory in a reason


def _point(fmt, bits, array, status, lcs=None, ips=None, energy=None, reason=""):
    w, a = bits
    key = f"{fmt}_{w}_{a}"
    correct = OUTCOMES[key].count("1")
    rows, cols = map(int, array.split("x"))
    p = {"name": f"{fmt}_w{w}a{a}_{array}_auto_s1", "format": fmt, "w_bits": w, "a_bits": a, "array": array,
         "mapping": "auto", "seed": 1, "config": f"w{w}a{a}", "pes": rows * cols, "accuracy": correct / N,
         "correct": correct, "total": N, "status": status, "reason": reason, "fits": status == "ok",
         "seconds": 1.5, "energy": None, "energy_uj": None}
    if lcs is not None:
        fits = status == "ok"
        p.update({"lcs": lcs, "lut4": lcs - 100, "ff": 300, "carry": 50, "ebr": 4, "spram": 0,
                  "dsp": 2 if fmt == "fxp" else 0, "fmax_mhz": 31.234567 if fits else None,
                  "cycles": 60000 // (rows * cols), "cycles_source": "from the schedule, not simulated",
                  "macs": 120000, "macs_per_cycle": 2.0 * rows * cols, "utilization": 0.5,
                  "inferences_per_s": ips, "mapping_used": "fabric" if fmt == "ausn" else "dsp",
                  "timing": {"yosys_s": 1.0}})
    if energy is not None:
        p["energy"] = {"kind": "first-order", "power_mw": 5.0, "freq_mhz": 31.234567,
                       "energy_per_inference_uj": energy, "energy_per_mac_pj": energy * 1e6 / 120000,
                       "energy_per_inference_uj_low": energy / 2, "energy_per_inference_uj_high": energy * 2}
        p["energy_uj"] = energy
    return p


def _result():
    points = [
        _point("fxp", (4, 4), "1x2", "ok", 1000, 500.0, 2.0),
        _point("fxp", (4, 4), "1x4", "ok", 1500, 900.0, 1.5),
        _point("fxp", (8, 8), "1x2", "ok", 1800, 450.0, None),        # fits, but no energy figure
        _point("fxp", (8, 8), "1x4", "does not fit", 6000, None, None, "needs 6000 of 5280 logic cells"),
        _point("ant", (4, 4), "1x2", "ok", 1200, 500.0, 2.5),
        _point("ant", (4, 4), "1x4", "ok", 1700, 950.0, 1.4),
        _point("ant", (8, 8), "1x2", "ok", 1200, 600.0, 2.4),         # as few LCs as ant w4a4 1x2, faster
        _point("ant", (8, 8), "1x4", "failed", reason=f"ToolError: yosys failed, see {TMP}"),
        _point("ausn", (4, 4), "1x2", "ok", 800, 400.0, 1.0),
        _point("ausn", (4, 4), "1x4", "refused", reason="the weights do not fit the SPRAM | store"),
        _point("ausn", (8, 8), "1x2", "ok", 900, 420.0, 1.2),
        _point("ausn", (8, 8), "1x4", "ok", 1400, 1200.0, 0.9),
    ]
    return {"points": points, "fp32": {"correct": 19, "total": N, "accuracy": 0.95, "outcomes": FP32},
            "outcomes": dict(OUTCOMES), "stats": {"points": 12, "ok": 9, "does not fit": 1, "refused": 1, "failed": 1,
                                                   "cache_hits": 0, "tasks_run": 18},
            "timing": {"total_s": 12.3456789}, "environment": {"hwq": "0" * 64, "tools": {"yosys": "0.40"}},
            "target": "up5k"}


def _name(fmt, config, array):
    return f"{fmt}_{config}_{array}_auto_s1"


# the fronts by hand (accuracy %, cost) of the points that fit:
#   LCs:   ausn w4a4 1x2 (65, 800) < ausn w8a8 1x2 (80, 900) < fxp w4a4 1x2 (90, 1000) < ant w4a4 1x2 and
#          ant w8a8 1x2 (95, 1200, equal: both); every other point is dearer and no more accurate
#   µJ:    ausn w8a8 1x4 (80, 0.9) < ant w4a4 1x4 (95, 1.4); fxp w8a8 1x2 has no energy figure
#   inf/s: ausn w8a8 1x4 (80, 1200) and ant w4a4 1x4 (95, 950), the most inferences/s first
FRONTS = {
    "lcs": [_name("ausn", "w4a4", "1x2"), _name("ausn", "w8a8", "1x2"), _name("fxp", "w4a4", "1x2"),
            _name("ant", "w4a4", "1x2"), _name("ant", "w8a8", "1x2")],
    "energy": [_name("ausn", "w8a8", "1x4"), _name("ant", "w4a4", "1x4")],
    "throughput": [_name("ausn", "w8a8", "1x4"), _name("ant", "w4a4", "1x4")],
}

TEXT_FILES = ("points.json", "points.csv", "points.md", "pareto.md", "cheapest.md")


@pytest.fixture
def written(tmp_path):
    result = _result()
    summary = write_report(result, tmp_path / "report", plots=False)
    return result, summary, tmp_path / "report"


def test_files(written):
    _, summary, out = written
    assert summary["files"] == list(TEXT_FILES)
    assert sorted(p.name for p in out.iterdir()) == sorted(TEXT_FILES)


def test_csv(written):
    result, _, out = written
    with open(out / "points.csv", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        rows = list(reader)
    assert [r["name"] for r in rows] == [p["name"] for p in result["points"]]
    by_name = {r["name"]: r for r in rows}
    for p in result["points"]:
        row = by_name[p["name"]]
        assert row["status"] == p["status"]
        assert row["fits"] == ("true" if p["status"] == "ok" else "false")
        assert float(row["accuracy"]) == pytest.approx(p["correct"] / N)
        low, high = wilson(p["correct"], N)
        assert float(row["acc_low"]) == pytest.approx(low, rel=1e-5)
        assert float(row["acc_high"]) == pytest.approx(high, rel=1e-5)
        for front, names in FRONTS.items():
            assert row[f"on_front_{front}"] == ("true" if p["name"] in names else "false")
    ok = by_name[_name("fxp", "w4a4", "1x2")]
    assert (ok["lcs"], ok["ebr"], ok["dsp"], ok["pes"], ok["config"], ok["mapping_used"]) == \
        ("1000", "4", "2", "2", "w4a4", "dsp")
    assert float(ok["fmax_mhz"]) == pytest.approx(31.2346)
    assert float(ok["energy_uj"]) == 2.0 and ok["energy_kind"] == "first-order"
    failed = by_name[_name("ant", "w8a8", "1x4")]
    assert failed["lcs"] == failed["fmax_mhz"] == failed["energy_uj"] == failed["energy_kind"] == ""
    assert failed["reason"] == "ToolError: yosys failed, see <tmp>/out/yosys.log"
    assert by_name[_name("fxp", "w8a8", "1x2")]["energy_uj"] == ""


def test_fronts(written):
    _, summary, out = written
    assert summary["fronts"] == FRONTS
    text = (out / "pareto.md").read_text(encoding="utf-8")
    sections = text.split("\n## ")[1:]
    assert len(sections) == 3
    for section, (front, names) in zip(sections, FRONTS.items()):
        rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| rank")]
        assert [row.split(" | ")[1] for row in rows] == names, front
        assert [row.split(" | ")[0] for row in rows] == [f"| {i + 1}" for i in range(len(names))]
    assert "ESTIMATE" in text and "first-order" in text


def test_cheapest(written):
    _, summary, out = written
    cheapest = summary["cheapest"]
    assert list(cheapest) == ["fxp", "ant", "ausn"]
    assert summary["max_loss"] == 0.005
    # within 0.5 % of 95 %: only the 95 % points count
    assert cheapest["fxp"]["point"] == _name("fxp", "w8a8", "1x2")
    assert cheapest["fxp"]["candidates"] == 1
    assert cheapest["ant"]["point"] == _name("ant", "w8a8", "1x2")          # 1200 LCs like w4a4, more inf/s
    assert cheapest["ant"]["candidates"] == 3
    assert cheapest["ausn"]["point"] is None
    assert cheapest["ausn"]["text"] == f"none within 0.5 % of FP32; best accuracy 80.00 % at point " \
                                       f"{_name('ausn', 'w8a8', '1x2')}"
    # fxp w8a8 and ant w8a8: one image each way, indistinguishable; fxp w8a8 = FP32's images
    assert cheapest["fxp"]["compared"]["ant"]["p"] == pytest.approx(1.0)
    assert cheapest["fxp"]["indistinguishable_from"] == ["ant"]
    assert cheapest["ant"]["indistinguishable_from"] == ["fxp"]
    assert cheapest["fxp"]["p_vs_fp32"] == 1.0
    assert cheapest["fxp"]["acc_low"] == pytest.approx(wilson(19, 20)[0])
    text = (out / "cheapest.md").read_text(encoding="utf-8")
    assert "one image is 5.00 %" in text
    assert "none within 0.5 % of FP32; best accuracy 80.00 %" in text
    assert _name("fxp", "w8a8", "1x2") in text and _name("ant", "w8a8", "1x2") in text
    assert "ESTIMATE" in text


def test_cheapest_wider_loss(tmp_path):
    summary = write_report(_result(), tmp_path / "r", max_loss=0.30, plots=False)
    cheapest = summary["cheapest"]
    assert cheapest["fxp"]["point"] == _name("fxp", "w4a4", "1x2")
    assert cheapest["ant"]["point"] == _name("ant", "w8a8", "1x2")
    assert cheapest["ausn"]["point"] == _name("ausn", "w4a4", "1x2")         # 65 % = 95 % - 30 %
    # ausn w4a4 gets 6 images wrong that ant w8a8 gets right, none the other way
    assert cheapest["ausn"]["compared"]["ant"]["p"] == pytest.approx(2 * 0.5 ** 6)
    assert cheapest["ausn"]["compared"]["ant"]["indistinguishable"] is False
    # against fxp w4a4 (wrong on images 18 and 19): 6 one way, 1 the other
    assert cheapest["ausn"]["compared"]["fxp"]["p"] == pytest.approx(2 * 8 / 128)
    assert cheapest["ausn"]["indistinguishable_from"] == ["fxp"]


def test_loss_limit_is_inclusive(tmp_path):
    """A point exactly ``max_loss`` below FP32 counts, though ``fp32 - max_loss`` rounds above it."""
    fp32 = "1" * 8 + "0" * 12                       # 40 %
    assert 8 / 20 - 0.1 > 6 / 20                    # the float limit lies above the exact 30 %
    outcomes = {"fxp_4_4": "1" * 6 + "0" * 14, "fxp_2_2": "1" * 5 + "0" * 15}
    points = []
    for (w, correct, lcs) in ((4, 6, 500), (2, 5, 400)):
        points.append({"name": f"fxp_w{w}a{w}", "format": "fxp", "w_bits": w, "a_bits": w, "config": f"w{w}a{w}",
                       "array": "1x1", "pes": 1, "mapping": "auto", "seed": 1, "status": "ok", "reason": "",
                       "accuracy": correct / 20, "correct": correct, "total": 20, "lcs": lcs,
                       "inferences_per_s": 10.0, "energy": None, "energy_uj": None, "fits": True})
    result = {"points": points, "fp32": {"correct": 8, "total": 20, "accuracy": 0.4, "outcomes": fp32},
              "outcomes": outcomes}
    summary = write_report(result, tmp_path / "r", max_loss=0.1, plots=False)
    assert summary["cheapest"]["fxp"]["point"] == "fxp_w4a4"                 # 30 %: counts
    assert summary["cheapest"]["fxp"]["candidates"] == 1                     # 25 %: does not
    summary = write_report(result, tmp_path / "r", max_loss=0.15, plots=False)
    assert summary["cheapest"]["fxp"]["point"] == "fxp_w2a2"


def test_points_md(written):
    result, _, out = written
    text = (out / "points.md").read_text(encoding="utf-8")
    for p in result["points"]:
        assert f"| {p['name']} |" in text
    assert "one image is 5.00 %" in text
    assert "ESTIMATE" in text and "2 (1–4) first-order" in text
    assert "does not fit: needs 6000 of 5280 logic cells" in text
    assert "SPRAM \\| store" in text                                          # a | in a reason is escaped
    assert "90.00 % [" in text


def test_json(written):
    result, summary, out = written
    document = json.loads((out / "points.json").read_text(encoding="utf-8"))
    assert [p["name"] for p in document["points"]] == [p["name"] for p in result["points"]]
    assert document["outcomes"] == OUTCOMES and document["fp32"]["outcomes"] == FP32
    assert document["timing"]["total_s"] == 12.3457                           # rounded
    assert document["summary"]["fronts"] == FRONTS
    assert document["summary"]["cheapest"]["ant"]["point"] == summary["cheapest"]["ant"]["point"]
    first = document["points"][0]
    assert first["on_front_lcs"] is True and first["on_front_energy"] is False
    assert first["acc_low"] == pytest.approx(wilson(18, 20)[0], rel=1e-5)
    assert document["points"][7]["reason"] == "ToolError: yosys failed, see <tmp>/out/yosys.log"


def test_no_temporary_or_absolute_paths(written, tmp_path):
    _, _, out = written
    for name in TEXT_FILES:
        text = (out / name).read_text(encoding="utf-8")
        assert "hwq-explore-" not in text and str(tmp_path) not in text


def test_input_not_modified(tmp_path):
    result = _result()
    before = copy.deepcopy(result)
    write_report(result, tmp_path / "r", plots=False)
    assert result == before


def test_deterministic(tmp_path):
    pytest.importorskip("matplotlib")
    a = write_report(_result(), tmp_path / "a")
    b = write_report(_result(), tmp_path / "b")
    assert a == b
    assert a["files"] == [*TEXT_FILES, *PLOTS.values()]
    for name in a["files"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    for name in PLOTS.values():
        data = (tmp_path / "a" / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert b"Matplotlib" not in data                                       # no software version
    # writing again into the same directory replaces the files
    write_report(_result(), tmp_path / "a", plots=False)
    assert (tmp_path / "a" / "points.csv").read_bytes() == (tmp_path / "b" / "points.csv").read_bytes()


def test_summary_text(written):
    result, summary, _ = written
    text = summary_text(result, summary)
    assert text.startswith("12 points: 9 fit (ok), 1 do not fit, 1 refused, 1 failed")
    assert "FP32: 95.00 % on 20 test images (one image is 5.00 %)" in text
    for names in FRONTS.values():
        for name in names:
            assert name in text
    assert f"fxp: {_name('fxp', 'w8a8', '1x2')}" in text
    assert "indistinguishable in accuracy from ant" in text
    assert "ausn: none within 0.5 % of FP32" in text


def test_out_is_a_file(tmp_path):
    target = tmp_path / "taken"
    target.write_text("mine\n")
    with pytest.raises(InputError, match=str(target)):
        write_report(_result(), target, plots=False)
    assert target.read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    with pytest.raises(InputError, match=str(target)):
        write_report(_result(), target / "below", plots=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_target_file_is_a_directory(tmp_path):
    out = tmp_path / "r"
    (out / "points.csv").mkdir(parents=True)
    with pytest.raises(InputError, match="points.csv"):
        write_report(_result(), out, plots=False)
    assert sorted(p.name for p in out.iterdir()) == ["points.csv"]


@pytest.mark.parametrize("change, match", [
    (lambda r: r.pop("points"), "points"),
    (lambda r: r.update(fp32={"accuracy": 0.9}), "fp32"),
    (lambda r: r["outcomes"].update(fxp_4_4="101"), "outcomes"),
    (lambda r: r["points"][1].update(name=r["points"][0]["name"]), "twice"),
    (lambda r: r["points"][0].update(lcs="many"), "lcs"),
    (lambda r: r["points"][0].update(accuracy=1.5), "accuracy"),
])
def test_bad_result(tmp_path, change, match):
    result = _result()
    change(result)
    with pytest.raises(InputError, match=match):
        write_report(result, tmp_path / "r", plots=False)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("max_loss", [-0.1, 1.5, True, "0.5%", None])
def test_bad_max_loss(tmp_path, max_loss):
    with pytest.raises(InputError, match="max_loss"):
        write_report(_result(), tmp_path / "r", max_loss=max_loss, plots=False)
    assert not (tmp_path / "r").exists()
