"""hwq.synth.power's activity-based model: its fit to the shipped calibration data, its estimates,
and the unchanged first-order fallback. The slow test regenerates the calibration data with the
real tools and compares it with the shipped file."""

import json
import math

import numpy as np
import pytest

from hwq.errors import InputError
from hwq.synth import power
from hwq.synth.activity import Activity

MEASURED = {m.key: m for m in power.MEASUREMENTS}


def _activities():
    document = json.loads(power.ACTIVITY_DATA.read_text())
    return {name: Activity.from_dict(d["activity"]) for name, d in document["designs"].items()}


def test_measurements_are_the_readme_values():
    # tinyvision-ai-inc/ice40_power README.md, core rail (1.219 V), µA
    expected = {"blank": 85.6, "counter24_hfosc12": 645, "math_fabric_hfosc12": 996, "math_dsp_hfosc12": 882,
                "counter24_hfosc6": 388.4, "counter24_hfosc24": 1162, "counter24_hfosc48": 2184,
                "counter24_lfosc": 96.3, "counter24_halted": 92.1, "counter28_ext12": 613.5,
                "counter56_ext12": 616.65, "counter112_ext12": 624.2, "counter224_ext12": 641.3}
    assert {k: m.core_ua for k, m in MEASURED.items()} == expected
    assert [m.key for m in power.MEASUREMENTS if m.role == "fit"] == [
        "blank", "counter24_hfosc12", "math_fabric_hfosc12", "math_dsp_hfosc12"]
    assert power.VCORE_MEASURED_V == 1.219


def test_fit_is_the_least_squares_solution():
    report = power.calibration_report()
    rows, ys = [], []
    for m in power.MEASUREMENTS:
        if m.role != "fit":
            continue
        features = report["designs"].get(m.design, {"weighted_toggles": 0.0, "fixed_energy_pj": 0.0})
        f = m.freq_mhz
        rows.append([1.0, f, f * features["weighted_toggles"]])
        ys.append(m.core_ua - f * features["fixed_energy_pj"] / power.VCORE_MEASURED_V)
    solution = np.linalg.lstsq(np.array(rows), np.array(ys), rcond=None)[0]
    c = report["coefficients"]
    # the shipped features are rounded to 1e-4 toggles and pJ
    assert [c["static_ua"], c["clk_ua_per_mhz"], c["tog_ua_per_mhz"]] == pytest.approx(list(solution), rel=1e-4)
    assert c["static_ua"] == pytest.approx(85.6)          # the blank row is the only one at 0 MHz
    assert c["clk_ua_per_mhz"] > 0 and c["tog_ua_per_mhz"] > 0
    assert power.ACTIVITY_COEFFICIENTS == c


def test_calibration_report_loo_validation_and_uncertainty():
    report = power.calibration_report()
    assert [e["key"] for e in report["fit"]] == [e["key"] for e in report["loo"]]
    blank = report["loo"][0]
    assert blank["predicted_ua"] is None and "not identifiable" in blank["note"]
    for entry in report["loo"][1:] + report["validation"]:
        assert entry["error"] == pytest.approx((entry["predicted_ua"] - entry["measured_ua"]) / entry["measured_ua"],
                                               abs=2e-4)
    assert len(report["validation"]) == 9
    dynamic = [abs(e["dynamic_error"]) for e in report["loo"][1:] + report["validation"] if "dynamic_error" in e]
    static = [abs(e["static_error"]) for e in report["validation"] if "static_error" in e]
    assert len(dynamic) == 3 + 7 and len(static) == 2          # LFOSC and the halted clock check I_static
    assert report["uncertainty"] == {"dynamic": round(max(dynamic), 3), "static": round(max(static), 3)}
    assert {a["key"] for a in report["assumptions"]} >= {"w_lut4", "w_carry", "e_mult_pj", "e_ebr_pj", "e_spram_pj"}
    assert all(a["source"] for a in report["assumptions"])
    text = power.format_calibration_report(report)
    assert "not identifiable" in text and "External 12 MHz + 28*8 bit counter" in text


def test_estimates_reproduce_the_calibration_within_the_stated_uncertainty():
    activities = _activities()
    for m in power.MEASUREMENTS:
        activity = activities[m.design] if m.design else Activity.idle()
        point = power.estimate_activity_power(activity, [m.freq_mhz])["points"][0]
        # every measured row, fitted or held out, lies inside the stated band
        assert point["current_ua_low"] - 0.1 <= m.core_ua <= point["current_ua_high"] + 0.1, m.key
    # the fitted rows with a clock also within their leave-one-out error of the fit
    report = power.calibration_report()
    for fit, loo in zip(report["fit"][1:], report["loo"][1:]):
        assert abs(fit["error"]) <= abs(loo["error"])


