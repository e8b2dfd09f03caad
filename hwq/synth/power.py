r"""iCE40UP5K core-power ESTIMATES: an activity-based model and a first-order fallback.

No open tool estimates iCE40 power (docs/toolchain.md, "Power estimation"). Both models here are
calibrated on the public measurements of ``tinyvision-ai-inc/ice40_power`` (README.md, "Results";
designs in ``power_test/rgb_blink.v``): an iCE40UP5K-SG48 on Lattice's UltraPlus breakout board,
core rail (VCC) at 1.219 V, current measured with a Joulescope JS110, designs built with yosys
``synth_ice40`` and nextpnr ``--up5k --package sg48``. Core-rail currents, µA:

==========================================================  =========  ==========
README row                                                  clock      core (µA)
==========================================================  =========  ==========
Blank design                                                none       85.6
HFOSC (12 MHz) + 24 bit counter (28 LC's)                   HFOSC      645
HFOSC (12 MHz) + Math (no DSP) + 24 bit counter (208 LC's)  HFOSC      996
HFOSC (12 MHz) + Math (1 DSP) + 24 bit counter (72 LC's)    HFOSC      882
HFOSC (6 / 24 / 48 MHz) + 24 bit counter (28 LC's)          HFOSC      388.4 / 1162 / 2184
LFOSC (10 kHz) + 24 bit counter (28 LC's)                   LFOSC      96.3
External halted clock (0 kHz) + 24 bit counter (28 LC's)    pin        92.1
External 12 MHz + 28, 28*2, 28*4, 28*8 bit counter         pin        613.5 / 616.65 / 624.2 / 641.3
==========================================================  =========  ==========

(the last row's designs have 32, 60, 116 and 228 LC's.)

"Math" is ``ctr1 <= ctr1 + 3; ctr2 <= ctr2 + 5; result = ctr1 * ctr2`` on 8-bit counters, in
fabric (``synth_ice40``) or in one SB_MAC16 (``synth_ice40 -dsp``).

Activity-based model (:func:`estimate_activity_power`)
------------------------------------------------------
Core current at clock ``f`` (MHz) of a design whose simulated switching activity is ``activity``
(:func:`hwq.synth.activity.cell_activity`)::

    I(f) = I_static + f * (k_clk + k_tog * T_w + E_fixed / V)          [µA; V = 1.219 V]
    T_w  = sum over cell groups g of w_g * (output toggles of g per cycle)
    E_fixed = e_mult * M + e_ebr * A_ebr + e_spram * A_spram + C_ff * V**2 * N_ff     [pJ per cycle]

with ``M`` the SB_MAC16 partial-product toggles per cycle
(:attr:`hwq.synth.activity.CellActivity.mult_toggles`), ``A_*`` the memory accesses per cycle and
``N_ff`` the flip-flops. Three parameters are free and least-squares fitted to the four
12 MHz/blank rows: ``I_static`` (µA), ``k_clk`` (µA/MHz: clock tree, global buffer, HFOSC) and
``k_tog`` (µA/MHz per weighted toggle per cycle). Every other number is an assumption with its
source in :data:`ASSUMPTIONS`. The fit, its leave-one-out errors, the held-out rows and the
uncertainty derived from them are :func:`calibration_report`; docs/toolchain.md, "Power
estimation", prints them.

The toggle counts of the calibration designs come from hwq's reproductions of rgb_blink.v
(``hwq/synth/calibration/*.v``), synthesized and simulated by ``python -m hwq.calibrate_power``
into ``hwq/synth/calibration/activity.json``, which this module reads when imported.

First-order fallback (:func:`estimate_power`)
---------------------------------------------
For a design without simulated activity: core current in µA at clock ``f`` MHz, for ``LC`` used
logic cells and ``DSP`` SB_MAC16 blocks, with activity factor ``α`` (1.0 = as busy as the
calibration designs)::

    I(f) = I_static + f · (k_clk + α · (k_lc · LC + k_dsp · DSP))
    P(f) = 1.2 V · I(f)

Coefficients, from the four 12 MHz/blank rows above, the blank's 85.6 µA rounded to 86 µA (check
them by hand):

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

import dataclasses
import json
import math
from fractions import Fraction
from pathlib import Path

from ..errors import InputError
from .activity import GROUPS, Activity

__all__ = ["CALIBRATION", "VCORE_V", "UNCERTAINTY", "COEFFICIENTS", "estimate_power", "derive_coefficients",
           "inference_energy",
           "VCORE_MEASURED_V", "Measurement", "MEASUREMENTS", "Assumption", "ASSUMPTIONS", "TOGGLE_WEIGHTS",
           "ACTIVITY_MODEL", "ACTIVITY_DATA", "ACTIVITY_COEFFICIENTS", "activity_features", "estimate_activity_power",
           "calibration_report", "format_calibration_report"]

#: core rail voltage of the measurements, volts
VCORE_V = 1.2

#: relative uncertainty stated with every estimate
UNCERTAINTY = 0.5

#: ``tinyvision-ai-inc/ice40_power`` UP5K-SG48 measurements at 12 MHz (README.md; the blank
#: design's 85.6 µA rounded to 86, as this fallback has always used it):
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


# =============================================================================================
# Activity-based model
# =============================================================================================

#: core rail voltage of the tinyvision measurements (README.md, "Core (1.219V)"), volts
VCORE_MEASURED_V = 1.219

#: the model's name, stated with every estimate
ACTIVITY_MODEL = ("ice40up5k-activity: I = I_static + f*(k_clk + k_tog*T_w + E_fixed/V), 3 parameters "
                  "least-squares fitted to tinyvision-ai-inc/ice40_power (README.md)")

#: the shipped toggle counts of the calibration designs (``python -m hwq.calibrate_power``)
ACTIVITY_DATA = Path(__file__).resolve().parent / "calibration" / "activity.json"

#: a held-out row at or below this clock checks the static current only, MHz
_STATIC_ROWS_BELOW_MHZ = 1.0


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One row of the ``tinyvision-ai-inc/ice40_power`` README table (core rail).

    Attributes
    ----------
    key : str
        Short name.
    row : str
        The README row's description, verbatim.
    design : str or None
        The calibration design it ran (a key of ``hwq.calibrate_power.DESIGNS``), ``None`` for
        the blank design.
    clock : str
        ``"none"``, ``"hfosc"`` (internal 48 MHz oscillator, divided), ``"lfosc"`` (internal
        10 kHz oscillator) or ``"external"`` (a pin).
    freq_mhz : float
        Clock frequency, MHz (0 for no or a halted clock).
    core_ua : float
        Measured core-rail current, µA.
    role : str
        ``"fit"`` (one of the four rows the three parameters are fitted to) or
        ``"validation"`` (held out).
    """

    key: str
    row: str
    design: object
    clock: str
    freq_mhz: float
    core_ua: float
    role: str


