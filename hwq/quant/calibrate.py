"""Per-tensor quantizers, calibrated the way each format's paper does.

A :class:`TensorQuantizer` is a format plus positive scales (one per tensor, or one per output
channel): ``x ~ scale[c] * value(code)``. All rounding is the golden model's
(:mod:`hwq.formats`), so fake quantization here is exactly what the hardware computes.

:func:`calibrate` runs the format's own calibrator (:data:`hwq.formats.CALIBRATORS`: each format's
module registers one beside its parameter search, e.g. :func:`hwq.formats.fxp.calibrate_fxp`) and
wraps its :class:`~hwq.formats.Calibration` in a :class:`TensorQuantizer`.
"""

import dataclasses

import numpy as np

from ..formats import CALIBRATORS, calibrate_tensor
from ..formats.calibration import ROLES
from ..formats.rounding import check_finite
from .spec import parse_spec

__all__ = ["TensorQuantizer", "CALIBRATORS", "calibrate", "ROLES"]


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

    def quantize(self, x):
        """Codes of real tensor ``x`` (NaN/Inf raise :class:`~hwq.errors.InputError`), as
        :meth:`NumberFormat.quantize <hwq.formats.base.NumberFormat.quantize>` with this
        quantizer's scales."""
        x = check_finite(x)
        return self.format.encode(x / self._scales(x.ndim))

    def to_real(self, codes):
        """``scale * value(code)`` as float64."""
        codes = np.asarray(codes)
        return self.format.to_real(codes) * self._scales(codes.ndim)

    def fake_quantize(self, x):
        """``to_real(quantize(x))``: the value the hardware sees, as float64."""
        return self.to_real(self.quantize(x))

    def mse(self, x):
        """Mean squared quantization error of ``x``."""
        x = check_finite(x)
        return float(np.mean((self.fake_quantize(x) - x) ** 2))


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
    result = calibrate_tensor(spec.name, x, spec.bits, role=role, per_channel=per_channel,
                              options=dict(spec.options))
    return TensorQuantizer(result.format, result.scale, result.channel_axis, spec, dict(result.candidates))
