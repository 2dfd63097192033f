"""setup.py's build decisions, and the compiled extension as installed."""

import importlib.util
import sys
import warnings

import pytest
import torch

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def build_script():
    spec = importlib.util.spec_from_file_location("dreamkit_setup", REPO / "setup.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["dreamkit_setup"] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)  # setup() runs only under __main__
        yield module
    finally:
        sys.modules.pop("dreamkit_setup", None)


@pytest.fixture
def toolkit(tmp_path):
    home = tmp_path / "cuda"
    (home / "lib64").mkdir(parents=True)
    (home / "bin").mkdir()
    (home / "lib64" / "libcudart.so").write_text("")
    (home / "bin" / "nvcc").write_text("")
    return str(home)


def test_cpu_only_without_a_toolkit(build_script):
    config = build_script.decide_build({}, None, gpu_visible=True)
    assert not config.with_cuda and config.reason == "no CUDA toolkit found"


def test_use_cuda_0_forces_cpu(build_script, toolkit):
    config = build_script.decide_build({"USE_CUDA": "0", "FORCE_CUDA": "1"}, toolkit, gpu_visible=True)
    assert not config.with_cuda and config.reason == "USE_CUDA=0"


def test_toolkit_without_gpu_builds_cpu_only(build_script, toolkit):
    config = build_script.decide_build({}, toolkit, gpu_visible=False)
    assert not config.with_cuda and "no GPU visible" in config.reason


def test_gpu_visible_builds_cuda_for_that_gpu(build_script, toolkit):
    config = build_script.decide_build({}, toolkit, gpu_visible=True)
    assert config.with_cuda and config.arch_list is None  # torch picks the visible GPU's arch


def test_forced_without_gpu_uses_the_default_arch_list(build_script, toolkit):
    config = build_script.decide_build({"FORCE_CUDA": "1"}, toolkit, gpu_visible=False)
    assert config.with_cuda and config.arch_list == build_script.DEFAULT_CUDA_ARCH_LIST and config.arch_list_is_default
    assert "default" in config.describe()
    config = build_script.decide_build({"FORCE_CUDA": "1", "TORCH_CUDA_ARCH_LIST": "9.0"}, toolkit, gpu_visible=False)
    assert config.arch_list == "9.0" and not config.arch_list_is_default


def test_forced_without_a_toolkit_is_a_clear_error(build_script):
    with pytest.raises(SystemExit, match="FORCE_CUDA=1 but no CUDA toolkit was found"):
        build_script.decide_build({"FORCE_CUDA": "1"}, None, gpu_visible=False)


def test_find_cuda_home_prefers_a_real_toolkit(build_script, toolkit, tmp_path):
    assert build_script.find_cuda_home({"CUDA_HOME": toolkit}, None) == toolkit
    wrapper_dir = tmp_path / "wrapper" / "bin"
    wrapper_dir.mkdir(parents=True)
    (wrapper_dir / "nvcc").write_text("#!/bin/sh\n")  # like /usr/local/bin/nvcc: a script, no libcudart beside it
    found = build_script.find_cuda_home({"CUDA_HOME": str(tmp_path / "wrapper")}, str(wrapper_dir / "nvcc"))
    assert found != str(tmp_path / "wrapper")


def test_sources(build_script):
    cpu = build_script.collect_sources(False)
    assert "csrc/bindings.cpp" in cpu and not any(s.endswith(".cu") for s in cpu)
    assert {"csrc/ops/dream_update.cpp", "csrc/ops/gram.cpp", "csrc/ops/octave_resample.cpp"} <= set(cpu)
    assert any(s.endswith(".cu") for s in build_script.collect_sources(True))


def test_the_extension_is_built_and_loaded():
    """`make test` installs the compiled extension; falling back silently would hide a broken build."""
    from dreamkit import ops

    assert ops.backend() == "compiled", ops.load_error()
    info = ops.build_info()
    import torch

    assert info["torch_version"] == torch.__version__.split("+")[0]
    assert info["cplusplus"] >= 202002
    if sys.platform.startswith("linux"):
        assert info["openmp"], "built without -fopenmp: at::parallel_for would run every CPU kernel on one thread"
    if info["compiled_with_cuda"]:
        assert info["cuda_version"] >= 12000
        if torch.cuda.is_available():  # a driver that runs kernels is at least as new as the toolkit's runtime
            assert info["cuda_driver_version"] >= info["cuda_runtime_version"] > 0
        else:
            assert info["cuda_driver_version"] == 0  # no driver: reported as 0, never a made-up version


def test_a_missing_extension_falls_back_with_one_warning(monkeypatch):
    from dreamkit.ops import _extension

    monkeypatch.setattr(_extension, "_state", {})
    monkeypatch.setitem(sys.modules, "dreamkit._C", None)  # import now raises ImportError
    with pytest.warns(RuntimeWarning, match="dreamkit._C could not be loaded.*pure-PyTorch reference"):
        assert _extension.extension() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _extension.extension() is None  # no second warning
    assert _extension.backend() == "reference" and _extension.build_info() is None
    assert "dreamkit._C" in _extension.load_error()


def test_an_extension_built_for_another_torch_is_refused(monkeypatch):
    from dreamkit.ops import _extension

    assert _extension.torch_mismatch("2.14.1", "2.14.1+cu130") is None
    reason = _extension.torch_mismatch("2.14.1", "2.15.0")
    assert reason == ("dreamkit._C was built against torch 2.14.1 but torch 2.15.0 is running; "
                      "install torch==2.14.1 or rebuild the extension")
    monkeypatch.setattr(_extension, "_state", {})
    monkeypatch.setattr(torch, "__version__", "2.99.0")
    with pytest.warns(RuntimeWarning, match=r"built against torch .* but torch 2.99.0 is running"):
        assert _extension.extension() is None
    assert _extension.backend() == "reference"


def test_the_runtime_torch_requirement_is_the_build_requirement():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    build_torch = [r for r in project["build-system"]["requires"] if r.startswith("torch")]
    runtime_torch = [r for r in project["project"]["dependencies"] if r.startswith("torch==") or r == "torch"]
    assert build_torch == runtime_torch == [f"torch=={torch.__version__.split('+')[0]}"]


def test_setup_py_prints_its_configuration():
    import os
    import subprocess

    done = subprocess.run([sys.executable, "setup.py", "--print-config"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "USE_CUDA": "0"})
    assert done.returncode == 0, done.stderr
    assert "dreamkit build configuration:" in done.stdout and "CUDA sources : no (USE_CUDA=0)" in done.stdout


def test_the_op_list_is_read_from_the_registrations():
    """`dreamkit doctor` lists the ops torch's dispatcher knows; they are exactly the schemas of
    csrc/registration.cpp (adding an op there adds it to the list, with nothing else to edit)."""
    import re

    from dreamkit.ops import _extension

    schemas = re.findall(r'm\.def\(\s*"(\w+)\(', (REPO / "csrc" / "registration.cpp").read_text())
    assert schemas and _extension.registered_ops() == sorted(schemas)
    assert set(_extension.op_kernels()) == set(schemas)
