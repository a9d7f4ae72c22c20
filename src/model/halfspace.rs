//! Half-space learning (paper Fig. 2): f_i(x) = sigmoid(−b_i x·a_i) + (λ/2)||x||²
//! with b_i in {−1, +1}; the mean over i is the paper's loss
//! (1/n) Σ sigmoid(−b_i x·a_i) + (λ/2)||x||². Parameter `weight` is x.

use super::net::{normal, plus_minus_one, Mode, Net};
use crate::data::Batch;
use crate::model::net::BatchNormPolicy;
use tch::nn::Path;
use tch::Tensor;

pub struct Halfspace {
    weight: Tensor,
    lambda: f64,
}

impl Halfspace {
    pub fn new(p: &Path, dim: i64, lambda: f64, init_std: f64) -> Halfspace {
        Halfspace {
            weight: normal(p, "weight", &[dim], init_std),
            lambda,
        }
    }
}

impl Net for Halfspace {
    // The mode changes nothing in this net.
    fn train_is_measure(&self, _policy: BatchNormPolicy) -> bool {
        true
    }

    fn per_example_loss(&self, batch: &Batch, _mode: Mode) -> Tensor {
        let margin = batch.x.flatten(1, -1).mv(&self.weight);
        let b = plus_minus_one(&batch.y, margin.kind());
        let reg = self.weight.square().sum(self.weight.kind()) * (self.lambda / 2.0);
        (-(b * margin)).sigmoid() + reg
    }
}
