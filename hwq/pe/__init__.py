"""Amaranth processing elements, one per format, sharing one port contract.

:func:`pe_variants` gives the PEs the build emits for a format at given widths;
:data:`DEFAULT_WIDTHS` the widths the default build uses.
"""

from ..errors import HwqError
from ..formats import format_class
from .base import ProcessingElement
from .fxp import FixedPointPE
from .manifest import manifest, to_verilog, write_pe

__all__ = ["ProcessingElement", "FixedPointPE", "PE_CLASSES", "DEFAULT_WIDTHS", "pe_variants",
           "manifest", "to_verilog", "write_pe"]

#: PE class of every format that has one
PE_CLASSES = {cls.kind: cls for cls in (FixedPointPE,)}

#: (activation bits, weight bits) the default build emits per format
DEFAULT_WIDTHS = {"fxp": [(8, 8), (4, 4)]}


def pe_variants(fmt, a_bits, w_bits, **kwargs):
    """The PEs emitted for format ``fmt`` at ``a_bits`` x ``w_bits`` (raises on bad input)."""
    format_class(fmt)
    if fmt not in PE_CLASSES:
        raise HwqError(f"format {fmt!r} has no processing element yet; choose one of {', '.join(PE_CLASSES)}")
    return [PE_CLASSES[fmt].from_bits(a_bits, w_bits, **kwargs)]
