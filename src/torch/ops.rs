//! Safe wrappers over `csrc/ops.cpp`: libtorch operations tch 0.24 does not
//! expose, used on the training step's hot path — `leaky_relu` with a slope,
//! `a + alpha·b` as one fused
//! kernel (how torch.optim.SGD writes its update and weight decay, so abcond's
//! SGD rounds as PyTorch's does), `torch._foreach_add_` (multi-tensor kernels
//! on CUDA), and a squared norm accumulated in f64 in one call (per piece an
//! f64 dot product; docs/benchmarks.md).
//!
//! Like tch's own operations, these panic with libtorch's message on misuse
//! (mismatched shapes or devices): such a failure is a bug, not a user error.

use crate::torch::ctx::shim_error;
use std::os::raw::{c_int, c_void};
use tch::Tensor;

/// tch's tensor handle (`Tensor::as_ptr`): a pointer to an `at::Tensor`.
type Handle = *const c_void;

extern "C" {
    fn abcond_ops_add_scaled(a: Handle, b: Handle, alpha: f64, out: *mut *mut c_void) -> c_int;
    fn abcond_ops_add_scaled_(a: Handle, b: Handle, alpha: f64) -> c_int;
    fn abcond_ops_leaky_relu(x: Handle, slope: f64, out: *mut *mut c_void) -> c_int;
    fn abcond_ops_addcmul_(a: Handle, b: Handle, c: Handle, value: f64) -> c_int;
    fn abcond_ops_addcdiv_(a: Handle, b: Handle, c: Handle, value: f64) -> c_int;
    fn abcond_ops_foreach_add_(a: *const Handle, b: *const Handle, n: i64, alpha: f64) -> c_int;
    fn abcond_ops_norm_sq(ts: *const Handle, n: i64, chunk: i64, out: *mut f64) -> c_int;
    fn abcond_ops_dot_diff_dist(
        a: *const Handle,
        b: *const Handle,
        c: *const Handle,
        n: i64,
        chunk: i64,
        inner: *mut f64,
        dist_sq: *mut f64,
    ) -> c_int;
}

fn check(code: c_int, what: &str) {
    if code != 0 {
        panic!("libtorch failed in {what}: {}", shim_error());
    }
}

fn handles(ts: &[Tensor]) -> Vec<Handle> {
    ts.iter().map(|t| t.as_ptr() as Handle).collect()
}

/// `a + alpha * b` (torch.add(a, b, alpha=alpha)), a new tensor.
pub fn add_scaled(a: &Tensor, b: &Tensor, alpha: f64) -> Tensor {
    let mut out = std::ptr::null_mut();
    // SAFETY: both handles are live tensors; on success `out` is a new
    // at::Tensor whose ownership passes to the returned Tensor.
    check(
        unsafe {
            abcond_ops_add_scaled(a.as_ptr() as Handle, b.as_ptr() as Handle, alpha, &mut out)
        },
        "add(a, b, alpha)",
    );
    unsafe { Tensor::from_ptr(out.cast()) }
}

/// `leaky_relu(x, slope)` (F.leaky_relu with its negative slope), a new tensor
/// with autograd: x where x > 0, else slope·x.
pub fn leaky_relu(x: &Tensor, slope: f64) -> Tensor {
    let mut out = std::ptr::null_mut();
    // SAFETY: the handle is a live tensor; on success `out` is a new
    // at::Tensor whose ownership passes to the returned Tensor.
    check(
        unsafe { abcond_ops_leaky_relu(x.as_ptr() as Handle, slope, &mut out) },
        "leaky_relu(x, slope)",
    );
    unsafe { Tensor::from_ptr(out.cast()) }
}

/// `a += alpha * b` in place (Tensor.add_(b, alpha=alpha)). Under
/// `tch::no_grad` when `a` is a parameter.
pub fn add_scaled_(a: &Tensor, b: &Tensor, alpha: f64) {
    // SAFETY: both handles are live tensors.
    check(
        unsafe { abcond_ops_add_scaled_(a.as_ptr() as Handle, b.as_ptr() as Handle, alpha) },
        "add_(b, alpha)",
    );
}

/// `a += value * b * c` in place (Tensor.addcmul_(b, c, value=value)).
pub fn addcmul_(a: &Tensor, b: &Tensor, c: &Tensor, value: f64) {
    // SAFETY: the handles are live tensors.
    check(
        unsafe {
            abcond_ops_addcmul_(
                a.as_ptr() as Handle,
                b.as_ptr() as Handle,
                c.as_ptr() as Handle,
                value,
            )
        },
        "addcmul_(b, c, value)",
    );
}

/// `a += value * b / c` in place (Tensor.addcdiv_(b, c, value=value)).
pub fn addcdiv_(a: &Tensor, b: &Tensor, c: &Tensor, value: f64) {
    // SAFETY: the handles are live tensors.
    check(
        unsafe {
            abcond_ops_addcdiv_(
                a.as_ptr() as Handle,
                b.as_ptr() as Handle,
                c.as_ptr() as Handle,
                value,
            )
        },
        "addcdiv_(b, c, value)",
    );
}

