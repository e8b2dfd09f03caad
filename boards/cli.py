"""``hwq-board``: build a self-test bitstream for a board.

Examples
--------
``hwq-board --board icebreaker --format fxp --a-bits 8 --w-bits 8``
    the fxp 8x8 PE's self-test for the iCEBreaker, in ``build/board/``; program it with
    ``iceprog build/board/selftest_icebreaker_fxp_pe_a8_w8.bin``.
``hwq-board --board hx8k --format fxp --a-bits 4 --w-bits 4 --pipeline 1 --build-dir build/hx8k``
    a pipelined 4x4 PE on the iCE40-HX8K breakout board.

Bad input (unknown board or format, unsupported width, ...) gives a one-line error and exit
status 2 before anything is built.
"""

import sys
import warnings

from amaranth.hdl import UnusedElaboratable

from ..cli import ArgumentParser, run_command
from ..pe import PE_CLASSES, pe_variants
from .platforms import BOARDS, build_board, get_board

__all__ = ["main"]

PROG = "hwq-board"


def _parser():
    parser = ArgumentParser(prog=PROG, description="Build a power-on self-test of an hwq processing element "
                     "for an iCE40 board (LEDs show pass/fail).")
    parser.add_argument("--board", required=True, metavar="NAME", choices=sorted(BOARDS), help="the board")
    parser.add_argument("--format", default="fxp", choices=sorted(PE_CLASSES), help="number format (default fxp)")
    parser.add_argument("--a-bits", type=int, default=8, metavar="N", help="activation code width (default 8)")
    parser.add_argument("--w-bits", type=int, default=8, metavar="N", help="weight code width (default 8)")
    parser.add_argument("--pipeline", type=int, default=0, metavar="N",
                        help="product register stages (0-4, default 0)")
    parser.add_argument("--cycles", type=int, default=512, metavar="N",
                        help="test cycles (ROM rows, default 512)")
    parser.add_argument("--seed", type=int, default=1, metavar="N", help="stimulus seed (default 1)")
    parser.add_argument("--build-dir", default="build/board", metavar="DIR",
                        help="build directory (default build/board)")
    return parser


def _build(args):
    board = get_board(args.board)
    pe = pe_variants(args.format, args.a_bits, args.w_bits, pipeline=args.pipeline)[0]
    result = build_board(pe, board, args.build_dir, cycles=args.cycles, seed=args.seed, log=print)
    used = ", ".join(f"{bel} {u}/{n}" for bel, (u, n) in result.utilization.items()
                     if bel in ("ICESTORM_LC", "ICESTORM_RAM", "ICESTORM_DSP") or u)
    print(f"bitstream: {result.bitstream}")
    print(f"resources: {used}")
    fmax = "unknown" if result.fmax_mhz is None else f"{result.fmax_mhz:.2f} MHz"
    print(f"Fmax: {fmax} (board clock {result.clock_mhz:g} MHz), build {result.build_s:.1f} s")
    if not result.timing_met:
        print(f"warning: nextpnr's Fmax ({fmax}) is below the {result.clock_mhz:g} MHz board clock: the "
              "self-test may fail on the board from timing, not logic; use --pipeline", file=sys.stderr)
    print(f"program: iceprog {result.bitstream}")
    print(f"LEDs: {board.leds}")


def main(argv=None):
    """Command-line entry point; returns the exit status (:func:`hwq.cli.run_command`)."""
    args = _parser().parse_args(argv)
    with warnings.catch_warnings():
        # a PE left unbuilt after an error must not add a "created but never used" warning
        warnings.simplefilter("ignore", UnusedElaboratable)
        return run_command(PROG, lambda: _build(args))
