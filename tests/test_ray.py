"""The Ray engine: a local Ray instance, the same outputs and report as the local engine, failures
isolated per input, dead actors retried, clear errors for what Ray cannot do."""

import json
import os
import re
import sys
import textwrap

import numpy as np
import torch
import pytest
from PIL import Image

ray = pytest.importorskip("ray")

from dreamkit.batch import BatchSettings, plan_batch, run_batch  # noqa: E402
from dreamkit.batch.ray_engine import ActorPlan, RayEngine, plan_actors  # noqa: E402
from dreamkit.pipeline import Pipeline  # noqa: E402

pytestmark = pytest.mark.slow

# A third-party plugin the actors find through its entry point, like any installed plugin:
# ``die`` kills its process (as a segfault or the OOM killer would) once, or on every try.
DIE_PLUGIN = '''
import os
from pathlib import Path

from dreamkit import Effect, Param, hookimpl


class Die(Effect):
    name = "die"
    once = Param(str, "", help="marker file: die if it is absent (and create it)")
    always_on = Param(str, "", help="input file name that kills the process every time")

    def apply(self, image, context):
        if self.once and not Path(self.once).exists():
            Path(self.once).touch()
            os._exit(1)
        if self.always_on and context.source == self.always_on:
            os._exit(1)
        return image


class DieInGroups(Die):
    """The same, batchable: batch runs hand it several inputs at once, so a death takes a group."""

    name = "die_in_groups"
    batchable = True


@hookimpl
def dreamkit_register_effects(register):
    register(Die)
    register(DieInGroups)
'''


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("die-plugin")
    (root / "dreamkit_die_test.py").write_text(textwrap.dedent(DIE_PLUGIN))
    info = root / "dreamkit_die_test-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dreamkit-die-test\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[dreamkit]\ndie = dreamkit_die_test\n")
    return root


@pytest.fixture(scope="module")
def ray_session(plugin_path):
    """One local Ray instance for the module (2 CPUs, as this machine), whose workers see the plugin."""
    env = {"PYTHONPATH": os.pathsep.join([str(plugin_path), *sys.path])}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    yield
    ray.shutdown()


@pytest.fixture
def die_host(plugin_path, monkeypatch, dreamkit_host):
    monkeypatch.syspath_prepend(str(plugin_path))
    import dreamkit_die_test

    dreamkit_host.register(dreamkit_die_test, name="die")
    return dreamkit_host


def photos(folder, count=6):
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        array = np.random.default_rng(index).integers(0, 256, (20 + index, 30, 3), dtype=np.uint8)
        Image.fromarray(array).save(folder / f"p{index}.png")
    return folder


def comparable(records):
    """Records without timings, outputs relative to their run's folder."""
    return sorted((json.dumps({k: v for k, v in r.items() if k != "seconds"}, sort_keys=True) for r in records))


def run(pipeline, folder, out, engine, chunk=0, **options):
    # keep_frames: a video's PNG frames stay beside its video, for comparing frame by frame
    settings = BatchSettings(device="cpu", keep_frames=True, video_chunk=chunk)
    plan = plan_batch(pipeline, [folder], out, settings=settings, **options)
    return list(run_batch(plan, engine, progress=False))


def test_the_cli_starts_its_own_ray_and_stops_it(cli, tmp_path):
    if ray.is_initialized():
        pytest.skip("a Ray session of another test is still connected")
    folder = photos(tmp_path / "in", 3)
    report = tmp_path / "r.jsonl"
    code, stdout, stderr = cli("run", folder, "-e", "resize:scale=2", "-o", tmp_path / "out", "--engine", "ray",
                               "--workers", "1", "--report", report, "--json")
    assert code == 0, stderr
    assert "3 done, 0 failed" in stderr and not ray.is_initialized()
    assert [json.loads(line)["status"] for line in stdout.splitlines()] == ["done"] * 3  # stdout holds records only
    assert len(report.read_text().splitlines()) == 3


