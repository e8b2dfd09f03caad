"""hwq.quant.calibrate: per-tensor and per-channel quantizers on the golden formats."""

import numpy as np

from hwq.quant import calibrate


def test_per_channel_quantizer_matches_the_golden_format():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 3, 3, 3))
    q = calibrate("ant4", w, role="weight")
    assert q.scale.shape == (6,) and q.channel_axis == 0
    for c in range(6):
        np.testing.assert_array_equal(q.fake_quantize(w)[c], q.format.fake_quantize(w[c], q.scale[c]))
    assert set(q.candidates) == {"int", "flint", "pot"}
