"""Batch runs on one machine: inputs of every kind, bad files among good ones, output names,
resume, the report, Ctrl-C, video frames (the Ray engine: tests/test_ray.py)."""

import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import torch

from dreamkit import Effect, Param, hookimpl, load_image
from dreamkit.batch import BatchSettings, LocalEngine, list_inputs, plan_batch, run_batch
from dreamkit.batch.inputs import InputItem
from pathlib import PurePosixPath
from dreamkit.batch.outputs import assign_outputs
from dreamkit.io import read_metadata, read_recipe
from dreamkit.pipeline import Pipeline

STOP = {"at": None, "calls": 0}


class Interrupt(Effect):
    """Passes images through; raises KeyboardInterrupt (a Ctrl-C) on call number STOP['at']."""

    name = "interrupt"

    def apply(self, image, context):
        STOP["calls"] += 1
        if STOP["at"] is not None and STOP["calls"] == STOP["at"]:
            raise KeyboardInterrupt
        return image


class Brightness(Effect):
    """Records the mean brightness: an analysis effect whose records must survive a resume."""

    name = "brightness"
    fail_above = Param(float, 2.0, help="fail (a bug) on images brighter than this")

    def apply(self, image, context):
        mean = round(float(image.mean()), 4)
        if mean > self.fail_above:
            raise ZeroDivisionError("too bright")
        context.add_result({"mean": mean})
        return image


class Plugin:
    @hookimpl
    def dreamkit_register_effects(self, register):
        register(Interrupt)
        register(Brightness)


@pytest.fixture
def batch_effects(register_plugin):
    STOP.update(at=None, calls=0)
    return register_plugin(Plugin(), name="batch-test")


def files_in(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []


def tiny(path, seed=0, size=(12, 9)):
    array = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def report_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def mixed(tmp_path, samples):
    """Good photos among a corrupt, a truncated, a zero-byte, a bomb and a non-image file."""
    folder = tmp_path / "mixed"
    for index, name in enumerate(("a.png", "b.jpg", "c.webp", "d.png")):
        tiny(folder / name, index)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    data = (samples / "coffee.png").read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 3])
    (folder / "zero.jpg").write_bytes(b"")
    Image.new("1", (10000, 9000)).save(folder / "bomb.png")
    (folder / "notes.jpg").write_text("not a picture")
    (folder / "README.txt").write_text("ignored: not an image name")
    return folder


BAD = {"corrupt.png": "not an image in an allowed format", "truncated.png": "cannot decode the image",
       "zero.jpg": "empty file (0 bytes)", "bomb.png": "over the limit", "notes.jpg": "not an image in an allowed format"}


# -- bad inputs among many ----------------------------------------------------------------------
def test_a_folder_with_bad_files_completes_reports_them_and_exits_1(cli, mixed, tmp_path):
    out, report = tmp_path / "out", tmp_path / "report.jsonl"
    code, stdout, stderr = cli("run", mixed, "-e", "resize:scale=2", "-o", out, "--report", report)
    assert code == 1
    assert files_in(out) == ["a.png", "b.png", "c.png", "d.png"]
    for name, reason in BAD.items():
        assert f"dreamkit: failed: {mixed / name}" in stderr and reason in stderr
    assert "4 done, 5 failed, 1 ignored" in stderr and "Traceback" not in stderr
    records = {os.path.basename(r["input"]): r for r in report_lines(report)}
    assert len(records) == 10
    assert {n for n, r in records.items() if r["status"] == "failed"} == set(BAD)
    assert all(BAD[n] in records[n]["error"] for n in BAD)
    assert records["README.txt"]["status"] == "ignored"
    assert records["a.png"]["status"] == "done" and records["a.png"]["frames"][0]["output"] == str(out / "a.png")
    assert all(r["seconds"] >= 0 for r in records.values())
    with Image.open(out / "a.png") as image:
        assert image.size == (24, 18)


def test_usage_errors_still_stop_a_batch_before_any_work(cli, mixed, tmp_path):
    out = tmp_path / "out"
    for args, message in [(["-e", "nope"], "unknown effect 'nope'"),
                          (["-e", "resize:scale=-1"], "parameter 'scale' = -1.0 is not allowed"),
                          (["-e", "resize:scale=2", "--engine", "local", "--workers", "2"], "--workers and --ray-address need --engine ray")]:
        code, _, stderr = cli("run", mixed, *args, "-o", out)
        assert code == 2 and message in stderr
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    code, _, stderr = cli("run", mixed, "-e", "resize:scale=2", "-o", blocker / "out")
    assert code == 2 and f"output folder {blocker / 'out'} cannot be written: {blocker} is not a folder" in stderr
    assert files_in(out) == []


def test_an_internal_error_on_one_input_is_reported_with_its_traceback_and_the_rest_run(cli, batch_effects, tmp_path):
    folder = tmp_path / "in"
    tiny(folder / "dark.png", 1)
    Image.new("RGB", (8, 8), "white").save(folder / "white.png")
    report = tmp_path / "r.jsonl"
    code, _, stderr = cli("run", folder, "-e", "brightness:fail_above=0.9", "-o", tmp_path / "out", "--report", report)
    assert code == 1 and "internal error: ZeroDivisionError: too bright" in stderr
    records = {os.path.basename(r["input"]): r for r in report_lines(report)}
    assert records["dark.png"]["status"] == "done"
    assert "ZeroDivisionError" in records["white.png"]["traceback"]


