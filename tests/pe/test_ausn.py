"""AUSN shift-add PE: the shared cocotb bench exhaustively on both simulators, a netlist with no
multiplier even when yosys may use DSPs, formal proofs of the contract, and mutants that fail."""

import json
import re
from fractions import Fraction

import pytest
from amaranth.back import rtlil

from hwq.errors import HwqError
from hwq.formats import Ausn, FixedPoint
from hwq.pe import AusnPE, FixedPointPE, pe_variants, write_pe
from hwq.pe.formal import prove
from hwq.synth import SynthJob, synthesize_all
from hwq.sim.runner import BenchFailed, run_bench

def odd_pe():
    """A non-default PE: signed activations with a fraction, unsigned uniform weights (four
    contiguous one-bit terms: 0 ... 15) with an ``exp_base``."""
    return AusnPE(FixedPoint(4, signed=True, frac=2),
                  Ausn(4, fields=(1, 1, 1, 1), offsets=(3, 2, 1, 0), signed=False, exp_base=-1))


class NoTermEnable(AusnPE):
    """Mutant: a term whose field is 0 is not switched off (it adds ``x << (offset - 1)``)."""

    @staticmethod
    def term(x, field, offset):
        return ((x << offset) << field) >> 1


@pytest.fixture(scope="module")
def emitted(tmp_path_factory):
    out = tmp_path_factory.mktemp("ausn")
    manifests = {}
    for pe in pe_variants("ausn", 4, 4) + pe_variants("ausn", 8, 8) + [AusnPE.from_bits(4, 4, pipeline=1), odd_pe()]:
        manifests[pe.module_name] = write_pe(pe, out)
    write_pe(FixedPointPE.from_bits(8, 8), out)
    return out, manifests


def test_modules_and_manifests(emitted):
    _, manifests = emitted
    assert sorted(manifests) == ["ausn_pe_a4_w4", "ausn_pe_a4_w4_k1o3_k1o2_k1o1_k1o0_as_wu_af2_wem1",
                                 "ausn_pe_a4_w4_p1", "ausn_pe_a8_w8"]
    m4 = manifests["ausn_pe_a4_w4"]
    assert m4["format"] == {"name": "ausn",
                            "a": {"format": "fxp", "bits": 4, "frac": 0, "signed": False, "rounding": "half_even"},
                            "w": {"bits": 4, "fields": [2, 1], "offsets": [1, 0], "signed": True, "exp_base": 0}}
    # 0 1 2 3 4 5 8 9 and their negatives (sign bit on top), activations 0 ... 15
    assert [Fraction(v) for v in m4["codebook"]["w"]] == [0, 1, 2, 3, 4, 5, 8, 9, 0, -1, -2, -3, -4, -5, -8, -9]
    assert [Fraction(v) for v in m4["codebook"]["a"]] == list(range(16))
    # 15 * 9 * 1024 needs 18 bits and a sign
    assert m4["ports"]["acc"] == {"name": "acc", "width": 19, "signed": True}
    odd = manifests["ausn_pe_a4_w4_k1o3_k1o2_k1o1_k1o0_as_wu_af2_wem1"]
    assert odd["ports"]["a"]["signed"] is True and odd["acc_lsb_exp"] == -3
    assert [Fraction(v) for v in odd["codebook"]["w"]] == [Fraction(v, 2) for v in range(16)]


@pytest.fixture(scope="module")
def sim_root(tmp_path_factory):
    """One parent for every bench build, so Verilator builds share their runtime objects."""
    return tmp_path_factory.mktemp("sim")


@pytest.mark.parametrize("module, simulator", [
    ("ausn_pe_a4_w4", "icarus"), ("ausn_pe_a4_w4", "verilator"),
    ("ausn_pe_a8_w8", "verilator"), ("ausn_pe_a8_w8", "icarus"),
    ("ausn_pe_a4_w4_p1", "icarus"), ("ausn_pe_a4_w4_k1o3_k1o2_k1o1_k1o0_as_wu_af2_wem1", "icarus"),
])
def test_bench_exhaustive(emitted, sim_root, module, simulator):
    out, _ = emitted
    ntests, nfail = run_bench(out / f"{module}.json", simulator, sim_root / f"{module}-{simulator}",
                              random_cycles=3000)
    assert ntests == 4 and nfail == 0


