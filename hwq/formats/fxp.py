"""Dynamic fixed point (FxP-QNet).

A value is ``q * 2**-frac`` with ``q`` a ``bits``-bit two's-complement integer (or an unsigned one,
for post-ReLU activations). The fraction length ``frac`` is metadata per data structure (weights,
biases, activations) per layer; it may be negative or larger than ``bits``.

Encoding is ``q = saturate(round(x * 2**frac))``: the product with a power of two is exact in
float64, rounding is one of :data:`~hwq.formats.rounding.ROUNDING_MODES` (``"half_even"`` by
default) and saturation clamps to ``[-2**(bits-1), 2**(bits-1) - 1]`` (``[0, 2**bits - 1]``
unsigned). The code is ``q``'s bit pattern, ``q mod 2**bits``.

Fraction-length selection
-------------------------
:func:`frac_for_max`: the largest ``frac`` at which ``max|x|`` does not saturate. This is the
paper's ``frac = bits - IL``, ``IL = ceil(log2 max|x|) + 1`` (signed), except that it is decided
on the rounded codes, so a maximum just below a power of two that would round into saturation
gets one less fraction bit.

:func:`frac_for_mse`: among ``frac_for_max(x) + 0, 1, 2, ...`` (more fraction bits, more clipping
of the largest values), the one with the least mean squared error; ties go to fewer fraction bits.
The search tries at least ``search`` (4) more fraction bits and goes on while one of the last
``search`` was the best so far, so a range set by a few outliers is clipped as far as that lowers
the error (for activations too: the clip level is chosen by MSE, not by the maximum).

Per-channel weights (hwq extension)
-----------------------------------
:func:`calibrate_fxp` gives each output channel of a weight its own fraction length ``f_c`` (the
same search on that channel) when asked for per-channel scales: the format keeps the least,
``F``, and the channel's scale is the exact power of two ``2**(F - f_c)``. FxP-QNet allocates one
fraction length per data structure (Shawahna et al., IEEE Access 2022); per-channel powers of two
are hwq's, for BatchNorm-folded depthwise weights whose small channels would otherwise round to 0.
"""

import numpy as np

from ..errors import InputError
from .base import NumberFormat, check_int
from .calibration import CALIBRATORS, Calibration, check_options
from .metrics import sweep_scales
from .rounding import check_finite, check_rounding, round_to_int, saturate

__all__ = ["FixedPoint", "frac_for_max", "frac_for_mse", "FRAC_RANGE", "calibrate_fxp"]

#: inclusive range of fraction lengths
FRAC_RANGE = (-64, 64)
#: candidate fraction lengths per pass of the search
_WINDOW = 12


class FixedPoint(NumberFormat):
    """Fixed-point format ``q * 2**-frac``.

    Parameters
    ----------
    bits : int
        Word length, 2 to 16.
    frac : int
        Fraction length, -64 to 64.
    signed : bool
        Two's complement (``True``) or unsigned.
    rounding : str
        One of :data:`~hwq.formats.rounding.ROUNDING_MODES`.
    """

    name = "fxp"
    bit_range = (2, 16)

    def __init__(self, bits, *, frac=0, signed=True, rounding="half_even"):
        super().__init__(bits, signed=signed)
        self._frac = check_int("fxp fraction length", frac, *FRAC_RANGE)
        self._rounding = check_rounding(rounding)

    @property
    def frac(self):
        """Fraction length."""
        return self._frac

    @property
    def rounding(self):
        """Rounding mode of :meth:`encode`."""
        return self._rounding

    @property
    def lsb_exp(self):
        return -self._frac

    @property
    def q_min(self):
        """Most negative integer ``q`` (0 when unsigned)."""
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def q_max(self):
        """Largest integer ``q``."""
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    def params(self):
        return {"bits": self.bits, "frac": self.frac, "signed": self.signed,
                "rounding": self.rounding}

    def _decode(self, codes):
        if not self.signed:
            return codes
        return np.where(codes >= 1 << (self.bits - 1), codes - (1 << self.bits), codes)

    def _encode(self, x):
        x *= 2.0 ** self.frac                     # exact: a power of two, |frac| <= 64
        q = saturate(round_to_int(x, self.rounding), self.q_min, self.q_max)
        q &= (1 << self.bits) - 1
        return q


def _saturates(x_min, x_max, fmt):
    q = round_to_int(np.array([x_min, x_max]) * 2.0 ** fmt.frac, fmt.rounding)
    return bool(q[0] < fmt.q_min or q[1] > fmt.q_max)