# -- inputs and output names --------------------------------------------------------------------
def test_same_stem_keeps_the_source_extension(cli, tmp_path):
    folder = tmp_path / "in"
    tiny(folder / "truncated.png", 1)
    Image.open(folder / "truncated.png").save(folder / "truncated.jpg")
    tiny(folder / "other.png", 2)
    code, _, _ = cli("run", folder, "-e", "resize:scale=1", "-o", tmp_path / "out")
    assert code == 0
    assert files_in(tmp_path / "out") == ["other.png", "truncated.jpg.png", "truncated.png.png"]


def test_names_that_differ_only_in_case_count_as_a_clash(tmp_path):
    items = [InputItem(tmp_path / n, PureName(n).with_suffix(""), PureName(n)) for n in ("Cat.JPG", "cat.png")]
    names = [plan.image.name for plan in assign_outputs(items, tmp_path / "out", "png")]
    assert names == ["Cat.JPG.png", "cat.png.png"]


def PureName(text):
    from pathlib import PurePosixPath

    return PurePosixPath(text)


def test_recursive_folders_are_mirrored_and_the_output_folder_inside_is_never_an_input(cli, tmp_path):
    trip = tmp_path / "trip"
    tiny(trip / "day1" / "IMG_1.JPG", 1)
    tiny(trip / "day2" / "IMG_1.JPG", 2)
    tiny(trip / "top.png", 3)
    tiny(trip / ".thumbnails" / "hidden.png", 4)
    out = trip / "styled"
    assert cli("run", trip, "-e", "resize:scale=1", "-o", out)[0] == 0
    assert files_in(out) == ["top.png"]  # not recursive: only the folder's own images
    code, _, stderr = cli("run", trip, "-r", "-e", "resize:scale=1", "-o", out)
    assert code == 0 and "1 skipped" in stderr
    assert files_in(out) == ["day1", "day1/IMG_1.png", "day2", "day2/IMG_1.png", "top.png"]
    code, _, stderr = cli("run", trip, "-r", "-e", "resize:scale=1", "-o", out)  # outputs inside trip/ not taken as inputs
    assert code == 0 and "0 done, 3 skipped, 0 failed" in stderr


def test_globs_list_files_and_stdin(cli, tmp_path, monkeypatch):
    base = tmp_path / "lib"
    paths = [tiny(base / "2024" / "IMG_1.png", 1), tiny(base / "2025" / "IMG_1.png", 2), tiny(base / "2025" / "x.png", 3)]
    out = tmp_path / "out"
    assert cli("run", f"{base}/**/IMG_*.png", "-e", "resize:scale=1", "-o", out / "glob")[0] == 0
    assert files_in(out / "glob") == ["2024", "2024/IMG_1.png", "2025", "2025/IMG_1.png"]
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my picks\n{paths[0]}\n\n{paths[2]}\n{base / 'missing.png'}\n")
    code, _, stderr = cli("run", "--list", listing, "-e", "resize:scale=1", "-o", out / "list")
    assert code == 1 and f"{base / 'missing.png'}: no such file (listed in list file {listing})" in stderr
    assert files_in(out / "list") == ["2024", "2024/IMG_1.png", "2025", "2025/x.png"]
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{paths[1]}\n{paths[2]}\n"))
    assert cli("run", "-", "-e", "resize:scale=1", "-o", out / "stdin")[0] == 0
    assert files_in(out / "stdin") == ["IMG_1.png", "x.png"]  # one folder in common: flat
    code, _, stderr = cli("run", "-e", "resize:scale=1", "-o", out / "none")
    assert code == 2 and "no inputs" in stderr


def test_list_inputs_reports_what_cannot_be_listed(tmp_path):
    (tmp_path / "empty").mkdir()
    tiny(tmp_path / "deep" / "sub" / "a.png")
    listing = list_inputs([tmp_path / "nope.png", tmp_path / "empty", f"{tmp_path}/*.gif", tmp_path / "deep"],
                          list_files=[tmp_path / "no-list.txt"])
    reasons = [p.reason for p in listing.problems]
    assert reasons[0].endswith("nope.png: no such file")
    assert "empty: folder holds no images" in reasons[1]
    assert "*.gif: no files match this pattern" in reasons[2]
    assert "deep: folder holds no images" in reasons[3] and "need --recursive" in reasons[3]
    assert "list file" in reasons[4] and "cannot read it" in reasons[4]
    assert listing.items == []


# -- resume, overwrite and Ctrl-C -----------------------------------------------------------------
def fifty(tmp_path):
    folder = tmp_path / "fifty"
    for index in range(50):
        tiny(folder / f"img_{index:02d}.png", index)
    return folder


