"""The weight store and its loader: weights that do not fit the on-chip weight memory
(docs/accelerator.md, "Weight store").

A :class:`~hwq.accel.schedule.Schedule` made with ``weight_capacity`` keeps some conv steps'
weights in a **store** (:attr:`~hwq.accel.schedule.Schedule.store`) and copies each such
step's words into the on-chip weight memory's overlay just before it runs
(:class:`~hwq.accel.schedule.WeightLoad`). :class:`WeightLoader` holds the store, a single-port
memory of :data:`~hwq.accel.schedule.STORE_BITS`-bit words marked for the UP5K's SPRAM
(:func:`~hwq.accel.memory.single_port`), and does two things:

- **fill**, once after reset: the host sends the store's contents over the accelerator's input
  stream (:func:`preload_payloads`: every 16-bit store word as ``ceil(16 / payload_bits)``
  payloads, least significant first); ``filled`` rises after the last one. The SPRAM has no
  initial contents (Lattice TN1314), so nothing else can put the weights there.
- **copy**, one :class:`~hwq.accel.schedule.WeightLoad` per ``start``: ``words`` weight words
  from store word ``src * pieces`` on, ``pieces`` store reads each (one per cycle), each word
  written to the weight memory at ``dst + i`` through the engine's write port (``w_addr``,
  ``w_data``, ``w_en``) the cycle its last piece arrives.

Timing: a copy takes ``load.cycles + 2`` cycles from ``start`` to ``done``
(:meth:`WeightLoader.cycles`): the start cycle, ``words * pieces`` reads, and the last read's
data.
"""

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import InputError
from .memory import single_port
from .schedule import STORE_BITS, Schedule

__all__ = ["WeightLoader", "preload_payloads", "payloads_per_store_word"]


def _bits(value):
    return max(1, int(value).bit_length())


def _payload_bits(value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"payload_bits must be a positive integer, not {value!r}")
    return value


