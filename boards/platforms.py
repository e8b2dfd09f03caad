"""Board top levels for the self-test and a bitstream build with the YoWASP tools.

Two boards, both clocked at 12 MHz:

``icebreaker``
    iCEBreaker (iCE40UP5K-SG48, :class:`amaranth_boards.icebreaker.ICEBreakerPlatform`): green LED
    = passed, red LED = failed; the user button re-runs the test.
``hx8k``
    iCE40-HX8K breakout board (iCE40HX8K-CT256,
    :class:`amaranth_boards.ice40_hx8k_b_evn.ICE40HX8KBEVNPlatform`): LED D2 = passed, D3 = failed.

Both LEDs dark means the test has not finished (it takes well under a millisecond, so on a board:
stuck). The LED resources' polarity (active-low ``PinsN`` on the iCEBreaker) is handled by
``platform.request``.
"""

import dataclasses
import re
import subprocess
import time
from pathlib import Path

from amaranth.hdl import Elaboratable, Module, ResetInserter, Signal
from amaranth.lib import io
from amaranth.lib.cdc import FFSynchronizer
from amaranth_boards.ice40_hx8k_b_evn import ICE40HX8KBEVNPlatform
from amaranth_boards.icebreaker import ICEBreakerPlatform

from ..errors import InputError, ToolError
from ..tools import tool_env

from .self_test import SelfTest, check_args, rom_blocks

__all__ = ["Board", "BOARDS", "get_board", "SelfTestTop", "BoardBuild", "build_board", "parse_nextpnr_log",
           "BOARD_TOOLS"]

@dataclasses.dataclass(frozen=True)
class Board:
    """A board the self-test runs on.

    Attributes
    ----------
    name : str
        The name users pass (``--board``).
    platform : type
        The amaranth-boards platform class.
    part : str
        FPGA and package, for messages.
    pass_led, fail_led : tuple of (str, int)
        Resource name and number of the LEDs showing ``passed`` and ``failed``.
    brams : int
        Block RAMs (SB_RAM40_4K) of the FPGA.
    leds : str
        What the LEDs show, in words.
    rerun_button : tuple of (str, int) or None
        Button that restarts the test while pressed, if the board has one.
    """

    name: str
    platform: type
    part: str
    pass_led: tuple
    fail_led: tuple
    brams: int
    leds: str
    rerun_button: tuple = None


#: supported boards by name
BOARDS = {
    "icebreaker": Board("icebreaker", ICEBreakerPlatform, "iCE40UP5K-SG48", ("led_g", 0), ("led_r", 0), 30,
                        "green = passed, red = failed, both dark = not finished; the button re-runs the test",
                        ("button", 0)),
    "hx8k": Board("hx8k", ICE40HX8KBEVNPlatform, "iCE40HX8K-CT256", ("led", 0), ("led", 1), 32,
                  "D2 = passed, D3 = failed, both dark = not finished"),
}


def get_board(name):
    """The :class:`Board` called ``name``; :class:`~hwq.errors.InputError` if there is none."""
    try:
        return BOARDS[name]
    except (KeyError, TypeError):
        raise InputError(f"unknown board {name!r}; choose one of {', '.join(BOARDS)}") from None


class SelfTestTop(Elaboratable):
    """Board top level: a :class:`~hwq.boards.self_test.SelfTest` with its verdict on two LEDs.

    Parameters
    ----------
    selftest : hwq.boards.self_test.SelfTest
        The self-test (with its PE) to run after power-on.
    board : Board
        Which LEDs (and button) to use.
    """

    def __init__(self, selftest, board):
        self.selftest = selftest
        self.board = board

    def elaborate(self, platform):
        m = Module()
        selftest = self.selftest
        if self.board.rerun_button is not None:
            m.submodules.button = button = io.Buffer("i", platform.request(*self.board.rerun_button, dir="-"))
            rerun = Signal()
            m.submodules.button_sync = FFSynchronizer(button.i, rerun)
            selftest = ResetInserter(rerun)(selftest)
        m.submodules.selftest = selftest
        # the ports carry the LEDs' polarity: the buffers invert active-low (PinsN) LEDs
        m.submodules.pass_led = pass_led = io.Buffer("o", platform.request(*self.board.pass_led, dir="-"))
        m.submodules.fail_led = fail_led = io.Buffer("o", platform.request(*self.board.fail_led, dir="-"))
        m.d.comb += [pass_led.o.eq(self.selftest.passed), fail_led.o.eq(self.selftest.failed)]
        return m


