"""Export of an integer model as the files hardware loads, and the loader that checks them.

``export(model, out_dir)`` replaces ``out_dir`` as a whole (:func:`hwq.fileio.staged_output`:
nothing of an earlier export survives, nothing is half-written) with:

``<layer>.weights.mem``
    The layer's weight codes for ``$readmemh``: one code per line, ``ceil(bits / 4)`` hex
    digits, in the order ``(out_channel, in_channel / groups, kh, kw)`` (linear: ``(out, in)``).
``<layer>.bias.mem``
    The bias per output channel in accumulator units, :data:`~hwq.integer.program.BIAS_BITS`
    bits, two's complement.
``model.json``
    The input sample's shape (``input_shape``, no batch dimension; version 3), the tensors
    (format, parameters, scale and the encoder's threshold table), the ops in
    execution order with their geometry, multipliers, shifts and clamp bounds, the limits the
    arithmetic was built for, and the SHA-256 and size of every other file.

:func:`load` verifies every checksum, count and shape before building anything and rebuilds an
:class:`~hwq.integer.model.IntegerModel` whose outputs equal the exported one's exactly. Numpy
only: the accelerator generator reads exports without torch.
"""

import hashlib
import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..fileio import staged_output, write_atomic
from ..formats import from_params
from .model import IntegerModel
from .program import BIAS_BITS, Add, AvgPool, Layer, MaxPool, Pad, Reshape, TensorFormat
from .requant import MAX_SHIFT, MULTIPLIER_BITS, NUMERATOR_BITS, Clamp, EncoderTable, Multiplier

__all__ = ["EXPORT_VERSION", "MANIFEST", "LIMITS", "export", "load"]

EXPORT_VERSION = 3
MANIFEST = "model.json"
#: the widths the arithmetic was built with; an export made with others is refused
LIMITS = {"multiplier_bits": MULTIPLIER_BITS, "max_shift": MAX_SHIFT, "bias_bits": BIAS_BITS,
          "numerator_bits": NUMERATOR_BITS}


