"""``python -m hwq.build``: emit every PE's Verilog and manifest, synthesize them, report.

The only module that wires the parts together (:mod:`hwq.pe` emits, :mod:`hwq.synth` measures).
Everything is checked before any work starts, including that the run has something to
synthesize (``--mapping dsp --target hx8k`` is refused: the HX8K has no SB_MAC16). Output is
staged in a temporary directory beside ``--out``, which it replaces as a whole only when every
step has succeeded (:func:`hwq.fileio.staged_output`): a failed run leaves ``--out`` as it was,
and a successful one leaves no file of an earlier run. An existing ``--out`` that hwq did not
write (no ``.hwq-output`` marker) and that holds more than ``README*`` / ``.git*`` files is
refused, since it would be replaced.

Synthesis results are cached (:mod:`hwq.synth.cache`, in ``$HWQ_CACHE_DIR``, else
``$XDG_CACHE_HOME/hwq`` or ``~/.cache/hwq``): a job synthesized before, with the same Verilog,
options, tools and hwq/synth source, runs no tool. ``--no-cache`` runs every job.
Progress (a bar on a terminal, one line per synthesis job) goes to stderr; ``--quiet`` prints
nothing but errors.

A PE too big for the part is a result, not a failure (:func:`hwq.synth.synthesize_all` returns it
with ``fits: false``): its row says ``does not fit: 7330 of 5280 logic cells`` (needed, and the
part's capacity from nextpnr), the other jobs keep going, the run exits 0 and writes the reports.

Examples
--------
``python -m hwq.build``
    every format's PEs at their default widths into ``rtl_out/``, synthesized for iCE40UP5K
    (fabric and DSP mapping), ``report.json`` + ``report.md``, and a summary table.
``python -m hwq.build --format fxp --a-bits 6 --w-bits 4 --no-synth --out build/fxp``
    one PE, Verilog and manifest only.
``python -m hwq.build --quiet --no-cache --out build/all``
    everything, every job synthesized afresh, no output but the files.
``python -m hwq.build --model exports/digits --array 1x16 --target up5k``
    the accelerator of an exported model (:mod:`hwq.accel_build`): Verilog, manifest, a bench
    run on the emitted Verilog, synthesis and the report, into ``accel_out/``.
"""

import sys
import time
from pathlib import Path

from .cli import ArgumentParser, positive_int, run_command
from .errors import InputError
from .fileio import check_output_dir, staged_output
from .tools import find_tools
from .pe import PE_CLASSES, pe_class, pe_variants, write_pe
from .synth.targets import TARGETS
from .accel_build import TARGETS as ACCEL_TARGETS

__all__ = ["build", "plan_pes", "main"]

MAPPINGS = ("fabric", "dsp", "both")


def _formats(names):
    if not names or "all" in names:
        return PE_CLASSES.names()
    return list(dict.fromkeys(names))


def plan_pes(formats=None, a_bits=None, w_bits=None, *, pipeline=0, max_terms=1024):
    """The PEs a build emits, built (and so checked) before any output is written.

    Parameters
    ----------
    formats : list of str or None
        Format names, or ``None`` / ``["all"]`` for every format with a PE.
    a_bits, w_bits : int or None
        Widths; ``None`` for both gives each PE's ``default_widths``, one given
        alone is used for both operands.
    pipeline, max_terms : int
        Passed to every PE.
    """
    if a_bits is None and w_bits is None:
        widths = None
    else:
        widths = [(a_bits if a_bits is not None else w_bits, w_bits if w_bits is not None else a_bits)]
    pes = []
    for fmt in _formats(formats):
        for a, w in widths or pe_class(fmt).default_widths:
            try:
                pes.extend(pe_variants(fmt, a, w, pipeline=pipeline, max_terms=max_terms))
            except InputError as exc:
                raise InputError(f"{fmt} PE with --a-bits {a} --w-bits {w} --pipeline {pipeline} "
                                 f"--max-terms {max_terms}: {exc}") from None
    names = [pe.module_name for pe in pes]
    return [pe for i, pe in enumerate(pes) if pe.module_name not in names[:i]]


def _target_mappings(targets, mapping):
    """``[(target name, dsp)]`` every PE is synthesized for; raises if a target would get none.

    ``both`` gives a target without DSP blocks its fabric mapping only; ``dsp`` on such a
    target would give it no job at all, so it is refused before any work.
    """
    from .synth import get_target
    pairs = []
    for name in targets:
        target = get_target(name)
        options = {"fabric": [False], "dsp": [True], "both": [False, True]}[mapping]
        usable = [dsp for dsp in options if target.has_dsp or not dsp]
        if not usable:
            raise InputError(f"--mapping {mapping} with --target {name}: {target.part} has no SB_MAC16 DSP, "
                             f"so there is nothing to synthesize for it; use --mapping fabric or both, "
                             f"or a target with DSPs (up5k)")
        pairs.extend((name, dsp) for dsp in usable)
    if not pairs:
        raise InputError("no synthesis target given; use --target up5k (or --no-synth)")
    return pairs


