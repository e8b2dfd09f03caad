"""hwq.quant.graph: tracing and BatchNorm folding."""

import torch
from torch import nn

from hwq.quant.graph import fold_batchnorm, trace


def test_batchnorm_folding_keeps_the_function(digits):
    model, (_, _, x_test, _) = digits
    folded = fold_batchnorm(trace(model))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        torch.testing.assert_close(folded(x_test[:64]), model.eval()(x_test[:64]), rtol=1e-4, atol=1e-4)
