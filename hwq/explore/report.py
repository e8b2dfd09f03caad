"""A sweep's result as files: every point, the Pareto fronts, the cheapest point per format, plots.

:func:`write_report` turns :func:`hwq.explore.sweep.sweep`'s result into a directory:

- ``points.json``: the whole result (per-sample outcomes included), each point with its 95 %
  Wilson interval (``acc_low``, ``acc_high``) and whether it is on each front
  (``on_front_<front>``), and the report's ``summary`` (fronts, cheapest points);
- ``points.csv``: one row per point, flat columns (:data:`CSV_COLUMNS`);
- ``points.md``: every point as a Markdown table;
- ``pareto.md``: per front of :data:`hwq.explore.pareto.FRONTS` (accuracy against logic cells,
  against energy per inference, against inferences/s), its points ordered from the best cost
  (fewest logic cells, least energy, most inferences/s);
- ``cheapest.md``: per format, the point with the fewest logic cells among those that fit and lose
  at most ``max_loss`` accuracy against the float model, and which other formats' picks it cannot
  be told apart from (the exact McNemar test on the same test images, :func:`~hwq.explore.stats.mcnemar`);
- ``pareto_lcs.png``, ``pareto_energy.png``, ``pareto_throughput.png`` (:data:`PLOTS`): accuracy
  with its interval against each cost, the front highlighted.

:func:`summary_text` gives the same conclusions in a few lines for the terminal.

Accuracy is a measurement on N test images (one image is 100/N %), so every accuracy comes with
its interval. Energy figures are ESTIMATES (first-order or activity-based, as the point says,
:mod:`hwq.synth.power`), and every file labels them so.

The files are deterministic: the same result gives the same bytes (keys sorted, floats rounded to
:data:`SIGNIFICANT` significant digits, no timestamps, no absolute paths: a worker's temporary
directory in a failure reason is written ``<tmp>``; the plots' PNG metadata carry no software
version).
"""

import csv
import io
import json
import math
import numbers
import re
from pathlib import Path

from ..errors import InputError
from ..fileio import check_writable_dir, write_atomic
from .pareto import FRONTS, pareto_front
from .stats import ALPHA, mcnemar, wilson
from .tasks import DOES_NOT_FIT, FAILED, OK, REFUSED

__all__ = ["write_report", "summary_text", "CSV_COLUMNS", "PLOTS", "SIGNIFICANT"]

#: significant digits of the floats the report writes
SIGNIFICANT = 6

#: the columns of ``points.csv``, in order
CSV_COLUMNS = ("name", "format", "config", "w_bits", "a_bits", "array", "pes", "pipeline", "mapping", "mapping_used",
               "seed",
               "status", "accuracy", "acc_low", "acc_high", "lcs", "ebr", "spram", "dsp", "fmax_mhz", "cycles",
               "inferences_per_s", "energy_uj", "energy_kind", "fits",
               *(f"on_front_{name}" for name in FRONTS), "reason")

#: front name -> the plot's file name
PLOTS = {name: f"pareto_{name}.png" for name in FRONTS}

#: statuses in the order the summaries count them
_STATUSES = (OK, DOES_NOT_FIT, REFUSED, FAILED)

#: cost key -> (axis / heading label, short column label)
_COST_LABELS = {
    "lcs": ("logic cells (nextpnr, post-placement)", "LCs"),
    "energy_uj": ("energy per inference at Fmax (µJ), ESTIMATE", "µJ/inference (ESTIMATE)"),
    "inferences_per_s": ("inferences/s at Fmax", "inf/s"),
}

#: a point at the accuracy limit counts: accuracies are whole images out of N, so anything closer
#: than this is float rounding of the same value
_TOLERANCE = 1e-9

#: marker per configuration, in the order the configurations appear
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")

#: a worker's temporary directory (:mod:`hwq.explore.tasks`) in a failure reason
_TMP_PATH = re.compile(r"(?:/[^\s/'\"]+)*/hwq-explore-[^\s/'\"]+")

#: longest reason in the Markdown tables (the CSV and JSON keep it whole)
_SHORT_REASON = 70


