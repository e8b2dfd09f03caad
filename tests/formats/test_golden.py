"""hwq.formats.golden's matrix products: exact on both paths, float64 (BLAS) and int64, and the
bound between them at 2**53."""

import itertools

import numpy as np
import pytest

from hwq.errors import InputError
from hwq.formats import Ant, Ausn, Esb, FixedPoint, Uniq, golden
from hwq.formats.base import NumberFormat

FORMATS = [FixedPoint(8, signed=False), FixedPoint(6, signed=True), Esb(5), Esb(8), Uniq.gaussian(4), Ant(4),
           Ausn(4)]


class Table(NumberFormat):
    """A test-only format of four given integer values (not registered: it sets no name)."""

    def __init__(self, values):
        self._values = np.array(values, dtype=np.int64)
        super().__init__(2, signed=True)

    @property
    def lsb_exp(self):
        return 0

    def params(self):
        return {"values": self._values.tolist()}

    def _decode(self, codes):
        return self._values[codes]

    def _encode(self, x):
        raise NotImplementedError


def _exact(a_fmt, a, w_fmt, w):
    """``decode(a) @ decode(w).T`` in Python integers."""
    av, wv = a_fmt.decode(a).tolist(), w_fmt.decode(w).tolist()
    return [[sum(x * y for x, y in zip(row, col)) for col in wv] for row in av]


# the largest product is P = (2**20 + 1)**2, odd: 8191 * P < 2**53 <= 8192 * P
BIG = 2 ** 20 + 1
A_WIDE = Table([0, 1, -BIG, BIG])
W_WIDE = Table([0, 1, BIG - 1, BIG])


def test_float64_bound_is_at_2_to_53():
    p = BIG * BIG
    assert 8191 * p < 2 ** 53 <= 8192 * p
    assert golden.float64_exact(A_WIDE, W_WIDE, 8191)
    assert not golden.float64_exact(A_WIDE, W_WIDE, 8192)
    assert golden.float64_exact(FixedPoint(16, signed=True), FixedPoint(16, signed=True), 1 << 22)
    assert golden.float64_exact(A_WIDE, W_WIDE, 0)
    assert not golden.float64_exact(Table([0, 1, 2, 2 ** 54]), Table([0, 0, 0, 0]), 1)


def test_matmul_is_exact_on_both_sides_of_the_bound():
    # 8191 terms: the float64 path; every partial sum stays below 2**53
    a, w = np.full((2, 8191), 3), np.full((1, 8191), 3)
    a[1] = 2                                                           # -BIG
    assert golden.matmul(A_WIDE, a, W_WIDE, w).tolist() == [[8191 * BIG * BIG], [-8191 * BIG * BIG]]
    # 8192 terms whose sum, 2**53 + 8191 * 2**21 + 2**20 + 8191, is odd: no float64 holds it
    a, w = np.full((1, 8192), 3), np.full((1, 8192), 3)
    w[0, -1] = 2                                                       # BIG - 1
    exact = 8191 * BIG * BIG + BIG * (BIG - 1)
    assert exact > 2 ** 53 and exact % 2 == 1
    in_float = A_WIDE.decode(a).astype(np.float64) @ W_WIDE.decode(w).astype(np.float64).T
    assert int(in_float[0, 0]) != exact                               # what the float64 path would give
    assert golden.matmul(A_WIDE, a, W_WIDE, w).tolist() == [[exact]]   # the int64 path is taken
    assert golden.grouped_matmul(A_WIDE, a[None], W_WIDE, w[None]).tolist() == [[[exact]]]
    assert golden.grouped_matmul(A_WIDE, a[None, :, :8191], W_WIDE, w[None, :, :8191]).tolist() == \
        [[[8191 * BIG * BIG]]]


@pytest.mark.parametrize("a_fmt, w_fmt", list(itertools.product(FORMATS[:4], FORMATS)), ids=repr)
def test_matmul_is_exact_and_paths_agree(monkeypatch, a_fmt, w_fmt):
    rng = np.random.default_rng(a_fmt.bits * 31 + w_fmt.bits)
    a = rng.integers(0, 1 << a_fmt.bits, (2, 3, 37))
    w = rng.integers(0, 1 << w_fmt.bits, (5, 37))
    got = golden.matmul(a_fmt, a, w_fmt, w)
    assert got.dtype == np.int64 and got.shape == (2, 3, 5)
    assert got.reshape(6, 5).tolist() == _exact(a_fmt, a.reshape(6, 37), w_fmt, w)
    monkeypatch.setattr(golden, "_FLOAT64_EXACT", 0)                  # force the int64 path
    np.testing.assert_array_equal(golden.matmul(a_fmt, a, w_fmt, w), got)


@pytest.mark.parametrize("force_int64", [False, True])
def test_grouped_matmul_is_matmul_per_group(monkeypatch, force_int64):
    if force_int64:
        monkeypatch.setattr(golden, "_FLOAT64_EXACT", 0)
    a_fmt, w_fmt = FixedPoint(8, signed=False), Esb(5)
    rng = np.random.default_rng(1)
    for lead, groups, c, k in [((7,), 3, 2, 5), ((2, 4), 6, 1, 9), ((), 1, 4, 3), ((3,), 2, 3, 0), ((0,), 2, 2, 2)]:
        a = rng.integers(0, 256, (groups, *lead, k))
        w = rng.integers(0, 32, (groups, c, k))
        got = golden.grouped_matmul(a_fmt, a, w_fmt, w)
        assert got.dtype == np.int64 and got.shape == (groups, *lead, c)
        for g in range(groups):
            np.testing.assert_array_equal(got[g], golden.matmul(a_fmt, a[g], w_fmt, w[g]))
        # any layout: a transposed view gives the same sums
        at = np.ascontiguousarray(np.moveaxis(a, -1, 0))
        np.testing.assert_array_equal(golden.grouped_matmul(a_fmt, np.moveaxis(at, 0, -1), w_fmt, w), got)


def test_matmul_errors():
    a_fmt, w_fmt = FixedPoint(8, signed=False), Esb(5)
    with pytest.raises(InputError, match=r"matmul needs codes \(..., K\) and \(C, K\), not \(2, 3\) and \(1, 4\)"):
        golden.matmul(a_fmt, np.zeros((2, 3), int), w_fmt, np.zeros((1, 4), int))
    with pytest.raises(InputError, match=r"grouped_matmul needs codes \(G, ..., K\) and \(G, C, K\)"):
        golden.grouped_matmul(a_fmt, np.zeros((2, 3), int), w_fmt, np.zeros((3, 1, 3), int))
    huge = Table([0, 1, -(2 ** 31), 2 ** 31 - 1])
    with pytest.raises(InputError, match="too long to be exact in int64"):
        golden.matmul(huge, np.zeros((1, 1), int), huge, np.zeros((1, 1), int))
    with pytest.raises(InputError, match="too long to be exact in int64"):
        golden.grouped_matmul(huge, np.zeros((1, 1, 1), int), huge, np.zeros((1, 1, 1), int))
    with pytest.raises(InputError, match=r"must lie in \[0, 255\]"):
        golden.matmul(a_fmt, np.full((1, 2), 256), w_fmt, np.zeros((1, 2), int))
