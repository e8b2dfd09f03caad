"""hwq.formats.bops: grouped and depthwise convolutions (the dense cases are in test_uniq.py)."""

import math

import pytest
from hypothesis import given, strategies as st

from hwq.errors import InputError
from hwq.formats.bops import bops, conv_bops


def test_depthwise_is_one_single_channel_convolution_per_channel():
    # depthwise 3x3 on 8 channels, a8 w4: each output channel sees 1 input channel, 9 products
    per_channel_exact = 9 * (8 * 4 + 8 + 4 + math.log2(9))
    per_channel_ceil = 9 * (8 * 4 + 8 + 4 + 4)                       # ceil(log2 9) = 4
    assert conv_bops(8, 8, 3, 8, 4, groups=8) == pytest.approx(8 * per_channel_exact, rel=1e-15)
    assert conv_bops(8, 8, 3, 8, 4, groups=8, log2="ceil") == 8 * per_channel_ceil == 3456
    assert conv_bops(8, 8, 3, 8, 4, groups=8, log2="ceil") == 8 * conv_bops(1, 1, 3, 8, 4, log2="ceil")
    assert conv_bops(8, 8, 3, 8, 4, groups=8, output_size=(5, 7), log2="ceil") == 3456 * 35
    # the dense count is 8 times as many MACs, each with a wider accumulator
    assert conv_bops(8, 8, 3, 8, 4, log2="ceil") == 8 * 8 * 9 * (32 + 12 + 7)


def test_grouped_convolution_uses_the_per_group_fan_in():
    # 16 -> 32, groups 4, 3x3: each output sees 16/4 = 4 input channels, fan-in 36
    macs = 32 * 4 * 9
    assert conv_bops(16, 32, 3, 4, 4, groups=4, log2="ceil") == macs * (16 + 8 + 6)          # ceil(log2 36) = 6
    assert conv_bops(16, 32, 3, 4, 4, groups=4) == pytest.approx(macs * (16 + 8 + math.log2(36)), rel=1e-15)
    # the same as 4 independent 4 -> 8 convolutions
    assert conv_bops(16, 32, 3, 4, 4, groups=4, log2="ceil") == 4 * conv_bops(4, 8, 3, 4, 4, log2="ceil")
    assert conv_bops(16, 32, (1, 3), 4, 4, groups=4, log2="ceil") == 4 * conv_bops(4, 8, (1, 3), 4, 4, log2="ceil")


def test_groups_one_is_the_default_and_unchanged():
    assert conv_bops(64, 64, 3, 8, 4, groups=1) == conv_bops(64, 64, 3, 8, 4) == pytest.approx(1960056.115, abs=1e-3)
    assert bops(8, 4, 64, 64, 3, groups=1, log2="ceil") == 1990656


@given(st.integers(1, 8), st.integers(1, 8), st.integers(1, 6), st.integers(1, 6), st.integers(1, 5),
       st.sampled_from(["exact", "ceil"]))
def test_a_grouped_convolution_is_its_groups_side_by_side(n_per, m_per, groups, a_bits, k, log2):
    n, m = n_per * groups, m_per * groups
    whole = conv_bops(n, m, k, a_bits, 4, groups=groups, log2=log2)
    assert whole == pytest.approx(groups * conv_bops(n_per, m_per, k, a_bits, 4, log2=log2), rel=1e-12)


@pytest.mark.parametrize("call, match", [
    (lambda: conv_bops(8, 8, 3, 8, 4, groups=3), r"groups=3 must divide both in_channels=8 and out_channels=8"),
    (lambda: conv_bops(8, 12, 3, 8, 4, groups=8), r"groups=8 must divide both in_channels=8 and out_channels=12"),
    (lambda: conv_bops(12, 8, 3, 8, 4, groups=3), r"groups=3 must divide both in_channels=12 and out_channels=8"),
    (lambda: conv_bops(8, 8, 3, 8, 4, groups=0), r"groups must be between 1"),
    (lambda: conv_bops(8, 8, 3, 8, 4, groups=-8), r"groups must be between 1"),
    (lambda: conv_bops(8, 8, 3, 8, 4, groups=2.0), r"groups must be an integer, not 2.0"),
    (lambda: conv_bops(8, 8, 3, 8, 4, groups=True), r"groups must be an integer, not True"),
    (lambda: conv_bops(8, 8, 3, 8, 4, groups=None), r"groups must be an integer, not None"),
    (lambda: bops(8, 4, 8, 8, 3, groups=16), r"groups=16 must divide both"),
])
def test_bad_groups_are_refused(call, match):
    with pytest.raises(InputError, match=match):
        call()
