"""``python -m hwq.quantize``: the worked example runs end to end and rejects bad input first."""

import json

import numpy as np
import pytest

from hwq import quantize as example


def digits_labels():
    """The test split's labels, as hwq.quant.digits.load_digits_tensors makes it."""
    from hwq.quant.digits import load_digits_tensors
    return load_digits_tensors()[3].numpy()


def test_worked_example_end_to_end(tmp_path):
    out = tmp_path / "example"
    report = example.run(["fxp"], ["w4a4"], out=out, epochs=4, qat_epochs=1, log=lambda *a: None)
    (run,) = report["runs"]
    assert run["weights"] == "fxp4" and run["activations"] == "fxp4"
    assert 0.5 < run["ptq_accuracy"] <= 1 and 0.5 < run["qat_accuracy"] <= 1
    assert run["integer_accuracy"] == pytest.approx(run["ptq_accuracy"], abs=0.02)
    assert run["pe"]["module"] == "fxp_pe_a4_w4" and run["pe"]["lut4"] > 0
    # the accelerator: built from the run's export, verified on Verilator, synthesized
    acc = run["accelerator"]
    assert acc["fits"] is True and acc["verified_inputs"] == example.ACCEL_IMAGES
    assert 0 < acc["lcs"] <= 5280 and acc["ebr"] <= 30 and acc["fmax_mhz"] > 0
    assert acc["inferences_per_s"] == pytest.approx(acc["fmax_mhz"] * 1e6 / acc["cycles"])
    assert run["bops"] > 0 and set(run["timing"]) == {"ptq_s", "integer_s", "qat_s"}
    assert json.loads((out / "report.json").read_text())["runs"][0]["pe"]["lut4"] == run["pe"]["lut4"]
    table = (out / "report.md").read_text()
    assert "| fxp | w4a4 | fxp4 | fxp4 |" in table
    row = next(line for line in table.splitlines() if line.startswith("| fxp | w4a4 |"))
    assert row.split("|")[10].strip() == acc["array"] == "1x16"        # --array auto: the first that fits
    assert row.split("|")[11].strip() == str(acc["lcs"])                # the cost column is the accelerator's
    assert f"| fxp | w4a4 | fxp_pe_a4_w4 | {run['pe']['lut4']} |" in table  # the single PE's table
    assert (out / acc["dir"] / "hwq_accel.v").is_file()
    for png in (out / example.PLOT, out / "histograms" / "fxp_w4a4.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the run's integer model and the test images, for hwq-build --model / hwq-board --model
    from hwq.integer import load
    exported = load(out / run["export"])
    images = np.load(out / example.TEST_IMAGES)
    assert images.shape == (450, 1, 8, 8) and images.dtype == np.float32
    logits = exported.run(images)
    assert np.mean(np.argmax(logits, axis=1) == digits_labels()) == pytest.approx(run["integer_accuracy"])
    # the per-layer analysis: a row per layer with the numbers of report.json
    section = table[table.index("## Per-layer analysis"):]
    assert "### fxp w4a4" in section and f"![accuracy vs accelerator logic cells]({example.PLOT})" in table
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| layer")]
    assert len(rows) == len(run["layers"]) == 4
    for row, layer in zip(rows, run["layers"]):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        w, a = layer["weights"], layer["activations"]
        assert cells[0] == layer["name"] and cells[1] == f"`{layer['weight_format']}`"
        assert [float(c) for c in cells[3:]] == pytest.approx(
            [w["sqnr_db"], w["clipping"], w["rounding"], a["sqnr_db"], a["clipping"], a["rounding"],
             layer["bops"] / 1e3], rel=0.01, abs=0.051)


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_and_quiet(tmp_path, capfd, quiet):
    argv = ["--format", "fxp", "--config", "w4a4", "--epochs", "1", "--qat-epochs", "1", "--no-synth",
            "--out", str(tmp_path / "out"), *(["--quiet"] if quiet else [])]
    assert example.main(argv) == 0
    out, err = capfd.readouterr()
    assert (tmp_path / "out" / "report.md").exists()
    if quiet:
        assert out == "" and err == ""
    else:
        assert "| fxp | w4a4 | fxp4 | fxp4 |" in out and "trained the digits CNN" in out
        assert "float training" in err and "format × config runs" in err and "1/1" in err


@pytest.mark.parametrize("args, message", [
    (["--config", "w4"], "not of the form w<bits>a<bits>"),
    (["--format", "posit"], "cannot run the example"),
    (["--format", "ant", "--config", "w16a8"], "between 3 and 8"),
])
def test_bad_input(tmp_path, capsys, args, message):
    assert example.main([*args, "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bad_numbers_are_rejected_before_training(tmp_path, capsys):
    from hwq.errors import HwqError
    for kwargs, message in (({"epochs": 0}, "epochs must be between 1"),
                            ({"qat_epochs": -1}, "qat_epochs must be between 1"),
                            ({"jobs": 0}, "jobs must be between 1")):
        with pytest.raises(HwqError, match=message):
            example.run(["fxp"], ["w4a4"], out=tmp_path / "out", log=lambda *a: None, **kwargs)
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as exit_:
        example.main(["--jobs", "0", "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2 and "expected a positive integer, not 0" in capsys.readouterr().err


def test_a_failed_synthesis_is_reported_and_exits_1(tmp_path, capsys, monkeypatch):
    # a yosys that always fails: the report is still written and names the failure, and the
    # command exits 1 with a log that exists (in --out, not in a deleted staging directory)
    fake = tmp_path / "broken-yosys"
    fake.write_text("#!/bin/sh\necho 'ERROR: this yosys is broken' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("YOSYS", str(fake))
    monkeypatch.setenv("HWQ_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "example"
    # (--no-accel: amaranth's Verilog backend would run the broken $YOSYS too)
    status = example.main(["--format", "fxp", "--config", "w4a4", "--epochs", "1", "--qat-epochs", "1",
                           "--no-accel", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert status == 1, err
    assert err.startswith("hwq-quantize: error: synthesis of 1 PE(s) failed: yosys on ") and "broken" in err
    log = err.split("see ")[-1].split()[0].rstrip(";")
    assert log.startswith(str(out)) and "this yosys is broken" in open(log).read()
    (run,) = json.loads((out / "report.json").read_text())["runs"]
    assert "fits" not in run["pe"] and "this yosys is broken" in run["pe"]["error"]
    assert "(failed, see report.json)" in (out / "report.md").read_text()


def test_plot_keeps_every_legend_in_the_saved_image(tmp_path, monkeypatch):
    # the legends lie outside the Axes; ax.add_artist clips an artist to the Axes, and matplotlib leaves
    # artists clipped to the Axes out of tight_layout and bbox_inches="tight": legends added so were
    # cropped out of the PNG (at dpi 150 they only survived by a 1e-13 rounding difference)
    import struct
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.legend import Legend
    figures, savefig = [], Figure.savefig

    def spy(fig, *args, **kwargs):
        figures.append(fig)
        return savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    runs = [{"format": fmt, "w_bits": w, "a_bits": a, "integer_accuracy": 0.8 + 0.01 * i, "qat_accuracy": 0.9,
             "accelerator": {"lcs": 1000 + 300 * i}}
            for i, (fmt, (w, a)) in enumerate([("fxp", (8, 8)), ("fxp", (4, 4)), ("esb", (8, 8)), ("esb", (4, 4))])]
    runs.append({**runs[0], "format": "ant", "accelerator": {"error": "does not fit"}})
    path = tmp_path / "plot.png"
    example._plot(runs, 0.97, path)
    (fig,) = figures
    (ax,) = fig.axes
    legends = [artist for artist in ax.get_children() if isinstance(artist, Legend)]
    assert [legend.get_title().get_text() for legend in legends] == ["format", "configuration", "accuracy"]  # once each
    renderer = FigureCanvasAgg(fig).get_renderer()   # (pyplot.close left the figure a bare canvas)
    tight = fig.get_tightbbox(renderer)         # what bbox_inches="tight" keeps, in inches
    for legend in legends:
        box = legend.get_window_extent(renderer)
        assert box.width > 0 and fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1, legend.get_title().get_text()
        box = box.transformed(fig.dpi_scale_trans.inverted())
        assert tight.x0 <= box.x0 and box.x1 <= tight.x1 and tight.y0 <= box.y0 and box.y1 <= tight.y1
    # and the PNG is that box (plus savefig's 0.1 in padding) at 150 dpi
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    assert width == pytest.approx(150 * (tight.width + 0.2), abs=3)
    assert height == pytest.approx(150 * (tight.height + 0.2), abs=3)