def write_report(result, out, *, max_loss=0.005, plots=True):
    """Write the report of a sweep into directory ``out`` (module docstring).

    Parameters
    ----------
    result : dict
        :func:`hwq.explore.sweep.sweep`'s result: ``points`` (list of dicts), ``fp32``
        (``correct``, ``total``, ``accuracy``, ``outcomes``), ``outcomes`` (per
        ``"<format>_<w_bits>_<a_bits>"``, a ``"0"``/``"1"`` string per test image) and the
        sweep's ``stats``, ``timing``, ``environment``, ``target``.
    out : path-like
        The directory; created (with its parents) if missing. Files of the same names are
        replaced, each atomically (:func:`hwq.fileio.write_atomic`); other files are left alone.
    max_loss : float
        Accuracy a format's cheapest point may lose against FP32, as a fraction (``0.005``:
        0.5 %); a point exactly at the limit counts.
    plots : bool
        Write the PNG plots (:data:`PLOTS`; needs matplotlib).

    Returns
    -------
    dict
        ``fronts``: front name -> the names of its points, ordered from the best cost; ``cheapest``:
        format -> its pick (``point`` is None when no point is within ``max_loss``; ``text`` says
        it in a sentence); ``max_loss``; ``files``: the file names written, relative to ``out``.

    Raises
    ------
    InputError
        Before anything is written: ``out`` (or an ancestor) is a file or not writable, a file
        the report writes exists in ``out`` as a directory, ``max_loss`` is not a fraction, or
        ``result`` is malformed; or, with ``plots``, matplotlib is missing. The message names
        ``out``.
    """
    out = Path(out)
    check_writable_dir(out, name="report directory", option="output directory")
    if isinstance(max_loss, bool) or not isinstance(max_loss, numbers.Real) or not 0 <= max_loss <= 1:
        raise InputError(f"report directory {out}: max_loss must be a fraction from 0 to 1 (0.005 = 0.5 %), "
                         f"not {max_loss!r}")
    points, fp32, outcomes = _check_result(result, out)
    report = _analyse(points, fp32, outcomes, float(max_loss))
    report["qat_epochs"] = result.get("qat_epochs") or 0

    files = {"points.json": _json(result, report), "points.csv": _csv(points, report),
             "points.md": _points_md(points, fp32, report), "pareto.md": _pareto_md(fp32, report),
             "cheapest.md": _cheapest_md(fp32, report)}
    if plots:
        try:
            import matplotlib   # noqa: F401
        except ImportError:
            raise InputError(f"report directory {out}: the plots need matplotlib (pip install 'hwq[explore]'), "
                             "or write the report without plots") from None
        for name, file_name in PLOTS.items():
            files[file_name] = _plot(name, points, fp32, report)

    for name in files:
        if (out / name).exists() and not (out / name).is_file():
            raise InputError(f"report directory {out}: {out / name} exists and is not a file; remove it or "
                             "choose another output directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"report directory {out} cannot be created ({exc.strerror}); choose another output "
                         "directory") from None
    for name, content in files.items():
        write_atomic(out / name, content)
    return {"fronts": {name: [p["name"] for p in front] for name, front in report["fronts"].items()},
            "cheapest": report["cheapest"], "max_loss": report["max_loss"], "files": list(files)}


def summary_text(result, summary):
    """A few lines for the terminal: points by status, each front, the cheapest point per format.

    Parameters
    ----------
    result : dict
        :func:`hwq.explore.sweep.sweep`'s result.
    summary : dict
        :func:`write_report`'s return value for it.

    Returns
    -------
    str
        Lines without a trailing newline.
    """
    points = result["points"]
    by_name = {p["name"]: p for p in points}
    statuses = [p.get("status") for p in points]
    counts = [f"{statuses.count(s)} {_status_plural(s)}" for s in _STATUSES if statuses.count(s)]
    counts += [f"{statuses.count(s)} {s}" for s in sorted({s for s in statuses if s not in _STATUSES}, key=str)]
    lines = [f"{len(points)} points: " + (", ".join(counts) or "none")]
    fp32 = result["fp32"]
    lines.append(f"FP32: {_pct(fp32['correct'] / fp32['total'])} on {fp32['total']} test images (one image is "
                 f"{100 / fp32['total']:.2f} %)")
    for name, names in summary["fronts"].items():
        cost = _cost(name)
        items = [f"{n} ({_pct(by_name[n]['accuracy'])}, {_number(by_name[n].get(cost), cost)})" for n in names]
        lines.append(f"front, accuracy vs {_COST_LABELS.get(cost, (cost, cost))[1]}: " + ("; ".join(items) or
                                                                                          "no point"))
    lines.append(f"cheapest (fewest LCs) within {_loss(summary['max_loss'])} of FP32:")
    for fmt, pick in summary["cheapest"].items():
        lines.append(f"  {fmt}: {pick['text']}")
    return "\n".join(lines)


