"""The convolution engine: one :class:`~hwq.accel.schedule.ConvStep` end to end in hardware.

docs/accelerator.md, "Dataflow": the address generator (:class:`~hwq.accel.address.ConvAddressGenerator`)
walks the step's loop nest; its ``R`` row addresses go out to ``R`` read ports of the activation
memory (outside the engine, read latency 1) and its weight address to the weight memory (inside,
initialised with the schedule's weight image); one register stage later the codes enter the
:class:`~hwq.accel.array.PEArray`. The array's drain stream (``row``, ``col``, ``acc``) reads the
channel's bias, multiplier and shift from the parameter memory (inside, initialised with the
schedule's parameter image), goes through the :class:`~hwq.accel.requant.Requantizer` and is
written to the activation memory at ``dst_base + o * OH * OW + q`` for output channel
``o = channel0 + col`` and output position ``q = p * R + row``; idle rows (``q >= OH * OW``) and
idle lanes (past the group's channels) are dropped.

The drain is always ready (the requantizer takes one value per cycle and the write port never
waits), so the array's ``ready`` stalls only the address generator (a tile shorter than ``R * C``
cycles waits for the previous drain): while the stage between the generator and the array holds,
the engine re-reads that stage's addresses so the memory's data stays aligned with it.

Output addresses are running sums (no multiplier in the loop); the one product of the step,
``per_group * OH * OW`` (the address distance between groups), is computed after ``start`` by a
serial shift-add (one cycle per bit of ``per_group``) before the address generator starts.
"""

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..errors import InputError
from ..integer.program import BIAS_BITS
from ..integer.requant import MULTIPLIER_BITS
from .address import DESCRIPTOR_FIELDS as ADDRESS_FIELDS
from .address import ConvAddressGenerator
from .array import MAX_TABLE_BITS, PEArray, _check_formats
from .requant import MAX_ACC_WIDTH, MAX_INDEX_BITS, SHIFT_BITS, Requantizer, uniform_table
from .schedule import ConvStep, Schedule, pack_words

__all__ = ["ConvEngine", "ENGINE_FIELDS"]

#: the engine's own descriptor fields (beyond the address generator's, :data:`hwq.accel.address.DESCRIPTOR_FIELDS`)
ENGINE_FIELDS = ("dst_base", "positions", "out_channels", "per_group", "param_base", "table", "clamp_low",
                 "clamp_high", "a_format", "w_format", "pad_code")


def _bits(value):
    return max(1, int(value).bit_length())


def _probe(elaboratable):
    """``elaboratable``, built only for its checks and widths: never elaborated, no warning."""
    elaboratable._MustUse__silence = True
    return elaboratable


def _unique(items):
    out = []
    for item in items:
        if not any(item == known for known in out):
            out.append(item)
    return out


