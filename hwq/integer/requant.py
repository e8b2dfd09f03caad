"""Requantization: an exact integer value times a multiplier, right-shifted, encoded once.

Every op that produces a new tensor (a layer, a residual add, an average pool) ends the same
way (docs/integer-semantics.md, "Requantization"): an exact integer *numerator* ``n`` (for a
layer, ``(acc + bias) * M``) stands for the rational value ``n / 2**S`` in integer units of the
output format, and the output code is that format's own encoder applied to that exact value,
then clamped. Nothing is rounded before the encoder.

The encoder is a sorted table of decision thresholds (:class:`EncoderTable`), derived from the
format's golden encoder, so hardware can hold it: a threshold ``t`` (a multiple of 1/2 in
integer units) and a tie flag saying whether the value ``t`` itself goes up. With the doubled
value ``2n`` shifted right by ``S`` (the quotient ``q``) and the OR of the bits shifted out (the
sticky bit), ``2n / 2**S >= 2t`` is ``q >= 2t`` and ``2n / 2**S > 2t`` is
``q > 2t or (q == 2t and sticky)``: one guard bit (the doubling) and one sticky bit make the
comparison exact.

This module is numpy only.
"""

import dataclasses
import functools
import math
import warnings

import numpy as np

from ..errors import InputError

__all__ = ["MULTIPLIER_BITS", "MAX_SHIFT", "NUMERATOR_BITS", "FlushWarning", "Multiplier", "EncoderTable",
           "Clamp", "requantize"]

#: width of every requantization multiplier (unsigned): ``0 <= M < 2**16``
MULTIPLIER_BITS = 16
#: largest right shift; a factor that needs more flushes to zero (with a :class:`FlushWarning`)
MAX_SHIFT = 60
#: the numerator ``n`` is a signed integer of at most this many bits (so ``2n`` fits int64)
NUMERATOR_BITS = 62


class FlushWarning(UserWarning):
    """A requantization factor so small that some or all outputs are always zero."""


@dataclasses.dataclass(frozen=True)
class Multiplier:
    """Fixed-point factors ``multiplier / 2**shift`` (arrays broadcast against each other).

    Attributes
    ----------
    multiplier : numpy.ndarray of int64
        Unsigned, below ``2**MULTIPLIER_BITS``; normalized to ``[2**15, 2**16)`` unless the shift
        is at :data:`MAX_SHIFT` (then smaller, possibly 0: the output flushes to zero).
    shift : numpy.ndarray of int64
        Right shifts, ``0 <= shift <= MAX_SHIFT``.
    """

    multiplier: np.ndarray
    shift: np.ndarray

    @classmethod
    def of(cls, factor, *, what="requantization factor"):
        """The nearest :data:`MULTIPLIER_BITS`-bit multiplier and shift for each positive ``factor``.

        ``M = round(factor * 2**S)`` (half to even) with the largest ``S <= MAX_SHIFT`` that keeps
        ``M < 2**16``, i.e. ``M`` in ``[2**15, 2**16)``: relative error at most ``2**-16``.

        Raises
        ------
        InputError
            For a factor that is not finite and positive, or of ``2**16`` or more (a shift
            would have to be negative), naming ``what``.
        """
        factor = np.atleast_1d(np.asarray(factor, dtype=np.float64))
        if not (np.isfinite(factor).all() and (factor > 0).all()):
            raise InputError(f"{what} must be finite and positive, not {factor[~(np.isfinite(factor) & (factor > 0))][:3]}")
        limit = 1 << MULTIPLIER_BITS
        if (factor >= limit - 0.5).any():
            raise InputError(f"{what} {float(factor.max()):.6g} is {limit} or more: the output grid is much finer "
                             "than the input's; calibrate the output tensor on data")
        _, exponent = np.frexp(factor)                       # factor = m * 2**exponent, 0.5 <= m < 1
        shift = np.clip(MULTIPLIER_BITS - exponent, 0, MAX_SHIFT).astype(np.int64)
        multiplier = np.rint(np.ldexp(factor, shift)).astype(np.int64)
        overflow = multiplier >= limit                        # rounded up to 2**16: one bit less
        shift = np.where(overflow, shift - 1, shift)
        multiplier = np.where(overflow, multiplier >> 1, multiplier)
        return cls(multiplier, shift)

    @classmethod
    def common(cls, factors, *, what="requantization factors"):
        """Multipliers for several factors that share one shift (for sums of differently scaled
        inputs): the shift of the largest magnitude, so its multiplier is normalized and the others
        have as many fraction bits as it does. Factors may be negative (a subtraction) or zero
        (their multiplier is then 0, or its sign).

        Returns
        -------
        multipliers : list of int
            Signed, as the factors.
        shift : int
        """
        factors = [float(f) for f in factors]
        largest = cls.of(max(abs(f) for f in factors) or 1.0, what=what)
        shift = int(largest.shift[0])
        multipliers = [int(np.rint(math.ldexp(f, shift))) for f in factors]
        return multipliers, shift

    def realized(self):
        """The factors actually applied, ``multiplier / 2**shift`` (float64, exact)."""
        return np.ldexp(self.multiplier.astype(np.float64), -self.shift)


