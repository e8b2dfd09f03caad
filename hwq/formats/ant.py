"""ANT: int, power-of-two (PoT), float and flint, with the type chosen per tensor.

``n`` is the total bit width and ``B`` the magnitude width: ``B = n - 1`` for signed types,
``B = n`` for unsigned ones. int is two's complement; PoT, float and flint are sign-magnitude
(sign bit on top; ``+0`` and ``-0`` both decode to 0, and :meth:`~Ant.encode` writes ``+0``).
Integer values, before the scale ``2**exp_base`` (code = bit pattern ``c``, magnitude ``r`` its low
``B`` bits):

``int``
    ``c`` (unsigned) or its two's-complement reading (signed).
``pot``
    ``0`` for ``r = 0``, else ``2**(r - 1)``: ``{0} U {2**i : i <= 2**B - 2}``. At most 5 magnitude
    bits (2**30), beyond which no accumulator is practical (ANT itself forces wide tensors to int).
``float``
    ``E = min(3, B)`` exponent bits ``e`` over ``M = B - E`` mantissa bits ``m``, with subnormals and
    no inf/NaN: ``m`` for ``e = 0``, ``(2**M + m) << (e - 1)`` otherwise.
``flint``
    (ANT's "first-one" float-int hybrid.) Let ``t`` be the top magnitude bit, ``r'`` the low
    ``B - 1`` bits and ``z`` the leading zeros of ``r'`` within ``B - 1`` bits. ``t = 0``: the value
    is ``r'`` (the lower half of the code space is plain int). ``t = 1``: exponent
    ``e = (B - 1) + z`` and mantissa the ``k = max(0, B - 2 - z)`` bits after the first one of
    ``r'``, value ``2**e * (1 + mant / 2**k)``; ``r' = 0`` is the maximum, ``2**(2B - 2)``.
    The exponent is the top bit plus a unary (first-one) prefix, so mid-range codes keep the most
    mantissa bits. 4-bit unsigned: ``0..7, 8, 10, 12, 14, 16, 24, 32, 64``.

For the processing element every value is ``(sign, significand, shift)`` with
``value = (-1)**sign * (significand << shift)`` (:meth:`Ant.decompose`): int ``shift = 0``; PoT
``significand = 1``; float ``significand = 2**M + m``, ``shift = e - 1`` (or the subnormal
``significand = m``, ``shift = 0``); flint ``significand = 2**k + mant``, ``shift = 2z + 1``
(``significand = 1``, ``shift = 2B - 2`` for ``r' = 0``).

Encoding (ANT's reference): nearest grid value, **ties to the larger grid value** (toward
+infinity), saturation at both ends.

Type selection (:func:`select_type`; ANT's adaptive type selection by MSE, Guo et al., MICRO 2022,
as the reference ``clevercool/ANT-Quantization`` implements it in ``Quantizer.search_mse`` and
``search_adaptive_numeric_type``): for every candidate type, sweep the clip value
``alpha = max|x| * i / 100`` for ``i = 20 ... 149`` (weights per output channel, activations per
tensor) with scale ``alpha / max(grid)``, keep each channel's least-MSE ``alpha`` (the first on a
tie); the type's score is the summed per-channel MSE, and the least score wins (the earlier
candidate on a tie). Activations are thus ranged by MSE too, not by their maximum alone.

The lower end of the sweep is an hwq extension: the reference starts at ``i = 75`` (its default
``--w_low``/``--a_low``), which cuts off heavy-tailed rows whose least-MSE clip lies lower. On
EfficientNet-Lite0's weights (all 22 008 output channels), the least MSE over ``i = 1 ... 149``
of the chosen type lies below 75 for 17 % of the rows at 4 bits (down to ``i = 45``; most of the
classifier's rows in int, 9 % more MSE there with the reference's bound) and for 54 % at 3 bits
(down to ``i = 28``); at 6 to 8 bits never. The extension only adds candidates: no type's
per-channel MSE can exceed what the reference's sweep gives, and the first-on-a-tie rule is
unchanged.

Scale refinement (:func:`refine_scales`, hwq extension; :func:`calibrate_ant` applies it, not
:func:`select_type`): the sweep's candidates are 1 % of ``max|x|`` apart. After the type is chosen,
two least-squares steps (:func:`least_squares_scales`) move each channel's scale to the least
squared error of the codes it gives, keeping a step only where the error fell.

The search gives the choices of that candidate-by-candidate sweep bit for bit without encoding
the tensor 130 times per type: one histogram per channel over every candidate's rounding
thresholds yields all the sweep's MSEs from cumulative sums, each with a rigorous bound on its
rounding error, and only candidates the bounds cannot tell apart are encoded and compared
(:func:`_sweep_block`, :func:`_settle`). Channels too short to pay for such a histogram (a
depthwise 3x3 filter at 8 bits) are still swept candidate by candidate.
"""

import dataclasses

import numpy as np

from ..errors import InputError
from .base import NumberFormat, check_int, nearest_index
from .calibration import CALIBRATORS, Calibration, ChoiceOption, check_options, declare_options
from .rounding import check_finite

__all__ = ["Ant", "ANT_TYPES", "TypeChoice", "select_type", "least_squares_scales", "refine_scales", "REFINE_STEPS",
           "calibrate_ant"]

#: the ANT data types (the paper's term)
ANT_TYPES = ("int", "pot", "float", "flint")