def payloads_per_store_word(payload_bits):
    """Input-stream payloads that carry one store word: ``ceil(16 / payload_bits)``.

    Raises
    ------
    InputError
        If ``payload_bits`` is not a positive integer.
    """
    return -(-STORE_BITS // _payload_bits(payload_bits))


def preload_payloads(sched, payload_bits):
    """What the host sends after reset to fill the weight store of ``sched``.

    Parameters
    ----------
    sched : Schedule
        A schedule, with a weight store or without (then nothing is sent).
    payload_bits : int
        Width of the input stream's payload (the accelerator's ``act_bits``).

    Returns
    -------
    list of int
        Every store word (:meth:`~hwq.accel.schedule.Schedule.store_words`) as
        :func:`payloads_per_store_word` payloads, least significant ``payload_bits`` first
        (the last payload's bits past the word's 16 are zero). Empty without a store.

    Raises
    ------
    InputError
        If ``sched`` is not a Schedule or ``payload_bits`` not a positive integer.
    """
    if not isinstance(sched, Schedule):
        raise InputError(f"sched must be a Schedule (hwq.accel.schedule), not {type(sched).__name__}")
    n = payloads_per_store_word(payload_bits)
    mask = (1 << payload_bits) - 1
    return [(word >> (payload_bits * j)) & mask for word in sched.store_words() for j in range(n)]


class WeightLoader(wiring.Component):
    """The weight store of a :class:`~hwq.accel.schedule.Schedule` and the unit that copies
    from it (module docstring).

    Parameters
    ----------
    sched : Schedule
        A schedule with a weight store (``weight_capacity`` smaller than its weights).
    payload_bits : int
        Width of the fill stream's payload.
    weight_addr_width : int
        Width of the weight memory's address (the engine's ``w_waddr``).
    spram : bool, optional
        Mark the store for SPRAM (default True).

    Attributes
    ----------
    fill : In(stream.Signature(unsigned(payload_bits)))
        The store's contents after reset (:func:`preload_payloads`); ready until full.
    filled : Signal(1), out
        The store holds all of its words (reset: 0).
    start : Signal(1), in
        Starts a copy (ignored while :attr:`busy`); ``src``, ``dst``, ``words`` stable until
        ``done``.
    src, dst, words : Signal, in
        The :class:`~hwq.accel.schedule.WeightLoad`'s fields (:meth:`descriptor`).
    w_addr, w_data, w_en : out
        The weight memory's write port.
    busy, done : Signal(1), out
        A copy runs; the last word has been written (held until the next ``start``).

    Raises
    ------
    InputError
        ``sched`` not a Schedule or without a store, a width not a positive integer, or a
        ``weight_addr_width`` too narrow for the weight memory.
    """

    def __init__(self, sched, *, payload_bits, weight_addr_width, spram=True):
        if not isinstance(sched, Schedule):
            raise InputError(f"sched must be a Schedule (hwq.accel.schedule), not {type(sched).__name__}")
        if not sched.loads:
            raise InputError("sched has no weight store (schedule(..., weight_capacity=...) spilled no layer)")
        _payload_bits(payload_bits)
        if isinstance(weight_addr_width, bool) or not isinstance(weight_addr_width, int) or weight_addr_width < 1:
            raise InputError(f"weight_addr_width must be a positive integer, not {weight_addr_width!r}")
        if len(sched.weights) > 1 << weight_addr_width:
            raise InputError(f"weight_addr_width {weight_addr_width} cannot address the {len(sched.weights)} words "
                             "of the weight memory")
        self._sched = sched
        self._pieces = sched.store_pieces
        self._depth = len(sched.store) * self._pieces
        self._payload_bits = payload_bits
        self._spram = bool(spram)
        self._word_bits = sched.array.cols * sched.weight_bits
        self._widths = {"src": _bits(self._depth - 1), "dst": weight_addr_width,
                        "words": _bits(max(load.words for load in sched.loads.values()))}
        super().__init__({
            "fill": In(stream.Signature(unsigned(payload_bits))),
            "filled": Out(1),
            "start": In(1),
            "src": In(unsigned(self._widths["src"])),
            "dst": In(unsigned(self._widths["dst"])),
            "words": In(unsigned(self._widths["words"])),
            "w_addr": Out(unsigned(weight_addr_width)),
            "w_data": Out(unsigned(self._word_bits)),
            "w_en": Out(1),
            "busy": Out(1),
            "done": Out(1),
        })

    @property
    def depth(self):
        """Store words (:data:`~hwq.accel.schedule.STORE_BITS` bits each)."""
        return self._depth

    @property
    def preload_words(self):
        """Payloads the fill takes (:func:`preload_payloads`)."""
        return self._depth * payloads_per_store_word(self._payload_bits)

    def descriptor(self, load):
        """The ``src`` / ``dst`` / ``words`` values of ``load`` (a WeightLoad of the schedule)."""
        values = {"src": load.src * self._pieces, "dst": load.dst, "words": load.words}
        for field, value in values.items():
            if not 0 <= value < 1 << self._widths[field]:
                raise InputError(f"load of {load.step!r}: {field} {value} does not fit its "
                                 f"{self._widths[field]}-bit port")
        return values

    @staticmethod
    def cycles(load):
        """Cycles from ``start`` to ``done`` for ``load``: ``load.cycles + 2``."""
        return load.cycles + 2

    def elaborate(self, platform):
        m = Module()
        P, pb = self._pieces, self._payload_bits
        n = payloads_per_store_word(pb)

        # --- fill: payloads to store words, written as each one completes -------------------------
        fill_addr = Signal(range(max(self._depth, 2)), name="fill_addr")
        part = Signal(range(max(n, 2)), name="fill_part")
        low = Signal(max(1, (n - 1) * pb), name="fill_low")          # the word's payloads so far
        take = self.fill.valid & ~self.filled
        write = Signal(name="store_write")
        m.d.comb += [self.fill.ready.eq(~self.filled), write.eq(take & (part == n - 1))]
        with m.If(take):
            m.d.sync += part.eq(0 if n == 1 else (part + 1) % n)
            if n > 1:
                m.d.sync += low.eq(Cat(low[pb:], self.fill.payload))
        with m.If(write):
            m.d.sync += fill_addr.eq(fill_addr + 1)
            with m.If(fill_addr == self._depth - 1):
                m.d.sync += self.filled.eq(1)
        wdata = Cat(low, self.fill.payload)[:STORE_BITS] if n > 1 else self.fill.payload

        # --- copy ---------------------------------------------------------------------------------
        raddr = Signal(range(max(self._depth, 2)), name="read_addr")
        piece = Signal(range(max(P, 2)), name="piece")
        left = Signal(self._widths["words"] + 1, name="words_left")     # words still to read
        reading = Signal(name="reading")
        got = Signal(name="got")                                      # store data valid this cycle
        got_last = Signal(name="got_last")                            # ... and it is a word's last piece
        rdata = single_port(m, "store", width=STORE_BITS, depth=max(self._depth, 2), write=write,
                            waddr=fill_addr, wdata=wdata, raddr=raddr, spram=self._spram)
        word = Signal(max(1, (P - 1) * STORE_BITS), name="word_low")  # the word's pieces so far
        m.d.sync += [got.eq(reading), got_last.eq(reading & (piece == P - 1))]
        with m.If(self.start & ~self.busy):
            m.d.sync += [raddr.eq(self.src), left.eq(self.words), piece.eq(0), reading.eq(1),
                         self.w_addr.eq(self.dst), self.busy.eq(1), self.done.eq(0)]
        with m.Elif(reading):
            m.d.sync += raddr.eq(raddr + 1)
            with m.If(piece == P - 1):
                m.d.sync += [piece.eq(0), left.eq(left - 1)]
                with m.If(left == 1):
                    m.d.sync += reading.eq(0)
            with m.Else():
                m.d.sync += piece.eq(piece + 1)
        if P > 1:
            with m.If(got):
                m.d.sync += word.eq(Cat(word[STORE_BITS:], rdata))
        m.d.comb += [self.w_data.eq(Cat(word, rdata) if P > 1 else rdata), self.w_en.eq(got_last)]
        with m.If(got_last):
            m.d.sync += self.w_addr.eq(self.w_addr + 1)
            with m.If(~reading):
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]
        return m
