"""hwq.synth.power: the first-order iCE40UP5K power model against its calibration."""

import pytest

from hwq.errors import HwqError
from hwq.synth import power


def test_power_model_reproduces_calibration():
    cal = power.CALIBRATION
    for name in ("blank", "counter", "mult_fabric", "mult_dsp"):
        lcs, dsp, current = cal[name]
        freq = 0 if name == "blank" else cal["freq_mhz"]
        point = power.estimate_power(lcs, dsp, [freq])["points"][0]
        assert point["current_ua"] == pytest.approx(current, abs=0.1)
        assert point["power_mw"] == pytest.approx(current * 1.2 / 1000, abs=0.001)
    c = power.COEFFICIENTS
    assert c["lc_ua_per_mhz"] == pytest.approx(0.1625)
    assert c["clk_ua_per_mhz"] == pytest.approx(42.0333, abs=1e-4)
    assert c["dsp_ua_per_mhz"] == pytest.approx(12.6)


def test_power_activity_and_errors():
    busy = power.estimate_power(200, 0, [12.0], activity=1.0)["points"][0]["current_ua"]
    idle = power.estimate_power(200, 0, [12.0], activity=0.0)["points"][0]["current_ua"]
    assert idle == pytest.approx(86 + 12 * 42.0333, abs=0.1) and busy > idle
    assert power.estimate_power(10, 0, [12.0])["uncertainty"] == 0.5
    with pytest.raises(HwqError):
        power.estimate_power(-1, 0, [12.0])
    with pytest.raises(HwqError):
        power.estimate_power(1, 0, [-5.0])