#: most magnitude bits of a PoT type
POT_MAX_MAGNITUDE_BITS = 5


def _flint_parts(r, B):
    """(significand, shift) of flint magnitude ``r`` (B bits), as Python ints."""
    top, low = r >> (B - 1), r & ((1 << (B - 1)) - 1)
    if not top:
        return low, 0
    if low == 0:
        return 1, 2 * B - 2
    z = (B - 1) - low.bit_length()
    k = max(0, B - 2 - z)
    mant = low & ((1 << k) - 1)
    return (1 << k) + mant, 2 * z + 1


def _float_parts(r, B):
    """(significand, shift) of float magnitude ``r`` (B bits), as Python ints."""
    E = min(3, B)
    M = B - E
    e, m = r >> M, r & ((1 << M) - 1)
    if e == 0:
        return m, 0
    return (1 << M) + m, e - 1


class Ant(NumberFormat):
    """An ANT data type.

    Parameters
    ----------
    bits : int
        Total width, 3 to 8.
    type : str
        The data type: ``"int"``, ``"pot"``, ``"float"`` or ``"flint"``.
    signed : bool
        Signed (weights; activations with negatives) or unsigned (post-ReLU activations).
    exp_base : int
        Exponent of the unit: ``value = decode(code) * 2**exp_base`` (-32 to 32).
    """

    name = "ant"
    bit_range = (3, 8)

    def __init__(self, bits, *, type="flint", signed=True, exp_base=0):
        super().__init__(bits, signed=signed)
        if type not in ANT_TYPES:
            raise InputError(f"unknown ANT type {type!r}; use one of {', '.join(ANT_TYPES)}")
        self._type = type
        self._exp_base = check_int("ANT exp_base", exp_base, -32, 32)
        if type == "pot" and self.magnitude_bits > POT_MAX_MAGNITUDE_BITS:
            raise InputError(f"ANT pot supports at most {POT_MAX_MAGNITUDE_BITS} magnitude bits "
                           f"({POT_MAX_MAGNITUDE_BITS + 1} bits signed), not {self.magnitude_bits}; use int or flint")
        parts = [self._parts(code) for code in range(1 << bits)]
        self._sign = np.array([p[0] for p in parts], dtype=np.int64)
        self._significand = np.array([p[1] for p in parts], dtype=np.int64)
        self._shift = np.array([p[2] for p in parts], dtype=np.int64)
        self._table = np.where(self._sign == 1, -1, 1) * (self._significand << self._shift)
        self._grid, first = np.unique(self._table, return_index=True)
        self._grid_codes = first.astype(np.int64)        # lowest code of each value: +0, not -0

    #: old parameter names, for :func:`hwq.formats.get_format`'s error message
    renamed_params = {"kind": "type"}

    @property
    def type(self):
        """The data type: ``"int"``, ``"pot"``, ``"float"`` or ``"flint"``."""
        return self._type

    @property
    def exp_base(self):
        """Exponent of the unit."""
        return self._exp_base

    @property
    def lsb_exp(self):
        return self._exp_base

    def params(self):
        return {"bits": self.bits, "type": self.type, "signed": self.signed, "exp_base": self.exp_base}

    def _parts(self, code):
        """``(sign, significand, shift)`` of one code, as Python ints."""
        B = self.magnitude_bits
        if self.type == "int":
            if self.signed and code >> B:
                return 1, (1 << self.bits) - code, 0
            return 0, code, 0
        sign, r = (code >> B, code & ((1 << B) - 1)) if self.signed else (0, code)
        if self.type == "pot":
            return sign, (1 if r else 0), max(r - 1, 0)
        significand, shift = (_float_parts if self.type == "float" else _flint_parts)(r, B)
        return sign, significand, shift

    def decompose(self, codes):
        """``(sign, significand, shift)`` arrays with
        ``decode(code) = (-1)**sign * (significand << shift)``.

        For the two's-complement most negative int code, ``significand = 2**(bits - 1)``.
        """
        codes = self._codes(codes)
        return self._sign[codes], self._significand[codes], self._shift[codes]

    def _codes(self, codes):
        codes = np.asarray(codes)
        self.decode(codes)                                 # validates
        return codes.astype(np.int64)

    def _decode(self, codes):
        return self._table[codes]

    def _encode(self, x):
        x *= 2.0 ** -self._exp_base
        return nearest_index(self._grid, x, ties="up", labels=self._grid_codes)


@dataclasses.dataclass(frozen=True)
class TypeChoice:
    """Result of :func:`select_type`.

    Attributes
    ----------
    format : Ant
        The chosen type.
    scale : numpy.ndarray
        Per-channel scales of the chosen type (shape ``(channels,)``; one entry per tensor).
    mse : dict of str to float
        Every candidate type's summed per-channel mean squared error, so the choice can be read
        (see :func:`select_type` for its accuracy).
    """

    format: Ant
    scale: np.ndarray
    mse: dict


#: ANT's clip sweep [ref]: ``alpha = max|x| * i / 100`` for each ``i`` here. The upper bound is the
#: reference's (``--w_up``/``--a_up`` 150, excluded); the lower one is hwq's 20 where the reference
#: has 75 (``--w_low``/``--a_low``): heavy-tailed rows have their least MSE below ``0.75 * max|x|``
#: (module docstring). The search's cost grows with the number of candidates (130, 75 before).
SWEEP = np.arange(20, 150)

