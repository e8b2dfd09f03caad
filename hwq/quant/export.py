"""Export of an integer model, and the loader that rebuilds it bit-exactly.

``export(model, out_dir)`` writes, atomically (nothing in ``out_dir`` changes unless all succeed):

``<layer>.weights.mem``
    The layer's weight codes for ``$readmemh``: one code per line, ``ceil(bits / 4)`` hex
    digits, in the order ``(out_channel, in_channel, kh, kw)`` (linear: ``(out, in)``).
``<layer>.bias.mem``
    The bias per output channel in accumulator units, two's complement, ``bias_bits`` wide.
``weights.bin``
    Every layer's codes packed (one byte per code up to 8 bits, two little-endian bytes up to
    16), at the ``offset_bytes`` the manifest gives.
``model.json``
    Layer order and graph ops, shapes, each operand's format and parameters, the requantization
    multipliers and shifts, file names and byte offsets.

:func:`load` reads the files back (codes and biases from the ``.mem`` files, never from the JSON)
into an :class:`~hwq.quant.integer.IntegerModel` whose outputs equal the exported model's exactly.
"""

import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..fileio import staged_output, write_atomic
from ..formats import from_params
from ..formats.golden import signed_width
from .integer import GUARD_BITS, MULT_BITS, IntegerModel, LayerProgram, Requant

__all__ = ["EXPORT_VERSION", "export", "load"]

EXPORT_VERSION = 1
MANIFEST = "model.json"


def _hex_lines(values, bits):
    digits = -(-bits // 4)
    mask = (1 << bits) - 1
    return "".join(f"{int(v) & mask:0{digits}x}\n" for v in values)


def _operand(fmt):
    return {"format": fmt.name, **fmt.params()}


def export(model, out_dir):
    """Write ``model`` (an :class:`IntegerModel`) to ``out_dir``; return the manifest dict."""
    layers, packed, offset = [], [], 0
    files = {}
    for name, layer in model.layers.items():
        bits = layer.w_format.bits
        per_code = 1 if bits <= 8 else 2
        codes = layer.weight_codes.ravel()
        packed.append(codes.astype("<u1" if per_code == 1 else "<u2").tobytes())
        bias_bits = signed_width(int(layer.bias.min(initial=0)), int(layer.bias.max(initial=0)))
        files[f"{name}.weights.mem"] = _hex_lines(codes, bits)
        files[f"{name}.bias.mem"] = _hex_lines(layer.bias, bias_bits)
        layers.append({
            "name": name, "op": layer.op, "geometry": layer.geometry,
            "shape": list(layer.weight_codes.shape),
            "activation": _operand(layer.a_format),
            "weight": {**_operand(layer.w_format), "mem": f"{name}.weights.mem", "offset_bytes": offset,
                       "bytes_per_code": per_code, "count": int(codes.size)},
            "bias": {"mem": f"{name}.bias.mem", "bits": bias_bits},
            "input_requant": {"multiplier": int(layer.input_requant.multiplier[0]),
                              "shift": int(layer.input_requant.shift[0])},
            "output_requant": {"multiplier": [int(v) for v in layer.output_requant.multiplier],
                               "shift": [int(v) for v in layer.output_requant.shift]},
            "pad_code": layer.pad_code,
        })
        offset += len(packed[-1])
    manifest = {"hwq_export": EXPORT_VERSION, "frac_bits": model.frac_bits, "guard_bits": GUARD_BITS,
                "mult_bits": MULT_BITS, "ops": model.ops, "layers": layers, "weights_bin": "weights.bin"}
    with staged_output(out_dir) as stage:
        for filename, text in files.items():
            write_atomic(stage / filename, text)
        (stage / "weights.bin").write_bytes(b"".join(packed))
        write_atomic(stage / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _read_mem(path, bits, count, signed):
    try:
        lines = Path(path).read_text().split()
    except OSError as exc:
        raise InputError(f"cannot read {path} ({exc.strerror}); re-export the model") from None
    if len(lines) != count:
        raise InputError(f"{path} holds {len(lines)} words, the manifest says {count}; re-export the model")
    values = np.array([int(word, 16) for word in lines], dtype=np.int64)
    if signed:
        values = np.where(values >= 1 << (bits - 1), values - (1 << bits), values)
    return values


def load(out_dir):
    """Rebuild the :class:`IntegerModel` written by :func:`export` in ``out_dir``."""
    out_dir = Path(out_dir)
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{out_dir / MANIFEST} is missing or not JSON ({exc}); export the model first") from None
    if manifest.get("hwq_export") != EXPORT_VERSION or manifest.get("guard_bits") != GUARD_BITS \
            or manifest.get("mult_bits") != MULT_BITS:
        raise InputError(f"{out_dir / MANIFEST} is not a version-{EXPORT_VERSION} hwq export of this hwq")
    layers = {}
    for entry in manifest["layers"]:
        a_params, w_params = dict(entry["activation"]), dict(entry["weight"])
        w_fmt = from_params(w_params.pop("format"), {k: v for k, v in w_params.items()
                                                     if k not in ("mem", "offset_bytes", "bytes_per_code", "count")})
        a_fmt = from_params(a_params.pop("format"), a_params)
        out_channels, features = entry["shape"]
        codes = _read_mem(out_dir / entry["weight"]["mem"], w_fmt.bits, out_channels * features, signed=False)
        bias = _read_mem(out_dir / entry["bias"]["mem"], entry["bias"]["bits"], out_channels, signed=True)
        layers[entry["name"]] = LayerProgram(
            op=entry["op"], geometry=entry["geometry"], a_format=a_fmt, w_format=w_fmt,
            weight_codes=codes.reshape(out_channels, features), bias=bias,
            input_requant=Requant(np.array([entry["input_requant"]["multiplier"]], dtype=np.int64),
                                  np.array([entry["input_requant"]["shift"]], dtype=np.int64)),
            output_requant=Requant(np.array(entry["output_requant"]["multiplier"], dtype=np.int64),
                                   np.array(entry["output_requant"]["shift"], dtype=np.int64)),
            pad_code=entry["pad_code"])
    return IntegerModel(manifest["ops"], layers, manifest["frac_bits"])
