"""The web page in a real headless Chromium (Playwright for Python, Debian's ``chromium``: Playwright's
own browser download needs the internet). ``make test`` installs the browser where it is missing.

Screenshots at a laptop and a phone size are written to the test's folder, and to
``$DREAMKIT_SCREENSHOTS`` when set (the README's come from ``DREAMKIT_SCREENSHOTS=docs/images``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
playwright = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@contextlib.contextmanager
def served(host, **options):
    """A live server on a free port with these ServerSettings ``options``; yields the page's
    address (the test is skipped where Debian's chromium is missing)."""
    from dreamkit_web.app import ServerSettings, create_app
    from tests.test_web import free_port, live_server

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test installs it: apt-get install chromium)")
    settings = ServerSettings(port=free_port(), **options)
    with live_server(create_app(settings, host=host), settings.port):
        yield f"http://127.0.0.1:{settings.port}/?token={settings.token}"


@pytest.fixture
def page_url(dreamkit_host):
    with served(dreamkit_host) as url:
        yield url


@contextlib.contextmanager
def opened_page(page_url):
    """Chromium at a laptop size on the page, samples loaded; yields (browser, page, page errors:
    script errors and anything the Content-Security-Policy blocked)."""
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 860}, accept_downloads=True)
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda message: "Content Security Policy" in message.text and errors.append(message.text))
        page.goto(page_url)
        page.wait_for_selector(".sample img")
        yield browser, page, errors


def build(page, sample, *effects):
    """Pick a sample and add the effects' steps; returns the steps' locators."""
    page.click(f".sample[title='{sample}']")
    for effect in effects:
        page.select_option("#add-effect", effect)
        page.click("#add-button")
    return [page.locator(".step").nth(index) for index in range(len(effects))]


def set_value(step, name, value):
    """Type ``value`` into a step's parameter box, as a user does (the page reads it on change)."""
    step.locator(f"input[name={name}]").fill(str(value))
    step.locator(f"input[name={name}]").dispatch_event("change")


def run_and_download(page, folder):
    """Run, wait for the result, download it into ``folder``; returns the saved file."""
    page.click("#run")
    page.wait_for_selector("#result-card:not([hidden])", timeout=120_000)
    with page.expect_download() as info:
        page.click("#download")
    saved = folder / info.value.suggested_filename
    info.value.save_as(saved)
    return saved


def two_pictures(samples, folder):
    """a.png (gravel) and b.png (chelsea) in ``folder``: two files a user picks."""
    first, second = folder / "a.png", folder / "b.png"
    first.write_bytes((samples / "gravel.png").read_bytes())
    second.write_bytes((samples / "chelsea.png").read_bytes())
    return first, second


def wait_until(page, expression, timeout=30.0):
    """Poll ``expression`` in the page until it is true. (Playwright's wait_for_function evaluates
    its predicate with eval inside the page, which the page's Content-Security-Policy forbids, as
    it should; page.evaluate goes through the debugger protocol, outside the CSP.)"""
    import time

    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s: {expression}")
        time.sleep(0.05)


