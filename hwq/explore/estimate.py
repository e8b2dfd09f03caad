"""An analytic cost model of the sweep's accelerators, calibrated on the points it synthesized.

Cycles need no model: the schedule gives each point's cycles per inference exactly (the
accelerator's tests check them against the RTL), before any tool runs. Logic cells do: within
one format, width and mapping the array adds the same PE (its decoders, product and accumulator)
per column and per row, beside a fixed part (the sequencer, requantizer, memories' glue), so

    ``lcs ~ base + per_pe * PEs``

fitted by least squares per group. :func:`cost_model` fits it; :func:`leave_one_out` reports how
well it predicts a synthesized point from the others of its group, the error to expect before
trusting it to prune a point.
"""

import numpy as np

__all__ = ["cost_model", "predict_lcs", "leave_one_out", "group_of"]


def group_of(point):
    """The group a point's cost line belongs to: ``(format, w_bits, a_bits, mapping used)``."""
    return point["format"], point["w_bits"], point["a_bits"], point.get("mapping_used") or point.get("mapping")


def _usable(points):
    return [p for p in points if p.get("lcs") and p.get("pes")]


def cost_model(points):
    """``{group: {"base", "per_pe", "points"}}``: the least-squares line of logic cells against PEs
    for every group (:func:`group_of`) of at least two synthesized points with different PE counts.

    Parameters
    ----------
    points : list of dict
        Sweep points; those with ``lcs`` (synthesized, fitting or not) are used.
    """
    groups = {}
    for p in _usable(points):
        groups.setdefault(group_of(p), []).append(p)
    model = {}
    for group, members in groups.items():
        pes = np.array([p["pes"] for p in members], dtype=float)
        if len(set(pes)) < 2:
            continue
        lcs = np.array([p["lcs"] for p in members], dtype=float)
        per_pe, base = np.polyfit(pes, lcs, 1)
        model[group] = {"base": float(base), "per_pe": float(per_pe), "points": len(members)}
    return model


def predict_lcs(model, point):
    """Predicted logic cells of ``point`` from ``model`` (:func:`cost_model`), or None without a
    line for its group."""
    line = model.get(group_of(point))
    return None if line is None else line["base"] + line["per_pe"] * point["pes"]


def leave_one_out(points):
    """Each synthesized point predicted from the others of its group.

    Returns
    -------
    dict
        ``rows``: ``{"name", "lcs", "predicted", "error_pct"}`` for every point whose group has
        at least two other points with different PE counts; ``mean_abs_error_pct`` and
        ``max_abs_error_pct`` over them (None without any).
    """
    usable = _usable(points)
    rows = []
    for i, p in enumerate(usable):
        others = [q for j, q in enumerate(usable) if j != i]
        predicted = predict_lcs(cost_model(others), p)
        if predicted is None:
            continue
        rows.append({"name": p.get("name"), "lcs": p["lcs"], "predicted": round(predicted, 1),
                     "error_pct": round(100 * (predicted - p["lcs"]) / p["lcs"], 2)})
    errors = [abs(r["error_pct"]) for r in rows]
    return {"rows": rows, "mean_abs_error_pct": round(float(np.mean(errors)), 2) if errors else None,
            "max_abs_error_pct": round(float(np.max(errors)), 2) if errors else None}
