"""The accelerator generator: Amaranth hardware that runs an exported integer program
(docs/integer-semantics.md) bit for bit, designed in docs/accelerator.md.

- :mod:`hwq.accel.top`: :class:`Accelerator`, the whole model: activation memory, sequencer,
  conv engine and vector unit, stream in and out.
- :mod:`hwq.accel.schedule` (numpy only): the integer model compiled for an ``R x C`` PE array
  (memory map, weight and parameter images, loop nests, cycle counts), and run in numpy as the
  sequencer runs it.
- :mod:`hwq.accel.address`: :class:`ConvAddressGenerator`, a convolution's loop nest.
- :mod:`hwq.accel.array`: :class:`PEArray` (output-stationary MAC cells, decoders at the edge,
  accumulators drained one per cycle) and :class:`TableDecoder`.
- :mod:`hwq.accel.conv`: :class:`ConvEngine`, a schedule's convolution and linear steps (address
  generator, PE array, parameter memory, requantizer) on the activation memory's ports.
- :mod:`hwq.accel.vector`: :class:`VectorUnit`, its add, average-pool, max-pool and pad steps.
- :mod:`hwq.accel.requant`: :class:`Requantizer` (exact accumulator, bias, multiplier and
  shift to the output format's code through a pipelined :class:`ThresholdEncoder`).
- :mod:`hwq.accel.memory`: :class:`ActivationMemory`, one memory with ``R`` read ports or
  single-port banks (the UP5K's SPRAM).
- :mod:`hwq.accel.fit`: the design's memories mapped onto a part's EBR and SPRAM, before
  synthesis.
- :mod:`hwq.accel.emit`: the Verilog and its manifest; :mod:`hwq.accel.report`: the report.
- :mod:`hwq.accel.verify` (numpy only): the expected read-back of every tensor and mismatches
  named by layer, channel, position and operands.
"""

from .address import ConvAddressGenerator
from .array import PEArray, TableDecoder
from .conv import ConvEngine
from .memory import ActivationMemory
from .requant import MAX_ACC_WIDTH, MAX_INDEX_BITS, MAX_Q_WIDTH, SHIFT_BITS, Requantizer, ThresholdEncoder
from .schedule import Array, Schedule, execute, schedule
from .top import Accelerator
from .vector import VectorUnit

__all__ = ["Accelerator", "Array", "Schedule", "schedule", "execute", "ConvAddressGenerator", "PEArray", "TableDecoder",
           "ConvEngine", "VectorUnit", "ActivationMemory",
           "ThresholdEncoder", "Requantizer", "MAX_ACC_WIDTH", "MAX_INDEX_BITS", "MAX_Q_WIDTH", "SHIFT_BITS"]
