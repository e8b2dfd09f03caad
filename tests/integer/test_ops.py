"""hwq.integer.ops against torch.nn.functional: exact on integers, errors where torch errs.

Every sweep is seeded; torch runs in float64 on small integers, where it is exact too.
"""

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from hwq.errors import InputError
from hwq.formats import Ant, Esb, FixedPoint, Uniq
from hwq.integer import ops

ROOT = Path(__file__).resolve().parents[2]
FORMAT_PAIRS = [(FixedPoint(8, signed=False), Esb(5)), (FixedPoint(4, signed=True), Uniq.gaussian(4)),
                (Esb(6), Ant(4)), (FixedPoint(8, signed=True), FixedPoint(8, signed=True))]


def _t(x):
    return torch.from_numpy(np.asarray(x, dtype=np.float64))


def _np(t):
    out = t.numpy()
    assert np.all(out == np.rint(out))
    return out.astype(np.int64)


def _torch_raises(fn):
    try:
        return False, fn()
    except RuntimeError:
        return True, None


# --- pad2d ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ops.PAD_MODES)
def test_pad2d_matches_torch(mode):
    rng = np.random.default_rng(1)
    for _ in range(150):
        n, c, h, w = rng.integers(1, 3), rng.integers(1, 3), rng.integers(1, 7), rng.integers(1, 7)
        x = rng.integers(-50, 50, (n, c, h, w))
        top, bottom = rng.integers(0, h + 2, 2)
        left, right = rng.integers(0, w + 2, 2)
        padding = tuple(int(p) for p in (top, bottom, left, right))
        value = int(rng.integers(-9, 9))
        raised, expected = _torch_raises(lambda: F.pad(_t(x), (left, right, top, bottom), mode=mode,
                                                       **({"value": value} if mode == "constant" else {})))
        if raised:
            with pytest.raises(InputError):
                ops.pad2d(x, padding, mode, value)
            continue
        got = ops.pad2d(x, padding, mode, value)
        assert got.dtype == x.dtype
        np.testing.assert_array_equal(got, _np(expected), err_msg=f"{mode} {x.shape} {padding}")


def test_pad2d_keeps_dtype_and_copies():
    x = np.arange(12, dtype=np.int16).reshape(1, 1, 3, 4)
    got = ops.pad2d(x, (0, 0, 0, 0), "constant")
    assert got.dtype == np.int16 and not np.shares_memory(got, x)
    np.testing.assert_array_equal(ops.pad2d(x.astype(np.float64), (1, 0, 0, 1), value=0.5)[0, 0, 0], [0.5] * 5)


# --- sizes, im2col, conv2d -----------------------------------------------------------------------

def test_output_sizes_match_torch():
    rng = np.random.default_rng(2)
    for _ in range(300):
        size, k, s, d = (int(v) for v in (rng.integers(1, 12), rng.integers(1, 5), rng.integers(1, 4),
                                           rng.integers(1, 4)))
        p = int(rng.integers(0, 3))
        raised, out = _torch_raises(lambda: F.conv2d(torch.zeros(1, 1, 1, size), torch.zeros(1, 1, 1, k),
                                                     stride=s, padding=(0, p), dilation=d))
        if raised:
            with pytest.raises(InputError):
                ops.conv_output_size(size, k, s, p, d)
        else:
            assert ops.conv_output_size(size, k, s, p, d) == out.shape[-1]
            assert ops.conv_output_size(size, k, s, (p, p), d) == out.shape[-1]
            assert ops.conv_output_size(size, k, s, (0, 2 * p), d) == out.shape[-1]
        for ceil_mode in (False, True):
            raised, out = _torch_raises(lambda: F.max_pool2d(torch.zeros(1, 1, 1, size), (1, k), (1, s), (0, p),
                                                             (1, d), ceil_mode=ceil_mode))
            if raised:
                with pytest.raises(InputError):
                    ops.pool_output_size(size, k, s, p, d, ceil_mode)
            else:
                assert ops.pool_output_size(size, k, s, p, d, ceil_mode) == out.shape[-1], (size, k, s, p, d)


def test_im2col_matches_unfold():
    rng = np.random.default_rng(3)
    for _ in range(100):
        kernel, stride, dilation = ([int(v) for v in rng.integers(1, hi, 2)] for hi in (4, 4, 3))
        h, w = (int(d * (k - 1) + 1 + rng.integers(0, 6)) for k, d in zip(kernel, dilation))
        x = rng.integers(-99, 99, (int(rng.integers(1, 3)), int(rng.integers(1, 4)), h, w))
        expected = F.unfold(_t(x), kernel, dilation=dilation, stride=stride).transpose(1, 2)
        got = ops.im2col(x, kernel, stride, dilation)
        np.testing.assert_array_equal(got, _np(expected))
        assert got.dtype == x.dtype


