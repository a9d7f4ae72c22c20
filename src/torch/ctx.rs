//! Safe wrappers over `csrc/torch_ctx.cpp`: libtorch's global settings that tch
//! 0.24 does not expose (deterministic algorithms, cuDNN determinism, TF32) and
//! an autocast region with an explicit dtype. [`crate::torch::reproducibility`] sets
//! them per run phase and records what these getters read back.
//!
//! The flags live in `at::globalContext()`, one per process and shared by all
//! threads and devices (so they can be set and read on a CPU-only machine);
//! autocast state is per thread.

use anyhow::{anyhow, Result};
use std::ffi::CStr;
use std::os::raw::{c_char, c_int};
use tch::{Device, Kind};

extern "C" {
    fn abcond_shim_last_error() -> *const c_char;
    fn abcond_ctx_set_deterministic_algorithms(on: c_int) -> c_int;
    fn abcond_ctx_get_deterministic_algorithms(on: *mut c_int, warn_only: *mut c_int) -> c_int;
    fn abcond_ctx_set_cudnn(benchmark: c_int, deterministic: c_int) -> c_int;
    fn abcond_ctx_get_cudnn(benchmark: *mut c_int, deterministic: *mut c_int) -> c_int;
    fn abcond_ctx_set_allow_tf32(cublas: c_int, cudnn: c_int) -> c_int;
    fn abcond_ctx_get_allow_tf32(cublas: *mut c_int, cudnn: *mut c_int) -> c_int;
    fn abcond_autocast_enter(
        device: c_int,
        dtype: c_int,
        prev_enabled: *mut c_int,
        prev_dtype: *mut c_int,
    ) -> c_int;
    fn abcond_autocast_exit(device: c_int, prev_enabled: c_int, prev_dtype: c_int) -> c_int;
    fn abcond_autocast_state(device: c_int, enabled: *mut c_int, dtype: *mut c_int) -> c_int;
}

/// Turns a shim return code into a Result carrying libtorch's message.
fn check(code: c_int, what: &str) -> Result<()> {
    if code == 0 {
        return Ok(());
    }
    Err(anyhow!("libtorch refused to {what}: {}", shim_error()))
}

/// The message of the last failed call of any C++ shim (csrc/*.cpp) on this
/// thread (csrc/guarded.h).
pub(crate) fn shim_error() -> String {
    // SAFETY: the shim returns a pointer to a NUL-terminated thread-local string.
    unsafe { CStr::from_ptr(abcond_shim_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// `torch.use_deterministic_algorithms(on)` (never warn-only: an operation
/// without a deterministic implementation then fails with libtorch's error).
pub fn set_deterministic_algorithms(on: bool) -> Result<()> {
    check(
        unsafe { abcond_ctx_set_deterministic_algorithms(on.into()) },
        "set deterministic algorithms",
    )
}

/// (deterministic algorithms, warn only).
pub fn deterministic_algorithms() -> Result<(bool, bool)> {
    let (mut on, mut warn) = (0, 0);
    check(
        unsafe { abcond_ctx_get_deterministic_algorithms(&mut on, &mut warn) },
        "read deterministic algorithms",
    )?;
    Ok((on != 0, warn != 0))
}

/// `torch.backends.cudnn.benchmark` and `.deterministic`.
pub fn set_cudnn(benchmark: bool, deterministic: bool) -> Result<()> {
    check(
        unsafe { abcond_ctx_set_cudnn(benchmark.into(), deterministic.into()) },
        "set the cuDNN flags",
    )
}

/// (cuDNN benchmark, cuDNN deterministic).
pub fn cudnn() -> Result<(bool, bool)> {
    let (mut b, mut d) = (0, 0);
    check(
        unsafe { abcond_ctx_get_cudnn(&mut b, &mut d) },
        "read the cuDNN flags",
    )?;
    Ok((b != 0, d != 0))
}

/// `torch.backends.cuda.matmul.allow_tf32` and `torch.backends.cudnn.allow_tf32`.
pub fn set_allow_tf32(cublas: bool, cudnn: bool) -> Result<()> {
    check(
        unsafe { abcond_ctx_set_allow_tf32(cublas.into(), cudnn.into()) },
        "set the TF32 flags",
    )
}

/// (TF32 in cuBLAS matmuls, TF32 in cuDNN convolutions).
pub fn allow_tf32() -> Result<(bool, bool)> {
    let (mut b, mut d) = (0, 0);
    check(
        unsafe { abcond_ctx_get_allow_tf32(&mut b, &mut d) },
        "read the TF32 flags",
    )?;
    Ok((b != 0, d != 0))
}

/// libtorch's device-type code (c10::DeviceType) of the autocast state used on `d`.
fn device_code(d: Device) -> Result<c_int> {
    match d {
        Device::Cpu => Ok(0),
        Device::Cuda(_) => Ok(1),
        other => Err(anyhow!("autocast is not supported on device {other:?}")),
    }
}

/// The autocast state of this thread for `device`'s type: (enabled, dtype).
pub fn autocast_state(device: Device) -> Result<(bool, Kind)> {
    let (mut on, mut dtype) = (0, 0);
    check(
        unsafe { abcond_autocast_state(device_code(device)?, &mut on, &mut dtype) },
        "read the autocast state",
    )?;
    Ok((on != 0, kind_of(dtype)?))
}

/// c10::ScalarType codes of the floating kinds autocast deals in (tch keeps
/// its own mapping private; these values are fixed in c10/core/ScalarType.h).
const SCALAR_TYPES: [(Kind, c_int); 4] = [
    (Kind::Half, 5),
    (Kind::Float, 6),
    (Kind::Double, 7),
    (Kind::BFloat16, 15),
];

fn kind_of(code: c_int) -> Result<Kind> {
    SCALAR_TYPES
        .iter()
        .find(|(_, c)| *c == code)
        .map(|(k, _)| *k)
        .ok_or_else(|| {
            anyhow!(
                "libtorch reported autocast dtype code {code}, not a floating kind abcond knows"
            )
        })
}

fn code_of(kind: Kind) -> Result<c_int> {
    SCALAR_TYPES
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, c)| *c)
        .ok_or_else(|| {
            anyhow!("autocast to {kind:?} is not supported (half, bfloat16, float, double are)")
        })
}

/// An autocast region on this thread (`torch.autocast(device_type, dtype)`):
/// eligible f32 operations on `device`'s type run in `dtype` until the guard is
/// dropped, which restores the previous state and, leaving the outermost
/// region, clears the cache of casted weights.
pub struct Autocast {
    device: c_int,
    prev_enabled: c_int,
    prev_dtype: c_int,
}

impl Autocast {
    pub fn enter(device: Device, dtype: Kind) -> Result<Autocast> {
        let (device, dtype) = (device_code(device)?, code_of(dtype)?);
        let (mut prev_enabled, mut prev_dtype) = (0, 0);
        check(
            unsafe { abcond_autocast_enter(device, dtype, &mut prev_enabled, &mut prev_dtype) },
            "enter an autocast region",
        )?;
        Ok(Autocast {
            device,
            prev_enabled,
            prev_dtype,
        })
    }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        let code = unsafe { abcond_autocast_exit(self.device, self.prev_enabled, self.prev_dtype) };
        // Leaving autocast on would silently lower the precision of everything
        // after (the probe included): better to stop.
        if let Err(e) = check(code, "leave an autocast region") {
            panic!("{e:#}");
        }
    }
}

