"""Reading what the page sends: a job (an image and a pipeline) or a recipe to restore.

Every check the CLI makes is made here, with its messages: unknown effects and bad parameters
(400), images that are not images or too large (400, 413). Uploads are written into the server's
own folder under names it chooses, never the client's.
"""

from __future__ import annotations

import json
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from dreamkit.errors import DreamkitError

from .settings import ApiError, ServerSettings


#: What an uploaded file parameter may be (images, and weights files for "file" parameters).
WEIGHTS_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".dkstyle")


@dataclass
class Submission:
    pipeline: Any
    #: The image to run on, still encoded (an upload under a server-chosen name, or a sample):
    #: decoded only when the job starts, so a queued job holds no pixels.
    image: Path
    #: The name the client knows it by (in messages and the command, never our temporary's).
    image_name: str
    source: dict[str, Any]
    seed: int
    #: Uploaded files (the image, the pipeline's file parameters): deleted when the job is done.
    files: list[Path] = field(default_factory=list)


class WebFiles:
    """Resolves the file parameters of a pipeline sent by the page. The server never opens a path
    a client names: a file parameter is ``"upload:KEY"`` (the file sent in the form field
    ``file:KEY``) or, for an image, ``"sample:NAME"`` (one of the offered samples); a folder
    parameter (an index) is ``"folder:NAME"``, one the operator shares (``--folder NAME=PATH``);
    a file parameter may also be ``"model:NAME"``, a trained model in the server's models folder;
    its words (``"content"``, ``"default"``, a registered weights name) pass; anything else is
    refused with 400, before any file is opened."""

    def __init__(self, host: Any, uploads: dict[str, tuple[Path, str]], samples: dict[str, Path],
                 folders: dict[str, Path] | None = None) -> None:
        self.host, self.uploads, self.samples = host, uploads, samples
        self.folders = folders or {}

    def __call__(self, effect: str, param: Any, value: Any, values: dict[str, Any] | None = None) -> Any:
        from dreamkit.resources import is_word, make_resource

        where = f"effect '{effect}': parameter '{param.name}'"
        if is_word(param, value, self.host):
            return value
        text = str(value)
        if param.resource == "folder":
            if text.startswith("folder:") and text[7:] in self.folders:
                return make_resource("folder", text[7:], self.folders[text[7:]])
            shared = ", ".join(f"folder:{name}" for name in self.folders)
            raise ApiError(400, f"{where} = {text!r}: the web page uses only the folders this server shares; "
                                + (f"allowed: {shared}" if shared else "it shares none (dreamkit serve --folder NAME=PATH)"))
        if text.startswith("upload:") and text[7:] in self.uploads:
            path, name = self.uploads[text[7:]]
            return make_resource(param.resource, name, path)
        if text.startswith("sample:") and param.resource == "image" and text[7:] in self.samples:
            return make_resource("image", text[7:], self.samples[text[7:]])
        if text.startswith("model:") and param.resource == "file":
            from dreamkit.weights_file import list_models

            models = {m["name"]: Path(m["path"]) for m in list_models() if "error" not in m}
            if text[6:] in models:
                return make_resource("file", text[6:], models[text[6:]])
            raise ApiError(400, f"{where} = {text!r}: no such model in the server's models folder; it has "
                                + (", ".join(f"model:{name}" for name in models) or "none"))
        if text.startswith(("upload:", "sample:")):
            raise ApiError(400, f"{where} = {text!r}: no such upload or sample in this request")
        raise ApiError(400, f"{where} = {text!r} names a file on the server; the web page never opens those: "
                            "upload the file (upload:KEY with the form field file:KEY) or pick a sample (sample:NAME)")


async def _form(request: Any, settings: ServerSettings) -> Any:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > settings.max_upload:
        raise ApiError(413, f"upload of {int(length):,} bytes is too large; the limit is {settings.max_upload:,} bytes")
    try:
        return await request.form(max_part_size=settings.max_upload)
    except ApiError:
        raise
    except Exception as exc:  # noqa: BLE001 (malformed multipart: the client's error)
        raise ApiError(400, f"the request is not a valid form upload: {exc}") from None


async def _upload(form: Any, field: str, settings: ServerSettings, workdir: Path, suffixes: tuple[str, ...]) -> tuple[Path, str]:
    """Save the uploaded file ``field`` under a server-chosen name; return (path, client's file name)."""
    upload = form.get(field)
    data = await upload.read(settings.max_upload + 1)
    if len(data) > settings.max_upload:
        raise ApiError(413, f"upload is too large; the limit is {settings.max_upload:,} bytes")
    if not data:
        raise ApiError(400, f"{upload.filename or field}: empty file (0 bytes)")
    name = Path(upload.filename or "upload").name
    suffix = Path(name).suffix.lower()
    if suffix not in suffixes:
        raise ApiError(400, f"{name}: not an allowed file type ({suffix or 'no extension'}); "
                            f"allowed: {', '.join(suffixes)}")
    path = workdir / "uploads" / f"{uuid.uuid4().hex}{suffix}"
    path.write_bytes(data)
    return path, name


