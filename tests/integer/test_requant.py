"""The one rounding of requantization: threshold tables against each format's golden encoder,
multipliers and shifts, clamps and flush warnings."""

import warnings

import numpy as np
import pytest

from hwq.errors import InputError
from hwq.formats import FORMATS, get_format
from hwq.formats.ant import Ant
from hwq.formats.fxp import FixedPoint
from hwq.formats.rounding import ROUNDING_MODES
from hwq.integer.requant import (MAX_SHIFT, MULTIPLIER_BITS, Clamp, EncoderTable, FlushWarning, Multiplier,
                                 requantize, warn_flush)

FORMATS_UNDER_TEST = (
    [get_format(name, bits) for name in sorted(FORMATS) for bits in (2, 3, 4, 5, 6, 8)
     if FORMATS[name].bit_range[0] <= bits and (name != "uniq" or bits >= 2)]
    + [FixedPoint(6, frac=2, signed=signed, rounding=mode) for mode in ROUNDING_MODES for signed in (True, False)]
    + [Ant(bits, type=kind, signed=signed) for kind in ("int", "flint", "pot") for bits in (3, 4, 5)
       for signed in (True, False)]
)


@pytest.mark.parametrize("fmt", FORMATS_UNDER_TEST, ids=repr)
def test_threshold_table_is_the_golden_encoder_on_exact_rationals(fmt):
    """Numerators n / 2**S for shifts 0..5: every one in a range past both ends where the grid
    is small, else every one within 3 steps of each grid value and threshold (ties included):
    the table's code equals the golden encoder applied to the exact dyadic value."""
    table = EncoderTable.of(fmt)
    reach = int(np.abs(table.grid).max()) + 3
    for shift in range(6):
        if reach << shift <= 1 << 16:
            n = np.arange(-reach << shift, (reach << shift) + 1, dtype=np.int64)
        else:
            centres = np.concatenate([table.grid << shift, (table.thresholds2 << shift) >> 1, [-reach << shift,
                                                                                             reach << shift]])
            n = np.unique((centres[:, None] + np.arange(-3, 4)[None, :]).ravel())
        codes = requantize(n, shift, table, Clamp(0, len(table.grid) - 1))
        expected = fmt.encode(np.ldexp(n.astype(np.float64), fmt.lsb_exp - shift))
        assert np.array_equal(codes, expected), (fmt, shift)


def test_threshold_table_with_per_channel_shifts_and_large_shifts():
    """Per-channel shifts broadcast; large shifts keep the sticky bit (a value a hair above a
    tie rounds away from the tie's direction)."""
    fmt = FixedPoint(8, frac=0)                       # half to even: 0.5 -> 0, 1.5 -> 2
    table = EncoderTable.of(fmt)
    shift = np.array([[40], [41]])
    half = np.int64(1) << 39                          # 0.5 at shift 40, 0.25 at shift 41
    n = np.array([[half, half + 1, 3 * half], [half, 3 * half, 3 * half + 1]])
    codes = fmt.decode(requantize(n, shift, table, Clamp(0, len(table.grid) - 1)))
    assert codes.tolist() == [[0, 1, 2], [0, 1, 1]]


def test_numerator_bound_is_checked():
    table = EncoderTable.of(FixedPoint(8))
    with pytest.raises(InputError, match="62 bits"):
        table.index(np.array([1 << 62]), 0)


def test_clamp_folds_relu_and_relu6_into_grid_indices():
    fmt = FixedPoint(8, frac=4)                       # step 1/16, range [-8, 127/16]
    table = EncoderTable.of(fmt)
    clamp = Clamp.of(table, 0.0, 6.0)
    assert clamp.values(table) == (0, 96)
    n = np.array([-1000, -1, 0, 50, 96, 97, 5000], dtype=np.int64)
    assert fmt.decode(requantize(n, 0, table, clamp)).tolist() == [0, 0, 0, 50, 96, 96, 96]
    with pytest.raises(InputError, match="empty"):
        Clamp.of(table, 3.0, 1.0)


@pytest.mark.parametrize("factor", [1e-9, 3.7e-5, 0.1, 0.5, 1.0, 1.5, 123.456, 65535.0])
def test_multiplier_is_normalized_and_within_its_rounding(factor):
    m = Multiplier.of(factor)
    multiplier, shift = int(m.multiplier[0]), int(m.shift[0])
    assert 0 <= shift <= MAX_SHIFT and multiplier < 1 << MULTIPLIER_BITS
    if shift > 0:
        assert multiplier >= 1 << (MULTIPLIER_BITS - 1)
    assert abs(multiplier / 2.0 ** shift - factor) <= 2.0 ** -(shift + 1) * (1 + 1e-12)


def test_multiplier_refuses_bad_factors_and_flushes_tiny_ones():
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(InputError, match="finite and positive"):
            Multiplier.of(bad, what="layer 'fc' factor")
    with pytest.raises(InputError, match="65536 or more"):
        Multiplier.of(70000.0)
    tiny = Multiplier.of(1e-30)
    assert int(tiny.shift[0]) == MAX_SHIFT and int(tiny.multiplier[0]) == 0


def test_common_shift_keeps_the_largest_factor_normalized():
    multipliers, shift = Multiplier.common([0.75, 0.001])
    assert multipliers[0] >= 1 << (MULTIPLIER_BITS - 1)
    assert abs(multipliers[1] / 2 ** shift - 0.001) <= 2.0 ** -(shift + 1)


def test_flush_warning_names_the_op_and_channels():
    table = EncoderTable.of(FixedPoint(8))
    with pytest.warns(FlushWarning, match=r"layer 'x'.*channel\(s\) 1"):
        warn_flush("layer 'x'", Multiplier.of([0.5, 1e-30]), 1000, table)
    with pytest.warns(FlushWarning, match="every output"):
        warn_flush("layer 'x'", Multiplier.of([1e-30]), 1000, table)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_flush("layer 'x'", Multiplier.of([0.5]), 1000, table)


def test_table_of_a_single_value_encodes_everything_to_it():
    """A table with one grid value has no threshold: every numerator is index 0 (used to raise
    IndexError)."""
    table = EncoderTable(FixedPoint(2), np.array([3]), np.array([1]), np.zeros(0, np.int64), np.zeros(0, bool))
    numerators = np.array([-(1 << 40), -1, 0, 1, 7, 1 << 40])
    assert np.array_equal(table.index(numerators, 3), np.zeros(6, np.int64))
    assert np.array_equal(requantize(numerators, 0, table, Clamp(0, 0)), np.ones(6, np.int64))
