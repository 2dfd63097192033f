"""The local web page's API (FastAPI's TestClient): listing, runs, progress events, downloads with
their recipe, restoring a recipe, cancelling, and every bad request (the browser test:
tests/test_web_browser.py)."""

from __future__ import annotations

import contextlib
import io
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import pytest
from PIL import Image

pytest.importorskip("fastapi")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx vs httpx2
    from fastapi.testclient import TestClient

from dreamkit.io import read_metadata  # noqa: E402

@pytest.fixture(autouse=True)
def _data_home(tmp_path, monkeypatch):
    """`dreamkit serve` keeps its history under XDG_DATA_HOME by default: a temporary one here."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


TWO_STEPS = {"steps": [{"effect": "resize", "params": {"max_side": 64}},
                       {"effect": "adjust", "params": {"contrast": 1.3, "saturation": 0.5}}]}


@pytest.fixture
def server(dreamkit_host, tmp_path):
    from dreamkit_web.app import ServerSettings, create_app

    settings = ServerSettings(allow_hosts=("testserver",), max_upload=2_000_000, max_pixels=4_000_000)
    app = create_app(settings, host=dreamkit_host)
    client = TestClient(app)
    client.headers["X-Dreamkit-Token"] = settings.token
    client.settings = settings
    client.workdir = app.state.workdir
    return client


def png_bytes(width=48, height=32, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def submit(server, pipeline=TWO_STEPS, **fields):
    data = {"pipeline": json.dumps(pipeline), **{k: v for k, v in fields.items() if k != "files"}}
    return server.post("/api/jobs", data=data, files=fields.get("files"))


def _saved(server, data: bytes):
    path = server.workdir / "fetched.png"
    path.write_bytes(data)
    return path


def events(server, job):
    with server.stream("GET", f"/api/jobs/{job}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        return [json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")]


def test_effect_listing_is_the_cli_listing(server, cli):
    listing = server.get("/api/effects").json()
    code, out, _ = cli("effects", "--json")
    assert listing == json.loads(out)
    resize = {p["name"]: p for p in {e["name"]: e for e in listing}["resize"]["params"]}
    assert resize["interpolation"]["choices"] and resize["max_side"]["optional"] is True


def test_a_two_step_run_with_progress_download_and_recipe(server):
    response = submit(server, sample="coffee.png", seed="7")
    assert response.status_code == 201, response.text
    job = response.json()["job"]
    seen = events(server, job)
    types = [e["type"] for e in seen]
    assert types[0] == "queued" and "started" in types and types[-1] == "done"
    assert [(e["step"], e["effect"]) for e in seen if e["type"] == "step"] == [(0, "resize"), (1, "adjust")]
    result = seen[-1]["result"]
    from dreamkit_web.settings import samples

    coffee = str(samples()["coffee.png"])  # the sample's real path: the command works as it is
    assert result["command"] == (f"dreamkit run {coffee} -e resize:max_side=64 "
                                 "-e adjust:contrast=1.3,saturation=0.5 -o out/ --seed 7")
    download = server.get(f"/api/jobs/{job}/files/{result['download']}", params={"download": "true"})
    assert download.status_code == 200 and "attachment" in download.headers["content-disposition"]
    path = server.workdir / "got.png"
    path.write_bytes(download.content)
    recipe = read_metadata(path)["dreamkit-recipe"]
    assert recipe["pipeline"]["steps"][1]["params"]["contrast"] == 1.3 and recipe["seed"] == 7
    assert recipe["input"]["name"] == "coffee.png"
    with Image.open(path) as image:
        assert max(image.size) == 64
    status = server.get(f"/api/jobs/{job}").json()
    assert status["status"] == "done" and status["position"] == 0


def test_each_job_runs_on_a_thread_that_ends_with_it(server, monkeypatch):
    """A thread that ran torch's parallel regions keeps its OpenMP team while it lives, and libgomp
    then throttles every other thread's parallel regions (a float64 MobileNetV2 pass on the main
    thread ran 4x slower beside a parked worker): each job gets a thread of its own that is gone
    once the job is done, not the queue's long-lived worker."""
    import threading

    from dreamkit_web.jobs import JobQueues

    ran_on = []
    run = JobQueues._run

    def recording(self, job):
        ran_on.append(threading.current_thread())
        run(self, job)

    monkeypatch.setattr(JobQueues, "_run", recording)
    for seed in ("1", "2"):
        job = submit(server, sample="coffee.png", seed=seed).json()["job"]
        assert events(server, job)[-1]["type"] == "done"
    assert len(ran_on) == 2 and ran_on[0] is not ran_on[1]
    for thread in ran_on:
        thread.join(timeout=10)
        assert not thread.is_alive(), thread.name


def test_at_exit_a_running_job_is_cancelled_and_its_thread_waited_for(server, monkeypatch):
    """What the exit hook does (dreamkit_web.jobs._stop_running_jobs): a job still inside its
    effect stops at its next progress update and its thread ends, rather than being cut off
    inside a kernel while the process tears its libraries down."""
    import threading

    from dreamkit_web import jobs

    slow = {"steps": [{"effect": "deepdream", "params": {"octaves": 1, "steps": 500, "weights": "random"}}]}
    job = submit(server, slow, sample="astronaut.png").json()["job"]
    wait_until_running(server, job)
    assert server.get(f"/api/jobs/{job}").json()["status"] == "running"
    runners = [t for t in threading.enumerate() if t.name.endswith("-job")]
    jobs._stop_running_jobs()
    assert server.get(f"/api/jobs/{job}").json()["status"] == "cancelled"
    assert runners and not any(t.is_alive() for t in runners)


