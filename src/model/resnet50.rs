//! ResNet-50 of AlgoPerf's `imagenet_resnet` workload
//! (`algoperf/workloads/imagenet_resnet/imagenet_pytorch/models.py`, adapted from
//! torchvision's `resnet.py`; He et al. 2016, "v1.5": the stride sits on the 3×3 conv).
//!
//! Input [B, 3, H, W] (224×224 for ImageNet; any size ≥ 32 works thanks to the
//! adaptive average pool) → logits [B, C] → cross-entropy per example.
//! Layout: conv1 7×7/2 (no bias) → bn1 → ReLU → max-pool 3×3/2 → layer1..4 of
//! Bottleneck blocks [3, 4, 6, 3] with planes w·[1, 2, 4, 8] (w = `model.width`,
//! 64 for the real model) and expansion 4 → global average pool → fc.
//! A Bottleneck is conv1 1×1 → bn1 → ReLU → conv2 3×3/s → bn2 → ReLU → conv3 1×1
//! → bn3, plus the identity or `downsample` (0: conv 1×1/s, 1: BatchNorm), then
//! ReLU. Parameter names are torchvision's state_dict keys
//! (`layer2.0.downsample.0.weight`, …), so a torchvision ResNet-50 loads an abcond
//! snapshot; 25,557,032 parameters with w = 64 and 1000 classes.
//!
//! Initialisation as AlgoPerf: convolutions LeCun truncated normal
//! (`pytorch_default_init`), BatchNorm weight 1 and bias 0 except the last BN of
//! every block (bn3), whose weight starts at 0 (zero-init residual), fc weight
//! N(0, 0.01²) and bias 0.
//!
//! BatchNorm (eps 1e-5, momentum 0.1) follows [`Mode`]: `Train` normalises with the
//! minibatch statistics and updates the running statistics (buffers
//! `running_mean`, `running_var`, stored in snapshots as Role::Buffer);
//! `Measure(batch-stats)` normalises with the measured minibatch's statistics and
//! leaves the running statistics alone; `Measure(running-stats)` is eval mode.
//! torchvision's `num_batches_tracked` counter is not kept: it only matters for
//! momentum = None.

use super::layers::buffer;
use super::mlp::cross_entropy_per_example;
use super::net::BatchNormPolicy;
use super::net::{Mode, Net};
use crate::data::Batch;
use tch::nn::Path;
use tch::Tensor;

/// Φ(−2): the truncation point of PyTorch's `trunc_normal_` at ±2 std in
/// probability space.
const PHI_MINUS_2: f64 = 0.022_750_131_948_179_195;

/// AlgoPerf's `pytorch_default_init` weight: a normal with std
/// sqrt(1/fan_in)/0.87962566103423978 truncated at ±2 std, drawn as PyTorch's
/// `trunc_normal_` does (inverse CDF of a uniform draw).
pub(crate) fn lecun_trunc_normal(p: &Path, name: &str, dims: &[i64], fan_in: i64) -> Tensor {
    let std = (1.0 / fan_in as f64).sqrt() / 0.879_625_661_034_239_8;
    let t = tch::no_grad(|| {
        let mut u = Tensor::empty(dims, (p.kind(), p.device()));
        let _ = u.uniform_(2.0 * PHI_MINUS_2 - 1.0, 1.0 - 2.0 * PHI_MINUS_2);
        let _ = u.erfinv_();
        let _ = u.g_mul_scalar_(std * std::f64::consts::SQRT_2);
        u.clamp(-2.0 * std, 2.0 * std)
    });
    p.add(name, t, true)
}

/// BatchNorm2d with running statistics as buffers, applied per [`Mode`].
pub(crate) struct BatchNorm2d {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
}

impl BatchNorm2d {
    pub(crate) fn new(p: &Path, channels: i64, weight_init: f64) -> BatchNorm2d {
        let weight = p.add(
            "weight",
            Tensor::full([channels], weight_init, (p.kind(), p.device())),
            true,
        );
        BatchNorm2d {
            weight,
            bias: p.zeros("bias", &[channels]),
            running_mean: buffer(p, "running_mean", &[channels], 0.0),
            running_var: buffer(p, "running_var", &[channels], 1.0),
        }
    }

