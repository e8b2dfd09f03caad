"""Design-space exploration: the Pareto front of format x bits x PE array, on Dask.

``python -m hwq.explore`` (:mod:`hwq.explore.__main__`) and the API under it:

- :class:`~hwq.explore.space.Space`: the points to run (format x weight/activation bits x array
  x mapping x nextpnr seed);
- :func:`~hwq.explore.sweep.sweep`: every point as Dask tasks (:mod:`hwq.explore.tasks`) on a
  ``LocalCluster`` or an existing scheduler (:mod:`hwq.explore.cluster`), each result cached
  (:mod:`hwq.explore.cache`);
- :mod:`hwq.explore.pareto`, :mod:`hwq.explore.stats`, :mod:`hwq.explore.estimate` and
  :mod:`hwq.explore.report`: the fronts, the accuracy intervals and paired tests, the analytic
  cost model, and the tables and plots.

docs/explore.md walks through a sweep and running it on several machines.
"""

from .space import DEFAULT_SPACE, Point, Space
from .sweep import sweep

__all__ = ["Space", "Point", "DEFAULT_SPACE", "sweep"]