def test_the_same_recipe_gives_the_same_pixels_as_the_cli(server, cli, samples, tmp_path):
    job = submit(server, sample="chelsea.png").json()["job"]
    result = events(server, job)[-1]["result"]
    web = np.asarray(Image.open(io.BytesIO(server.get(f"/api/jobs/{job}/files/{result['files'][0]}").content)))
    code, _, err = cli("run", samples / "chelsea.png", "-e", "resize:max_side=64",
                       "-e", "adjust:contrast=1.3,saturation=0.5", "-o", tmp_path / "out")
    assert code == 0, err
    assert np.array_equal(web, np.asarray(Image.open(tmp_path / "out" / "chelsea.png")))


def test_analysis_records_and_frame_sequences(server):
    pipeline = {"steps": [{"effect": "resize", "params": {"max_side": 48}},
                          {"effect": "deepdream", "params": {"frames": 3, "octaves": 1, "steps": 1, "weights": "random"}},
                          {"effect": "classify", "params": {"weights": "random", "top_k": 2}}]}
    job = submit(server, pipeline, sample="coffee.png").json()["job"]
    seen = events(server, job)
    assert seen[-1]["type"] == "done", seen[-1]
    result = seen[-1]["result"]
    # the batch runner's own names: coffee/frame_0001.png ... and coffee.gif, as `dreamkit run` writes
    assert result["animation"] == "coffee.gif" and result["files"] == [f"coffee/frame_{i:04d}.png" for i in (1, 2, 3)]
    assert [r["frame"] for r in result["results"]] == [0, 1, 2] and len(result["results"][0]["predictions"]) == 2
    assert any(e["type"] == "progress" for e in seen)  # deepdream's own bars, as events
    gif = server.get(f"/api/jobs/{job}/files/coffee.gif")
    assert gif.status_code == 200 and Image.open(io.BytesIO(gif.content)).n_frames == 3
    frame = server.get(f"/api/jobs/{job}/files/coffee/frame_0002.png")
    recipe = read_metadata(_saved(server, frame.content))["dreamkit-recipe"]
    assert recipe["frame"] == 1  # the frame index is in the recipe, as in the batch's
    for name in ("coffee%2F..%2F..%2Fjobs.py", "coffee/frame_0009.png"):  # only names on the job's own list
        assert server.get(f"/api/jobs/{job}/files/{name}").status_code == 404


def test_upload_and_restore_a_recipe(server, tmp_path):
    job = submit(server, files={"image": ("mine.png", png_bytes(), "image/png")}).json()["job"]
    result = events(server, job)[-1]["result"]
    assert result["command"].startswith("dreamkit run mine.png ")
    made = server.get(f"/api/jobs/{job}/files/mine.png").content
    restored = server.post("/api/recipe", files={"recipe": ("mine.png", made, "image/png")}).json()
    assert restored["pipeline"] == {"steps": [
        {"effect": "resize", "params": {**_defaults(server, "resize"), "max_side": 64}},
        {"effect": "adjust", "params": {**_defaults(server, "adjust"), "contrast": 1.3, "saturation": 0.5}}]}
    toml = b'[[steps]]\neffect = "resize"\nparams = { scale = 0.5 }\n'
    assert server.post("/api/recipe", files={"recipe": ("r.toml", toml)}).json()["pipeline"]["steps"][0]["effect"] == "resize"
    assert list((server.workdir / "uploads").iterdir()) == []  # uploads are not kept


def _defaults(server, name):
    effect = {e["name"]: e for e in server.get("/api/effects").json()}[name]
    return {p["name"]: p["default"] for p in effect["params"] if p["default"] is not None}


