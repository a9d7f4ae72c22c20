//! The paper's MLP (Islamov et al. 2024, §5.1): three linear layers with ReLU
//! after the first two and a square hidden layer, trained with cross-entropy.
//! Input [B, …] is flattened; fc1: d → W, fc2: W → W, fc3: W → C.

use super::net::{linear_bias, linear_weight, Mode, Net};
use crate::data::Batch;
use crate::model::net::BatchNormPolicy;
use tch::nn::Path;
use tch::{Kind, Tensor};

pub struct Mlp {
    layers: Vec<(Tensor, Tensor)>,
}

impl Mlp {
    pub fn new(p: &Path, input_dim: i64, width: i64, classes: i64) -> Mlp {
        let dims = [(input_dim, width), (width, width), (width, classes)];
        let layers = dims
            .iter()
            .enumerate()
            .map(|(i, &(d_in, d_out))| {
                let l = p / format!("fc{}", i + 1);
                let w = linear_weight(&l, "weight", d_out, d_in);
                let b = linear_bias(&l, "bias", d_out, d_in);
                (w, b)
            })
            .collect();
        Mlp { layers }
    }
}

impl Net for Mlp {
    // The mode changes nothing in this net.
    fn train_is_measure(&self, _policy: BatchNormPolicy) -> bool {
        true
    }

    fn logits(&self, batch: &Batch, _mode: Mode) -> Option<Tensor> {
        let mut h = batch.x.flatten(1, -1);
        for (i, (w, b)) in self.layers.iter().enumerate() {
            h = h.linear(w, Some(b));
            if i + 1 < self.layers.len() {
                h = h.relu();
            }
        }
        Some(h)
    }

    fn per_example_loss(&self, batch: &Batch, mode: Mode) -> Tensor {
        let logits = self.logits(batch, mode).expect("a classifier has logits");
        cross_entropy_per_example(&logits, &batch.y)
    }
}

/// −log softmax(logits)[y] for each row, computed in at least f32: under
/// `train.autocast` the logits are bf16, and the loss is then taken in f32 as
/// torch.nn.functional.cross_entropy does under autocast (CPU and CUDA).
pub(crate) fn cross_entropy_per_example(logits: &Tensor, y: &Tensor) -> Tensor {
    let kind = match logits.kind() {
        Kind::Half | Kind::BFloat16 => Kind::Float,
        k => k,
    };
    -logits
        .log_softmax(-1, kind)
        .gather(1, &y.unsqueeze(1), false)
        .squeeze_dim(1)
}
