"""Build the C++/CUDA extension ``dreamkit._C``; everything else is in pyproject.toml.

Build settings, read from the environment:

* ``USE_CUDA=0``     build the CPU sources only, even where CUDA would work.
* ``FORCE_CUDA=1``   build the CUDA sources although no GPU is visible (CI proves they compile).
* ``CUDA_HOME``      the CUDA toolkit folder (the one holding ``lib64/libcudart.so``). When unset we
                     look next to ``nvcc`` and in /usr/local/cuda; torch's own guess can point at
                     the folder of an ``nvcc`` wrapper script and then fails to link.
* ``TORCH_CUDA_ARCH_LIST``  GPU architectures. When CUDA is built without a visible GPU and this is
                     unset we use DEFAULT_CUDA_ARCH_LIST instead of letting torch crash.

The CUDA sources are built when a toolkit is found and either a GPU is visible or FORCE_CUDA=1,
unless USE_CUDA=0. The chosen configuration is printed at the start of every build.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
from dataclasses import dataclass, field

# Turing to Hopper as machine code, plus PTX that newer GPUs (Blackwell) JIT-compile at load.
DEFAULT_CUDA_ARCH_LIST = "7.5;8.0;8.6;8.9;9.0+PTX"

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = "csrc"


@dataclass
class BuildConfig:
    """What setup.py will build, and why."""

    with_cuda: bool
    reason: str
    cuda_home: str | None = None
    arch_list: str | None = None
    arch_list_is_default: bool = False
    sources: list[str] = field(default_factory=list)

    def describe(self) -> str:
        lines = [
            "dreamkit build configuration:",
            f"  CUDA sources : {'yes' if self.with_cuda else 'no'} ({self.reason})",
            f"  CUDA_HOME    : {self.cuda_home or '-'}",
            f"  arch list    : {self.arch_list or '-'}"
            + (" (default: no GPU visible, TORCH_CUDA_ARCH_LIST unset)" if self.arch_list_is_default else ""),
            f"  sources      : {len(self.sources)} files",
        ]
        return "\n".join(lines)


def _is_cuda_toolkit(folder: str | None) -> bool:
    return bool(folder) and any(
        os.path.exists(os.path.join(folder, sub, "libcudart.so"))
        for sub in ("lib64", "lib", "targets/x86_64-linux/lib", "targets/sbsa-linux/lib")
    )


def find_cuda_home(env: dict[str, str], nvcc: str | None) -> str | None:
    """Return the CUDA toolkit folder, or None when there is no usable toolkit."""
    candidates = [env.get("CUDA_HOME"), env.get("CUDA_PATH")]
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates += ["/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"), reverse=True)]
    for folder in candidates:
        if _is_cuda_toolkit(folder) and os.path.exists(os.path.join(folder, "bin", "nvcc")):
            return folder
    return None


def decide_build(env: dict[str, str], cuda_home: str | None, gpu_visible: bool) -> BuildConfig:
    """Decide whether to build the CUDA sources (pure logic, unit-tested in tests/test_build.py)."""
    if env.get("USE_CUDA", "").strip() == "0":
        return BuildConfig(False, "USE_CUDA=0")
    forced = env.get("FORCE_CUDA", "").strip() == "1"
    if cuda_home is None:
        if forced:
            raise SystemExit(
                "FORCE_CUDA=1 but no CUDA toolkit was found: set CUDA_HOME to the folder that holds "
                "lib64/libcudart.so and bin/nvcc"
            )
        return BuildConfig(False, "no CUDA toolkit found")
    if not (gpu_visible or forced):
        return BuildConfig(False, "no GPU visible and FORCE_CUDA is not 1", cuda_home=cuda_home)
    reason = "GPU visible" if gpu_visible else "FORCE_CUDA=1"
    arch = env.get("TORCH_CUDA_ARCH_LIST") or None
    is_default = False
    if arch is None and not gpu_visible:
        arch, is_default = DEFAULT_CUDA_ARCH_LIST, True
    return BuildConfig(True, reason, cuda_home=cuda_home, arch_list=arch, arch_list_is_default=is_default)


def collect_sources(with_cuda: bool) -> list[str]:
    """CPU sources always; CUDA host glue and kernels only for a CUDA build."""
    sources = sorted(glob.glob(os.path.join(CSRC, "*.cpp"))) + sorted(glob.glob(os.path.join(CSRC, "ops", "*.cpp")))
    sources += sorted(glob.glob(os.path.join(CSRC, "cpu", "*.cpp")))
    if with_cuda:
        sources += sorted(glob.glob(os.path.join(CSRC, "cuda", "*.cpp")))
        sources += sorted(glob.glob(os.path.join(CSRC, "cuda", "*.cu")))
    return sources


def _gpu_visible() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # a broken driver must not break a CPU build
        return False


def current_config() -> BuildConfig:
    """The configuration this environment gives."""
    env = dict(os.environ)
    config = decide_build(env, find_cuda_home(env, shutil.which("nvcc")), _gpu_visible())
    config.sources = collect_sources(config.with_cuda)
    return config


def main() -> None:
    if sys.argv[1:] == ["--print-config"]:  # pip hides build output: the Makefile prints it this way
        print(current_config().describe())
        return
    from setuptools import setup

    config = current_config()
    if config.cuda_home:
        # torch.utils.cpp_extension reads CUDA_HOME when it is imported.
        os.environ["CUDA_HOME"] = config.cuda_home
    if config.arch_list:
        os.environ["TORCH_CUDA_ARCH_LIST"] = config.arch_list
    print(config.describe(), file=sys.stderr, flush=True)

    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    # ATen's parallel_for is inlined into our code as an OpenMP region: without -fopenmp the pragma
    # is ignored and every CPU kernel silently runs on one thread.
    openmp = ["-fopenmp"] if sys.platform.startswith("linux") else []
    # -g0: Python's own CFLAGS add -g, and debug info for torch's headers made every file compile 2.5x
    # slower (csrc/cpu/gram.cpp: 46 s with it, 19 s without, on 2 cores); the code is the same.
    extra = {"cxx": ["-O3", "-std=c++20", "-fvisibility=hidden", "-g0", *openmp]}
    define_macros = []
    extension_class = CppExtension
    if config.with_cuda:
        extension_class = CUDAExtension
        extra["nvcc"] = ["-O3", "-std=c++20", "--expt-relaxed-constexpr"]
        define_macros.append(("WITH_CUDA", None))
    ext = extension_class(
        name="dreamkit._C",
        sources=config.sources,
        include_dirs=[os.path.join(HERE, CSRC)],
        define_macros=define_macros,
        extra_compile_args=extra,
        extra_link_args=openmp,
    )
    setup(ext_modules=[ext], cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)})


if __name__ == "__main__":
    main()
