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
import time
from pathlib import Path

from amaranth.hdl import Elaboratable, Module, ResetInserter, Signal
from amaranth.lib import io
from amaranth.lib.cdc import FFSynchronizer
from amaranth_boards.ice40_hx8k_b_evn import ICE40HX8KBEVNPlatform
from amaranth_boards.icebreaker import ICEBreakerPlatform

from ..errors import InputError, ToolError
from ..fileio import check_writable_dir
from ..tools import TOOL_TIMEOUT_S, run_tool, tool_env

from .self_test import SelfTest, check_args, rom_blocks

__all__ = ["Board", "BOARDS", "get_board", "SelfTestTop", "BoardBuild", "build_board", "build_top", "check_build",
           "parse_nextpnr_log", "BOARD_TOOLS"]

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
    """Board top level: a self-checking design with its verdict on two LEDs.

    Parameters
    ----------
    selftest : Elaboratable
        With ``passed`` and ``failed`` signals (a :class:`~hwq.boards.self_test.SelfTest`, an
        :class:`~hwq.boards.accel_demo.AcceleratorDemo`); if it also has ``tx``, that drives the
        board's UART transmit pin.
    board : Board
        Which LEDs (and button, which re-runs the test while held) to use.
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
        if hasattr(self.selftest, "tx"):
            uart = platform.request("uart", 0, dir={"tx": "-", "rx": "-"})
            m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
            m.d.comb += tx.o.eq(self.selftest.tx)
        return m


@dataclasses.dataclass
class BoardBuild:
    """What :func:`build_board` produced.

    Attributes
    ----------
    name : str
        Top-level name; the build directory holds ``<name>.bin``, ``.rpt`` (yosys log),
        ``.tim`` (nextpnr log), ``build_<name>.out`` (the tools' terminal output) and the
        intermediate files.
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

#: the build script's stages in order: (tool key, file its log goes to, file it writes last)
_STAGES = (("yosys", ".rpt", ".json"), ("nextpnr-ice40", ".tim", ".asc"), ("icepack", None, ".bin"))


def check_build(pe, board, build_dir, *, cycles=512, seed=1, names=None):
    """Check the arguments of :func:`build_board` without building or writing anything.

    Parameters
    ----------
    pe, board, build_dir, cycles, seed
        As for :func:`build_board`.
    names : dict or None
        How the messages name ``build_dir``, ``cycles`` and ``seed`` (default: those words); a
        command line passes its options, e.g. ``{"build_dir": "--build-dir", ...}``.

    Returns
    -------
    Board
        ``board`` as a :class:`Board`.

    Raises
    ------
    InputError
        On bad input: an unknown board, a bad PE, ``cycles`` or ``seed``, a self-test ROM too
        big for the board's block RAM, or a build directory that cannot be written.
    """
    names = names or {}
    board = board if isinstance(board, Board) else get_board(board)
    check_args(pe, cycles, seed, names=names)
    blocks = rom_blocks(pe, cycles)
    if blocks > board.brams:
        raise InputError(f"the self-test ROM needs {blocks} block RAMs and the {board.part} has {board.brams}; "
                         f"lower {names.get('cycles', 'cycles')} (now {cycles})")
    check_writable_dir(build_dir, names.get("build_dir", "build_dir"))
    return board


#: a tool's closing tally such as nextpnr's ``0 warnings, 1 error``: no use as the error line
_TALLY = re.compile(r"^\d+ warnings?, \d+ errors?$", re.I)


def _last_line(path, errors_only):
    """The last non-empty line of ``path`` (only lines mentioning an error if ``errors_only``)."""
    found = ""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    for line in map(str.strip, text.splitlines()):
        if line and (not errors_only or ("error" in line.lower() and not _TALLY.match(line))):
            found = line
    return found[:300]


def _build_failure(build_dir, name, out_log, timed_out):
    """The :class:`ToolError` of a failed build script: which tool failed and its most useful log.

    The stages run in order and each writes its own log (yosys ``.rpt``, nextpnr ``.tim``) as it
    starts and its product (``.json``, ``.asc``) when it succeeds; the failed stage is the first
    whose product is missing. Its log is named if it exists and holds an error line, else the
    script's output ``out_log`` (the tools' stdout and stderr), which always exists.
    """
    tool, stage_log = _STAGES[-1][0], None
    for key, log_suffix, product in _STAGES:
        if not (build_dir / f"{name}{product}").exists():
            tool, stage_log = key, log_suffix and build_dir / f"{name}{log_suffix}"
            break
    candidates = [log for log in (stage_log, out_log) if log is not None and log.exists()]
    detail, log = "", out_log
    for candidate in candidates:
        detail = _last_line(candidate, errors_only=True)
        if detail:
            log = candidate
            break
    if not detail:
        detail = _last_line(out_log, errors_only=False) or "it printed nothing"
    if timed_out:
        return ToolError(f"{tool} ran longer than {TOOL_TIMEOUT_S:g} s building {name}; see {log}", log)
    return ToolError(f"{tool} failed building {name}: {detail}; see {log}", log)


def build_board(pe, board, build_dir="build/board", *, cycles=512, seed=1, name=None, log=None):
    """Build a bitstream that runs the self-test of ``pe`` on ``board``.

    Runs, with ``$YOSYS``, ``$NEXTPNR_ICE40`` and ``$ICEPACK`` pointing at the YoWASP tools when
    they are not set, amaranth's iCE40 build script (yosys ``synth_ice40``, nextpnr-ice40,
    icepack) in ``build_dir``, with the tools' output in ``build_<name>.out`` there (nothing
    reaches the terminal). Nothing is programmed.

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
        On bad input (:func:`check_build`) or a missing tool, before anything is written.
    ToolError
        If a tool fails or runs longer than :data:`hwq.tools.TOOL_TIMEOUT_S`; the message has
        the tool's last error line and names its log, :attr:`~hwq.errors.ToolError.log`.
    """
    board = check_build(pe, board, build_dir, cycles=cycles, seed=seed)
    selftest = SelfTest(pe, cycles=cycles, seed=seed)
    name = name or f"selftest_{board.name}_{pe.module_name}"
    return build_top(SelfTestTop(selftest, board), board, build_dir, name, log=log)


def build_top(top, board, build_dir, name, *, overrides=None, log=None):
    """Build a bitstream of board top level ``top`` (an elaboratable that requests the board's
    resources) in ``build_dir``, as :func:`build_board` does; return a :class:`BoardBuild`.
    ``overrides`` are Amaranth's iCE40 build-script overrides (``synth_opts``,
    ``script_after_read``, ...).

    Raises
    ------
    InputError
        If a tool is missing.
    ToolError
        If a tool fails or runs longer than :data:`hwq.tools.TOOL_TIMEOUT_S`.
    """
    board = board if isinstance(board, Board) else get_board(board)
    env = tool_env(*BOARD_TOOLS)
    build_dir = Path(build_dir)
    platform = board.platform()
    plan = platform.prepare(top, name=name, **(overrides or {}))
    if log is not None:
        log(f"building {name} for the {board.part} in {build_dir} ...")
    start = time.monotonic()
    plan.extract(str(build_dir))
    for _, log_suffix, product in _STAGES:      # a failed stage must not leave an earlier build's files
        for suffix in filter(None, (log_suffix, product)):
            (build_dir / f"{name}{suffix}").unlink(missing_ok=True)
    out_log = build_dir / f"{plan.script}.out"
    run_start = time.monotonic()
    try:
        run_tool(["sh", f"{plan.script}.sh"], build_dir, plan.script, f"the board build of {name}",
                 timeout=TOOL_TIMEOUT_S, env=env)
    except ToolError:
        timed_out = time.monotonic() - run_start >= TOOL_TIMEOUT_S
        raise _build_failure(build_dir, name, out_log, timed_out) from None
    build_s = time.monotonic() - start
    if not (build_dir / f"{name}.bin").is_file():
        raise ToolError(f"the board build of {name} wrote no bitstream {name}.bin; see {out_log}", out_log)
    tim = build_dir / f"{name}.tim"
    fmax, utilization = parse_nextpnr_log(tim.read_text(errors="replace") if tim.is_file() else "")
    return BoardBuild(name=name, bitstream=build_dir / f"{name}.bin", fmax_mhz=fmax,
                      clock_mhz=platform.default_clk_frequency / 1e6, utilization=utilization,
                      build_s=build_s)
