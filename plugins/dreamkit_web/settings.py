"""How a server runs (:class:`ServerSettings`), its samples, and the error a request gets
(:class:`ApiError`): what the app and the request readers share."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

#: Largest upload accepted (bytes); the image checks then bound its pixels.
MAX_UPLOAD = 25 * 1024 * 1024
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
#: Bind addresses that mean "every interface".
WILDCARDS = ("0.0.0.0", "::", "")
#: Jobs waiting at most (each one user's click: a few per user is plenty).
MAX_QUEUE = 32
STATIC = Path(__file__).parent / "static"


@dataclass
class ServerSettings:
    """How one server runs: its token, the names it answers to, its device and limits."""

    port: int = 8765
    bind: str = "127.0.0.1"
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    allow_hosts: tuple[str, ...] = ()
    device: str = "auto"
    max_upload: int = MAX_UPLOAD
    max_pixels: int | None = None
    #: Jobs that may wait in the queue; more are refused with 429 (a queued job costs its upload's
    #: bytes on disk, nothing in memory).
    max_queue: int = MAX_QUEUE
    #: Folders the operator shares by name (``dreamkit serve --folder NAME=PATH``): a folder
    #: parameter (retrieve's ``index``) is ``folder:NAME``. Clients see the names, never the paths.
    folders: dict[str, Path] = field(default_factory=dict)
    #: Indexes the operator shares for the search page (``dreamkit serve --index NAME=PATH``), by
    #: name; each is also a folder a retrieve step may name (``folder:NAME``).
    indexes: dict[str, Path] = field(default_factory=dict)
    #: Where finished runs are kept for the page's history (None: no history), and its size cap.
    gallery: Path | None = None
    gallery_mb: int = 500

    def __post_init__(self) -> None:
        self.folders = {**self.folders, **self.indexes}

    def allowed_hosts(self) -> set[str]:
        names = {*LOOPBACK, *self.allow_hosts}
        if self.bind in WILDCARDS:  # every address: this machine's names and addresses as others reach it
            names.update(f"[{name}]" if ":" in name else name for name in machine_addresses())
        else:
            names.add(f"[{self.bind}]" if ":" in self.bind else self.bind)
        return {name.lower() for name in names} | {f"{name}:{self.port}".lower() for name in names}


def machine_addresses() -> list[str]:
    """How other machines may name this one: the address of the interface that routes outwards
    (found without sending anything: a UDP socket's connect only picks the route), the host name,
    its fully qualified name and its addresses; loopback names left out. First: the best guess."""
    import socket

    found: list[str] = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: never reached, only routed
            found.append(probe.getsockname()[0])
    except OSError:
        pass  # no route out: the names below still work on the local network
    hostname = socket.gethostname()
    found += [hostname, socket.getfqdn()]
    try:
        found += [info[4][0] for info in socket.getaddrinfo(hostname, None, type=socket.SOCK_STREAM)]
    except OSError:
        pass
    loopback = {name.strip("[]") for name in LOOPBACK} | {"::1"}
    return [name for name in dict.fromkeys(found)
            if name and name not in loopback and not name.startswith("127.") and name != "0.0.0.0"]


def samples() -> dict[str, Path]:
    """The sample photos the page offers, by name (from scikit-image and matplotlib, if installed)."""
    found: dict[str, Path] = {}
    try:
        import skimage.data

        folder = Path(skimage.data.__file__).parent
        for name in ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg"):
            if (folder / name).is_file():
                found[name] = folder / name
    except ImportError:
        pass
    try:
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        if path.is_file():
            found[path.name] = path
    except ImportError:
        pass
    return found


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
