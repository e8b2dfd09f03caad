"""The one calibration result type, and the registry of each format's calibrator.

A *calibrator* chooses a format's parameters and scales for a real tensor the way that format's
paper does (docs/formats.md). Each lives beside its format's parameter search, in the format's
own module, and registers itself::

    @CALIBRATORS.register("fxp")
    def calibrate_fxp(x, bits, *, role, per_channel, options):
        ...
        return Calibration(fmt, scale, channel_axis, candidates)

Every calibrator returns a :class:`Calibration`; the front end (:mod:`hwq.quant.calibrate`)
wraps it in a per-tensor quantizer. This module is numpy only, like all of :mod:`hwq.formats`.
"""

import dataclasses

import numpy as np

from ..errors import InputError
from ..registry import FORMAT_NAME, Registry
from .rounding import check_finite

__all__ = ["Calibration", "CALIBRATORS", "ROLES", "calibrate_tensor", "check_options"]

#: the roles a tensor plays in a layer
ROLES = ("weight", "activation")

#: calibrator of every format, by format name (each format's module registers its own)
CALIBRATORS = Registry("calibrator", packages=("hwq.formats",), **FORMAT_NAME)


@dataclasses.dataclass(frozen=True)
class Calibration:
    """What a calibrator chose for one tensor: ``x ~ scale[c] * value(code)``.

    Attributes
    ----------
    format : NumberFormat
        The chosen format (parameters included, e.g. the fraction length or the ANT type).
    scale : numpy.ndarray
        Positive float64 scales, shape ``(channels,)``, or ``(1,)`` for one scale per tensor.
    channel_axis : int or None
        Axis of the tensor the scales run along (``None``: one scale).
    candidates : dict of str to float
        Every candidate the search tried and its error (mean squared error unless the format's
        method uses another, e.g. AUSN's clipping + rounding error), to show why.
    """

    format: object
    scale: np.ndarray
    channel_axis: object
    candidates: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        scale = np.asarray(self.scale, dtype=np.float64).ravel()
        if scale.size == 0 or not (np.isfinite(scale) & (scale > 0)).all():
            raise InputError(f"{self.format.name} calibration gave scales that are not positive and finite: {scale}")
        object.__setattr__(self, "scale", scale)


def calibrate_tensor(name, x, bits, *, role, per_channel=True, options=None):
    """Run format ``name``'s calibrator on tensor ``x``.

    Parameters
    ----------
    name : str
        Format name (a key of :data:`CALIBRATORS`).
    x : array-like
        The tensor (weights: output channels on axis 0).
    bits : int
        Code width.
    role : str
        ``"weight"`` or ``"activation"``.
    per_channel : bool
        Per-output-channel weight scales where the format's method has them.
    options : dict or None
        Format options (e.g. ``{"k": 2}`` for ESB's significant bits).

    Returns
    -------
    Calibration

    Raises
    ------
    InputError
        For an unknown format or role, NaN/Inf or an empty tensor, or options the format's
        calibrator rejects -- before any search.
    """
    calibrator = CALIBRATORS[name]
    if role not in ROLES:
        raise InputError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    x = check_finite(x, f"{role} tensor")
    if x.size == 0:
        raise InputError(f"cannot calibrate {name}{bits} on an empty {role} tensor")
    return calibrator(x, bits, role=role, per_channel=per_channel, options=dict(options or {}))


def check_options(name, options, allowed):
    """Raise :class:`~hwq.errors.InputError` if ``options`` has a key outside ``allowed``.

    For calibrators: each takes its format's options and rejects the rest by name.
    """
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        known = ", ".join(allowed) if allowed else "none"
        raise InputError(f"{name} has no option {', '.join(map(repr, unknown))}; its options: {known}")
