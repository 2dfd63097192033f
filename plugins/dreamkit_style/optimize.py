"""The optimisers of a stylisation: L-BFGS (Gatys et al.'s choice, the default) and Adam.

Both take ``evaluate(x) -> (LossParts, gradient)``: the gradient comes from our own exact (and
possibly tiled) computation, not from autograd through one graph, so the optimisers only see a
function of the pixels.

L-BFGS is written here rather than taken from ``torch.optim.LBFGS`` for memory: torch's keeps
about eight image-sized temporaries besides its history (a flattened copy of the gradient, the
direction, the previous gradient, y, s, q, r), 1.6 GiB for a 4096x4096 image; this one updates in
place and recycles the buffers of the history entry it drops, so it needs the history plus four
vectors (x, gradient, previous gradient, direction). The algorithm is torch's (the classic
two-loop recursion, H0 = sᵀy / yᵀy, first step min(1, 1/‖g‖₁)), as neural-style uses it, with a
backtracking safeguard (see :func:`_lbfgs`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .colour import along_axes
from .loss import LossParts

Evaluate = Callable[[torch.Tensor], tuple[LossParts, torch.Tensor]]
#: Called after each iteration with the image: a tensor, or (with ``smooth``) a function making it,
#: so that a reporter that shows nothing this iteration costs no filter pass over the image.
OnIteration = Callable[[int, "torch.Tensor | Callable[[], torch.Tensor]", LossParts], None]


@dataclass
class Safeguards:
    """What the optimiser's safeguards did in one run (all zero on a well-behaved run): the
    effect puts it in the output's record, so a run that was rescued says so.

    * ``halved_steps``: L-BFGS steps that did not lower the loss and were halved;
    * ``restarts``: the curvature history (L-BFGS) or the moments (Adam) dropped and the step made
      safer, after the loss stopped falling;
    * ``non_finite``: evaluations whose loss was not finite (NaN, inf);
    * ``out_of_range``: share of the result's values outside 0..1 before the final clamp.
    """

    halved_steps: int = 0
    restarts: int = 0
    non_finite: int = 0
    out_of_range: float = 0.0

    @property
    def acted(self) -> bool:
        return bool(self.halved_steps or self.restarts or self.non_finite)

    def as_record(self) -> dict[str, float]:
        return {**asdict(self), "out_of_range": float(f"{self.out_of_range:.4g}")}


def optimise(image: torch.Tensor, evaluate: Evaluate, *, method: str, iterations: int, learning_rate: float,
             history: int, on_iteration: OnIteration | None = None, safeguards: Safeguards | None = None,
             smooth: bool = False, colour_axes: torch.Tensor | None = None) -> torch.Tensor:
    """Minimise the loss from ``image`` for ``iterations`` iterations (one loss and gradient each);
    returns the result clamped to 0..1: the best point evaluated, never worse than the start by
    its own loss. ``safeguards`` (optional) is filled with what the safeguards did.

    Two linear maps may shape the steps: with ``smooth`` L-BFGS changes the image only through
    :func:`smooth_steps` (see there; Adam ignores it: its per-pixel step normalisation would undo
    the filter), and with ``colour_axes`` (a 3×3 projection, :func:`~.colour.palette_axes`) both
    optimisers move each pixel's colour only along those axes."""
    x = image.detach().clone(memory_format=torch.contiguous_format)
    safeguards = safeguards if safeguards is not None else Safeguards()
    steps = _step_map(smooth and method == "lbfgs", colour_axes)
    if method == "lbfgs" and steps is not None:
        # x = start + M z, optimised over z from 0: the loss of z is the loss of its image, its
        # gradient M gᵀ (M is symmetric: the filter and the colour map are, and they commute), so
        # L-BFGS and its safeguards see one consistent function.
        start = x

        def evaluate_z(z: torch.Tensor) -> tuple[LossParts, torch.Tensor]:
            parts, grad = evaluate(start + steps(z))
            return parts, steps(grad.contiguous())

        report = None if on_iteration is None else (lambda i, z, parts: on_iteration(i, lambda: start + steps(z), parts))
        z = torch.zeros_like(start)
        _lbfgs(z, evaluate_z, iterations, history, report, safeguards)
        x = start + steps(z)
    elif method == "lbfgs":
        _lbfgs(x, evaluate, iterations, history, on_iteration, safeguards)
    else:
        # Adam's steps are projected like L-BFGS's (its gradient projected: Adam's per-element
        # normalisation keeps a zero component zero).
        precondition = steps
        x = _adam(x, evaluate, iterations, learning_rate, on_iteration, safeguards, precondition)
    safeguards.out_of_range = float(((x < 0) | (x > 1)).float().mean())
    return x.clamp_(0, 1)


