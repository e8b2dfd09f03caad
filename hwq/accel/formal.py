"""Formal proofs of the accelerator's blocks with yowasp-sby (docs/toolchain.md, "Formal verification",
"The accelerator's proofs").

Property wrappers in the style of :mod:`hwq.pe.formal`, run by its :func:`~hwq.pe.formal.prove_component`
(``smtbmc yices``). Every wrapper's ports are the solver's free inputs; the first cycle is a reset.

- :class:`EncoderProperties`: a :class:`~hwq.accel.requant.ThresholdEncoder` against its
  :class:`~hwq.integer.requant.EncoderTable` s, for every quotient of its full width, sticky bit, table,
  and clamp, on every cycle, for all time (k-induction).
- :class:`RequantizerProperties`: a :class:`~hwq.accel.requant.Requantizer` with its product
  abstracted (:class:`FreeProductRequantizer`): the shift, sticky bit, rounding and encoder for every
  product within a bound and every shift, for all time (k-induction).
- :class:`AddressGeneratorProperties`: a :class:`~hwq.accel.address.ConvAddressGenerator` running one
  :class:`~hwq.accel.schedule.ConvStep`, with ``ready`` free (a bounded number of stall cycles): every
  address it emits lies in the step's input region or weight words, and ``done`` comes exactly
  ``latency + transfers + stalls`` cycles after ``start`` (bounded model check).
- :class:`AcceleratorProperties`: a whole :class:`~hwq.accel.top.Accelerator` (sequencer, step ROM, conv
  engine, vector unit, weight loader) on a schedule, for every input image, with a host that never
  waits: no access outside the memories or the step's regions, each step's unit done exactly
  :meth:`~hwq.accel.top.Accelerator.step_cycles` after its start, and the inference exactly
  :attr:`~hwq.accel.top.Accelerator.expected_cycles` long (bounded model check past its end).

The references are written here, independently of the implementations: the encoder reference is
the plain definition of docs/integer-semantics.md, "Requantization" (one comparison per threshold,
their count, ``numpy.clip``, the code table), not the binary search or the uniform arithmetic of
:mod:`hwq.accel.requant`; the shift reference is a variable shift and a mask, not its two-stage
shifter.
"""

from amaranth.hdl import Assert, Assume, Module, Mux, ResetSignal, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from ..errors import InputError
from ..integer.requant import MULTIPLIER_BITS, EncoderTable
from ..pe.formal import formal_tools, prove_component
from .address import ConvAddressGenerator
from .requant import Requantizer, ThresholdEncoder
from .schedule import ConvStep, Schedule
from .top import Accelerator

__all__ = ["REFERENCE_MAX_GRID", "reference_index", "reference_code", "EncoderProperties", "prove_encoder",
           "FreeProductRequantizer", "RequantizerProperties", "prove_requantizer", "AddressGeneratorProperties",
           "prove_address_generator", "AcceleratorProperties", "prove_accelerator", "BMC_SCRIPT", "INDUCTION_SCRIPT"]

#: largest table (grid values) the comparison-chain reference takes: 8-bit formats and a little more
REFERENCE_MAX_GRID = 1 << 10

#: yosys commands before a bounded model check of a large design: flattened, so that everything no
#: assertion depends on (the data path) is removed
BMC_SCRIPT = ("flatten", "opt_clean")

#: yosys commands before an induction proof of a design with memories: a memory with ``init`` and
#: no write port becomes constants (its contents are otherwise free state in the induction step)
INDUCTION_SCRIPT = ("memory_map",)


def _tree_sum(values):
    """The sum of ``values`` as a balanced adder tree (0 for none)."""
    values = list(values)
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i] for i in range(0, len(values), 2)]
    return values[0] if values else 0


def _check_tables(tables, what="tables"):
    if isinstance(tables, EncoderTable):
        tables = [tables]
    tables = tuple(tables)
    if not tables or not all(isinstance(t, EncoderTable) for t in tables):
        raise InputError(f"{what} must be a non-empty sequence of EncoderTable")
    for table in tables:
        if len(table.grid) > REFERENCE_MAX_GRID:
            raise InputError(f"{table.format} has {len(table.grid)} grid values, more than the "
                             f"{REFERENCE_MAX_GRID} the comparison-chain reference takes (REFERENCE_MAX_GRID)")
    return tables