@dataclasses.dataclass(frozen=True, eq=False)
class EncoderTable:
    """A format's encoder as sorted decision thresholds, for exact rational inputs.

    Derived from the golden encoder by :meth:`of` and checked against it on every interval, so
    it applies the format's own rounding and tie rule. Values are in integer units of the format
    (``2**lsb_exp``).

    Attributes
    ----------
    format : NumberFormat
    grid : numpy.ndarray of int64
        The ``G`` distinct representable values, ascending.
    codes : numpy.ndarray of int64
        The canonical code of each grid value (what the golden encoder returns for it).
    thresholds2 : numpy.ndarray of int64
        ``G - 1`` thresholds, doubled (so integers): between ``grid[j]`` and ``grid[j + 1]``.
    up_on_tie : numpy.ndarray of bool
        Whether a value exactly on threshold ``j`` encodes to ``grid[j + 1]``.
    """

    format: object
    grid: np.ndarray
    codes: np.ndarray
    thresholds2: np.ndarray
    up_on_tie: np.ndarray

    @classmethod
    def of(cls, fmt):
        """The table of format ``fmt`` (cached per format).

        Raises
        ------
        InputError
            If the format's encoder is not a monotone rounding whose breakpoint between two
            neighbouring values lies at one of them or at their midpoint (nearest rounding with
            any tie rule, or a directed rounding); such a format must be given its own table.
        """
        return _encoder_table(fmt)

    def index(self, numerator, shift):
        """Grid index of the encoded value of ``numerator / 2**shift`` (integer units).

        Parameters
        ----------
        numerator : numpy.ndarray of int64
            ``|numerator| < 2**NUMERATOR_BITS`` (checked).
        shift : numpy.ndarray of int64 or int
            ``0 <= shift <= MAX_SHIFT``, broadcast against ``numerator``.
        """
        numerator = np.asarray(numerator, dtype=np.int64)
        bound = 1 << NUMERATOR_BITS
        if numerator.size and (int(numerator.max()) >= bound or int(numerator.min()) <= -bound):
            raise InputError(f"requantization numerator exceeds {NUMERATOR_BITS} bits")
        shift = np.asarray(shift, dtype=np.int64)
        doubled = numerator << 1                                    # the guard bit
        quotient = doubled >> shift                                 # floor(2n / 2**S)
        sticky = (doubled & ((np.int64(1) << shift) - 1)) != 0      # any bit shifted out
        index = np.searchsorted(self.thresholds2, quotient, side="right")
        if not len(self.thresholds2):                               # one grid value: index 0
            return index
        at = np.clip(index - 1, 0, len(self.thresholds2) - 1)
        on_tie = (index > 0) & (self.thresholds2[at] == quotient) & ~sticky & ~self.up_on_tie[at]
        return index - on_tie

    def to_json(self):
        """The table as hardware loads it: grid values, codes, doubled thresholds, tie flags."""
        return {"grid": self.grid.tolist(), "codes": self.codes.tolist(),
                "thresholds2": self.thresholds2.tolist(), "up_on_tie": [bool(v) for v in self.up_on_tie]}


