//! ResNet9, the paper's CIFAR-100 model (Islamov et al. 2024, §5.3 and App.
//! D.6): the DAWNBench layout of Myrtle.ai (D. Page, "How to train your
//! ResNet", 2018) in the form of the widely used PyTorch notebook "ResNet9 on
//! CIFAR-100" (conv blocks with bias, one-cycle training), without that
//! notebook's dropout before the classifier (dropout would make f_i random):
//!
//!   conv_block(c_in, c_out) = Conv2d 3×3 pad 1 (with bias) → BatchNorm2d → ReLU
//!   conv1 = conv_block(3, 64)                       32×32
//!   conv2 = conv_block(64, 128) → max-pool 2        16×16
//!   res1  = conv_block(128, 128), conv_block(128, 128), added to its input
//!   conv3 = conv_block(128, 256) → max-pool 2        8×8
//!   conv4 = conv_block(256, 512) → max-pool 2        4×4
//!   res2  = conv_block(512, 512), conv_block(512, 512), added to its input
//!   classifier = global max-pool (AdaptiveMaxPool2d(1); MaxPool2d(4) on 32×32
//!                inputs) → flatten → Linear(512, classes)
//!
//! Parameter names follow the PyTorch module (nn.Sequential indices):
//! conv1.0.weight, conv1.0.bias, conv1.1.{weight,bias,running_mean,running_var},
//! res1.0.0.weight, …, res2.1.1.running_var, classifier.2.weight,
//! classifier.2.bias. Input [B, 3, H, W], H and W divisible by 8.

use super::layers::{BatchNorm2d, Conv2d, Linear};
use super::mlp::cross_entropy_per_example;
use super::net::{Mode, Net};
use crate::data::Batch;
use crate::model::net::BatchNormPolicy;
use tch::nn::Path;
use tch::Tensor;

struct ConvBlock {
    conv: Conv2d,
    bn: BatchNorm2d,
    pool: bool,
}

impl ConvBlock {
    fn new(p: &Path, c_in: i64, c_out: i64, pool: bool) -> ConvBlock {
        ConvBlock {
            conv: Conv2d::new(&(p / 0), c_in, c_out, 3, 1, 1, true),
            bn: BatchNorm2d::new(&(p / 1), c_out),
            pool,
        }
    }

    fn forward(&self, x: &Tensor, mode: Mode) -> Tensor {
        let h = self.bn.forward(&self.conv.forward(x), mode).relu();
        if self.pool {
            h.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)
        } else {
            h
        }
    }
}

pub struct ResNet9 {
    conv1: ConvBlock,
    conv2: ConvBlock,
    res1: [ConvBlock; 2],
    conv3: ConvBlock,
    conv4: ConvBlock,
    res2: [ConvBlock; 2],
    fc: Linear,
}

impl ResNet9 {
    pub fn new(p: &Path, in_channels: i64, classes: i64) -> ResNet9 {
        // Built in the order of the PyTorch module's __init__ (the draw order of x^0).
        let conv1 = ConvBlock::new(&(p / "conv1"), in_channels, 64, false);
        let conv2 = ConvBlock::new(&(p / "conv2"), 64, 128, true);
        let r1 = p / "res1";
        let res1 = [
            ConvBlock::new(&(&r1 / 0), 128, 128, false),
            ConvBlock::new(&(&r1 / 1), 128, 128, false),
        ];
        let conv3 = ConvBlock::new(&(p / "conv3"), 128, 256, true);
        let conv4 = ConvBlock::new(&(p / "conv4"), 256, 512, true);
        let r2 = p / "res2";
        let res2 = [
            ConvBlock::new(&(&r2 / 0), 512, 512, false),
            ConvBlock::new(&(&r2 / 1), 512, 512, false),
        ];
        let fc = Linear::new(&(p / "classifier" / 2), 512, classes);
        ResNet9 {
            conv1,
            conv2,
            res1,
            conv3,
            conv4,
            res2,
            fc,
        }
    }
}

impl Net for ResNet9 {
    // BatchNorm on batch statistics either way; no dropout.
    fn train_is_measure(&self, policy: BatchNormPolicy) -> bool {
        policy == BatchNormPolicy::BatchStats
    }

    fn logits(&self, batch: &Batch, mode: Mode) -> Option<Tensor> {
        let h = self.conv1.forward(&batch.x, mode);
        let h = self.conv2.forward(&h, mode);
        let h = self.res1[1].forward(&self.res1[0].forward(&h, mode), mode) + h;
        let h = self.conv3.forward(&h, mode);
        let h = self.conv4.forward(&h, mode);
        let h = self.res2[1].forward(&self.res2[0].forward(&h, mode), mode) + h;
        let h = h.adaptive_max_pool2d([1, 1]).0.flatten(1, -1);
        Some(self.fc.forward(&h))
    }

    fn per_example_loss(&self, batch: &Batch, mode: Mode) -> Tensor {
        let logits = self.logits(batch, mode).expect("a classifier has logits");
        cross_entropy_per_example(&logits, &batch.y)
    }
}