def frac_for_max(x, bits, *, signed=True, rounding="half_even"):
    """Largest fraction length at which no value of ``x`` saturates.

    Parameters
    ----------
    x : array-like
        The tensor (NaN/Inf raise :class:`InputError`).
    bits, signed, rounding
        As for :class:`FixedPoint`.

    Returns
    -------
    int
        The fraction length; 0 for an all-zero tensor.
    """
    x = check_finite(x)
    if x.size == 0:
        raise InputError("cannot choose a fraction length for an empty tensor")
    check_int("fxp bit width", bits, *FixedPoint.bit_range)
    if not signed and x.min() < 0:
        raise InputError("an unsigned fixed-point format cannot hold negative values; use signed=True")
    x_min, x_max = float(x.min()), float(x.max())
    peak = max(abs(x_min), abs(x_max))
    if peak == 0:
        return 0
    integer_bits = int(np.frexp(peak)[1]) + (1 if signed else 0)    # peak < 2**frexp exponent
    frac = int(np.clip(bits - integer_bits, *FRAC_RANGE))
    make = lambda f: FixedPoint(bits, frac=f, signed=signed, rounding=rounding)
    while frac > FRAC_RANGE[0] and _saturates(x_min, x_max, make(frac)):
        frac -= 1
    while frac < FRAC_RANGE[1] and not _saturates(x_min, x_max, make(frac + 1)):
        frac += 1
    return frac


def frac_for_mse(x, bits, *, signed=True, rounding="half_even", search=4):
    """Fraction length with the least mean squared quantization error.

    Tries ``frac_for_max(x) + i`` for ``i = 0, 1, 2, ...``: each step halves the clip level
    (more fraction bits, more clipping of the largest values) and the step. The search goes on
    while one of the last ``search`` candidates was the best so far, so it always tries
    ``i = 0 ... search`` and follows the error down as far as clipping outliers pays (a few huge
    values over a narrow bulk can call for many more fraction bits than ``frac_for_max``); it
    stops at :data:`FRAC_RANGE`. Ties go to the smaller fraction length.

    Parameters
    ----------
    x : array-like
        The tensor (NaN/Inf raise :class:`InputError`).
    bits, signed, rounding
        As for :class:`FixedPoint`.
    search : int
        Candidates past the best before the search stops (at least 1).

    Returns
    -------
    frac : int
        The chosen fraction length.
    errors : dict of int to float
        The mean squared error of every candidate, so the choice can be inspected.
    """
    x = check_finite(x)
    fracs, errors = _frac_for_mse_rows(x.reshape(1, -1), bits, signed=signed, rounding=rounding, search=search)
    return int(fracs[0]), errors[0]


def _fake_quantize_rows(rows, bits, fracs, signed, rounding):
    """``FixedPoint(bits, frac=fracs[r], ...).fake_quantize(rows[r])`` for every row ``r``: the
    same products by powers of two (exact), rounding and saturation."""
    fmt = FixedPoint(bits, signed=signed, rounding=rounding)
    q = saturate(round_to_int(np.ldexp(rows, fracs[:, None]), rounding), fmt.q_min, fmt.q_max)
    return np.ldexp(q.astype(np.float64), -fracs[:, None])


def _frac_for_max_rows(rows, bits, signed, rounding):
    """:func:`frac_for_max` of every row of the 2-D ``rows`` (checked, finite), vectorized."""
    fmt = FixedPoint(bits, signed=signed, rounding=rounding)
    ends = np.stack([rows.min(axis=1), rows.max(axis=1)], axis=1)          # (rows, 2)
    peak = np.abs(ends).max(axis=1)
    frac = np.clip(bits - (np.frexp(peak)[1] + (1 if signed else 0)), *FRAC_RANGE)

    def saturates(f):
        q = round_to_int(np.ldexp(ends, f[:, None]), rounding)
        return (q[:, 0] < fmt.q_min) | (q[:, 1] > fmt.q_max)

    live = peak > 0
    while (down := live & (frac > FRAC_RANGE[0]) & saturates(frac)).any():
        frac = frac - down
    while (up := live & (frac < FRAC_RANGE[1]) & ~saturates(np.minimum(frac + 1, FRAC_RANGE[1]))).any():
        frac = frac + up
    return np.where(live, frac, 0).astype(np.int64)


def _row_errors(rows, bits, fracs, signed, rounding, values):
    """MSE of every row at each of its fraction lengths ``fracs`` (``(rows, k)``).

    Round-to-nearest modes: from :func:`hwq.formats.metrics.sweep_scales` (each row sorted once,
    every candidate from cumulative sums; a tie has the same error whichever way it goes, so the
    value equals encoding's up to float64 rounding of the sums). ``floor`` and ``toward_zero`` are
    not nearest-value: encoded, candidate by candidate.
    """
    if rounding.startswith("half"):
        return sweep_scales(rows, values, np.ldexp(1.0, -fracs))
    return np.stack([np.mean((_fake_quantize_rows(rows, bits, f, signed, rounding) - rows) ** 2, axis=1)
                     for f in fracs.T], axis=1)


