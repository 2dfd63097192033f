"""Typed file parameters: a parameter that names a file says so, and each front end resolves it.

An effect declares ``Param(str, None, resource="image")`` (or ``item=str`` lists of them): the
value is a file, not a word. Before a pipeline runs, its front end turns every such value into a
:class:`Resource` (where the file is on this machine, its name as the user gave it, and the
sha256 of its bytes):

* the command line, recipes and the Python API take paths, relative to the working folder or to
  the recipe file (:class:`PathResolver`); a ``"file"`` given by a bare name that is not there is
  looked up in the models folder (:func:`dreamkit.weights_file.models_dir`);
* the web page takes uploads (and its sample images), and refuses paths: the server never opens
  a path a client names (``dreamkit_web``'s resolver).

A resolved resource goes into the recipe (name and sha256), so resume redoes an output whose
files changed and replay says which file changed or is missing. A ``Resource`` is also an
``os.PathLike``: effect code opens it as it opened a path.

Kinds: ``"image"`` (an input image), ``"file"`` (any input file, e.g. weights), ``"folder"`` (an
input folder, e.g. an index; no sha256: its contents are checked by whoever reads it). There is
no kind for a place to write: an effect never writes where a parameter says (images it makes on
the way are artifacts of the run, :mod:`dreamkit.artifacts`). A parameter's
``words`` (``"content"``, ``"default"``) and, for ``"file"`` parameters, the names of registered
weights are values that are not files: they are left as they are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import ParameterError

KINDS = ("image", "file", "folder")


@dataclass(frozen=True)
class Resource:
    """A file a parameter names, resolved on this machine."""

    kind: str
    name: str
    path: Path
    sha256: str | None

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def describe(self) -> dict[str, Any]:
        """What a recipe records of it."""
        return {"kind": self.kind, "name": self.name, "path": str(self.path), "sha256": self.sha256}


def make_resource(kind: str, name: str, path: Path) -> Resource:
    """A resource for an existing ``path`` (its sha256 read now)."""
    from .weights import sha256_of

    return Resource(kind, name, path.resolve(), sha256_of(path) if kind in ("image", "file") else None)


class PathResolver:
    """Resolves paths (the command line, recipes, the Python API), relative to ``base`` (the working
    folder, or a recipe's folder). A value that is not an existing file (folder) of the right
    kind is a :class:`ParameterError` naming the effect, the parameter and the value."""

    def __init__(self, base: Path | None = None, host: Any = None) -> None:
        self.base = Path.cwd() if base is None else Path(base)
        self.host = host

    def __call__(self, effect: str, param: Any, value: Any, values: dict[str, Any] | None = None) -> Any:
        if isinstance(value, Resource) or is_word(param, value, self.host):
            return value
        if param.resource == "image" and is_image_data(value):
            return in_memory_image(value)
        path = Path(os.path.expanduser(str(value)))
        path = path if path.is_absolute() else self.base / path
        kind = param.resource
        if kind == "folder" and path.is_dir() or kind != "folder" and path.is_file():
            return make_resource(kind, str(value), path)
        in_models = in_models_folder(str(value)) if kind == "file" else None
        if in_models is not None:
            return make_resource(kind, str(value), in_models)
        wanted = "folder" if kind == "folder" else "file"
        where = f" (looked in {self.base})" if not Path(str(value)).is_absolute() else ""
        if kind == "file" and self.host is not None and os.sep not in str(value) and not Path(str(value)).suffix:
            raise ParameterError(f"effect '{effect}': parameter '{param.name}' = {str(value)!r} "
                                 + self.host.weights.not_a_name(str(value), (values or {}).get("backbone")))
        raise ParameterError(f"effect '{effect}': parameter '{param.name}' = {str(value)!r}: no such {wanted}{where}")


def in_models_folder(name: str) -> Path | None:
    """A bare file name found in the models folder (``dreamkit weights list`` shows them)."""
    from .weights_file import models_dir

    if os.sep in name or (os.altsep and os.altsep in name) or name in ("", ".", ".."):
        return None
    path = models_dir() / name
    return path if path.is_file() else None


def is_image_data(value: Any) -> bool:
    """A PIL image, a tensor (C×H×W or 1×C×H×W, 0..1) or an array (H×W×C, uint8 or 0..1 floats):
    what the Python API takes for an image parameter besides a path."""
    import numpy as np
    import torch
    from PIL import Image

    return isinstance(value, (Image.Image, torch.Tensor, np.ndarray))


def in_memory_image(value: Any) -> Resource:
    """An image given as data, as a resource: written once as a PNG named by its content's
    sha256 in a folder of this user's temporary directory, so an effect opens it like any other."""
    import hashlib
    import tempfile

    import numpy as np
    import torch
    from PIL import Image

    from .io import pil_to_tensor, save_image

    if isinstance(value, Image.Image):
        tensor = pil_to_tensor(value)
    elif isinstance(value, np.ndarray):
        array = value if value.ndim == 3 else value[..., None].repeat(3, axis=-1)
        array = array.astype(np.float32) / 255.0 if array.dtype == np.uint8 else array.astype(np.float32)
        tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
    else:
        tensor = value.detach().float().cpu()
    tensor = (tensor if tensor.dim() == 4 else tensor.unsqueeze(0)).clamp(0, 1)
    digest = hashlib.sha256(tensor.numpy().tobytes() + str(tuple(tensor.shape)).encode()).hexdigest()
    folder = Path(tempfile.gettempdir()) / f"dreamkit-images-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"{digest[:32]}.png"
    if not path.exists():
        save_image(tensor, path, overwrite=True)
    height, width = tensor.shape[-2:]
    return make_resource("image", f"<{type(value).__name__} {width}x{height}>", path)


def is_word(param: Any, value: Any, host: Any) -> bool:
    """Whether ``value`` of a file parameter is one of its words, not a file: a declared word, or
    for a ``"file"`` parameter a registered weights name."""
    if value in param.words:
        return True
    return param.resource == "file" and host is not None and value in host.weights.entries


def resource_params(effect: Any) -> dict[str, Any]:
    """The effect's parameters that name files: name → :class:`~dreamkit.effect.Param`."""
    return {name: param for name, param in effect.params.items() if param.resource}


def resolve_values(effect_class: Any, values: dict[str, Any], resolve: Callable[[str, Any, Any], Any]) -> dict[str, Any]:
    """``values`` (an effect's parameters, before it is built) with its file parameters resolved
    by ``resolve(effect name, param, value)``: so the effect's own checks see the resolved files."""
    resolved = dict(values)
    for name, param in resource_params(effect_class).items():
        value = values.get(name)
        if value is None:
            continue
        if isinstance(value, list):
            resolved[name] = [resolve(effect_class.name, param, item, values) for item in value]
        else:
            resolved[name] = resolve(effect_class.name, param, value, values)
    return resolved


def resolve_effect(effect: Any, resolve: Callable[[str, Any, Any], Any]) -> Any:
    """``effect`` with its file parameters resolved by ``resolve(effect name, param, value)``: the
    same object when nothing changes, else one built again (its checks then see the resolved files)."""
    changes = {}
    for name, param in resource_params(effect).items():
        value = effect.values[name]
        if value is None:
            continue
        resolved = [resolve(effect.name, param, v, effect.values) for v in value] if isinstance(value, list) \
            else resolve(effect.name, param, value, effect.values)
        if any(a is not b for a, b in zip(resolved if isinstance(resolved, list) else [resolved],
                                          value if isinstance(value, list) else [value])):
            changes[name] = resolved
    if not changes:
        return effect
    return type(effect)(**{**effect.values, **changes})


def resolve_pipeline(pipeline: Any, resolve: Callable[[str, Any, Any], Any]) -> Any:
    """The pipeline with every step's file parameters resolved (the same object if none changed)."""
    steps = [resolve_effect(step, resolve) for step in pipeline.steps]
    if all(new is old for new, old in zip(steps, pipeline.steps)):
        return pipeline
    return type(pipeline)(steps)


def relative_to_recipe(value: Any, base: Path, recipe_folder: Path) -> Any:
    """A file parameter's recipe value (a name or a list of them) as a recipe in
    ``recipe_folder`` must hold it: a path that names a file or folder relative to ``base`` is
    rewritten relative to the recipe's folder, where a recipe's paths are read from; words,
    weights names, models-folder names and absolute paths stay as they are."""
    if isinstance(value, list):
        return [relative_to_recipe(item, base, recipe_folder) for item in value]
    if not isinstance(value, str) or Path(os.path.expanduser(value)).is_absolute() or not (base / value).exists():
        return value
    return os.path.relpath((base / value).resolve(), recipe_folder.resolve())


def resources_of(pipeline: Any) -> list[dict[str, Any]]:
    """Every resolved resource of a pipeline, for its recipe: step, parameter, index in a list."""
    found = []
    for step, effect in enumerate(pipeline.steps):
        for name in resource_params(effect):
            value = effect.values[name]
            for index, item in enumerate(value if isinstance(value, list) else [value]):
                if isinstance(item, Resource):
                    found.append({"step": step, "effect": effect.name, "param": name,
                                  "index": index if isinstance(value, list) else None, **item.describe()})
    return found


__all__ = ["KINDS", "PathResolver", "in_models_folder", "Resource", "is_word", "make_resource",
           "relative_to_recipe", "resolve_effect", "resolve_pipeline", "resource_params", "resources_of"]
