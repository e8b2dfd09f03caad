"""hwq.quant.spec: format specs from strings and dicts, checked when they are read."""

import numpy as np
import pytest

from hwq.errors import HwqError, InputError
from hwq.formats import FORMATS
from hwq.formats.calibration import ChoiceOption, IntOption, declared_options
from hwq.quant import FormatSpec, calibrate, parse_spec


def test_spec_parsing():
    assert parse_spec("ant4") == parse_spec({"format": "ant", "bits": 4})
    assert str(parse_spec("FXP8")) == "fxp8"
    assert parse_spec("esb4k2").option("k") == 2
    with pytest.raises(HwqError, match="cannot read format spec"):
        parse_spec("4ant")
    with pytest.raises(HwqError, match="unknown format 'posit'"):
        parse_spec("posit8")


# ---------------------------------------------------------------------- what each format declares


def test_each_format_declares_its_options_in_its_calibrator():
    assert [o.name for o in declared_options("esb")] == ["k"]
    assert [o.name for o in declared_options("ant")] == ["types"]
    assert [o.name for o in declared_options("uniq")] == ["lloyd"]
    assert declared_options("fxp") == () and declared_options("ausn") == ()
    assert declared_options("nosuchformat") == ()


@pytest.mark.parametrize("spec, option, value", [
    ("esb3k1", "k", 1), ("esb3k3", "k", 3), ("esb4k2", "k", 2), ("esb8k8", "k", 8), ("esb8k1", "k", 1),
    ({"format": "esb", "bits": 4, "k": np.int64(3)}, "k", 3),
    ({"format": "esb", "bits": 4, "k": [2, 3]}, "k", (2, 3)),
    ({"format": "esb", "bits": 4, "k": (3, 2, 3)}, "k", (3, 2)),          # repeats dropped, order kept
    ({"format": "esb", "bits": 4, "k": [2]}, "k", 2),                      # a one-element list is its element
    ({"format": "esb", "bits": 4, "k": range(1, 4)}, "k", (1, 2, 3)),
    ({"format": "esb", "bits": 4, "k": "all"}, "k", "all"),
    ({"format": "ant", "bits": 4, "types": ["int", "pot"]}, "types", ("int", "pot")),
    ({"format": "ant", "bits": 4, "types": ("flint", "float", "flint")}, "types", ("flint", "float")),
    ({"format": "ant", "bits": 4, "types": "int"}, "types", ("int",)),   # a lone name is a one-name list
    ("uniq4lloyd0", "lloyd", 0), ("uniq4lloyd1", "lloyd", 1), ("UNIQ2LLOYD1", "lloyd", 1),
    ({"format": "uniq", "bits": 4, "lloyd": 1}, "lloyd", 1),
])
def test_valid_options_are_taken_in_canonical_form(spec, option, value):
    parsed = parse_spec(spec)
    assert parsed.option(option) == value
    assert type(parsed.option(option)) is type(value)
    assert parse_spec(parsed) == parsed


@pytest.mark.parametrize("spec", ["fxp8", "fxp2", "fxp16", "ant3", "ant8", "esb3", "esb8", "ausn3", "ausn8",
                                  "uniq2", "uniq8", {"format": "fxp", "bits": np.int32(8)}])
def test_formats_without_options_and_every_width_in_range_are_taken(spec):
    parsed = parse_spec(spec)
    assert parsed.options == () and isinstance(parsed.bits, int) and type(parsed.bits) is int


def test_every_declared_integer_option_is_taken_at_its_bounds_and_refused_beyond():
    """Generic over every format's declaration, so a new format's options are covered too."""
    for name in FORMATS:
        low_bits, high_bits = FORMATS[name].bit_range
        for option in declared_options(name):
            if not isinstance(option, IntOption):
                continue
            for bits in range(low_bits, high_bits + 1):
                low, high = option.bounds(bits)
                assert parse_spec(f"{name}{bits}{option.name}{low}").option(option.name) == low
                assert parse_spec(f"{name}{bits}{option.name}{high}").option(option.name) == high
                with pytest.raises(InputError, match=f"option '{option.name}' must be an integer from {low}"):
                    parse_spec(f"{name}{bits}{option.name}{high + 1}")
                with pytest.raises(InputError, match=f"option '{option.name}' must be an integer from {low}"):
                    parse_spec({"format": name, "bits": bits, option.name: low - 1})


# ---------------------------------------------------------------------- mistakes, at parse time


