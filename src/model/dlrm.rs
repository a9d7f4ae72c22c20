//! DLRM-small of AlgoPerf's criteo1tb workload
//! (`algoperf/workloads/criteo1tb/criteo1tb_pytorch/models.py`, `DlrmSmall`),
//! with its parameter names, shapes and initialisation:
//!
//! - `embedding_chunk_{0..3}` [V/4, D]: the embedding table of V rows split in
//!   four row blocks (row r lives in chunk r / (V/4), row r mod (V/4));
//!   initialised U[0, 1)/√V;
//! - `bot_mlp.{0,2,4}`: Linear 13 → 512 → 256 → D with ReLU after each (the
//!   last too); weights xavier-uniform, biases N(0, 1/fan_out);
//! - `top_mlp.{0,2,4,6,9}`: Linear 506 → 1024 → 1024 → 512 → 256 → 1 with
//!   ReLU after all but the last; dropout (`model.dropout`, training only)
//!   before the last, where AlgoPerf's Sequential has its slot 8; weights
//!   N(0, 2/(fan_in + fan_out)), biases N(0, 1/fan_out).
//!
//! Forward: the bottom MLP maps the 13 dense features to b [B, D]; each of
//! the 26 categorical values (src/data/criteo.rs) is taken modulo V and looked
//! up, e [B, 26, D]; the dot interaction takes T = [b; e] [B, 27, D], the Gram
//! matrix T Tᵀ and its upper triangle with the diagonal, row by row (378
//! values); the top MLP reads [b, those 378] and returns one logit z. f_i is
//! the sigmoid binary cross-entropy −(y log σ(z) + (1 − y) log σ(−z)).
//!
//! Memory: AlgoPerf concatenates the four chunks into one [V, D] table at
//! every forward pass (a copy of the whole table, and its gradient split back
//! into the chunks). Here each chunk is read with `index_select` on the rows
//! that fall in it, so the only table-sized tensors are the parameters and
//! their gradients (dense, one per chunk); the numbers are the same.

use super::net::{BatchNormPolicy, Mode, Net};
use crate::data::Batch;
use crate::model::config::DlrmConfig;
use anyhow::{bail, Result};
use tch::nn::Path;
use tch::{Kind, Tensor};

/// Row blocks of the embedding table (AlgoPerf's fixed `num_chunks`).
pub const CHUNKS: i64 = 4;
/// Categorical features per example.
const SPARSE: i64 = 26;

type Linear = (Tensor, Tensor);

fn init(p: &Path, name: &str, dims: &[i64], f: impl FnOnce(Tensor) -> Tensor) -> Tensor {
    let t = tch::no_grad(|| f(Tensor::empty(dims, (p.kind(), p.device()))));
    p.add(name, t, true)
}

/// A Linear layer at `p`: weight xavier-uniform (bottom MLP) or N(0, 2/(fan_in +
/// fan_out)) (top MLP), bias N(0, 1/fan_out).
fn linear(p: &Path, d_in: i64, d_out: i64, glorot_uniform: bool) -> Linear {
    let w = if glorot_uniform {
        let a = (6.0 / (d_in + d_out) as f64).sqrt();
        init(p, "weight", &[d_out, d_in], |mut t| t.uniform_(-a, a))
    } else {
        let std = (2.0 / (d_in + d_out) as f64).sqrt();
        init(p, "weight", &[d_out, d_in], |mut t| t.normal_(0.0, std))
    };
    let std = (1.0 / d_out as f64).sqrt();
    let b = init(p, "bias", &[d_out], |mut t| t.normal_(0.0, std));
    (w, b)
}

pub struct Dlrm {
    cfg: DlrmConfig,
    chunks: Vec<Tensor>,
    bottom: Vec<Linear>,
    top: Vec<Linear>,
    /// Flat indices i·27 + j of the Gram matrix's upper triangle (i ≤ j).
    triu: Tensor,
}