class ConvEngine(wiring.Component):
    """Runs one :class:`~hwq.accel.schedule.ConvStep` of a :class:`~hwq.accel.schedule.Schedule`.

    Parameters
    ----------
    sched : Schedule
        The schedule: its array (``R x C``), weight image, parameter image and encoder tables are
        built in; any of its conv steps can then be run (:meth:`descriptor`).
    a_formats, w_formats : sequence of NumberFormat, optional
        The activation and weight formats the array decodes (default: those of the schedule's
        conv steps, in first-use order).
    requant : Requantizer, optional
        A requantizer shared with another unit (the :class:`~hwq.accel.top.Accelerator`'s, one
        for its conv engine and vector unit, which never run at once), built by the caller from
        tables that start with the engine's own :attr:`tables`, in order (more may follow): the
        engine builds none and drives it through the port ``rq``. Default: its own.
    mapping, max_dsp, pipeline : optional
        The PE array's products in fabric (``"fabric"``, default) or in SB_MAC16 blocks
        (``"dsp"``, at most ``max_dsp`` of them), and its product register stages (default 0),
        :class:`~hwq.accel.array.PEArray`.

    Attributes
    ----------
    start : Signal(1), in
        Starts a step (ignored while :attr:`busy`). The descriptor inputs must be stable from this
        cycle until ``done``.
    <address generator fields> : in
        As :class:`~hwq.accel.address.ConvAddressGenerator` (``src_base`` ... ``weight_base``).
    dst_base : Signal(addr_width), in
        First word of the output region.
    positions : Signal, in
        ``OH * OW``.
    out_channels, per_group : Signal, in
        ``O`` and output channels per group ``O / groups``.
    param_base : Signal, in
        The step's first entry in the parameter image.
    table, clamp_low, clamp_high : Signal, in
        The requantizer's encoder table (index into :attr:`tables`: the tables of the schedule's
        conv steps: uniform ones such as ``fxp16`` of any size, others of at most 4096 grid values) and
        clamp (grid indices).
    a_format, w_format : Signal, in
        Index into :attr:`a_formats` / :attr:`w_formats`.
    pad_code : Signal, in
        Activation code of zero (rows outside the input).
    act_addr : list of R Signal(addr_width), out
        Read address of each read port of the activation memory.
    act_data : list of R Signal(act_bits), in
        The read data, one cycle after its address (a synchronous read port, always enabled).
    wr_addr, wr_data, wr_en : out
        The activation memory's write port: ``wr_data`` to ``wr_addr`` on a clock edge with
        ``wr_en`` high.
    busy : Signal(1), out
        A step is running.
    done : Signal(1), out
        The step's last output code has been written; held until the next ``start`` (reset: 0).
    rq : Out(requant.signature.flip())
        Only with a shared ``requant``: the requantizer's inputs (out) and outputs (in).
    w_waddr, w_wdata, w_wen : in
        Only for a schedule with a weight store (:attr:`~hwq.accel.schedule.Schedule.loads`):
        the weight memory's write port, ``w_wdata`` (a packed weight word) to ``w_waddr`` on a
        clock edge with ``w_wen`` high; the :class:`~hwq.accel.loader.WeightLoader` fills the
        overlay through it while the engine is idle.

    Timing: one step takes ``step.cycles + overhead(step)`` cycles from ``start`` to ``done``
    (:meth:`overhead`; a few dozen cycles).

    Raises
    ------
    InputError
        Before elaboration, naming the parameter: ``sched`` not a Schedule or without conv steps
        (or none whose output format the encoder can search),
        formats the array cannot decode, an accumulator wider than the requantizer takes, a shared
        ``requant`` whose tables do not start with the engine's or narrower than its accumulator.
    """

    def __init__(self, sched, *, a_formats=None, w_formats=None, requant=None, mapping="fabric", max_dsp=None,
                 pipeline=0):
        if not isinstance(sched, Schedule):
            raise InputError(f"sched must be a Schedule (hwq.accel.schedule), not {type(sched).__name__}")
        steps = [s for s in sched.steps if isinstance(s, ConvStep)]
        if not steps:
            raise InputError("sched has no ConvStep to run")
        self._sched, self._steps = sched, steps
        self._rows, self._cols = sched.array.rows, sched.array.cols
        acc_width = max(s.acc_bits for s in steps)
        if acc_width > MAX_ACC_WIDTH:
            raise InputError(f"sched: a conv step needs a {acc_width}-bit accumulator, the requantizer takes at "
                             f"most {MAX_ACC_WIDTH}")
        # checked before any elaboratable is built: each layer's formats first, so that a refusal
        # names the layer
        for step in steps:
            for what, fmt in (("input (activation)", step.a_format), ("weight", step.w_format)):
                if fmt.bits > MAX_TABLE_BITS:
                    raise InputError(f"layer {step.name!r}: its {what} format {fmt} has {fmt.bits}-bit codes; "
                                     f"the PE array's edge decoders take at most {MAX_TABLE_BITS}")
        self._a_formats = _check_formats("a_formats", _unique(s.a_format for s in steps) if a_formats is None
                                         else a_formats)
        self._w_formats = _check_formats("w_formats", _unique(s.w_format for s in steps) if w_formats is None
                                         else w_formats)
        probe = _probe(PEArray(rows=self._rows, cols=self._cols, a_formats=self._a_formats, w_formats=self._w_formats,
                               acc_width=MAX_ACC_WIDTH, mapping=mapping, max_dsp=max_dsp,
                               pipeline=pipeline))                                         # checks the formats
        self._acc_width = max(acc_width, probe.product_width)
        self._array_args = dict(rows=self._rows, cols=self._cols, a_formats=self._a_formats,
                                w_formats=self._w_formats, acc_width=self._acc_width, mapping=mapping, max_dsp=max_dsp,
                                pipeline=pipeline)
        self._array_latency, self._dsp_blocks = probe.latency, probe.dsp_blocks
        self._mapping, self._max_dsp, self._pipeline = mapping, max_dsp, probe.pipeline
        self._a_bits, self._a_format_bits = len(probe.a[0]), len(probe.a_format)
        self._w_format_bits = len(probe.w_format)
        # the encoder computes uniform tables (fxp) of any size and searches the others, of at most
        # 2**MAX_INDEX_BITS grid values: a larger non-uniform table is left out, and a step that
        # needs it is refused by descriptor()
        self._table_map = {}
        tables = []
        for step in steps:
            index = sched.table_index[step.name]
            table = sched.tables[index]
            if index not in self._table_map and (uniform_table(table) is not None
                                                 or len(table.grid) <= 1 << MAX_INDEX_BITS):
                self._table_map[index] = len(tables)
                tables.append(table)
        if not tables:
            raise InputError(f"sched: no conv step has a uniform output format or one of at most "
                             f"{1 << MAX_INDEX_BITS} grid values (what the requantizer's encoder searches)")
        self._tables = tuple(tables)
        self._shared = requant
        if requant is None:
            self._requant = _probe(Requantizer(self._tables, acc_width=self._acc_width))
        elif not isinstance(requant, Requantizer):
            raise InputError(f"requant must be a Requantizer (hwq.accel.requant), not {type(requant).__name__}")
        elif len(requant.tables) < len(tables) or any(a is not b for a, b in zip(requant.tables, tables)):
            raise InputError("requant: its tables must start with the engine's own (ConvEngine.tables), in order")
        elif requant.acc_width < self._acc_width:
            raise InputError(f"requant takes {requant.acc_width}-bit accumulators, the engine needs {self._acc_width}")
        else:
            self._requant = requant
        gen = _probe(ConvAddressGenerator.for_steps(steps, rows=self._rows))
        widths = gen.widths
        self._act_bits = max(int(sched.act_bits), self._requant.code_bits, self._a_bits)
        widths["addr_width"] = max(widths["addr_width"], _bits(max(sched.act_words - 1, 0)))
        self._gen_widths = widths
        # the generator as elaborated (widened to the whole memory): its latency and descriptors
        self._gen = _probe(ConvAddressGenerator(self._rows, **widths))
        self._weight_bits = int(sched.weight_bits)
        self._param_words = max(1, len(sched.bias))
        sb = widths["size_bits"]
        self._widths = {
            "dst_base": widths["addr_width"], "positions": 2 * sb,
            "out_channels": _bits(max(s.out_shape[0] for s in steps)),
            "per_group": _bits(max(s.out_shape[0] // s.groups for s in steps)),
            "param_base": _bits(self._param_words - 1),
            "table": self._requant.table_bits, "clamp_low": self._requant.index_bits,
            "clamp_high": self._requant.index_bits, "a_format": self._a_format_bits,
            "w_format": self._w_format_bits, "pad_code": self._a_bits,
        }
        for field, width in ADDRESS_FIELDS:
            self._widths[field] = widths[width]
        A = widths["addr_width"]
        ports = {"start": In(1)}
        for field, _ in ADDRESS_FIELDS:
            ports[field] = In(unsigned(self._widths[field]))
        for field in ENGINE_FIELDS:
            ports[field] = In(unsigned(self._widths[field]))
        ports.update({
            "act_addr": Out(unsigned(A)).array(self._rows),
            "act_data": In(unsigned(self._act_bits)).array(self._rows),
            "wr_addr": Out(unsigned(A)),
            "wr_data": Out(unsigned(self._act_bits)),
            "wr_en": Out(1),
            "busy": Out(1),
            "done": Out(1),
        })
        if requant is not None:
            ports["rq"] = Out(requant.signature.flip())
        self._loadable = len(sched.store) > 0
        if self._loadable:
            ports.update({"w_waddr": In(unsigned(widths["weight_addr_width"])),
                          "w_wdata": In(unsigned(self._weight_bits * self._cols)), "w_wen": In(1)})
        super().__init__(ports)

    # --- properties ------------------------------------------------------------------------------

    @property
    def rows(self):
        return self._rows

    @property
    def cols(self):
        return self._cols

    @property
    def a_formats(self):
        return self._a_formats

    @property
    def w_formats(self):
        return self._w_formats

    @property
    def dsp_blocks(self):
        """SB_MAC16 blocks the PE array instantiates."""
        return self._dsp_blocks

    @property
    def mapping(self):
        """The PE array's ``mapping`` (``"fabric"`` or ``"dsp"``)."""
        return self._mapping

    @property
    def pipeline(self):
        """The PE array's product register stages (``pipeline``)."""
        return self._pipeline

    @property
    def max_dsp(self):
        """The PE array's ``max_dsp`` (None: no limit)."""
        return self._max_dsp

    @property
    def tables(self):
        """The requantizer's encoder tables, in ``table`` port order (tuple)."""
        return self._tables

    @property
    def acc_width(self):
        return self._acc_width

    @property
    def addr_width(self):
        """Width of an activation memory address."""
        return self._gen_widths["addr_width"]

    @property
    def act_bits(self):
        """Width of an activation memory word."""
        return self._act_bits

    @property
    def read_latency(self):
        """Cycles from ``act_addr`` to its ``act_data``: 1."""
        return 1

    @property
    def widths(self):
        """Width of every descriptor port (dict of field to int)."""
        return dict(self._widths)

    @property
    def setup_cycles(self):
        """Cycles from ``start`` to the address generator's ``start``: one per bit of ``per_group``
        plus one."""
        return self._widths["per_group"] + 1

    @property
    def fixed_cycles(self):
        """The fixed part of :meth:`overhead`: :attr:`setup_cycles`, the address generator's
        latency, the memory read stage (1), the array's latency (:attr:`PEArray.latency`: 2, 3 with
        SB_MAC16 products, plus its product register stages), the parameter read stage (1) and the requantizer's latency."""
        return self.setup_cycles + self._gen.latency + 1 + self._array_latency + 1 + self._requant.latency

    def overhead(self, step):
        """Cycles from ``start`` (the cycle it is high) to ``done`` (the first cycle it is high)
        beyond ``step.cycles`` (the steady state): :attr:`fixed_cycles` plus the last tile's
        drain, ``min(fan_in, R * C)`` (the steady state counts ``max(fan_in, R * C)`` for the last
        tile, which takes ``fan_in`` inputs and then ``R * C`` drain cycles)."""
        return self.fixed_cycles + min(step.fan_in, self._rows * self._cols)

    def descriptor(self, step):
        """Every descriptor input's value for ``step`` (a ConvStep of the schedule): dict of port
        name to int.

        Raises
        ------
        InputError
            For ``step`` not a conv step of the engine's schedule, a format the array does not
            decode, or a value too wide for its port.
        """
        if not isinstance(step, ConvStep):
            raise InputError(f"step must be a ConvStep (hwq.accel.schedule), not {type(step).__name__}")
        if not any(step is s or step == s for s in self._steps):
            raise InputError(f"step {step.name!r} is not a conv step of the engine's schedule")
        if step.array != self._sched.array:
            raise InputError(f"step {step.name!r} is scheduled on array {step.array}, the engine has "
                             f"{self._sched.array}")
        values = dict(self._gen.descriptor(step))
        for name, fmt, known in (("a_format", step.a_format, self._a_formats),
                                 ("w_format", step.w_format, self._w_formats)):
            found = [i for i, f in enumerate(known) if f == fmt]
            if not found:
                raise InputError(f"step {step.name!r}: {name} {fmt} is not one of the engine's {name}s")
            values[name] = found[0]
        index = self._sched.table_index[step.name]
        if index not in self._table_map:
            raise InputError(f"step {step.name!r}: out_format {step.out_format} has {len(self._sched.tables[index].grid)} "
                             f"grid values and is not uniform: more than the {1 << MAX_INDEX_BITS} the requantizer's "
                             "encoder searches")
        values.update({
            "dst_base": step.out.base, "positions": step.positions, "out_channels": step.out_shape[0],
            "per_group": step.out_shape[0] // step.groups, "param_base": step.param_base,
            "table": self._table_map[index], "clamp_low": int(step.clamp[0]),
            "clamp_high": int(step.clamp[1]), "pad_code": int(step.pad_code),
        })
        for field, value in values.items():
            if not 0 <= value < 1 << self._widths[field]:
                raise InputError(f"step {step.name!r}: {field} {value} does not fit its {self._widths[field]}-bit port")
        if step.out.base + step.out.size > 1 << self.addr_width:
            raise InputError(f"step {step.name!r}: its output region passes addr_width {self.addr_width}")
        return values

    # --- memory images ---------------------------------------------------------------------------

    def weight_words(self):
        """The weight memory's init: word ``w`` = lane ``c`` at bits ``c * weight_bits``
        (:func:`~hwq.accel.schedule.pack_words`)."""
        return pack_words(self._sched.weights, self._weight_bits) or [0]

    def param_words(self):
        """The parameter memory's init: bias (32 bits, two's complement), multiplier, shift."""
        s = self._sched
        out = [(int(b) & ((1 << BIAS_BITS) - 1)) | (int(m) << BIAS_BITS) | (int(sh) << (BIAS_BITS + MULTIPLIER_BITS))
               for b, m, sh in zip(s.bias, s.multiplier, s.shift)]
        return out or [0]

    # --- hardware --------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        R, C = self._rows, self._cols
        A = self.addr_width
        m.submodules.gen = gen = ConvAddressGenerator(R, **self._gen_widths)
        m.submodules.array = array = PEArray(**self._array_args)
        if self._shared is not None:
            rq = self.rq
        else:
            m.submodules.requant = rq = Requantizer(self._tables, acc_width=self._acc_width)

        words = self.weight_words()
        m.submodules.weights = wmem = Memory(shape=unsigned(self._weight_bits * C), depth=len(words), init=words)
        wport = wmem.read_port(domain="sync")
        if self._loadable:                       # the overlay, written by the weight loader
            load = wmem.write_port()
            m.d.comb += [load.addr.eq(self.w_waddr), load.data.eq(self.w_wdata), load.en.eq(self.w_wen)]
        pwords = self.param_words()
        pwidth = BIAS_BITS + MULTIPLIER_BITS + SHIFT_BITS
        m.submodules.params = pmem = Memory(shape=unsigned(pwidth), depth=len(pwords), init=pwords)
        pport = pmem.read_port(domain="sync")

        for field, _ in ADDRESS_FIELDS:
            m.d.comb += getattr(gen, field).eq(getattr(self, field))

        # --- control ------------------------------------------------------------------------------
        gstride = Signal(A, name="group_stride", reset_less=True)    # per_group * positions
        cstride = Signal(A, name="tile_stride", reset_less=True)     # C * positions
        count = Signal(range(self._widths["per_group"] + 1), name="setup_count", reset_less=True)
        last_written = Signal(name="last_written")
        with m.FSM(name="state") as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [gstride.eq(0), cstride.eq(self.positions * C), count.eq(self._widths["per_group"] - 1),
                                 self.done.eq(0)]
                    m.next = "SETUP"
            with m.State("SETUP"):
                m.d.sync += gstride.eq((gstride << 1) + Mux(self.per_group.bit_select(count, 1), self.positions, 0))
                with m.If(count == 0):
                    m.next = "START"
                with m.Else():
                    m.d.sync += count.eq(count - 1)
            with m.State("START"):
                m.d.comb += gen.start.eq(1)
                m.next = "RUN"
            with m.State("RUN"):
                with m.If(last_written):
                    m.d.sync += self.done.eq(1)
                    m.next = "IDLE"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))

        # --- stage S: the memories' read cycle, between the generator and the array ---------------
        s_valid = Signal(name="s_valid")
        s_first, s_last = Signal(name="s_first", reset_less=True), Signal(name="s_last", reset_less=True)
        s_inside = Signal(R, name="s_inside", reset_less=True)
        s_addr = [Signal(A, name=f"s_addr{r}", reset_less=True) for r in range(R)]
        take = Signal(name="s_take")                                  # stage S loads the generator's output
        m.d.comb += [take.eq(array.ready | ~s_valid), gen.ready.eq(take)]
        with m.If(take):
            m.d.sync += [s_valid.eq(gen.valid), s_first.eq(gen.first), s_last.eq(gen.last),
                         s_inside.eq(gen.inside & gen.row_valid)]
            m.d.sync += [s_addr[r].eq(gen.addr[r]) for r in range(R)]
        # while S holds, re-read its addresses so the data stays S's
        m.d.comb += [self.act_addr[r].eq(Mux(take, gen.addr[r], s_addr[r])) for r in range(R)]
        m.d.comb += [wport.addr.eq(gen.weight_addr), wport.en.eq(take)]
        m.d.comb += [array.valid.eq(s_valid), array.first.eq(s_first), array.last.eq(s_last),
                     array.inside.eq(s_inside), array.pad_code.eq(self.pad_code),
                     array.a_format.eq(self.a_format), array.w_format.eq(self.w_format)]
        m.d.comb += [array.a[r].eq(self.act_data[r]) for r in range(R)]
        m.d.comb += [array.w[c].eq(wport.data[c * self._weight_bits:(c + 1) * self._weight_bits]) for c in range(C)]

        # --- drain side: which output each drained sum is -----------------------------------------
        drain = array.drain
        m.d.comb += drain.ready.eq(1)
        pb_width = _bits((1 << self._widths["positions"]) + R)
        pos_base = Signal(pb_width, name="pos_base", reset_less=True)     # p * R
        ch0 = Signal(self._widths["out_channels"] + 1, name="ch0", reset_less=True)
        gch0 = Signal.like(ch0, name="group_ch0", reset_less=True)
        rem = Signal(signed(self._widths["per_group"] + 1), name="lanes_left", reset_less=True)  # per_group - j * C
        j = Signal(self._widths["tiles_per_group"], name="j", reset_less=True)
        t_d = Signal(self._widths["tiles"], name="drain_tile", reset_less=True)
        chp = Signal(A, name="chp", reset_less=True)                  # ch0 * positions
        gp = Signal(A, name="gp", reset_less=True)                    # gch0 * positions
        row_addr = Signal(A, name="row_addr", reset_less=True)        # dst + chp + pos_base + row
        elem = Signal(A, name="elem_addr", reset_less=True)           # row_addr + col * positions
        with m.If(fsm.ongoing("START")):
            m.d.sync += [pos_base.eq(0), ch0.eq(0), gch0.eq(0), rem.eq(self.per_group), j.eq(0), t_d.eq(0),
                         chp.eq(0), gp.eq(0), row_addr.eq(self.dst_base), elem.eq(self.dst_base)]

        row, col = drain.payload.row, drain.payload.col
        transfer = drain.valid & drain.ready
        row_end = col == C - 1
        tile_end = row_end & (row == R - 1)
        last_p = pos_base + R >= self.positions
        group_end = j == self.tiles_per_group - 1
        final = tile_end & last_p & (t_d == self.tiles - 1)
        real = Signal(name="real")
        o = Signal(max(len(ch0), len(col)) + 1, name="o")
        m.d.comb += [o.eq(ch0 + col),
                     real.eq((pos_base + row < self.positions) & (col < rem) & (o < self.out_channels))]
        m.d.comb += pport.addr.eq(self.param_base + o)
        with m.If(transfer):
            with m.If(~row_end):
                m.d.sync += elem.eq(elem + self.positions)
            with m.Elif(~tile_end):
                m.d.sync += [row_addr.eq(row_addr + 1), elem.eq(row_addr + 1)]
            with m.Elif(~last_p):
                start = self.dst_base + chp + pos_base + R
                m.d.sync += [pos_base.eq(pos_base + R), row_addr.eq(start), elem.eq(start)]
            with m.Else():
                m.d.sync += [pos_base.eq(0), t_d.eq(t_d + 1)]
                with m.If(group_end):
                    new_gp = gp + gstride
                    m.d.sync += [j.eq(0), ch0.eq(gch0 + self.per_group), gch0.eq(gch0 + self.per_group),
                                 rem.eq(self.per_group), gp.eq(new_gp), chp.eq(new_gp),
                                 row_addr.eq(self.dst_base + new_gp), elem.eq(self.dst_base + new_gp)]
                with m.Else():
                    new_chp = chp + cstride
                    m.d.sync += [j.eq(j + 1), ch0.eq(ch0 + C), rem.eq(rem - C), chp.eq(new_chp),
                                 row_addr.eq(self.dst_base + new_chp), elem.eq(self.dst_base + new_chp)]

        # stage D: the parameter read; then the requantizer beside a delay line of the write
        d_valid = Signal(name="d_valid")
        d_acc = Signal(signed(self._acc_width), name="d_acc", reset_less=True)
        m.d.sync += d_valid.eq(transfer)
        m.d.sync += d_acc.eq(drain.payload.acc)
        tail = {"real": Signal(name="d_real"), "final": Signal(name="d_final"),
                "addr": Signal(A, name="d_addr", reset_less=True)}
        m.d.sync += [tail["real"].eq(transfer & real), tail["final"].eq(transfer & final), tail["addr"].eq(elem)]
        word = pport.data
        m.d.comb += [rq.acc.eq(d_acc), rq.bias.eq(word[:BIAS_BITS].as_signed()),
                     rq.multiplier.eq(word[BIAS_BITS:BIAS_BITS + MULTIPLIER_BITS]),
                     rq.shift.eq(word[BIAS_BITS + MULTIPLIER_BITS:]), rq.table.eq(self.table),
                     rq.low.eq(self.clamp_low), rq.high.eq(self.clamp_high), rq.valid.eq(d_valid)]
        for i in range(self._requant.latency):
            nxt = {"real": Signal(name=f"w{i}_real"), "final": Signal(name=f"w{i}_final"),
                   "addr": Signal(A, name=f"w{i}_addr", reset_less=True)}
            m.d.sync += [nxt[k].eq(tail[k]) for k in nxt]
            tail = nxt
        m.d.comb += [self.wr_en.eq(tail["real"]), self.wr_addr.eq(tail["addr"]), self.wr_data.eq(rq.code),
                     last_written.eq(tail["final"])]
        return m
