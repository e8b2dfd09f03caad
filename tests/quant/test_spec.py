"""hwq.quant.spec: format specs from strings and dicts."""

import pytest

from hwq.errors import HwqError
from hwq.quant import parse_spec


def test_spec_parsing():
    assert parse_spec("ant4") == parse_spec({"format": "ant", "bits": 4})
    assert str(parse_spec("FXP8")) == "fxp8"
    assert parse_spec("esb4k2").option("k") == 2
    with pytest.raises(HwqError, match="cannot read format spec"):
        parse_spec("4ant")
    with pytest.raises(HwqError, match="unknown format 'posit'"):
        parse_spec("posit8")
