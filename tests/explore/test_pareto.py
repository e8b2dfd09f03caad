"""hwq.explore.pareto: the front against a brute-force dominance check, hand-made fronts, errors."""

import math

import numpy as np
import pytest

from hwq.explore.pareto import FRONTS, pareto_front, pareto_mask


def _brute_force(values, senses):
    """The front by definition: every value present, and no other point at least as good on every
    objective and strictly better on one. O(n^2), one comparison at a time."""
    def no_worse(a, b, sense):                  # a at least as good as b
        return a >= b if sense == "max" else a <= b

    def better(a, b, sense):
        return a > b if sense == "max" else a < b

    rows = [list(row) for row in values]
    present = [not any(math.isnan(v) for v in row) for row in rows]
    mask = []
    for i, row in enumerate(rows):
        if not present[i]:
            mask.append(False)
            continue
        dominated = False
        for j, other in enumerate(rows):
            if j == i or not present[j]:
                continue
            if (all(no_worse(o, r, s) for o, r, s in zip(other, row, senses))
                    and any(better(o, r, s) for o, r, s in zip(other, row, senses))):
                dominated = True
                break
        mask.append(not dominated)
    return mask


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n", [0, 1, 2, 5, 17, 60])
@pytest.mark.parametrize("senses", [("max",), ("min",), ("max", "min"), ("max", "max"), ("min", "min"),
                                    ("max", "min", "max"), ("min", "max", "min", "max")])
def test_matches_brute_force(seed, n, senses):
    rng = np.random.default_rng([seed, n, len(senses)])
    # few distinct values: many ties and equal points; some NaN (a point without the figure)
    values = rng.integers(0, 4, size=(n, len(senses))).astype(float)
    values[rng.random(values.shape) < 0.1] = np.nan
    mask = pareto_mask(values, senses)
    assert mask.dtype == bool and mask.shape == (n,)
    assert mask.tolist() == _brute_force(values, senses)


@pytest.mark.parametrize("seed", range(4))
def test_matches_brute_force_continuous(seed):
    rng = np.random.default_rng(100 + seed)
    values = rng.normal(size=(200, 2))
    values[rng.random(200) < 0.05, 1] = np.nan
    senses = ["max", "min"]
    assert pareto_mask(values, senses).tolist() == _brute_force(values, senses)


def test_accuracy_against_cost():
    # (accuracy, LCs): more accurate and fewer cells is better
    values = [[0.90, 1000],      # cheapest: on the front
              [0.95, 2000],      # most accurate: on the front
              [0.93, 3000],      # dominated by the second
              [0.90, 1500],      # dominated by the first (as accurate, dearer)
              [0.94, 1800],      # between the two: on the front
              [0.95, 2000]]      # equal to the second: on the front too
    assert pareto_mask(values, ["max", "min"]).tolist() == [True, True, False, False, True, True]


def test_both_maximized():
    # (accuracy, inferences/s)
    values = [[0.9, 100], [0.8, 200], [0.7, 150], [0.9, 90], [0.6, 300]]
    assert pareto_mask(values, ["max", "max"]).tolist() == [True, True, False, False, True]


def test_single_objective_keeps_every_best():
    assert pareto_mask([[3], [1], [3], [2]], ["max"]).tolist() == [True, False, True, False]
    assert pareto_mask([[3], [1], [3], [1]], ["min"]).tolist() == [False, True, False, True]


def test_nan_never_on_front():
    values = [[np.nan, 1], [0.5, np.nan], [0.1, 100]]
    assert pareto_mask(values, ["max", "min"]).tolist() == [False, False, True]
    assert pareto_mask([[np.nan, np.nan]], ["max", "min"]).tolist() == [False]


def test_empty():
    assert pareto_mask(np.empty((0, 2)), ["max", "min"]).tolist() == []
    assert pareto_front([], FRONTS["lcs"]) == []


@pytest.mark.parametrize("values, senses", [
    ([[1, 2]], ["max", "up"]),
    ([[1, 2]], ["MAX", "min"]),
    ([[1, 2]], ["max"]),
    ([[1, 2]], ["max", "min", "max"]),
    ([1, 2], ["max"]),
    ([[[1, 2]]], ["max", "min"]),
])
def test_errors(values, senses):
    with pytest.raises(ValueError):
        pareto_mask(values, senses)


def test_front_of_dicts():
    points = [{"name": "a", "accuracy": 0.9, "lcs": 1000},
              {"name": "b", "accuracy": 0.95, "lcs": None},           # no cost: never on the front
              {"name": "c", "accuracy": 0.95, "lcs": 2000},
              {"name": "d", "accuracy": None, "lcs": 10},             # no accuracy
              {"name": "e", "accuracy": 0.8, "lcs": 1200}]
    assert [p["name"] for p in pareto_front(points, FRONTS["lcs"])] == ["a", "c"]
    assert [p["name"] for p in pareto_front(points[::-1], FRONTS["lcs"])] == ["c", "a"]     # input order


def test_fronts_pair_accuracy_with_each_cost():
    assert set(FRONTS) == {"lcs", "energy", "throughput"}
    for objectives in FRONTS.values():
        assert objectives[0] == ("accuracy", "max")
    assert dict(FRONTS["lcs"])["lcs"] == "min"
    assert dict(FRONTS["energy"])["energy_uj"] == "min"
    assert dict(FRONTS["throughput"])["inferences_per_s"] == "max"
