"""dreamkit.ops.instance_norm (instance norm, scale and shift, ReLU, fused) against its reference
(F.instance_norm then F.relu, in float64).

The tolerance is derived from what the kernel computes. With u the unit roundoff of x's dtype and
v the unit roundoff of float64 (the statistics are Σx and Σx² in float64 over the n pixels of a
plane):
* the mean is off by at most δμ = γ_{n+1}(v) E|x| and the variance by at most
  δσ² = 3 γ_{n+4}(v) E[x²] (the sum of squares, the divide, mean² and the subtraction), so
  1/sqrt(σ² + eps) is off by a relative ρ = δσ² / (2(σ² + eps)) + 3v;
* a = w / sqrt(σ² + eps) and s = b - μa are made in float64 and rounded once (u each), and
  y = x·a + s rounds twice more (u|xa| and u|y|).
So |y - y_ref| <= (2u + ρ)|a|(|x| + |μ|) + |a|δμ + u(|xa| + |y|) + 2u|b|, times (1 + 8u) for the
second-order terms; the ReLU (1-Lipschitz) keeps the bound.
"""

import pytest
import torch
import torch.nn.functional as F
from layouts import NON_CONTIGUOUS_4D

from dreamkit import ops
from dreamkit.ops import _reference, instance_norm


def gamma(n, unit):
    return n * unit / (1 - n * unit)


def error_bound(x, weight, bias, eps):
    """The bound of the module docstring, per output element (float64)."""
    u, v = torch.finfo(x.dtype).eps / 2, torch.finfo(torch.float64).eps / 2
    x = x.double()
    dims = tuple(range(2, x.dim()))
    n = x[0, 0].numel()
    shape = (1, x.shape[1]) + (1,) * len(dims)
    w = weight.double().reshape(shape) if weight is not None else torch.ones(shape, dtype=torch.float64)
    b = bias.double().reshape(shape) if bias is not None else torch.zeros(shape, dtype=torch.float64)
    mean = x.mean(dims, keepdim=True)
    var = x.var(dims, unbiased=False, keepdim=True)
    a = w / torch.sqrt(var + eps)
    y = (x - mean) * a + b
    mean_error = gamma(n + 1, v) * x.abs().mean(dims, keepdim=True)
    var_error = 3 * gamma(n + 4, v) * x.square().mean(dims, keepdim=True)
    rho = var_error / (2 * (var + eps)) + 3 * v
    bound = (2 * u + rho) * a.abs() * (x.abs() + mean.abs()) + a.abs() * mean_error + u * (
        (x * a).abs() + y.abs()) + 2 * u * b.abs()
    return bound * (1 + 8 * u) + 1e-300


def assert_within_bound(out, x, weight, bias, eps=1e-5, relu=True):
    reference = _reference.instance_norm(x.double(), None if weight is None else weight.double(),
                                         None if bias is None else bias.double(), eps, relu)
    bound = error_bound(x, weight, bias, eps)
    error = (out.double() - reference).abs()
    assert out.shape == x.shape and out.dtype == x.dtype
    assert bool((error <= bound).all()), f"error {float(error.max()):.3g} above its bound at {int((error > bound).sum())} points"
    return error, bound


def _sample(shape, dtype=torch.float32, seed=0, mean=0.0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=generator, dtype=torch.float64) * 2 + mean).to(dtype)


def _parameters(c, dtype=torch.float32, seed=1):
    return 1 + 0.5 * _sample((c,), dtype, seed), 0.3 * _sample((c,), dtype, seed + 1)


def test_the_compiled_kernel_is_used():
    assert ops.backend() == "compiled"
    assert torch._C._dispatch_has_kernel_for_dispatch_key("dreamkit::instance_norm", "CPU")


