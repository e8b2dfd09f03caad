"""hwq.explore.stats: Wilson intervals against published and hand-computed values; McNemar's test."""

import math

import pytest

from hwq.explore.stats import ALPHA, distinguishable, mcnemar, wilson

Z = 1.96


def _wilson_closed_form(correct, total, z=Z):
    """The Wilson interval in its other closed form: (2np + z^2 -/+ z sqrt(z^2 + 4np(1-p))) / (2(n + z^2))."""
    n, p = total, correct / total
    root = z * math.sqrt(z * z + 4 * n * p * (1 - p))
    return (2 * n * p + z * z - root) / (2 * (n + z * z)), (2 * n * p + z * z + root) / (2 * (n + z * z))


@pytest.mark.parametrize("correct, total, low, high", [
    # Newcombe, "Two-sided confidence intervals for the single proportion", Stat. Med. 17 (1998),
    # Table I, method 3 (score interval without continuity correction), to 4 decimals
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
])
def test_wilson_published(correct, total, low, high):
    got = wilson(correct, total)
    assert got[0] == pytest.approx(low, abs=5e-5)
    assert got[1] == pytest.approx(high, abs=5e-5)


@pytest.mark.parametrize("correct, total", [(0, 10), (10, 10), (432, 450), (1, 1), (7, 13), (449, 450)])
def test_wilson_closed_form(correct, total):
    low, high = _wilson_closed_form(correct, total)
    got = wilson(correct, total)
    assert got[0] == pytest.approx(max(low, 0.0), abs=1e-12)
    assert got[1] == pytest.approx(min(high, 1.0), abs=1e-12)
    assert 0.0 <= got[0] <= correct / total <= got[1] <= 1.0


def test_wilson_ends():
    # none right: the lower end is 0, the upper z^2 / (n + z^2); all right: the mirror image
    assert wilson(0, 10) == (0.0, pytest.approx(Z * Z / (10 + Z * Z)))
    assert wilson(10, 10) == (pytest.approx(10 / (10 + Z * Z)), 1.0)
    low, high = wilson(432, 450)
    assert (round(low, 4), round(high, 4)) == (0.9377, 0.9746)


def test_wilson_z():
    wide, narrow = wilson(40, 50, z=2.576), wilson(40, 50, z=1.645)
    assert wide[0] < narrow[0] < 0.8 < narrow[1] < wide[1]


@pytest.mark.parametrize("correct, total", [(0, 0), (-1, 10), (11, 10), (1, -3)])
def test_wilson_errors(correct, total):
    with pytest.raises(ValueError):
        wilson(correct, total)


def test_mcnemar_identical():
    assert mcnemar("1011001", "1011001") == 1.0
    assert mcnemar("", "") == 1.0
    assert not distinguishable("10", "10")


def test_mcnemar_one_way():
    a = "1" * 10 + "0101"
    b = "0" * 10 + "0101"                          # 10 discordant, all one way
    assert mcnemar(a, b) == pytest.approx(2 * 0.5 ** 10)
    assert mcnemar(b, a) == pytest.approx(2 * 0.5 ** 10)
    assert distinguishable(a, b)


def test_mcnemar_hand_computed():
    # 8 only-a, 2 only-b, 5 concordant: two-sided exact binomial p = 2 * P(X <= 2 | n = 10, 1/2)
    a = "1" * 8 + "0" * 2 + "11100"
    b = "0" * 8 + "1" * 2 + "11100"
    expected = 2 * sum(math.comb(10, k) for k in range(3)) / 2 ** 10
    assert expected == pytest.approx(0.109375)
    assert mcnemar(a, b) == pytest.approx(expected)
    assert mcnemar(b, a) == pytest.approx(expected)
    # balanced discordant counts: nothing to tell them apart
    assert mcnemar("1100", "0011") == pytest.approx(1.0)
    # six one way: just below the 5 % level; five: above
    assert mcnemar("111111", "000000") == pytest.approx(2 / 64) and 2 / 64 < ALPHA
    assert mcnemar("11111", "00000") == pytest.approx(2 / 32) and 2 / 32 >= ALPHA


def test_mcnemar_length_mismatch():
    with pytest.raises(ValueError, match="not the same samples"):
        mcnemar("101", "10")
