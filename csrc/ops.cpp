// abcond's C shim of libtorch operations tch 0.24 does not expose and that
// sit on the training step's hot path (docs/benchmarks.md):
//
// - add with a scale, `a + alpha * b` as one fused kernel (torch.add(a, b,
//   alpha=...)): torch.optim.SGD's update and weight decay are written this
//   way, so abcond's SGD rounds exactly as PyTorch's does;
// - `_foreach_add_` (torch._foreach_add_): one call for all parameters, which
//   is a multi-tensor kernel on CUDA;
// - the squared norm of a list of tensors accumulated in f64, each piece
//   converted to f64 and dotted with itself into a slot of a preallocated
//   f64 tensor: two kernels per piece instead of tch's seven wrapped calls,
//   and one host synchronisation per call;
// - the probe's f64 inner product <a, b − c> and squared distance ||b − c||²:
//   on the CPU one pass over the values without temporaries (the generic
//   path's conversions and temporaries cost more than a training step of a
//   small model, at every step of the replay probe).
//
// Built by build.rs with the same flags as torch_ctx.cpp. Tensor handles are
// tch's (`at::Tensor*`). Every function catches C++ exceptions and reports
// them through a return code and abcond_shim_last_error() (guarded.h).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/_foreach_add.h>
#include <ATen/ops/add.h>
#include <ATen/ops/addcdiv.h>
#include <ATen/ops/addcmul.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/leaky_relu.h>
#include <ATen/ops/dot.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/sub.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros.h>

#include <cstring>
#include <type_traits>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "guarded.h"

namespace {
using abcond_shim::guarded;

std::vector<at::Tensor> list(const at::Tensor* const* ts, int64_t n) {
  std::vector<at::Tensor> v;
  v.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v.push_back(*ts[i]);
  return v;
}
}  // namespace

extern "C" {

// *out = new tensor a + alpha * b (torch.add(a, b, alpha=alpha)).
int abcond_ops_add_scaled(const at::Tensor* a, const at::Tensor* b, double alpha, at::Tensor** out) {
  return guarded([&] { *out = new at::Tensor(at::add(*a, *b, alpha)); });
}

// leaky_relu(x, negative_slope) (F.leaky_relu; tch 0.24 has no slope argument):
// one kernel forward and backward, as in PyTorch (the U-Net's activation).
int abcond_ops_leaky_relu(const at::Tensor* x, double slope, at::Tensor** out) {
  return guarded([&] { *out = new at::Tensor(at::leaky_relu(*x, slope)); });
}

// a += alpha * b, in place (Tensor.add_(b, alpha=alpha)).
int abcond_ops_add_scaled_(at::Tensor* a, const at::Tensor* b, double alpha) {
  return guarded([&] { a->add_(*b, alpha); });
}

// a += value * b * c and a += value * b / c, in place
// (Tensor.addcmul_/addcdiv_(b, c, value=value)): torch.optim.Adam's update.
int abcond_ops_addcmul_(at::Tensor* a, const at::Tensor* b, const at::Tensor* c, double value) {
  return guarded([&] { a->addcmul_(*b, *c, value); });
}

int abcond_ops_addcdiv_(at::Tensor* a, const at::Tensor* b, const at::Tensor* c, double value) {
  return guarded([&] { a->addcdiv_(*b, *c, value); });
}

// a_i += alpha * b_i for every i (torch._foreach_add_(a, b, alpha=alpha)):
// on a CPU a loop of add_ (bit for bit the same), on CUDA multi-tensor kernels.
int abcond_ops_foreach_add_(const at::Tensor* const* a, const at::Tensor* const* b, int64_t n, double alpha) {
  return guarded([&] {
    if (n == 0) return;
    auto av = list(a, n);
    auto bv = list(b, n);
    at::_foreach_add_(av, bv, alpha);
  });
}

// *out = Σ_i ||t_i||², accumulated in f64: each tensor, flattened, is cut
// into pieces of `chunk` elements; each piece is converted to f64 and its dot
// product with itself (BLAS ddot on the CPU — MKL in the PyPI wheel — cuBLAS
// on CUDA) goes into slot j of one f64 tensor allocated up front (no list of
// scalar tensors between the pieces' temporaries, which kept glibc from
// reusing their memory); the slots are summed and read back once. ddot sums
// in its own order: deterministic for a given machine and thread count (the
// pieces are always freshly converted, 64-byte aligned tensors), possibly
// different in the last bits on another CPU type, as ATen's own vectorised
// sums are. A square-then-sum version (the order of the generic path in
// src/torch/reduce.rs) cost the MLP's training step ~0.03 ms more (docs/benchmarks.md).
// Sums of squares of integers are exact while the total stays below 2^53.
int abcond_ops_norm_sq(const at::Tensor* const* ts, int64_t n, int64_t chunk, double* out) {
  return guarded([&] {
    at::NoGradGuard no_grad;
    if (chunk <= 0) throw std::invalid_argument("abcond_ops_norm_sq: chunk must be positive");
    int64_t count = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t len = ts[i]->numel();
      count += len == 0 ? 0 : (len - 1) / chunk + 1;
    }
    if (count == 0) {
      *out = 0.0;
      return;
    }
    auto parts = at::empty({count}, ts[0]->options().dtype(at::kDouble));
    int64_t j = 0;
    for (int64_t i = 0; i < n; ++i) {
      const at::Tensor& t = *ts[i];
      const int64_t len = t.numel();
      if (len == 0) continue;
      auto flat = t.reshape({-1});
      for (int64_t s = 0; s < len; s += chunk) {
        auto piece = (len <= chunk ? flat : flat.narrow(0, s, std::min(chunk, len - s))).to(at::kDouble);
        auto slot = parts.select(0, j++);
        at::dot_out(slot, piece, piece);
      }
    }
    *out = at::sum(parts).item<double>();
  });
}

}  // extern "C"

