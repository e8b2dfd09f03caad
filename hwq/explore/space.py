"""The design space of a sweep: format x weight/activation bits x PE array x pipeline stages x
mapping x nextpnr seed.

A :class:`Space` is checked when it is made (every error names the dimension and the value at
fault) and enumerates its :class:`Point` s in a fixed order. The accuracy of a point depends only
on its format and bits (:attr:`Point.accuracy_key`): a sweep quantizes and evaluates each such
pair once, however many arrays, mappings and seeds share it.
"""

import dataclasses
import itertools

from ..errors import InputError

__all__ = ["Point", "Space", "DEFAULT_SPACE", "MAPPINGS", "TARGETS"]

#: where a point's products go (:data:`hwq.accel_build.ARRAY_MAPPINGS`): SB_MAC16 blocks where the
#: operands fit (``auto``), LUT fabric, or SB_MAC16 blocks (a point whose operands do not fit an
#: 8 x 8 multiplier, or whose weights are AUSN's, is then recorded as refused)
MAPPINGS = ("auto", "fabric", "dsp")
#: the parts a sweep synthesizes for (:data:`hwq.accel_build.TARGETS` without ``sim``)
TARGETS = ("up5k", "hx8k")
#: widest code the accelerator's edge decoders take (:data:`hwq.accel.array.MAX_TABLE_BITS`)
_MAX_BITS = 8


@dataclasses.dataclass(frozen=True, order=True)
class Point:
    """One design: a format at ``w_bits`` / ``a_bits`` on an ``array`` of PEs.

    Attributes
    ----------
    format : str
        A format with a PE (``hwq.pe.PE_CLASSES``): ``fxp``, ``ant``, ``esb``, ``ausn``, ``uniq``.
    w_bits, a_bits : int
        Weight and activation code widths, 2 to 8.
    array : str
        ``"RxC"``: rows (output positions) x columns (output channels).
    mapping : str
        One of :data:`MAPPINGS`.
    seed : int
        nextpnr's placer seed.
    pipeline : int
        The PE array's product register stages (:class:`hwq.accel.array.PEArray`).
    """

    format: str
    w_bits: int
    a_bits: int
    array: str
    mapping: str = "auto"
    seed: int = 1
    pipeline: int = 0

    @property
    def config(self):
        """``"w<bits>a<bits>"``."""
        return f"w{self.w_bits}a{self.a_bits}"

    @property
    def accuracy_key(self):
        """``(format, w_bits, a_bits)``: what the point's accuracy depends on."""
        return self.format, self.w_bits, self.a_bits

    @property
    def pes(self):
        """Number of PEs, ``R * C``."""
        rows, cols = self.array.split("x")
        return int(rows) * int(cols)

    @property
    def name(self):
        """A short unique name, e.g. ``fxp_w4a4_1x8_p0_auto_s1``."""
        return f"{self.format}_{self.config}_{self.array}_p{self.pipeline}_{self.mapping}_s{self.seed}"

    def as_dict(self):
        """The point's fields as a JSON-able dict."""
        return dataclasses.asdict(self)


def _array(text):
    if not isinstance(text, str):
        raise InputError(f"array {text!r}: expected 'RxC', e.g. '1x8'")
    rows, sep, cols = text.strip().lower().partition("x")
    if not sep or not rows.isdigit() or not cols.isdigit() or int(rows) < 1 or int(cols) < 1:
        raise InputError(f"array {text!r}: expected 'RxC' with R and C positive integers, e.g. '1x8'")
    from ..accel.array import MAX_COLS, MAX_ROWS
    if int(rows) > MAX_ROWS or int(cols) > MAX_COLS:
        raise InputError(f"array {text!r}: the PE array takes 1 to {MAX_ROWS} rows and 1 to {MAX_COLS} columns")
    return f"{int(rows)}x{int(cols)}"


def _bits_pair(item):
    """``(w_bits, a_bits)`` of ``"w4a8"``, an int (both) or a pair."""
    if isinstance(item, str):
        from ..quantize import parse_config
        w, a = parse_config(item.strip().lower())
    elif isinstance(item, int) and not isinstance(item, bool):
        w = a = item
    elif isinstance(item, (tuple, list)) and len(item) == 2:
        w, a = item
    else:
        raise InputError(f"bits {item!r}: expected 'w<bits>a<bits>' (e.g. 'w4a8'), an int or a (w, a) pair")
    for what, value in (("weight", w), ("activation", a)):
        if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= _MAX_BITS:
            raise InputError(f"bits {item!r}: {what} bits must be an integer from 2 to {_MAX_BITS} (the "
                             f"accelerator's edge decoders take codes of at most {_MAX_BITS} bits), not {value!r}")
    return w, a


