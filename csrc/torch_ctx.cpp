// abcond's C shim over libtorch's global context (at::globalContext()) and
// autocast state: the settings tch 0.24 does not expose (deterministic
// algorithms, cuDNN determinism, TF32) and bf16 autocast with an explicit
// dtype. Built by build.rs with the cc crate and the flags torch-sys uses for
// libtch. Every function catches C++ exceptions and reports them through a
// return code and abcond_shim_last_error() (guarded.h, defined below): no
// exception crosses the FFI.
//
// Only ATen/Context.h is included (a quick compile); the four autocast
// functions are declared here with the signatures of ATen/autocast_mode.h,
// whose own include pulls in all of ATen. They are defined in libtorch_cpu.so.
#include <ATen/Context.h>

#include <stdexcept>
#include <string>

#include "guarded.h"

namespace at::autocast {
bool is_autocast_enabled(at::DeviceType device_type);
void set_autocast_enabled(at::DeviceType device_type, bool enabled);
at::ScalarType get_autocast_dtype(at::DeviceType device_type);
void set_autocast_dtype(at::DeviceType device_type, at::ScalarType dtype);
void clear_cache();
int increment_nesting();
int decrement_nesting();
}  // namespace at::autocast

namespace {
using abcond_shim::guarded;

at::DeviceType device_type(int code) {
  switch (code) {
    case 0:
      return at::kCPU;
    case 1:
      return at::kCUDA;
    default:
      throw std::invalid_argument("abcond torch_ctx: unknown device type code " + std::to_string(code));
  }
}
}  // namespace

extern "C" {

// The message of the last failed call of any shim on this thread.
const char* abcond_shim_last_error() { return abcond_shim::last_error.c_str(); }

// torch.use_deterministic_algorithms(on, warn_only=False).
int abcond_ctx_set_deterministic_algorithms(int on) {
  return guarded([&] { at::globalContext().setDeterministicAlgorithms(on != 0, false); });
}

int abcond_ctx_get_deterministic_algorithms(int* on, int* warn_only) {
  return guarded([&] {
    auto& c = at::globalContext();
    *on = c.deterministicAlgorithms();
    *warn_only = c.deterministicAlgorithmsWarnOnly();
  });
}

// torch.backends.cudnn.benchmark / .deterministic.
int abcond_ctx_set_cudnn(int benchmark, int deterministic) {
  return guarded([&] {
    auto& c = at::globalContext();
    c.setBenchmarkCuDNN(benchmark != 0);
    c.setDeterministicCuDNN(deterministic != 0);
  });
}

int abcond_ctx_get_cudnn(int* benchmark, int* deterministic) {
  return guarded([&] {
    auto& c = at::globalContext();
    *benchmark = c.benchmarkCuDNN();
    *deterministic = c.deterministicCuDNN();
  });
}

// torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32.
// The legacy setters keep libtorch's legacy and per-op (fp32_precision) flags
// consistent, so the getters below never report a mix.
int abcond_ctx_set_allow_tf32(int cublas, int cudnn) {
  return guarded([&] {
    auto& c = at::globalContext();
    c.setAllowTF32CuBLAS(cublas != 0);
    c.setAllowTF32CuDNN(cudnn != 0);
  });
}

int abcond_ctx_get_allow_tf32(int* cublas, int* cudnn) {
  return guarded([&] {
    auto& c = at::globalContext();
    *cublas = c.allowTF32CuBLAS();
    *cudnn = c.allowTF32CuDNN();
  });
}

// Enters an autocast region for a device type (0 cpu, 1 cuda) with the given
// dtype (a c10::ScalarType code): saves the previous enabled flag and dtype,
// enables autocast and increments the nesting count.
int abcond_autocast_enter(int device, int dtype, int* prev_enabled, int* prev_dtype) {
  return guarded([&] {
    auto d = device_type(device);
    *prev_enabled = at::autocast::is_autocast_enabled(d);
    *prev_dtype = static_cast<int>(at::autocast::get_autocast_dtype(d));
    at::autocast::set_autocast_dtype(d, static_cast<at::ScalarType>(dtype));
    at::autocast::set_autocast_enabled(d, true);
    at::autocast::increment_nesting();
  });
}

// Leaves the region: restores the saved state; the outermost exit clears the
// cache of casted weights (they change with every optimiser step).
int abcond_autocast_exit(int device, int prev_enabled, int prev_dtype) {
  return guarded([&] {
    auto d = device_type(device);
    at::autocast::set_autocast_enabled(d, prev_enabled != 0);
    at::autocast::set_autocast_dtype(d, static_cast<at::ScalarType>(prev_dtype));
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
  });
}

int abcond_autocast_state(int device, int* enabled, int* dtype) {
  return guarded([&] {
    auto d = device_type(device);
    *enabled = at::autocast::is_autocast_enabled(d);
    *dtype = static_cast<int>(at::autocast::get_autocast_dtype(d));
  });
}

}  // extern "C"