/// `a_i += alpha * b_i` for every i (torch._foreach_add_): on a CPU the same
/// kernels as [`add_scaled_`] one by one, on CUDA multi-tensor kernels.
pub fn foreach_add_(a: &[Tensor], b: &[Tensor], alpha: f64) {
    assert_eq!(a.len(), b.len(), "foreach_add_: lists of different lengths");
    let (ha, hb) = (handles(a), handles(b));
    // SAFETY: two arrays of live tensor handles of the given length.
    check(
        unsafe { abcond_ops_foreach_add_(ha.as_ptr(), hb.as_ptr(), a.len() as i64, alpha) },
        "_foreach_add_",
    );
}

/// Σ_i ||t_i||² in f64, over pieces of `chunk` elements (see
/// [`crate::torch::reduce::norm_sq`]); one host synchronisation.
pub fn norm_sq(ts: &[Tensor], chunk: i64) -> f64 {
    let h = handles(ts);
    let mut out = 0.0;
    // SAFETY: an array of live tensor handles of the given length.
    check(
        unsafe { abcond_ops_norm_sq(h.as_ptr(), h.len() as i64, chunk, &mut out) },
        "the f64 squared norm",
    );
    out
}

/// (Σ_i <a_i, b_i − c_i>, Σ_i ||b_i − c_i||²) over pieces of `chunk`
/// elements, bit for bit what [`crate::torch::reduce::dot_diff`] and
/// [`crate::torch::reduce::dist_sq`] give (see csrc/ops.cpp); inner is 0
/// without `a`. One host synchronisation per sum.
pub fn dot_diff_dist(a: Option<&[Tensor]>, b: &[Tensor], c: &[Tensor], chunk: i64) -> (f64, f64) {
    assert_eq!(
        b.len(),
        c.len(),
        "dot_diff_dist: lists of different lengths"
    );
    let ha = a.map(|a| {
        assert_eq!(
            a.len(),
            b.len(),
            "dot_diff_dist: lists of different lengths"
        );
        handles(a)
    });
    let (hb, hc) = (handles(b), handles(c));
    let (mut inner, mut dist) = (0.0, 0.0);
    // SAFETY: arrays of live tensor handles of the given length (a: null or
    // the same length).
    check(
        unsafe {
            abcond_ops_dot_diff_dist(
                ha.as_ref().map_or(std::ptr::null(), |h| h.as_ptr()),
                hb.as_ptr(),
                hc.as_ptr(),
                hb.len() as i64,
                chunk,
                &mut inner,
                &mut dist,
            )
        },
        "the f64 inner product and distance",
    );
    (inner, dist)
}

extern "C" {
    fn abcond_cpu_cache_install() -> c_int;
    fn abcond_cpu_cache_active() -> c_int;
    fn abcond_cpu_cache_release();
    fn abcond_cpu_cache_stats(out: *mut u64);
}

/// The environment variable that turns the CPU block cache off (`0`).
pub const CPU_CACHE_ENV: &str = "ABCOND_CPU_CACHE";

/// Makes `csrc/cpu_cache.cpp` libtorch's CPU allocator, unless
/// `ABCOND_CPU_CACHE=0`: a freed block of at least 1 MiB is kept for the next
/// request of the same size, so a training step does not fault its
/// activations in again, and the memory held never exceeds the highest live
/// total seen (docs/benchmarks.md). Returns whether it is active. Called once
/// by the `abcond` binary before any tensor exists.
pub fn install_cpu_cache() -> anyhow::Result<bool> {
    if std::env::var(CPU_CACHE_ENV).is_ok_and(|v| v.trim() == "0") {
        return Ok(false);
    }
    // SAFETY: no arguments; idempotent.
    if unsafe { abcond_cpu_cache_install() } != 0 {
        anyhow::bail!(
            "could not install abcond's CPU allocator: {} (set {CPU_CACHE_ENV}=0 to run without it)",
            shim_error()
        );
    }
    Ok(cpu_cache_active())
}

/// Whether the CPU block cache is libtorch's CPU allocator now.
pub fn cpu_cache_active() -> bool {
    // SAFETY: no arguments.
    unsafe { abcond_cpu_cache_active() != 0 }
}

/// Frees every cached block (live tensors are untouched).
pub fn cpu_cache_release() {
    // SAFETY: no arguments; a no-op when not installed.
    unsafe { abcond_cpu_cache_release() }
}

/// Counters of the CPU block cache since it was installed (all 0 if not).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuCacheStats {
    /// Requests of at least 1 MiB served from the cache.
    pub hits: u64,
    /// Requests of at least 1 MiB that allocated a new block.
    pub misses: u64,
    /// Cached blocks freed to make room.
    pub releases: u64,
    /// Bytes held now (live + cached blocks, with their headers).
    pub held_bytes: u64,
    /// Of those, cached (free) bytes.
    pub cached_bytes: u64,
    /// Peak of `held_bytes`.
    pub peak_held_bytes: u64,
    /// Peak of live bytes (held − cached); `peak_held_bytes` never exceeds it.
    pub peak_live_bytes: u64,
}

