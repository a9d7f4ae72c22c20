//! ResNet18 and ResNet34 (He et al. 2016, "Deep residual learning for image
//! recognition") in their CIFAR form, as in the paper's depth study (Islamov et
//! al. 2024, App. D.7) and AlgoPerf's CIFAR-10 ResNet-18: a 3×3 stem
//! convolution with stride 1 and no max-pool, then four stages of BasicBlocks
//! ([2, 2, 2, 2] for ResNet18, [3, 4, 6, 3] for ResNet34) with 64, 128, 256, 512
//! channels (stride 2 at the first block of stages 2–4), global average pool,
//! linear classifier.
//!
//!   conv1 3×3/1 (no bias) → bn1 → ReLU → layer1 … layer4 → avgpool → fc
//!   BasicBlock: conv1 3×3/s → bn1 → ReLU → conv2 3×3/1 → bn2, plus the
//!   shortcut (identity, or downsample = 1×1/s conv → BN when the shape
//!   changes), then ReLU.
//!
//! Parameter names are torchvision's (conv1.weight, bn1.running_mean,
//! layer1.0.conv1.weight, layer2.0.downsample.0.weight, fc.bias, …).
//! Initialisation is PyTorch's module default (layers.rs), not torchvision's
//! kaiming_normal_(fan_out) override, so that x^0 is reproducible by a plain
//! PyTorch module. With 10 classes ResNet18 has 11 173 962 parameters, ResNet34
//! 21 282 122. Input [B, C, H, W].

use super::layers::{BatchNorm2d, Conv2d, Linear};
use super::mlp::cross_entropy_per_example;
use super::net::{Mode, Net};
use crate::data::Batch;
use crate::model::net::BatchNormPolicy;
use tch::nn::Path;
use tch::Tensor;

struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    downsample: Option<(Conv2d, BatchNorm2d)>,
}

impl BasicBlock {
    fn new(p: &Path, c_in: i64, c_out: i64, stride: i64) -> BasicBlock {
        let conv1 = Conv2d::new(&(p / "conv1"), c_in, c_out, 3, stride, 1, false);
        let bn1 = BatchNorm2d::new(&(p / "bn1"), c_out);
        let conv2 = Conv2d::new(&(p / "conv2"), c_out, c_out, 3, 1, 1, false);
        let bn2 = BatchNorm2d::new(&(p / "bn2"), c_out);
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            let d = p / "downsample";
            (
                Conv2d::new(&(&d / 0), c_in, c_out, 1, stride, 0, false),
                BatchNorm2d::new(&(&d / 1), c_out),
            )
        });
        BasicBlock {
            conv1,
            bn1,
            conv2,
            bn2,
            downsample,
        }
    }

    fn forward(&self, x: &Tensor, mode: Mode) -> Tensor {
        let h = self.bn1.forward(&self.conv1.forward(x), mode).relu();
        let h = self.bn2.forward(&self.conv2.forward(&h), mode);
        let shortcut = match &self.downsample {
            Some((conv, bn)) => bn.forward(&conv.forward(x), mode),
            None => x.shallow_clone(),
        };
        (h + shortcut).relu()
    }
}

pub struct ResNet {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    blocks: Vec<BasicBlock>,
    fc: Linear,
}

/// Blocks per stage.
pub const RESNET18: [usize; 4] = [2, 2, 2, 2];
pub const RESNET34: [usize; 4] = [3, 4, 6, 3];

impl ResNet {
    pub fn new(p: &Path, layers: [usize; 4], in_channels: i64, classes: i64) -> ResNet {
        let conv1 = Conv2d::new(&(p / "conv1"), in_channels, 64, 3, 1, 1, false);
        let bn1 = BatchNorm2d::new(&(p / "bn1"), 64);
        let mut blocks = Vec::new();
        let mut c_in = 64;
        for (stage, &n) in layers.iter().enumerate() {
            let c_out = 64 << stage;
            let l = p / format!("layer{}", stage + 1);
            for b in 0..n {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(&(&l / b), c_in, c_out, stride));
                c_in = c_out;
            }
        }
        let fc = Linear::new(&(p / "fc"), 512, classes);
        ResNet {
            conv1,
            bn1,
            blocks,
            fc,
        }
    }
}

impl Net for ResNet {
    // BatchNorm on batch statistics either way; no dropout.
    fn train_is_measure(&self, policy: BatchNormPolicy) -> bool {
        policy == BatchNormPolicy::BatchStats
    }

    fn logits(&self, batch: &Batch, mode: Mode) -> Option<Tensor> {
        let mut h = self.bn1.forward(&self.conv1.forward(&batch.x), mode).relu();
        for b in &self.blocks {
            h = b.forward(&h, mode);
        }
        let h = h.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        Some(self.fc.forward(&h))
    }

    fn per_example_loss(&self, batch: &Batch, mode: Mode) -> Tensor {
        let logits = self.logits(batch, mode).expect("a classifier has logits");
        cross_entropy_per_example(&logits, &batch.y)
    }
}
