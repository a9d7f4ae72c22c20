//! Encoder-decoder Transformer of AlgoPerf's `wmt` workload
//! (`algoperf/workloads/wmt/wmt_pytorch/models.py`; Vaswani et al. 2017 in the
//! pre-LayerNorm form of Xiong et al. 2020). The preset (models/transformer-wmt.yaml)
//! is AlgoPerf's size: width d = 1024, 6 encoder and 6 decoder layers, 16 heads,
//! feed-forward width 1024, ReLU — 133,521,408 parameters with its 32,000-token
//! vocabulary, a third of them in the one embedding E [V, d] that encoder input,
//! decoder input and output projection share.
//!
//! Input: source tokens x [B, L] and target tokens y [B, L] (int64 in 1..V, then
//! 0 — AlgoPerf's padding token — to the end of the row; the synthetic data have
//! none) → per-example loss [B]. Padded source positions are masked as keys of
//! the encoder's self-attention and of the cross-attention (AlgoPerf also masks
//! them as queries; a padded query's output never reaches a loss). The
//! decoder's causal mask alone suffices for its padding: a real target position
//! only sees earlier positions, which are real too.
//! Encoder (`encoder.encoder`): E[x] + positions → layers (h + SA(norm1 h);
//! h + FF(norm2 h)) → `norm`. Decoder (`decoder.decoder`): E[shift_right(y)] +
//! positions → layers (causal SA on norm1, cross-attention `multihead_attn` on
//! norm2 against the encoder output, FF on norm3; each a residual) → `norm` →
//! logits h Eᵀ/√d. f_i is the mean over the real (non-padding) target
//! positions of the cross-entropy. AlgoPerf trains on the label-smoothed
//! cross-entropy (`model.label_smoothing`, used in training only) and divides
//! the minibatch's summed token losses by its token count; the probe measures
//! the plain cross-entropy, averaged per sentence so that f = (1/n) Σ f_i.
//! Attention: projections without bias (self-attention `in_proj` [3d, d] = q|k|v;
//! cross-attention `q_proj` [d, d] and `kv_proj` [2d, d] = k|v; `out_proj`),
//! softmax(q kᵀ/√(d/h)) v per head. Positions: AlgoPerf's sinusoids, sin in the
//! first d/2 features and cos in the last d/2, frequencies
//! exp(−ln(10⁴)·j/(d/2 − 1)); a constant, not a parameter. LayerNorm eps 1e-6.
//! Dropout (`model.dropout`, default 0) sits where AlgoPerf puts it (after the
//! positions, on attention probabilities, on the feed-forward hidden layer and on
//! every residual branch) and is active only in `Mode::Train`.
//! Initialisation as AlgoPerf: Linear weights xavier-uniform, biases N(0, 1e-12),
//! embedding N(0, 1), LayerNorm 1/0 (the distributions, not PyTorch's draw order).

use super::mlp::cross_entropy_per_example;
use super::net::{Mode, Net};
use crate::data::Batch;
use crate::model::config::TransformerConfig;
use crate::model::net::BatchNormPolicy;
use anyhow::{bail, Result};
use tch::nn::Path;
use tch::{Kind, Tensor};

/// A Linear layer's weight xavier-uniform, bias (when it has one) N(0, 1e-12).
fn linear(p: &Path, d_out: i64, d_in: i64, bias: bool) -> (Tensor, Option<Tensor>) {
    let bound = (6.0 / (d_in + d_out) as f64).sqrt();
    let w = tch::no_grad(|| {
        Tensor::empty([d_out, d_in], (p.kind(), p.device())).uniform_(-bound, bound)
    });
    let w = p.add("weight", w, true);
    let b = bias.then(|| {
        let b = tch::no_grad(|| Tensor::randn([d_out], (p.kind(), p.device())) * 1e-6);
        p.add("bias", b, true)
    });
    (w, b)
}

struct Dense {
    weight: Tensor,
    bias: Tensor,
}

impl Dense {
    fn new(p: &Path, d_out: i64, d_in: i64) -> Dense {
        let (weight, bias) = linear(p, d_out, d_in, true);
        Dense {
            weight,
            bias: bias.unwrap(),
        }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, Some(&self.bias))
    }
}

struct Norm {
    weight: Tensor,
    bias: Tensor,
}

impl Norm {
    fn new(p: &Path, d: i64) -> Norm {
        Norm {
            weight: p.ones("weight", &[d]),
            bias: p.zeros("bias", &[d]),
        }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        let d = *x.size().last().unwrap();
        x.layer_norm([d], Some(&self.weight), Some(&self.bias), 1e-6, false)
    }
}

