"""The dreamkit command line, run in-process on a fresh plugin host per test."""

import json
import shutil

import pytest
import torch
from PIL import Image

from dreamkit import Effect, ParameterError, Param, hookimpl
from dreamkit.io import read_recipe


class Fade(Effect):
    """Three frames fading to black (a stand-in for a zoom sequence)."""

    name = "fade"
    frames = Param(int, 3, min=1)

    def apply(self, image, context):
        return [image * (1 - i / self.frames) for i in range(self.frames)]


class Jitter(Effect):
    """Seeded noise, so replays must reproduce the generator stream."""

    name = "grain"

    def apply(self, image, context):
        noise = torch.rand(image.shape, generator=context.generator)
        return (image + 0.2 * (noise - 0.5)).clamp(0, 1)


class Stats(Effect):
    name = "stats"

    def apply(self, image, context):
        context.add_result({"label": "bright" if image.mean() > 0.5 else "dark", "score": round(float(image.mean()), 4)})
        return image


class Plugin:
    @hookimpl
    def dreamkit_register_effects(self, register):
        for effect in (Fade, Jitter, Stats):
            register(effect)


@pytest.fixture
def photos(tmp_path, samples):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea.png", "coffee.png"):
        with Image.open(samples / name) as image:
            image.resize((image.width // 4, image.height // 4)).save(folder / name)
    return folder


@pytest.fixture
def extra(register_plugin):
    register_plugin(Plugin(), name="cli-test-effects")


def files_in(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []


def test_run_writes_pngs_with_recipes_and_json(cli, photos, tmp_path, extra):
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", photos, "-e", "resize:scale=0.5", "-e", "stats", "-o", out, "--json", "--seed", "3")
    assert code == 0, stderr
    records = [json.loads(line) for line in stdout.splitlines()]
    assert [r["input"] for r in records] == [str(photos / "chelsea.png"), str(photos / "coffee.png")]
    assert files_in(out) == ["chelsea.png", "coffee.png"]
    assert records[0]["results"][0]["effect"] == "stats" and records[0]["results"][0]["label"] in ("bright", "dark")
    assert records[0]["frames"][0]["output"] == str(out / "chelsea.png")
    recipe = read_recipe(out / "chelsea.png")
    assert recipe["seed"] == 3 and recipe["pipeline"]["steps"][0]["effect"] == "resize"
    assert set(recipe["versions"]) >= {"dreamkit", "torch", "torchvision"}
    assert recipe["input"]["name"] == "chelsea.png" and len(recipe["input"]["sha256"]) == 64


def test_replay_reproduces_the_pixels(cli, photos, tmp_path, extra):
    out = tmp_path / "out"
    assert cli("run", photos / "chelsea.png", "-e", "grain", "-e", "adjust:contrast=1.3", "-o", out, "--seed", "11")[0] == 0
    code, stdout, _ = cli("replay", out / "chelsea.png", "--check", "-o", tmp_path / "again.png")
    assert code == 0 and "reproduces the image exactly" in stdout
    assert torch.equal(torch.from_numpy(__import__("numpy").array(Image.open(tmp_path / "again.png"))),
                       torch.from_numpy(__import__("numpy").array(Image.open(out / "chelsea.png"))))


def test_replay_detects_a_changed_image_and_a_different_input(cli, photos, tmp_path, extra):
    out = tmp_path / "out"
    cli("run", photos / "chelsea.png", "-e", "grain", "-o", out)
    png = out / "chelsea.png"
    recipe = read_recipe(png)
    recipe["seed"] = 12  # same input, other seed: the pixels must differ
    from dreamkit.io import load_image, save_image

    save_image(load_image(png), tmp_path / "tampered.png", recipe=recipe)
    code, stdout, _ = cli("replay", tmp_path / "tampered.png", "--check")
    assert code == 1 and "differs in" in stdout
    code, _, stderr = cli("replay", png, "--input", photos / "coffee.png")
    assert code == 2 and "is not the input this image was made from" in stderr


def test_recipe_records_the_platform_and_replay_names_what_differs(cli, photos, tmp_path, extra):
    out = tmp_path / "out"
    cli("run", photos / "chelsea.png", "-e", "grain", "-o", out)
    png = out / "chelsea.png"
    recipe = read_recipe(png)
    assert recipe["platform"] == {"threads": torch.get_num_threads(), "cpu": recipe["platform"]["cpu"],
                                  "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    assert recipe["platform"]["cpu"] and recipe["device"] == "cpu"
    from dreamkit.io import load_image, save_image

    # A capability that is not this CPU's, whatever this CPU is (never assume the machine).
    here = torch.backends.cpu.get_cpu_capability()
    other = next(c for c in ("AVX512", "AVX2", "DEFAULT") if c != here)
    recipe["platform"].update(threads=recipe["platform"]["threads"] + 7, cpu_capability=other)
    recipe["seed"] = 12  # the pixels differ; the note says what else differed when it was made
    save_image(load_image(png), tmp_path / "elsewhere.png", recipe=recipe)
    code, stdout, stderr = cli("replay", tmp_path / "elsewhere.png", "--threads", torch.get_num_threads())
    assert code == 0 and "differs in" in stdout
    assert f"note: threads was {torch.get_num_threads() + 7}, now {torch.get_num_threads()}" in stderr
    assert f"note: cpu_capability was {other}, now {here}" in stderr
    assert "cpu was" not in stderr  # only what differs
    recipe["platform"] = read_recipe(png)["platform"]
    save_image(load_image(png), tmp_path / "here.png", recipe=recipe)
    code, _, stderr = cli("replay", tmp_path / "here.png")
    assert "same versions, threads, CPU capability and device as recorded" in stderr


def test_replay_finds_a_moved_input_with_input(cli, photos, tmp_path, extra):
    out = tmp_path / "out"
    cli("run", photos / "coffee.png", "-e", "grain", "-o", out)
    moved = tmp_path / "moved.png"
    shutil.move(photos / "coffee.png", moved)
    code, _, stderr = cli("replay", out / "coffee.png")
    assert code == 2 and "pass --input PATH" in stderr
    code, stdout, _ = cli("replay", out / "coffee.png", "--input", moved, "--check")
    assert code == 0 and "exactly" in stdout


def test_sequences_are_written_as_numbered_frames_and_an_animation(cli, photos, tmp_path, extra):
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", photos / "chelsea.png", "-e", "fade:frames=3", "-e", "stats", "-o", out, "--json")
    assert code == 0, stderr
    assert files_in(out) == ["chelsea", "chelsea.gif", "chelsea/frame_0001.png", "chelsea/frame_0002.png", "chelsea/frame_0003.png"]
    record = json.loads(stdout)
    assert record["animation"] == str(out / "chelsea.gif")
    assert [r["frame"] for r in record["results"]] == [0, 1, 2]
    assert read_recipe(out / "chelsea" / "frame_0002.png")["frame"] == 1
    code, stdout, _ = cli("replay", out / "chelsea" / "frame_0002.png", "--check")
    assert code == 0, stdout


def test_recipe_files_and_save_recipe(cli, photos, tmp_path, extra):
    out = tmp_path / "out"
    recipe = tmp_path / "recipe.toml"
    assert cli("run", photos / "coffee.png", "-e", "resize:width=40", "-o", out, "--save-recipe", recipe)[0] == 0
    assert "resize" in recipe.read_text()
    assert cli("run", photos / "chelsea.png", "--recipe", recipe, "-o", tmp_path / "out2")[0] == 0
    assert Image.open(tmp_path / "out2" / "chelsea.png").width == 40
    # a dreamkit PNG is a recipe too
    assert cli("run", photos / "chelsea.png", "--recipe", out / "coffee.png", "-o", tmp_path / "out3")[0] == 0
    assert Image.open(tmp_path / "out3" / "chelsea.png").width == 40


def test_glob_inputs(cli, photos, tmp_path):
    code, stdout, _ = cli("run", str(photos / "c*.png"), "-e", "adjust", "-o", tmp_path / "out")
    assert code == 0 and files_in(tmp_path / "out") == ["chelsea.png", "coffee.png"]
    assert "chelsea.png ->" in stdout


def test_other_formats(cli, photos, tmp_path):
    assert cli("run", photos / "coffee.png", "-e", "adjust", "-o", tmp_path / "out", "--format", "jpg")[0] == 0
    assert Image.open(tmp_path / "out" / "coffee.jpg").format == "JPEG"


# -- bad inputs: exit code 2, a message on stderr, no traceback, nothing written -------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (["-e", "nope"], "unknown effect 'nope'"),
        (["-e", "resize:scale=0"], "effect 'resize': parameter 'scale' = 0.0 is not allowed; expected a number > 0"),
        (["-e", "resize:scael=1"], "unknown parameter 'scael'; its parameters are: scale"),
        (["-e", "resize"], "give one of scale, width/height or max_side"),
        (["-e", "resize:scale"], "'scale' is not key=value"),
        (["-e", "adjust", "--device", "tpu"], "device 'tpu' is not allowed"),
        (["-e", "adjust", "--background", "blurple"], "background 'blurple'"),
        (["-e", "adjust", "--max-pixels", "10"], "over the limit of 10"),
        (["-e", "adjust", "--max-pixels", "0"], "--max-pixels 0 is not allowed"),
    ],
)
def test_bad_arguments(cli, photos, tmp_path, args, message):
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", photos / "coffee.png", *args, "-o", out)
    assert code == 2
    assert message in stderr and "Traceback" not in stderr
    assert files_in(out) == []


@pytest.mark.parametrize("missing", ["nope.png", "nothing-*.png"])
def test_missing_inputs(cli, tmp_path, missing):
    code, _, stderr = cli("run", tmp_path / missing, "-e", "adjust", "-o", tmp_path / "out")
    assert code == 2 and ("no such file" in stderr or "no files match" in stderr)


def test_existing_outputs_need_overwrite_and_inputs_are_never_overwritten(cli, photos, tmp_path):
    out = tmp_path / "out"
    assert cli("run", photos / "coffee.png", "-e", "adjust", "-o", out)[0] == 0
    before = (out / "coffee.png").read_bytes()
    code, _, stderr = cli("run", photos / "coffee.png", "-e", "adjust:brightness=0.5", "-o", out)
    assert code == 2 and "coffee.png exists already and was not made by this recipe from this input; pass --overwrite" in stderr
    assert (out / "coffee.png").read_bytes() == before
    assert cli("run", photos / "coffee.png", "-e", "adjust:brightness=0.5", "-o", out, "--overwrite")[0] == 0
    assert (out / "coffee.png").read_bytes() != before
    original = (photos / "coffee.png").read_bytes()
    code, _, stderr = cli("run", photos / "coffee.png", "-e", "adjust:brightness=0.5", "-o", photos, "--overwrite")
    assert code == 2 and "refusing to overwrite an input" in stderr
    assert (photos / "coffee.png").read_bytes() == original


def test_two_inputs_with_the_same_name_get_distinct_outputs(cli, photos, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(photos / "coffee.png", other / "coffee.png")
    code, _, _ = cli("run", photos / "coffee.png", other / "coffee.png", "-e", "adjust", "-o", tmp_path / "out")
    assert code == 0
    assert files_in(tmp_path / "out") == ["coffee.png-2.png", "coffee.png.png"]  # rule 3: -2 for the second
    assert read_recipe(tmp_path / "out" / "coffee.png-2.png")["input"]["path"] == str((other / "coffee.png").resolve())


def test_usage_errors_exit_2(cli, tmp_path):
    code, _, stderr = cli("run", tmp_path / "x.png", "-o", tmp_path / "out")
    assert code == 2 and "one of the arguments -e/--effect --recipe is required" in stderr
    assert cli("frobnicate")[0] == 2
    code, _, stderr = cli("run", tmp_path / "x.png", "--recipe", tmp_path / "none.toml", "-o", tmp_path / "out")
    assert code == 2 and "does not exist" in stderr


def test_internal_errors_exit_1_with_a_traceback(cli, photos, tmp_path, register_plugin):
    class Crash(Effect):
        name = "crash"

        def apply(self, image, context):
            raise ZeroDivisionError("oops")

    class Plugin:
        @hookimpl
        def dreamkit_register_effects(self, register):
            register(Crash)

    register_plugin(Plugin(), name="crasher")
    code, _, stderr = cli("run", photos / "coffee.png", "-e", "crash", "-o", tmp_path / "out")
    assert code == 1 and "ZeroDivisionError: oops" in stderr and "internal error" in stderr
    assert files_in(tmp_path / "out") == []


# -- listing commands ----------------------------------------------------------------------------
def test_effects_lists_parameters_and_defaults(cli, extra):
    code, stdout, _ = cli("effects")
    assert code == 0 and "resize  (plugin: basic)" in stdout and "max_side" in stdout
    code, stdout, _ = cli("effects", "--json")
    listing = {item["name"]: item for item in json.loads(stdout)}
    assert listing["fade"]["params"] == [{"name": "frames", "type": "int", "default": 3, "allowed": "an integer >= 1", "help": "",
                                          "min": 1, "max": None, "gt": None, "choices": None, "optional": False,
                                          "resource": None, "words": [], "advanced": False, "per_item_of": None}]
    assert listing["resize"]["plugin"] == "basic" and listing["fade"]["presets"] == {}


def test_effects_lists_advanced_parameters_last_and_the_presets(cli):
    code, stdout, _ = cli("effects")
    deepdream = stdout[stdout.index("deepdream  (plugin"):stdout.index("detect  (plugin")]
    basic, advanced = deepdream.split("    advanced:\n")
    assert "octaves" in basic and "steps " in basic and "memory_mb" in advanced and "memory_mb" not in basic
    assert "preset deep: -e deepdream:octaves=5,steps=20,step_size=0.008" in advanced
    code, stdout, _ = cli("effects", "--json")
    listing = {item["name"]: item for item in json.loads(stdout)}
    assert listing["style"]["presets"]["painterly"]["style_weight"] == 300.0
    assert {p["name"] for p in listing["style"]["params"] if not p["advanced"]} >= {"style", "color", "iterations"}


def test_every_effects_presets_make_that_effect(dreamkit_host, samples):
    """A preset is a starting point the page applies: it must make a valid effect (checked when
    the class is made, so a plugin's typo fails at import)."""
    for name, effect in dreamkit_host.effects.items():
        for preset, values in effect.presets.items():
            made = effect(**{**({"style": [str(samples / "gravel.png")]} if name == "style" else {}), **values})
            assert all(getattr(made, key) == value for key, value in values.items()), (name, preset)
    with pytest.raises(TypeError, match="preset 'loud' sets unknown parameter"):
        type("Loud", (Effect,), {"name": "loud", "gain": Param(float, 1.0), "presets": {"loud": {"gian": 2.0}}})
    with pytest.raises(ParameterError, match="gain"):
        type("Loud", (Effect,), {"name": "loud", "gain": Param(float, 1.0, max=4), "presets": {"loud": {"gain": 9.0}}})


def test_a_value_per_item_of_another_list_is_declared_and_checked(cli):
    """``per_item_of``: a list giving one value per item of another list parameter (a style's
    blend weight), which the web page shows beside each item; a plugin's mistake fails at import."""
    code, stdout, _ = cli("effects", "--json")
    style = {p["name"]: p for p in {item["name"]: item for item in json.loads(stdout)}["style"]["params"]}
    assert style["style_weights"]["per_item_of"] == "style" and style["style"]["per_item_of"] is None
    with pytest.raises(TypeError, match="only a list Param gives one value per item"):
        Param(float, 1.0, per_item_of="layers")
    with pytest.raises(TypeError, match="per_item_of='layer', which is not a list parameter of this effect"):
        type("Mix", (Effect,), {"name": "mix", "layers": Param(list, None, item=str),
                                "gains": Param(list, None, item=float, per_item_of="layer")})
    with pytest.raises(TypeError, match="not a list parameter"):
        type("Mix", (Effect,), {"name": "mix", "layer": Param(str, "a"),
                                "gains": Param(list, None, item=float, per_item_of="layer")})


def test_plugins_lists_plugins_and_failures(cli, dreamkit_host):
    dreamkit_host.strict = False
    with pytest.warns(RuntimeWarning):
        dreamkit_host.register(type("Broken", (), {"dreamkit_regster_effects": staticmethod(lambda register: None)})(), name="broken")
    code, stdout, _ = cli("plugins")
    assert code == 0 and "basic  (dreamkit" in stdout and "FAILED broken" in stdout
    code, stdout, _ = cli("plugins", "--json")
    data = json.loads(stdout)
    assert {p["name"] for p in data["plugins"]} >= {"basic", "dreamkit.core_hooks"}
    assert data["failures"][0]["name"] == "broken" and "unknown hook" in data["failures"][0]["error"]
    assert set(data["plugins"][0]) == {"name", "distribution", "version", "builtin", "hooks", "effects", "weights",
                                       "backbones", "detectors", "commands"}
    detect = {p["name"]: p for p in data["plugins"]}["detect"]
    assert len(detect["detectors"]) == 9 and "mtcnn_onet.V1" in detect["weights"]


def test_doctor(cli):
    code, stdout, _ = cli("doctor")
    assert code == 0 and "op_backend:" in stdout and "torch:" in stdout
    code, stdout, _ = cli("doctor", "--json")
    report = json.loads(stdout)
    assert report["op_backend"] == "compiled" and report["extension"]["compiler"]
    assert report["op_kernels"]["octave_resample"][0] == "cpu" and set(report["op_kernels"]) >= {"jitter", "gram_matrix"}
    assert "  dream_update         cpu" in cli("doctor")[1]
    assert report["torch"] == torch.__version__


def test_version(cli):
    code, stdout, _ = cli("--version")
    assert code == 0 and stdout.startswith("dreamkit ")


def _truncated(folder):
    path = folder / "cut.png"
    array = __import__("numpy").random.default_rng(2).integers(0, 256, (64, 64, 3), dtype="uint8")
    Image.fromarray(array).save(path)
    path.write_bytes(path.read_bytes()[:1500])
    return path, "cut.png: cannot decode the image"


def _bomb(folder):
    path = folder / "bomb.png"
    Image.new("1", (10000, 9000)).save(path)
    return path, "bomb.png: 10000×9000 = 90,000,000 pixels is over the limit"


def _tga(folder):
    path = folder / "pic.tga"
    Image.new("RGB", (4, 4)).save(path)
    return path, "pic.tga: not an image in an allowed format"


def _text(folder):
    path = folder / "notes.jpg"
    path.write_text("just text")
    return path, "notes.jpg: not an image in an allowed format"


def _empty(folder):
    path = folder / "empty.png"
    path.write_bytes(b"")
    return path, "empty.png: empty file (0 bytes)"


@pytest.mark.parametrize("make_bad", [_truncated, _bomb, _tga, _text, _empty])
def test_each_bad_image_is_a_clear_error(cli, photos, tmp_path, make_bad):
    bad, message = make_bad(tmp_path)
    out = tmp_path / "out"
    code, _, stderr = cli("run", bad, "-e", "adjust", "-o", out)  # alone: exit 2, as a usage error
    assert code == 2 and message in stderr and "Traceback" not in stderr
    assert files_in(out) == []
    code, stdout, stderr = cli("run", photos / "chelsea.png", bad, "-e", "adjust", "-o", out)  # among others
    assert code == 1 and f"dreamkit: failed: {bad}" in stderr and message in stderr and "Traceback" not in stderr
    assert "1 done, 1 failed" in stderr and files_in(out) == ["chelsea.png"]


def test_progress_bars_only_on_a_terminal_and_never_when_quiet(capsys):
    import io
    import time

    from dreamkit.progress import make_progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    shown, hidden = Terminal(), io.StringIO()
    for stream in (shown, hidden):
        with make_progress(None, stream=stream).bar(3, "octave 1") as bar:
            bar.update(2)
            bar.show(loss=0.123456, stage="coarse")
            time.sleep(0.15)  # tqdm redraws at most every 0.1 s
            bar.update(1)
    assert "octave 1" in shown.getvalue() and "loss=0.123" in shown.getvalue() and hidden.getvalue() == ""
    quiet = Terminal()
    with make_progress(False, stream=quiet).bar(3, "octave 1") as bar:
        bar.update(3)
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("fmt", ["jpg", "webp"])
def test_replay_of_a_lossy_output_is_exact(cli, photos, tmp_path, extra, fmt):
    """A JPEG/WebP output records its encoding; replay encodes its own pixels the same way, so the
    comparison is exact, and a changed recipe still shows as a difference."""
    out = tmp_path / "out"
    assert cli("run", photos / "chelsea.png", "-e", "grain", "-e", "resize:scale=0.5", "-o", out, "--format", fmt,
               "--seed", "4")[0] == 0
    output = out / f"chelsea.{fmt}"
    code, stdout, stderr = cli("replay", output, "--check")
    assert code == 0, (stdout, stderr)
    quality = 95
    assert f"replay reproduces the image exactly (compared as {fmt.upper().replace('JPG', 'JPEG')} at quality {quality}" in stdout
    from dreamkit.io import ENCODING_KEY, read_metadata

    assert read_metadata(output)[ENCODING_KEY] == {"format": fmt.upper().replace("JPG", "JPEG"), "quality": quality}
    recipe = read_recipe(output)
    recipe["seed"] = 5  # other grain: the replay must see it, through the codec
    from dreamkit.io import load_image, save_image

    save_image(load_image(output), tmp_path / f"tampered.{fmt}", recipe=recipe)
    code, stdout, _ = cli("replay", tmp_path / f"tampered.{fmt}", "--check")
    assert code == 1 and "differs in" in stdout


def test_replay_of_a_video_frame_decodes_the_recorded_frame(cli, tmp_path, extra):
    from test_batch import make_video

    make_video(tmp_path / "clip.mkv", frames=3)
    out = tmp_path / "out"
    assert cli("run", tmp_path / "clip.mkv", "-e", "grain", "-o", out, "--frames")[0] == 0
    for index in (1, 3):
        code, stdout, stderr = cli("replay", out / "clip" / f"frame_{index:06d}.png", "--check")
        assert code == 0 and "replay reproduces the image exactly" in stdout, (stdout, stderr)
    # the recorded frame, not the first: frame 3 replayed from frame 1's pixels would differ
    recipe = read_recipe(out / "clip" / "frame_000003.png")
    assert recipe["input"]["video_frame"] == 2


def test_replay_computes_with_the_recorded_thread_count(cli, tmp_path, monkeypatch):
    import torch

    import dreamkit.replay

    from tests.test_batch import tiny

    photo = tiny(tmp_path / "p.png", size=(40, 30))
    assert cli("run", photo, "-e", "resize:scale=0.5", "-o", tmp_path / "out", "--threads", "1")[0] == 0
    seen, real = [], dreamkit.replay.replay
    monkeypatch.setattr(dreamkit.replay, "replay", lambda *a, **k: seen.append(torch.get_num_threads()) or real(*a, **k))
    before = torch.get_num_threads()
    code, stdout, _ = cli("replay", tmp_path / "out" / "p.png")
    assert code == 0 and "exactly" in stdout and seen == [1]  # float sums depend on it: the recorded count
    code, _, _ = cli("replay", tmp_path / "out" / "p.png", "--threads", "3")
    assert code == 0 and seen == [1, 3] and torch.get_num_threads() == before
    code, _, stderr = cli("replay", tmp_path / "out" / "p.png", "--threads", "0")
    assert code == 2 and "--threads 0 is not allowed" in stderr
