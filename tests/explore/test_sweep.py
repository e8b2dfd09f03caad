"""hwq.explore's sweep on real Dask clusters: input checks, the space's enumeration, the cache keys
(default suite, no synthesis), and real sweeps (slow suite): a LocalCluster of 2 workers with the
cache, a worker killed during a sweep, and a separately started ``dask scheduler`` with ``dask
worker`` processes, through the API and ``python -m hwq.explore``.

The slow tests give their Dask workers a fresh synthesis cache (``HWQ_CACHE_DIR``), so yosys and
nextpnr really run in the workers (about 1-2 minutes per point on 2 cores).
"""

import copy
import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from hwq.errors import InputError
from hwq.explore import Point, Space, sweep
from hwq.explore.cluster import connect

#: hang guard of the slow tests' waits (a sweep here takes a few minutes; this only stops a hang)
HANG_GUARD_S = 1800
#: seconds between two looks at the cache and the workers while a sweep runs
POLL_S = 0.2


class _NoClient:
    """A client that must not be used: input errors come before any work."""

    def __getattr__(self, name):
        raise AssertionError(f"client.{name} used before the inputs were checked")


def _tiny_model():
    import torch
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 6 * 6, 10))


def _small_data(n=8):
    rng = np.random.default_rng(0)
    return {"calibration": rng.random((n, 1, 8, 8), dtype=np.float32),
            "x": rng.random((n, 1, 8, 8), dtype=np.float32), "y": rng.integers(0, 10, n)}


def _digits_data(digits, calibration=64):
    _, (x_train, _, x_test, y_test) = digits
    return {"calibration": x_train[:calibration].numpy(), "x": x_test.numpy(), "y": y_test.numpy()}


def _entries(cache_dir):
    """``{path: bytes}`` of every result file in the sweep cache ``cache_dir``."""
    return {path: Path(path).read_bytes()
            for path in sorted(glob.glob(os.path.join(cache_dir, "explore", "**", "*.json"), recursive=True))}


def _point_entries(cache_dir):
    """The entries of ``cache_dir`` that hold a point's (not a format x bits pair's) result."""
    return {path: data for path, data in _entries(cache_dir).items()
            if json.loads(data).get("inputs", {}).get("stage") == "point"}


def _synth_entries(synth_cache_dir):
    return glob.glob(os.path.join(synth_cache_dir, "synth", "**", "*.json"), recursive=True)


def _count_macs(model, x):
    """Multiply-accumulates of one inference of ``model``, from its Conv2d and Linear layers."""
    import torch
    total = []

    def hook(module, _, out):
        if isinstance(module, torch.nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        else:
            per_output = module.in_features
        total.append(out[0].numel() * per_output)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.as_tensor(x[:1]))
    finally:
        for handle in handles:
            handle.remove()
    return sum(total)


def _reference_outcomes(model, data, fmt, w_bits, a_bits):
    """Per test sample, whether the integer model of ``fmt`` at ``w_bits``/``a_bits`` is right ("1"/"0"),
    computed here with the quantization API, without Dask or the sweep."""
    import warnings

    import torch

    from hwq.quant import quantize
    from hwq.quant.integer import integer_model
    from hwq.quantize import activation_spec
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qmodel = quantize(model, f"{fmt}{w_bits}", activation_spec(fmt, a_bits),
                          calibration=[torch.as_tensor(data["calibration"])])
        logits = integer_model(qmodel).run(data["x"])
    return "".join("1" if r else "0" for r in np.asarray(logits).argmax(1) == data["y"])


def _run_in_thread(fn):
    """Start ``fn()`` in a thread; return the thread and the dict that gets ``result`` or ``error``."""
    out = {}

    def run():
        try:
            out["result"] = fn()
        except BaseException as exc:                      # handed to the test
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _joined(thread, out):
    thread.join(HANG_GUARD_S)
    assert not thread.is_alive(), f"the sweep did not return within {HANG_GUARD_S} s"
    if "error" in out:
        raise out["error"]
    return out["result"]


