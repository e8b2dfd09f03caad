"""Per-tensor quantizers and each paper's own way of choosing their parameters.

A :class:`TensorQuantizer` is a format plus positive scales (one per tensor, or one per output
channel): ``x ~ scale[c] * value(code)``. All rounding is the golden model's
(:mod:`hwq.formats`), so fake quantization here is exactly what the hardware computes.

Calibrators (one per format, :data:`CALIBRATORS`), called as
``calibrate(spec, x, role=..., per_channel=...)``:

``fxp``
    FxP-QNet: the fraction length with the least MSE (:func:`hwq.formats.fxp.frac_for_mse`), per
    tensor (a fraction length is per data structure); the scale is 1 and the power of two lives in
    the format. Signed when the tensor has negative values.
``ant``
    ANT: :func:`hwq.formats.ant.select_type` over int, flint and PoT (option ``kinds``), per output
    channel for weights, per tensor for activations.
``esb``
    ESB's distribution difference aligner (:func:`hwq.formats.esb_dda.dda`), per output channel
    for weights; option ``k`` fixes the significant bits, otherwise the aligner picks them. No
    mean shift: the PE sums products of codes.
``ausn``
    AUSN's adaptive superposition (:func:`hwq.formats.ausn.select_superposition`), per layer.
``uniq``
    UNIQ's k-quantile levels of the Gaussian fitted to the weights
    (:func:`hwq.formats.uniq.fit_levels`), stored as fixed point; weights only (UNIQ's
    activations are uniform: use ``fxp``).
"""

import dataclasses

import numpy as np

from ..errors import InputError
from ..formats import FixedPoint
from ..formats.ant import select_type
from ..formats.fxp import frac_for_mse
from ..formats.rounding import check_finite
from .spec import parse_spec

__all__ = ["TensorQuantizer", "CALIBRATORS", "calibrate", "ROLES"]

ROLES = ("weight", "activation")


@dataclasses.dataclass
class TensorQuantizer:
    """A format with per-tensor or per-channel scales.

    Attributes
    ----------
    format : NumberFormat
    scale : numpy.ndarray
        Positive float64 scales, shape ``(channels,)`` (``(1,)`` per tensor).
    channel_axis : int or None
        Axis the scales run along (``None``: one scale).
    spec : FormatSpec
        What the user asked for.
    candidates : dict
        Every candidate the calibration tried and its mean squared error, to show why.
    """

    format: object
    scale: np.ndarray
    channel_axis: object
    spec: object
    candidates: dict = dataclasses.field(default_factory=dict)

    def _scales(self, ndim):
        if self.channel_axis is None:
            return self.scale.reshape((1,) * ndim)
        shape = [1] * ndim
        shape[self.channel_axis] = -1
        return self.scale.reshape(shape)

    def codes(self, x):
        """Codes of real tensor ``x`` (NaN/Inf raise :class:`InputError`)."""
        x = check_finite(x)
        return self.format.encode(x / self._scales(x.ndim))

    def dequantize(self, codes):
        """``scale * value(code)`` as float64."""
        codes = np.asarray(codes)
        return self.format.to_real(codes) * self._scales(codes.ndim)

    def fake(self, x):
        """``dequantize(codes(x))``: the value the hardware sees, as float64."""
        return self.dequantize(self.codes(x))

    def mse(self, x):
        """Mean squared quantization error of ``x``."""
        x = check_finite(x)
        return float(np.mean((self.fake(x) - x) ** 2))


def _calibrate_fxp(spec, x, role, per_channel):
    signed = bool((x < 0).any())
    frac, errors = frac_for_mse(x, spec.bits, signed=signed)
    return TensorQuantizer(FixedPoint(spec.bits, frac=frac, signed=signed), np.ones(1), None, spec,
                           {f"frac={f}": e for f, e in errors.items()})


def _calibrate_esb(spec, x, role, per_channel):
    from ..formats.esb_dda import dda
    axis = 0 if per_channel and role == "weight" else None
    choice = dda(x, spec.bits, k=spec.option("k"), channel_axis=axis)
    return TensorQuantizer(choice.format, np.asarray(choice.scale, dtype=np.float64).ravel(), axis, spec,
                           {f"k={k}": mse for k, mse in choice.mse.items()})


def _calibrate_ausn(spec, x, role, per_channel):
    from ..formats.ausn import select_superposition
    choice = select_superposition(x, spec.bits)
    return TensorQuantizer(choice.format, np.array([float(choice.scale)]), None, spec,
                           {label: error.total for label, error in choice.errors.items()})


def _calibrate_uniq(spec, x, role, per_channel):
    from ..formats.uniq import fit_levels
    if role != "weight":
        raise InputError("UNIQ quantizes weights only; its activations are uniform: use an fxp spec for them")
    fit = fit_levels(x, spec.bits, distribution="gaussian")
    return TensorQuantizer(fit.format, np.ones(1), None, spec, {"gaussian": fit.mse})


def _calibrate_ant(spec, x, role, per_channel):
    kinds = spec.option("kinds", ("int", "flint", "pot"))
    axis = 0 if per_channel and role == "weight" else None
    choice = select_type(x, spec.bits, kinds=kinds, channel_axis=axis)
    return TensorQuantizer(choice.format, np.asarray(choice.scale, dtype=np.float64), axis, spec, dict(choice.mse))


#: calibration function of every format (one line per format)
CALIBRATORS = {
    "fxp": _calibrate_fxp,
    "ant": _calibrate_ant,
    "esb": _calibrate_esb,
    "ausn": _calibrate_ausn,
    "uniq": _calibrate_uniq,
}


def calibrate(spec, x, *, role, per_channel=True):
    """Choose the quantizer of tensor ``x`` in format ``spec`` the way its paper does.

    Parameters
    ----------
    spec : str, dict or FormatSpec
        E.g. ``"ant4"``.
    x : array-like
        The tensor (weights: output channels on axis 0).
    role : str
        ``"weight"`` or ``"activation"``.
    per_channel : bool
        Per-output-channel weight scales where the format's method has them.

    Returns
    -------
    TensorQuantizer
    """
    spec = parse_spec(spec)
    if role not in ROLES:
        raise InputError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if spec.name not in CALIBRATORS:
        raise InputError(f"format {spec.name!r} has no calibration yet; use one of {', '.join(CALIBRATORS)}")
    x = check_finite(x, f"{role} tensor")
    if x.size == 0:
        raise InputError(f"cannot calibrate {spec} on an empty {role} tensor")
    return CALIBRATORS[spec.name](spec, x, role, per_channel)