def test_bench_catches_the_mutant(tmp_path):
    write_pe(NoTermEnable.from_bits(4, 4), tmp_path)
    with pytest.raises(BenchFailed, match="exhaustive"):
        run_bench(tmp_path / "ausn_pe_a4_w4.json", "icarus", tmp_path / "sim", random_cycles=300,
                  testcase="exhaustive")


def multiplies(verilog):
    """Whether Verilog text has a ``*`` operator (comments, attributes and ``@*`` aside)."""
    return "*" in re.sub(r"/\*.*?\*/|\(\*.*?\*\)|@\*", "", verilog, flags=re.S)


def test_no_multiplier_in_the_design(emitted):
    out, _ = emitted
    for module in ("ausn_pe_a4_w4", "ausn_pe_a8_w8"):
        assert not multiplies((out / f"{module}.v").read_text())
    assert multiplies((out / "fxp_pe_a8_w8.v").read_text())                  # the check can fail
    for pe in (AusnPE.from_bits(4, 4), AusnPE.from_bits(8, 8), odd_pe()):
        assert "$mul" not in rtlil.convert(pe, name="pe", emit_src=False)
    assert "$mul" in rtlil.convert(FixedPointPE.from_bits(8, 8), name="pe", emit_src=False)


@pytest.fixture(scope="module")
def dsp_synthesis(emitted, tmp_path_factory):
    """The 8-bit AUSN PE and the fxp one with ``synth_ice40 -dsp``, and the 4-bit AUSN PE."""
    out, _ = emitted
    build = tmp_path_factory.mktemp("synth")
    jobs = [SynthJob(out / f"{module}.json", dsp=True) for module in ("ausn_pe_a8_w8", "fxp_pe_a8_w8", "ausn_pe_a4_w4")]
    results = synthesize_all(jobs, build, jobs=2)
    return {r["module"]: r for r in results}, build


def netlist_cells(build, module):
    """Cell types of the flattened netlist yosys wrote for ``module`` (read as plain JSON)."""
    path, = build.glob(f"{module}-up5k-dsp-*/yosys/netlist.json")
    cells = {}
    for mod in json.loads(path.read_text())["modules"].values():
        for cell in mod["cells"].values():
            cells[cell["type"]] = cells.get(cell["type"], 0) + 1
    return cells


def test_no_dsp_even_when_allowed(dsp_synthesis):
    results, build = dsp_synthesis
    for module in ("ausn_pe_a8_w8", "ausn_pe_a4_w4"):
        assert results[module]["dsp"] == 0 and results[module]["total"]["dsp"] == 0
        cells = netlist_cells(build, module)
        assert "SB_MAC16" not in cells and cells["SB_CARRY"] > 0 and cells["SB_LUT4"] > 0
    assert results["fxp_pe_a8_w8"]["dsp"] == 1                                # the check can fail
    assert netlist_cells(build, "fxp_pe_a8_w8")["SB_MAC16"] == 1


@pytest.mark.parametrize("make", [lambda: AusnPE.from_bits(4, 4), lambda: AusnPE.from_bits(4, 4, pipeline=1),
                                  odd_pe, lambda: AusnPE.from_bits(3, 3, w_signed=False)],
                         ids=["a4w4", "a4w4_p1", "odd", "a3w3_wu"])
def test_contract_proof(tmp_path, make):
    result = prove(make(), tmp_path)
    assert result.passed, result.log[-2000:]


def test_proof_catches_the_mutant(tmp_path):
    result = prove(NoTermEnable.from_bits(4, 4), tmp_path)
    assert result.status == "FAIL" and result.trace is not None


def test_bad_pe_parameters():
    with pytest.raises(HwqError, match="takes fxp activations, not ausn"):
        AusnPE(Ausn(4), Ausn(4))
    with pytest.raises(HwqError, match="takes ausn weights, not fxp"):
        AusnPE(FixedPoint(4), FixedPoint(4))
    with pytest.raises(HwqError, match="between 3 and 8"):
        AusnPE.from_bits(4, 2)
    with pytest.raises(HwqError, match="add up to"):
        AusnPE.from_bits(4, 4, fields=(2, 2), offsets=(1, 0))
