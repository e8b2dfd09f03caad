"""One sweep: every point of a :class:`~hwq.explore.space.Space` as Dask tasks, results cached.

Stages (each a Dask task; :mod:`hwq.explore.tasks`):

1. per format x bits, :func:`~hwq.explore.tasks.accuracy_task`: quantize, evaluate, export;
2. per point, :func:`~hwq.explore.tasks.build_task` on its pair's result: generate, synthesize
   (and optionally simulate) the accelerator.

Dask passes a pair's result from the worker that computed it to the workers that build its
points; the client only submits, collects and writes. Every result is looked up in the cache
first (:mod:`hwq.explore.cache`) and written there as it arrives, so an interrupted sweep
resumes and a finished one re-runs at once. A point that fails is a result with its reason; a
worker that dies has its tasks run again by Dask (``retries``), and results already written
stay written.
"""

import time

import numpy as np

from ..errors import InputError
from .cache import ExploreCache, data_digest, model_digest
from .space import Space
from .tasks import DOES_NOT_FIT, FAILED, OK, REFUSED, accuracy_task, build_task, worker_environment

__all__ = ["sweep", "DEFAULT_RETRIES"]

#: times Dask runs a task again after its worker died
DEFAULT_RETRIES = 2


def _check_data(data, qat_epochs=0):
    """``data`` as a dict of numpy arrays: ``calibration``, ``x``, ``y`` (and ``train_x``,
    ``train_y`` for QAT), checked."""
    if not isinstance(data, dict) or not {"calibration", "x", "y"} <= set(data):
        raise InputError("data must be a dict with 'calibration' (float inputs for PTQ), 'x' and 'y' (evaluation "
                         "inputs and their class indices)")
    keys = ("calibration", "x", "y") + (("train_x", "train_y") if qat_epochs else ())
    missing = [key for key in keys if key not in data]
    if missing:
        raise InputError(f"data: quantization-aware training (qat_epochs={qat_epochs}) needs the training set as "
                         f"'train_x' and 'train_y'; missing {', '.join(map(repr, missing))}")
    out = {key: np.asarray(data[key].cpu() if hasattr(data[key], "cpu") else data[key]) for key in keys}
    x, y, cal = out["x"], out["y"], out["calibration"]
    if len(x) < 1 or len(x) != len(y):
        raise InputError(f"data: 'x' has {len(x)} samples and 'y' {len(y)} labels; need as many, at least one")
    if len(cal) < 1 or cal.shape[1:] != x.shape[1:]:
        raise InputError(f"data: 'calibration' of shape {cal.shape} does not match 'x' samples of shape "
                         f"{x.shape[1:]}")
    if qat_epochs:
        tx, ty = out["train_x"], out["train_y"]
        if len(tx) < 1 or len(tx) != len(ty) or tx.shape[1:] != x.shape[1:]:
            raise InputError(f"data: 'train_x' of shape {tx.shape} and 'train_y' of {len(ty)} labels: need as many "
                             f"labels as samples, at least one, each of shape {x.shape[1:]}")
    for key in ("y", "train_y") if qat_epochs else ("y",):
        labels = out[key]
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise InputError(f"data: {key!r} must be a 1-D array of class indices, not {labels.dtype} of shape "
                             f"{labels.shape}")
    for key in ("calibration", "x") + (("train_x",) if qat_epochs else ()):
        if not np.issubdtype(out[key].dtype, np.floating) or not np.isfinite(out[key]).all():
            raise InputError(f"data: {key!r} must hold finite floats")
    return out


def _fp32_accuracy(model, x, y):
    import torch
    model.eval()
    with torch.no_grad():
        predicted = model(torch.as_tensor(x)).argmax(1).numpy()
    right = predicted == y
    return {"correct": int(right.sum()), "total": int(right.size), "accuracy": float(right.mean()),
            "outcomes": "".join("1" if r else "0" for r in right)}


