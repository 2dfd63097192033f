// jitter on the CPU: one pass, two memcpy per output row (the row wraps once).
// Works for any dtype (it only moves bytes) and keeps channels_last inputs channels_last: in NHWC
// a row of W pixels is W*C contiguous elements, so the same two copies per row apply.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cstring>

#include "dreamkit_ops.h"

namespace {

at::Tensor jitter_cpu(const at::Tensor& x, int64_t shift_y, int64_t shift_x) {
  TORCH_CHECK(x.dim() >= 2, "dreamkit::jitter: x must have at least 2 dims (..., H, W); got ", x.dim(), " dims");
  TORCH_CHECK(x.device().is_cpu(), "dreamkit::jitter (CPU kernel): x is on ", x.device());
  const auto format = dreamkit::kernel_format(x);
  const bool channels_last = format == at::MemoryFormat::ChannelsLast;
  const at::Tensor in = x.contiguous(format);
  at::Tensor out = at::empty(x.sizes(), x.options().memory_format(format));
  if (x.numel() == 0) return out;

  const dreamkit::RowLayout l = dreamkit::row_layout(x, channels_last);
  const int64_t sy = dreamkit::wrap_shift(shift_y, l.height), sx = dreamkit::wrap_shift(shift_x, l.width);
  const int64_t item = static_cast<int64_t>(x.element_size());
  const int64_t row_bytes = l.row_len() * item;
  const int64_t tail_bytes = sx * l.pixel * item;     // the last sx pixels of the source row...
  const int64_t head_bytes = row_bytes - tail_bytes;  // ...wrap to the front
  const char* src = static_cast<const char*>(in.const_data_ptr());
  char* dst = static_cast<char*>(out.mutable_data_ptr());
  const int64_t grain = std::max<int64_t>(1, (64 * 1024) / std::max<int64_t>(row_bytes, 1));

  at::parallel_for(0, l.rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t source_row = l.row_in_plane(r, (r % l.height - sy + l.height) % l.height);
      const char* s = src + source_row * row_bytes;
      char* d = dst + r * row_bytes;
      std::memcpy(d + tail_bytes, s, static_cast<size_t>(head_bytes));
      if (tail_bytes) std::memcpy(d, s + head_bytes, static_cast<size_t>(tail_bytes));
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dreamkit, CPU, m) { m.impl("jitter", &jitter_cpu); }
