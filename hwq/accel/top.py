"""The accelerator's top level: the whole model in hardware (docs/accelerator.md, "Dataflow").

:class:`Accelerator` is built from a :class:`~hwq.accel.schedule.Schedule` and holds

- the **activation memory** (:class:`~hwq.accel.memory.ActivationMemory`): ``sched.act_words``
  words with ``R`` synchronous read ports (latency 1) and one write port; one memory (``R``
  copies written together, block RAM on the iCE40), or, for a schedule with ``banks > 1``,
  single-port banks (SPRAM on the UP5K, ``spram``). The convolution engine's ``R`` rows use all ``R``
  ports during a conv step; the vector unit and the output reader use port 0 during theirs (the
  sequencer's state selects port 0's address: only one of them runs at a time), so no
  ``R + 1``-th copy is needed. The write port is muxed the same way between the input writer, the
  engine and the vector unit.
- one :class:`~hwq.accel.conv.ConvEngine` (if the schedule has a conv step) and one
  :class:`~hwq.accel.vector.VectorUnit` (if it has an add, pool or pad step), sharing one
  :class:`~hwq.accel.requant.Requantizer` (``share_requant``): its inputs come from the unit
  whose step runs;
- the **sequencer**: a step counter and the **step ROM**, as per-step constants selected by the
  step counter (a ``Switch`` on it: every descriptor port of the engine, or the unit's ``desc``
  struct, gets the step's constant values from :meth:`ConvEngine.descriptor` /
  :meth:`VectorUnit.descriptor`; synthesis turns the cases into LUT logic). The descriptors are
  registers, loaded from the ROM at the step the counter takes on the same clock edge, so the
  ROM is off the units' paths and no cycle is added. It starts each step in order, waits for the
  unit's ``done`` and moves on.

Host I/O (``amaranth.lib.stream``, ``unsigned(act_bits)`` payloads): ``input`` takes the input
tensor's ``sched.input.size`` codes in CHW order into the input region; then the steps run; then
``output`` sends the output region's ``sched.output.size`` codes in order (with ``dump``, the
whole activation memory: the read-back the verification bench uses); then the next image is
accepted. ``busy`` is high from the first input code taken until the last output code sent;
``cycles`` counts the cycles of that interval, both ends included (held until the next image's
first input code).

Cycles: with a host that always has the next code and is always ready, one inference takes
:attr:`Accelerator.expected_cycles` = ``input.size + output_words + 1 + sum(unit cycles + 1)``:
the unit cycles of a step are its ``Step.cycles`` plus the unit's pipeline overhead
(:meth:`ConvEngine.overhead`, :meth:`VectorUnit.overhead`), the ``+ 1`` per step is the
sequencer's start cycle, the ``+ 1`` the output reader's first read.
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import InputError
from .conv import ConvEngine
from .loader import WeightLoader, preload_payloads
from .memory import ActivationMemory
from .requant import Requantizer
from .schedule import ConvStep, Schedule
from .vector import VectorUnit

__all__ = ["Accelerator"]

_VECTOR_KINDS = ("add", "avgpool", "maxpool", "pad")


def _bits(value):
    return max(1, int(value).bit_length())


def _silence(elaboratable):
    """No UnusedElaboratable warning for a sub-block of an accelerator that is never elaborated."""
    elaboratable._MustUse__silence = True
    return elaboratable


class Accelerator(wiring.Component):
    """The whole model of a :class:`~hwq.accel.schedule.Schedule` in hardware.

    Parameters
    ----------
    sched : Schedule
    cycle_bits : int, optional
        Width of the :attr:`cycles` counter (default 32; it wraps).
    dump : bool, optional
        Read-back for verification: the output stream sends the whole activation memory,
        words ``0 .. sched.act_words - 1``, instead of the output region, so that with a
        ``keep_all`` schedule every tensor's codes can be checked (each at its
        :attr:`~hwq.accel.schedule.Region.base`). Default False.
    spram : bool or None, optional
        Mark the activation memory's banks for the UP5K's SPRAM (:mod:`hwq.accel.memory`);
        None (default): when the schedule has more than one bank. Needs ``sched.banks > 1``.
    share_requant : bool, optional
        One :class:`~hwq.accel.requant.Requantizer` for the conv engine and the vector unit
        (default True): they never run at once, and a requantizer (a 32 x 16 multiplier, two
        SB_MAC16, and the encoder) is the largest block after the array. Its tables are both
        units' (the engine's first), so a step's requantizer latency may be the deeper of the two.
    mapping, max_dsp : optional
        The PE array's products in fabric (``"fabric"``, default: amaranth.sim runs it) or in
        SB_MAC16 blocks, two 8 x 8 products each (``"dsp"``, at most ``max_dsp`` blocks; Verilog
        simulation needs yosys's ``ice40/cells_sim.v``), :class:`~hwq.accel.array.PEArray`.
    pipeline : int, optional
        The PE array's product register stages (default 0; :class:`~hwq.accel.array.PEArray`):
        each adds a cycle to every conv step's fixed overhead, :attr:`expected_cycles` included.

    Attributes
    ----------
    input : In(stream.Signature(unsigned(act_bits)))
        The input tensor's codes, CHW order, ``sched.input.size`` per image.
    output : Out(stream.Signature(unsigned(act_bits)))
        The output tensor's codes, ``sched.output.size`` per image (:attr:`output_words`).
    busy : Signal(1), out
        From the first input code taken until the last output code sent.
    cycles : Signal(cycle_bits), out
        Cycles from the first input code taken to the last output code sent, both included
        (counting while :attr:`busy`, held after).
    step : Signal, out
        The sequencer's step counter (for debugging).

    Raises
    ------
    InputError
        Before elaboration: ``sched`` not a Schedule, ``cycle_bits`` not a positive integer,
        ``spram`` with a one-bank schedule, or whatever :class:`ConvEngine` / :class:`VectorUnit`
        refuse in the schedule.
    """

    def __init__(self, sched, *, cycle_bits=32, dump=False, spram=None, share_requant=True, mapping="fabric",
                 max_dsp=None, pipeline=0):
        if not isinstance(sched, Schedule):
            raise InputError(f"sched must be a Schedule (hwq.accel.schedule), not {type(sched).__name__}")
        if isinstance(cycle_bits, bool) or not isinstance(cycle_bits, int) or cycle_bits < 1:
            raise InputError(f"cycle_bits must be a positive integer, not {cycle_bits!r}")
        if sched.input.size < 1 or sched.output.size < 1:
            raise InputError("sched: the input and output tensors must have at least one code")
        for step in sched.steps:
            if step.kind != "conv" and step.kind not in _VECTOR_KINDS:
                raise InputError(f"step {step.name!r}: kind {step.kind!r} has no unit in the accelerator")
        self._sched = sched
        self._rows = sched.array.rows
        steps = list(sched.steps)
        conv_steps = [s for s in steps if isinstance(s, ConvStep)]
        vec_steps = [s for s in steps if s.kind in _VECTOR_KINDS]
        if share_requant not in (True, False):
            raise InputError(f"share_requant must be True or False, not {share_requant!r}")
        array = {"mapping": mapping, "max_dsp": max_dsp, "pipeline": pipeline}
        self._conv = _silence(ConvEngine(sched, **array)) if conv_steps else None
        self._vec = _silence(VectorUnit(sched)) if vec_steps else None
        self._requant = None
        if share_requant and self._conv is not None and self._vec is not None and self._vec.tables:
            # one requantizer for both units (they never run at once): the engine's tables first
            tables = list(self._conv.tables)
            tables += [t for t in self._vec.tables if not any(t is known for known in tables)]
            acc = max(self._conv.acc_width, self._vec.acc_width)
            self._requant = _silence(Requantizer(tables, acc_width=acc))
            self._conv = _silence(ConvEngine(sched, requant=self._requant, **array))
            self._vec = _silence(VectorUnit(sched, requant=self._requant))
        if spram not in (None, True, False):
            raise InputError(f"spram must be None, True or False, not {spram!r}")
        if spram and sched.banks == 1:
            raise InputError("spram: the schedule has one activation bank; SPRAM is single-ported, schedule "
                             "with banks >= 3 (hwq.accel.schedule.schedule(..., banks=...))")
        self._spram = sched.banks > 1 if spram is None else bool(spram)
        self._loader = None
        if sched.loads:
            self._loader = _silence(WeightLoader(sched, payload_bits=int(sched.act_bits),
                                                 weight_addr_width=len(self._conv.w_waddr), spram=self._spram))
        # the step ROM's contents, checked now: (unit, descriptor, step)
        self._rom = []
        for step in steps:
            if step.name in sched.loads:
                load = sched.loads[step.name]
                self._rom.append(("load", self._loader.descriptor(load), load))
            if step.kind == "conv":
                self._rom.append(("conv", self._conv.descriptor(step), step))
            else:
                self._rom.append(("vector", self._vec.descriptor(step), step))

        self._act_bits = int(sched.act_bits)
        self._mem_bits = max([self._act_bits] + ([self._conv.act_bits] if self._conv else []))
        self._addr_bits = max([_bits(max(sched.act_words - 1, 1))] +
                              ([self._conv.addr_width] if self._conv else []) +
                              ([self._vec.addr_bits] if self._vec else []))
        self._cycle_bits = cycle_bits
        self._dump = bool(dump)
        self._out_base, self._out_size = (0, sched.act_words) if dump else (sched.output.base, sched.output.size)
        super().__init__({
            "input": In(stream.Signature(unsigned(self._act_bits))),
            "output": Out(stream.Signature(unsigned(self._act_bits))),
            "busy": Out(1),
            "cycles": Out(unsigned(cycle_bits)),
            "step": Out(range(max(len(self._rom), 1))),
        })

    # --- properties ------------------------------------------------------------------------------

    @property
    def schedule(self):
        return self._sched

    @property
    def conv(self):
        """The :class:`ConvEngine` (None without conv steps)."""
        return self._conv

    @property
    def vector(self):
        """The :class:`VectorUnit` (None without add, pool or pad steps)."""
        return self._vec

    @property
    def loader(self):
        """The :class:`~hwq.accel.loader.WeightLoader` (None without a weight store)."""
        return self._loader

    def preload(self):
        """What the host sends after reset, before the first image: the weight store's
        contents as input-stream payloads (:func:`~hwq.accel.loader.preload_payloads`; empty
        without a weight store)."""
        return preload_payloads(self._sched, self._act_bits) if self._loader is not None else []

    @property
    def spram(self):
        """True if the activation memory's banks are marked for SPRAM."""
        return self._spram

    @property
    def dump(self):
        """True if the output stream sends the whole activation memory (read-back)."""
        return self._dump

    @property
    def output_words(self):
        """Codes the output stream sends per image: ``sched.output.size``, or ``sched.act_words``
        with :attr:`dump`."""
        return self._out_size

    @property
    def act_bits(self):
        """Width of a stream payload (``sched.act_bits``)."""
        return self._act_bits

    @property
    def addr_bits(self):
        """Width of an activation memory address (the widest of the units')."""
        return self._addr_bits

    @property
    def read_ports(self):
        """Read ports of the activation memory: ``R`` (at least 1)."""
        return max(1, self._rows if self._conv is not None else 1)

    @property
    def program(self):
        """What the sequencer runs, in order: the schedule's steps, each
        :class:`~hwq.accel.schedule.WeightLoad` just before its layer (list)."""
        return [step for _, _, step in self._rom]

    def step_cycles(self, step):
        """Cycles from the unit's ``start`` to its ``done`` for ``step`` (a Step or WeightLoad)."""
        if step.kind == "load":
            return WeightLoader.cycles(step)
        if step.kind == "conv":
            return step.cycles + self._conv.overhead(step)
        return self._vec.cycles(step)

    @property
    def expected_cycles(self):
        """Cycles of one inference (:attr:`cycles`) with a host that never waits (module docstring)."""
        s = self._sched
        return s.input.size + self._out_size + 1 + sum(self.step_cycles(step) + 1 for step in self.program)

    # --- hardware --------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        s = self._sched
        conv, vec, loader = self._conv, self._vec, self._loader
        n_steps = len(self._rom)

        m.submodules.act = act = ActivationMemory(s.act_words, self._mem_bits, self.read_ports, self._addr_bits,
                                                  banks=s.banks, bank_words=s.bank_words if s.banks > 1 else None,
                                                  spram=self._spram)
        raddr, rdata = act.raddr, act.rdata
        if conv is not None:
            m.submodules.conv = conv
            for r in range(self._rows):
                m.d.comb += conv.act_data[r].eq(rdata[r])
            for r in range(1, self._rows):
                m.d.comb += raddr[r].eq(conv.act_addr[r])
        if vec is not None:
            m.submodules.vector = vec
            m.d.comb += vec.rd_data.eq(rdata[0])
        is_conv = Signal(name="step_is_conv")
        is_load = Signal(name="step_is_load")
        if loader is not None:
            m.submodules.loader = loader
            m.d.comb += [conv.w_waddr.eq(loader.w_addr), conv.w_wdata.eq(loader.w_data), conv.w_wen.eq(loader.w_en),
                         loader.fill.payload.eq(self.input.payload)]
        if self._requant is not None:                  # the shared requantizer, driven by the unit running
            m.submodules.requant = rq = self._requant
            for name, member in rq.signature.members.items():
                ours, theirs = getattr(rq, name), (getattr(conv.rq, name), getattr(vec.rq, name))
                if member.flow == In:
                    m.d.comb += ours.eq(Mux(is_conv, *theirs))
                elif name == "code_valid":                # each unit sees only its own results
                    m.d.comb += [theirs[0].eq(ours & is_conv), theirs[1].eq(ours & ~is_conv)]
                else:
                    m.d.comb += [theirs[0].eq(ours), theirs[1].eq(ours)]

        # --- the step ROM -------------------------------------------------------------------------
        # Registered: the ROM is read at the step the counter takes at this clock edge
        # (``step_next``), so the descriptors are registers (off the units' critical paths)
        # holding the current step's values, with no cycle added.
        step = Signal(range(max(n_steps, 1)), name="step_index")
        step_next = Signal.like(step, name="step_next")
        m.d.comb += [self.step.eq(step), step_next.eq(step)]
        m.d.sync += step.eq(step_next)
        with m.Switch(step_next):
            for i, (unit, desc, _) in enumerate(self._rom):
                with m.Case(i):
                    m.d.sync += [is_conv.eq(unit == "conv"), is_load.eq(unit == "load")]
                    if unit == "vector":
                        m.d.sync += vec.desc.eq(vec.desc_layout.const(desc))
                    else:
                        target = conv if unit == "conv" else loader
                        m.d.sync += [getattr(target, field).eq(value) for field, value in desc.items()]

        # --- the sequencer ------------------------------------------------------------------------
        out_base, out_size = self._out_base, self._out_size
        count = Signal(range(max(s.input.size, out_size) + 1), name="io_count")
        first_in = Signal(name="first_in")
        counting = Signal(name="counting")
        out_transfer = self.output.valid & self.output.ready
        in_transfer = self.input.valid & self.input.ready
        last_out = Signal(name="last_out")

        port0 = raddr[0]
        with m.FSM(name="seq", init="PRELOAD" if loader is not None else "INPUT") as fsm:
            if loader is not None:
                with m.State("PRELOAD"):                            # the weight store, once after reset
                    m.d.comb += [loader.fill.valid.eq(self.input.valid), self.input.ready.eq(loader.fill.ready)]
                    with m.If(loader.filled):
                        m.next = "INPUT"
            with m.State("INPUT"):
                m.d.comb += self.input.ready.eq(1)
                m.d.comb += [act.waddr.eq(s.input.base + count), act.wdata.eq(self.input.payload),
                             act.wen.eq(self.input.valid)]
                with m.If(self.input.valid):
                    with m.If(count == s.input.size - 1):
                        m.d.sync += count.eq(0)
                        m.d.comb += step_next.eq(0)
                        m.next = "START" if n_steps else "PRIME"
                    with m.Else():
                        m.d.sync += count.eq(count + 1)
            if n_steps:
                with m.State("START"):
                    if conv is not None:
                        m.d.comb += conv.start.eq(is_conv)
                    if vec is not None:
                        m.d.comb += vec.start.eq(~is_conv & ~is_load)
                    if loader is not None:
                        m.d.comb += loader.start.eq(is_load)
                    m.next = "WAIT"
                with m.State("WAIT"):
                    done = Signal(name="unit_done")
                    if conv is not None and vec is not None:
                        m.d.comb += done.eq(Mux(is_conv, conv.done, vec.done))
                    else:
                        m.d.comb += done.eq((conv if conv is not None else vec).done)
                    if loader is not None:
                        done = Mux(is_load, loader.done, done)
                    with m.If(done):
                        with m.If(step == n_steps - 1):
                            m.next = "PRIME"
                        with m.Else():
                            m.d.comb += step_next.eq(step + 1)
                            m.next = "START"
            with m.State("PRIME"):                                  # the first output read
                m.d.comb += port0.eq(out_base)
                m.next = "OUTPUT"
            with m.State("OUTPUT"):
                m.d.comb += [self.output.valid.eq(1), self.output.payload.eq(rdata[0]),
                             last_out.eq(count == out_size - 1)]
                # the address of the word shown next cycle: the next one after a transfer
                m.d.comb += port0.eq(out_base + count + (out_transfer & ~last_out))
                with m.If(out_transfer):
                    with m.If(last_out):
                        m.d.sync += count.eq(0)
                        m.next = "INPUT"
                    with m.Else():
                        m.d.sync += count.eq(count + 1)
        in_steps = fsm.ongoing("START") | fsm.ongoing("WAIT") if n_steps else 0
        if n_steps:
            if conv is not None and vec is not None:
                with m.If(in_steps & is_conv):
                    m.d.comb += [port0.eq(conv.act_addr[0]), act.waddr.eq(conv.wr_addr),
                                 act.wdata.eq(conv.wr_data), act.wen.eq(conv.wr_en)]
                with m.Elif(in_steps):
                    m.d.comb += [port0.eq(vec.rd_addr), act.waddr.eq(vec.wr_addr),
                                 act.wdata.eq(vec.wr_data), act.wen.eq(vec.wr_en)]
            else:
                unit = conv if conv is not None else vec
                with m.If(in_steps):
                    m.d.comb += [port0.eq(conv.act_addr[0] if conv is not None else vec.rd_addr),
                                 act.waddr.eq(unit.wr_addr), act.wdata.eq(unit.wr_data),
                                 act.wen.eq(unit.wr_en)]

        # --- busy and the cycle counter -----------------------------------------------------------
        m.d.comb += first_in.eq(fsm.ongoing("INPUT") & in_transfer & (count == 0))
        with m.If(first_in):
            m.d.sync += [counting.eq(1), self.cycles.eq(1)]
        with m.Elif(counting):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(out_transfer & last_out):
            m.d.sync += counting.eq(0)
        m.d.comb += self.busy.eq(counting)
        return m
