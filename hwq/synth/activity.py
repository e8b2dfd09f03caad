r"""Switching activity of an iCE40 netlist from a simulation's SAIF file, per cell type.

The activity-based power model (:func:`hwq.synth.power.estimate_activity_power`) needs, for each
iCE40 cell type, how many cells a design has and how often their outputs toggle per clock cycle.
This module gets those numbers from two files:

* the **netlist**: yosys ``write_verilog -noattr`` output after ``synth_ice40`` (the
  ``netlist.v`` of a synthesis job, hierarchy kept or flattened). It says which cells there are
  and which net each cell output drives;
* a **SAIF** file (Switching Activity Interchange Format, IEEE 1801 annex) of a simulation of that
  netlist against yosys's cell models (``share/ice40/cells_sim.v``), e.g. from Verilator built
  with ``--trace-saif --trace-underscore``. It gives, per net, the time spent at 0 and at 1
  (``T0``, ``T1``) and the number of 0/1 transitions (``TC``).

Cell groups (the keys of :data:`GROUPS`, as in :func:`hwq.synth.yosys.cell_counts`):

=========  =====================================  =========================  ====================
group      cell types                             output pins counted        accesses
=========  =====================================  =========================  ====================
``lut4``   ``SB_LUT4``                            ``O``
``carry``  ``SB_CARRY``                           ``CO``
``ff``     every ``SB_DFF*``                      ``Q``
``dsp``    ``SB_MAC16``                           ``O``, ``CO``, ``ACCUMCO``,
                                                  ``SIGNEXTOUT``
``ram``    ``SB_RAM40_4K*``                       ``RDATA``                  reads: ``RE`` and
                                                                             ``RCLKE``; writes:
                                                                             ``WE`` and ``WCLKE``
``spram``  ``SB_SPRAM256KA``                      ``DATAOUT``                ``CHIPSELECT``;
                                                                             writes with ``WREN``
``other``  anything else (``SB_IO``, ``SB_GB``,   none (counted only)
           oscillators, PLL, unknown blackboxes)
=========  =====================================  =========================  ====================

How a cell output is found in the SAIF: the net its output pin drives, by name, in the SAIF scope
of the module instance that holds the cell (``name`` for a one-bit wire, ``name[i]`` for bit
``i`` of a vector); failing that, the pin itself in the cell instance's own scope (``<cell>/O``),
which Verilator writes when it traces the cell models' ports. Yosys names most nets ``_123_``;
Verilator leaves names that start with ``_`` out of its traces unless built with
``--trace-underscore``. Output bits found in neither place are counted as *untraced*
(:attr:`CellActivity.untraced_bits`) and contribute no toggles.

Memory accesses: the probability that an enable pin is high is its ``T1 / DURATION``; for
registered enables (which change just after a clock edge) that is the fraction of cycles in which
it is sampled high. A read of an ``SB_RAM40_4K`` needs ``RE`` and ``RCLKE`` high; the expected
reads are ``cycles * min(P(RE), P(RCLKE))`` (exact when one of them is tied high, as yosys
usually ties it, or when one implies the other; an upper bound otherwise). Writes likewise with
``WE`` and ``WCLKE``; an ``SB_SPRAM256KA`` access is ``CHIPSELECT`` high, a write
``min(P(CHIPSELECT), P(WREN))`` of them. An untraced enable is taken as always high.

Limits: toggles come from a zero-delay simulation, so glitches (a combinational output toggling
several times in a cycle before it settles) are not counted, and a netlist before place and route
says nothing of routing capacitance; :mod:`hwq.synth.power` states how its model absorbs both.
Verilator starts every signal at 0 and counts the first evaluation at time 0 as a transition, so a
net that settles at 1 has one extra toggle (negligible over thousands of cycles).

Pure Python (the standard library); parses a 5 000-cell netlist and an 8 MB SAIF in a few seconds.
"""

import dataclasses
import re
from pathlib import Path

from ..errors import InputError

__all__ = ["GROUPS", "SaifNet", "SaifScope", "Saif", "read_saif", "Netlist", "read_netlist", "CellActivity",
           "Activity", "cell_activity"]

#: cell groups, in report order
GROUPS = ("lut4", "carry", "ff", "dsp", "ram", "spram", "other")

#: output pins counted per group
_OUTPUTS = {
    "lut4": ("O",),
    "carry": ("CO",),
    "ff": ("Q",),
    "dsp": ("O", "CO", "ACCUMCO", "SIGNEXTOUT"),
    "ram": ("RDATA",),
    "spram": ("DATAOUT",),
    "other": (),
}


def _group(cell_type):
    """The group (a key of :data:`GROUPS`) of an iCE40 cell type."""
    if cell_type == "SB_LUT4":
        return "lut4"
    if cell_type == "SB_CARRY":
        return "carry"
    if cell_type.startswith("SB_DFF"):
        return "ff"
    if cell_type == "SB_MAC16":
        return "dsp"
    if cell_type.startswith("SB_RAM40_4K"):
        return "ram"
    if cell_type == "SB_SPRAM256KA":
        return "spram"
    return "other"


