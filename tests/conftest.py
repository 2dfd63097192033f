"""Shared fixtures. Our own suite runs the plugin loader in strict mode: any plugin failure raises."""

from __future__ import annotations

import os

os.environ["DREAMKIT_STRICT_PLUGINS"] = "1"

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def fresh_memo(tmp_path_factory):
    """Measurements remembered between runs (dreamkit.memo) start empty in every test session, so
    the suite exercises the measuring code instead of reading the developer's remembered values."""
    from dreamkit import memo

    folder = tmp_path_factory.mktemp("memo")
    original = memo.table_path
    memo.table_path = lambda table: folder / f"{table}.json"
    yield folder
    memo.table_path = original


@pytest.fixture(scope="session")
def samples() -> pathlib.Path:
    """scikit-image's sample photos (chelsea.png, coffee.png, astronaut.png, ...)."""
    import skimage.data

    return pathlib.Path(skimage.data.__file__).parent


@pytest.fixture
def cli(dreamkit_host, capsys):
    """Run ``dreamkit ARGS...`` in-process on the test's plugin host; returns (code, stdout, stderr)."""
    from dreamkit.cli import main

    def run(*args: str):
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def weights_home(tmp_path, monkeypatch) -> pathlib.Path:
    """An empty DREAMKIT_HOME, offline."""
    home = tmp_path / "dkhome"
    monkeypatch.setenv("DREAMKIT_HOME", str(home))
    monkeypatch.setenv("DREAMKIT_OFFLINE", "1")
    return home
