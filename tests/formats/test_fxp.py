"""Golden fixed-point format: properties against an independent Fraction reference."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hwq.errors import HwqError
from hwq.formats import FORMATS, FixedPoint, accumulate, acc_width, dot, from_params, get_format, product_range
from hwq.formats.fxp import frac_for_max, frac_for_mse
from hwq.formats.rounding import ROUNDING_MODES

formats = st.builds(
    FixedPoint,
    st.integers(2, 16),
    frac=st.integers(-8, 20),
    signed=st.booleans(),
    rounding=st.sampled_from(ROUNDING_MODES),
)


def reference_round(y: Fraction, mode):
    """Rounding written from the definitions, on exact fractions."""
    low = math.floor(y)
    rest = y - low
    if mode == "floor":
        return low
    if mode == "toward_zero":
        return low if y >= 0 else math.ceil(y)
    if rest != Fraction(1, 2):
        return low + (rest > Fraction(1, 2))
    return {"half_even": low + (low % 2), "half_away": low + (y > 0), "half_up": low + 1}[mode]


def reference_code(fmt, x: float):
    q = reference_round(Fraction(x) * Fraction(2) ** fmt.frac, fmt.rounding)
    lo = -(1 << (fmt.bits - 1)) if fmt.signed else 0
    hi = (1 << (fmt.bits - 1)) - 1 if fmt.signed else (1 << fmt.bits) - 1
    return min(max(q, lo), hi) % (1 << fmt.bits)


@given(formats)
def test_codebook_is_exact_twos_complement(fmt):
    half = 1 << (fmt.bits - 1)
    for code, value in enumerate(fmt.codebook()):
        q = code - (1 << fmt.bits) if fmt.signed and code >= half else code
        assert value == Fraction(q, 1) * Fraction(2) ** -fmt.frac


@given(formats)
def test_encode_inverts_decode_on_every_code(fmt):
    values = np.array([float(v) for v in fmt.codebook()])
    np.testing.assert_array_equal(fmt.encode(values), fmt.codes)


@given(formats, st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=50))
def test_encode_matches_reference(fmt, xs):
    assert fmt.encode(xs).tolist() == [reference_code(fmt, x) for x in xs]


@given(formats, st.integers(-(1 << 17), 1 << 17))
def test_ties_follow_the_rounding_mode(fmt, n):
    x = (n + 0.5) * 2.0 ** -fmt.frac                         # exactly half-way between two codes
    assert fmt.encode([x]).tolist() == [reference_code(fmt, x)]


@pytest.mark.parametrize("mode, expected", [
    ("half_even", [-2, -2, -0, 0, 2, 2]),
    ("half_away", [-3, -2, -1, 1, 2, 3]),
    ("half_up", [-2, -1, 0, 1, 2, 3]),
    ("floor", [-3, -2, -1, 0, 1, 2]),
    ("toward_zero", [-2, -1, 0, 0, 1, 2]),
])
def test_ties_by_hand(mode, expected):
    fmt = FixedPoint(8, rounding=mode)
    assert fmt.decode(fmt.encode([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5])).tolist() == expected


def test_round_half_away_does_not_add_one_half():
    just_below_half = np.nextafter(0.5, 0)
    assert FixedPoint(8, rounding="half_away").encode([just_below_half, -just_below_half]).tolist() == [0, 0]


@given(formats, st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=50))
def test_quantize_is_idempotent(fmt, xs):
    once = fmt.fake_quantize(xs)
    np.testing.assert_array_equal(fmt.fake_quantize(once), once)


@given(formats, st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=50))
def test_quantize_is_monotone(fmt, xs):
    xs = np.sort(np.array(xs))
    assert np.all(np.diff(fmt.decode(fmt.encode(xs))) >= 0)


@given(formats)
def test_saturates_at_both_ends(fmt):
    codes = fmt.decode(fmt.encode([-1e300, -2.0 ** (fmt.bits - fmt.frac + 2), 2.0 ** (fmt.bits - fmt.frac + 2), 1e300]))
    low = -(1 << (fmt.bits - 1)) if fmt.signed else 0
    high = (1 << (fmt.bits - 1)) - 1 if fmt.signed else (1 << fmt.bits) - 1
    assert codes.tolist() == [low, low, high, high]
    assert (fmt.int_min, fmt.int_max) == (low, high)


def test_most_negative_code():
    fmt = FixedPoint(8, frac=3)
    assert fmt.encode([-16.0]).tolist() == [0x80]
    assert fmt.decode([0x80]).tolist() == [-128]
    assert fmt.codebook()[0x80] == Fraction(-16)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_inf_are_rejected(bad):
    with pytest.raises(HwqError, match="NaN/Inf"):
        FixedPoint(8).quantize(np.array([0.0, bad]), 1.0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(bits=1), "between 2 and 16"),
    (dict(bits=17), "between 2 and 16"),
    (dict(bits=8.0), "must be an integer"),
    (dict(bits=8, frac=65), "fraction length"),
    (dict(bits=8, rounding="stochastic"), "unknown rounding mode"),
    (dict(bits=8, signed=1), "True or False"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(HwqError, match=match):
        FixedPoint(**kwargs)


def test_bad_scale_and_codes():
    fmt = FixedPoint(4)
    for scale in (0.0, -1.0, float("nan")):
        with pytest.raises(HwqError, match="scale"):
            fmt.quantize([1.0], scale)
    with pytest.raises(HwqError, match=r"\[0, 15\]"):
        fmt.decode([16])


def test_registry():
    assert get_format("fxp", 6, frac=2) == FixedPoint(6, frac=2)
    assert from_params("fxp", FixedPoint(5, frac=-3, signed=False).params()) == FixedPoint(5, frac=-3, signed=False)
    with pytest.raises(HwqError, match=f"unknown format 'posit'; known formats: {', '.join(sorted(FORMATS))}$"):
        get_format("posit", 8)


@given(st.integers(2, 16), st.booleans(), st.floats(1e-6, 1e6))
def test_frac_for_max_is_the_largest_without_saturation(bits, signed, peak):
    x = [peak, -peak if signed else 0.0, peak / 3]
    frac = frac_for_max(x, bits, signed=signed)

    def saturates(f):
        fmt = FixedPoint(bits, frac=f, signed=signed)
        q = [reference_round(Fraction(v) * Fraction(2) ** f, "half_even") for v in x]
        return not all(fmt.q_min <= v <= fmt.q_max for v in q)

    assert not saturates(frac)
    assert saturates(frac + 1)


def test_frac_for_max_follows_the_paper_formula_away_from_powers_of_two():
    x = np.array([-2.7, 1.3, 0.1])                        # IL = ceil(log2 2.7) + 1 = 3
    assert frac_for_max(x, 8) == 8 - 3
    assert frac_for_max(np.abs(x), 8, signed=False) == 8 - 2
    assert frac_for_max(np.zeros(4), 8) == 0


def test_frac_for_mse_picks_the_least_error():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(20000)
    x[0] = 40.0                                           # one outlier: clipping it pays off
    frac, errors = frac_for_mse(x, 6)
    assert frac == min(errors, key=lambda f: (errors[f], f))
    assert frac > frac_for_max(x, 6)
    for f, err in errors.items():
        assert err == pytest.approx(np.mean((FixedPoint(6, frac=f).fake_quantize(x) - x) ** 2))


def test_fraction_length_selection_errors():
    with pytest.raises(HwqError, match="empty"):
        frac_for_max([], 8)
    with pytest.raises(HwqError, match="negative"):
        frac_for_max([-1.0], 8, signed=False)
    with pytest.raises(HwqError, match="NaN/Inf"):
        frac_for_mse([np.nan], 8)


@settings(max_examples=50)
@given(st.integers(2, 10), st.booleans(), st.integers(2, 10), st.booleans(), st.integers(1, 5000))
def test_acc_width_is_exact_and_within_the_formats_md_bound(a_bits, a_signed, w_bits, w_signed, terms):
    a, w = FixedPoint(a_bits, signed=a_signed), FixedPoint(w_bits, signed=w_signed)
    width = acc_width(a, w, terms)
    lo, hi = product_range(a, w)
    assert -(1 << (width - 1)) <= terms * lo and terms * hi <= (1 << (width - 1)) - 1
    assert not (-(1 << (width - 2)) <= terms * lo and terms * hi <= (1 << (width - 2)) - 1)
    peak = max(abs(a.int_min), a.int_max) * max(abs(w.int_min), w.int_max)
    assert width <= math.ceil(math.log2(peak + 1)) + 1 + math.ceil(math.log2(terms))


@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 15), st.booleans(), st.booleans()), max_size=200))
def test_accumulate_matches_the_contract_step_by_step(stream):
    a, w = FixedPoint(8, signed=False), FixedPoint(4, frac=2)
    expected, total = [], 0
    for ac, wc, valid, clear in stream:
        wv = wc - 16 if wc >= 8 else wc
        total = (0 if clear else total) + (ac * wv if valid else 0)
        expected.append(total)
    cols = list(zip(*stream)) or [[], [], [], []]
    assert accumulate(a, np.array(cols[0], dtype=np.int64), w, np.array(cols[1], dtype=np.int64),
                      cols[2], cols[3]).tolist() == expected


def test_dot_is_exact():
    a, w = FixedPoint(8, signed=False), FixedPoint(8)
    rng = np.random.default_rng(1)
    ac, wc = rng.integers(0, 256, (4, 300)), rng.integers(0, 256, (4, 300))
    expected = [sum(int(x) * (int(y) - 256 if y >= 128 else int(y)) for x, y in zip(r, s)) for r, s in zip(ac, wc)]
    assert dot(a, ac, w, wc).tolist() == expected


def test_every_format_is_hashable_and_equal_to_its_rebuild():
    from hwq.formats import Ant, Ausn, Esb, Uniq
    formats = [FixedPoint(6, frac=2), Ant(4, type="flint"), Esb(5, k=2), Ausn(4), Uniq.gaussian(4)]
    for fmt in formats:
        rebuilt = from_params(fmt.name, fmt.params())
        assert rebuilt == fmt and hash(rebuilt) == hash(fmt)
    assert len({*formats, *[from_params(f.name, f.params()) for f in formats]}) == len(formats)
