"""Built-in ``style`` effect: neural style transfer (a plugin like any other: entry point ``style``).

* ``effect.py``: the :class:`Style` effect (parameters, checks, coarse-to-fine loop, sequences).
* ``loss.py``: the Gatys loss (blended and masked styles, smoothing, normalisation) and its exact
  gradient, in one piece or in tiles.
* ``colour.py``: luminance-only transfer and colour matching (Gatys et al. 2017).
* ``optimize.py``: L-BFGS and Adam over our own gradient.
"""

from __future__ import annotations

from dreamkit import hookimpl

from .colour import colour_stats, luminance, match_colour, rgb_to_ycbcr, ycbcr_to_rgb
from .effect import Record, Style
from .loss import LossParts, StyleLoss, StyleTarget

__all__ = ["LossParts", "Record", "Style", "StyleLoss", "StyleTarget", "colour_stats", "luminance", "match_colour",
           "rgb_to_ycbcr", "ycbcr_to_rgb"]


@hookimpl
def dreamkit_register_effects(register):
    register(Style)