def test_one_queue_per_device_positions_and_cancel(server):
    slow = {"steps": [{"effect": "deepdream", "params": {"octaves": 1, "steps": 200, "weights": "random"}}]}
    first = submit(server, slow, sample="astronaut.png").json()["job"]
    second = submit(server, TWO_STEPS, sample="coffee.png").json()
    assert second["position"] == 1  # waits behind the first on the same device
    deadline = time.monotonic() + 60
    while server.get(f"/api/jobs/{first}").json()["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.delete(f"/api/jobs/{first}").json()["cancel_requested"] is True
    assert events(server, first)[-1]["type"] == "cancelled"
    assert events(server, second["job"])[-1]["type"] == "done"
    third = submit(server, slow, sample="astronaut.png").json()["job"]
    fourth = submit(server, TWO_STEPS, sample="coffee.png").json()["job"]
    server.delete(f"/api/jobs/{fourth}")  # cancelled while waiting: never runs
    assert server.get(f"/api/jobs/{fourth}").json()["status"] == "cancelled"
    server.delete(f"/api/jobs/{third}")
    assert events(server, third)[-1]["type"] == "cancelled"


@pytest.mark.parametrize("case", ["no token", "wrong token", "bad host", "rebinding host", "bad origin",
                                  "oversized upload", "bomb", "not an image", "empty file", "bad extension",
                                  "unknown effect", "bad parameter", "not json", "no image", "two images",
                                  "unknown sample", "traversal sample", "traversal file", "traversal static",
                                  "traversal name", "unknown job", "malformed job", "bad seed", "bad recipe"])
def test_bad_requests(server, case):
    bomb = io.BytesIO()
    Image.new("L", (3000, 3000)).save(bomb, "PNG")  # 9 Mpx > the server's 4 Mpx limit, 30 kB on the wire
    job = submit(server, sample="coffee.png").json()["job"]
    events(server, job)
    before = sorted(p.relative_to(server.workdir) for p in server.workdir.rglob("*"))
    request, status, message = {
        "no token": (lambda: server.get("/api/effects", headers={"X-Dreamkit-Token": ""}), 401, "missing or wrong token"),
        "wrong token": (lambda: server.get("/api/effects", headers={"X-Dreamkit-Token": "guess"}), 401, "wrong token"),
        "bad host": (lambda: server.get("/api/effects", headers={"host": "example.com"}), 403,
                     "Host header 'example.com' is not allowed"),
        "rebinding host": (lambda: server.get("/", headers={"host": "attacker.example:8765"}), 403, "is not allowed"),
        "bad origin": (lambda: submit_with(server, headers={"origin": "http://evil.example"}), 403,
                       "Origin 'http://evil.example' is not allowed"),
        "oversized upload": (lambda: submit(server, files={"image": ("big.png", b"\0" * 2_100_000, "image/png")}), 413,
                             "too large; the limit is 2,000,000 bytes"),
        "bomb": (lambda: submit(server, files={"image": ("bomb.png", bomb.getvalue(), "image/png")}), 400,
                 "bomb.png"),
        "not an image": (lambda: submit(server, files={"image": ("notes.png", b"hello", "image/png")}), 400, "notes.png"),
        "empty file": (lambda: submit(server, files={"image": ("e.png", b"", "image/png")}), 400, "empty file (0 bytes)"),
        "bad extension": (lambda: submit(server, files={"image": ("x.svg", b"<svg/>", "image/svg+xml")}), 400,
                          "x.svg: not an allowed file type (.svg)"),
        "unknown effect": (lambda: submit(server, {"steps": [{"effect": "blurr"}]}, sample="coffee.png"), 400,
                           "unknown effect 'blurr'"),
        "bad parameter": (lambda: submit(server, {"steps": [{"effect": "resize", "params": {"scale": -1}}]},
                                         sample="coffee.png"), 400,
                          "effect 'resize': parameter 'scale' = -1 is not allowed; expected"),
        "not json": (lambda: server.post("/api/jobs", data={"pipeline": "{", "sample": "coffee.png"}), 400,
                     "'pipeline' must be a JSON pipeline config"),
        "no image": (lambda: submit(server), 400, "send exactly one image"),
        "two images": (lambda: submit(server, sample="coffee.png", files={"image": ("a.png", png_bytes(), "image/png")}),
                       400, "send exactly one image"),
        "unknown sample": (lambda: submit(server, sample="nope.png"), 404, "no sample image 'nope.png'"),
        "traversal sample": (lambda: server.get("/api/samples/..%2F..%2Fetc%2Fpasswd"), 404, "no such page"),
        "traversal file": (lambda: server.get(f"/api/jobs/{job}/files/..%2F..%2Fetc%2Fpasswd"), 404, "has no file '../../etc/passwd'"),  # only names on the job's own list
        "traversal static": (lambda: server.get("/static/..%2Fapp.py"), 404, "no such page"),
        "traversal name": (lambda: server.get(f"/api/jobs/{job}/files/..%5Cinput.png"), 404, "has no file"),
        "unknown job": (lambda: server.get("/api/jobs/0123456789abcdef0123456789abcdef"), 404, "no job"),
        "malformed job": (lambda: server.get("/api/jobs/..%2e"), 404, "no job"),
        "bad seed": (lambda: submit(server, sample="coffee.png", seed="-3"), 400, "seed '-3' is not allowed"),
        "bad recipe": (lambda: server.post("/api/recipe", files={"recipe": ("r.json", b'{"steps": [{"effect": "zzz"}]}')}),
                       400, "unknown effect 'zzz'"),
    }[case]
    response = request()
    assert response.status_code == status, response.text
    if message:
        assert message in response.json()["error"]
    assert sorted(p.relative_to(server.workdir) for p in server.workdir.rglob("*")) == before  # nothing written
    assert len(server.app.state.queues.jobs) == 1  # no job was made


def submit_with(server, headers):
    return server.post("/api/jobs", data={"pipeline": json.dumps(TWO_STEPS), "sample": "coffee.png"}, headers=headers)


def test_serve_refuses_bad_options_and_warns_for_other_addresses(cli, monkeypatch):
    code, _, err = cli("serve", "--port", "70000")
    assert code == 2 and "--port 70000 is not allowed" in err
    code, _, err = cli("serve", "--device", "tpu")
    assert code == 2 and "device 'tpu' is not allowed" in err
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    code, _, err = cli("serve", "--host", "0.0.0.0", "--port", "0")
    assert code == 0 and "WARNING: listening on 0.0.0.0, not this machine only" in err
    assert calls[0]["host"] == "0.0.0.0" and calls[0]["port"] > 0 and "?token=" in err
    code, _, err = cli("serve")
    assert code == 0 and "WARNING" not in err and calls[1]["host"] == "127.0.0.1" and calls[1]["port"] == 8765


@pytest.mark.parametrize("spec, message", [
    ("index", "expected NAME=PATH with a plain NAME"),
    ("../up={here}", "expected NAME=PATH with a plain NAME"),
    ("a={here}/missing", "is not a folder"),
    ("a={here}", None),
])
def test_serve_shares_only_folders_it_is_given(cli, monkeypatch, tmp_path, spec, message):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(app))
    code, _, err = cli("serve", "--port", "0", "--folder", spec.format(here=tmp_path))
    if message:
        assert code == 2 and message in err and not calls
        return
    assert code == 0
    code, _, err = cli("serve", "--port", "0", "--folder", f"a={tmp_path}", "--folder", f"a={tmp_path}")
    assert code == 2 and "the name 'a' is given twice" in err