def _torch_conv(a_fmt, a, w_fmt, w, stride, dilation, groups):
    return _np(F.conv2d(_t(a_fmt.decode(a)), _t(w_fmt.decode(w)), stride=stride, dilation=dilation, groups=groups))


@pytest.mark.parametrize("a_fmt, w_fmt", FORMAT_PAIRS, ids=lambda f: repr(f))
def test_conv2d_matches_torch(a_fmt, w_fmt):
    rng = np.random.default_rng(4)
    for case in range(60):
        groups = int(rng.integers(1, 4))
        cg, og = int(rng.integers(1, 4)), int(rng.integers(1, 3))
        if case % 3 == 0:                                   # depthwise, with a channel multiplier
            cg = 1
        kernel, stride, dilation = ([int(v) for v in rng.integers(1, hi, 2)] for hi in (4, 4, 3))
        h, w = (int(d * (k - 1) + 1 + rng.integers(0, 6)) for k, d in zip(kernel, dilation))
        a = rng.integers(0, 1 << a_fmt.bits, (int(rng.integers(1, 3)), groups * cg, h, w))
        wc = rng.integers(0, 1 << w_fmt.bits, (groups * og, cg, *kernel))
        got = ops.conv2d(a_fmt, a, w_fmt, wc, stride, dilation, groups)
        assert got.dtype == np.int64 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, _torch_conv(a_fmt, a, w_fmt, wc, stride, dilation, groups))


def test_conv2d_of_padded_codes_is_torchs_padded_conv():
    a_fmt, w_fmt = FixedPoint(6, signed=True), Esb(5)
    rng = np.random.default_rng(5)
    a, w = rng.integers(0, 64, (2, 4, 7, 6)), rng.integers(0, 32, (4, 1, 3, 3))
    zero = int(a_fmt.encode(np.zeros(1))[0])
    got = ops.conv2d(a_fmt, ops.pad2d(a, (1, 1, 2, 2), value=zero), w_fmt, w, stride=2, groups=4)
    expected = F.conv2d(_t(a_fmt.decode(a)), _t(w_fmt.decode(w)), stride=2, padding=(1, 2), groups=4)
    np.testing.assert_array_equal(got, _np(expected))