# --- checking ------------------------------------------------------------------------------------

def _check_result(result, out):
    """``(points, fp32, outcomes)`` of ``result``, checked; points with their reasons scrubbed."""
    def bad(what):
        return InputError(f"report directory {out}: the sweep result {what}")
    if not isinstance(result, dict) or not isinstance(result.get("points"), list):
        raise bad("must be a dict with a list of 'points' (hwq.explore.sweep's result)")
    fp32 = result.get("fp32")
    if (not isinstance(fp32, dict) or not _is_int(fp32.get("total")) or fp32["total"] < 1
            or not _is_int(fp32.get("correct")) or not 0 <= fp32["correct"] <= fp32["total"]):
        raise bad("needs 'fp32' with integer 'correct' and 'total' (at least one test image)")
    fp32 = {**fp32, "accuracy": fp32["correct"] / fp32["total"]}
    total = fp32["total"]
    outcomes = dict(result.get("outcomes") or {})
    if fp32.get("outcomes") is not None:
        outcomes["fp32"] = fp32["outcomes"]
    for key, text in outcomes.items():
        if text is None:
            continue
        if not isinstance(text, str) or len(text) != total or set(text) - {"0", "1"}:
            raise bad(f"outcomes {key!r} must be a string of one '0' or '1' per test image ({total})")
    points, names = [], set()
    for i, p in enumerate(result["points"]):
        if not isinstance(p, dict) or not all(isinstance(p.get(k), str) for k in ("name", "format", "status")):
            raise bad(f"point {i} must be a dict with 'name', 'format' and 'status' strings")
        if p["name"] in names:
            raise bad(f"names point {p['name']!r} twice")
        names.add(p["name"])
        for key in ("accuracy", "lcs", "ebr", "spram", "dsp", "fmax_mhz", "cycles", "inferences_per_s",
                    "energy_uj"):
            value = p.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)
                                      or not math.isfinite(value)):
                raise bad(f"point {p['name']}: {key} must be a finite number or None, not {value!r}")
        if p.get("accuracy") is not None and not 0 <= p["accuracy"] <= 1:
            raise bad(f"point {p['name']}: accuracy {p['accuracy']!r} is not a fraction")
        if p.get("correct") is not None and not (_is_int(p["correct"]) and _is_int(p.get("total"))
                                                 and 0 <= p["correct"] <= p["total"] and p["total"] >= 1):
            raise bad(f"point {p['name']}: needs integer 0 <= correct <= total")
        if p.get("energy") is not None and not isinstance(p["energy"], dict):
            raise bad(f"point {p['name']}: energy must be a dict or None")
        points.append({**p, "reason": _scrub(p.get("reason") or "")})
    return points, fp32, outcomes


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _scrub(text):
    """``text`` with a worker's temporary directories written ``<tmp>``."""
    return _TMP_PATH.sub("<tmp>", str(text))


# --- analysis ------------------------------------------------------------------------------------

def _cost(front):
    """The cost key of front ``front`` (the objective that is not accuracy)."""
    return next(key for key, _ in FRONTS[front] if key != "accuracy")


def _sense(front):
    return next(sense for key, sense in FRONTS[front] if key != "accuracy")


def _interval(p):
    """``(low, high)`` 95 % Wilson interval of ``p``'s accuracy, or ``(None, None)``."""
    if p.get("correct") is not None and p.get("total"):
        return wilson(p["correct"], p["total"])
    return None, None