def test_build_run_watch_and_download_in_chromium(page_url, tmp_path):
    from dreamkit.io import read_metadata

    shots = [tmp_path] + ([Path(os.environ["DREAMKIT_SCREENSHOTS"])] if os.environ.get("DREAMKIT_SCREENSHOTS") else [])
    with opened_page(page_url) as (browser, page, errors):
        assert page.locator("#server").inner_text().endswith("effects ready")
        page.click(".sample[title='coffee.png']")
        # build resize + adjust, set parameters through the generated forms
        page.select_option("#add-effect", "resize")
        page.click("#add-button")
        page.select_option("#add-effect", "adjust")
        page.click("#add-button")
        page.locator(".step").nth(0).locator("input[name=max_side]").fill("480")
        page.locator(".step").nth(0).locator("input[name=max_side]").dispatch_event("change")
        page.locator(".step").nth(1).locator("input[name=saturation]").fill("1.6")
        page.locator(".step").nth(1).locator("input[name=saturation]").dispatch_event("change")
        # move adjust up and back down: reordering works
        page.get_by_label("move up adjust").click()
        assert page.locator(".step-name").all_inner_texts() == ["1. adjust", "2. resize"]
        page.get_by_label("move down adjust").click()
        assert page.locator(".step-name").all_inner_texts() == ["1. resize", "2. adjust"]
        page.click("#run")
        page.wait_for_selector("#result-card:not([hidden])", timeout=120_000)
        assert page.locator(".progress-step.done").count() == 2  # each step's progress was seen through
        assert page.locator("#queue").inner_text() == "done"
        command = page.locator("#command").inner_text()
        from dreamkit_web.settings import samples

        coffee = samples()["coffee.png"]  # a command that works as it is: the sample's real path
        assert command == f"dreamkit run {coffee} -e resize:max_side=480 -e adjust:saturation=1.6 -o out/"
        wait_until(page, "document.getElementById('after').complete && document.getElementById('after').naturalWidth > 0")
        page.locator("#slider").fill("30")
        page.evaluate("window.scrollTo(0, 0)")
        for folder in shots:
            page.screenshot(path=str(folder / "web-laptop.png"))
        with page.expect_download() as info:
            page.click("#download")
        download = info.value
        saved = tmp_path / download.suggested_filename
        download.save_as(saved)
        recipe = read_metadata(saved)["dreamkit-recipe"]
        assert [s["effect"] for s in recipe["pipeline"]["steps"]] == ["resize", "adjust"]
        assert recipe["pipeline"]["steps"][0]["params"]["max_side"] == 480
        assert recipe["pipeline"]["steps"][1]["params"]["saturation"] == 1.6
        # drop the PNG's recipe back in: the pipeline is restored from it
        page.get_by_label("remove resize").click()
        assert page.locator(".step").count() == 1
        page.set_input_files("#recipe-file", str(saved))
        wait_until(page, "document.querySelectorAll('.step').length === 2")
        assert page.locator(".step").nth(1).locator("input[name=saturation]").input_value() == "1.6"
        # a phone
        page.set_viewport_size({"width": 390, "height": 844})
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(200)
        for folder in shots:
            page.screenshot(path=str(folder / "web-phone.png"), full_page=False)
        assert not errors, errors
        browser.close()
    assert json.loads(json.dumps(recipe))  # the recipe is plain data


def test_style_with_a_style_image_picked_on_the_page(page_url, tmp_path, samples):
    """The page uploads a file parameter's file with the job; the server never sees a path."""
    from dreamkit.io import read_metadata

    style_image = tmp_path / "my-painting.png"
    style_image.write_bytes((samples / "gravel.png").read_bytes())
    with opened_page(page_url) as (browser, page, errors):
        page.click(".sample[title='coffee.png']")
        for effect in ("resize", "style"):
            page.select_option("#add-effect", effect)
            page.click("#add-button")
        page.evaluate("document.querySelectorAll('.step details').forEach((d) => { d.open = true; })")
        resize, style = page.locator(".step").nth(0), page.locator(".step").nth(1)
        resize.locator("input[name=max_side]").fill("64")
        resize.locator("input[name=max_side]").dispatch_event("change")
        for name, value in (("iterations", "3"), ("scales", "1")):
            style.locator(f"input[name={name}]").fill(value)
            style.locator(f"input[name={name}]").dispatch_event("change")
        style.locator("input[type=file][name=style]").set_input_files(str(style_image))
        saved = run_and_download(page, tmp_path)
        browser.close()
    recipe = read_metadata(saved)["dreamkit-recipe"]
    (resource,) = recipe["resources"]
    assert resource["name"] == "my-painting.png" and resource["param"] == "style"
    assert not errors, errors


