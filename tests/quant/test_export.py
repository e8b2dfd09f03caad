"""hwq.quant.export: the integer model's files reload bit-exactly and are deterministic."""

import json

import numpy as np

from hwq.quant.export import export, load


def test_export_reloads_bit_exactly(digits, quantized, tmp_path):
    _, (_, _, x_test, _) = digits
    _, imodel = quantized["ant4", "ant4"]
    manifest = export(imodel, tmp_path / "export")
    reloaded = load(tmp_path / "export")
    np.testing.assert_array_equal(reloaded.run(x_test), imodel.run(x_test))
    written = json.loads((tmp_path / "export" / "model.json").read_text())
    assert written == json.loads(json.dumps(manifest))
    blob = (tmp_path / "export" / "weights.bin").read_bytes()
    for entry in written["layers"]:
        w = entry["weight"]
        lines = (tmp_path / "export" / w["mem"]).read_text().split()
        assert len(lines) == w["count"] and all(len(line) == 1 for line in lines)      # 4-bit codes: one hex digit
        packed = np.frombuffer(blob[w["offset_bytes"]:w["offset_bytes"] + w["count"]], dtype=np.uint8)
        assert packed.tolist() == [int(line, 16) for line in lines]


def test_export_is_deterministic(quantized, tmp_path):
    _, imodel = quantized["fxp8", "fxp8"]
    export(imodel, tmp_path / "a")
    export(imodel, tmp_path / "b")
    for path in (tmp_path / "a").iterdir():
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes()
