"""Golden AUSN format: an independent bit-string reading of the layout, the rounding rule at every
grid midpoint and field boundary, the superposition search; and the clipping/rounding error split
of hwq.formats.metrics for every registered format."""

import bisect
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, strategies as st

from hwq.errors import HwqError
from hwq.formats import FORMATS, Ant, Ausn, FixedPoint, from_params, get_format
from hwq.formats.ausn import (DEFAULT_SUPERPOSITIONS, EXPONENT_MAX, SCALE_RATIOS, default_superposition,
                              select_superposition, superposition_label, superpositions)
from hwq.formats.metrics import clip_thresholds, quantization_error, split_error


# ---------------------------------------------------------------------------------------------
# independent reference: the module docstring's layout read off the bit string

def reference_fields(code, fmt):
    """(sign, [f_1, ..., f_T]) from the bit string ``[sign][f_1]...[f_T]``."""
    text = format(code, f"0{fmt.bits}b")
    sign, text = (int(text[0]), text[1:]) if fmt.signed else (0, text)
    fields, pos = [], 0
    for k in fmt.fields:
        fields.append(int(text[pos:pos + k], 2))
        pos += k
    return sign, fields


def reference_value(code, fmt):
    sign, fields = reference_fields(code, fmt)
    magnitude = sum(Fraction(2) ** (o + f - 1) for f, o in zip(fields, fmt.offsets) if f)
    return (-1) ** sign * magnitude * Fraction(2) ** fmt.exp_base


def reference_encode(x, fmt, book=None):
    """Nearest codebook value, ties to the smaller magnitude, beyond the ends the extreme; the
    lowest code of that value. ``book``: the reference codebook, if already computed."""
    book = [reference_value(c, fmt) for c in range(1 << fmt.bits)] if book is None else book
    values = sorted(set(book))
    x = Fraction(x)
    i = bisect.bisect_left(values, x)
    near = values[max(i - 1, 0):i + 1]
    best = min(near, key=lambda v: (abs(v - x), abs(v)))
    return book.index(best)


@st.composite
def ausn_formats(draw):
    bits = draw(st.integers(3, 8))
    signed = draw(st.booleans())
    magnitude = bits - signed
    cuts = sorted(draw(st.sets(st.integers(1, magnitude - 1), max_size=magnitude - 1)))
    fields = [b - a for a, b in zip([0] + cuts, cuts + [magnitude])]
    offsets = [draw(st.integers(0, max(0, EXPONENT_MAX - (1 << k) + 2))) for k in fields]
    if any(o + (1 << k) - 2 > EXPONENT_MAX for k, o in zip(fields, offsets)) or (1 << max(fields)) - 2 > EXPONENT_MAX:
        fields, offsets = [1] * magnitude, list(range(magnitude))
    low = min(offsets)
    offsets = [o - low for o in offsets]
    return Ausn(bits, fields=fields, offsets=offsets, signed=signed, exp_base=draw(st.integers(-4, 4)))


def small_formats():
    """Every search candidate of 2 to 4 magnitude bits, plus the defaults of every width."""
    out = [Ausn(b, fields=f, offsets=o, signed=s) for b in (3, 4, 5) for s in (False, True) if b - s <= 4
           for f, o in superpositions(b, signed=s, max_terms=b)]
    out += [Ausn(b, signed=s) for b in range(3, 9) for s in (False, True)]
    return out


SMALL = small_formats()

# ---------------------------------------------------------------------------------------------
# value sets


def test_4bit_value_sets_by_hand():
    # the default: a PoT term {0, 2, 4, 8} plus a one-bit term {0, 1}
    assert set(Ausn(4).int_values.tolist()) == {s * v for v in (0, 1, 2, 3, 4, 5, 8, 9) for s in (1, -1)}
    # three contiguous one-bit terms: sign-magnitude int (uniform); one term: PoT
    assert Ausn(4, fields=(1, 1, 1), offsets=(2, 1, 0)).int_values.tolist() == \
        list(range(8)) + [-v for v in range(8)]
    assert set(Ausn(4, fields=(3,), offsets=(0,)).int_values.tolist()) == \
        {0} | {s * 2 ** i for i in range(7) for s in (1, -1)}
    # overlapping windows share values: 2 + 2 = 4 + 0
    assert set(Ausn(3, fields=(1, 1), offsets=(0, 0)).int_values.tolist()) == {0, 1, 2, -1, -2}


