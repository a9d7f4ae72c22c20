//! The reproducibility policy of a run phase (training, probing) and the
//! record of it that `run.yaml` keeps.
//!
//! On CUDA both phases run with
//! - deterministic algorithms on (`torch.use_deterministic_algorithms(True)`):
//!   an operation without a deterministic CUDA implementation fails with
//!   libtorch's error instead of silently varying between runs;
//! - cuDNN benchmark off and cuDNN deterministic on (the same convolution
//!   algorithm every run);
//! - `CUBLAS_WORKSPACE_CONFIG=:4096:8`, set in the process environment at start
//!   ([`init_process_env`], before CUDA initialises) unless the user set it;
//!   deterministic cuBLAS needs it (libtorch refuses cuBLAS calls under
//!   deterministic algorithms without `:4096:8` or `:16:8`);
//! - TF32 off in cuBLAS and cuDNN; training may allow it with
//!   `train.allow_tf32: true`, the probe never does (its inner products and
//!   norms are the measurement);
//! - training may autocast its forward pass to bf16 (`train.autocast`), never
//!   the probe or the curvature pass.
//!
//! On the CPU the flags are left at libtorch's defaults (deterministic
//! algorithms off; libtorch's CPU kernels give the same bits for the same
//! inputs and thread count) and the CUDA-only settings are recorded as null.
//! Either way the record holds what libtorch reports after the settings were
//! applied, not what was asked for.

use crate::torch::ctx;
use crate::torch::dtype::AutocastDtype;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use tch::Device;

/// The environment variable cuBLAS reads for its workspace layout.
pub const CUBLAS_WORKSPACE_ENV: &str = "CUBLAS_WORKSPACE_CONFIG";
/// What abcond sets when the environment does not say.
pub const CUBLAS_WORKSPACE_DEFAULT: &str = ":4096:8";
/// The values under which cuBLAS is deterministic (libtorch accepts exactly these).
pub const CUBLAS_WORKSPACE_DETERMINISTIC: [&str; 2] = [":4096:8", ":16:8"];

/// CUBLAS_WORKSPACE_CONFIG of this process and who chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CublasWorkspace {
    pub value: String,
    /// `environment` (the user's) or `abcond` (the default, set at start).
    pub from: &'static str,
}

static CUBLAS_WORKSPACE: OnceLock<CublasWorkspace> = OnceLock::new();

/// Sets CUBLAS_WORKSPACE_CONFIG to `:4096:8` unless the environment has it, and
/// remembers which. `abcond`'s main calls this first, while the process has a
/// single thread and before CUDA (and cuBLAS) initialise; later calls return
/// the remembered value.
pub fn init_process_env() -> &'static CublasWorkspace {
    CUBLAS_WORKSPACE.get_or_init(|| match std::env::var(CUBLAS_WORKSPACE_ENV) {
        Ok(value) => CublasWorkspace {
            value,
            from: "environment",
        },
        Err(_) => {
            std::env::set_var(CUBLAS_WORKSPACE_ENV, CUBLAS_WORKSPACE_DEFAULT);
            CublasWorkspace {
                value: CUBLAS_WORKSPACE_DEFAULT.to_string(),
                from: "abcond",
            }
        }
    })
}

/// Fails unless `w` makes cuBLAS deterministic.
pub fn check_cublas_workspace(w: &CublasWorkspace) -> Result<()> {
    if !CUBLAS_WORKSPACE_DETERMINISTIC.contains(&w.value.as_str()) {
        bail!(
            "the environment sets {CUBLAS_WORKSPACE_ENV}={:?}, but deterministic cuBLAS on CUDA needs {} (unset it and abcond sets {CUBLAS_WORKSPACE_DEFAULT})",
            w.value,
            CUBLAS_WORKSPACE_DETERMINISTIC.join(" or ")
        );
    }
    Ok(())
}

/// What a phase computes; decides TF32 and autocast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Training steps, with the run's `train.allow_tf32` and `train.autocast`.
    Train {
        allow_tf32: bool,
        autocast: Option<AutocastDtype>,
    },
    /// Probe and curvature: TF32 off, no autocast.
    Probe,
}

/// The settings in force for a phase, as libtorch reports them after
/// [`apply`] (`reproducibility` in run.yaml: under each training session and
/// under `probe`). null: does not apply on this device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reproducibility {
    /// `torch.use_deterministic_algorithms` (never warn-only).
    pub deterministic_algorithms: bool,
    /// `torch.backends.cudnn.benchmark` (CUDA).
    pub cudnn_benchmark: Option<bool>,
    /// `torch.backends.cudnn.deterministic` (CUDA).
    pub cudnn_deterministic: Option<bool>,
    /// TF32 in cuBLAS matmuls (CUDA).
    pub allow_tf32_cublas: Option<bool>,
    /// TF32 in cuDNN convolutions (CUDA).
    pub allow_tf32_cudnn: Option<bool>,
    /// CUBLAS_WORKSPACE_CONFIG of the process (CUDA).
    pub cublas_workspace_config: Option<String>,
    /// Who set it: `environment` or `abcond` (CUDA).
    pub cublas_workspace_config_from: Option<String>,
    /// The autocast dtype of the training forward pass, read back inside an
    /// autocast region; null: no autocast (always for the probe).
    pub autocast: Option<String>,
    /// libtorch's intra-op CPU threads (CPU results depend on it).
    pub cpu_threads: i64,
}

