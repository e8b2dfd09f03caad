"""ESB processing elements: every PE the build emits, exhaustively on both simulators; formal
proofs of every decoder and of the 4-bit PEs' contract; mutants that must fail; manifests."""

from fractions import Fraction

import pytest
from amaranth.hdl import Const, Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from hwq.errors import HwqError
from hwq.formats import Esb
from hwq.pe import EsbPE, pe_variants, write_pe
from hwq.pe.esb import EsbDecoder, EsbDecoderProperties
from hwq.pe.formal import prove, prove_component
from hwq.sim.runner import BenchFailed, run_bench
from tests.formats.test_esb import all_formats, reference_value

EMITTED = ["esb_pe_a4_w4_k1", "esb_pe_a4_w4_k2", "esb_pe_a4_w4_k3",
           "esb_pe_a8_w8_k4", "esb_pe_a8_w8_k5", "esb_pe_a8_w8_k6", "esb_pe_a8_w8_k7"]
MIDRISE = dict(a_format=Esb(4, k=4, signed=False, midrise=True), w_format=Esb(4, k=3, midrise=True))


class ShiftOffByOne(EsbDecoder):
    """Mutant: the largest binade's shift is ``c`` instead of ``c - 1`` (its values doubled)."""

    def fields(self):
        sign, significand, shift = super().fields()
        c = self.code[self.format.fraction_bits:self.format.magnitude_bits]
        return sign, significand, Mux(c == (1 << self.format.exponent_bits) - 1, c, shift)


class NoHiddenBit(EsbDecoder):
    """Mutant: normal numbers lose their hidden bit (``significand = f``)."""

    def fields(self):
        sign, significand, shift = super().fields()
        return sign, significand[:self.format.fraction_bits] if self.format.fraction_bits else Const(0, 1), shift


class MutantPE(EsbPE):
    """An ESB PE whose decoders are :class:`ShiftOffByOne`."""

    decoder_class = ShiftOffByOne

    def name_suffixes(self):
        return super().name_suffixes() + ["mutant"]


class NoHiddenBitPE(MutantPE):
    """An ESB PE whose decoders are :class:`NoHiddenBit`."""

    decoder_class = NoHiddenBit


@pytest.fixture(scope="module")
def emitted(tmp_path_factory):
    out = tmp_path_factory.mktemp("esb")
    manifests = {}
    pes = pe_variants("esb", 4, 4) + pe_variants("esb", 8, 8)
    pes += [EsbPE.from_bits(4, 4, w_k=2, pipeline=1), EsbPE(**MIDRISE),
            MutantPE(Esb(4, k=3, signed=False), Esb(4, k=2))]
    for pe in pes:
        manifests[pe.module_name] = write_pe(pe, out)
    return out, manifests


def test_build_emits_one_pe_per_weight_k(emitted):
    _, manifests = emitted
    assert sorted(m for m in manifests if m in EMITTED) == EMITTED
    assert sorted(set(manifests) - set(EMITTED)) == ["esb_pe_a4_w4_k2_mutant", "esb_pe_a4_w4_k2_p1",
                                                     "esb_pe_a4_w4_k3_amr_wmr"]
    for name in EMITTED:
        fmt = manifests[name]["format"]
        assert fmt["name"] == "esb" and "modes" not in manifests[name]
        w_k = int(name.rsplit("k", 1)[1])
        # the activation has the weight's exponent bits: one more significant bit, unsigned
        assert fmt["w"] == {"bits": fmt["w"]["bits"], "k": w_k, "signed": True, "midrise": False}
        assert fmt["a"] == {"bits": fmt["a"]["bits"], "k": w_k + 1, "signed": False, "midrise": False}
        assert manifests[name]["ports"]["a"]["signed"] is False


def test_codebooks_are_the_bit_string_reference(emitted):
    _, manifests = emitted
    for name, manifest in manifests.items():
        for role in ("a", "w"):
            p = manifest["format"][role]
            expected = [reference_value(c, p["bits"], p["k"], p["signed"], p["midrise"]) for c in range(1 << p["bits"])]
            assert [Fraction(v) for v in manifest["codebook"][role]] == expected, (name, role)


def test_accumulator_widths_follow_the_value_ranges(emitted):
    _, manifests = emitted
    # k = 1 at 4 bits: activation (e=3, m=1) up to 96 = 192 halves, PoT weights up to 64
    k1 = manifests["esb_pe_a4_w4_k1"]
    assert k1["acc_lsb_exp"] == -1 and k1["ports"]["acc"]["width"] == (192 * 64 * 1024).bit_length() + 1
    # the largest k is unsigned int x sign-magnitude int, as fxp's 8-bit PE
    k7 = manifests["esb_pe_a8_w8_k7"]
    assert k7["acc_lsb_exp"] == -13 and k7["ports"]["acc"]["width"] == (255 * 127 * 1024).bit_length() + 1


