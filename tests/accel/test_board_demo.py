# amaranth: UnusedElaboratable=no
"""The accelerator's board demo (hwq.boards.accel_demo) in amaranth.sim: the UART line is decoded
bit by bit, as a receiver would, and must carry the integer model's predicted classes and the
verdict; a wrong weight in the hardware must turn the verdict to FAIL."""

import dataclasses
import warnings

import numpy as np
import pytest
import torch
from amaranth.sim import Simulator
from torch import nn

from hwq.accel.schedule import Array, schedule
from hwq.accel.top import Accelerator
from hwq.boards.accel_demo import AcceleratorDemo
from hwq.boards.uart import UARTTransmitter
from hwq.errors import InputError
from hwq.quant import quantize
from hwq.quant.integer import integer_model

CLK_HZ, BAUD = 1_000_000, 250_000        # 4 cycles per bit: a short simulation


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    x = torch.rand(16, 1, 4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imodel = integer_model(quantize(Tiny().eval(), "fxp8", "fxp8", calibration=[x]))
    return imodel, imodel.quantize_input(x[:6].numpy())


def run_demo(demo, limit=200_000):
    """Simulate ``demo`` until ``done``; return (bytes decoded from ``tx``, passed, failed)."""
    sim = Simulator(demo)
    sim.add_clock(1 / CLK_HZ)
    divisor = round(CLK_HZ / BAUD)
    result = {}

    async def receiver(ctx):
        received = bytearray()
        line = []
        async for _, _, tx, done in ctx.tick().sample(demo.tx, demo.done):
            line.append(tx)
            if done and len(line) > 12 * divisor and all(line[-12 * divisor:]):
                break
            if len(line) > limit:
                break
        # decode: a start bit is a falling edge; sample each bit in its middle
        i = 1
        while i < len(line):
            if line[i - 1] == 1 and line[i] == 0 and i + 10 * divisor <= len(line):
                bits = [line[i + divisor // 2 + k * divisor] for k in range(10)]
                assert bits[0] == 0 and bits[9] == 1, f"framing error at cycle {i}"
                received.append(sum(b << k for k, b in enumerate(bits[1:9])))
                i += 10 * divisor
            else:
                i += 1
        result.update(data=bytes(received), passed=ctx.get(demo.passed), failed=ctx.get(demo.failed))

    sim.add_testbench(receiver)
    sim.run()
    return result["data"], result["passed"], result["failed"]


def expected_classes(imodel, codes):
    """Argmax of the integer model's scores, decoded with the output format's values."""
    values = imodel.tensors[imodel.output].format.int_values
    return [int(np.argmax(values[row])) for row in imodel.run_codes(codes)]


def test_demo_sends_the_predicted_classes_and_passes(tiny):
    imodel, codes = tiny
    acc = Accelerator(schedule(imodel, (1, 4, 4), Array(1, 4)))
    demo = AcceleratorDemo(acc, codes, clk_hz=CLK_HZ, baud=BAUD)
    data, passed, failed = run_demo(demo)
    classes = expected_classes(imodel, codes)
    assert len(set(classes)) > 1                                 # the images are told apart
    assert data == ("".join(str(c) for c in classes) + " PASS\r\n").encode()
    assert passed == 1 and failed == 0
    assert data == demo.message(passed=True)


def test_a_wrong_weight_fails_the_demo(tiny):
    imodel, codes = tiny
    sched = schedule(imodel, (1, 4, 4), Array(1, 4))
    weights = sched.weights.copy()
    weights[:, 0] ^= 0x40                                        # every weight of channel 0: bit 6 flipped
    acc = Accelerator(dataclasses.replace(sched, weights=weights))
    demo = AcceleratorDemo(acc, codes, clk_hz=CLK_HZ, baud=BAUD)
    data, passed, failed = run_demo(demo)
    assert data.endswith(b" FAIL\r\n") and passed == 0 and failed == 1


def test_bad_arguments(tiny):
    imodel, codes = tiny
    sched = schedule(imodel, (1, 4, 4), Array(1, 4))
    acc = Accelerator(sched)
    with pytest.raises(InputError, match="without dump"):
        AcceleratorDemo(Accelerator(sched, dump=True), codes, clk_hz=CLK_HZ)
    with pytest.raises(InputError, match=r"shape \(6, 16\)"):
        AcceleratorDemo(acc, codes.reshape(6, 16), clk_hz=CLK_HZ)
    with pytest.raises(InputError, match="1 to 256"):
        AcceleratorDemo(acc, codes[:0], clk_hz=CLK_HZ)
    with pytest.raises(InputError, match="outside the input format"):
        AcceleratorDemo(acc, codes + 1000, clk_hz=CLK_HZ)
    with pytest.raises(InputError, match="too fast"):
        AcceleratorDemo(acc, codes, clk_hz=CLK_HZ, baud=500_000)
    with pytest.raises(InputError, match="% off"):
        UARTTransmitter(10_000_000, 1_500_000)                   # 7 cycles per bit: 4.8 % slow
    assert UARTTransmitter(12_000_000, 115_200).divisor == 104   # 0.16 % fast


def test_icebreaker_bitstream_of_the_digits_cnn(digits, tmp_path):
    """CI builds the board demo (it does not flash it): the digits CNN at W4A4 on the default
    1x16 array, 8 test images in ROM; the UART message it will send holds the integer model's
    predicted classes."""
    import os
    import subprocess
    import sys

    from hwq.fileio import save_npy
    from hwq.integer import export
    model, (x_train, _, x_test, _) = digits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imodel = integer_model(quantize(model, "fxp4", "fxp4", calibration=[x_train[:64]]))
    export(imodel, tmp_path / "model")
    save_npy(tmp_path / "images.npy", x_test[:8].numpy())
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, "-m", "hwq.boards", "--board", "icebreaker", "--model", str(tmp_path / "model"),
                           "--images", str(tmp_path / "images.npy"), "--build-dir", str(tmp_path / "build")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": root}, cwd=root)
    assert proc.returncode == 0, proc.stderr
    bitstream = tmp_path / "build" / "accel_demo_icebreaker.bin"
    assert bitstream.stat().st_size > 100_000                   # an UP5K bitstream is about 104 kB
    classes = expected_classes(imodel, imodel.quantize_input(x_test[:8].numpy()))
    assert f"sends '{''.join(map(str, classes))} PASS'" in proc.stdout
    assert "ICESTORM_SPRAM 3/4" in proc.stdout and "ICESTORM_DSP 8/8" in proc.stdout