def test_a_shared_folder_is_named_never_shown_and_only_it_is_used(dreamkit_host, tmp_path):
    """retrieve's index on the page: ``folder:NAME`` of a folder the server shares; the listing
    gives names only; another name or a path is refused before anything is opened."""
    from dreamkit.cli import main
    from dreamkit_web.app import ServerSettings, create_app

    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in range(2):
        (photos / f"p{seed}.png").write_bytes(png_bytes(40, 30, seed))
    assert main(["index", "build", str(photos), "-o", str(tmp_path / "idx"), "-q"]) == 0
    settings = ServerSettings(allow_hosts=("testserver",), folders={"library": tmp_path / "idx"})
    client = TestClient(create_app(settings, host=dreamkit_host))
    client.headers["X-Dreamkit-Token"] = settings.token
    listing = client.get("/api/folders")
    assert listing.json() == [{"name": "library"}] and str(tmp_path) not in listing.text

    def retrieve(index):
        return submit(client, {"steps": [{"effect": "retrieve", "params": {"index": index, "k": 2}}]},
                      files={"image": ("p0.png", png_bytes(40, 30, 0), "image/png")})

    response = retrieve("folder:library")
    assert response.status_code == 201, response.text
    done = events(client, response.json()["job"])[-1]
    assert done["type"] == "done", done
    assert done["result"]["results"][0]["effect"] == "retrieve"
    job = response.json()["job"]  # the neighbours as pictures, by the job's record and number
    first = client.get(f"/api/jobs/{job}/neighbours/0/0")
    assert first.status_code == 200 and first.content.startswith(b"\x89PNG")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(first.content))), np.asarray(Image.open(photos / "p0.png")))
    for bad in ("0/2", "1/0", "0/-1"):
        assert client.get(f"/api/jobs/{job}/neighbours/{bad}").status_code == 404, bad
    for other in ("folder:other", str(tmp_path / "idx")):
        response = retrieve(other)
        assert response.status_code == 400 and "allowed: folder:library" in response.json()["error"]


# -- the search page: shared indexes, dupes, their pictures -------------------------------------
@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """A content index and a style index of four random pictures and a copy of one of them."""
    from dreamkit.cli import main

    folder = tmp_path_factory.mktemp("search")
    photos = folder / "photos"
    photos.mkdir()
    for seed in range(4):
        (photos / f"p{seed}.png").write_bytes(png_bytes(64, 48, seed))
    (photos / "copy-of-p1.png").write_bytes(png_bytes(64, 48, 1))
    assert main(["index", "build", str(photos), "-o", str(folder / "content.index"), "-q"]) == 0
    assert main(["index", "build", str(photos), "-o", str(folder / "style.index"), "--by", "style", "-q"]) == 0
    return folder


@pytest.fixture
def searcher(dreamkit_host, library):
    from dreamkit_web.app import ServerSettings, create_app

    settings = ServerSettings(allow_hosts=("testserver",),
                              indexes={"photos": library / "content.index", "looks": library / "style.index"})
    client = TestClient(create_app(settings, host=dreamkit_host))
    client.headers["X-Dreamkit-Token"] = settings.token
    client.settings = settings
    return client


def test_shared_indexes_are_listed_by_name_and_kind(searcher, server, library):
    listing = searcher.get("/api/indexes")
    assert listing.status_code == 200 and str(library) not in listing.text  # names, never paths
    by_name = {entry["name"]: entry for entry in listing.json()}
    assert by_name["photos"]["by"] == "content" and by_name["photos"]["images"] == 5
    assert by_name["photos"]["dupes_threshold"] == pytest.approx(0.6)
    assert by_name["looks"]["by"] == "style" and by_name["looks"]["dupes_threshold"] is None
    assert {entry["name"] for entry in searcher.get("/api/folders").json()} == {"photos", "looks"}  # retrieve steps too
    assert server.get("/api/indexes").json() == []  # a server started without --index shares none
    assert "Content-Security-Policy" in searcher.get("/search").headers and b"search.js" in searcher.get("/search").content


def test_a_search_is_a_retrieve_job_on_a_shared_index(searcher):
    response = submit(searcher, {"steps": [{"effect": "retrieve", "params": {"index": "folder:photos", "k": 3}}]},
                      files={"image": ("query.png", png_bytes(64, 48, 1), "image/png")})
    assert response.status_code == 201, response.text
    done = events(searcher, response.json()["job"])[-1]
    names = [Path(hit["path"]).name for hit in done["result"]["results"][0]["neighbours"]]
    assert sorted(names[:2]) == ["copy-of-p1.png", "p1.png"], names


