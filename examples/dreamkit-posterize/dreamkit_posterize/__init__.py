"""A posterize effect: each colour channel reduced to a few evenly spaced levels.

Written only against dreamkit's public API (``Effect``, ``Param``, ``hookimpl``).
"""

from dreamkit import Effect, Param, hookimpl


class Posterize(Effect):
    """Round every channel to ``levels`` evenly spaced values between 0 and 1."""

    name = "posterize"
    summary = "Reduce each colour channel to a few levels (poster look)."
    levels = Param(int, 4, min=2, max=256, help="levels per channel")

    def apply(self, image, context):
        steps = self.levels - 1
        return (image.clamp(0, 1) * steps).round() / steps


@hookimpl
def dreamkit_register_effects(register):
    register(Posterize)
