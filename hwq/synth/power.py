r"""First-order core-power ESTIMATE for iCE40UP5K designs (±50 % at best).

No open tool estimates iCE40 power (docs/toolchain.md, "Power estimation"), so this module fits a three-term
model to the public ``tinyvision-ai-inc/ice40_power`` measurements on an iCE40UP5K-SG48, core rail
(VCC) at 1.2 V, all at 12 MHz:

======================================================  =======  ===========
design                                                  LCs      core current
======================================================  =======  ===========
blank (configured, nothing running)                     0        86 µA
24-bit counter                                          28       645 µA
counter + 8x8 multiply of counters, in fabric           208      996 µA
counter + 8x8 multiply of counters, one SB_MAC16        72       882 µA
======================================================  =======  ===========

Model: core current in µA at clock ``f`` MHz, for ``LC`` used logic cells and ``DSP`` SB_MAC16
blocks, with activity factor ``α`` (1.0 = as busy as the calibration designs)::

    I(f) = I_static + f · (k_clk + α · (k_lc · LC + k_dsp · DSP))
    P(f) = 1.2 V · I(f)

Coefficients, from the table (check them by hand):

* ``I_static = 86 µA`` (the blank design).
* Dynamic current per MHz of each design, ``(I - 86) / 12``: counter ``559/12 = 46.583``,
  fabric multiply ``910/12 = 75.833``, DSP multiply ``796/12 = 66.333`` µA/MHz.
* ``k_lc``: the fabric multiply adds 208 - 28 = 180 LCs and 75.833 - 46.583 = 29.25 µA/MHz,
  so ``k_lc = 29.25 / 180 = 0.1625 µA/MHz per LC``.
* ``k_clk``: the counter's 46.583 µA/MHz less its 28 LCs' share, ``46.583 - 28 · 0.1625 =
  42.033 µA/MHz``: clock tree and other per-design activity, charged once.
* ``k_dsp``: the DSP design's 66.333 µA/MHz less ``k_clk`` and its 72 LCs' share,
  ``66.333 - 42.033 - 72 · 0.1625 = 12.6 µA/MHz per SB_MAC16``.

Check: the fabric multiply at 12 MHz gives ``86 + 12 · (42.033 + 208 · 0.1625) = 996 µA``.

Caveats: three designs fix three coefficients, so the fit is exact on them and says nothing
about its error elsewhere. Power depends on switching activity, which this model only scales
through ``α``; the calibration designs are counters, not a PE fed by data. The LC count is the
whole placed design (PE plus synthesis harness), as in the calibration. The model is for UP5K
only (HX parts have a different process and much higher static current). Treat every figure as
an estimate within ±50 % at best.
"""

from fractions import Fraction

from ..errors import InputError

__all__ = ["CALIBRATION", "VCORE_V", "UNCERTAINTY", "COEFFICIENTS", "estimate_power", "derive_coefficients"]

#: core rail voltage of the measurements, volts
VCORE_V = 1.2

#: relative uncertainty stated with every estimate
UNCERTAINTY = 0.5

#: ``tinyvision-ai-inc/ice40_power`` UP5K-SG48 measurements at 12 MHz:
#: name -> (logic cells, SB_MAC16 blocks, core current in µA)
CALIBRATION = {
    "freq_mhz": 12,
    "blank": (0, 0, 86),
    "counter": (28, 0, 645),
    "mult_fabric": (208, 0, 996),
    "mult_dsp": (72, 1, 882),
}


def derive_coefficients(cal=CALIBRATION):
    """Model coefficients from the calibration measurements (arithmetic as in the module docstring).

    Returns
    -------
    dict
        ``static_ua``, ``clk_ua_per_mhz``, ``lc_ua_per_mhz``, ``dsp_ua_per_mhz`` (floats).
    """
    f = Fraction(cal["freq_mhz"])
    static = Fraction(cal["blank"][2])

    def dynamic(name):
        lcs, dsps, current = cal[name]
        return lcs, dsps, (Fraction(current) - static) / f

    lc_counter, _, dyn_counter = dynamic("counter")
    lc_fabric, _, dyn_fabric = dynamic("mult_fabric")
    lc_dsp, n_dsp, dyn_dsp = dynamic("mult_dsp")
    k_lc = (dyn_fabric - dyn_counter) / (lc_fabric - lc_counter)
    k_clk = dyn_counter - lc_counter * k_lc
    k_dsp = (dyn_dsp - k_clk - lc_dsp * k_lc) / n_dsp
    return {"static_ua": float(static), "clk_ua_per_mhz": float(k_clk),
            "lc_ua_per_mhz": float(k_lc), "dsp_ua_per_mhz": float(k_dsp)}


#: the fitted coefficients: 86 µA, 42.033, 0.1625 and 12.6 µA/MHz
COEFFICIENTS = derive_coefficients()


def estimate_power(lcs, dsp, freqs_mhz, activity=1.0):
    """Estimated iCE40UP5K core power at the given clock frequencies.

    Parameters
    ----------
    lcs : int
        Logic cells used (nextpnr ``ICESTORM_LC``), whole placed design.
    dsp : int
        SB_MAC16 blocks used.
    freqs_mhz : iterable of float
        Clock frequencies to evaluate, MHz.
    activity : float
        Toggle-rate factor applied to the LC and DSP terms; 1.0 means as active as the
        calibration designs (free-running counters feeding a multiplier).

    Returns
    -------
    dict
        ``model``, ``vcore_v``, ``activity``, ``lcs``, ``dsp``, ``uncertainty`` (0.5 = ±50 %),
        ``coefficients`` and ``points``: one ``{"freq_mhz", "current_ua", "power_mw"}`` per
        frequency, rounded to 0.1 µA / 0.001 mW.

    Raises
    ------
    InputError
        On a negative count, activity or frequency.
    """
    if lcs < 0 or dsp < 0:
        raise InputError(f"power estimate needs non-negative LC and DSP counts, got {lcs} and {dsp}")
    if not activity >= 0:
        raise InputError(f"activity factor must be >= 0, got {activity!r}")
    c = COEFFICIENTS
    points = []
    for freq in freqs_mhz:
        if not freq >= 0:
            raise InputError(f"power estimate frequency must be >= 0 MHz, got {freq!r}")
        per_mhz = c["clk_ua_per_mhz"] + activity * (c["lc_ua_per_mhz"] * lcs + c["dsp_ua_per_mhz"] * dsp)
        current = c["static_ua"] + freq * per_mhz
        points.append({"freq_mhz": round(float(freq), 2), "current_ua": round(current, 1),
                       "power_mw": round(current * VCORE_V / 1000, 3)})
    return {
        "model": "ice40up5k-first-order (tinyvision-ai-inc/ice40_power calibration)",
        "vcore_v": VCORE_V,
        "activity": activity,
        "lcs": lcs,
        "dsp": dsp,
        "uncertainty": UNCERTAINTY,
        "coefficients": {key: round(value, 4) for key, value in COEFFICIENTS.items()},
        "points": points,
    }
