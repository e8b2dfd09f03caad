"""The vector unit: the steps of a schedule that are not convolutions, one at a time.

docs/accelerator.md, "Dataflow" (the vector unit) and "The schedule": an :class:`AddStep`, an
:class:`AvgPoolStep`, a :class:`MaxPoolStep` or a :class:`PadStep` of a
:class:`~hwq.accel.schedule.Schedule`, bit for bit as :func:`hwq.accel.schedule.execute` runs it
(``_run_add``, ``_run_avgpool``, ``_run_maxpool``, ``_run_pad``).

Every step is one loop nest, outermost first: channel ``c``, output row ``oy``, output column
``ox``, window row ``ky``, window column ``kx``; one window element (one activation read) per
cycle. Input coordinates come from counters (``iy = oy * sy - pad_top + ky * dy`` kept as two
running sums, no multiplier, no divider); the word address is ``src + c * H * W + iy * W + ix``
with ``iy`` and ``ix`` clipped to the plane (a position outside the plane is read at its clipped
address and flagged outside). A pad step is a ``1 x 1`` window whose outside positions give the
pad code; an add is a window over its one or two sources (``kx`` selects the source, ``ox`` the
element).

Pipeline: counters and the read address (cycle ``t``); the address registered (``rd_addr``,
``t + 1``: the address arithmetic stays off the memory's address path); the read data and the
parameter word (``t + 2``) into a :class:`~hwq.accel.array.TableDecoder`; at ``t + 3`` the
decoded value is accumulated (``dec * Ma`` / ``dec * Mb`` on ``K`` for an add, the sum of the
values inside for an average pool) or compared (the first maximum inside the window, with its
code, for a max pool); at a window's last element the result goes to the write port (max pool,
pad: at ``t + 4``) or to
the :class:`~hwq.accel.requant.Requantizer` (bias 0; ``M = 1`` and the step's shift for an add,
``M[p]`` and ``S[p]`` for an average pool) and from its code to the write port. Results are
written in CHW order to ``dst`` onwards.
"""

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..errors import InputError
from ..integer.requant import MULTIPLIER_BITS
from .array import MAX_TABLE_BITS, TableDecoder
from .requant import DEFAULT_MAX_LOGIC_WORDS, MAX_ACC_WIDTH, SHIFT_BITS, Requantizer, _layout, _signed_width
from .schedule import AddStep, AvgPoolStep, MaxPoolStep, PadStep, Schedule

__all__ = ["VectorUnit", "KINDS"]

#: the ``kind`` field of a descriptor
KINDS = {"add": 0, "avgpool": 1, "maxpool": 2, "pad": 3}

_VECTOR_STEPS = (AddStep, AvgPoolStep, MaxPoolStep, PadStep)


def _bits(value):
    """Unsigned width holding ``0 ... value`` (at least 1)."""
    return max(1, int(value).bit_length())