def _synth_jobs(manifests, pairs):
    from .synth import SynthJob
    return [SynthJob(path, target=name, dsp=dsp) for path in manifests for name, dsp in pairs]


def _quiet(*args, **kwargs):
    pass


def build(formats=None, a_bits=None, w_bits=None, *, out="rtl_out", targets=("up5k",), synth=True,
          mapping="both", jobs=None, pipeline=0, max_terms=1024, cache=True, quiet=False, log=print):
    """Emit PEs into ``out`` and, with ``synth``, synthesize them and write the reports.

    ``out`` is replaced as a whole on success (:func:`hwq.fileio.staged_output`). ``cache`` is
    the synthesis result cache: ``True`` (default) for ``$HWQ_CACHE_DIR`` / ``~/.cache/hwq``,
    a directory, or ``None`` for none (:func:`hwq.synth.synthesize_all`). Without ``quiet``
    synthesis shows a progress bar (on a terminal) and one line per finished job on stderr;
    ``quiet`` drops them, the table and every message (``log`` is not called).

    Returns
    -------
    dict
        ``manifests`` (list of dicts), ``results`` (synthesis result dicts, empty without
        ``synth``; a PE too big for the part has ``fits: false``) and ``timing`` (seconds per
        step: ``check_s``, ``emit_s``, ``synth_s``, ``report_s``, ``total_s``).

    Raises
    ------
    InputError
        Before any output is written, for every kind of bad input or missing tool.
    ToolError
        If a synthesis tool fails for another reason than a PE too big for the part (``out``
        is left as it was).
    """
    start = time.perf_counter()
    if quiet:
        log = _quiet
    pes = plan_pes(formats, a_bits, w_bits, pipeline=pipeline, max_terms=max_terms)
    if not pes:
        raise InputError("no PE to build; name a format with a PE (--format)")
    out = check_output_dir(out)
    if mapping not in MAPPINGS:
        raise InputError(f"unknown mapping {mapping!r}; choose one of {', '.join(MAPPINGS)}")
    if synth:
        from .synth import SYNTH_TOOLS
        from .synth.cache import as_cache
        pairs = _target_mappings(list(dict.fromkeys(targets)), mapping)
        find_tools(*SYNTH_TOOLS)
        cache = as_cache(cache)
    timing = {"check_s": time.perf_counter() - start}
    log(f"checked the inputs in {timing['check_s']:.1f} s: {len(pes)} PE(s)"
        + (f", {len(pes) * len(pairs)} synthesis job(s)" if synth else ""))
    results = []
    with staged_output(out) as stage:
        from tqdm import tqdm
        emit_start = time.perf_counter()
        manifests = [write_pe(pe, stage) for pe in tqdm(pes, desc="emit", unit="PE", file=sys.stderr,
                                                         disable=True if quiet else None, leave=False)]
        timing["emit_s"] = time.perf_counter() - emit_start
        log(f"emitted {len(manifests)} PE(s) in {timing['emit_s']:.1f} s")
        if synth:
            from .synth import format_table, synthesize_all, write_report
            synth_jobs = _synth_jobs([stage / f"{m['module']}.json" for m in manifests], pairs)
            synth_start = time.perf_counter()
            results = synthesize_all(synth_jobs, stage / "synth", jobs=jobs, cache=cache, progress=not quiet)
            timing["synth_s"] = time.perf_counter() - synth_start
            report_start = time.perf_counter()
            write_report(results, stage)
            timing["report_s"] = time.perf_counter() - report_start
            log(format_table(results, timing=True))
            hits = sum(r["cached"] for r in results)
            where = f"{hits} from the cache in {cache.directory}" if cache is not None else "cache off"
            log(f"synthesized {len(synth_jobs)} job(s) in {timing['synth_s']:.1f} s "
                f"({where}; {jobs or 'one per CPU'} in parallel); wrote the reports in {timing['report_s']:.1f} s")
            for r in results:
                if r.get("fits") is False:
                    log(f"{r['module']} on the {r['part']}: {r['notes'][0]} (a result, in the reports)")
            if cache is not None and cache.write_error:
                log(f"note: the synthesis cache was not updated: {cache.write_error}")
    timing["total_s"] = time.perf_counter() - start
    log(f"wrote {out}/ in {timing['total_s']:.1f} s")
    return {"manifests": manifests, "results": list(results), "timing": timing}