def _check_built(row, rel=1e-9):
    """A point that was synthesized: its figures are there and agree with one another (to ``rel``:
    the report's points.json keeps 6 significant digits)."""
    assert row["status"] in ("ok", "does not fit"), (row["name"], row["status"], row.get("reason"))
    assert row["lcs"] > 0 and row["cycles"] > 0
    # one product per PE per cycle at most
    assert row["cycles"] >= row["macs"] / row["pes"]
    if row["status"] == "ok":
        assert row["fmax_mhz"] > 0
        assert row["inferences_per_s"] == pytest.approx(row["fmax_mhz"] * 1e6 / row["cycles"], rel=rel)
        assert row["energy_uj"] > 0
    else:
        assert row["reason"]


# ------------------------------------------------------------------------------------------------
# default suite: bad input, the space, the cache keys


@pytest.mark.parametrize("kwargs, named", [
    (dict(formats=["fxp", "posit"], bits=["w4a4"], arrays=["1x2"]), ["'posit'"]),
    (dict(formats=["fxp"], bits=["w9a4"], arrays=["1x2"]), ["w9a4"]),
    (dict(formats=["fxp"], bits=["w4a1"], arrays=["1x2"]), ["w4a1"]),
    (dict(formats=["fxp"], bits=["w4a4"], arrays=["1x"]), ["'1x'"]),
    (dict(formats=["fxp"], bits=["w4a4"], arrays=["0x2"]), ["'0x2'"]),
    (dict(formats=["fxp"], bits=["w4a4"], arrays=["1x2"], mappings=["lut"]), ["'lut'"]),
    (dict(formats=["fxp"], bits=["w4a4"], arrays=["1x2"], seeds=[-1]), ["-1"]),
    (dict(formats=["fxp", "ant", "fxp"], bits=["w4a4"], arrays=["1x2"]), ["formats", "repeat", "fxp"]),
    (dict(formats=["fxp"], bits=["w4a4", (4, 4)], arrays=["1x2"]), ["bits", "repeat", "(4, 4)"]),
    (dict(formats=["fxp"], bits=["w4a4"], arrays=["1x2", "1X2"]), ["arrays", "repeat", "1x2"]),
])
def test_space_rejects_bad_values_naming_them(kwargs, named):
    with pytest.raises(InputError) as info:
        Space(**kwargs)
    for text in named:
        assert text in str(info.value)


def test_space_unknown_format_names_the_known_ones():
    from hwq.pe import PE_CLASSES
    with pytest.raises(InputError) as info:
        Space(formats=["posit"], bits=["w4a4"], arrays=["1x2"])
    message = str(info.value)
    assert "posit" in message
    assert {"fxp", "ant", "esb", "ausn", "uniq"} <= set(PE_CLASSES)
    for name in PE_CLASSES:
        assert name in message


@pytest.mark.parametrize("dimension", ["formats", "bits", "arrays", "mappings", "seeds"])
def test_space_rejects_an_empty_dimension(dimension):
    kwargs = dict(formats=["fxp"], bits=["w4a4"], arrays=["1x2"])
    kwargs[dimension] = []
    with pytest.raises(InputError) as info:
        Space(**kwargs)
    assert dimension in str(info.value)