def test_dupes_groups_the_copy_with_its_original(searcher):
    found = searcher.get("/api/indexes/photos/dupes").json()
    assert found["threshold"] == pytest.approx(0.6) and found["images"] == 5
    groups = [sorted(hit["name"] for hit in group) for group in found["groups"]]
    assert ["copy-of-p1.png", "p1.png"] in groups, groups
    first = found["groups"][0][0]
    picture = searcher.get(f"/api/indexes/photos/images/{first['key']}")
    assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")
    assert Image.open(io.BytesIO(picture.content)).size == (64, 48)
    strict = searcher.get("/api/indexes/photos/dupes?threshold=1.0").json()
    assert all(len(group) >= 2 for group in strict["groups"])  # identical pixels still group at 1.0 (rounding aside)


@pytest.mark.parametrize("path, status, message", [
    ("/api/indexes/nope/dupes", 404, "no index 'nope' is shared; shared: photos, looks"),
    ("/api/indexes/photos/dupes?threshold=2", 400, "threshold 2.0 is not allowed; expected a cosine similarity"),
    ("/api/indexes/photos/dupes?threshold=high", 400, "threshold"),
    ("/api/indexes/looks/dupes", 400, "describes style, not content"),
    ("/api/indexes/photos/images/999999", 404, "index 'photos' has no image 999999"),
    ("/api/indexes/photos/images/abc", 400, "key"),
    ("/api/indexes/nope/images/1", 404, "no index 'nope' is shared"),
])
def test_search_refusals_name_what_is_wrong(searcher, path, status, message):
    response = searcher.get(path)
    assert response.status_code == status and message in response.json()["error"], response.text


def test_only_an_index_picture_takes_the_token_in_its_address(searcher):
    bare = TestClient(searcher.app)
    token = searcher.settings.token
    key = searcher.get("/api/indexes/photos/dupes").json()["groups"][0][0]["key"]
    assert bare.get(f"/api/indexes/photos/images/{key}?token={token}", headers={"host": "testserver"}).status_code == 200
    refused = bare.get(f"/api/indexes/photos/dupes?token={token}", headers={"host": "testserver"})
    assert refused.status_code == 401 and "X-Dreamkit-Token header" in refused.json()["error"]


def test_serve_shares_only_real_indexes(cli, monkeypatch, library, tmp_path):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(app))
    code, _, err = cli("serve", "--port", "0", "--index", f"photos={tmp_path}")
    assert code == 2 and f"--index photos={tmp_path}" in err and "make one with `dreamkit index build" in err
    code, _, err = cli("serve", "--port", "0", "--index", f"a={library / 'content.index'}", "--folder", f"a={tmp_path}")
    assert code == 2 and "the name 'a' is also given to --folder" in err
    assert not calls
    assert cli("serve", "--port", "0", "--index", f"photos={library / 'content.index'}")[0] == 0
    assert calls[0].state.settings.indexes == {"photos": (library / "content.index").resolve()}


# -- file parameters: uploads and samples, never server paths ------------------------------------
STYLE = {"effect": "style", "params": {"iterations": 2, "scales": 1}}


def _style_run(server, style_value, extra_params=None, **fields):
    step = {**STYLE, "params": {**STYLE["params"], "style": [style_value], **(extra_params or {})}}
    return submit(server, {"steps": [{"effect": "resize", "params": {"max_side": 48}}, step]}, **fields)


def test_style_runs_with_an_uploaded_style_image(server):
    from dreamkit_web.settings import samples

    response = _style_run(server, "upload:painting", sample="coffee.png",
                          files={"file:painting": ("painting.png", png_bytes(40, 40, seed=3), "image/png")})
    assert response.status_code == 201, response.text
    seen = events(server, response.json()["job"])
    assert seen[-1]["type"] == "done", seen[-1]
    assert any(e["type"] == "progress" and "values" in e for e in seen)  # the losses reach the page
    (resource,) = seen[-1]["result"]["recipe"]["resources"]
    assert resource["name"] == "painting.png" and resource["param"] == "style" and len(resource["sha256"]) == 64
    command = seen[-1]["result"]["command"]  # names the user's file, never the server's copy of it
    assert "style:style=[painting.png]" in command and "uploads" not in command, command
    assert not any((server.workdir / "uploads").iterdir())  # the upload is gone once the job is done
    # a sample can be a style image too, and the command names it by its real path
    response = _style_run(server, "sample:chelsea.png", sample="coffee.png")
    done = events(server, response.json()["job"])[-1]
    assert done["type"] == "done" and f"style:style=[{samples()['chelsea.png']}]" in done["result"]["command"]


def test_a_running_job_shows_previews_of_its_work(server):
    """The stylisation as it forms: the first offer of each bar is kept at once (later ones at
    most once a second), as a small PNG the page fetches by the job's own number."""
    response = _style_run(server, "sample:chelsea.png", sample="coffee.png")
    job = response.json()["job"]
    seen = events(server, job)
    types = [e["type"] for e in seen]
    assert "preview" in types and types.index("preview") < types.index("done")
    preview = next(e for e in seen if e["type"] == "preview")
    assert preview["desc"] == "style" and max(preview["width"], preview["height"]) <= 320
    image = server.get(f"/api/jobs/{job}/previews/{preview['preview']}")
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    count = types.count("preview")
    missing = server.get(f"/api/jobs/{job}/previews/{count}")
    assert missing.status_code == 404 and f"has no preview {count}" in missing.json()["error"]
    assert TestClient(server.app).get(f"/api/jobs/{job}/previews/0?token={server.settings.token}").status_code == 200


