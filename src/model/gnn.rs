//! The graph network of AlgoPerf's ogbg workload (algoperf/workloads/ogbg,
//! PyTorch: a port of init2winit's GNN, after Battaglia et al. 2018, Alg. 1),
//! with its parameter names, shapes and initialisation:
//!
//! - `node_embedder`, `edge_embedder`: Linear(node_dim, latent),
//!   Linear(edge_dim, latent); globals start as zeros [B, outputs];
//! - `graph_network.<s>` for each message-passing step s, with its own
//!   `update_edge_fn`, `update_node_fn`, `update_global_fn`: MLPs whose layer
//!   j is `dense_j` (Linear) → `norm_j` (LayerNorm, eps 1e-6) → activation →
//!   dropout. Per step: edges ← MLP_e([edges, nodes[senders],
//!   nodes[receivers], globals per edge]); nodes ← MLP_n([nodes, Σ edges by
//!   sender, Σ edges by receiver, globals per node]); globals ← MLP_g([Σ nodes
//!   per graph, Σ edges per graph, globals]);
//! - `decoder`: Linear(hidden, outputs) on the globals: one logit per task.
//!
//! Every Linear is initialised by AlgoPerf's `pytorch_default_init`
//! (truncated LeCun normal weights, zero biases); LayerNorms start at (1, 0).
//! Sums over edges and nodes are `index_add` in index order (deterministic
//! on the CPU).
//!
//! The loss of graph i, f_i, is the binary cross-entropy with logits averaged
//! over its labelled tasks (AlgoPerf's formula relu(l) − l·y + log(1 + e^−|l|);
//! a graph without labels has f_i = 0). AlgoPerf's minibatch loss divides the
//! sum over all labelled (graph, task) pairs by their number instead; the two
//! agree when every graph has the same number of labels (as for the molecules
//! of scripts/molecules-to-ogb.py: one task, never missing), and differ by
//! that weighting on ogbg-molpcba.

use super::net::{BatchNormPolicy, Mode, Net};
use super::resnet50::lecun_trunc_normal;
use crate::data::Batch;
use crate::model::config::{GnnActivation, GnnConfig};
use anyhow::{bail, Result};
use tch::nn::Path;
use tch::{Kind, Tensor};

type Linear = (Tensor, Tensor);

fn dense(p: &Path, d_in: i64, d_out: i64) -> Linear {
    (
        lecun_trunc_normal(p, "weight", &[d_out, d_in], d_in),
        p.zeros("bias", &[d_out]),
    )
}

/// One MLP: (dense, norm) per layer.
struct Mlp {
    layers: Vec<(Linear, Linear)>,
}

impl Mlp {
    fn new(p: &Path, d_in: i64, width: i64, layers: i64) -> Mlp {
        let mut d = d_in;
        let layers = (0..layers)
            .map(|j| {
                let l = dense(&(p / format!("dense_{j}")), d, width);
                let n = p / format!("norm_{j}");
                d = width;
                (l, (n.ones("weight", &[width]), n.zeros("bias", &[width])))
            })
            .collect();
        Mlp { layers }
    }

    fn forward(&self, x: &Tensor, act: GnnActivation, dropout: Option<f64>) -> Tensor {
        let mut h = x.shallow_clone();
        for (l, n) in &self.layers {
            let width = l.0.size()[0];
            h = h
                .linear(&l.0, Some(&l.1))
                .layer_norm([width], Some(&n.0), Some(&n.1), 1e-6, false);
            h = match act {
                GnnActivation::Relu => h.relu(),
                GnnActivation::Gelu => h.gelu("tanh"),
                GnnActivation::Silu => h.silu(),
            };
            if let Some(p) = dropout {
                h = h.dropout(p, true);
            }
        }
        h
    }
}

struct Step {
    edge: Mlp,
    node: Mlp,
    global: Mlp,
}