def test_presets_sliders_advanced_and_a_random_seed(page_url):
    """The form the effect's declaration makes: its presets set their values, a ranged number has a
    slider that moves its box, advanced parameters are folded away, the seed button draws a seed."""
    with opened_page(page_url) as (browser, page, errors):
        page.select_option("#add-effect", "deepdream")
        page.click("#add-button")
        step = page.locator(".step").nth(0)
        assert step.locator("details.advanced").get_attribute("open") is None  # folded
        assert not step.locator("input[name=memory_mb]").is_visible() and step.locator("input[name=steps]").is_visible()
        step.locator("select[name=preset]").select_option("deep")
        step = page.locator(".step").nth(0)  # the step is drawn again with the preset's values
        assert step.locator("input[name=octaves]").input_value() == "5"
        assert step.locator("input[name=steps]").input_value() == "20"
        step.locator("input[name=octaves-slider]").fill("7")  # the slider moves the box and the value
        assert step.locator("input[name=octaves]").input_value() == "7"
        config = page.evaluate("pipelineConfig()")
        assert config["steps"][0]["params"]["octaves"] == 7 and config["steps"][0]["params"]["step_size"] == 0.008
        step.locator("details.advanced > summary").click()
        assert step.locator("input[name=memory_mb]").is_visible()
        page.click("#random-seed")
        assert int(page.locator("#seed").input_value()) > 0
        browser.close()
    assert not errors, errors


def test_the_dream_shows_as_it_forms(page_url):
    """Before the result arrives the "after" pane shows the effect's previews (the dream so far)."""
    with opened_page(page_url) as (browser, page, errors):
        page.click(".sample[title='coffee.png']")
        page.select_option("#add-effect", "deepdream")
        page.click("#add-button")
        step = page.locator(".step").nth(0)
        for name, value in (("octaves", "3"), ("steps", "12")):
            step.locator(f"input[name={name}]").fill(value)
            step.locator(f"input[name={name}]").dispatch_event("change")
        page.click("#run")
        wait_until(page, "document.querySelector('.tag-after').textContent.startsWith('preview')", timeout=120)
        assert page.locator("#result-card").is_hidden()  # a preview, not the result
        wait_until(page, "document.getElementById('after').src.includes('/previews/')")
        page.wait_for_selector("#result-card:not([hidden])", timeout=120_000)
        assert page.locator(".tag-after").inner_text() == "after" and "/files/" in page.locator("#after").get_attribute("src")
        browser.close()
    assert not errors, errors


def test_the_pipeline_survives_a_reload(page_url, tmp_path, samples):
    """Steps, values, preset, seed and the chosen sample come back after a reload; an uploaded
    file cannot (the page says to pick it again)."""
    style_image = tmp_path / "mine.png"
    style_image.write_bytes((samples / "gravel.png").read_bytes())
    with opened_page(page_url) as (browser, page, errors):
        resize, style = build(page, "chelsea.png", "resize", "style")
        set_value(resize, "max_side", 200)
        style.locator("select[name=preset]").select_option("faithful")
        page.locator(".step").nth(1).locator("input[type=file][name=style]").set_input_files(str(style_image))
        page.fill("#seed", "42")
        page.dispatch_event("#seed", "change")
        page.reload()
        page.wait_for_selector(".step")
        assert page.locator(".step-name").all_inner_texts() == ["1. resize", "2. style"]
        assert page.locator(".step").nth(0).locator("input[name=max_side]").input_value() == "200"
        style = page.locator(".step").nth(1)
        assert style.locator("select[name=preset]").input_value() == "faithful"
        assert style.locator("input[name=content_weight]").input_value() == "5"
        assert page.locator("#seed").input_value() == "42"
        assert "chosen" in page.locator(".sample[title='chelsea.png']").get_attribute("class")
        assert "pick its files again" in page.locator("#banner").inner_text()
        browser.close()
    assert not errors, errors