# ---------------------------------------------------------------------------------------------
# SAIF
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SaifNet:
    """One net's switching record in a SAIF file.

    Attributes
    ----------
    t0, t1, tx : int
        Time at 0, at 1 and at X, in the file's TIMESCALE units (0 when the file leaves it out).
    tc : int
        Number of 0 -> 1 and 1 -> 0 transitions.
    """

    t0: int = 0
    t1: int = 0
    tx: int = 0
    tc: int = 0


@dataclasses.dataclass
class SaifScope:
    """One ``INSTANCE`` of a SAIF file.

    Attributes
    ----------
    name : str
        Instance name, escapes removed (``u\\$1`` is ``u$1``).
    nets : dict of str to SaifNet
        Its nets and ports by name, escapes removed (``count[3]`` for bit 3 of ``count``).
    children : dict of str to SaifScope
        Instances inside it, by name.
    """

    name: str
    nets: dict = dataclasses.field(default_factory=dict)
    children: dict = dataclasses.field(default_factory=dict)

    def walk(self, path=()):
        """Yield ``(path, scope)`` for this scope and every scope below it, ``path`` a tuple of
        instance names starting with this scope's."""
        path = path + (self.name,)
        yield path, self
        for child in self.children.values():
            yield from child.walk(path)


@dataclasses.dataclass
class Saif:
    """A parsed SAIF file (:func:`read_saif`).

    Attributes
    ----------
    path : str
        The file it was read from.
    timescale_s : float
        Seconds per time unit (``TIMESCALE``).
    duration : int
        Simulated time (``DURATION``), in time units.
    instances : dict of str to SaifScope
        Top-level instances by name.
    """

    path: str
    timescale_s: float
    duration: int
    instances: dict

    def scopes(self):
        """Every ``(path, scope)`` in the file, ``path`` a tuple of instance names from the top."""
        for top in self.instances.values():
            yield from top.walk()

    def scope(self, path):
        """The scope at ``path`` (``"tb/dut"``, ``"tb.dut"`` or a tuple of names).

        A path that does not start at a top-level instance is matched against the end of every
        scope's path; it must then name exactly one scope.

        Raises
        ------
        InputError
            If no scope or more than one matches, naming the file and the scopes it has.
        """
        parts = _split_scope(path)
        found = [(p, s) for p, s in self.scopes() if p == parts]
        if not found:
            found = [(p, s) for p, s in self.scopes() if p[-len(parts):] == parts]
        if len(found) == 1:
            return found[0][1]
        shown = ", ".join("/".join(p) for p, _ in list(self.scopes())[:8])
        if not found:
            raise InputError(f"SAIF {self.path} has no instance {'/'.join(parts)!r}; its instances include {shown}")
        raise InputError(f"scope {'/'.join(parts)!r} matches {len(found)} instances of SAIF {self.path} "
                         f"({', '.join('/'.join(p) for p, _ in found[:4])}); give the full path from the top")


def _split_scope(path):
    if isinstance(path, (tuple, list)):
        parts = tuple(str(p) for p in path)
    else:
        text = str(path).strip().strip("/")
        parts = tuple(p for p in re.split(r"[/.]" if "/" not in text else r"/", text) if p)
    if not parts:
        raise InputError(f"scope must name a SAIF instance (e.g. 'tb/dut'), got {path!r}")
    return parts


#: SAIF tokens: a whole net record ``(name (T0 n) (T1 n) ...)`` as one token (the bulk of a file;
#: one regex match instead of a dozen tokens), parentheses, quoted strings, and atoms
#: (identifiers with backslash escapes, numbers)
_SAIF_TOKEN = re.compile(r'\((?:\\.|[^\s()"\\])+\s*(?:\([A-Z][A-Z0-9]*\s+[-+0-9.eE]+\s*\)\s*)+\)'
                         r'|\(|\)|"(?:[^"\\]|\\.)*"|(?:\\.|[^\s()"\\])+')
_NET_RECORD = re.compile(r'\(((?:\\.|[^\s()"\\])+)(.*)\)', re.DOTALL)
_NET_VALUE = re.compile(r'\(([A-Z][A-Z0-9]*)\s+([-+0-9.eE]+)\s*\)')
#: the record as Verilator writes it, parsed in one match
_VERILATOR_RECORD = re.compile(r'\(((?:\\.|[^\s()"\\])+) \(T0 (\d+)\) \(T1 (\d+)\) \(TZ \d+\) \(TX (\d+)\) '
                               r'\(TB \d+\) \(TC (\d+)\)\)')
#: whole-line comments (Verilator starts its SAIF with ``// Generated by verilated_saif``)
_SAIF_COMMENT = re.compile(r"^[ \t]*//[^\n]*", re.MULTILINE)
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9, "ps": 1e-12, "fs": 1e-15}


def _unescape(name):
    if name.startswith('"') and name.endswith('"'):
        name = name[1:-1]
    if "\\" not in name:
        return name
    # drop each escaping backslash; an escaped backslash stays (faster than a regex substitution)
    return name.replace("\\\\", "\0").replace("\\", "").replace("\0", "\\")