    pub(crate) fn forward(&self, x: &Tensor, mode: Mode) -> Tensor {
        let (w, b) = (Some(&self.weight), Some(&self.bias));
        match mode {
            // Batch statistics; running statistics updated in place.
            Mode::Train => x.batch_norm(
                w,
                b,
                Some(&self.running_mean),
                Some(&self.running_var),
                true,
                0.1,
                1e-5,
                false,
            ),
            // Batch statistics, nothing updated.
            Mode::Measure(BatchNormPolicy::BatchStats) => {
                x.batch_norm(w, b, None, None, true, 0.1, 1e-5, false)
            }
            Mode::Measure(BatchNormPolicy::RunningStats) => x.batch_norm(
                w,
                b,
                Some(&self.running_mean),
                Some(&self.running_var),
                false,
                0.1,
                1e-5,
                false,
            ),
        }
    }
}

fn conv(p: &Path, name: &str, c_in: i64, c_out: i64, k: i64) -> Tensor {
    lecun_trunc_normal(p, name, &[c_out, c_in, k, k], c_in * k * k)
}

struct Bottleneck {
    conv1: Tensor,
    bn1: BatchNorm2d,
    conv2: Tensor,
    bn2: BatchNorm2d,
    conv3: Tensor,
    bn3: BatchNorm2d,
    stride: i64,
    downsample: Option<(Tensor, BatchNorm2d)>,
}

const EXPANSION: i64 = 4;

impl Bottleneck {
    fn new(p: &Path, c_in: i64, planes: i64, stride: i64) -> Bottleneck {
        let c_out = planes * EXPANSION;
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            let d = p / "downsample";
            (
                conv(&(&d / "0"), "weight", c_in, c_out, 1),
                BatchNorm2d::new(&(&d / "1"), c_out, 1.0),
            )
        });
        Bottleneck {
            conv1: conv(&(p / "conv1"), "weight", c_in, planes, 1),
            bn1: BatchNorm2d::new(&(p / "bn1"), planes, 1.0),
            conv2: conv(&(p / "conv2"), "weight", planes, planes, 3),
            bn2: BatchNorm2d::new(&(p / "bn2"), planes, 1.0),
            conv3: conv(&(p / "conv3"), "weight", planes, c_out, 1),
            // Zero-init residual: each block starts as the identity.
            bn3: BatchNorm2d::new(&(p / "bn3"), c_out, 0.0),
            stride,
            downsample,
        }
    }

    fn forward(&self, x: &Tensor, mode: Mode) -> Tensor {
        let s = self.stride;
        let h = x.conv2d(&self.conv1, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1);
        let h = self.bn1.forward(&h, mode).relu();
        let h = h.conv2d(&self.conv2, None::<Tensor>, [s, s], [1, 1], [1, 1], 1);
        let h = self.bn2.forward(&h, mode).relu();
        let h = h.conv2d(&self.conv3, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1);
        let h = self.bn3.forward(&h, mode);
        let identity = match &self.downsample {
            Some((w, bn)) => bn.forward(
                &x.conv2d(w, None::<Tensor>, [s, s], [0, 0], [1, 1], 1),
                mode,
            ),
            None => x.shallow_clone(),
        };
        (h + identity).relu()
    }
}

pub struct ResNet50 {
    conv1: Tensor,
    bn1: BatchNorm2d,
    blocks: Vec<Bottleneck>,
    fc_weight: Tensor,
    fc_bias: Tensor,
}

/// Blocks per stage of ResNet-50.
pub const STAGES: [i64; 4] = [3, 4, 6, 3];

