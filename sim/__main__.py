"""``python -m hwq.sim``: the same as ``hwq-sim`` (:func:`hwq.sim.runner.main`)."""

import sys

from .runner import main

sys.exit(main())
