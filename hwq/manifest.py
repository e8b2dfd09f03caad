"""The PE manifest: its one schema and its one reader.

Every emitted processing element is a pair ``<out>/<module>.v`` and ``<out>/<module>.json``; the
JSON file, the *manifest*, describes the Verilog exactly (docs/architecture.md, "Manifest
contract"). :func:`hwq.pe.manifest.write_pe` writes it; :func:`read_manifest` reads and checks it
for every consumer (synthesis, the cocotb bench, the manifest-only reference model), so a manifest
means the same thing everywhere and a bad one is refused the same way everywhere.

This module imports only the standard library and :mod:`hwq.errors`: the manifest-only reference
model (:mod:`hwq.sim.reference`) uses it without importing the formats or amaranth.

Schema ``hwq-pe-manifest/1``
----------------------------
A JSON object with exactly these keys (the writer emits them in this order):

``module`` : str
    Verilog module name (a Verilog identifier).
``schema`` : str
    :data:`SCHEMA`, ``"hwq-pe-manifest/1"``. A reader refuses any other value, and a manifest
    without it (written before the schema had a version): re-emit the PE.
``verilog`` : str
    File name of the Verilog, a plain name (no directory) relative to the manifest's directory.
``format`` : object
    ``{"name": <PE format>, "a": {...}, "w": {...}, ...}``: ``name`` (str) is required; the
    operands' parameters and any extra PE keys are the format's own (``hwq.formats.from_params``
    reads them).
``ports`` : object
    ``clk``, ``rst``, ``valid``, ``clear``: port names (str). ``a``, ``w``, ``acc``: port objects
    ``{"name": str, "width": int >= 1, "signed": bool}`` with an optional ``"direction"``
    (``"in"`` or ``"out"``; ``acc`` is always an output). Any other key is an extra port (e.g.
    ANT's ``a_type``, UNIQ's ``load_data``): a port object, or a name (a 1-bit input). A value
    that ``modes.<name>.set`` or ``init`` drives must fit its port: an ``n``-bit port takes
    ``-2**(n-1) .. 2**n - 1`` (the bit pattern, read signed or unsigned).
    For ``a`` and ``w``, ``signed`` describes the *code*, not the Verilog declaration: it is
    true exactly when the codebook beside it is two's complement, i.e. some value is negative and
    ``value(code) == unit * (code read as a two's-complement integer)`` for one ``unit > 0``
    (fixed point, ANT's signed int). Sign-magnitude codes (ESB, AUSN, ANT's PoT, float, flint)
    and index codes (UNIQ) are not two's complement: ``signed`` is false even when they have
    negative values. The ports are plain bit vectors either way, driven with the code's bit
    pattern; ``signed`` of every other port is its Verilog signedness.
``latency`` : int, 1 .. :data:`MAX_LATENCY`
    Cycles from the inputs to the ``acc`` that includes them.
``acc_lsb_exp`` : int
    ``acc * 2**acc_lsb_exp`` is the exact sum.
``max_terms`` : int, 1 .. :data:`MAX_TERMS`
    Longest sum that cannot overflow ``acc``.
``codebook`` : object
    ``{"a": [...], "w": [...]}``: entry ``i`` is the exact value of the code whose bit pattern read
    unsigned is ``i``, as ``"p"`` or ``"p/q"`` (``q`` a power of two); ``2**width`` entries. A role
    is present when its code has at most :data:`CODEBOOK_MAX_BITS` bits (and may be left out
    above). For a PE with ``modes`` it is the first mode's codebook.
``modes`` : object, optional
    PEs whose operand types are run-time inputs (ANT's unified PE): ``{name: mode}``, at least
    one, each mode an object with ``set`` (``{port key: int}``, the extra inputs held for the
    whole mode), ``codebook`` (as above), ``acc_lsb_exp`` (int), ``signed`` (``{"a": bool,
    "w": bool}``: the two's-complement rule above applied to the mode's own codebook) and
    optionally ``format`` (``{"a": {...}, "w": {...}}``). The top-level ``format``, ``codebook``,
    ``acc_lsb_exp`` and ``ports.<a|w>.signed`` describe the first mode.
``init`` : list, optional
    PEs that must be loaded before use (UNIQ's ``_load`` variants): one ``{port key: int}`` object
    per clock cycle after reset, every unlisted input 0.
``tools`` : object
    ``{tool: version}`` (str to str) of the tools that shaped the Verilog.
``sha256`` : str
    SHA-256 (64 lowercase hex digits) of the Verilog file's bytes: any edit of the ``.v``, even
    of a comment, makes the manifest stale and the reader refuse it.

Functions
---------
read_manifest(path, *, check_verilog=True)
    Read, check and return a manifest (a dict).
check_manifest(data, where)
    Check an already parsed manifest dict.
key_error(where, key, problem)
    The one-line :class:`~hwq.errors.InputError` for a bad value at a key of a manifest.
verilog_path(manifest, manifest_path)
    The Verilog file a manifest names.
parse_value(text), decode_signed(bits, width), twos_complement(values, width)
    A codebook entry's exact value, a two's-complement reading, the ``signed`` rule.
"""