/// Self-attention (`in_proj` = q|k|v) or cross-attention (`q_proj`, `kv_proj` = k|v).
struct Attention {
    in_proj: Option<Tensor>,
    q_proj: Option<Tensor>,
    kv_proj: Option<Tensor>,
    out_proj: Tensor,
}

impl Attention {
    fn new(p: &Path, d: i64, cross: bool) -> Attention {
        let proj = |name: &str, d_out: i64| linear(&(p / name), d_out, d, false).0;
        let (in_proj, q_proj, kv_proj) = if cross {
            (None, Some(proj("q_proj", d)), Some(proj("kv_proj", 2 * d)))
        } else {
            (Some(proj("in_proj", 3 * d)), None, None)
        };
        Attention {
            in_proj,
            q_proj,
            kv_proj,
            out_proj: proj("out_proj", d),
        }
    }

    /// Multi-head attention of the queries of `x` [B, T, d] over `memory` (or
    /// over `x` itself), each query seeing only earlier keys when `causal`.
    fn forward(
        &self,
        x: &Tensor,
        memory: Option<&Tensor>,
        heads: i64,
        causal: bool,
        key_pad: Option<&Tensor>,
        drop: &dyn Fn(Tensor) -> Tensor,
    ) -> Tensor {
        let (b, t, d) = x.size3().unwrap();
        let (q, k, v) = match (&self.in_proj, memory) {
            (Some(w), _) => {
                let qkv = x.linear::<Tensor>(w, None).split(d, 2);
                (
                    qkv[0].shallow_clone(),
                    qkv[1].shallow_clone(),
                    qkv[2].shallow_clone(),
                )
            }
            (None, Some(m)) => {
                let kv = m
                    .linear::<Tensor>(self.kv_proj.as_ref().unwrap(), None)
                    .split(d, 2);
                (
                    x.linear::<Tensor>(self.q_proj.as_ref().unwrap(), None),
                    kv[0].shallow_clone(),
                    kv[1].shallow_clone(),
                )
            }
            (None, None) => unreachable!("cross-attention needs the encoder output"),
        };
        let hd = d / heads;
        let split = |u: Tensor| {
            let s = u.size()[1];
            u.view([b, s, heads, hd]).transpose(1, 2)
        };
        let (q, k, v) = (split(q), split(k), split(v));
        let mut scores = q.matmul(&k.transpose(-1, -2)) / (hd as f64).sqrt();
        if causal {
            let s = k.size()[2];
            let future = Tensor::ones([t, s], (Kind::Bool, x.device())).triu(1);
            scores = scores.masked_fill(&future, f64::NEG_INFINITY);
        }
        if let Some(pad) = key_pad {
            let s = k.size()[2];
            scores = scores.masked_fill(&pad.view([b, 1, 1, s]), f64::NEG_INFINITY);
        }
        let probs = drop(scores.softmax(-1, scores.kind()));
        let ctx = probs
            .matmul(&v)
            .transpose(1, 2)
            .contiguous()
            .view([b, t, d]);
        ctx.linear::<Tensor>(&self.out_proj, None)
    }
}

struct EncoderLayer {
    self_attn: Attention,
    linear1: Dense,
    linear2: Dense,
    norm1: Norm,
    norm2: Norm,
}

struct DecoderLayer {
    self_attn: Attention,
    multihead_attn: Attention,
    linear1: Dense,
    linear2: Dense,
    norm1: Norm,
    norm2: Norm,
    norm3: Norm,
}

pub struct Transformer {
    cfg: TransformerConfig,
    embedding: Tensor,
    encoder: Vec<EncoderLayer>,
    encoder_norm: Norm,
    decoder: Vec<DecoderLayer>,
    decoder_norm: Norm,
}

/// AlgoPerf's sinusoidal positions [len, d], computed in f64: sin(pos·ω_j) in
/// features j < d/2, cos(pos·ω_j) in d/2 + j, ω_j = exp(−ln(10⁴)·j/(d/2 − 1)).
pub fn positions(len: i64, d: i64) -> Tensor {
    let half = d / 2;
    let scale = -(10_000f64.ln()) / (half - 1) as f64;
    let mut pe = vec![0f64; (len * d) as usize];
    for pos in 0..len {
        let row = &mut pe[(pos * d) as usize..((pos + 1) * d) as usize];
        for j in 0..half {
            let a = pos as f64 * (j as f64 * scale).exp();
            row[j as usize] = a.sin();
            row[(half + j) as usize] = a.cos();
        }
    }
    Tensor::from_slice(&pe).view([len, d])
}

