"""Golden formats take torch tensors as input: the front end hands them its tensors directly."""

import numpy as np
import torch

from hwq.formats import FixedPoint


def test_quantize_with_scale_and_torch_input():
    fmt = FixedPoint(8, frac=4)
    x = torch.linspace(-3, 3, 101)
    np.testing.assert_array_equal(fmt.quantize(x, 0.5), fmt.encode(x.numpy().astype(np.float64) / 0.5))