@pytest.mark.parametrize("case", ["absolute path", "relative path", "weights file", "index",
                                  "unknown upload", "pipeline as a string"])
def test_a_path_the_client_names_is_refused_and_never_opened(server, tmp_path, monkeypatch, case):
    import PIL.Image

    import dreamkit.weights

    sentinel = tmp_path / "secret.png"
    sentinel.write_bytes(png_bytes(8, 8))
    opened = []
    real_open, real_sha = PIL.Image.open, dreamkit.weights.sha256_of
    monkeypatch.setattr(PIL.Image, "open", lambda fp, *a, **k: opened.append(str(fp)) or real_open(fp, *a, **k))
    monkeypatch.setattr(dreamkit.weights, "sha256_of", lambda path: opened.append(str(path)) or real_sha(path))
    if case == "pipeline as a string":
        recipe = tmp_path / "recipe.json"
        recipe.write_text(json.dumps({"steps": [{"effect": "adjust"}], "secret": 1}))
        response = submit(server, str(recipe), sample="coffee.png")
        assert response.status_code == 400 and "must be a JSON object" in response.json()["error"]
        return
    params, message = {
        "absolute path": ({"style": [str(sentinel)]}, "names a file on the server"),
        "relative path": ({"style": ["secret.png"]}, "names a file on the server"),
        "weights file": ({"style": ["sample:chelsea.png"], "weights": str(sentinel)}, "names a file on the server"),
        "index": (None, "uses only the folders this server shares; it shares none"),
        "unknown upload": ({"style": ["upload:nothing"]}, "no such upload or sample"),
    }[case]
    if case == "index":
        pipeline = {"steps": [{"effect": "retrieve", "params": {"index": str(tmp_path)}}]}
    else:
        pipeline = {"steps": [{**STYLE, "params": {**STYLE["params"], **params}}]}
    response = submit(server, pipeline, sample="coffee.png")
    assert response.status_code == 400, response.text
    assert message in response.json()["error"] and "effect '" in response.json()["error"]
    assert not any(str(sentinel) in path or "secret" in path for path in opened), opened
    assert not (tmp_path / "out").exists()


def test_old_jobs_are_forgotten_with_their_frame_folders(dreamkit_host, tmp_path):
    import torch

    from dreamkit.pipeline import Pipeline
    from dreamkit_web.jobs import Job, JobQueues

    queues = JobQueues(tmp_path, dreamkit_host, keep=2)
    for number in range(3):
        job = Job(f"{number:032x}", Pipeline([]), tmp_path / "x.png", {"name": "x.png"}, 0, torch.device("cpu"),
                  tmp_path / f"{number:032x}", status="done", created=number)
        (job.folder / "x").mkdir(parents=True)
        (job.folder / "x" / "frame_0001.png").write_bytes(b"png")
        (job.folder / "x.gif").write_bytes(b"gif")
        queues.jobs[job.id] = job
    queues._forget_old()  # called before a job is added: it makes room for one under keep
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{2:032x}"] and list(queues.jobs) == [f"{2:032x}"]


# -- a long-lived server under load -----------------------------------------------------------------
SLOW = {"steps": [{"effect": "deepdream", "params": {"octaves": 1, "steps": 500, "weights": "random"}}]}