def _accuracy_key(p):
    return f"{p['format']}_{p.get('w_bits')}_{p.get('a_bits')}"


def _analyse(points, fp32, outcomes, max_loss):
    """Intervals, fronts and cheapest picks (one dict the writers share)."""
    intervals = {p["name"]: _interval(p) for p in points}
    fitting = [p for p in points if p["status"] == OK]
    fronts = {}
    for name, objectives in FRONTS.items():
        cost = _cost(name)
        front = pareto_front(fitting, objectives)
        sign = 1 if _sense(name) == "min" else -1   # best cost first: fewest LCs, most inferences/s
        fronts[name] = sorted(front, key=lambda p: (sign * p[cost], -p["accuracy"], p["name"]))
    on_front = {name: {p["name"] for p in front} for name, front in fronts.items()}
    formats = list(dict.fromkeys(p["format"] for p in points))
    configs = list(dict.fromkeys(p.get("config") or f"w{p.get('w_bits')}a{p.get('a_bits')}" for p in points))
    report = {"intervals": intervals, "fronts": fronts, "on_front": on_front, "formats": formats,
              "configs": configs, "max_loss": max_loss}
    report["cheapest"] = _cheapest(points, fp32, outcomes, max_loss, intervals, formats)
    return report


def _cheapest(points, fp32, outcomes, max_loss, intervals, formats):
    """Per format: the fitting point with the fewest logic cells (ties: more inferences/s) whose
    accuracy is at least FP32's minus ``max_loss``, compared with the other formats' picks."""
    limit = fp32["accuracy"] - max_loss
    picks, chosen = {}, {}
    for fmt in formats:
        fitting = [p for p in points if p["format"] == fmt and p["status"] == OK and p.get("accuracy") is not None
                   and p.get("lcs") is not None]
        within = [p for p in fitting if p["accuracy"] >= limit - _TOLERANCE]
        if within:
            best = min(within, key=lambda p: (p["lcs"], -(p.get("inferences_per_s") or 0.0), -p["accuracy"],
                                              p["name"]))
            chosen[fmt] = best
            low, high = intervals[best["name"]]
            picks[fmt] = {"point": best["name"], "config": best.get("config"), "array": best.get("array"),
                          "mapping": best.get("mapping"), "mapping_used": best.get("mapping_used"),
                          "seed": best.get("seed"), "accuracy": best["accuracy"], "acc_low": low, "acc_high": high,
                          "loss": fp32["accuracy"] - best["accuracy"], "lcs": best["lcs"],
                          "inferences_per_s": best.get("inferences_per_s"), "energy_uj": best.get("energy_uj"),
                          "energy_kind": (best.get("energy") or {}).get("kind"), "candidates": len(within),
                          "p_vs_fp32": _p(outcomes, _accuracy_key(best), "fp32")}
        elif fitting:
            top = min(fitting, key=lambda p: (-p["accuracy"], p["lcs"], p["name"]))
            picks[fmt] = {"point": None, "candidates": 0, "best_point": top["name"], "best_accuracy": top["accuracy"],
                          "text": f"none within {_loss(max_loss)} of FP32; best accuracy {_pct(top['accuracy'])} "
                                  f"at point {top['name']}"}
        else:
            picks[fmt] = {"point": None, "candidates": 0, "best_point": None, "best_accuracy": None,
                          "text": f"none within {_loss(max_loss)} of FP32; no point of this format fits"}
    for fmt, best in chosen.items():
        compared = {}
        for other, theirs in chosen.items():
            if other == fmt:
                continue
            p = _p(outcomes, _accuracy_key(best), _accuracy_key(theirs))
            compared[other] = {"point": theirs["name"], "p": p,
                               "indistinguishable": None if p is None else p >= ALPHA}
        pick = picks[fmt]
        pick["compared"] = compared
        pick["indistinguishable_from"] = [o for o, c in compared.items() if c["indistinguishable"]]
        text = (f"{pick['point']}: {_pct(pick['accuracy'])} [{_pct(pick['acc_low'], '')}, {_pct(pick['acc_high'])}], "
                f"{_number(pick['lcs'], 'lcs')} LCs, {_number(pick['inferences_per_s'], 'inferences_per_s')} inf/s")
        if compared:
            same = pick["indistinguishable_from"]
            text += ("; indistinguishable in accuracy from " + ", ".join(same) if same else
                     "; accuracy differs from every other format's pick (McNemar p < 0.05)")
        pick["text"] = text
    return picks