@pytest.mark.parametrize("change, named", [
    (lambda d: d.pop("y"), ["'y'"]),
    (lambda d: d.update(y=d["y"][:-2]), ["9", "7"]),
    (lambda d: d.update(x=d["x"][:5]), ["5", "9"]),
    (lambda d: d.update(y=d["y"].astype(np.float32)), ["'y'"]),
])
def test_sweep_rejects_bad_data_before_any_work(change, named, tmp_path):
    data = _small_data(9)
    change(data)
    with pytest.raises(InputError) as info:
        sweep(_tiny_model(), data, Space(formats=["fxp"], bits=["w4a4"], arrays=["1x2"]), client=_NoClient(),
              cache=tmp_path / "cache", progress=False)
    for text in named:
        assert text in str(info.value)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("qat_epochs, change, named", [
    (1, lambda d: None, ["qat_epochs=1", "'train_x'", "'train_y'"]),
    (1, lambda d: d.update(train_x=d["x"], train_y=d["y"][:-1]), ["'train_x'", "8 labels"]),
    (1, lambda d: d.update(train_x=d["x"], train_y=d["y"].astype(np.float32)), ["'train_y'", "float32"]),
    (-1, lambda d: None, ["qat_epochs", "-1"]),
    (True, lambda d: None, ["qat_epochs", "True"]),
])
def test_sweep_rejects_bad_qat_before_any_work(qat_epochs, change, named, tmp_path):
    data = _small_data(9)
    change(data)
    with pytest.raises(InputError) as info:
        sweep(_tiny_model(), data, Space(formats=["fxp"], bits=["w4a4"], arrays=["1x2"]), client=_NoClient(),
              cache=tmp_path / "cache", qat_epochs=qat_epochs, progress=False)
    for text in named:
        assert text in str(info.value)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("fmt", ["fxp", "uniq"])
