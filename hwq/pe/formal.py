"""Formal proof of the PE port contract with yowasp-sby
(docs/architecture.md, "PE port contract"; docs/toolchain.md, "Formal verification").

:class:`AccumulatorProperties` wraps any :class:`~hwq.pe.base.ProcessingElement`. Every input port
of the PE (``a``, ``w``, ``valid``, ``clear`` and any extra input) becomes an input of the wrapper,
so the solver drives it freely on every cycle, ``rst`` included. Beside the PE the wrapper keeps a
reference model of the contract,

    ``sum <- (clear ? 0 : sum) + (valid ? value(a) * value(w) : 0)``,

delayed by the PE's :attr:`~hwq.pe.base.ProcessingElement.latency`, and asserts ``acc == sum`` on
every cycle after the first reset. The reference product does not come from the PE: by default it
multiplies the golden integer values of ``a`` and ``w``, looked up in tables built from
:meth:`hwq.formats.base.NumberFormat.decode`, which ties the proof to :mod:`hwq.formats`.

:func:`prove` writes the wrapper as RTLIL with an ``.sby`` file (mode ``prove``, ``smtbmc yices``)
and runs ``yowasp-sby``, which proves the property by k-induction for all time.

Both sides wrap at the PE's accumulator width (checked to be at least the golden
:func:`~hwq.formats.acc_width`), so the proof also covers sums longer than ``max_terms``, modulo
``2**acc_width``.
"""

import dataclasses
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume, Module, Mux, ResetSignal, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from ..errors import InputError, ToolError
from ..fileio import write_atomic
from ..tools import run_tool, tool_env
from ..formats import NumberFormat, acc_width, product_range
from ..formats.golden import signed_width
from .base import ProcessingElement

__all__ = ["AccumulatorProperties", "add_pe", "reference_sum", "AntDecoderProperties", "golden_value", "golden_product", "ProofResult",
           "prove", "prove_component", "formal_tools", "FORMAL_TOOLS", "TABLE_MAX_BITS", "MODES"]

#: widest code the default golden table reference supports
TABLE_MAX_BITS = 10


def golden_value(m, fmt, code):
    """Integer value of ``code`` in ``fmt``, as a table lookup built from ``fmt.decode``.

    Parameters
    ----------
    m : Module
        Module that receives the lookup logic.
    fmt : NumberFormat
        Golden format of the code.
    code : Value
        The code port; its bit pattern (read unsigned) indexes the codebook.

    Returns
    -------
    Signal
        Signed integer value in units of ``2**fmt.lsb_exp``.
    """
    if fmt.bits > TABLE_MAX_BITS:
        raise InputError(f"{fmt} has {fmt.bits}-bit codes, too wide for the golden table reference "
                       f"(at most {TABLE_MAX_BITS}); pass reference_product=")
    values = [int(v) for v in fmt.int_values]
    value = Signal(signed(signed_width(min(values), max(values))))
    with m.Switch(code.as_unsigned()):
        for index, v in enumerate(values):
            with m.Case(index):
                m.d.comb += value.eq(v)
    return value


def golden_product(a_format, w_format):
    """A ``reference_product`` that multiplies the golden table values of ``a`` and ``w``.

    Parameters
    ----------
    a_format, w_format : NumberFormat
        Golden formats of the activation and weight codes.

    Returns
    -------
    callable
        ``reference_product(m, a, w) -> Value``, the integer product in accumulator units.
    """
    def reference_product(m, a, w):
        product = Signal(signed(signed_width(*product_range(a_format, w_format))))
        m.d.comb += product.eq(golden_value(m, a_format, a) * golden_value(m, w_format, w))
        return product
    return reference_product


def add_pe(m, wrapper, pe):
    """Add ``pe`` to ``m`` as submodule ``pe``, each input driven by the wrapper's port of that
    name (the solver's free inputs); return it."""
    m.submodules.pe = pe
    for name, member in pe.signature.members.items():
        if member.flow == In:
            m.d.comb += getattr(pe, name).eq(getattr(wrapper, name))
    return pe


def reference_sum(m, pe, product, valid, clear):
    """The contract's sum of ``product`` as ``pe`` shows it: registered (latency 1), then
    delayed ``pe.latency - 1`` more cycles, wrapping at ``pe.acc_width`` like the PE."""
    expected = Signal(signed(pe.acc_width), name="ref_sum")
    m.d.sync += expected.eq(Mux(clear, 0, expected) + Mux(valid, product, 0))
    for stage in range(pe.latency - 1):
        delayed = Signal(signed(pe.acc_width), name=f"ref_sum_d{stage + 1}")
        m.d.sync += delayed.eq(expected)
        expected = delayed
    return expected


