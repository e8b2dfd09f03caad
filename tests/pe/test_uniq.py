"""UNIQ processing elements: fixed and loadable level tables on both simulators (every a x w pair),
the manifest's ``init`` load, formal proofs (the fixed PE's contract; the loadable table returns
the loaded word for every index), and mutants that must fail. Loadable tables from 5-bit indices
on live in block RAM (one more cycle of latency): the 8-bit one is simulated exhaustively here and,
in the slow suite, synthesized and its netlist simulated; the block-RAM structure is proved on
2- and 4-bit tables forced into block RAM, and on the 5-bit table in the slow suite (the 8-bit
table's proof, 256 load steps deep, is out of reach for fabric and block RAM alike)."""

import json
from fractions import Fraction

import numpy as np
import pytest

from hwq.errors import HwqError
from hwq.formats import Ant, FixedPoint, Uniq, acc_width
from hwq.formats.uniq import fit_levels
from hwq.pe import UniqPE, discard, pe_variants, write_pe
from hwq.pe.formal import prove, prove_component
from hwq.pe.manifest import to_verilog
from hwq.pe.uniq import LevelTable, UniqLoadProperties
from hwq.synth import synthesize
from hwq.sim.runner import BenchFailed, run_bench

# docs/formats.md's 4-bit Gaussian levels (units of sigma) at 6 fraction bits, rounded here by hand
GAUSSIAN4_WORDS = [-119, -84, -65, -50, -37, -26, -15, -5, 5, 15, 26, 37, 50, 65, 84, 119]


def small_table():
    """A 2-bit Laplace-fitted table in 6-bit words: a non-default table (module name suffix `_t<hash>`)."""
    x = np.random.default_rng(2).laplace(0.5, 1.0, 2000)
    return fit_levels(x, 2, distribution="laplace", level_bits=6).format


@pytest.fixture(scope="module")
def emitted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uniq")
    pes = pe_variants("uniq", 8, 4) + pe_variants("uniq", 4, 4) + [
        UniqPE.from_bits(4, 4, loadable=True, pipeline=1),
        UniqPE(FixedPoint(3, frac=1, signed=True), small_table(), loadable=True),
        UniqPE(FixedPoint(3, frac=1, signed=True), small_table()),
        UniqPE.from_bits(8, 8, loadable=True),                                      # block RAM
        UniqPE.from_bits(4, 4, loadable=True, table_storage="ebr", pipeline=1),
        UniqPE(FixedPoint(3, frac=1, signed=True), small_table(), loadable=True, table_storage="ebr"),
    ]
    manifests = {pe.module_name: write_pe(pe, out) for pe in pes}
    return out, manifests


def test_build_emits_fixed_and_loadable_pes(emitted):
    _, manifests = emitted
    defaults = {"uniq_pe_a4_w4", "uniq_pe_a4_w4_load", "uniq_pe_a4_w4_load_p1", "uniq_pe_a8_w4", "uniq_pe_a8_w4_load"}
    assert defaults < set(manifests)
    custom = sorted(n for n in set(manifests) - defaults if "_ebr" not in n and "_w8" not in n)
    assert len(custom) == 2 and all(n.startswith("uniq_pe_a3_w2") and "_as_af1_t" in n for n in custom)
    assert custom[0].replace("_as_af1_t", "_load_as_af1_t") == custom[1]      # one table, one hash
    assert custom[1].replace("_load_", "_load_ebr_") in manifests
    assert {"uniq_pe_a8_w8_load", "uniq_pe_a4_w4_load_ebr_p1"} < set(manifests)
    fixed, loadable = manifests["uniq_pe_a8_w4"], manifests["uniq_pe_a8_w4_load"]
    assert "init" not in fixed and "load_en" not in fixed["ports"]
    assert fixed["format"]["table"] == "fixed" and loadable["format"]["table"] == "loadable"
    assert loadable["ports"]["load_data"] == {"name": "load_data", "width": 8, "signed": True}
    assert loadable["ports"]["load_addr"] == {"name": "load_addr", "width": 4, "signed": False}
    assert loadable["ports"]["load_en"] == {"name": "load_en", "width": 1, "signed": False}
    assert loadable["format"]["table_storage"] == "fabric" and "table_storage" not in fixed["format"]


