"""hwq.accel.verify: the expected activation-memory image after an inference, and mismatch records
that name the tensor, channel, position, expected and actual code and the operands.

The Mixed model (tests/accel/test_schedule.py: every step kind, grouped, depthwise, strided and
dilated convolutions, a linear layer) is compiled with ``keep_all``; every corrupted word's
channel and position are computed here from the region's base and CHW shape, and a layer's
operands are gathered here from the integer model's tensors by numpy slicing, independently of
the module under test.
"""

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from hwq.accel import verify
from hwq.accel.schedule import Array, execute, schedule
from hwq.accel.verify import describe, expected_dump, find_mismatches
from hwq.errors import InputError

from .test_vector import _mixed


@pytest.fixture(scope="module")
def mixed():
    """``(imodel, sched, codes, trace)`` of the Mixed model in fxp8 on a 2x3 array, keep_all."""
    imodel, codes = _mixed(("fxp8", "fxp8"))
    sched = schedule(imodel, (3, 13, 11), Array(2, 3), keep_all=True)
    trace = {}
    imodel.run_codes(codes, trace=trace)
    return imodel, sched, codes[0], {name: np.asarray(value)[0] for name, value in trace.items()}


def _address(region, channel, y=None, x=None):
    """Word of ``(channel, y, x)`` in a CHW region (``(channel,)`` in a 1-D one)."""
    if len(region.shape) == 1:
        return region.base + channel
    _, h, w = region.shape
    return region.base + (channel * h + y) * w + x


def test_expected_dump_is_the_numpy_sequencers_memory(mixed):
    """Every region of the expected image equals what the schedule's own numpy sequencer
    (:func:`hwq.accel.schedule.execute`) writes there, and the mask covers exactly the regions."""
    imodel, sched, codes, _ = mixed
    image, mask = expected_dump(sched, imodel, codes)
    assert image.shape == mask.shape == (sched.act_words,) and image.dtype == np.int64
    steps = {}
    execute(sched, codes, trace=steps)
    steps[imodel.input] = codes
    covered = np.zeros(sched.act_words, bool)
    for name, region in sched.regions.items():
        if name in steps:
            assert np.array_equal(image[region.base:region.base + region.size], np.ravel(steps[name])), name
        covered[region.base:region.base + region.size] = True
    assert np.array_equal(mask, covered) and mask.all()          # keep_all packs the regions


def test_a_correct_image_has_no_mismatch(mixed):
    imodel, sched, codes, _ = mixed
    image, _ = expected_dump(sched, imodel, codes)
    assert find_mismatches(sched, imodel, codes, image) == []
    assert find_mismatches(sched, imodel, codes, list(image)) == []
    assert describe([]) == ""


def test_words_of_no_region_are_not_compared(mixed):
    """A schedule with a gap in its memory map (a region moved up by 5 words): the gap's words
    are masked out and never reported."""
    imodel, sched, codes, _ = mixed
    last = max(sched.steps, key=lambda s: s.out.base)
    moved = dataclasses.replace(last.out, base=last.out.base + 5)
    regions = {name: moved if r == last.out else r for name, r in sched.regions.items()}
    gapped = dataclasses.replace(sched, regions=regions, act_words=sched.act_words + 5,
                                 steps=[dataclasses.replace(s, out=moved) if s is last else s for s in sched.steps],
                                 output=moved if sched.output == last.out else sched.output)
    image, mask = expected_dump(gapped, imodel, codes)
    assert not mask[last.out.base:last.out.base + 5].any() and mask.sum() == sched.act_words
    image[last.out.base:last.out.base + 5] = 12345
    assert find_mismatches(gapped, imodel, codes, image) == []


