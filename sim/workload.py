"""A PE's operand stream taken from a real quantized layer: the workload of its power estimate.

:func:`layer_workload` runs an integer model (:mod:`hwq.integer`) on real input codes, takes one
convolution or linear layer's input activation codes (padded as the layer pads them) and its
weight codes, and lays out ``sums`` of the layer's dot products, chosen at seeded random among
every (image, output channel, output position), as a PE would compute them: one product per
cycle, ``clear`` on the first term of each sum, ``valid`` always high. It is what
``python -m hwq.sim MANIFEST --workload FILE.npz`` (:func:`hwq.sim.runner.run_bench`) streams
through the PE, checking every sum against the manifest's golden values, while the simulator
records the switching activity (SAIF) that :mod:`hwq.synth.activity` turns into power.

:func:`match_mode` picks the PE's run-time mode whose codebooks hold the layer's values (ANT's
types, for instance); a PE whose one codebook differs (a UNIQ PE's default table against the
layer's learned one) streams the layer's codes all the same, and says so.
"""

from fractions import Fraction

import numpy as np

from ..errors import InputError

__all__ = ["layer_workload", "match_mode", "save_workload", "load_workload", "WORKLOAD_KEYS"]

#: arrays of a workload file (``.npz``): one entry per cycle
WORKLOAD_KEYS = ("a", "w", "valid", "clear")


def layer_workload(imodel, codes, layer, *, sums=256, seed=0):
    """``sums`` dot products of ``layer`` on input ``codes``, as a PE's operand stream.

    Parameters
    ----------
    imodel : hwq.integer.IntegerModel
    codes : array_like of int
        ``(N,) + input shape`` input codes (``imodel.quantize_input(x)``), N >= 1.
    layer : str
        A convolution or linear layer of ``imodel`` (:attr:`~hwq.integer.IntegerModel.layers`).
    sums : int
        Dot products to take (at most the layer's outputs over all ``N`` inputs), chosen at
        random with ``seed`` without repeats, in the order drawn.
    seed : int

    Returns
    -------
    dict
        ``a``, ``w``, ``valid``, ``clear``: int64 arrays of ``sums * fan_in`` cycles (the codes,
        as the layer's formats encode them; ``valid`` all 1, ``clear`` 1 on each sum's first
        term); ``acc``: ``(sums,)`` the exact accumulators (no bias) of the integer model, in
        units of ``2**(a.lsb_exp + w.lsb_exp)``; ``layer``, ``fan_in``, ``a_format``,
        ``w_format`` (the layer's :class:`~hwq.formats.NumberFormat`).

    Raises
    ------
    InputError
        ``layer`` is not a layer of the model (the message lists them), ``sums`` is not a
        positive integer or exceeds the outputs available, or ``codes`` do not fit the model.
    """
    layers = imodel.layers
    if layer not in layers:
        raise InputError(f"layer {layer!r}: not a convolution or linear layer of the model; its layers: "
                         f"{', '.join(layers)}")
    op = layers[layer]
    if isinstance(sums, bool) or not isinstance(sums, (int, np.integer)) or sums < 1:
        raise InputError(f"sums must be a positive integer, not {sums!r}")
    trace = {}
    imodel.run_codes(codes, trace=trace)
    x = np.asarray(trace[op.inputs[0]], dtype=np.int64)
    acc = np.asarray(trace[f"{layer}.acc"], dtype=np.int64)
    w = op.weight_codes
    if op.kind == "linear":
        patches = x.reshape(len(x), 1, -1)                            # (N, L=1, K)
        weights, channel_group = w.reshape(w.shape[0], -1), np.zeros(w.shape[0], dtype=np.int64)
        groups, acc = 1, acc.reshape(len(x), -1, 1)                   # (N, O, L=1)
    else:
        from ..integer import ops
        if any(op.padding):
            x = ops.pad2d(x, op.padding, "constant", op.pad_code) if op.padding_mode == "zeros" \
                else ops.pad2d(x, op.padding, op.padding_mode)
        groups = op.groups
        c_group = x.shape[1] // groups
        per_group = [ops.im2col(x[:, g * c_group:(g + 1) * c_group], w.shape[2:], op.stride, op.dilation)
                     for g in range(groups)]
        patches = np.stack(per_group, axis=1)                         # (N, G, L, K)
        weights = w.reshape(w.shape[0], -1)
        channel_group = np.arange(w.shape[0]) // (w.shape[0] // groups)
        acc = acc.reshape(acc.shape[0], acc.shape[1], -1)             # (N, O, L)
    n, outputs, positions = acc.shape
    total = n * outputs * positions
    if sums > total:
        raise InputError(f"sums={sums}: layer {layer!r} has {total} outputs on these {n} input(s)")
    pick = np.random.default_rng(seed).choice(total, size=int(sums), replace=False)
    image, rest = np.divmod(pick, outputs * positions)
    channel, position = np.divmod(rest, positions)
    if op.kind == "linear":
        a_rows = patches[image, 0]
    else:
        a_rows = patches[image, channel_group[channel], position]
    w_rows = weights[channel]
    fan_in = w_rows.shape[1]
    clear = np.zeros((int(sums), fan_in), dtype=np.int64)
    clear[:, 0] = 1
    return {"a": a_rows.reshape(-1), "w": w_rows.reshape(-1), "valid": np.ones(sums * fan_in, dtype=np.int64),
            "clear": clear.reshape(-1), "acc": acc[image, channel, position], "layer": layer, "fan_in": fan_in,
            "a_format": op.a_format, "w_format": op.w_format}


