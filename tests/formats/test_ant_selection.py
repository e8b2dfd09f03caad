"""ANT's type selection (``select_type``, ``calibrate_ant``) against the exhaustive search it
replaces, spelled out here: every sweep scale of every candidate type encoded with the golden
``Ant.encode``, the first least MSE per row, the least summed MSE per type. The fast search must
choose the same type and the same scales, bit for bit."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hwq.errors import HwqError, InputError
from hwq.formats import ant, calibrate_tensor
from hwq.formats.ant import ANT_TYPES, Ant, select_type

#: the sweep of select_type: clip value alpha = max|x| * i / 100 (ANT's reference starts at 75, hwq at 20)
SWEEP = range(20, 150)


def exhaustive(x, bits, types=("int", "flint", "pot"), channel_axis=None):
    """The reference search, one encoding per candidate scale: (format, scales, MSE per type)."""
    x = np.asarray(x, dtype=np.float64)
    signed = bool((x < 0).any())
    rows = x.reshape(1, -1) if channel_axis is None else \
        np.moveaxis(x, channel_axis, 0).reshape(x.shape[channel_axis], -1)
    found = {}
    for name in dict.fromkeys(types):
        try:
            fmt = Ant(bits, type=name, signed=signed)
        except HwqError:                                    # PoT too wide for the width
            continue
        best = []
        for row in rows:
            peak = np.abs(row).max()
            least = None
            for i in SWEEP:
                scale = peak * (i / 100) / fmt.max_value if peak > 0 else 1.0
                mse = np.mean((fmt.to_real(fmt.encode(row / scale)) * scale - row) ** 2)
                if least is None or mse < least[0]:
                    least = (mse, scale)
            best.append(least)
        found[name] = (fmt, np.array([s for _, s in best]), float(np.sum([m for m, _ in best])))
    winner = min(found, key=lambda k: (found[k][2], list(found).index(k)))
    return found[winner][0], found[winner][1], {k: v[2] for k, v in found.items()}


def assert_same_choice(x, bits, types=("int", "flint", "pot"), channel_axis=None, rel=1e-6):
    """Same type, same scales bit for bit; the type scores (sums of the rows' MSEs) within
    ``rel``: ``select_type`` guarantees ``ant._REPORT_RTOL`` (1e-4), and is within 1e-8 in
    practice."""
    fmt, scale, mse = exhaustive(x, bits, types, channel_axis)
    choice = select_type(x, bits, types=types, channel_axis=channel_axis)
    assert choice.format == fmt, (choice.mse, mse)
    np.testing.assert_array_equal(choice.scale, scale)
    assert list(choice.mse) == list(mse)
    for name, total in mse.items():                          # suffix sums, not bit-exact sums
        assert choice.mse[name] == pytest.approx(total, rel=rel, abs=0), name
    return choice


def tensor(kind, seed):
    """Small seeded tensors of the kinds ANT calibrates, with the channel axis to use."""
    rng = np.random.default_rng(seed)
    if kind == "gaussian weights":
        return rng.standard_normal((6, 64)) * rng.lognormal(0, 0.5, (6, 1)), 0
    if kind == "laplace weights":
        return rng.laplace(size=(5, 97)) * 0.05, 0
    if kind == "conv weights":                              # (out, in, kh, kw), per output channel
        return rng.standard_normal((4, 3, 3, 3)), 0
    if kind == "channels on axis 1":
        return rng.standard_normal((40, 3)), 1
    if kind == "signed activations":                        # a residual stream: per tensor
        return rng.standard_normal(300) + rng.standard_normal(300) ** 3, None
    if kind == "relu activations":                          # unsigned: per tensor
        return np.maximum(rng.standard_normal((3, 70)), 0.0), None
    if kind == "outliers":
        x = rng.standard_normal((4, 80))
        x[rng.random(x.shape) < 0.02] *= 40
        return x, 0
    if kind == "ties":                                      # values on grid points and midpoints
        x = rng.integers(-16, 17, (5, 40)) * 0.125
        x[0] = 0.0                                          # an all-zero channel
        x[1] = 0.0
        x[1, 3] = -2.0                                      # one value: the peak is negative
        return x, 0
    raise ValueError(kind)


KINDS = ["gaussian weights", "laplace weights", "conv weights", "channels on axis 1",
         "signed activations", "relu activations", "outliers", "ties"]


@pytest.mark.parametrize("bits", [3, 4, 8])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_fast_search_chooses_what_the_exhaustive_search_chooses(kind, bits, seed):
    x, axis = tensor(kind, seed)
    assert_same_choice(x, bits, ANT_TYPES, axis)                        # every type, float too
    assert_same_choice(x, bits, ("int", "flint", "pot"), axis)          # the calibrator's default


@settings(max_examples=40, deadline=None)
@given(st.integers(3, 8), st.lists(st.lists(st.sampled_from([0.0, 0.125, -0.125, 0.5, -0.375, 1.0, -1.0, 3.0, 0.3]),
                                            min_size=6, max_size=6), min_size=1, max_size=3),
       st.permutations(ANT_TYPES))
def test_fast_search_on_tie_heavy_tensors(bits, values, types):
    """Few distinct values, many of them on thresholds: ties between scales and types abound.
    (Rows this short would be searched candidate by candidate: the histogram is forced.)"""
    try:
        exhaustive(np.array(values), bits, tuple(types), 0)
    except ValueError:                                      # no candidate fits (8-bit PoT only)
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ant, "_ENCODE_COST", 1e9)
        assert_same_choice(np.array(values), bits, tuple(types), 0, rel=ant._REPORT_RTOL)


def test_int_keeps_its_extra_negative_level():
    """Two's complement int has one more level below zero (-2**(n-1)) than above."""
    rng = np.random.default_rng(3)
    x = -np.abs(rng.standard_normal((4, 50)))
    x[:, 0] = 1.0                                           # the positive side is short of the peak
    x[:, 1] = -1.3
    for bits in (3, 4, 8):
        assert_same_choice(x, bits, ("int",), 0)
        assert_same_choice(-x, bits, ("int",), 0)


def test_pieces_and_blocks(monkeypatch):
    """Long rows in pieces, pieces in several passes, rows in several blocks."""
    monkeypatch.setattr(ant, "_ENCODE_COST", 1e9)                      # the histogram path
    monkeypatch.setattr(ant, "_PIECE", 16)
    monkeypatch.setattr(ant, "_BLOCK_BINS", 600)
    rng = np.random.default_rng(5)
    assert_same_choice(rng.laplace(size=1000), 4)                            # one row, 63 pieces
    assert_same_choice(rng.standard_normal((9, 45)), 4, channel_axis=0)      # 3 pieces, 9 blocks
    assert_same_choice(rng.standard_normal((9, 45)), 8, channel_axis=0)


@pytest.mark.parametrize("encode_cost", [0, 1e9])
def test_histogram_and_candidate_by_candidate_paths(monkeypatch, encode_cost):
    """Rows too short to pay for a histogram (depthwise 3x3 filters at 8 bits) are searched
    candidate by candidate; either path gives the exhaustive choice."""
    monkeypatch.setattr(ant, "_ENCODE_COST", encode_cost)              # 0: encoding; 1e9: histogram
    rng = np.random.default_rng(6)
    for bits in (4, 8):
        assert_same_choice(rng.standard_normal((16, 1, 3, 3)), bits, channel_axis=0)
        assert_same_choice(rng.laplace(size=(5, 40)), bits, ANT_TYPES, 0)


def test_near_ties_are_settled_by_encoding(monkeypatch):
    """With error bounds inflated until nothing is certain, every row's candidates and every
    type's score are re-evaluated by encoding: the result is still the exhaustive one, and the
    reported MSEs are then the exhaustive sums exactly."""
    calls = []
    exact_mse = ant._exact_mse
    monkeypatch.setattr(ant, "_ENCODE_COST", 1e9)                      # the histogram path
    monkeypatch.setattr(ant, "_UNIT_ROUNDOFF", 1e-3)
    monkeypatch.setattr(ant, "_exact_mse", lambda *args: calls.append(len(args[2])) or exact_mse(*args))
    x, axis = tensor("gaussian weights", 7)
    assert_same_choice(x, 4, channel_axis=axis, rel=0)
    assert sum(calls) > 3 * len(x)                          # rows re-evaluated, then type scores


def test_types_with_equal_grids_tie_to_the_earlier():
    x = np.random.default_rng(2).standard_normal((3, 30))
    assert Ant(3, type="flint").grid().tolist() == Ant(3, type="pot").grid().tolist()
    assert select_type(x, 3, types=("pot", "flint"), channel_axis=0).format.type == "pot"
    assert select_type(x, 3, types=("flint", "pot"), channel_axis=0).format.type == "flint"
    assert_same_choice(x, 3, ("pot", "flint", "int"), 0)


def test_rank_is_a_binary_search():
    rng = np.random.default_rng(4)
    for bits, types in [(3, ANT_TYPES), (4, ("int", "flint", "pot")), (6, ANT_TYPES), (8, ("int", "flint")),
                        (5, ("pot",)), (8, ("float",))]:
        plans = [ant._Plan(Ant(bits, type=t, signed=True)) for t in types]
        thresholds = ant._Thresholds(np.concatenate([p.common.threshold.ravel() for p in plans]))
        v = thresholds.values
        u = np.concatenate([rng.random(20000), rng.random(2000) ** 8, v, np.nextafter(v, 0), np.nextafter(v, 2),
                            [0.0, 5e-324, 1e-300, 1.0]])
        u = np.minimum(u, 1.0)
        np.testing.assert_array_equal(thresholds.rank(u), np.searchsorted(v, u, side="right"))


def test_widths_and_candidates():
    x = np.random.default_rng(0).standard_normal((2, 10))
    with pytest.raises(InputError, match="between 3 and 8"):             # ANT has no 2-bit types
        select_type(x, 2)
    with pytest.raises(InputError, match="no ANT candidate type fits 8 bits"):
        select_type(x, 8, types=("pot",))
    assert "pot" not in select_type(x, 7, channel_axis=0).mse             # 6 magnitude bits


def outlier_activations(signed, seed=0):
    """An activation with a few huge values (20 to 40 sigma): a transformer's residual stream
    (signed) or a post-ReLU feature map (unsigned)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(20000)
    hot = rng.choice(x.size, 8, replace=False)
    x[hot] = np.sign(x[hot]) * rng.uniform(20, 40, hot.size)
    return x if signed else np.maximum(x, 0.0)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("bits", [4, 8])
def test_activation_range_is_chosen_by_mse_not_by_the_maximum(signed, bits):
    """ANT calibrates an activation per tensor by the MSE sweep, not by its maximum: on an
    outlier-heavy tensor the chosen clip sits below ``max|x|`` and the error is lower than with
    the maximum as the range, whichever type that would use (at 4 bits by more than 10 %)."""
    x = outlier_activations(signed)
    chosen = calibrate_tensor("ant", x, bits, role="activation")
    assert chosen.channel_axis is None and chosen.scale.shape == (1,)
    assert chosen.format.signed is signed
    fmt, scale = chosen.format, float(chosen.scale[0])
    mse = np.mean((fmt.fake_quantize(x, scale) - x) ** 2)
    assert mse == pytest.approx(chosen.candidates[fmt.type], rel=1e-9)
    assert scale * fmt.max_value < np.abs(x).max()                         # clipped below the peak
    by_max = {}
    for name in ("int", "flint", "pot"):
        try:
            other = Ant(bits, type=name, signed=signed)
        except HwqError:
            continue
        by_max[name] = np.mean((other.fake_quantize(x, np.abs(x).max() / other.max_value) - x) ** 2)
    assert mse < (0.9 if bits == 4 else 1.0) * min(by_max.values()), (mse, by_max)


def test_sweep_reaches_below_the_references_bound():
    """hwq's sweep starts at ``0.20 * max|x|``, the reference's at ``0.75``: a heavy-tailed row
    (Laplace, 2 000 values; 4-bit int) has its least MSE between the two, and its error is then
    lower than the best of the reference's candidates."""
    rng = np.random.default_rng(8)
    x = rng.laplace(size=(3, 2000))
    choice = select_type(x, 4, types=("int",), channel_axis=0)
    fmt, peak = choice.format, np.abs(x).max(axis=1)
    clip = choice.scale * fmt.max_value / peak
    assert (clip >= 0.2).all() and (clip < 0.75).all(), clip
    for row, scale, top in zip(x, choice.scale, peak):
        reference = min(np.mean((fmt.fake_quantize(row, top * i / 100 / fmt.max_value) - row) ** 2)
                        for i in range(75, 150))
        assert np.mean((fmt.fake_quantize(row, scale) - row) ** 2) < 0.95 * reference


@pytest.mark.parametrize("bits", [3, 4, 8])
@pytest.mark.parametrize("kind", KINDS)
def test_refined_scales_never_raise_a_channels_error(kind, bits):
    """``refine_scales`` (hwq extension) moves each channel's scale off the 1 % sweep by least
    squares and keeps a move only where the error falls: per channel at most the sweep's MSE
    (by encoding with the golden ``Ant.encode``), its reported MSE the encoded one, and the
    calibrator returns exactly these scales and, for the chosen type, their summed MSE."""
    x, axis = tensor(kind, 3)
    choice = select_type(x, bits, channel_axis=axis)
    scale, mse = ant.refine_scales(x, choice.format, choice.scale, channel_axis=axis)
    fmt = choice.format
    rows = x.reshape(1, -1) if axis is None else np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    assert scale.shape == choice.scale.shape and (scale > 0).all()
    for row, old, new, reported in zip(rows, choice.scale, scale, mse):
        before = np.mean((fmt.to_real(fmt.encode(row / old)) * old - row) ** 2)
        after = np.mean((fmt.to_real(fmt.encode(row / new)) * new - row) ** 2)
        assert after <= before
        assert reported == pytest.approx(after, rel=1e-9, abs=1e-300)
    got = calibrate_tensor("ant", x, bits, role="weight" if axis is not None else "activation")
    if axis == 0:
        np.testing.assert_array_equal(got.scale, scale)
        assert got.candidates[fmt.type] == pytest.approx(float(mse.sum()), rel=1e-12)


def test_refinement_lowers_the_error_between_sweep_candidates():
    """Between two sweep candidates (1 % of max|x| apart) the error of a long row still falls: the
    refined scales give less summed MSE than the sweep's on Laplace rows."""
    x = np.random.default_rng(9).laplace(size=(16, 3000))
    choice = select_type(x, 4, channel_axis=0)
    scale, mse = ant.refine_scales(x, choice.format, choice.scale, channel_axis=0)
    assert mse.sum() < choice.mse[choice.format.type] * (1 - 1e-5)
    assert (scale != choice.scale).sum() >= 8
