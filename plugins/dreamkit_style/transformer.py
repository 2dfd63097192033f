"""Feed-forward style networks (image transformation networks) and their exact tiled forward.

Two architectures, both fully convolutional, instance-normalised (Ulyanov et al. 2016), with
nearest upsampling followed by a convolution instead of transposed convolutions (no checkerboard
artefacts, Odena et al. 2016), reflection padding, and a skip from the input: the network learns
the change to the photo, and its last convolution starts at zero, so a fresh network is the
identity: it starts where the ``style`` effect's optimiser starts (the photo in the style's
colours) and learns the texture to add (:meth:`StyleNetwork.output_conv`).

* ``classic``: Johnson, Alahi and Fei-Fei (2016) as in pytorch/examples' ``fast_neural_style``:
  9x9 conv, two stride-2 convs (32, 64, 128 channels), five residual blocks, two upsample + conv
  stages, 9x9 conv.
* ``small``: the same plan at a fraction of the work: a 3x3 stride-2 conv in, a depthwise-separable
  stride-2 conv (24, 48 channels), four depthwise-separable residual blocks at 1/4 resolution, an
  upsample + depthwise-separable stage, and a sub-pixel convolution out (pixel shuffle, started as
  nearest upsampling): under 2% of ``classic``'s multiply-adds (0.45 G against 33 G at 512 px).

Either may read noise where its residual blocks start (:class:`NoiseSource`, ``noise_channels``):
fresh in training, a fixed field defined by position in inference.

Instance norm makes every output pixel depend on the whole image (its statistics are global), so
tiles cannot simply be stylised one by one. :func:`tiled_forward` is exact: it first measures each
norm layer's statistics over the whole image, tile by tile (one pass per norm layer over the layers
before it), then, with every statistic fixed, the network is a local operator and the tiles (with a
halo of its receptive field) give exactly the untiled result.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from dreamkit.ops import conv3x3, instance_norm, winograd_weight
from dreamkit.tiling import Geometry, plan_tiles

ARCHITECTURES = ("classic", "small")
MAX_NOISE_CHANNELS = 64
NOISE_PERIOD = 512  # activations of the inference noise field's tile (x stride 4: 2048 px)
NOISE_SEED = 20160310  # the inference field's (any fixed number: part of what a trained network learnt)
EPS = 1e-5


class InstanceNorm(nn.Module):
    """Instance normalisation with a learned scale and shift, and the ReLU after it when ``relu``,
    whose statistics can be fixed from outside (:func:`tiled_forward`). ``stride``: input pixels
    per activation where it sits. In inference it runs as :func:`dreamkit.ops.instance_norm` (one
    op: three passes over memory instead of six; see bench/ops.py)."""

    def __init__(self, channels: int, stride: int, relu: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.stride = stride
        self.relu = relu
        self.fixed: tuple[torch.Tensor, torch.Tensor] | None = None  # (mean, var), N x C x 1 x 1
        self.collect: _Collector | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.collect is not None:
            self.collect.add(x)
            raise _Collected
        if self.fixed is not None:
            mean, var = self.fixed
            scale = self.weight[None, :, None, None] * torch.rsqrt(var + EPS)
            out = (x - mean) * scale + self.bias[None, :, None, None]
        elif not torch.is_grad_enabled():
            return instance_norm(x, self.weight, self.bias, EPS, self.relu)
        else:
            out = F.instance_norm(x, weight=self.weight, bias=self.bias, eps=EPS)
        return F.relu(out, inplace=True) if self.relu else out


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    if kernel == 3 and stride == 1 and groups == 1 and min(cin, cout) >= _WinogradConv.MIN_CHANNELS:
        return _WinogradConv(cin, cout)
    return nn.Sequential(nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride, groups=groups))


class _KeptTransform:
    """A Winograd weight transform (:func:`dreamkit.ops.winograd_weight` of a weight, or of weights
    made from it) kept while that weight is unchanged: same storage, dtype and device, and no
    in-place update since (its version counter). Remade after an optimiser step or a load."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._value: torch.Tensor | None = None

    def get(self, weight: torch.Tensor, make) -> torch.Tensor:
        key = (weight.data_ptr(), weight._version, weight.dtype, weight.device, weight.shape)
        if key != self._key:
            self._value, self._key = make(weight), key
        return self._value


