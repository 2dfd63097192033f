"""Built-in ``style`` effect: neural style transfer (a plugin like any other: entry point ``style``).

* ``effect.py``: the :class:`Style` effect (parameters, checks, coarse-to-fine loop, sequences).
* ``loss.py``: the Gatys loss (blended and masked styles, smoothing, normalisation) and its exact
  gradient, in one piece or in tiles.
* ``colour.py``: luminance-only transfer and colour matching (Gatys et al. 2017).
* ``optimize.py``: L-BFGS and Adam over our own gradient.

Real-time style (``fast_style`` and ``dreamkit style train``):

* ``transformer.py``: the feed-forward networks (``classic``, ``small``) and their exact tiles.
* ``training.py``: training with the effect's own loss (one process); ``ray_training.py``: on Ray
  Train; ``commands.py``: ``dreamkit style train``.
* ``model.py``: the ``.dkstyle`` file; ``fast_effect.py``: the ``fast_style`` effect.
"""

from __future__ import annotations

from dreamkit import hookimpl

from .colour import colour_stats, luminance, match_colour, rgb_to_ycbcr, ycbcr_to_rgb
from .effect import Record, Style
from .fast_effect import FastStyle
from .loss import LossParts, StyleLoss, StyleTarget

__all__ = ["FastStyle", "LossParts", "Record", "Style", "StyleLoss", "StyleTarget", "colour_stats", "luminance", "match_colour",
           "rgb_to_ycbcr", "ycbcr_to_rgb"]


@hookimpl
def dreamkit_register_effects(register):
    register(Style)
    register(FastStyle)


@hookimpl
def dreamkit_register_commands(register):
    from .commands import COMMAND

    register(COMMAND)
