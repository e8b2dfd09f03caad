"""The accelerator on a board: test images in ROM, every output code checked, classes over the UART.

:class:`AcceleratorDemo` wraps an :class:`~hwq.accel.top.Accelerator` with two ROMs built from
the integer model: the test images' input codes, and the output codes the integer model gives for
each (``IntegerModel.run_codes``). After reset it streams image after image through the
accelerator, compares every output code with the ROM's (so the silicon is checked bit for bit,
not only its verdicts), takes the predicted class (the largest score) and sends it over the UART
as one ASCII character (``0``-``9``, then ``a``-``z``). After the last image it sends
`` PASS\\r\\n`` or `` FAIL\\r\\n`` and raises ``done``; ``passed`` / ``failed`` drive the LEDs.

The scores must be a two's complement fixed-point format (the front end's default, fxp16), so
that the largest score is the largest signed code.
"""

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import Out

from hwq.errors import InputError

from .uart import UARTTransmitter

__all__ = ["AcceleratorDemo", "build_demo", "DIGITS", "MAX_IMAGES", "BAUD"]

#: the UART's default baud rate
BAUD = 115200

#: characters sent for classes 0, 1, ...
DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
#: most images a demo ROM holds
MAX_IMAGES = 256


def _is_twos_complement(fmt):
    bits = fmt.bits
    codes = np.arange(1 << bits)
    return np.array_equal(np.asarray(fmt.int_values), np.where(codes >= 1 << (bits - 1), codes - (1 << bits), codes))