#: the README rows the activity model uses: four to fit, nine held out
MEASUREMENTS = (
    Measurement("blank", "Blank design", None, "none", 0.0, 85.6, "fit"),
    Measurement("counter24_hfosc12", "HFOSC (12 MHz) + 24 bit counter (28 LC's)", "counter24", "hfosc",
                12.0, 645.0, "fit"),
    Measurement("math_fabric_hfosc12", "HFOSC (12 MHz) + Math (no DSP) + 24 bit counter (208 LC's)",
                "math_fabric", "hfosc", 12.0, 996.0, "fit"),
    Measurement("math_dsp_hfosc12", "HFOSC (12 MHz) + Math (1 DSP) + 24 bit counter (72 LC's)", "math_dsp",
                "hfosc", 12.0, 882.0, "fit"),
    Measurement("counter24_hfosc6", "HFOSC (6 MHz) + 24 bit counter (28 LC's)", "counter24", "hfosc",
                6.0, 388.4, "validation"),
    Measurement("counter24_hfosc24", "HFOSC (24 MHz) + 24 bit counter (28 LC's)", "counter24", "hfosc",
                24.0, 1162.0, "validation"),
    Measurement("counter24_hfosc48", "HFOSC (48 MHz) + 24 bit counter (28 LC's)", "counter24", "hfosc",
                48.0, 2184.0, "validation"),
    Measurement("counter24_lfosc", "LFOSC (10 kHz) + 24 bit counter (28 LC's)", "counter24", "lfosc",
                0.01, 96.3, "validation"),
    Measurement("counter24_halted", "External halted clock (0 kHz) + 24 bit counter (28 LC's)", "counter24",
                "external", 0.0, 92.1, "validation"),
    Measurement("counter28_ext12", "External 12 MHz + 28 bit counter (32 LC's)", "counter28", "external",
                12.0, 613.5, "validation"),
    Measurement("counter56_ext12", "External 12 MHz + 28*2 bit counter (60 LC's)", "counter56", "external",
                12.0, 616.65, "validation"),
    Measurement("counter112_ext12", "External 12 MHz + 28*4 bit counter (116 LC's)", "counter112", "external",
                12.0, 624.2, "validation"),
    Measurement("counter224_ext12", "External 12 MHz + 28*8 bit counter (228 LC's)", "counter224", "external",
                12.0, 641.3, "validation"),
)