def test_an_interrupted_run_resumes_where_it_stopped(cli, batch_effects, tmp_path):
    folder, out, report = fifty(tmp_path), tmp_path / "out", tmp_path / "r.jsonl"
    STOP["at"] = 21
    code, _, stderr = cli("run", folder, "-e", "interrupt", "-e", "brightness", "-o", out, "--report", report)
    assert code == 130
    assert "interrupted: 20 done, 0 failed" in stderr and "30 not started" in stderr
    assert files_in(out) == [f"img_{i:02d}.png" for i in range(20)]  # nothing partial, no temporaries
    assert [r["status"] for r in report_lines(report)] == ["done"] * 20
    STOP["at"] = None
    code, stdout, stderr = cli("run", folder, "-e", "interrupt", "-e", "brightness", "-o", out, "--report", report, "--json")
    assert code == 0 and "30 done, 20 skipped, 0 failed" in stderr
    records = report_lines(report)
    assert [r["status"] for r in records] == ["skipped"] * 20 + ["done"] * 30
    assert [json.loads(line) for line in stdout.splitlines()] == records
    skipped = records[0]
    assert skipped["results"] == [{"effect": "brightness", "step": 1, "mean": skipped["results"][0]["mean"], "frame": 0}]
    assert STOP["calls"] == 20 + 1 + 30  # the skipped images were not run again
    code, _, stderr = cli("run", folder, "-e", "interrupt", "-e", "brightness", "-o", out, "--overwrite")
    assert code == 0 and "50 done, 0 failed" in stderr


def test_resume_needs_the_same_recipe_seed_and_input(cli, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    tiny(folder / "a.png", 1)
    tiny(folder / "b.png", 2)
    assert cli("run", folder, "-e", "resize:scale=2", "-o", out, "--format", "jpg")[0] == 0
    code, _, stderr = cli("run", folder, "-e", "resize:scale=2", "-o", out, "--format", "jpg")
    assert code == 0 and "0 done, 2 skipped" in stderr  # JPEGs carry their recipe too (EXIF)
    assert read_recipe(out / "a.jpg")["pipeline"]["steps"][0]["effect"] == "resize"
    for change in (["--seed", "3"], ["-e", "resize:scale=3"]):
        args = ["-e", "resize:scale=2", *change] if change[0] == "--seed" else change
        code, _, stderr = cli("run", folder, *args, "-o", out, "--format", "jpg")
        assert code == 2 and "exists already and was not made by this recipe from this input (and 1 more)" in stderr
    tiny(folder / "b.png", 9)  # the input changed: its output is not this job's
    code, _, stderr = cli("run", folder, "-e", "resize:scale=2", "-o", out, "--format", "jpg")
    assert code == 2 and "b.jpg exists already" in stderr


def test_a_sequence_without_its_animation_is_redone(cli, tmp_path, register_plugin):
    from tests.test_cli import Plugin as SequencePlugin

    register_plugin(SequencePlugin(), name="sequences")
    folder, out = tmp_path / "in", tmp_path / "out"
    tiny(folder / "a.png", 1)
    tiny(folder / "b.png", 2)
    assert cli("run", folder, "-e", "fade", "-o", out)[0] == 0
    (out / "b.gif").unlink()  # as if stopped between the frames and the animation
    code, stdout, stderr = cli("run", folder, "-e", "fade", "-o", out, "--json")
    assert code == 0 and "1 done, 1 skipped" in stderr
    assert (out / "b.gif").exists() and len(list((out / "b").iterdir())) == 3
    skipped = json.loads(stdout.splitlines()[0])
    assert skipped["status"] == "skipped" and len(skipped["frames"]) == 3 and skipped["animation"] == str(out / "a.gif")


def test_ctrl_c_in_a_real_process_leaves_no_partial_files_and_a_rerun_finishes(tmp_path):
    folder, out, report = fifty(tmp_path), tmp_path / "out", tmp_path / "r.jsonl"
    command = [sys.executable, "-m", "dreamkit", "run", str(folder), "-e", "deepdream:octaves=1,steps=6", "-o", str(out),
               "--report", str(report), "-q", "--threads", "1"]
    # A child of a shell job started with `&` inherits SIGINT ignored; a terminal's Ctrl-C is not.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while len(list(out.glob("*.png"))) < 5 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    done = sorted(p.name for p in out.iterdir())
    assert 5 <= len(done) < 50 and all(not name.startswith(".") for name in done)
    assert "interrupted:" in stderr and f"{len(done)} done" in stderr
    for name in done:  # every file there is complete: it opens and carries its recipe
        assert read_recipe(out / name)["input"]["name"] == name
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    statuses = [r["status"] for r in report_lines(report)]
    assert statuses.count("skipped") == len(done) and statuses.count("done") == 50 - len(done)


def test_the_python_api(dreamkit_host, tmp_path):
    folder = tmp_path / "in"
    tiny(folder / "a.png", 1)
    (folder / "b.png").write_text("nope")
    pipeline = Pipeline.from_specs(["resize:scale=2"])
    plan = plan_batch(pipeline, [folder], tmp_path / "out", settings=BatchSettings(seed=4))
    assert len(plan.jobs) == 2 and plan.total == 2
    records = list(run_batch(plan, LocalEngine(), progress=False))
    assert [r["status"] for r in records] == ["done", "failed"]
    assert read_metadata(tmp_path / "out" / "a.png")["dreamkit-recipe"]["seed"] == 4


# -- video --------------------------------------------------------------------------------------
def make_video(path, frames=5, size=(32, 24), pictures=None):
    """A lossless video of ``pictures`` (H×W×3 uint8; default: ``frames`` random ones of ``size``)."""
    av = pytest.importorskip("av")
    rng = np.random.default_rng(0)
    if pictures is None:
        pictures = [rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8) for _ in range(frames)]
    size = (pictures[0].shape[1], pictures[0].shape[0])
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=10)  # lossless: decoded frames are the pictures
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "bgr0"
        for picture in pictures:
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return pictures


