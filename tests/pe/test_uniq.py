"""UNIQ processing elements: fixed and loadable level tables on both simulators (every a x w pair),
the manifest's ``init`` load, formal proofs (the fixed PE's contract; the loadable table returns
the loaded word for every index), and mutants that must fail."""

import json
from fractions import Fraction

import numpy as np
import pytest

from hwq.errors import HwqError
from hwq.formats import Ant, FixedPoint, Uniq, acc_width
from hwq.formats.uniq import fit_levels
from hwq.pe import UniqPE, pe_variants, write_pe
from hwq.pe.formal import prove, prove_component
from hwq.pe.manifest import to_verilog
from hwq.pe.uniq import LevelTable, UniqLoadProperties
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
    ]
    manifests = {pe.module_name: write_pe(pe, out) for pe in pes}
    return out, manifests


def test_build_emits_fixed_and_loadable_pes(emitted):
    _, manifests = emitted
    defaults = {"uniq_pe_a4_w4", "uniq_pe_a4_w4_load", "uniq_pe_a4_w4_load_p1", "uniq_pe_a8_w4", "uniq_pe_a8_w4_load"}
    assert defaults < set(manifests)
    custom = sorted(set(manifests) - defaults)
    assert len(custom) == 2 and all(n.startswith("uniq_pe_a3_w2") and "_as_af1_t" in n for n in custom)
    assert custom[0].replace("_as_af1_t", "_load_as_af1_t") == custom[1]      # one table, one hash
    fixed, loadable = manifests["uniq_pe_a8_w4"], manifests["uniq_pe_a8_w4_load"]
    assert "init" not in fixed and "load_en" not in fixed["ports"]
    assert fixed["format"]["table"] == "fixed" and loadable["format"]["table"] == "loadable"
    assert loadable["ports"]["load_data"] == {"name": "load_data", "width": 8, "signed": True}
    assert loadable["ports"]["load_addr"] == {"name": "load_addr", "width": 4, "signed": False}
    assert loadable["ports"]["load_en"] == {"name": "load_en", "width": 1, "signed": False}


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
])
def test_bench_exhaustively(emitted, sim_root, module, simulator):
    out, manifests = emitted
    if module.startswith("small"):
        module = next(n for n in manifests if n.startswith("uniq_pe_a3_w2") and ("load" in n) == (module == "small_load"))
    ntests, nfail = run_bench(out / f"{module}.json", simulator, sim_root / f"{module}_{simulator}",
                              random_cycles=3000)
    assert ntests == 4 and nfail == 0


def test_bench_catches_a_load_that_drops_the_last_address(emitted, tmp_path):
    """The same Verilog, but the manifest's load skips the last entry (left at its power-up 0)."""
    out, manifests = emitted
    data = dict(manifests["uniq_pe_a4_w4_load"])
    data["init"] = data["init"][:-1]
    mutant = tmp_path / "uniq_pe_a4_w4_load.json"
    mutant.write_text(json.dumps(data))
    (tmp_path / data["verilog"]).write_text((out / data["verilog"]).read_text())
    with pytest.raises(BenchFailed, match=r"w=0xf \(119/64\)"):
        run_bench(mutant, "icarus", tmp_path / "sim", testcase="exhaustive")


# ---------------------------------------------------------------------- formal


@pytest.mark.parametrize("a_bits", [4, 8])
def test_fixed_table_contract_proof(tmp_path, a_bits):
    result = prove(UniqPE.from_bits(a_bits, 4), tmp_path)
    assert result.passed, result.log[-2000:]


@pytest.mark.parametrize("pipeline", [0, 1])
def test_loaded_table_returns_the_loaded_word_for_every_index(tmp_path, pipeline):
    wrapper = UniqLoadProperties(UniqPE.from_bits(4, 4, loadable=True, pipeline=pipeline))
    result = prove_component(wrapper, tmp_path, name="uniq_load", depth=wrapper.depth())
    assert result.passed, result.log[-2000:]


def test_loaded_table_proof_of_a_non_default_table(tmp_path):
    wrapper = UniqLoadProperties(UniqPE(FixedPoint(3, frac=1, signed=True), small_table(), loadable=True))
    result = prove_component(wrapper, tmp_path, name="uniq_load_small", depth=wrapper.depth())
    assert result.passed, result.log[-2000:]


class OneWrongLevel(UniqPE):
    """Mutant: the fixed table holds level 5 one LSB too high."""

    def make_table(self):
        w = self.w_format
        levels = w.levels
        levels[5] += 1
        return LevelTable(Uniq(w.bits, levels=levels, level_bits=w.level_bits, frac=w.frac), loadable=False)


class DropsLastAddress(LevelTable):
    """Mutant: a write to the last address is lost."""

    def elaborate_write(self, m):
        with m.If(self.load_en):
            with m.Switch(self.load_addr):
                for i, entry in enumerate(self.entries[:-1]):
                    with m.Case(i):
                        m.d.sync += entry.eq(self.load_data)


class DropsLastAddressPE(UniqPE):
    def make_table(self):
        return DropsLastAddress(self.w_format, loadable=True)


def test_contract_proof_catches_a_wrong_table_entry(tmp_path):
    pe = OneWrongLevel(FixedPoint(4, signed=False), Uniq.gaussian(4))
    result = prove(pe, tmp_path)
    assert result.status == "FAIL"


def test_load_proof_catches_a_load_that_drops_the_last_address(tmp_path):
    wrapper = UniqLoadProperties(DropsLastAddressPE(FixedPoint(4, signed=False), Uniq.gaussian(4), loadable=True))
    result = prove_component(wrapper, tmp_path, name="drops_last", depth=wrapper.depth())
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
])
def test_bad_uniq_pe_parameters(call, match):
    with pytest.raises(HwqError, match=match):
        call()