@dataclasses.dataclass(frozen=True)
class Assumption:
    """A fixed number of the activity model (not fitted), with where it comes from.

    Attributes
    ----------
    key : str
    value : float
    unit : str
    source : str
        The datasheet, paper or reasoning it rests on, said plainly.
    """

    key: str
    value: float
    unit: str
    source: str


#: Horowitz's energies are for 45 nm at 0.9 V; dynamic energy scales with V**2 (the UP5K is a
#: 40 nm part; no scaling for 45 -> 40 nm)
_TO_VCORE = (VCORE_MEASURED_V / 0.9) ** 2

_HOROWITZ = ("M. Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014, "
             "energy table for 45 nm at 0.9 V")

#: every fixed number of the activity model
ASSUMPTIONS = {a.key: a for a in (
    Assumption("w_lut4", 1.0, "weight per output toggle",
               "the reference: an iCE40 logic cell's output onto general routing"),
    Assumption("w_ff", 1.0, "weight per output toggle",
               "a flip-flop's Q leaves its logic cell on the same output and routing as a LUT's O "
               "(iCE40 UltraPlus datasheet FPGA-DS-02008, 'PLB Blocks': one output per logic cell, "
               "registered or not)"),
    Assumption("w_carry", 0.2, "weight per output toggle",
               "SB_CARRY drives the dedicated carry chain into the next logic cell, no general routing. "
               "Shang, Kaviani, Bathala, 'Dynamic power consumption in Virtex-II FPGA family', FPGA 2002: "
               "routing 60 %, logic 16 %, clock 14 % of dynamic power; a toggle without routing costs the "
               "logic share, 16 / (60 + 16) = 0.21, taken as 0.2"),
    Assumption("w_dsp", 1.0, "weight per output toggle",
               "SB_MAC16 outputs enter the fabric's general routing, as a logic cell's output does"),
    Assumption("w_ram", 1.0, "weight per output toggle", "SB_RAM40_4K RDATA: as w_dsp"),
    Assumption("w_spram", 1.0, "weight per output toggle", "SB_SPRAM256KA DATAOUT: as w_dsp"),
    Assumption("w_other", 0.0, "weight per output toggle",
               "SB_IO, SB_GB, oscillators, PLL: not counted (pads are on the I/O bank rails; the clock "
               "network is in k_clk)"),
    Assumption("e_mult_pj", round(0.2 * _TO_VCORE / 64, 6), "pJ per partial-product toggle",
               f"{_HOROWITZ}: 8-bit multiply 0.2 pJ (32-bit: 3.1 pJ, about 16 times, i.e. the number of "
               "partial products); random 8-bit operands make 4 + 4 input toggles, each touching the 8 "
               "partial products of the other operand: 64 partial-product toggles per multiply; scaled to "
               "1.219 V"),
    Assumption("e_ebr_pj", round(10.0 * (16 / 64) * math.sqrt(512 / 8192) * _TO_VCORE, 4), "pJ per access",
               f"{_HOROWITZ}: 64-bit read of an 8 KB SRAM 10 pJ, of a 32 KB one 20 pJ (energy ~ sqrt(size)); "
               "an SB_RAM40_4K is 4 kbit (512 B) with a 16-bit port: 10 pJ x 16/64 x sqrt(512/8192), "
               "scaled to 1.219 V; a write taken as a read"),
    Assumption("e_spram_pj", round(20.0 * (16 / 64) * _TO_VCORE, 4), "pJ per access",
               f"{_HOROWITZ}: 64-bit read of a 32 KB SRAM 20 pJ; an SB_SPRAM256KA is 256 kbit (32 KB) with "
               "a 16-bit port: 20 pJ x 16/64, scaled to 1.219 V; a write taken as a read"),
    Assumption("c_ff_clock_ff", 4.0, "fF per flip-flop, charged once per cycle",
               "my estimate, no iCE40 figure is published: about 1 fF for a 40 nm flip-flop's clock pin, "
               "2 fF for its internal clock inverters, 1 fF for its share of the logic block's local clock "
               "wire and clock mux"),
)}

