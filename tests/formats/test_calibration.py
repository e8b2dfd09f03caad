"""hwq.formats.calibration: option declarations and the one check of calibrator options."""

import numpy as np
import pytest

from hwq.errors import InputError
from hwq.formats import CALIBRATORS, Calibration, calibrate_tensor
from hwq.formats.calibration import (ChoiceOption, IntOption, check_options, declare_options, declared_options)
from hwq.formats.fxp import FixedPoint


@pytest.fixture
def toy_calibrator():
    """A calibrator registered under a throw-away name, with one option of each kind."""
    seen = []

    @CALIBRATORS.register("zzcheck")
    @declare_options(IntOption("w", 2, lambda bits: 2 * bits, many=True, doc="a width"),
                     ChoiceOption("mode", ("a", "b"), doc="a mode"))
    def calibrate_zzcheck(x, bits, *, role, per_channel, options):
        options = check_options("zzcheck", options, bits)
        seen.append(options)
        return Calibration(FixedPoint(bits), np.ones(1), None, {})

    yield seen
    CALIBRATORS.unregister("zzcheck")


def test_a_declaration_is_read_back_and_checks_values(toy_calibrator):
    assert [o.name for o in declared_options("zzcheck")] == ["w", "mode"]
    assert check_options("zzcheck", {"w": np.int16(5), "mode": "b"}, 4) == {"w": 5, "mode": "b"}
    assert check_options("zzcheck", {"w": [8, 2, 8]}, 4) == {"w": (8, 2)}
    with pytest.raises(InputError, match=r"^zzcheck4 option 'w' must be an integer from 2 to 8, or a list of them, "
                                         r"not 9$"):
        check_options("zzcheck", {"w": 9}, 4)
    with pytest.raises(InputError, match=r"option 'mode' must be one of 'a', 'b', in the dict form, not \('a',\)"):
        check_options("zzcheck", {"mode": ("a",)}, 4)          # not ``many``: exactly one name
    with pytest.raises(InputError, match=r"^format spec 'x': zzcheck has no option 'v'; its options: "
                                         r"w \(an integer from 2 to 8, or a list of them: a width\); "
                                         r"mode \(one of 'a', 'b', in the dict form: a mode\)$"):
        check_options("zzcheck", {"v": 1}, 4, spec="x")


def test_calibrate_tensor_checks_options_before_the_calibrator_runs(toy_calibrator):
    with pytest.raises(InputError, match="option 'w' must be"):
        calibrate_tensor("zzcheck", np.ones(3), 4, role="weight", options={"w": 1.5})
    assert toy_calibrator == []
    calibrate_tensor("zzcheck", np.ones(3), 4, role="weight", options={"w": [3]})
    assert toy_calibrator == [{"w": 3}]


def test_a_calibrator_without_a_declaration_takes_no_options():
    @CALIBRATORS.register("zzplain")
    def calibrate_zzplain(x, bits, *, role, per_channel, options):
        return Calibration(FixedPoint(bits), np.ones(1), None, {})

    try:
        assert declared_options("zzplain") == ()
        assert check_options("zzplain", {}, 4) == {}
        with pytest.raises(InputError, match="zzplain has no option 'k'; its options: none"):
            calibrate_tensor("zzplain", np.ones(3), 4, role="weight", options={"k": 1})
    finally:
        CALIBRATORS.unregister("zzplain")


def test_the_old_allowed_list_form_is_a_programming_error():
    with pytest.raises(TypeError, match=r"declare a calibrator's options with @declare_options"):
        check_options("esb", {}, ("k",))


@pytest.mark.parametrize("bits", [0, True, 4.0, "4", None])
def test_check_options_needs_a_positive_integer_width(bits):
    with pytest.raises(InputError, match="esb bit width must be a positive integer"):
        check_options("esb", {"k": 2}, bits)


def test_options_must_be_a_dict():
    with pytest.raises(InputError, match="esb options must be a dict"):
        check_options("esb", [("k", 2)], 4)


@pytest.mark.parametrize("make, match", [
    (lambda: IntOption("K", 1, 2), "lowercase letters"),
    (lambda: IntOption("k2", 1, 2), "lowercase letters"),
    (lambda: IntOption("k", 1.0, 2), "a bound is an int or a callable"),
    (lambda: IntOption("k", 1, True), "a bound is an int or a callable"),
    (lambda: IntOption("k", 1, 2, many=1), "many must be True or False"),
    (lambda: IntOption("k", 1, 2, words=(1,)), "words must be strings"),
    (lambda: IntOption("k", 1, 2, doc=None), "doc must be a string"),
    (lambda: ChoiceOption("t", ()), "choices must be one or more strings"),
    (lambda: ChoiceOption("t", ("a", 1)), "choices must be one or more strings"),
    (lambda: declare_options(IntOption("k", 1, 2), ChoiceOption("k", ("a",))), "names option\\(s\\) 'k' twice"),
    (lambda: declare_options(("k", int)), "takes IntOption or ChoiceOption entries"),
])
def test_bad_declarations_are_refused(make, match):
    with pytest.raises(InputError, match=match):
        make()


def test_bounds_and_words():
    option = IntOption("k", 1, lambda bits: bits - 1, words="all")
    assert option.words == ("all",)
    assert option.bounds(4) == (1, 3)
    assert option.validate("all", 4) == "all"
    assert option.allowed(2) == "the integer 1, or 'all'"
    assert option.allowed(1) == "no integer (none fits at 1 bits), or 'all'"
    with pytest.raises(InputError, match="option 'k' must be the integer 1, or 'all', not 2"):
        option.validate(2, 2)
    assert ChoiceOption("t", "a").choices == ("a",)