# every emitted PE exhaustively: the 4-bit ones on both simulators, the 8-bit ones (65536 pairs each)
# on one simulator each, most on Icarus, whose build is quick
@pytest.mark.parametrize("module, simulator", [(m, s) for m in EMITTED[:3] for s in ("verilator", "icarus")]
                         + [("esb_pe_a8_w8_k4", "icarus"), ("esb_pe_a8_w8_k5", "icarus"),
                            ("esb_pe_a8_w8_k6", "icarus"), ("esb_pe_a8_w8_k7", "verilator"),
                            ("esb_pe_a4_w4_k2_p1", "icarus"), ("esb_pe_a4_w4_k3_amr_wmr", "icarus")])
def test_bench_exhaustive(emitted, tmp_path, module, simulator):
    out, _ = emitted
    ntests, nfail = run_bench(out / f"{module}.json", simulator, tmp_path / "sim", random_cycles=3000)
    assert ntests == 4 and nfail == 0


def test_bench_catches_a_mutant(emitted, tmp_path):
    out, _ = emitted
    with pytest.raises(BenchFailed, match="exhaustive"):
        run_bench(out / "esb_pe_a4_w4_k2_mutant.json", "icarus", tmp_path / "sim", random_cycles=100,
                  testcase="exhaustive")


class AllDecoders(wiring.Component):
    """One proof for many decoders: each property wrapper gets its own free code input."""

    def __init__(self, properties):
        self._properties = properties
        super().__init__({f"code{i}": In(p.code.shape()) for i, p in enumerate(properties)})

    def elaborate(self, platform):
        m = Module()
        for i, p in enumerate(self._properties):
            m.submodules[f"p{i}"] = p
            m.d.comb += p.code.eq(getattr(self, f"code{i}"))
        return m


def test_every_decoder_is_the_golden_decompose(tmp_path):
    formats = all_formats()
    assert len(formats) == 56
    wrapper = AllDecoders([EsbDecoderProperties(EsbDecoder(fmt)) for fmt in formats])
    result = prove_component(wrapper, tmp_path, name="decoders", depth=1)
    assert result.passed, result.log[-2000:]


@pytest.mark.parametrize("mutant", [ShiftOffByOne, NoHiddenBit])
def test_decoder_proof_catches_mutants(tmp_path, mutant):
    result = prove_component(EsbDecoderProperties(mutant(Esb(5, k=3))), tmp_path, name="mutant", depth=1)
    assert result.status == "FAIL"


# the 4-bit emitted PEs, a pipelined one, mid-rise operands, signed activations of another width;
# 8-bit contract proofs (a 256 x 256 golden product table) do not finish in minutes: the 8-bit PEs
# rest on the exhaustive bench and the decoder proofs
@pytest.mark.parametrize("make", [
    lambda: EsbPE.from_bits(4, 4, w_k=1), lambda: EsbPE.from_bits(4, 4, w_k=2), lambda: EsbPE.from_bits(4, 4, w_k=3),
    lambda: EsbPE.from_bits(4, 4, w_k=2, pipeline=1), lambda: EsbPE(**MIDRISE),
    lambda: EsbPE.from_bits(3, 5, w_k=1, a_signed=True),
], ids=["k1", "k2", "k3", "k2_p1", "midrise", "a3s_w5_k1"])
def test_contract_proof(tmp_path, make):
    result = prove(make(), tmp_path)
    assert result.passed, result.log[-2000:]


def test_contract_proof_catches_a_mutant(tmp_path):
    result = prove(NoHiddenBitPE(Esb(4, k=3, signed=False), Esb(4, k=2)), tmp_path)
    assert result.status == "FAIL"


def test_bad_esb_pe_parameters():
    with pytest.raises(HwqError, match="between 3 and 8"):
        EsbPE.from_bits(2, 4)
    with pytest.raises(HwqError, match="k at 4 bits must be between 1 and 3"):
        EsbPE.from_bits(4, 4, w_k=4)
    with pytest.raises(HwqError, match="activation format must be an Esb format, not FixedPoint"):
        from hwq.formats import FixedPoint
        EsbPE(FixedPoint(4), Esb(4))
    with pytest.raises(HwqError, match="Esb format"):
        EsbDecoder(Esb)
    with pytest.raises(HwqError, match="wraps an EsbDecoder"):
        EsbDecoderProperties(object())


def test_significand_multiplier_cost_falls_with_k(tmp_path):
    """The paper's claim as a curve: the k_a x k_w multiplier's own LUT4 falls as k falls."""
    from hwq.synth import SynthJob, report_markdown, synthesize_all
    pes = pe_variants("esb", 4, 4)
    assert [pe.w_format.k for pe in pes] == [1, 2, 3]
    for pe in pes:
        write_pe(pe, tmp_path)
    results = synthesize_all([SynthJob(tmp_path / f"{pe.module_name}.json") for pe in pes], tmp_path / "synth")
    multiplier = [r["submodules"]["multiplier"]["lut4"] for r in results]
    assert multiplier[0] < multiplier[1] < multiplier[2], multiplier
    assert set(results[0]["submodules"]) == {"a_decoder", "w_decoder", "multiplier"}
    for r in results:
        assert sum(part["lut4"] for part in r["submodules"].values()) <= r["lut4"]
    assert f"| esb_pe_a4_w4_k1 | up5k | multiplier | {multiplier[0]} |" in report_markdown(results)
