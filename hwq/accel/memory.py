"""The accelerator's activation memory: ``R`` synchronous read ports and one write port over a
:class:`~hwq.accel.schedule.Schedule`'s ``act_words`` words (docs/accelerator.md, "Memories").

Two builds, chosen by the schedule's :attr:`~hwq.accel.schedule.Schedule.banks`:

- **one bank**: one :class:`amaranth.lib.memory.Memory` with ``R`` read ports and a write port
  (yosys makes ``R`` copies, written together; block RAM on the iCE40);
- **banks** (``banks > 1``): bank ``b`` is words ``b * bank_words ...`` (the address's top bits),
  built as ``R`` single-port copies: each copy has one address, the write address when the bank
  is written, else its read port's, and its read port is disabled while writing (it keeps its
  data). That is the SB_SPRAM256KA's port (``synth_ice40 -spram`` infers it, see
  :mod:`hwq.synth.yosys`), and it is exact because the schedule never lets a step read the bank
  it writes. A read port's data is the copy of the bank its address named one cycle before.
  With ``spram`` the copies are marked for SPRAM (attribute ``ram_style = "huge"``, name
  containing ``spram``: their zero initial contents are dropped at synthesis, the UP5K's SPRAM
  has none; nothing reads a word before writing it).

Read latency 1, like a synchronous :class:`~amaranth.lib.memory.Memory` read port; a read and a
write of the same word in one cycle returns the old word (one bank) or is not allowed (banks).
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..errors import InputError

__all__ = ["ActivationMemory", "single_port", "SPRAM_WORDS", "SPRAM_BITS", "SPRAM_MARK"]

#: words and bits of one SB_SPRAM256KA
SPRAM_WORDS, SPRAM_BITS = 16384, 16
#: in the name of every memory marked for SPRAM: the synthesis scripts drop these memories'
#: initial contents (hwq.synth.yosys.SPRAM_MARK, the same convention on the tool side)
SPRAM_MARK = "spram"


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive integer, not {value!r}")
    return value


def single_port(m, name, *, width, depth, write, waddr, wdata, raddr, spram):
    """Add a single-port memory to module ``m``; return its read data.

    One address: ``waddr`` in a cycle with ``write`` high (``wdata`` is written), else
    ``raddr`` (the read port is disabled while writing and keeps its data). That is the
    SB_SPRAM256KA's port, which ``synth_ice40 -spram`` infers.

    Parameters
    ----------
    m : Module
    name : str
        Submodule name; with ``spram`` :data:`SPRAM_MARK` is appended and the memory gets the
        attribute ``ram_style = "huge"`` (its zero initial contents are dropped at synthesis).
    width, depth : int
    write : Value
    waddr, wdata, raddr : Value
    spram : bool

    Returns
    -------
    Value
        The word at ``raddr`` of the previous cycle (read latency 1).
    """
    name = name + (f"_{SPRAM_MARK}" if spram else "")
    mem = Memory(shape=unsigned(width), depth=depth, init=[], attrs={"ram_style": "huge"} if spram else None)
    m.submodules[name] = mem
    rport, wport = mem.read_port(domain="sync"), mem.write_port()
    addr = Signal(range(max(depth, 2)), name=f"{name}_addr")
    m.d.comb += [addr.eq(Mux(write, waddr, raddr)), rport.addr.eq(addr), rport.en.eq(~write),
                 wport.addr.eq(addr), wport.data.eq(wdata), wport.en.eq(write)]
    return rport.data


class ActivationMemory(wiring.Component):
    """``R`` read ports and one write port over ``depth`` words, in one memory or in banks.

    Parameters
    ----------
    depth : int
        Words (``sched.act_words``).
    width : int
        Bits per word.
    read_ports : int
        ``R``.
    addr_bits : int
        Width of the address ports (at least enough for ``depth``).
    banks : int, optional
        1 (default): one memory. More: single-port banks of ``bank_words`` words.
    bank_words : int, optional
        Words per bank, a power of two (required with ``banks > 1``).
    spram : bool, optional
        Mark the banks for SB_SPRAM256KA (module docstring); only with ``banks > 1``.

    Attributes
    ----------
    raddr : list of R Signal(addr_bits), in
    rdata : list of R Signal(width), out
        ``rdata[r]`` is the word at ``raddr[r]`` of the previous cycle.
    waddr : Signal(addr_bits), in
    wdata : Signal(width), in
    wen : Signal(1), in

    Raises
    ------
    InputError
        A parameter not a positive integer, ``addr_bits`` too narrow for ``depth``,
        ``bank_words`` not a power of two or ``banks * bank_words < depth``, or ``spram`` with
        one bank.
    """

    def __init__(self, depth, width, read_ports, addr_bits, *, banks=1, bank_words=None, spram=False):
        for name, value in (("depth", depth), ("width", width), ("read_ports", read_ports),
                            ("addr_bits", addr_bits), ("banks", banks)):
            _positive(name, value)
        if depth > 1 << addr_bits:
            raise InputError(f"addr_bits {addr_bits} cannot address depth {depth}")
        if banks > 1:
            _positive("bank_words", bank_words)
            if bank_words & (bank_words - 1) or banks * bank_words < depth or bank_words > 1 << addr_bits:
                raise InputError(f"bank_words must be a power of two with depth <= banks * bank_words "
                                 f"(banks {banks}, depth {depth}), not {bank_words!r}")
        elif spram:
            raise InputError("spram needs banks > 1 (a single-port RAM cannot be read and written in one cycle)")
        self._depth, self._width, self._rows = depth, width, read_ports
        # banks past the last word hold nothing and are not built
        self._banks = -(-depth // bank_words) if banks > 1 else 1
        self._bank_words, self._spram = bank_words, bool(spram)
        super().__init__({
            "raddr": In(unsigned(addr_bits)).array(read_ports),
            "rdata": Out(unsigned(width)).array(read_ports),
            "waddr": In(unsigned(addr_bits)),
            "wdata": In(unsigned(width)),
            "wen": In(1),
        })

    @property
    def banks(self):
        """Banks built (those holding at least one of the ``depth`` words)."""
        return self._banks

    @property
    def spram(self):
        return self._spram

    def elaborate(self, platform):
        m = Module()
        R = self._rows
        if self._bank_words is None:
            m.submodules.mem = mem = Memory(shape=unsigned(self._width), depth=self._depth, init=[])
            for r in range(R):
                port = mem.read_port(domain="sync")
                m.d.comb += [port.addr.eq(self.raddr[r]), self.rdata[r].eq(port.data)]
            wport = mem.write_port()
            m.d.comb += [wport.addr.eq(self.waddr), wport.data.eq(self.wdata), wport.en.eq(self.wen)]
            return m

        k = (self._bank_words - 1).bit_length()
        wbank = self.waddr[k:]
        data = [[None] * R for _ in range(self._banks)]
        for b in range(self._banks):
            words = min(self._bank_words, self._depth - b * self._bank_words)
            write = Signal(name=f"bank{b}_write")
            m.d.comb += write.eq(self.wen & (wbank == b))
            for r in range(R):
                data[b][r] = single_port(m, f"bank{b}_copy{r}", width=self._width, depth=words, write=write,
                                         waddr=self.waddr[:k], wdata=self.wdata, raddr=self.raddr[r][:k],
                                         spram=self._spram)
        for r in range(R):
            rbank = Signal(range(max(self._banks, 2)), name=f"read{r}_bank")
            m.d.sync += rbank.eq(self.raddr[r][k:])
            with m.Switch(rbank):
                for b in range(self._banks):
                    with m.Case(b):
                        m.d.comb += self.rdata[r].eq(data[b][r])
        return m
