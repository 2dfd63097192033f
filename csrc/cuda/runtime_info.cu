// Kept to <cuda_runtime.h> only: a .cu that includes torch headers takes minutes to compile.
#include <cuda_runtime.h>

#include "runtime_info.h"

namespace dreamkit::cuda {

int compiled_runtime_version() { return CUDART_VERSION; }

int runtime_version() {
  int version = -1;
  if (cudaRuntimeGetVersion(&version) != cudaSuccess) return -1;
  return version;
}

int driver_version() {
  int version = 0;
  if (cudaDriverGetVersion(&version) != cudaSuccess) return 0;
  return version;
}

}  // namespace dreamkit::cuda