def wait_until_running(server, job):
    deadline = time.monotonic() + 60
    while server.get(f"/api/jobs/{job}").json()["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_full_queue_is_refused_with_429_and_queued_jobs_hold_no_pixels(dreamkit_host):
    from dreamkit_web.app import ServerSettings, create_app

    settings = ServerSettings(allow_hosts=("testserver",), max_queue=2)
    client = TestClient(create_app(settings, host=dreamkit_host))
    client.headers["X-Dreamkit-Token"] = settings.token
    running = submit(client, SLOW, sample="astronaut.png").json()["job"]
    wait_until_running(client, running)
    waiting = [submit(client, files={"image": (f"w{i}.png", png_bytes(seed=i), "image/png")}).json()["job"]
               for i in range(2)]
    refused = submit(client, sample="coffee.png")
    assert refused.status_code == 429 and "the queue is full (2 jobs waiting)" in refused.json()["error"]
    assert "--max-queue" in refused.json()["error"]
    queues = client.app.state.queues
    for job_id in waiting:  # waiting jobs keep their upload encoded on disk, not decoded in memory
        job = queues.get(job_id)
        assert isinstance(job.image, Path) and job.image.is_file() and not any(
            isinstance(v, torch.Tensor) for v in vars(job).values())
    client.delete(f"/api/jobs/{waiting[0]}")  # a cancelled job lets go of its upload at once
    assert not queues.get(waiting[0]).image.exists()
    assert submit(client, sample="coffee.png").status_code == 201  # room again
    client.delete(f"/api/jobs/{running}")
    assert events(client, waiting[1])[-1]["type"] == "done"
    assert not queues.get(waiting[1]).image.exists()  # its upload went when it finished


def test_the_server_pixel_limit_is_named_and_a_broken_body_fails_its_job(server):
    big = io.BytesIO()
    Image.new("RGB", (2100, 2000)).save(big, "PNG")  # 4.2 Mpx > this server's 4 Mpx
    response = submit(server, files={"image": ("big.png", big.getvalue(), "image/png")})
    assert response.status_code == 400 and "over the limit of 4,000,000" in response.json()["error"]
    assert "dreamkit serve --max-pixels" in response.json()["error"]
    whole = png_bytes(64, 48)
    cut = submit(server, files={"image": ("cut.png", whole[: len(whole) // 2], "image/png")})  # header fine, body not
    assert cut.status_code == 201
    final = events(server, cut.json()["job"])[-1]
    assert final["type"] == "failed" and final["error"].startswith("cut.png: cannot decode the image")
    assert str(server.workdir) not in final["error"]


def test_many_open_event_streams_do_not_delay_another(dreamkit_host):
    """Event streams wait on the event loop, not in threads: on a real server (uvicorn, one event
    loop, as `dreamkit serve`), a dozen idle streams (a slow job's) do not hold back another."""
    import http.client

    from dreamkit_web.app import ServerSettings, create_app

    settings = ServerSettings(port=free_port())
    port = settings.port
    headers = {"X-Dreamkit-Token": settings.token, "Host": f"127.0.0.1:{port}"}

    def request(method, path, body=None, extra=None):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request(method, path, body=body, headers={**headers, **(extra or {})})
        return connection, connection.getresponse()

    def first_event(job):
        connection, response = request("GET", f"/api/jobs/{job}/events")
        line = next(line for line in response if line.startswith(b"data:"))
        connection.close()
        return json.loads(line[5:])

    with live_server(create_app(settings, host=dreamkit_host), port):
        jobs = []
        for pipeline, sample in ((SLOW, "astronaut.png"), (TWO_STEPS, "coffee.png")):
            form = f"pipeline={json.dumps(pipeline)}&sample={sample}".encode()
            _, response = request("POST", "/api/jobs", form, {"Content-Type": "application/x-www-form-urlencoded"})
            jobs.append(json.loads(response.read())["job"])
        slow, queued = jobs  # the second waits behind the first: its streams hear nothing for a while
        idle = []
        for _ in range(12):  # streams that have read every event so far and now wait
            connection, response = request("GET", f"/api/jobs/{queued}/events")
            response.readline()
            idle.append(connection)
        time.sleep(1.0)
        started = time.monotonic()
        assert first_event(queued)["type"] == "queued" and time.monotonic() - started < 2.0
        request("DELETE", f"/api/jobs/{slow}")
        request("DELETE", f"/api/jobs/{queued}")
        for connection in idle:
            connection.close()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def live_server(app, port):
    """``app`` served by a real uvicorn server (one event loop, as `dreamkit serve`) in a thread."""
    import threading

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_the_working_folder_goes_when_the_server_stops(dreamkit_host):
    from dreamkit_web.app import ServerSettings, create_app

    settings = ServerSettings(allow_hosts=("testserver",))
    app = create_app(settings, host=dreamkit_host)
    with TestClient(app) as client:  # the app's lifespan: started, then shut down
        client.headers["X-Dreamkit-Token"] = settings.token
        assert events(client, submit(client, sample="coffee.png").json()["job"])[-1]["type"] == "done"
        assert any(app.state.workdir.rglob("*.png"))
    assert not app.state.workdir.exists()


def test_an_app_never_started_leaves_no_working_folder(dreamkit_host):
    """An app used without its lifespan (a test client outside ``with``, an embedding host that
    never serves it) removes its working folder when it is collected, not at some later start."""
    import gc

    from dreamkit_web.app import ServerSettings, create_app

    app = create_app(ServerSettings(allow_hosts=("testserver",)), host=dreamkit_host)
    workdir = app.state.workdir
    assert workdir.is_dir()
    del app
    gc.collect()
    assert not workdir.exists()


# -- security headers, the token's places, other machines ---------------------------------------

def test_every_response_carries_the_security_headers(server):
    from dreamkit_web.app import SECURITY_HEADERS

    job = submit(server, sample="coffee.png").json()["job"]
    anonymous = TestClient(server.app)
    responses = [server.get("/"), server.get("/static/app.js"), server.get("/api/effects"), server.get("/api/nothing"),
                 server.get(f"/api/jobs/{job}"), anonymous.get("/api/effects"),  # 401
                 TestClient(server.app, base_url="http://evil.example").get("/")]  # 403: the Host guard
    assert [r.status_code for r in responses] == [200, 200, 200, 404, 200, 401, 403]
    for response in responses:
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value, (response.url, name)
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    page = server.get("/").text  # what the CSP allows is all the page uses: no inline script or handler
    assert "<script>" not in page.replace('<script src="/static/app.js"></script>', "") and " onclick=" not in page


def test_the_token_in_the_address_only_for_event_streams_and_images(server):
    token = server.settings.token
    job = submit(server, sample="coffee.png").json()["job"]
    events(server, job)
    name = server.get(f"/api/jobs/{job}").json()["result"]["files"][0]
    anonymous = TestClient(server.app)
    for url in (f"/api/jobs/{job}/events", f"/api/jobs/{job}/files/{name}", "/api/samples/chelsea.png"):
        assert anonymous.get(f"{url}?token={token}").status_code == 200, url
        assert anonymous.get(f"{url}?token=wrong").status_code == 401, url
    for method, url in (("GET", "/api/effects"), ("GET", f"/api/jobs/{job}"), ("DELETE", f"/api/jobs/{job}"),
                        ("POST", "/api/jobs"), ("POST", f"/api/jobs/{job}/events")):
        response = anonymous.request(method, f"{url}?token={token}")
        assert response.status_code == 401 and "X-Dreamkit-Token header" in response.json()["error"], (method, url)


def test_listening_everywhere_prints_an_address_other_machines_can_use(cli, monkeypatch):
    import uvicorn

    from dreamkit_web import settings as web_settings

    monkeypatch.setattr(web_settings, "machine_addresses", lambda: ["192.168.7.20", "studio"])
    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: apps.append(app))
    code, _, err = cli("serve", "--host", "0.0.0.0", "--port", "8777")
    assert code == 0 and "serving on http://192.168.7.20:8777/?token=" in err
    assert "on this machine: http://127.0.0.1:8777/?token=" in err and "travel unencrypted" in err
    token = err.split("?token=")[1].split()[0]
    for host in ("192.168.7.20:8777", "studio:8777", "127.0.0.1:8777"):  # the Host guard knows these names
        client = TestClient(apps[0], base_url=f"http://{host}")
        assert client.get("/api/effects", headers={"X-Dreamkit-Token": token}).status_code == 200, host
    assert TestClient(apps[0], base_url="http://rebound.example:8777").get("/").status_code == 403


def test_this_machines_addresses_leave_out_loopback():
    from dreamkit_web.settings import machine_addresses

    addresses = machine_addresses()  # may be empty on a machine with no name but localhost and no route
    assert not any(a.startswith("127.") or a in ("localhost", "::1", "0.0.0.0", "") for a in addresses)
    import socket

    hostname = socket.gethostname()
    if hostname != "localhost" and not hostname.startswith("127."):
        assert hostname in addresses


# -- history -------------------------------------------------------------------------------------

@pytest.fixture
def kept(dreamkit_host, tmp_path):
    """A server that keeps its finished runs in tmp_path/gallery (a cap of 1 MiB)."""
    from dreamkit_web.app import ServerSettings, create_app

    settings = ServerSettings(allow_hosts=("testserver",), gallery=tmp_path / "gallery", gallery_mb=1)
    client = TestClient(create_app(settings, host=dreamkit_host))
    client.headers["X-Dreamkit-Token"] = settings.token
    client.settings = settings
    return client


def test_finished_runs_are_kept_and_reopen_with_their_pipeline(kept, samples):
    style = {"effect": "style", "params": {"style": ["sample:chelsea.png", "upload:mine"], "iterations": 2,
                                           "scales": 1}}
    job = submit(kept, {"steps": [TWO_STEPS["steps"][0], style]}, sample="coffee.png",
                 files={"file:mine": ("mine.png", png_bytes(40, 40), "image/png")}).json()["job"]
    done = events(kept, job)[-1]
    assert done["type"] == "done" and done["result"]["history"]
    (entry,) = kept.get("/api/history").json()
    assert entry["id"] == done["result"]["history"] and entry["source"] == "coffee.png" and entry["sample"] == "coffee.png"
    resize, styled = entry["pipeline"]["steps"]
    assert resize == {"effect": "resize", "params": {"max_side": 64}}
    # a sample by name, an upload left out (named under files), no server path handed back
    assert styled["params"] == {"iterations": 2, "scales": 1} and styled["files"] == ["style"]
    assert "/" not in json.dumps(entry["pipeline"]) and entry["command"] == done["result"]["command"]
    for name in ("thumb.png", "input.png", entry["result"]):
        response = kept.get(f"/api/history/{entry['id']}/{name}")
        assert response.status_code == 200 and response.content[:4] == b"\x89PNG", name
    assert max(Image.open(io.BytesIO(kept.get(f"/api/history/{entry['id']}/input.png").content)).size) <= 256
    for bad in ("entry.json", "result.gif", "..%2Fentry.json"):
        assert kept.get(f"/api/history/{entry['id']}/{bad}").status_code == 404, bad
    assert kept.get("/api/history/..%2F..%2Fetc/passwd").status_code == 404
    assert kept.delete(f"/api/history/{entry['id']}").json() == {"deleted": entry["id"]}
    assert kept.get("/api/history").json() == [] and kept.delete(f"/api/history/{entry['id']}").status_code == 404


def test_the_history_keeps_within_its_cap(kept):
    from dreamkit_web.gallery import Gallery

    ids = []
    for seed in range(3):
        job = submit(kept, TWO_STEPS, files={"image": (f"p{seed}.png", png_bytes(400, 300, seed=seed), "image/png")})
        ids.append(events(kept, job.json()["job"])[-1]["result"]["history"])
    listed = [e["id"] for e in kept.get("/api/history").json()]
    assert listed == ids[::-1]  # newest first
    gallery = Gallery(kept.settings.gallery, cap_bytes=1)  # a cap nothing fits: only the newest stays
    gallery.trim()
    assert [e["id"] for e in gallery.entries()] == [ids[-1]]


def test_no_history_unless_asked_and_a_gallery_that_cannot_be_written_is_named(server, cli, tmp_path, monkeypatch):
    assert server.get("/api/history").json() == []
    missing = server.get("/api/history/20260101-000000-" + "0" * 32 + "/thumb.png")
    assert missing.status_code == 404 and "--gallery" in missing.json()["error"]
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    code, _, err = cli("serve", "--gallery", str(blocked / "sub"))
    assert code == 2 and "--gallery" in err and "cannot write there" in err
    code, _, err = cli("serve", "--gallery-mb", "0")
    assert code == 2 and "--gallery-mb" in err
