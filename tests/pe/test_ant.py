"""ANT processing elements: the unified PE in every mode and the fixed-type ones, on both
simulators; formal proofs of the decoder and of the contract per mode; manifests."""

from fractions import Fraction

import pytest
from amaranth.hdl import Mux

from hwq.errors import HwqError
from hwq.formats import Ant
from hwq.pe import AntPE, pe_variants, write_pe
from hwq.pe.ant import AntDecoder
from hwq.pe.formal import AntDecoderProperties, prove, prove_component
from hwq.sim.runner import run_bench
from tests.formats.test_ant import FORMATS_MD_4BIT


@pytest.fixture(scope="module")
def emitted(tmp_path_factory):
    out = tmp_path_factory.mktemp("ant")
    manifests = {}
    for pe in pe_variants("ant", 4, 4) + pe_variants("ant", 8, 8) + [AntPE(4, 4, pipeline=1)]:
        manifests[pe.module_name] = write_pe(pe, out)
    return out, manifests


def test_build_emits_unified_and_fixed_type_pes(emitted):
    _, manifests = emitted
    assert sorted(manifests) == ["ant_pe_a4_w4", "ant_pe_a4_w4_flint_x_flint", "ant_pe_a4_w4_p1",
                                 "ant_pe_a8_w8", "ant_pe_a8_w8_flint_x_flint"]
    assert list(manifests["ant_pe_a4_w4"]["modes"]) == [
        "int_int", "int_flint", "int_pot", "flint_int", "flint_flint", "flint_pot"]
    assert list(manifests["ant_pe_a8_w8"]["modes"]) == ["int_int", "int_flint", "flint_int", "flint_flint"]
    assert "modes" not in manifests["ant_pe_a4_w4_flint_x_flint"]
    assert "a_type" not in manifests["ant_pe_a4_w4_flint_x_flint"]["ports"]
    fmt = manifests["ant_pe_a4_w4"]["format"]
    assert (fmt["a_types"], fmt["w_types"]) == (["int", "flint"], ["int", "flint", "pot"])
    assert (fmt["a"]["type"], fmt["w"]["type"]) == ("int", "int")
    assert manifests["ant_pe_a4_w4"]["modes"]["flint_pot"]["format"]["w"]["type"] == "pot"


def test_mode_codebooks_are_the_formats_md_value_sets(emitted):
    _, manifests = emitted
    modes = manifests["ant_pe_a4_w4"]["modes"]
    for name, mode in modes.items():
        a_type_name, w_type_name = name.split("_")
        assert {Fraction(v) for v in mode["codebook"]["a"]} == FORMATS_MD_4BIT[a_type_name, False]
        assert {Fraction(v) for v in mode["codebook"]["w"]} == FORMATS_MD_4BIT[w_type_name, True]
        assert mode["set"] == {"a_type": ["int", "flint"].index(a_type_name),
                               "w_type": ["int", "flint", "pot"].index(w_type_name)}
        assert mode["acc_lsb_exp"] == 0


def test_accumulator_covers_the_widest_mode():
    pe = AntPE(4, 4)
    # int x PoT: 15 * 64 = 960 per product, and PoT weights make flint x PoT 64 * 64 = 4096
    assert pe.acc_width == len(bin(4096 * 1024)) - 2 + 1
    assert AntPE(4, 4, a_types=("int",), w_types=("int",)).acc_width == 18


@pytest.mark.parametrize("module, simulator", [
    ("ant_pe_a4_w4", "icarus"), ("ant_pe_a4_w4", "verilator"),
    ("ant_pe_a4_w4_flint_x_flint", "icarus"), ("ant_pe_a4_w4_p1", "verilator"),
    ("ant_pe_a8_w8", "verilator"), ("ant_pe_a8_w8", "icarus"),
    ("ant_pe_a8_w8_flint_x_flint", "icarus"),
])
def test_bench_every_mode_exhaustively(emitted, tmp_path, module, simulator):
    out, _ = emitted
    ntests, nfail = run_bench(out / f"{module}.json", simulator, tmp_path / "sim", random_cycles=3000)
    assert ntests == 4 and nfail == 0


@pytest.mark.parametrize("bits, signed", [(3, False), (4, False), (4, True), (6, True), (8, False), (8, True)])
def test_decoder_proof(tmp_path, bits, signed):
    types = ["int", "flint", "float"] + (["pot"] if bits - signed <= 5 else [])
    decoder = AntDecoder([Ant(bits, type=t, signed=signed) for t in types])
    result = prove_component(AntDecoderProperties(decoder), tmp_path, name="decoder", depth=1)
    assert result.passed, result.log[-2000:]


class OffByOneFlint(AntDecoder):
    """Mutant: flint's exponent misses the top bit's contribution (2z instead of 2z + 1)."""

    def _decode(self, m, fmt):
        sign, significand, shift = super()._decode(m, fmt)
        if fmt.type == "flint":
            shift = Mux(shift[0], shift - 1, shift)
        return sign, significand, shift


def test_decoder_proof_catches_a_wrong_flint_exponent(tmp_path):
    decoder = OffByOneFlint([Ant(4, type="int", signed=False), Ant(4, type="flint", signed=False)])
    result = prove_component(AntDecoderProperties(decoder), tmp_path, name="mutant", depth=1)
    assert result.status == "FAIL"


@pytest.mark.parametrize("pipeline", [0, 1])
def test_unified_pe_contract_in_every_mode(tmp_path, pipeline):
    pe_for_modes = AntPE(4, 4)
    for (ai, a), (wi, w) in [(x, y) for x in enumerate(pe_for_modes._a_formats) for y in enumerate(pe_for_modes._w_formats)]:
        result = prove(AntPE(4, 4, pipeline=pipeline), tmp_path / f"{a.type}_{w.type}", a_format=a, w_format=w,
                       fixed={"a_type": ai, "w_type": wi})
        assert result.passed, (a, w, result.log[-2000:])


def test_bad_ant_pe_parameters():
    with pytest.raises(HwqError, match="unknown ANT type 'posit' for weights"):
        AntPE(4, 4, w_types=("int", "posit"))
    with pytest.raises(HwqError, match="at most 5 magnitude bits"):
        AntPE(8, 8, w_types=("pot",))
    with pytest.raises(HwqError, match="between 3 and 8"):
        AntPE(2, 4)
    with pytest.raises(HwqError, match="twice"):
        AntPE(4, 4, a_types=("int", "int"))
