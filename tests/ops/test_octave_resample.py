"""dreamkit.ops.octave_resample against its reference (F.interpolate + torch.roll)."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from dreamkit import ops
from dreamkit.ops import _reference, octave_resample

TOLERANCES = [(torch.float32, 1e-5, 1e-5), (torch.float64, 1e-12, 1e-12), (torch.bfloat16, 1.6e-2, 1e-2),
              (torch.float16, 2e-3, 2e-3)]
SHAPES = [(1, 1, 1, 1), (1, 3, 3, 517), (2, 3, 13, 17), (0, 3, 5, 5), (5, 1, 7, 2), (1, 4, 31, 29)]
SIZES = [(1, 1), (5, 7), (19, 23), (40, 3), (13, 17)]
SHIFTS = [(0, 0), (2, -3), (-101, 1000)]


def _image(shape, dtype=torch.float32, seed=0):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def test_the_compiled_kernel_is_used():
    assert ops.backend() == "compiled"
    assert torch._C._dispatch_has_kernel_for_dispatch_key("dreamkit::octave_resample", "CPU")


@pytest.mark.parametrize("dtype, rtol, atol", TOLERANCES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("shift", SHIFTS)
def test_matches_interpolate_then_roll(dtype, rtol, atol, shape, size, shift):
    x = _image(shape, dtype)
    # float32/64: F.interpolate in the same dtype (it does the same float arithmetic of source
    # positions); bf16/fp16: computed in float64, as ATen's own low-precision path differs.
    exact = dtype in (torch.float32, torch.float64)
    expected = _reference.octave_resample(x if exact else x.double(), size, shift).to(dtype)
    torch.testing.assert_close(octave_resample(x, size, shift), expected, rtol=rtol, atol=atol)


def test_without_shift_it_is_f_interpolate():
    x = _image((2, 3, 100, 70))
    for size in [(140, 98), (71, 50)]:
        expected = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        torch.testing.assert_close(octave_resample(x, size), expected, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("shift", SHIFTS)
def test_channels_last_stays_channels_last(shift):
    x = _image((2, 5, 9, 14)).contiguous(memory_format=torch.channels_last)
    out = octave_resample(x, (12, 10), shift)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, _reference.octave_resample(x, (12, 10), shift), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [lambda x: x.transpose(-1, -2), lambda x: x[:, :, ::2, 1::3],
                                  lambda x: x.permute(1, 0, 2, 3)])
def test_non_contiguous_inputs(make):
    x = make(_image((2, 3, 12, 17)))
    out = octave_resample(x, (9, 11), (4, -5))
    assert out.is_contiguous()
    torch.testing.assert_close(out, _reference.octave_resample(x, (9, 11), (4, -5)), rtol=1e-5, atol=1e-6)


def test_single_int_size_and_shift():
    x = _image((1, 2, 6, 8))
    torch.testing.assert_close(octave_resample(x, 5, 2), _reference.octave_resample(x, (5, 5), (2, 2)))


def test_antialias_matches_the_antialiased_reference():
    x = _image((1, 3, 40, 50))
    out = octave_resample(x, (17, 21), (3, 4), antialias=True)
    torch.testing.assert_close(out, _reference.octave_resample(x, (17, 21), (3, 4), antialias=True))
    assert not torch.allclose(out, octave_resample(x, (17, 21), (3, 4)), atol=1e-3)


@pytest.mark.parametrize("size", [(7, 9), (3, 2)])
def test_gradients(size):
    x = torch.rand(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: octave_resample(t, size, (2, -3)), (x,))
    assert torch.autograd.gradgradcheck(lambda t: octave_resample(t, size, (2, -3)), (x,))


def test_gradient_matches_the_reference_in_channels_last():
    x = _image((1, 3, 10, 12)).contiguous(memory_format=torch.channels_last)
    ours, reference = x.clone().requires_grad_(), x.clone().requires_grad_()
    weights = torch.rand(1, 3, 14, 9)
    (octave_resample(ours, (14, 9), (5, 1)) * weights).sum().backward()
    (_reference.octave_resample(reference, (14, 9), (5, 1)) * weights).sum().backward()
    torch.testing.assert_close(ours.grad, reference.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("x", [torch.rand(2, 3, 5, 7), torch.rand(1, 4, 6, 6).contiguous(memory_format=torch.channels_last),
                               torch.rand(0, 2, 3, 3)])
def test_opcheck(x):
    torch.library.opcheck(torch.ops.dreamkit.octave_resample.default, (x, [8, 4], 3, -7))
    torch.library.opcheck(torch.ops.dreamkit.octave_resample.default, (x.double().requires_grad_(), [3, 9], 1, 2))


def test_torch_compile_fullgraph():
    compiled = torch.compile(lambda t: octave_resample(t, (9, 7), (1, 2)) * 2, fullgraph=True, backend="aot_eager")
    x = torch.rand(1, 3, 8, 10)
    torch.testing.assert_close(compiled(x), _reference.octave_resample(x, (9, 7), (1, 2)) * 2)


@settings(max_examples=60, deadline=None)
@given(batch=st.integers(0, 2), channels=st.integers(1, 4), height=st.integers(1, 30), width=st.integers(1, 30),
       out_height=st.integers(1, 40), out_width=st.integers(1, 40), shift_y=st.integers(-50, 50),
       shift_x=st.integers(-50, 50), channels_last=st.booleans())
def test_property_matches_reference(batch, channels, height, width, out_height, out_width, shift_y, shift_x,
                                    channels_last):
    x = torch.rand(batch, channels, height, width, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    size, shift = (out_height, out_width), (shift_y, shift_x)
    torch.testing.assert_close(octave_resample(x, size, shift), _reference.octave_resample(x, size, shift))


@pytest.mark.parametrize("call, error, match", [
    (lambda: octave_resample(torch.zeros(3, 4, 4), (2, 2)), ValueError, r"x must be \(B, C, H, W\); got shape \(3, 4, 4\)"),
    (lambda: octave_resample(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), (2, 2)), TypeError, "floating-point"),
    (lambda: octave_resample(torch.zeros(1, 1, 4, 4), (0, 2)), ValueError, r"size must be positive, got \(0, 2\)"),
    (lambda: octave_resample(torch.zeros(1, 1, 4, 4), (2.5, 2)), TypeError, r"size must be an int or a pair of ints"),
    (lambda: octave_resample(torch.zeros(1, 1, 4, 4), (2, 2), shift=(1, 2, 3)), TypeError, "shift must be an int or a pair"),
    (lambda: octave_resample(torch.zeros(1, 1, 0, 4), (2, 2)), ValueError, "empty image plane"),
])
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_the_op_itself_checks_its_input():
    with pytest.raises(RuntimeError, match="dreamkit::octave_resample: size must be two positive ints"):
        torch.ops.dreamkit.octave_resample(torch.zeros(1, 1, 3, 3), [0, 3], 0, 0)
    with pytest.raises(RuntimeError, match="dreamkit::octave_resample: x has an empty image plane"):
        torch.ops.dreamkit.octave_resample(torch.zeros(1, 1, 0, 3), [2, 3], 0, 0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_cuda_matches_reference(dtype, channels_last):
    x = _image((2, 3, 37, 41), dtype).cuda()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for size, shift in [((52, 57), (5, -7)), ((26, 29), (0, 0)), ((1, 1), (3, 3))]:
        expected = _reference.octave_resample(x.double(), size, shift).to(dtype)
        tolerance = {"rtol": 1.6e-2, "atol": 1e-2} if dtype in (torch.bfloat16, torch.float16) else {}
        torch.testing.assert_close(octave_resample(x, size, shift), expected, **tolerance)
    grad_x = x.double().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: octave_resample(t, (7, 9), (2, -3)), (grad_x[:1, :1, :5, :6].detach().requires_grad_(),))