impl Transformer {
    pub fn new(p: &Path, cfg: TransformerConfig, vocab: i64) -> Result<Transformer> {
        let TransformerConfig {
            width: d,
            depth,
            heads,
            mlp_dim,
            ..
        } = cfg;
        if d % heads != 0 || d % 2 != 0 || d < 4 {
            bail!("Transformer width {d} must be ≥ 4, even and a multiple of the {heads} heads");
        }
        let embedding = tch::no_grad(|| Tensor::randn([vocab, d], (p.kind(), p.device())));
        let embedding = (p / "shared_embedding").add("weight", embedding, true);
        let enc = p / "encoder" / "encoder";
        let encoder = (0..depth)
            .map(|i| {
                let l = &enc / "layers" / i.to_string();
                EncoderLayer {
                    self_attn: Attention::new(&(&l / "self_attn"), d, false),
                    linear1: Dense::new(&(&l / "linear1"), mlp_dim, d),
                    linear2: Dense::new(&(&l / "linear2"), d, mlp_dim),
                    norm1: Norm::new(&(&l / "norm1"), d),
                    norm2: Norm::new(&(&l / "norm2"), d),
                }
            })
            .collect();
        let encoder_norm = Norm::new(&(&enc / "norm"), d);
        let dec = p / "decoder" / "decoder";
        let decoder = (0..depth)
            .map(|i| {
                let l = &dec / "layers" / i.to_string();
                DecoderLayer {
                    self_attn: Attention::new(&(&l / "self_attn"), d, false),
                    multihead_attn: Attention::new(&(&l / "multihead_attn"), d, true),
                    linear1: Dense::new(&(&l / "linear1"), mlp_dim, d),
                    linear2: Dense::new(&(&l / "linear2"), d, mlp_dim),
                    norm1: Norm::new(&(&l / "norm1"), d),
                    norm2: Norm::new(&(&l / "norm2"), d),
                    norm3: Norm::new(&(&l / "norm3"), d),
                }
            })
            .collect();
        let decoder_norm = Norm::new(&(&dec / "norm"), d);
        Ok(Transformer {
            cfg,
            embedding,
            encoder,
            encoder_norm,
            decoder,
            decoder_norm,
        })
    }

    /// Logits [B, L, V] for sources `x` and targets `y` (teacher forcing).
    // `h = h + …`, not `h += …`: Tensor's `+=` is in place, and autograd still
    // needs the old `h` (the LayerNorm input).
    #[allow(clippy::assign_op_pattern)]
    pub fn logits(&self, x: &Tensor, y: &Tensor, mode: Mode) -> Tensor {
        let TransformerConfig {
            width: d,
            heads,
            dropout,
            ..
        } = self.cfg;
        let train = mode == Mode::Train && dropout > 0.0;
        let drop = |t: Tensor| if train { t.dropout(dropout, true) } else { t };
        let (b, len) = y.size2().unwrap();
        let embed = |tokens: &Tensor| {
            let pe = positions(tokens.size()[1], d)
                .to_kind(self.embedding.kind())
                .to_device(tokens.device());
            drop(Tensor::embedding(&self.embedding, tokens, -1, false, false) + pe)
        };
        let ff = |h: &Tensor, l1: &Dense, l2: &Dense| drop(l2.forward(&drop(l1.forward(h).relu())));
        // Source padding, masked as keys (None: no padding in this minibatch).
        let src_pad = x.eq(0);
        let src_pad = bool::try_from(src_pad.any())
            .unwrap_or(true)
            .then_some(src_pad);
        let src_pad = src_pad.as_ref();

        let mut h = embed(x);
        for l in &self.encoder {
            let a = l
                .self_attn
                .forward(&l.norm1.forward(&h), None, heads, false, src_pad, &drop);
            h = h + drop(a);
            let f = ff(&l.norm2.forward(&h), &l.linear1, &l.linear2);
            h = h + f;
        }
        let memory = self.encoder_norm.forward(&h);

        // Teacher forcing: position j sees the targets before j (padding 0 first).
        let shifted = Tensor::cat(
            &[
                Tensor::zeros([b, 1], (Kind::Int64, y.device())),
                y.narrow(1, 0, len - 1),
            ],
            1,
        );
        let mut h = embed(&shifted);
        for l in &self.decoder {
            let a = l
                .self_attn
                .forward(&l.norm1.forward(&h), None, heads, true, None, &drop);
            h = h + drop(a);
            let c = (l.multihead_attn).forward(
                &l.norm2.forward(&h),
                Some(&memory),
                heads,
                false,
                src_pad,
                &drop,
            );
            h = h + drop(c);
            let f = ff(&l.norm3.forward(&h), &l.linear1, &l.linear2);
            h = h + f;
        }
        let h = self.decoder_norm.forward(&h);
        h.matmul(&self.embedding.tr()) / (d as f64).sqrt()
    }
}

