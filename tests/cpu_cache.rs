//! The CPU block cache (csrc/cpu_cache.cpp) in a process of its own, with
//! one test: the allocator and its counters are process-wide, and it must be
//! installed before any tensor exists. Blocks are reused for the same size,
//! memory held never exceeds the live peak, small blocks are not cached, the
//! contents are what the tensor wrote. (That the `abcond` binary gives
//! bit-identical results with the cache on and off: tests/reproducibility.rs.)

use abcond::torch::ops::{cpu_cache_active, cpu_cache_release, cpu_cache_stats, install_cpu_cache};
use tch::{Device, Kind, Tensor};

fn f32_tensor(n: i64, v: f64) -> Tensor {
    Tensor::full([n], v, (Kind::Float, Device::Cpu))
}

#[test]
fn cache_reuses_blocks_and_stays_within_the_live_peak() {
    std::env::remove_var("ABCOND_CPU_CACHE");
    assert!(install_cpu_cache().unwrap());
    assert!(install_cpu_cache().unwrap(), "installing twice is a no-op");
    assert!(cpu_cache_active());
    let mib = 1 << 18; // f32 values per MiB

    // A freed 4 MiB block comes back for the next 4 MiB request.
    let s0 = cpu_cache_stats();
    let a = f32_tensor(4 * mib, 1.0);
    let pa = a.data_ptr();
    drop(a);
    let b = f32_tensor(4 * mib, 2.0);
    assert_eq!(b.data_ptr(), pa, "the cached block is reused");
    let s1 = cpu_cache_stats();
    assert_eq!((s1.misses - s0.misses, s1.hits - s0.hits), (1, 1));
    assert_eq!(
        b.sum(Kind::Double).double_value(&[]),
        2.0 * (4 * mib) as f64
    );
    assert_eq!(b.data_ptr() as usize % 64, 0, "64-byte alignment");

    // Blocks under 1 MiB bypass the cache.
    let s1 = cpu_cache_stats();
    let small = f32_tensor(1000, 3.0);
    drop(small);
    let small = f32_tensor(1000, 3.0);
    assert_eq!(small.double_value(&[999]), 3.0);
    assert_eq!(
        (cpu_cache_stats().hits, cpu_cache_stats().misses),
        (s1.hits, s1.misses)
    );
    drop(b);

    // Sizes that change between phases: what is held stays within the peak
    // of live blocks, and cached blocks are given back to make room.
    for round in 0..3 {
        let n = (2 + round) * mib;
        let live: Vec<Tensor> = (0..8).map(|i| f32_tensor(n, i as f64)).collect();
        for (i, t) in live.iter().enumerate() {
            assert_eq!(t.double_value(&[0]), i as f64, "each tensor its own block");
        }
        let s = cpu_cache_stats();
        assert!(
            s.peak_held_bytes <= s.peak_live_bytes,
            "held {} > live peak {}",
            s.peak_held_bytes,
            s.peak_live_bytes
        );
    }
    let s2 = cpu_cache_stats();
    assert!(
        s2.releases > 0,
        "older blocks were freed to make room: {s2:?}"
    );
    assert!(s2.cached_bytes > 0);
    // Convolutions: oneDNN takes its scratch space through the allocator's
    // raw_allocate/raw_deallocate, small blocks included (a header bug there
    // aborted ResNet-18 training with "munmap_chunk(): invalid pointer").
    for _ in 0..3 {
        let x = Tensor::randn([16, 8, 32, 32], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let w = Tensor::randn([16, 8, 3, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let y = x.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
        y.square().sum(Kind::Float).backward();
        assert!(x.grad().isfinite().all().int64_value(&[]) == 1);
    }
    cpu_cache_release();
    let s3 = cpu_cache_stats();
    assert_eq!(s3.cached_bytes, 0);
    assert_eq!(s3.held_bytes, 0, "nothing live: nothing held");
}