def test_a_failed_run_says_where_and_leaves_no_old_result(page_url):
    """A run that fails marks its step failed, clears the earlier result from "after", and shows
    the error beside the step and the parameter it names; a refused submission too."""
    with opened_page(page_url) as (browser, page, errors):
        page.click(".sample[title='coffee.png']")
        page.select_option("#add-effect", "resize")
        page.click("#add-button")
        page.locator(".step").nth(0).locator("input[name=max_side]").fill("64")
        page.locator(".step").nth(0).locator("input[name=max_side]").dispatch_event("change")
        page.click("#run")
        page.wait_for_selector("#result-card:not([hidden])", timeout=120_000)
        assert page.locator("#after").get_attribute("src")  # a result in view
        page.select_option("#add-effect", "deepdream")
        page.click("#add-button")
        dream = page.locator(".step").nth(1)
        dream.locator("details.advanced > summary").click()
        dream.locator("input[name=layers]").fill("features.99")
        dream.locator("input[name=layers]").dispatch_event("change")
        page.click("#run")
        page.wait_for_selector(".progress-step.failed", timeout=120_000)
        assert page.locator("#after").get_attribute("src") is None  # the old result is not shown as this run's
        assert page.locator(".progress-step").nth(1).get_attribute("class") == "progress-step failed"
        note = page.locator(".step").nth(1).locator(".step-error")
        assert "has no layer 'features.99'" in note.inner_text()
        assert "invalid" in page.locator(".step").nth(1).locator("label.param", has=page.locator("input[name=layers]")).get_attribute("class")
        # refused before it runs: the step says so too
        page.locator(".step").nth(1).locator("input[name=steps]").fill("0")
        page.locator(".step").nth(1).locator("input[name=steps]").dispatch_event("change")
        page.click("#run")
        wait_until(page, "document.querySelector('.step-error') && document.querySelector('.step-error').textContent.includes(\"'steps'\")")
        assert page.locator(".step").nth(1).locator(".step-error").is_visible()
        browser.close()
    assert not errors, errors


@pytest.mark.parametrize("size", [(1366, 850), (390, 844)], ids=["laptop", "phone"])
def test_the_work_stays_in_view(page_url, size, tmp_path):
    """With a long pipeline the Run bar stays on screen while the pipeline is edited, and after
    Run the viewer is in view without scrolling (laptop: beside the form; phone: brought up)."""
    with opened_page(page_url) as (browser, page, errors):
        page.set_viewport_size({"width": size[0], "height": size[1]})
        page.click(".sample[title='coffee.png']")
        for effect in ("resize", "deepdream", "style", "adjust"):
            page.select_option("#add-effect", effect)
            page.click("#add-button")
        page.locator(".step").nth(0).locator("input[name=max_side]").fill("128")
        page.locator(".step").nth(0).locator("input[name=max_side]").dispatch_event("change")
        for details in page.locator("details.advanced > summary").all():
            details.click()  # every form open: a very long page
        last = page.locator(".step").nth(3)
        last.scroll_into_view_if_needed()

        def in_view(selector):
            box = page.locator(selector).bounding_box()
            return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= size[1] + 1

        assert in_view("#run")  # the Run bar at the bottom of the window
        page.locator(".step").nth(1).locator("button[aria-label='remove deepdream']").click()
        page.locator(".step").nth(1).locator("button[aria-label='remove style']").click()
        page.click("#run")
        page.wait_for_selector("#result-card:not([hidden])", timeout=120_000)
        box = page.locator("#viewer").bounding_box()
        assert box["y"] < size[1] and box["y"] + box["height"] > 0, box  # the viewer is on screen
        assert box["y"] >= -1 and box["y"] + min(box["height"], 200) <= size[1]  # and its top part whole
        page.screenshot(path=str(tmp_path / f"in-view-{size[0]}.png"))
        browser.close()
    assert not errors, errors


