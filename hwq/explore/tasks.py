"""The two stages of a sweep, as functions a Dask worker runs: every argument and result is plain
data (pickled by Dask), nothing refers to the client's files.

- :func:`accuracy_task` (once per format x bits): post-training quantization of the float model
  with the format's own calibration, the integer model's accuracy on the evaluation data
  (top-1, with every sample's outcome for paired comparisons), and the export
  (:func:`hwq.integer.export`) as ``{file name: text}``.
- :func:`build_task` (once per point): the export written into a temporary directory on the
  worker, then :func:`hwq.accel_build.build_accelerator` for the point's array, mapping and
  seed: yosys and nextpnr (and, if asked, a simulation) run here, in the worker.

A point's own failure (a design that does not fit, a tool that crashes or times out, a model the
accelerator refuses) is a result with ``status`` and ``reason``, never an exception: the sweep
records it and goes on. Only a worker that dies loses its task, and Dask runs it again.
"""

import tempfile
import time
import traceback
import warnings
from pathlib import Path

__all__ = ["accuracy_task", "build_task", "worker_environment", "FAILED", "OK", "REFUSED", "DOES_NOT_FIT"]

#: a point's ``status``: built and synthesized, fits the part
OK = "ok"
#: synthesized, but needs more of a resource than the part has (``reason`` says which)
DOES_NOT_FIT = "does not fit"
#: refused before synthesis: the model or its memories cannot be built for this point
REFUSED = "refused"
#: a tool or a step failed (crash, time-out): ``reason`` has the error
FAILED = "failed"

#: the report figures a point keeps (:func:`hwq.accel.report.accelerator_report`)
_REPORT_KEYS = ("array", "pes", "macs", "cycles", "cycles_source", "macs_per_cycle", "utilization", "lcs", "lut4",
                "carry", "ff", "ebr", "spram", "dsp", "fmax_mhz", "inferences_per_s", "macs_per_s_per_lc",
                "verified_inputs", "netlist_verified_inputs")


def worker_environment():
    """What a worker runs with: hwq's source digest and the tool versions (a dict).

    Part of every cache key (:mod:`hwq.explore.cache`); asked of a worker, never of the client,
    so that a sweep on other machines keys their tools. Raises
    :class:`~hwq.errors.InputError` (naming the tool) when the worker lacks a tool a point needs.
    """
    from ..tools import find_tools, tool_versions
    from .cache import hwq_source_digest
    find_tools("yosys", "nextpnr-ice40")
    return {"hwq": hwq_source_digest(), "tools": tool_versions("yosys", "nextpnr-ice40")}


def accuracy_task(model, data, fmt, w_bits, a_bits, qat_epochs=0):
    """Quantize ``model`` to ``fmt`` at ``w_bits`` / ``a_bits`` and evaluate its integer model.

    Parameters
    ----------
    model : torch.nn.Module
        The float model (not modified: quantization works on a copy).
    data : dict
        ``calibration`` (float inputs, ``(N, *input_shape)``), ``x`` and ``y`` (evaluation
        inputs and class indices), as numpy arrays; with ``qat_epochs``, also ``train_x`` and
        ``train_y`` (the training set).
    fmt : str
        Weight format name; activations take the format the format's PE accepts
        (:func:`hwq.quantize.activation_spec`).
    w_bits, a_bits : int
    qat_epochs : int
        0 (default): post-training quantization only. Otherwise the quantized model is then
        fine-tuned for that many epochs on ``train_x``, ``train_y`` the way its format's paper
        does (:func:`hwq.quant.train.quantization_aware_training`: UNIQ's gradual noise
        injection, straight-through for the others), seeded, before its integer model is taken.

    Returns
    -------
    dict
        ``status`` (``"ok"`` or ``"failed"`` with ``reason``), ``correct``, ``total``,
        ``accuracy`` (fraction), ``outcomes`` (a string of one ``"1"`` or ``"0"`` per sample:
        whether its prediction is right, for paired tests), ``export`` (``{file name: text}``) and
        ``seconds``.
    """
    start = time.perf_counter()
    try:
        import numpy as np
        import torch

        from ..integer import export
        from ..quant import quantize
        from ..quant.integer import integer_model
        from ..quantize import activation_spec
        calibration = torch.as_tensor(np.asarray(data["calibration"], dtype=np.float32))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qmodel = quantize(model, f"{fmt}{w_bits}", activation_spec(fmt, a_bits), calibration=[calibration])
            if qat_epochs:
                from ..quant.train import quantization_aware_training
                quantization_aware_training(
                    qmodel, torch.as_tensor(np.asarray(data["train_x"], dtype=np.float32)),
                    torch.as_tensor(np.asarray(data["train_y"], dtype=np.int64)), epochs=qat_epochs, seed=0,
                    device="cpu")
            imodel = integer_model(qmodel)
        logits = imodel.run(np.asarray(data["x"], dtype=np.float32))
        right = np.asarray(logits).argmax(1) == np.asarray(data["y"])
        with tempfile.TemporaryDirectory(prefix="hwq-explore-export-") as tmp:
            export(imodel, Path(tmp) / "export")
            files = {p.name: p.read_text(encoding="utf-8") for p in sorted((Path(tmp) / "export").iterdir())}
    except Exception as exc:                         # recorded: the sweep goes on without this pair
        return {"status": FAILED, "reason": f"{fmt} w{w_bits}a{a_bits}: quantization failed: "
                f"{type(exc).__name__}: {exc}", "detail": traceback.format_exc(limit=4),
                "seconds": round(time.perf_counter() - start, 2)}
    return {"status": OK, "correct": int(right.sum()), "total": int(right.size), "accuracy": float(right.mean()),
            "outcomes": "".join("1" if r else "0" for r in right), "export": files,
            "seconds": round(time.perf_counter() - start, 2)}