impl Dlrm {
    pub fn new(p: &Path, cfg: DlrmConfig, dense_features: i64) -> Result<Dlrm> {
        let (v, d) = (cfg.vocab, cfg.embed_dim);
        if cfg.bottom.last() != Some(&d) {
            bail!(
                "the last bottom-MLP width ({:?}) must equal `model.embed_dim` ({d}): the dot interaction pairs it with the embeddings",
                cfg.bottom.last()
            );
        }
        let rows = v / CHUNKS;
        let scale = 1.0 / (v as f64).sqrt();
        let chunks = (0..CHUNKS)
            .map(|c| {
                init(p, &format!("embedding_chunk_{c}"), &[rows, d], |mut t| {
                    t.uniform_(0.0, 1.0) * scale
                })
            })
            .collect();
        let mut d_in = dense_features;
        let bottom = cfg
            .bottom
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let l = linear(&(p / "bot_mlp" / (2 * i).to_string()), d_in, w, true);
                d_in = w;
                l
            })
            .collect();
        let n = SPARSE + 1;
        let mut d_in = d + n * (n + 1) / 2;
        let last = cfg.top.len() - 1;
        let top = cfg
            .top
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let slot = if i == last { 2 * i + 1 } else { 2 * i };
                let l = linear(&(p / "top_mlp" / slot.to_string()), d_in, w, false);
                d_in = w;
                l
            })
            .collect();
        let triu: Vec<i64> = (0..n)
            .flat_map(|i| (i..n).map(move |j| i * n + j))
            .collect();
        Ok(Dlrm {
            cfg,
            chunks,
            bottom,
            top,
            triu: Tensor::from_slice(&triu).to_device(p.device()),
        })
    }

    /// The embeddings [B·26, D] of the categorical values `ids` [B, 26].
    fn embed(&self, ids: &Tensor) -> Tensor {
        let rows = self.cfg.vocab / CHUNKS;
        let r = ids.reshape([-1]).remainder(self.cfg.vocab);
        let chunk = r.floor_divide_scalar(rows);
        let local = r.remainder(rows);
        let mut out: Option<Tensor> = None;
        for (c, table) in self.chunks.iter().enumerate() {
            let here = chunk.eq(c as i64);
            // Rows outside chunk c read its row 0 and are multiplied by 0.
            let idx = local.where_scalarother(&here, 0);
            let e = table.index_select(0, &idx) * here.unsqueeze(1).to_kind(table.kind());
            out = Some(match out {
                None => e,
                Some(o) => o + e,
            });
        }
        out.expect("four chunks")
    }

    pub fn logits(&self, batch: &Batch, mode: Mode) -> Tensor {
        let [dense, ids, _label] = &batch.inputs[..] else {
            panic!("DLRM batches carry the dense features and the categorical values");
        };
        let b = dense.size()[0];
        let mut h = dense.shallow_clone();
        for (w, bias) in &self.bottom {
            h = h.linear(w, Some(bias)).relu();
        }
        let d = self.cfg.embed_dim;
        let e = self.embed(ids).view([b, SPARSE, d]);
        let t = Tensor::cat(&[h.unsqueeze(1), e], 1);
        let gram = t.bmm(&t.transpose(1, 2)).view([b, -1]);
        let mut x = Tensor::cat(&[h, gram.index_select(1, &self.triu)], 1);
        let last = self.top.len() - 1;
        for (i, (w, bias)) in self.top.iter().enumerate() {
            if i == last && mode == Mode::Train && self.cfg.dropout > 0.0 {
                x = x.dropout(self.cfg.dropout, true);
            }
            x = x.linear(w, Some(bias));
            if i != last {
                x = x.relu();
            }
        }
        x.view([b])
    }
}

/// −(y log σ(z) + (1 − y) log σ(−z)) per example (AlgoPerf's formula).
pub fn sigmoid_bce(z: &Tensor, y: &Tensor) -> Tensor {
    let y = y.to_kind(z.kind());
    let pos: Tensor = &y * z.log_sigmoid();
    let neg: Tensor = (y.ones_like() - &y) * z.neg().log_sigmoid();
    (pos + neg).neg()
}

impl Net for Dlrm {
    fn train_is_measure(&self, _policy: BatchNormPolicy) -> bool {
        self.cfg.dropout == 0.0
    }

    fn per_example_loss(&self, batch: &Batch, mode: Mode) -> Tensor {
        let z = self.logits(batch, mode);
        let f = sigmoid_bce(&z, &batch.y);
        match f.kind() {
            Kind::Half | Kind::BFloat16 => f.to_kind(Kind::Float),
            _ => f,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::VarStore;
    use tch::Device;

    /// criteo1tb_test's size: 10,785,153 parameters (65,536·128 embedding +
    /// 2,396,545 in the MLPs; tests/abcond_ref/dlrm.py builds AlgoPerf's
    /// module and tests/dlrm.rs compares), named as its state_dict.
    #[test]
    fn test_size_parameters_match_algoperf() {
        let vs = VarStore::new(Device::Cpu);
        let cfg = DlrmConfig {
            vocab: 65_536,
            ..DlrmConfig::default()
        };
        let _m = Dlrm::new(&vs.root(), cfg, 13).unwrap();
        let vars = vs.variables();
        let n: i64 = vars.values().map(|t| t.numel() as i64).sum();
        assert_eq!(n, 10_785_153);
        assert_eq!(vars.len(), 20);
        assert_eq!(vars["embedding_chunk_3"].size(), [16_384, 128]);
        assert_eq!(vars["top_mlp.0.weight"].size(), [1024, 506]);
        assert_eq!(vars["top_mlp.9.weight"].size(), [1, 256]);
        assert_eq!(vars["bot_mlp.4.bias"].size(), [128]);
    }

    /// The chunked lookup equals indexing the concatenated table.
    #[test]
    fn chunked_lookup_is_the_table_lookup() {
        let mut vs = VarStore::new(Device::Cpu);
        vs.set_kind(Kind::Double);
        let cfg = DlrmConfig {
            vocab: 12,
            embed_dim: 3,
            bottom: vec![5, 3],
            top: vec![4, 1],
            dropout: 0.0,
        };
        let m = Dlrm::new(&vs.root(), cfg, 13).unwrap();
        let ids =
            Tensor::from_slice(&(0..52i64).map(|i| i * 7 + 3).collect::<Vec<_>>()).view([2, 26]);
        let table = Tensor::cat(&m.chunks, 0);
        let want = table.index_select(0, &ids.reshape([-1]).remainder(12));
        assert!(m.embed(&ids).equal(&want));
    }
}
