"""Power-on self-test of a processing element on a real iCE40 board.

:class:`~hwq.boards.self_test.SelfTest` wraps any :class:`~hwq.pe.ProcessingElement` with a ROM of
seeded random stimulus and the golden sums (:func:`hwq.formats.accumulate`), walks the ROM once
after reset and reports ``done``, ``passed`` and ``failed``. :mod:`hwq.boards.platforms` puts it on the
iCEBreaker (iCE40UP5K-SG48) and the iCE40-HX8K breakout board with the LEDs as the verdict, and
:func:`~hwq.boards.platforms.build_board` builds the bitstream with the YoWASP tools.

``hwq-board --board icebreaker --format fxp --a-bits 8 --w-bits 8`` builds one from the
command line (see :mod:`hwq.boards.cli` and ``boards/README.md``).
"""

from .self_test import SelfTest, Vectors, make_vectors

__all__ = ["SelfTest", "Vectors", "make_vectors"]