def _parser():
    parser = ArgumentParser(prog="hwq-build",
        description="Emit hwq processing elements as Verilog + manifests and synthesize them for iCE40.")
    parser.add_argument("--format", action="append", dest="formats", metavar="NAME",
                        help=f"format to build (repeatable, or 'all'; default all): {', '.join(PE_CLASSES)}")
    parser.add_argument("--a-bits", type=int, metavar="N", help="activation code width (default: per format)")
    parser.add_argument("--w-bits", type=int, metavar="N", help="weight code width (default: per format)")
    parser.add_argument("--out", metavar="DIR", help="output directory (default rtl_out, with --model accel_out)")
    parser.add_argument("--target", action="append", dest="targets", choices=sorted(set(TARGETS) | set(ACCEL_TARGETS)),
                        help="iCE40 part (repeatable for PEs; default up5k); with --model also 'sim', "
                             "an unconstrained simulation target (no fit check, no synthesis)")
    accel = parser.add_argument_group("accelerator of an exported model")
    accel.add_argument("--model", metavar="DIR", help="an export (hwq.integer.export): build its accelerator")
    accel.add_argument("--array", default="auto", metavar="RxC",
                       help="PE array: rows (output positions) x columns (output channels), or 'auto' "
                            "(default): the first of 1x16, 1x8, 1x4, 1x2 that fits the target")
    accel.add_argument("--verify", type=int, default=2, metavar="N",
                       help="inputs to run bit-exact on the cocotb bench (default 2; 0 skips it)")
    accel.add_argument("--images", metavar="FILE.npy", help="real input samples to verify on (default: random codes)")
    accel.add_argument("--netlist", type=int, default=0, metavar="N",
                       help="inputs to run on the synthesized netlist (post-synthesis simulation, bit-exact); on "
                            "Verilator their switching activity gives the power and energy estimate (default 0)")
    accel.add_argument("--sim", choices=("verilator", "icarus"), default="verilator",
                       help="simulator of the bench (default verilator)")
    parser.add_argument("--mapping", choices=MAPPINGS, default="both",
                        help="multipliers in fabric, in SB_MAC16 DSPs (up5k only), or both (default; with --model: "
                             "SB_MAC16 where the operands fit)")
    parser.add_argument("--pipeline", type=int, default=0, metavar="N",
                        help="product register stages (0-4, default 0; with --model: the PE array's)")
    parser.add_argument("--max-terms", type=positive_int, default=1024, metavar="K",
                        help="longest sum the accumulator holds without overflow (default 1024)")
    parser.add_argument("--no-synth", action="store_true", help="emit Verilog and manifests only")
    parser.add_argument("--jobs", type=positive_int, metavar="N", help="parallel synthesis jobs (default: CPUs)")
    parser.add_argument("--no-cache", action="store_true",
                        help="run every synthesis job, without the result cache ($HWQ_CACHE_DIR, else "
                             "$XDG_CACHE_HOME/hwq or ~/.cache/hwq)")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors (no progress, no table)")
    return parser


#: PE-only options: refused with --model (name, default)
_PE_OPTIONS = (("formats", "--format", None), ("a_bits", "--a-bits", None), ("w_bits", "--w-bits", None),
               ("max_terms", "--max-terms", 1024), ("jobs", "--jobs", None))
#: accelerator-only options (name, default)
_ACCEL_OPTIONS = (("array", "--array", "auto"), ("verify", "--verify", 2), ("images", "--images", None),
                  ("sim", "--sim", "verilator"), ("netlist", "--netlist", 0))


def _build_model(args):
    from .accel_build import build_accelerator
    given = [flag for name, flag, default in _PE_OPTIONS if getattr(args, name) != default]
    if given:
        raise InputError(f"{', '.join(given)} build single PEs; with --model the formats come from the export")
    targets = list(dict.fromkeys(args.targets or ["up5k"]))
    if len(targets) > 1:
        raise InputError(f"--model builds for one target; got {', '.join(targets)}")
    build_accelerator(args.model, array=args.array, target=targets[0], out=Path(args.out or "accel_out"),
                      synth=not args.no_synth, verify=args.verify, images=args.images, simulator=args.sim,
                      cache=None if args.no_cache else True, quiet=args.quiet, netlist=args.netlist,
                      mapping="auto" if args.mapping == "both" else args.mapping, pipeline=args.pipeline)


def main(argv=None):
    """Command-line entry point; returns the exit status (2 for bad input or a missing tool)."""
    def call():
        args = _parser().parse_args(argv)
        if args.model is not None:
            return _build_model(args)
        given = [flag for name, flag, default in _ACCEL_OPTIONS if getattr(args, name) != default]
        if given:
            raise InputError(f"{', '.join(given)}: for an exported model's accelerator, with --model DIR")
        build(args.formats, args.a_bits, args.w_bits, out=Path(args.out or "rtl_out"), targets=args.targets or ["up5k"],
              synth=not args.no_synth, mapping=args.mapping, jobs=args.jobs, pipeline=args.pipeline,
              max_terms=args.max_terms, cache=None if args.no_cache else True, quiet=args.quiet)
    return run_command("hwq-build", call)


if __name__ == "__main__":
    sys.exit(main())
