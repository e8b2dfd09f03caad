"""A UART transmitter (8 data bits, no parity, 1 stop bit) fed by an ``amaranth.lib.stream``."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hwq.errors import InputError

__all__ = ["UARTTransmitter"]


class UARTTransmitter(wiring.Component):
    """8N1 serial transmitter: each byte taken on ``data`` goes out on ``tx``, LSB first.

    A frame is a start bit (0), the 8 data bits LSB first and a stop bit (1), each held for
    ``divisor = round(clk_hz / baud)`` cycles; ``tx`` idles high. The baud rate error is
    ``|clk_hz / divisor / baud - 1|``, refused above 2 % (a receiver samples mid-bit, so the
    error over a 10-bit frame must stay well under half a bit).

    Parameters
    ----------
    clk_hz : int or float
        Clock frequency in Hz.
    baud : int
        Bits per second.

    Attributes
    ----------
    data : In(stream.Signature(8))
        Bytes to send; ``ready`` while no frame is in flight.
    tx : Out(1)
        The serial line (idle high).

    Raises
    ------
    InputError
        If ``baud`` is not positive, ``clk_hz / baud`` is below 4, or the baud error exceeds 2 %.
    """

    def __init__(self, clk_hz, baud=115200):
        self._divisor = self.divisor_for(clk_hz, baud)
        super().__init__({"data": In(stream.Signature(8)), "tx": Out(1, init=1)})

    @staticmethod
    def divisor_for(clk_hz, baud):
        """Cycles per bit for ``baud`` from a ``clk_hz`` clock; raises as the class does."""
        if isinstance(baud, bool) or not isinstance(baud, int) or baud < 1:
            raise InputError(f"baud must be a positive integer, not {baud!r}")
        divisor = round(clk_hz / baud)
        if divisor < 4:
            raise InputError(f"baud {baud} is too fast for a {clk_hz / 1e6:g} MHz clock (at least 4 cycles per bit)")
        error = abs(clk_hz / divisor / baud - 1)
        if error > 0.02:
            raise InputError(f"baud {baud} from a {clk_hz / 1e6:g} MHz clock is {100 * error:.1f} % off (at most 2 %)")
        return divisor

    @property
    def divisor(self):
        """Clock cycles per bit."""
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        shift = Signal(10)                        # stop bit, 8 data bits, start bit (sent first)
        bits = Signal(range(11))                  # bits left in the frame
        timer = Signal(range(self._divisor))
        m.d.comb += self.data.ready.eq(bits == 0)
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += [shift.eq((1 << 9) | (self.data.payload << 1)), bits.eq(10), timer.eq(0)]
        with m.Elif(bits != 0):
            m.d.sync += self.tx.eq(shift[0])
            with m.If(timer == self._divisor - 1):
                m.d.sync += [timer.eq(0), shift.eq(shift >> 1), bits.eq(bits - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer + 1)
        with m.Else():
            m.d.sync += self.tx.eq(1)
        return m
