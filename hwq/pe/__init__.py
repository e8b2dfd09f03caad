"""Amaranth processing elements, one per format, sharing one port contract.

:func:`pe_variants` gives the PEs the build emits for a format at given widths;
:data:`DEFAULT_WIDTHS` the widths the default build uses.
"""

from ..errors import InputError
from ..formats import format_class
from .ant import AntPE
from .ausn import AusnPE
from .base import ProcessingElement
from .esb import EsbPE
from .fxp import FixedPointPE
from .manifest import manifest, to_verilog, write_pe
from .uniq import UniqPE

__all__ = ["ProcessingElement", "FixedPointPE", "AntPE", "AusnPE", "EsbPE", "UniqPE", "PE_CLASSES", "DEFAULT_WIDTHS", "pe_variants",
           "check_pe", "manifest", "to_verilog", "write_pe"]

#: PE class of every format that has one (one line per format)
PE_CLASSES = {cls.kind: cls for cls in (
    FixedPointPE,
    AntPE,
    AusnPE,
    EsbPE,
    UniqPE,
)}

#: (activation bits, weight bits) the default build emits per format (one line per format)
DEFAULT_WIDTHS = {
    "fxp": [(8, 8), (4, 4)],
    "ant": [(4, 4), (8, 8)],
    "ausn": [(4, 4), (8, 8)],
    "esb": [(4, 4), (8, 8)],
    "uniq": [(8, 4), (4, 4)],
}


def pe_variants(fmt, a_bits, w_bits, **kwargs):
    """The PEs emitted for format ``fmt`` at ``a_bits`` x ``w_bits`` (raises on bad input)."""
    format_class(fmt)
    if fmt not in PE_CLASSES:
        raise InputError(f"format {fmt!r} has no processing element yet; choose one of {', '.join(PE_CLASSES)}")
    return PE_CLASSES[fmt].variants(a_bits, w_bits, **kwargs)


def check_pe(fmt, a_bits, w_bits, **kwargs):
    """Raise :class:`InputError` unless format ``fmt`` has PEs at ``a_bits`` x ``w_bits``.

    Builds the PEs to run their argument checks, then discards them (without Amaranth's
    "created but never used" warning).
    """
    for pe in pe_variants(fmt, a_bits, w_bits, **kwargs):
        pe._MustUse__silence = True
