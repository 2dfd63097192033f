"""`make test` runs two pytest-xdist workers, and every test module that starts Ray must run on the
same one (tests/conftest.py: RAY_MODULES): ``ray stop --force`` stops every cluster on the machine,
and ``ray.init()`` joins one that ``ray start`` left. A new Ray-starting module left off the list
would break another worker's run only now and then; this catches it when it is written."""

import pathlib
import re

import pytest

TESTS = pathlib.Path(__file__).resolve().parent


@pytest.fixture
def ray_modules(request) -> frozenset[str]:
    """tests/conftest.py's RAY_MODULES, from the module pytest loaded (`import conftest` would find
    whichever conftest.py it loaded last: tests/ops has one)."""
    root = str(TESTS / "conftest.py")
    (conftest,) = [p for p in request.config.pluginmanager.get_plugins() if getattr(p, "__file__", None) == root]
    return conftest.RAY_MODULES


STARTS_RAY = re.compile(r"\bimport ray\b|\bray\.init\(|engine=[\"']ray[\"']|[\"']--engine[\"'],\s*[\"']ray[\"']|"
                        r"\btrain_on_ray\b|\bRayEngine\b|\bray (start|stop)\b|\"ray\", \"(start|stop)\"")


def test_every_module_that_starts_ray_is_in_the_ray_group(ray_modules):
    starting = {path.name for path in TESTS.rglob("test_*.py")
                if path.name != pathlib.Path(__file__).name and STARTS_RAY.search(path.read_text())}
    assert starting - ray_modules == set(), "add these to RAY_MODULES in tests/conftest.py"
    assert {"test_ray.py", "test_fast_style.py"} <= starting  # the pattern still finds the known ones


def test_the_ray_group_names_existing_modules(ray_modules):
    names = {path.name for path in TESTS.rglob("test_*.py")}
    assert ray_modules <= names
