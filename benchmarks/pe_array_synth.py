"""Cells of the PE array alone (:class:`hwq.accel.array.PEArray`) after ``synth_ice40``, split
into its edge decoders and its MAC cells, for the 8-bit and 4-bit formats of every kind.

Run with ``python benchmarks/pe_array_synth.py`` (``--shape 1x16``, ``--bits 8 4``, ``--only
fxp8 ausn4``, ``--mapping fabric dsp``, ``--decoders auto table``, ``--uniq-tables loadable``,
``--pnr`` to place and route each design on the UP5K and report its Fmax and logic cells; a few
minutes per design on 2 cores). Each design is the array between flip-flops behind four pins, as
:mod:`hwq.synth.harness` does for a single PE: every input is a bit of a shift register fed by
one pin, and one pin is the registered XOR tree of every output, so that nothing is optimized
away and every path is register to register. Yosys runs with ``-noflatten`` (hierarchy kept), so
``stat`` gives each module's own cells:

- *decoders*: the row and column decoders (every ``*decoder*`` module);
- *cells*: the ``R x C`` MAC cells (the array's ``cells`` module: products and accumulators);
- *array*: the array's own logic (the capture registers, their drain, the control; with AUSN
  weights also the registered weight codes and each row's negation);
- *harness*: the shift register and the XOR tree (not the array's).

Columns: SB_LUT4, SB_CARRY, flip-flops (every SB_DFF*), SB_RAM40_4K (EBR: yosys maps a
registered table of 8-bit codes to a ROM in block RAM) and SB_MAC16 of each part; ``-dsp`` is
given to ``synth_ice40`` for ``mapping="dsp"`` (the array instantiates its SB_MAC16 itself).
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from amaranth.back import verilog  # noqa: E402
from amaranth.hdl import Cat, Elaboratable, Module, Signal, Value  # noqa: E402

from hwq.accel.array import FieldDecoder, LoadableTableDecoder, PEArray, TableDecoder  # noqa: E402
from hwq.accel.requant import MAX_ACC_WIDTH  # noqa: E402
from hwq.formats import Ant, Ausn, Esb, FixedPoint, Uniq  # noqa: E402
from hwq.synth.nextpnr import DoesNotFit, parse_report, run_nextpnr  # noqa: E402
from hwq.synth.targets import get_target  # noqa: E402
from hwq.synth.yosys import CELL_KEYS, cell_counts, run_yosys  # noqa: E402
from hwq.tools import find_tools  # noqa: E402

#: XOR-tree fan-in per register stage (one LUT4)
XOR_FANIN = 4


def configs(bits):
    """``{name: (a_formats, w_formats)}`` of ``bits``-bit formats: each kind on both operands
    (activations unsigned where the kind has unsigned codes, weights signed); ANT with every type
    the width allows (chosen per layer at run time); AUSN weights with fixed-point activations
    (what a shift-add cell takes, as :class:`hwq.pe.ausn.AusnPE`)."""
    ant_types = ["int", "float", "flint"] + (["pot"] if bits <= 6 else [])
    return {
        f"fxp{bits}": ([FixedPoint(bits, signed=False)], [FixedPoint(bits, signed=True)]),
        f"ant{bits}": ([Ant(bits, type=t, signed=False) for t in ant_types],
                       [Ant(bits, type=t, signed=True) for t in ant_types]),
        f"esb{bits}": ([Esb(bits, signed=False)], [Esb(bits, signed=True)]),
        f"uniq{bits}": ([Uniq(bits)], [Uniq(bits)]),
        f"ausn{bits}": ([FixedPoint(bits, signed=False)], [Ausn(bits, signed=True)]),
    }


class Harness(Elaboratable):
    """``dut`` between a shift register (``sin``) and a registered XOR tree (``sout``)."""

    def __init__(self, dut):
        self.dut = dut
        self.sin = Signal()
        self.sout = Signal()

    def elaborate(self, platform):
        m = Module()
        dut = m.submodules.array = self.dut
        inputs = [dut.valid, dut.first, dut.last, dut.a, dut.w, dut.inside, dut.pad_code, dut.a_format,
                  dut.w_format, dut.drain.ready]
        inputs += [getattr(dut, name) for name in ("a_load", "w_load") if name in dut.signature.members]
        width = sum(len(Value.cast(p)) for p in inputs)
        sr = Signal(width)
        m.d.sync += sr.eq(Cat(self.sin, sr[:-1]))
        m.d.comb += Cat(*inputs).eq(sr)
        level = [Value.cast(Cat(dut.ready, dut.drain.valid, dut.drain.payload))[i]
                 for i in range(2 + len(Value.cast(dut.drain.payload)))]
        while len(level) > 1:
            nxt = []
            for i in range(0, len(level), XOR_FANIN):
                bit = Signal()
                m.d.sync += bit.eq(Cat(*level[i:i + XOR_FANIN]).xor())
                nxt.append(bit)
            level = nxt
        m.d.comb += self.sout.eq(level[0])
        return m


def split(stat):
    """Cell counts of the decoders, the MAC cells, the array's own logic and the harness."""
    parts = {part: dict.fromkeys(CELL_KEYS, 0) for part in ("decoders", "cells", "array", "harness")}
    for name, module in stat["modules"].items():
        name = name.lstrip("\\")
        if "decoder" in name:
            part = "decoders"
        elif name.endswith(".cells") or ".cells." in name:
            part = "cells"
        elif name.endswith(".array"):
            part = "array"
        else:
            part = "harness"
        for key, n in cell_counts(module.get("num_cells_by_type", {})).items():
            parts[part][key] += n
    return parts


