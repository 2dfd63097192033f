"""The ladder shared by bench/deepdream.py and bench/models.py: from a competent plain MobileNetV2
to dreamkit's extractor, one change per rung, so each gain is attributed to what bought it.

    unfrozen      torchvision's model with trainable weights (weight gradients computed, unused)
    frozen        THE REFERENCE: eval(), requires_grad_(False), a forward hook, the whole model run
    truncated     only the layers up to the objective's layer run (FX graph cut there)
    bn-folded     BatchNorm folded into the convolutions
    allocator     glibc keeps freed memory (dreamkit.runtime.keep_freed_memory): no page faults per step
    channels-last NHWC activations and weights
    out-of-place  ReLU6 without the in-place copy back

Each rung is the one above plus its change; ``activation(rung, layer)`` builds it as a function
from a 0..1 image to the layer's activation.
"""

from __future__ import annotations

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
RUNGS = ("unfrozen", "frozen", "truncated", "bn-folded", "allocator", "channels-last", "out-of-place")
REFERENCE = "frozen"


def weights_path() -> str:
    """The verified MobileNetV2 ImageNet file both sides load."""
    from dreamkit.plugins import PluginHost

    return str(PluginHost().weights.resolve("mobilenet_v2.IMAGENET1K_V1", fetch=False))


def activation(rung: str, layer: str, weights: str | None = None):
    """``activation_of(image)`` for ``rung`` (see the module docstring)."""
    sys.path.insert(0, str(HERE))
    import plain_deepdream as plain
    import torch

    weights = weights or weights_path()
    if rung in ("unfrozen", "frozen"):
        return plain.model_with_hook(weights, layer, frozen=rung == "frozen")
    import torchvision

    from dreamkit import models, runtime

    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval().requires_grad_(False)
    body = models.trace_outputs(model, [layer])
    index = RUNGS.index(rung)
    if index >= RUNGS.index("bn-folded"):
        models.fold_batchnorm_in_sequentials(body)
        models.fold_batchnorm(body)
    if index >= RUNGS.index("allocator"):
        runtime.keep_freed_memory()
    channels_last = index >= RUNGS.index("channels-last")
    if channels_last:
        body.to(memory_format=torch.channels_last)
    if index >= RUNGS.index("out-of-place"):
        models.outplace_activations(body)

    def activation_of(image):
        x = (image - plain.MEAN) / plain.STD
        return body(x.contiguous(memory_format=torch.channels_last) if channels_last else x)[layer]

    return activation_of


def describe_cpu() -> str:
    """The CPU a figure is from: model name, torch's vector capability, threads, torch version."""
    import torch

    from dreamkit.runtime import cpu_name

    return (f"{cpu_name()}, torch CPU capability {torch.backends.cpu.get_cpu_capability()}, "
            f"{torch.get_num_threads()} threads, torch {torch.__version__}")
