"""dreamkit.ops.conv3x3 (Winograd F(4x4, 3x3)) against its reference (F.conv2d in float64).

The tolerance is derived, not picked: every output is a sum of products through the transforms
Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A, so its rounding error is at most γ_n times the same computation on
absolute values (|Aᵀ| [(|G||g||Gᵀ|) ⊙ (|Bᵀ||d||B|)] |A|, summed over channels, plus |bias|), where
n bounds the roundings along any path: one for the weight transform (made in float64, then
rounded), at most 8 for the input transform (two stages of at most four terms), C for the sum
over channels, at most 12 for the output transform and bias (two stages of six terms). n = C + 24.
"""

import pytest
import torch
import torch.nn.functional as F
from layouts import NON_CONTIGUOUS_4D

from dreamkit import ops
from dreamkit.ops import _reference, conv3x3

B_T = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0],
       [0, 4, 0, -5, 0, 1]]
G = [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6],
     [0, 0, 1]]
A_T = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]


def magnitude(x, weight, bias, pad=0):
    """The Winograd computation on absolute values, in float64 (pure PyTorch): what bounds the
    rounding error (see the module docstring)."""
    bt, g, at = (torch.tensor(m, dtype=torch.float64).abs() for m in (B_T, G, A_T))
    x = F.pad(x.double(), (pad,) * 4, mode="reflect") if pad else x.double()
    x, weight = x.abs(), weight.double().abs()
    n, c, h, w = x.shape
    ty, tx = -(-(h - 2) // 4), -(-(w - 2) // 4)
    x = F.pad(x, (0, tx * 4 + 2 - w, 0, ty * 4 + 2 - h))
    tiles = x.unfold(2, 6, 4).unfold(3, 6, 4)  # n, c, ty, tx, 6, 6
    v = bt @ tiles @ bt.T
    u = g @ weight @ g.T  # k, c, 6, 6
    m = torch.einsum("ncyxab,kcab->nkyxab", v, u)
    y = at @ m @ at.T  # n, k, ty, tx, 4, 4
    y = y.permute(0, 1, 2, 4, 3, 5).reshape(n, weight.shape[0], ty * 4, tx * 4)[..., :h - 2, :w - 2]
    return y + (0 if bias is None else bias.double().abs()[:, None, None])


def assert_within_bound(out, x, weight, bias, pad=0):
    padded = F.pad(x.double(), (pad,) * 4, mode="reflect") if pad else x.double()
    reference = F.conv2d(padded, weight.double(), None if bias is None else bias.double())
    unit = torch.finfo(x.dtype).eps / 2
    n = x.shape[1] + 24
    gamma = n * unit / (1 - n * unit)
    bound = gamma * magnitude(x, weight, bias, pad) + 1e-300
    error = (out.double() - reference).abs()
    assert out.shape == reference.shape and out.dtype == x.dtype
    assert bool((error <= bound).all()), f"error {float(error.max()):.3g} above its bound at {int((error > bound).sum())} points"
    return error, bound


def _sample(shape, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)


def _weights(k, c, dtype=torch.float32, seed=1):
    return _sample((k, c, 3, 3), dtype, seed) * (2 / (9 * c)) ** 0.5, _sample((k,), dtype, seed + 1) * 0.1


def test_the_compiled_kernel_is_used():
    assert ops.backend() == "compiled"
    assert torch._C._dispatch_has_kernel_for_dispatch_key("dreamkit::conv3x3", "CPU")


# (N, C, H, W, K): the smallest input, sizes that leave partial tiles, one channel, a batch, and
# more tiles than one chunk (float32: 8 MiB / (36 x 128 x 4 B) = 455 tiles; 2 x 22 x 22 = 968).
SHAPES = [(1, 1, 3, 3, 1), (1, 3, 5, 7, 5), (3, 4, 13, 17, 2), (2, 16, 31, 9, 24), (1, 1, 6, 6, 1),
          (2, 128, 90, 90, 128), (0, 3, 8, 8, 4)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_matches_the_reference_within_the_derived_bound(dtype, shape, with_bias):
    n, c, h, w, k = shape
    x = _sample((n, c, h, w), dtype)
    weight, bias = _weights(k, c, dtype)
    out = conv3x3(x, weight, bias if with_bias else None)
    assert out.is_contiguous()
    assert_within_bound(out, x, weight, bias if with_bias else None)


# (N, C, H, W, K, pad): padding 1 (a style network's residual convolutions), wider padding, the
# smallest inputs each padding allows, partial tiles, a batch, more tiles than one chunk.
PADDED = [(1, 2, 2, 2, 3, 1), (2, 5, 9, 13, 4, 1), (1, 3, 7, 6, 2, 4), (1, 1, 5, 5, 1, 4), (2, 128, 64, 70, 128, 1),
          (1, 6, 1, 4, 2, 0)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", PADDED[:-1])
def test_reflection_padding_is_made_on_the_fly(dtype, shape):
    n, c, h, w, k, pad = shape
    x = _sample((n, c, h, w), dtype)
    weight, bias = _weights(k, c, dtype)
    out = conv3x3(x, weight, bias, reflect_pad=pad)
    assert out.shape == (n, k, h + 2 * pad - 2, w + 2 * pad - 2)
    assert_within_bound(out, x, weight, bias, pad)
    channels_last = conv3x3(x.contiguous(memory_format=torch.channels_last), weight, bias, reflect_pad=pad)
    assert torch.equal(channels_last, out)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_weight_transform_kept_by_the_caller_gives_the_same_result(dtype):
    x = _sample((2, 16, 21, 19), dtype)
    weight, bias = _weights(8, 16, dtype)
    kept = ops.winograd_weight(weight)
    assert kept.shape == (36, 8, 16) and kept.dtype == dtype and not kept.requires_grad
    # the kernel's transform is G g Gᵀ made in float64 and rounded once: within a rounding of the
    # dtype plus float64's error on nine-term sums (γ_9 |G||g||Gᵀ|) of the reference's
    exact = _reference.winograd_weight(weight.double())
    g = torch.tensor(G, dtype=torch.float64)
    unit, unit64 = torch.finfo(dtype).eps / 2, torch.finfo(torch.float64).eps / 2
    spread = (g.abs() @ weight.double().abs() @ g.abs().T).flatten(2).permute(2, 0, 1)
    bound = unit * exact.abs() + 9 * unit64 / (1 - 9 * unit64) * spread * (1 + unit)
    assert bool(((kept.double() - exact).abs() <= bound).all())
    for pad in (0, 1):
        assert torch.equal(conv3x3(x, weight, bias, pad, transformed_weight=kept), conv3x3(x, weight, bias, pad))
    # the forward uses what it is given (a wrong transform shows)
    assert not torch.equal(conv3x3(x, weight, bias, transformed_weight=kept * 2), conv3x3(x, weight, bias))


def test_the_bound_is_tight_enough_to_catch_a_wrong_result():
    # The check must be able to fail: one transform coefficient off by a float32 step is caught.
    x = _sample((1, 8, 12, 12))
    weight, bias = _weights(8, 8)
    out = conv3x3(x, weight, bias)
    error, bound = assert_within_bound(out, x, weight, bias)
    assert float(bound.max()) < 1e-3 * float(F.conv2d(x, weight, bias).abs().max())
    with pytest.raises(AssertionError):
        assert_within_bound(out + 4 * bound.max(), x, weight, bias)


def test_channels_last_stays_channels_last():
    x = _sample((2, 6, 11, 14)).contiguous(memory_format=torch.channels_last)
    weight, bias = _weights(5, 6)
    out = conv3x3(x, weight, bias)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert_within_bound(out, x, weight, bias)


@pytest.mark.parametrize("make", NON_CONTIGUOUS_4D)
def test_non_contiguous_inputs(make):
    x = make(_sample((3, 3, 20, 26)))
    weight, bias = _weights(4, x.shape[1])
    out = conv3x3(x, weight[:, :, ::1], bias)
    assert out.is_contiguous()
    assert_within_bound(out, x, weight, bias)
    # non-contiguous weights too
    strided = _weights(4, x.shape[1])[0].transpose(-1, -2).contiguous().transpose(-1, -2)
    assert_within_bound(conv3x3(x, strided, None), x, strided, None)


def test_gradcheck():
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv3x3, (x, weight, bias))
    assert torch.autograd.gradcheck(lambda a, b: conv3x3(a, b, None), (x, weight))
    assert torch.autograd.gradgradcheck(conv3x3, (x, weight, bias))
    for pad in (1, 2):
        assert torch.autograd.gradcheck(lambda a, b, c: conv3x3(a, b, c, pad), (x, weight, bias))
        assert torch.autograd.gradgradcheck(lambda a, b, c: conv3x3(a, b, c, pad), (x, weight, bias))
    # with a kept transform the forward does not read weight (its gradient is the one above): x's
    kept, fixed = ops.winograd_weight(weight), weight.detach()
    assert torch.autograd.gradcheck(lambda a: conv3x3(a, fixed, None, 1, kept), (x,))


@pytest.mark.parametrize("x", [torch.randn(2, 3, 5, 7), torch.randn(1, 4, 6, 6).contiguous(memory_format=torch.channels_last),
                               torch.randn(0, 2, 3, 3)])
def test_opcheck(x):
    weight, bias = torch.randn(5, x.shape[1], 3, 3), torch.randn(5)
    torch.library.opcheck(torch.ops.dreamkit.conv3x3.default, (x, weight, bias))
    torch.library.opcheck(torch.ops.dreamkit.conv3x3.default, (x.double().requires_grad_(), weight.double(), None))
    torch.library.opcheck(torch.ops.dreamkit.conv3x3.default,
                          (x.requires_grad_(), weight, bias, 1, torch.ops.dreamkit.winograd_weight(weight)))
    torch.library.opcheck(torch.ops.dreamkit.winograd_weight.default, (weight,))


def test_other_dtypes_run_the_reference():
    x = _sample((1, 4, 9, 9), torch.bfloat16)
    weight, bias = _weights(3, 4, torch.bfloat16)
    assert torch.equal(conv3x3(x, weight, bias), _reference.conv3x3(x, weight, bias))


@pytest.mark.parametrize("args, error, match", [
    ((torch.zeros(3, 5, 5), torch.zeros(1, 3, 3, 3)), ValueError, r"x must be \(N, C, H, W\); got shape \(3, 5, 5\)"),
    ((torch.zeros(1, 3, 5, 5), torch.zeros(1, 2, 3, 3)), ValueError, r"weight must be \(K, 3, 3, 3\) for x with 3 channels"),
    ((torch.zeros(1, 3, 5, 5), torch.zeros(1, 3, 5, 5)), ValueError, r"weight must be \(K, 3, 3, 3\)"),
    ((torch.zeros(1, 3, 2, 5), torch.zeros(1, 3, 3, 3)), ValueError, r"at least 3x3 once padded; got shape \(1, 3, 2, 5\) with reflect_pad=0"),
    ((torch.zeros(1, 3, 5, 5), torch.zeros(1, 3, 3, 3), None, 5), ValueError, "reflect_pad must be 0 or more and smaller than x's height and width"),
    ((torch.zeros(1, 3, 5, 5), torch.zeros(1, 3, 3, 3), None, -1), ValueError, "reflect_pad must be 0 or more"),
    ((torch.zeros(1, 3, 5, 5), torch.zeros(1, 3, 3, 3), None, 1.0), TypeError, "reflect_pad must be an int, got 1.0"),
    ((torch.zeros(1, 3, 5, 5), torch.zeros(2, 3, 3, 3), None, 0, torch.zeros(36, 3, 2)), ValueError,
     r"transformed_weight must be winograd_weight\(weight\), of shape \(36, 2, 3\); got \(36, 3, 2\)"),
    ((torch.zeros(1, 3, 5, 5), torch.zeros(2, 3, 3, 3), torch.zeros(3)), ValueError, "bias must have 2 elements"),
    ((torch.zeros(1, 3, 5, 5, dtype=torch.int64), torch.zeros(1, 3, 3, 3)), TypeError, "x must be a floating-point"),
    (([[1.0]], torch.zeros(1, 3, 3, 3)), TypeError, "x must be a tensor, got list"),
])
def test_bad_arguments(args, error, match):
    with pytest.raises(error, match=match):
        conv3x3(*args)


def test_winograd_weight_bad_arguments():
    with pytest.raises(ValueError, match=r"winograd_weight: weight must be \(K, C, 3, 3\); got shape \(2, 3, 5, 5\)"):
        ops.winograd_weight(torch.zeros(2, 3, 5, 5))
    with pytest.raises(TypeError, match="winograd_weight: weight must be a floating-point tensor"):
        ops.winograd_weight(torch.zeros(2, 3, 3, 3, dtype=torch.int32))


def test_the_op_itself_checks_its_input():
    with pytest.raises(RuntimeError, match=r"dreamkit::conv3x3: weight must be \(K, C, 3, 3\) with C = 3"):
        torch.ops.dreamkit.conv3x3(torch.zeros(1, 3, 5, 5), torch.zeros(1, 2, 3, 3), None)
    with pytest.raises(RuntimeError, match="dreamkit::conv3x3: x must be float32 or float64"):
        torch.ops.dreamkit.conv3x3(torch.zeros(1, 3, 5, 5, dtype=torch.float16), torch.zeros(1, 3, 3, 3, dtype=torch.float16), None)
    with pytest.raises(RuntimeError, match="dreamkit::conv3x3: reflect_pad must be at least 0 and smaller than x's height"):
        torch.ops.dreamkit.conv3x3(torch.zeros(1, 3, 5, 5), torch.zeros(1, 3, 3, 3), None, 5)
    with pytest.raises(RuntimeError, match=r"dreamkit::conv3x3: transformed_weight must be winograd_weight\(weight\)"):
        torch.ops.dreamkit.conv3x3(torch.zeros(1, 3, 5, 5), torch.zeros(1, 3, 3, 3), None, 0, torch.zeros(36, 3, 1))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_runs_cudnn():
    # No CUDA kernel of ours: cuDNN picks Winograd itself where it pays.
    x = _sample((2, 8, 17, 19)).cuda()
    weight, bias = (t.cuda() for t in _weights(6, 8))
    torch.testing.assert_close(conv3x3(x, weight, bias), F.conv2d(x, weight, bias))
    torch.testing.assert_close(conv3x3(x, weight, bias, 1), F.conv2d(F.pad(x, (1,) * 4, mode="reflect"), weight, bias))


@pytest.mark.parametrize("channels", [32, 64, 128])
def test_with_many_channels_the_error_is_within_a_direct_convolutions_bound(channels):
    # The style networks use conv3x3 from 32 channels up (transformer._WinogradConv at 64 and
    # more, the last layer's blocks at 32) and their tests compare it with direct convolution at a
    # tolerance derived from the direct sum's error bound, γ_{9C} Σ|x||w|. Winograd's own bound is
    # looser (the transforms scale by up to 8), but with this many channels its error stays within
    # the direct one's (measured at 5-12% of it at 32 channels, 3-10% at 64 and 128).
    x = _sample((2, channels, 40, 36), seed=channels)
    weight, bias = _weights(channels, channels, seed=channels + 1)
    reference = F.conv2d(x.double(), weight.double(), bias.double())
    plain = F.conv2d(x.double().abs(), weight.double().abs()) + bias.double().abs()[:, None, None]
    n, unit = 9 * channels + 1, torch.finfo(torch.float32).eps / 2
    direct_bound = n * unit / (1 - n * unit) * plain
    assert bool(((conv3x3(x, weight, bias).double() - reference).abs() <= direct_bound).all())


def test_torch_compile_fullgraph():
    compiled = torch.compile(lambda a, w, b: conv3x3(a, w, b) * 2, fullgraph=True, backend="aot_eager")
    x = _sample((1, 3, 9, 10))
    weight, bias = _weights(4, 3)
    torch.testing.assert_close(compiled(x, weight, bias), conv3x3(x, weight, bias) * 2)
