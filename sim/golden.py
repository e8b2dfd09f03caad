"""What the bench checks in a manifest's values before it drives a cycle, in one place.

Both sides import this module: :func:`hwq.sim.runner.run_bench` calls :func:`bench_models` before
it builds anything (a bad value is an :class:`~hwq.errors.InputError`, exit status 2, one line
naming the manifest file and the key), and the cocotb bench (:mod:`hwq.sim.pe_bench`) calls the
same function inside the simulator, where it builds the models it tests against (and catches a
manifest that changed between the two). No cocotb here; :mod:`hwq.formats` is imported only when
a check needs it, so that the manifest-only reference model (:mod:`hwq.sim.reference`) stays
independent of the golden model it is checked against.

Functions
---------
check_golden(manifest, where)
    The manifest's ``format``, ``codebook`` and ``acc_lsb_exp`` (top level and every mode) against
    ``hwq.formats``; returns the codebooks the manifest leaves out and a one-line summary.
bench_models(manifest, where)
    :func:`check_golden`, then every mode's exact product model and extreme codes, checked against
    the port widths and the accumulator's range over ``max_terms`` terms.
"""

import re
from dataclasses import dataclass

from ..manifest import CODE_ROLES, key_error, parse_value
from .reference import ReferenceModelError, extreme_codes, manifest_modes

__all__ = ["check_golden", "bench_models", "BenchModels"]


def check_golden(manifest, where):
    """Cross-check a manifest (already read by :func:`hwq.manifest.read_manifest`) with ``hwq.formats``.

    Checks the top-level ``format``/``codebook``/``acc_lsb_exp`` and, for a PE with run-time
    modes, every mode's own ``format``/``codebook``/``acc_lsb_exp``: each operand's format is
    rebuilt with ``hwq.formats.from_params`` (so ``format.name`` must be a registered format and
    every parameter valid), its ``bits`` must equal the port's width, its codebook must equal the
    manifest's entry for entry, and ``acc_lsb_exp`` must be the golden product exponent. A
    ``format`` entry without ``a``/``w`` parameters (a hand-written PE) is not cross-checked.

    Parameters
    ----------
    manifest : dict
    where : str or path-like
        The manifest's file, for messages.

    Returns
    -------
    (dict, str)
        ``{role: golden codebook}`` for every top-level role whose codebook the manifest leaves
        out (codes wider than :data:`hwq.manifest.CODEBOOK_MAX_BITS`), and how the manifest was
        checked (for the log).

    Raises
    ------
    hwq.errors.InputError
        One line naming ``where`` and the key at fault (also when ``$HWQ_PLUGINS`` names a
        module that cannot be imported: the format registry imports the plug-ins first).
    """
    try:
        import hwq.formats as formats
    except ImportError:
        return {}, "hwq.formats not importable: manifest codebooks used unchecked"
    fmt = manifest["format"]
    widths = {role: manifest["ports"][role]["width"] for role in CODE_ROLES}
    if not all(isinstance(fmt.get(r), dict) and "bits" in fmt[r] for r in CODE_ROLES):
        return {}, f"format entry {fmt.get('name')!r} has no a/w parameters: not cross-checked"
    entries = [("format", "codebook", "acc_lsb_exp", fmt, manifest["codebook"], manifest["acc_lsb_exp"])]
    for name, mode in (manifest.get("modes") or {}).items():
        if "format" not in mode:
            raise key_error(where, f"modes.{name}.format",
                            "is missing (the top-level format has a/w parameters, so every mode needs its own)")
        entries.append((f"modes.{name}.format", f"modes.{name}.codebook", f"modes.{name}.acc_lsb_exp",
                        mode["format"], mode["codebook"], mode["acc_lsb_exp"]))
    values = {}
    for fmt_key, book_key, exp_key, entry, codebooks, acc_lsb_exp in entries:
        golden = {}
        for role in CODE_ROLES:
            params = entry.get(role)
            if not isinstance(params, dict):
                raise key_error(where, f"{fmt_key}.{role}",
                                "must be an object of format parameters {bits, ...} as the top-level format's")
            golden[role] = f = _golden_format(formats, fmt["name"], params, where, f"{fmt_key}.{role}")
            if f.bits != widths[role]:
                raise key_error(where, f"{fmt_key}.{role}.bits",
                                f"is {f.bits} but port {role} (ports.{role}.width) is {widths[role]} bits wide")
            book = f.codebook()
            listed = codebooks.get(role)
            if listed is None:
                if fmt_key == "format":
                    values[role] = book
                continue
            got = [parse_value(x) for x in listed]
            bad = next((i for i, (x, y) in enumerate(zip(got, book)) if x != y), None)
            if len(got) != len(book) or bad is not None:
                raise key_error(where, f"{book_key}.{role}",
                                f"disagrees with the golden model of {fmt_key}.{role} ({f}): "
                                + (f"{len(got)} entries, the golden model has {len(book)}" if bad is None else
                                      f"code {bad} is {got[bad]} in the manifest but {book[bad]} in the golden model"))
        expect = formats.product_lsb_exp(golden["a"], golden["w"])
        if acc_lsb_exp != expect:
            raise key_error(where, exp_key, f"is {acc_lsb_exp} but the golden model gives {expect} "
                                            f"(for {fmt_key}.a and {fmt_key}.w)")
    summary = (f"codebooks of {len(entries)} format entr{'y' if len(entries) == 1 else 'ies'} "
               "checked against hwq.formats")
    return values, summary


