"""dreamkit.ops.jitter against its reference (torch.roll)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dreamkit import ops
from dreamkit.ops import _reference, jitter

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.uint8, torch.int64]
SHAPES = [(1, 1), (3, 517), (1, 3, 13, 17), (2, 3, 31, 7), (0, 3, 5, 5), (5, 1, 1, 1), (2, 2, 3, 11, 19)]
SHIFTS = [(0, 0), (1, 2), (-3, 5), (1000, -999), (-31, 31)]


def _sample(shape, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        return torch.randn(shape, generator=generator).to(dtype)
    return torch.randint(0, 200, shape, generator=generator).to(dtype)


def test_the_compiled_kernel_is_used():
    assert ops.backend() == "compiled"
    assert torch._C._dispatch_has_kernel_for_dispatch_key("dreamkit::jitter", "CPU")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("shift", SHIFTS)
def test_matches_torch_roll_exactly(dtype, shape, shift):
    x = _sample(shape, dtype)
    assert torch.equal(jitter(x, *shift), _reference.jitter(x, *shift))


@pytest.mark.parametrize("shift", SHIFTS)
def test_channels_last_stays_channels_last(shift):
    x = _sample((2, 5, 9, 14), torch.float32).contiguous(memory_format=torch.channels_last)
    out = jitter(x, *shift)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, _reference.jitter(x, *shift))


@pytest.mark.parametrize("make", [
    lambda x: x.transpose(-1, -2),
    lambda x: x[..., ::2, 1::3],
    lambda x: x.permute(1, 0, 2, 3),
    lambda x: x.expand(3, -1, -1, -1) if x.shape[0] == 1 else x[:1].expand(3, -1, -1, -1),
])
def test_non_contiguous_inputs(make):
    x = make(_sample((2, 3, 12, 17), torch.float32))
    out = jitter(x, 5, -4)
    assert out.is_contiguous() and torch.equal(out, _reference.jitter(x, 5, -4))


def test_gradcheck_and_adjoint():
    x = torch.randn(2, 3, 7, 11, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: jitter(t, 3, -8), (x,))
    assert torch.autograd.gradgradcheck(lambda t: jitter(t, 3, -8), (x,))
    y = torch.randn_like(x)
    # <jitter(x), y> == <x, jitter(y, -shift)>: the adjoint is the negative shift
    torch.testing.assert_close((jitter(x, 3, -8) * y).sum(), (x * jitter(y, -3, 8)).sum())


@pytest.mark.parametrize("x", [torch.randn(2, 3, 5, 7), torch.randn(1, 4, 6, 6).contiguous(memory_format=torch.channels_last),
                               torch.randn(3, 517), torch.randn(0, 2, 3, 3)])
def test_opcheck(x):
    torch.library.opcheck(torch.ops.dreamkit.jitter.default, (x, 3, -7))
    torch.library.opcheck(torch.ops.dreamkit.jitter.default, (x.double().requires_grad_(), 1, 2))


def test_torch_compile_fullgraph():
    compiled = torch.compile(lambda t: jitter(t, 2, -3) * 2, fullgraph=True, backend="aot_eager")
    x = torch.randn(1, 3, 8, 10)
    assert torch.equal(compiled(x), _reference.jitter(x, 2, -3) * 2)


@settings(max_examples=60, deadline=None)
@given(
    dims=st.lists(st.integers(1, 4), min_size=0, max_size=2),
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    shift_y=st.integers(-200, 200),
    shift_x=st.integers(-200, 200),
    channels_last=st.booleans(),
)
def test_property_matches_roll(dims, height, width, shift_y, shift_x, channels_last):
    x = torch.randn(*dims, height, width)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(jitter(x, shift_y, shift_x), _reference.jitter(x, shift_y, shift_x))


@pytest.mark.parametrize("args, error, match", [
    ((torch.zeros(5), 1, 1), ValueError, r"at least 2 dims \(\.\.\., H, W\); got shape \(5,\)"),
    ((torch.zeros(2, 2), 1.5, 1), TypeError, "shift_y must be an int, got 1.5"),
    ((torch.zeros(2, 2), 1, True), TypeError, "shift_x must be an int, got True"),
    (([[1.0]], 1, 1), TypeError, "x must be a tensor, got list"),
])
def test_bad_arguments(args, error, match):
    with pytest.raises(error, match=match):
        jitter(*args)


def test_the_op_itself_checks_its_input():
    with pytest.raises(RuntimeError, match="dreamkit::jitter: x must have at least 2 dims"):
        torch.ops.dreamkit.jitter(torch.zeros(3), 1, 1)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_cuda_matches_torch_roll_exactly(dtype, shape):
    assert torch._C._dispatch_has_kernel_for_dispatch_key("dreamkit::jitter", "CUDA")
    x = _sample(shape, dtype).cuda()
    for shift in SHIFTS:
        assert torch.equal(jitter(x, *shift), _reference.jitter(x, *shift))
    if x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
        out = jitter(x, 5, -3)
        assert torch.equal(out, _reference.jitter(x, 5, -3))
        assert x.is_contiguous() or out.is_contiguous(memory_format=torch.channels_last)
