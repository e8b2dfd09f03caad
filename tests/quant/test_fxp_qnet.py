"""hwq.quant.fxp_qnet: FxP-QNet's word-length allocation and self-distillation."""

import pytest
import torch

from hwq.errors import HwqError


def test_fxp_qnet_word_length_allocation_stays_within_budget(digits):
    from hwq.quant.fxp_qnet import allocate_word_lengths, disagreement, self_distill
    model, (x_train, _, _, _) = digits
    x = x_train[:96]
    # 8-bit fxp disagrees with the teacher on about 2 of these 96 inputs: a 10 % budget (about 10
    # inputs) leaves the search room to lower widths without the test hinging on one input
    result = allocate_word_lengths(model, x, start_bits=8, min_bits=6, budget=0.10)
    with torch.no_grad():
        teacher = model(x)
    assert result.disagreement <= 0.10
    assert disagreement(result.model, teacher, x) == result.disagreement
    assert all(6 <= b[k] <= 8 for b in result.bits.values() for k in ("weights", "activations"))
    assert result.history, "nothing was lowered"
    memory = [step["memory_bits"] for step in result.history]
    assert memory == sorted(memory, reverse=True) and memory[-1] == result.memory_bits
    for name, bits in result.bits.items():
        layer = result.model.layers[name]
        assert (layer.weight_quantizer.format.bits, layer.input_quantizer.format.bits) == \
            (bits["weights"], bits["activations"])
    first = self_distill(result.model, model, x, epochs=1, device="cpu")
    last = self_distill(result.model, model, x, epochs=2, device="cpu")
    assert last <= first + 1e-3
    with pytest.raises(HwqError, match="budget"):
        allocate_word_lengths(model, x, budget=2)
    with pytest.raises(HwqError, match="already disagrees"):
        allocate_word_lengths(model, x, start_bits=3, budget=0.0)