def _nonempty(name, values):
    if isinstance(values, (str, bytes, int)):
        values = [values]
    values = list(values)
    if not values:
        raise InputError(f"the space's {name} is empty: give at least one")
    return values


@dataclasses.dataclass(frozen=True)
class Space:
    """Every combination of the given dimensions (a Cartesian product).

    Parameters
    ----------
    formats : sequence of str
        Format names with a PE (``hwq.pe.PE_CLASSES``).
    bits : sequence of str, int or (int, int)
        Weight/activation widths: ``"w4a8"``, ``4`` (= ``"w4a4"``) or ``(4, 8)``.
    arrays : sequence of str
        PE arrays ``"RxC"``.
    mappings : sequence of str
        Of :data:`MAPPINGS` (default ``("auto",)``).
    seeds : sequence of int
        nextpnr placer seeds (default ``(1,)``).
    pipelines : sequence of int
        The PE array's product register stages, 0 to :data:`hwq.accel.array.MAX_PIPELINE`
        (default ``(0,)``).
    target : str
        The part, one of :data:`TARGETS` (default ``"up5k"``).

    Raises
    ------
    InputError
        An empty dimension, an unknown format (naming the known ones), bits outside 2..8, a
        malformed array, an unknown mapping or target, a negative seed, pipeline stages out of
        range, or a repeated value.
    """

    formats: tuple
    bits: tuple
    arrays: tuple
    mappings: tuple = ("auto",)
    seeds: tuple = (1,)
    pipelines: tuple = (0,)
    target: str = "up5k"

    def __post_init__(self):
        from ..pe import PE_CLASSES
        formats = _nonempty("formats", self.formats)
        for name in formats:
            if name not in PE_CLASSES:
                raise InputError(f"format {name!r}: unknown; choose from {', '.join(sorted(PE_CLASSES))}")
        bits = [_bits_pair(item) for item in _nonempty("bits", self.bits)]
        arrays = [_array(item) for item in _nonempty("arrays", self.arrays)]
        mappings = _nonempty("mappings", self.mappings)
        for mapping in mappings:
            if mapping not in MAPPINGS:
                raise InputError(f"mapping {mapping!r}: choose from {', '.join(MAPPINGS)}")
        seeds = _nonempty("seeds", self.seeds)
        for seed in seeds:
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise InputError(f"seed {seed!r}: nextpnr's seed is a non-negative integer")
        pipelines = _nonempty("pipelines", self.pipelines)
        from ..accel.array import MAX_PIPELINE
        for stages in pipelines:
            if isinstance(stages, bool) or not isinstance(stages, int) or not 0 <= stages <= MAX_PIPELINE:
                raise InputError(f"pipeline {stages!r}: the PE array takes 0 to {MAX_PIPELINE} product register stages")
        if self.target not in TARGETS:
            raise InputError(f"target {self.target!r}: choose from {', '.join(TARGETS)}")
        for name, values in (("formats", formats), ("bits", bits), ("arrays", arrays), ("mappings", mappings),
                             ("seeds", seeds), ("pipelines", pipelines)):
            repeated = sorted({str(v) for v in values if values.count(v) > 1})
            if repeated:
                raise InputError(f"the space's {name} repeat {', '.join(repeated)}")
            object.__setattr__(self, name, tuple(values))

    def points(self):
        """Every :class:`Point`, format-major, then bits, arrays, pipelines, mappings, seeds (list)."""
        return [Point(fmt, w, a, array, mapping=mapping, seed=seed, pipeline=stages)
                for fmt, (w, a), array, stages, mapping, seed
                in itertools.product(self.formats, self.bits, self.arrays, self.pipelines, self.mappings, self.seeds)]

    def accuracy_keys(self):
        """The distinct ``(format, w_bits, a_bits)`` of the points, in order (list)."""
        return list(dict.fromkeys(p.accuracy_key for p in self.points()))

    def __len__(self):
        return (len(self.formats) * len(self.bits) * len(self.arrays) * len(self.mappings) * len(self.seeds)
                * len(self.pipelines))


#: the default sweep: 3 formats x 2 widths x 3 arrays = 18 points, about 15 minutes on 2 cores
DEFAULT_SPACE = dict(formats=("fxp", "ant", "ausn"), bits=("w4a4", "w8a8"), arrays=("1x2", "1x4", "1x8"))