@pytest.mark.parametrize("spec, match", [
    ("ant4q3", r"format spec 'ant4q3': ant has no option 'q'; its options: types \(a list of one or more of "
               r"'int', 'pot', 'float', 'flint', in the dict form"),
    ("ant4kinds1", r"format spec 'ant4kinds1': ant has no option 'kinds'; its options: types"),
    ("fxp8k2", r"format spec 'fxp8k2': fxp has no option 'k'; its options: none"),
    ("ausn4k2", r"ausn has no option 'k'; its options: none"),
    ("uniq4k2", r"uniq has no option 'k'; its options: lloyd \(an integer from 0 to 1"),
    ("esb4q1", r"esb has no option 'q'; its options: k \(an integer from 1 to 4, or a list of them, or 'all'"),
    ({"format": "esb", "bits": 4, "kk": 2}, r"esb has no option 'kk' \(did you mean 'k'\?\)"),
    ({"format": "esb", "bits": 4, "K": 2}, r"esb has no option 'K'"),
    ({"format": "esb", "bits": 4, 3: 2}, r"esb has no option 3"),
    ({"format": "ant", "bits": 4, "kinds": ["int"]}, r"ant has no option 'kinds'"),
])
def test_unknown_options_are_refused_by_name(spec, match):
    with pytest.raises(InputError, match=match):
        parse_spec(spec)


_K = r"option 'k' must be an integer from 1 to 4, or a list of them, or 'all', not "
_TYPES = r"option 'types' must be a list of one or more of 'int', 'pot', 'float', 'flint', in the dict form, not "
_LLOYD = r"option 'lloyd' must be an integer from 0 to 1, not "


@pytest.mark.parametrize("spec, match", [
    # out of range
    ("esb4k0", r"format spec 'esb4k0': " + _K + "0"),
    ("esb4k5", r"format spec 'esb4k5': " + _K + "5"),
    ("uniq4lloyd2", _LLOYD + "2"),
    ({"format": "esb", "bits": 4, "k": -1}, _K + "-1"),
    ({"format": "uniq", "bits": 4, "lloyd": -1}, _LLOYD + "-1"),
    # bool, float, str, None, containers
    ({"format": "esb", "bits": 4, "k": True}, _K + "True"),
    ({"format": "uniq", "bits": 4, "lloyd": False}, _LLOYD + "False"),
    ({"format": "esb", "bits": 4, "k": 2.0}, _K + "2.0"),
    ({"format": "uniq", "bits": 4, "lloyd": 1.0}, _LLOYD + "1.0"),
    ({"format": "esb", "bits": 4, "k": "2"}, _K + "'2'"),
    ({"format": "esb", "bits": 4, "k": "some"}, _K + "'some'"),
    ({"format": "esb", "bits": 4, "k": None}, _K + "None"),
    ({"format": "esb", "bits": 4, "k": []}, _K + r"\[\]"),
    ({"format": "esb", "bits": 4, "k": [2, 2.5]}, _K + r"\[2, 2.5\]"),
    ({"format": "esb", "bits": 4, "k": [2, True]}, _K + r"\[2, True\]"),
    ({"format": "esb", "bits": 4, "k": [2, 9]}, _K + r"\[2, 9\]"),
    ({"format": "esb", "bits": 4, "k": {2, 3}}, _K + r"\{2, 3\}"),       # a set has no order
    ({"format": "uniq", "bits": 4, "lloyd": [0, 1]}, _LLOYD + r"\[0, 1\]"),  # one value only
    ({"format": "uniq", "bits": 4, "lloyd": "1"}, _LLOYD + "'1'"),
    # ANT's types: names only, and only in the dict form
    ("ant4types1", r"format spec 'ant4types1': " + _TYPES + "1"),
    ({"format": "ant", "bits": 4, "types": 1}, _TYPES + "1"),
    ({"format": "ant", "bits": 4, "types": True}, _TYPES + "True"),
    ({"format": "ant", "bits": 4, "types": 1.5}, _TYPES + "1.5"),
    ({"format": "ant", "bits": 4, "types": "posit"}, _TYPES + "'posit'"),
    ({"format": "ant", "bits": 4, "types": ["int", "posit"]}, _TYPES + r"\['int', 'posit'\]"),
    ({"format": "ant", "bits": 4, "types": ["int", 1]}, _TYPES + r"\['int', 1\]"),
    ({"format": "ant", "bits": 4, "types": []}, _TYPES + r"\[\]"),
    ({"format": "ant", "bits": 4, "types": None}, _TYPES + "None"),
])
def test_ill_typed_or_out_of_range_values_are_refused_naming_what_is_allowed(spec, match):
    with pytest.raises(InputError, match=match):
        parse_spec(spec)


def test_esb_k_bound_follows_the_width():
    assert parse_spec("esb3k3").option("k") == 3
    with pytest.raises(InputError, match="format spec 'esb3k4': option 'k' must be an integer from 1 to 3"):
        parse_spec("esb3k4")