@pytest.mark.parametrize("fmt", SMALL, ids=repr)
def test_codebook_and_decompose_match_the_bit_string_reading(fmt):
    assert fmt.codebook() == [reference_value(c, fmt) for c in range(1 << fmt.bits)]
    sign, fields = fmt.decompose(fmt.codes)
    for code in range(1 << fmt.bits):
        assert (int(sign[code]), fields[:, code].tolist()) == reference_fields(code, fmt)


@given(ausn_formats())
def test_random_superpositions_match_the_reference(fmt):
    assert fmt.codebook() == [reference_value(c, fmt) for c in range(1 << fmt.bits)]
    assert from_params("ausn", fmt.params()) == fmt


def test_field_slices_exponents_and_label():
    fmt = Ausn(8, fields=(2, 1, 1, 3), offsets=(4, 3, 2, 0))
    assert fmt.field_slices == ((5, 2), (4, 1), (3, 1), (0, 3))
    assert fmt.exponents == ((4, 5, 6), (3,), (2,), (0, 1, 2, 3, 4, 5, 6))
    assert fmt.label == superposition_label(fmt.fields, fmt.offsets) == "k2o4_k1o3_k1o2_k3o0"
    assert fmt.terms == 4 and fmt.magnitude_bits == 7
    assert get_format("ausn", 8) == Ausn(8) == fmt


def test_exp_base_scales_the_codebook():
    fmt = Ausn(4, exp_base=-3)
    assert sorted(set(fmt.codebook()))[-2:] == [1, Fraction(9, 8)]
    assert fmt.max_value == 9 / 8


# ---------------------------------------------------------------------------------------------
# rounding: nearest sum, ties to the smaller magnitude, canonical lowest code, saturation


def probes(fmt):
    """Every grid value and midpoint, just either side of each midpoint, and beyond both ends."""
    grid = np.unique(fmt.int_values).astype(float) * 2.0 ** fmt.exp_base
    mid = (grid[:-1] + grid[1:]) / 2
    return np.concatenate([grid, mid, np.nextafter(mid, -np.inf), np.nextafter(mid, np.inf),
                           [grid[-1] * 2 + 1, 1e30, -grid[-1] * 2 - 1, -1e30, -0.0]])


@pytest.mark.parametrize("fmt", SMALL, ids=repr)
def test_encode_is_the_reference_at_every_midpoint(fmt):
    xs = probes(fmt)
    book = [reference_value(c, fmt) for c in range(1 << fmt.bits)]
    assert fmt.encode(xs).tolist() == [reference_encode(x, fmt, book) for x in xs]


@pytest.mark.parametrize("fmt", SMALL, ids=repr)
def test_every_field_boundary(fmt):
    """From every code with a field at its top (where rounding up must carry into another field
    or past the top), rounding up reaches the next representable sum, a tie stays, and past the
    largest sum the result is the largest."""
    book = fmt.codebook()
    grid = sorted(set(book))
    sign, fields = fmt.decompose(fmt.codes)
    tops = np.array([(1 << k) - 1 for k in fmt.fields])[:, None]
    boundary = np.flatnonzero((fields == tops).any(axis=0) & (sign == 0))
    assert len(boundary) >= len(fmt.fields)
    for code in boundary:
        value = book[code]
        i = grid.index(value)
        if i + 1 < len(grid):
            mid = (value + grid[i + 1]) / 2
            up, tie = float(np.nextafter(float(mid), np.inf)), float(mid)
            assert book[fmt.encode([up])[0]] == grid[i + 1]
            assert book[fmt.encode([tie])[0]] == value
        else:                                   # the largest sum: nothing to carry into
            for x in (float(value) + 0.5, float(value) * 4, 1e300):
                assert book[fmt.encode([x])[0]] == value
                if fmt.signed:
                    assert book[fmt.encode([-x])[0]] == -value