class AccumulatorProperties(wiring.Component):
    """Formal wrapper that asserts the PE port contract on every cycle after reset.

    Parameters
    ----------
    pe : ProcessingElement
        The PE under proof. Its input ports become this component's input ports (free inputs).
    reference_product : callable, optional
        ``reference_product(m, a, w) -> Value``: the signed integer product ``value(a) *
        value(w)`` in units of ``2**acc_lsb_exp``, built into ``m`` from the code ports ``a`` and
        ``w``. Defaults to :func:`golden_product` of ``a_format`` and ``w_format``.
    a_format, w_format : NumberFormat, optional
        Golden formats for the default reference (the PE's own by default), e.g. one run-time
        mode of a multi-mode PE.
    fixed : dict of str to int, optional
        Extra input ports held at constant values by assumption (a manifest mode's ``set``).

    Notes
    -----
    The golden tables are ``Switch`` statements; Yosys's ``proc`` would turn them into ROMs,
    whose contents are free state in the induction step, so the ``.sby`` script runs
    ``proc -norom`` first (do the same in any other flow).

    The first cycle is assumed to be a reset; after it ``rst`` stays a free input, so resets in
    the middle of a sum are covered. A cycle with ``rst`` high discards its inputs and everything
    in flight in the pipeline, and ``acc`` reads 0 until the first input after reset comes out.
    """

    def __init__(self, pe, *, reference_product=None, a_format=None, w_format=None, fixed=None):
        if not isinstance(pe, ProcessingElement):
            raise InputError(f"AccumulatorProperties wraps a ProcessingElement, not {pe!r}")
        a_format = pe.a_format if a_format is None else a_format
        w_format = pe.w_format if w_format is None else w_format
        for fmt in (a_format, w_format):
            if not isinstance(fmt, NumberFormat):
                raise InputError(f"golden formats must be NumberFormats, not {fmt!r}")
        members = {}
        for name, member in pe.signature.members.items():
            if not member.is_port:
                raise InputError(f"port {name!r} of {pe.module_name} is an interface; "
                               "AccumulatorProperties handles plain ports only")
            if member.flow == In:
                members[name] = In(member.shape)
        self._fixed = dict(fixed or {})
        for name in self._fixed:
            if name not in members or name in ("a", "w", "valid", "clear"):
                raise InputError(f"fixed input {name!r} is not an extra input port of {pe.module_name}")
        need = acc_width(a_format, w_format, pe.max_terms)
        if pe.acc_width < need:
            raise InputError(f"{pe.module_name}: acc is {pe.acc_width} bits, {need} needed for "
                           f"{pe.max_terms} terms; widen the accumulator")
        self._pe = pe
        self._reference_product = (golden_product(a_format, w_format)
                                   if reference_product is None else reference_product)
        super().__init__(members)

    @property
    def pe(self):
        """The PE under proof."""
        return self._pe

    def elaborate(self, platform):
        m = Module()
        pe = add_pe(m, self, self._pe)
        for name, value in self._fixed.items():
            m.d.comb += Assume(getattr(self, name) == value)

        # the first cycle is a reset; asserts start on the cycle after it
        started = Signal(reset_less=True)
        m.d.sync += started.eq(1)
        with m.If(~started):
            m.d.comb += Assume(ResetSignal("sync"))

        expected = reference_sum(m, pe, self._reference_product(m, self.a, self.w), self.valid, self.clear)
        with m.If(started):
            m.d.comb += Assert(pe.acc == expected)
        return m


@dataclasses.dataclass
class ProofResult:
    """Outcome of :func:`prove`.

    Attributes
    ----------
    passed : bool
        The property holds for all time (sby status ``PASS``).
    status : str
        sby's status: ``PASS``, ``FAIL``, ``UNKNOWN``, ``ERROR`` or ``TIMEOUT``.
    log : str
        sby's combined output.
    workdir : Path
        Directory with the RTLIL, the ``.sby`` file and sby's output folder.
    trace : Path or None
        Counterexample VCD, when sby wrote one.
    seconds : float
        Wall time of the sby run.
    """

    passed: bool
    status: str
    log: str
    workdir: Path
    trace: Path | None
    seconds: float

    def __bool__(self):
        return self.passed


#: the tools a proof runs (keys of :data:`hwq.tools.TOOLS`)
FORMAL_TOOLS = ("sby", "yosys", "yosys-smtbmc", "yosys-witness", "yices-smt2")


def formal_tools():
    """Environment for ``yowasp-sby``; :class:`~hwq.errors.InputError` names the fix if a tool is missing.

    Returns
    -------
    dict
        A copy of ``os.environ`` in which ``$SBY``, ``$YOSYS``, ``$SMTBMC`` and ``$WITNESS`` name the
        tools and the interpreter's ``bin/`` (``yices-smt2``) comes first on ``PATH``
        (:func:`hwq.tools.tool_env`; docs/toolchain.md, "Formal verification").
    """
    return tool_env(*FORMAL_TOOLS)


_SBY = """\
[options]
mode {mode}
depth {depth}
multiclock off

[engines]
smtbmc yices

[script]
read_rtlil {name}.il
proc -norom
prep -top {name}
{script}
[files]
{name}.il
"""

#: the sby modes :func:`prove_component` runs
MODES = ("prove", "bmc")


