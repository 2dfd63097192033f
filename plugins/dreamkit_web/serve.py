"""``dreamkit serve``: run the web page's server (uvicorn) on this machine."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from dreamkit.commands import Command, require_positive
from dreamkit.errors import DreamkitError

from .settings import MAX_QUEUE


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    parser.add_argument("--open", action="store_true", help="open the page in the default browser")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="another name the page may be reached by (a Host header to accept); repeatable")
    parser.add_argument("--max-upload-mb", type=int, default=25, metavar="MB", help="largest upload (default 25)")
    parser.add_argument("--max-pixels", type=int, default=None, metavar="N",
                        help="refuse uploads larger than N pixels (default 89,478,485, as dreamkit run)")
    parser.add_argument("--max-queue", type=int, default=MAX_QUEUE, metavar="N",
                        help=f"jobs that may wait; more are refused with 429 (default {MAX_QUEUE})")
    parser.add_argument("--gallery", metavar="FOLDER", default=None,
                        help="keep every finished run here for the page's history (default: "
                             "~/.local/share/dreamkit/gallery; 'none': keep no history)")
    parser.add_argument("--gallery-mb", type=int, default=500, metavar="MB",
                        help="the history's size cap; the oldest runs go first (default 500)")
    parser.add_argument("--folder", action="append", default=[], metavar="NAME=PATH",
                        help="share a folder on this machine under NAME (an index for retrieve); the page "
                             "offers the name, never the path (repeatable)")
    parser.add_argument("--index", action="append", default=[], metavar="NAME=PATH",
                        help="share an index (made by `dreamkit index build`) under NAME for the search page "
                             "and retrieve steps; the page offers the name, never the path (repeatable)")


def run(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        raise DreamkitError("dreamkit serve needs the web extra: pip install 'dreamkit[web]'") from None
    from dreamkit.context import resolve_device

    from .app import create_app
    from .settings import LOOPBACK, WILDCARDS, ServerSettings

    if not 0 <= args.port <= 65535:
        raise DreamkitError(f"--port {args.port} is not allowed; expected 0 to 65535")
    require_positive(args.max_upload_mb, "--max-upload-mb")
    require_positive(args.max_pixels, "--max-pixels")
    require_positive(args.max_queue, "--max-queue")
    require_positive(args.gallery_mb, "--gallery-mb")
    resolve_device(args.device)
    folders, indexes = shared_folders(args.folder), shared_folders(args.index, "--index")
    for name in set(folders) & set(indexes):
        raise DreamkitError(f"--index {name}=...: the name {name!r} is also given to --folder")
    from .search import check_index

    for name, path in indexes.items():
        check_index(name, path)
    port = args.port or _free_port(args.host)
    settings = ServerSettings(port=port, bind=args.host, allow_hosts=tuple(args.allow_host), device=args.device,
                              max_upload=args.max_upload_mb * 1024 * 1024, max_pixels=args.max_pixels,
                              max_queue=args.max_queue, folders=folders, indexes=indexes,
                              gallery=gallery_folder(args.gallery), gallery_mb=args.gallery_mb)
    local = args.host in LOOPBACK or args.host == "::1"
    if not local:
        print(f"dreamkit: WARNING: listening on {args.host}, not this machine only: anyone who can reach this "
              "address and has the token can run models here and read their results. The page is plain HTTP: "
              "the token and every image travel unencrypted, readable by anyone on the network path (use a "
              "network you trust, or put the server behind HTTPS). Use --host 127.0.0.1 unless you mean it.",
              file=sys.stderr)
    url = f"http://{_url_host(args.host)}:{port}/?token={settings.token}"
    print(f"dreamkit: serving on {url}", file=sys.stderr)
    if args.host in WILDCARDS:  # the address above is how other machines reach it; this one can use loopback
        url = f"http://127.0.0.1:{port}/?token={settings.token}"
        print(f"dreamkit: on this machine: {url}", file=sys.stderr)
    print("dreamkit: press Ctrl-C to stop", file=sys.stderr, flush=True)
    app = create_app(settings)
    if args.open:
        import threading
        import webbrowser

        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    uvicorn.run(app, host=args.host, port=port, log_level="warning")
    return 0


def gallery_folder(given: str | None) -> Path | None:
    """The history's folder: as given (made if missing; it must be writable), the default, or
    None for ``none``."""
    from .gallery import default_folder

    if given is not None and given.lower() == "none":
        return None
    folder = Path(given).expanduser() if given is not None else default_folder()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".dreamkit-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise DreamkitError(f"--gallery {folder}: cannot write there ({exc.strerror or exc}); give a writable "
                            "folder or --gallery none") from None
    return folder.resolve()


def shared_folders(specs: list[str], flag: str = "--folder") -> dict[str, Path]:
    """``["NAME=PATH", ...]`` (the values of ``flag``) → ``{NAME: PATH}``; each PATH an existing
    folder, each NAME plain (letters, digits, ``-_.``) and given once."""
    folders: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise DreamkitError(f"{flag} {spec!r} is not allowed; expected NAME=PATH with a plain NAME "
                                "(letters, digits, - _ .)")
        if name in folders:
            raise DreamkitError(f"{flag} {spec!r}: the name {name!r} is given twice")
        if not Path(path).expanduser().is_dir():
            raise DreamkitError(f"{flag} {spec!r}: {path} is not a folder")
        folders[name] = Path(path).expanduser().resolve()
    return folders


def _url_host(bind: str) -> str:
    """The host part of the URL to print: for a wildcard bind, this machine's outward address (what
    another machine types), else the bound address."""
    from .settings import WILDCARDS, machine_addresses

    if bind in WILDCARDS:
        addresses = machine_addresses()
        bind = addresses[0] if addresses else "127.0.0.1"
    return f"[{bind}]" if ":" in bind else bind


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


COMMAND = Command("serve", "a local web page: build a pipeline, run it, compare, download", configure, run)