#: toggle weight ``w_g`` per cell group of :mod:`hwq.synth.activity`
TOGGLE_WEIGHTS = {group: ASSUMPTIONS[f"w_{group}"].value for group in GROUPS}


def activity_features(activity):
    """The model's inputs from one design's activity.

    Parameters
    ----------
    activity : hwq.synth.activity.Activity

    Returns
    -------
    dict
        ``weighted_toggles`` (``T_w``, weighted output toggles per cycle), ``fixed_energy_pj``
        (``E_fixed``, pJ per cycle from the assumed energies: multiplier, memories, flip-flop
        clock pins) and its parts ``mult_pj``, ``ebr_pj``, ``spram_pj``, ``ff_clock_pj``.
    """
    a = ASSUMPTIONS
    weighted = sum(TOGGLE_WEIGHTS[g] * activity.groups[g].toggles for g in GROUPS) / activity.cycles
    parts = {
        "mult_pj": a["e_mult_pj"].value * activity.mult_toggles_per_cycle(),
        "ebr_pj": a["e_ebr_pj"].value * activity.accesses_per_cycle("ram"),
        "spram_pj": a["e_spram_pj"].value * activity.accesses_per_cycle("spram"),
        "ff_clock_pj": a["c_ff_clock_ff"].value * 1e-3 * VCORE_MEASURED_V ** 2 * activity.count("ff"),
    }
    return {"weighted_toggles": weighted, "fixed_energy_pj": sum(parts.values()), **parts}


def _solve(rows):
    """Least squares ``I - f*E/V = I_static + k_clk*f + k_tog*f*T`` over ``rows`` of
    ``(f, T, E, I)``, in exact arithmetic; ``None`` when the three parameters are not identifiable."""
    v = Fraction(VCORE_MEASURED_V)
    xs = [(Fraction(1), Fraction(f), Fraction(f) * Fraction(t)) for f, t, _, _ in rows]
    ys = [Fraction(i) - Fraction(f) * Fraction(e) / v for f, _, e, i in rows]
    a = [[sum(x[r] * x[c] for x in xs) for c in range(3)] + [sum(x[r] * y for x, y in zip(xs, ys))]
         for r in range(3)]
    for col in range(3):
        pivot = next((r for r in range(col, 3) if a[r][col] != 0), None)
        if pivot is None:
            return None
        a[col], a[pivot] = a[pivot], a[col]
        for r in range(3):
            if r != col and a[r][col] != 0:
                factor = a[r][col] / a[col][col]
                a[r] = [p - factor * q for p, q in zip(a[r], a[col])]
    return tuple(float(a[r][3] / a[r][r]) for r in range(3))


def _current(coef, f, t, e):
    static, k_clk, k_tog = coef
    return static + f * (k_clk + k_tog * t + e / VCORE_MEASURED_V)


