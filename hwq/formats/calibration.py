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

Spec options
------------
The options of a format spec (``"esb4k2"``: ``k=2``; ``{"format": "ant", "bits": 4,
"types": ["int", "pot"]}``) are the options of the format's calibrator. A calibrator declares them,
once, with :func:`declare_options` beside its registration::

    @CALIBRATORS.register("esb")
    @declare_options(IntOption("k", 1, lambda bits: bits, doc="significant bits"))
    def calibrate_esb(x, bits, *, role, per_channel, options):
        options = check_options("esb", options, bits)
        ...

That one declaration serves both checks: :func:`hwq.quant.spec.parse_spec` rejects an unknown,
ill-typed or out-of-range option when the spec is read, before any work, and
:func:`check_options` (called by :func:`calibrate_tensor` and by the calibrator itself) applies the
same rules to options passed directly. A calibrator without a declaration takes no options.

The text form of a spec holds only integer values (``<letters><int>`` suffixes); sequences and
words (ANT's ``types``, ESB's ``k="all"``) are written in the dict form.
"""

import dataclasses
import difflib
import re

import numpy as np

from ..errors import InputError
from ..registry import FORMAT_NAME, Registry
from .rounding import check_finite

__all__ = ["Calibration", "CALIBRATORS", "ROLES", "calibrate_tensor", "check_options", "ChoiceOption", "IntOption",
           "SpecOption", "declare_options", "declared_options"]

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
    options = check_options(name, dict(options or {}), bits)
    return calibrator(x, bits, role=role, per_channel=per_channel, options=options)


#: what an option name is: lowercase letters, so that the text form ``<name><int>`` reads it back
_OPTION_NAME = re.compile(r"[a-z]+")

#: attribute of a calibrator that holds its declared options (set by :func:`declare_options`)
_DECLARATION = "spec_options"


class _Rejected(Exception):
    """A value an option does not take (internal: :meth:`SpecOption.validate` words the message)."""


def _is_sequence(value):
    return isinstance(value, (list, tuple, range))


class SpecOption:
    """Base of a declared spec option: :class:`IntOption` or :class:`ChoiceOption`.

    Subclasses are frozen dataclasses with at least ``name``, ``doc`` and ``many``; they implement
    :meth:`allowed` and ``_validate(value, bits)``, which returns the canonical value or raises
    ``_Rejected``.
    """

    def _check_declaration(self):
        if not isinstance(self.name, str) or not _OPTION_NAME.fullmatch(self.name):
            raise InputError(f"a spec option name is lowercase letters a-z (the text form writes '<name><int>'), "
                             f"not {self.name!r}")
        if not isinstance(self.doc, str):
            raise InputError(f"option {self.name!r}: doc must be a string, not {self.doc!r}")
        if not isinstance(self.many, bool):
            raise InputError(f"option {self.name!r}: many must be True or False, not {self.many!r}")

    def allowed(self, bits):
        """What the option takes at code width ``bits``, in words (for messages)."""
        raise NotImplementedError

    def validate(self, value, bits):
        """The option's value, normalized, at code width ``bits``.

        Parameters
        ----------
        value : object
            The value as given (text form: an int; dict form: anything).
        bits : int
            The spec's code width (bounds may depend on it).

        Returns
        -------
        object
            ``value`` in canonical form: a Python ``int``, a word, or a tuple (see the subclass).

        Raises
        ------
        InputError
            If the option does not take ``value``; the message names the option and what it takes.
        """
        try:
            return self._validate(value, bits)
        except _Rejected:
            raise InputError(f"option {self.name!r} must be {self.allowed(bits)}, not {value!r}") from None

    def _validate(self, value, bits):
        raise NotImplementedError

    def describe(self, bits):
        """``"<name> (<what it takes>: <doc>)"``, for the list of a format's options."""
        return f"{self.name} ({self.allowed(bits)}{': ' + self.doc if self.doc else ''})"