def _hex_lines(values, bits):
    digits = -(-bits // 4)
    mask = (1 << bits) - 1
    return "".join(f"{int(v) & mask:0{digits}x}\n" for v in np.asarray(values).ravel())


def _clamp_json(op, table):
    low, high = op.clamp.values(table)
    return {"low": op.clamp.low, "high": op.clamp.high, "low_value": low, "high_value": high}


def _op_json(op, files):
    entry = {"name": op.name, "op": op.op, "inputs": list(op.inputs)}
    if isinstance(op, Layer):
        weights, bias = f"{op.name}.weights.mem", f"{op.name}.bias.mem"
        files[weights] = _hex_lines(op.weight_codes, op.w_format.bits)
        files[bias] = _hex_lines(op.bias, BIAS_BITS)
        entry.update(kind=op.kind, weight_format={"format": op.w_format.name, "params": op.w_format.params()},
                     weight_shape=list(op.weight_codes.shape), weights=weights, bias=bias,
                     multiplier=op.multiplier.multiplier.tolist(), shift=op.multiplier.shift.tolist(),
                     clamp=_clamp_json(op, op.table), acc_bits=op.acc_bits,
                     stride=list(op.stride), padding=list(op.padding), padding_mode=op.padding_mode,
                     dilation=list(op.dilation), groups=op.groups)
    elif isinstance(op, Add):
        entry.update(multipliers=list(op.multipliers), constant=op.constant, shift=op.shift,
                     clamp=_clamp_json(op, op.table))
    elif isinstance(op, AvgPool):
        entry.update(kernel=list(op.kernel), stride=list(op.stride), padding=list(op.padding),
                     ceil_mode=op.ceil_mode, keep_dims=op.keep_dims, multiplier=op.multiplier.multiplier.tolist(),
                     shift=op.multiplier.shift.tolist(), clamp=_clamp_json(op, op.table))
    elif isinstance(op, MaxPool):
        entry.update(kernel=list(op.kernel), stride=list(op.stride), padding=list(op.padding),
                     dilation=list(op.dilation), ceil_mode=op.ceil_mode)
    elif isinstance(op, Pad):
        entry.update(padding=list(op.padding), mode=op.mode)
    elif isinstance(op, Reshape):
        entry.update(shape=list(op.shape))
    else:
        raise InputError(f"cannot export op {op.name!r} of type {type(op).__name__}")
    return entry


def export(model, out_dir):
    """Write integer model ``model`` to ``out_dir`` (replaced as a whole); return the manifest.

    Raises
    ------
    InputError
        Before writing anything, if ``out_dir`` cannot be replaced (it holds files hwq did not
        write), the model has no ``input_shape`` (hardware is compiled for one), or an op
        cannot be exported.
    """
    if model.input_shape is None:
        raise InputError("the integer model has no input_shape; build it with hwq.quant.integer.integer_model "
                         "(which records the calibration input's shape) or pass input_shape= to IntegerModel")
    files = {}
    ops = [_op_json(op, files) for op in model.ops]
    tensors = {}
    for name, tensor in model.tensors.items():
        tensors[name] = {**tensor.to_json(), "table": EncoderTable.of(tensor.format).to_json()}
    manifest = {
        "hwq_export": EXPORT_VERSION, "limits": LIMITS, "input": model.input, "output": model.output,
        "input_shape": list(model.input_shape), "tensors": tensors, "ops": ops,
        "files": {name: {"sha256": hashlib.sha256(text.encode()).hexdigest(), "bytes": len(text.encode())}
                  for name, text in sorted(files.items())},
    }
    with staged_output(out_dir) as stage:
        for filename, text in files.items():
            write_atomic(stage / filename, text)
        write_atomic(stage / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


class _Reader:
    """Reads the files of one export, checking each against the manifest's checksums."""

    def __init__(self, out_dir, files):
        self.out_dir, self.files = Path(out_dir), files

    def mem(self, filename, bits, count, signed):
        path = self.out_dir / filename
        expected = self.files.get(filename)
        if expected is None:
            raise InputError(f"{self.out_dir / MANIFEST} names {filename} but gives no checksum for it")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {path} ({exc.strerror}); re-export the model") from None
        if hashlib.sha256(data).hexdigest() != expected["sha256"]:
            raise InputError(f"{path} does not match its checksum in {MANIFEST}: the file was changed or "
                             "corrupted; re-export the model")
        words = data.decode().split()
        if len(words) != count:
            raise InputError(f"{path} holds {len(words)} words, the manifest says {count}; re-export the model")
        try:
            values = np.array([int(word, 16) for word in words], dtype=np.int64)
        except ValueError:
            raise InputError(f"{path} holds a word that is not hexadecimal") from None
        if (values >> bits).any():
            raise InputError(f"{path} holds a word wider than {bits} bits")
        if signed:
            values = np.where(values >= 1 << (bits - 1), values - (1 << bits), values)
        return values


def _tensor(name, entry):
    try:
        fmt = from_params(entry["format"], entry["params"])
        scale = float.fromhex(entry["scale"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{MANIFEST}: tensor {name!r} has a bad format or scale ({exc})") from None
    if not (np.isfinite(scale) and scale > 0):
        raise InputError(f"{MANIFEST}: tensor {name!r} has a scale that is not finite and positive")
    return TensorFormat(fmt, scale)


def _clamp(entry, tensor):
    clamp = Clamp(int(entry["clamp"]["low"]), int(entry["clamp"]["high"]))
    grid = EncoderTable.of(tensor.format).grid
    if not 0 <= clamp.low <= clamp.high < len(grid):
        raise InputError(f"{MANIFEST}: op {entry['name']!r} has clamp indices outside its format's grid")
    return clamp


def _op(entry, tensors, reader):
    kind, name, inputs = entry["op"], entry["name"], list(entry["inputs"])
    first = tensors[inputs[0]]
    out = tensors[name]
    pair = lambda key: tuple(int(v) for v in entry[key])
    if kind == "layer":
        w_fmt = from_params(entry["weight_format"]["format"], entry["weight_format"]["params"])
        shape = tuple(int(v) for v in entry["weight_shape"])
        codes = reader.mem(entry["weights"], w_fmt.bits, int(np.prod(shape)), signed=False).reshape(shape)
        bias = reader.mem(entry["bias"], BIAS_BITS, shape[0], signed=True)
        multiplier = Multiplier(np.array(entry["multiplier"], dtype=np.int64), np.array(entry["shift"], dtype=np.int64))
        return Layer(name, inputs, entry["kind"], first.format, w_fmt, out.format, codes, bias, multiplier,
                     _clamp(entry, out), stride=pair("stride"), padding=pair("padding"),
                     padding_mode=entry["padding_mode"], dilation=pair("dilation"), groups=int(entry["groups"]))
    if kind == "add":
        return Add(name, inputs, [tensors[i].format for i in inputs], out.format, [int(m) for m in entry["multipliers"]],
                   int(entry["constant"]), int(entry["shift"]), _clamp(entry, out))
    if kind == "avgpool":
        multiplier = Multiplier(np.array(entry["multiplier"], dtype=np.int64), np.array(entry["shift"], dtype=np.int64))
        return AvgPool(name, inputs, first.format, out.format, pair("kernel"), pair("stride"), pair("padding"),
                       bool(entry["ceil_mode"]), multiplier, _clamp(entry, out), keep_dims=bool(entry["keep_dims"]))
    if kind == "maxpool":
        return MaxPool(name, inputs, first.format, pair("kernel"), pair("stride"), pair("padding"), pair("dilation"),
                       bool(entry["ceil_mode"]))
    if kind == "pad":
        return Pad(name, inputs, first.format, pair("padding"), entry["mode"])
    if kind == "reshape":
        return Reshape(name, inputs, pair("shape"))
    raise InputError(f"{MANIFEST}: op {name!r} has unknown kind {kind!r}")


def load(out_dir):
    """Rebuild the :class:`~hwq.integer.model.IntegerModel` that :func:`export` wrote to ``out_dir``.

    Raises
    ------
    InputError
        For a missing or unreadable manifest, another export version or other limits, a missing,
        edited or corrupt file (checksums), or counts and shapes that disagree -- naming the file.
    """
    out_dir = Path(out_dir)
    path = out_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"cannot read {path} ({exc.strerror}); export the model first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not JSON ({exc}); re-export the model") from None
    if not isinstance(manifest, dict) or manifest.get("hwq_export") != EXPORT_VERSION:
        raise InputError(f"{path} is not a version-{EXPORT_VERSION} hwq export; re-export it with this hwq")
    if manifest.get("limits") != LIMITS:
        raise InputError(f"{path} was made for limits {manifest.get('limits')}, this hwq uses {LIMITS}; re-export it")
    try:
        tensors = {name: _tensor(name, entry) for name, entry in manifest["tensors"].items()}
        reader = _Reader(out_dir, manifest["files"])
        ops = [_op(entry, tensors, reader) for entry in manifest["ops"]]
        return IntegerModel(manifest["input"], manifest["output"], tensors, ops,
                            input_shape=manifest["input_shape"])
    except InputError as exc:
        hint = "" if str(exc).endswith("re-export the model") else "; re-export the model"
        raise InputError(f"{path}: {exc}{hint}") from None
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise InputError(f"{path} is malformed ({type(exc).__name__}: {exc}); re-export the model") from None
