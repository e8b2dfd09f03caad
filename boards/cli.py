"""``hwq-board``: build a self-test bitstream for a board.

Examples
--------
``hwq-board --board icebreaker --format fxp --a-bits 8 --w-bits 8``
    the fxp 8x8 PE's self-test for the iCEBreaker, in ``build/board/``; program it with
    ``iceprog build/board/selftest_icebreaker_fxp_pe_a8_w8.bin``.
``hwq-board --board hx8k --format fxp --a-bits 4 --w-bits 4 --pipeline 1 --build-dir build/hx8k``
    a pipelined 4x4 PE on the iCE40-HX8K breakout board.

``hwq-board --board icebreaker --format esb --w-bits 4``
    one width alone sets both: the esb 4x4 PE.

Bad input (unknown board or format, unsupported width, a build directory that cannot be
written, ...) gives a one-line error naming the option at fault and exit status 2 before
anything is built. A failed tool gives a one-line error naming its log and exit status 1.
"""

import gc
import sys
import warnings

from amaranth.hdl import UnusedElaboratable

from ..cli import ArgumentParser, run_command
from ..errors import InputError
from ..pe import PE_CLASSES, discard, pe_class, pe_variants
from .platforms import BOARDS, build_board, check_build, get_board

__all__ = ["main"]

PROG = "hwq-board"

#: how error messages name :func:`~hwq.boards.platforms.build_board`'s parameters here
OPTION_NAMES = {"cycles": "--cycles", "seed": "--seed", "build_dir": "--build-dir"}

#: widths when neither --a-bits nor --w-bits is given
DEFAULT_BITS = 8


def _parser():
    parser = ArgumentParser(prog=PROG, description="Build a power-on self-test of an hwq processing element "
                     "for an iCE40 board (LEDs show pass/fail).")
    parser.add_argument("--board", required=True, choices=sorted(BOARDS), help="the board")
    parser.add_argument("--format", default="fxp", choices=sorted(PE_CLASSES), help="number format (default fxp)")
    parser.add_argument("--a-bits", type=int, metavar="N",
                        help=f"activation code width (default: --w-bits if given, else {DEFAULT_BITS})")
    parser.add_argument("--w-bits", type=int, metavar="N",
                        help=f"weight code width (default: --a-bits if given, else {DEFAULT_BITS})")
    parser.add_argument("--pipeline", type=int, default=0, metavar="N",
                        help="product register stages (0-4, default 0)")
    parser.add_argument("--cycles", type=int, default=512, metavar="N",
                        help="test cycles (ROM rows, default 512)")
    parser.add_argument("--seed", type=int, default=1, metavar="N", help="stimulus seed (default 1)")
    parser.add_argument("--build-dir", default="build/board", metavar="DIR",
                        help="build directory (default build/board)")
    demo = parser.add_argument_group("an exported model's accelerator on the board (hwq.boards.accel_demo)")
    demo.add_argument("--model", metavar="DIR", help="an export (hwq.integer.export): run its accelerator instead of a PE")
    demo.add_argument("--images", metavar="FILE.npy", help="test samples (float, (N, *input shape)) for the ROM")
    demo.add_argument("--count", type=int, default=8, metavar="N", help="images in the ROM (default 8)")
    demo.add_argument("--array", default="1x16", metavar="RxC", help="PE array (default 1x16)")
    demo.add_argument("--baud", type=int, default=115200, metavar="N", help="UART baud rate (default 115200)")
    return parser


def _widths(args):
    """``{"a": (bits, option), "w": (bits, option)}``: each width and the option it came from
    (``None`` for the default); one width given alone sets both, as in ``hwq-build``."""
    a_opt = "--a-bits" if args.a_bits is not None else "--w-bits" if args.w_bits is not None else None
    w_opt = "--w-bits" if args.w_bits is not None else "--a-bits" if args.a_bits is not None else None
    value = {"--a-bits": args.a_bits, "--w-bits": args.w_bits, None: DEFAULT_BITS}
    return {"a": (value[a_opt], a_opt), "w": (value[w_opt], w_opt)}


def _rejects(fmt, a_bits, w_bits, **kwargs):
    """Whether format ``fmt`` has no PE at these widths and options."""
    try:
        discard(*pe_variants(fmt, a_bits, w_bits, **kwargs))
    except InputError:
        return True
    return False