class VectorUnit(wiring.Component):
    """Runs one add, average pool, max pool or pad step of a schedule, one window element per cycle.

    The activation memory is outside: one synchronous read port (``rd_addr`` out, ``rd_data``
    in one cycle later) and one write port (``wr_addr``, ``wr_data``, ``wr_en``). A step is
    described by the ``desc`` port (:meth:`descriptor`), held stable from ``start`` until
    ``done``. ``start`` (one cycle, while not ``busy``) begins it; ``busy`` is high from the
    cycle after ``start`` until the cycle after its last write, in which ``done`` is high for one
    cycle.

    A step costs its :attr:`~hwq.accel.schedule.Step.cycles` (one cycle per window element, two
    per element of a two-input add) plus :meth:`overhead` cycles of pipeline.

    Parameters
    ----------
    sched : Schedule
        Its add, pool and pad steps give the decoder formats (each of at most
        :data:`~hwq.accel.array.MAX_TABLE_BITS` bits), the requantizer's tables (:attr:`tables`:
        those of its add and average pool steps), the average pools' multipliers and shifts (a
        parameter memory, initialised: :attr:`param_words`) and every width.
    max_logic_words : int, optional
        As for :class:`~hwq.accel.requant.Requantizer`.
    requant : Requantizer, optional
        A requantizer shared with another unit (the :class:`~hwq.accel.top.Accelerator`'s, one
        for its conv engine and vector unit, which never run at once), built by the caller with
        ``max_logic_words`` and tables that include this unit's: the unit builds none, its
        :attr:`tables` are the shared one's, and it drives the requantizer through the port
        ``rq``. Default: its own.

    Attributes
    ----------
    start : Signal(1), in
    desc : Signal(desc_layout), in
        The step's descriptor (fields: :meth:`descriptor`).
    busy, done : Signal(1), out
    rd_addr : Signal(unsigned(addr_bits)), out
    rd_data : Signal(unsigned(act_bits)), in
    wr_addr : Signal(unsigned(addr_bits)), out
    wr_data : Signal(unsigned(act_bits)), out
    wr_en : Signal(1), out
    rq : Out(requant.signature.flip())
        Only with a shared ``requant`` (and an add or average pool step): the requantizer's
        inputs (out) and outputs (in).

    Raises
    ------
    InputError
        Before elaboration: ``sched`` not a :class:`Schedule`, or without an add, pool or pad
        step; a step whose input format is wider than 8 bits; a numerator wider than the
        requantizer takes; a shared ``requant`` without one of the unit's tables, narrower than
        its numerators, or built with another ``max_logic_words``.
    """

    def __init__(self, sched, *, max_logic_words=DEFAULT_MAX_LOGIC_WORDS, requant=None):
        if not isinstance(sched, Schedule):
            raise InputError(f"sched must be a Schedule (hwq.accel.schedule), not {type(sched).__name__}")
        steps = [s for s in sched.steps if isinstance(s, _VECTOR_STEPS)]
        if not steps:
            raise InputError("sched has no add, average pool, max pool or pad step for the vector unit")
        self._sched, self._steps = sched, steps

        formats = []
        for step in steps:
            for fmt in self._in_formats(step):
                if fmt.bits > MAX_TABLE_BITS:
                    raise InputError(f"step {step.name!r}: input format {fmt} has {fmt.bits}-bit codes; the vector "
                                     f"unit's decoder takes at most {MAX_TABLE_BITS}")
                if fmt not in formats:
                    formats.append(fmt)
        self._formats = tuple(formats)

        # average pool parameters: the unit's own memory, entries in step order
        self._param_base, words = {}, []
        for step in steps:
            if step.kind == "avgpool":
                n = step.out_shape[1] * step.out_shape[2]
                self._param_base[step.name] = len(words)
                entries = slice(step.param_base, step.param_base + n)
                words += [int(m) | (int(s) << MULTIPLIER_BITS)
                          for m, s in zip(sched.multiplier[entries], sched.shift[entries])]
        self._param_words = words

        # numerator bounds (every partial sum and term): the requantizer's accumulator
        lo = hi = 0
        for step in steps:
            if step.kind == "add":
                a = b = int(step.constant)
                lo, hi = min(lo, a), max(hi, b)
                for fmt, mul in zip(step.in_formats, step.multipliers):
                    ends = (int(fmt.int_values.min()) * int(mul), int(fmt.int_values.max()) * int(mul))
                    a, b = a + min(ends), b + max(ends)
                    lo, hi = min(lo, a, min(ends)), max(hi, b, max(ends))
            elif step.kind == "avgpool":
                k = step.kernel[0] * step.kernel[1]
                lo = min(lo, k * int(step.in_format.int_values.min()))
                hi = max(hi, k * int(step.in_format.int_values.max()))
        self._acc_width = _signed_width(lo, hi)
        if self._acc_width > MAX_ACC_WIDTH:
            raise InputError(f"sched: numerators from {lo} to {hi} need a {self._acc_width}-bit accumulator; the "
                             f"requantizer takes at most {MAX_ACC_WIDTH}")
        self._needs_requant = any(s.kind in ("add", "avgpool") for s in steps)
        self._max_logic_words = max_logic_words
        # the encoder tables of the add and average pool steps, in first-use order
        self._tables, self._table_index = [], {}
        self._shared = requant if self._needs_requant else None
        if requant is not None:
            if not isinstance(requant, Requantizer):
                raise InputError(f"requant must be a Requantizer (hwq.accel.requant), not {type(requant).__name__}")
            if requant.acc_width < self._acc_width:
                raise InputError(f"requant takes {requant.acc_width}-bit numerators, the unit needs {self._acc_width}")
            self._tables = list(requant.tables)
        for step in steps:
            if step.kind in ("add", "avgpool"):
                table = sched.tables[sched.table_index[step.name]]
                if not any(table is t for t in self._tables):
                    if requant is not None:
                        raise InputError(f"requant has no table for step {step.name!r} ({table.format})")
                    self._tables.append(table)
                self._table_index[step.name] = next(i for i, t in enumerate(self._tables) if t is table)
        # the requantizer is checked now and built in elaborate(), so that an unelaborated unit
        # leaves no unused elaboratable behind
        if self._needs_requant:
            self._rq_layout = _layout(self._tables, None, max_logic_words)
            if self._shared is not None and (self._shared.latency != 4 + self._rq_layout.latency or
                                             self._shared.table_bits != self._rq_layout.table_bits):
                raise InputError("requant was built with another max_logic_words than the unit's")
            table_bits, index_bits = self._rq_layout.table_bits, self._rq_layout.index_bits
        else:
            self._rq_layout = None
            table_bits, index_bits = 1, 1

        descs = [self._describe(s) for s in steps]

        def top(key, floor=1):
            return max([floor] + [int(d[key]) for d in descs])

        self._addr_bits = _bits(max(sched.act_words - 1, 1))
        self._act_bits = int(sched.act_bits)
        dim_bits = _bits(max(top(k) for k in ("channels", "in_h", "in_w", "out_h", "out_w", "kernel_h", "kernel_w",
                                             "stride_h", "stride_w", "dil_h", "dil_w", "pad_top", "pad_left")))
        muls = [int(v) for d in descs for v in (d["mul_a"], d["mul_b"])]
        self._layout = data.StructLayout({
            "kind": unsigned(2),
            "src_a": unsigned(self._addr_bits),
            "src_b": unsigned(self._addr_bits),
            "dst": unsigned(self._addr_bits),
            "channels": unsigned(dim_bits),
            "in_h": unsigned(dim_bits),
            "in_w": unsigned(dim_bits),
            "plane": unsigned(_bits(top("plane"))),
            "out_h": unsigned(dim_bits),
            "out_w": unsigned(dim_bits),
            "out_size": unsigned(_bits(top("out_size"))),
            "kernel_h": unsigned(dim_bits),
            "kernel_w": unsigned(dim_bits),
            "stride_h": unsigned(dim_bits),
            "stride_w": unsigned(dim_bits),
            "pad_top": unsigned(dim_bits),
            "pad_left": unsigned(dim_bits),
            "dil_h": unsigned(dim_bits),
            "dil_w": unsigned(dim_bits),
            "param_base": unsigned(_bits(max(len(words) - 1, 1))),
            "mul_a": signed(_signed_width(min(muls), max(muls))),
            "mul_b": signed(_signed_width(min(muls), max(muls))),
            "constant": signed(_signed_width(min(int(d["constant"]) for d in descs), top("constant", 0))),
            "shift": unsigned(SHIFT_BITS),
            "table": unsigned(table_bits),
            "low": unsigned(index_bits),
            "high": unsigned(index_bits),
            "format_a": unsigned(max(1, ceil_log2(max(len(formats), 1)))),
            "format_b": unsigned(max(1, ceil_log2(max(len(formats), 1)))),
            "pad_code": unsigned(self._act_bits),
        })
        self._dim_bits = dim_bits
        ports = {
            "start": In(1),
            "desc": In(self._layout),
            "busy": Out(1),
            "done": Out(1),
            "rd_addr": Out(unsigned(self._addr_bits)),
            "rd_data": In(unsigned(self._act_bits)),
            "wr_addr": Out(unsigned(self._addr_bits)),
            "wr_data": Out(unsigned(self._act_bits)),
            "wr_en": Out(1),
        }
        if self._shared is not None:
            ports["rq"] = Out(self._shared.signature.flip())
        super().__init__(ports)

    @staticmethod
    def _in_formats(step):
        if step.kind == "add":
            return tuple(step.in_formats)
        if step.kind == "avgpool":
            return (step.in_format,)
        if step.kind == "maxpool":
            return (step.format,)
        return ()

    def _describe(self, step):
        """The descriptor of ``step`` (checked to be one of the schedule's vector steps)."""
        if step.kind == "add":
            two = len(step.srcs) == 2
            fa = self._formats.index(step.in_formats[0])
            return dict(kind=KINDS["add"], src_a=step.srcs[0].base, src_b=step.srcs[-1].base, dst=step.out.base,
                        channels=1, in_h=1, in_w=step.out.size, plane=step.out.size, out_h=1, out_w=step.out.size,
                        out_size=step.out.size, kernel_h=1, kernel_w=2 if two else 1, stride_h=1, stride_w=1,
                        pad_top=0, pad_left=0, dil_h=1, dil_w=1, param_base=0,
                        mul_a=int(step.multipliers[0]), mul_b=int(step.multipliers[-1]),
                        constant=int(step.constant), shift=int(step.shift),
                        table=self._table_index[step.name], low=int(step.clamp[0]), high=int(step.clamp[1]),
                        format_a=fa, format_b=self._formats.index(step.in_formats[-1]), pad_code=0)
        c, h, w = step.in_shape
        common = dict(src_a=step.src.base, src_b=step.src.base, dst=step.out.base, channels=c, in_h=h, in_w=w,
                      plane=h * w, out_size=step.out.size, mul_a=1, mul_b=1, constant=0, shift=0, table=0, low=0,
                      high=0, format_a=0, format_b=0, pad_code=0, param_base=0)
        if step.kind == "pad":
            top, bottom, left, right = step.padding
            return dict(common, kind=KINDS["pad"], out_h=h + top + bottom, out_w=w + left + right, kernel_h=1,
                        kernel_w=1, stride_h=1, stride_w=1, pad_top=top, pad_left=left, dil_h=1, dil_w=1,
                        pad_code=int(step.pad_code))
        pool = dict(common, out_h=step.out_shape[1], out_w=step.out_shape[2], kernel_h=step.kernel[0],
                    kernel_w=step.kernel[1], stride_h=step.stride[0], stride_w=step.stride[1],
                    pad_top=step.padding[0], pad_left=step.padding[1])
        if step.kind == "maxpool":
            f = self._formats.index(step.format)
            return dict(pool, kind=KINDS["maxpool"], dil_h=step.dilation[0], dil_w=step.dilation[1], format_a=f,
                        format_b=f)
        f = self._formats.index(step.in_format)
        return dict(pool, kind=KINDS["avgpool"], dil_h=1, dil_w=1, format_a=f, format_b=f,
                    param_base=self._param_base[step.name], table=self._table_index[step.name],
                    low=int(step.clamp[0]), high=int(step.clamp[1]))

    def descriptor(self, step):
        """Every ``desc`` field for ``step`` (dict of field name to int).

        ``step`` is one of the schedule's add, pool or pad steps (or its name). Fields: ``kind``
        (:data:`KINDS`); ``src_a``, ``src_b`` (the add's second source; else ``src_a``), ``dst``:
        region bases; ``channels``, ``in_h``, ``in_w``, ``plane`` (``in_h * in_w``): the input;
        ``out_h``, ``out_w`` (ceil mode applied), ``out_size`` (words written); ``kernel_*``,
        ``stride_*``, ``dil_*``, ``pad_top``, ``pad_left``: the window (a pad: ``1 x 1``, its top
        and left padding); ``param_base``: the first output position's entry in the unit's
        parameter memory (average pool); ``mul_a``, ``mul_b``, ``constant``, ``shift``: the
        add's; ``table`` (into :attr:`tables`), ``low``, ``high``: encoder table and clamp; ``format_a``, ``format_b``:
        decoder format of each source (:attr:`formats`); ``pad_code``. An add of ``N`` elements
        is the loop ``channels = out_h = 1``, ``out_w = N``, ``kernel_w`` = its sources.

        Raises
        ------
        InputError
            For a step (or name) that is not one of the schedule's vector steps.
        """
        for known in self._steps:
            if step is known or step == known.name:
                return self._describe(known)
        raise InputError(f"step must be an add, pool or pad step of the unit's schedule, not {step!r}")

    def cycles(self, step):
        """Cycles from ``start`` to ``done`` for ``step``: its ``cycles`` plus :meth:`overhead`."""
        for known in self._steps:
            if step is known or step == known.name:
                return known.cycles + self.overhead(known.kind)
        raise InputError(f"step must be an add, pool or pad step of the unit's schedule, not {step!r}")

    def overhead(self, kind):
        """Pipeline cycles a step of ``kind`` adds to its ``cycles``: 5 for max pool and pad
        (address register, read, decode, compare, write register, and ``done``), plus the
        requantizer's latency for add and average pool."""
        if kind not in KINDS:
            raise InputError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")
        return 5 + (self.requant_latency if kind in ("add", "avgpool") else 0)

    @property
    def desc_layout(self):
        """The ``desc`` port's :class:`~amaranth.lib.data.StructLayout`."""
        return self._layout

    @property
    def tables(self):
        """The requantizer's encoder tables, in ``table`` field order: those of the schedule's add
        and average pool steps, in first-use order, or a shared ``requant``'s tables (tuple)."""
        return tuple(self._tables)

    @property
    def formats(self):
        """The decoder formats, in ``format_a`` / ``format_b`` order (tuple)."""
        return self._formats

    @property
    def addr_bits(self):
        """Width of the activation memory addresses."""
        return self._addr_bits

    @property
    def act_bits(self):
        """Width of an activation word."""
        return self._act_bits

    @property
    def acc_width(self):
        """Width of the signed numerator (the requantizer's ``acc``)."""
        return self._acc_width

    @property
    def param_words(self):
        """The parameter memory's words: ``M | S << 16`` per average pool output position."""
        return list(self._param_words)

    @property
    def latency(self):
        """Cycles from a window's counters to its write: 4 for max pool and pad, 4 plus the
        requantizer's latency for add and average pool (the longer)."""
        return 4 + self.requant_latency

    @property
    def requant_latency(self):
        """The requantizer's :attr:`~hwq.accel.requant.Requantizer.latency` (0 without one: a
        schedule whose vector steps are max pools and pads only)."""
        return 4 + self._rq_layout.latency if self._rq_layout is not None else 0

    def elaborate(self, platform):
        m = Module()
        d = self.desc
        cw = self._dim_bits * 2 + 3                                # signed coordinates
        dim = self._dim_bits

        # --- stage 0: counters, address --------------------------------------------------------
        run = Signal()
        c, oy, ox, ky, kx = (Signal(dim, name=n) for n in ("c", "oy", "ox", "ky", "kx"))
        iy0, kyd, ix0, kxd = (Signal(signed(cw), name=n) for n in ("iy0", "kyd", "ix0", "kxd"))
        chan = Signal(self._addr_bits + 1)
        p = Signal(len(d.param_base))
        is_add = d.kind == KINDS["add"]
        is_max = d.kind == KINDS["maxpool"]
        is_pad = d.kind == KINDS["pad"]

        iy, ix = Signal(signed(cw)), Signal(signed(cw))
        m.d.comb += [iy.eq(iy0 + kyd), ix.eq(ix0 + kxd)]
        in_y = (iy >= 0) & (iy < d.in_h)
        in_x = (ix >= 0) & (ix < d.in_w)
        yc = Mux(iy < 0, 0, Mux(iy >= d.in_h, d.in_h - 1, iy))
        xc = Mux(ix < 0, 0, Mux(ix >= d.in_w, d.in_w - 1, ix))
        row = Signal(self._addr_bits + 1)
        m.d.comb += row.eq(yc[:dim] * d.in_w)
        addr = Mux(is_add, Mux(kx[0], d.src_b, d.src_a) + ox, chan + row + xc[:dim])
        inside = is_add | (in_y & in_x)
        w_first = (ky == 0) & (kx == 0)
        w_last = (ky == d.kernel_h - 1) & (kx == d.kernel_w - 1)
        final = w_last & (ox == d.out_w - 1) & (oy == d.out_h - 1) & (c == d.channels - 1)

        started = self.start & ~self.busy
        with m.If(started):
            m.d.sync += [run.eq(1), self.busy.eq(1), c.eq(0), oy.eq(0), ox.eq(0), ky.eq(0), kx.eq(0),
                         iy0.eq(-d.pad_top), ix0.eq(-d.pad_left), kyd.eq(0), kxd.eq(0), chan.eq(d.src_a), p.eq(0)]
        with m.Elif(run):
            with m.If(kx != d.kernel_w - 1):
                m.d.sync += [kx.eq(kx + 1), kxd.eq(kxd + d.dil_w)]
            with m.Else():
                m.d.sync += [kx.eq(0), kxd.eq(0)]
                with m.If(ky != d.kernel_h - 1):
                    m.d.sync += [ky.eq(ky + 1), kyd.eq(kyd + d.dil_h)]
                with m.Else():
                    m.d.sync += [ky.eq(0), kyd.eq(0), p.eq(p + 1)]
                    with m.If(ox != d.out_w - 1):
                        m.d.sync += [ox.eq(ox + 1), ix0.eq(ix0 + d.stride_w)]
                    with m.Else():
                        m.d.sync += [ox.eq(0), ix0.eq(-d.pad_left)]
                        with m.If(oy != d.out_h - 1):
                            m.d.sync += [oy.eq(oy + 1), iy0.eq(iy0 + d.stride_h)]
                        with m.Else():
                            m.d.sync += [oy.eq(0), iy0.eq(-d.pad_top), c.eq(c + 1), chan.eq(chan + d.plane),
                                         p.eq(0)]
            with m.If(final):
                m.d.sync += run.eq(0)

        # --- stage A: the read address, registered (the address arithmetic is off the memory's
        # address path: counters -> clip -> row product -> sums -> here) ------------------------
        va, ina, firsta, lasta, pha = (Signal(name=n) for n in ("va", "inside_a", "first_a", "last_a", "phase_a"))
        pa = Signal.like(p, name="p_a")
        m.d.sync += [va.eq(run & ~started), ina.eq(inside), firsta.eq(w_first), lasta.eq(w_last), pha.eq(kx[0]),
                     pa.eq(p), self.rd_addr.eq(addr)]

        # parameter memory: read at the window's position
        if self._param_words:
            pmem = Memory(shape=unsigned(MULTIPLIER_BITS + SHIFT_BITS), depth=len(self._param_words),
                          init=self._param_words)
            m.submodules.params = pmem
            pport = pmem.read_port(domain="sync")
            m.d.comb += pport.addr.eq(d.param_base + pa)
            param_data = pport.data
        else:
            param_data = Const(1, MULTIPLIER_BITS + SHIFT_BITS)

        # --- stage 1: read data into the decoder ---------------------------------------------
        v1, in1, first1, last1, ph1 = (Signal(name=n) for n in ("v1", "inside1", "first1", "last1", "phase1"))
        m.d.sync += [v1.eq(va), in1.eq(ina), first1.eq(firsta), last1.eq(lasta), ph1.eq(pha)]
        if self._formats:
            m.submodules.decoder = dec = TableDecoder(self._formats)
            m.d.comb += [dec.code.eq(self.rd_data), dec.format.eq(Mux(ph1, d.format_b, d.format_a))]
            value = dec.value
        else:
            value = Const(0, signed(2))

        # --- stage 2: accumulate / compare ---------------------------------------------------
        v2, in2, first2, last2, ph2 = (Signal(name=n) for n in ("v2", "inside2", "first2", "last2", "phase2"))
        code2 = Signal(self._act_bits)
        param2 = Signal(len(param_data))
        m.d.sync += [v2.eq(v1), in2.eq(in1), first2.eq(first1), last2.eq(last1), ph2.eq(ph1),
                     code2.eq(self.rd_data), param2.eq(param_data)]

        acc = Signal(signed(self._acc_width))
        term = Signal(signed(self._acc_width))
        m.d.comb += term.eq(Mux(is_add, value * Mux(ph2, d.mul_b, d.mul_a), Mux(in2, value, 0)))
        acc_next = Signal(signed(self._acc_width))
        m.d.comb += acc_next.eq(Mux(first2, Mux(is_add, d.constant, 0), acc) + term)

        best_v = Signal(value.shape(), name="best_value")
        best_c = Signal(self._act_bits)
        have = Signal()
        take = first2 | (in2 & (~have | (value > best_v)))
        best_v_next = Mux(take, value, best_v)
        best_c_next = Mux(take, code2, best_c)
        have_next = Mux(first2, in2, have | in2)
        with m.If(v2):
            m.d.sync += [acc.eq(acc_next), best_v.eq(best_v_next), best_c.eq(best_c_next), have.eq(have_next)]

        # --- stage 3: write (max pool, pad) or requantize (add, average pool) -----------------
        direct_valid = Signal()
        direct_code = Signal(self._act_bits)
        m.d.sync += [direct_valid.eq(v2 & last2 & (is_max | is_pad)),
                     direct_code.eq(Mux(is_pad, Mux(in2, code2, d.pad_code), best_c_next))]
        wr_code, wr_valid = direct_code, direct_valid
        if self._rq_layout is not None:
            if self._shared is not None:
                rq = self.rq
            else:
                m.submodules.requant = rq = Requantizer(self._tables, acc_width=self._acc_width,
                                                        max_logic_words=self._max_logic_words)
                assert rq.latency == self.requant_latency
            mult = param2[:MULTIPLIER_BITS]
            shift = param2[MULTIPLIER_BITS:]
            m.d.sync += [rq.acc.eq(acc_next), rq.bias.eq(0), rq.multiplier.eq(Mux(is_add, 1, mult)),
                         rq.shift.eq(Mux(is_add, d.shift, shift)), rq.table.eq(d.table), rq.low.eq(d.low),
                         rq.high.eq(d.high), rq.valid.eq(v2 & last2 & ~(is_max | is_pad))]
            wr_valid = direct_valid | rq.code_valid
            wr_code = Mux(direct_valid, direct_code, rq.code)

        written = Signal(len(d.out_size))
        m.d.comb += [self.wr_en.eq(wr_valid), self.wr_data.eq(wr_code), self.wr_addr.eq(d.dst + written)]
        m.d.sync += self.done.eq(0)
        with m.If(started):
            m.d.sync += written.eq(0)
        with m.Elif(wr_valid):
            m.d.sync += written.eq(written + 1)
            with m.If(written == d.out_size - 1):
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]
        return m
