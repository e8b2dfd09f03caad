"""cocotb 2.x testbench of the whole accelerator (:class:`hwq.accel.top.Accelerator` with ``dump``).

Run it through :func:`hwq.sim.accel_runner.run_accel_bench`; cocotb imports it inside the
simulator. It only drives and collects: the runner compares what it collected with the integer
model (:func:`hwq.accel.verify.find_mismatches`) in its own process.

Environment
-----------
HWQ_ACCEL_DIR
    Directory written by the runner: ``preload.npy`` (the weight store's contents as input
    payloads, sent once after reset; empty without a store), ``inputs.npy`` (``(N, input words)``
    int64 codes, CHW order per image) and ``bench.json`` (``output_words``: words the output stream sends per image;
    ``timeout_cycles``: cycles an image may take before the bench gives up; ``clock_ns``: the
    clock period).
HWQ_ACCEL_OUT
    Directory this bench writes to: ``words.npy``, ``(N, output_words)`` int64 (the activation
    memory read back after each image, ``-1`` for a word with X or Z bits), and ``cycles.npy``,
    ``(N,)`` int64 (the ``cycles`` port after each image).

Test
----
inference
    Clock and reset, then the preload (if any) on the ``input`` stream, then per image: the input codes on the ``input`` stream, one per cycle (the
    host never waits, so ``cycles`` must equal ``Accelerator.expected_cycles``); ``output.ready``
    held high throughout. While the accelerator computes, Python does not step the clock: it
    awaits the rising edge of ``output__valid``. It then samples ``output__payload`` once per
    transferred word on the falling clock edge (the transfer happens at the next rising edge),
    and reads ``cycles`` when ``busy`` has fallen. Fails (AssertionError) if an image does not
    finish within ``timeout_cycles`` or the stream protocol is broken.
"""

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, SimTimeoutError, with_timeout

#: reset cycles at the start
RESET_CYCLES = 2


def _word(value):
    """A bus value as an int, ``-1`` if any bit is X or Z."""
    return value.to_unsigned() if value.is_resolvable else -1


async def _send(dut, image, limit):
    """Offer ``image``'s codes on the input stream, a new one each cycle after a handshake.

    Signals are driven on the falling edge; ``input__ready`` (a function of the sequencer's state,
    stable until the next rising edge) read there says whether the code transfers at that edge.
    """
    clk, index, waited = dut.clk, 0, 0
    while index < len(image):
        await FallingEdge(clk)
        dut.input__valid.value = 1
        dut.input__payload.value = int(image[index])
        if dut.input__ready.value == 1:
            index += 1
        else:
            waited += 1
            if waited > limit:
                raise AssertionError(f"input code {index} not taken within {limit} cycles (input__ready "
                                     f"{dut.input__ready.value}, busy {dut.busy.value}, step {dut.step.value})")
    await FallingEdge(clk)
    dut.input__valid.value = 0


async def _collect(dut, n_words, limit, image, clock_ns):
    """The ``n_words`` words of the output stream (``output__ready`` is high), as a list."""
    if dut.output__valid.value != 1:
        try:
            await with_timeout(RisingEdge(dut.output__valid), limit * clock_ns, "ns")
        except SimTimeoutError:
            raise AssertionError(f"image {image}: no output within {limit} cycles of its input "
                                 f"(sequencer at step {_word(dut.step.value)})") from None
    words = []
    for index in range(n_words):
        await FallingEdge(dut.clk)
        if dut.output__valid.value != 1:
            raise AssertionError(f"image {image}: output__valid fell after {index} of {n_words} words")
        words.append(_word(dut.output__payload.value))
    await FallingEdge(dut.clk)                              # the last word transferred
    if dut.busy.value != 0:
        raise AssertionError(f"image {image}: busy still high after the last of {n_words} output words")
    return words


@cocotb.test()
async def inference(dut):
    """Every image of ``$HWQ_ACCEL_DIR/inputs.npy`` through the accelerator, memory read back."""
    data = Path(os.environ["HWQ_ACCEL_DIR"])
    meta = json.loads((data / "bench.json").read_text())
    inputs = np.load(data / "inputs.npy")
    preload = np.load(data / "preload.npy")
    n_words, limit = int(meta["output_words"]), int(meta["timeout_cycles"])

    Clock(dut.clk, meta["clock_ns"], unit="ns", impl="gpi").start()
    dut.rst.value = 1
    dut.input__valid.value = 0
    dut.input__payload.value = 0
    dut.output__ready.value = 1
    for _ in range(RESET_CYCLES):
        await FallingEdge(dut.clk)
    dut.rst.value = 0

    if len(preload):
        await _send(dut, preload, limit)
    words = np.zeros((len(inputs), n_words), dtype=np.int64)
    cycles = np.zeros(len(inputs), dtype=np.int64)
    for index, image in enumerate(inputs):
        await _send(dut, image, limit)
        words[index] = await _collect(dut, n_words, limit, index, meta["clock_ns"])
        cycles[index] = _word(dut.cycles.value)
    out = Path(os.environ["HWQ_ACCEL_OUT"])
    for name, values in (("cycles", cycles), ("words", words)):      # words last: the runner waits for it
        tmp = out / f".{name}.tmp.npy"
        np.save(tmp, values)
        os.replace(tmp, out / f"{name}.npy")