def test_a_video_file_is_one_input_per_frame(cli, tmp_path):
    folder, out, report = tmp_path / "in", tmp_path / "out", tmp_path / "r.jsonl"
    folder.mkdir()
    pictures = make_video(folder / "clip.mkv")
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(100))
    code, _, stderr = cli("run", folder, "-e", "resize:scale=1", "-o", out, "--report", report)
    assert code == 1 and "broken.mp4: cannot read the video" in stderr
    # without --frames the PNG frames were the run's working state: once the video is made only it stays
    assert files_in(out) == ["clip.mp4"]
    from dreamkit.batch.encode import read_video_metadata

    held = read_video_metadata(out / "clip.mp4")  # the recipe and each frame's results, for a rerun
    assert held["recipe"]["input"]["name"] == "clip.mkv" and sorted(held["frames"]) == ["0", "1", "2", "3", "4"]
    done = [r for r in report_lines(report) if r["status"] == "done"]
    assert [r["video_frame"] for r in done] == [0, 1, 2, 3, 4]
    before = (out / "clip.mp4").stat().st_mtime_ns
    code, _, stderr = cli("run", folder / "clip.mkv", "-e", "resize:scale=1", "-o", out, "--report", report)
    assert code == 0 and "0 done, 5 skipped" in stderr  # found done in the video: nothing redone
    assert [r["frames"][0]["output"] for r in report_lines(report)] == [str(out / "clip.mp4")] * 5
    assert (out / "clip.mp4").stat().st_mtime_ns == before
    # --frames wants the PNGs: the frames are made again, kept, and the video is remade from them
    code, _, stderr = cli("run", folder / "clip.mkv", "-e", "resize:scale=1", "-o", out, "--frames")
    assert code == 0 and "5 done" in stderr, stderr
    assert files_in(out) == ["clip", "clip.mp4"] + [f"clip/frame_{i:06d}.png" for i in range(1, 6)]
    for index, picture in enumerate(pictures):
        with Image.open(out / "clip" / f"frame_{index + 1:06d}.png") as image:
            assert np.array_equal(np.asarray(image), picture)
        recipe = read_recipe(out / "clip" / f"frame_{index + 1:06d}.png")
        assert recipe["input"]["video_frame"] == index and recipe["input"]["name"] == "clip.mkv"
    code, _, stderr = cli("run", folder / "clip.mkv", "-e", "resize:scale=1", "-o", out)
    assert code == 0 and "0 done, 5 skipped" in stderr and len(files_in(out)) == 7  # kept frames stay kept


def test_a_video_made_by_another_recipe_or_tool_is_not_replaced(cli, tmp_path):
    """A frame whose PNG is gone is done only if the video there is this recipe's: one made by
    other settings, or any other clip.mp4, is in the way (exit 2, naming it) unless --overwrite."""
    make_video(tmp_path / "clip.mkv", frames=3)
    out = tmp_path / "out"
    assert cli("run", tmp_path / "clip.mkv", "-e", "adjust:contrast=1.5", "-o", out)[0] == 0
    code, _, stderr = cli("run", tmp_path / "clip.mkv", "-e", "adjust:contrast=0.5", "-o", out)
    assert code == 2 and f"{out / 'clip.mp4'} exists already and was not made by this recipe" in stderr, stderr
    (out / "clip.mp4").write_bytes(b"someone else's video")
    code, _, stderr = cli("run", tmp_path / "clip.mkv", "-e", "adjust:contrast=1.5", "-o", out)
    assert code == 2 and f"{out / 'clip.mp4'} exists already" in stderr
    assert (out / "clip.mp4").read_bytes() == b"someone else's video"
    code, _, stderr = cli("run", tmp_path / "clip.mkv", "-e", "adjust:contrast=0.5", "-o", out, "--overwrite")
    assert code == 0 and "3 done" in stderr and files_in(out) == ["clip.mp4"]


def test_models_load_once_per_batch_not_per_image(cli, tmp_path, dreamkit_host):
    folder = tmp_path / "in"
    for index in range(4):
        tiny(folder / f"p{index}.png", index, size=(40, 30))
    dreamkit_host.models.clear()
    misses = dreamkit_host.models.misses
    code, stdout, _ = cli("run", folder, "-e", "classify:weights=random,top_k=2", "-o", tmp_path / "out", "--json")
    assert code == 0 and len(stdout.splitlines()) == 4
    assert dreamkit_host.models.misses - misses == 1 and len(dreamkit_host.models) == 1


