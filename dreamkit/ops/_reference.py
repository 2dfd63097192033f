"""Pure-PyTorch references of every op: the fallback when dreamkit._C is missing, and the
oracle the tests compare the kernels with."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def jitter(x: torch.Tensor, shift_y: int, shift_x: int) -> torch.Tensor:
    """Wrap-around roll of the last two dims."""
    return torch.roll(x, shifts=(shift_y, shift_x), dims=(-2, -1))


def gram_matrix(x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """F Fᵀ with F = x viewed as (B, C, N), divided by C*N when ``normalize``."""
    features = x.flatten(2)
    gram = torch.bmm(features, features.transpose(1, 2))
    return gram / max(features.shape[1] * features.shape[2], 1) if normalize else gram


def gram_mse_loss(x: torch.Tensor, target: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """mean((G(x) - target)²), with autograd through the Gram matrix."""
    return (gram_matrix(x, normalize) - target).square().mean()


def octave_resample(x: torch.Tensor, size: tuple[int, int], shift: tuple[int, int] = (0, 0),
                    antialias: bool = False) -> torch.Tensor:
    """Bilinear resize (align_corners=False), then a wrap-around roll of the result by ``shift``."""
    resized = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=antialias)
    return jitter(resized, *shift)


def conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
            reflect_pad: int = 0) -> torch.Tensor:
    """A 3x3 convolution, stride 1, of x padded by reflection by ``reflect_pad`` (0: none)."""
    return F.conv2d(F.pad(x, (reflect_pad,) * 4, mode="reflect") if reflect_pad else x, weight, bias)


#: Winograd F(4x4, 3x3)'s filter transform matrix G (6 x 3).
WINOGRAD_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6), (1 / 24, 1 / 12, 1 / 6),
              (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))


def winograd_weight(weight: torch.Tensor) -> torch.Tensor:
    """G g Gᵀ of each 3x3 filter of weight (K, C, 3, 3), in float64, as (36, K, C) of weight's dtype."""
    g = torch.tensor(WINOGRAD_G, dtype=torch.float64, device=weight.device)
    u = g @ weight.double() @ g.T  # K, C, 6, 6
    return u.flatten(2).permute(2, 0, 1).to(weight.dtype).contiguous()


def instance_norm(x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None,
                  eps: float = 1e-5, relu: bool = True) -> torch.Tensor:
    """Instance normalisation with a per-channel scale and shift, then a ReLU when ``relu``."""
    out = F.instance_norm(x, weight=weight, bias=bias, eps=eps)
    return F.relu(out) if relu else out


def dream_update(image: torch.Tensor, grad: torch.Tensor, shift: tuple[int, int], step_size: float,
                 clamp: tuple[float | None, float | None] = (None, None), eps: float = 1e-8) -> torch.Tensor:
    """image + step_size * g / (mean|g| + eps), clamped; g = grad un-rolled by ``shift``; the mean
    per sample of a 4-D image, over the whole tensor otherwise."""
    g = jitter(grad, -shift[0], -shift[1])
    dims = tuple(range(1, g.dim())) if g.dim() == 4 else tuple(range(g.dim()))
    g = g / (g.abs().mean(dim=dims, keepdim=True) + eps)
    out = image + step_size * g
    return out if clamp[0] is None and clamp[1] is None else out.clamp(clamp[0], clamp[1])