@dataclasses.dataclass(frozen=True)
class IntOption(SpecOption):
    """An integer option, the kind the text form holds: ESB's ``k`` in ``"esb4k2"``.

    Parameters
    ----------
    name : str
        Lowercase letters; the text form writes the option as ``<name><int>``.
    low, high : int or callable
        Inclusive bounds of the value. A callable takes the spec's code width and returns the
        bound (ESB's ``k`` runs to the width: ``high=lambda bits: bits``).
    doc : str
        What the option means, one phrase (shown in messages).
    many : bool
        Also take a non-empty list of such integers (dict form), e.g. candidates for the calibrator
        to choose from. The list becomes a tuple without repeats, in the given order; a one-element
        list is its element.
    words : tuple of str
        Strings also taken as they are (dict form), e.g. ESB's ``"all"``.

    Notes
    -----
    ``bool`` is not an integer here (``True`` is refused), nor is a float such as ``2.0``;
    numpy integers are taken and become ``int``.
    """

    name: str
    low: object
    high: object
    doc: str = ""
    many: bool = False
    words: tuple = ()

    def __post_init__(self):
        self._check_declaration()
        for bound in (self.low, self.high):
            if not callable(bound) and (isinstance(bound, bool) or not isinstance(bound, int)):
                raise InputError(f"option {self.name!r}: a bound is an int or a callable of the bit width, "
                                 f"not {bound!r}")
        words = (self.words,) if isinstance(self.words, str) else tuple(self.words)
        if not all(isinstance(w, str) for w in words):
            raise InputError(f"option {self.name!r}: words must be strings, not {self.words!r}")
        object.__setattr__(self, "words", words)

    def bounds(self, bits):
        """``(low, high)`` at code width ``bits``."""
        return tuple(bound(bits) if callable(bound) else bound for bound in (self.low, self.high))

    def allowed(self, bits):
        low, high = self.bounds(bits)
        if low < high:
            text = f"an integer from {low} to {high}"
        elif low == high:
            text = f"the integer {low}"
        else:
            text = f"no integer (none fits at {bits} bits)"
        if self.many:
            text += ", or a list of them"
        if self.words:
            text += ", or " + " or ".join(map(repr, self.words))
        return text

    def _one(self, value, bits):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise _Rejected
        low, high = self.bounds(bits)
        if not low <= value <= high:
            raise _Rejected
        return int(value)

    def _validate(self, value, bits):
        if isinstance(value, str) and value in self.words:
            return value
        if self.many and _is_sequence(value):
            values = tuple(dict.fromkeys(self._one(v, bits) for v in value))
            if not values:
                raise _Rejected
            return values[0] if len(values) == 1 else values
        return self._one(value, bits)


@dataclasses.dataclass(frozen=True)
class ChoiceOption(SpecOption):
    """An option naming one of fixed choices (or several): ANT's ``types``.

    The text form holds integers only, so such an option is given in the dict form:
    ``{"format": "ant", "bits": 4, "types": ["int", "pot"]}``.

    Parameters
    ----------
    name : str
        Lowercase letters.
    choices : sequence of str
        The names the option takes.
    doc : str
        What the option means, one phrase (shown in messages).
    many : bool
        Take a non-empty list of choices (which becomes a tuple without repeats, in the given
        order); a lone name is a one-name list. Without ``many``, exactly one name.
    """

    name: str
    choices: tuple
    doc: str = ""
    many: bool = False

    def __post_init__(self):
        self._check_declaration()
        choices = (self.choices,) if isinstance(self.choices, str) else tuple(self.choices)
        if not choices or not all(isinstance(c, str) for c in choices):
            raise InputError(f"option {self.name!r}: choices must be one or more strings, not {self.choices!r}")
        object.__setattr__(self, "choices", choices)

    def allowed(self, bits):
        names = ", ".join(map(repr, self.choices))
        what = f"a list of one or more of {names}" if self.many else f"one of {names}"
        return f"{what}, in the dict form"

    def _one(self, value):
        if not isinstance(value, str) or value not in self.choices:
            raise _Rejected
        return value

    def _validate(self, value, bits):
        if not self.many:
            return self._one(value)
        values = (value,) if isinstance(value, str) else value
        if not _is_sequence(values):
            raise _Rejected
        values = tuple(dict.fromkeys(self._one(v) for v in values))
        if not values:
            raise _Rejected
        return values


