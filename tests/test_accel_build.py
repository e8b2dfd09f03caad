"""``python -m hwq.build --model DIR``: the accelerator of an exported model, its manifest, report
and every bad-input error (nothing written)."""

import json
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

from hwq.accel.fit import ebr_blocks, spram_blocks
from hwq.fileio import MARKER

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The digits CNN (hwq.quant.digits.DigitsCNN) on 8 x 8 images, by hand: conv1 1->16 3x3 pad 1 on
# 8x8, conv2 16->32 3x3 pad 1 on 8x8, max pool to 4x4, conv3 32->32 3x3 pad 1 on 4x4 (+ residual),
# global average pool, fc 32->10.
DIGITS_MACS = {"conv1": 64 * 16 * 9, "conv2": 64 * 32 * 16 * 9, "conv3": 16 * 32 * 32 * 9, "fc": 32 * 10}


@pytest.fixture(scope="module")
def exports(digits, tmp_path_factory):
    """Exports of the digits CNN at fxp4/fxp4 and fxp8/fxp8, and 3 test images (float, .npy)."""
    from hwq.integer import export
    from hwq.quant import quantize
    from hwq.quant.integer import integer_model
    model, (x_train, _, x_test, _) = digits
    root = tmp_path_factory.mktemp("exports")
    out = {}
    for config in (("fxp4", "fxp4"), ("fxp8", "fxp8"), ("ausn4", "fxp4"), ("ausn8", "ausn8")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imodel = integer_model(quantize(model, *config, calibration=[x_train[:64]]))
        out[config] = root / "_".join(config)
        export(imodel, out[config])
    np.save(root / "images.npy", x_test[:3].numpy())
    out["images"] = root / "images.npy"
    return out


def run_cli(*args):
    proc = subprocess.run([sys.executable, "-m", "hwq.build", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT}, cwd=ROOT)
    return proc.returncode, proc.stdout, proc.stderr


def test_emits_the_accelerator_with_its_manifest_and_report(exports, tmp_path):
    out = tmp_path / "acc"
    code, stdout, stderr = run_cli("--model", exports["fxp4", "fxp4"], "--no-synth", "--verify", 2,
                                   "--images", exports["images"], "--out", out)
    assert code == 0, stderr
    assert "verified 2 input(s) on verilator" in stdout
    assert sorted(p.name for p in out.iterdir() if p.name != MARKER) == [
        "hwq_accel.json", "hwq_accel.v", "report.json", "report.md"]
    manifest = json.loads((out / "hwq_accel.json").read_text())
    verilog = (out / "hwq_accel.v").read_text()
    assert "module hwq_accel" in verilog
    for port in ("input__valid", "input__ready", "input__payload", "output__valid", "output__ready", "output__payload"):
        assert port in verilog
    assert manifest["model"]["input"]["shape"] == [1, 8, 8] and manifest["model"]["output"]["shape"] == [10]
    assert manifest["interfaces"]["input"]["words_per_image"] == 64
    assert manifest["interfaces"]["output"]["words_per_image"] == 10
    # on the UP5K: pairs of 4-bit products in 5 SB_MAC16 (3 left for the requantizer and vector unit)
    assert manifest["array"] == {"rows": 1, "cols": 16, "pes": 16, "mapping": "dsp", "dsp_blocks": 5, "pipeline": 0}
    assert {s["name"]: s["macs"] for s in manifest["steps"] if s["kind"] == "conv"} == DIGITS_MACS
    assert manifest["latency"]["macs"] == sum(DIGITS_MACS.values())
    # conv2 and conv3 fill the 16 columns every cycle: 16 MACs per cycle
    steps = {s["name"]: s for s in manifest["steps"]}
    assert steps["conv2"]["cycles"] == DIGITS_MACS["conv2"] // 16 and steps["conv3"]["cycles"] == DIGITS_MACS["conv3"] // 16
    regions = manifest["memory_map"]["regions"]
    assert all(r["size"] == int(np.prod(r["shape"])) for r in regions)
    memories = {m["name"]: m for m in manifest["memories"]}
    # 4-bit weights, 16 lanes: 64-bit words; 1024 x 4 EBRs -> 16 per 1024 words
    assert memories["conv.weights"]["width"] == 64 and memories["conv.weights"]["kind"] == "ebr"
    assert memories["conv.weights"]["blocks"] == 16 * -(-memories["conv.weights"]["depth"] // 1024)
    # activations in single-port banks, one SPRAM each (the residual add reads two banks and
    # writes a third)
    banks = [m for m in manifest["memories"] if m["kind"] == "spram"]
    assert manifest["memory_map"]["banks"] == len(banks) == 3
    assert all(m["blocks"] == 1 and not m["initialised"] for m in banks)
    report = json.loads((out / "report.json").read_text())
    assert report["macs"] == sum(DIGITS_MACS.values())
    # measured on Verilator, on the emitted design: a host that never waits gets the manifest's count
    assert report["verified_inputs"] == 2 and report["cycles_source"] == "measured in simulation"
    assert report["cycles"] == manifest["latency"]["cycles_per_inference"]
    assert report["macs_per_cycle"] == pytest.approx(report["macs"] / report["cycles"])
    assert [l["name"] for l in report["layers"]] == ["conv1", "conv2", "conv3", "fc"]
    assert report["layers"][1]["utilization"] == 1.0
    assert "| conv2 | 294912 | 18432 | 16.00 | 100.0 % |" in (out / "report.md").read_text()
    for path in out.iterdir():
        assert str(tmp_path).encode() not in path.read_bytes() and ROOT.encode() not in path.read_bytes()
    again = tmp_path / "again"
    assert run_cli("--model", exports["fxp4", "fxp4"], "--no-synth", "--verify", 0, "--out", again)[0] == 0
    for name in ("hwq_accel.json", "hwq_accel.v"):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name


def test_ausn_weights_stay_shift_add_on_a_part_with_dsps(exports, tmp_path):
    """AUSN's point is no multiplier: its weights drive shift-add cells even where SB_MAC16 exist."""
    out = tmp_path / "acc"
    code, _, stderr = run_cli("--model", exports["ausn4", "fxp4"], "--no-synth", "--verify", 0, "--out", out)
    assert code == 0, stderr
    manifest = json.loads((out / "hwq_accel.json").read_text())
    assert manifest["array"]["mapping"] == "fabric" and manifest["array"]["dsp_blocks"] == 0
    assert "SB_MAC16" not in (out / "hwq_accel.v").read_text()
    # asked for SB_MAC16 products, the AUSN model is refused with the reason, nothing written
    code, _, stderr = run_cli("--model", exports["ausn4", "fxp4"], "--no-synth", "--verify", 0, "--mapping", "dsp",
                              "--out", tmp_path / "dsp")
    assert code == 2 and "mapping 'dsp': AUSN weights drive shift-add cells" in stderr, stderr
    assert not (tmp_path / "dsp").exists()


def test_mapping_and_pipeline_options(exports, tmp_path):
    """--mapping fabric keeps every product in LUTs on a part with SB_MAC16; --pipeline 2 adds
    two product register stages: the manifest says so and each of the four conv steps takes
    the cycles more (tests/accel/test_top.py runs such a design bit-exact)."""
    runs = {}
    for name, args in (("auto", []), ("fabric", ["--mapping", "fabric", "--pipeline", "2"])):
        out = tmp_path / name
        code, _, stderr = run_cli("--model", exports["fxp4", "fxp4"], "--no-synth", "--verify", 0, "--out", out, *args)
        assert code == 0, stderr
        runs[name] = json.loads((out / "hwq_accel.json").read_text())
    assert runs["auto"]["array"]["mapping"] == "dsp" and runs["auto"]["array"]["pipeline"] == 0
    assert runs["fabric"]["array"] == {"rows": 1, "cols": 16, "pes": 16, "mapping": "fabric", "dsp_blocks": 0,
                                       "pipeline": 2}
    assert "SB_MAC16" not in (tmp_path / "fabric" / "hwq_accel.v").read_text()
    # the DSP products' own register is one stage, the fabric's two more make it one deeper
    assert (runs["fabric"]["latency"]["cycles_per_inference"]
            == runs["auto"]["latency"]["cycles_per_inference"] + 4 * (2 - 1))


def test_block_counts():
    from hwq.accel.fit import ebr_capacity
    assert ebr_capacity(128, 26) == 768 and ebr_capacity(128, 32) == 1024 and ebr_capacity(128, 7) == 0
    assert ebr_capacity(64, 26) == 1536 and ebr_capacity(4, 1) == 1024 and ebr_capacity(16, 3) == 768
    assert ebr_blocks(16, 256) == ebr_blocks(8, 512) == ebr_blocks(2, 2048) == 1
    assert ebr_blocks(128, 905) == 32                                    # 8 wide x 4 deep at 256 x 16
    assert ebr_blocks(54, 91) == 4
    assert ebr_blocks(64, 905) == 16                                     # 16 of 1024 x 4
    assert spram_blocks(16, 16384) == 1 and spram_blocks(16, 16385) == 2 and spram_blocks(17, 10) == 2


@pytest.mark.parametrize("args, match", [
    (["--array", "0x16"], r"array"),
    (["--array", "banana"], r"array"),
    (["--target", "ecp5"], r"invalid choice: 'ecp5'"),
    (["--target", "up5k", "--target", "hx8k"], r"one target"),
    (["--verify", "-1"], r"--verify"),
    (["--format", "fxp"], r"--format build single PEs"),
    (["--images", "missing.npy"], r"--images .*missing\.npy"),
    (["--pipeline", "5"], r"--pipeline 5: the PE array takes 0 to 4"),
], ids=["array zero", "array text", "target", "two targets", "verify", "format", "images", "pipeline"])
def test_bad_options_are_refused_before_anything_is_written(exports, tmp_path, args, match):
    out = tmp_path / "acc"
    code, stdout, stderr = run_cli("--model", exports["fxp4", "fxp4"], "--no-synth", "--out", out, *args)
    assert code == 2, stderr
    assert stderr.count("error") == 1 and len(stderr.strip().splitlines()) == 1
    assert re.search(match, stderr), stderr
    assert not out.exists()


def test_a_model_too_large_for_the_part_names_the_memory_and_shortfall(exports, tmp_path):
    """The HX8K has no SPRAM: fxp8 weights on 16 lanes (905 words x 128 bits = 32 EBR), the
    parameters (4) and the activations (3136 x 16 bits, 13) need 49 of its 32 EBR."""
    out = tmp_path / "acc"
    code, _, stderr = run_cli("--model", exports["fxp8", "fxp8"], "--target", "hx8k", "--no-synth", "--verify", 0,
                              "--out", out)
    assert code == 2
    assert "does not fit the iCE40HX8K" in stderr and "49 EBR blocks of the 32" in stderr and "17 short" in stderr
    assert "conv.weights (905 x 128 bits" in stderr
    assert not out.exists()
    code, _, stderr = run_cli("--model", exports["fxp8", "fxp8"], "--target", "sim", "--verify", 0, "--out", out)
    assert code == 0, stderr                                              # the simulation target takes it
    assert json.loads((out / "hwq_accel.json").read_text())["target"] == "sim"


def test_weights_beyond_the_block_ram_load_into_spram_over_the_input_stream(exports, tmp_path):
    """fxp8 on the UP5K at 1x16: 905 weight words of 128 bits need 32 EBR, 26 are left beside
    the parameters (4): 768 words stay (24 EBR), conv2 and conv3 (288 + 576 words) go to the
    store in SPRAM (864 x 8 = 6 912 16-bit words), conv3's length of overlay. The bench sends
    the preload, then real images, bit-exact, in the cycles the manifest gives."""
    out = tmp_path / "acc"
    code, stdout, stderr = run_cli("--model", exports["fxp8", "fxp8"], "--no-synth", "--verify", 3, "--out", out)
    assert code == 0, stderr
    manifest = json.loads((out / "hwq_accel.json").read_text())
    pre = manifest["preload"]
    assert pre["layers"] == ["conv2", "conv3"] and pre["store_words"] == 6912 and pre["weight_capacity"] == 768
    lines = (out / pre["file"]).read_text().splitlines()
    assert len(lines) == pre["payloads"] == 6912 * -(-16 // manifest["interfaces"]["input"]["payload_bits"])
    weights = next(m for m in manifest["memories"] if m["name"] == "conv.weights")
    assert (weights["depth"], weights["kind"], weights["blocks"]) == (41 + 576, "ebr", 24)
    store = next(m for m in manifest["memories"] if "store" in m["name"])
    assert (store["depth"], store["kind"], store["blocks"], store["initialised"]) == (6912, "spram", 1, False)
    assert sum(m["blocks"] for m in manifest["memories"] if m["kind"] == "ebr") <= 30
    kinds = [(s["name"], s["kind"]) for s in manifest["steps"]]
    assert kinds.index(("load conv2", "load")) + 1 == kinds.index(("conv2", "conv"))
    assert next(s["cycles"] for s in manifest["steps"] if s["name"] == "load conv3") == 576 * 8
    report = json.loads((out / "report.json").read_text())
    assert report["verified_inputs"] == 3 and report["cycles_source"] == "measured in simulation"
    assert report["cycles"] == manifest["latency"]["cycles_per_inference"]


@pytest.mark.slow
def test_auto_array_synthesizes_until_one_fits_the_up5k(exports, tmp_path):
    """fxp8 at the default --array auto: on 1x16 the six 8 x 8 products beyond the five SB_MAC16
    pairs become SB_MAC16 too (14 of 8) and the design needs about 5 800 logic cells; 1x8 (four
    pairs) fits, with its weight store, and is the one verified and reported."""
    out = tmp_path / "acc"
    code, stdout, stderr = run_cli("--model", exports["fxp8", "fxp8"], "--verify", 2, "--images", exports["images"],
                                   "--out", out)
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    search = report["array_search"]
    assert [(a["array"], a["fits"]) for a in search] == [("1x16", False), ("1x8", True)]
    assert "SB_MAC16" in search[0]["reason"] and search[0]["dsp"] > 8
    assert report["array"] == "1x8" and report["fits"] is True
    assert report["dsp"] <= 8 and report["ebr"] <= 30 and report["spram"] == 4 and report["lcs"] <= 5280
    assert report["weight_store"]["layers"] and report["verified_inputs"] == 2
    assert report["cycles_source"] == "measured in simulation" and report["fmax_mhz"] > 0
    manifest = json.loads((out / "hwq_accel.json").read_text())
    assert manifest["array"]["cols"] == 8 and (out / manifest["preload"]["file"]).is_file()
    assert "## Array search" in (out / "report.md").read_text()


def test_auto_array_moves_on_when_a_layer_cannot_be_loaded_at_one_size(exports, tmp_path):
    """ausn8 on 1x16: the EBR left holds 512 words of 128 bits, conv3 alone is 576: that array is
    refused (and recorded), 1x8 is taken. Without synthesis the one chosen is "not synthesized"."""
    out = tmp_path / "acc"
    code, _, stderr = run_cli("--model", exports["ausn8", "ausn8"], "--no-synth", "--verify", 0, "--out", out)
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    first, chosen = report["array_search"]
    assert first["array"] == "1x16" and first["fits"] is False and "layer 'conv3'" in first["reason"]
    assert chosen == {"array": "1x8", "fits": None, "reason": "memories fit; not synthesized"}
    assert json.loads((out / "hwq_accel.json").read_text())["array"]["cols"] == 8


def test_the_output_directory_may_not_hold_the_export(exports, tmp_path):
    import shutil
    model = tmp_path / "runs" / "model"
    shutil.copytree(exports["fxp4", "fxp4"], model)
    (model.parent / MARKER).write_text("")               # as hwq-quantize leaves its --out
    before = sorted(p.name for p in model.iterdir())
    for out in (model, model.parent):
        code, _, stderr = run_cli("--model", model, "--no-synth", "--verify", 0, "--out", out)
        assert code == 2 and "would delete the export --model" in stderr, stderr
        assert sorted(p.name for p in model.iterdir()) == before


def test_an_array_too_large_is_refused_before_scheduling(exports, tmp_path):
    for text in ("1x65", "1x99999999999999999999", "65x1"):
        code, _, stderr = run_cli("--model", exports["fxp4", "fxp4"], "--no-synth", "--verify", 0, "--array", text,
                                  "--out", tmp_path / "acc")
        assert code == 2 and "the PE array takes 1 to 64 rows and 1 to 64 columns" in stderr, stderr
        assert "Traceback" not in stderr and not (tmp_path / "acc").exists()


def test_a_damaged_export_is_refused(exports, tmp_path):
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(exports["fxp4", "fxp4"], broken)
    (broken / "conv2.weights.mem").write_text("0\n")
    code, _, stderr = run_cli("--model", broken, "--no-synth", "--verify", 0, "--out", tmp_path / "acc")
    assert code == 2 and "conv2.weights.mem does not match its checksum" in stderr
    assert stderr.count("re-export the model") == 1
    assert not (tmp_path / "acc").exists()


class _Small(__import__("torch").nn.Module):
    def __init__(self, mode):
        import torch
        super().__init__()
        self.c = torch.nn.Conv2d(2, 4, 3, padding=1, padding_mode=mode)
        self.fc = torch.nn.Linear(64, 3)

    def forward(self, x):
        import torch
        return self.fc(torch.flatten(torch.relu(self.c(x)), 1))


@pytest.mark.parametrize("config, mode, match", [
    (("fxp8", "fxp16"), "zeros", r"layer 'c': its input \(activation\) format .*16-bit codes; the PE array's "
                                 r"edge decoders take at most 8"),
    (("fxp12", "fxp8"), "zeros", r"layer 'c': its weight format .*12-bit codes"),
    (("fxp8", "fxp8"), "reflect", r"layer 'c': padding_mode 'reflect' is not supported"),
], ids=["16-bit activations", "12-bit weights", "reflect padding"])
def test_a_model_the_generator_cannot_run_is_refused_naming_the_layer(tmp_path, config, mode, match):
    import torch

    from hwq.integer import export
    from hwq.quant import quantize
    from hwq.quant.integer import integer_model
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imodel = integer_model(quantize(_Small(mode).eval(), *config, calibration=[torch.rand(8, 2, 4, 4)]))
    export(imodel, tmp_path / "model")
    out = tmp_path / "acc"
    code, _, stderr = run_cli("--model", tmp_path / "model", "--target", "sim", "--verify", 0, "--out", out)
    assert code == 2 and re.search(match, stderr), stderr
    assert len(stderr.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.slow
def test_the_synthesized_netlist_runs_real_images_bit_exact_and_gives_the_power(exports, tmp_path):
    """fxp W4A4 on 1x8: synthesized for the UP5K, then 2 test images on its iCE40 netlist (yosys's
    cell models, Verilator): bit-exact, and their switching activity gives the report's power,
    static and dynamic apart, per inference and per MAC, beside the first-order fallback."""
    out = tmp_path / "acc"
    code, stdout, stderr = run_cli("--model", exports["fxp4", "fxp4"], "--array", "1x8", "--verify", 1,
                                   "--netlist", 2, "--images", exports["images"], "--out", out, "--no-cache")
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    assert report["fits"] is True and report["netlist_verified_inputs"] == 2
    power, macs = report["power"], sum(DIGITS_MACS.values())
    activity = power["activity"]
    assert activity["estimate"] is True and "ESTIMATE" in activity["label"]
    for point in activity["points"]:
        assert 0 < point["static_mw"] < point["dynamic_mw"] < 100
        assert point["power_mw_low"] < point["power_mw"] < point["power_mw_high"]
    for model in (activity, power["first_order"]):
        for row in model["energy"]:
            point = next(p for p in model["points"] if p["freq_mhz"] == row["freq_mhz"])
            expected_uj = point["power_mw"] * report["cycles"] / row["freq_mhz"] / 1000   # mW x us = nJ
            assert row["energy_per_inference_uj"] == pytest.approx(expected_uj, rel=1e-3)
            assert row["energy_per_mac_pj"] == pytest.approx(expected_uj * 1e6 / macs, rel=1e-3)
    assert activity["inputs"]["untraced_bits"] == 0
    cells = activity["inputs"]["cells"]
    assert cells["lut4"]["toggles_per_cycle"] > 0 and cells["dsp"]["cells"] == report["dsp"]
    assert "ESTIMATE" in report["summary"] and "## Power and energy (ESTIMATES)" in (out / "report.md").read_text()