/// Unit tests that change the process-wide flags hold this lock.
#[cfg(test)]
pub(crate) static TEST_FLAGS: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;

    /// The global flags round-trip (at::Context is process-wide, so they can
    /// be set and read without a GPU). One test: the flags are shared by the
    /// test threads.
    #[test]
    fn context_flags_round_trip() {
        let _flags = TEST_FLAGS.lock().unwrap_or_else(|e| e.into_inner());
        let before = (
            deterministic_algorithms().unwrap(),
            cudnn().unwrap(),
            allow_tf32().unwrap(),
        );
        for on in [true, false, true] {
            set_deterministic_algorithms(on).unwrap();
            assert_eq!(deterministic_algorithms().unwrap(), (on, false));
            set_cudnn(!on, on).unwrap();
            assert_eq!(cudnn().unwrap(), (!on, on));
            set_allow_tf32(on, !on).unwrap();
            assert_eq!(allow_tf32().unwrap(), (on, !on));
        }
        set_deterministic_algorithms(before.0 .0).unwrap();
        set_cudnn(before.1 .0, before.1 .1).unwrap();
        set_allow_tf32(before.2 .0, before.2 .1).unwrap();
    }

    /// CPU autocast: a matmul of f32 tensors runs in bf16 inside the region
    /// and in f32 after it; nesting restores the outer state.
    #[test]
    fn cpu_autocast_region() {
        let a = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
        let before = autocast_state(Device::Cpu).unwrap();
        assert!(!before.0);
        {
            let _outer = Autocast::enter(Device::Cpu, Kind::BFloat16).unwrap();
            assert_eq!(autocast_state(Device::Cpu).unwrap(), (true, Kind::BFloat16));
            assert_eq!(a.matmul(&a).kind(), Kind::BFloat16);
            {
                let _inner = Autocast::enter(Device::Cpu, Kind::Half).unwrap();
                assert_eq!(autocast_state(Device::Cpu).unwrap(), (true, Kind::Half));
                assert_eq!(a.matmul(&a).kind(), Kind::Half);
            }
            assert_eq!(autocast_state(Device::Cpu).unwrap(), (true, Kind::BFloat16));
            // f64 is never lowered.
            let d = a.to_kind(Kind::Double);
            assert_eq!(d.matmul(&d).kind(), Kind::Double);
        }
        assert_eq!(autocast_state(Device::Cpu).unwrap(), before);
        assert_eq!(a.matmul(&a).kind(), Kind::Float);
    }

    use tch::Tensor;
}