def test_image_parameters_take_files_or_samples_and_show_them(page_url, tmp_path, samples):
    """A style image by picker (two files: two thumbnails) or a sample by name (its thumbnail);
    the run uses the sample and the recipe names it."""
    from dreamkit.io import read_metadata

    first, second = two_pictures(samples, tmp_path)
    with opened_page(page_url) as (browser, page, errors):
        resize, style = build(page, "coffee.png", "resize", "style")
        set_value(resize, "max_side", 64)
        style.locator("input[type=file][name=style]").set_input_files([str(first), str(second)])
        assert style.locator("img.thumb").count() == 2
        assert style.locator("img.thumb").nth(1).get_attribute("title") == "b.png"
        style.locator("select[name=style-choice]").select_option("sample:rocket.jpg")
        assert style.locator("img.thumb").count() == 1 and style.locator("img.thumb").get_attribute("title") == "rocket.jpg"
        wait_until(page, "document.querySelector('img.thumb').naturalWidth > 0")  # the sample's picture arrived
        set_value(style, "iterations", 3)
        saved = run_and_download(page, tmp_path)
        browser.close()
    (resource,) = read_metadata(saved)["dreamkit-recipe"]["resources"]
    assert resource["name"] == "rocket.jpg" and resource["param"] == "style"
    assert not errors, errors