def test_eight_bit_loadable_table_is_in_block_ram_one_cycle_later(emitted):
    out, manifests = emitted
    m = manifests["uniq_pe_a8_w8_load"]
    assert m["format"]["table"] == "loadable" and m["format"]["table_storage"] == "ebr"
    assert m["latency"] == 2                                   # the EBR's registered read + the accumulator
    assert manifests["uniq_pe_a8_w4_load"]["latency"] == 1
    assert manifests["uniq_pe_a4_w4_load_p1"]["latency"] == 2
    assert manifests["uniq_pe_a4_w4_load_ebr_p1"]["latency"] == 3
    assert m["ports"]["load_addr"] == {"name": "load_addr", "width": 8, "signed": False}
    assert m["ports"]["load_data"] == {"name": "load_data", "width": 12, "signed": True}
    assert [e["load_addr"] for e in m["init"]] == list(range(256)) and all(e["load_en"] == 1 for e in m["init"])
    assert [e["load_data"] for e in m["init"]] == m["format"]["w"]["levels"]
    # a memory of 256 12-bit words with a registered read, no table registers
    verilog = (out / m["verilog"]).read_text()
    assert "reg [11:0] memory [255:0];" in verilog and "level_0" not in verilog
    assert "memory" not in (out / manifests["uniq_pe_a8_w4_load"]["verilog"]).read_text()


@pytest.mark.parametrize("bits, storage", [(2, "fabric"), (3, "fabric"), (4, "fabric"), (5, "ebr"), (6, "ebr"),
                                           (7, "ebr"), (8, "ebr")])
def test_table_storage_by_index_width(bits, storage):
    pe = UniqPE.from_bits(8, bits, loadable=True)
    latency = {"fabric": 1, "ebr": 2}[storage]
    assert (pe.table_storage, pe.latency, pe.module_name) == (storage, latency, f"uniq_pe_a8_w{bits}_load")
    piped = UniqPE.from_bits(8, bits, loadable=True, pipeline=2)
    assert piped.latency == latency + 2
    other = {"fabric": "ebr", "ebr": "fabric"}[storage]
    forced = UniqPE.from_bits(8, bits, loadable=True, table_storage=other)
    assert forced.module_name == f"uniq_pe_a8_w{bits}_load_{other}" and forced.table_storage == other
    assert forced.latency == 3 - latency
    fixed = UniqPE.from_bits(8, bits)
    assert fixed.table_storage == "fabric" and fixed.latency == 1
    discard(pe, piped, forced, fixed)


def test_manifest_codebooks_and_init_are_the_formats_md_table(emitted):
    _, manifests = emitted
    for name in ("uniq_pe_a8_w4", "uniq_pe_a8_w4_load"):
        m = manifests[name]
        assert m["format"]["a"] == {"format": "fxp", "bits": 8, "frac": 0, "signed": False, "rounding": "half_even"}
        assert m["format"]["w"] == {"bits": 4, "levels": GAUSSIAN4_WORDS, "level_bits": 8, "frac": 6}
        assert [Fraction(v) for v in m["codebook"]["w"]] == [Fraction(v, 64) for v in GAUSSIAN4_WORDS]
        assert [Fraction(v) for v in m["codebook"]["a"]] == list(range(256))
        assert m["acc_lsb_exp"] == -6
        assert m["ports"]["w"] == {"name": "w", "width": 4, "signed": False}
    assert manifests["uniq_pe_a8_w4_load"]["init"] == [
        {"load_en": 1, "load_addr": i, "load_data": v} for i, v in enumerate(GAUSSIAN4_WORDS)]
    small = next(m for n, m in manifests.items() if n.startswith("uniq_pe_a3_w2") and "load" in n)
    assert [e["load_data"] for e in small["init"]] == small["format"]["w"]["levels"]
    assert small["ports"]["a"]["signed"] is True and small["acc_lsb_exp"] == -1 - small["format"]["w"]["frac"]


def test_accumulator_widths():
    fixed = UniqPE.from_bits(8, 4)
    # 255 * 119 * 1024 terms < 2**25
    assert fixed.acc_width == acc_width(fixed.a_format, fixed.w_format, 1024) == 26
    # the loadable PE holds any table of 8-bit words: 255 * -128 * 1024 = -33423360 >= -2**25
    assert UniqPE.from_bits(8, 4, loadable=True).acc_width == 26
    assert UniqPE.from_bits(4, 4).acc_width == len(bin(15 * 119 * 1024)) - 2 + 1
    assert UniqPE.from_bits(4, 4, loadable=True).acc_width == len(bin(15 * 128 * 1024 - 1)) - 2 + 1


@pytest.fixture(scope="module")
def sim_root(tmp_path_factory):
    """One build root per module, so Verilator builds share their runtime objects."""
    return tmp_path_factory.mktemp("uniq_sim")