class AcceleratorDemo(wiring.Component):
    """Self-checking run of an accelerator on ROM images (module docstring).

    Parameters
    ----------
    acc : Accelerator
        Built without ``dump``.
    codes : numpy.ndarray of int
        ``(N, *input shape)`` input codes, 1 <= N <= :data:`MAX_IMAGES`.
    clk_hz : int or float
        The board clock (for the UART).
    baud : int
        UART baud rate (default 115200).

    Attributes
    ----------
    passed, failed, done : Out(1)
        After the last image: every output code matched (``passed``) or some did not
        (``failed``, sticky from the first mismatch).
    tx : Out(1)
        UART line.
    predictions : list of int
        The classes the integer model predicts, in image order (what the UART should show).

    Raises
    ------
    InputError
        If ``acc`` dumps or has a weight store (its weights do not fit the block RAM),
        ``codes`` has the wrong shape or count or codes outside the input
        format, the model has more classes than :data:`DIGITS`, or its scores are not two's
        complement fixed point.
    """

    def __init__(self, acc, codes, *, clk_hz, baud=115200):
        from hwq.accel.top import Accelerator
        if not isinstance(acc, Accelerator) or acc.dump:
            raise InputError("acc must be an Accelerator built without dump")
        if acc.loader is not None:
            raise InputError(f"the model's weights do not fit the block RAM (layers {', '.join(acc.schedule.loads)} "
                             "would be loaded into SPRAM over the input stream, which the demo's ROM does not "
                             "drive); build the demo at 4-bit weights (W4A4)")
        s = acc.schedule
        model = s.model
        codes = np.asarray(codes)
        if codes.ndim != 1 + len(s.input.shape) or tuple(codes.shape[1:]) != tuple(s.input.shape):
            raise InputError(f"codes has shape {codes.shape}; expected (N, {', '.join(map(str, s.input.shape))})")
        if not 1 <= len(codes) <= MAX_IMAGES:
            raise InputError(f"codes holds {len(codes)} images; a demo ROM takes 1 to {MAX_IMAGES}")
        in_fmt, out_fmt = model.tensors[model.input].format, model.tensors[model.output].format
        if codes.min() < 0 or codes.max() >= len(in_fmt.int_values):
            raise InputError(f"codes holds values outside the input format's codes 0..{len(in_fmt.int_values) - 1}")
        if s.output.size > len(DIGITS):
            raise InputError(f"the model has {s.output.size} classes; the demo sends one character per class, "
                             f"at most {len(DIGITS)}")
        if out_fmt.name != "fxp" or not _is_twos_complement(out_fmt):
            raise InputError(f"the scores' format {out_fmt} is not two's complement fixed point; the demo picks the "
                             "class as the largest signed code")
        self._acc, self._codes = acc, codes.reshape(len(codes), -1).astype(np.int64)
        self._expected = np.asarray(model.run_codes(codes), dtype=np.int64).reshape(len(codes), -1)
        signed_scores = np.where(self._expected >= 1 << (out_fmt.bits - 1), self._expected - (1 << out_fmt.bits),
                                 self._expected)
        self.predictions = [int(v) for v in np.argmax(signed_scores, axis=1)]
        self._in_bits, self._out_bits = in_fmt.bits, out_fmt.bits
        UARTTransmitter.divisor_for(clk_hz, baud)
        self._clk_hz, self._baud = clk_hz, baud
        super().__init__({"passed": Out(1), "failed": Out(1), "done": Out(1), "tx": Out(1, init=1)})

    @property
    def expected(self):
        """``(N, outputs)`` output codes the integer model gives (the check ROM)."""
        return self._expected

    def message(self, passed=True):
        """The bytes the UART sends for one run (predicted classes, then the verdict)."""
        return ("".join(DIGITS[c] for c in self.predictions) + (" PASS\r\n" if passed else " FAIL\r\n")).encode()

    def elaborate(self, platform):
        m = Module()
        acc = self._acc
        n, n_in = self._codes.shape
        n_out = self._expected.shape[1]
        m.submodules.acc = acc
        m.submodules.uart = uart = UARTTransmitter(self._clk_hz, self._baud)
        m.d.comb += self.tx.eq(uart.tx)
        m.submodules.images = images = Memory(shape=unsigned(self._in_bits), depth=n * n_in,
                                              init=[int(v) for v in self._codes.ravel()])
        m.submodules.check = check = Memory(shape=unsigned(self._out_bits), depth=n * n_out,
                                            init=[int(v) for v in self._expected.ravel()])
        img_port, chk_port = images.read_port(), check.read_port()
        verdict = [ord(ch) for ch in " PASS\r\n"], [ord(ch) for ch in " FAIL\r\n"]
        m.submodules.text = text = Memory(shape=unsigned(8), depth=2 * len(verdict[0]), init=verdict[0] + verdict[1])
        text_port = text.read_port(domain="comb")

        image = Signal(range(n + 1))
        word = Signal(range(max(n_in, n_out) + 1))
        in_base = Signal(range(n * n_in + 1))
        out_base = Signal(range(n * n_out + 1))
        best = Signal(signed(self._out_bits))
        best_class = Signal(range(n_out))
        char = Signal(range(len(verdict[0]) + 1))
        in_transfer = acc.input.valid & acc.input.ready
        out_transfer = acc.output.valid & acc.output.ready
        score = acc.output.payload[:self._out_bits].as_signed()
        digits = Memory(shape=unsigned(8), depth=len(DIGITS), init=[ord(c) for c in DIGITS])
        m.submodules.digits = digits
        digit_port = digits.read_port(domain="comb")
        m.d.comb += digit_port.addr.eq(best_class)

        with m.FSM(name="demo"):
            with m.State("PRIME"):                   # the first image word's read
                m.d.comb += img_port.addr.eq(in_base)
                m.next = "FEED"
            with m.State("FEED"):
                m.d.comb += [acc.input.valid.eq(1), acc.input.payload.eq(img_port.data),
                             img_port.addr.eq(in_base + word + in_transfer)]
                with m.If(in_transfer):
                    with m.If(word == n_in - 1):
                        m.d.sync += word.eq(0)
                        m.next = "COLLECT"
                    with m.Else():
                        m.d.sync += word.eq(word + 1)
                m.d.comb += chk_port.addr.eq(out_base)
            with m.State("COLLECT"):
                m.d.comb += [acc.output.ready.eq(1), chk_port.addr.eq(out_base + word + out_transfer)]
                with m.If(out_transfer):
                    with m.If(acc.output.payload[:self._out_bits] != chk_port.data):
                        m.d.sync += self.failed.eq(1)
                    with m.If((word == 0) | (score > best)):
                        m.d.sync += [best.eq(score), best_class.eq(word)]
                    with m.If(word == n_out - 1):
                        m.d.sync += word.eq(0)
                        m.next = "SEND"
                    with m.Else():
                        m.d.sync += word.eq(word + 1)
            with m.State("SEND"):
                m.d.comb += [uart.data.valid.eq(1), uart.data.payload.eq(digit_port.data)]
                with m.If(uart.data.ready):
                    with m.If(image == n - 1):
                        m.next = "VERDICT"
                    with m.Else():
                        m.d.sync += [image.eq(image + 1), in_base.eq(in_base + n_in), out_base.eq(out_base + n_out)]
                        m.next = "PRIME"
            with m.State("VERDICT"):
                m.d.comb += [text_port.addr.eq(Mux(self.failed, len(verdict[0]), 0) + char),
                             uart.data.valid.eq(1), uart.data.payload.eq(text_port.data)]
                with m.If(uart.data.ready):
                    with m.If(char == len(verdict[0]) - 1):
                        m.next = "DONE"
                    with m.Else():
                        m.d.sync += char.eq(char + 1)
            with m.State("DONE"):
                m.d.comb += [self.done.eq(1), self.passed.eq(~self.failed)]
        return m