@dataclasses.dataclass
class BoardBuild:
    """What :func:`build_board` produced.

    Attributes
    ----------
    name : str
        Top-level name; the build directory holds ``<name>.bin``, ``.rpt`` (yosys log),
        ``.tim`` (nextpnr log) and the intermediate files.
    bitstream : pathlib.Path
        The ``.bin`` file for ``iceprog``.
    fmax_mhz : float or None
        nextpnr's post-route Fmax of the clock (``None`` if the log has none).
    clock_mhz : float
        The board clock the self-test runs at.
    utilization : dict
        nextpnr's device utilisation, ``{"ICESTORM_LC": (used, available), ...}``.
    build_s : float
        Wall time of the build in seconds.
    """

    name: str
    bitstream: Path
    fmax_mhz: float
    clock_mhz: float
    utilization: dict
    build_s: float

    @property
    def timing_met(self):
        """Whether nextpnr's Fmax reaches the board clock."""
        return self.fmax_mhz is not None and self.fmax_mhz >= self.clock_mhz


def parse_nextpnr_log(text):
    """Fmax and utilisation from a nextpnr-ice40 log (amaranth's ``<name>.tim``).

    Parameters
    ----------
    text : str
        The log.

    Returns
    -------
    fmax_mhz : float or None
        The last (post-route) ``Max frequency for clock`` figure; with several clocks, the
        lowest of their last figures.
    utilization : dict
        ``{bel_type: (used, available)}`` from the ``Device utilisation`` table.
    """
    last = {}
    for clock, mhz in re.findall(r"Max frequency for clock\s+'([^']+)':\s+([0-9.]+) MHz", text):
        last[clock] = float(mhz)
    fmax = min(last.values()) if last else None
    utilization = {}
    for bel, used, available in re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", text, re.M):
        utilization.setdefault(bel, (int(used), int(available)))
    return fmax, utilization


#: the tools a board build runs (keys of :data:`hwq.tools.TOOLS`)
BOARD_TOOLS = ("yosys", "nextpnr-ice40", "icepack")


def build_board(pe, board, build_dir="build/board", *, cycles=512, seed=1, name=None, log=None):
    """Build a bitstream that runs the self-test of ``pe`` on ``board``.

    Runs, with ``$YOSYS``, ``$NEXTPNR_ICE40`` and ``$ICEPACK`` pointing at the YoWASP tools when
    they are not set, amaranth's iCE40 build (yosys ``synth_ice40``, nextpnr-ice40, icepack) in
    ``build_dir``. Nothing is programmed.

    Parameters
    ----------
    pe : hwq.pe.ProcessingElement
        The PE under test.
    board : str or Board
        ``"icebreaker"`` or ``"hx8k"``.
    build_dir : str or pathlib.Path
        Where the build files go (created if missing).
    cycles, seed : int
        Passed to :class:`~hwq.boards.self_test.SelfTest`.
    name : str or None
        Top-level and file name; default ``selftest_<board>_<pe.module_name>``.
    log : callable or None
        Called with a one-line message once the arguments are checked, before the tools run.

    Returns
    -------
    BoardBuild

    Raises
    ------
    InputError
        On bad input or a missing tool (before anything runs), or if a tool fails.
    """
    board = board if isinstance(board, Board) else get_board(board)
    check_args(pe, cycles, seed)
    if rom_blocks(pe, cycles) > board.brams:
        raise InputError(f"the self-test ROM needs {rom_blocks(pe, cycles)} block RAMs and the {board.part} has "
                       f"{board.brams}; use fewer cycles")
    env = tool_env(*BOARD_TOOLS)
    selftest = SelfTest(pe, cycles=cycles, seed=seed)
    name = name or f"selftest_{board.name}_{pe.module_name}"
    build_dir = Path(build_dir)
    if log is not None:
        log(f"building {name} for the {board.part} in {build_dir} ...")
    platform = board.platform()
    start = time.monotonic()
    try:
        plan = platform.prepare(SelfTestTop(selftest, board), name=name)
        plan.execute_local(str(build_dir), env=env)
    except subprocess.CalledProcessError as exc:
        raise ToolError(f"board build failed ({exc.cmd[0] if exc.cmd else 'tool'} exit {exc.returncode}); "
                        f"see {build_dir / (name + '.rpt')} and {build_dir / (name + '.tim')}",
                        build_dir / f"{name}.rpt") from None
    build_s = time.monotonic() - start
    fmax, utilization = parse_nextpnr_log((build_dir / f"{name}.tim").read_text(errors="replace"))
    return BoardBuild(name=name, bitstream=build_dir / f"{name}.bin", fmax_mhz=fmax,
                      clock_mhz=platform.default_clk_frequency / 1e6, utilization=utilization,
                      build_s=build_s)