def _p(outcomes, a, b):
    """McNemar p of outcome strings ``a`` and ``b``, or None if either is missing."""
    if outcomes.get(a) is None or outcomes.get(b) is None:
        return None
    return mcnemar(outcomes[a], outcomes[b])


# --- formatting ----------------------------------------------------------------------------------

def _round(x):
    return float(f"{x:.{SIGNIFICANT}g}")


def _plain(value):
    """``value`` as JSON types: floats rounded (non-finite: None), numpy scalars unwrapped, reasons scrubbed."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return _round(float(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        return _scrub(value)
    if hasattr(value, "item"):                      # a numpy bool
        return _plain(value.item())
    return _scrub(str(value))


def _pct(fraction, unit=" %"):
    return "–" if fraction is None else f"{100 * fraction:.2f}{unit}"


def _loss(max_loss):
    return f"{_round(100 * max_loss):g} %"


def _number(value, key):
    """A figure for a table cell: integers whole, rates with thousands separators, others to 3-4 digits."""
    if value is None:
        return "–"
    if key in ("lcs", "ebr", "spram", "dsp", "cycles", "pes"):
        return f"{int(value):d}"
    if key == "inferences_per_s":
        return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
    if key == "fmax_mhz":
        return f"{value:.1f}"
    return f"{value:.3g}"


def _energy_cell(p):
    """µJ per inference with its kind (and band, if any), or a dash."""
    energy = p.get("energy") or {}
    value = p.get("energy_uj")
    if value is None:
        return "–"
    text = f"{value:.3g}"
    low, high = energy.get("energy_per_inference_uj_low"), energy.get("energy_per_inference_uj_high")
    if low is not None and high is not None:
        text += f" ({low:.3g}–{high:.3g})"
    return text + f" {energy.get('kind') or 'estimate'}"


def _cell(text):
    """Text safe in a Markdown table cell."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _status_cell(p):
    reason = " ".join((p.get("reason") or "").split())
    if not reason or p["status"] == OK:
        return p["status"]
    if len(reason) > _SHORT_REASON:
        reason = reason[:_SHORT_REASON - 1].rstrip() + "…"
    return f"{p['status']}: {reason}"


def _status_plural(status):
    return {OK: "fit (ok)", DOES_NOT_FIT: "do not fit", REFUSED: "refused", FAILED: "failed"}.get(status, status)


def _accuracy_cell(p, intervals):
    low, high = intervals[p["name"]]
    if p.get("accuracy") is None:
        return "–"
    if low is None:
        return _pct(p["accuracy"])
    return f"{_pct(p['accuracy'])} [{_pct(low, '')}, {_pct(high, '')}]"


def _table(headers, rows, right=()):
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---:" if h in right else "---" for h in headers) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _preamble(fp32, report):
    n = fp32["total"]
    qat = report.get("qat_epochs") or 0
    training = (f"Accuracy after {qat} epoch(s) of quantization-aware training" if qat else
                "Accuracy after post-training quantization")
    return (f"{training}, of the integer model (bit-exact with the hardware). FP32 accuracy: {_pct(fp32['accuracy'])} ({fp32['correct']} of {n} test images). With {n} test "
            f"images one image is {100 / n:.2f} %, so accuracies a few images apart may not differ: each accuracy "
            "is given with its 95 % Wilson interval [low, high].")


_ENERGY_NOTE = ("Energy per inference at Fmax is an ESTIMATE, labelled with its kind: first-order (from the "
                "resources and the clock) or activity-based (from the synthesized netlist's switching activity), "
                "with its band (low–high) where known; see hwq.synth.power.")


# --- the files -----------------------------------------------------------------------------------