def _number(token, path, what):
    try:
        return int(token)
    except ValueError:
        try:
            return int(round(float(token)))
        except ValueError:
            raise InputError(f"SAIF {path}: {what} is {token!r}, not a number") from None


class _SaifParser:
    """Recursive descent over the tokens of a SAIF file."""

    def __init__(self, text, path):
        self.tokens = _SAIF_TOKEN.findall(_SAIF_COMMENT.sub("", text))
        self.pos = 0
        self.path = path

    def fail(self, what):
        raise InputError(f"SAIF {self.path} is malformed: {what} (token {self.pos} of {len(self.tokens)})")

    def next(self):
        if self.pos >= len(self.tokens):
            self.fail("it ends inside a parenthesis")
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def skip_rest(self):
        """Skip to the ``)`` closing the current list (its ``(`` and keyword already read)."""
        depth = 1
        tokens, pos = self.tokens, self.pos
        while depth:
            if pos >= len(tokens):
                self.fail("it ends inside a parenthesis")
            token = tokens[pos]
            pos += 1
            if token == "(":
                depth += 1
            elif token == ")":
                depth -= 1
        self.pos = pos

    def atoms(self):
        """The atoms up to the closing ``)``, consumed."""
        out = []
        while True:
            token = self.next()
            if token == ")":
                return out
            if token == "(":
                self.skip_rest()
            else:
                out.append(token)

    def parse(self):
        if self.next() != "(" or self.next() != "SAIFILE":
            self.fail("it does not start with (SAIFILE")
        timescale, duration, instances = None, None, {}
        while True:
            token = self.next()
            if token == ")":
                break
            if token != "(":
                continue
            key = self.next()
            if key == "TIMESCALE":
                timescale = self.timescale(self.atoms())
            elif key == "DURATION":
                values = self.atoms()
                duration = _number(values[0], self.path, "DURATION") if values else None
            elif key == "INSTANCE":
                scope = self.instance()
                instances[scope.name] = scope
            else:
                self.skip_rest()
        if duration is None or duration <= 0:
            raise InputError(f"SAIF {self.path} has no positive DURATION; write it from a simulation that ran")
        return Saif(str(self.path), timescale if timescale is not None else 1e-9, duration, instances)

    def timescale(self, atoms):
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]+)", "".join(atoms).lower())
        if not match or match.group(2) not in _TIME_UNITS:
            self.fail(f"TIMESCALE {' '.join(atoms)!r}")
        return float(match.group(1)) * _TIME_UNITS[match.group(2)]

    def instance(self):
        names = []
        while True:
            token = self.next()
            if token in "()":
                break
            names.append(token)
        if not names:
            self.fail("an INSTANCE without a name")
        scope = SaifScope(_unescape(names[-1]))
        while token != ")":
            # token is "(" here
            key = self.next()
            if key in ("NET", "PORT"):
                self.nets(scope.nets)
            elif key in ("INSTANCE", "VIRTUAL_INSTANCE"):
                child = self.instance()
                scope.children[child.name] = child
            else:
                self.skip_rest()
            token = self.next()
            while token not in "()":
                token = self.next()
        return scope

    def nets(self, into):
        tokens = self.tokens
        while True:
            token = self.next()
            if token == ")":
                return
            if len(token) > 1 and token[0] == "(":          # a whole record (_SAIF_TOKEN)
                match = _VERILATOR_RECORD.fullmatch(token)
                if match:
                    name, t0, t1, tx, tc = match.groups()
                    into[_unescape(name)] = SaifNet(int(t0), int(t1), int(tx), int(tc))
                    continue
                match = _NET_RECORD.fullmatch(token)
                name = _unescape(match.group(1))
                values = dict(_NET_VALUE.findall(match.group(2)))
                into[name] = SaifNet(*(_number(values.get(key, "0"), self.path, f"{key} of net {name}")
                                       for key in ("T0", "T1", "TX", "TC")))
                continue
            if token != "(":
                self.fail(f"{token!r} in a NET list")
            name = _unescape(self.next())
            values = {}
            while True:
                token = self.next()
                if token == ")":
                    break
                if token != "(":
                    continue
                key = self.next()
                if key in ("T0", "T1", "TX", "TC") and self.pos < len(tokens) and tokens[self.pos] not in "()":
                    values[key] = _number(self.next(), self.path, f"{key} of net {name}")
                    if self.next() != ")":
                        self.skip_rest()
                else:
                    self.skip_rest()     # TZ, TB, IG, COND ... : not used
            into[name] = SaifNet(values.get("T0", 0), values.get("T1", 0), values.get("TX", 0), values.get("TC", 0))