def _proportional(codebook, values):
    """Whether the manifest ``codebook`` (strings of exact values) is ``values`` times one
    positive scale (the units of the two may differ by a power of two)."""
    if codebook is None or len(codebook) != len(values):
        return False
    book = [Fraction(v) for v in codebook]
    scale = next((b / v for b, v in zip(book, values) if v != 0), None)
    if scale is None:
        return all(b == 0 for b in book)
    return scale > 0 and all(b == scale * v for b, v in zip(book, values))


def match_mode(manifest, a_format, w_format):
    """The PE's run-time mode whose codebooks hold the layer's values.

    Parameters
    ----------
    manifest : dict
        The PE's manifest.
    a_format, w_format : hwq.formats.NumberFormat
        The layer's activation and weight formats.

    Returns
    -------
    (str or None, str or None)
        The mode's name (None for a PE without modes) and a note when no codebook matches and
        the PE's one mode streams the codes all the same (else None).

    Raises
    ------
    InputError
        The code widths differ from the PE's ports, or a PE with several modes has none that
        matches.
    """
    from .reference import manifest_modes

    ports = manifest["ports"]
    for role, fmt in (("a", a_format), ("w", w_format)):
        if fmt.bits != ports[role]["width"]:
            raise InputError(f"the layer's {role} codes have {fmt.bits} bits, PE {manifest['module']}'s {role} port "
                             f"{ports[role]['width']}")
    modes = manifest_modes(manifest)
    a_values = [Fraction(v) for v in a_format.int_values]
    w_values = [Fraction(v) for v in w_format.int_values]
    for mode in modes:
        if _proportional(mode.codebook.get("a"), a_values) and _proportional(mode.codebook.get("w"), w_values):
            return mode.name, None
    if len(modes) == 1:
        return modes[0].name, (f"the codebooks of {manifest['module']} are not the layer's values; its codes are "
                               "streamed as they are (the activity is the layer's, the sums the PE's own)")
    raise InputError(f"PE {manifest['module']}: none of its modes ({', '.join(m.name for m in modes)}) has the "
                     f"layer's values ({a_format} x {w_format})")


def save_workload(path, workload, mode=None):
    """Write a workload's :data:`WORKLOAD_KEYS` arrays (and ``mode``) as ``.npz``, atomically."""
    import io

    from ..fileio import write_atomic
    buffer = io.BytesIO()
    np.savez(buffer, **{key: np.asarray(workload[key], dtype=np.int64) for key in WORKLOAD_KEYS},
             mode=np.array("" if mode is None else str(mode)))
    write_atomic(path, buffer.getvalue())


def load_workload(path):
    """``({key: int64 array}, mode or None)`` of a workload file; :class:`InputError` naming the
    file when it is unreadable, lacks an array, or its arrays differ in length or are not 0/1
    where they must be."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: np.asarray(data[key]) for key in WORKLOAD_KEYS}
            mode = str(data["mode"]) if "mode" in data.files else ""
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"--workload {path}: not a workload file ({exc}); it needs arrays "
                         f"{', '.join(WORKLOAD_KEYS)}") from None
    lengths = {len(v) for v in arrays.values()}
    if len(lengths) != 1 or not lengths.pop():
        raise InputError(f"--workload {path}: its arrays {', '.join(WORKLOAD_KEYS)} must be non-empty and equally long")
    for key, values in arrays.items():
        if not np.issubdtype(values.dtype, np.integer):
            raise InputError(f"--workload {path}: array {key!r} must hold integers")
        if key in ("valid", "clear") and not np.isin(values, (0, 1)).all():
            raise InputError(f"--workload {path}: array {key!r} must hold 0 and 1 only")
    return {key: v.astype(np.int64) for key, v in arrays.items()}, (mode or None)