class _WinogradConv(nn.Sequential):
    """Reflection padding by 1 and a 3x3 convolution that in inference on the CPU run as
    :func:`dreamkit.ops.conv3x3` (Winograd F(4x4, 3x3): 4x fewer multiplies; the padding made on
    the fly and the weight transform kept). ``classic``'s ten 128-channel convolutions were ~60%
    of its pass; each runs 2x faster (66 -> 34 ms at 512 px, 2 threads of an AMD EPYC with AVX2).
    Below :attr:`MIN_CHANNELS` the GEMMs are too thin to pay. Training uses the direct
    convolution; the parameters are an nn.Conv2d's (model files are unchanged)."""

    MIN_CHANNELS = 64

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3))
        self.kept = _KeptTransform()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self[1]
        if torch.is_grad_enabled() or x.device.type != "cpu":
            return conv(self[0](x))
        return conv3x3(x, conv.weight, conv.bias, 1, self.kept.get(conv.weight, winograd_weight))


def _conv_norm_relu(cin: int, cout: int, kernel: int, stride: int, at: int) -> nn.Sequential:
    """A conv, then instance norm and ReLU; ``at``: the stride of its output."""
    return nn.Sequential(_conv(cin, cout, kernel, stride), InstanceNorm(cout, at, relu=True))


def _separable(cin: int, cout: int, stride: int, at: int, relu: bool = True) -> nn.Sequential:
    """Depthwise 3x3 (stride ``stride``) then pointwise 1x1, each normalised."""
    layers = [_conv(cin, cin, 3, stride, groups=cin), InstanceNorm(cin, at), nn.ReLU(inplace=True),
              nn.Conv2d(cin, cout, 1), InstanceNorm(cout, at)]
    return nn.Sequential(*layers, *([nn.ReLU(inplace=True)] if relu else []))