/// Applies the policy of `phase` on `device` (see the module doc) and returns
/// what libtorch reports.
pub fn apply(device: Device, phase: Phase) -> Result<Reproducibility> {
    let (allow_tf32, autocast) = match phase {
        Phase::Train {
            allow_tf32,
            autocast,
        } => (allow_tf32, autocast),
        Phase::Probe => (false, None),
    };
    let cuda = device.is_cuda();
    let mut cublas = None;
    if cuda {
        let w = init_process_env();
        check_cublas_workspace(w)?;
        cublas = Some(w);
        ctx::set_deterministic_algorithms(true)?;
        ctx::set_cudnn(false, true)?;
        ctx::set_allow_tf32(allow_tf32, allow_tf32)?;
    } else {
        // libtorch's defaults: undoes a CUDA phase earlier in this process.
        ctx::set_deterministic_algorithms(false)?;
    }
    let autocast = match autocast {
        None => None,
        Some(dtype) => {
            let _region = ctx::Autocast::enter(device, dtype.kind())?;
            let (on, kind) = ctx::autocast_state(device)?;
            if !(on && kind == dtype.kind()) {
                bail!("libtorch did not enable {} autocast on {device:?} (it reports enabled={on}, dtype {kind:?})", dtype.name());
            }
            Some(dtype.name().to_string())
        }
    };
    let (deterministic, _) = ctx::deterministic_algorithms()?;
    let (benchmark, cudnn_deterministic) = ctx::cudnn()?;
    let (tf32_cublas, tf32_cudnn) = ctx::allow_tf32()?;
    let on_cuda = |v| cuda.then_some(v);
    Ok(Reproducibility {
        deterministic_algorithms: deterministic,
        cudnn_benchmark: on_cuda(benchmark),
        cudnn_deterministic: on_cuda(cudnn_deterministic),
        allow_tf32_cublas: on_cuda(tf32_cublas),
        allow_tf32_cudnn: on_cuda(tf32_cudnn),
        cublas_workspace_config: cublas.map(|w| w.value.clone()),
        cublas_workspace_config_from: cublas.map(|w| w.from.to_string()),
        autocast,
        cpu_threads: tch::get_num_threads() as i64,
    })
}

/// The training forward pass of one step, under `train.autocast` when set.
pub fn autocast_region(
    device: Device,
    autocast: Option<AutocastDtype>,
) -> Result<Option<ctx::Autocast>> {
    autocast
        .map(|a| ctx::Autocast::enter(device, a.kind()))
        .transpose()
        .context("entering the autocast region of a training step")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cublas_workspace_values() {
        for v in CUBLAS_WORKSPACE_DETERMINISTIC {
            let w = CublasWorkspace {
                value: v.into(),
                from: "environment",
            };
            assert!(check_cublas_workspace(&w).is_ok(), "{v}");
        }
        let w = CublasWorkspace {
            value: ":0:0".into(),
            from: "environment",
        };
        let msg = format!("{:#}", check_cublas_workspace(&w).unwrap_err());
        assert!(
            msg.contains("CUBLAS_WORKSPACE_CONFIG=\":0:0\"") && msg.contains(":4096:8 or :16:8"),
            "{msg}"
        );
    }

    /// The CPU policy restores libtorch's default and records the CUDA-only
    /// settings as null; bf16 autocast is read back inside a region and left
    /// off afterwards.
    #[test]
    fn cpu_policy_record() {
        let _flags = ctx::TEST_FLAGS.lock().unwrap_or_else(|e| e.into_inner());
        ctx::set_deterministic_algorithms(true).unwrap();
        let r = apply(
            Device::Cpu,
            Phase::Train {
                allow_tf32: false,
                autocast: Some(AutocastDtype::Bf16),
            },
        )
        .unwrap();
        assert!(!r.deterministic_algorithms);
        assert_eq!(r.autocast.as_deref(), Some("bf16"));
        assert_eq!(
            (
                r.cudnn_benchmark,
                r.cudnn_deterministic,
                r.allow_tf32_cublas,
                r.allow_tf32_cudnn
            ),
            (None, None, None, None)
        );
        assert_eq!(r.cublas_workspace_config, None);
        assert!(r.cpu_threads >= 1);
        assert!(!ctx::autocast_state(Device::Cpu).unwrap().0);
        let p = apply(Device::Cpu, Phase::Probe).unwrap();
        assert_eq!(p.autocast, None);
    }

    /// A CUDA record survives run.yaml (the workspace value starts with ':').
    #[test]
    fn record_round_trips_through_yaml() {
        let r = Reproducibility {
            deterministic_algorithms: true,
            cudnn_benchmark: Some(false),
            cudnn_deterministic: Some(true),
            allow_tf32_cublas: Some(false),
            allow_tf32_cudnn: Some(false),
            cublas_workspace_config: Some(CUBLAS_WORKSPACE_DEFAULT.into()),
            cublas_workspace_config_from: Some("abcond".into()),
            autocast: Some("bf16".into()),
            cpu_threads: 16,
        };
        let text = serde_yaml::to_string(&r).unwrap();
        println!("{text}");
        assert_eq!(serde_yaml::from_str::<Reproducibility>(&text).unwrap(), r);
    }
}
