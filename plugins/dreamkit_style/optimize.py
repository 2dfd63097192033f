"""The optimisers of a stylisation: L-BFGS (Gatys et al.'s choice, the default) and Adam.

Both take ``evaluate(x) -> (LossParts, gradient)``: the gradient comes from our own exact (and
possibly tiled) computation, not from autograd through one graph, so the optimisers only see a
function of the pixels.

L-BFGS is written here rather than taken from ``torch.optim.LBFGS`` for memory: torch's keeps
about eight image-sized temporaries besides its history (a flattened copy of the gradient, the
direction, the previous gradient, y, s, q, r), 1.6 GiB for a 4096x4096 image; this one updates in
place and recycles the buffers of the history entry it drops, so it needs the history plus four
vectors (x, gradient, previous gradient, direction). The algorithm is torch's without a line
search (the classic two-loop recursion, H0 = sᵀy / yᵀy, first step min(1, 1/‖g‖₁)), as
neural-style uses it.
"""

from __future__ import annotations

from typing import Callable

import torch

from .loss import LossParts

Evaluate = Callable[[torch.Tensor], tuple[LossParts, torch.Tensor]]
OnIteration = Callable[[int, torch.Tensor, LossParts], None]


def optimise(image: torch.Tensor, evaluate: Evaluate, *, method: str, iterations: int, learning_rate: float,
             history: int, on_iteration: OnIteration | None = None) -> torch.Tensor:
    """Minimise the loss from ``image`` for ``iterations`` iterations (one loss and gradient each);
    returns the result clamped to 0..1."""
    x = image.detach().clone(memory_format=torch.contiguous_format)
    if method == "lbfgs":
        _lbfgs(x, evaluate, iterations, history, on_iteration)
    else:
        _adam(x, evaluate, iterations, learning_rate, on_iteration)
    return x.clamp_(0, 1)


def _lbfgs(x: torch.Tensor, evaluate: Evaluate, iterations: int, history: int, on_iteration: OnIteration | None) -> None:
    # No tolerance stops (as neural-style): the user asked for this many iterations.
    steps: list[torch.Tensor] = []  # s_i = x_{i+1} - x_i
    changes: list[torch.Tensor] = []  # y_i = g_{i+1} - g_i
    inverse_curvatures: list[float] = []  # 1 / (y_i . s_i)
    previous_grad: torch.Tensor | None = None
    direction: torch.Tensor | None = None
    scale = 1.0  # H0 = (s.y) / (y.y)
    for iteration in range(iterations):
        parts, grad = evaluate(x)
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
        step = min(1.0, 1.0 / max(float(grad.abs().sum()), 1e-30)) if iteration == 0 else 1.0
        direction.mul_(step)  # now the step s = t d itself
        x.add_(direction)
        previous_grad = grad
        if on_iteration is not None:
            on_iteration(iteration, x, parts)


def _adam(x: torch.Tensor, evaluate: Evaluate, iterations: int, learning_rate: float,
          on_iteration: OnIteration | None) -> None:
    x.requires_grad_()
    optimiser = torch.optim.Adam([x], lr=learning_rate)
    for iteration in range(iterations):
        parts, grad = evaluate(x.detach())
        x.grad = grad.contiguous()  # the network may hand back a channels_last gradient
        optimiser.step()
        with torch.no_grad():
            x.clamp_(0, 1)
        if on_iteration is not None:
            on_iteration(iteration, x.detach(), parts)
    x.requires_grad_(False)
    x.grad = None
