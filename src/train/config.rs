//! The `train:` and `snapshots:` sections of a config: how long to train,
//! the minibatch size, checkpoint cadence, precision of the training steps,
//! and which iterates x^k are kept.

use crate::config::validate::positive;
use crate::torch::dtype::{AutocastDtype, Dtype};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// Length of training and minibatch size. Exactly one of `steps`, `epochs`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub batch_size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u64>,
    /// Extra resume checkpoints every N steps (always written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_every: Option<u64>,
    /// Extra resume checkpoint when this many minutes passed since the last one.
    #[serde(default = "default_checkpoint_minutes")]
    pub checkpoint_minutes: f64,
    /// A snapshot step is also a resume checkpoint (a cheap one: the iterate
    /// is the snapshot) unless the last checkpoint was written less than this
    /// many seconds ago. 0: every snapshot step. The floor keeps a fast loop
    /// with frequent snapshots from writing the step rows, the optimiser state
    /// and run.yaml dozens of times a second; a crash then costs at most this
    /// much more work than with a checkpoint at every snapshot.
    #[serde(
        default = "default_checkpoint_min_seconds",
        skip_serializing_if = "is_default_checkpoint_min_seconds"
    )]
    pub checkpoint_min_seconds: f64,
    /// CUDA, f32 models: let cuBLAS matmuls and cuDNN convolutions of the
    /// training steps use TF32 tensor cores (10-bit mantissa products; several
    /// times faster on Ampere and later). Off by default, so that f32 training
    /// on a GPU stays close to the CPU and to other GPU generations; the probe
    /// never uses TF32 (src/torch/reproducibility.rs).
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_tf32: bool,
    /// Mixed precision of the training steps' forward pass and loss
    /// (`torch.autocast`): `bf16`, or absent for none. The backward pass
    /// follows the forward's dtypes; parameters, optimiser state and snapshots
    /// stay in `model.dtype`; steps.parquet records the autocast loss. The
    /// probe and curvature never autocast. f32 models only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autocast: Option<AutocastDtype>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl TrainConfig {
    /// Checks the training length and cadence; `dtype` is the model's.
    pub(crate) fn resolve(&self, dtype: Dtype) -> Result<()> {
        let t = self;
        if t.batch_size == 0 {
            bail!("key `train.batch_size` must be at least 1");
        }
        match (t.steps, t.epochs) {
            (Some(0), _) | (_, Some(0)) => {
                bail!("key `train.steps`/`train.epochs` must be at least 1")
            }
            (Some(_), Some(_)) => {
                bail!("keys `train.steps` and `train.epochs` are exclusive: set one")
            }
            (None, None) => bail!("set the length of training: `train.steps` or `train.epochs`"),
            _ => {}
        }
        if t.checkpoint_every == Some(0) {
            bail!("key `train.checkpoint_every` must be at least 1");
        }
        positive("train.checkpoint_minutes", t.checkpoint_minutes)?;
        if !(t.checkpoint_min_seconds.is_finite() && t.checkpoint_min_seconds >= 0.0) {
            bail!(
                "key `train.checkpoint_min_seconds` must be a number of seconds ≥ 0 (0: a checkpoint at every snapshot step), got {}",
                t.checkpoint_min_seconds
            );
        }
        // Both only change f32 arithmetic: autocast never lowers f64, and TF32
        // replaces f32 products only.
        if dtype == Dtype::F64 {
            if let Some(a) = t.autocast {
                bail!(
                    "key `train.autocast` ({}) applies to f32 models only (autocast never lowers f64 operations), but model.dtype is f64; remove the key or set model.dtype: f32",
                    a.name()
                );
            }
            if t.allow_tf32 {
                bail!("key `train.allow_tf32` applies to f32 models only (TF32 replaces f32 products), but model.dtype is f64; remove the key or set model.dtype: f32");
            }
        }
        Ok(())
    }

    /// The reproducibility policy of this run's training steps.
    pub fn phase(&self) -> crate::torch::reproducibility::Phase {
        crate::torch::reproducibility::Phase::Train {
            allow_tf32: self.allow_tf32,
            autocast: self.autocast,
        }
    }
}

pub(crate) fn default_checkpoint_minutes() -> f64 {
    10.0
}

fn default_checkpoint_min_seconds() -> f64 {
    10.0
}

/// Written to run.yaml only when set otherwise: run.yaml files stay readable
/// by builds that predate the key.
fn is_default_checkpoint_min_seconds(v: &f64) -> bool {
    *v == default_checkpoint_min_seconds()
}

/// Which iterates x^k are written to disk. The union of all given rules; the
/// final iterate x^K is always written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Every N steps (0, N, 2N, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
    /// About this many steps, log-spaced over [1, K], plus step 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_spaced: Option<u64>,
    /// Explicit steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub at: Vec<u64>,
    /// Also keep the optimiser state (momentum, Adam moments, step-size
    /// scalars) with every snapshot but x^K, as `optim.parquet` beside it:
    /// each such snapshot becomes a point where the replay probe can restart
    /// training, so that `probe --replay --shard` splits the run of a stateful
    /// optimiser. Costs the optimiser state's size per snapshot (0 to 2× the
    /// model). Not needed for SGD without momentum, SPS_max and NGN.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optimizer_state: bool,
}