pub struct Gnn {
    cfg: GnnConfig,
    outputs: i64,
    node_embedder: Linear,
    edge_embedder: Linear,
    steps: Vec<Step>,
    decoder: Linear,
}

/// Σ of the rows of `src` by `index` into `n` rows.
fn scatter_sum(src: &Tensor, index: &Tensor, n: i64) -> Tensor {
    Tensor::zeros([n, src.size()[1]], (src.kind(), src.device())).index_add(0, index, src)
}

impl Gnn {
    /// `node_dim`, `edge_dim`: the data's feature widths; `outputs`: its tasks.
    pub fn new(p: &Path, cfg: GnnConfig, node_dim: i64, edge_dim: i64, outputs: i64) -> Gnn {
        let (latent, hidden, layers) = (cfg.latent_dim, cfg.hidden_dim, cfg.mlp_layers);
        let node_embedder = dense(&(p / "node_embedder"), node_dim, latent);
        let edge_embedder = dense(&(p / "edge_embedder"), edge_dim, latent);
        let gn = p / "graph_network";
        let steps = (0..cfg.message_passing_steps)
            .map(|s| {
                let (e_in, n_in, g_in) = if s == 0 {
                    (
                        latent * 3 + outputs,
                        latent + hidden * 2 + outputs,
                        hidden * 2 + outputs,
                    )
                } else {
                    (hidden * 4, hidden * 4, hidden * 3)
                };
                let sp = &gn / s.to_string();
                Step {
                    edge: Mlp::new(&(&sp / "update_edge_fn"), e_in, hidden, layers),
                    node: Mlp::new(&(&sp / "update_node_fn"), n_in, hidden, layers),
                    global: Mlp::new(&(&sp / "update_global_fn"), g_in, hidden, layers),
                }
            })
            .collect();
        let decoder = dense(&(p / "decoder"), hidden, outputs);
        Gnn {
            cfg,
            outputs,
            node_embedder,
            edge_embedder,
            steps,
            decoder,
        }
    }

    /// Checks the widths the model was built for against a data set's.
    pub fn check_data(cfg: &GnnConfig, input_shape: &[i64]) -> Result<(i64, i64)> {
        match input_shape {
            [n, e] if *n >= 1 && *e >= 1 => {
                if cfg.message_passing_steps > 1 && cfg.latent_dim != cfg.hidden_dim {
                    bail!("model kind `gnn`: `model.latent_dim` ({}) must equal `model.hidden_dim` ({}) with more than one message-passing step (the steps after the first take hidden-width nodes and edges, as AlgoPerf's GNN)", cfg.latent_dim, cfg.hidden_dim);
                }
                Ok((*n, *e))
            }
            _ => bail!("model kind `gnn` needs graph data (`data.dataset: ogbg`), got input shape {input_shape:?}"),
        }
    }

    /// One logit per graph and task, [B, outputs].
    pub fn logits(&self, batch: &Batch, mode: Mode) -> Tensor {
        let [x, edge_feat, senders, receivers, node_graph, edge_graph] = &batch.inputs[..] else {
            panic!("a graph minibatch has six input tensors");
        };
        let b = batch.len as i64;
        let n = x.size()[0];
        let drop = (mode == Mode::Train && self.cfg.dropout > 0.0).then_some(self.cfg.dropout);
        let act = self.cfg.activation;
        let mut globals = Tensor::zeros([b, self.outputs], (x.kind(), x.device()));
        let mut nodes = x.linear(&self.node_embedder.0, Some(&self.node_embedder.1));
        let mut edges = edge_feat.linear(&self.edge_embedder.0, Some(&self.edge_embedder.1));
        for s in &self.steps {
            let e_in = Tensor::cat(
                &[
                    edges.shallow_clone(),
                    nodes.index_select(0, senders),
                    nodes.index_select(0, receivers),
                    globals.index_select(0, edge_graph),
                ],
                -1,
            );
            edges = s.edge.forward(&e_in, act, drop);
            let n_in = Tensor::cat(
                &[
                    nodes.shallow_clone(),
                    scatter_sum(&edges, senders, n),
                    scatter_sum(&edges, receivers, n),
                    globals.index_select(0, node_graph),
                ],
                -1,
            );
            nodes = s.node.forward(&n_in, act, drop);
            let g_in = Tensor::cat(
                &[
                    scatter_sum(&nodes, node_graph, b),
                    scatter_sum(&edges, edge_graph, b),
                    globals.shallow_clone(),
                ],
                -1,
            );
            globals = s.global.forward(&g_in, act, drop);
        }
        globals.linear(&self.decoder.0, Some(&self.decoder.1))
    }
}