@pytest.mark.parametrize("fmt", SMALL, ids=repr)
def test_canonical_codes(fmt):
    book = fmt.codebook()
    codes = fmt.encode([float(v) for v in book])
    assert [book[c] for c in codes] == book                       # decode(encode(v)) == v
    assert codes.tolist() == [book.index(v) for v in book]        # the lowest code of each value
    assert fmt.encode([0.0, -0.0, -1e-9]).tolist() == [0, 0, 0]   # +0


def test_ties_go_to_the_smaller_magnitude():
    fmt = Ausn(4)                                # 0 1 2 3 4 5 8 9
    assert fmt.decode(fmt.encode([0.5, 6.5, -6.5, 8.5, 9.5, -100.0, 7.0])).tolist() == [0, 5, -5, 8, 9, -9, 8]
    unsigned = Ausn(4, signed=False)             # default for 4 magnitude bits: 0 ... 20
    assert unsigned.decode(unsigned.encode([-3.0, 1e9])).tolist() == [0, 20]


@given(ausn_formats(), st.lists(st.floats(-1e4, 1e4), min_size=1, max_size=20))
def test_encode_matches_reference(fmt, xs):
    book = [reference_value(c, fmt) for c in range(1 << fmt.bits)]
    assert fmt.encode(xs).tolist() == [reference_encode(x, fmt, book) for x in xs]


@given(ausn_formats(), st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=40))
def test_monotone_symmetric_and_no_requantization(fmt, xs):
    xs = np.sort(np.array(xs))
    values = fmt.to_real(fmt.encode(xs))
    assert np.all(np.diff(values) >= 0)
    again = fmt.encode(values)
    np.testing.assert_array_equal(fmt.to_real(again), values)     # re-encoding changes nothing
    if fmt.signed:
        np.testing.assert_array_equal(fmt.to_real(fmt.encode(-xs)), -values)


# ---------------------------------------------------------------------------------------------
# parameters


