// gram_matrix and gram_mse_loss on the CPU.
//
// G = F Fᵀ is symmetric, so only the lower triangle is computed (about half the flops) and then
// mirrored. Below kSymmetricMinChannels the saving does not pay (measured in bench/ops.py) and one
// batched GEMM is used instead. Independent blocks on separate threads were tried and measured
// no faster than one multi-threaded GEMM: concurrent MKL calls did not overlap here.
//
// syrk: torch's x86 wheels link MKL statically and export its internal `mkl_blas_?syrk` (64-bit
// integers, Fortran conventions) but not the public cblas names. It is looked up at run time and
// checked once on a small product; without it diagonal blocks are plain GEMMs (still correct).
#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <torch/library.h>

#include <mutex>
#include <string>
#include <tuple>

#include "dreamkit_ops.h"

namespace {

constexpr int64_t kSymmetricMinChannels = 192;

using syrk_fn = void (*)(const char* uplo, const char* trans, const int64_t* n, const int64_t* k, const void* alpha,
                         const void* a, const int64_t* lda, const void* beta, void* c, const int64_t* ldc);

struct Syrk {
  syrk_fn single = nullptr, dbl = nullptr;
};

// Row-major lower triangle of out (n x n, row stride ldc) = rows (n x k, row stride k) times its transpose.
// Seen column-major, rows is Aᵀ (k x n) and the row-major lower triangle is the column-major upper one.
template <typename scalar_t>
void call_syrk(syrk_fn fn, const scalar_t* rows, int64_t n, int64_t k, scalar_t* out, int64_t ldc) {
  const scalar_t one = 1, zero = 0;
  fn("U", "T", &n, &k, &one, rows, &k, &zero, out, &ldc);
}

template <typename scalar_t>
bool syrk_works(syrk_fn fn) {
  // A 3 x 2 product checked by hand: a wrong symbol or calling convention is disabled, not used.
  const scalar_t f[6] = {1, 2, 3, 4, 5, 6};
  scalar_t g[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
  call_syrk<scalar_t>(fn, f, 3, 2, g, 3);
  return g[0] == 5 && g[3] == 11 && g[4] == 25 && g[6] == 17 && g[7] == 39 && g[8] == 61;
}

const Syrk& syrk() {
  static Syrk found;
  static std::once_flag once;
  std::call_once(once, [] {
    void* library = dlopen("libtorch_cpu.so", RTLD_LAZY | RTLD_NOLOAD);
    if (library == nullptr) return;
    auto single = reinterpret_cast<syrk_fn>(dlsym(library, "mkl_blas_ssyrk"));
    auto dbl = reinterpret_cast<syrk_fn>(dlsym(library, "mkl_blas_dsyrk"));
    if (single && syrk_works<float>(single)) found.single = single;
    if (dbl && syrk_works<double>(dbl)) found.dbl = dbl;
  });
  return found;
}

constexpr int64_t kRecursionBase = 128;

// Lower triangle (and diagonal) of g = f fᵀ, then mirrored. On one thread a single syrk; with more
// threads MKL's syrk scales poorly, so the triangle is halved recursively: the off-diagonal half
// is one large multi-threaded GEMM, the diagonal halves recurse down to kRecursionBase channels.
template <typename scalar_t>
void lower_triangle(const at::Tensor& f, at::Tensor g, syrk_fn fn, bool single_thread) {
  const int64_t C = f.size(0);
  if (fn != nullptr && single_thread) {
    call_syrk<scalar_t>(fn, f.const_data_ptr<scalar_t>(), C, f.size(1), g.mutable_data_ptr<scalar_t>(), g.stride(0));
    return;
  }
  if (C <= kRecursionBase) {
    at::mm_out(g, f, f.t());
    return;
  }
  const int64_t half = C / 2;
  lower_triangle<scalar_t>(f.narrow(0, 0, half), g.narrow(0, 0, half).narrow(1, 0, half), fn, single_thread);
  at::Tensor lower = g.narrow(0, half, C - half).narrow(1, 0, half);
  at::mm_out(lower, f.narrow(0, half, C - half), f.narrow(0, 0, half).t());
  lower_triangle<scalar_t>(f.narrow(0, half, C - half), g.narrow(0, half, C - half).narrow(1, half, C - half), fn,
                           single_thread);
}

template <typename scalar_t>
at::Tensor gram_symmetric(const at::Tensor& features, syrk_fn fn) {
  const int64_t B = features.size(0), C = features.size(1);
  at::Tensor out = at::empty({B, C, C}, features.options());
  const bool single_thread = at::get_num_threads() == 1;
  for (int64_t b = 0; b < B; ++b) {
    lower_triangle<scalar_t>(features[b], out[b], fn, single_thread);
    scalar_t* g = out[b].mutable_data_ptr<scalar_t>();
    at::parallel_for(0, C, 64, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        for (int64_t j = i + 1; j < C; ++j) g[i * C + j] = g[j * C + i];
    });
  }
  return out;
}

}  // namespace

namespace dreamkit {

std::string gram_cpu_method() {
  const Syrk& s = syrk();
  if (s.single && s.dbl) return "symmetric blocks, MKL syrk";
  return "symmetric blocks, GEMM only (no syrk reachable)";
}


at::Tensor gram_matrix_cpu(const at::Tensor& x, bool normalize) {
  TORCH_CHECK(x.device().is_cpu(), "dreamkit::gram_matrix (CPU kernel): x is on ", x.device());
  const at::Tensor features = gram_features(x);
  const int64_t C = features.size(1), N = features.size(2);
  const bool worth_it = C >= kSymmetricMinChannels && features.size(0) > 0 && N > 0;
  at::Tensor gram;
  if (worth_it && x.scalar_type() == at::kFloat) {
    gram = gram_symmetric<float>(features, syrk().single);
  } else if (worth_it && x.scalar_type() == at::kDouble) {
    gram = gram_symmetric<double>(features, syrk().dbl);
  } else {
    gram = at::bmm(features, features.transpose(1, 2));
  }
  if (normalize && C * N > 0) gram.div_(static_cast<double>(C * N));
  return gram;
}


std::tuple<at::Tensor, at::Tensor> gram_mse_loss_cpu(const at::Tensor& x, const at::Tensor& target, bool normalize) {
  return gram_mse_loss_from_gram(gram_matrix_cpu(x, normalize), target);
}

}  // namespace dreamkit

TORCH_LIBRARY_IMPL(dreamkit, CPU, m) {
  m.impl("gram_matrix", &dreamkit::gram_matrix_cpu);
  m.impl("gram_mse_loss", &dreamkit::gram_mse_loss_cpu);
}