_UNIT_ROUNDOFF = np.finfo(np.float64).eps / 2
#: most elements one histogram bin sums before partial histograms are added (error bound)
_PIECE = 1 << 14
#: a block of rows holds at most this many histogram bins (complex: a count and a sum; 4 MiB) and
#: elements: the arrays of a block stay in a core's cache
_BLOCK_BINS = 1 << 18
_BLOCK_ELEMENTS = 1 << 16
#: elements of one batch of exact re-evaluations
_CHECK_ELEMENTS = 1 << 22
#: a row's reported MSE is at most this far, relatively, from the exhaustive search's
_REPORT_RTOL = 1e-4
#: most buckets of a :class:`_Thresholds` rank table (a small table stays in cache)
_MAX_BUCKETS = 1 << 15
#: time to encode one element for one candidate, in steps of a row's histogram work: rows too
#: short to fill a histogram over every threshold are searched candidate by candidate
_ENCODE_COST = 20


class _Chain:
    """Rounding thresholds of one chain of magnitudes over :data:`SWEEP`, in units of a row's max|x|.

    A magnitude ``u`` (of ``|x| / max|x|``) rounds, for sweep candidate ``i``, to
    ``mags[0] + sum(step[k] for k if u >= threshold[i, k])`` grid units, with
    ``threshold[i, k] = midpoint[k] * unit[i]``: the nearest value, ties up (ANT's encoder [ref]).

    Parameters
    ----------
    mags : array-like
        Increasing magnitudes, integer grid units.
    unit : numpy.ndarray
        One grid unit per sweep candidate, in units of max|x|.
    """

    def __init__(self, mags, unit):
        mags = np.asarray(mags, dtype=np.float64)
        self.threshold = ((mags[:-1] + mags[1:]) / 2)[None, :] * unit[:, None]     # (len(SWEEP), K)
        # weights of the (count, sum) of the u at or above each threshold in a row's
        # sum((u - unit * g)**2) - sum(u**2) = unit**2 * sum(g**2) - 2 * unit * sum(u * g)
        self.weights = np.empty((len(unit), 2 * (len(mags) - 1)))
        self.weights[:, 0::2] = unit[:, None] ** 2 * np.diff(mags * mags)
        self.weights[:, 1::2] = -2 * unit[:, None] * np.diff(mags)


class _Plan:
    """One candidate type's thresholds over :data:`SWEEP`, sorted out by sign.

    Magnitudes round the same way on both sides of zero except for a signed type's extra
    levels on one side (two's-complement int's ``-2**(n-1)``): the levels both sides share
    form :attr:`common`; each side's extra ones form a chain of :attr:`extra`, starting at the
    top shared level. A sweep candidate's scale puts ``max(grid)`` at the clip value
    ``max|x| * i / 100`` [ref], so one grid unit is ``i / 100 / max(grid)`` times ``max|x|``.

    Parameters
    ----------
    fmt : Ant
        The type (``exp_base`` 0).
    """

    def __init__(self, fmt):
        grid = fmt._grid.astype(np.float64)               # distinct integer values (exp_base 0)
        self.fmt = fmt
        self.unit = (SWEEP / 100) / fmt.max_value          # one grid unit, in units of max|x|
        self.max_step = float(np.diff(grid).max())
        pos = grid[grid >= 0]
        neg = -grid[grid <= 0][::-1] if fmt.signed else pos
        n = 0
        while n < min(len(pos), len(neg)) and pos[n] == neg[n]:
            n += 1
        self.common = _Chain(pos[:n], self.unit)
        self.steps = 2 * len(grid)                         # terms of a row's sum over steps, at most
        self.extra = []                                    # (side, chain, its thresholds, columns)
        for side, mags in ((1, pos), (-1, neg)):
            if len(mags) > n:
                chain = _Chain(mags[n - 1:], self.unit)
                thresholds = _Thresholds(chain.threshold.ravel())
                if len(thresholds):
                    self.extra.append((side, chain, thresholds, thresholds.columns(chain.threshold)))

    @property
    def key(self):
        """Types with equal keys quantize every tensor identically."""
        return self.fmt.signed, self.fmt._grid.tobytes()


class _Thresholds:
    """The distinct thresholds ``<= 1`` of some chains (larger ones round nothing, as
    ``|x| <= max|x|``), with an exact rank that needs no full binary search.

    The rank of ``u`` (the number of thresholds ``<= u``) is that of ``u``'s bucket -- the top
    bits of its float64 pattern, which order like the values -- plus a short branch-free binary
    search among the few thresholds in the bucket (at most :data:`_MAX_BUCKETS` buckets).

    Parameters
    ----------
    values : numpy.ndarray
        Thresholds, in units of max|x|, in any order.
    """

    def __init__(self, values):
        self.values = np.unique(values[values <= 1])
        keys = self.values.view(np.int64)
        one = int(np.float64(1.0).view(np.int64))
        self._shift, self._base, self._start, self._window = 63, 0, np.zeros(1, dtype=np.intp), 1
        for bits in range(0, 53):                          # mantissa bits of a bucket key
            shift = 52 - bits
            base = int(keys[0] >> shift) if len(keys) else 0
            n_buckets = (one >> shift) - base + 1
            if n_buckets > _MAX_BUCKETS:
                break
            start = np.searchsorted((keys >> shift) - base, np.arange(n_buckets))
            window = int(np.diff(np.append(start, len(keys))).max(initial=0))
            if window < self._window or bits == 0:
                self._shift, self._base, self._start, self._window = shift, base, start, max(window, 1)
            if window <= 1:
                break
        self._steps = [1 << j for j in reversed(range(int(self._window).bit_length()))]
        self._padded = np.concatenate([self.values, np.full(2 * self._window, np.inf)])

    def __len__(self):
        return len(self.values)

    def columns(self, values):
        """Column of each of ``values`` in a :func:`_suffix_table`."""
        return np.where(values <= 1, len(self.values) - np.searchsorted(self.values, values), 0)

    def rank(self, u):
        """Number of thresholds ``<= u`` for each ``u`` in ``[0, 1]`` (a 1-D float64 array)."""
        bucket = (np.ascontiguousarray(u).view(np.int64) >> self._shift) - self._base
        np.clip(bucket, 0, len(self._start) - 1, out=bucket)
        rank = self._start[bucket]
        for step in self._steps:                           # rank + step - 1 stays in the window
            np.add(rank, step, out=rank, where=self._padded[rank + (step - 1)] <= u)
        return rank


