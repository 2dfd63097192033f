"""dreamkit.ops.gram_matrix and gram_mse_loss against their references."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dreamkit import ops
from dreamkit.ops import _reference, gram_matrix, gram_mse_loss

# (dtype, rtol, atol) for normalised Gram matrices of randn features.
TOLERANCES = [(torch.float32, 1e-4, 1e-5), (torch.float64, 1e-10, 1e-12), (torch.bfloat16, 2e-2, 2e-2),
              (torch.float16, 1e-2, 1e-3)]
# Small C takes the plain GEMM path; C >= 192 the symmetric one (syrk / recursive halves).
SHAPES = [(1, 1, 1, 1), (2, 3, 5, 7), (3, 517), (0, 4, 3, 3), (4, 8, 17), (1, 200, 3, 11), (2, 257, 13), (1, 384, 9, 9)]


def _features(shape, dtype=torch.float32, seed=0):
    shape = (1, *shape) if len(shape) == 2 else shape
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def test_the_compiled_kernels_are_used():
    assert ops.backend() == "compiled"
    for name in ("gram_matrix", "gram_mse_loss"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"dreamkit::{name}", "CPU")
    # torch's x86-64 wheels link MKL statically and export its syrk; the kernel looks it up at run
    # time and says "GEMM only (no syrk reachable)" when it cannot find or validate it.
    assert ops.build_info()["gram_cpu"] == "symmetric blocks, MKL syrk"


@pytest.mark.parametrize("dtype, rtol, atol", TOLERANCES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("normalize", [True, False])
def test_gram_matches_reference(dtype, rtol, atol, shape, normalize):
    x = _features(shape, dtype)
    expected = _reference.gram_matrix(x.double(), normalize).to(dtype)
    scale = 1.0 if normalize else x[0, 0].numel() if x.numel() else 1.0
    torch.testing.assert_close(gram_matrix(x, normalize), expected, rtol=rtol, atol=atol * scale)


@pytest.mark.parametrize("threads", [1, 2])
def test_symmetric_path_is_exactly_symmetric_on_any_thread_count(threads):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = _features((2, 300, 7, 9))
        g = gram_matrix(x)
        assert torch.equal(g, g.transpose(1, 2))
        torch.testing.assert_close(g, _reference.gram_matrix(x), rtol=1e-4, atol=1e-6)
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("make", [
    lambda x: x.contiguous(memory_format=torch.channels_last),
    lambda x: x.transpose(-1, -2),
    lambda x: x[:, :, ::2, 1::2],
    lambda x: x.permute(1, 0, 2, 3).contiguous().permute(1, 0, 2, 3),
])
@pytest.mark.parametrize("channels", [5, 256])
def test_layouts(make, channels):
    x = make(_features((2, channels, 6, 10)))
    torch.testing.assert_close(gram_matrix(x), _reference.gram_matrix(x), rtol=1e-4, atol=1e-6)


def test_gram_gradients():
    x = torch.randn(2, 4, 3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gram_matrix, (x,))
    assert torch.autograd.gradgradcheck(gram_matrix, (x,))
    assert torch.autograd.gradcheck(lambda t: gram_matrix(t, normalize=False), (x,))


@pytest.mark.parametrize("target_shape", [(4, 4), (2, 4, 4), (1, 4, 4)])
def test_loss_gradients_in_x_and_target(target_shape):
    x = torch.randn(2, 4, 3, 5, dtype=torch.float64, requires_grad=True)
    target = torch.randn(target_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gram_mse_loss, (x, target))
    assert torch.autograd.gradgradcheck(gram_mse_loss, (x, target))


@pytest.mark.parametrize("shape", [(1, 3, 8, 8), (2, 260, 5, 5), (3, 16, 31)])
def test_loss_and_its_gradient_match_autograd_through_the_reference(shape):
    x = _features(shape, seed=1)
    target = _reference.gram_matrix(_features(shape, seed=2))
    ours_x, reference_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = gram_mse_loss(ours_x, target)
    reference = _reference.gram_mse_loss(reference_x, target)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-9)
    ours.backward()
    reference.backward()
    torch.testing.assert_close(ours_x.grad, reference_x.grad, rtol=1e-3, atol=1e-9)


def test_loss_is_zero_against_its_own_gram_and_positive_otherwise():
    x = _features((1, 6, 5, 5))
    assert gram_mse_loss(x, gram_matrix(x)).item() == 0.0
    assert gram_mse_loss(x, torch.zeros(6, 6)).item() > 0


@pytest.mark.parametrize("x", [torch.randn(2, 3, 5, 7), torch.randn(1, 4, 6, 6).contiguous(memory_format=torch.channels_last),
                               torch.randn(1, 256, 4, 4), torch.randn(0, 2, 3, 3), torch.randn(2, 5, 9)])
def test_opcheck(x):
    torch.library.opcheck(torch.ops.dreamkit.gram_matrix.default, (x, True))
    torch.library.opcheck(torch.ops.dreamkit.gram_matrix.default, (x.double().requires_grad_(), False))
    target = torch.randn(x.shape[1], x.shape[1])
    torch.library.opcheck(torch.ops.dreamkit.gram_mse_loss.default, (x, target, True))
    torch.library.opcheck(torch.ops.dreamkit.gram_mse_loss.default,
                          (x.double().requires_grad_(), target.double().requires_grad_(), True))


def test_torch_compile_fullgraph():
    target = torch.randn(3, 3)
    compiled = torch.compile(lambda t: gram_mse_loss(t, target) + gram_matrix(t).sum(), fullgraph=True,
                             backend="aot_eager")
    x = torch.randn(2, 3, 6, 5)
    torch.testing.assert_close(compiled(x), _reference.gram_mse_loss(x, target) + _reference.gram_matrix(x).sum())


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(0, 3), channels=st.integers(1, 300), n=st.integers(1, 50), normalize=st.booleans())
def test_property_matches_reference(batch, channels, n, normalize):
    x = torch.randn(batch, channels, n, dtype=torch.float64)
    torch.testing.assert_close(gram_matrix(x, normalize), _reference.gram_matrix(x, normalize))


@pytest.mark.parametrize("call, error, match", [
    (lambda: gram_matrix(torch.zeros(3, 3)), ValueError, r"gram_matrix: x must be \(B, C, H, W\) or \(B, C, N\); got shape \(3, 3\)"),
    (lambda: gram_matrix(torch.zeros(1, 2, 3, dtype=torch.int64)), TypeError, "x must be a floating-point tensor, got torch.int64"),
    (lambda: gram_matrix([1.0]), TypeError, "x must be a tensor, got list"),
    (lambda: gram_mse_loss(torch.zeros(1, 3, 4), torch.zeros(4, 4)), ValueError,
     r"target must be \(3, 3\) or \(1 or 1, 3, 3\) for x of shape \(1, 3, 4\); got \(4, 4\)"),
    (lambda: gram_mse_loss(torch.zeros(2, 3, 4), torch.zeros(3, 3, 3)), ValueError, r"got \(3, 3, 3\)"),
    (lambda: gram_mse_loss(torch.zeros(2, 3, 4), torch.zeros(3)), ValueError, r"target must be \(C, C\) or \(B, C, C\); got shape \(3,\)"),
])
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_the_ops_themselves_check_their_input():
    with pytest.raises(RuntimeError, match=r"dreamkit::gram_matrix: x must be \(B, C, H, W\) or \(B, C, N\)"):
        torch.ops.dreamkit.gram_matrix(torch.zeros(3), True)
    with pytest.raises(RuntimeError, match="dreamkit::gram_mse_loss: target has shape"):
        torch.ops.dreamkit.gram_mse_loss(torch.zeros(1, 3, 4), torch.zeros(2, 2), True)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 300, 17, 19), (0, 4, 3, 3)])
def test_cuda_matches_reference(shape):
    x = _features(shape).cuda()
    torch.testing.assert_close(gram_matrix(x), _reference.gram_matrix(x), rtol=1e-4, atol=1e-6)
    target = torch.randn(shape[1], shape[1], device="cuda")
    ours_x, reference_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    gram_mse_loss(ours_x, target).backward()
    _reference.gram_mse_loss(reference_x, target).backward()
    torch.testing.assert_close(ours_x.grad, reference_x.grad, rtol=1e-3, atol=1e-8)
