"""The local web page's server: a FastAPI app over the same Pipeline API and effect listing as
the command line.

Security, as for any local server (Jupyter's model):

* a random token per server, required on every ``/api`` call (``X-Dreamkit-Token`` header;
  ``?token=`` only where a browser cannot set headers: GET of event streams and images);
* security headers on every response (a CSP without inline script, no framing, ``nosniff``,
  ``Referrer-Policy: no-referrer`` so the page's address, which carries the token, never leaks);
* the ``Host`` header must name this server (loopback names, the bound address, ``--allow-host``):
  a page on another site that rebinds its DNS name to 127.0.0.1 is refused;
* ``Origin``, when a browser sends one on a write, must be this server;
* uploads are limited in size and go through the CLI's image checks (formats, decompression-bomb
  guard); the server never opens a path the client names: sample images by name from a fixed
  list, results by job id.

Errors are JSON ``{"error": "..."}`` with the CLI's messages.
"""

from __future__ import annotations

import json
import re
import secrets
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from dreamkit.errors import DreamkitError

from .settings import STATIC, ApiError, ServerSettings, samples


def create_app(settings: ServerSettings | None = None, host: Any = None) -> FastAPI:
    """The FastAPI app (``host``: the plugin host whose effects it offers; default: the CLI's)."""
    from dreamkit.context import resolve_device
    from dreamkit.plugins import get_host

    from .jobs import JobQueues, StepEvents

    settings = settings or ServerSettings()
    host = host or get_host()
    if not any(name == "dreamkit-web-steps" for name in (p.name for p in host.plugins())):
        host.register(StepEvents(), name="dreamkit-web-steps")
    device = resolve_device(settings.device)
    # Removed when the server stops, or else when the app is collected or the process exits (an
    # app used without its lifespan, as by a test client, must not leave its uploads behind).
    scratch = tempfile.TemporaryDirectory(prefix="dreamkit-web-", ignore_cleanup_errors=True)
    workdir = Path(scratch.name)
    (workdir / "uploads").mkdir()  # uploads live here until their job is over
    from .gallery import Gallery

    gallery = Gallery(settings.gallery, settings.gallery_mb * 2**20) if settings.gallery is not None else None
    queues = JobQueues(workdir, host, max_pixels=settings.max_pixels, gallery=gallery)
    sample_paths = samples()
    allowed = settings.allowed_hosts()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        scratch.cleanup()  # results live as long as the server: downloads are the user's

    app = FastAPI(title="dreamkit", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.settings, app.state.queues, app.state.workdir, app.state.scratch = settings, queues, workdir, scratch

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        hostname = (request.headers.get("host") or "").lower()
        if hostname not in allowed:
            return _secured(_error(403, f"Host header {hostname!r} is not allowed: this server answers to "
                               f"{', '.join(sorted(n for n in allowed if n.endswith(f':{settings.port}')))} (start it with --allow-host NAME "
                               "to add a name)"))
        origin = request.headers.get("origin")
        if request.method not in ("GET", "HEAD", "OPTIONS") and origin is not None:
            if origin.lower().removeprefix("http://").removeprefix("https://") not in allowed:
                return _secured(_error(403, f"Origin {origin!r} is not allowed to write to this server"))
        if request.url.path.startswith("/api/"):
            given = request.headers.get("x-dreamkit-token") or ""
            if not given and request.query_params.get("token") is not None:
                if request.method != "GET" or not _TOKEN_IN_QUERY.fullmatch(request.url.path):
                    return _secured(_error(401, "the token goes in the X-Dreamkit-Token header; ?token= is accepted "
                                                "only where a browser cannot send headers (GET of event streams "
                                                "and images)"))
                given = request.query_params["token"]
            if not secrets.compare_digest(given.encode(), settings.token.encode()):
                return _secured(_error(401, "missing or wrong token: open the address `dreamkit serve` printed "
                                            "(it ends in ?token=...)"))
        return _secured(await call_next(request))  # ApiError from a route: api_error below

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Any:
        return _error(exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Any:
        what = "no such page or API call" if exc.status_code == 404 else str(exc.detail)
        return _error(exc.status_code, f"{request.method} {request.url.path}: {what}")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Any:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return _error(400, f"{request.method} {request.url.path}: {problems}")

    @app.get("/")
    async def page() -> Any:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/static/{name}")
    async def static(name: str) -> Any:
        files = {path.name: path for path in STATIC.iterdir() if path.is_file()}
        if name not in files:  # by name from a fixed list: no path from the client is opened
            raise ApiError(404, f"no static file {name!r}")
        return FileResponse(files[name])

    @app.get("/api/effects")
    async def effects() -> Any:
        return host.effect_listing()

    @app.get("/api/samples")
    async def sample_list() -> Any:
        return [{"name": name} for name in sample_paths]

    @app.get("/api/folders")
    async def folder_list() -> Any:
        return [{"name": name} for name in settings.folders]  # names only: paths stay on the server

    @app.get("/api/models")
    async def model_list() -> Any:
        """The trained models in the models folder (``model:NAME`` values of file parameters):
        names, kinds and summaries only, never paths."""
        from dreamkit.weights_file import list_models

        return [{"name": m["name"], "kind": m["kind"], "summary": m["summary"]} for m in list_models() if "error" not in m]

    @app.get("/api/samples/{name}")
    async def sample(name: str) -> Any:
        if name not in sample_paths:
            raise ApiError(404, f"no sample image {name!r}; samples: {', '.join(sample_paths) or '(none installed)'}")
        return FileResponse(sample_paths[name])

    @app.post("/api/jobs")
    async def submit(request: Request) -> Any:
        from .submit import read_submission

        if queues.waiting() >= settings.max_queue:  # before reading the upload
            raise ApiError(429, f"the queue is full ({settings.max_queue} jobs waiting); try again when some have "
                                "finished (the server's limit: dreamkit serve --max-queue N)")
        submission = await read_submission(request, settings, sample_paths, workdir, host)
        job = queues.submit(submission.pipeline, submission.image, submission.source, submission.seed, device,
                            files=submission.files)
        job.folder.mkdir(parents=True, exist_ok=True)
        return JSONResponse({"job": job.id, "position": queues.position(job)}, status_code=201)

    def find(job_id: str) -> Any:
        job = queues.get(job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id!r}")
        return job

    @app.get("/api/jobs/{job_id}")
    async def status(job_id: str) -> Any:
        job = find(job_id)
        return {"job": job.id, "status": job.status, "position": queues.position(job), "error": job.error,
                "result": job.result}

    @app.delete("/api/jobs/{job_id}")
    async def cancel(job_id: str) -> Any:
        job = find(job_id)
        if not job.finished:
            queues.cancel(job)
        return {"job": job.id, "status": job.status, "cancel_requested": job.cancel_requested}

    @app.get("/api/jobs/{job_id}/events")
    async def events(job_id: str) -> Any:
        job = find(job_id)

        async def stream() -> Any:
            seen = 0
            while True:
                fresh = await job.wait(seen, 10.0)
                for event in fresh:
                    yield f"data: {json.dumps(event, default=str)}\n\n"
                seen += len(fresh)
                if any(event["type"] in ("done", "failed", "cancelled") for event in fresh):
                    return  # after the last event itself (a finished status alone may come a moment before it)
                if not fresh:
                    yield ": keep-alive\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    @app.get("/api/jobs/{job_id}/files/{name:path}")
    async def job_file(job_id: str, name: str, download: bool = False) -> Any:
        job = find(job_id)
        names = (job.result or {}).get("files", []) + [n for n in [(job.result or {}).get("animation")] if n]
        if name not in names:  # by name from the job's own list (a sequence's frames are in a sub-folder)
            raise ApiError(404, f"job {job_id} has no file {name!r}")
        return FileResponse(job.folder / name, filename=name.rsplit("/", 1)[-1] if download else None,
                            content_disposition_type="attachment" if download else "inline")

    @app.get("/api/jobs/{job_id}/previews/{number}")
    async def job_preview(job_id: str, number: int) -> Any:
        job = find(job_id)
        if not 0 <= number < len(job.previews):  # by number from the job's own list
            raise ApiError(404, f"job {job_id} has no preview {number} (it has {len(job.previews)})")
        return FileResponse(job.previews[number], headers={"Cache-Control": "no-store"})

    @app.get("/api/jobs/{job_id}/neighbours/{record}/{number}")
    async def neighbour(job_id: str, record: int, number: int) -> Any:
        """A small picture of a retrieve step's neighbour: by the job's own record and the hit's
        number, never a path from the client (the path is the one the index recorded)."""
        from fastapi.responses import Response

        from .pictures import small_picture

        job = find(job_id)
        records = (job.result or {}).get("results", [])
        hits = records[record].get("neighbours", []) if 0 <= record < len(records) else []
        if not 0 <= number < len(hits):
            raise ApiError(404, f"job {job_id} has no neighbour {number} in record {record}")
        try:
            from dreamkit.io import load_image

            picture = small_picture(load_image(hits[number]["path"]), 160)
        except DreamkitError as exc:
            raise ApiError(404, f"neighbour {number} cannot be shown: {exc}") from None
        import io

        buffer = io.BytesIO()
        picture.save(buffer, "PNG")
        return Response(buffer.getvalue(), media_type="image/png", headers={"Cache-Control": "no-store"})

    def history() -> Any:
        if gallery is None:
            raise ApiError(404, "this server keeps no history (dreamkit serve --gallery FOLDER turns it on)")
        return gallery

    @app.get("/api/history")
    async def history_list() -> Any:
        return history().entries() if gallery is not None else []

    @app.get("/api/history/{entry}/{name}")
    async def history_file(entry: str, name: str) -> Any:
        path = history().file(entry, name)
        if path is None:  # by the entry's own names: no path from the client is opened
            raise ApiError(404, f"no file {name!r} in history entry {entry!r}")
        return FileResponse(path)

    @app.delete("/api/history/{entry}")
    async def history_delete(entry: str) -> Any:
        if not history().delete(entry):
            raise ApiError(404, f"no history entry {entry!r}")
        return {"deleted": entry}

    @app.get("/search")
    async def search_page() -> Any:
        return FileResponse(STATIC / "search.html", headers={"Cache-Control": "no-store"})

    def shared_index(name: str) -> Path:
        if name not in settings.indexes:  # by name from the operator's list: no path from the client
            shared = ", ".join(settings.indexes) or "(none: start the server with --index NAME=PATH)"
            raise ApiError(404, f"no index {name!r} is shared; shared: {shared}")
        return settings.indexes[name]

    @app.get("/api/indexes")
    def index_list() -> Any:  # plain def: opening indexes reads disk, so it runs in the thread pool
        from .search import index_summaries

        return index_summaries(settings.indexes)

    @app.get("/api/indexes/{name}/dupes")
    def index_dupes(name: str, threshold: float | None = None) -> Any:
        from .search import dupe_groups

        return dupe_groups(name, shared_index(name), threshold)

    @app.get("/api/indexes/{name}/images/{key}")
    def index_image(name: str, key: int) -> Any:
        from fastapi.responses import Response

        from .search import item_picture

        return Response(item_picture(name, shared_index(name), key), media_type="image/png",
                        headers={"Cache-Control": "no-store"})

    @app.post("/api/recipe")
    async def recipe(request: Request) -> Any:
        from .submit import read_recipe_upload

        return await read_recipe_upload(request, settings, host, workdir)

    return app


#: Where ``?token=`` stands in for the header: what a browser fetches by URL (an EventSource, an
#: <img>), never a call that changes anything.
_TOKEN_IN_QUERY = re.compile(
    r"/api/(samples/[^/]+|jobs/[^/]+/events|jobs/[^/]+/files/.+|jobs/[^/]+/previews/\d+|jobs/[^/]+/neighbours/\d+/\d+"
    r"|history/[^/]+/[^/]+|indexes/[^/]+/images/\d+)")

#: On every response: scripts and styles only from this server's files (no inline script, so an
#: injected string cannot run), no framing (clickjacking), no MIME sniffing, and no Referer (the
#: page's address carries the token).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def _secured(response: Any) -> Any:
    response.headers.update(SECURITY_HEADERS)
    return response


def _error(status: int, message: str) -> Any:
    return JSONResponse({"error": message}, status_code=status)

