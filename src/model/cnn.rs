//! The paper's CNN (Islamov et al. 2024, §5.2, CIFAR-10 width study): two
//! convolutional layers, each followed by 2×2 max-pooling and ReLU, then one
//! linear layer, trained with cross-entropy. The paper states only this and the
//! second layer's channels W ∈ {32, 64, 128, 256, 512, 2048} (`model.width`);
//! kernel sizes and the first layer's channels are not stated. We choose the
//! layout of PyTorch's CIFAR-10 tutorial network ("Training a classifier"):
//! 5×5 kernels, stride 1, no padding, first layer 32 channels:
//!
//!   input [B, C, H, W] (CIFAR: [B, 3, 32, 32])
//!   conv1: C → 32, 5×5  → max-pool 2 → ReLU   (32 → 28 → 14)
//!   conv2: 32 → W, 5×5  → max-pool 2 → ReLU   (14 → 10 → 5)
//!   fc: W·5·5 → classes
//!
//! Parameters: conv1.weight, conv1.bias, conv2.weight, conv2.bias, fc.weight,
//! fc.bias (PyTorch defaults for initialisation, see layers.rs).

use super::layers::{Conv2d, Linear};
use super::mlp::cross_entropy_per_example;
use super::net::{Mode, Net};
use crate::data::Batch;
use crate::model::net::BatchNormPolicy;
use tch::nn::Path;
use tch::Tensor;

pub const FIRST_CHANNELS: i64 = 32;
pub const KERNEL: i64 = 5;

pub struct Cnn {
    conv1: Conv2d,
    conv2: Conv2d,
    fc: Linear,
}

impl Cnn {
    /// `input`: [C, H, W] of one image.
    pub fn new(p: &Path, input: &[i64], width: i64, classes: i64) -> Cnn {
        let side = |s: i64| ((s - KERNEL + 1) / 2 - KERNEL + 1) / 2;
        let (c, h, w) = (input[0], input[1], input[2]);
        let conv1 = Conv2d::new(&(p / "conv1"), c, FIRST_CHANNELS, KERNEL, 1, 0, true);
        let conv2 = Conv2d::new(&(p / "conv2"), FIRST_CHANNELS, width, KERNEL, 1, 0, true);
        let fc = Linear::new(&(p / "fc"), width * side(h) * side(w), classes);
        Cnn { conv1, conv2, fc }
    }
}

impl Net for Cnn {
    // The mode changes nothing in this net.
    fn train_is_measure(&self, _policy: BatchNormPolicy) -> bool {
        true
    }

    fn logits(&self, batch: &Batch, _mode: Mode) -> Option<Tensor> {
        let h = self
            .conv1
            .forward(&batch.x)
            .max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)
            .relu();
        let h = self
            .conv2
            .forward(&h)
            .max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)
            .relu();
        Some(self.fc.forward(&h.flatten(1, -1)))
    }

    fn per_example_loss(&self, batch: &Batch, mode: Mode) -> Tensor {
        let logits = self.logits(batch, mode).expect("a classifier has logits");
        cross_entropy_per_example(&logits, &batch.y)
    }
}
