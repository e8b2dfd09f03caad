"""The Pareto front of a sweep: the points no other point beats on every objective at once.

A point *dominates* another when it is at least as good on every objective and better on one
(Deb, "Multi-objective optimization using evolutionary algorithms", 2001, ch. 2). Objectives are
``(key, sense)`` pairs: ``"max"`` for accuracy and inferences/s, ``"min"`` for logic cells and
energy. Points without a value for an objective (a design that does not fit has no Fmax) are
never on the front.
"""

import numpy as np

__all__ = ["pareto_mask", "pareto_front", "FRONTS"]

#: the fronts a sweep reports: accuracy against each cost
FRONTS = {
    "lcs": (("accuracy", "max"), ("lcs", "min")),
    "energy": (("accuracy", "max"), ("energy_uj", "min")),
    "throughput": (("accuracy", "max"), ("inferences_per_s", "max")),
}


def pareto_mask(values, senses):
    """Which rows of ``values`` are on the Pareto front.

    Parameters
    ----------
    values : array_like, shape (N, K)
        N points, K objectives; NaN where a point has no value.
    senses : sequence of str, length K
        ``"max"`` or ``"min"`` per objective.

    Returns
    -------
    numpy.ndarray of bool, shape (N,)
        True for a point with every value and no point that dominates it. Equal points are all
        on the front.

    Raises
    ------
    ValueError
        On a shape mismatch or a sense other than ``"max"`` / ``"min"``.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[1] != len(senses):
        raise ValueError(f"values of shape {values.shape} for {len(senses)} objectives")
    if any(s not in ("max", "min") for s in senses):
        raise ValueError(f"senses must be 'max' or 'min', not {list(senses)}")
    sign = np.array([1.0 if s == "max" else -1.0 for s in senses])
    v = values * sign                                   # every objective maximized
    valid = ~np.isnan(v).any(axis=1)
    if not valid.any():
        return valid
    w = v[valid]
    # ge[i, j]: j at least as good as i everywhere; gt: better somewhere
    ge = (w[None, :, :] >= w[:, None, :]).all(axis=2)
    gt = (w[None, :, :] > w[:, None, :]).any(axis=2)
    dominated = (ge & gt).any(axis=1)
    mask = np.zeros(len(v), dtype=bool)
    mask[np.flatnonzero(valid)[~dominated]] = True
    return mask


def pareto_front(points, objectives):
    """The points (dicts) on the front of ``objectives`` (``(key, sense)`` pairs), in input order."""
    values = [[np.nan if p.get(key) is None else float(p[key]) for key, _ in objectives] for p in points]
    mask = pareto_mask(np.array(values, dtype=float).reshape(len(points), len(objectives)),
                       [sense for _, sense in objectives])
    return [p for p, on in zip(points, mask) if on]