class _Residual(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _Upsample(nn.Module):
    """Nearest-neighbour x2 (then a convolution: no checkerboard)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest")


class NoiseSource(nn.Module):
    """Adds a learned 1x1 projection of ``noise_channels`` channels of Gaussian noise to the
    activations at ``stride`` (where the residual blocks start): something for the network to draw
    texture from where the photo is flat (Ulyanov et al. 2016's texture networks). Without it
    every network here painted flat areas as a flat lighter tone where the optimiser keeps a grain;
    with it ``classic``'s held-out style loss fell from 16.3x the optimised result's to 7.9x at
    400 steps (content 2.49x -> 2.54x; bench/fast_style.py's measure). Noise at the input instead
    reached 7.0x but content 2.82x, with streaks over the faces.

    In training each image gets fresh noise, drawn from its own seed (:attr:`seeds`, set by
    :meth:`StyleNetwork.forward`: a crop's noise depends on the step and its place in the global
    batch only, so Ray workers draw what one process draws). In inference every image gets the
    same field, defined by position: a fixed ``noise_channels`` x :data:`NOISE_PERIOD`² tile repeated
    (every :data:`NOISE_PERIOD` activations: 2048 px), read from :attr:`origin` (the input pixel of
    the crop's top-left, set by :func:`tiled_forward`), so tiles and batches see the same noise at
    the same pixel. In a video the field follows the picture instead (:attr:`at`, given by
    ``fast_style``): each activation reads the field where its surface was first seen, so the
    grain moves with what it was painted on, not with the frame."""

    def __init__(self, channels: int, noise_channels: int, stride: int) -> None:
        super().__init__()
        self.noise_channels = noise_channels
        self.stride = stride
        self.proj = nn.Conv2d(noise_channels, channels, 1)
        nn.init.normal_(self.proj.weight, std=0.3 / noise_channels ** 0.5)
        nn.init.zeros_(self.proj.bias)
        self.seeds: list[int] | None = None
        self.origin = (0, 0)
        self.at: torch.Tensor | None = None  # N|1 x 2 x h x w: the (y, x) input pixel each activation reads
        self._field: torch.Tensor | None = None

    def field(self, device: torch.device) -> torch.Tensor:
        """The inference tile (made on the CPU from a fixed seed: the same bits on every device)."""
        if self._field is None or self._field.device != device:
            generator = torch.Generator().manual_seed(NOISE_SEED)
            self._field = torch.randn(self.noise_channels, NOISE_PERIOD, NOISE_PERIOD, generator=generator).to(device)
        return self._field

    def noise(self, count: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        """``count`` × noise_channels × height × width noise for the activations at hand (float32)."""
        if self.seeds is not None:
            if len(self.seeds) != count:
                raise ValueError(f"{len(self.seeds)} noise seeds for a batch of {count}")
            return torch.stack([torch.randn(self.noise_channels, height, width,
                                            generator=torch.Generator().manual_seed(seed)) for seed in self.seeds]
                               ).to(device)
        top, left = self.origin[0] // self.stride, self.origin[1] // self.stride
        if self.at is not None:  # the field read where each activation's surface was first seen
            at = self.at[:, :, top:top + height, left:left + width].to(device)
            if at.shape[-2:] != (height, width) or at.shape[0] not in (1, count):
                raise ValueError(f"noise positions of shape {tuple(self.at.shape)} for {count} images of "
                                 f"{height}x{width} activations from {self.origin}")
            # Rounded, not floored: the identity map (4i) reads exactly the fixed field's cell i.
            rows, columns = (torch.round(at / self.stride).long() % NOISE_PERIOD).unbind(1)
            return self.field(device)[:, rows, columns].transpose(0, 1).expand(count, -1, -1, -1)
        rows = (torch.arange(height, device=device) + top) % NOISE_PERIOD
        columns = (torch.arange(width, device=device) + left) % NOISE_PERIOD
        window = self.field(device)[:, rows][:, :, columns]
        return window[None].expand(count, -1, -1, -1)

    @contextlib.contextmanager
    def given(self, seeds: list[int] | None = None, at: torch.Tensor | None = None) -> Iterator[None]:
        """Within: training's ``seeds``, or inference's positions ``at`` (None: the fixed field)."""
        self.seeds, self.at = seeds, at
        try:
            yield
        finally:
            self.seeds, self.at, self.origin = None, None, (0, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = self.noise(x.shape[0], x.shape[-2], x.shape[-1], x.device).to(x.dtype)
        return x + self.proj(noise)


def _classic(noise_channels: int = 0) -> nn.Sequential:
    blocks = [_Residual(nn.Sequential(_conv_norm_relu(128, 128, 3, 1, 4), _conv(128, 128, 3), InstanceNorm(128, 4)))
              for _ in range(5)]
    return nn.Sequential(
        _conv_norm_relu(3, 32, 9, 1, 1), _conv_norm_relu(32, 64, 3, 2, 2), _conv_norm_relu(64, 128, 3, 2, 4),
        *([NoiseSource(128, noise_channels, 4)] if noise_channels else []),
        *blocks,
        _up_norm_relu(128, 64, 2), _up_norm_relu(64, 32, 1),
        _FewChannelsOut(32, 3, 9))


def _up_norm_relu(cin: int, cout: int, at: int) -> nn.Sequential:
    return nn.Sequential(_UpConv(cin, cout), InstanceNorm(cout, at, relu=True))


class _UpConv(nn.Sequential):
    """Nearest upsampling x2, reflection padding and a 3x3 convolution (the resize-convolution of
    Odena et al.: no checkerboard). In inference it runs as the same function without making the
    upsampled image: each of the four output phases (even/odd row and column) reads only a 2x2
    neighbourhood of the small input, so one 2x2 convolution of it to the four phases' channels
    (weights: sums of the 3x3 kernel's rows and columns) and an interleave give the result with 4/9
    of the multiply-adds, equal up to float rounding (tested). One convolution to 4x the channels
    keeps oneDNN's output blocks full: 80 -> 73 and 93 -> 79 ms at 512 px, against four convolutions
    of one phase each. Training uses the direct path."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(_Upsample(), nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return super().forward(x)
        conv = self[2]
        cout = conv.out_channels
        # Upsampled row 2a+s reads small rows a-1, a (s=0: kernel rows 0 | 1+2) or a, a+1 (s=1:
        # 0+1 | 2); at the border the reflected upsampled row is the edge row: replicate padding.
        weight = conv.weight
        rows = (torch.stack([weight[:, :, 0], weight[:, :, 1] + weight[:, :, 2]], 2),
                torch.stack([weight[:, :, 0] + weight[:, :, 1], weight[:, :, 2]], 2))
        phases = [torch.stack(pair, -1) for kernel in rows
                  for pair in ((kernel[..., 0], kernel[..., 1] + kernel[..., 2]),
                               (kernel[..., 0] + kernel[..., 1], kernel[..., 2]))]  # (s, t) = 00, 01, 10, 11
        bias = None if conv.bias is None else conv.bias.repeat(4)
        z = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), torch.cat(phases), bias).contiguous()
        # Phase (s, t) of output pixel (a, b) is z[2s + t][:, a + s, b + t]: an affine function of
        # (o, a, s, b, t), so one strided view of z and one copy interleave the phases.
        n, _, rows_z, cols_z = z.shape
        plane, (height, width) = rows_z * cols_z, x.shape[-2:]
        view = z.as_strided((n, cout, height, 2, width, 2),
                            (z.stride(0), plane, cols_z, 2 * cout * plane + cols_z, 1, cout * plane + 1))
        return view.reshape(n, cout, 2 * height, 2 * width)


class _FewChannelsOut(nn.Sequential):
    """The last convolution (to 3 channels, a large kernel, full resolution). oneDNN computes
    output channels in blocks of 16, so with 3 it wastes most of its work: 244 ms at 512 px. In
    inference a K x K kernel (K a multiple of 3) runs as the sum of its (K/3)² 3x3 blocks, each
    applied where it sits: one 3x3 convolution to all the blocks' outputs (27 channels for 9x9 to
    3), then the (K/3)² shifted outputs added: the same products summed in another order (tested).
    On the CPU that convolution is :func:`dreamkit.ops.conv3x3` (the padding made on the fly, the
    weight transform kept): 244 -> ~55 ms (space-to-depth, 1.23x the multiply-adds: 111 ms; the
    blocks through oneDNN, 27 filters padded to 32: 75 ms). Training uses the direct convolution."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__(nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel))
        self.kept = _KeptTransform()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self[1]
        if torch.is_grad_enabled() or conv.kernel_size[0] % 3:
            return conv(self[0](x))
        blocks = _blocks(conv.weight)
        kept = self.kept.get(conv.weight, lambda weight: winograd_weight(_blocks(weight))) \
            if x.device.type == "cpu" else None
        z = conv3x3(x, blocks, None, conv.kernel_size[0] // 2, kept)
        return _shifted_sum(z, conv.out_channels, conv.kernel_size[0] // 3, x.shape[-2:], conv.bias)


def _blocks(weight: torch.Tensor) -> torch.Tensor:
    """A K x K kernel's (K = 3m) m² 3x3 blocks as the filters of one 3x3 convolution: filter
    (block (a, b), output o) = weight[o, :, 3a:3a+3, 3b:3b+3]."""
    out_channels, in_channels, size, _ = weight.shape
    m = size // 3
    blocks = weight.reshape(out_channels, in_channels, m, 3, m, 3).permute(2, 4, 0, 1, 3, 5)
    return blocks.reshape(m * m * out_channels, in_channels, 3, 3)


def _shifted_sum(z: torch.Tensor, out_channels: int, m: int, size: tuple[int, int],
                 bias: torch.Tensor | None) -> torch.Tensor:
    """The K x K convolution from its blocks' outputs ``z``: block (a, b)'s output shifted by (3a, 3b),
    summed, plus the bias; ``size``: the output's height and width."""
    height, width = size
    out = z.new_zeros(z.shape[0], out_channels, height, width) if bias is None else \
        bias[None, :, None, None].expand(z.shape[0], -1, height, width).clone()
    for a in range(m):
        for b in range(m):
            first = (a * m + b) * out_channels
            out += z[:, first:first + out_channels, 3 * a:3 * a + height, 3 * b:3 * b + width]
    return out


def _small(noise_channels: int = 0) -> nn.Sequential:
    blocks = [_Residual(_separable(48, 48, 1, 4, relu=False)) for _ in range(4)]
    return nn.Sequential(
        _conv_norm_relu(3, 24, 3, 2, 2), _separable(24, 48, 2, 4),
        *([NoiseSource(48, noise_channels, 4)] if noise_channels else []),
        *blocks,
        # Up: the pointwise part before upsampling (nearest upsampling commutes with it), the
        # depthwise after; out: a sub-pixel convolution (Shi et al. 2016) at half resolution.
        # A 3-channel 3x3 convolution at full resolution was a third of the whole pass (oneDNN
        # is slow with so few output channels): 109 -> 64 ms at 512 px with both changes.
        nn.Conv2d(48, 24, 1), InstanceNorm(24, 4), nn.ReLU(inplace=True), _Upsample(),
        _conv(24, 24, 3, groups=24), InstanceNorm(24, 2), nn.ReLU(inplace=True),
        _SubPixel(24, 3))


class _SubPixel(nn.Sequential):
    """A 3x3 convolution to 4x the channels, then pixel shuffle to twice the resolution. As the
    network's last layer it starts at zero (:class:`StyleNetwork`), so the four sub-pixels of a
    pixel begin equal: no checkerboard to unlearn (what ICNR's start, Aitken et al. 2017, is for)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(_conv(cin, 4 * cout, 3), nn.PixelShuffle(2))


class StyleNetwork(nn.Module):
    """An image transformation network: ``forward(x)`` takes N x 3 x H x W images (0..1, any size)
    and returns their stylised versions (unclamped: training sees the raw values; see
    :meth:`stylise`). Sizes that are not a multiple of :attr:`align` are padded by reflection and
    cropped back."""

    align = 4  # both architectures go down twice by 2

    def __init__(self, architecture: str = "classic", noise_channels: int = 0) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {architecture!r}; expected one of {', '.join(ARCHITECTURES)}")
        if not 0 <= noise_channels <= MAX_NOISE_CHANNELS:
            raise ValueError(f"noise_channels {noise_channels} is not allowed; expected 0 to {MAX_NOISE_CHANNELS}")
        self.architecture = architecture
        self.noise_channels = noise_channels
        self.body = (_classic if architecture == "classic" else _small)(noise_channels)
        with torch.no_grad():
            self.output_conv().weight.zero_()
            self.output_conv().bias.zero_()
        self._radius: int | None = None

    def output_conv(self) -> nn.Conv2d:
        """The last convolution. It starts at zero, so a fresh network is the identity: training
        starts at the optimiser's own start and learns only the texture to add. With PyTorch's
        default (random) start the network added random texture that training first had to
        unlearn: at 400 training steps (small, ihc.png, bench/fast_style.py's measure: held-out
        photos at 512 px) the style loss was 14.9x the optimised result's, and 8.8x from zero."""
        return [module for module in self.body.modules() if isinstance(module, nn.Conv2d)][-1]

    def forward(self, x: torch.Tensor, noise_seeds: list[int] | None = None,
                noise_at: torch.Tensor | None = None) -> torch.Tensor:
        """For networks with a :class:`NoiseSource`: ``noise_seeds``, in training, one seed per
        image for its fresh noise; ``noise_at`` (N|1 × 2 × h × w, in inference: a video's, from
        ``fast_style``'s ``carried_noise_positions``), the input pixel where each activation reads
        the fixed field; neither: the field at the activation's own place."""
        height, width = x.shape[-2:]
        padded = _pad_to(x, self.align)
        with self.noise_given(noise_seeds, noise_at):
            return (padded + self.body(padded))[..., :height, :width]

    def noise_source(self) -> NoiseSource | None:
        """The noise source, if the network has one."""
        return next((module for module in self.body if isinstance(module, NoiseSource)), None)

    def noise_given(self, seeds: list[int] | None = None,
                    at: torch.Tensor | None = None) -> contextlib.AbstractContextManager:
        """:meth:`NoiseSource.given` on the network's noise source (nothing without one)."""
        source = self.noise_source()
        return source.given(seeds, at) if source is not None else contextlib.nullcontext()

    @torch.no_grad()
    def stylise(self, x: torch.Tensor, tile_size: int = 0, noise_at: torch.Tensor | None = None) -> torch.Tensor:
        """The stylised images, clamped to 0..1; in tiles of about ``tile_size`` pixels (0: one
        piece), with exactly the same result. ``noise_at``: as in :meth:`forward`."""
        if tile_size <= 0 or (x.shape[-2] <= tile_size and x.shape[-1] <= tile_size):
            return self(x, noise_at=noise_at).clamp_(0, 1)
        return tiled_forward(self, x, tile_size, noise_at).clamp_(0, 1)

    def norms(self) -> list[InstanceNorm]:
        """The instance norms, in the order the forward pass meets them."""
        return [module for module in self.body.modules() if isinstance(module, InstanceNorm)]

    def geometry(self) -> Geometry:
        """The stride every crop must start on and the receptive-field radius with fixed norm
        statistics (measured once: the gradient of one output pixel's reach)."""
        if self._radius is None:
            self._radius = _measure_radius(self)
        return Geometry({"out": self.align}, self._radius)

    def bytes_per_pixel(self) -> int:
        """About the peak memory of an inference pass per input pixel: the widest stage's
        activation (channels over stride squared, float32) held about three times (input, output,
        a temporary)."""
        widest = max(conv.out_channels / norm.stride ** 2 for conv, norm in _convs_with_norms(self))
        return int(3 * 4 * max(widest, 3))


def _convs_with_norms(network: StyleNetwork) -> Iterator[tuple[nn.Conv2d, InstanceNorm]]:
    conv = None
    for module in network.body.modules():
        if isinstance(module, nn.Conv2d):
            conv = module
        elif isinstance(module, InstanceNorm) and conv is not None:
            yield conv, module


def _measure_radius(network: StyleNetwork, probe: int = 256) -> int:
    """How far one output pixel reaches into the input with the norm statistics fixed (then the
    network is local): the extent of the nonzero input gradient of the centre pixel, rounded up."""
    while True:
        parameter = next(network.parameters())
        x = torch.rand(1, 3, probe, probe, device=parameter.device, dtype=parameter.dtype, requires_grad=True)
        norms = network.norms()
        try:
            for norm in norms:
                norm.fixed = (x.new_zeros(1, norm.weight.numel(), 1, 1), x.new_ones(1, norm.weight.numel(), 1, 1))
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(network.body(x)[0, :, probe // 2, probe // 2].sum(), x)
        finally:
            for norm in norms:
                norm.fixed = None
        rows, cols = torch.nonzero(grad[0].abs().sum(0), as_tuple=True)
        if len(rows) == 0:
            return 0
        reach = max(probe // 2 - int(rows.min()), int(rows.max()) - probe // 2,
                    probe // 2 - int(cols.min()), int(cols.max()) - probe // 2)
        if reach < probe // 2 - network.align:
            return reach + 1
        probe *= 2


def _pad_to(x: torch.Tensor, align: int) -> torch.Tensor:
    pad_h, pad_w = -x.shape[-2] % align, -x.shape[-1] % align
    if not pad_h and not pad_w:
        return x
    mode = "reflect" if min(x.shape[-2:]) > max(pad_h, pad_w) else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


class _Collected(Exception):
    """Stops a forward pass once the norm layer being measured has its input."""


class _Collector:
    """Sums of a norm layer's input over the activations one tile owns."""

    def __init__(self) -> None:
        self.sum: torch.Tensor | float = 0.0
        self.square: torch.Tensor | float = 0.0
        self.count = 0
        self.region: tuple[slice, slice] = (slice(None), slice(None))

    def add(self, x: torch.Tensor) -> None:
        owned = x[..., self.region[0], self.region[1]].double()
        self.sum = self.sum + owned.sum((2, 3), keepdim=True)
        self.square = self.square + owned.square().sum((2, 3), keepdim=True)
        self.count += owned.shape[-2] * owned.shape[-1]

    def statistics(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.sum / self.count
        var = (self.square / self.count - mean.square()).clamp_(min=0)
        return mean.to(dtype), var.to(dtype)


def _owned(crop: tuple[int, int], core: tuple[int, int], full: int, stride: int, size: int) -> slice:
    start = (core[0] - crop[0]) // stride
    return slice(start, size if core[1] == full else (core[1] - crop[0]) // stride)


@torch.no_grad()
def tiled_forward(network: StyleNetwork, x: torch.Tensor, tile_size: int,
                  noise_at: torch.Tensor | None = None) -> torch.Tensor:
    """``network(x, noise_at=noise_at)`` computed in tiles of about ``tile_size`` pixels: the same
    result (up to float rounding), at the memory of one tile (see the module's docstring)."""
    height, width = x.shape[-2:]
    padded = _pad_to(x, network.align)
    tiles = plan_tiles(*padded.shape[-2:], tile_size, network.geometry())
    norms = network.norms()
    source = network.noise_source()  # reads its field from each crop's place in the image
    with network.noise_given(at=noise_at):  # reset on the way out (the source's origin too)
        try:
            for norm in norms:  # each norm's statistics, given those before it
                collector = norm.collect = _Collector()
                for tile in tiles:
                    (y0, y1), (x0, x1) = tile.crop
                    stride, full = norm.stride, padded.shape[-2:]
                    collector.region = (_owned((y0, y1), tile.core[0], full[0], stride, (y1 - y0) // stride),
                                        _owned((x0, x1), tile.core[1], full[1], stride, (x1 - x0) // stride))
                    if source is not None:
                        source.origin = (y0, x0)
                    try:
                        network.body(padded[..., y0:y1, x0:x1])
                    except _Collected:
                        pass
                norm.collect = None
                norm.fixed = collector.statistics(x.dtype)
            out = torch.empty_like(padded)
            for tile in tiles:
                (y0, y1), (x0, x1) = tile.crop
                (c0, c1), (d0, d1) = tile.core
                crop = padded[..., y0:y1, x0:x1]
                if source is not None:
                    source.origin = (y0, x0)
                result = crop + network.body(crop)
                out[..., c0:c1, d0:d1] = result[..., c0 - y0:c1 - y0, d0 - x0:d1 - x0]
        finally:
            for norm in norms:
                norm.fixed = norm.collect = None
    return out[..., :height, :width]