def reference_index(m, table, q, sticky, *, name="ref"):
    """The number of thresholds of ``table`` passed by the quotient ``q`` and sticky bit ``sticky``.

    The definition of docs/integer-semantics.md, "Requantization", one comparator per threshold:
    threshold ``j`` is passed iff ``q > thresholds2[j]``, or ``q == thresholds2[j]`` and
    (``sticky`` or ``up_on_tie[j]``); the grid index is the count of those passed.

    Parameters
    ----------
    m : Module
        Receives the logic.
    table : EncoderTable
    q : Value
        Signed quotient, any width.
    sticky : Value
        One bit.
    name : str
        Prefix of the signal names.

    Returns
    -------
    Signal
        ``unsigned``, ``0 ... G - 1``.
    """
    index = Signal(range(len(table.grid)), name=f"{name}_index")
    passed = []
    for j, (t2, up) in enumerate(zip(table.thresholds2, table.up_on_tie)):
        bit = Signal(name=f"{name}_passed{j}")
        m.d.comb += bit.eq((q > int(t2)) | ((q == int(t2)) & (sticky | bool(up))))
        passed.append(bit)
    m.d.comb += index.eq(_tree_sum(passed))
    return index


def reference_code(m, tables, select, q, sticky, low, high, *, width, name="ref"):
    """``codes[clip(index, low, high)]`` of table ``select``: the reference of an encoder's ``code``.

    Parameters
    ----------
    m : Module
    tables : sequence of EncoderTable
    select : Value
        Index into ``tables`` (no code beyond them: 0).
    q, sticky : Value
        As for :func:`reference_index`.
    low, high : Value
        Clamp bounds (grid indices): ``min(max(index, low), high)``, as ``numpy.clip``. The code of a
        clamped index past the table's last grid value is 0 (the wrappers assume ``low`` in the table).
    width : int
        Width of the code.
    name : str

    Returns
    -------
    Signal(width)
    """
    code = Signal(width, name=f"{name}_code")
    bits = max(len(low), len(high), max(len(t.grid) for t in tables).bit_length())
    with m.Switch(select):
        for i, table in enumerate(tables):
            with m.Case(i):
                index = reference_index(m, table, q, sticky, name=f"{name}_t{i}")
                raised = Signal(bits, name=f"{name}_t{i}_raised")
                clamped = Signal(bits, name=f"{name}_t{i}_clamped")
                m.d.comb += [raised.eq(Mux(index < low, low, index)), clamped.eq(Mux(raised > high, high, raised))]
                with m.Switch(clamped):
                    for k, c in enumerate(table.codes):
                        with m.Case(k):
                            m.d.comb += code.eq(int(c))
    return code


def _reset_first(m, *, once=False):
    """A reset-less ``started`` bit, low in the first cycle only, which is assumed a reset; with
    ``once`` no reset after it (the bounded proofs run one schedule from reset)."""
    started = Signal(reset_less=True, name="f_started")
    m.d.sync += started.eq(1)
    if once:
        m.d.comb += Assume(ResetSignal("sync") == ~started)
    else:
        with m.If(~started):
            m.d.comb += Assume(ResetSignal("sync"))
    return started


def _assume_clamp(m, tables, table, low):
    """Assume ``table`` selects a table and ``low`` is one of its grid indices."""
    m.d.comb += Assume(table < len(tables))
    with m.Switch(table):
        for i, t in enumerate(tables):
            with m.Case(i):
                m.d.comb += Assume(low < len(t.grid))


def _delay(m, expected, valid, stages, name):
    """``expected`` (reset-less) and ``valid`` (reset) through ``stages`` registers."""
    for stage in range(stages):
        e = Signal.like(expected, name=f"{name}_d{stage + 1}", reset_less=True)
        v = Signal(name=f"{name}_valid_d{stage + 1}")
        m.d.sync += [e.eq(expected), v.eq(valid)]
        expected, valid = e, v
    return expected, valid


