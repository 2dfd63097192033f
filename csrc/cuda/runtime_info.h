// CUDA runtime facts for `dreamkit doctor`; implemented in runtime_info.cu (cuda_runtime.h only).
#pragma once

namespace dreamkit::cuda {

int compiled_runtime_version();  // CUDART_VERSION this extension was compiled against
int runtime_version();           // cudaRuntimeGetVersion, -1 on error
int driver_version();            // cudaDriverGetVersion, 0 when no driver is installed

}  // namespace dreamkit::cuda
