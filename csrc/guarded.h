// The error convention of abcond's C++ shims (torch_ctx.cpp, ops.cpp,
// cpu_cache.cpp): every exported function runs its body in guarded(), which
// catches every C++ exception — none may cross the FFI — and returns 0, or 1
// with the message kept for abcond_shim_last_error() (one per thread, shared by
// all shims; defined in torch_ctx.cpp).
#pragma once

#include <exception>
#include <string>

namespace abcond_shim {
inline thread_local std::string last_error;

template <typename F>
int guarded(F f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
  } catch (...) {
    last_error = "unknown C++ exception";
  }
  return 1;
}
}  // namespace abcond_shim
