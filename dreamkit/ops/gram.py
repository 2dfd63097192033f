"""``gram_matrix`` and ``gram_mse_loss``: the Gram matrices of neural style transfer.

``gram_matrix(x)`` is F Fᵀ with F = x viewed as (B, C, N) (N = H*W), divided by C*N by default.
The CPU kernel computes only the tiles on and below the diagonal and mirrors them (about half
the flops) where that pays, C >= 192; the CUDA kernel calls cuBLAS (``bmm``).

``gram_mse_loss(x, target)`` is the style loss mean((G(x) - target)²). Autograd through a Gram
matrix costs two GEMMs plus a transposed add; its backward here is one GEMM, (D + Dᵀ) F with
D = dloss/dG, and no autograd graph of the Gram matrix is kept.
"""

from __future__ import annotations

import torch

from . import _reference
from ._checks import check_tensor
from ._extension import extension, kernel_devices

_GRAM = "dreamkit::gram_matrix"
_LOSS = "dreamkit::gram_mse_loss"


def _features_grad(grad_gram: torch.Tensor, x: torch.Tensor, normalize: bool) -> torch.Tensor:
    """dloss/dx from dloss/dG: (D + Dᵀ) F, scaled as G was. One GEMM; differentiable itself."""
    features = x.flatten(2)
    scale = 1.0 / max(features.shape[1] * features.shape[2], 1) if normalize else 1.0
    symmetric = (grad_gram + grad_gram.transpose(1, 2)) * scale
    return torch.bmm(symmetric.to(features.dtype), features).reshape(x.shape)


def _register() -> bool:
    if extension() is None:
        return False

    @torch.library.register_fake(_GRAM)
    def _(x, normalize):
        return x.new_empty((x.shape[0], x.shape[1], x.shape[1]))

    @torch.library.register_fake(_LOSS)
    def _(x, target, normalize):
        return x.new_empty(()), x.new_empty((x.shape[0], x.shape[1], x.shape[1]))

    def gram_setup(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.normalize = inputs[1]

    def gram_backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return _features_grad(grad, x, ctx.normalize), None

    torch.library.register_autograd(_GRAM, gram_backward, setup_context=gram_setup)

    def loss_setup(ctx, inputs, output):
        x, target, normalize = inputs
        ctx.save_for_backward(x, output[1])
        ctx.normalize = normalize
        ctx.target_shape = target.shape
        ctx.target_dtype = target.dtype

    def loss_backward(ctx, grad_loss, grad_diff):
        x, diff = ctx.saved_tensors
        grad_gram = diff * (2.0 / max(diff.numel(), 1)) * grad_loss
        if grad_diff is not None:
            grad_gram = grad_gram + grad_diff
        grad_x = _features_grad(grad_gram, x, ctx.normalize) if ctx.needs_input_grad[0] else None
        grad_target = None
        if ctx.needs_input_grad[1]:
            grad_target = -grad_gram.sum_to_size(ctx.target_shape).to(ctx.target_dtype)
        return grad_x, grad_target, None

    torch.library.register_autograd(_LOSS, loss_backward, setup_context=loss_setup)
    return True


_REGISTERED = _register()
_GRAM_KERNELS = kernel_devices(_GRAM) if _REGISTERED else {}
_LOSS_KERNELS = kernel_devices(_LOSS) if _REGISTERED else {}


def _check_x(op: str, x) -> None:
    check_tensor(op, "x", x, dims=(3, 4), layout="(B, C, H, W) or (B, C, N)", floating=True)


def gram_matrix(x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """The Gram matrix (B, C, C) of ``x`` (B, C, H, W) or (B, C, N); divided by C*N if ``normalize``.

    Differentiable (one-GEMM backward). Any float dtype; NCHW, channels_last or strided input.
    """
    _check_x("gram_matrix", x)
    if _GRAM_KERNELS.get(x.device.type, False):
        return torch.ops.dreamkit.gram_matrix(x, bool(normalize))
    return _reference.gram_matrix(x, bool(normalize))


def gram_mse_loss(x: torch.Tensor, target: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Style loss: the mean of (gram_matrix(x, normalize) - target)² over every element.

    ``target`` is (C, C) (one style for the whole batch) or (B or 1, C, C), usually
    ``gram_matrix(style_features).detach()``. Differentiable in ``x`` and ``target``.
    """
    _check_x("gram_mse_loss", x)
    check_tensor("gram_mse_loss", "target", target, dims=(2, 3), layout="(C, C) or (B, C, C)", floating=True)
    channels = x.shape[1]
    batch_ok = target.dim() == 2 or target.shape[0] in (1, x.shape[0])
    if tuple(target.shape[-2:]) != (channels, channels) or not batch_ok:
        raise ValueError(
            f"gram_mse_loss: target must be ({channels}, {channels}) or ({x.shape[0]} or 1, {channels}, {channels}) "
            f"for x of shape {tuple(x.shape)}; got {tuple(target.shape)}"
        )
    if target.device != x.device:
        raise ValueError(f"gram_mse_loss: target is on {target.device} but x is on {x.device}")
    if _LOSS_KERNELS.get(x.device.type, False):
        return torch.ops.dreamkit.gram_mse_loss(x, target, bool(normalize))[0]
    return _reference.gram_mse_loss(x, target, bool(normalize))
