"""Accelerated operations (``torch.ops.dreamkit.*``) and the state of their compiled backend.

* :func:`jitter`: wrap-around roll of the last two dims (one pass; differentiable).
* :func:`gram_matrix`: Gram matrices F Fᵀ using their symmetry (differentiable, one-GEMM backward).
* :func:`gram_mse_loss`: the style loss mean((G(x) - T)²) with a one-GEMM backward.
* :func:`octave_resample`: bilinear resize with the jitter roll fused in (differentiable).
* :func:`conv3x3`: a 3x3 convolution by Winograd's F(4x4, 3x3) (4x fewer multiplies; CPU), with
  reflection padding made on the fly; :func:`winograd_weight`: its weight transform, to keep.
* :func:`instance_norm`: instance normalisation, scale and shift, and ReLU in two passes (CPU).
* :func:`dream_update`: DeepDream's normalised gradient step, un-roll and clamp in one pass.

:func:`backend` says whether the compiled extension is in use, :func:`op_kernels` on which
devices each op has a kernel; :func:`build_info` gives the build settings. Every op also has a pure-PyTorch reference (``dreamkit.ops._reference``), used when the
extension cannot load (with one warning) and as the oracle in the tests.
"""

from ._extension import backend, build_info, load_error, op_kernels
from .conv3x3 import conv3x3, winograd_weight
from .dream_update import dream_update
from .gram import gram_matrix, gram_mse_loss
from .instance_norm import instance_norm
from .jitter import jitter
from .octave_resample import octave_resample

__all__ = [
    "backend",
    "build_info",
    "conv3x3",
    "dream_update",
    "gram_matrix",
    "gram_mse_loss",
    "instance_norm",
    "jitter",
    "load_error",
    "octave_resample",
    "op_kernels",
    "winograd_weight",
]