def _json(result, report):
    document = {k: v for k, v in result.items() if k != "points"}
    document["fp32"] = {**result["fp32"], "accuracy": result["fp32"]["correct"] / result["fp32"]["total"]}
    document["points"] = []
    for p in result["points"]:
        low, high = report["intervals"][p["name"]]
        row = {**p, "acc_low": low, "acc_high": high}
        row.update({f"on_front_{name}": p["name"] in names for name, names in report["on_front"].items()})
        document["points"].append(row)
    document["summary"] = {"max_loss": report["max_loss"],
                           "fronts": {name: [p["name"] for p in front] for name, front in report["fronts"].items()},
                           "cheapest": report["cheapest"]}
    return json.dumps(_plain(document), indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(_round(float(value)))
    return str(value)


def _csv(points, report):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for p in points:
        low, high = report["intervals"][p["name"]]
        row = {**p, "acc_low": low, "acc_high": high, "energy_kind": (p.get("energy") or {}).get("kind"),
               "fits": p["status"] == OK}
        row.update({f"on_front_{name}": p["name"] in names for name, names in report["on_front"].items()})
        writer.writerow([_csv_value(row.get(column)) for column in CSV_COLUMNS])
    return buffer.getvalue()


_POINT_HEADERS = ("point", "format", "config", "array", "stages", "mapping", "accuracy [95 % CI]", "LCs", "EBR", "SPRAM",
                  "DSP", "Fmax MHz", "cycles", "inf/s", "µJ/inference (ESTIMATE)")
_RIGHT = {"stages", "LCs", "EBR", "SPRAM", "DSP", "Fmax MHz", "cycles", "inf/s", "µJ/inference (ESTIMATE)",
          "accuracy [95 % CI]", "rank"}


def _point_row(p, intervals):
    mapping = p.get("mapping") or "–"
    if p.get("mapping_used") and p["mapping_used"] != p.get("mapping"):
        mapping += f" → {p['mapping_used']}"
    return [p["name"], p["format"], p.get("config") or "–", p.get("array") or "–", str(p.get("pipeline", 0)), mapping,
            _accuracy_cell(p, intervals), *(_number(p.get(k), k) for k in ("lcs", "ebr", "spram", "dsp", "fmax_mhz",
                                                                            "cycles", "inferences_per_s")),
            _energy_cell(p)]


def _points_md(points, fp32, report):
    lines = ["# Every point of the sweep", "", _preamble(fp32, report), "", _ENERGY_NOTE, "",
             "Resources, Fmax and cycles are those of a point that was synthesized; a point that does not fit, was "
             "refused or failed says why (in full in points.csv and points.json).", ""]
    rows = [[*_point_row(p, report["intervals"]), _status_cell(p)] for p in points]
    lines += _table((*_POINT_HEADERS, "status"), rows, _RIGHT)
    lines += ["", *_estimate_md(points)]
    return "\n".join(lines) + "\n"


def _estimate_md(points):
    """The analytic cost model's section: its lines and its leave-one-out error."""
    from .estimate import cost_model, leave_one_out
    model, loo = cost_model(points), leave_one_out(points)
    lines = ["## The analytic cost model", "",
             "Logic cells ≈ base + per PE × PEs, fitted per format, width and mapping on the synthesized points "
             "(hwq.explore.estimate); each line needs two array sizes. Cycles need no model: the schedule gives them "
             "exactly.", ""]
    if not model:
        return lines + ["No group has two array sizes: no line fitted."]
    rows = [[f"{fmt} w{w}a{a}", mapping, f"{line['base']:.0f}", f"{line['per_pe']:.1f}", str(line["points"])]
            for (fmt, w, a, mapping), line in sorted(model.items(), key=lambda item: tuple(map(str, item[0])))]
    lines += _table(("group", "mapping", "base LCs", "LCs per PE", "points"), rows, {"base LCs", "LCs per PE",
                                                                                     "points"})
    if loo["rows"]:
        lines += ["", f"Leave-one-out: each point predicted from the others of its group, mean absolute error "
                      f"{loo['mean_abs_error_pct']:.1f} %, largest {loo['max_abs_error_pct']:.1f} % "
                      f"({len(loo['rows'])} points)."]
    else:
        lines += ["", "Leave-one-out needs three array sizes in a group: not measured."]
    return lines


def _pareto_md(fp32, report):
    lines = ["# Pareto fronts", "", "A point is on a front when no point that fits is at least as accurate and at "
             "least as cheap on that cost, and better on one (equal points are all on it). Only points that fit "
             "(status ok) and have the cost are candidates.", "", _preamble(fp32, report), "", _ENERGY_NOTE, ""]
    for name, front in report["fronts"].items():
        cost, sense = _cost(name), _sense(name)
        label = _COST_LABELS.get(cost, (cost, cost))[0]
        lines += [f"## Accuracy vs {label}", "",
                  f"{len(front)} point(s), best {cost} first ({'less' if sense == 'min' else 'more'} is better).", ""]
        if front:
            rows = [[i + 1, *_point_row(p, report["intervals"])] for i, p in enumerate(front)]
            lines += _table(("rank", *_POINT_HEADERS), rows, _RIGHT)
        else:
            lines.append("No point that fits has this figure.")
        lines.append("")
    return "\n".join(lines)


def _cheapest_md(fp32, report):
    max_loss, picks = report["max_loss"], report["cheapest"]
    limit = fp32["accuracy"] - max_loss
    lines = [f"# Cheapest point per format within {_loss(max_loss)} of FP32", "", _preamble(fp32, report), "",
             f"Candidates: points that fit (status ok) with accuracy at least FP32's minus {_loss(max_loss)}, "
             f"{_pct(max(limit, 0.0))} (a point exactly at the limit counts). The fewest logic cells wins; ties go "
             "to more inferences/s.", "",
             f"Whether two accuracies differ: McNemar's exact test on the same {fp32['total']} test images "
             f"(hwq.explore.stats.mcnemar); p >= {ALPHA:g}: indistinguishable.", "", _ENERGY_NOTE, ""]
    chosen = {fmt: pick for fmt, pick in picks.items() if pick["point"] is not None}
    if chosen:
        headers = ("format", "point", "accuracy [95 % CI]", "loss vs FP32", "LCs", "inf/s",
                   "µJ/inference (ESTIMATE)", "McNemar p vs FP32", "indistinguishable from")
        rows = []
        for fmt, pick in chosen.items():
            energy = "–" if pick["energy_uj"] is None else f"{pick['energy_uj']:.3g} {pick['energy_kind'] or ''}"
            rows.append([fmt, pick["point"],
                         f"{_pct(pick['accuracy'])} [{_pct(pick['acc_low'], '')}, {_pct(pick['acc_high'], '')}]",
                         f"{100 * pick['loss']:.2f} %", _number(pick["lcs"], "lcs"),
                         _number(pick["inferences_per_s"], "inferences_per_s"), energy.strip(),
                         _p_cell(pick["p_vs_fp32"]),
                         ", ".join(pick["indistinguishable_from"]) or ("–" if len(chosen) > 1 else
                                                                       "(no other pick)")])
        lines += _table(headers, rows, {"LCs", "inf/s", "µJ/inference (ESTIMATE)", "loss vs FP32",
                                        "McNemar p vs FP32", "accuracy [95 % CI]"})
        lines.append("")
    missing = {fmt: pick for fmt, pick in picks.items() if pick["point"] is None}
    if missing:
        lines += ["## Formats without a point within the loss", ""]
        lines += [f"- {fmt}: {pick['text']}" for fmt, pick in missing.items()]
        lines.append("")
    if len(chosen) > 1:
        lines += ["## McNemar p between the picks", "",
                  "Exact McNemar test on the images one pick gets right and the other wrong; p >= "
                  f"{ALPHA:g}: the two cannot be told apart in accuracy on these images.", ""]
        names = list(chosen)
        rows = [[fmt, *("–" if fmt == other else _p_cell(chosen[fmt]["compared"][other]["p"]) for other in names)]
                for fmt in names]
        lines += _table(("", *names), rows, set(names))
        lines.append("")
    return "\n".join(lines)


def _p_cell(p):
    if p is None:
        return "no outcomes"
    return f"{p:.3g}" + (" (indistinguishable)" if p >= ALPHA else "")


# --- plots ---------------------------------------------------------------------------------------

def _plot(name, points, fp32, report):
    """PNG bytes of front ``name``: accuracy against its cost (module docstring)."""
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    cost = _cost(name)
    formats, configs, intervals = report["formats"], report["configs"], report["intervals"]
    front = report["fronts"][name]
    on_front = report["on_front"][name]
    shown = [p for p in points if p["status"] == OK and p.get(cost) is not None and p.get("accuracy") is not None]
    label = _COST_LABELS.get(cost, (cost, cost))[0]
    if cost == "energy_uj":
        kinds = sorted({(p.get("energy") or {}).get("kind") or "estimate" for p in shown})
        label = f"energy per inference at Fmax (µJ), ESTIMATE ({' and '.join(kinds) or 'no estimate'})"
    with matplotlib.style.context("default"):
        fig = Figure(figsize=(10, 6))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.axhline(100 * fp32["accuracy"], color="black", linestyle="--", linewidth=1, zorder=1)
        for p in shown:
            color = f"C{formats.index(p['format']) % 10}"
            marker = _MARKERS[configs.index(p.get("config") or f"w{p.get('w_bits')}a{p.get('a_bits')}")
                              % len(_MARKERS)]
            x, y = p[cost], 100 * p["accuracy"]
            low, high = intervals[p["name"]]
            if low is not None:
                ax.errorbar([x], [y], yerr=[[y - 100 * low], [100 * high - y]], fmt="none", ecolor=color,
                            elinewidth=1, alpha=0.6, capsize=2, zorder=2)
            if p["name"] in on_front:
                ax.scatter([x], [y], marker=marker, s=110, color=color, edgecolors="black", linewidths=1.4, zorder=4)
            else:
                ax.scatter([x], [y], marker=marker, s=45, color=color, alpha=0.6, linewidths=0, zorder=3)
        if front:
            ax.step([p[cost] for p in front], [100 * p["accuracy"] for p in front],
                    where="post", color="black", linewidth=1, zorder=3)   # best cost first: post either way
        xs = [p[cost] for p in shown]
        if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
        if not shown:
            ax.text(0.5, 0.5, "no point that fits has this figure", transform=ax.transAxes, ha="center",
                    va="center")
        ax.set_xlabel(label)
        ax.set_ylabel(f"top-1 accuracy (%), 95 % Wilson interval; {fp32['total']} images, one is "
                      f"{100 / fp32['total']:.2f} %")
        left_out = len(points) - len(shown)
        ax.set_title(f"Accuracy vs {label}: Pareto front" + (f"\n({left_out} point(s) that do not fit or lack "
                                                             "this figure not shown)" if left_out else ""),
                     fontsize=11)
        ax.grid(alpha=0.3, which="both")
        legends = [
            ("format", [Line2D([], [], color=f"C{i % 10}", marker="o", linestyle="", label=fmt)
                        for i, fmt in enumerate(formats)]),
            ("configuration", [Line2D([], [], color="gray", marker=_MARKERS[i % len(_MARKERS)], linestyle="",
                                      label=config) for i, config in enumerate(configs)]),
            ("", [Line2D([], [], color="gray", marker="o", markeredgecolor="black", markeredgewidth=1.4,
                         markersize=9, linestyle="-", label="Pareto front"),
                  Line2D([], [], color="black", linestyle="--", label=f"FP32 ({_pct(fp32['accuracy'])})")]),
        ]
        top = 1.0
        for i, (title, handles) in enumerate(legends):
            legend = ax.legend(handles=handles, title=title or None, loc="upper left", bbox_to_anchor=(1.02, top),
                               frameon=False, borderaxespad=0, fontsize=9, title_fontsize=9)
            if i < len(legends) - 1:        # each new legend replaces the last: keep it (but not the last one
                ax.add_artist(legend)       # twice, which drops every legend from the tight bounding box)
            top -= 0.07 + 0.05 * len(handles)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()