# (N, C, spatial...): one pixel per plane, odd sizes, a batch, a 1-D and a 3-D image, a plane
# larger than the cache, channels that fill no vector.
SHAPES = [(1, 1, 1, 2), (2, 3, 5, 7), (3, 5, 17), (1, 4, 3, 4, 5), (2, 32, 33, 31), (1, 3, 600, 700), (2, 13, 9, 9)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_matches_the_reference_within_the_derived_bound(dtype, shape, relu, affine):
    x = _sample(shape, dtype)
    weight, bias = _parameters(shape[1], dtype) if affine else (None, None)
    out = instance_norm(x, weight, bias, 1e-5, relu)
    assert out.is_contiguous()
    assert_within_bound(out, x, weight, bias, relu=relu)
    if relu:
        assert float(out.min()) >= 0


def test_the_bound_is_tight_enough_to_catch_a_wrong_result():
    # The check must be able to fail: the unbiased variance (n - 1), a one-step error in the scale
    # and a shifted output are each caught.
    x = _sample((2, 4, 12, 10))
    weight, bias = _parameters(4)
    out = instance_norm(x, weight, bias)
    error, bound = assert_within_bound(out, x, weight, bias)
    assert float(bound.max()) < 1e-5 * float(out.abs().max())
    unbiased = F.relu((x - x.mean((2, 3), keepdim=True)) / torch.sqrt(x.var((2, 3), keepdim=True) + 1e-5)
                      * weight[:, None, None] + bias[:, None, None])
    for wrong in (unbiased, instance_norm(x, weight * (1 + 2 ** -20), bias), out + 4 * bound.max()):
        with pytest.raises(AssertionError):
            assert_within_bound(wrong.float(), x, weight, bias)


def test_a_large_mean_and_a_flat_plane():
    # Σx² - nμ² in float64 keeps a float32-accurate variance at mean/std = 500; a constant plane
    # normalises to its bias (the variance is 0, eps keeps it finite).
    x = _sample((1, 3, 40, 50), mean=1000.0)
    weight, bias = _parameters(3)
    assert_within_bound(instance_norm(x, weight, bias, relu=False), x, weight, bias, relu=False)
    flat = torch.full((1, 2, 5, 5), 3.25)
    out = instance_norm(flat, torch.tensor([2.0, 1.0]), torch.tensor([0.5, -0.5]), relu=True)
    assert torch.equal(out, torch.stack([torch.full((5, 5), 0.5), torch.zeros(5, 5)])[None])


def test_the_result_does_not_depend_on_the_number_of_threads():
    x = _sample((2, 8, 70, 90))
    weight, bias = _parameters(8)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = [instance_norm(t, weight, bias) for t in (x, x.contiguous(memory_format=torch.channels_last))]
        torch.set_num_threads(max(2, threads))
        many = [instance_norm(t, weight, bias) for t in (x, x.contiguous(memory_format=torch.channels_last))]
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(one, many))


@pytest.mark.parametrize("shape", [(2, 6, 11, 14), (1, 37, 40, 41), (3, 1, 5, 5)])
def test_channels_last_stays_channels_last(shape):
    x = _sample(shape).contiguous(memory_format=torch.channels_last)
    weight, bias = _parameters(shape[1])
    out = instance_norm(x, weight, bias)
    assert out.is_contiguous(memory_format=torch.channels_last) or shape[1] == 1
    assert_within_bound(out, x, weight, bias)


@pytest.mark.parametrize("make", NON_CONTIGUOUS_4D)
def test_non_contiguous_inputs(make):
    x = make(_sample((3, 3, 20, 26)))
    weight, bias = _parameters(x.shape[1])
    assert_within_bound(instance_norm(x, weight, bias), x, weight, bias)
    strided = torch.stack([weight, bias], 1)
    assert_within_bound(instance_norm(x, strided[:, 0], strided[:, 1]), x, weight, bias)


def test_gradcheck():
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(instance_norm, (x, weight, bias))
    assert torch.autograd.gradcheck(lambda a: instance_norm(a, relu=False), (x,))
    assert torch.autograd.gradgradcheck(lambda a, w, b: instance_norm(a, w, b, 1e-5, False), (x, weight, bias))
    assert torch.autograd.gradgradcheck(instance_norm, (x, weight, bias))


