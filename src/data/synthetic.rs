//! Seeded synthetic data sets: the paper's small problems, and token data for
//! the Transformer (a stand-in for WMT). Generated (in f64) from the portable
//! generator in `rng`, so the same `data.seed` gives the same data on every
//! machine; the run directory's `data.parquet` holds a copy.

use super::{Dataset, Targets};
use crate::data::config::{
    ComponentsData, DatasetKind, HalfspaceData, MatFactData, TranslationData,
};
use crate::torch::dtype::Dtype;
use crate::util::rng::{stream, Rng};
use tch::Tensor;

/// Half-space data (paper Fig. 2): two classes of `per_class` points each in
/// R^dim. Each class has its own Gaussian mean, drawn N(0, mean_std² I); points
/// are N(mean, variance·I). Class 0 has label b = −1, class 1 has b = +1.
/// (The paper states 20 points per class, Gaussian class means and variance 2;
/// dimension and mean spread are not given, defaults are dim 2, mean_std 1.)
pub fn halfspace(cfg: &HalfspaceData, seed: u64, dtype: Dtype) -> Dataset {
    let dim = cfg.dim as usize;
    let per_class = cfg.per_class as usize;
    let sd = cfg.variance.sqrt();
    let mean_std = cfg.mean_std;
    let mut rng = Rng::for_stream(seed, &[stream::DATA, 1]);
    let means: Vec<Vec<f64>> = (0..2)
        .map(|_| (0..dim).map(|_| mean_std * rng.normal()).collect())
        .collect();
    let mut x = Vec::with_capacity(2 * per_class * dim);
    let mut y = Vec::with_capacity(2 * per_class);
    for (class, mean) in means.iter().enumerate() {
        for _ in 0..per_class {
            x.extend(mean.iter().map(|m| m + sd * rng.normal()));
            y.push(class as i64);
        }
    }
    let n = 2 * per_class;
    Dataset {
        kind: DatasetKind::Halfspace,
        x: Tensor::from_slice(&x)
            .view([n as i64, dim as i64])
            .to_kind(dtype.kind()),
        y: Tensor::from_slice(&y),
        len: n as u64,
        input_shape: vec![dim as i64],
        targets: Targets::Classes(2),
        source_index: (0..n as i64).collect(),
        source_dir: None,
        augment: None,
        images: None,
        inputs: vec![],
        vocab: vec![],
        graphs: None,
    }
}

/// Matrix factorisation data (paper Example 4): X = W*ᵀ S* + noise·E with
/// W* (r × rows), S* (r × cols) and E standard normal; entries N(0, 1/r) keep
/// X_ij of order one. One example per entry (i, j), in row-major order.
pub fn matrix_factorisation(cfg: &MatFactData, seed: u64, dtype: Dtype) -> Dataset {
    let rows = cfg.rows as usize;
    let cols = cfg.cols as usize;
    let r = cfg.true_rank as usize;
    let noise = cfg.noise;
    let mut rng = Rng::for_stream(seed, &[stream::DATA, 2]);
    let scale = 1.0 / (r as f64).sqrt();
    let w: Vec<f64> = (0..r * rows).map(|_| scale * rng.normal()).collect();
    let s: Vec<f64> = (0..r * cols).map(|_| scale * rng.normal()).collect();
    let mut x = Vec::with_capacity(rows * cols * 2);
    let mut y = Vec::with_capacity(rows * cols);
    for i in 0..rows {
        for j in 0..cols {
            let mut v = 0.0;
            for k in 0..r {
                v += w[k * rows + i] * s[k * cols + j];
            }
            x.extend([i as i64, j as i64]);
            y.push(v + noise * rng.normal());
        }
    }
    let n = rows * cols;
    Dataset {
        kind: DatasetKind::MatrixFactorisation,
        x: Tensor::from_slice(&x).view([n as i64, 2]),
        y: Tensor::from_slice(&y).to_kind(dtype.kind()),
        len: n as u64,
        input_shape: vec![2],
        targets: Targets::MatrixEntries {
            rows: rows as i64,
            cols: cols as i64,
        },
        source_index: (0..n as i64).collect(),
        source_dir: None,
        augment: None,
        images: None,
        inputs: vec![],
        vocab: vec![],
        graphs: None,
    }
}

/// The components of a known-answer problem: example i is the index i
/// (`data.components` is filled in from the model when the config resolves).
pub fn components(cfg: &ComponentsData) -> Dataset {
    let n = cfg.components.unwrap_or(2);
    let idx: Vec<i64> = (0..n).collect();
    Dataset {
        kind: DatasetKind::Components,
        x: Tensor::from_slice(&idx).view([n, 1]),
        y: Tensor::from_slice(&idx),
        len: n as u64,
        input_shape: vec![1],
        targets: Targets::Components(n),
        source_index: idx,
        source_dir: None,
        augment: None,
        images: None,
        inputs: vec![],
        vocab: vec![],
        graphs: None,
    }
}

/// Synthetic translation, the stand-in for WMT's token data (paired sentences of
/// a 32,000-token vocabulary): `examples` source sentences of `seq_len` tokens
/// drawn uniformly from 1..vocab (0 is the padding token and never drawn), each
/// translated by reversing it and shifting every token by one within 1..vocab:
/// y_j = 1 + (x_{L−1−j} mod (vocab − 1)). The translation is a function of the
/// source, so f_i can be driven towards 0 — through attention (the reversal)
/// and the shared embedding (the shift). x and y are int64 [N, L].
pub fn translation(cfg: &TranslationData, seed: u64) -> Dataset {
    let n = cfg.examples as usize;
    let len = cfg.seq_len as usize;
    let vocab = cfg.vocab;
    let mut rng = Rng::for_stream(seed, &[stream::DATA, 3]);
    let x: Vec<i64> = (0..n * len)
        .map(|_| 1 + rng.below(vocab as u64 - 1) as i64)
        .collect();
    let y: Vec<i64> = x
        .chunks(len)
        .flat_map(|s| s.iter().rev().map(|&t| 1 + t % (vocab - 1)))
        .collect();
    Dataset {
        kind: DatasetKind::SyntheticTranslation,
        x: Tensor::from_slice(&x).view([n as i64, len as i64]),
        y: Tensor::from_slice(&y).view([n as i64, len as i64]),
        len: n as u64,
        input_shape: vec![len as i64],
        targets: Targets::Tokens {
            vocab,
            len: len as i64,
        },
        source_index: (0..n as i64).collect(),
        source_dir: None,
        augment: None,
        images: None,
        inputs: vec![],
        vocab: vec![],
        graphs: None,
    }
}