/// f_i per graph: binary cross-entropy with logits averaged over the labelled
/// tasks of graph i (labels NaN where missing; 0 for a graph with none).
pub fn masked_bce_per_graph(logits: &Tensor, labels: &Tensor) -> Tensor {
    let mask = labels.isnan().logical_not();
    let y = labels.nan_to_num(0.0, None, None);
    let zero = logits.zeros_like();
    let positive = logits.ge(0.0);
    let relu = logits.where_self(&positive, &zero);
    let abs = logits.where_self(&positive, &logits.neg());
    let losses = relu - logits * &y + (abs.neg().exp() + 1.0).log();
    let losses = losses.where_self(&mask, &zero);
    let count = mask
        .to_kind(logits.kind())
        .sum_dim_intlist(1, false, None::<Kind>);
    losses.sum_dim_intlist(1, false, None::<Kind>) / count.clamp_min(1.0)
}

impl Net for Gnn {
    fn train_is_measure(&self, _policy: BatchNormPolicy) -> bool {
        self.cfg.dropout == 0.0
    }

    fn per_example_loss(&self, batch: &Batch, mode: Mode) -> Tensor {
        masked_bce_per_graph(&self.logits(batch, mode), &batch.y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::VarStore;
    use tch::Device;

    /// AlgoPerf's ogbg model at full size: 3,554,176 parameters (the
    /// arithmetic is in tests/abcond_ref/gnn.py; tests/gnn.rs checks the
    /// reference module's count), named as its state_dict.
    #[test]
    fn full_size_parameters_match_algoperf() {
        let vs = VarStore::new(Device::Cpu);
        let _g = Gnn::new(&vs.root(), GnnConfig::default(), 9, 3, 128);
        let vars = vs.variables();
        let n: i64 = vars.values().map(|t| t.numel() as i64).sum();
        assert_eq!(n, 3_554_176);
        for name in [
            "node_embedder.weight",
            "edge_embedder.bias",
            "graph_network.0.update_edge_fn.dense_0.weight",
            "graph_network.4.update_global_fn.norm_0.bias",
            "decoder.weight",
        ] {
            assert!(
                vars.contains_key(name),
                "{name}: {:?}",
                vars.keys().take(5).collect::<Vec<_>>()
            );
        }
        assert_eq!(
            vars["graph_network.0.update_edge_fn.dense_0.weight"].size(),
            [256, 896]
        );
        assert_eq!(
            vars["graph_network.1.update_node_fn.dense_0.weight"].size(),
            [256, 1024]
        );
    }

    /// The masked loss: a missing label is skipped, a graph without labels
    /// gives 0, and the value is the binary cross-entropy with logits.
    #[test]
    fn masked_bce_per_graph_matches_its_definition() {
        let logits = Tensor::from_slice(&[2.0f64, -1.0, 0.5, 3.0]).view([2, 2]);
        let labels = Tensor::from_slice(&[1.0f64, f64::NAN, f64::NAN, f64::NAN]).view([2, 2]);
        let f = Vec::<f64>::try_from(masked_bce_per_graph(&logits, &labels)).unwrap();
        let want = (1.0 + (-2.0f64).exp()).ln();
        assert!((f[0] - want).abs() < 1e-15, "{f:?}");
        assert_eq!(f[1], 0.0);
    }
}
