//! Two-layer ReLU network with logistic loss (paper Example 5):
//! f_i(W, v) = log(1 + exp(−y_i v·relu(W x_i))), y_i in {−1, +1}, no biases.
//! `hidden.weight` is W (k × d), `output.weight` is v as a 1 × k matrix
//! (torch.nn.Linear(k, 1, bias=False)).

use super::net::{linear_weight, plus_minus_one, Mode, Net};
use crate::data::Batch;
use crate::model::net::BatchNormPolicy;
use tch::nn::Path;
use tch::Tensor;

pub struct TwoLayer {
    hidden: Tensor,
    output: Tensor,
}

impl TwoLayer {
    pub fn new(p: &Path, input_dim: i64, width: i64) -> TwoLayer {
        let hidden = linear_weight(&(p / "hidden"), "weight", width, input_dim);
        let output = linear_weight(&(p / "output"), "weight", 1, width);
        TwoLayer { hidden, output }
    }
}

impl Net for TwoLayer {
    // The mode changes nothing in this net.
    fn train_is_measure(&self, _policy: BatchNormPolicy) -> bool {
        true
    }

    fn per_example_loss(&self, batch: &Batch, _mode: Mode) -> Tensor {
        let x = batch.x.flatten(1, -1);
        let out = x
            .linear::<Tensor>(&self.hidden, None)
            .relu()
            .linear::<Tensor>(&self.output, None)
            .squeeze_dim(1);
        let y = plus_minus_one(&batch.y, out.kind());
        (-(y * out)).softplus()
    }
}