@pytest.mark.parametrize("module, simulator", [
    ("uniq_pe_a8_w4", "icarus"), ("uniq_pe_a8_w4", "verilator"),
    ("uniq_pe_a8_w4_load", "icarus"), ("uniq_pe_a8_w4_load", "verilator"),
    ("uniq_pe_a4_w4", "icarus"), ("uniq_pe_a4_w4_load", "icarus"),
    ("uniq_pe_a4_w4_load_p1", "verilator"), ("small_load", "icarus"), ("small_fixed", "icarus"),
    ("uniq_pe_a8_w8_load", "icarus"), ("uniq_pe_a8_w8_load", "verilator"),
    ("uniq_pe_a4_w4_load_ebr_p1", "icarus"), ("small_load_ebr", "icarus"),
])
def test_bench_exhaustively(emitted, sim_root, module, simulator):
    out, manifests = emitted
    if module.startswith("small"):
        kind = module[len("small_"):]
        module = next(n for n in manifests if n.startswith("uniq_pe_a3_w2")
                      and ("_load" in n) == kind.startswith("load") and ("_ebr" in n) == kind.endswith("ebr"))
    ntests, nfail = run_bench(out / f"{module}.json", simulator, sim_root / f"{module}_{simulator}",
                              random_cycles=3000)
    assert ntests == 4 and nfail == 0


@pytest.mark.parametrize("module", ["uniq_pe_a4_w4_load", "uniq_pe_a4_w4_load_ebr_p1"])
def test_bench_catches_a_load_that_drops_the_last_address(emitted, tmp_path, module):
    """The same Verilog, but the manifest's load skips the last entry (left at its power-up 0)."""
    out, manifests = emitted
    data = dict(manifests[module])
    data["init"] = data["init"][:-1]
    mutant = tmp_path / f"{module}.json"
    mutant.write_text(json.dumps(data))
    (tmp_path / data["verilog"]).write_text((out / data["verilog"]).read_text())
    with pytest.raises(BenchFailed, match=r"w=0xf \(119/64\)"):
        run_bench(mutant, "icarus", tmp_path / "sim", testcase="exhaustive")


# ---------------------------------------------------------------------- formal


@pytest.mark.parametrize("a_bits", [4, 8])
def test_fixed_table_contract_proof(tmp_path, a_bits):
    result = prove(UniqPE.from_bits(a_bits, 4), tmp_path)
    assert result.passed, result.log[-2000:]


@pytest.mark.parametrize("pipeline, storage", [(0, "fabric"), (1, "fabric"), (1, "ebr")])
def test_loaded_table_returns_the_loaded_word_for_every_index(tmp_path, pipeline, storage):
    wrapper = UniqLoadProperties(UniqPE.from_bits(4, 4, loadable=True, pipeline=pipeline, table_storage=storage))
    assert wrapper.depth() == 16 + {"fabric": 1, "ebr": 2}[storage] + pipeline + 3
    result = prove_component(wrapper, tmp_path, name="uniq_load", depth=wrapper.depth())
    assert result.passed, result.log[-2000:]


@pytest.mark.parametrize("storage", ["fabric", "ebr"])
def test_loaded_table_proof_of_a_non_default_table(tmp_path, storage):
    pe = UniqPE(FixedPoint(3, frac=1, signed=True), small_table(), loadable=True, table_storage=storage)
    wrapper = UniqLoadProperties(pe)
    result = prove_component(wrapper, tmp_path, name="uniq_load_small", depth=wrapper.depth())
    assert result.passed, result.log[-2000:]


@pytest.mark.slow
def test_loaded_table_proof_of_the_five_bit_block_ram_table(tmp_path):
    """The narrowest table "auto" puts in block RAM, 32 words, as built (4-bit activations;
    about 4 minutes, depth 39: the 8-bit table's depth of 262 is out of reach)."""
    pe = UniqPE.from_bits(4, 5, loadable=True)
    assert pe.table_storage == "ebr"
    wrapper = UniqLoadProperties(pe)
    result = prove_component(wrapper, tmp_path, name="uniq_load_w5", depth=wrapper.depth())
    assert result.passed, result.log[-2000:]


class OneWrongLevel(UniqPE):
    """Mutant: the fixed table holds level 5 one LSB too high."""

    def make_table(self):
        w = self.w_format
        levels = w.levels
        levels[5] += 1
        return LevelTable(Uniq(w.bits, levels=levels, level_bits=w.level_bits, frac=w.frac), loadable=False)


class DropsLastAddress(LevelTable):
    """Mutant: a write to the last address is lost (registers or block RAM)."""

    def write_enable(self):
        return self.load_en & (self.load_addr != (1 << self.format.bits) - 1)


