"""Amaranth processing elements, one per format, sharing one port contract.

Each format's PE class registers itself in :data:`PE_CLASSES` (by its ``format_name``) and carries
its own ``default_widths``; :func:`pe_variants` gives the PEs the build emits for a format at
given widths.
"""

from ..errors import InputError
from ..formats import FORMATS
from .ant import AntPE
from .ausn import AusnPE
from .base import PE_CLASSES, ProcessingElement
from .esb import EsbPE
from .fxp import FixedPointPE
from .manifest import manifest, to_verilog, write_pe
from .uniq import UniqPE

__all__ = ["ProcessingElement", "FixedPointPE", "AntPE", "AusnPE", "EsbPE", "UniqPE", "PE_CLASSES", "pe_class", "pe_variants",
           "check_pe", "discard", "manifest", "to_verilog", "write_pe"]


def pe_class(fmt):
    """The PE class of format ``fmt``.

    Raises
    ------
    InputError
        For an unknown format, or a format without a PE.
    """
    FORMATS[fmt]
    if fmt not in PE_CLASSES:
        raise InputError(f"format {fmt!r} has no processing element yet; choose one of {', '.join(PE_CLASSES)}")
    return PE_CLASSES[fmt]


def pe_variants(fmt, a_bits, w_bits, **kwargs):
    """The PEs emitted for format ``fmt`` at ``a_bits`` x ``w_bits``.

    Raises
    ------
    InputError
        For an unknown format, a format without a PE, or widths and options the PE rejects.
    """
    return pe_class(fmt).variants(a_bits, w_bits, **kwargs)


def discard(*pes):
    """Mark built but unused PEs as used on purpose: no "created but never used" warning.

    Amaranth warns about an elaboratable that is never elaborated; a PE built only to run its
    argument checks, or one of several variants that is not emitted, is such a one. This
    elaborates it (cheaply: no simulation or emission).
    """
    from amaranth.hdl import Fragment
    for pe in pes:
        Fragment.get(pe, None)


def check_pe(fmt, a_bits, w_bits, **kwargs):
    """Raise :class:`~hwq.errors.InputError` unless format ``fmt`` has PEs at ``a_bits`` x ``w_bits``.

    Builds the PEs to run their argument checks, then discards them (:func:`discard`).
    """
    discard(*pe_variants(fmt, a_bits, w_bits, **kwargs))