@pytest.mark.parametrize("chunk", [1, 7, 40, 300, 10 ** 9])
@pytest.mark.parametrize("groups", [1, 2, 6])
def test_conv2d_chunks_do_not_change_the_result(monkeypatch, chunk, groups):
    a_fmt, w_fmt = FixedPoint(8, signed=False), Esb(5)
    rng = np.random.default_rng(6)
    a, w = rng.integers(0, 256, (3, 6, 9, 8)), rng.integers(0, 32, (12, 6 // groups, 3, 2))
    expected = _torch_conv(a_fmt, a, w_fmt, w, (2, 1), (1, 2), groups)
    monkeypatch.setattr(ops, "CHUNK_ELEMENTS", chunk)
    np.testing.assert_array_equal(ops.conv2d(a_fmt, a, w_fmt, w, (2, 1), (1, 2), groups), expected)


def test_conv2d_of_a_mobilenet_size_depthwise_layer():
    a_fmt, w_fmt = FixedPoint(8, signed=False), Esb(5)
    rng = np.random.default_rng(7)
    a, w = rng.integers(0, 256, (1, 32, 114, 114)), rng.integers(0, 32, (32, 1, 3, 3))
    got = ops.conv2d(a_fmt, a, w_fmt, w, groups=32)
    np.testing.assert_array_equal(got, _torch_conv(a_fmt, a, w_fmt, w, 1, 1, 32))


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_conv2d_is_exact_on_golden_int64_path(monkeypatch, groups):
    """With float64 never exact (as for sums past 2**53), golden's int64 path gives the same sums."""
    from hwq.formats import golden
    a_fmt, w_fmt = FixedPoint(8, signed=True), Esb(5)
    rng = np.random.default_rng(11)
    a, w = rng.integers(0, 256, (2, 4, 6, 7)), rng.integers(0, 32, (8, 4 // groups, 3, 3))
    monkeypatch.setattr(golden, "_FLOAT64_EXACT", 0)
    assert not golden.float64_exact(a_fmt, w_fmt, 1)
    np.testing.assert_array_equal(ops.conv2d(a_fmt, a, w_fmt, w, 1, 2, groups),
                                  _torch_conv(a_fmt, a, w_fmt, w, 1, 2, groups))


# --- pooling -------------------------------------------------------------------------------------

def _pool_cases(seed, count, dilation=True):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        kernel = [int(v) for v in rng.integers(1, 5, 2)]
        stride = None if rng.random() < 0.2 else [int(v) for v in rng.integers(1, 4, 2)]
        padding = [int(rng.integers(0, k // 2 + 1 + (rng.random() < 0.1))) for k in kernel]
        dil = [int(v) for v in rng.integers(1, 4, 2)] if dilation else [1, 1]
        shape = (int(rng.integers(1, 3)), int(rng.integers(1, 3)), *(int(v) for v in rng.integers(1, 11, 2)))
        yield rng.integers(-1000, 1000, shape), kernel, stride, padding, dil, bool(rng.random() < 0.5)


def test_max_pool2d_matches_torch():
    for x, kernel, stride, padding, dilation, ceil_mode in _pool_cases(8, 600):
        raised, expected = _torch_raises(lambda: F.max_pool2d(_t(x), kernel, stride, padding, dilation,
                                                              ceil_mode=ceil_mode))
        if raised:
            with pytest.raises(InputError):
                ops.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode)
            continue
        expected = expected.numpy()
        for pad_value in (None, int(x.min()), -5000):
            fill = np.iinfo(np.int64).min if pad_value is None else pad_value
            got = ops.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode, pad_value)
            assert got.dtype == np.int64
            np.testing.assert_array_equal(got, np.where(np.isinf(expected), fill, expected).astype(np.int64),
                                          err_msg=str((x.shape, kernel, stride, padding, dilation, ceil_mode)))


def test_max_pool2d_window_of_padding_alone_is_pad_value():
    x = np.arange(4).reshape(1, 1, 2, 2)
    assert torch.isinf(F.max_pool2d(_t(x), 2, 1, 1, 3)).all()
    assert ops.max_pool2d(x, 2, 1, 1, 3, pad_value=-7).tolist() == [[[[-7]]]]


def test_sum_pool2d_and_divisors_match_avg_pool2d():
    for x, kernel, stride, padding, _, ceil_mode in _pool_cases(9, 600, dilation=False):
        raised, expected = _torch_raises(lambda: F.avg_pool2d(_t(x), kernel, stride, padding, ceil_mode,
                                                              divisor_override=1))
        if raised:
            with pytest.raises(InputError):
                ops.sum_pool2d(x, kernel, stride, padding, ceil_mode)
            with pytest.raises(InputError):
                ops.avg_pool_divisors(x.shape[2:], kernel, stride, padding, ceil_mode)
            continue
        sums = ops.sum_pool2d(x, kernel, stride, padding, ceil_mode)
        assert sums.dtype == np.int64
        np.testing.assert_array_equal(sums, _np(expected))
        for include in (True, False):
            divisors = ops.avg_pool_divisors(x.shape[2:], kernel, stride, padding, ceil_mode, include)
            assert divisors.dtype == np.int64 and divisors.min() >= 1
            average = F.avg_pool2d(_t(x), kernel, stride, padding, ceil_mode, count_include_pad=include)
            np.testing.assert_array_equal(sums / divisors, average.numpy())


def test_adaptive_sum_pool2d_matches_adaptive_avg_pool2d():
    rng = np.random.default_rng(10)
    for _ in range(200):
        shape = (int(rng.integers(1, 3)), int(rng.integers(1, 3)), *(int(v) for v in rng.integers(1, 12, 2)))
        x = rng.integers(-1000, 1000, shape)
        out = [int(v) for v in rng.integers(1, 14, 2)]
        if rng.random() < 0.2:
            out[int(rng.integers(0, 2))] = None
        sums, counts = ops.adaptive_sum_pool2d(x, out)
        expected = F.adaptive_avg_pool2d(_t(x), out).numpy()
        assert sums.shape == expected.shape and counts.shape == expected.shape[2:]
        np.testing.assert_array_equal(sums, np.rint(expected * counts).astype(np.int64))
        np.testing.assert_allclose(sums / counts, expected, rtol=1e-15, atol=0)
        ones, _ = ops.adaptive_sum_pool2d(np.ones_like(x), out)
        np.testing.assert_array_equal(ones[0, 0], counts)
    sums, counts = ops.adaptive_sum_pool2d(np.arange(12).reshape(1, 1, 3, 4), 1)
    assert sums.tolist() == [[[[66]]]] and counts.tolist() == [[12]]


# --- errors and layering -------------------------------------------------------------------------

A8, W5 = FixedPoint(8, signed=False), Esb(5)
X = np.zeros((1, 2, 4, 4), dtype=np.int64)


@pytest.mark.parametrize("call, match", [
    (lambda: ops.pad2d(X[0], (0, 0, 0, 0)), r"\(N, C, H, W\) array, not 3-dimensional"),
    (lambda: ops.pad2d(X.astype(bool), (0, 0, 0, 0)), "must hold numbers"),
    (lambda: ops.pad2d(X, (1, 1)), r"\(top, bottom, left, right\)"),
    (lambda: ops.pad2d(X, (0, -1, 0, 0)), "padding must be at least 0, not -1"),
    (lambda: ops.pad2d(X, (0, 1.0, 0, 0)), "padding must be an integer"),
    (lambda: ops.pad2d(X, (1, 1, 1, 1), "zeros"), "pad mode must be one of constant, reflect"),
    (lambda: ops.pad2d(X, (1, 1, 1, 1), value=0.5), "pad value must be an integer"),
    (lambda: ops.pad2d(X.astype(np.uint8), (1, 1, 1, 1), value=-1), r"integer in \[0, 255\]"),
    (lambda: ops.pad2d(X, (4, 0, 0, 0), "reflect"), "reflect padding .* smaller than its size 4"),
    (lambda: ops.pad2d(X, (0, 0, 0, 5), "circular"), "circular padding .* at most its size 4"),
    (lambda: ops.conv_output_size(3, 2, 1, 0, 3), r"kernel of size 2 \(dilation 3, span 4\) is larger"),
    (lambda: ops.conv_output_size(3, 0), "kernel size must be at least 1"),
    (lambda: ops.conv_output_size(3, 1, stride=0), "stride must be at least 1"),
    (lambda: ops.pool_output_size(5, 3, padding=2), "padding 2 must be at most half the kernel size 3"),
    (lambda: ops.pool_output_size(5, 3, ceil_mode=1), "ceil_mode must be True or False"),
    (lambda: ops.pool_output_size(1, 3, dilation=2, padding=1), "larger than the padded input of size 3"),
    (lambda: ops.im2col(X, 5), "larger than the padded input"),
    (lambda: ops.im2col(X, (1, 2, 3)), r"kernel size must be an integer or a pair \(h, w\)"),
    (lambda: ops.conv2d(A8, X.astype(float), W5, np.zeros((2, 2, 1, 1), int)), "must hold integers"),
    (lambda: ops.conv2d(A8, X, W5, np.zeros((2, 2, 1), int)), "weight codes must be an .* not 3-dimensional"),
    (lambda: ops.conv2d(A8, X, W5, np.zeros((3, 1, 1, 1), int), groups=2), "groups=2 must divide both"),
    (lambda: ops.conv2d(A8, X, W5, np.zeros((2, 2, 1, 1), int), groups=2), "need 4 input channels with groups=2"),
    (lambda: ops.conv2d(A8, X, W5, np.zeros((2, 2, 1, 1), int), groups=0), "groups must be at least 1"),
    (lambda: ops.conv2d(A8, X, W5, np.zeros((2, 2, 5, 1), int)), "larger than the padded input of size 4"),
    (lambda: ops.conv2d(A8, X + 256, W5, np.zeros((2, 2, 1, 1), int)), r"must lie in \[0, 255\]"),
    (lambda: ops.conv2d(A8, X, W5, np.zeros((2, 2, 1, 1), int) + 32), r"must lie in \[0, 31\]"),
    (lambda: ops.max_pool2d(X, 2, pad_value=1), "pad_value 1 is above the input's minimum 0"),
    (lambda: ops.max_pool2d(X, 2, pad_value=0.5), "pad_value must be an int64 integer"),
    (lambda: ops.max_pool2d(X.astype(float), 2), "must hold integers"),
    (lambda: ops.max_pool2d(X, 2, padding=(0, 2)), "padding 2 must be at most half the kernel size 2"),
    (lambda: ops.sum_pool2d(X + (1 << 61), 3), "window sums of 9 values .* could overflow int64"),
    (lambda: ops.sum_pool2d(X, 5), "larger than the padded input"),
    (lambda: ops.avg_pool_divisors(4, 2), r"size must be the input's \(H, W\)"),
    (lambda: ops.avg_pool_divisors((4, 4), 2, count_include_pad=None), "count_include_pad must be True"),
    (lambda: ops.adaptive_sum_pool2d(X, 0), "output size must be at least 1"),
    (lambda: ops.adaptive_sum_pool2d(X, (1, 2, 3)), "output_size must be an integer or a pair"),
    (lambda: ops.adaptive_sum_pool2d(X[:, :, :0], 1), "needs a non-empty input"),
])
def test_bad_arguments(call, match):
    with pytest.raises(InputError, match=match):
        call()


def test_ops_import_no_torch():
    code = ("import sys, importlib.util\n"
            "spec = importlib.util.spec_from_file_location('hwq.integer.ops', sys.argv[1])\n"
            "import hwq.formats\n"
            "module = importlib.util.module_from_spec(spec)\n"
            "sys.modules[spec.name] = module\n"
            "spec.loader.exec_module(module)\n"
            "module.conv2d\n"
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))\n")
    path = ROOT / "hwq" / "integer" / "ops.py"
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, cwd=ROOT)
    subprocess.run([sys.executable, "-c", "import sys, hwq.integer.ops\nassert 'torch' not in sys.modules"],
                   check=True, cwd=ROOT)