def _calibrate(document):
    """Fit, leave-one-out and validation from the shipped activity document."""
    features = {None: activity_features(Activity.idle())}
    for name, design in document["designs"].items():
        features[name] = activity_features(Activity.from_dict(design["activity"]))
    missing = sorted({m.design for m in MEASUREMENTS if m.design not in features})
    if missing:
        raise InputError(f"{ACTIVITY_DATA} has no activity of {', '.join(missing)}; "
                         "regenerate it: python -m hwq.calibrate_power")

    def row(m):
        f = features[m.design]
        return (m.freq_mhz, f["weighted_toggles"], f["fixed_energy_pj"], m.core_ua)

    fit_rows = [m for m in MEASUREMENTS if m.role == "fit"]
    coef = _solve([row(m) for m in fit_rows])
    if coef is None:
        raise InputError(f"the activity model cannot be fitted to {ACTIVITY_DATA}; regenerate it")

    def entry(m, c, kind):
        f, t, e, measured = row(m)
        predicted = _current(c, f, t, e)
        out = {"key": m.key, "row": m.row, "clock": m.clock, "freq_mhz": m.freq_mhz,
               "weighted_toggles": round(t, 4), "measured_ua": measured, "predicted_ua": round(predicted, 1),
               "error_ua": round(predicted - measured, 1),
               "error": round((predicted - measured) / measured, 4)}
        # the band of an estimate is u_static * static + u_dynamic * dynamic, so errors count in
        # units of the estimated part
        if kind == "dynamic":
            out["dynamic_error"] = round((predicted - measured) / (predicted - c[0]), 4)
        else:
            out["static_error"] = round((predicted - measured) / predicted, 4)
        return out

    fit = [entry(m, coef, "dynamic" if m.freq_mhz else "static") for m in fit_rows]
    loo = []
    for m in fit_rows:
        c = _solve([row(o) for o in fit_rows if o is not m])
        if c is None:
            loo.append({"key": m.key, "row": m.row, "measured_ua": m.core_ua, "predicted_ua": None,
                        "error": None, "note": "not identifiable without this row: it is the only one without "
                                               "a clock, so the other three fix I_static + 12*k_clk, not each"})
        else:
            loo.append(entry(m, c, "dynamic") | {"coefficients": [round(x, 4) for x in c]})
    validation = [entry(m, coef, "dynamic" if m.freq_mhz > _STATIC_ROWS_BELOW_MHZ else "static")
                  for m in MEASUREMENTS if m.role == "validation"]
    dynamic = [abs(e["dynamic_error"]) for e in loo + validation if e.get("dynamic_error") is not None]
    static = [abs(e["static_error"]) for e in validation if "static_error" in e]
    return {
        "coefficients": {"static_ua": coef[0], "clk_ua_per_mhz": coef[1], "tog_ua_per_mhz": coef[2]},
        "fit": fit,
        "loo": loo,
        "validation": validation,
        "uncertainty": {"static": round(max(static), 3), "dynamic": round(max(dynamic), 3)},
        "designs": {name: {"weighted_toggles": round(f["weighted_toggles"], 4),
                           "fixed_energy_pj": round(f["fixed_energy_pj"], 4)}
                    for name, f in features.items() if name is not None},
        "tools": dict(document.get("tools", {})),
        "cycles": document.get("cycles"),
    }