def build_demo(acc, codes, board, build_dir, *, baud=BAUD, name=None, log=None):
    """Build the demo bitstream of ``acc`` on ``codes`` for ``board``.

    Parameters
    ----------
    acc : Accelerator
    codes : numpy.ndarray
        ``(N, *input shape)`` input codes.
    board : str or Board
    build_dir : str or pathlib.Path
    baud : int
        UART baud rate (default :data:`BAUD`).
    name : str or None
        Top-level and file name (default ``accel_demo_<board>``).

    Returns
    -------
    (AcceleratorDemo, hwq.boards.platforms.BoardBuild)

    Raises
    ------
    InputError
        Before any work, for bad arguments (:class:`AcceleratorDemo`), memories that do not fit
        the board's part (:func:`hwq.accel.fit.check_fit`) or a missing tool.
    ToolError
        If a tool fails.
    """
    from hwq.accel.fit import check_fit
    from hwq.fileio import check_writable_dir

    from .platforms import Board, SelfTestTop, build_top, get_board
    board = board if isinstance(board, Board) else get_board(board)
    demo = AcceleratorDemo(acc, codes, clk_hz=board.platform().default_clk_frequency, baud=baud)
    check_fit(demo, "up5k" if board.part.startswith("iCE40UP") else "hx8k")
    check_writable_dir(build_dir, "build_dir")
    overrides = {}
    name = name or f"accel_demo_{board.name}"
    if board.part.startswith("iCE40UP"):
        # as hwq.synth.yosys does: the activation banks lose their (zero) initial contents, so
        # that synth_ice40 -spram maps them to SB_SPRAM256KA; products go to SB_MAC16, and the
        # SB_MAC16 the PE array instantiates (mapping="dsp", 8x8 mode) are hidden from
        # synth_ice40's ice40_dsp pass, which would rewrite them as unregistered 16x16
        # multipliers: synth_ice40 runs in three parts, the cells renamed for the coarse one
        # (docs/toolchain.md, "SB_MAC16 Fmax")
        from hwq.accel.memory import SPRAM_MARK
        hidden, synth = "hwq_hidden_SB_MAC16", f"synth_ice40 -dsp -spram -top {name}"
        overrides = {"synth_opts": ["-dsp", "-spram", "-run", ":coarse"],
                     "script_after_read": f"delete */t:$meminit_v2 */r:MEMID=*{SPRAM_MARK}* %i",
                     "script_after_synth": f"copy SB_MAC16 {hidden}; chtype -set {hidden} t:SB_MAC16; "
                                           f"{synth} -run coarse:map_ram; chtype -set SB_MAC16 t:{hidden}; "
                                           f"delete ={hidden}; {synth} -run map_ram:"}
    return demo, build_top(SelfTestTop(demo, board), board, build_dir, name, overrides=overrides, log=log)
