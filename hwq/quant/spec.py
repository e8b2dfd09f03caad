"""Format specifications as users write them: ``"ant4"``, ``"fxp8"``, ``"esb4k2"``.

A spec is a format name, a bit width and format options. The text form is the name, the width
and optional ``<letters><int>`` option suffixes (``"esb4k2"``: ESB, 4 bits, ``k=2``); the dict form
is ``{"format": "esb", "bits": 4, "k": 2}``.
"""

import dataclasses
import re

from ..errors import InputError
from ..formats import FORMATS

__all__ = ["FormatSpec", "parse_spec"]

_TEXT = re.compile(r"^(?P<name>[a-z]+?)(?P<bits>\d+)(?P<options>(?:[a-z]+\d+)*)$")
_OPTION = re.compile(r"([a-z]+)(\d+)")


@dataclasses.dataclass(frozen=True)
class FormatSpec:
    """A format name, a bit width and options for that format's calibration.

    Attributes
    ----------
    name : str
        Format name (a key of :data:`hwq.formats.FORMATS`).
    bits : int
        Code width.
    options : tuple of (str, object)
        Format options, sorted by name.
    """

    name: str
    bits: int
    options: tuple = ()

    def option(self, key, default=None):
        """The value of option ``key``, or ``default``."""
        return dict(self.options).get(key, default)

    def __str__(self):
        return f"{self.name}{self.bits}" + "".join(f"{k}{v}" for k, v in self.options)


def parse_spec(spec):
    """A :class:`FormatSpec` from text (``"ant4"``), a dict, or a spec (returned as is).

    Raises
    ------
    InputError
        On text that does not parse or an unknown format.
    """
    if isinstance(spec, FormatSpec):
        return spec
    if isinstance(spec, dict):
        spec = dict(spec)
        try:
            name, bits = spec.pop("format"), spec.pop("bits")
        except KeyError as exc:
            raise InputError(f"format spec {spec!r} needs a {exc.args[0]!r} entry") from None
        options = spec
    elif isinstance(spec, str):
        match = _TEXT.match(spec.strip().lower())
        if match is None:
            raise InputError(f"cannot read format spec {spec!r}; write a name and a bit width, e.g. 'ant4' or 'fxp8'")
        name, bits = match["name"], int(match["bits"])
        options = {key: int(value) for key, value in _OPTION.findall(match["options"])}
    else:
        raise InputError(f"a format spec is a string like 'ant4' or a dict, not {spec!r}")
    if name not in FORMATS:
        raise InputError(f"unknown format {name!r} in spec {spec!r}; known formats: {', '.join(sorted(FORMATS))}")
    return FormatSpec(name, int(bits), tuple(sorted(options.items())))