import hashlib
import json
import re
from fractions import Fraction
from pathlib import Path

from .errors import InputError

__all__ = ["SCHEMA", "CODEBOOK_MAX_BITS", "MAX_TERMS", "MAX_LATENCY", "KEYS", "OPTIONAL_KEYS", "CONTROL_PORTS", "CODE_ROLES",
           "read_manifest", "check_manifest", "key_error", "verilog_path", "parse_value", "decode_signed",
           "twos_complement"]

#: the schema id, written into every manifest under ``"schema"``
SCHEMA = "hwq-pe-manifest/1"

#: codebooks are listed for codes of at most this many bits
CODEBOOK_MAX_BITS = 10

#: Largest ``max_terms`` a manifest may declare: the limit every PE enforces on its own
#: ``max_terms`` (:class:`hwq.pe.base.ProcessingElement` checks against this constant; it lives
#: here because this module must not import :mod:`hwq.pe`). It also bounds the work the bench's
#: ``max_terms`` test does (``2 * max_terms`` cycles per mode): an unbounded value from a hand-edited
#: manifest would make the simulator run, and allocate, without end.
MAX_TERMS = 1 << 24

#: Largest ``latency`` a manifest may declare. hwq's PEs have ``1 + hwq.pe.base.MAX_PIPELINE``
#: (at most 5) cycles; the margin is for hand-written PEs. The bench waits ``latency`` cycles after
#: every reset and keeps ``latency - 1`` sums in flight, so the value must be bounded.
MAX_LATENCY = 1 << 10

#: every key of a manifest, in the order the writer emits them
KEYS = ("module", "schema", "verilog", "format", "ports", "latency", "acc_lsb_exp", "max_terms", "codebook",
        "modes", "init", "tools", "sha256")

#: keys a manifest may leave out
OPTIONAL_KEYS = ("modes", "init")

#: the 1-bit ports every PE has, named by a string in ``ports``
CONTROL_PORTS = ("clk", "rst", "valid", "clear")

#: the code operands
CODE_ROLES = ("a", "w")

_FIX = "re-emit the PE (python -m hwq.build --no-synth, or hwq.pe.write_pe)"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_PORT_KEYS = ("name", "width", "signed", "direction")


def parse_value(text):
    """Exact value of a codebook entry: ``"p"`` or ``"p/q"`` with ``q`` a power of two.

    Ints and Fractions are accepted as they are (the dyadic check still applies).

    Raises
    ------
    InputError
        If ``text`` is not such a value (the message names the value, not where it came from).
    """
    if isinstance(text, bool):
        raise InputError(f"codebook value must be a string like '3' or '-3/4', not {text!r}")
    try:
        value = Fraction(text)
    except (TypeError, ValueError, ZeroDivisionError):
        raise InputError(f"codebook value must be a string like '3' or '-3/4', not {text!r}") from None
    q = value.denominator
    if q & (q - 1):
        raise InputError(f"codebook value {text!r} is not dyadic (denominator {q} is not a power of two)")
    return value


def decode_signed(bits, width):
    """Two's-complement value of a ``width``-bit pattern."""
    return bits - (1 << width) if bits >> (width - 1) & 1 else bits


def twos_complement(values, width):
    """Whether a codebook is two's complement: the rule of ``ports.<a|w>.signed``.

    Parameters
    ----------
    values : sequence of int or Fraction
        Exact value of every code (index = bit pattern read unsigned), ``2**width`` of them.
    width : int
        Code width.

    Returns
    -------
    bool
        True exactly when some value is negative and ``values[c] == unit * decode_signed(c, width)``
        for every code ``c``, with ``unit = values[1] > 0``.
    """
    if len(values) != 1 << width or width < 2 or not any(v < 0 for v in values):
        return False
    unit = values[1]
    return unit > 0 and all(v == unit * decode_signed(c, width) for c, v in enumerate(values))


