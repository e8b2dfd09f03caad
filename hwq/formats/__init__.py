"""Golden, integer-exact number formats: the one source of truth.

This package imports no hardware, tool or torch-module code. Every format is a
:class:`~hwq.formats.base.NumberFormat`; :func:`get_format` builds one by name and
:func:`from_params` rebuilds one from a manifest's ``format`` entry.
"""

from ..errors import InputError
from .base import NumberFormat, fraction_str
from .ant import Ant
from .ausn import Ausn
from .esb import Esb
from .fxp import FixedPoint
from .uniq import Uniq
from .golden import accumulate, acc_width, dot, product_lsb_exp, product_range, products

__all__ = ["NumberFormat", "FixedPoint", "Ant", "Ausn", "Esb", "Uniq", "FORMATS", "get_format", "from_params", "fraction_str",
           "accumulate", "acc_width", "dot", "product_lsb_exp", "product_range", "products"]

#: every format class by name (one line per format)
FORMATS = {cls.name: cls for cls in (
    FixedPoint,
    Ant,
    Esb,
    Ausn,
    Uniq,
)}


def format_class(name):
    """The format class called ``name``; :class:`InputError` names the known ones otherwise."""
    try:
        return FORMATS[name]
    except (KeyError, TypeError):
        raise InputError(f"unknown format {name!r}; known formats: {', '.join(sorted(FORMATS))}") from None


def get_format(name, bits, **params):
    """Build format ``name`` with ``bits`` bits and format-specific ``params``."""
    return format_class(name)(bits, **params)


def from_params(name, params):
    """Rebuild a format from its name and :meth:`~hwq.formats.base.NumberFormat.params`.

    A ``"format"`` key in ``params`` overrides ``name``: a manifest's operand entry names its own
    format when it differs from the PE's (e.g. fixed-point activations of a UNIQ PE).
    """
    params = dict(params)
    name = params.pop("format", name)
    return get_format(name, params.pop("bits"), **params)