@pytest.mark.parametrize("kind", ["layer", "add", "avgpool", "maxpool", "pad"])
def test_a_corrupted_word_is_reported_where_it_is(mixed, kind):
    """One word of a step's output region changed: exactly one record, naming that tensor, the
    channel and position computed from the region's base and shape, the expected and actual
    code and the operands."""
    imodel, sched, codes, trace = mixed
    step = next(s for s in sched.steps if ("layer" if s.kind == "conv" else s.kind) == kind
                and len(s.out.shape) == 3)
    region = step.out
    c, h, w = region.shape
    channel, y, x = c - 1, h // 2, w - 1
    address = _address(region, channel, y, x)
    image, _ = expected_dump(sched, imodel, codes)
    want = int(trace[region.tensor][channel, y, x])
    got = (want + 3) % 256
    words = image.copy()
    words[address] = got
    found = find_mismatches(sched, imodel, codes, words)
    assert len(found) == 1
    m = found[0]
    assert (m.tensor, m.kind, m.channel, m.position, m.address) == (region.tensor, kind, channel, (y, x), address)
    assert (m.expected, m.actual, m.differing, m.size) == (want, got, 1, c * h * w)
    text = describe(found)
    assert f"{kind} {region.tensor}: channel {channel}, position ({y}, {x})" in text
    assert f"expected code {want}, got {got}" in text
    op = next(o for o in imodel.ops if o.name == region.tensor)
    source = trace[op.inputs[0]]
    if kind == "layer":
        assert m.operands["accumulator"] == int(trace[op.name + ".acc"][channel, y, x])
        assert f"accumulator {m.operands['accumulator']}" in text
        cg = source.shape[0] // op.groups
        group = channel // (c // op.groups)
        top, bottom, left, right = op.padding
        padded = np.pad(source, ((0, 0), (top, bottom), (left, right)), constant_values=op.pad_code)
        kh, kw = op.weight_codes.shape[2:]
        (sy, sx), (dy, dx) = op.stride, op.dilation
        window = padded[group * cg:(group + 1) * cg, y * sy:y * sy + (kh - 1) * dy + 1:dy,
                        x * sx:x * sx + (kw - 1) * dx + 1:dx]
        assert np.array_equal(m.operands["inputs"], window.ravel())
        assert np.array_equal(m.operands["read"], window.ravel())
        assert np.array_equal(m.operands["weights"], op.weight_codes[channel].ravel())
        values = op.a_format.int_values[window.ravel()] * op.w_format.int_values[op.weight_codes[channel].ravel()]
        assert int(values.sum()) == m.operands["accumulator"]
    elif kind == "add":
        assert list(m.operands["inputs"]) == [int(trace[name][channel, y, x]) for name in op.inputs]
    elif kind == "pad":
        top, _, left, _ = op.padding
        inside = 0 <= y - top < source.shape[1] and 0 <= x - left < source.shape[2]
        assert list(m.operands["inputs"]) == ([int(source[channel, y - top, x - left])] if inside else [])
    else:
        assert m.operands["source"] == op.inputs[0] and len(m.operands["inputs"]) >= 1
        if kind == "maxpool":
            assert want in list(m.operands["inputs"])


def test_a_linear_layer_has_no_position(mixed):
    imodel, sched, codes, trace = mixed
    step = next(s for s in sched.steps if s.kind == "conv" and len(s.out.shape) == 1)
    image, _ = expected_dump(sched, imodel, codes)
    words = image.copy()
    words[_address(step.out, 2)] += 1
    m, = find_mismatches(sched, imodel, codes, words)
    assert (m.tensor, m.channel, m.position) == (step.name, 2, None)
    assert m.operands["accumulator"] == int(trace[step.name + ".acc"][2])
    assert f"layer {step.name}: channel 2 (word " in describe([m])


def test_the_first_wrong_layer_comes_first_and_the_limit_holds(mixed):
    """Corruptions in a late and an early region come back in step order; a wrong input is
    shown as a differing read-back operand of the layer that reads it; the limit caps the list."""
    imodel, sched, codes, _ = mixed
    image, _ = expected_dump(sched, imodel, codes)
    first, last = sched.steps[0], sched.steps[-1]
    words = image.copy()
    words[last.out.base] += 1
    words[first.out.base + first.out.size - 1] += 1
    found = find_mismatches(sched, imodel, codes, words)
    assert [m.tensor for m in found] == [first.name, last.name]

    words = np.zeros_like(image)
    found = find_mismatches(sched, imodel, codes, words, limit=3)
    assert len(found) == 3 and all(m.tensor == imodel.input and m.kind == "input" for m in found)
    assert found[0].differing == np.count_nonzero(codes)

    words = image.copy()
    words[sched.input.base] = -1                                  # X in the input
    words[first.out.base] = -1                                    # and X in the first layer's output
    found = find_mismatches(sched, imodel, codes, words)
    assert [m.actual for m in found] == [-1, -1]
    assert "got X" in describe(found) and "read back [X" in describe(found[1:])


def test_bad_arguments(mixed):
    imodel, sched, codes, _ = mixed
    image, _ = expected_dump(sched, imodel, codes)
    with pytest.raises(InputError, match="words must be"):
        find_mismatches(sched, imodel, codes, image[:-1])
    with pytest.raises(InputError, match="words must be"):
        find_mismatches(sched, imodel, codes, image.astype(float))
    with pytest.raises(InputError, match="codes must be"):
        expected_dump(sched, imodel, codes[None])
    with pytest.raises(InputError, match="codes must be"):
        expected_dump(sched, imodel, codes.astype(float))
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="limit"):
            find_mismatches(sched, imodel, codes, image, limit=bad)
    with pytest.raises(InputError, match="sched must be a Schedule"):
        expected_dump("sched", imodel, codes)
    reused = schedule(imodel, (3, 13, 11), Array(2, 3))            # regions reused: not readable back
    with pytest.raises(InputError, match="keep_all=True"):
        expected_dump(reused, imodel, codes)
    other, _ = _mixed(("ant4", "ant8"))
    renamed = dataclasses.replace(sched, regions={name + "_x": r for name, r in sched.regions.items()})
    with pytest.raises(InputError, match="imodel lacks"):
        expected_dump(renamed, other, codes)


def test_numpy_only():
    """verify.py imports neither torch, amaranth nor hwq.quant (it runs beside any simulator)."""
    tree = ast.parse(Path(verify.__file__).read_text())
    names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    names += [("." * node.level) + (node.module or "") for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert not [n for n in names if n.split(".")[0] in ("torch", "amaranth") or "quant" in n], names
