"""Golden, integer-exact number formats: the one source of truth.

This package imports no hardware, tool or torch-module code. Every format is a
:class:`~hwq.formats.base.NumberFormat` subclass that registers itself in :data:`FORMATS` by its
``name``; :func:`get_format` builds one by name and :func:`from_params` rebuilds one from a
manifest's ``format`` entry. Each format's module also registers its calibrator
(:data:`~hwq.formats.calibration.CALIBRATORS`) beside its parameter search.
"""

import inspect

from ..errors import InputError
from .base import FORMATS, NumberFormat, fraction_str
from .calibration import CALIBRATORS, Calibration, calibrate_tensor
from .ant import Ant
from .ausn import Ausn
from .esb import Esb
from .fxp import FixedPoint
from .uniq import Uniq
from .golden import accumulate, acc_width, dot, product_lsb_exp, product_range, products

__all__ = ["NumberFormat", "FixedPoint", "Ant", "Ausn", "Esb", "Uniq", "FORMATS", "CALIBRATORS", "Calibration",
           "calibrate_tensor", "format_class", "get_format", "from_params", "fraction_str",
           "accumulate", "acc_width", "dot", "product_lsb_exp", "product_range", "products"]


def format_class(name):
    """The format class called ``name``; :class:`~hwq.errors.InputError` names the known ones otherwise."""
    return FORMATS[name]


def get_format(name, bits, **params):
    """Build format ``name`` with ``bits`` bits and format-specific ``params``.

    A parameter the format does not take raises :class:`~hwq.errors.InputError` naming it (and its
    new name, for a renamed one such as ANT's ``kind``, now ``type``) and the ones it takes.
    """
    cls = format_class(name)
    _check_params(name, cls, params)
    return cls(bits, **params)


def _check_params(name, cls, params):
    spec = inspect.getfullargspec(cls.__init__)
    if spec.varkw is not None:
        return                                         # the class takes any keyword: let it judge
    accepted = [a for a in spec.args[1:] + spec.kwonlyargs if a != "bits"]
    unknown = [key for key in params if key not in accepted]
    if unknown:
        renamed = getattr(cls, "renamed_params", {})
        notes = [f"{key!r}" + (f" (renamed to {renamed[key]!r})" if key in renamed else "") for key in unknown]
        raise InputError(f"format {name!r} has no parameter {', '.join(notes)}; "
                         f"its parameters: {', '.join(['bits', *accepted])}")


def from_params(name, params):
    """Rebuild a format from its name and :meth:`~hwq.formats.base.NumberFormat.params`.

    A ``"format"`` key in ``params`` overrides ``name``: a manifest's operand entry names its own
    format when it differs from the PE's (e.g. fixed-point activations of a UNIQ PE).
    """
    params = dict(params)
    name = params.pop("format", name)
    if "bits" not in params:
        raise InputError(f"format {name!r} parameters {params} have no 'bits'")
    return get_format(name, params.pop("bits"), **params)