def _step_map(smooth: bool, colour_axes: torch.Tensor | None) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The linear map steps go through (None: the identity)."""
    if colour_axes is None:
        return smooth_steps if smooth else None
    if not smooth:
        return lambda image: along_axes(colour_axes, image)
    return lambda image: along_axes(colour_axes, smooth_steps(image))


#: The step filter's taps: symmetric, sum 1, response 0 at the 2-pixel frequency (10 - 2·4 + 2·-1),
#: 3/4 at 4 pixels, 1 at 0: flatter over the pass band than [1, 2, 1] (1/2 at 4 pixels).
STEP_FILTER = (-1.0, 4.0, 10.0, 4.0, -1.0)


def smooth_steps(image: torch.Tensor) -> torch.Tensor:
    """The separable 5-tap filter B of :data:`STEP_FILTER`, zero-padded (so B is symmetric: it is
    its own transpose). The networks' first convolutions have stride 2, so their input gradient
    has a 2-pixel period: unfiltered, L-BFGS wrote it into dark flat areas as a pixel grid (the FFT
    at the 2-pixel frequency 39x the high-frequency median on rocket x hubble at 512 px, the photo
    7.7x); through B no step carries that frequency (3.8x) and the style loss falls as far."""
    return _filter_along(_filter_along(image, -1), -2)


def _filter_along(image: torch.Tensor, dim: int) -> torch.Tensor:
    """:data:`STEP_FILTER` along ``dim``, zero-padded, as shifted sums (a depthwise conv2d was 5x
    slower on the CPU)."""
    size, pad = image.shape[dim], len(STEP_FILTER) // 2
    padded = F.pad(image, (pad, pad) if dim == -1 else (0, 0, pad, pad))
    out = image * (STEP_FILTER[pad] / sum(STEP_FILTER))
    for offset in range(1, pad + 1):
        pair = padded.narrow(dim, pad - offset, size) + padded.narrow(dim, pad + offset, size)
        out.add_(pair, alpha=STEP_FILTER[pad + offset] / sum(STEP_FILTER))
    return out


#: Armijo's constant: a step must lower the loss by at least this share of what the gradient
#: promised (the usual 1e-4), else it is halved.
SUFFICIENT_DECREASE = 1e-4
#: Halvings in a row after which the curvature history is dropped (steepest descent again).
RESET_AFTER = 4


def _lbfgs(x: torch.Tensor, evaluate: Evaluate, iterations: int, history: int, on_iteration: OnIteration | None,
           safeguards: Safeguards) -> None:
    """L-BFGS with a backtracking safeguard. A full quasi-Newton step is taken as torch and
    neural-style take it, but the loss of the point it lands on is checked (that evaluation is the
    next iteration's anyway): a step that did not lower the loss enough (Armijo), or made it
    non-finite, is halved from where it started instead of being kept, and the history is dropped
    after a few halvings in a row. Without it, a step into a flat region (a saturated ReLU6, the
    softmax of the smoothed Gram matrices) came back with a tiny curvature pair, the next step was
    enormous, and the image ran away from 0..1 (a 128 px scale: the loss 36 -> 1152 in 40
    iterations, the picture confetti). Every accepted step lowers the loss, so the result is the
    best iterate: never worse than the start by its own loss. Each evaluation counts as an
    iteration (the user's time budget)."""
    # No tolerance stops (as neural-style): the user asked for this many iterations.
    steps: list[torch.Tensor] = []  # s_i = x_{i+1} - x_i
    changes: list[torch.Tensor] = []  # y_i = g_{i+1} - g_i
    inverse_curvatures: list[float] = []  # 1 / (y_i . s_i)
    previous_grad: torch.Tensor | None = None
    previous_loss = math.inf
    promised = 0.0  # g . s of the step taken: its first-order decrease (negative)
    direction: torch.Tensor | None = None
    scale = 1.0  # H0 = (s.y) / (y.y)
    halvings = 0
    for iteration in range(iterations):
        parts, grad = evaluate(x)
        loss = parts.total
        last = iteration == iterations - 1
        safeguards.non_finite += not math.isfinite(loss)
        if direction is not None and not (math.isfinite(loss) and loss <= previous_loss + SUFFICIENT_DECREASE * promised):
            if last:  # no evaluation left to check a shorter step: back to the last good point
                x.sub_(direction)
                if on_iteration is not None:
                    on_iteration(iteration, x, parts)
                break
            direction.mul_(0.5)  # back to halfway between the start of the step and its end
            x.sub_(direction)
            promised *= 0.5
            halvings += 1
            safeguards.halved_steps += 1
            if halvings == RESET_AFTER:  # the curvature model is wrong here: start it again
                steps.clear(), changes.clear(), inverse_curvatures.clear()
                scale = 1.0
                safeguards.restarts += 1
            if on_iteration is not None:
                on_iteration(iteration, x, parts)
            continue
        halvings = 0
        if last:  # the point just evaluated is the result: a step from it would go unchecked
            if on_iteration is not None:
                on_iteration(iteration, x, parts)
            break
        grad = grad.contiguous()  # the network may hand back a channels_last gradient
        if previous_grad is not None:
            y = previous_grad.neg_().add_(grad)  # the previous gradient's buffer becomes y
            s = direction  # the last direction was scaled in place into the step taken
            ys = float(y.flatten().dot(s.flatten()))
            if ys > 1e-10:
                if len(steps) == history:
                    steps.pop(0), changes.pop(0), inverse_curvatures.pop(0)
                steps.append(s), changes.append(y), inverse_curvatures.append(1.0 / ys)
                scale = ys / float(y.flatten().dot(y.flatten()))
        # Two-loop recursion: direction = -H g.
        direction = grad.neg()
        alphas = []
        for s, y, rho in zip(reversed(steps), reversed(changes), reversed(inverse_curvatures)):
            alpha = float(s.flatten().dot(direction.flatten())) * rho
            direction.add_(y, alpha=-alpha)
            alphas.append(alpha)
        direction.mul_(scale)
        for (s, y, rho), alpha in zip(zip(steps, changes, inverse_curvatures), reversed(alphas)):
            beta = float(y.flatten().dot(direction.flatten())) * rho
            direction.add_(s, alpha=alpha - beta)
        promised = float(grad.flatten().dot(direction.flatten()))
        if not promised < 0:  # not a descent direction (a bad pair): steepest descent from here
            steps.clear(), changes.clear(), inverse_curvatures.clear()
            scale = 1.0
            direction = grad.neg()
            promised = float(grad.flatten().dot(direction.flatten()))
        step = min(1.0, 1.0 / max(float(grad.abs().sum()), 1e-30)) if not steps else 1.0
        direction.mul_(step)  # now the step s = t d itself
        promised *= step
        x.add_(direction)
        previous_grad, previous_loss = grad, loss
        if on_iteration is not None:
            on_iteration(iteration, x, parts)


#: Adam iterations in a row without a new best loss after which it goes back to the best point
#: with half the step size and fresh moments.
PATIENCE = 10


def _adam(x: torch.Tensor, evaluate: Evaluate, iterations: int, learning_rate: float,
          on_iteration: OnIteration | None, safeguards: Safeguards,
          precondition: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Adam with the best point kept (Adam's loss is not monotone). When the loss has not reached
    a new best for ``PATIENCE`` iterations, or is not finite, it goes back to the best point with
    half the step size and fresh moments (a step size too large for the image oscillates or
    diverges: lr=1 turned a photo to noise). Like L-BFGS, the last evaluation takes no step, and the
    result is the best point evaluated. Returns the result (a tensor that may not be ``x``)."""
    best = x.detach().clone()
    best_loss = math.inf
    since_best = 0
    rate = learning_rate
    x.requires_grad_()
    optimiser = torch.optim.Adam([x], lr=rate)
    for iteration in range(iterations):
        parts, grad = evaluate(x.detach())
        loss = parts.total
        finite = math.isfinite(loss)
        safeguards.non_finite += not finite
        if finite and loss < best_loss:
            best_loss, since_best = loss, 0
            best.copy_(x.detach())
        else:
            since_best += 1
        if on_iteration is not None:
            on_iteration(iteration, x.detach(), parts)
        if iteration == iterations - 1:
            break
        if not finite or since_best >= PATIENCE:
            rate *= 0.5
            safeguards.restarts += 1
            since_best = 0
            with torch.no_grad():
                x.copy_(best)
            optimiser = torch.optim.Adam([x], lr=rate)
            continue
        grad = grad.contiguous()  # the network may hand back a channels_last gradient
        x.grad = precondition(grad) if precondition is not None else grad
        optimiser.step()
        with torch.no_grad():
            x.clamp_(0, 1)
    return best