def test_run_many_is_run_image_by_image_with_batched_steps_grouped(dreamkit_host, dreamkit_image):
    from tests.test_hooks import Tally

    dreamkit_host.register(type("P", (), {"dreamkit_register_effects": hookimpl(lambda self, register: register(Tally))})(),
                           name="tally")
    images = [dreamkit_image, dreamkit_image * 0.1, dreamkit_image.flip(-2)]
    pipeline = Pipeline.from_specs(["resize:scale=0.5", "tally:fail_on_dark=true"])
    many = pipeline.run_many(images, device="cpu", seed=3)
    # the group raised on the dark image, so the step was rerun image by image: only it failed
    assert isinstance(many[1], ValueError) and str(many[1]) == "too dark"
    for index in (0, 2):
        single = pipeline.run(images[index], device="cpu", seed=3)
        assert torch.equal(many[index].image, single.image)
        assert many[index].results == single.results  # group size 1 in both: the group was retried alone
    clean = Pipeline.from_specs(["tally"]).run_many(images, device="cpu")
    assert [r.results[0][0]["group"] for r in clean] == [3, 3, 3]


def test_classify_in_a_batch_run_groups_images_and_matches_one_by_one(cli, tmp_path, dreamkit_host):
    folder = tmp_path / "in"
    for index in range(5):
        tiny(folder / f"p{index}.png", index, size=(40 + 7 * index, 30))
    (folder / "p9.png").write_text("broken")
    dreamkit_host.models.clear()
    misses = dreamkit_host.models.misses
    code, stdout, _ = cli("run", folder, "-e", "classify:weights=random,top_k=3", "-o", tmp_path / "out", "--json")
    assert code == 1
    records = [json.loads(line) for line in stdout.splitlines()]
    assert [r["status"] for r in records] == ["done"] * 5 + ["failed"]
    assert dreamkit_host.models.misses - misses == 1  # one model for the batch
    host_effect = Pipeline.from_specs(["classify:weights=random,top_k=3"])

    for record in records[:5]:
        alone = host_effect.run(load_image(record["input"]), device="cpu").results[0][0]["predictions"]
        grouped = record["results"][0]["predictions"]
        assert [p["index"] for p in grouped] == [p["index"] for p in alone]
        # The same preprocessed input through the same frozen network, in a batch of 5 or of 1: only
        # the order of float32 sums inside the kernels may differ, ~1e-6 relative per layer.
        assert [p["probability"] for p in grouped] == pytest.approx([p["probability"] for p in alone], abs=1e-4)


def test_a_progress_bar_counts_images_on_a_terminal(dreamkit_host, tmp_path):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    folder = tmp_path / "in"
    for index in range(3):
        tiny(folder / f"p{index}.png", index)
    plan = plan_batch(Pipeline.from_specs(["resize:scale=2"]), [folder], tmp_path / "out")
    shown, hidden = Terminal(), io.StringIO()
    assert len(list(run_batch(plan, LocalEngine(), stream=shown))) == 3
    text = shown.getvalue()  # tqdm: "images:  33%|███▎  | 1/3 [00:01<00:02, 1.0img/s]" (elapsed<ETA)
    assert "images:" in text and "/3 [00:00<" in text and "img/s]" in text
    plan = plan_batch(Pipeline.from_specs(["resize:scale=2"]), [folder], tmp_path / "out2")
    assert len(list(run_batch(plan, LocalEngine(), stream=hidden))) == 3 and hidden.getvalue() == ""
    make_video(tmp_path / "clip.mkv", frames=4)  # a video counts frames, with their rate and ETA
    plan = plan_batch(Pipeline.from_specs(["resize:scale=2"]), [tmp_path / "clip.mkv"], tmp_path / "out3")
    shown = Terminal()
    assert len(list(run_batch(plan, LocalEngine(), stream=shown))) == 4
    assert "frames:" in shown.getvalue() and "/4 [00:00<" in shown.getvalue() and "frame/s]" in shown.getvalue()


# -- video through a sequential pipeline (style): one frame sequence per video -------------------
def moving_square_pictures(samples, count=4):
    """A photo with a blue square moving 6 pixels right per frame (64×48)."""
    base = np.asarray(Image.open(samples / "chelsea.png").convert("RGB").resize((64, 48)))
    pictures = []
    for index in range(count):
        picture = base.copy()
        picture[16:28, 8 + 6 * index:20 + 6 * index] = (25, 150, 230)
        pictures.append(picture)
    return pictures


def still_flicker(pictures, outputs):
    """Mean change between consecutive outputs where the input did not change."""
    changes = []
    for before, after, out_before, out_after in zip(pictures, pictures[1:], outputs, outputs[1:]):
        still = (np.abs(after.astype(int) - before.astype(int)).max(2) == 0)[..., None]
        changes.append((np.abs(out_after.astype(float) - out_before.astype(float)) * still).sum() / (still.sum() * 3))
    return float(np.mean(changes))


