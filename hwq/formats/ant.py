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

Type selection (:func:`select_type`, ANT's reference): for every candidate type, sweep the clip
value ``alpha = max|x| * i / 100`` for ``i = 75 ... 149`` (weights per output channel, activations
per tensor) with scale ``alpha / max(grid)``, keep each channel's least-MSE ``alpha``; the type's
score is the summed per-channel MSE, and the least score wins.
"""

import dataclasses

import numpy as np

from ..errors import InputError
from .base import NumberFormat, check_int, nearest_index
from .calibration import CALIBRATORS, Calibration, check_options
from .rounding import check_finite

__all__ = ["Ant", "ANT_TYPES", "TypeChoice", "select_type", "calibrate_ant"]

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
        return self._grid_codes[nearest_index(self._grid, x, ties="up")]


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
        Every candidate type's summed per-channel mean squared error, so the choice can be read.
    """

    format: Ant
    scale: np.ndarray
    mse: dict


def _best_alpha(x, fmt, peak):
    """Per-channel least-MSE scale and MSE of ``fmt`` over ANT's alpha sweep; ``x`` is 2-D."""
    top = fmt.max_value
    best_mse = np.full(x.shape[0], np.inf)
    best_scale = np.ones(x.shape[0])
    for i in range(75, 150):
        scale = np.where(peak > 0, peak * (i / 100) / top, 1.0)
        q = fmt.to_real(fmt._encode(x / scale[:, None]), 1.0) * scale[:, None]
        mse = np.mean((q - x) ** 2, axis=1)
        better = mse < best_mse
        best_mse = np.where(better, mse, best_mse)
        best_scale = np.where(better, scale, best_scale)
    return best_scale, best_mse


def select_type(x, bits, *, types=("int", "flint", "pot"), signed=None, channel_axis=None):
    """Choose the ANT type with the least quantization error for tensor ``x``.

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
    peak = np.abs(rows).max(axis=1)
    results = {}
    for name in dict.fromkeys(types):
        if name not in ANT_TYPES:
            raise InputError(f"unknown ANT type {name!r}; use one of {', '.join(ANT_TYPES)}")
        try:
            fmt = Ant(bits, type=name, signed=signed)
        except InputError:
            if name == "pot":
                continue
            raise
        scale, mse = _best_alpha(rows, fmt, peak)
        results[name] = (fmt, scale, float(mse.sum()))
    best = min(results, key=lambda k: (results[k][2], list(results).index(k)))
    fmt, scale, _ = results[best]
    return TypeChoice(fmt, scale, {k: v[2] for k, v in results.items()})


@CALIBRATORS.register("ant")
def calibrate_ant(x, bits, *, role, per_channel, options):
    """ANT's calibration: :func:`select_type` over int, flint and PoT (option ``types``).

    Per output channel for weights (``per_channel``), per tensor for activations, as ANT's
    reference does.

    Returns
    -------
    Calibration
        ``candidates`` maps each type tried to its MSE.
    """
    check_options("ant", options, ("types",))
    types = options.get("types", ("int", "flint", "pot"))
    axis = 0 if per_channel and role == "weight" else None
    choice = select_type(x, bits, types=types, channel_axis=axis)
    return Calibration(choice.format, choice.scale, axis, dict(choice.mse))