def test_joins_a_cluster_started_with_ray_start(cli, tmp_path, monkeypatch):
    """The README's cluster recipe: `ray start --head`, then --ray-address (token auth included)."""
    if ray.is_initialized():
        pytest.skip("a Ray session of another test is still connected")
    import socket
    import subprocess

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ray_cli = [sys.executable, "-m", "ray.scripts.scripts"]
    subprocess.run([*ray_cli, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                    "--disable-usage-stats"], check=True, capture_output=True, timeout=120)
    try:
        folder = photos(tmp_path / "in", 2)
        code, _, stderr = cli("run", folder, "-e", "resize:scale=2", "-o", tmp_path / "out", "--engine", "ray",
                              "--ray-address", f"127.0.0.1:{port}", "--workers", "1")
        assert code == 0, stderr
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p0.png", "p1.png"]
    finally:
        subprocess.run([*ray_cli, "stop", "--force"], capture_output=True, timeout=120)
        os.environ.pop("RAY_AUTH_MODE", None)  # set by the engine for the token; monkeypatch did not set it


def test_ray_errors_are_clear(cli, tmp_path, monkeypatch):
    folder = photos(tmp_path / "in", 2)
    code, _, stderr = cli("run", folder, "-e", "resize:scale=2", "-o", tmp_path / "out", "--engine", "ray",
                          "--ray-address", "127.0.0.1:1")
    assert code == 2 and "--ray-address 127.0.0.1:1: no Ray cluster answers there" in stderr
    code, _, stderr = cli("run", folder, "-e", "resize:scale=2", "-o", tmp_path / "out", "--engine", "ray",
                          "--ray-address", "nonsense")
    assert code == 2 and "expected auto, HOST:PORT or ray://HOST:PORT" in stderr
    code, _, stderr = cli("run", folder, "-e", "resize:scale=2", "-o", tmp_path / "out", "--engine", "ray", "--workers", "0")
    assert code == 2 and "--workers 0 is not allowed" in stderr
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    code, _, stderr = cli("run", folder, "-e", "resize:scale=2", "-o", tmp_path / "out", "--engine", "ray")
    assert code == 2 and "pip install 'dreamkit[ray]'" in stderr
    assert not (tmp_path / "out").exists()  # nothing written, not even the folder


def test_ray_matches_the_local_engine_pixel_for_pixel_and_in_the_report(ray_session, dreamkit_host, tmp_path):
    folder = photos(tmp_path / "in")
    (folder / "broken.png").write_text("not an image")
    pipeline = Pipeline.from_specs(["resize:scale=1.5", "adjust:contrast=1.3,saturation=0.7"])
    local = run(pipeline, folder, tmp_path / "local", None)
    remote = run(pipeline, folder, tmp_path / "ray", RayEngine(workers=2))
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == [f"p{i}.png" for i in range(6)]
    for index in range(6):
        with Image.open(tmp_path / "local" / f"p{index}.png") as a, Image.open(tmp_path / "ray" / f"p{index}.png") as b:
            assert np.array_equal(np.asarray(a), np.asarray(b))
            assert _recipe(a) == _recipe(b)
    strip = [json.loads(s.replace(str(tmp_path / "ray"), str(tmp_path / "local"))) for s in comparable(remote)]
    assert strip == [json.loads(s) for s in comparable(local)]
    assert [r["status"] for r in remote].count("failed") == 1
    resumed = run(pipeline, folder, tmp_path / "ray", RayEngine(workers=1))
    assert sorted(r["status"] for r in resumed) == ["failed"] + ["skipped"] * 6


def _recipe(image):
    """The embedded recipe but its platform facts (the actors run with their own thread count)."""
    recipe = json.loads(image.text["dreamkit-recipe"])
    del recipe["platform"]
    return recipe


def test_an_actor_that_dies_is_replaced_and_its_image_completes(ray_session, die_host, tmp_path):
    folder = photos(tmp_path / "in", 4)
    marker = tmp_path / "died-once"
    pipeline = Pipeline.from_specs([f"die:once={marker}"])
    records = run(pipeline, folder, tmp_path / "out", RayEngine(workers=2))
    assert marker.exists()  # one actor did die, and its job was retried on a new one
    assert sorted(r["status"] for r in records) == ["done"] * 4
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"p{i}.png" for i in range(4)]