def prove_component(component, workdir, *, name, depth, timeout=300, mode="prove", script=()):
    """Prove the ``Assert`` statements of ``component`` by k-induction with ``yowasp-sby``
    (or check them to a bounded depth, ``mode="bmc"``).

    Parameters
    ----------
    component : wiring.Component
        A property wrapper (fresh: it is elaborated here); its ports are free inputs.
    workdir : path-like
        Directory for ``<name>.il``, ``<name>.sby`` and sby's ``<name>/`` output (created).
    name : str
        Top-level name.
    depth : int
        Steps of the base case and of the induction (``bmc``: steps checked from the initial state).
    timeout : float
        Seconds before sby is stopped (status ``TIMEOUT``).
    mode : str
        sby's mode, one of :data:`MODES`: ``"prove"`` (default: k-induction, the asserts hold for
        all time) or ``"bmc"`` (bounded model check: they hold on every cycle of every trace of
        ``depth`` steps from the initial state; ``PASS`` says nothing of later cycles).
    script : sequence of str
        Yosys commands run after ``prep`` (e.g. ``flatten``, ``memory_map``); none by default.

    Returns
    -------
    ProofResult
    """
    env = formal_tools()
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise InputError(f"depth must be a positive integer, not {depth!r}")
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if isinstance(script, str) or any(not isinstance(c, str) or "\n" in c or not c.strip() for c in script):
        raise InputError(f"script must be a sequence of one-line yosys commands, not {script!r}")
    text = rtlil.convert(component, name=name, emit_src=False)

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    write_atomic(workdir / f"{name}.il", text)
    write_atomic(workdir / f"{name}.sby", _SBY.format(name=name, depth=depth, mode=mode,
                                                         script="".join(f"{c}\n" for c in script)))

    try:
        seconds = run_tool([env["SBY"], "-f", f"{name}.sby"], workdir, f"{name}.sby", f"sby on {name}",
                           timeout=timeout, env=env, check=False)
        log = (workdir / f"{name}.sby.out").read_text(errors="replace")
        status = "ERROR"
        for line in log.splitlines():
            if " DONE (" in line:
                status = line.split(" DONE (", 1)[1].split(",")[0].split(")")[0].strip()
    except ToolError:
        seconds = float(timeout)
        log = (workdir / f"{name}.sby.out").read_text(errors="replace")
        status = "TIMEOUT"
    traces = sorted((workdir / name).glob("engine_*/trace*.vcd"))
    return ProofResult(passed=status == "PASS", status=status, log=log, workdir=workdir,
                       trace=traces[0] if traces else None, seconds=seconds)


def prove(pe, workdir, *, depth=None, name=None, timeout=300, **properties):
    """Prove the port contract of ``pe`` by k-induction with ``yowasp-sby``.

    Parameters
    ----------
    pe : ProcessingElement
        The PE under proof (a fresh instance: it is elaborated inside the wrapper).
    workdir : path-like
        Directory for ``<name>.il``, ``<name>.sby`` and sby's ``<name>/`` output (created).
    depth : int, optional
        Steps of the base case and of the induction; ``pe.latency + 3`` by default. The
        induction of a correct PE needs at least ``pe.latency``; the extra steps let the base case
        find short counterexamples (status ``FAIL`` with a trace rather than ``UNKNOWN``).
    name : str, optional
        Top-level name; ``<pe.module_name>_formal`` by default.
    timeout : float
        Seconds before sby is stopped (status ``TIMEOUT``).
    **properties
        Passed to :class:`AccumulatorProperties` (``reference_product``, ``a_format``,
        ``w_format``, ``fixed``).

    Returns
    -------
    ProofResult
        ``passed`` is true when the contract holds on every cycle for all time.

    Raises
    ------
    InputError
        A tool is missing, or the wrapper rejects the PE; before any file is written.
    """
    formal_tools()
    wrapper = AccumulatorProperties(pe, **properties)
    return prove_component(wrapper, workdir, name=f"{pe.module_name}_formal" if name is None else name,
                           depth=pe.latency + 3 if depth is None else depth, timeout=timeout)


class AntDecoderProperties(wiring.Component):
    """Formal wrapper asserting that an :class:`~hwq.pe.ant.AntDecoder` gives the golden
    ``(sign, significand, shift)`` of :meth:`hwq.formats.ant.Ant.decompose` for every code of every type.

    The code and the type index are free inputs (the type assumed in range). Prove it with
    :func:`prove_component` at depth 1: the decoder is combinational.
    """

    def __init__(self, decoder):
        self._decoder = decoder
        members = {"code": In(decoder.code.shape())}
        if "type" in decoder.signature.members:
            members["type"] = In(decoder.type.shape())
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        dec = m.submodules.decoder = self._decoder
        m.d.comb += dec.code.eq(self.code)
        formats = dec.formats
        if len(formats) > 1:
            m.d.comb += [dec.type.eq(self.type), Assume(self.type < len(formats))]
        for index, fmt in enumerate(formats):
            sign, significand, shift = fmt.decompose(fmt.codes)
            selected = (self.type == index) if len(formats) > 1 else 1
            with m.If(selected):
                with m.Switch(self.code):
                    for code in range(1 << fmt.bits):
                        with m.Case(code):
                            m.d.comb += Assert((dec.sign == int(sign[code]))
                                               & (dec.significand == int(significand[code]))
                                               & (dec.shift == int(shift[code])))
        return m
