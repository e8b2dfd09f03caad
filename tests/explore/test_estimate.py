"""The analytic cost model: a line of logic cells against PEs per group, and its leave-one-out error."""

import pytest

from hwq.explore.estimate import cost_model, group_of, leave_one_out, predict_lcs


def point(name, fmt, pes, lcs, mapping_used="fabric", bits=4):
    return {"name": name, "format": fmt, "w_bits": bits, "a_bits": bits, "pes": pes, "lcs": lcs,
            "mapping": "auto", "mapping_used": mapping_used}


def test_a_line_is_recovered_exactly():
    # 1000 + 150 per PE, by hand
    points = [point(f"fxp{n}", "fxp", n, 1000 + 150 * n) for n in (2, 4, 8)]
    line = cost_model(points)[("fxp", 4, 4, "fabric")]
    assert line["base"] == pytest.approx(1000) and line["per_pe"] == pytest.approx(150) and line["points"] == 3
    assert predict_lcs(cost_model(points), point("x", "fxp", 16, None)) == pytest.approx(3400)
    loo = leave_one_out(points)
    assert [r["error_pct"] for r in loo["rows"]] == [0, 0, 0] and loo["max_abs_error_pct"] == 0


def test_leave_one_out_error_by_hand():
    # 2 PEs: 1300, 4 PEs: 1600, 8 PEs: 2400. Without the 8-PE point the line is 1000 + 150 n:
    # 2200 predicted, -8.33 %. Without the 2-PE point: 800 + 200 n -> 1200, -7.69 %. Without
    # the 4-PE point: 933.3 + 183.3 n -> 1666.7 predicted for 1600, +4.17 %.
    points = [point("a", "ant", 2, 1300), point("b", "ant", 4, 1600), point("c", "ant", 8, 2400)]
    rows = {r["name"]: r for r in leave_one_out(points)["rows"]}
    assert rows["c"]["predicted"] == pytest.approx(2200) and rows["c"]["error_pct"] == pytest.approx(-8.33, abs=0.01)
    assert rows["a"]["predicted"] == pytest.approx(1200) and rows["a"]["error_pct"] == pytest.approx(-7.69, abs=0.01)
    assert rows["b"]["predicted"] == pytest.approx(1666.7) and rows["b"]["error_pct"] == pytest.approx(4.17)
    assert leave_one_out(points)["max_abs_error_pct"] == pytest.approx(8.33, abs=0.01)


def test_groups_are_kept_apart_and_need_two_sizes():
    points = [point("f2", "fxp", 2, 1300), point("f4", "fxp", 4, 1600),
              point("d2", "fxp", 2, 900, mapping_used="dsp"),                    # another group: one size only
              point("w2", "fxp", 2, 5000, bits=8), point("w2b", "fxp", 2, 5100, bits=8),   # same size twice
              {**point("nf", "fxp", 8, None)}]                                   # not synthesized: unused
    model = cost_model(points)
    assert set(model) == {("fxp", 4, 4, "fabric")}
    assert group_of(points[2]) == ("fxp", 4, 4, "dsp")
    assert predict_lcs(model, points[2]) is None
    assert leave_one_out(points) == {"rows": [], "mean_abs_error_pct": None, "max_abs_error_pct": None}
