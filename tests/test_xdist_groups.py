"""`make test` runs two pytest-xdist workers, and every test module that starts Ray must run on the
same one (tests/conftest.py: RAY_MODULES): ``ray stop --force`` stops every cluster on the machine,
and ``ray.init()`` joins one that ``ray start`` left. A new Ray-starting module left off the list
would break another worker's run only now and then; this catches it when it is written."""

import importlib.util
import pathlib
import re

TESTS = pathlib.Path(__file__).resolve().parent


def _ray_modules() -> frozenset[str]:
    # by path: `import conftest` finds whichever conftest.py pytest loaded last (tests/ops has one)
    spec = importlib.util.spec_from_file_location("_root_conftest", TESTS / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RAY_MODULES


RAY_MODULES = _ray_modules()
STARTS_RAY = re.compile(r"\bimport ray\b|\bray\.init\(|engine=[\"']ray[\"']|[\"']--engine[\"'],\s*[\"']ray[\"']|"
                        r"\btrain_on_ray\b|\bRayEngine\b|\bray (start|stop)\b|\"ray\", \"(start|stop)\"")


def test_every_module_that_starts_ray_is_in_the_ray_group():
    starting = {path.name for path in TESTS.rglob("test_*.py")
                if path.name != pathlib.Path(__file__).name and STARTS_RAY.search(path.read_text())}
    assert starting - RAY_MODULES == set(), "add these to RAY_MODULES in tests/conftest.py"
    assert {"test_ray.py", "test_fast_style.py"} <= starting  # the pattern still finds the known ones


def test_the_ray_group_names_existing_modules():
    names = {path.name for path in TESTS.rglob("test_*.py")}
    assert RAY_MODULES <= names