def declare_options(*options):
    """Decorator: declare the spec options a calibrator takes.

    Put it under ``@CALIBRATORS.register(name)``. The declaration is the one list of the format's
    options: :func:`hwq.quant.spec.parse_spec` and :func:`check_options` both read it. A
    calibrator without one takes no options.

    Parameters
    ----------
    *options : SpecOption
        :class:`IntOption` and :class:`ChoiceOption` instances with distinct names.

    Returns
    -------
    callable
        A decorator that records ``options`` on the calibrator and returns it unchanged.

    Raises
    ------
    InputError
        If an entry is not a :class:`SpecOption` or two share a name.

    Examples
    --------
    >>> @declare_options(IntOption("k", 1, lambda bits: bits, doc="significant bits"))
    ... def calibrate_esb(x, bits, *, role, per_channel, options): ...
    >>> declared = calibrate_esb.spec_options
    >>> [option.name for option in declared]
    ['k']
    """
    for option in options:
        if not isinstance(option, SpecOption):
            raise InputError(f"declare_options takes IntOption or ChoiceOption entries, not {option!r}")
    names = [option.name for option in options]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise InputError(f"declare_options names option(s) {', '.join(map(repr, twice))} twice")

    def decorate(calibrator):
        setattr(calibrator, _DECLARATION, tuple(options))
        return calibrator

    return decorate


def declared_options(name):
    """The spec options format ``name``'s calibrator declares (``()`` without a declaration).

    Parameters
    ----------
    name : str
        Format name. A format without a calibrator has no options.

    Returns
    -------
    tuple of SpecOption
    """
    return tuple(getattr(CALIBRATORS.get(name), _DECLARATION, ()))


def check_options(name, options, bits, *, spec=None):
    """Check format ``name``'s options at code width ``bits`` against its calibrator's declaration.

    The one check of spec options: :func:`hwq.quant.spec.parse_spec` runs it when a spec is read,
    :func:`calibrate_tensor` before calibrating, and each calibrator on what it is given.

    Parameters
    ----------
    name : str
        Format name (its calibrator's :func:`declare_options` says what it takes).
    options : mapping
        Option name -> value.
    bits : int
        Code width (bounds such as ESB's ``k <= bits`` depend on it).
    spec : object, optional
        The spec as the user wrote it, named at the start of messages.

    Returns
    -------
    dict
        The options with canonical values (:meth:`SpecOption.validate`), in the given order.

    Raises
    ------
    InputError
        For an option the format does not declare (the message lists those it does), or a value
        of the wrong type or out of range (the message says what the option takes).
    TypeError
        If ``bits`` is a list of names: the old ``check_options(name, options, allowed)`` form;
        declare the options with :func:`declare_options` instead.
    """
    if isinstance(bits, (tuple, list, set, frozenset)):
        raise TypeError("check_options(name, options, bits) takes the code width; declare a calibrator's "
                        "options with @declare_options(...) (hwq.formats.calibration) instead of listing them")
    prefix = f"format spec {spec!r}: " if spec is not None else ""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 1:
        raise InputError(f"{prefix}{name} bit width must be a positive integer, not {bits!r}")
    if not isinstance(options, dict):
        raise InputError(f"{prefix}{name} options must be a dict of option name to value, not {options!r}")
    declared = {option.name: option for option in declared_options(name)}
    unknown = [key for key in options if key not in declared]
    if unknown:
        known = "; ".join(option.describe(bits) for option in declared.values()) or "none"
        close = [match for key in unknown if isinstance(key, str)
                 for match in difflib.get_close_matches(key, list(declared), n=1)]
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise InputError(f"{prefix}{name} has no option {', '.join(map(repr, unknown))}{hint}; its options: {known}")
    checked = {}
    for key, value in options.items():
        try:
            checked[key] = declared[key].validate(value, int(bits))
        except InputError as exc:
            raise InputError(f"{prefix or f'{name}{int(bits)} '}{exc}") from None
    return checked
