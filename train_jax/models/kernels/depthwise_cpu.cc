// Kernel gradient of a depthwise convolution on the CPU, as an XLA FFI custom call
// (padding p = k / 2 on each side, stride s, NHWC, float32):
//
//   dk[di, dj, c] = sum_{b, i, j} x[b, s*i + di - p, s*j + dj - p, c] * g[b, i, j, c]
//
// x: [B, H, W, C] (unpadded; out-of-range taps count as zero padding, p = k / 2), g: [B, Ho, Wo, C],
// dk: [k * k * C]. One pass over g: each gradient vector g[b, i, j, :] is loaded once and
// multiplied into the k*k accumulators (k*k*C floats, small enough for L1/L2); the innermost loop
// runs over the contiguous channel axis, so the compiler vectorises it. XLA:CPU's own lowering of
// this reduction (train_jax.models.layers) vectorises poorly and was the largest cost of an
// EfficientNet training step (docs/performance.md). The batch is split into `threads` fixed
// ranges with private accumulators summed in a fixed order: results are deterministic for a
// given thread count.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

void AccumulateRange(const float* x, const float* g, float* acc, int64_t b0, int64_t b1, int64_t h,
                     int64_t w, int64_t c, int64_t ho, int64_t wo, int64_t s, int64_t k) {
  const int64_t p = k / 2;
  for (int64_t b = b0; b < b1; ++b) {
    for (int64_t i = 0; i < ho; ++i) {
      for (int64_t di = 0; di < k; ++di) {
        const int64_t y = i * s + di - p;
        if (y < 0 || y >= h) continue;
        const float* x_row = x + (b * h + y) * w * c;
        const float* g_row = g + (b * ho + i) * wo * c;
        for (int64_t j = 0; j < wo; ++j) {
          const float* gv = g_row + j * c;
          for (int64_t dj = 0; dj < k; ++dj) {
            const int64_t xx = j * s + dj - p;
            if (xx < 0 || xx >= w) continue;
            const float* xv = x_row + xx * c;
            float* a = acc + (di * k + dj) * c;
            for (int64_t q = 0; q < c; ++q) a[q] += xv[q] * gv[q];
          }
        }
      }
    }
  }
}

ffi::Error DepthwiseKernelGradImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> g,
                                   ffi::ResultBuffer<ffi::F32> dk, int64_t stride, int64_t k,
                                   int64_t threads) {
  const auto xd = x.dimensions();
  const auto gd = g.dimensions();
  if (xd.size() != 4 || gd.size() != 4 || xd[0] != gd[0] || xd[3] != gd[3]) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "depthwise_kernel_grad: bad shapes");
  }
  const int64_t b = xd[0], h = xd[1], w = xd[2], c = xd[3], ho = gd[1], wo = gd[2];
  const int64_t n = k * k * c;
  if (dk->element_count() != static_cast<size_t>(n)) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "depthwise_kernel_grad: bad output size");
  }
  const int64_t t_count = std::max<int64_t>(1, std::min<int64_t>(threads, b));
  std::vector<std::vector<float>> accs(t_count, std::vector<float>(n, 0.0f));
  std::vector<std::thread> pool;
  for (int64_t t = 0; t + 1 < t_count; ++t) {
    pool.emplace_back(AccumulateRange, x.typed_data(), g.typed_data(), accs[t].data(),
                      b * t / t_count, b * (t + 1) / t_count, h, w, c, ho, wo, stride, k);
  }
  AccumulateRange(x.typed_data(), g.typed_data(), accs[t_count - 1].data(),
                  b * (t_count - 1) / t_count, b, h, w, c, ho, wo, stride, k);
  for (auto& thread : pool) thread.join();
  float* out = dk->typed_data();
  std::memcpy(out, accs[0].data(), n * sizeof(float));
  for (int64_t t = 1; t < t_count; ++t) {
    for (int64_t q = 0; q < n; ++q) out[q] += accs[t][q];
  }
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