def _frac_for_mse_rows(rows, bits, *, signed=True, rounding="half_even", search=4):
    """:func:`frac_for_mse` of every row of the 2-D float64 ``rows``, vectorized over the rows.

    :data:`_WINDOW` candidates per pass (:func:`_row_errors`), a new pass only for rows still
    searching.

    Returns
    -------
    fracs : numpy.ndarray
        The chosen fraction length per row (int64).
    errors : list of dict of int to float
        Per row, every candidate's mean squared error.
    """
    check_int("fxp bit width", bits, *FixedPoint.bit_range)
    check_rounding(rounding)
    search = check_int("fxp search", search, 1, FRAC_RANGE[1] - FRAC_RANGE[0])
    if rows.size == 0:
        raise InputError("cannot choose a fraction length for an empty tensor")
    if not signed and rows.min() < 0:
        raise InputError("an unsigned fixed-point format cannot hold negative values; use signed=True")
    start = _frac_for_max_rows(rows, bits, signed, rounding)
    values = FixedPoint(bits, signed=signed).to_real(np.arange(1 << bits))     # q at frac 0
    best = start.copy()
    best_err = np.full(len(rows), np.inf)
    errors = [{} for _ in rows]
    live = np.arange(len(rows))
    step = 0
    while len(live):
        fracs = start[live, None] + step + np.arange(_WINDOW)[None, :]           # (live, window)
        mse = _row_errors(rows[live], bits, np.minimum(fracs, FRAC_RANGE[1]), signed, rounding, values)
        going = np.ones(len(live), bool)
        for j in range(_WINDOW):                          # the candidates in order, as one search would
            f, err = fracs[:, j], mse[:, j]
            for r, fr, e in zip(live[going].tolist(), f[going].tolist(), err[going].tolist()):
                errors[r][fr] = e
            better = going & (err < best_err[live])        # strictly: ties keep the smaller frac
            best[live[better]] = f[better]
            best_err[live[better]] = err[better]
            tried = step + j + 1
            going &= ((tried <= search) | (start[live] + tried - best[live] <= search)) & \
                (start[live] + tried <= FRAC_RANGE[1])
        live = live[going]
        step += _WINDOW
    return best, errors


@CALIBRATORS.register("fxp")
def calibrate_fxp(x, bits, *, role, per_channel, options):
    """FxP-QNet's calibration: the fraction length with the least MSE (:func:`frac_for_mse`).

    Activations (and weights with ``per_channel=False``) get one fraction length per tensor, as
    FxP-QNet allocates one per data structure; the scale is 1 and the power of two lives in the
    format. Weights with ``per_channel`` get one per output channel (axis 0), each chosen by the
    same search on that channel alone: an hwq extension for BatchNorm-folded (depthwise) weights,
    whose small channels would round to 0 at the tensor's fraction length. The format keeps the
    least of them, ``F`` (the largest channel's, in practice), and channel ``c`` with fraction
    length ``f_c`` gets the exact power-of-two scale ``2**(F - f_c)``, which the hardware folds into
    its requantization multiplier; an all-zero channel gets scale 1. Signed when the tensor has
    negative values. No options.

    Returns
    -------
    Calibration
        ``candidates`` maps ``"frac=<f>"`` to that fraction length's MSE (per tensor), or, per
        channel, ``"frac=<f> (<n> channels)"`` to the MSE of the channels that chose ``f``.
    """
    options = check_options("fxp", options, bits)
    signed = bool((x < 0).any())
    if not (per_channel and role == "weight" and x.ndim >= 1):
        frac, errors = frac_for_mse(x, bits, signed=signed)
        return Calibration(FixedPoint(bits, frac=frac, signed=signed), np.ones(1), None,
                           {f"frac={f}": e for f, e in errors.items()})
    rows = x.reshape(len(x), -1)
    fracs, errors = _frac_for_mse_rows(rows, bits, signed=signed)
    live = np.abs(rows).max(axis=1) > 0
    frac = int(fracs[live].min()) if live.any() else 0
    fracs = np.where(live, fracs, frac)
    candidates = {}
    for f in np.unique(fracs).tolist():
        chosen = fracs == f
        mse = float(np.mean([errors[r][f] if live[r] else 0.0 for r in np.flatnonzero(chosen)]))
        candidates[f"frac={f} ({int(chosen.sum())} channels)"] = mse
    return Calibration(FixedPoint(bits, frac=frac, signed=signed), np.ldexp(1.0, frac - fracs), 0, candidates)
