//! Convolution and BatchNorm layers of the vision models, initialised exactly
//! like PyTorch's `nn.Conv2d` / `nn.BatchNorm2d` defaults (so that, drawn in
//! the same order, x^0 equals PyTorch's after `torch.manual_seed`):
//! conv weight kaiming_uniform_(a = √5), i.e. U(±1/√fan_in) with PyTorch's
//! bound arithmetic, conv bias U(±1/√fan_in), fan_in = C_in·k·k; BatchNorm
//! weight 1, bias 0, running_mean 0, running_var 1 (eps 1e-5, momentum 0.1).
//! The running statistics are buffers (Role::Buffer in snapshots); PyTorch's
//! `num_batches_tracked` counter is not kept (with momentum 0.1 it is unused).

use super::Mode;
use crate::config::BatchNormPolicy;
use tch::nn::Path;
use tch::Tensor;

fn uniform(p: &Path, name: &str, dims: &[i64], bound: f64) -> Tensor {
    let t = tch::no_grad(|| Tensor::empty(dims, (p.kind(), p.device())).uniform_(-bound, bound));
    p.add(name, t, true)
}

/// kaiming_uniform_(a = √5) with PyTorch's arithmetic: gain √(2/(1+a²)),
/// std gain/√fan_in, bound √3·std.
pub(crate) fn kaiming_uniform(p: &Path, name: &str, dims: &[i64], fan_in: i64) -> Tensor {
    let a = 5f64.sqrt();
    let gain = (2.0 / (1.0 + a * a)).sqrt();
    let std = gain / (fan_in as f64).sqrt();
    uniform(p, name, dims, 3f64.sqrt() * std)
}

pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: i64,
    padding: i64,
}

impl Conv2d {
    pub fn new(
        p: &Path,
        c_in: i64,
        c_out: i64,
        k: i64,
        stride: i64,
        padding: i64,
        bias: bool,
    ) -> Conv2d {
        let fan_in = c_in * k * k;
        let weight = kaiming_uniform(p, "weight", &[c_out, c_in, k, k], fan_in);
        let bias = bias.then(|| uniform(p, "bias", &[c_out], 1.0 / (fan_in as f64).sqrt()));
        Conv2d {
            weight,
            bias,
            stride,
            padding,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.conv2d(
            &self.weight,
            self.bias.as_ref(),
            [self.stride, self.stride],
            [self.padding, self.padding],
            [1, 1],
            1,
        )
    }
}

pub struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    pub fn new(p: &Path, d_in: i64, d_out: i64) -> Linear {
        Linear {
            weight: kaiming_uniform(p, "weight", &[d_out, d_in], d_in),
            bias: uniform(p, "bias", &[d_out], 1.0 / (d_in as f64).sqrt()),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, Some(&self.bias))
    }
}

pub struct BatchNorm2d {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
}

pub const BN_EPS: f64 = 1e-5;
pub const BN_MOMENTUM: f64 = 0.1;

impl BatchNorm2d {
    pub fn new(p: &Path, c: i64) -> BatchNorm2d {
        BatchNorm2d {
            weight: p.ones("weight", &[c]),
            bias: p.zeros("bias", &[c]),
            running_mean: p.zeros_no_train("running_mean", &[c]),
            running_var: p.ones_no_train("running_var", &[c]),
        }
    }

    /// Train: batch statistics, running statistics updated (PyTorch's
    /// `train()` mode, unbiased variance in the running update). Measure with
    /// batch-stats: batch statistics, running statistics not touched. Measure
    /// with running-stats: the stored running statistics (PyTorch's `eval()`).
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Tensor {
        let (running, training) = match mode {
            Mode::Train => (true, true),
            Mode::Measure(BatchNormPolicy::BatchStats) => (false, true),
            Mode::Measure(BatchNormPolicy::RunningStats) => (true, false),
        };
        x.batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            running.then_some(&self.running_mean),
            running.then_some(&self.running_var),
            training,
            BN_MOMENTUM,
            BN_EPS,
            true,
        )
    }
}
