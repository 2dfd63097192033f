"""The contract: every registered effect (built-ins, and any plugin installed or registered) runs
through every front end — the Python API, the command line, the web API and the Ray engine — on a
tiny input with cheap settings, and all of them make the same pixels and the same records. A new
effect is covered by being registered: effects run with their defaults, except the few below
whose defaults are slow or which need a file.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from dreamkit import load_image
from dreamkit.io import tensor_to_pil
from dreamkit.pipeline import Pipeline

pytestmark = pytest.mark.slow

#: Cheap settings for effects whose defaults take seconds (any other effect runs with defaults).
CHEAP = {
    "deepdream": {"octaves": 1, "steps": 2},
    "style": {"iterations": 2, "scales": 1},
    "resize": {"scale": 0.5},
}
#: The files of file parameters that have no usable default, by (effect, parameter).
FILES = {("style", "style"): ["gravel.png"], ("retrieve", "index"): "INDEX", ("fast_style", "model"): "gravel.dkstyle"}


@pytest.fixture(scope="module")
def workspace(samples, tmp_path_factory) -> pathlib.Path:
    """The input photo, the style image, a small index and a style network trained for two steps
    (by `dreamkit style train`; with a noise source, which only classic has by default: every
    front end must give it the same field), in one folder."""
    from dreamkit.cli import main

    root = tmp_path_factory.mktemp("contract")
    tensor_to_pil(load_image(samples / "coffee.png")[..., ::8, ::8].contiguous()).save(root / "photo.png")
    (root / "gravel.png").write_bytes((samples / "gravel.png").read_bytes())
    photos = root / "indexed"
    photos.mkdir()
    for name in ("chelsea.png", "astronaut.png"):
        (photos / name).write_bytes((samples / name).read_bytes())
    assert main([str(p) for p in ("index", "build", photos, "-o", root / "INDEX", "-q")]) == 0
    assert main([str(p) for p in ("style", "train", "--style", root / "gravel.png", "--images", photos, "-o",
                                  root / "gravel.dkstyle", "--steps", 2, "--size", 64, "--batch", 2, "--noise", 2,
                                  "-q")]) == 0
    return root


def effect_params(name: str, effect_class, root: pathlib.Path) -> dict:
    params = dict(CHEAP.get(name, {}))
    for param_name in effect_class.params:
        value = FILES.get((name, param_name))
        if value is not None:
            params[param_name] = [str(root / v) for v in value] if isinstance(value, list) else str(root / value)
    return params


def cli_spec(name: str, params: dict) -> str:
    def text(value):
        if isinstance(value, list):
            return "[" + ",".join(text(v) for v in value) + "]"
        return str(value).lower() if isinstance(value, bool) else str(value)

    return f"{name}:" + ",".join(f"{k}={text(v)}" for k, v in params.items()) if params else name


def registered_effects() -> list[str]:
    from dreamkit.plugins import PluginHost

    return sorted(PluginHost(strict=True).effects)


def pixels(path: pathlib.Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def plain(results: list) -> list:
    """Records as JSON data (a front end may add its own bookkeeping: ``frame``)."""
    return [{k: v for k, v in json.loads(json.dumps(r)).items() if k != "frame"} for r in results]


#: Threads everywhere in this test: float sums are grouped by thread count, so the same pixels
#: need the same count in this process and in the Ray actor (2 CPUs, 1 actor: 2 threads), on any
#: machine, whatever its core count.
THREADS = 2


@pytest.fixture(scope="module")
def ray_engine():
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray session of another test is still connected")
    ray.init(num_cpus=THREADS, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(sys.path)}})
    from dreamkit.batch.ray_engine import RayEngine, plan_actors

    assert plan_actors(THREADS, 0, 1, "cpu").threads == THREADS  # the actor's threads: ours below
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield RayEngine(workers=1)
    torch.set_num_threads(before)
    ray.shutdown()


@pytest.mark.parametrize("name", registered_effects())
def test_every_effect_gives_the_same_result_through_every_front_end(name, dreamkit_host, workspace, cli, tmp_path,
                                                                    ray_engine, monkeypatch):
    monkeypatch.chdir(workspace)
    effect_class = dreamkit_host.effect(name)
    params = effect_params(name, effect_class, workspace)
    photo = workspace / "photo.png"
    seed = 5

    # 1. Python
    pipeline = Pipeline([effect_class(**params)])
    result = pipeline.run(load_image(photo), seed=seed, device="cpu", host=dreamkit_host)
    python_pixels = np.asarray(tensor_to_pil(result.frames[0].image).convert("RGB"))
    python_records = plain(result.frames[0].results)

    # 2. the command line
    code, out, err = cli("run", photo, "-e", cli_spec(name, params), "-o", tmp_path / "cli", "--seed", seed,
                         "--json", "--device", "cpu")
    assert code == 0, err
    record = json.loads(out)
    assert np.array_equal(pixels(tmp_path / "cli" / "photo.png"), python_pixels), "cli"
    assert plain(record["results"]) == python_records, "cli"

    # 3. the Ray engine
    from dreamkit.batch import BatchSettings, plan_batch, run_batch

    plan = plan_batch(pipeline.resolved(dreamkit_host), [photo], tmp_path / "ray",
                      settings=BatchSettings(device="cpu", seed=seed))
    (ray_record,) = list(run_batch(plan, ray_engine, progress=False))
    assert ray_record["status"] == "done", ray_record.get("error")
    assert np.array_equal(pixels(tmp_path / "ray" / "photo.png"), python_pixels), "ray"
    assert plain(ray_record["results"]) == python_records, "ray"

    # 4. the web API: file parameters are uploads, folders are ones the server shares by name
    web = _web_client(dreamkit_host, {"INDEX": photo.parent / "INDEX"})
    files, web_params = {}, dict(params)
    for param_name, param in effect_class.params.items():
        value = params.get(param_name)
        if param.resource in ("image", "file") and value is not None:
            values = value if isinstance(value, list) else [value]
            names = []
            for index, path in enumerate(values):
                key = f"{param_name}-{index}"
                files[f"file:{key}"] = (pathlib.Path(path).name, pathlib.Path(path).read_bytes(), "image/png")
                names.append(f"upload:{key}")
            web_params[param_name] = names if isinstance(value, list) else names[0]
        elif param.resource == "folder" and value is not None:
            web_params[param_name] = f"folder:{pathlib.Path(value).name}"
    files["image"] = ("photo.png", photo.read_bytes(), "image/png")
    response = web.post("/api/jobs", data={"pipeline": json.dumps({"steps": [{"effect": name, "params": web_params}]}),
                                           "seed": str(seed)}, files=files)
    assert response.status_code == 201, response.text
    done = _events(web, response.json()["job"])[-1]
    assert done["type"] == "done", done
    fetched = tmp_path / "web.png"
    fetched.write_bytes(web.get(f"/api/jobs/{done['job']}/files/{done['result']['download']}").content)
    assert np.array_equal(pixels(fetched), python_pixels), "web"
    assert plain(done["result"]["results"]) == python_records, "web"


@pytest.mark.parametrize("name", registered_effects())
def test_every_effect_runs_on_a_video(name, dreamkit_host, workspace, cli, tmp_path, monkeypatch):
    """A 3-frame video (the photo panning 2 px a frame) through the command line gives a frame per
    input frame, the same pixels as the Python API given those frames as a list (a sequence: a
    sequential effect sees each previous frame), and the video of them."""
    av = pytest.importorskip("av")
    pytest.importorskip("cv2")
    monkeypatch.chdir(workspace)
    effect_class = dreamkit_host.effect(name)
    params = effect_params(name, effect_class, workspace)
    photo = pixels(workspace / "photo.png")
    pictures = [np.ascontiguousarray(photo[:, 2 * i:2 * i + photo.shape[1] - 6]) for i in range(3)]
    clip = tmp_path / "clip.mkv"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("ffv1", rate=5)  # lossless: the decoded frames are the pictures
        stream.width, stream.height, stream.pix_fmt = pictures[0].shape[1], pictures[0].shape[0], "bgr0"
        for picture in pictures:
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    code, _, err = cli("run", clip, "-e", cli_spec(name, params), "-o", tmp_path / "out", "--seed", 5, "--device", "cpu",
                       "--frames")
    assert code == 0, err
    frames = [torch.from_numpy(p).permute(2, 0, 1)[None].float() / 255 for p in pictures]
    result = Pipeline([effect_class(**params)]).run(frames, seed=5, device="cpu", host=dreamkit_host)
    for index, frame in enumerate(result.frames):
        written = pixels(tmp_path / "out" / "clip" / f"frame_{index + 1:06d}.png")
        assert np.array_equal(written, np.asarray(tensor_to_pil(frame.image).convert("RGB"))), index
    with av.open(str(tmp_path / "out" / "clip.mp4")) as made:
        assert sum(1 for _ in made.decode(video=0)) == 3


def _web_client(host, folders):
    pytest.importorskip("fastapi")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from dreamkit_web.app import ServerSettings, create_app

    settings = ServerSettings(allow_hosts=("testserver",), device="cpu", folders=folders)
    client = TestClient(create_app(settings, host=host))
    client.headers["X-Dreamkit-Token"] = settings.token
    return client


def _events(client, job):
    with client.stream("GET", f"/api/jobs/{job}/events") as response:
        return [json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")]


def test_the_contract_covers_every_registered_effect():
    assert {"adjust", "classify", "deepdream", "detect", "fast_style", "resize", "retrieve", "style"} \
        <= set(registered_effects())
