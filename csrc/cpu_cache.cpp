// abcond's CPU allocator for libtorch: a cache of large blocks in front of
// libtorch's own allocation functions (docs/benchmarks.md, "glibc's malloc").
//
// Why: libtorch takes CPU tensors from glibc's malloc, which serves large
// blocks with fresh mmaps (above its mmap threshold, at most 32 MiB) and
// returns the top of its heap to the kernel when more than twice that is
// free. A training step frees its activations at the end of the backward pass
// and allocates the same sizes again in the next forward pass, so every step
// faults the same memory in again, page by page: ~500,000 page faults per
// ResNet-18 step at batch 128 on the benchmark machine, about a third of the
// step (PyTorch pays the same). Raising glibc's thresholds (GLIBC_TUNABLES)
// removes the faults but lets freed memory pile up in the heap.
//
// What: a freed block of at least 1 MiB is kept, and the next request of the
// same size (rounded up to 4 KiB) gets it back; a training or probe step
// repeats its sizes exactly. Memory stays bounded by the peak of live blocks:
// when a request finds no cached block of its size, the oldest cached blocks
// are freed until live + cached + the new block is at most the highest live
// total seen so far, so the cache never holds memory the process has not
// already needed at once. Blocks come from c10::alloc_cpu and go back through
// c10::free_cpu (what libtorch's default CPU allocator uses); smaller requests
// go straight to them (with the header that marks them as not cached).
//
// The bookkeeping allocates nothing after installation: each block carries
// its size in a 64-byte header (the data stay 64-byte aligned; 0 marks a small
// block, so that every block this allocator hands out, including those of
// raw_allocate, is freed correctly by its one deleter), and the cache
// is a vector reserved up front. Small allocations of the cache's own, made
// between the activations, would pin the top of glibc's heap and keep it from
// shrinking (the probe's peak RSS grew by ~110 MiB at 100M parameters).
//
// Installed once at start-up by the abcond binary (not by the library) unless
// ABCOND_CPU_CACHE=0, before any tensor exists: a block the default allocator
// handed out through raw_allocate must not come back through this one's
// raw_deleter. Thread-safe (one mutex; the frees of evicted blocks happen
// under it, which only the allocating thread waits for in practice: the
// writer thread only frees, a push onto the cache); the allocator object is
// never destroyed, so tensors freed during exit still find it. Unlike
// libtorch's default allocator it does not report to the profiler's CPU
// memory tracking.
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <malloc.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <vector>

#include "guarded.h"

namespace {
constexpr size_t kMinBytes = size_t{1} << 20;
constexpr size_t kPage = 4096;
constexpr size_t kHeader = 64;          // keeps the data 64-byte aligned, as c10's
constexpr size_t kMaxCached = 1 << 14;  // blocks; the oldest go beyond that

struct Stats {
  uint64_t hits = 0, misses = 0, releases = 0;
  uint64_t mapped_bytes = 0, cached_bytes = 0, peak_bytes = 0, peak_live_bytes = 0;
};

struct Block {
  char* base;
  size_t size;
};

size_t& size_of(char* base) { return *reinterpret_cast<size_t*>(base); }

struct CachingCpuAllocator final : c10::Allocator {
  std::mutex mutex;
  std::vector<Block> cached;  // oldest first
  Stats stats;

  CachingCpuAllocator() { cached.reserve(kMaxCached); }

  static void free_block(void* data);

  // With the mutex held: frees the oldest cached block.
  void release_oldest() {
    Block b = cached.front();
    cached.erase(cached.begin());
    c10::free_cpu(b.base);
    stats.mapped_bytes -= b.size;
    stats.cached_bytes -= b.size;
    stats.releases++;
  }