def read_saif(path):
    """Parse a SAIF file.

    Parameters
    ----------
    path : path-like
        The SAIF file (backward SAIF as simulators write it: ``SAIFILE``, ``TIMESCALE``,
        ``DURATION``, nested ``INSTANCE`` blocks with ``NET`` or ``PORT`` lists of
        ``(name (T0 n) (T1 n) (TX n) (TC n) ...)``).

    Returns
    -------
    Saif
        Time scale in seconds, duration in time units and the instance tree; net and instance
        names have their backslash escapes removed (``cnt\\[3\\]`` is ``cnt[3]``). A missing
        ``TIMESCALE`` is taken as 1 ns.

    Raises
    ------
    InputError
        If the file is missing or unreadable, not SAIF, malformed, or has no positive DURATION
        (the message names the file).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise InputError(f"SAIF file {path} does not exist; run the simulation with SAIF tracing "
                         "(Verilator: --trace-saif --trace-underscore)") from None
    except OSError as exc:
        raise InputError(f"SAIF file {path} cannot be read: {exc.strerror or exc}") from None
    return _SaifParser(text, path).parse()


# ---------------------------------------------------------------------------------------------
# Netlist (yosys write_verilog -noattr)
# ---------------------------------------------------------------------------------------------

_V_TOKEN = re.compile(r"""
    (?P<skip>\s+|//[^\n]*|/\*.*?\*/|\(\*(?!\)).*?\*\))
  | (?P<esc>\\\S+)
  | (?P<const>\d*\s*'[sS]?[bBoOdDhH]\s*[0-9a-fA-FxXzZ_?]+)
  | (?P<int>\d+)
  | (?P<id>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<sym>.)
""", re.VERBOSE | re.DOTALL)

_DECLARATIONS = {"input", "output", "inout", "wire", "reg", "tri", "supply0", "supply1", "logic"}
_DIRECTIONS = {"input", "output", "inout"}


@dataclasses.dataclass
class _Instance:
    type: str
    name: str
    connections: dict          # port -> list of bits, LSB first; a bit is (net, index) or a const "0"/"1"/"x"


@dataclasses.dataclass
class _Module:
    name: str
    ports: list = dataclasses.field(default_factory=list)           # names, in order
    directions: dict = dataclasses.field(default_factory=dict)      # port -> input/output/inout
    ranges: dict = dataclasses.field(default_factory=dict)          # net -> (left, right) or None
    instances: list = dataclasses.field(default_factory=list)

    def width(self, name):
        """Bits of net ``name`` (1 for a scalar)."""
        rng = self.ranges.get(name)
        return 1 if rng is None else abs(rng[0] - rng[1]) + 1


@dataclasses.dataclass
class Netlist:
    """A parsed yosys Verilog netlist (:func:`read_netlist`).

    Attributes
    ----------
    path : str
        The file it was read from.
    modules : dict of str to object
        Modules by name (escapes removed): their ports with directions, net widths and
        instances (cells and submodules) with their connections.
    """

    path: str
    modules: dict

    def port_widths(self, module):
        """``{port: (direction, width)}`` of ``module``, in port order."""
        mod = self.modules[module]
        return {p: (mod.directions.get(p, "inout"), mod.width(p)) for p in mod.ports}


class _VerilogParser:
    """Parses the structural Verilog that yosys ``write_verilog`` emits after ``synth_ice40``:
    declarations, ``assign``, cell and module instances; ``always``/``initial`` blocks are
    skipped."""

    def __init__(self, text, path):
        self.path = path
        self.text = text
        tokens = []
        for m in _V_TOKEN.finditer(text):
            kind = m.lastgroup
            if kind == "skip":
                continue
            value = m.group()
            if kind == "esc":
                value, kind = value[1:], "id"
            elif kind == "const":
                value = re.sub(r"\s+", "", value)
            tokens.append((kind, value, m.start()))
        self.tokens = tokens
        self.pos = 0

    def fail(self, what):
        offset = self.tokens[min(self.pos, len(self.tokens) - 1)][2] if self.tokens else 0
        line = self.text.count("\n", 0, offset) + 1
        raise InputError(f"netlist {self.path}:{line}: {what}; expected yosys write_verilog -noattr output")

    def peek(self):
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def next(self):
        if self.pos >= len(self.tokens):
            self.fail("unexpected end of file")
        token = self.tokens[self.pos]
        self.pos += 1
        return token[1]

    def expect(self, value):
        token = self.next()
        if token != value:
            self.fail(f"{value!r} expected, found {token!r}")

    def ident(self):
        if self.pos >= len(self.tokens) or self.tokens[self.pos][0] != "id":
            self.fail(f"a name expected, found {self.peek()!r}")
        return self.next()

    def parse(self):
        modules = {}
        while self.pos < len(self.tokens):
            token = self.next()
            if token == "module":
                module = self.module()
                modules[module.name] = module
            elif token == "`":
                self.skip_line()
            # anything else between modules (timescale remnants, stray ';') is ignored
        return Netlist(str(self.path), modules)

    def skip_line(self):
        offset = self.tokens[self.pos - 1][2]
        end = self.text.find("\n", offset)
        while self.pos < len(self.tokens) and (end < 0 or self.tokens[self.pos][2] < end):
            self.pos += 1

    def module(self):
        mod = _Module(self.ident())
        if self.peek() == "#":
            self.next()
            self.skip_group()
        if self.peek() == "(":
            self.next()
            while True:
                token = self.next()
                if token == ")":
                    break
                if token in _DIRECTIONS:        # ANSI-style header
                    self.pos -= 1
                    self.declaration(mod, header=True)
                    if self.peek() == ")":
                        self.next()
                        break
                elif token != ",":
                    mod.ports.append(token)
        self.expect(";")
        while True:
            token = self.peek()
            if token is None:
                self.fail(f"module {mod.name} has no endmodule")
            if token == "endmodule":
                self.next()
                return mod
            if token in _DECLARATIONS:
                self.declaration(mod)
            elif token == "assign":
                self.skip_statement()
            elif token in ("always", "initial", "always_ff", "always_comb", "always_latch", "function", "task",
                           "generate", "specify"):
                self.skip_block()
            elif token in ("parameter", "localparam", "defparam", "genvar", "integer", "real", "time"):
                self.skip_statement()
            elif token == ";":
                self.next()
            elif self.tokens[self.pos][0] == "id":
                self.instance(mod)
            else:
                self.fail(f"unexpected {token!r} in module {mod.name}")

    def skip_group(self):
        """Skip a balanced ``( ... )`` whose ``(`` is next."""
        self.expect("(")
        depth = 1
        while depth:
            token = self.next()
            if token == "(":
                depth += 1
            elif token == ")":
                depth -= 1

    def skip_statement(self):
        while self.next() != ";":
            pass

    def skip_block(self):
        """Skip ``always``/``initial``/... up to the end of its statement or ``begin ... end``."""
        keyword = self.next()
        ends = {"function": "endfunction", "task": "endtask", "generate": "endgenerate", "specify": "endspecify"}
        if keyword in ends:
            while self.next() != ends[keyword]:
                pass
            return
        self.statement()

    def statement(self):
        while True:
            token = self.peek()
            if token == "@" or token == "#":
                self.next()
                if self.peek() == "(":
                    self.skip_group()
                else:
                    self.next()
                continue
            break
        token = self.next()
        if token == "begin":
            depth = 1
            while depth:
                token = self.next()
                if token in ("begin", "case", "casez", "casex", "fork"):
                    depth += 1
                elif token in ("end", "endcase", "join"):
                    depth -= 1
        elif token in ("if",):
            self.skip_group()
            self.statement()
            if self.peek() == "else":
                self.next()
                self.statement()
        elif token in ("case", "casez", "casex"):
            while self.next() != "endcase":
                pass
        elif token != ";":
            while self.next() != ";":
                pass

    def range(self):
        """``[left:right]`` -> (left, right); ``[i]`` -> (i, i)."""
        self.expect("[")
        left = self.integer()
        right = left
        if self.peek() == ":":
            self.next()
            right = self.integer()
        self.expect("]")
        return left, right

    def integer(self):
        sign = 1
        if self.peek() == "-":
            self.next()
            sign = -1
        token = self.next()
        if not token.isdigit():
            self.fail(f"a constant index expected, found {token!r}")
        return sign * int(token)

    def declaration(self, mod, header=False):
        kind = self.next()
        direction = kind if kind in _DIRECTIONS else None
        while self.peek() in ("wire", "reg", "signed", "logic", "tri"):
            self.next()
        rng = self.range() if self.peek() == "[" else None
        while True:
            name = self.ident()
            if direction:
                mod.directions[name] = direction
                if header:
                    mod.ports.append(name)
            if rng is not None or name not in mod.ranges:
                mod.ranges[name] = rng
            if self.peek() == "[":          # an array (memory): not a net, skip its dimension
                self.range()
            if self.peek() == "=":
                while self.peek() not in (",", ";", ")"):
                    self.next()
            token = self.peek()
            if token == ",":
                self.next()
                if header and self.peek() in _DIRECTIONS:
                    return
                continue
            if header:
                return
            self.expect(";")
            return

    def instance(self, mod):
        cell_type = self.ident()
        if self.peek() == "#":
            self.next()
            self.skip_group()
        name = self.ident()
        if self.peek() == "[":
            self.range()
        self.expect("(")
        connections = {}
        if self.peek() != ")":
            while True:
                if self.peek() == ".":
                    self.next()
                    port = self.ident()
                    self.expect("(")
                    connections[port] = self.expression(mod) if self.peek() != ")" else []
                    self.expect(")")
                else:
                    self.fail(f"instance {name} of {cell_type} uses positional connections")
                if self.peek() == ",":
                    self.next()
                    continue
                break
        self.expect(")")
        self.expect(";")
        mod.instances.append(_Instance(cell_type, name, connections))

    def expression(self, mod):
        """Bits of one expression, LSB first: identifiers, bit and part selects, sized constants,
        concatenations and replications."""
        kind = self.tokens[self.pos][0] if self.pos < len(self.tokens) else None
        token = self.peek()
        if token == "{":
            self.next()
            if self.tokens[self.pos][0] == "int" and self.tokens[self.pos + 1][1] == "{":
                count = int(self.next())
                self.next()
                bits = self.expression(mod)
                self.expect("}")
                self.expect("}")
                return bits * count
            parts = [self.expression(mod)]
            while self.peek() == ",":
                self.next()
                parts.append(self.expression(mod))
            self.expect("}")
            return [bit for part in reversed(parts) for bit in part]
        if kind == "const":
            return self.constant(self.next())
        if kind == "int":
            return self.constant(f"32'd{self.next()}")
        if kind == "id":
            name = self.next()
            rng = mod.ranges.get(name)
            if self.peek() == "[":
                left, right = self.range()
            elif rng is None:
                return [(name, None)]
            else:
                left, right = rng
            step = 1 if left >= right else -1
            return [(name, i) for i in range(right, left + step, step)]
        self.fail(f"unexpected {token!r} in a port connection")

    def constant(self, text):
        size, _, rest = text.partition("'")
        rest = rest.lstrip("sS")
        base, digits = rest[0].lower(), rest[1:].replace("_", "").lower()
        width = int(size) if size else 32
        bits_per = {"b": 1, "o": 3, "h": 4}.get(base)
        if bits_per is None:                     # decimal
            value = int(digits) if digits.isdigit() else None
            chars = [("1" if value >> i & 1 else "0") if value is not None else "x" for i in range(width)]
            return chars
        chars = []
        for digit in reversed(digits):
            if digit in "xz?":
                chars += ["x"] * bits_per
            else:
                value = int(digit, 16)
                chars += ["1" if value >> i & 1 else "0" for i in range(bits_per)]
        chars = chars[:width]
        pad = chars[-1] if chars and chars[-1] == "x" else "0"
        return chars + [pad] * (width - len(chars))


def read_netlist(path):
    """Parse a yosys Verilog netlist (``write_verilog -noattr`` after ``synth_ice40``).

    Parameters
    ----------
    path : path-like
        The netlist, hierarchy kept or flattened.

    Returns
    -------
    Netlist

    Raises
    ------
    InputError
        If the file is missing or is not structural Verilog of this kind (naming file and line).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise InputError(f"netlist {path} does not exist; synthesis writes it as yosys/netlist.v "
                         "(hwq-build --no-cache keeps it)") from None
    except OSError as exc:
        raise InputError(f"netlist {path} cannot be read: {exc.strerror or exc}") from None
    netlist = _VerilogParser(text, path).parse()
    if not netlist.modules:
        raise InputError(f"netlist {path} has no module; expected yosys write_verilog output")
    return netlist


# ---------------------------------------------------------------------------------------------
# Activity
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CellActivity:
    """Activity of one cell group over a whole simulation (totals, not rates).

    Attributes
    ----------
    cells : int
        Number of cells.
    output_bits : int
        Output-pin bits connected to a net (see the module docstring for the pins per group).
    toggles : int
        Transitions of those outputs over the run (SAIF ``TC``, summed).
    untraced_bits : int
        Output bits (and, for memories, enable pins) not found in the SAIF.
    mult_toggles : int
        ``SB_MAC16`` only: sum over the blocks of ``toggles(A) * width(B) + toggles(B) *
        width(A)``, with ``toggles(X)`` the transitions of operand ``X``'s pins over the run and
        ``width(X)`` the number of its pins not tied to a constant: how many partial products
        an input transition touches, the activity measure of the multiplier array
        (:mod:`hwq.synth.power`).
    reads, writes : float
        Memories only: expected read and write accesses over the run (module docstring).
    """

    cells: int = 0
    output_bits: int = 0
    toggles: int = 0
    untraced_bits: int = 0
    mult_toggles: int = 0
    reads: float = 0.0
    writes: float = 0.0

    def to_dict(self):
        out = dataclasses.asdict(self)
        out["reads"], out["writes"] = round(self.reads, 6), round(self.writes, 6)
        return out


@dataclasses.dataclass(frozen=True)
class Activity:
    """Switching activity of a synthesized design in one simulation, per cell group.

    Attributes
    ----------
    top : str
        The netlist module it describes.
    scope : str
        Its instance in the SAIF, as a ``/``-separated path from the SAIF's top.
    cycles : int
        Clock cycles the simulation covered (the rates are per one of them).
    duration_s : float
        Simulated time, seconds (SAIF ``DURATION`` times ``TIMESCALE``).
    groups : dict of str to CellActivity
        One entry per key of :data:`GROUPS` (zeros for absent cells).
    """

    top: str
    scope: str
    cycles: int
    duration_s: float
    groups: dict

    def count(self, group):
        """Number of cells of ``group``."""
        return self.groups[group].cells

    def toggles_per_cycle(self, group=None):
        """Output toggles per clock cycle of ``group``, or of every group when ``None``."""
        groups = GROUPS if group is None else (group,)
        return sum(self.groups[g].toggles for g in groups) / self.cycles

    def accesses_per_cycle(self, group):
        """Read plus write accesses per cycle of the memories of ``group`` (``ram``, ``spram``)."""
        g = self.groups[group]
        return (g.reads + g.writes) / self.cycles

    def mult_toggles_per_cycle(self):
        """``SB_MAC16`` partial-product activity per cycle (:attr:`CellActivity.mult_toggles`)."""
        return self.groups["dsp"].mult_toggles / self.cycles

    @property
    def untraced_bits(self):
        """Output and enable bits not found in the SAIF, all groups."""
        return sum(g.untraced_bits for g in self.groups.values())

    def summary(self):
        """``{group: {"cells", "toggles_per_cycle"[, "accesses_per_cycle"]}}`` (rounded), for reports."""
        out = {}
        for group in GROUPS:
            g = self.groups[group]
            row = {"cells": g.cells, "toggles_per_cycle": round(g.toggles / self.cycles, 4)}
            if group in ("ram", "spram"):
                row["accesses_per_cycle"] = round(self.accesses_per_cycle(group), 4)
            if group == "dsp":
                row["mult_toggles_per_cycle"] = round(self.mult_toggles_per_cycle(), 4)
            out[group] = row
        return out

    def to_dict(self):
        """Plain JSON-able dict (deterministic: no paths, no times)."""
        return {"top": self.top, "scope": self.scope, "cycles": self.cycles,
                "duration_s": float(f"{self.duration_s:.9g}"),
                "groups": {g: self.groups[g].to_dict() for g in GROUPS}}

    @classmethod
    def from_dict(cls, data):
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        InputError
            If a field is missing or the cycle count is not positive.
        """
        try:
            groups = {g: CellActivity(**data["groups"].get(g, {})) for g in GROUPS}
            activity = cls(str(data["top"]), str(data["scope"]), int(data["cycles"]), float(data["duration_s"]),
                           groups)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"activity record is incomplete or malformed ({exc})") from None
        if activity.cycles <= 0:
            raise InputError(f"activity record has cycles={activity.cycles}; it must be positive")
        return activity

    @classmethod
    def idle(cls, top="blank"):
        """The activity of a design that does nothing (no cells, no toggles)."""
        return cls(top, "", 1, 0.0, {g: CellActivity() for g in GROUPS})


def _bit_key(bit):
    name, index = bit
    return name if index is None else f"{name}[{index}]"


def _find_scope(saif, netlist, top):
    """The SAIF scope whose nets best match module ``top``'s declared nets."""
    mod = netlist.modules[top]
    wanted = set()
    for name, rng in mod.ranges.items():
        if rng is None:
            wanted.add(name)
        else:
            left, right = rng
            step = 1 if left >= right else -1
            wanted.update(f"{name}[{i}]" for i in range(right, left + step, step))
    children = {inst.name for inst in mod.instances}
    scored = []
    for path, scope in saif.scopes():
        if not scope.nets and not scope.children:
            continue
        hits = len(wanted.intersection(scope.nets)) + len(children.intersection(scope.children))
        scored.append((hits / max(1, len(wanted) + len(children)), path))
    scored.sort(key=lambda item: -item[0])
    if not scored or scored[0][0] < 0.5:
        best = f" (best: {'/'.join(scored[0][1])}, {scored[0][0]:.0%} of its nets)" if scored else ""
        raise InputError(f"SAIF {saif.path} has no instance of module {top} of netlist {netlist.path}{best}; "
                         "pass scope='tb/dut', and trace with --trace-underscore so yosys's _N_ nets are in it")
    ties = [path for score, path in scored if score == scored[0][0]]
    if len(ties) > 1:
        raise InputError(f"SAIF {saif.path} has {len(ties)} instances that match module {top} equally "
                         f"({', '.join('/'.join(p) for p in ties[:4])}); pass scope= to choose one")
    return scored[0][1]


def cell_activity(saif_path, netlist_path, *, top, cycles, scope=None):
    """Per-cell-type switching activity of a synthesized design in one simulation.

    Parameters
    ----------
    saif_path : path-like or Saif
        The SAIF of a simulation of the netlist (:func:`read_saif`; a parsed :class:`Saif` is
        used as is, e.g. for several designs simulated together).
    netlist_path : path-like or Netlist
        The yosys ``write_verilog -noattr`` netlist that was simulated (:func:`read_netlist`).
    top : str
        The netlist module to count: the design (the simulated top may wrap it, e.g. a cocotb
        testbench or the synthesis harness), with everything below it.
    cycles : int
        Clock cycles the SAIF covers (all rates are per cycle of this clock).
    scope : str or tuple of str, optional
        The SAIF instance of ``top`` (``"tb/dut"``, or its trailing part if unique). By default
        the instance whose nets match ``top``'s declared nets best (at least half of them, one
        instance only).

    Returns
    -------
    Activity
        Cells, output toggles, multiplier activity and memory accesses per group
        (:data:`GROUPS`), totals over the run; ``Activity.toggles_per_cycle(group)`` etc. give
        the rates.

    Raises
    ------
    InputError
        If a file is missing or malformed, ``top`` is not a module of the netlist, ``cycles`` is
        not a positive integer, the SAIF has no (unique) instance of ``top``, no cell output of
        ``top`` is traced in it, or a flip-flop output toggles more than ``cycles + 1`` times
        (the SAIF covers more cycles than given). Each message names the file or
        parameter at fault.
    """
    if isinstance(cycles, bool) or not isinstance(cycles, int) or cycles <= 0:
        raise InputError(f"cycles must be a positive integer (the clock cycles the SAIF covers), got {cycles!r}")
    saif = saif_path if isinstance(saif_path, Saif) else read_saif(saif_path)
    netlist = netlist_path if isinstance(netlist_path, Netlist) else read_netlist(netlist_path)
    top = top.lstrip("\\")
    if top not in netlist.modules:
        raise InputError(f"netlist {netlist.path} has no module {top!r}; it has "
                         f"{', '.join(sorted(netlist.modules)[:8])}")
    path = _split_scope(scope) if scope is not None else _find_scope(saif, netlist, top)
    root = saif.scope(path)
    if scope is not None:
        path = next(p for p, s in saif.scopes() if s is root)

    totals = {g: dict(cells=0, output_bits=0, toggles=0, untraced_bits=0, mult_toggles=0, reads=0.0, writes=0.0)
              for g in GROUPS}
    duration = saif.duration
    worst_ff = (0, "")
    traced = 0

    def lookup(saif_scope, inst, port, index, width, bit):
        """SAIF record of one pin bit: the net it connects to, else the cell's own port."""
        if saif_scope is None:
            return None
        net = saif_scope.nets.get(_bit_key(bit))
        if net is None:                 # a one-bit vector traced as a scalar, or the other way round
            net = saif_scope.nets.get(f"{bit[0]}[0]" if bit[1] is None else bit[0] if bit[1] == 0 else "")
        if net is None:
            own = saif_scope.children.get(inst.name)
            if own is not None:
                net = own.nets.get(port if width == 1 else f"{port}[{index}]")
                if net is None and width == 1:
                    net = own.nets.get(f"{port}[0]")
        return net

    def high(saif_scope, inst, port, acc, default):
        """Probability that one-bit input ``port`` is high (tied: 0 or 1; unconnected: the cell
        model's default; untraced: 1)."""
        bits = inst.connections.get(port)
        if not bits:
            return default
        bit = bits[0]
        if isinstance(bit, str):
            return 1.0 if bit == "1" else 0.0
        net = lookup(saif_scope, inst, port, 0, 1, bit)
        if net is None:
            acc["untraced_bits"] += 1
            return 1.0
        return min(1.0, net.t1 / duration)

    def operand(saif_scope, inst, port):
        """(toggles, non-constant width) of a multi-bit input."""
        toggles = width = 0
        bits = inst.connections.get(port, [])
        for index, bit in enumerate(bits):
            if isinstance(bit, str):
                continue
            width += 1
            net = lookup(saif_scope, inst, port, index, len(bits), bit)
            if net is not None:
                toggles += net.tc
        return toggles, width

    def walk(module, saif_scope, where):
        nonlocal worst_ff, traced
        for inst in module.instances:
            if inst.type in netlist.modules:
                child = saif_scope.children.get(inst.name) if saif_scope is not None else None
                walk(netlist.modules[inst.type], child, f"{where}/{inst.name}")
                continue
            group = _group(inst.type)
            acc = totals[group]
            acc["cells"] += 1
            for port in _OUTPUTS[group]:
                bits = inst.connections.get(port, [])
                for index, bit in enumerate(bits):
                    if isinstance(bit, str):
                        continue
                    acc["output_bits"] += 1
                    net = lookup(saif_scope, inst, port, index, len(bits), bit)
                    if net is None:
                        acc["untraced_bits"] += 1
                        continue
                    acc["toggles"] += net.tc
                    traced += 1
                    if group == "ff" and net.tc > worst_ff[0]:
                        worst_ff = (net.tc, f"{where}/{_bit_key(bit)}")
            if group == "dsp":
                toggles_a, width_a = operand(saif_scope, inst, "A")
                toggles_b, width_b = operand(saif_scope, inst, "B")
                acc["mult_toggles"] += toggles_a * width_b + toggles_b * width_a
            elif group == "ram":
                # cells_sim.v defaults: RE and WE low, RCLKE and WCLKE high
                acc["reads"] += cycles * min(high(saif_scope, inst, "RE", acc, 0.0),
                                             high(saif_scope, inst, "RCLKE", acc, 1.0))
                acc["writes"] += cycles * min(high(saif_scope, inst, "WE", acc, 0.0),
                                              high(saif_scope, inst, "WCLKE", acc, 1.0))
            elif group == "spram":
                select = high(saif_scope, inst, "CHIPSELECT", acc, 0.0)
                written = min(select, high(saif_scope, inst, "WREN", acc, 0.0))
                acc["writes"] += cycles * written
                acc["reads"] += cycles * (select - written)

    walk(netlist.modules[top], root, "/".join(path))
    if traced == 0 and any(t["output_bits"] for t in totals.values()):
        raise InputError(f"SAIF {saif.path} traces none of the cell outputs of module {top} at scope "
                         f"{'/'.join(path)!r}; build Verilator with --trace-saif --trace-underscore "
                         "(yosys names nets _N_) or pass the right scope=")
    # a flip-flop toggles at most once per cycle, plus once when the simulator first evaluates it
    if worst_ff[0] > cycles + 1:
        raise InputError(f"cycles={cycles} is fewer than the {worst_ff[0]} toggles of flip-flop output "
                         f"{worst_ff[1]} in SAIF {saif.path}; pass the number of clock cycles the SAIF covers")
    groups = {g: CellActivity(**totals[g]) for g in GROUPS}
    return Activity(top, "/".join(path), cycles, duration * saif.timescale_s, groups)
