"""Every registered effect runs with every front end's progress bars: the terminal's, the silent
one and the web page's. An effect may use only what ``dreamkit.progress.ProgressBar`` declares,
and each front end's bar implements all of it (a bar without ``show`` once made ``style`` fail
on the web page only)."""

from __future__ import annotations

import io
import pathlib

import pytest
import torch

from dreamkit.pipeline import Pipeline
from dreamkit.progress import ProgressBar, SilentProgress, TerminalProgress

#: Cheap settings for the built-in effects that have costly defaults or need a file; any other
#: registered effect runs with its defaults (a new plugin's effect is covered by being registered).
CHEAP = {
    "deepdream": {"octaves": 1, "steps": 2},
    "style": {"iterations": 2, "scales": 1},
    "resize": {"scale": 0.5},
}
#: Effects that show progress (the others are single passes).
WITH_BARS = {"deepdream", "style"}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _web_progress(tmp_path: pathlib.Path, pipeline: Pipeline):
    from dreamkit_web.jobs import Job, _WebProgress

    job = Job("0" * 32, pipeline, tmp_path / "x.png", {"name": "x.png"}, 0, torch.device("cpu"), tmp_path)
    return job, _WebProgress(job)


@pytest.fixture(scope="module")
def small_index(samples, tmp_path_factory) -> pathlib.Path:
    from dreamkit.cli import main

    folder = tmp_path_factory.mktemp("photos")
    for name in ("coffee.png", "chelsea.png"):
        (folder / name).write_bytes((samples / name).read_bytes())
    index = folder.parent / f"{folder.name}.index"
    assert main([str(p) for p in ("index", "build", folder, "-o", index, "-q")]) == 0
    return index


@pytest.fixture(scope="module")
def style_model(tmp_path_factory) -> pathlib.Path:
    """A (untrained) style network file for ``fast_style``."""
    from dreamkit_style.model import FastStyleModel, save_model
    from dreamkit_style.transformer import StyleNetwork

    path = tmp_path_factory.mktemp("models") / "net.dkstyle"
    palette = {"mean": torch.full((1, 3), 0.5), "covariance": torch.eye(3)[None] * 0.02, "weight": torch.ones(1)}
    save_model(path, FastStyleModel(StyleNetwork("small"), False, palette, torch.zeros(3, 1, 1, dtype=torch.uint8)))
    return path


def _params(name: str, samples: pathlib.Path, index: pathlib.Path, model: pathlib.Path) -> dict:
    files = {"style": {"style": [str(samples / "gravel.png")]}, "retrieve": {"index": str(index)},
             "fast_style": {"model": str(model)}}
    return {**CHEAP.get(name, {}), **files.get(name, {})}


def test_every_front_ends_bar_implements_the_protocol(tmp_path):
    bars = [SilentProgress(), TerminalProgress(Terminal())]
    job, web = _web_progress(tmp_path, Pipeline([]))
    bars.append(web)
    job.folder.mkdir(parents=True, exist_ok=True)
    for progress in bars:
        with progress.bar(2, "work") as bar:
            assert isinstance(bar, ProgressBar), type(progress).__name__
            bar.show(loss=0.5)
            bar.preview(torch.rand(1, 3, 8, 6))
            bar.update(2)
    assert job.events[-1]["done"] == 2 and job.events[-1]["values"] == {"loss": 0.5}
    assert [e["type"] for e in job.events].count("preview") == 1


def test_the_web_bar_keeps_small_previews_at_most_once_a_second(tmp_path, monkeypatch):
    from PIL import Image

    from dreamkit_web import jobs

    job, web = _web_progress(tmp_path, Pipeline([]))
    job.folder.mkdir(parents=True, exist_ok=True)
    clock = [100.0]
    monkeypatch.setattr(jobs.time, "monotonic", lambda: clock[0])
    made = []

    def picture():  # a function: made only when the bar keeps a preview
        made.append(1)
        return torch.rand(1, 3, 900, 1200)

    with web.bar(10, "octave 1") as bar:
        for _ in range(5):  # five offers within a second: one preview
            bar.preview(picture)
            clock[0] += 0.1
        clock[0] += 1.0
        bar.preview(picture)  # a second later: the next one
    previews = [e for e in job.events if e["type"] == "preview"]
    assert [e["preview"] for e in previews] == [0, 1] and len(made) == 2
    assert previews[0]["desc"] == "octave 1" and (previews[0]["width"], previews[0]["height"]) == (320, 240)
    assert Image.open(job.previews[1]).size == (320, 240)  # small: its longest side PREVIEW_SIDE


def test_every_effect_runs_with_every_bar(dreamkit_host, samples, small_index, style_model, tmp_path):
    image = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    names = sorted(dreamkit_host.effects)
    assert {"deepdream", "style", "classify", "detect", "retrieve"} <= set(names)
    for name in names:
        effect = dreamkit_host.effect(name)(**_params(name, samples, small_index, style_model))
        pipeline = Pipeline([effect])
        terminal = Terminal()
        job, web = _web_progress(tmp_path, pipeline)
        outputs = {}
        for label, progress in (("silent", SilentProgress()), ("terminal", TerminalProgress(terminal)), ("web", web)):
            result = pipeline.run(image, seed=1, device="cpu", progress=progress, host=dreamkit_host)
            outputs[label] = result.frames[0].image
        # the bars change nothing in what is made
        assert torch.equal(outputs["silent"], outputs["terminal"]) and torch.equal(outputs["silent"], outputs["web"]), name
        progress_events = [event for event in job.events if event["type"] == "progress"]
        if name in WITH_BARS:
            assert progress_events and progress_events[-1]["done"] == progress_events[-1]["total"], name
            assert "values" in progress_events[-1], name  # its figures reach the page
            assert terminal.getvalue(), name