@pytest.mark.parametrize("x", [torch.randn(2, 3, 5, 7), torch.randn(1, 4, 6, 6).contiguous(memory_format=torch.channels_last),
                               torch.randn(0, 2, 3, 3), torch.randn(2, 3, 9)])
def test_opcheck(x):
    weight, bias = torch.randn(x.shape[1]), torch.randn(x.shape[1])
    torch.library.opcheck(torch.ops.dreamkit.instance_norm.default, (x, weight, bias, 1e-5, True))
    torch.library.opcheck(torch.ops.dreamkit.instance_norm.default,
                          (x.double().requires_grad_(), weight.double().requires_grad_(), None, 1e-3, False))


def test_other_dtypes_run_the_reference():
    x = _sample((1, 4, 9, 9), torch.bfloat16)
    weight, bias = _parameters(4, torch.bfloat16)
    assert torch.equal(instance_norm(x, weight, bias), _reference.instance_norm(x, weight, bias))


@pytest.mark.parametrize("args, kwargs, error, match", [
    ((torch.zeros(3, 5),), {}, ValueError, r"x must have at least 3 dims \(N, C, \.\.\.\); got shape \(3, 5\)"),
    ((torch.zeros(1, 3, 5, 5), torch.zeros(2)), {}, ValueError, r"weight must have 3 elements \(x's channels\); got 2"),
    ((torch.zeros(1, 3, 5, 5), None, torch.zeros(3, 1)), {}, ValueError, r"bias must be \(C,\); got shape \(3, 1\)"),
    ((torch.zeros(1, 3, 5, 5),), {"eps": 0.0}, ValueError, "eps must be positive; got 0.0"),
    ((torch.zeros(1, 3, 5, 5),), {"eps": float("nan")}, ValueError, "eps must be finite"),
    ((torch.zeros(1, 3, 5, 5),), {"relu": 1}, TypeError, "relu must be True or False, got 1"),
    ((torch.zeros(1, 3, 0, 5),), {}, ValueError, r"no pixels to normalise over; got shape \(1, 3, 0, 5\)"),
    ((torch.zeros(1, 3, 5, 5, dtype=torch.int64),), {}, TypeError, "x must be a floating-point"),
    (([[[1.0]]],), {}, TypeError, "x must be a tensor, got list"),
])
def test_bad_arguments(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        instance_norm(*args, **kwargs)


def test_the_op_itself_checks_its_input():
    with pytest.raises(RuntimeError, match=r"dreamkit::instance_norm: weight must be a CPU \(C,\) = \(3,\) tensor"):
        torch.ops.dreamkit.instance_norm(torch.zeros(1, 3, 5, 5), torch.zeros(2), None, 1e-5, True)
    with pytest.raises(RuntimeError, match="dreamkit::instance_norm: x must be float32 or float64"):
        torch.ops.dreamkit.instance_norm(torch.zeros(1, 3, 5, 5, dtype=torch.float16), None, None, 1e-5, True)
    with pytest.raises(RuntimeError, match="dreamkit::instance_norm: eps must be positive"):
        torch.ops.dreamkit.instance_norm(torch.zeros(1, 3, 5, 5), None, None, -1.0, True)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_runs_atens_ops():
    # No CUDA kernel of ours: the fusion saves memory passes on the CPU; on a GPU ATen's kernels run.
    x = _sample((2, 8, 17, 19)).cuda()
    weight, bias = (t.cuda() for t in _parameters(8))
    torch.testing.assert_close(instance_norm(x, weight, bias), F.relu(F.instance_norm(x, weight=weight, bias=bias)))


def test_torch_compile_fullgraph():
    compiled = torch.compile(lambda a, w, b: instance_norm(a, w, b) * 2, fullgraph=True, backend="aot_eager")
    x = _sample((1, 3, 9, 10))
    weight, bias = _parameters(3)
    torch.testing.assert_close(compiled(x, weight, bias), instance_norm(x, weight, bias) * 2)
