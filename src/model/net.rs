//! What every architecture shares: the [`Net`] trait (per-example losses),
//! the forward-pass [`Mode`] with its BatchNorm policy, and PyTorch-exact
//! initialisers of weights.

use crate::data::Batch;
use serde::{Deserialize, Serialize};
use tch::nn::Path;
use tch::{Device, Kind, Tensor};

/// How a forward pass treats stochastic and batch-dependent layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Training: dropout on, BatchNorm on batch statistics, running stats updated.
    Train,
    /// Measuring f_i for the probe: dropout off, BatchNorm per the policy, no
    /// state updated.
    Measure(BatchNormPolicy),
}

/// How BatchNorm layers normalise when the probe measures f_i (`probe.batchnorm`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BatchNormPolicy {
    /// Normalise with the statistics of the probed minibatch; running statistics
    /// are left untouched.
    #[default]
    BatchStats,
    /// Normalise with the running statistics stored in the snapshot (eval mode).
    RunningStats,
}

impl BatchNormPolicy {
    pub fn name(self) -> &'static str {
        match self {
            BatchNormPolicy::BatchStats => "batch-stats",
            BatchNormPolicy::RunningStats => "running-stats",
        }
    }
}

/// The architecture-specific part of a model.
pub trait Net {
    /// Per-example losses f_i(x) of the minibatch, shape [B].
    fn per_example_loss(&self, batch: &Batch, mode: Mode) -> Tensor;

    /// The class logits [B, classes] of a classifier (f_i is their cross
    /// entropy): the held-out evaluation's accuracy. None for other nets.
    fn logits(&self, _batch: &Batch, _mode: Mode) -> Option<Tensor> {
        None
    }

    /// The known-answer problem (minimiser set S) behind the model, if any.
    fn known(&self) -> Option<&super::known::problem::Problem> {
        None
    }

    /// Moves tensors the net holds outside the VarStore (constants of the
    /// known-answer problems) to `device`; the VarStore moves itself.
    fn to_device(&mut self, _device: Device) {}

    /// Whether the net has BatchNorm layers, when only the loaded net knows
    /// (TorchScript modules); None: the model kind says.
    fn has_batchnorm(&self) -> Option<bool> {
        None
    }

    /// Whether the training forward pass (`Mode::Train`) computes the same
    /// per-example losses as the probe's measurement mode under `policy`: no
    /// dropout, no other train-only behaviour, and BatchNorm (if any) on batch
    /// statistics in both (training only also updates the running statistics).
    /// The replay probe then reuses the training step's gradient for its row
    /// (src/probe/replay.rs), checked against a separate measurement at every
    /// stored iterate. False unless a net says so.
    fn train_is_measure(&self, _policy: BatchNormPolicy) -> bool {
        false
    }

    /// Whether a TorchScript module's training pass draws random numbers
    /// (it declares dropout): a PyTorch loop drew them from its own
    /// generator, which the replay of a logged run cannot re-draw. abcond's
    /// own nets re-draw theirs from (seed, step) and return false.
    fn loop_randomness(&self) -> bool {
        false
    }

    /// Checks that the probe can measure f_i deterministically under
    /// `policy` (TorchScript modules with BatchNorm and dropout cannot under
    /// batch statistics).
    fn check_policy(&self, _policy: BatchNormPolicy) -> anyhow::Result<()> {
        Ok(())
    }
}

/// A weight initialised like torch.nn.Linear's (kaiming_uniform_ with a = √5,
/// i.e. U(−1/√fan_in, 1/√fan_in), with the bound computed exactly as PyTorch does).
pub(crate) fn linear_weight(p: &Path, name: &str, out_dim: i64, in_dim: i64) -> Tensor {
    let a = 5f64.sqrt();
    let gain = (2.0 / (1.0 + a * a)).sqrt();
    let std = gain / (in_dim as f64).sqrt();
    let bound = 3f64.sqrt() * std;
    uniform(p, name, &[out_dim, in_dim], bound)
}

/// A bias initialised like torch.nn.Linear's: U(−1/√fan_in, 1/√fan_in).
pub(crate) fn linear_bias(p: &Path, name: &str, out_dim: i64, in_dim: i64) -> Tensor {
    uniform(p, name, &[out_dim], 1.0 / (in_dim as f64).sqrt())
}

fn uniform(p: &Path, name: &str, dims: &[i64], bound: f64) -> Tensor {
    let t = tch::no_grad(|| Tensor::empty(dims, (p.kind(), p.device())).uniform_(-bound, bound));
    p.add(name, t, true)
}

/// A weight drawn N(0, std²) like `torch.randn(dims) * std`.
pub(crate) fn normal(p: &Path, name: &str, dims: &[i64], std: f64) -> Tensor {
    let t = tch::no_grad(|| Tensor::randn(dims, (p.kind(), p.device())) * std);
    p.add(name, t, true)
}

/// The mean next-token cross-entropy of each window: `logits` [B, T, V],
/// `y` [B, T] int64 → [B], in at least f32 (bf16/f16 logits under autocast).
pub(crate) fn next_token_loss(logits: &Tensor, y: &Tensor) -> Tensor {
    let kind = match logits.kind() {
        Kind::Half | Kind::BFloat16 => Kind::Float,
        k => k,
    };
    let nll = -logits
        .log_softmax(-1, kind)
        .gather(2, &y.unsqueeze(2), false)
        .squeeze_dim(2);
    nll.mean_dim(Some([1i64].as_slice()), false, kind)
}

/// Labels {0, 1} → b in {−1, +1} in the model dtype.
pub(crate) fn plus_minus_one(y: &Tensor, kind: Kind) -> Tensor {
    y.to_kind(kind) * 2.0 - 1.0
}