// Σ_i <a_i, b_i − c_i> and Σ_i ||b_i − c_i||² — the probe's inner product
// <∇f_i(x^k), x^k − x^K> and squared distance ||x^k − x^K||², accumulated in
// f64. `a` may be null (distance only).
//
// CPU tensors: one pass over the values, no temporaries. Each value is
// converted to f64 first (so the result depends on the values alone, not on
// f32/f64 storage or layout); within blocks of 4096 values eight lanes are
// summed separately and combined pairwise; the block sums are added with
// Kahan compensation, in order. The distance is computed the same way with or
// without `a`, so `dist_sq` alone and this pair give the same bits.
// CUDA tensors: pieces of `chunk` values converted to f64, each summed into a
// slot of one f64 tensor, the slots summed.
namespace {

struct Kahan {
  double sum = 0.0, comp = 0.0;
  void add(double v) {
    const double y = v - comp;
    const double t = sum + y;
    comp = (t - sum) - y;
    sum = t;
  }
};

constexpr int64_t kBlock = 4096;
constexpr int kLanes = 8;

inline double lanes_total(const double* p) {
  return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}

// Four f64 lanes as one vector (GCC/Clang vector extensions: pairs of SSE2
// operations on x86-64, NEON on aarch64). Lane l of the eight is element
// l % 4 of vector l / 4; each lane adds its values in order, exactly as a
// scalar loop over the lanes would (no FMA: the file is compiled with
// -ffp-contract=off).
typedef double v4d __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));

// Values p[0..4) as f64 (by reference: a vector returned by value would
// change the ABI without AVX).
template <typename T>
inline void load4(const T* p, v4d& out) {
  if constexpr (std::is_same_v<T, float>) {
    v4f f;
    std::memcpy(&f, p, sizeof f);
    out = __builtin_convertvector(f, v4d);
  } else {
    std::memcpy(&out, p, sizeof out);
  }
}

// The sums over values [s, e) of one block: eight lanes, combined pairwise,
// then the tail.
template <typename T, bool WithA>
void block_sums(const T* a, const T* b, const T* c, int64_t s, int64_t e, double* inner, double* dist) {
  v4d pi0 = {}, pi1 = {}, pd0 = {}, pd1 = {};
  int64_t i = s;
  v4d b0, b1, c0, c1, a0, a1;
  for (; i + kLanes <= e; i += kLanes) {
    load4(b + i, b0);
    load4(b + i + 4, b1);
    load4(c + i, c0);
    load4(c + i + 4, c1);
    const v4d d0 = b0 - c0, d1 = b1 - c1;
    pd0 += d0 * d0;
    pd1 += d1 * d1;
    if (WithA) {
      load4(a + i, a0);
      load4(a + i + 4, a1);
      pi0 += a0 * d0;
      pi1 += a1 * d1;
    }
  }
  const double li[kLanes] = {pi0[0], pi0[1], pi0[2], pi0[3], pi1[0], pi1[1], pi1[2], pi1[3]};
  const double ld[kLanes] = {pd0[0], pd0[1], pd0[2], pd0[3], pd1[0], pd1[1], pd1[2], pd1[3]};
  double ti = 0.0, td = 0.0;
  for (; i < e; ++i) {
    const double d = static_cast<double>(b[i]) - static_cast<double>(c[i]);
    td += d * d;
    if (WithA) ti += static_cast<double>(a[i]) * d;
  }
  *dist = lanes_total(ld) + td;
  if (WithA) *inner = lanes_total(li) + ti;
}