@functools.lru_cache(maxsize=256)
def _encoder_table(fmt):
    grid = fmt.grid().astype(np.int64)
    codes = fmt.encode(np.ldexp(grid.astype(np.float64), fmt.lsb_exp))
    if not np.array_equal(fmt.decode(codes), grid):
        raise InputError(f"{fmt}: encoding a representable value does not return it")
    if len(grid) < 2:
        return EncoderTable(fmt, grid, codes, np.zeros(0, np.int64), np.zeros(0, bool))
    low, high = grid[:-1].astype(np.float64), grid[1:].astype(np.float64)
    probes = np.linspace(0.0, 1.0, 17)[1:-1]                       # 15 points strictly inside
    points = low[:, None] + (high - low)[:, None] * probes[None, :]
    encoded = fmt.decode(fmt.encode(np.ldexp(points, fmt.lsb_exp)))
    if not ((encoded == grid[:-1, None]) | (encoded == grid[1:, None])).all():
        raise InputError(f"{fmt}: its encoder maps a value between two neighbours to neither")
    up = encoded == grid[1:, None]
    first_up = np.where(up.any(axis=1), up.argmax(axis=1), len(probes))
    # a single breakpoint: below it every probe goes down, above it every probe goes up
    if not (up == (np.arange(len(probes))[None, :] >= first_up[:, None])).all():
        raise InputError(f"{fmt}: its encoder is not monotone between neighbouring values")
    middle = len(probes) // 2                                       # the probe at the midpoint
    below_mid, above_mid = first_up == middle + 1, first_up == middle
    at_low, at_high = first_up == 0, first_up == len(probes)
    if not (below_mid | above_mid | at_low | at_high).all():
        raise InputError(f"{fmt}: its encoder's breakpoints are not at midpoints or at representable values")
    thresholds2 = np.where(at_low, 2 * grid[:-1], np.where(at_high, 2 * grid[1:], grid[:-1] + grid[1:]))
    up_on_tie = np.where(at_low, False, np.where(at_high, True, above_mid))
    return EncoderTable(fmt, grid, codes, thresholds2.astype(np.int64), up_on_tie.astype(bool))


@dataclasses.dataclass(frozen=True)
class Clamp:
    """Bounds of an op's output as grid indices of the output format (ReLU, ReLU6, hardtanh).

    Attributes
    ----------
    low, high : int
        Inclusive grid indices; the clamped value is ``grid[clip(index, low, high)]``.
    """

    low: int
    high: int

    @classmethod
    def of(cls, table, low=None, high=None):
        """The clamp of real bounds ``low``/``high`` (in the format's real units, ``None``:
        unbounded) on ``table``: the bounds are encoded with the format's encoder, so clamping
        before or after encoding gives the same code (the encoder is monotone)."""
        fmt = table.format
        lo = 0 if low is None else int(np.searchsorted(table.grid, fmt.decode(fmt.encode([low]))[0]))
        hi = len(table.grid) - 1 if high is None else int(np.searchsorted(table.grid, fmt.decode(fmt.encode([high]))[0]))
        if lo > hi:
            raise InputError(f"clamp bounds [{low}, {high}] are empty in {fmt}")
        return cls(lo, hi)

    def values(self, table):
        """The bounds as integer values of the format, ``(grid[low], grid[high])``."""
        return int(table.grid[self.low]), int(table.grid[self.high])


def requantize(numerator, shift, table, clamp):
    """Codes of ``clamp(encode(numerator / 2**shift))``: the one rounding of an op's output.

    Parameters
    ----------
    numerator : numpy.ndarray of int64
        Exact values times the multiplier, in units of ``2**-shift`` of the output format's integer
        unit.
    shift : numpy.ndarray of int64 or int
        Broadcast against ``numerator`` (per channel: shape ``(C, 1, 1)`` for NCHW).
    table : EncoderTable
    clamp : Clamp

    Returns
    -------
    numpy.ndarray of int64
        Output codes, the shape of ``numerator``.
    """
    index = np.clip(table.index(numerator, shift), clamp.low, clamp.high)
    return table.codes[index]


def warn_flush(what, multiplier, max_numerator, table):
    """Warn (:class:`FlushWarning`) when ``multiplier`` makes outputs always zero.

    ``max_numerator / 2**shift`` below the smallest positive threshold means every output is the
    code of 0; ``what`` names the op (and ``channels`` those affected).
    """
    if table.grid.min() > 0 or table.grid.max() < 0:
        return
    zero = int(np.searchsorted(table.grid, 0))
    reach = np.ldexp(np.asarray(max_numerator, dtype=np.float64) * multiplier.multiplier, -multiplier.shift)
    dead = (multiplier.multiplier == 0) | (2 * reach < min(abs(int(t)) for t in table.thresholds2[max(zero - 1, 0):zero + 1]))
    if dead.all():
        warnings.warn(f"{what}: every output flushes to zero (requantization factor too small)", FlushWarning,
                      stacklevel=3)
    elif dead.any():
        channels = np.flatnonzero(dead)
        warnings.warn(f"{what}: output channel(s) {', '.join(map(str, channels[:8]))}"
                      f"{' ...' if len(channels) > 8 else ''} always flush to zero", FlushWarning, stacklevel=3)