def synthesize(array, work, tools, *, dsp, pnr):
    """``{"parts": split(...), "seconds": ..., "fmax_mhz": ...}`` of one array in ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    harness = Harness(array)
    (work / "top.v").write_text(verilog.convert(harness, name="top", ports=[harness.sin, harness.sout]))
    start = time.perf_counter()
    synth = run_yosys(tools["yosys"], ["top.v"], "top", work, device="u", dsp=dsp)
    result = {"parts": split(synth["stat"]), "seconds": time.perf_counter() - start, "fmax_mhz": None}
    if pnr:
        try:
            routed = run_nextpnr(tools["nextpnr-ice40"], synth["netlist"].name, get_target("up5k"), work,
                                 freq_mhz=48, seed=1)
        except DoesNotFit as exc:                       # a measured outcome: report it
            result["lc"] = "does not fit: " + ", ".join(f"{bel} {used}/{avail}"
                                                        for bel, (used, avail) in exc.overfull.items())
        else:
            report = parse_report(routed["report"])
            result["fmax_mhz"] = report["fmax_mhz"]
            result["lc"] = report["utilization"]["lc"]["used"]
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="1x16", help="ROWSxCOLS (default 1x16)")
    parser.add_argument("--bits", nargs="+", type=int, default=[8, 4], help="code widths (default 8 4)")
    parser.add_argument("--only", nargs="+", help="configurations to run, e.g. fxp8 ausn4")
    parser.add_argument("--mapping", nargs="+", default=["fabric"], help="PEArray mappings (fabric, dsp)")
    parser.add_argument("--decoders", nargs="+", default=["auto"], help="PEArray decoders (auto, table)")
    parser.add_argument("--uniq-tables", default="fixed", help="PEArray uniq_tables (fixed, loadable)")
    parser.add_argument("--acc-width", type=int, default=24,
                        help="accumulator width, at least the product width (default 24)")
    parser.add_argument("--pnr", action="store_true", help="place and route on the UP5K: Fmax")
    parser.add_argument("--keep", help="directory for the tools' files (default: a temporary one)")
    args = parser.parse_args(argv)
    rows, _, cols = args.shape.partition("x")
    rows, cols = int(rows), int(cols)
    tools = find_tools("yosys", *(["nextpnr-ice40"] if args.pnr else []))
    print(f"## PEArray {rows}x{cols} after synth_ice40 -noflatten (acc_width {args.acc_width} or the product "
          "width)\n")
    head = ("| config | mapping | decoders a / w | decoders LUT/CARRY/FF/EBR | cells LUT/CARRY/FF/MAC16 | array LUT/FF "
            "| total LUT | ")
    head += ("Fmax MHz | LC | " if args.pnr else "") + "yosys s |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.keep or tmp)
        for bits in args.bits:
            for name, (a_formats, w_formats) in configs(bits).items():
                if args.only and name not in args.only:
                    continue
                for mapping, decoders in [(m, d) for m in args.mapping for d in args.decoders]:
                    kwargs = {"mapping": mapping, "decoders": decoders, "uniq_tables": args.uniq_tables}
                    try:
                        # at least the product width (ANT's 8-bit flint x flint products need 28 bits)
                        probe = PEArray(rows=1, cols=1, a_formats=a_formats, w_formats=w_formats,
                                        acc_width=MAX_ACC_WIDTH)
                        probe._MustUse__silence = True          # never elaborated: no warning
                        array = PEArray(rows=rows, cols=cols, a_formats=a_formats, w_formats=w_formats,
                                        acc_width=max(args.acc_width, probe.product_width), **kwargs)
                    except Exception as exc:            # a mapping the formats do not allow
                        print(f"| {name} | {mapping} | {decoders} | not built: {exc} |")
                        continue
                    r = synthesize(array, base / f"{name}_{mapping}_{decoders}", tools, dsp=mapping == "dsp",
                                   pnr=args.pnr)
                    p = r["parts"]
                    d, c, a = p["decoders"], p["cells"], p["array"]
                    total = sum(p[k]["lut4"] for k in ("decoders", "cells", "array"))
                    kinds = {None: "shift-add", FieldDecoder: "field", TableDecoder: "table",
                             LoadableTableDecoder: "loadable"}
                    weights = f"{kinds[array.a_decoder]} / {kinds[array.w_decoder]}"
                    line = (f"| {name} | {mapping} | {weights} | {d['lut4']}/{d['carry']}/{d['ff']}/{d['ram']} "
                            f"| {c['lut4']}/{c['carry']}/{c['ff']}/{c['dsp']} | {a['lut4']}/{a['ff']} | {total} | ")
                    if args.pnr:
                        line += f"{r['fmax_mhz']:.1f} | {r['lc']} | " if r["fmax_mhz"] else f"- | {r['lc']} | "
                    print(line + f"{r['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