@pytest.mark.parametrize("kwargs, match", [
    (dict(bits=2), "between 3 and 8"),
    (dict(bits=9), "between 3 and 8"),
    (dict(bits=4, fields=(2, 2), offsets=(1, 0)), "add up to the 3 magnitude bits"),
    (dict(bits=4, fields=(2, 1), offsets=(1, 1)), "smallest"),
    (dict(bits=4, fields=(2, 1), offsets=(0,)), "one offset per term"),
    (dict(bits=4, fields=(2, 1)), "one offset per term"),
    (dict(bits=4, offsets=(1, 0)), "need their field widths"),
    (dict(bits=4, fields=(0, 3), offsets=(0, 0)), "field width must be between 1 and 3"),
    (dict(bits=4, fields=(2, 1), offsets=(29, 0)), "above 30"),
    (dict(bits=4, fields=(2, 1), offsets=(1.0, 0)), "must be an integer"),
    (dict(bits=4, fields="21", offsets=(1, 0)), "sequence of field widths"),
    (dict(bits=4, exp_base=40), "exp_base"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(HwqError, match=match):
        Ausn(**kwargs)


def test_bad_codes_and_tensors():
    with pytest.raises(HwqError, match=r"\[0, 15\]"):
        Ausn(4).decompose([16])
    with pytest.raises(HwqError, match="NaN/Inf"):
        Ausn(4).encode([np.nan])


# ---------------------------------------------------------------------------------------------
# superposition search


def test_search_space_of_three_magnitude_bits():
    """By hand: PoT; a 1-bit over a 2-bit term, offset 0 (overlapping) ... 3 (contiguous); a 2-bit
    over a 1-bit term, offset 0 or 1; three 1-bit terms, each gap 0 or 1. A candidate whose value
    set an earlier one has is left out."""
    order = [((3,), (0,)),
             ((1, 2), (0, 0)), ((1, 2), (1, 0)), ((1, 2), (2, 0)), ((1, 2), (3, 0)),
             ((2, 1), (0, 0)), ((2, 1), (1, 0)),
             ((1, 1, 1), (0, 0, 0)), ((1, 1, 1), (1, 1, 0)), ((1, 1, 1), (1, 0, 0)), ((1, 1, 1), (2, 1, 0))]
    dropped = [((2, 1), (0, 0)), ((1, 1, 1), (1, 1, 0))]          # both {0, ..., 5}, as (1, 2), (0, 0)
    seen, kept = set(), []
    for fields, offsets in order:
        grid = frozenset(abs(reference_value(c, Ausn(4, fields=fields, offsets=offsets))) for c in range(16))
        assert (grid in seen) == ((fields, offsets) in dropped)
        if grid not in seen:
            seen.add(grid)
            kept.append((fields, offsets))
    assert superpositions(4, max_terms=3) == kept and len(kept) == 9
    assert superpositions(4, max_terms=2) == kept[:6]
    assert superpositions(4, max_terms=1) == [((3,), (0,))]


def test_every_candidate_keeps_exponents_bounded_and_grids_distinct():
    cands = superpositions(8, signed=True, max_terms=4)
    grids = {tuple(Ausn(8, fields=f, offsets=o).grid()) for f, o in cands}
    assert len(grids) == len(cands)
    for fields, offsets in cands:
        assert list(offsets) == sorted(offsets, reverse=True) and offsets[-1] == 0
        assert all(b - a <= (1 << k) - 1 for a, b, k in zip(offsets[1:], offsets, fields[1:]))


@pytest.mark.parametrize("magnitude_bits", [2, 3, 4, 5])
def test_defaults_are_the_gaussian_choice(magnitude_bits):
    x = np.random.default_rng(0).normal(size=8192)
    for signed in (True, False):
        bits = magnitude_bits + signed
        if bits < 3:
            continue
        choice = select_superposition(x if signed else np.abs(x), bits)
        assert (choice.format.fields, choice.format.offsets) == DEFAULT_SUPERPOSITIONS[magnitude_bits]
        assert choice.format == Ausn(bits, signed=signed)


def test_search_returns_the_least_error_and_every_candidate():
    rng = np.random.default_rng(3)
    x = rng.laplace(size=3000)
    choice = select_superposition(x, 5, max_terms=2)
    labels = [superposition_label(f, o) for f, o in superpositions(5, max_terms=2)]
    assert list(choice.errors) == labels
    best = choice.errors[choice.format.label]
    assert all(best.total <= e.total * (1 + 1e-9) for e in choice.errors.values())
    # the scale: no other point of the sweep does better (direct fake-quantization)
    fmt = choice.format
    mse = lambda s: np.mean((fmt.fake_quantize(x, s) - x) ** 2)
    assert mse(choice.scale) <= min(mse(s) for s in np.abs(x).max() * SCALE_RATIOS / fmt.max_value) * (1 + 1e-9)
    assert best.total == pytest.approx(mse(choice.scale), rel=1e-12)
    assert choice.scale in np.abs(x).max() * SCALE_RATIOS / fmt.max_value


def test_search_input_checks():
    assert select_superposition(np.arange(10.0), 4).format.signed is False
    assert select_superposition(np.zeros(5), 4).format.signed is False
    with pytest.raises(HwqError, match="empty"):
        select_superposition([], 4)
    with pytest.raises(HwqError, match="NaN/Inf"):
        select_superposition([1.0, np.inf], 4)
    with pytest.raises(HwqError, match="negative"):
        select_superposition([-1.0, 1.0], 4, signed=False)
    with pytest.raises(HwqError, match="ratios"):
        select_superposition([1.0], 4, ratios=[0.5, -1.0])
    with pytest.raises(HwqError, match="between 3 and 8"):
        select_superposition([1.0], 9)
    with pytest.raises(HwqError, match="between 3 and 8"):
        default_superposition(9)


# ---------------------------------------------------------------------------------------------
# clipping + rounding = total, for every format


def metric_formats():
    out = [FixedPoint(4, frac=1), FixedPoint(8, frac=5), FixedPoint(4, signed=False, frac=2),
           FixedPoint(6, rounding="floor"), Ant(4, type="flint"), Ant(4, type="int"), Ant(4, type="pot"),
           Ant(4, type="flint", signed=False), Ausn(4), Ausn(8), Ausn(5, signed=False),
           Ausn(4, fields=(1, 1, 1), offsets=(2, 1, 0), exp_base=-2)]
    for name, cls in sorted(FORMATS.items()):                       # every registered format
        out += [get_format(name, bits) for bits in (4, 8) if cls.bit_range[0] <= bits <= cls.bit_range[1]]
    return out


def reference_split(x, fmt, scale):
    """Clipping, rounding and total error from the definitions, with Fractions; the thresholds
    are the least and largest codebook values times the scale."""
    book = [v * Fraction(scale) for v in fmt.codebook()]
    low, high = min(book), max(book)
    q = fmt.fake_quantize(x, scale)
    clip = rnd = Fraction(0)
    for xi, qi in zip(map(Fraction, x), map(Fraction, q)):
        if xi > high:
            clip += (xi - high) ** 2
        elif xi < low:
            clip += (low - xi) ** 2
        else:
            rnd += (xi - qi) ** 2
    total = sum((Fraction(a) - Fraction(b)) ** 2 for a, b in zip(x, q))
    return clip / len(x), rnd / len(x), total / len(x), (low, high)


@pytest.mark.parametrize("fmt", metric_formats(), ids=repr)
def test_clipping_plus_rounding_is_the_total(fmt):
    x = np.random.default_rng(7).standard_normal(400) * 2.0
    scale = 2.0 ** round(np.log2(3.0 / fmt.max_value))             # clips some of x; exact products
    err = quantization_error(x, fmt, scale)
    clip, rnd, total, (low, high) = reference_split(x, fmt, scale)
    assert clip + rnd == total                                      # exactly: Q saturates at the thresholds
    assert (err.clip_low, err.clip_high) == clip_thresholds(fmt, scale) == (float(low), float(high))
    assert err.clipping == pytest.approx(float(clip), rel=1e-12)
    assert err.rounding == pytest.approx(float(rnd), rel=1e-12)
    assert err.total == pytest.approx(float(total), rel=1e-12)
    assert err.clipping + err.rounding == pytest.approx(err.total, rel=1e-12)
    assert err.clipping > 0 and 0 < err.clipped < 1


def test_asymmetric_and_unsigned_thresholds():
    assert clip_thresholds(FixedPoint(4), 0.5) == (-4.0, 3.5)                # -8 ... 7
    assert clip_thresholds(FixedPoint(4, signed=False), 1.0) == (0.0, 15.0)
    err = quantization_error([-2.0, 1.0, 20.0], FixedPoint(4, signed=False))
    assert (err.clipping, err.rounding, err.total) == pytest.approx((4 / 3 + 25 / 3, 0.0, 29 / 3))
    assert err.clipped == pytest.approx(2 / 3)


def test_split_error_of_any_quantizer_and_bad_input():
    x = np.array([-3.0, -0.4, 0.2, 2.5])
    q = np.clip(np.round(x), -1, 2)
    err = split_error(x, q, -1.0, 2.0)
    assert err.clipping == pytest.approx((2.0 ** 2 + 0.5 ** 2) / 4)
    assert err.rounding == pytest.approx((0.4 ** 2 + 0.2 ** 2) / 4)
    with pytest.raises(HwqError, match="shape"):
        split_error(x, q[:2], -1.0, 1.0)
    with pytest.raises(HwqError, match="empty"):
        split_error([], [], -1.0, 1.0)
    with pytest.raises(HwqError, match="thresholds"):
        split_error(x, q, 1.0, -1.0)
    with pytest.raises(HwqError, match="NumberFormat"):
        quantization_error(x, "fxp")
    with pytest.raises(HwqError, match="scale"):
        quantization_error(x, Ausn(4), 0.0)
    with pytest.raises(HwqError, match="NaN/Inf"):
        quantization_error([np.nan], Ausn(4))