def test_estimate_fields_and_units():
    activity = _activities()["math_fabric"]
    result = power.estimate_activity_power(activity, [0, 12, 48.0])
    assert result["estimate"] is True and result["label"].startswith("ESTIMATE")
    assert result["model"] == power.ACTIVITY_MODEL and result["vcore_v"] == 1.219
    assert set(result["coefficients"]) == {"static_ua", "clk_ua_per_mhz", "tog_ua_per_mhz"}
    idle, at12, at48 = result["points"]
    assert idle["dynamic_mw"] == 0 and idle["energy_per_cycle_pj"] is None
    assert idle["current_ua"] == pytest.approx(power.ACTIVITY_COEFFICIENTS["static_ua"], abs=0.05)
    for point in (at12, at48):
        assert point["power_mw"] == pytest.approx(point["static_mw"] + point["dynamic_mw"], abs=2e-4)
        assert point["power_mw"] == pytest.approx(point["current_ua"] * 1.219 / 1000, abs=2e-4)
        assert point["energy_per_cycle_pj"] == pytest.approx(point["power_mw"] * 1e3 / point["freq_mhz"], rel=1e-3)
        assert point["current_ua_low"] < point["current_ua"] < point["current_ua_high"]
        # the dynamic energy per cycle does not depend on the clock
        assert point["dynamic_mw"] * 1e3 / point["freq_mhz"] == pytest.approx(result["dynamic_energy_per_cycle_pj"],
                                                                                rel=1e-3)
    assert at48["dynamic_mw"] == pytest.approx(4 * at12["dynamic_mw"], rel=1e-3)
    # 12 MHz: within the calibration's residual of the measured 996 µA
    assert at12["current_ua"] == pytest.approx(996, rel=0.1)
    assert power.estimate_activity_power(activity.to_dict(), [12])["points"] == [at12]
    assert result["inputs"]["cells"]["lut4"]["cells"] == activity.count("lut4")


def test_more_toggles_more_power():
    activities = _activities()
    counter, fabric = (power.estimate_activity_power(activities[k], [12])["points"][0]["dynamic_mw"]
                       for k in ("counter24", "math_fabric"))
    assert fabric > counter > 0


@pytest.mark.parametrize("freqs", [[-1.0], [float("nan")], ["12"], [math.inf]])
def test_estimate_rejects_bad_frequencies(freqs):
    with pytest.raises(InputError, match="freqs_mhz"):
        power.estimate_activity_power(Activity.idle(), freqs)


def test_estimate_rejects_what_is_not_an_activity():
    with pytest.raises(InputError, match="activity must be"):
        power.estimate_activity_power([1, 2], [12])
    with pytest.raises(InputError, match="activity record"):
        power.estimate_activity_power({"top": "x"}, [12])


def test_missing_calibration_data_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(power, "_CALIBRATION", None)
    monkeypatch.setattr(power, "_CALIBRATION_ERROR", f"{power.ACTIVITY_DATA} is missing; regenerate it")
    with pytest.raises(InputError, match="activity.json is missing"):
        power.estimate_activity_power(Activity.idle(), [12])
    with pytest.raises(InputError, match="activity.json is missing"):
        power.calibration_report()


def test_fallback_model_is_unchanged():
    # the first-order model's coefficients and outputs, as before the activity model was added
    assert power.CALIBRATION == {"freq_mhz": 12, "blank": (0, 0, 86), "counter": (28, 0, 645),
                                 "mult_fabric": (208, 0, 996), "mult_dsp": (72, 1, 882)}
    assert power.COEFFICIENTS == pytest.approx({"static_ua": 86.0, "clk_ua_per_mhz": 42.0333333,
                                                "lc_ua_per_mhz": 0.1625, "dsp_ua_per_mhz": 12.6})
    assert (power.VCORE_V, power.UNCERTAINTY) == (1.2, 0.5)
    assert power.estimate_power(208, 0, [12.0], activity=1.0) == {
        "model": "ice40up5k-first-order (tinyvision-ai-inc/ice40_power calibration)",
        "vcore_v": 1.2, "activity": 1.0, "lcs": 208, "dsp": 0, "uncertainty": 0.5,
        "coefficients": {"static_ua": 86.0, "clk_ua_per_mhz": 42.0333, "lc_ua_per_mhz": 0.1625,
                         "dsp_ua_per_mhz": 12.6},
        "points": [{"freq_mhz": 12.0, "current_ua": 996.0, "power_mw": 1.195}],
    }


@pytest.mark.slow
def test_regenerated_calibration_data_equals_the_shipped_file(tmp_path):
    from hwq.calibrate_power import main

    out = tmp_path / "activity.json"
    assert main(["--out", str(out), "--work-dir", str(tmp_path / "work")]) == 0
    assert out.read_text() == power.ACTIVITY_DATA.read_text()
