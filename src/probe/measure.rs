//! The measurements every probe pass shares: f_i(x) over a minibatch in
//! chunks (per-example losses summed in f64), ∇f_i(x) by autograd, and the f64
//! inner product <∇f_i(x^k), x^k − x_p> and norm of one minibatch.

use crate::data::augment::AugmentAt;
use crate::data::Dataset;
use crate::model::{Mode, Model};
use crate::torch::reduce;
use tch::{Kind, Tensor};

/// f_i(x), and ∇f_i(x) left in the parameters' `.grad()`, for the examples
/// `indices`, processed `chunk` examples at a time; `at`: augmented as that
/// training step saw them (None: un-augmented).
pub fn loss_and_grad(
    model: &Model,
    data: &Dataset,
    indices: &[i64],
    chunk: usize,
    mode: Mode,
    at: Option<AugmentAt>,
) -> f64 {
    model.zero_grad();
    let n = indices.len() as f64;
    let mut sum = 0.0;
    for part in indices.chunks(chunk.max(1)) {
        let per = model.per_example_loss(&data.batch_for(part, at), mode);
        sum += per
            .to_kind(Kind::Double)
            .sum(Kind::Double)
            .double_value(&[]);
        (per.sum(per.kind()) / n).backward();
    }
    sum / n
}

/// f_i(x) without gradients.
pub fn loss_only(
    model: &Model,
    data: &Dataset,
    indices: &[i64],
    chunk: usize,
    mode: Mode,
    at: Option<AugmentAt>,
) -> f64 {
    tch::no_grad(|| {
        let mut sum = 0.0;
        for part in indices.chunks(chunk.max(1)) {
            let per = model.per_example_loss(&data.batch_for(part, at), mode);
            sum += per
                .to_kind(Kind::Double)
                .sum(Kind::Double)
                .double_value(&[]);
        }
        sum / indices.len() as f64
    })
}

/// The measurements of one probe minibatch at x^k (in `model`) against x^K.
pub struct Measurement {
    pub loss_k: f64,
    pub loss_ref: f64,
    pub inner: f64,
    pub grad_norm: f64,
}

#[allow(clippy::too_many_arguments)]
pub fn measure(
    model: &Model,
    reference: &[Tensor],
    data: &Dataset,
    indices: &[i64],
    loss_ref: f64,
    chunk: usize,
    mode: Mode,
    at: Option<AugmentAt>,
) -> Measurement {
    let loss_k = loss_and_grad(model, data, indices, chunk, mode, at);
    let params: Vec<Tensor> = model.params().into_iter().map(|(_, p)| p).collect();
    // A parameter the loss does not use has no gradient (it is dropped
    // before the backward pass): its gradient is zero.
    let grads: Vec<Tensor> = params
        .iter()
        .map(|p| {
            Some(p.grad())
                .filter(Tensor::defined)
                .unwrap_or_else(|| p.zeros_like())
        })
        .collect();
    let (inner, grad_norm) = tch::no_grad(|| {
        (
            reduce::dot_diff(&grads, &params, reference),
            reduce::norm_sq(&grads).sqrt(),
        )
    });
    // The gradient is used up: dropped now, it is not held through the next
    // minibatch's forward pass at the reference point (a model's size less at
    // that pass's peak; docs/benchmarks-storage.md).
    drop(grads);
    model.zero_grad();
    Measurement {
        loss_k,
        loss_ref,
        inner,
        grad_norm,
    }
}