async def read_submission(request: Any, settings: ServerSettings, samples: dict[str, Path], workdir: Path,
                          host: Any) -> Submission:
    """The job the page sent: its pipeline (file parameters resolved by :class:`WebFiles`), image
    and seed; a bad one is an :class:`ApiError` and leaves no uploaded file behind."""
    from dreamkit.io import INPUT_SUFFIXES
    from dreamkit.pipeline import Pipeline

    form = await _form(request, settings)
    try:
        config = json.loads(form.get("pipeline") or "")
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"'pipeline' must be a JSON pipeline config ({{\"steps\": [...]}}): {exc}") from None
    seed_text = str(form.get("seed") or "0")
    if not seed_text.lstrip("-").isdigit() or not 0 <= int(seed_text) < 2**63:
        raise ApiError(400, f"seed {seed_text!r} is not allowed; expected an integer from 0 to 2^63-1")
    uploads: dict[str, tuple[Path, str]] = {}
    try:
        for key in {k for k in form.keys() if k.startswith("file:")}:
            uploads[key[5:]] = await _upload(form, key, settings, workdir, (*INPUT_SUFFIXES, *WEIGHTS_SUFFIXES))
        if not isinstance(config, dict):
            raise ApiError(400, f"'pipeline' must be a JSON object ({{\"steps\": [...]}}), not {type(config).__name__}")
        pipeline = Pipeline.from_config(config, host=host, resolve=WebFiles(host, uploads, samples, settings.folders))
    except DreamkitError as exc:
        _remove(uploads)
        raise ApiError(400, _client_names(str(exc), uploads)) from None
    except (TypeError, ValueError) as exc:
        _remove(uploads)
        raise ApiError(400, f"pipeline config: {_client_names(str(exc), uploads)}") from None
    except ApiError:
        _remove(uploads)
        raise
    try:
        source, name, path, sample = await _main_image(form, settings, samples, workdir)
    except ApiError:
        _remove(uploads)
        raise
    source.update(name=name, path=name if not sample else str(path))  # the client's name, not our temporary
    files = [path for path, _ in uploads.values()] + ([] if sample else [path])
    return Submission(pipeline, path, name, source, int(seed_text), files)


async def _main_image(form: Any, settings: ServerSettings, samples: dict[str, Path], workdir: Path) -> tuple:
    """The image to run on: an upload in 'image' or a sample; (source, name, path, sample). Its
    header is checked now (format, pixel count: bombs are refused without decoding them); the
    upload stays encoded on disk until its job starts."""
    from dreamkit.io import INPUT_SUFFIXES, open_image
    from dreamkit.recipe import describe_input

    sample, has_upload = form.get("sample"), form.get("image") is not None and not isinstance(form.get("image"), str)
    if bool(sample) == has_upload:
        raise ApiError(400, "send exactly one image: an upload in 'image', or a sample name in 'sample'")
    if sample:
        if sample not in samples:
            raise ApiError(404, f"no sample image {sample!r}; samples: {', '.join(samples) or '(none installed)'}")
        path, name = samples[sample], sample
    else:
        path, name = await _upload(form, "image", settings, workdir, INPUT_SUFFIXES)
    try:
        open_image(path, max_pixels=settings.max_pixels).close()
        source = describe_input(path, (255, 255, 255))
    except DreamkitError as exc:
        if not sample:
            path.unlink(missing_ok=True)
        raise ApiError(400, server_limits(str(exc).replace(str(path), name))) from None
    return source, name, path, sample


def server_limits(message: str) -> str:
    """``message`` with the server option behind a pixel limit named."""
    if "over the limit of" in message:
        return message + " (this server's: dreamkit serve --max-pixels N)"
    return message


def _remove(uploads: dict[str, tuple[Path, str]]) -> None:
    for path, _ in uploads.values():
        path.unlink(missing_ok=True)


def _client_names(message: str, uploads: dict[str, tuple[Path, str]]) -> str:
    """A message with our temporary file names replaced by the client's."""
    for path, name in uploads.values():
        message = message.replace(str(path), name)
    return message


async def read_recipe_upload(request: Any, settings: ServerSettings, host: Any, workdir: Path) -> dict[str, Any]:
    """A dreamkit PNG (its embedded recipe) or a .json/.toml recipe → the pipeline config, checked."""
    from dreamkit.io import read_recipe
    from dreamkit.pipeline import Pipeline

    form = await _form(request, settings)
    if form.get("recipe") is None or isinstance(form.get("recipe"), str):
        raise ApiError(400, "send the recipe file in 'recipe': a dreamkit PNG, .json or .toml")
    path, name = await _upload(form, "recipe", settings, workdir, (".png", ".json", ".toml"))
    try:
        if path.suffix == ".png":
            recipe = read_recipe(path)
            config, seed = recipe["pipeline"], recipe.get("seed", 0)
        else:
            text = path.read_text(encoding="utf-8")
            config = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
            seed = 0
        Pipeline.from_config(config, host=host)  # unknown effects and bad parameters: the CLI's messages
    except DreamkitError as exc:
        raise ApiError(400, str(exc).replace(str(path), name)) from None
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ApiError(400, f"{name}: not a valid {path.suffix[1:].upper()} recipe: {exc}") from None
    finally:
        path.unlink(missing_ok=True)
    return {"pipeline": config, "seed": seed, "name": name}
