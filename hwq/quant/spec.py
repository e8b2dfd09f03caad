"""Format specifications as users write them: ``"ant4"``, ``"fxp8"``, ``"esb4k2"``.

A spec is a format name, a bit width and format options. The text form is the name, the width
and optional ``<letters><int>`` option suffixes (``"esb4k2"``: ESB, 4 bits, ``k=2``); the dict form
is ``{"format": "esb", "bits": 4, "k": 2}`` and also holds values the text form cannot, such as
ANT's candidate types (``{"format": "ant", "bits": 4, "types": ["int", "pot"]}``).

:func:`parse_spec` checks a spec completely before any work: the format is known, the width is
an integer in the format's ``bit_range``, and every option is one the format's calibrator declares
(:func:`hwq.formats.calibration.declare_options`, in the format's own module), of the declared
type and in its range. A mistake raises :class:`~hwq.errors.InputError` naming the spec, the option
and what is allowed. The options each format takes are listed in its calibrator's docstring and in
the message for an unknown option.
"""

import dataclasses
import numbers
import re

from ..errors import InputError
from ..formats import FORMATS
from ..formats.calibration import check_options

__all__ = ["FormatSpec", "parse_spec"]

_TEXT = re.compile(r"^(?P<name>[a-z]+?)(?P<bits>\d+)(?P<options>(?:[a-z]+\d+)*)$")
_OPTION = re.compile(r"([a-z]+)(\d+)")


def _text_value(value):
    return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class FormatSpec:
    """A format name, a bit width and options for that format's calibration.

    Build one with :func:`parse_spec`, which checks it; it compares and hashes by value.

    Attributes
    ----------
    name : str
        Format name (a key of :data:`hwq.formats.FORMATS`).
    bits : int
        Code width.
    options : tuple of (str, object)
        Format options, sorted by name, with canonical values (ints, words, tuples).
    """

    name: str
    bits: int
    options: tuple = ()

    def option(self, key, default=None):
        """The value of option ``key``, or ``default``."""
        return dict(self.options).get(key, default)

    def to_dict(self):
        """The dict form, ``{"format": name, "bits": bits, **options}``; :func:`parse_spec` reads it back."""
        return {"format": self.name, "bits": self.bits, **{k: list(v) if isinstance(v, tuple) else v
                                                             for k, v in self.options}}

    def __str__(self):
        """The text form, e.g. ``"esb4k2"``; ``parse_spec(str(spec)) == spec``.

        Options the text form cannot hold (lists, words: dict form only) follow in brackets for
        reading, ``"ant4[types=int,flint]"``; such a string does not parse back: use
        :meth:`to_dict` to keep those specs.
        """
        text = f"{self.name}{self.bits}" + "".join(f"{k}{v}" for k, v in self.options if _text_value(v))
        other = [f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
                 for k, v in self.options if not _text_value(v)]
        return text + (f"[{';'.join(other)}]" if other else "")


def parse_spec(spec):
    """A checked :class:`FormatSpec` from text (``"ant4"``, ``"esb4k2"``), a dict or a spec.

    Parameters
    ----------
    spec : str, dict or FormatSpec
        Text ``<name><bits>`` plus ``<option><int>`` suffixes (case-insensitive); a dict with
        ``"format"`` and ``"bits"`` entries and one entry per option; or a :class:`FormatSpec`
        (checked again, e.g. one built by hand).

    Returns
    -------
    FormatSpec
        With canonical option values (e.g. a list becomes a tuple), options sorted by name.

    Raises
    ------
    InputError
        Before any work, naming the spec: for text that does not parse, an unknown format, a
        width that is not an integer in the format's ``bit_range``, an option given twice, an
        option the format's calibrator does not declare, or an option value of the wrong type
        or out of range (the message says what the option takes).
    """
    shown = spec
    if isinstance(spec, FormatSpec):
        name, bits = spec.name, spec.bits
        try:
            options = dict(spec.options)
        except (TypeError, ValueError):
            raise InputError(f"format spec {spec!r}: options must be (name, value) pairs") from None
        shown = str(FormatSpec(name, bits, tuple(options.items())))
    elif isinstance(spec, dict):
        options = dict(spec)
        try:
            name, bits = options.pop("format"), options.pop("bits")
        except KeyError as exc:
            raise InputError(f"format spec {spec!r} needs a {exc.args[0]!r} entry") from None
    elif isinstance(spec, str):
        match = _TEXT.match(spec.strip().lower())
        if match is None:
            raise InputError(f"cannot read format spec {spec!r}; write a name and a bit width, e.g. 'ant4' or 'fxp8'")
        name, bits = match["name"], int(match["bits"])
        options = {}
        for key, value in _OPTION.findall(match["options"]):
            if key in options:
                raise InputError(f"format spec {spec!r} gives option {key!r} twice")
            options[key] = int(value)
    else:
        raise InputError(f"a format spec is a string like 'ant4' or a dict, not {spec!r}")
    if not isinstance(name, str) or name not in FORMATS:
        raise InputError(f"unknown format {name!r} in spec {shown!r}; known formats: {', '.join(sorted(FORMATS))}")
    low, high = FORMATS[name].bit_range
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or not low <= bits <= high:
        raise InputError(f"format spec {shown!r}: {name} takes an integer bit width from {low} to {high}, "
                         f"not {bits!r}")
    bits = int(bits)
    options = check_options(name, options, bits, spec=shown)
    return FormatSpec(name, bits, tuple(sorted(options.items())))