def pixels(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


STYLE_SPEC = "style:style={},iterations=8,scales=1"


def make_video_with_audio(path, pictures, rate=10):
    """An H.264 + AAC clip of ``pictures`` with a 440 Hz tone; returns its audio packets' bytes."""
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=rate)
        video.height, video.width = pictures[0].shape[:2]
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=22050)
        for picture in pictures:
            for packet in video.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        tone = np.sin(np.arange(22050 * len(pictures) // rate) * 2 * np.pi * 440 / 22050).astype(np.float32)
        for start in range(0, len(tone) - 1023, 1024):
            frame = av.AudioFrame.from_ndarray(tone[None, start:start + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 22050, start
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
    return audio_packets(path)


def audio_packets(path):
    import av

    with av.open(str(path)) as container:
        return [bytes(packet) for packet in container.demux(container.streams.audio[0]) if packet.size]


def test_a_video_input_gives_a_video_with_its_rate_and_audio(cli, tmp_path):
    """clip.mp4 → out/clip.mp4: H.264 at the source's frame rate, the frames the PNG frames (within
    H.264's loss at the default quality), the source's audio copied packet for packet; an odd size
    is padded to the even one 4:2:0 needs; a second run that redoes nothing keeps the video."""
    import av

    rng = np.random.default_rng(3)
    base = (rng.random((1, 1, 3)) * 200 + 20) * np.ones((48, 64, 3))
    pictures = [np.clip(base + np.linspace(0, 30, 64)[None, :, None] * i / 5, 0, 255).astype(np.uint8) for i in range(6)]
    sound = make_video_with_audio(tmp_path / "clip.mp4", pictures, rate=12)
    out = tmp_path / "out"
    code, _, stderr = cli("run", tmp_path / "clip.mp4", "-e", "resize:width=63,height=47", "-o", out, "--frames")
    assert code == 0 and "out/clip.mp4: 6 frames at 12 fps, audio copied" in stderr, stderr
    with av.open(str(out / "clip.mp4")) as made:
        stream = made.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.average_rate == 12
        assert (stream.width, stream.height) == (64, 48)  # 63x47 padded to even sides
        decoded = [frame.to_ndarray(format="rgb24") for frame in made.decode(video=0)]
    assert len(decoded) == 6
    for index, frame in enumerate(decoded):
        png = pixels(out / "clip" / f"frame_{index + 1:06d}.png").astype(float)
        assert np.abs(frame[:47, :63].astype(float) - png).mean() < 3, index  # of 255: crf 18
    assert audio_packets(out / "clip.mp4") == sound
    before = (out / "clip.mp4").stat().st_mtime_ns
    code, _, stderr = cli("run", tmp_path / "clip.mp4", "-e", "resize:width=63,height=47", "-o", out, "--frames")
    assert code == 0 and (out / "clip.mp4").stat().st_mtime_ns == before and "audio copied" not in stderr


def test_a_part_of_a_video_by_start_and_duration(cli, tmp_path):
    """--start/--duration run a part of each video (frames chosen by time at the video's rate):
    its frames keep their numbers, a sequential pipeline starts its sequence there (recorded, so
    replay does too), and the video made holds those frames and the audio that plays with them."""
    rng = np.random.default_rng(5)
    pictures = [rng.integers(0, 256, (32, 48, 3), dtype=np.uint8) for _ in range(6)]
    sound = make_video_with_audio(tmp_path / "clip.mp4", pictures, rate=12)
    out = tmp_path / "out"
    dream = "deepdream:weights=random,octaves=1,steps=1"  # sequential: frame 5 depends on frame 4
    code, _, stderr = cli("run", tmp_path / "clip.mp4", "-e", dream, "-o", out, "--start", "0.25", "--duration", "0.25",
                          "--frames")
    assert code == 0, stderr
    assert sorted(p.name for p in (out / "clip").iterdir()) == ["frame_000004.png", "frame_000005.png", "frame_000006.png"]
    recipe = read_recipe(out / "clip" / "frame_000005.png")
    assert recipe["input"]["video_frame"] == 4 and recipe["input"]["sequence_start"] == 3
    code, stdout, stderr = cli("replay", out / "clip" / "frame_000005.png")  # frames 4 and 5 again, not 1..5
    assert code == 0 and "reproduces the image exactly" in stdout, (stdout, stderr)
    import av

    with av.open(str(out / "clip.mp4")) as made:
        assert sum(1 for _ in made.decode(video=0)) == 3
    copied = audio_packets(out / "clip.mp4")
    assert copied and set(copied) <= set(sound) and len(copied) < len(sound)  # the part, not the whole
    code, _, stderr = cli("run", tmp_path / "clip.mp4", "-e", "adjust", "-o", tmp_path / "late", "--start", "9")
    assert code == 2 and "--start 9 s is past the end of the video (6 frames at 12 fps: 0.50 s)" in stderr
    for flag, value, message in (("--start", "-1", "--start -1 is not allowed"),
                                 ("--duration", "0", "--duration 0 is not allowed")):
        code, _, stderr = cli("run", tmp_path / "clip.mp4", "-e", "adjust", "-o", tmp_path / "bad", flag, value)
        assert code == 2 and message in stderr
    assert not (tmp_path / "bad").exists() and not (tmp_path / "late").exists()


def test_a_long_video_in_chunks_warmed_up_on_the_frames_before(cli, tmp_path):
    """--chunk-frames 5 on 14 frames: the frames 0-9 form one sequence (a chunk starts its
    sequence WARM_UP = 8 frames early, here at frame 0), frames 10-13 another from frame 2, which
    runs frames 2-9 without writing them. The chunk's frames are closer to the whole run's than a
    cold start at frame 10 is (measured: 0.36 of the gap; a carried difference decays by about
    carry, 0.8, a frame, and a dream amplifies what it starts from); replay starts where the
    recipe says."""
    from dreamkit.batch.video import WARM_UP

    assert WARM_UP == 8
    rng = np.random.default_rng(7)
    base = rng.integers(0, 256, (24, 60, 3), dtype=np.uint8)
    make_video(tmp_path / "clip.mkv", pictures=[np.ascontiguousarray(base[:, i:i + 40]) for i in range(14)])
    dream = "deepdream:octaves=1,steps=3"  # the offline weights: random ones barely dream at 24 px
    runs = {}
    for name, extra in (("whole", []), ("chunked", ["--chunk-frames", "5"]), ("cold", ["--start", str(10 / 10)])):
        code, _, stderr = cli("run", tmp_path / "clip.mkv", "-e", dream, "-o", tmp_path / name, "--frames", *extra)
        assert code == 0, stderr
        runs[name] = {i: pixels(tmp_path / name / "clip" / f"frame_{i + 1:06d}.png").astype(float) for i in range(10, 14)}
    starts = [read_recipe(tmp_path / "chunked" / "clip" / f"frame_{i + 1:06d}.png")["input"].get("sequence_start", 0)
              for i in range(14)]
    assert starts == [0] * 10 + [2] * 4
    chunk_gap = max(np.abs(runs["chunked"][i] - runs["whole"][i]).mean() for i in range(10, 14))
    cold_gap = max(np.abs(runs["cold"][i] - runs["whole"][i]).mean() for i in range(10, 14))
    assert chunk_gap < 0.7 * cold_gap, (chunk_gap, cold_gap)
    code, stdout, _ = cli("replay", tmp_path / "chunked" / "clip" / "frame_000012.png")
    assert code == 0 and "reproduces the image exactly" in stdout
    code, _, stderr = cli("run", tmp_path / "clip.mkv", "-e", dream, "-o", tmp_path / "bad", "--chunk-frames", "-1")
    assert code == 2 and "--chunk-frames -1 is not allowed" in stderr


def test_no_video_is_made_while_a_frame_is_missing(tmp_path, caplog):
    from dreamkit.batch.encode import VideoAssembler

    class Plan:
        jobs, known = [], [{"input": "clip.mkv", "video_frame": i, "status": "skipped",
                            "frames": [{"output": str(tmp_path / "clip" / f"frame_{i + 1:06d}.png")}]} for i in range(3)]

    assembler = VideoAssembler()
    assembler.expect(Plan)
    for record in Plan.known[:2]:
        assembler.add(record)
    assembler.add({**Plan.known[2], "status": "failed", "frames": []})
    with caplog.at_level("WARNING", logger="dreamkit.batch"):
        assert assembler.finish() == []
    assert "not every frame is done" in caplog.text and not (tmp_path / "clip.mp4").exists()


def test_a_truncated_video_runs_what_can_be_read_and_fails_naming_the_cut(cli, tmp_path):
    """A Matroska clip cut at 60% of its bytes: its header still declares 10 frames, 5 can be read.
    Those 5 run and make a valid, shorter video (the partial output), the cut is a failed record
    naming both counts (exit 1), and nothing hidden is left. An MP4 cut short loses its index (the
    moov box is at the end): nothing can be read, so nothing is written and the error says so."""
    import av

    rng = np.random.default_rng(2)
    pictures = [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(10)]
    make_video(tmp_path / "whole.mkv", pictures=pictures)
    make_video_with_audio(tmp_path / "whole.mp4", pictures, rate=10)
    for name in ("whole.mkv", "whole.mp4"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / name.replace("whole", "cut")).write_bytes(data[: len(data) * 6 // 10])
    out, report = tmp_path / "out", tmp_path / "r.jsonl"
    code, _, stderr = cli("run", tmp_path / "in" / "cut.mkv", "-e", "adjust", "-o", out, "--report", report)
    assert code == 1, stderr
    assert "cut.mkv: the video is cut short (truncated or damaged): 5 of the 10 frames its header declares " \
           "can be read; those are run" in stderr
    records = report_lines(report)
    assert sorted(r["video_frame"] for r in records if r["status"] == "done") == [0, 1, 2, 3, 4]
    assert [r["status"] for r in records if r.get("video_frame") is None] == ["failed"]
    assert files_in(out) == ["cut.mp4"]  # no .part, no frames folder: the partial output is a whole video
    with av.open(str(out / "cut.mp4")) as made:
        assert sum(1 for _ in made.decode(video=0)) == 5
    code, _, stderr = cli("run", tmp_path / "in" / "cut.mp4", "-e", "adjust", "-o", tmp_path / "out2")
    assert code == 2 and "cut.mp4: cannot read the video" in stderr  # the one input: a bad input's exit 2
    assert files_in(tmp_path / "out2") == []
    code, _, stderr = cli("run", tmp_path / "whole.mkv", "-e", "adjust", "-o", tmp_path / "out3")
    assert code == 0 and "cut short" not in stderr  # a whole clip: its header and its packets agree


def test_a_bad_video_quality_is_a_usage_error(cli, tmp_path):
    make_video(tmp_path / "clip.mkv")
    for bad in ("-1", "52"):
        code, _, stderr = cli("run", tmp_path / "clip.mkv", "-e", "adjust", "-o", tmp_path / "out", "--crf", bad)
        assert code == 2 and f"--crf {bad} is not allowed; expected 0 (lossless) to 51" in stderr
    assert not (tmp_path / "out").exists()


def test_a_video_through_style_is_one_coherent_frame_sequence(cli, samples, tmp_path):
    pictures = moving_square_pictures(samples)
    make_video(tmp_path / "clip.mkv", pictures=pictures)
    frames = tmp_path / "frames"
    for index, picture in enumerate(pictures):  # the same frames as separate images: run independently
        tiny_path = frames / f"f{index}.png"
        tiny_path.parent.mkdir(exist_ok=True)
        Image.fromarray(picture).save(tiny_path)
    spec = STYLE_SPEC.format(samples / "coffee.png")
    code, _, stderr = cli("run", tmp_path / "clip.mkv", "-e", spec, "-o", tmp_path / "out", "--frames")
    assert code == 0, stderr
    code, _, stderr = cli("run", frames, "-e", spec, "-o", tmp_path / "alone")
    assert code == 0, stderr
    sequence = [pixels(tmp_path / "out" / "clip" / f"frame_{i + 1:06d}.png") for i in range(4)]
    alone = [pixels(tmp_path / "alone" / f"f{i}.png") for i in range(4)]
    # each frame started from the previous result, held by the temporal term where nothing moved
    assert still_flicker(pictures, sequence) < 0.5 * still_flicker(pictures, alone)
    from dreamkit_style.colour import in_style_palette

    for index, output in enumerate(sequence):  # and what moved, moved: the square is where the input's is
        where = (slice(18, 26), slice(10 + 6 * index, 18 + 6 * index))
        picture = torch.from_numpy(pictures[index]).permute(2, 0, 1)[None].float() / 255
        start = in_style_palette(picture, [load_image(samples / "coffee.png")], [1.0], [None])  # color=style
        blue = start[0, :, where[0], where[1]].mean((1, 2)).numpy() * 255  # the square in the style's palette
        assert np.abs(output[where].astype(float) - blue).mean() < 40, index
    recipe = read_recipe(tmp_path / "out" / "clip" / "frame_000003.png")
    assert recipe["input"]["video_frame"] == 2


def test_a_resumed_video_sequence_redoes_missing_frames_exactly(cli, samples, tmp_path):
    make_video(tmp_path / "clip.mkv", pictures=moving_square_pictures(samples))
    spec, out = STYLE_SPEC.format(samples / "coffee.png"), tmp_path / "out"
    assert cli("run", tmp_path / "clip.mkv", "-e", spec, "-o", out, "--frames")[0] == 0
    third = out / "clip" / "frame_000003.png"
    before = pixels(third)
    third.unlink()
    code, _, stderr = cli("run", tmp_path / "clip.mkv", "-e", spec, "-o", out, "--frames")
    # frames 1-2 warm the sequence up again (not written), so frame 3 sees what it saw the first time
    assert code == 0 and "1 done, 3 skipped" in stderr
    assert np.array_equal(pixels(third), before)
    code, stdout, _ = cli("replay", out / "clip" / "frame_000004.png")  # replay runs frames 1..4 in order
    assert code == 0 and "reproduces the image exactly" in stdout


def test_a_sequential_pipeline_runs_each_video_as_one_chunk(samples, tmp_path):
    from dreamkit.batch.jobs import Job
    from dreamkit.batch.outputs import OutputPlan
    from dreamkit.batch.work import PipelineWork

    def job(path, frame):
        item = InputItem(tmp_path / path, PurePosixPath(path), PurePosixPath(path), frame)
        return Job(OutputPlan(item, tmp_path / "o.png", tmp_path / "o", tmp_path / "o.gif"))

    jobs = [job("a.mkv", 1), job("x.png", None), job("b.mkv", 0), job("a.mkv", 0), job("y.png", None)]
    style = Pipeline.from_specs([STYLE_SPEC.format(samples / "coffee.png")])
    chunks = PipelineWork(style).chunks(jobs)
    names = [[(j.item.path.name, j.item.video_frame) for j in chunk] for chunk in chunks]
    assert names == [[("x.png", None)], [("y.png", None)], [("a.mkv", 0), ("a.mkv", 1)], [("b.mkv", 0)]]
    independent = PipelineWork(Pipeline.from_specs(["resize:scale=1"])).chunks(jobs)
    assert [len(chunk) for chunk in independent] == [1] * 5  # frames run as separate jobs (in parallel on Ray)
