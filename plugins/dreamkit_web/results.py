"""What a finished web job leaves: the output PNG (with its recipe, as ``dreamkit run`` writes
it), the frames and animation of a sequence, the analysis records and the equivalent command."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from dreamkit.pipeline import Pipeline, RunResult
from dreamkit.recipe import make_recipe


def write_result(job: Any, result: RunResult) -> dict[str, Any]:
    """Write the job's files into its folder with the batch runner's own output code (the names,
    recipes and frame indices ``dreamkit run`` writes); return what the page needs (URLs are by
    job id and these names, relative to the job's folder)."""
    from pathlib import Path, PurePosixPath

    from dreamkit.batch.inputs import InputItem
    from dreamkit.batch.outputs import assign_outputs, write_result as write_outputs

    recipe = make_recipe(job.pipeline, job.seed, job.device, job.source)
    stem = PurePosixPath(Path(job.source["name"]).stem or "image")
    item = InputItem(Path(job.source.get("path") or job.source["name"]), stem, stem)
    (plan,) = assign_outputs([item], job.folder, "png")
    written = write_outputs(result, plan, recipe, overwrite=False)
    frames = result.frames
    names = [Path(frame["output"]).relative_to(job.folder).as_posix() for frame in written["frames"]]
    animation = Path(written["animation"]).relative_to(job.folder).as_posix() if written["animation"] else None
    return {
        "files": names,
        "animation": animation,
        "download": names[0] if len(frames) == 1 else animation,
        "results": [dict(record, frame=index) for index, frame in enumerate(frames) for record in frame.results],
        "width": int(frames[0].image.shape[-1]),
        "height": int(frames[0].image.shape[-2]),
        "command": command_line(job.pipeline, job.source["path"], job.seed),
        "recipe": recipe,
    }


def command_line(pipeline: Pipeline, input_name: str, seed: int) -> str:
    """The ``dreamkit run`` command that makes the same image from ``input_name``: each step with
    the parameters that differ from their defaults (the PNG's recipe holds them all). Files are
    named so that the command works where the user is: a sample by its real path (this machine's),
    an upload by the name of the user's own file."""
    parts = ["dreamkit", "run", input_name]
    for step in pipeline.steps:
        changed = {key: value for key, value in step.values.items() if value != step.params[key].default}
        values = ",".join(f"{key}={_text(value)}" for key, value in changed.items())
        parts += ["-e", f"{step.name}:{values}" if values else step.name]
    parts += ["-o", "out/"] + (["--seed", str(seed)] if seed else [])
    return shlex.join(parts)


def _text(value: Any) -> str:
    from dreamkit.effect import value_text
    from dreamkit.resources import Resource

    from .settings import samples

    if isinstance(value, Resource):  # a sample by its real path; an upload by the client's own name
        return str(value.path) if value.kind == "image" and Path(value.path) in set(samples().values()) else value.name
    if isinstance(value, list):
        return "[" + ",".join(_text(item) for item in value) + "]"
    return value_text(value)