class DropsLastAddressPE(UniqPE):
    def make_table(self):
        return DropsLastAddress(self.w_format, loadable=True, ebr=self.table_storage == "ebr")


class FabricLatencyEbr(UniqPE):
    """Mutant: the table in block RAM, but a, valid and clear not delayed beside its read (the
    fabric PE's structure around a registered table): each product pairs a with the previous w."""

    def elaborate(self, platform):
        return super(UniqPE, self).elaborate(platform)

    @property
    def latency(self):
        return 1 + self.pipeline


def test_contract_proof_catches_a_wrong_table_entry(tmp_path):
    pe = OneWrongLevel(FixedPoint(4, signed=False), Uniq.gaussian(4))
    result = prove(pe, tmp_path)
    assert result.status == "FAIL"


@pytest.mark.parametrize("storage", ["fabric", "ebr"])
def test_load_proof_catches_a_load_that_drops_the_last_address(tmp_path, storage):
    wrapper = UniqLoadProperties(DropsLastAddressPE(FixedPoint(4, signed=False), Uniq.gaussian(4), loadable=True,
                                                    table_storage=storage))
    result = prove_component(wrapper, tmp_path, name="drops_last", depth=wrapper.depth())
    assert result.status == "FAIL"


def test_load_proof_catches_a_block_ram_table_read_without_its_cycle(tmp_path):
    wrapper = UniqLoadProperties(FabricLatencyEbr(FixedPoint(4, signed=False), Uniq.gaussian(4), loadable=True,
                                                  table_storage="ebr"))
    result = prove_component(wrapper, tmp_path, name="no_read_cycle", depth=wrapper.depth())
    assert result.status == "FAIL"


# ---------------------------------------------------------------------- the rest


def test_verilog_is_deterministic():
    assert to_verilog(UniqPE.from_bits(8, 4, loadable=True)) == to_verilog(UniqPE.from_bits(8, 4, loadable=True))


@pytest.mark.parametrize("call, match", [
    (lambda: UniqPE(FixedPoint(8), Ant(4)), "takes uniq weights, not ant"),
    (lambda: UniqPE(Uniq(4), Uniq(4)), "takes fxp activations, not uniq"),
    (lambda: UniqPE(FixedPoint(8), Uniq(4), loadable=1), "loadable must be True or False"),
    (lambda: UniqPE.from_bits(8, 9), "between 2 and 8"),
    (lambda: UniqPE.from_bits(8, 4, level_bits=3), "level word length"),
    (lambda: UniqLoadProperties(UniqPE.from_bits(4, 4)), "wraps a loadable UniqPE"),
    (lambda: pe_variants("uniq", 4, 1), "between 2 and 8"),
    (lambda: UniqPE.from_bits(8, 8, loadable=True, table_storage="bram"), "table_storage must be one of"),
    (lambda: UniqPE.from_bits(8, 8, table_storage="ebr"), "is for a loadable table"),
    (lambda: UniqPE.from_bits(8, 8, table_storage="fabric"), "is for a loadable table"),
    (lambda: LevelTable(Uniq.gaussian(8), loadable=False, ebr=True), "a loadable table only"),
    (lambda: LevelTable(Uniq.gaussian(4), loadable=False).probe_entries(), "no entries to probe"),
])
def test_bad_uniq_pe_parameters(call, match):
    with pytest.raises(HwqError, match=match):
        call()


# ---------------------------------------------------------------------- synthesis (slow)


@pytest.mark.slow
def test_eight_bit_loadable_pe_fits_the_up5k_in_block_ram(tmp_path):
    """Issue 13: in registers the 8-bit loadable table needed 7330 of the 5280 logic cells. The
    synthesized netlist (SB_RAM40_4K and all, yosys's cell models) passes the same bench."""
    manifest = write_pe(UniqPE.from_bits(8, 8, loadable=True), tmp_path)
    path = tmp_path / f"{manifest['module']}.json"
    result = synthesize(path, tmp_path / "build")
    assert result["ram"] == 1 and result["utilization"]["ram"]["used"] == 1         # one SB_RAM40_4K
    assert result["lcs"] < 1000 and result["utilization"]["lc"]["available"] == 5280
    assert result["ff"] < 100 and result["fmax_mhz"] > 12
    [netlist] = (tmp_path / "build").glob("*/yosys/netlist.v")
    assert run_bench(path, "icarus", tmp_path / "sim", random_cycles=3000, netlist=netlist) == (4, 0)
