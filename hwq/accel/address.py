"""The address generator of a convolution: the loop nest of one :class:`~hwq.accel.schedule.ConvStep`.

One :class:`ConvAddressGenerator` serves every layer: the step's geometry is a set of run-time
inputs (the sequencer loads them from the step's descriptor, :meth:`ConvAddressGenerator.descriptor`)
held stable while the step runs. Each cycle it issues one reduction index ``k`` of one tile: the
activation address of each of the ``R`` rows (im2col on the fly), whether it lies in the input,
whether the row is a real output position, and the weight word address. The loop order is
exactly the schedule's (docs/accelerator.md, :func:`hwq.accel.schedule._conv_addresses`):
channel tiles outermost, then position tiles (``R`` positions row-major over ``(oy, ox)``), then
``k = (ci, ky, kx)``, ``ci`` slowest.

The inner loop has no divider and no multiplier: every index is a counter and every address a
running sum. The few products of the geometry (``H * W``, ``stride_y * W``, ``dilation_y * W``,
``pad_top * W`` and ``in_per_group * H * W``) are computed once per step, after ``start``, by a
serial shift-add multiplier (one bit per cycle).
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..errors import InputError
from ..formats.base import check_int
from .schedule import ConvStep

__all__ = ["ConvAddressGenerator", "DESCRIPTOR_FIELDS"]

#: the descriptor fields (input ports) of a step, in order, and the width parameter of each
DESCRIPTOR_FIELDS = (("src_base", "addr_width"), ("channels", "channel_bits"), ("height", "size_bits"),
                     ("width", "size_bits"), ("out_height", "size_bits"), ("out_width", "size_bits"),
                     ("kernel_h", "kernel_bits"), ("kernel_w", "kernel_bits"), ("stride_y", "stride_bits"),
                     ("stride_x", "stride_bits"), ("dilation_y", "dilation_bits"),
                     ("dilation_x", "dilation_bits"), ("pad_top", "pad_bits"), ("pad_left", "pad_bits"),
                     ("tiles", "tile_bits"), ("tiles_per_group", "tile_bits"),
                     ("weight_base", "weight_addr_width"))

#: the width parameters and their ranges
_WIDTHS = {"addr_width": (1, 32), "weight_addr_width": (1, 32), "channel_bits": (1, 16), "size_bits": (1, 16),
           "kernel_bits": (1, 8), "stride_bits": (1, 8), "dilation_bits": (1, 8), "pad_bits": (1, 8),
           "tile_bits": (1, 16)}

#: most rows
MAX_ROWS = 64


def _bits(value):
    """Bits of an unsigned integer holding ``value`` (at least 1)."""
    return max(1, int(value).bit_length())


def _descriptor_values(step):
    """The descriptor of ``step`` (ConvStep) as a dict of field to int."""
    c_in, h, w = step.in_shape
    return {"src_base": step.src.base, "channels": c_in // step.groups, "height": h, "width": w,
            "out_height": step.out_shape[1], "out_width": step.out_shape[2], "kernel_h": step.kernel[0],
            "kernel_w": step.kernel[1], "stride_y": step.stride[0], "stride_x": step.stride[1],
            "dilation_y": step.dilation[0], "dilation_x": step.dilation[1], "pad_top": step.padding[0],
            "pad_left": step.padding[2], "tiles": step.tiles, "tiles_per_group": step.tiles // step.groups,
            "weight_base": step.weight_base}


def _check_steps(steps):
    if isinstance(steps, ConvStep):
        steps = [steps]
    if isinstance(steps, (str, bytes)) or not hasattr(steps, "__iter__"):
        raise InputError(f"steps must be a list of ConvStep, not {steps!r}")
    steps = list(steps)
    if not steps:
        raise InputError("steps must hold at least one ConvStep")
    for i, step in enumerate(steps):
        if not isinstance(step, ConvStep):
            raise InputError(f"steps[{i}] must be a ConvStep (hwq.accel.schedule), not {type(step).__name__}")
    return steps


class ConvAddressGenerator(wiring.Component):
    """The loop nest of a :class:`~hwq.accel.schedule.ConvStep` on an ``R``-row array.

    After a ``start`` pulse (taken when not :attr:`busy`), the generator spends
    ``setup_cycles`` computing the step's products (serial shift-add multiplications), then
    issues one ``(channel tile t, position tile p, k)`` per cycle, in the schedule's order, into
    its output registers: ``valid`` rises :attr:`latency` cycles after ``start``, and a step takes
    exactly ``tiles * ceil(OH * OW / R) * fan_in`` transfers (``valid`` and ``ready`` high). When
    ``ready`` is low with ``valid`` high, the outputs and the state hold. With ``ready`` held high
    the transfers are back to back, one per cycle, from the first to the last.

    At ``k = (ci, ky, kx)`` of position tile ``p``, row ``r`` is output position
    ``q = p * R + r = oy * OW + ox``; it reads input ``(g * in_per_group + ci, iy, ix)`` with
    ``iy = oy * stride_y - pad_top + ky * dilation_y`` and ``ix = ox * stride_x - pad_left +
    kx * dilation_x``, at address ``src_base + ((g * in_per_group + ci) * H + iy) * W + ix``,
    where ``g = t // tiles_per_group`` is the tile's group (the schedule's tiles of group 0 come
    first, then group 1's, ...). The weight word is ``weight_base + t * fan_in + k``.

    Parameters
    ----------
    rows : int
        ``R``, the array's rows (output positions per tile), 1 to :data:`MAX_ROWS`.
    addr_width : int
        Width of an activation address (1 to 32); address arithmetic is modulo ``2**addr_width``.
    weight_addr_width : int
        Width of a weight word address (1 to 32).
    channel_bits, size_bits, kernel_bits, stride_bits, dilation_bits, pad_bits, tile_bits : int
        Widths of the descriptor ports (:data:`DESCRIPTOR_FIELDS`): input channels per group;
        ``H``, ``W``, ``OH``, ``OW``; kernel size; stride; dilation; top and left padding; number
        of channel tiles and of tiles per group. Each 1 to 16 (kernel, stride, dilation, padding:
        1 to 8). :meth:`for_steps` derives them all from a list of steps.

    Attributes
    ----------
    start : Signal(1), in
        Starts a step (ignored while :attr:`busy`). The descriptor inputs must be stable from this
        cycle until the step is done.
    src_base : Signal(addr_width), in
        First word of the input tensor's region.
    channels : Signal(channel_bits), in
        Input channels per group (``C_in / groups``), at least 1.
    height, width, out_height, out_width : Signal(size_bits), in
        ``H``, ``W``, ``OH``, ``OW``, each at least 1.
    kernel_h, kernel_w : Signal(kernel_bits), in
        Kernel size, at least 1.
    stride_y, stride_x : Signal(stride_bits), in
    dilation_y, dilation_x : Signal(dilation_bits), in
    pad_top, pad_left : Signal(pad_bits), in
    tiles, tiles_per_group : Signal(tile_bits), in
        Channel tiles of the step (at least 1), and per group (``tiles / groups``).
    weight_base : Signal(weight_addr_width), in
        First weight word of the step.
    ready : Signal(1), in
        Downstream takes the outputs this cycle (a transfer when ``valid`` is high too).
    valid : Signal(1), out
        The outputs hold one ``(t, p, k)``.
    addr : list of R Signal(addr_width), out
        Row ``r``'s activation address; meaningful only where ``inside`` is set.
    inside : Signal(R), out
        Bit ``r``: row ``r`` is a real position and its input lies in the tensor (else the array
        uses the pad code).
    row_valid : Signal(R), out
        Bit ``r``: row ``r`` is a real output position (``p * R + r < OH * OW``; the last position
        tile may be partial).
    weight_addr : Signal(weight_addr_width), out
        ``weight_base + t * fan_in + k``.
    first, last : Signal(1), out
        ``k == 0`` (clear the accumulators); ``k == fan_in - 1`` (the tile ends).
    tile : Signal(tile_bits), out
        The channel tile ``t``.
    position_tile : Signal(2 * size_bits), out
        The position tile ``p``.
    busy : Signal(1), out
        A step is being set up or issued, or its last output has not been taken yet.
    done : Signal(1), out
        The last output of the step was taken; held until the next ``start`` (reset: 0).

    Raises
    ------
    InputError
        Before elaboration, naming the parameter that is not an integer in its range.
    """

    def __init__(self, rows, *, addr_width, weight_addr_width, channel_bits, size_bits, kernel_bits, stride_bits,
                 dilation_bits, pad_bits, tile_bits):
        self._rows = check_int("rows", rows, 1, MAX_ROWS)
        given = {"addr_width": addr_width, "weight_addr_width": weight_addr_width, "channel_bits": channel_bits,
                 "size_bits": size_bits, "kernel_bits": kernel_bits, "stride_bits": stride_bits,
                 "dilation_bits": dilation_bits, "pad_bits": pad_bits, "tile_bits": tile_bits}
        self._widths = {name: check_int(name, value, *_WIDTHS[name]) for name, value in given.items()}
        w = self._widths
        ports = {"start": In(1)}
        for field, width in DESCRIPTOR_FIELDS:
            ports[field] = In(unsigned(w[width]))
        ports.update({
            "ready": In(1),
            "valid": Out(1),
            "addr": Out(unsigned(w["addr_width"])).array(self._rows),
            "inside": Out(unsigned(self._rows)),
            "row_valid": Out(unsigned(self._rows)),
            "weight_addr": Out(unsigned(w["weight_addr_width"])),
            "first": Out(1),
            "last": Out(1),
            "tile": Out(unsigned(w["tile_bits"])),
            "position_tile": Out(unsigned(2 * w["size_bits"])),
            "busy": Out(1),
            "done": Out(1),
        })
        super().__init__(ports)

    @classmethod
    def for_steps(cls, steps, rows=None):
        """A generator wide enough for every step of ``steps``.

        Parameters
        ----------
        steps : sequence of ConvStep, or one ConvStep
        rows : int, optional
            ``R``; by default the steps' array rows (which must then agree).

        Raises
        ------
        InputError
            For ``steps`` empty or holding something other than a :class:`ConvStep`, steps of
            arrays with different rows (without ``rows``), or widths beyond the ranges of the
            constructor's parameters.
        """
        steps = _check_steps(steps)
        if rows is None:
            found = sorted({step.array.rows for step in steps})
            if len(found) != 1:
                raise InputError(f"steps are scheduled on arrays of {found} rows; pass rows")
            rows = found[0]
        values = [_descriptor_values(step) for step in steps]

        def widest(*fields):
            return _bits(max(v[f] for v in values for f in fields))

        addr_end = max(step.src.base + step.src.size for step in steps)
        weight_end = max(step.weight_base + step.tiles * step.fan_in for step in steps)
        return cls(rows, addr_width=_bits(max(addr_end - 1, 0)), weight_addr_width=_bits(max(weight_end - 1, 0)),
                   channel_bits=widest("channels"), size_bits=widest("height", "width", "out_height", "out_width"),
                   kernel_bits=widest("kernel_h", "kernel_w"), stride_bits=widest("stride_y", "stride_x"),
                   dilation_bits=widest("dilation_y", "dilation_x"), pad_bits=widest("pad_top", "pad_left"),
                   tile_bits=widest("tiles", "tiles_per_group"))

    def descriptor(self, step):
        """The input port values of ``step``: a dict of field (:data:`DESCRIPTOR_FIELDS`) to int.

        Raises
        ------
        InputError
            For ``step`` not a :class:`ConvStep`, scheduled on an array of other rows, with a field
            too wide for its port, or whose input region or weight words pass the address width.
        """
        step = _check_steps(step)[0]
        if step.array.rows != self._rows:
            raise InputError(f"step {step.name!r} is scheduled on {step.array.rows} rows, the generator has "
                             f"{self._rows}")
        values = _descriptor_values(step)
        for field, width in DESCRIPTOR_FIELDS:
            if values[field] >= 1 << self._widths[width]:
                raise InputError(f"step {step.name!r}: {field} {values[field]} does not fit {width} "
                                 f"{self._widths[width]}")
        if step.src.base + step.src.size > 1 << self._widths["addr_width"]:
            raise InputError(f"step {step.name!r}: its input region ends at word {step.src.base + step.src.size}, "
                             f"past addr_width {self._widths['addr_width']}")
        end = step.weight_base + step.tiles * step.fan_in
        if end > 1 << self._widths["weight_addr_width"]:
            raise InputError(f"step {step.name!r}: its weight words end at {end}, past weight_addr_width "
                             f"{self._widths['weight_addr_width']}")
        return values

    @property
    def rows(self):
        """``R``."""
        return self._rows

    @property
    def widths(self):
        """The width parameters (dict of name to int)."""
        return dict(self._widths)

    @property
    def setup_cycles(self):
        """Cycles of the per-step products: one per bit of the multiplicands of ``W``
        (``max(size_bits, stride_bits, dilation_bits, pad_bits)``), one per bit of ``channels``,
        and one to place the first position tile."""
        w = self._widths
        return max(w["size_bits"], w["stride_bits"], w["dilation_bits"], w["pad_bits"]) + w["channel_bits"] + 1

    @property
    def latency(self):
        """Cycles from the cycle ``start`` is high to the first ``valid``: ``setup_cycles + 2``."""
        return self.setup_cycles + 2

    def elaborate(self, platform):
        m = Module()
        R, w = self._rows, self._widths
        A, WA = w["addr_width"], w["weight_addr_width"]
        sb, kb = w["size_bits"], w["kernel_bits"]
        # a signed row coordinate: iy in (-2**pad_bits, H + 2**pad_bits) for a real position
        SW = max(sb, w["pad_bits"]) + 3
        oy_width = _bits((1 << sb) - 1 + R)                       # rows past the last position
        mul_a = max(sb, w["stride_bits"], w["dilation_bits"], w["pad_bits"])
        cb = w["channel_bits"]

        # --- per-step products: H*W, sy*W, dy*W, pt*W, then in_per_group*(H*W), MSB first -----
        hw, syw, dyw, ptw, gstep = (Signal(A, name=n, reset_less=True) for n in ("hw", "syw", "dyw", "ptw", "gstep"))
        count = Signal(range(max(mul_a, cb) + 1), name="setup_count", reset_less=True)

        # --- loop state -------------------------------------------------------------------------
        ci = Signal(cb, name="ci", reset_less=True)
        ky = Signal(kb, name="ky", reset_less=True)
        kx = Signal(kb, name="kx", reset_less=True)
        dky = Signal(SW, name="dky", reset_less=True)              # ky * dilation_y
        dkx = Signal(SW, name="dkx", reset_less=True)              # kx * dilation_x
        chan = Signal(A, name="chan", reset_less=True)             # ci * H * W
        rowk = Signal(A, name="rowk", reset_less=True)             # chan + ky * dilation_y * W
        koff = Signal(A, name="koff", reset_less=True)             # rowk + kx * dilation_x
        kfirst = Signal(name="kfirst", reset_less=True)
        t = Signal(w["tile_bits"], name="t", reset_less=True)
        tg = Signal(w["tile_bits"], name="tg", reset_less=True)    # tile within its group
        gbase = Signal(A, name="gbase", reset_less=True)           # src_base + g * in_per_group * H * W
        wt = Signal(WA, name="wt", reset_less=True)                # weight_base + t * fan_in
        waddr = Signal(WA, name="waddr", reset_less=True)          # wt + k
        p = Signal(2 * sb, name="p", reset_less=True)

        def row(name):
            return {"oy": Signal(oy_width, name=f"{name}_oy", reset_less=True),
                    "ox": Signal(sb, name=f"{name}_ox", reset_less=True),
                    "iy0": Signal(signed(SW), name=f"{name}_iy0", reset_less=True),   # oy * sy - pad_top
                    "ix0": Signal(signed(SW), name=f"{name}_ix0", reset_less=True),   # ox * sx - pad_left
                    "iy0w": Signal(A, name=f"{name}_iy0w", reset_less=True)}          # iy0 * W

        rows = [row(f"row{r}") for r in range(R)]

        def advance(s, name):
            """Position ``s`` moved on by one, row-major, as signals ``name``."""
            out = {key: Signal.like(value, name=f"{name}_{key}", reset_less=True) for key, value in s.items()}
            wrap = s["ox"] == self.out_width - 1
            m.d.comb += [out["oy"].eq(s["oy"] + wrap),
                         out["ox"].eq(Mux(wrap, 0, s["ox"] + 1)),
                         out["iy0"].eq(Mux(wrap, s["iy0"] + self.stride_y, s["iy0"])),
                         out["ix0"].eq(Mux(wrap, -self.pad_left, s["ix0"] + self.stride_x)),
                         out["iy0w"].eq(Mux(wrap, s["iy0w"] + syw, s["iy0w"]))]
            return out

        # the next position tile: row 0 after the last row (or the origin), each row after the one above
        after = advance(rows[-1], "after")
        restart = Signal(name="restart")
        seed = {key: Signal.like(value, name=f"seed_{key}", reset_less=True) for key, value in after.items()}
        origin = {"oy": 0, "ox": 0, "iy0": -self.pad_top, "ix0": -self.pad_left, "iy0w": -ptw}
        m.d.comb += [seed[key].eq(Mux(restart, origin[key], after[key])) for key in seed]
        following = [seed]
        for r in range(1, R):
            following.append(advance(following[-1], f"next{r}"))

        # --- the outputs of the current (t, p, k) ---------------------------------------------
        row_valid = [s["oy"] < self.out_height for s in rows]
        addr, inside = [], []
        for r, s in enumerate(rows):
            iy = Signal(signed(SW), name=f"iy{r}")
            ix = Signal(signed(SW), name=f"ix{r}")
            a = Signal(A, name=f"addr{r}")
            m.d.comb += [iy.eq(s["iy0"] + dky), ix.eq(s["ix0"] + dkx),
                         a.eq(gbase + s["iy0w"] + s["ix0"] + koff)]
            addr.append(a)
            inside.append(row_valid[r] & (iy >= 0) & (iy < self.height) & (ix >= 0) & (ix < self.width))

        k_last = (kx == self.kernel_w - 1) & (ky == self.kernel_h - 1) & (ci == self.channels - 1)
        p_last = after["oy"] >= self.out_height
        t_last = t == self.tiles - 1
        final = Signal(name="final", reset_less=True)              # the output is the step's last

        enable = ~self.valid | self.ready                          # the output register takes a new value
        with m.If(self.valid & self.ready & final):
            m.d.sync += self.done.eq(1)
        with m.If(enable):
            m.d.sync += self.valid.eq(0)

        def reset_k():
            m.d.sync += [ci.eq(0), ky.eq(0), kx.eq(0), dky.eq(0), dkx.eq(0), chan.eq(0), rowk.eq(0), koff.eq(0),
                         kfirst.eq(1)]

        def load_rows():
            for s, n in zip(rows, following):
                m.d.sync += [s[key].eq(n[key]) for key in s]

        with m.FSM(name="state") as fsm:
            with m.State("IDLE"):
                with m.If(self.start & ~self.valid):
                    m.d.sync += [hw.eq(0), syw.eq(0), dyw.eq(0), ptw.eq(0), gstep.eq(0), count.eq(mul_a - 1),
                                 self.done.eq(0)]
                    m.next = "MUL_W"
            with m.State("MUL_W"):                                  # X * W for X in (H, sy, dy, pt)
                for acc, factor in ((hw, self.height), (syw, self.stride_y), (dyw, self.dilation_y),
                                    (ptw, self.pad_top)):
                    m.d.sync += acc.eq((acc << 1) + Mux(factor.bit_select(count, 1), self.width, 0))
                with m.If(count == 0):
                    m.d.sync += count.eq(cb - 1)
                    m.next = "MUL_C"
                with m.Else():
                    m.d.sync += count.eq(count - 1)
            with m.State("MUL_C"):                                  # in_per_group * (H * W)
                m.d.sync += gstep.eq((gstep << 1) + Mux(self.channels.bit_select(count, 1), hw, 0))
                with m.If(count == 0):
                    m.next = "INIT"
                with m.Else():
                    m.d.sync += count.eq(count - 1)
            with m.State("INIT"):
                m.d.comb += restart.eq(1)
                reset_k()
                load_rows()
                m.d.sync += [t.eq(0), tg.eq(0), p.eq(0), gbase.eq(self.src_base), wt.eq(self.weight_base),
                             waddr.eq(self.weight_base)]
                m.next = "RUN"
            with m.State("RUN"):
                with m.If(enable):
                    m.d.sync += [self.valid.eq(1), self.weight_addr.eq(waddr), self.first.eq(kfirst),
                                 self.last.eq(k_last), self.tile.eq(t), self.position_tile.eq(p),
                                 final.eq(k_last & p_last & t_last)]
                    m.d.sync += [self.addr[r].eq(addr[r]) for r in range(R)]
                    m.d.sync += [self.inside[r].eq(inside[r]) for r in range(R)]
                    m.d.sync += [self.row_valid[r].eq(row_valid[r]) for r in range(R)]
                    with m.If(~k_last):
                        m.d.sync += [waddr.eq(waddr + 1), kfirst.eq(0)]
                        with m.If(kx != self.kernel_w - 1):
                            m.d.sync += [kx.eq(kx + 1), dkx.eq(dkx + self.dilation_x), koff.eq(koff + self.dilation_x)]
                        with m.Elif(ky != self.kernel_h - 1):
                            m.d.sync += [kx.eq(0), dkx.eq(0), ky.eq(ky + 1), dky.eq(dky + self.dilation_y),
                                         rowk.eq(rowk + dyw), koff.eq(rowk + dyw)]
                        with m.Else():
                            m.d.sync += [kx.eq(0), dkx.eq(0), ky.eq(0), dky.eq(0), ci.eq(ci + 1),
                                         chan.eq(chan + hw), rowk.eq(chan + hw), koff.eq(chan + hw)]
                    with m.Else():                                  # the tile ends
                        reset_k()
                        m.d.comb += restart.eq(p_last)
                        load_rows()
                        with m.If(~p_last):
                            m.d.sync += [p.eq(p + 1), waddr.eq(wt)]
                        with m.Else():
                            m.d.sync += p.eq(0)
                            with m.If(t_last):
                                m.next = "IDLE"
                            with m.Else():
                                m.d.sync += [t.eq(t + 1), waddr.eq(waddr + 1), wt.eq(waddr + 1)]
                                with m.If(tg == self.tiles_per_group - 1):
                                    m.d.sync += [tg.eq(0), gbase.eq(gbase + gstep)]
                                with m.Else():
                                    m.d.sync += tg.eq(tg + 1)
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE") | self.valid)
        return m