def test_an_input_that_always_kills_its_actor_is_reported_and_its_group_still_completes(ray_session, die_host, tmp_path):
    folder = photos(tmp_path / "in", 4)
    pipeline = Pipeline.from_specs(["die_in_groups:always_on=p2.png"])  # batchable: all 4 go to one actor at once
    records = {os.path.basename(r["input"]): r for r in run(pipeline, folder, tmp_path / "out", RayEngine(workers=2))}
    assert {n: r["status"] for n, r in records.items()} == {"p0.png": "done", "p1.png": "done", "p2.png": "failed",
                                                           "p3.png": "done"}
    assert "the Ray worker running it died 3 times" in records["p2.png"]["error"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p0.png", "p1.png", "p3.png"]  # no temporaries


def test_never_asks_for_more_than_the_cluster_has(ray_session, dreamkit_host, tmp_path):
    from dreamkit.errors import DreamkitError

    folder = photos(tmp_path / "in", 1)
    pipeline = Pipeline.from_specs(["resize:scale=2"])
    with pytest.raises(DreamkitError, match="--workers 3 asks for more actors than the Ray cluster's 2 CPUs"):
        run(pipeline, folder, tmp_path / "out", RayEngine(workers=3))
    if ray.cluster_resources().get("GPU", 0) == 0:
        plan = plan_batch(pipeline, [folder], tmp_path / "out", settings=BatchSettings(device="cuda"))
        with pytest.raises(DreamkitError, match="asks for a GPU but the Ray cluster has none"):
            list(run_batch(plan, RayEngine(workers=1), progress=False))
    assert not (tmp_path / "out").exists()  # nothing written, not even the folder


@pytest.mark.parametrize("cpus, gpus, workers, device, expected", [
    (2, 0, None, "auto", ActorPlan(1, 2, 0.0, "cpu")),       # this machine: CPUs / 2 actors
    (16, 0, 4, "auto", ActorPlan(4, 4, 0.0, "cpu")),
    (16, 2, None, "auto", ActorPlan(2, 8, 1.0, "cuda")),      # one actor per GPU
    (16, 2, 4, "cuda", ActorPlan(4, 4, 0.5, "cuda")),         # a share of one GPU each
    (16, 2, None, "cpu", ActorPlan(8, 2, 0.0, "cpu")),        # --device cpu asks for no GPU
])
def test_actor_resources_fit_the_cluster(cpus, gpus, workers, device, expected):
    assert plan_actors(cpus, gpus, workers, device) == expected


@pytest.mark.parametrize("cpus, gpus, workers, device, message", [
    (2, 0, 3, "auto", "--workers 3 asks for more actors than the Ray cluster's 2 CPUs"),
    (2, 0, None, "cuda", "asks for a GPU but the Ray cluster has none"),
    (4, 1, None, "cuda:1", "--device cuda:1 is not allowed with --engine ray"),
])
def test_actor_requests_the_cluster_cannot_meet_are_refused(cpus, gpus, workers, device, message):
    from dreamkit.errors import DreamkitError

    with pytest.raises(DreamkitError, match=re.escape(message)):
        plan_actors(cpus, gpus, workers, device)


def test_video_frames_on_ray_equal_the_local_engine(ray_session, dreamkit_host, tmp_path):
    pytest.importorskip("av")
    from tests.test_batch import make_video

    folder = tmp_path / "in"
    folder.mkdir()
    pictures = make_video(folder / "clip.mkv", frames=6)
    pipeline = Pipeline.from_specs(["adjust:contrast=1.2"])
    local = run(pipeline, folder, tmp_path / "local", None)
    remote = run(pipeline, folder, tmp_path / "ray", RayEngine(workers=2))  # frames spread over two actors
    assert sorted(r["video_frame"] for r in remote) == list(range(6)) and {r["status"] for r in remote} == {"done"}
    for index in range(len(pictures)):
        name = f"clip/frame_{index + 1:06d}.png"
        with Image.open(tmp_path / "local" / name) as a, Image.open(tmp_path / "ray" / name) as b:
            assert np.array_equal(np.asarray(a), np.asarray(b))
    assert len(local) == 6


def test_videos_through_a_sequential_pipeline_run_in_parallel_each_in_order(ray_session, dreamkit_host, samples,
                                                                          tmp_path):
    """``style`` carries each video's frames: a video is one chunk on one actor (two videos: two
    actors at once), and its frames come out as the local engine's, which runs them in order."""
    from tests.test_batch import STYLE_SPEC, make_video, moving_square_pictures

    folder = tmp_path / "in"
    folder.mkdir()
    pictures = moving_square_pictures(samples, count=3)
    make_video(folder / "a.mkv", pictures=pictures)
    make_video(folder / "b.mkv", pictures=[np.ascontiguousarray(p[:, ::-1]) for p in pictures])
    pipeline = Pipeline.from_specs([STYLE_SPEC.format(samples / "coffee.png")])
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the two actors below (2 CPUs): the same float sums
    try:
        run(pipeline, folder, tmp_path / "local", None)
    finally:
        torch.set_num_threads(before)
    remote = run(pipeline, folder, tmp_path / "ray", RayEngine(workers=2))
    assert sorted((r["input"][-5:], r["video_frame"]) for r in remote) == \
        [(f"{v}.mkv", i) for v in "ab" for i in range(3)] and {r["status"] for r in remote} == {"done"}
    for video in "ab":
        for index in range(3):
            name = f"{video}/frame_{index + 1:06d}.png"
            with Image.open(tmp_path / "local" / name) as a, Image.open(tmp_path / "ray" / name) as b:
                assert np.array_equal(np.asarray(a), np.asarray(b)), name


def test_a_long_video_in_chunks_on_ray_equals_the_local_chunks(ray_session, dreamkit_host, tmp_path):
    """A sequential pipeline on a 20-frame video in chunks of 5, each warmed up on the 8 frames
    before it: sequences from frame 0 (frames 0-9: the second chunk's warm-up reaches frame 0, so it
    joins the first), from frame 2 (frames 10-14) and from 7 (15-19), spread over two actors. Every frame equals the local engine's chunked run bit
    for bit (the same chunks and warm-ups, the same float sums at one thread each), boundary frames
    included; how close chunks come to one whole sequence is test_batch's chunk test."""
    from tests.test_batch import make_video, read_recipe

    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(11)
    base = rng.integers(0, 256, (24, 52, 3), dtype=np.uint8)
    make_video(folder / "clip.mkv", pictures=[np.ascontiguousarray(base[:, i:i + 32]) for i in range(20)])
    pipeline = Pipeline.from_specs(["deepdream:weights=random,octaves=1,steps=2"])
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the two actors below (2 CPUs)
    try:
        run(pipeline, folder, tmp_path / "local", None, chunk=5)
    finally:
        torch.set_num_threads(before)
    remote = run(pipeline, folder, tmp_path / "ray", RayEngine(workers=2), chunk=5)
    assert sorted(r["video_frame"] for r in remote) == list(range(20)) and {r["status"] for r in remote} == {"done"}
    for index in range(20):
        name = f"clip/frame_{index + 1:06d}.png"
        with Image.open(tmp_path / "local" / name) as a, Image.open(tmp_path / "ray" / name) as b:
            assert np.array_equal(np.asarray(a), np.asarray(b)), name
        start = read_recipe(tmp_path / "ray" / name)["input"].get("sequence_start", 0)
        assert start == (0 if index < 10 else index // 5 * 5 - 8), (name, start)
    assert (tmp_path / "ray" / "clip.mp4").is_file()


def test_an_index_built_on_ray_equals_the_local_one(ray_session, dreamkit_host, tmp_path):
    """``dreamkit index build --engine ray``: the same work (EmbedWork) in Ray actors, the same vectors."""
    from dreamkit.batch import BatchSettings
    from dreamkit_retrieve import ImageIndex, create_index, make_spec, run_index

    folder = photos(tmp_path / "in")
    (folder / "broken.png").write_text("not an image")
    outcomes = {}
    for name, engine in (("local", None), ("ray", RayEngine(workers=2))):
        with create_index(tmp_path / name, make_spec("content"), [str(folder)]) as index:
            outcomes[name] = run_index(index, BatchSettings(device="cpu"), engine, progress=False)
    assert outcomes["ray"].summary.counts == outcomes["local"].summary.counts == {"done": 6, "failed": 1}
    with ImageIndex.open(tmp_path / "local") as local, ImageIndex.open(tmp_path / "ray") as remote:
        by_path = {}
        for index in (local, remote):
            keys, matrix = index.store.vectors()
            items = index.store.lookup(keys.tolist())
            by_path[index] = {items[int(k)].path: row for k, row in zip(keys, matrix)}
        assert by_path[local].keys() == by_path[remote].keys()
        for path, vector in by_path[local].items():
            # the same model; only float summation order differs (an actor has 1 thread, this process 2):
            # fp32 sums of ~1e4 terms on unit-norm outputs stay far below 1e-5
            assert np.allclose(vector, by_path[remote][path], atol=1e-5), path
