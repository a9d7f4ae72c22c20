//! Convolution and BatchNorm layers of the vision models, initialised exactly
//! like PyTorch's `nn.Conv2d` / `nn.BatchNorm2d` defaults (so that, drawn in
//! the same order, x^0 equals PyTorch's after `torch.manual_seed`):
//! conv weight kaiming_uniform_(a = √5), i.e. U(±1/√fan_in) with PyTorch's
//! bound arithmetic, conv bias U(±1/√fan_in), fan_in = C_in·k·k; BatchNorm
//! weight 1, bias 0, running_mean 0, running_var 1 (eps 1e-5, momentum 0.1).
//! The running statistics are buffers (Role::Buffer in snapshots); PyTorch's
//! `num_batches_tracked` counter is not kept (with momentum 0.1 it is unused).

use super::net::BatchNormPolicy;
use super::net::Mode;
use tch::nn::Path;
use tch::Tensor;

fn uniform(p: &Path, name: &str, dims: &[i64], bound: f64) -> Tensor {
    let t = tch::no_grad(|| Tensor::empty(dims, (p.kind(), p.device())).uniform_(-bound, bound));
    p.add(name, t, true)
}

/// A non-trainable buffer filled with `value`, in the model's dtype (tch's
/// `zeros_no_train` always makes f32, which breaks f64 models).
pub(crate) fn buffer(p: &Path, name: &str, dims: &[i64], value: f64) -> Tensor {
    let t = Tensor::full(dims, value, (p.kind(), p.device()));
    p.add(name, t, false)
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
            running_mean: buffer(p, "running_mean", &[c], 0.0),
            running_var: buffer(p, "running_var", &[c], 1.0),
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

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::VarStore;
    use tch::{Device, Kind};

    /// The probe's modes never touch the running statistics; a training step
    /// does (PyTorch: momentum 0.1, unbiased variance). In f64 too (the buffers
    /// take the model's dtype).
    #[test]
    fn batchnorm_modes_and_running_statistics() {
        for kind in [Kind::Float, Kind::Double] {
            let mut vs = VarStore::new(Device::Cpu);
            vs.set_kind(kind);
            let bn = BatchNorm2d::new(&vs.root(), 2);
            tch::manual_seed(1);
            let x = Tensor::randn([4, 2, 3, 3], (kind, Device::Cpu)) * 2.0 + 1.0;
            let stats = |bn: &BatchNorm2d| (bn.running_mean.copy(), bn.running_var.copy());
            let (m0, v0) = stats(&bn);
            assert_eq!(m0.kind(), kind);
            for policy in [BatchNormPolicy::BatchStats, BatchNormPolicy::RunningStats] {
                let _ = tch::no_grad(|| bn.forward(&x, Mode::Measure(policy)));
                let (m, v) = stats(&bn);
                assert!(
                    m.equal(&m0) && v.equal(&v0),
                    "{policy:?} changed the running statistics"
                );
            }
            // eval mode with fresh statistics (mean 0, var 1) is the identity up to eps
            let y = tch::no_grad(|| bn.forward(&x, Mode::Measure(BatchNormPolicy::RunningStats)));
            let want = &x / (1.0 + BN_EPS).sqrt();
            assert!(y.allclose(&want, 1e-6, 1e-6, false));
            let _ = tch::no_grad(|| bn.forward(&x, Mode::Train));
            let (m1, v1) = stats(&bn);
            let mean = x.mean_dim([0, 2, 3].as_slice(), false, kind);
            let var = x.var_dim([0, 2, 3].as_slice(), true, false);
            assert!(m1.allclose(&(&mean * BN_MOMENTUM), 1e-6, 1e-6, false));
            assert!(v1.allclose(
                &(&var * BN_MOMENTUM + (1.0 - BN_MOMENTUM)),
                1e-6,
                1e-6,
                false
            ));
        }
    }
}