def test_a_model_file_picked_on_the_page_shows_its_name_and_runs(dreamkit_host, tmp_path, monkeypatch):
    """A trained style network uploaded by picker: the step names the file, still after the run
    (the card is redrawn then, and a new picker says "no file chosen"), and the run uses it: the
    result's recipe names the model. The models folder's networks are offered beside the picker
    as models, not as samples."""
    from dreamkit.io import read_metadata
    from dreamkit_style.model import save_model
    from tests.plugins.test_fast_style import _model

    monkeypatch.setenv("DREAMKIT_HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "models").mkdir(parents=True)
    save_model(tmp_path / "home" / "models" / "kept.dkstyle", _model())
    save_model(tmp_path / "ink.dkstyle", _model())
    with served(dreamkit_host) as page_url, opened_page(page_url) as (browser, page, errors):
        (step,) = build(page, "coffee.png", "fast_style")
        offered = step.locator("select[name=model-choice] option").all_inner_texts()
        assert offered == ["(or a model)", "model: kept.dkstyle"]
        assert step.locator(".file-name").count() == 0
        step.locator("input[type=file][name=model]").set_input_files(str(tmp_path / "ink.dkstyle"))
        assert step.locator(".file-name").inner_text() == "ink.dkstyle"
        saved = run_and_download(page, tmp_path)
        assert page.locator(".step").nth(0).locator(".file-name").inner_text() == "ink.dkstyle"
        browser.close()
    (resource,) = read_metadata(saved)["dreamkit-recipe"]["resources"]
    assert resource["name"] == "ink.dkstyle" and resource["param"] == "model"
    assert not errors, errors


def test_each_style_has_its_blend_weight_beside_its_picture(page_url, tmp_path, samples):
    """style_weights declares per_item_of="style": the page shows one weight box under each style
    thumbnail (not a separate list field), and the run uses them."""
    from dreamkit.io import read_metadata

    first, second = two_pictures(samples, tmp_path)
    with opened_page(page_url) as (browser, page, errors):
        resize, style = build(page, "coffee.png", "resize", "style")
        set_value(resize, "max_side", 48)
        assert style.locator("input[name=style_weights]").count() == 0  # no raw list field
        style.locator("input[type=file][name=style]").set_input_files([str(first), str(second)])
        weights = style.locator(".thumb-item input.item-value")
        assert weights.count() == 2 and weights.nth(1).get_attribute("aria-label") == "style_weights of b.png"
        assert weights.nth(0).input_value() == "1"
        set_value(style, "style_weights-1", 3)
        set_value(style, "iterations", 2)
        saved = run_and_download(page, tmp_path)
        style.locator("select[name=style-choice]").select_option("sample:rocket.jpg")  # new styles: weights reset
        assert style.locator(".thumb-item input.item-value").count() == 1
        assert page.evaluate("pipelineConfig().steps[1].params.style_weights") is None
        browser.close()
    params = read_metadata(saved)["dreamkit-recipe"]["pipeline"]["steps"][1]["params"]
    assert params["style_weights"] == [1.0, 3.0]
    assert not errors, errors


def test_detections_are_drawn_on_the_result(page_url, tmp_path):
    """Faces found on the astronaut are boxes over the shown image (where the face is), with their
    label; the toggle takes them away and brings them back."""
    with opened_page(page_url) as (browser, page, errors):
        page.click(".sample[title='astronaut.png']")
        for effect in ("resize", "detect"):
            page.select_option("#add-effect", effect)
            page.click("#add-button")
        page.locator(".step").nth(0).locator("input[name=max_side]").fill("256")
        page.locator(".step").nth(0).locator("input[name=max_side]").dispatch_event("change")
        page.click("#run")
        page.wait_for_selector("#result-card:not([hidden])", timeout=120_000)
        wait_until(page, "document.querySelectorAll('#boxes .box').length > 0")
        page.locator("#slider").fill("0")  # all of "after" in view
        image, box = page.locator("#after").bounding_box(), page.locator("#boxes .box").first.bounding_box()
        assert "face" in page.locator("#boxes .box").first.inner_text()
        # the square picture is letterboxed in the viewer; its face is in the upper middle: the box too
        side = min(image["width"], image["height"])
        left, top = image["x"] + (image["width"] - side) / 2, image["y"] + (image["height"] - side) / 2
        centre = ((box["x"] + box["width"] / 2 - left) / side, (box["y"] + box["height"] / 2 - top) / side)
        assert 0.4 < centre[0] < 0.7 and 0.1 < centre[1] < 0.45, centre
        page.screenshot(path=str(tmp_path / "boxes.png"))
        page.uncheck("#show-boxes")
        assert page.locator("#boxes .box").count() == 0
        page.check("#show-boxes")
        assert page.locator("#boxes .box").count() >= 1
        browser.close()
    assert not errors, errors


def test_a_kept_run_reopens_from_the_history(dreamkit_host, tmp_path):
    """With a gallery, a finished run appears in the history; after a reload it reopens with its
    pipeline, seed and result; deleting it takes it away."""
    with served(dreamkit_host, gallery=tmp_path / "gallery") as url:
        with opened_page(url) as (browser, page, errors):
            page.click(".sample[title='rocket.jpg']")
            page.select_option("#add-effect", "adjust")
            page.click("#add-button")
            page.locator("input[name=saturation]").fill("2")
            page.locator("input[name=saturation]").dispatch_event("change")
            page.fill("#seed", "9")
            page.click("#run")
            page.wait_for_selector(".history-item", timeout=120_000)
            page.evaluate("localStorage.clear()")  # the reopened pipeline must come from the history
            page.reload()
            page.wait_for_selector(".history-item")
            assert page.locator(".step").count() == 0
            page.locator(".history-item button", has_text="Open").first.click()
            assert page.locator(".step-name").all_inner_texts() == ["1. adjust"]
            assert page.locator("input[name=saturation]").input_value() == "2"
            assert page.locator("#seed").input_value() == "9"
            assert "chosen" in page.locator(".sample[title='rocket.jpg']").get_attribute("class")
            wait_until(page, "document.getElementById('after').complete && document.getElementById('after').naturalWidth > 0")
            assert "/api/history/" in page.locator("#after").get_attribute("src")
            page.locator(".history-item button", has_text="Delete").first.click()
            wait_until(page, "document.getElementById('history-card').hidden")
            browser.close()
    assert not errors, errors


def test_a_search_shows_the_nearest_images_first(dreamkit_host, samples, tmp_path):
    """retrieve on a folder the server shares: the query's own copy in the collection is the first
    neighbour, shown as a picture with its name and similarity."""
    from dreamkit.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea.png", "rocket.jpg", "astronaut.png"):
        (photos / name).write_bytes((samples / name).read_bytes())
    (photos / "my-coffee.png").write_bytes((samples / "coffee.png").read_bytes())  # the planted neighbour
    assert main(["index", "build", str(photos), "-o", str(tmp_path / "idx"), "-q"]) == 0
    with served(dreamkit_host, folders={"library": tmp_path / "idx"}) as url:
        with opened_page(url) as (browser, page, errors):
            page.click(".sample[title='coffee.png']")
            page.select_option("#add-effect", "retrieve")
            page.click("#add-button")
            page.locator(".step select").first.select_option("folder:library")
            page.click("#run")
            page.wait_for_selector(".neighbour img", timeout=120_000)
            captions = page.locator(".neighbour figcaption").all_inner_texts()
            assert captions[0].startswith("my-coffee.png") and float(captions[0].split("·")[1]) > 0.99, captions
            wait_until(page, "[...document.querySelectorAll('.neighbour img')].every((i) => i.complete && i.naturalWidth > 0)")
            browser.close()
    assert not errors, errors


@pytest.mark.parametrize("size", [(1280, 860), (390, 844)])
def test_the_search_page_finds_the_planted_copy_and_its_duplicates(dreamkit_host, samples, tmp_path, size):
    """The search page: an index the server shares, a query image (a sample), the nearest images
    as pictures with their similarity (the planted copy first, in view after Search at both
    sizes), and the near-duplicate groups (the copy with its original)."""
    from dreamkit.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea.png", "rocket.jpg", "astronaut.png", "coffee.png"):
        (photos / name).write_bytes((samples / name).read_bytes())
    (photos / "my-coffee.png").write_bytes((samples / "coffee.png").read_bytes())  # the planted copy
    assert main(["index", "build", str(photos), "-o", str(tmp_path / "idx"), "-q"]) == 0
    with served(dreamkit_host, indexes={"library": tmp_path / "idx"}) as url:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": size[0], "height": size[1]})
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda message: "Content Security Policy" in message.text and errors.append(message.text))
            page.goto(url)
            page.click("a.page-link[data-page='/search']")  # from the studio, the token kept
            page.wait_for_selector(".sample img")
            assert "library · by content · 5 images" in page.locator("#index option").first.inner_text()
            page.click(".sample[title='coffee.png']")
            page.fill("#k", "3")
            page.click("#search")
            page.wait_for_selector(".hit img", timeout=120_000)
            captions = page.locator(".hit figcaption").all_inner_texts()
            assert len(captions) == 3 and {c.split(" · ")[0] for c in captions[:2]} == {"coffee.png", "my-coffee.png"}, captions
            assert float(captions[0].split(" · ")[1]) > 0.99
            box = page.locator("#hits").bounding_box()
            assert box["y"] < size[1] and box["y"] + min(box["height"], 100) > 0  # the results are in view
            wait_until(page, "[...document.querySelectorAll('.hit img')].every((i) => i.complete && i.naturalWidth > 0)")
            page.click("#dupes")
            page.wait_for_selector(".group")
            groups = [sorted(g.split("\n")) for g in page.locator(".group").all_inner_texts()]
            assert any(" ".join(g).count("coffee.png") == 2 for g in groups), groups
            wait_until(page, "[...document.querySelectorAll('.dupe img')].every((i) => i.complete && i.naturalWidth > 0)")
            name = "web-search-laptop.png" if size[0] > 800 else "web-search-phone.png"
            for folder in [tmp_path] + ([Path(os.environ["DREAMKIT_SCREENSHOTS"])] if os.environ.get("DREAMKIT_SCREENSHOTS") else []):
                page.locator("#hits-card").scroll_into_view_if_needed()
                page.screenshot(path=str(folder / name))
            page.click("a.page-link[data-page='/']")
            page.wait_for_selector(".sample img")  # back in the studio, still with the token
            wait_until(page, "document.querySelectorAll('#add-effect option').length > 0")
            browser.close()
    assert not errors, errors
