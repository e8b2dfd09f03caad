"""hwq.integer.export: the files hardware loads reload bit-exactly, with numpy alone, and every
missing, edited or corrupt file is refused by name."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from hwq.errors import InputError
from hwq.integer import IntegerModel, export, load


@pytest.fixture
def exported(digits, quantized, tmp_path):
    _, (_, _, x_test, _) = digits
    _, imodel = quantized["ant4", "ant4"]
    export(imodel, tmp_path / "export")
    return imodel, tmp_path / "export", x_test[:64].numpy()


def test_export_reloads_bit_exactly_and_holds_what_hardware_loads(exported):
    imodel, out, x = exported
    reloaded = load(out)
    assert imodel.input_shape == reloaded.input_shape == (1, 8, 8)     # the digits images
    trace, again = {}, {}
    assert np.array_equal(reloaded.run_codes(reloaded.quantize_input(x), again),
                          imodel.run_codes(imodel.quantize_input(x), trace))
    assert all(np.array_equal(trace[name], again[name]) for name in trace)
    manifest = json.loads((out / "model.json").read_text())
    files = sorted(path.name for path in out.iterdir() if path.name not in ("model.json", ".hwq-output"))
    assert files == sorted(manifest["files"])                        # nothing written that nothing reads
    layer = next(op for op in manifest["ops"] if op["op"] == "layer")
    assert {"multiplier", "shift", "clamp", "stride", "padding", "groups", "weights", "bias"} <= set(layer)
    assert max(layer["multiplier"]) < 2 ** 16
    table = manifest["tensors"][layer["name"]]["table"]
    assert len(table["thresholds2"]) == len(table["grid"]) - 1 == len(table["up_on_tie"])
    lines = (out / layer["weights"]).read_text().split()
    assert len(lines) == np.prod(layer["weight_shape"]) and all(len(line) == 1 for line in lines)  # 4-bit codes


def test_the_reference_runs_on_numpy_alone(exported):
    """Loading and running an export with torch made unimportable."""
    imodel, out, x = exported
    np.save(out.parent / "x.npy", x)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None                      # any import of torch now fails
        import numpy as np
        from hwq.integer import load
        model = load({str(out)!r})
        np.save({str(out.parent / "codes.npy")!r}, model.run_codes(model.quantize_input(np.load({str(out.parent / "x.npy")!r}))))
    """)
    subprocess.run([sys.executable, "-c", script], check=True)
    assert np.array_equal(np.load(out.parent / "codes.npy"), imodel.run_codes(imodel.quantize_input(x)))


def test_export_is_deterministic_and_replaces_an_earlier_export(quantized, tmp_path):
    _, imodel = quantized["fxp8", "fxp8"]
    _, other = quantized["ant4", "fxp8"]
    export(imodel, tmp_path / "a")
    export(imodel, tmp_path / "b")
    for path in (tmp_path / "a").iterdir():
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes()
    assert str(tmp_path) not in (tmp_path / "a" / "model.json").read_text()
    (tmp_path / "a" / "stale.weights.mem").write_text("0\n")
    export(other, tmp_path / "a")                              # model B over model A
    assert not (tmp_path / "a" / "stale.weights.mem").exists()
    assert load(tmp_path / "a").layers["conv1"].w_format.name == "ant"


@pytest.mark.parametrize("damage, match", [
    (lambda out, m: (out / m["ops"][0]["weights"]).unlink(), r"cannot read .*conv1\.weights\.mem"),
    (lambda out, m: (out / m["ops"][0]["weights"]).write_text("0\n" * 144), r"conv1\.weights\.mem does not match its checksum"),
    (lambda out, m: (out / m["ops"][0]["bias"]).write_bytes(b"\xff\xfe"), r"conv1\.bias\.mem does not match its checksum"),
    (lambda out, m: (out / "model.json").write_text("{"), r"model\.json is not JSON"),
    (lambda out, m: (out / "model.json").unlink(), r"cannot read .*model\.json"),
    (lambda out, m: _edit(out, m, lambda d: d["ops"][0].update(weight_shape=[1, 2, 3, 3])), r"holds 144 words, the manifest says 18"),
    (lambda out, m: _edit(out, m, lambda d: d.update(hwq_export=1)), r"not a version-3 hwq export"),
    (lambda out, m: _edit(out, m, lambda d: d["limits"].update(multiplier_bits=31)), r"made for limits"),
    (lambda out, m: _edit(out, m, lambda d: d["tensors"].pop("x")), r"model\.json is malformed"),
    (lambda out, m: _edit(out, m, lambda d: d["ops"][0]["clamp"].update(high=999)), r"clamp indices outside"),
    (lambda out, m: _edit(out, m, lambda d: d.update(input_shape=[1, 0, 8])), r"model\.json: input_shape must be"),
    (lambda out, m: _edit(out, m, lambda d: d.pop("input_shape")), r"model\.json is malformed"),
], ids=["missing", "edited", "corrupt", "json", "no manifest", "shape", "version", "limits", "tensor", "clamp",
        "input shape", "no input shape"])
def test_load_refuses_damaged_exports_naming_the_file(exported, damage, match):
    _, out, _ = exported
    manifest = json.loads((out / "model.json").read_text())
    damage(out, manifest)
    with pytest.raises(InputError, match=match):
        load(out)


def test_export_needs_the_input_shape(exported, tmp_path):
    imodel, _, _ = exported
    unshaped = IntegerModel(imodel.input, imodel.output, imodel.tensors, imodel.ops)
    with pytest.raises(InputError, match="no input_shape"):
        export(unshaped, tmp_path / "unshaped")
    assert not (tmp_path / "unshaped").exists()
    for bad in ((), (1, -8), (1.5,), "1x8x8", (True, 8)):
        with pytest.raises(InputError, match="input_shape must be"):
            IntegerModel(imodel.input, imodel.output, imodel.tensors, imodel.ops, input_shape=bad)


def _edit(out, manifest, change):
    change(manifest)
    (out / "model.json").write_text(json.dumps(manifest))