pub fn cpu_cache_stats() -> CpuCacheStats {
    let mut v = [0u64; 7];
    // SAFETY: an array of the seven counters the shim writes.
    unsafe { abcond_cpu_cache_stats(v.as_mut_ptr()) };
    CpuCacheStats {
        hits: v[0],
        misses: v[1],
        releases: v[2],
        held_bytes: v[3],
        cached_bytes: v[4],
        peak_held_bytes: v[5],
        peak_live_bytes: v[6],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn bits(t: &Tensor) -> Vec<u32> {
        Vec::<f32>::try_from(t.reshape([-1]))
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect()
    }

    #[test]
    fn add_scaled_known_values() {
        let a = Tensor::from_slice(&[1.0f64, 2.0, 3.0]);
        let b = Tensor::from_slice(&[4.0f64, 5.0, 6.0]);
        let c = add_scaled(&a, &b, -0.5);
        assert_eq!(Vec::<f64>::try_from(&c).unwrap(), vec![-1.0, -0.5, 0.0]);
        // out of place: a is unchanged
        assert_eq!(Vec::<f64>::try_from(&a).unwrap(), vec![1.0, 2.0, 3.0]);
        add_scaled_(&a, &b, 2.0);
        assert_eq!(Vec::<f64>::try_from(&a).unwrap(), vec![9.0, 12.0, 15.0]);
    }

    /// `_foreach_add_` is, on a CPU, exactly `add_` tensor by tensor; both are
    /// one rounding of a + alpha·b (the fused form torch.optim.SGD uses), and
    /// the two-step a + (alpha·b) differs from it somewhere in 10^5 values.
    #[test]
    fn foreach_add_matches_add_scaled_bit_for_bit() {
        tch::manual_seed(11);
        let shapes: [&[i64]; 3] = [&[300, 170], &[170], &[7, 3, 5]];
        let a: Vec<Tensor> = shapes
            .iter()
            .map(|s| Tensor::randn(*s, (Kind::Float, Device::Cpu)))
            .collect();
        let b: Vec<Tensor> = shapes
            .iter()
            .map(|s| Tensor::randn(*s, (Kind::Float, Device::Cpu)))
            .collect();
        let alpha = -0.0917;
        let one_by_one: Vec<Tensor> = a
            .iter()
            .zip(&b)
            .map(|(x, y)| add_scaled(x, y, alpha))
            .collect();
        let two_step: Vec<Tensor> = a.iter().zip(&b).map(|(x, y)| x + y * alpha).collect();
        let together: Vec<Tensor> = a.iter().map(Tensor::copy).collect();
        foreach_add_(&together, &b, alpha);
        for (t, o) in together.iter().zip(&one_by_one) {
            assert_eq!(bits(t), bits(o));
        }
        let differ = one_by_one
            .iter()
            .zip(&two_step)
            .map(|(x, y)| bits(x).iter().zip(bits(y)).filter(|(p, q)| *p != q).count())
            .sum::<usize>();
        assert!(differ > 0, "fused and two-step results agree everywhere");
        foreach_add_(&[], &[], 1.0);
    }

    #[test]
    #[should_panic(expected = "libtorch failed in _foreach_add_")]
    fn foreach_add_reports_libtorch_errors() {
        let a = vec![Tensor::zeros([3], (Kind::Float, Device::Cpu))];
        let b = vec![Tensor::zeros([4], (Kind::Float, Device::Cpu))];
        foreach_add_(&a, &b, 1.0);
    }

    /// One piece or many, f32 or f64, empty tensors: the f64 sum of squares.
    #[test]
    fn norm_sq_pieces() {
        let a = Tensor::arange(1001, (Kind::Float, Device::Cpu));
        let b = Tensor::ones([2, 3], (Kind::Double, Device::Cpu));
        let e = Tensor::zeros([0], (Kind::Float, Device::Cpu));
        let want = (1000.0 * 1001.0 * 2001.0) / 6.0 + 6.0;
        for chunk in [1, 7, 64, 1000, 1001, 5000] {
            assert_eq!(
                norm_sq(
                    &[a.shallow_clone(), e.shallow_clone(), b.shallow_clone()],
                    chunk
                ),
                want
            );
        }
        assert_eq!(norm_sq(&[], 16), 0.0);
        assert_eq!(norm_sq(&[e], 16), 0.0);
        // 0.1f32 squared in f64, not in f32
        let t = Tensor::full([1000], 0.1, (Kind::Float, Device::Cpu));
        let x = 0.1f32 as f64;
        assert!((norm_sq(&[t], 64) - 1000.0 * x * x).abs() < 1e-12);
    }
}