def sweep(model, data, space, *, client=None, cache=None, verify=0, netlist=0, images=None, qat_epochs=0,
          retries=DEFAULT_RETRIES, progress=True, log=print):
    """Run every point of ``space`` for ``model`` on ``client``; return every point's result.

    Parameters
    ----------
    model : torch.nn.Module
        The trained float model.
    data : dict
        ``calibration`` (float inputs for post-training quantization), ``x`` and ``y``
        (evaluation inputs and class indices): numpy arrays or tensors; with ``qat_epochs``,
        also ``train_x`` and ``train_y`` (the training set).
    space : hwq.explore.space.Space
    client : distributed.Client or None
        Where the tasks run; ``None``: a ``LocalCluster`` sized to the machine for this call
        (:func:`hwq.explore.cluster.connect`).
    cache : hwq.explore.cache.ExploreCache, path or None
        The result cache (a directory is made an :class:`ExploreCache`); ``None``: no cache.
    verify, netlist : int
        Inputs per point run on the RTL / on the synthesized netlist
        (:func:`hwq.explore.tasks.build_task`; ``netlist`` gives activity-based energy).
    images : array_like or None
        Float samples for ``verify`` / ``netlist`` (default: the first of ``data["x"]``).
    qat_epochs : int
        0 (default): accuracy after post-training quantization. Otherwise after that many epochs
        of quantization-aware training per format x bits (:func:`hwq.explore.tasks.accuracy_task`);
        the exported (and built) model is the fine-tuned one.
    retries : int
        Times Dask runs a task again after its worker died.
    progress : bool
        A progress bar on stderr (points done, failed, remaining, time left).
    log : callable
        Gets one line per stage (not called with ``progress=False``... only lines, never the bar).

    Returns
    -------
    dict
        ``points``: one dict per point, in :meth:`Space.points` order: the point's fields,
        ``status``, ``reason``, its pair's ``accuracy``, ``correct``, ``total`` and the build's
        figures; ``fp32``: the float model's accuracy; ``outcomes``: per pair, the evaluation
        outcomes (for :func:`hwq.explore.stats.mcnemar`); ``environment``; ``stats``: tasks run,
        cache hits, failures; ``timing``.

    Raises
    ------
    InputError
        Before any task runs: ``space`` not a Space, malformed ``data``, an unwritable cache,
        workers without the toolchain.
    """
    start = time.perf_counter()
    if not isinstance(space, Space):
        raise InputError(f"space must be a hwq.explore.Space, not {type(space).__name__}")
    if isinstance(qat_epochs, bool) or not isinstance(qat_epochs, int) or qat_epochs < 0:
        raise InputError(f"qat_epochs must be a non-negative number of epochs, not {qat_epochs!r}")
    data = _check_data(data, qat_epochs)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise InputError(f"retries must be a non-negative integer, not {retries!r}")
    for name, value in (("verify", verify), ("netlist", netlist)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"{name} must be a non-negative number of inputs, not {value!r}")
    if cache is not None and not isinstance(cache, ExploreCache):
        cache = ExploreCache(cache)
    images = None if not (verify or netlist) else np.asarray(data["x"][:max(verify, netlist)] if images is None
                                                             else images, dtype=np.float32)
    if client is None:
        from .cluster import connect
        with connect() as client:
            return sweep(model, data, space, client=client, cache=cache, verify=verify, netlist=netlist,
                         images=images, qat_epochs=qat_epochs, retries=retries, progress=progress, log=log)

    fp32 = _fp32_accuracy(model, data["x"], data["y"])
    timing = {}
    t = time.perf_counter()
    try:
        environment = client.submit(worker_environment, pure=False).result()
    except InputError as exc:
        raise InputError(f"a Dask worker cannot run the sweep: {exc}") from None
    timing["environment_s"] = time.perf_counter() - t
    base = {"model": model_digest(model), "data": data_digest(data), "hwq": environment["hwq"],
            "versions": _versions()}
    acc_inputs = {key: {"stage": "accuracy", **base, "format": key[0], "w_bits": key[1], "a_bits": key[2],
                        "qat_epochs": qat_epochs}
                  for key in space.accuracy_keys()}
    acc_keys = {key: ExploreCache.key(inputs) for key, inputs in acc_inputs.items()}
    points = space.points()
    point_inputs = [{"stage": "point", "accuracy": acc_keys[p.accuracy_key], "point": p.as_dict(),
                     "target": space.target, "verify": verify, "netlist": netlist,
                     "images": None if images is None else data_digest({"images": images}),
                     "tools": environment["tools"], "hwq": environment["hwq"]} for p in points]
    point_keys = [ExploreCache.key(inputs) for inputs in point_inputs]

    accuracy = {key: cache.get(k) if cache is not None else None for key, k in acc_keys.items()}
    results = [cache.get(k) if cache is not None else None for k in point_keys]
    hits = sum(r is not None for r in results) + sum(a is not None for a in accuracy.values())
    todo = [i for i, r in enumerate(results) if r is None]
    needed = {points[i].accuracy_key for i in todo}
    log(f"sweep: {len(points)} points ({len(space.accuracy_keys())} format x bits pairs), "
        f"{sum(r is not None for r in results)} from the cache, {len(todo)} to run on "
        f"{len(client.scheduler_info()['workers'])} Dask worker(s)")

    from distributed import as_completed
    tasks = {}                                               # future -> ("accuracy", pair) or ("point", index)
    # tasks, not client.scatter: scattered data dies with the worker that holds it (and every point
    # then fails), while a task's result is computed again on another worker
    model_f = client.submit(_constant, model, pure=False)
    data_f = client.submit(_constant, data, pure=False)
    acc_futures = {}
    for key in needed:
        if accuracy[key] is None:
            acc_futures[key] = client.submit(accuracy_task, model_f, data_f, *key, qat_epochs=qat_epochs,
                                             key=f"accuracy-{acc_keys[key]}", retries=retries, pure=False)
            tasks[acc_futures[key]] = ("accuracy", key)
        else:
            acc_futures[key] = client.submit(_constant, accuracy[key], pure=False)
    for i in todo:
        p = points[i]
        f = client.submit(build_task, acc_futures[p.accuracy_key], p, target=space.target, verify=verify,
                          netlist=netlist, images=images, key=f"point-{point_keys[i]}", retries=retries, pure=False)
        tasks[f] = ("point", i)
    bar = _bar(len(todo), progress)
    failed = 0
    t = time.perf_counter()
    try:
        for future in as_completed(list(tasks)):
            kind, what = tasks[future]
            try:
                value = future.result()
            except Exception as exc:             # the task itself died (e.g. its worker, every retry)
                value = {"status": FAILED, "reason": f"Dask task failed: {type(exc).__name__}: {exc}"}
            if kind == "accuracy":
                accuracy[what] = value
                if cache is not None and value.get("status") == OK:
                    cache.put(acc_keys[what], acc_inputs[what], value)
                continue
            results[what] = value
            if cache is not None and value.get("status") != FAILED:
                cache.put(point_keys[what], point_inputs[what], value)
            failed += value.get("status") == FAILED
            if bar is not None:
                bar.set_postfix_str(f"failed {failed}", refresh=False)
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    timing["tasks_s"] = time.perf_counter() - t

    rows = []
    for p, r in zip(points, results):
        a = accuracy.get(p.accuracy_key) or {}
        row = {"name": p.name, **p.as_dict(), "config": p.config, "pes": p.pes,
               "accuracy": a.get("accuracy"), "correct": a.get("correct"), "total": a.get("total")}
        row.update({k: v for k, v in r.items() if k not in ("export", "detail", "array", "pes")})
        row["energy_uj"] = (r.get("energy") or {}).get("energy_per_inference_uj")
        row["fits"] = r.get("status") == OK
        rows.append(row)
    timing["total_s"] = time.perf_counter() - start
    statuses = [r["status"] for r in rows]
    stats = {"points": len(rows), "cache_hits": hits, "tasks_run": len(tasks),
             **{s: statuses.count(s) for s in (OK, DOES_NOT_FIT, REFUSED, FAILED)}}
    log(f"sweep: {stats[OK]} fit, {stats[DOES_NOT_FIT]} do not fit, {stats[REFUSED]} refused, {stats[FAILED]} "
        f"failed, in {timing['total_s']:.1f} s")
    return {"points": rows, "fp32": fp32, "environment": environment, "stats": stats, "timing": timing,
            "outcomes": {"_".join(map(str, k)): (v or {}).get("outcomes") for k, v in accuracy.items()},
            "target": space.target, "qat_epochs": qat_epochs}


def _constant(value):
    """``value``, as a task: Dask keeps its input and runs it again if the worker holding it dies."""
    return value


def _versions():
    import importlib.metadata
    versions = {}
    for package in ("torch", "numpy"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _bar(total, progress):
    if not progress:
        return None
    import sys

    from tqdm import tqdm
    return tqdm(total=total, desc="points", unit="point", file=sys.stderr, dynamic_ncols=True, leave=False,
                disable=None if progress is True else False)
