"""The optimisers of a stylisation: L-BFGS (Gatys et al.'s choice, the default) and Adam.

Both take ``evaluate(x) -> (LossParts, gradient)``: the gradient comes from our own exact (and
possibly tiled) computation, not from autograd through one graph, so the optimisers only see a
function of the pixels.
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
    # No tolerance stops (as neural-style): the user asked for this many iterations. One step()
    # per iteration: torch's L-BFGS keeps its curvature history across steps and evaluates the
    # closure once per iteration either way.
    x.requires_grad_()
    optimiser = torch.optim.LBFGS([x], lr=1.0, max_iter=1, history_size=history, tolerance_grad=-1,
                                  tolerance_change=-1, line_search_fn=None)
    last: dict[str, LossParts] = {}

    def closure() -> torch.Tensor:
        parts, grad = evaluate(x.detach())
        x.grad = grad.contiguous()  # the network may hand back a channels_last gradient
        last["parts"] = parts
        return torch.tensor(parts.total, dtype=torch.float64)

    for iteration in range(iterations):
        optimiser.step(closure)
        if on_iteration is not None:
            on_iteration(iteration, x.detach(), last["parts"])
    x.requires_grad_(False)
    x.grad = None


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