def verilog_path(manifest, manifest_path):
    """The Verilog file ``manifest`` (read from ``manifest_path``) names: beside the manifest."""
    return Path(manifest_path).parent / manifest["verilog"]


def read_manifest(path, *, check_verilog=True):
    """Read and check the manifest ``path`` against schema :data:`SCHEMA`.

    Parameters
    ----------
    path : str or pathlib.Path
        ``<module>.json``.
    check_verilog : bool
        Also check the Verilog file it names: present beside it, its SHA-256 equal to the
        manifest's ``sha256`` (any edit, even of a comment, is caught) and defining ``module``.

    Returns
    -------
    dict
        The manifest, as parsed (every key of the schema checked).

    Raises
    ------
    InputError
        One line naming the file and the key at fault: the file is missing or not JSON, its
        ``schema`` is missing or not :data:`SCHEMA`, a key is missing, unknown, mistyped or out of
        range (``max_terms`` above :data:`MAX_TERMS`, ``latency`` above :data:`MAX_LATENCY`, a
        ``set``/``init`` value wider than its port), a codebook disagrees with its ``signed``, or (``check_verilog``) the Verilog file is
        missing, does not match ``sha256`` or does not define the module.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"manifest {path} not found; emit the PE first (python -m hwq.build --no-synth)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"manifest {path} is not readable ({exc}); {_FIX}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"manifest {path} is not valid JSON (line {exc.lineno} column {exc.colno}: "
                         f"{exc.msg}); {_FIX}") from None
    check_manifest(data, path)
    if check_verilog:
        _check_verilog(data, path)
    return data


def _check_verilog(data, path):
    verilog = verilog_path(data, path)
    try:
        content = verilog.read_bytes()
    except FileNotFoundError:
        raise InputError(f"manifest {path}: key 'verilog' names {data['verilog']}, which is not beside it "
                         f"({verilog} not found); {_FIX}") from None
    except OSError as exc:
        raise InputError(f"manifest {path}: key 'verilog': {verilog} is not readable ({exc.strerror})") from None
    digest = hashlib.sha256(content).hexdigest()
    if digest != data["sha256"]:
        raise InputError(f"manifest {path}: key 'sha256' does not match {verilog.name} (the file hashes to "
                         f"{digest[:12]}..., the manifest says {data['sha256'][:12]}...): the Verilog was edited "
                         f"after emission; {_FIX}")
    if not re.search(rb"\bmodule\s+" + re.escape(data["module"].encode()) + rb"\b", content):
        raise InputError(f"manifest {path}: key 'module': {verilog.name} defines no module {data['module']!r}; {_FIX}")


class _Checker:
    """Checks one parsed manifest; every error names ``where`` and the key path at fault."""

    def __init__(self, where):
        self.where = where

    def fail(self, key, problem):
        raise key_error(self.where, key, problem)

    def require(self, obj, key, name, expected, what):
        if key not in obj:
            self.fail(name, "is missing")
        value = obj[key]
        if not _is(value, expected):
            self.fail(name, f"must be {what}, not {_short(value)}")
        return value

    def int_at_least(self, obj, key, name, low, high=None):
        value = self.require(obj, key, name, int, "an integer")
        if low is not None and value < low:
            self.fail(name, f"must be an integer >= {low}, not {value}")
        if high is not None and value > high:
            self.fail(name, f"must be an integer <= {high}, not {value}")
        return value

    def identifier(self, value, name):
        if not isinstance(value, str) or not _IDENTIFIER.match(value):
            self.fail(name, f"must be a Verilog identifier, not {_short(value)}")
        return value

    def unknown(self, obj, allowed, prefix):
        extra = [k for k in obj if k not in allowed]
        if extra:
            self.fail(f"{prefix}{extra[0]}", f"is not part of schema {SCHEMA} (allowed here: {', '.join(allowed)})")

    # ------------------------------------------------------------------ sections

    def ports(self, data):
        ports = self.require(data, "ports", "ports", dict, "an object of ports")
        widths = {}
        for key in CONTROL_PORTS:
            self.identifier(self.require(ports, key, f"ports.{key}", str, "a port name (string)"), f"ports.{key}")
        for key in ("a", "w", "acc"):
            self.require(ports, key, f"ports.{key}", dict, "a port object {name, width, signed}")
        for key, entry in ports.items():
            if key in CONTROL_PORTS:
                continue
            name = f"ports.{key}"
            if isinstance(entry, str) and key not in ("a", "w", "acc"):
                self.identifier(entry, name)
                widths[key] = 1
                continue
            if not isinstance(entry, dict):
                self.fail(name, f"must be a port object {{name, width, signed}} or a port name, not {_short(entry)}")
            self.unknown(entry, _PORT_KEYS, f"{name}.")
            self.identifier(self.require(entry, "name", f"{name}.name", str, "a string"), f"{name}.name")
            widths[key] = self.int_at_least(entry, "width", f"{name}.width", 1)
            self.require(entry, "signed", f"{name}.signed", bool, "true or false")
            if "direction" in entry and entry["direction"] not in ("in", "out"):
                self.fail(f"{name}.direction", f"must be 'in' or 'out', not {_short(entry['direction'])}")
        if ports["acc"].get("direction", "out") != "out":
            self.fail("ports.acc.direction", "must be 'out'")
        return ports, widths

    def codebook(self, obj, name, widths, signed):
        """Check codebook ``obj[...]`` at key path ``name`` against the code widths and ``signed``."""
        book = self.require(obj, "codebook", name, dict, "an object {a: [...], w: [...]}")
        self.unknown(book, CODE_ROLES, f"{name}.")
        for role in CODE_ROLES:
            key = f"{name}.{role}"
            width = widths[role]
            if role not in book:
                if width <= CODEBOOK_MAX_BITS:
                    self.fail(key, f"is missing (codes of {width} <= {CODEBOOK_MAX_BITS} bits list their codebook)")
                continue
            entries = book[role]
            if not isinstance(entries, list) or len(entries) != 1 << width:
                what = f"{len(entries)} entries" if isinstance(entries, list) else _short(entries)
                self.fail(key, f"must be a list of 2**{width} = {1 << width} values (the port is {width} bits), "
                               f"not {what}")
            values = []
            for code, text in enumerate(entries):
                if not isinstance(text, str):
                    self.fail(f"{key}[{code}]", f"must be a string like '3' or '-3/4', not {_short(text)}")
                try:
                    values.append(parse_value(text))
                except InputError as exc:
                    self.fail(f"{key}[{code}]", f"is bad: {exc}")
            expected = twos_complement(values, width)
            if signed[role] != expected:
                self.fail(signed.key(role),
                          f"is {_json(signed[role])} but {key} is {'' if expected else 'not '}two's complement"
                          + _signed_detail(values, width, expected)
                          + " (signed is true exactly when the code is two's complement)")

    def modes(self, data, ports, widths):
        modes = data["modes"]
        if not isinstance(modes, dict) or not modes:
            self.fail("modes", f"must be a non-empty object {{name: mode}}, not {_short(modes)}")
        for mode_name, mode in modes.items():
            name = f"modes.{mode_name}"
            if not isinstance(mode, dict):
                self.fail(name, f"must be an object, not {_short(mode)}")
            self.unknown(mode, ("set", "format", "codebook", "acc_lsb_exp", "signed"), f"{name}.")
            self.assignments(self.require(mode, "set", f"{name}.set", dict, "an object {port key: int}"),
                             f"{name}.set", ports, widths)
            if "format" in mode:
                self.require(mode, "format", f"{name}.format", dict, "an object {a: {...}, w: {...}}")
            self.int_at_least(mode, "acc_lsb_exp", f"{name}.acc_lsb_exp", None)
            signed = self.require(mode, "signed", f"{name}.signed", dict, "an object {a: bool, w: bool}")
            self.unknown(signed, CODE_ROLES, f"{name}.signed.")
            for role in CODE_ROLES:
                self.require(signed, role, f"{name}.signed.{role}", bool, "true or false")
            self.codebook(mode, f"{name}.codebook", widths, _Signed(signed, f"{name}.signed.{{}}"))

    def assignments(self, values, name, ports, widths):
        for key, value in values.items():
            if key not in ports:
                self.fail(f"{name}.{key}", "names no port of the manifest's ports")
            if not _is(value, int):
                self.fail(f"{name}.{key}", f"must be an integer, not {_short(value)}")
            width = widths.get(key, 1)                  # the control ports are 1 bit wide
            if not -(1 << (width - 1)) <= value <= (1 << width) - 1:
                self.fail(f"{name}.{key}", f"is {value}, which does not fit the {width}-bit port "
                                           f"(-{1 << (width - 1)} .. {(1 << width) - 1})")

    def init(self, data, ports, widths):
        init = data["init"]
        if not isinstance(init, list):
            self.fail("init", f"must be a list of {{port key: int}} objects, not {_short(init)}")
        for i, entry in enumerate(init):
            if not isinstance(entry, dict):
                self.fail(f"init[{i}]", f"must be an object {{port key: int}}, not {_short(entry)}")
            self.assignments(entry, f"init[{i}]", ports, widths)

    def check(self, data):
        if not isinstance(data, dict):
            raise InputError(f"manifest {self.where} is not a JSON object (it is {_short(data)}); {_FIX}")
        if "schema" not in data:
            raise InputError(f"manifest {self.where}: key 'schema' is missing: not an hwq PE manifest, or one "
                             f"written before schema {SCHEMA}; {_FIX}")
        if data["schema"] != SCHEMA:
            raise InputError(f"manifest {self.where}: key 'schema' is {_short(data['schema'])}, but this hwq "
                             f"reads schema {SCHEMA!r} only; {_FIX}")
        self.unknown(data, KEYS, "")
        for key in KEYS:
            if key not in data and key not in OPTIONAL_KEYS:
                self.fail(key, "is missing")
        self.identifier(self.require(data, "module", "module", str, "a string"), "module")
        verilog = self.require(data, "verilog", "verilog", str, "a file name")
        if not verilog or verilog in (".", "..") or Path(verilog).name != verilog or "\\" in verilog:
            self.fail("verilog", f"must be a plain file name beside the manifest, not {verilog!r}")
        fmt = self.require(data, "format", "format", dict, "an object {name, a, w, ...}")
        self.require(fmt, "name", "format.name", str, "a string")
        ports, widths = self.ports(data)
        self.int_at_least(data, "latency", "latency", 1, MAX_LATENCY)
        self.int_at_least(data, "acc_lsb_exp", "acc_lsb_exp", None)
        self.int_at_least(data, "max_terms", "max_terms", 1, MAX_TERMS)
        self.codebook(data, "codebook", widths,
                      _Signed({r: ports[r]["signed"] for r in CODE_ROLES}, "ports.{}.signed"))
        if "modes" in data:
            self.modes(data, ports, widths)
        if "init" in data:
            self.init(data, ports, widths)
        tools = self.require(data, "tools", "tools", dict, "an object {tool: version}")
        for tool, version in tools.items():
            if not isinstance(version, str):
                self.fail(f"tools.{tool}", f"must be a version string, not {_short(version)}")
        sha = self.require(data, "sha256", "sha256", str, "64 lowercase hex digits")
        if not _SHA256.match(sha):
            self.fail("sha256", f"must be 64 lowercase hex digits, not {_short(sha)}")


class _Signed(dict):
    """``{role: signed}`` and the key path each flag came from."""

    def __init__(self, flags, pattern):
        super().__init__(flags)
        self.pattern = pattern

    def key(self, role):
        return self.pattern.format(role)


def key_error(where, key, problem):
    """The :class:`~hwq.errors.InputError` for a bad value at key path ``key`` of manifest ``where``.

    One line, as every reader error: ``manifest <where>: key '<key>' <problem>; re-emit the PE ...``.
    Consumers that check a manifest's values further (the bench's cross-check against the golden
    model, :mod:`hwq.sim.golden`) word their errors the same way through it.
    """
    return InputError(f"manifest {where}: key {key!r} {problem}; {_FIX}")


def check_manifest(data, where):
    """Check a parsed manifest against schema :data:`SCHEMA` (all but the Verilog file).

    Parameters
    ----------
    data : object
        The parsed JSON.
    where : str or path-like
        The manifest's file (or another name), for the message.

    Raises
    ------
    InputError
        As :func:`read_manifest`.
    """
    _Checker(where).check(data)
    return data


def _is(value, expected):
    """Whether ``value`` is an instance of the Python type(s) ``expected`` (a bool is not an int)."""
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _json(value):
    return json.dumps(value)


def _short(value):
    text = json.dumps(value) if isinstance(value, (dict, list, str, int, float, bool, type(None))) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _signed_detail(values, width, expected):
    """Why a codebook is (or is not) two's complement, e.g. ``: code 8 is -8``."""
    top = 1 << (width - 1)
    if expected:
        return f": code {top} is {values[top]}"
    if not any(v < 0 for v in values):
        return ": it has no negative value"
    return f": code {top} is {values[top]}, code {len(values) - 1} is {values[-1]}"