class _Scratch:
    """Arrays reused from one block of rows to the next: fresh large arrays cost a page fault per
    4 KiB on first touch, more than the arithmetic done in them."""

    def __init__(self):
        self._arrays = {}

    def get(self, name, shape, dtype=np.float64, zeros=False):
        """An array ``name`` of ``shape`` and ``dtype``, the same memory on every such call:
        uninitialised, or with ``zeros`` zero when new (and as the caller leaves it)."""
        key = name, shape, np.dtype(dtype)
        if key not in self._arrays:
            self._arrays[key] = (np.zeros if zeros else np.empty)(shape, dtype=dtype)
        return self._arrays[key]


def _suffix_table(thresholds, u, col, n_cols, scratch=None, name="table"):
    """Count and sum of the magnitudes ``u`` at or above each threshold, per column.

    A histogram of the ``u`` over the thresholds, then its cumulative sum from the top threshold
    down.

    Parameters
    ----------
    thresholds : _Thresholds
        The thresholds.
    u : numpy.ndarray
        Magnitudes in ``[0, 1]`` (1-D).
    col : numpy.ndarray
        Each ``u``'s column (a row of the result).
    n_cols : int
        Number of columns.
    scratch : _Scratch, optional
        Memory to reuse; the result then lives in it until the next call with that ``name``.
    name : str
        Name of the result in ``scratch``.

    Returns
    -------
    numpy.ndarray
        Complex, ``(n_cols, len(thresholds) + 2)``, ``count + 1j * sum``: entry
        ``len(thresholds) - j`` covers ``u >= thresholds.values[j]``, entry 0 is 0 and the last
        entry covers every ``u``.
    """
    scratch = scratch or _Scratch()
    nb = len(thresholds) + 1
    flat = col * nb + (len(thresholds) - thresholds.rank(u))           # 0: above every threshold
    hist = scratch.get(name + " histogram", (n_cols * nb,), np.complex128, zeros=True)
    np.add.at(hist, flat, u * 1j + 1)
    table = scratch.get(name, (n_cols, nb + 1), np.complex128)
    table[:, 0] = 0
    np.cumsum(hist.reshape(n_cols, nb), axis=1, out=table[:, 1:])
    hist[flat] = 0                                        # only the bins used: zero again
    return table


def _chain_sums(table, cols, chain, scratch=None, name="found"):
    """A chain's part of each row's sum of squared errors beyond ``sum(u**2)``, per candidate.

    Parameters
    ----------
    table : numpy.ndarray
        A :func:`_suffix_table`.
    cols : numpy.ndarray
        The columns of the chain's thresholds in it, ``(len(SWEEP), K)``.
    chain : _Chain
        The chain.
    scratch : _Scratch, optional
        Memory to reuse.
    name : str
        Name of the gathered table entries in ``scratch``.

    Returns
    -------
    numpy.ndarray
        ``unit**2 * sum(g**2) - 2 * unit * sum(u * g)`` over the chain's steps,
        ``(rows, len(SWEEP))``.
    """
    shape = (len(table),) + cols.shape
    found = (scratch or _Scratch()).get(name, shape, np.complex128)          # (rows, len(SWEEP), K)
    np.take(table, cols, axis=1, out=found, mode="clip")
    # einsum, not a matrix product: BLAS threads such small, thin products, and is then slower
    return np.einsum("rik,ik->ri", found.view(np.float64), chain.weights)


