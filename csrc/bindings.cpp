// The only pybind11 file: build information for `dreamkit doctor` and the op loader.
// Ops themselves are registered with TORCH_LIBRARY (torch.ops.dreamkit.*), not with pybind11.
#include <pybind11/pybind11.h>
#include <torch/version.h>

#include <string>

#include "dreamkit_ops.h"

#ifdef WITH_CUDA
#include "cuda/runtime_info.h"
#endif

namespace py = pybind11;

namespace {

std::string compiler_version() {
#if defined(__clang__)
  return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  return "gcc " + std::to_string(__GNUC__) + "." + std::to_string(__GNUC_MINOR__) + "." +
         std::to_string(__GNUC_PATCHLEVEL__);
#else
  return "unknown";
#endif
}

py::dict build_info() {
  py::dict info;
  info["torch_version"] = TORCH_VERSION;
  info["compiler"] = compiler_version();
  info["cplusplus"] = static_cast<long>(__cplusplus);
  info["gram_cpu"] = dreamkit::gram_cpu_method();
#ifdef _OPENMP
  info["openmp"] = static_cast<long>(_OPENMP);  // without it at::parallel_for runs on one thread
#else
  info["openmp"] = py::none();
#endif
#ifdef WITH_CUDA
  info["compiled_with_cuda"] = true;
  info["cuda_version"] = dreamkit::cuda::compiled_runtime_version();
#else
  info["compiled_with_cuda"] = false;
  info["cuda_version"] = py::none();
#endif
  return info;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "dreamkit compiled extension: build information (ops live in torch.ops.dreamkit)";
  m.def("build_info", &build_info,
        "Build settings of this extension: torch_version, compiler, cplusplus, openmp, compiled_with_cuda, "
        "cuda_version (CUDART_VERSION as an int, or None).");
#ifdef WITH_CUDA
  m.def("cuda_runtime_version", &dreamkit::cuda::runtime_version,
        "Version of the CUDA runtime loaded now (cudaRuntimeGetVersion), or -1 on error.");
  m.def("cuda_driver_version", &dreamkit::cuda::driver_version,
        "Highest CUDA version the installed driver supports (cudaDriverGetVersion); 0 without a driver.");
#endif
}