def _golden_format(formats, name, params, where, key):
    """``hwq.formats.from_params(name, params)``, its errors as one line naming the key at fault."""
    params = dict(params)
    name_key = f"{key}.format" if "format" in params else "format.name"
    name = params.pop("format", name)
    known = formats.FORMATS.names()        # discovers the formats, $HWQ_PLUGINS's included, first
    if not isinstance(name, str) or name not in known:
        raise key_error(where, name_key, f"names an unknown format {name!r} (known formats: {', '.join(known)})")
    if "bits" not in params:
        raise key_error(where, f"{key}.bits", "is missing")
    cls = formats.format_class(name)
    bits = params.pop("bits")
    lo, hi = cls.bit_range
    if isinstance(bits, bool) or not isinstance(bits, int) or not lo <= bits <= hi:
        raise key_error(where, f"{key}.bits", f"is {bits!r}, but format {name!r} takes {lo} to {hi} bits")
    try:
        return formats.get_format(name, bits, **params)
    except (ValueError, TypeError) as exc:        # InputError is a ValueError
        # name the parameter when the message names exactly one of them (quoted, or else as a word)
        named = [p for p in params if f"'{p}'" in str(exc)] \
            or [p for p in params if re.search(rf"\b{re.escape(p)}\b", str(exc))]
        raise key_error(where, f"{key}.{named[0]}" if len(named) == 1 else key,
                        f"is refused by format {name!r}: {exc}") from None


@dataclass
class BenchModels:
    """What :func:`bench_models` returns.

    Attributes
    ----------
    modes : list of hwq.sim.reference.Mode
    models : dict
        ``mode.name -> ProductModel``.
    extremes : dict
        ``mode.name -> (extreme a codes, extreme w codes, (max product pair, min product pair))``.
    golden : str
        How the codebooks were cross-checked (for the log).
    """

    modes: list
    models: dict
    extremes: dict
    golden: str


def bench_models(manifest, where):
    """Everything the bench tests against, built from a manifest and checked before any cycle.

    :func:`check_golden`; then for every mode its :class:`~hwq.sim.reference.ProductModel`
    (exact products in accumulator units; codebooks the manifest leaves out are taken from the
    golden model), whose codebooks must have ``2**width`` entries, and whose largest and smallest
    products times ``max_terms`` must fit the ``ports.acc.width``-bit accumulator (read as two's
    complement, as the bench reads it).

    Raises
    ------
    hwq.errors.InputError
        One line naming ``where`` and the key at fault.
    """
    values, golden = check_golden(manifest, where)
    ports = manifest["ports"]
    widths = {role: ports[role]["width"] for role in (*CODE_ROLES, "acc")}
    max_terms = manifest["max_terms"]
    lo, hi = -(1 << (widths["acc"] - 1)), (1 << (widths["acc"] - 1)) - 1
    models, extremes = {}, {}
    modes = manifest_modes(manifest)
    for mode in modes:
        prefix = "" if mode.name is None else f"modes.{mode.name}."
        fill = values if mode.name is None else {}
        for role in CODE_ROLES:
            if role not in mode.codebook and role not in fill:
                raise key_error(where, f"{prefix}codebook.{role}",
                                f"is missing and the golden model cannot supply it (format "
                                f"{manifest['format'].get('name')!r} has no a/w parameters)")
        try:
            model = mode.product_model(fill.get("a"), fill.get("w"))
        except ReferenceModelError as exc:
            raise key_error(where, f"{prefix}acc_lsb_exp", f"is {mode.acc_lsb_exp}, which the codebooks cannot "
                                                          f"meet: {exc}") from None
        for role in CODE_ROLES:
            n = len(model.a_values if role == "a" else model.w_values)
            if n != 1 << widths[role]:
                raise key_error(where, f"{prefix}codebook.{role}",
                                f"has {n} entries but port {role} is {widths[role]} bits wide")
        products = model.extreme_products()
        for a, w, p in products:
            if not lo <= max_terms * p <= hi:
                raise key_error(where, "ports.acc.width",
                                f"is {widths['acc']}, too narrow for max_terms ({max_terms}) terms of the "
                                f"product {p} (a code {a} x w code {w}, mode {mode.label}): the sum "
                                f"{max_terms * p} is outside {lo} .. {hi}")
        models[mode.name] = model
        extremes[mode.name] = (extreme_codes(model.a_values), extreme_codes(model.w_values), products)
    return BenchModels(modes, models, extremes, golden)