class EncoderProperties(wiring.Component):
    """Formal wrapper asserting that a :class:`~hwq.accel.requant.ThresholdEncoder` encodes every input
    to the code of the number of thresholds passed, :attr:`~hwq.accel.requant.ThresholdEncoder.latency`
    cycles later.

    Free inputs, every cycle: ``q`` (the encoder's full width, saturation included), ``sticky``,
    ``table`` (assumed ``< len(tables)``), ``low`` (assumed a grid index of that table), ``high``
    (any), ``valid``, and ``rst`` after the first cycle (a reset). Asserted on every cycle after the
    first: ``code_valid`` is ``valid`` delayed by the latency, and when it is high ``code`` is
    :func:`reference_code` of the inputs of that many cycles before. Prove it with
    :func:`prove_encoder` (k-induction: for all time).

    Parameters
    ----------
    encoder : ThresholdEncoder
        The encoder under proof (fresh: it is elaborated inside the wrapper).
    tables : sequence of EncoderTable, optional
        The reference tables (default: the encoder's own). A mutant encoder built from other
        tables must fail against these.
    """

    def __init__(self, encoder, *, tables=None):
        if not isinstance(encoder, ThresholdEncoder):
            raise InputError(f"EncoderProperties wraps a ThresholdEncoder, not {type(encoder).__name__}")
        self._encoder = encoder
        self._tables = _check_tables(encoder.tables if tables is None else tables)
        if len(self._tables) != len(encoder.tables):
            raise InputError(f"the encoder has {len(encoder.tables)} tables, the reference {len(self._tables)}")
        super().__init__({"q": In(encoder.q.shape()), "sticky": In(1), "table": In(encoder.table.shape()),
                          "low": In(encoder.low.shape()), "high": In(encoder.high.shape()), "valid": In(1)})

    @property
    def encoder(self):
        """The encoder under proof."""
        return self._encoder

    @property
    def tables(self):
        """The reference tables (tuple)."""
        return self._tables

    def elaborate(self, platform):
        m = Module()
        enc = m.submodules.encoder = self._encoder
        for name in ("q", "sticky", "table", "low", "high", "valid"):
            m.d.comb += getattr(enc, name).eq(getattr(self, name))
        started = _reset_first(m)
        _assume_clamp(m, self._tables, self.table, self.low)
        expected = reference_code(m, self._tables, self.table, self.q, self.sticky, self.low, self.high,
                                  width=len(enc.code))
        expected, valid = _delay(m, expected, self.valid, enc.latency, "expected")
        with m.If(started):
            m.d.comb += Assert(enc.code_valid == valid)
            with m.If(valid):
                m.d.comb += Assert(enc.code == expected)
        return m


def prove_encoder(encoder, workdir, *, tables=None, depth=None, name="encoder_formal", timeout=300):
    """Prove :class:`EncoderProperties` of ``encoder`` by k-induction with ``yowasp-sby``.

    Parameters
    ----------
    encoder : ThresholdEncoder
        A fresh encoder.
    workdir : path-like
    tables : sequence of EncoderTable, optional
        The reference tables (default: the encoder's).
    depth : int, optional
        Default ``latency + 2``: the induction needs ``latency`` steps (the pipeline holds nothing
        older), and the base case reaches the first input after the reset cycle's with two more, so
        that a wrong code is a ``FAIL`` with a trace rather than ``UNKNOWN``.
    name : str
    timeout : float

    Returns
    -------
    ProofResult
        ``passed``: every code is the reference's, on every cycle, for all time.
    """
    formal_tools()
    wrapper = EncoderProperties(encoder, tables=tables)
    return prove_component(wrapper, workdir, name=name, depth=encoder.latency + 2 if depth is None else depth,
                           timeout=timeout, script=INDUCTION_SCRIPT)