def test_accuracy_task_with_qat_is_the_fine_tuned_integer_model(digits, fmt):
    """QAT through the task (UNIQ's own procedure, straight-through for fxp) against the same steps
    taken here with the quantization API: the same outcomes, an export of the fine-tuned weights."""
    import warnings

    import torch

    from hwq.explore.tasks import accuracy_task
    from hwq.quant import quantize
    from hwq.quant.integer import integer_model
    from hwq.quant.train import quantization_aware_training
    from hwq.quantize import activation_spec
    model, (x_train, y_train, x_test, y_test) = digits
    data = {"calibration": x_train[:64].numpy(), "x": x_test[:120].numpy(), "y": y_test[:120].numpy(),
            "train_x": x_train[:256].numpy(), "train_y": y_train[:256].numpy()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ptq = accuracy_task(model, data, fmt, 4, 4)
    qat = accuracy_task(model, data, fmt, 4, 4, qat_epochs=1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())   # the float model untouched
    assert ptq["status"] == qat["status"] == "ok", (ptq.get("reason"), qat.get("reason"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qmodel = quantize(model, f"{fmt}4", activation_spec(fmt, 4), calibration=[x_train[:64]])
        quantization_aware_training(qmodel, x_train[:256], y_train[:256], epochs=1, seed=0, device="cpu")
        logits = integer_model(qmodel).run(data["x"])
    expected = "".join("1" if r else "0" for r in np.asarray(logits).argmax(1) == data["y"])
    assert qat["outcomes"] == expected and qat["correct"] == expected.count("1")
    assert qat["export"] != ptq["export"]                   # the fine-tuned weights are what gets built


def test_sweep_rejects_a_space_that_is_not_a_space():
    with pytest.raises(InputError) as info:
        sweep(_tiny_model(), _small_data(), {"formats": ["fxp"]}, client=_NoClient(), progress=False)
    assert "Space" in str(info.value)


def test_sweep_rejects_an_unwritable_cache_naming_it(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory\n")
    cache = blocker / "cache"
    with pytest.raises(InputError) as info:
        sweep(_tiny_model(), _small_data(), Space(formats=["fxp"], bits=["w4a4"], arrays=["1x2"]),
              client=_NoClient(), cache=cache, progress=False)
    assert "--cache" in str(info.value)
    assert str(cache) in str(info.value)
    assert blocker.read_text() == "not a directory\n"


def test_connect_to_no_scheduler_is_an_input_error_naming_it():
    address = "tcp://127.0.0.1:1"
    with pytest.raises(InputError) as info:
        with connect(scheduler=address):
            pytest.fail("connected to a port where nothing listens")
    assert address in str(info.value)


def test_connect_with_a_scheduler_and_workers_is_an_input_error():
    with pytest.raises(InputError) as info:
        with connect(scheduler="tcp://127.0.0.1:8786", workers=2):
            pytest.fail("connect took both a scheduler and local workers")
    assert "--workers" in str(info.value) and "--scheduler" in str(info.value)


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_connect_rejects_bad_worker_counts(workers):
    with pytest.raises(InputError) as info:
        with connect(workers=workers):
            pytest.fail(f"connect started a cluster of {workers!r} workers")
    assert "--workers" in str(info.value)


def test_space_enumerates_points_format_major():
    space = Space(formats=["fxp", "ausn"], bits=["w4a4", (8, 8)], arrays=["1x2", "2x4"])
    assert len(space) == 8
    points = space.points()
    assert len(points) == 8
    assert [(p.format, p.w_bits, p.a_bits, p.array) for p in points] == [
        ("fxp", 4, 4, "1x2"), ("fxp", 4, 4, "2x4"), ("fxp", 8, 8, "1x2"), ("fxp", 8, 8, "2x4"),
        ("ausn", 4, 4, "1x2"), ("ausn", 4, 4, "2x4"), ("ausn", 8, 8, "1x2"), ("ausn", 8, 8, "2x4")]
    assert all(p.mapping == "auto" and p.seed == 1 for p in points)
    # 8 points share 4 format x bits pairs, each quantized once
    assert space.accuracy_keys() == [("fxp", 4, 4), ("fxp", 8, 8), ("ausn", 4, 4), ("ausn", 8, 8)]
    assert len({p.name for p in points}) == 8
    p = points[5]
    assert p.config == "w4a4" and p.pes == 8
    assert p.name == "ausn_w4a4_2x4_p0_auto_s1"
    assert Point("fxp", 4, 8, "3x5").config == "w4a8" and Point("fxp", 4, 8, "3x5").pes == 15


def test_space_bits_forms_agree():
    a = Space(formats=["fxp"], bits=["w4a8", 6], arrays=["1x2"])
    b = Space(formats=["fxp"], bits=[(4, 8), "w6a6"], arrays=["1x2"])
    assert a.points() == b.points()
    assert [p.config for p in a.points()] == ["w4a8", "w6a6"]


def test_model_digest_follows_every_weight():
    from hwq.explore.cache import model_digest
    model = _tiny_model()
    digest = model_digest(model)
    assert len(digest) == 64
    twin = copy.deepcopy(model)
    assert model_digest(twin) == digest
    import torch
    with torch.no_grad():
        twin[3].weight[7, 100] += 1e-6
    assert model_digest(twin) != digest
    other = copy.deepcopy(model)
    with torch.no_grad():
        other[1].running_mean[2] += 1.0             # a buffer, not a parameter
    assert model_digest(other) != digest
    assert model_digest(model) == digest             # the digests did not modify the model


def test_data_digest_follows_every_label():
    from hwq.explore.cache import data_digest
    data = _small_data(8)
    digest = data_digest(data)
    assert data_digest({k: v.copy() for k, v in data.items()}) == digest
    changed = {k: v.copy() for k, v in data.items()}
    changed["y"][3] = (changed["y"][3] + 1) % 10
    assert data_digest(changed) != digest
    swapped = dict(data, x=data["calibration"], calibration=data["x"])
    assert data_digest(swapped) != digest


# ------------------------------------------------------------------------------------------------
# slow suite: real sweeps on real clusters, with yosys and nextpnr


@pytest.mark.slow
def test_local_cluster_sweep_and_cache(digits, tmp_path, monkeypatch):
    """2 formats x 2 widths, synthesized on a LocalCluster of 2 workers; then the same sweep from the cache."""
    model = digits[0]
    data = _digits_data(digits)
    monkeypatch.setenv("HWQ_CACHE_DIR", str(tmp_path / "synth"))      # the workers' synthesis cache: fresh
    space = Space(formats=["fxp", "ausn"], bits=["w4a4", "w8a8"], arrays=["1x2"])
    cache = tmp_path / "cache"
    macs = _count_macs(model, data["x"])
    with connect(workers=2) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        first = sweep(model, data, space, client=client, cache=cache, progress=False)
        files = _entries(cache)
        again = sweep(model, data, space, client=client, cache=cache, progress=False)

    rows = first["points"]
    assert [r["name"] for r in rows] == [p.name for p in space.points()]
    for row in rows:
        _check_built(row)
        assert row["macs"] == macs
        assert row["total"] == len(data["y"])
    assert first["stats"]["failed"] == 0 and first["stats"]["refused"] == 0
    assert first["stats"]["ok"] + first["stats"]["does not fit"] == 4
    assert first["stats"]["cache_hits"] == 0
    # yosys and nextpnr ran in the workers: each design is in their fresh synthesis cache
    assert len(_synth_entries(tmp_path / "synth")) >= 4

    # the float model's accuracy, and each pair's integer model, computed here without Dask
    import torch
    with torch.no_grad():
        fp32_right = model.eval()(torch.as_tensor(data["x"])).argmax(1).numpy() == data["y"]
    assert first["fp32"]["correct"] == int(fp32_right.sum())
    for row in rows:
        outcomes = _reference_outcomes(model, data, row["format"], row["w_bits"], row["a_bits"])
        assert row["correct"] == outcomes.count("1"), row["name"]
        assert first["outcomes"][f"{row['format']}_{row['w_bits']}_{row['a_bits']}"] == outcomes

    # 4 points and 4 pairs were cached
    assert len(files) == 8
    if again["environment"]["hwq"] != first["environment"]["hwq"]:
        # hwq's source was edited while the first sweep ran (the keys include it): nothing may come
        # from the cache then, and the cache hits are left to test_cache_hits_without_synthesis
        assert again["stats"]["cache_hits"] == 0 and again["stats"]["tasks_run"] == 8
        pytest.skip("hwq's source changed during the first sweep: the second could not use its cache")
    # the second sweep runs nothing and writes nothing
    assert again["stats"]["tasks_run"] == 0
    assert again["stats"]["cache_hits"] == 8
    assert again["points"] == json.loads(json.dumps(rows))
    assert again["outcomes"] == first["outcomes"]
    assert _entries(cache) == files


@pytest.mark.slow
def test_cache_hits_without_synthesis(digits, tmp_path):
    """The cache path on its own, in seconds: every point refused (AUSN on SB_MAC16), so nothing is
    synthesized; a second sweep takes every pair and point from the cache, and a changed label
    makes the pairs' keys (and so every point's) new."""
    model = digits[0]
    data = _digits_data(digits)
    space = Space(formats=["ausn"], bits=["w4a4", "w8a8"], arrays=["1x2", "1x4"], mappings=["dsp"])
    cache = tmp_path / "cache"
    with connect(workers=2) as client:
        first = sweep(model, data, space, client=client, cache=cache, progress=False)
        files = _entries(cache)
        again = sweep(model, data, space, client=client, cache=cache, progress=False)
        relabelled = dict(data, y=data["y"].copy())
        relabelled["y"][0] = (relabelled["y"][0] + 1) % 10
        third = sweep(model, relabelled, space, client=client, cache=cache, progress=False)
    assert [r["status"] for r in first["points"]] == ["refused"] * 4
    assert first["stats"]["cache_hits"] == 0 and first["stats"]["tasks_run"] == 2 + 4
    assert len(files) == 6
    if again["environment"]["hwq"] != first["environment"]["hwq"]:
        pytest.skip("hwq's source changed between the two sweeps: the second could not use its cache")
    assert again["stats"]["tasks_run"] == 0 and again["stats"]["cache_hits"] == 6
    assert again["points"] == json.loads(json.dumps(first["points"]))
    if third["environment"]["hwq"] == first["environment"]["hwq"]:
        assert third["stats"]["cache_hits"] == 0 and third["stats"]["tasks_run"] == 6
        assert len(_entries(cache)) == 12
    kept = {path: data for path, data in _entries(cache).items() if path in files}
    assert kept == files


@pytest.mark.slow
def test_killed_worker_during_a_build_loses_nothing(digits, tmp_path, monkeypatch):
    """A worker killed (SIGKILL) while it synthesizes a point: the sweep still finishes every point,
    and what was cached before the kill stays byte for byte."""
    model = digits[0]
    data = _digits_data(digits)
    monkeypatch.setenv("HWQ_CACHE_DIR", str(tmp_path / "synth"))
    # AUSN on SB_MAC16 is refused at once (AUSN weights have no multiplier): a finished point
    # within seconds, while FXP's accelerator is synthesized (a minute or two)
    space = Space(formats=["fxp", "ausn"], bits=["w4a4"], arrays=["1x2"], mappings=["dsp"])
    cache = tmp_path / "cache"
    with connect(workers=2) as client:
        thread, out = _run_in_thread(lambda: sweep(model, data, space, client=client, cache=cache,
                                                   progress=False))
        deadline = time.monotonic() + HANG_GUARD_S
        victim = building = None
        while victim is None:
            assert thread.is_alive(), f"the sweep returned before a build could be interrupted: {out}"
            assert time.monotonic() < deadline, "no point result and running build to interrupt"
            if _point_entries(cache):
                executing = client.run(lambda dask_worker: [str(ts.key) for ts in dask_worker.state.executing])
                for address, keys in executing.items():
                    builds = [k for k in keys if k.startswith("point-")]
                    if builds:
                        victim, building = address, builds[0]
                        break
            time.sleep(POLL_S)
        before = _entries(cache)
        pid = client.run(os.getpid, workers=[victim])[victim]
        os.kill(pid, signal.SIGKILL)
        result = _joined(thread, out)
        # the kill hit the worker while it ran the build (the scheduler's record of the removal)
        removals = [msg for _, msg in client.get_events(victim)
                    if isinstance(msg, dict) and msg.get("action") == "remove-worker"]
        assert removals and building in {str(k) for k in removals[0]["processing-tasks"]}

    by_format = {row["format"]: row for row in result["points"]}
    assert by_format["ausn"]["status"] == "refused" and "ausn" in by_format["ausn"]["reason"].lower()
    _check_built(by_format["fxp"])
    assert result["stats"]["failed"] == 0
    after = _entries(cache)
    assert {path: after.get(path) for path in before} == before
    assert len(_point_entries(cache)) == 2


@pytest.mark.slow
def test_worker_holding_the_model_killed_at_the_start(digits, tmp_path):
    """The first worker to hold anything (the model or data the sweep handed to the cluster) is killed
    at once: Dask gets them again, every pair is evaluated and every point finishes. (No synthesis:
    AUSN on SB_MAC16 is refused.)"""
    model = digits[0]
    data = _digits_data(digits)
    space = Space(formats=["ausn"], bits=["w4a4", "w8a8"], arrays=["1x2"], mappings=["dsp"])
    with connect(workers=2) as client:
        thread, out = _run_in_thread(lambda: sweep(model, data, space, client=client, progress=False))
        deadline = time.monotonic() + HANG_GUARD_S
        victim = None
        while victim is None:
            assert thread.is_alive(), "the sweep returned before a worker held its inputs"
            assert time.monotonic() < deadline
            held = {key: where for key, where in client.who_has().items() if where}
            sole = [where[0] for where in held.values() if len(where) == 1]
            if sole:
                victim = sole[0]
            else:
                time.sleep(0.005)
        pid = client.run(os.getpid, workers=[victim])[victim]
        os.kill(pid, signal.SIGKILL)
        result = _joined(thread, out)

    assert result["stats"]["failed"] == 0, [r["reason"] for r in result["points"]]
    assert [r["status"] for r in result["points"]] == ["refused", "refused"]
    for row in result["points"]:
        outcomes = _reference_outcomes(model, data, "ausn", row["w_bits"], row["a_bits"])
        assert row["correct"] == outcomes.count("1")


@pytest.fixture(scope="module")
def external_cluster(tmp_path_factory):
    """``dask scheduler`` and ``dask worker`` (2 processes, 1 thread each) started as commands on
    localhost: ``(address, the workers' synthesis cache directory)``."""
    root = tmp_path_factory.mktemp("external_cluster")
    scheduler_file = root / "scheduler.json"
    env = dict(os.environ, HWQ_CACHE_DIR=str(root / "synth"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    dask = [sys.executable, "-m", "dask"]
    processes = []
    try:
        processes.append(subprocess.Popen(
            [*dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file",
             str(scheduler_file)], env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=root.joinpath(
                 "scheduler.log").open("w")))
        deadline = time.monotonic() + 300
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            assert processes[0].poll() is None, (root / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "dask scheduler wrote no scheduler file"
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        processes.append(subprocess.Popen(
            [*dask, "worker", "--scheduler-file", str(scheduler_file), "--nworkers", "2", "--nthreads", "1",
             "--no-dashboard"], env=env, cwd=root, stdout=subprocess.DEVNULL,
            stderr=root.joinpath("workers.log").open("w")))
        yield address, root / "synth"
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.mark.slow
def test_sweep_on_a_separately_started_scheduler(digits, external_cluster, tmp_path):
    address, synth = external_cluster
    model = digits[0]
    data = _digits_data(digits)
    space = Space(formats=["fxp"], bits=["w4a4"], arrays=["1x2"])
    with connect(scheduler=address) as client:
        client.wait_for_workers(2, timeout=300)
        assert client.scheduler.address == address
        result = sweep(model, data, space, client=client, cache=tmp_path / "cache", progress=False)
    (row,) = result["points"]
    assert row["status"] == "ok", row["reason"]
    _check_built(row)
    assert result["stats"]["failed"] == 0
    # the design was synthesized by the dask worker processes, in their own cache
    assert _synth_entries(synth)
    assert len(_point_entries(tmp_path / "cache")) == 1
    assert row["correct"] == _reference_outcomes(model, data, "fxp", 4, 4).count("1")


@pytest.mark.slow
def test_cli_on_a_separately_started_scheduler(external_cluster, tmp_path):
    address, synth = external_cluster
    out, cache = tmp_path / "out", tmp_path / "cache"
    designs = len(_synth_entries(synth))
    done = subprocess.run(
        [sys.executable, "-m", "hwq.explore", "--formats", "fxp", "--bits", "w4a4", "--arrays", "1x2",
         "--epochs", "2", "--scheduler", address, "--cache", str(cache), "--out", str(out), "--quiet",
         "--no-plots"], capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads((out / "points.json").read_text())
    (row,) = document["points"]
    assert row["name"] == "fxp_w4a4_1x2_p0_auto_s1"
    assert row["status"] == "ok", row["reason"]
    _check_built(row, rel=1e-5)
    assert len(_point_entries(cache)) == 1
    # its model (trained by the command) is new to the dask workers, which synthesized it
    assert len(_synth_entries(synth)) == designs + 1


@pytest.mark.parametrize("argv, named", [
    (["--seeds", "-1"], "--seeds: expected a non-negative integer, not -1"),
    (["--pipelines", "x"], "--pipelines: expected a non-negative integer, not 'x'"),
    (["--workers", "0"], "--workers: expected a positive integer, not 0"),
    (["--formats", "posit"], "posit"),
    (["--arrays", "0x4"], "0x4"),
])
def test_cli_bad_option_is_one_error_before_any_work(argv, named, tmp_path, capsys):
    from hwq.explore.__main__ import main
    out = tmp_path / "out"
    try:   # argparse's usage errors exit, hwq's InputError is returned as the exit status
        status = main([*argv, "--out", str(out), "--no-cache", "--quiet"])
    except SystemExit as exc:
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err
    assert named in err and err.count("error") == 1, err
    assert not out.exists()
