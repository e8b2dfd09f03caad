"""The accelerator's Verilog and its manifest: what a host or a bench needs to drive it.

:func:`accelerator_manifest` describes an :class:`~hwq.accel.top.Accelerator` as JSON-ready data
(module name, model, array, ports and their protocol, memory map, memories, steps, latency);
:func:`write_accelerator` writes ``<module>.v`` and ``<module>.json`` into a directory. Both files
are deterministic: no absolute path, no timestamp (the model is named by the SHA-256 of its
export's ``model.json``).

Manifest keys (version :data:`MANIFEST_VERSION`)
-----------------------------------------------
``hwq_accelerator``, ``module``, ``verilog``
    Version, top-level module name, Verilog file name.
``model``
    ``export_sha256`` (of ``model.json``, or None), ``input`` / ``output``: tensor name, shape
    (one sample, CHW), format name and parameters.
``array``, ``target``
    ``{"rows", "cols", "pes", "mapping", "dsp_blocks", "pipeline"}`` (the products in fabric or
    in SB_MAC16 blocks, how many blocks, the product register stages) and the target name.
``interfaces``
    The ports: ``clk`` (rising edge), ``rst`` (synchronous, active high), ``input`` and
    ``output`` (``amaranth.lib.stream``: a transfer is a cycle with ``valid`` and ``ready``
    high; ``payload_bits``, ``words_per_image``, order), ``busy`` and ``cycles``.
``memory_map``
    ``act_words``, ``act_bits``, ``banks`` (activation banks, :mod:`hwq.accel.memory`) and every
    tensor's region ``{"tensor", "base", "size", "shape"}`` in words of
    the activation memory (CHW order inside a region).
``memories``
    Every memory (:mod:`hwq.accel.fit`): name, width, depth, ports, initialised, block kind and
    count.
``preload``
    The weight store (:mod:`hwq.accel.loader`), or None when every weight is in block RAM:
    ``payloads`` (input-stream words the host sends once after every reset, before the first
    image), ``file`` (``<module>_preload.hex``, written beside the Verilog: one payload per
    line, hexadecimal, in order), ``store_words`` (16-bit words of the store), ``layers`` (the
    layers whose weights it holds) and ``weight_capacity`` (words of the block-RAM weight memory).
``steps``
    ``{"name", "kind", "cycles", "macs"}`` per step (steady-state cycles from the schedule), a
    ``load`` step (``"name": "load <layer>"``) before each layer whose weights come from the store.
``latency``
    ``cycles_per_inference`` (:attr:`Accelerator.expected_cycles`: a host that never waits),
    ``schedule_cycles``, ``macs``, ``utilization`` (the conv steps' MACs over cycles x PEs).
"""

from ..fileio import write_atomic

__all__ = ["MANIFEST_VERSION", "accelerator_manifest", "write_accelerator"]

MANIFEST_VERSION = 1


def _tensor(model, name, region):
    fmt = model.tensors[name].format
    return {"tensor": name, "shape": list(region.shape), "format": fmt.name, "params": fmt.params()}


def accelerator_manifest(acc, *, module="hwq_accel", target="sim", memories=(), export_sha256=None):
    """The manifest of ``acc`` (module docstring), as a dict of JSON types.

    Parameters
    ----------
    acc : Accelerator
    module : str
        The top-level module name of the Verilog.
    target : str
        The target the design was checked for.
    memories : list of hwq.accel.fit.MemoryUse
        Its memories mapped onto the target (:func:`hwq.accel.fit.check_fit`).
    export_sha256 : str or None
        SHA-256 of the export's ``model.json``.
    """
    s = acc.schedule
    model = s.model
    stream = lambda words, order: {"protocol": "amaranth.lib.stream (valid, ready, payload)",
                                   "payload_bits": acc.act_bits, "words_per_image": words, "order": order}
    out_order = "the whole activation memory, word 0 first (read-back)" if acc.dump else "CHW"
    return {
        "hwq_accelerator": MANIFEST_VERSION,
        "module": module,
        "verilog": f"{module}.v",
        "model": {"export_sha256": export_sha256,
                  "input": _tensor(model, model.input, s.input),
                  "output": _tensor(model, model.output, s.output)},
        "array": {"rows": s.array.rows, "cols": s.array.cols, "pes": s.array.pes,
                  "mapping": acc.conv.mapping if acc.conv is not None else "fabric",
                  "dsp_blocks": acc.conv.dsp_blocks if acc.conv is not None else 0,
                  "pipeline": acc.conv.pipeline if acc.conv is not None else 0},
        "target": target,
        "interfaces": {
            "clk": "clock, rising edge",
            "rst": "synchronous reset, active high",
            "input": stream(s.input.size, "CHW"),
            "output": stream(acc.output_words, out_order),
            "busy": "high from the first input word taken to the last output word sent",
            "cycles": {"bits": len(acc.cycles), "meaning": "cycles of the last inference, both ends included"},
            "step": {"bits": len(acc.step), "meaning": "the sequencer's step counter (for debugging)"},
        },
        "memory_map": {"act_words": s.act_words, "act_bits": acc.act_bits, "banks": s.banks,
                       "regions": [{"tensor": r.tensor, "base": r.base, "size": r.size, "shape": list(r.shape)}
                                   for r in sorted(s.regions.values(), key=lambda r: (r.base, r.tensor))]},
        "memories": [{"name": m.name, "width": m.width, "depth": m.depth, "read_ports": m.read_ports,
                      "write_ports": m.write_ports, "initialised": m.initialised, "kind": m.kind, "blocks": m.blocks}
                     for m in memories],
        "preload": _preload(acc, module),
        "steps": [{"name": f"load {step.step}" if step.kind == "load" else step.name, "kind": step.kind,
                   "cycles": int(step.cycles), "macs": int(step.macs) if step.kind == "conv" else 0}
                  for step in acc.program],
        "latency": {"cycles_per_inference": int(acc.expected_cycles), "schedule_cycles": int(s.cycles),
                    "macs": int(s.macs), "utilization": round(s.utilization(), 6)},
    }


def _preload(acc, module):
    s = acc.schedule
    if acc.loader is None:
        return None
    return {"payloads": acc.loader.preload_words, "file": f"{module}_preload.hex", "store_words": acc.loader.depth,
            "layers": list(s.loads),
            "weight_capacity": s.weight_capacity}


def write_accelerator(acc, out_dir, manifest):
    """Write ``<module>.v`` (Amaranth's Verilog of ``acc``) and ``<module>.json`` into ``out_dir``.

    Parameters
    ----------
    acc : Accelerator
    out_dir : pathlib.Path
        An existing directory (the caller stages it).
    manifest : dict
        :func:`accelerator_manifest` of ``acc``.

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        The Verilog and manifest files (and, with a weight store, ``<module>_preload.hex``
        beside them).
    """
    import json

    from amaranth.back import verilog

    text = verilog.convert(acc, name=manifest["module"], emit_src=False)
    v_path, m_path = out_dir / manifest["verilog"], out_dir / f"{manifest['module']}.json"
    write_atomic(v_path, text)
    if manifest.get("preload"):
        digits = -(-acc.act_bits // 4)
        write_atomic(out_dir / manifest["preload"]["file"],
                     "".join(f"{value:0{digits}x}\n" for value in acc.preload()))
    write_atomic(m_path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return v_path, m_path