class FreeProductRequantizer(Requantizer):
    """A :class:`~hwq.accel.requant.Requantizer` whose product is abstracted, for
    :class:`RequantizerProperties`.

    :meth:`elaborate_product` returns :attr:`free_product` (driven by the wrapper: a free input)
    instead of ``total * multiplier``, and shows its operands on :attr:`seen_sum` and
    :attr:`seen_multiplier`, so that the wrapper can check them. Everything else is the
    requantizer's own logic. Same parameters.
    """

    def __init__(self, tables, **kwargs):
        super().__init__(tables, **kwargs)
        self.free_product = Signal(signed(self.numerator_width), name="free_product")
        self.seen_sum = Signal(signed(self.sum_width), name="seen_sum")
        self.seen_multiplier = Signal(unsigned(MULTIPLIER_BITS), name="seen_multiplier")

    def elaborate_product(self, m, total, multiplier):
        m.d.comb += [self.seen_sum.eq(total), self.seen_multiplier.eq(multiplier)]
        return self.free_product


class RequantizerProperties(wiring.Component):
    """Formal wrapper asserting the requantizer's arithmetic after the product: for every product
    ``n`` with ``|n| <= bound`` and every shift ``S`` (0 to 63), ``code`` is the code of
    ``clip(index, low, high)``, ``index`` the number of thresholds that ``2n / 2**S`` passes.

    The product is abstracted (:class:`FreeProductRequantizer`): ``product`` is a free input, the
    value of the multiplier's output in each cycle, and the wrapper asserts that the multiplier's
    operands in that cycle are the previous cycle's ``acc + bias`` and ``multiplier`` (so the proof
    covers every stage but the ``*`` itself, which amaranth.sim checks against numpy in
    tests/accel/test_requant.py). The reference: ``q = (2n) >> S`` (arithmetic), ``sticky`` the OR
    of ``2n & (2**S - 1)``, then :func:`reference_code` of ``(q, sticky)``, delayed to
    :attr:`~hwq.accel.requant.Requantizer.latency`.

    Free inputs every cycle: ``acc``, ``bias``, ``multiplier``, ``shift``, ``table``, ``low``,
    ``high``, ``valid``, ``product`` (assumed ``|product| <= bound``), ``rst`` after the first
    cycle. Prove it with :func:`prove_requantizer` (k-induction: for all time).

    Parameters
    ----------
    requantizer : FreeProductRequantizer
        Fresh.
    tables : sequence of EncoderTable, optional
        The reference tables (default: the requantizer's).
    bound : int, optional
        Largest ``|n|``; default ``2**(sum_width - 1) * (2**16 - 1)``, the largest ``|(acc + bias) *
        M|`` (every product the multiplier can make), so by default the proof holds for all inputs.
    """

    _INPUTS = ("acc", "bias", "multiplier", "shift", "table", "low", "high", "valid")

    def __init__(self, requantizer, *, tables=None, bound=None):
        if not isinstance(requantizer, FreeProductRequantizer):
            raise InputError("RequantizerProperties wraps a FreeProductRequantizer (the product abstracted), "
                             f"not {type(requantizer).__name__}")
        self._rq = requantizer
        self._tables = _check_tables(requantizer.tables if tables is None else tables)
        if len(self._tables) != len(requantizer.tables):
            raise InputError(f"the requantizer has {len(requantizer.tables)} tables, the reference {len(self._tables)}")
        largest = (1 << (requantizer.sum_width - 1)) * ((1 << MULTIPLIER_BITS) - 1)
        if bound is None:
            bound = largest
        if isinstance(bound, bool) or not isinstance(bound, int) or not 0 <= bound <= largest:
            raise InputError(f"bound must be an integer from 0 to {largest}, not {bound!r}")
        self._bound = bound
        members = {name: In(getattr(requantizer, name).shape()) for name in self._INPUTS}
        members["product"] = In(signed(requantizer.numerator_width))
        super().__init__(members)

    @property
    def requantizer(self):
        return self._rq

    @property
    def bound(self):
        """The largest ``|product|`` covered."""
        return self._bound

    def elaborate(self, platform):
        m = Module()
        rq = m.submodules.requantizer = self._rq
        for name in self._INPUTS:
            m.d.comb += getattr(rq, name).eq(getattr(self, name))
        m.d.comb += rq.free_product.eq(self.product)
        started = _reset_first(m)
        _assume_clamp(m, self._tables, self.table, self.low)
        m.d.comb += Assume((self.product <= self._bound) & (self.product >= -self._bound))

        # stage 1: the multiplier's operands are the previous cycle's sum and multiplier
        total = Signal(signed(rq.sum_width), name="ref_sum", reset_less=True)
        mult = Signal(unsigned(MULTIPLIER_BITS), name="ref_multiplier", reset_less=True)
        side = {name: Signal.like(getattr(self, name), name=f"ref_{name}", reset_less=True)
                for name in ("shift", "table", "low", "high")}
        valid = Signal(name="ref_valid_s1")
        m.d.sync += [total.eq(self.acc + self.bias), mult.eq(self.multiplier), valid.eq(self.valid)]
        m.d.sync += [side[name].eq(getattr(self, name)) for name in side]
        with m.If(started):
            m.d.comb += Assert((rq.seen_sum == total) & (rq.seen_multiplier == mult))

        # the product of this cycle, shifted: floor(2n / 2**S) and the bits shifted out
        doubled = Signal(signed(rq.numerator_width + 1), name="ref_doubled")
        q = Signal(signed(rq.numerator_width + 1), name="ref_q")
        mask = Signal(1 << len(side["shift"]), name="ref_mask")
        sticky = Signal(name="ref_sticky")
        m.d.comb += [doubled.eq(self.product * 2), q.eq(doubled >> side["shift"]),
                     mask.eq((1 << side["shift"]) - 1),
                     sticky.eq((doubled.as_unsigned() & mask[:len(doubled)]).any())]
        expected = reference_code(m, self._tables, side["table"], q, sticky, side["low"], side["high"],
                                  width=len(rq.code))
        expected, valid = _delay(m, expected, valid, rq.latency - 1, "expected")
        with m.If(started):
            m.d.comb += Assert(rq.code_valid == valid)
            with m.If(valid):
                m.d.comb += Assert(rq.code == expected)
        return m