impl Net for Transformer {
    fn train_is_measure(&self, _policy: BatchNormPolicy) -> bool {
        self.cfg.dropout == 0.0 && self.cfg.label_smoothing == 0.0
    }

    fn per_example_loss(&self, batch: &Batch, mode: Mode) -> Tensor {
        let logits = self.logits(&batch.x, &batch.y, mode);
        let (b, len, v) = logits.size3().unwrap();
        let flat = logits.reshape([b * len, v]);
        let mut per_token = cross_entropy_per_example(&flat, &batch.y.reshape([b * len]));
        let eps = self.cfg.label_smoothing;
        if mode == Mode::Train && eps > 0.0 {
            // torch's cross_entropy(label_smoothing=ε): the target
            // distribution (1 − ε)·onehot + ε/V.
            let kind = per_token.kind();
            let uniform =
                -flat
                    .log_softmax(-1, kind)
                    .mean_dim(Some([1i64].as_slice()), false, kind);
            per_token = per_token * (1.0 - eps) + uniform * eps;
        }
        let per_token = per_token.view([b, len]);
        let real = batch.y.ne(0);
        if bool::try_from(real.all()).unwrap_or(false) {
            per_token.mean_dim(1, false, None::<Kind>)
        } else {
            // Mean over the real target positions of each sentence.
            let w = real.to_kind(per_token.kind());
            (per_token * &w).sum_dim_intlist(1, false, None::<Kind>)
                / w.sum_dim_intlist(1, false, None::<Kind>)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::VarStore;
    use tch::Device;

    #[test]
    fn wmt_parameter_count() {
        let vs = VarStore::new(Device::Cpu);
        let _net = Transformer::new(&vs.root(), TransformerConfig::wmt(), 32_000).unwrap();
        let vars = vs.variables();
        let params: i64 = vars.values().map(|t| t.numel() as i64).sum();
        // embedding 32000·1024 + 6 encoder layers (3d² + d² + 2(d² + d) + 4d)
        // + 6 decoder layers (3d² + d² + d² + 2d² + d² + 2(d² + d) + 6d) + 2 norms (2d each)
        // = tests/check_transformer.py's reference.
        assert_eq!(params, 133_521_408);
        assert!(vars.contains_key("encoder.encoder.layers.5.self_attn.in_proj.weight"));
        assert!(vars.contains_key("decoder.decoder.layers.0.multihead_attn.kv_proj.weight"));
        assert_eq!(vars["shared_embedding.weight"].size(), [32_000, 1024]);
    }

    #[test]
    fn positions_known_values() {
        // d = 6: half = 3, ω = [1, 10⁻², 10⁻⁴]; position 2.
        let pe = positions(3, 6);
        let row = Vec::<f64>::try_from(pe.get(2)).unwrap();
        let want = [
            2f64.sin(),
            0.02f64.sin(),
            0.0002f64.sin(),
            2f64.cos(),
            0.02f64.cos(),
            0.0002f64.cos(),
        ];
        for (a, b) in row.iter().zip(want) {
            assert!((a - b).abs() < 1e-15, "{row:?}");
        }
    }

    /// The decoder is causal: target j does not change the logits of earlier
    /// positions.
    #[test]
    fn decoder_is_causal() {
        let mut vs = VarStore::new(Device::Cpu);
        vs.set_kind(Kind::Double);
        tch::manual_seed(0);
        let cfg = TransformerConfig {
            width: 8,
            depth: 2,
            heads: 2,
            mlp_dim: 16,
            dropout: 0.0,
            label_smoothing: 0.0,
        };
        let net = Transformer::new(&vs.root(), cfg, 11).unwrap();
        let x = Tensor::from_slice(&[3i64, 1, 4, 1, 5]).view([1, 5]);
        let y = Tensor::from_slice(&[9i64, 2, 6, 5, 3]).view([1, 5]);
        let y2 = Tensor::from_slice(&[9i64, 2, 6, 8, 7]).view([1, 5]);
        let mode = Mode::Measure(crate::config::BatchNormPolicy::BatchStats);
        let a = tch::no_grad(|| net.logits(&x, &y, mode));
        let b = tch::no_grad(|| net.logits(&x, &y2, mode));
        // Positions 0..=3 see targets 0..=2 only (shifted right by one).
        assert!(a
            .narrow(1, 0, 4)
            .allclose(&b.narrow(1, 0, 4), 1e-14, 1e-14, false));
        assert!(!a
            .narrow(1, 4, 1)
            .allclose(&b.narrow(1, 4, 1), 1e-6, 1e-6, false));
    }
}