def _load():
    try:
        document = json.loads(ACTIVITY_DATA.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"{ACTIVITY_DATA} is missing; regenerate it: python -m hwq.calibrate_power"
    except (OSError, ValueError) as exc:
        return None, f"{ACTIVITY_DATA} cannot be read ({exc}); regenerate it: python -m hwq.calibrate_power"
    try:
        return _calibrate(document), None
    except (InputError, KeyError, TypeError, ValueError) as exc:
        return None, f"{ACTIVITY_DATA} does not calibrate the model ({exc}); regenerate it"


#: the fit, done once at import from the shipped data (a few milliseconds)
_CALIBRATION, _CALIBRATION_ERROR = _load()

#: the fitted parameters (µA, µA/MHz, µA/MHz per weighted toggle per cycle), or None without data
ACTIVITY_COEFFICIENTS = dict(_CALIBRATION["coefficients"]) if _CALIBRATION else None


def _calibration():
    if _CALIBRATION is None:
        raise InputError(f"the activity power model has no calibration: {_CALIBRATION_ERROR}")
    return _CALIBRATION


_NOTES = (
    "ESTIMATE, not a measurement: the band is the largest leave-one-out or held-out error of the calibration "
    "(hwq.synth.power.calibration_report), applied to the static and the dynamic current separately.",
    "Pre-route toggles: the netlist has no routing, so k_tog carries the average wire load of the small "
    "calibration designs; long nets of a large, dense design cost more, so large designs are likely "
    "underestimated.",
    "Zero-delay simulation: glitches are not counted; k_tog absorbs the glitch rate of the calibration's "
    "8x8 multiplier; deeper combinational logic glitches more.",
    "Calibrated with the internal HFOSC as clock: k_clk includes the oscillator (about 30-45 uA at 12 MHz, "
    "from the held-out rows); with an external clock the model overestimates by about that.",
    "Core rail only (1.219 V): no I/O bank, PLL or RGB driver current; iCE40UP5K only.",
)


def estimate_activity_power(activity, freqs_mhz):
    """Estimated iCE40UP5K core power of a design from its simulated switching activity.

    Parameters
    ----------
    activity : hwq.synth.activity.Activity or dict
        The design's activity (:func:`hwq.synth.activity.cell_activity`, or its
        :meth:`~hwq.synth.activity.Activity.to_dict`), from a simulation of the synthesized
        netlist at the workload of interest.
    freqs_mhz : iterable of float
        Clock frequencies to evaluate, MHz (the activity per cycle is taken as independent of
        the clock).

    Returns
    -------
    dict
        An ESTIMATE (``"estimate": True``, ``label``), with ``model`` (:data:`ACTIVITY_MODEL`),
        ``vcore_v`` (1.219), ``coefficients`` (the fitted ``static_ua``, ``clk_ua_per_mhz``,
        ``tog_ua_per_mhz``), ``uncertainty`` (``static`` and ``dynamic``: relative, from
        :func:`calibration_report`), ``inputs`` (``weighted_toggles`` ``T_w`` and the assumed
        ``fixed_energy_pj`` per cycle with its parts, the cell summary, untraced bits),
        ``dynamic_energy_per_cycle_pj`` (pJ per clock cycle, independent of the clock),
        ``notes`` (the caveats) and ``points``: per frequency ``freq_mhz``, ``current_ua`` with
        ``current_ua_low`` / ``current_ua_high``, ``static_mw``, ``dynamic_mw``, ``power_mw``
        (with ``power_mw_low`` / ``power_mw_high``) and ``energy_per_cycle_pj`` (total power /
        f, static share included; ``None`` at 0 MHz).

    Raises
    ------
    InputError
        If ``activity`` is not an activity, a frequency is negative or not a number
        (``freqs_mhz``), or the shipped calibration data are missing.
    """
    cal = _calibration()
    if isinstance(activity, dict):
        activity = Activity.from_dict(activity)
    elif not isinstance(activity, Activity):
        raise InputError(f"activity must be an hwq.synth.activity.Activity (cell_activity) or its dict, "
                         f"got {type(activity).__name__}")
    c = cal["coefficients"]
    u_static, u_dynamic = cal["uncertainty"]["static"], cal["uncertainty"]["dynamic"]
    feats = activity_features(activity)
    v = VCORE_MEASURED_V
    per_mhz = c["clk_ua_per_mhz"] + c["tog_ua_per_mhz"] * feats["weighted_toggles"] + feats["fixed_energy_pj"] / v
    points = []
    for freq in freqs_mhz:
        if isinstance(freq, bool) or not isinstance(freq, (int, float)) or not math.isfinite(freq) or freq < 0:
            raise InputError(f"freqs_mhz must hold non-negative numbers of MHz, got {freq!r}")
        static, dynamic = c["static_ua"], freq * per_mhz
        current, band = static + dynamic, u_static * static + u_dynamic * dynamic
        points.append({
            "freq_mhz": round(float(freq), 3),
            "current_ua": round(current, 1),
            "current_ua_low": round(current - band, 1),
            "current_ua_high": round(current + band, 1),
            "static_mw": round(static * v / 1000, 4),
            "dynamic_mw": round(dynamic * v / 1000, 4),
            "power_mw": round(current * v / 1000, 4),
            "power_mw_low": round((current - band) * v / 1000, 4),
            "power_mw_high": round((current + band) * v / 1000, 4),
            "energy_per_cycle_pj": round(current * v / freq, 2) if freq > 0 else None,
        })
    notes = list(_NOTES)
    if activity.untraced_bits:
        notes.append(f"{activity.untraced_bits} cell output or enable bits were not in the SAIF: their toggles "
                     "are missing (estimate low); trace with --trace-underscore.")
    return {
        "estimate": True,
        "label": (f"ESTIMATE (static ±{u_static:.0%}, dynamic ±{u_dynamic:.0%}, from the calibration's "
                  "leave-one-out and held-out errors)"),
        "model": ACTIVITY_MODEL,
        "vcore_v": v,
        "coefficients": {key: round(value, 4) for key, value in c.items()},
        "uncertainty": {"static": u_static, "dynamic": u_dynamic},
        "inputs": {"top": activity.top, "cycles": activity.cycles,
                   "weighted_toggles": round(feats["weighted_toggles"], 4),
                   **{key: round(value, 4) for key, value in feats.items() if key != "weighted_toggles"},
                   "cells": activity.summary(), "untraced_bits": activity.untraced_bits},
        "dynamic_energy_per_cycle_pj": round(per_mhz * v, 2),
        "notes": notes,
        "points": points,
    }


def calibration_report():
    """The activity model's calibration: fit, leave-one-out errors, held-out rows, uncertainty.

    Returns
    -------
    dict
        ``model``; ``source`` (the measurements); ``vcore_v``; ``coefficients`` (fitted
        ``static_ua``, ``clk_ua_per_mhz``, ``tog_ua_per_mhz``); ``assumptions`` (every fixed
        number with its value, unit and source); ``designs`` (per calibration design its
        ``weighted_toggles`` and ``fixed_energy_pj`` per cycle); ``fit`` (the four fitted rows
        with prediction and residual); ``loo`` (each fitted row predicted from a fit to the other
        three; the blank row is not identifiable that way); ``validation`` (the nine held-out
        rows); ``uncertainty`` (``static``: the largest ``static_error`` of the held-out rows
        without a running clock, ``dynamic``: the largest ``dynamic_error`` of the leave-one-out
        and the clocked held-out rows); ``tools`` and ``cycles`` of the shipped activity data.
        Errors are predicted minus measured: ``error`` relative to the measured current,
        ``dynamic_error`` relative to the estimated dynamic current (estimate minus
        ``I_static``), ``static_error`` relative to the estimate, so that an estimate's band,
        ``u_static * static + u_dynamic * dynamic``, holds every such row.

    Raises
    ------
    InputError
        If the shipped calibration data are missing.
    """
    cal = _calibration()
    return json.loads(json.dumps({
        "model": ACTIVITY_MODEL,
        "source": ("tinyvision-ai-inc/ice40_power, README.md 'Results' (core rail, 1.219 V, iCE40UP5K-SG48); "
                   "designs power_test/rgb_blink.v, reproduced in hwq/synth/calibration/*.v"),
        "vcore_v": VCORE_MEASURED_V,
        "coefficients": cal["coefficients"],
        "assumptions": [dataclasses.asdict(a) for a in ASSUMPTIONS.values()],
        **{key: cal[key] for key in ("designs", "fit", "loo", "validation", "uncertainty", "tools", "cycles")},
    }))


def _pct(value):
    return "n/a" if value is None else f"{value * 100:+.1f} %"


def format_calibration_report(report=None):
    """:func:`calibration_report` as Markdown tables (docs/toolchain.md, ``--report``)."""
    r = report or calibration_report()
    c = r["coefficients"]
    tools = ", ".join(f"{name} {version}" for name, version in sorted(r["tools"].items()))
    lines = [f"Fitted: I_static = {c['static_ua']:.1f} uA, k_clk = {c['clk_ua_per_mhz']:.3f} uA/MHz, "
             f"k_tog = {c['tog_ua_per_mhz']:.4f} uA/MHz per weighted toggle per cycle "
             f"(V = {r['vcore_v']} V; activity over {r['cycles']} cycles, {tools}).",
             "", "| calibration design | T_w (toggles/cycle) | E_fixed (pJ/cycle) |", "|---|---:|---:|"]
    lines += [f"| {name} | {d['weighted_toggles']:.2f} | {d['fixed_energy_pj']:.3f} |"
              for name, d in r["designs"].items()]
    lines += ["", "Errors are estimate minus measurement: of the measured current, and of the estimated dynamic "
                  "(estimate minus I_static) or static current.",
              "", "| fitted row | measured uA | fit uA | residual | leave-one-out uA | LOO error | LOO dynamic error |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for fit, loo in zip(r["fit"], r["loo"]):
        lines.append(f"| {fit['row']} | {fit['measured_ua']} | {fit['predicted_ua']} | {_pct(fit['error'])} | "
                     f"{loo['predicted_ua'] if loo['predicted_ua'] is not None else 'not identifiable'} | "
                     f"{_pct(loo['error'])} | {_pct(loo.get('dynamic_error'))} |")
    lines += ["", "| held-out row | clock | measured uA | predicted uA | error | dynamic / static error |",
              "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {v['row']} | {v['clock']} | {v['measured_ua']} | {v['predicted_ua']} | {_pct(v['error'])} | "
              + (f"{_pct(v['dynamic_error'])} dyn. |" if "dynamic_error" in v else f"{_pct(v['static_error'])} stat. |")
              for v in r["validation"]]
    u = r["uncertainty"]
    lines += ["", f"Uncertainty stated with every estimate: static ±{u['static'] * 100:.1f} %, dynamic "
                  f"±{u['dynamic'] * 100:.1f} % (largest errors above)."]
    return "\n".join(lines)


def inference_energy(estimate, cycles, macs):
    """Energy per inference and per MAC at each frequency of a power estimate.

    Parameters
    ----------
    estimate : dict
        :func:`estimate_activity_power` or :func:`estimate_power` (their ``points``:
        ``freq_mhz`` and ``power_mw``, with ``power_mw_low``/``power_mw_high`` when given).
    cycles : int
        Clock cycles per inference.
    macs : int
        Multiply-accumulates per inference.

    Returns
    -------
    list of dict
        Per point: ``freq_mhz``, ``power_mw``, ``energy_per_inference_uj`` = ``power_mw *
        cycles / freq_mhz`` (mW x µs = nJ, / 1000 for µJ) and ``energy_per_mac_pj`` =
        that / ``macs``, with ``_low``/``_high`` bounds when the estimate has them; points at
        0 MHz are left out (no inference ends).

    Raises
    ------
    InputError
        If ``cycles`` or ``macs`` is not a positive integer.
    """
    for name, value in (("cycles", cycles), ("macs", macs)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    rows = []
    for point in estimate["points"]:
        f = point["freq_mhz"]
        if not f:
            continue
        row = {"freq_mhz": f, "power_mw": point["power_mw"]}
        for suffix in ("", "_low", "_high"):
            if f"power_mw{suffix}" in point:
                uj = point[f"power_mw{suffix}"] * cycles / f / 1000
                row[f"energy_per_inference_uj{suffix}"] = round(uj, 4)
                row[f"energy_per_mac_pj{suffix}"] = round(uj * 1e6 / macs, 3)
        rows.append(row)
    return rows