def build_task(accuracy, point, *, target="up5k", verify=0, netlist=0, images=None):
    """Build, synthesize (and optionally simulate) ``point``'s accelerator from its pair's export.

    Parameters
    ----------
    accuracy : dict
        :func:`accuracy_task`'s result for the point's format and bits.
    point : hwq.explore.space.Point
    target : str
        ``up5k`` or ``hx8k``.
    verify : int
        Inputs run bit-exact on the RTL (Verilator); their measured cycles replace the
        schedule's. 0 (default): the schedule's cycles, exact for this design (hwq's tests check
        them against the RTL).
    netlist : int
        Inputs run on the synthesized netlist, whose switching activity gives the activity-based
        energy estimate; 0 (default): the first-order estimate only.
    images : numpy.ndarray or None
        Float input samples for ``verify`` / ``netlist`` (default: seeded random codes).

    Returns
    -------
    dict
        ``status`` (:data:`OK`, :data:`DOES_NOT_FIT`, :data:`REFUSED` or :data:`FAILED`),
        ``reason`` (empty when ok), the report's figures (``lcs``, ``ebr``, ``spram``, ``dsp``,
        ``fmax_mhz``, ``cycles``, ``inferences_per_s``, ...), ``energy`` (per inference and per
        MAC at Fmax, ``kind`` ``"activity-based"`` or ``"first-order"``, with its band; None when
        the design does not fit), ``mapping_used`` and ``seconds``.
    """
    from ..errors import InputError
    start = time.perf_counter()
    result = {"status": FAILED, "reason": ""}
    if accuracy.get("status") != OK:
        result.update(status=FAILED, reason=accuracy.get("reason", "quantization failed"))
        return _finish(result, start)
    try:
        from ..accel_build import accelerator_power, build_accelerator
        from ..fileio import save_npy
        with tempfile.TemporaryDirectory(prefix="hwq-explore-") as tmp:
            model_dir = Path(tmp) / "export"
            model_dir.mkdir()
            for name, text in accuracy["export"].items():
                (model_dir / name).write_text(text, encoding="utf-8")
            image_file = None
            if images is not None and (verify or netlist):
                image_file = Path(tmp) / "images.npy"
                save_npy(image_file, images)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                built = build_accelerator(model_dir, array=point.array, target=target, out=Path(tmp) / "out",
                                          verify=verify, images=image_file, netlist=netlist, quiet=True,
                                          mapping=point.mapping, pipeline=point.pipeline,
                                          pnr_seed=point.seed)
    except InputError as exc:
        result.update(status=REFUSED, reason=str(exc))
        return _finish(result, start)
    except Exception as exc:                     # a tool crash or time-out: recorded, the sweep goes on
        result.update(status=FAILED, reason=f"{type(exc).__name__}: {exc}", detail=traceback.format_exc(limit=4))
        return _finish(result, start)
    report, synthesis = built["report"], built["synthesis"] or {}
    result.update({key: report.get(key) for key in _REPORT_KEYS})
    result["mapping_used"] = built["manifest"]["array"]["mapping"]
    result["dsp_blocks"] = built["manifest"]["array"]["dsp_blocks"]
    fits = synthesis.get("fits", True)
    result["status"] = OK if fits else DOES_NOT_FIT
    result["reason"] = "" if fits else "; ".join(synthesis.get("notes") or []) or report["summary"]
    result["energy"] = None
    if fits and synthesis.get("fmax_mhz"):
        power = report.get("power") or accelerator_power(None, synthesis, cycles=report["cycles"], macs=report["macs"])
        kind = "activity" if power.get("activity") else "first_order"
        at_fmax = power[kind]["energy"][-1]
        result["energy"] = {"kind": "activity-based" if kind == "activity" else "first-order",
                            **{k: v for k, v in at_fmax.items() if k.startswith("energy_") or k in
                               ("power_mw", "freq_mhz")}}
    result["timing"] = {k: round(v, 2) for k, v in built["timing"].items()}
    return _finish(result, start)


def _finish(result, start):
    result["seconds"] = round(time.perf_counter() - start, 2)
    return result
