"""Built-in ``deepdream`` effect (a plugin like any other: entry point ``deepdream``).

* ``effect.py``: the :class:`DeepDream` effect (parameters, objective and model set-up, frames).
* ``dream.py``: the octave loop with detail transfer, jitter and the fused update; ``zoom``.
* ``objective.py``: layer / channel / guide / class objectives, evaluable tile by tile.
* ``tiles.py``: the jittered gradient, in one piece or in exact tiles (``dreamkit.tiling``).
"""

from __future__ import annotations

from dreamkit import hookimpl
from dreamkit.tiling import Geometry, measure_geometry, plan_tiles

from .dream import Settings, dream, octave_sizes, zoom
from .effect import DeepDream
from .objective import LayerTerm, Objective

__all__ = ["DeepDream", "Geometry", "LayerTerm", "Objective", "Settings", "dream", "measure_geometry",
           "octave_sizes", "plan_tiles", "zoom"]


@hookimpl
def dreamkit_register_effects(register):
    register(DeepDream)