def _culprits(args, widths):
    """The options a PE's :class:`InputError` comes from, as typed (empty if none can be named).

    Each option is tried with the others at values the format accepts: ``--pipeline`` is at
    fault if the widths work without pipelining; a width is at fault if it fails with every
    default width of the other operand; if neither width fails alone, the pair is at fault.
    """
    (a_bits, a_opt), (w_bits, w_opt) = widths["a"], widths["w"]
    if not _rejects(args.format, a_bits, w_bits):
        return ["--pipeline"]
    defaults = pe_class(args.format).default_widths
    bad = []
    if all(_rejects(args.format, a_bits, w) for _, w in defaults):
        bad.append(a_opt)
    if all(_rejects(args.format, a, w_bits) for a, _ in defaults):
        bad.append(w_opt)
    bad = bad or [a_opt, w_opt]
    return list(dict.fromkeys(opt for opt in bad if opt is not None))


def _make_pe(args):
    """The PE the options describe; an :class:`InputError` names the options at fault."""
    widths = _widths(args)
    try:
        variants = pe_variants(args.format, widths["a"][0], widths["w"][0], pipeline=args.pipeline)
    except InputError as exc:
        culprits = _culprits(args, widths)
        if not culprits:
            raise
        label = "argument" if len(culprits) == 1 else "arguments"
        raise InputError(f"{label} {'/'.join(culprits)}: {exc}") from None
    discard(*variants[1:])
    return variants[0]


def _build_demo(args, board):
    from hwq.accel.schedule import Array
    from hwq.accel_build import hardware, load_images
    from hwq.integer import load

    pe_options = [flag for flag, given in (("--format", args.format != "fxp"), ("--a-bits", args.a_bits is not None),
                                           ("--w-bits", args.w_bits is not None), ("--pipeline", args.pipeline != 0),
                                           ("--cycles", args.cycles != 512), ("--seed", args.seed != 1)) if given]
    if pe_options:
        raise InputError(f"{', '.join(pe_options)}: for a PE's self-test; with --model the export gives the formats")
    if args.images is None:
        raise InputError("--model needs --images FILE.npy: the test samples the bitstream's ROM holds")
    if isinstance(args.count, bool) or args.count < 1:
        raise InputError(f"--count must be at least 1, not {args.count}")
    model = load(args.model)
    codes = load_images(args.images, model)[:args.count]
    _, acc = hardware(model, Array.parse(args.array), "up5k" if board.part.startswith("iCE40UP") else "hx8k")
    from .accel_demo import build_demo
    demo, result = build_demo(acc, codes, board, args.build_dir, baud=args.baud, log=print)
    _print_result(result, board, hint="use a smaller --array")
    print(f"UART: {args.baud} baud, 8N1; after reset it sends {demo.message().decode().strip()!r} "
          f"(one character per image: its predicted class; then the verdict)")


def _build(args):
    board = get_board(args.board)
    if args.model is not None:
        return _build_demo(args, board)
    extra = [flag for flag, given in (("--images", args.images is not None), ("--count", args.count != 8),
                                      ("--array", args.array != "1x16"), ("--baud", args.baud != 115200)) if given]
    if extra:
        raise InputError(f"{', '.join(extra)}: for an exported model's accelerator, with --model DIR")
    pe = _make_pe(args)
    # the options' own messages first; build_board checks the same again, naming its parameters
    check_build(pe, board, args.build_dir, cycles=args.cycles, seed=args.seed, names=OPTION_NAMES)
    result = build_board(pe, board, args.build_dir, cycles=args.cycles, seed=args.seed, log=print)
    _print_result(result, board)


def _print_result(result, board, hint="use --pipeline"):
    used = ", ".join(f"{bel} {u}/{n}" for bel, (u, n) in result.utilization.items()
                     if bel in ("ICESTORM_LC", "ICESTORM_RAM", "ICESTORM_DSP") or u)
    print(f"bitstream: {result.bitstream}")
    print(f"resources: {used}")
    fmax = "unknown" if result.fmax_mhz is None else f"{result.fmax_mhz:.2f} MHz"
    print(f"Fmax: {fmax} (board clock {result.clock_mhz:g} MHz), build {result.build_s:.1f} s")
    if not result.timing_met:
        print(f"warning: nextpnr's Fmax ({fmax}) is below the {result.clock_mhz:g} MHz board clock: the "
              f"self-test may fail on the board from timing, not logic; {hint}", file=sys.stderr)
    print(f"program: iceprog {result.bitstream}")
    print(f"LEDs: {board.leds}")


def main(argv=None):
    """Command-line entry point; returns the exit status (:func:`hwq.cli.run_command`)."""
    def call():
        # parsing inside run_command: an error while the parser is built (a plug-in that cannot be
        # imported, from the registries that give the choices) is one line too
        _build(_parser().parse_args(argv))

    with warnings.catch_warnings():
        # a PE left unbuilt after an error must not add a "created but never used" warning; such a
        # PE sits in a reference cycle, so it is collected here, while the filter is in force
        warnings.simplefilter("ignore", UnusedElaboratable)
        try:
            return run_command(PROG, call)
        finally:
            gc.collect()
