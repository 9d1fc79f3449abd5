// Kernel gradient of a depthwise convolution on the CPU, as an XLA FFI custom call (stride s,
// NHWC, float32), computing the same per-row partial sums as XLA:CPU does for the pure-JAX
// version (`train_jax.models.layers._depthwise_kernel_grad_rows_xla`), bit for bit:
//
//   rows[di, dj, i, c] = sum_{b, j} xp[b, s*i + di, s*j + dj, c] * g[b, i, j, c]
//
// xp: [B, Hp, Wp, C], the zero-padded input; g: [B, Ho, Wo, C]; rows: [k * k * Ho * C]. The caller
// sums `rows` over i with the same XLA reduce as the pure-JAX path.
//
// Bit-identity: for each output element XLA:CPU accumulates over b (outer) then j (inner),
// starting from 0, one fused multiply-add per term; this kernel does the same, in the same order
// (`std::fma`). Threads own disjoint output rows i, so the order does not depend on the thread
// count. `train_jax.models.kernels` checks the identity on each machine before it uses the kernel.
//
// Speed: each gradient vector g[b, i, j, :] is loaded once and multiplied into the k*k accumulator
// rows of output row i; the innermost loop runs over the contiguous channel axis and vectorises.
// XLA:CPU's lowering of the same reduction vectorises poorly and was the largest cost of an
// EfficientNet training step (docs/performance.md).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

void AccumulateRows(const float* xp, const float* g, float* rows, int64_t i0, int64_t i1,
                    int64_t batch, int64_t hp, int64_t wp, int64_t c, int64_t ho, int64_t wo,
                    int64_t s, int64_t k) {
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t i = i0; i < i1; ++i) {
      const float* g_row = g + (b * ho + i) * wo * c;
      for (int64_t di = 0; di < k; ++di) {
        const float* x_row = xp + (b * hp + i * s + di) * wp * c;
        for (int64_t j = 0; j < wo; ++j) {
          const float* gv = g_row + j * c;
          const float* xj = x_row + j * s * c;
          for (int64_t dj = 0; dj < k; ++dj) {
            const float* xv = xj + dj * c;
            float* a = rows + ((di * k + dj) * ho + i) * c;
            for (int64_t q = 0; q < c; ++q) a[q] = std::fma(xv[q], gv[q], a[q]);
          }
        }
      }
    }
  }
}

ffi::Error DepthwiseKernelGradImpl(ffi::Buffer<ffi::F32> xp, ffi::Buffer<ffi::F32> g,
                                   ffi::ResultBuffer<ffi::F32> rows, int64_t stride, int64_t k,
                                   int64_t threads) {
  const auto xd = xp.dimensions();
  const auto gd = g.dimensions();
  if (xd.size() != 4 || gd.size() != 4 || xd[0] != gd[0] || xd[3] != gd[3]) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "depthwise_kernel_grad: bad shapes");
  }
  const int64_t b = xd[0], hp = xd[1], wp = xd[2], c = xd[3], ho = gd[1], wo = gd[2];
  if (stride * (ho - 1) + k > hp || stride * (wo - 1) + k > wp) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "depthwise_kernel_grad: input too small for the gradient");
  }
  const int64_t n = k * k * ho * c;
  if (rows->element_count() != static_cast<size_t>(n)) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "depthwise_kernel_grad: bad output size");
  }
  float* out = rows->typed_data();
  std::memset(out, 0, n * sizeof(float));
  const int64_t t_count = std::max<int64_t>(1, std::min<int64_t>(threads, ho));
  std::vector<std::thread> pool;
  for (int64_t t = 0; t + 1 < t_count; ++t) {
    pool.emplace_back(AccumulateRows, xp.typed_data(), g.typed_data(), out, ho * t / t_count,
                      ho * (t + 1) / t_count, b, hp, wp, c, ho, wo, stride, k);
  }
  AccumulateRows(xp.typed_data(), g.typed_data(), out, ho * (t_count - 1) / t_count, ho, b, hp, wp,
                 c, ho, wo, stride, k);
  for (auto& thread : pool) thread.join();
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(FsaDepthwiseKernelGrad, DepthwiseKernelGradImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("stride")
                                  .Attr<int64_t>("k")
                                  .Attr<int64_t>("threads"));
