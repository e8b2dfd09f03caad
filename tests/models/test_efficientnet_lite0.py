"""EfficientNet-Lite0 with its real ImageNet weights: strict loading, tracing, padding, predictions.

The expected classes are ImageNet-1k indices picked from what each photo shows (the standard
class list), not from this model's output: sets of plausible classes, not one exact answer.
"""

import pytest
import torch
from torch import nn

from hwq.errors import InputError
from hwq.models.efficientnet_lite0 import (
    BN_EPS, EfficientNetLite0, efficientnet_lite0, normalize, same_padding, weights_path)
from hwq.models.photos import centre_crops

#: ImageNet-1k classes that describe each photo (index: class name in the standard list)
PLAUSIBLE = {
    # a Chinese temple hall among trees
    "china": {442, 449, 663, 668, 698, 832},     # bell cote, boathouse, monastery, mosque, palace, stupa
    # a pink flower head, close up
    "flower": {984, 985, 986},                   # rapeseed, daisy, yellow lady's slipper
    # a cup of espresso on a saucer
    "coffee": {504, 967, 968},                   # coffee mug, espresso, cup
    # a tabby cat
    "chelsea": {281, 282, 283, 284, 285},        # tabby, tiger cat, Persian, Siamese, Egyptian cat
    # a rocket on its launch pad
    "rocket": {657, 744, 812},                   # missile, projectile/missile, space shuttle
    # a motorcycle
    "motorcycle": {665, 670},                    # moped, motor scooter
    # "astronaut" is left out: ImageNet-1k has no astronaut or space-suit class
}


@pytest.fixture(scope="module")
def model():
    return efficientnet_lite0()


@pytest.fixture(scope="module")
def probabilities(model):
    x, names = centre_crops()
    with torch.no_grad():
        return dict(zip(names, model(x).softmax(1)))


def test_loads_every_checkpoint_key_strictly(model):
    checkpoint = torch.load(weights_path(), map_location="cpu", weights_only=True)
    assert set(model.state_dict()) == set(checkpoint)
    assert len(checkpoint) == 296
    for key, value in checkpoint.items():
        assert torch.equal(model.state_dict()[key], value), key
    # and a fresh model accepts the file with strict=True (efficientnet_lite0 already did)
    EfficientNetLite0().load_state_dict(checkpoint, strict=True)


def test_architecture(model):
    assert not model.training
    assert sum(p.numel() for p in model.parameters()) == 4_652_008      # Lite0's 4.65 M parameters
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 16 * 2 + 15 + 1                            # stem, dw + project, expand, head
    assert all(m.bias is None for m in convs)
    assert all(m.eps == BN_EPS for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert not any(isinstance(m, (nn.SiLU, nn.Sigmoid, nn.ReLU)) for m in model.modules())
    residual = [i for i, block in enumerate(model._blocks) if block.residual]
    assert residual == [2, 4, 6, 7, 9, 10, 12, 13, 14]


def test_tensorflow_same_padding():
    assert same_padding(224, 3, 2) == (0, 1, 112)
    assert same_padding(56, 5, 2) == (1, 2, 28)
    assert same_padding(225, 3, 2) == (1, 1, 113)
    assert same_padding(7, 5, 1) == (2, 2, 7)
    assert same_padding(1, 1, 1) == (0, 0, 1)


def test_padding_modules_pad_right_and_bottom(model):
    pads = {name: m.padding for name, m in model.named_modules() if isinstance(m, nn.ZeroPad2d)}
    assert pads == {"_stem_pad": (0, 1, 0, 1), "_blocks.1._depthwise_pad": (0, 1, 0, 1),
                    "_blocks.3._depthwise_pad": (1, 2, 1, 2), "_blocks.5._depthwise_pad": (0, 1, 0, 1),
                    "_blocks.11._depthwise_pad": (1, 2, 1, 2)}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and m.stride == (2, 2):
            assert m.padding == (0, 0), name
        elif isinstance(m, nn.Conv2d):
            assert m.padding == (m.kernel_size[0] // 2,) * 2, name


def test_symbolic_trace_matches_eager(model):
    graph_module = torch.fx.symbolic_trace(model)
    targets = {type(graph_module.get_submodule(n.target)) for n in graph_module.graph.nodes if n.op == "call_module"}
    assert targets == {nn.ZeroPad2d, nn.Conv2d, nn.BatchNorm2d, nn.ReLU6, nn.AdaptiveAvgPool2d, nn.Dropout, nn.Linear}
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(graph_module(x), model(x))


def test_other_image_size_shapes():
    model = efficientnet_lite0(pretrained=False, image_size=97)
    assert model.feature_size == 4
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 97, 97)).shape == (1, 1000)
    torch.fx.symbolic_trace(model)


@pytest.mark.parametrize("size", [31, 0, 224.0, True, "224"])
def test_bad_image_size(size):
    with pytest.raises(InputError, match="image_size"):
        EfficientNetLite0(image_size=size)


def test_normalize():
    x = torch.tensor([0.0, 127.5, 255.0])
    assert torch.allclose(normalize(x), torch.tensor([-1.0, 0.0, 1.0]))
    assert normalize(torch.tensor([255], dtype=torch.uint8)).dtype == torch.float32


@pytest.mark.parametrize("photo", sorted(PLAUSIBLE))
def test_whole_photo_top1_is_plausible(probabilities, photo):
    top1 = int(probabilities[photo].argmax())
    assert top1 in PLAUSIBLE[photo], f"{photo}: top-1 {top1}, top-5 {probabilities[photo].topk(5).indices.tolist()}"


def test_confident_on_the_clearest_photos(probabilities):
    assert probabilities["coffee"].max() > 0.5
    assert probabilities["motorcycle"].max() > 0.5
    # the cat's probability mass sits on the five domestic-cat classes
    assert probabilities["chelsea"][281:286].sum() > 0.7
