"""Shared fixtures. Our own suite runs the plugin loader in strict mode: any plugin failure raises."""

from __future__ import annotations

import os

os.environ["DREAMKIT_STRICT_PLUGINS"] = "1"

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]

#: Test modules that start Ray (a local cluster, ``ray start``/``ray stop --force``, Ray Train, or
#: bench scripts that do). Under pytest-xdist they run on one worker, one after another: ``ray stop``
#: stops every cluster on the machine, and ``ray.init()`` joins one that ``ray start`` left.
RAY_MODULES = frozenset({"test_ray.py", "test_faults.py", "test_contract.py", "test_fast_style.py", "test_bench.py"})


def _xdist_scope(nodeid: str) -> str:
    """The unit of work a pytest-xdist worker takes whole: the test's module, or "ray"."""
    module = nodeid.split("::", 1)[0]
    return "ray" if module.rsplit("/", 1)[-1] in RAY_MODULES else module


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Under ``pytest -n N`` (``make test``): each module's tests on one worker (a module-scoped
    fixture is built once), the Ray modules all on one. (pytest-xdist's own ``xdist_group`` marks
    no longer take effect with pytest 9's node ids.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ByModuleRayTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _xdist_scope(nodeid)

    return ByModuleRayTogether(config, log)


def pytest_collection_modifyitems(config, items):
    """In a pytest-xdist worker: the Ray modules first (units are handed out in collection order
    with --no-loadscope-reorder; theirs is the longest, about half the suite's time)."""
    if "PYTEST_XDIST_WORKER" in os.environ:
        items.sort(key=lambda item: _xdist_scope(item.nodeid) != "ray")  # a stable sort


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