@pytest.mark.parametrize("spec, match", [
    ("ant9", r"format spec 'ant9': ant takes an integer bit width from 3 to 8, not 9"),
    ("ant2", r"ant takes an integer bit width from 3 to 8, not 2"),
    ("esb2k1", r"format spec 'esb2k1': esb takes an integer bit width from 3 to 8, not 2"),
    ("uniq9", r"uniq takes an integer bit width from 2 to 8, not 9"),
    ("fxp17", r"fxp takes an integer bit width from 2 to 16, not 17"),
    ("ausn0", r"ausn takes an integer bit width from 3 to 8, not 0"),
    ({"format": "fxp", "bits": 8.0}, r"fxp takes an integer bit width from 2 to 16, not 8.0"),
    ({"format": "fxp", "bits": True}, r"not True"),
    ({"format": "fxp", "bits": "8"}, r"not '8'"),
    ({"format": "fxp", "bits": -8}, r"not -8"),
])
def test_bit_widths_outside_the_formats_range_are_refused(spec, match):
    with pytest.raises(InputError, match=match):
        parse_spec(spec)


@pytest.mark.parametrize("spec, match", [
    ("esb4k2k3", r"format spec 'esb4k2k3' gives option 'k' twice"),
    ({"bits": 4}, r"needs a 'format' entry"),
    ({"format": "ant"}, r"needs a 'bits' entry"),
    ({"format": 3, "bits": 4}, r"unknown format 3"),
    (4, r"a format spec is a string like 'ant4' or a dict"),
    ("esb4k", r"cannot read format spec 'esb4k'"),
])
def test_malformed_specs_are_refused(spec, match):
    with pytest.raises(InputError, match=match):
        parse_spec(spec)


def test_a_hand_built_spec_is_checked_too():
    with pytest.raises(InputError, match="format spec 'ant4q3': ant has no option 'q'"):
        parse_spec(FormatSpec("ant", 4, (("q", 3),)))
    with pytest.raises(InputError, match="format spec 'esb9': esb takes an integer bit width from 3 to 8"):
        parse_spec(FormatSpec("esb", 9))
    assert parse_spec(FormatSpec("esb", 4, {"k": [3]})) == parse_spec("esb4k3")


def test_an_ill_typed_option_fails_before_calibration_not_with_a_type_error():
    w = np.random.default_rng(0).standard_normal((4, 8))
    with pytest.raises(InputError, match="option 'types' must be"):
        calibrate("ant4types1", w, role="weight")
    with pytest.raises(InputError, match="ant has no option 'q'"):
        calibrate("ant4q3", w, role="weight")
    with pytest.raises(InputError, match="option 'k' must be"):
        calibrate({"format": "esb", "bits": 4, "k": 2.0}, w, role="weight")


def test_canonical_options_reach_the_calibrators():
    w = np.random.default_rng(1).standard_normal((4, 16))
    q = calibrate({"format": "ant", "bits": 4, "types": "flint"}, w, role="weight")
    assert list(q.candidates) == ["flint"] and q.format.type == "flint"
    q = calibrate({"format": "esb", "bits": 4, "k": [2, 3]}, w, role="weight")
    assert set(q.candidates) == {"k=2", "k=3"}
    q = calibrate({"format": "esb", "bits": 4, "k": "all"}, w, role="weight")
    assert set(q.candidates) == {"k=1", "k=2", "k=3"}


# ---------------------------------------------------------------------- text and dict forms, round trip


@pytest.mark.parametrize("text", ["fxp8", "ant4", "esb4k2", "esb8k7", "ausn5", "uniq4", "uniq4lloyd1", "uniq3lloyd0"])
def test_text_round_trips_through_str(text):
    spec = parse_spec(text)
    assert str(spec) == text
    assert parse_spec(str(spec)) == spec
    assert parse_spec(spec.to_dict()) == spec
    assert parse_spec(text.upper()) == spec
    assert parse_spec(f"  {text} ") == spec


@pytest.mark.parametrize("text, as_dict", [
    ("esb4k2", {"format": "esb", "bits": 4, "k": 2}),
    ("uniq4lloyd1", {"format": "uniq", "bits": 4, "lloyd": 1}),
    ("fxp8", {"format": "fxp", "bits": 8}),
])
def test_text_and_dict_forms_agree(text, as_dict):
    assert parse_spec(text) == parse_spec(as_dict)
    assert parse_spec(text).to_dict() == as_dict
    assert str(parse_spec(as_dict)) == text
    assert hash(parse_spec(text)) == hash(parse_spec(as_dict))


@pytest.mark.parametrize("as_dict, shown", [
    ({"format": "ant", "bits": 4, "types": ["int", "flint"]}, "ant4[types=int,flint]"),
    ({"format": "esb", "bits": 4, "k": [2, 3]}, "esb4[k=2,3]"),
    ({"format": "esb", "bits": 4, "k": "all"}, "esb4[k=all]"),
])
def test_dict_only_values_round_trip_through_to_dict(as_dict, shown):
    spec = parse_spec(as_dict)
    assert str(spec) == shown                                        # for reading; the text form holds ints only
    assert spec.to_dict() == as_dict
    assert parse_spec(spec.to_dict()) == spec
    hash(spec)


def test_the_declarations_are_the_calibrators_option_types():
    assert all(isinstance(o, (IntOption, ChoiceOption)) for name in FORMATS for o in declared_options(name))
