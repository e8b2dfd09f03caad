"""The Dask client a sweep runs on: a ``LocalCluster`` sized to the machine, or an existing
scheduler, through the same code path (``dask.distributed``).

On other machines, start a scheduler and workers with Dask's own commands (docs/explore.md)::

    dask scheduler                                   # prints tcp://HOST:8786
    dask worker tcp://HOST:8786 --nworkers 4 --nthreads 1

Each worker machine needs hwq with its toolchain (``pip install 'hwq[all]'`` or ``bash setup.sh``
in a checkout): yosys, nextpnr and the simulators run in the workers, never in the client.
"""

import contextlib

from ..errors import InputError

__all__ = ["connect", "local_cluster_size", "CONNECT_TIMEOUT_S"]

#: seconds to wait for a scheduler before the sweep stops with an error
CONNECT_TIMEOUT_S = 10


def local_cluster_size():
    """Workers of the default ``LocalCluster``: one process per usable CPU, one thread each (yosys,
    nextpnr and Verilator are single-threaded, and a process per worker keeps the GIL out)."""
    from ..synth.flow import usable_cpus
    return usable_cpus()


@contextlib.contextmanager
def connect(scheduler=None, workers=None, *, quiet=True):
    """A ``distributed.Client``: to ``scheduler`` (``tcp://HOST:PORT``), else to a new
    ``LocalCluster`` of ``workers`` processes (default :func:`local_cluster_size`), one thread
    each, closed on exit.

    Raises
    ------
    InputError
        If the scheduler cannot be reached within :data:`CONNECT_TIMEOUT_S` (naming it), if
        ``workers`` is not a positive integer, or if both are given.
    """
    from distributed import Client, LocalCluster
    if scheduler is not None and workers is not None:
        raise InputError("--workers starts a local cluster; with --scheduler the cluster's own workers run the "
                         "sweep: give one of them")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InputError(f"--workers must be a positive integer, not {workers!r}")
    if scheduler is not None:
        if not isinstance(scheduler, str) or "://" not in scheduler:
            raise InputError(f"--scheduler {scheduler!r}: expected an address such as tcp://HOST:8786")
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise InputError(f"--scheduler {scheduler}: cannot reach it within {CONNECT_TIMEOUT_S} s ({exc}); "
                             "start one with 'dask scheduler' and workers with 'dask worker ADDRESS'") from None
        try:
            yield client
        finally:
            client.close()
        return
    import logging
    cluster = LocalCluster(n_workers=workers or local_cluster_size(), threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.ERROR if quiet else logging.WARNING)
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()