// One tensor: its blocks' sums, computed in parallel (a block's sum does not
// depend on the thread that computes it), added in order.
template <typename T, bool WithA>
void inner_dist_cpu(const T* a, const T* b, const T* c, int64_t n, Kahan& inner, Kahan& dist) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> bi(WithA ? blocks : 0), bd(blocks);
  at::parallel_for(0, blocks, 8, [&](int64_t first, int64_t last) {
    for (int64_t q = first; q < last; ++q) {
      block_sums<T, WithA>(a, b, c, q * kBlock, std::min(n, (q + 1) * kBlock),
                           WithA ? &bi[q] : nullptr, &bd[q]);
    }
  });
  for (int64_t q = 0; q < blocks; ++q) {
    dist.add(bd[q]);
    if (WithA) inner.add(bi[q]);
  }
}

// The tensor as a contiguous CPU tensor of kind `k` (itself when it is one).
at::Tensor as_contiguous(const at::Tensor& t, at::ScalarType k) {
  return t.scalar_type() == k ? t.contiguous() : t.to(k).contiguous();
}

void inner_dist_cpu_all(const at::Tensor* const* a, const at::Tensor* const* b,
                        const at::Tensor* const* c, int64_t n, double* inner, double* dist_sq) {
  Kahan ki, kd;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t len = b[i]->numel();
    if (c[i]->numel() != len || (a != nullptr && a[i]->numel() != len)) {
      throw std::invalid_argument("abcond_ops_dot_diff_dist: tensors of different sizes");
    }
    if (len == 0) continue;
    // f32 throughout, or everything as f64 (the conversion is exact).
    const bool f32 = b[i]->scalar_type() == at::kFloat && c[i]->scalar_type() == at::kFloat &&
                     (a == nullptr || a[i]->scalar_type() == at::kFloat);
    const auto k = f32 ? at::kFloat : at::kDouble;
    const auto bt = as_contiguous(*b[i], k), ct = as_contiguous(*c[i], k);
    at::Tensor at_;
    if (a != nullptr) at_ = as_contiguous(*a[i], k);
    if (f32) {
      if (a != nullptr) {
        inner_dist_cpu<float, true>(at_.data_ptr<float>(), bt.data_ptr<float>(), ct.data_ptr<float>(), len, ki, kd);
      } else {
        inner_dist_cpu<float, false>(nullptr, bt.data_ptr<float>(), ct.data_ptr<float>(), len, ki, kd);
      }
    } else {
      if (a != nullptr) {
        inner_dist_cpu<double, true>(at_.data_ptr<double>(), bt.data_ptr<double>(), ct.data_ptr<double>(), len, ki, kd);
      } else {
        inner_dist_cpu<double, false>(nullptr, bt.data_ptr<double>(), ct.data_ptr<double>(), len, ki, kd);
      }
    }
  }
  *inner = a != nullptr ? ki.sum : 0.0;
  *dist_sq = kd.sum;
}

}  // namespace

extern "C" int abcond_ops_dot_diff_dist(const at::Tensor* const* a, const at::Tensor* const* b,
                                        const at::Tensor* const* c, int64_t n, int64_t chunk,
                                        double* inner, double* dist_sq) {
  return guarded([&] {
    at::NoGradGuard no_grad;
    if (chunk <= 0) throw std::invalid_argument("abcond_ops_dot_diff_dist: chunk must be positive");
    bool cpu = true;
    for (int64_t i = 0; i < n; ++i) {
      cpu = cpu && b[i]->device().is_cpu() && c[i]->device().is_cpu() && (a == nullptr || a[i]->device().is_cpu());
    }
    if (cpu) {
      inner_dist_cpu_all(a, b, c, n, inner, dist_sq);
      return;
    }
    int64_t count = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t len = b[i]->numel();
      count += len == 0 ? 0 : (len - 1) / chunk + 1;
    }
    if (count == 0) {
      *inner = 0.0;
      *dist_sq = 0.0;
      return;
    }
    auto opts = b[0]->options().dtype(at::kDouble);
    auto dist_parts = at::zeros({count}, opts);
    at::Tensor inner_parts;
    if (a != nullptr) inner_parts = at::zeros({count}, opts);
    int64_t j = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t len = b[i]->numel();
      auto bf = b[i]->reshape({-1});
      auto cf = c[i]->reshape({-1});
      at::Tensor af;
      if (a != nullptr) af = a[i]->reshape({-1});
      for (int64_t s = 0; s < len; s += chunk) {
        const int64_t l = std::min(chunk, len - s);
        auto d = at::sub(bf.narrow(0, s, l).to(at::kDouble), cf.narrow(0, s, l).to(at::kDouble));
        dist_parts.select(0, j).copy_(at::sum(at::mul(d, d), at::kDouble));
        if (a != nullptr) {
          inner_parts.select(0, j).copy_(
              at::sum(at::mul(af.narrow(0, s, l).to(at::kDouble), d), at::kDouble));
        }
        ++j;
      }
    }
    *dist_sq = at::sum(dist_parts, at::kDouble).template item<double>();
    *inner = a != nullptr ? at::sum(inner_parts, at::kDouble).template item<double>() : 0.0;
  });
}


