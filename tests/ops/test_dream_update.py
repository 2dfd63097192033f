"""dreamkit.ops.dream_update against its reference (roll, normalise, step, clamp as torch ops)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dreamkit import ops
from dreamkit.ops import _reference, dream_update

TOLERANCES = [(torch.float32, 1e-5, 1e-6), (torch.float64, 1e-12, 1e-12), (torch.bfloat16, 1.6e-2, 1e-2),
              (torch.float16, 2e-3, 2e-3)]
SHAPES = [(1, 1), (3, 517), (1, 3, 13, 17), (2, 3, 31, 7), (0, 3, 5, 5), (3, 5, 1, 1), (2, 2, 3, 11, 19)]
SHIFTS = [(0, 0), (1, 2), (-3, 5), (1000, -999)]


def _pair(shape, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator).to(dtype), torch.randn(shape, generator=generator).to(dtype)


def test_the_compiled_kernels_are_used():
    assert ops.backend() == "compiled"
    for name in ("dream_update", "dream_update_"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"dreamkit::{name}", "CPU")


@pytest.mark.parametrize("dtype, rtol, atol", TOLERANCES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("clamp", [(0.0, 1.0), None, (None, 0.9)])
def test_matches_reference(dtype, rtol, atol, shape, shift, clamp):
    image, grad = _pair(shape, dtype)
    expected = _reference.dream_update(image.double(), grad.double(), shift, 0.05, clamp or (None, None)).to(dtype)
    torch.testing.assert_close(dream_update(image, grad, shift, 0.05, clamp), expected, rtol=rtol, atol=atol)


def test_normalises_per_sample_of_a_batch():
    image, grad = _pair((2, 3, 8, 8))
    grad[1] *= 1000  # a much larger gradient in one sample must not shrink the other's step
    out = dream_update(image, grad, (0, 0), 0.1)
    single = dream_update(image[:1], grad[:1], (0, 0), 0.1)
    torch.testing.assert_close(out[:1], single)
    torch.testing.assert_close((out - image).abs().mean(dim=(1, 2, 3)), torch.tensor([0.1, 0.1]), rtol=1e-5, atol=0)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_inplace_updates_the_image_it_was_given(layout):
    image, grad = _pair((2, 3, 9, 12))
    if layout == "channels_last":
        image = image.contiguous(memory_format=torch.channels_last)
    if layout == "strided":
        image = image.transpose(-1, -2).contiguous().transpose(-1, -2)
    expected = _reference.dream_update(image, grad, (3, -4), 0.2, (0.0, 1.0))
    result = dream_update(image, grad, (3, -4), 0.2, (0.0, 1.0), inplace=True)
    assert result is image
    torch.testing.assert_close(image, expected, rtol=1e-5, atol=1e-6)


def test_functional_call_leaves_its_inputs_alone_and_keeps_channels_last():
    image, grad = _pair((1, 4, 6, 5))
    image = image.contiguous(memory_format=torch.channels_last)
    before, grad_before = image.clone(), grad.clone()
    out = dream_update(image, grad, (1, 1), 0.5)
    assert torch.equal(image, before) and torch.equal(grad, grad_before)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_zero_gradient_leaves_the_image_unchanged_and_finite():
    image = torch.rand(1, 3, 4, 4)
    out = dream_update(image, torch.zeros_like(image), (1, 2), 0.1, (0.0, 1.0))
    assert torch.equal(out, image)


def test_result_does_not_require_grad():
    image = torch.rand(1, 3, 4, 4, requires_grad=True)
    assert not dream_update(image, torch.randn(1, 3, 4, 4), (1, 2), 0.1).requires_grad


@pytest.mark.parametrize("image", [torch.rand(2, 3, 5, 7), torch.rand(1, 4, 6, 6).contiguous(memory_format=torch.channels_last),
                                   torch.rand(0, 2, 3, 3), torch.rand(3, 517)])
def test_opcheck(image):
    grad = torch.randn_like(image)
    torch.library.opcheck(torch.ops.dreamkit.dream_update.default, (image, grad, 3, -7, 0.1, 0.0, 1.0, 1e-8))
    torch.library.opcheck(torch.ops.dreamkit.dream_update_.default, (image.clone(), grad, 1, 2, 0.1, None, None, 1e-8))


def test_torch_compile_fullgraph():
    compiled = torch.compile(lambda i, g: dream_update(i, g, (2, -3), 0.1, (0.0, 1.0)) * 2, fullgraph=True,
                             backend="aot_eager")
    image, grad = _pair((1, 3, 8, 10))
    torch.testing.assert_close(compiled(image, grad), _reference.dream_update(image, grad, (2, -3), 0.1, (0.0, 1.0)) * 2)


@settings(max_examples=60, deadline=None)
@given(dims=st.lists(st.integers(1, 3), min_size=0, max_size=2), height=st.integers(1, 30), width=st.integers(1, 30),
       shift_y=st.integers(-60, 60), shift_x=st.integers(-60, 60), step=st.floats(-2, 2), channels_last=st.booleans())
def test_property_matches_reference(dims, height, width, shift_y, shift_x, step, channels_last):
    image = torch.rand(*dims, height, width, dtype=torch.float64)
    grad = torch.randn_like(image)
    if channels_last and image.dim() == 4:
        image = image.contiguous(memory_format=torch.channels_last)
    expected = _reference.dream_update(image, grad, (shift_y, shift_x), step, (0.0, 1.0))
    torch.testing.assert_close(dream_update(image, grad, (shift_y, shift_x), step, (0.0, 1.0)), expected)


@pytest.mark.parametrize("call, error, match", [
    (lambda i, g: dream_update(i[0, 0, 0], g[0, 0, 0], (0, 0), 0.1), ValueError, r"image must have at least 2 dims \(\.\.\., H, W\)"),
    (lambda i, g: dream_update(i, g[..., :3], (0, 0), 0.1), ValueError, r"grad must match image in shape, dtype and device; got grad \(1, 2, 4, 3\)"),
    (lambda i, g: dream_update(i, g.double(), (0, 0), 0.1), ValueError, "grad must match image"),
    (lambda i, g: dream_update(i, g, (0, 0), float("nan")), ValueError, "step_size must be finite, got nan"),
    (lambda i, g: dream_update(i, g, (0, 0), "big"), TypeError, "step_size must be a number, got 'big'"),
    (lambda i, g: dream_update(i, g, (0, 0), 0.1, (1.0, 0.0)), ValueError, "clamp low 1.0 is greater than high 0.0"),
    (lambda i, g: dream_update(i, g, (0, 0), 0.1, 1.0), TypeError, r"clamp must be None or a pair \(low, high\)"),
    (lambda i, g: dream_update(i, g, (0.5, 0), 0.1), TypeError, "shift must be an int or a pair of ints"),
    (lambda i, g: dream_update(i, g, (0, 0), 0.1, eps=-1), ValueError, "eps must be >= 0, got -1.0"),
    (lambda i, g: dream_update(i.long(), g.long(), (0, 0), 0.1), TypeError, "image must be a floating-point tensor"),
])
def test_bad_arguments(call, error, match):
    image, grad = _pair((1, 2, 4, 4))
    with pytest.raises(error, match=match):
        call(image, grad)


def test_the_ops_themselves_check_their_input():
    image, grad = _pair((1, 2, 4, 4))
    with pytest.raises(RuntimeError, match="dreamkit::dream_update: grad has shape"):
        torch.ops.dreamkit.dream_update(image, grad[..., :2], 0, 0, 0.1, None, None, 1e-8)
    with pytest.raises(RuntimeError, match=r"dreamkit::dream_update: clamp_min \(1\) is greater than clamp_max \(0\)"):
        torch.ops.dreamkit.dream_update_(image, grad, 0, 0, 0.1, 1.0, 0.0, 1e-8)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(1, 3, 517, 731), (2, 3, 13, 17), (0, 3, 4, 4), (3, 517)])
def test_cuda_matches_reference(dtype, shape):
    image, grad = (t.cuda() for t in _pair(shape, dtype))
    expected = _reference.dream_update(image.double(), grad.double(), (37, -101), 0.05, (0.0, 1.0)).to(dtype)
    tolerance = {"rtol": 1.6e-2, "atol": 1e-2} if dtype in (torch.bfloat16, torch.float16) else {}
    torch.testing.assert_close(dream_update(image, grad, (37, -101), 0.05, (0.0, 1.0)), expected, **tolerance)
    work = image.clone()
    dream_update(work, grad, (37, -101), 0.05, (0.0, 1.0), inplace=True)
    torch.testing.assert_close(work, expected, **tolerance)