impl ResNet50 {
    /// `width`: stem channels (64 in ResNet-50); stage i has width·2^i planes.
    pub fn new(p: &Path, width: i64, classes: i64) -> ResNet50 {
        let conv1 = conv(&(p / "conv1"), "weight", 3, width, 7);
        let bn1 = BatchNorm2d::new(&(p / "bn1"), width, 1.0);
        let mut blocks = Vec::new();
        let mut c_in = width;
        for (i, &n) in STAGES.iter().enumerate() {
            let planes = width << i;
            let layer = p / format!("layer{}", i + 1);
            for j in 0..n {
                let stride = if i > 0 && j == 0 { 2 } else { 1 };
                blocks.push(Bottleneck::new(
                    &(&layer / j.to_string()),
                    c_in,
                    planes,
                    stride,
                ));
                c_in = planes * EXPANSION;
            }
        }
        let fc = p / "fc";
        let fc_weight = super::net::normal(&fc, "weight", &[classes, c_in], 0.01);
        let fc_bias = fc.zeros("bias", &[classes]);
        ResNet50 {
            conv1,
            bn1,
            blocks,
            fc_weight,
            fc_bias,
        }
    }

    /// Logits [B, C].
    pub fn logits(&self, x: &Tensor, mode: Mode) -> Tensor {
        let h = x.conv2d(&self.conv1, None::<Tensor>, [2, 2], [3, 3], [1, 1], 1);
        let mut h =
            self.bn1
                .forward(&h, mode)
                .relu()
                .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for b in &self.blocks {
            h = b.forward(&h, mode);
        }
        h.adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
            .linear(&self.fc_weight, Some(&self.fc_bias))
    }
}

impl Net for ResNet50 {
    // BatchNorm on batch statistics either way; no dropout.
    fn train_is_measure(&self, policy: BatchNormPolicy) -> bool {
        policy == BatchNormPolicy::BatchStats
    }

    fn logits(&self, batch: &Batch, mode: Mode) -> Option<Tensor> {
        Some(self.logits(&batch.x, mode))
    }

    fn per_example_loss(&self, batch: &Batch, mode: Mode) -> Tensor {
        let logits = Net::logits(self, batch, mode).expect("a classifier has logits");
        cross_entropy_per_example(&logits, &batch.y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::VarStore;
    use tch::{Device, Kind};

    #[test]
    fn full_size_has_torchvision_parameter_count() {
        let vs = VarStore::new(Device::Cpu);
        let _net = ResNet50::new(&vs.root(), 64, 1000);
        let vars = vs.variables();
        let params: i64 = vars
            .values()
            .filter(|t| t.requires_grad())
            .map(|t| t.numel() as i64)
            .sum();
        assert_eq!(params, 25_557_032);
        // 53 BatchNorms, each with running mean and variance as buffers.
        let buffers = vars.values().filter(|t| !t.requires_grad()).count();
        assert_eq!(buffers, 2 * 53);
        assert!(vars.contains_key("layer4.0.downsample.0.weight"));
        assert!(vars.contains_key("layer3.5.bn3.running_var"));
    }

    #[test]
    fn batchnorm_policies() {
        let vs = VarStore::new(Device::Cpu);
        let bn = BatchNorm2d::new(&vs.root(), 2, 1.0);
        let x = Tensor::randn([4, 2, 3, 3], (Kind::Float, Device::Cpu)) * 3.0 + 1.0;
        let m = Mode::Measure(BatchNormPolicy::BatchStats);
        let y = bn.forward(&x, m);
        // Batch statistics: every channel has mean 0, and the running stats stay.
        let mean = y.mean_dim([0, 2, 3].as_slice(), false, Kind::Double);
        assert!(mean.abs().max().double_value(&[]) < 1e-5);
        assert_eq!(
            bn.running_mean.abs().sum(Kind::Double).double_value(&[]),
            0.0
        );
        // Eval mode with fresh running stats (0, 1) is the identity (up to eps).
        let e = bn.forward(&x, Mode::Measure(BatchNormPolicy::RunningStats));
        let diff = (e - &x / (1.0f64 + 1e-5).sqrt())
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff < 1e-5, "{diff}");
        // Train updates the running mean by momentum 0.1 towards the batch mean.
        let _ = bn.forward(&x, Mode::Train);
        let want = x.mean_dim([0, 2, 3].as_slice(), false, Kind::Float) * 0.1;
        let got = (&bn.running_mean - want).abs().max().double_value(&[]);
        assert!(got < 1e-6, "{got}");
    }
}