def prove_requantizer(requantizer, workdir, *, tables=None, bound=None, depth=None, name="requantizer_formal",
                      timeout=300):
    """Prove :class:`RequantizerProperties` of ``requantizer`` by k-induction with ``yowasp-sby``.

    Parameters
    ----------
    requantizer : FreeProductRequantizer
        Fresh.
    workdir : path-like
    tables, bound : optional
        As for :class:`RequantizerProperties`.
    depth : int, optional
        Default ``latency + 2`` (as :func:`prove_encoder`).
    name : str
    timeout : float

    Returns
    -------
    ProofResult
    """
    formal_tools()
    wrapper = RequantizerProperties(requantizer, tables=tables, bound=bound)
    return prove_component(wrapper, workdir, name=name, depth=requantizer.latency + 2 if depth is None else depth,
                           timeout=timeout, script=INDUCTION_SCRIPT)


def _region(region):
    return region.base, region.base + region.size


class AddressGeneratorProperties(wiring.Component):
    """Formal wrapper of a :class:`~hwq.accel.address.ConvAddressGenerator` running one
    :class:`~hwq.accel.schedule.ConvStep` (its descriptor held, as the sequencer does).

    Free inputs: ``start`` and ``ready`` on every cycle, ``ready`` low with ``valid`` high (a stall)
    on at most ``max_stalls`` cycles in all. One reset, in the first cycle. Asserted on every cycle
    after it:

    - no buffer overrun: every row address the generator emits (``valid``) where the row is inside
      the input (``inside``) lies in the step's input region ``[src.base, src.base + src.size)``
      (so below the activation memory's depth), and every weight word address in
      ``[weight_base, weight_base + tiles * fan_in)``;
    - bounded response: after a ``start`` taken (not ``busy``), ``done`` is low until, and high
      on, the cycle ``cycles + stalls`` after it, ``cycles = latency + tiles * ceil(OH * OW / R) *
      fan_in`` and ``stalls`` the stall cycles since the start.

    A bounded model check (:func:`prove_address_generator`): it holds on every trace as long as the
    check's depth; a depth of ``cycles + max_stalls`` and a little more covers a whole step with
    any stall pattern.

    Parameters
    ----------
    generator : ConvAddressGenerator
        Fresh.
    step : ConvStep
        Of ``generator``'s rows (:meth:`ConvAddressGenerator.descriptor` checks it).
    max_stalls : int, optional
        Stall cycles allowed in a trace (default 0: ``ready`` is high whenever ``valid`` is). Each
        one makes the check much slower.
    cycles : int, optional
        The bound asserted (default: the computed one, above); a mutant bound must fail.
    region : (int, int), optional
        The input region asserted, ``[lo, hi)`` (default: the step's); likewise.
    """

    def __init__(self, generator, step, *, max_stalls=0, cycles=None, region=None):
        if not isinstance(generator, ConvAddressGenerator):
            raise InputError(f"AddressGeneratorProperties wraps a ConvAddressGenerator, not {type(generator).__name__}")
        self._gen = generator
        self._step = step
        self._desc = generator.descriptor(step)
        if isinstance(max_stalls, bool) or not isinstance(max_stalls, int) or max_stalls < 0:
            raise InputError(f"max_stalls must be a non-negative integer, not {max_stalls!r}")
        self._max_stalls = max_stalls
        self._transfers = step.tiles * -(-step.positions // generator.rows) * step.fan_in
        self._cycles = generator.latency + self._transfers if cycles is None else int(cycles)
        self._region = _region(step.src) if region is None else tuple(region)
        super().__init__({"start": In(1), "ready": In(1)})

    @property
    def generator(self):
        return self._gen

    @property
    def step(self):
        return self._step

    @property
    def transfers(self):
        """Outputs of the step: ``tiles * ceil(OH * OW / R) * fan_in``."""
        return self._transfers

    @property
    def cycles(self):
        """Cycles from ``start`` to ``done`` without stalls (the bound asserted)."""
        return self._cycles

    @property
    def max_stalls(self):
        return self._max_stalls

    def elaborate(self, platform):
        m = Module()
        gen = m.submodules.generator = self._gen
        step = self._step
        m.d.comb += [gen.start.eq(self.start), gen.ready.eq(self.ready)]
        m.d.comb += [getattr(gen, field).eq(value) for field, value in self._desc.items()]
        started = _reset_first(m, once=True)
        stall = gen.valid & ~self.ready
        limit = self._cycles + self._max_stalls + 2
        stalls_total = Signal(range(self._max_stalls + 2), name="f_stalls_total")
        with m.If(stall & (stalls_total <= self._max_stalls)):
            m.d.sync += stalls_total.eq(stalls_total + 1)
        m.d.comb += Assume(stalls_total + stall <= self._max_stalls)

        lo, hi = self._region
        wlo, whi = step.weight_base, step.weight_base + step.tiles * step.fan_in
        with m.If(started & gen.valid):
            for r in range(gen.rows):
                with m.If(gen.inside[r]):
                    m.d.comb += Assert((gen.addr[r] >= lo) & (gen.addr[r] < hi))
            m.d.comb += Assert((gen.weight_addr >= wlo) & (gen.weight_addr < whi))

        running = Signal(name="f_running")
        elapsed = Signal(range(limit + 1), name="f_elapsed")
        stalls = Signal(range(self._max_stalls + 2), name="f_stalls")
        with m.If(running):
            m.d.sync += [elapsed.eq(elapsed + 1), stalls.eq(stalls + stall)]
            m.d.comb += Assert(gen.done == (elapsed >= self._cycles + stalls))
            with m.If(gen.done):
                m.d.sync += running.eq(0)
        with m.If(started & self.start & ~gen.busy):                # a start taken (restarts the count)
            m.d.sync += [running.eq(1), elapsed.eq(1), stalls.eq(0)]
        return m


def prove_address_generator(generator, step, workdir, *, max_stalls=0, margin=2, name="address_formal",
                            timeout=300, **properties):
    """Check :class:`AddressGeneratorProperties` to depth ``cycles + max_stalls + margin`` (a
    bounded model check with ``yowasp-sby``): every trace of that length, so a whole step with up
    to ``max_stalls`` stalls, and its ``done``.

    Parameters
    ----------
    generator : ConvAddressGenerator
        Fresh.
    step : ConvStep
    workdir : path-like
    max_stalls : int
    margin : int
        Cycles checked past the step's end.
    name : str
    timeout : float
    **properties
        ``cycles``, ``region``: passed to :class:`AddressGeneratorProperties`.

    Returns
    -------
    ProofResult
    """
    formal_tools()
    wrapper = AddressGeneratorProperties(generator, step, max_stalls=max_stalls, **properties)
    depth = wrapper.generator.latency + wrapper.transfers + max_stalls + margin + 1
    return prove_component(wrapper, workdir, name=name, depth=depth, timeout=timeout, mode="bmc")


class _ObservedAccelerator(Accelerator):
    """An :class:`~hwq.accel.top.Accelerator` that lets :class:`AcceleratorProperties` add its
    assertions to its module (and to its conv engine's), where the memories' ports are."""

    def __init__(self, sched, observe, observe_conv, **kwargs):
        self._observe, self._observe_conv = observe, observe_conv
        super().__init__(sched, **kwargs)
        if self.conv is not None:
            engine, elaborate = self.conv, self.conv.elaborate

            def observed(platform):
                m = elaborate(platform)
                self._observe_conv(m, engine)
                return m
            engine.elaborate = observed

    def elaborate(self, platform):
        m = super().elaborate(platform)
        self._observe(m, self)
        return m


class AcceleratorProperties(wiring.Component):
    """Formal wrapper of a whole :class:`~hwq.accel.top.Accelerator`: the sequencer runs the schedule
    within its computed cycle counts, and no step touches memory outside its regions.

    The host never waits (``input.valid`` and ``output.ready`` held high, as
    :attr:`~hwq.accel.top.Accelerator.expected_cycles` assumes); the input codes are free inputs
    (every image). One reset, in the first cycle. Asserted on every cycle after it:

    - **no buffer overrun**: every write to the activation memory is below its depth
      (``act_words``); the conv engine's and the vector unit's writes lie in the output region of
      the step that runs, the input writer's in the input region; every conv row address the
      address generator emits for a row inside the input lies in the step's input region, and
      every weight word address in the step's words and below the weight memory's depth;
    - **bounded response, per step**: the sequencer never starts a busy unit, and the unit's
      ``done`` is low until, and high on, the cycle
      :meth:`~hwq.accel.top.Accelerator.step_cycles` after its ``start``;
    - **per inference**: while ``busy`` the ``cycles`` counter is at most
      :attr:`~hwq.accel.top.Accelerator.expected_cycles`, and equal to it when ``busy`` falls.

    A bounded model check (:func:`prove_accelerator`) to a depth past the first inference's end: so
    every step of the schedule is covered once, for every input image. The data path (memory
    contents, PE array, requantizer arithmetic) is removed by yosys: no assertion depends on it.

    Parameters
    ----------
    sched : Schedule
    cycles : int, optional
        The inference length asserted (default :attr:`~hwq.accel.top.Accelerator.expected_cycles`);
        a mutant bound must fail.
    **kwargs
        Passed to :class:`~hwq.accel.top.Accelerator` (``dump``, ``share_requant``, ``mapping``, ...).
    """

    def __init__(self, sched, *, cycles=None, **kwargs):
        if not isinstance(sched, Schedule):
            raise InputError(f"sched must be a Schedule (hwq.accel.schedule), not {type(sched).__name__}")
        self._acc = _ObservedAccelerator(sched, self._observe, self._observe_conv, **kwargs)
        self._cycles = self._acc.expected_cycles if cycles is None else int(cycles)
        super().__init__({"payload": In(self._acc.input.payload.shape())})

    @property
    def accelerator(self):
        """The accelerator under proof."""
        return self._acc

    @property
    def expected_cycles(self):
        """The inference length asserted."""
        return self._cycles

    def elaborate(self, platform):
        m = Module()
        acc = m.submodules.accelerator = self._acc
        m.d.comb += [acc.input.valid.eq(1), acc.input.payload.eq(self.payload), acc.output.ready.eq(1)]
        return m

    def _in_step(self, m, acc, check):
        """Assert ``check(step)`` (a Value) for the program step the step counter selects."""
        with m.Switch(acc.step):
            for i, step in enumerate(acc.program):
                value = check(step)
                if value is not None:
                    with m.Case(i):
                        m.d.comb += Assert(value)

    def _observe_conv(self, m, engine):
        """The conv engine's address generator: its row and weight addresses."""
        acc = self._acc
        gen = m.submodules.gen
        started = Signal(reset_less=True, name="f_started")
        m.d.sync += started.eq(1)
        words = len(acc.schedule.weights)

        def rows(step):
            if not isinstance(step, ConvStep):
                return None
            lo, hi = _region(step.src)
            ok = 1
            for r in range(gen.rows):
                ok = ok & (~gen.inside[r] | ((gen.addr[r] >= lo) & (gen.addr[r] < hi)))
            wlo, whi = step.weight_base, step.weight_base + step.tiles * step.fan_in
            return ok & (gen.weight_addr >= wlo) & (gen.weight_addr < whi) & (gen.weight_addr < words)

        with m.If(started & gen.valid):
            self._in_step(m, acc, rows)

    def _observe(self, m, acc):
        s = acc.schedule
        act = m.submodules.act
        started = _reset_first(m, once=True)
        program = acc.program

        # writes: into the memory, and into the region of the step that runs
        with m.If(started & act.wen):
            m.d.comb += Assert(act.waddr < s.act_words)
        units = [(name, unit) for name, unit in (("conv", acc.conv), ("vector", acc.vector), ("load", acc.loader))
                 if unit is not None]
        unit_writes = 0
        for name, unit in units:
            if name == "load":
                continue
            unit_writes = unit_writes | unit.wr_en

            def inside_out(step, unit=unit):
                if step.kind == "load":
                    return None
                lo, hi = _region(step.out)
                return (unit.wr_addr >= lo) & (unit.wr_addr < hi)
            with m.If(started & unit.wr_en):
                self._in_step(m, acc, inside_out)
        lo, hi = _region(s.input)
        with m.If(started & act.wen & ~unit_writes):
            m.d.comb += Assert((act.waddr >= lo) & (act.waddr < hi))

        # each step: its unit started idle, done exactly step_cycles later
        longest = max([acc.step_cycles(step) for step in program] + [1])
        for name, unit in units:
            running = Signal(name=f"f_{name}_running")
            elapsed = Signal(range(longest + 2), name=f"f_{name}_elapsed")
            target = Signal(range(longest + 2), name=f"f_{name}_target")
            with m.If(running):
                m.d.sync += elapsed.eq(elapsed + 1)
                m.d.comb += Assert(unit.done == (elapsed == target))
                with m.If(unit.done):
                    m.d.sync += running.eq(0)
            with m.If(started & unit.start):
                m.d.comb += Assert(~unit.busy)
                m.d.sync += [running.eq(1), elapsed.eq(1)]
                with m.Switch(acc.step):
                    for i, step in enumerate(program):
                        with m.Case(i):
                            m.d.sync += target.eq(acc.step_cycles(step))

        # the inference
        busy_q = Signal(name="f_busy_q")
        m.d.sync += busy_q.eq(acc.busy)
        with m.If(started & acc.busy):
            m.d.comb += Assert(acc.cycles <= self._cycles)
        with m.If(started & busy_q & ~acc.busy):
            m.d.comb += Assert(acc.cycles == self._cycles)


def prove_accelerator(sched, workdir, *, margin=4, depth=None, name="accelerator_formal", timeout=600, **properties):
    """Check :class:`AcceleratorProperties` of ``sched`` with ``yowasp-sby`` (bounded model check)
    to ``preload + expected_cycles + margin`` cycles: the weight store's preload (its payloads, once
    after reset; none without a store), one whole inference and its end.

    Parameters
    ----------
    sched : Schedule
    workdir : path-like
    margin : int
        Cycles checked past the computed end (the first input is taken in cycle 1, ``busy`` falls
        the cycle after the last output).
    depth : int, optional
        Overrides ``preload + expected_cycles + margin``.
    name : str
    timeout : float
    **properties
        Passed to :class:`AcceleratorProperties` (``cycles``, and the accelerator's options).

    Returns
    -------
    ProofResult
    """
    formal_tools()
    wrapper = AcceleratorProperties(sched, **properties)
    if depth is None:
        depth = len(wrapper.accelerator.preload()) + wrapper.expected_cycles + margin
    return prove_component(wrapper, workdir, name=name, depth=depth, timeout=timeout, mode="bmc", script=BMC_SCRIPT)