def _sweep_block(x, plans, thresholds, cols, scratch=None):
    """Every plan's MSE over :data:`SWEEP` for each row of the 2-D block ``x``, with error bounds.

    ANT's criterion is the MSE of each candidate scale (Guo et al., MICRO 2022; reference
    ``Quantizer.mse_loss``). Expanding the square, a row's sum of squared errors in units of
    ``max|x|**2`` is ``sum(u**2) - 2 * unit * sum(u * g) + unit**2 * sum(g**2)``, with
    ``u = |x| / max|x|``, ``unit`` the candidate's grid unit and ``g`` the grid magnitude ``u``
    rounds to. As ``g = sum(step[k] * (u >= threshold[k]))`` (:class:`_Chain`), ``sum(u * g)`` and
    ``sum(g**2)`` are sums over thresholds of a step times the sum, or the count, of the ``u`` at
    or above the threshold: suffix sums of one histogram per row over every candidate's
    thresholds (:func:`_suffix_table`), where the exhaustive search encodes the row once per
    candidate.

    The bound adds, relative to ``sum(u**2) + 2 * unit * sum(u * g) + unit**2 * sum(g**2)``, the
    rounding of sums of non-negative terms, at most ``(n - 1) * u_r`` for ``n`` terms (Higham,
    *Accuracy and Stability of Numerical Algorithms*, 2nd ed., sec. 4.2), here and in the
    exhaustive search, with a factor 4 to spare; and elements within 16 roundings of a threshold,
    which the two searches may round to either neighbour: the squared error of such an element
    changes by ``2 * unit * step * |u - threshold|`` at most.

    Parameters
    ----------
    x : numpy.ndarray
        Rows (2-D float64).
    plans : list of _Plan
        The candidate types.
    thresholds : _Thresholds
        Every plan's common thresholds.
    cols : list of numpy.ndarray
        Per plan, the columns of its thresholds in a :func:`_suffix_table` of ``thresholds``.
    scratch : _Scratch, optional
        Reused memory.

    Returns
    -------
    list of (numpy.ndarray, numpy.ndarray)
        Per plan, the MSE and the bound on its distance to the MSE the exhaustive search
        computes, each ``(rows, len(SWEEP))``.
    """
    n_rows, n = x.shape
    peak = np.abs(x).max(axis=1)
    u = np.abs(x)
    u /= np.where(peak > 0, peak, 1.0)[:, None]          # in [0, 1]
    sum_sq = np.sum(u * u, axis=1)
    piece = min(n, _PIECE)
    group = piece * max(1, min(_BLOCK_BINS // (n_rows * (len(thresholds) + 2)),        # columns
                               _BLOCK_ELEMENTS // (n_rows * piece)))                     # per pass
    table = None
    for lo in range(0, n, group):                        # pieces of <= piece columns of each row
        part = u[:, lo:lo + group]
        k = -(-part.shape[1] // piece)
        if k * piece > part.shape[1]:                    # zeros round to 0: padding changes no sum
            part = np.concatenate([part, np.zeros((n_rows, k * piece - part.shape[1]))], axis=1)
        part = part.reshape(-1)
        found = _suffix_table(thresholds, part, np.arange(n_rows * k).repeat(piece), n_rows * k, scratch)
        if k > 1:
            found = found.reshape(n_rows, k, -1).sum(axis=1)
        if table is not None:
            table += found
        else:                                            # the next pass reuses the scratch memory
            table = found.copy() if k == 1 and lo + group < n else found
    total = table[:, -1:].imag                           # sum(u)
    factor = (peak * peak / n)[:, None]
    results = []
    for plan, plan_cols in zip(plans, cols):
        sse = sum_sq[:, None] + _chain_sums(table, plan_cols, plan.common, scratch)
        for side, chain, extra, extra_cols in plan.extra:
            r, j = np.nonzero(((x > 0) if side > 0 else (x < 0)) & (u >= extra.values[0]))
            extra_table = _suffix_table(extra, u[r, j], r, n_rows, scratch, "extra table")
            sse += _chain_sums(extra_table, extra_cols, chain, scratch, "extra found")
        # rounding error of every term, relative to the sum of the terms' magnitudes: histogram
        # bins (<= piece terms), pieces, cumulative sums, steps, and the exhaustive search's own
        terms = piece + -(-n // piece) + len(thresholds) + plan.steps + 2 * np.log2(max(n, 2)) + 64
        # the terms' magnitudes: sum(u**2) + 2 * unit * sum(u * g) + unit**2 * sum(g**2), where
        # unit * g <= u + half, half the widest step
        half = plan.unit * plan.max_step / 2
        size = 4 * sum_sq[:, None] + 4 * half * total + n * half ** 2
        # an element within 16 roundings of a threshold may round either way: its squared error
        # then differs by at most 2 * unit * step * |u - threshold|
        bound = 4 * terms * _UNIT_ROUNDOFF * size + 32 * _UNIT_ROUNDOFF * plan.unit * plan.max_step * total
        results.append((sse * factor, bound * factor))
    return results


def _exact_mse(rows, fmt, row, i, peak):
    """MSE of sweep candidate ``SWEEP[i[k]]`` on ``rows[row[k]]`` for every ``k``, by encoding.

    This is the exhaustive search's arithmetic, operation for operation (ANT's reference,
    candidate by candidate: scale ``max|x| * i / 100 / max(grid)``, or 1 for an all-zero row),
    so it gives the exhaustive search's values bit for bit.

    Parameters
    ----------
    rows : numpy.ndarray
        The rows (2-D).
    fmt : Ant
        The type.
    row, i : numpy.ndarray
        Row and index into :data:`SWEEP` of each evaluation.
    peak : numpy.ndarray
        ``max|x|`` per row.

    Returns
    -------
    numpy.ndarray
        One MSE per evaluation.
    """
    out = np.empty(len(row))
    batch = max(1, _CHECK_ELEMENTS // rows.shape[1])
    for start in range(0, len(row), batch):
        r, k = row[start:start + batch], i[start:start + batch]
        x = rows[r]
        scale = np.where(peak[r] > 0, peak[r] * (SWEEP[k] / 100) / fmt.max_value, 1.0)[:, None]
        q = fmt.to_real(fmt._encode(x / scale), 1.0) * scale
        out[start:start + batch] = np.mean((q - x) ** 2, axis=1)
    return out


def _settle(rows, fmt, peak, mse, bound):
    """Per row, the sweep index the exhaustive search picks: the one candidate whose MSE interval
    can hold the least MSE, else the first least exact MSE among those that can.

    A row's reported MSE is within :data:`_REPORT_RTOL` of the exhaustive search's: a row whose
    bound is wider than that has its chosen candidate encoded too.

    Parameters
    ----------
    rows : numpy.ndarray
        The rows (2-D).
    fmt : Ant
        The type.
    peak : numpy.ndarray
        ``max|x|`` per row.
    mse, bound : numpy.ndarray
        From :func:`_sweep_block`, ``(rows, len(SWEEP))``.

    Returns
    -------
    best : numpy.ndarray
        Index into :data:`SWEEP` per row.
    best_mse : numpy.ndarray
        Its MSE (exact for re-evaluated rows).
    best_bound : numpy.ndarray
        Bound on ``best_mse``'s error (0 where exact).
    """
    everyone = np.arange(len(rows))
    zero = peak == 0                                       # every candidate: scale 1, MSE 0
    possible = mse - bound <= (mse + bound).min(axis=1, keepdims=True)
    possible[zero] = False
    possible[zero, 0] = True
    best = possible.argmax(axis=1)
    best_mse = np.where(zero, 0.0, mse[everyone, best])
    best_bound = np.where(zero, 0.0, bound[everyone, best])
    unsure = np.flatnonzero(possible.sum(axis=1) > 1)
    if len(unsure):
        r, i = np.nonzero(possible[unsure])
        r = unsure[r]
        exact = _exact_mse(rows, fmt, r, i, peak)
        order = np.lexsort((i, exact, r))                  # per row: least MSE, then first
        first = order[np.r_[True, r[order][1:] != r[order][:-1]]]
        best[r[first]] = i[first]
        best_mse[r[first]] = exact[first]
        best_bound[r[first]] = 0.0
    vague = np.flatnonzero(best_bound > _REPORT_RTOL * best_mse)    # e.g. an MSE of 0 (or below)
    if len(vague):
        best_mse[vague] = _exact_mse(rows, fmt, vague, best[vague], peak)
        best_bound[vague] = 0.0
    return best, best_mse, best_bound


def _sweep_exhaustive(rows, fmt, peak):
    """ANT's reference search for short rows: every candidate of :data:`SWEEP` encoded.

    Parameters
    ----------
    rows : numpy.ndarray
        The rows (2-D).
    fmt : Ant
        The type.
    peak : numpy.ndarray
        ``max|x|`` per row.

    Returns
    -------
    tuple of numpy.ndarray
        As :func:`_settle`: per row the first least-MSE index into :data:`SWEEP`, its MSE, and
        0 (the MSEs are exact).
    """
    best, best_mse = np.zeros(len(rows), dtype=np.intp), np.full(len(rows), np.inf)
    batch = max(1, _CHECK_ELEMENTS // rows.shape[1])
    for lo in range(0, len(rows), batch):
        x, top = rows[lo:lo + batch], peak[lo:lo + batch]
        for k, i in enumerate(SWEEP):                      # as _exact_mse, for a whole batch
            scale = np.where(top > 0, top * (i / 100) / fmt.max_value, 1.0)[:, None]
            mse = np.mean((fmt.to_real(fmt._encode(x / scale), 1.0) * scale - x) ** 2, axis=1)
            better = np.flatnonzero(mse < best_mse[lo:lo + batch])
            best[lo + better], best_mse[lo + better] = k, mse[better]
    return best, best_mse, np.zeros(len(rows))


def _sweep(rows, plans, peak):
    """Search :data:`SWEEP` for every plan and row.

    Blocks of rows go to :func:`_sweep_block` (a block's arrays fit in a core's cache), then
    :func:`_settle` picks each row's candidate; rows too short to pay for a histogram over
    every threshold go to :func:`_sweep_exhaustive`. One thread: numpy's cumulative sums hold
    the GIL here, and on a busy machine threads were slower, not faster.

    Parameters
    ----------
    rows : numpy.ndarray
        The rows (2-D, C-contiguous).
    plans : list of _Plan
        The candidate types.
    peak : numpy.ndarray
        ``max|x|`` per row.

    Returns
    -------
    list of tuple
        Per plan, :func:`_settle`'s ``(best, best_mse, best_bound)``.
    """
    n_rows, n = rows.shape
    thresholds = _Thresholds(np.concatenate([p.common.threshold.ravel() for p in plans]))
    per_row = len(thresholds) + sum(p.common.threshold.size for p in plans)        # histogram work
    if n * len(SWEEP) * len(plans) * _ENCODE_COST < per_row:
        return [_sweep_exhaustive(rows, p.fmt, peak) for p in plans]
    cols = [thresholds.columns(p.common.threshold) for p in plans]
    block = max(1, min(_BLOCK_BINS // (-(-n // _PIECE) * (len(thresholds) + 2)), _BLOCK_ELEMENTS // n))
    mse = [np.empty((n_rows, len(SWEEP))) for _ in plans]
    bound = [np.empty((n_rows, len(SWEEP))) for _ in plans]
    scratch = _Scratch()
    for lo in range(0, n_rows, block):
        for k, (m, b) in enumerate(_sweep_block(rows[lo:lo + block], plans, thresholds, cols, scratch)):
            mse[k][lo:lo + block] = m
            bound[k][lo:lo + block] = b
    return [_settle(rows, p.fmt, peak, m, b) for p, m, b in zip(plans, mse, bound)]


def select_type(x, bits, *, types=("int", "flint", "pot"), signed=None, channel_axis=None):
    """Choose the ANT type with the least quantization error for tensor ``x``.

    ANT's adaptive type selection (Guo et al., MICRO 2022): every candidate type is fitted to the
    tensor and the one with the least mean squared error wins. The fit is the reference's clip
    sweep (:data:`SWEEP`; ``clevercool/ANT-Quantization``, ``Quantizer.search_mse``): scale
    ``max|x| * i / 100 / max(grid)`` for ``i = 20 ... 149`` (the reference starts at 75; hwq
    widens the sweep downward for heavy-tailed rows), per row, the first least MSE kept; a type's
    score is the sum of its rows' MSEs (``search_adaptive_numeric_type``), the least score wins and
    ties go to the earlier candidate.

    The search does not re-encode the tensor for each of the sweep's 130 scales: one histogram
    per row over every candidate's rounding thresholds gives each scale's MSE from suffix sums
    (:func:`_sweep_block`), with a bound on its rounding error; where the bounds cannot separate
    a row's best scale -- or the best type -- from another, those candidates are encoded and
    compared exactly (:func:`_settle`). The chosen type and scales are therefore those of the
    exhaustive search, bit for bit. The reported MSEs are within a relative ``1e-4`` of the
    exhaustive search's (:data:`_REPORT_RTOL`; about ``1e-9`` in practice) and equal to them
    where candidates were encoded.

    Parameters
    ----------
    x : array-like
        The tensor (NaN/Inf raise :class:`InputError`).
    bits : int
        Total width.
    types : sequence of str
        Candidate types; a PoT candidate too wide for ``bits`` is left out.
    signed : bool or None
        ``None``: signed when ``x`` has negative values (ANT's rule for activations).
    channel_axis : int or None
        Axis of output channels for per-channel scales (weights: 0), or ``None`` for one scale.

    Returns
    -------
    TypeChoice

    Raises
    ------
    InputError
        For NaN/Inf or an empty tensor, negative values with ``signed=False``, an unknown type, a
        width outside 3 to 8 bits, or no candidate that fits the width (only PoT, 7 or 8 bits).
    """
    x = check_finite(x, "tensor")
    if x.size == 0:
        raise InputError("cannot choose an ANT type for an empty tensor")
    if signed is None:
        signed = bool((x < 0).any())
    elif not signed and (x < 0).any():
        raise InputError("an unsigned ANT type cannot hold negative values; use signed=True")
    rows = np.moveaxis(x, channel_axis, 0).reshape(x.shape[channel_axis], -1) if channel_axis is not None \
        else x.reshape(1, -1)
    rows = np.ascontiguousarray(rows)
    peak = np.abs(rows).max(axis=1)
    plans = {}
    for name in dict.fromkeys(types):
        if name not in ANT_TYPES:
            raise InputError(f"unknown ANT type {name!r}; use one of {', '.join(ANT_TYPES)}")
        try:
            plans[name] = _Plan(Ant(bits, type=name, signed=signed))
        except InputError:
            if name == "pot":
                continue
            raise
    if not plans:
        raise InputError(f"no ANT candidate type fits {bits} bits: PoT holds at most "
                         f"{POT_MAX_MAGNITUDE_BITS} magnitude bits; add int or flint to the types")
    distinct = {p.key: p for p in reversed(plans.values())}          # equal grids: one search
    found = dict(zip(distinct, _sweep(rows, list(distinct.values()), peak)))
    order = list(plans)
    best, score, error = {}, {}, {}
    for name, plan in plans.items():
        best[name], row_mse, row_bound = found[plan.key]
        score[name] = float(row_mse.sum())
        error[name] = float(row_bound.sum()) + 2 * (len(rows) + 8) * _UNIT_ROUNDOFF * score[name]
    winner = min(order, key=lambda k: (score[k], order.index(k)))
    close = [k for k in order if score[k] - error[k] <= score[winner] + error[winner]]
    if len({plans[k].key for k in close}) > 1:               # scores too near for their bounds
        exact = {}
        for name in close:
            key = plans[name].key
            if key not in exact:
                exact[key] = float(_exact_mse(rows, plans[name].fmt, np.arange(len(rows)), best[name], peak).sum())
            score[name] = exact[key]
        winner = min(close, key=lambda k: (score[k], order.index(k)))
    fmt = plans[winner].fmt
    scale = np.where(peak > 0, peak * (SWEEP[best[winner]] / 100) / fmt.max_value, 1.0)
    return TypeChoice(fmt, scale, score)


#: least-squares steps of :func:`refine_scales` after the sweep (hwq extension)
REFINE_STEPS = 2


def least_squares_scales(rows, values, scale, steps=REFINE_STEPS):
    """Refine one scale per row of ``rows`` against a value set by least squares, never raising a
    row's error.

    Each step takes, per row, the values its current scale ``s`` rounds to (nearest value, ties to
    the larger, saturation at both ends: ANT's and UNIQ's encoders, by value) and the scale that
    minimises the squared error of exactly those values, ``s' = sum(x * v) / sum(v * v)`` -- the
    centroid condition of Lloyd's algorithm, for one scale. Re-rounding at ``s'`` can only lower
    the error further (each value then goes to its nearest level), so in exact arithmetic every
    step lowers the error or leaves it; a step's scale is kept only where the computed error fell.

    Parameters
    ----------
    rows : numpy.ndarray
        2-D float64, one row per scale.
    values : numpy.ndarray
        The value set, ascending and distinct (float64; a midpoint of two of them must be exact,
        as it is for the dyadic values of the formats).
    scale : numpy.ndarray
        One positive scale per row.
    steps : int
        Least-squares steps (each rounds the rows once more).

    Returns
    -------
    scale : numpy.ndarray
        The refined scales, positive.
    mse : numpy.ndarray
        Each row's mean squared error ``mean((s * v - x)**2)`` with its scale, from the sums
        ``sum(x**2) - 2 s sum(x v) + s**2 sum(v**2)`` (relative error about ``1e-16`` times
        ``sum(x**2)`` over the error).
    """
    scale = np.array(scale, dtype=np.float64).ravel()
    mse = np.empty(len(rows))
    midpoints = (values[:-1] + values[1:]) / 2
    n = rows.shape[1]
    batch = max(1, _CHECK_ELEMENTS // max(n, 1))
    for lo in range(0, len(rows), batch):
        w, s = rows[lo:lo + batch], scale[lo:lo + batch]
        sum_sq = np.einsum("ij,ij->i", w, w)

        def fit(s):
            """Each row's squared error at scale s and the sums of its least-squares scale."""
            # a value on a midpoint goes above it: ties to the larger value
            v = values[np.searchsorted(midpoints, w / s[:, None], side="right")]
            num, den = np.einsum("ij,ij->i", w, v), np.einsum("ij,ij->i", v, v)
            return np.maximum(sum_sq - 2 * s * num + s * s * den, 0.0) / n, num, den

        best_err, num, den = fit(s)
        best_s = s
        for _ in range(steps):
            ok = (num > 0) & (den > 0)                    # least squares for these values
            s = np.where(ok, num / np.where(ok, den, 1.0), s)
            s = np.where(np.isfinite(s) & (s > 0), s, best_s)
            err, num, den = fit(s)
            better = err < best_err                       # exact arithmetic: never worse
            best_s, best_err = np.where(better, s, best_s), np.where(better, err, best_err)
        scale[lo:lo + batch], mse[lo:lo + batch] = best_s, best_err
    return scale, mse


def refine_scales(x, fmt, scale, *, channel_axis=None, steps=REFINE_STEPS):
    """Refine the per-channel scales of type ``fmt`` by least squares (hwq extension; not ANT's).

    The sweep (:data:`SWEEP`) tries clip values 1 % of ``max|x|`` apart; between two of them a
    row's error can still fall. :func:`least_squares_scales` moves each row's scale to the least
    squares fit of the codes it gives and keeps the move only where the row's mean squared error
    went down: no row's error can exceed the sweep's.

    Parameters
    ----------
    x : array-like
        The tensor.
    fmt : Ant
        The type.
    scale : numpy.ndarray
        Per-channel scales (shape ``(channels,)``; one entry per tensor), positive.
    channel_axis : int or None
        Axis of the channels, or ``None`` for one scale.
    steps : int
        Least-squares steps (each encodes the tensor once).

    Returns
    -------
    scale : numpy.ndarray
        The refined scales, float64, positive.
    mse : numpy.ndarray
        Each row's mean squared error with its scale (as :func:`least_squares_scales`).
    """
    x = np.asarray(x, dtype=np.float64)
    rows = np.moveaxis(x, channel_axis, 0).reshape(x.shape[channel_axis], -1) if channel_axis is not None \
        else x.reshape(1, -1)
    values = np.ldexp(fmt._grid.astype(np.float64), fmt.exp_base)
    # a row's error does not depend on the order of its elements: sorted, the rounding's binary
    # searches run several times faster
    return least_squares_scales(np.sort(rows, axis=1), values, scale, steps)


@CALIBRATORS.register("ant")
@declare_options(ChoiceOption("types", ANT_TYPES, many=True, doc="candidate types (default int, flint, pot)"))
def calibrate_ant(x, bits, *, role, per_channel, options):
    """ANT's calibration: :func:`select_type` over int, flint and PoT (option ``types``), then the
    winner's scales refined by :func:`refine_scales` (hwq extension).

    Per output channel for weights (``per_channel``), per tensor for activations, as ANT's
    reference does; an activation is signed when its data has negative values (a residual
    stream), unsigned otherwise (a ReLU output). Weights and activations alike get the range of
    least MSE in the sweep ``0.20 ... 1.49 * max|x|``, not ``max|x|`` itself (the reference's sweep
    starts at ``0.75``; hwq's extension reaches the clip heavy-tailed rows want), and then the
    least-squares refinement of that range, which never raises a channel's error.

    Returns
    -------
    Calibration
        ``candidates`` maps each type tried to its summed per-channel MSE: the sweep's, and for
        the chosen type the refined scales'.
    """
    options = check_options("ant", options, bits)
    types = options.get("types", ("int", "flint", "pot"))
    axis = 0 if per_channel and role == "weight" else None
    choice = select_type(x, bits, types=types, channel_axis=axis)
    scale, mse = refine_scales(x, choice.format, choice.scale, channel_axis=axis)
    candidates = dict(choice.mse)
    candidates[choice.format.type] = float(mse.sum())
    return Calibration(choice.format, scale, axis, candidates)