  c10::DataPtr allocate(size_t n) override {
    if (n == 0) return {nullptr, nullptr, &free_block, c10::Device(c10::DeviceType::CPU)};
    TORCH_CHECK(n <= SIZE_MAX - kHeader - kPage, "abcond's CPU allocator: request of ", n, " bytes is too large");
    if (n < kMinBytes) {
      // Not cached, but with a header too: raw_allocate/raw_deallocate (used
      // inside libtorch, e.g. by oneDNN) free every block through raw_deleter().
      char* base = static_cast<char*>(c10::alloc_cpu(n + kHeader));
      size_of(base) = 0;
      void* data = base + kHeader;
      return {data, data, &free_block, c10::Device(c10::DeviceType::CPU)};
    }
    const size_t size = (n + kHeader + kPage - 1) / kPage * kPage;
    std::lock_guard<std::mutex> lock(mutex);
    char* base = nullptr;
    for (size_t i = cached.size(); i-- > 0;) {  // the newest block of this size
      if (cached[i].size == size) {
        base = cached[i].base;
        cached.erase(cached.begin() + static_cast<std::ptrdiff_t>(i));
        stats.cached_bytes -= size;
        stats.hits++;
        break;
      }
    }
    if (base == nullptr) {
      const uint64_t live = stats.mapped_bytes - stats.cached_bytes + size;
      const uint64_t peak = std::max(live, stats.peak_live_bytes);
      while (!cached.empty() && live + stats.cached_bytes > peak) release_oldest();
      try {
        base = static_cast<char*>(c10::alloc_cpu(size));
      } catch (...) {
        // Out of memory: give back every cached block and try once more;
        // a second failure reaches libtorch as the default allocator's would.
        while (!cached.empty()) release_oldest();
        base = static_cast<char*>(c10::alloc_cpu(size));
      }
      // Recorded only for a block that exists, so that a failed request
      // cannot raise the bound.
      stats.peak_live_bytes = peak;
      size_of(base) = size;
      stats.misses++;
      stats.mapped_bytes += size;
      if (stats.mapped_bytes > stats.peak_bytes) stats.peak_bytes = stats.mapped_bytes;
    }
    void* data = base + kHeader;
    return {data, data, &free_block, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &free_block; }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  void release_all() {
    std::lock_guard<std::mutex> lock(mutex);
    while (!cached.empty()) release_oldest();
  }
};

CachingCpuAllocator* instance = nullptr;

void CachingCpuAllocator::free_block(void* data) {
  if (data == nullptr) return;
  char* base = static_cast<char*>(data) - kHeader;
  const size_t size = size_of(base);
  if (size == 0) {  // a small block
    c10::free_cpu(base);
    return;
  }
  std::lock_guard<std::mutex> lock(instance->mutex);
  if (instance->cached.size() == kMaxCached) instance->release_oldest();
  instance->cached.push_back({base, size});
  instance->stats.cached_bytes += size;
}

}  // namespace

extern "C" {

// Makes the caching allocator libtorch's CPU allocator (once; later calls do
// nothing). Returns 0, or 1 with the message in abcond_shim_last_error().
int abcond_cpu_cache_install() {
  return abcond_shim::guarded([] {
    if (instance == nullptr) {
      instance = new CachingCpuAllocator();
      // glibc's own steady state, set up front: its mmap threshold rises (to
      // at most 32 MiB, the trim threshold to twice that) when a large mmapped
      // block is freed, which with large blocks kept here rarely happens. Left
      // at the initial 128 KiB, every block of 128 KiB..1 MiB (the f64 pieces
      // of src/torch/reduce.rs, the Parquet reader's and writer's buffers) would be
      // mmapped and faulted in afresh each time, and the blocks cached here
      // could not come from the heap's free memory. Measured: the 133.5M
      // Transformer's probe pass 2128–2146 → 2101–2107 MiB peak
      // (docs/benchmarks-storage.md); training speed unchanged.
      mallopt(M_MMAP_THRESHOLD, 32 << 20);
      mallopt(M_TRIM_THRESHOLD, 64 << 20);
      // The default allocator is registered with priority 0.
      c10::SetCPUAllocator(instance, /*priority=*/1);
    }
  });
}

// 1 when installed and libtorch's current CPU allocator, else 0.
int abcond_cpu_cache_active() { return instance != nullptr && c10::GetCPUAllocator() == instance; }

// Frees every cached block.
void abcond_cpu_cache_release() {
  if (instance != nullptr) instance->release_all();
}

// Counters since installation: requests served from the cache, requests that
// allocated a new block, cached blocks freed, bytes held now (live + cached),
// of which cached, the peak of bytes held, and the peak of live bytes. All 0
// when not installed.
void abcond_cpu_cache_stats(uint64_t* out) {
  Stats s;
  if (instance != nullptr) {
    std::lock_guard<std::mutex> lock(instance->mutex);
    s = instance->stats;
  }
  out[0] = s.hits;
  out[1] = s.misses;
  out[2] = s.releases;
  out[3] = s.mapped_bytes;
  out[4] = s.cached_bytes;
  out[5] = s.peak_bytes;
  out[6] = s.peak_live_bytes;
}

}  // extern "C"
