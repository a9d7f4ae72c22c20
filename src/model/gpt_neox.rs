//! Decoder-only Transformer as in Pythia (EleutherAI's GPT-NeoX): token
//! embedding, `depth` layers of LayerNorm'd attention and MLP added to the
//! residual in parallel (x + attn(ln1(x)) + mlp(ln2(x))), rotary position
//! embeddings on the first `rotary_pct` of each head's dimensions, a final
//! LayerNorm and an untied output head.
//!
//! Parameter names and shapes are those of Hugging Face transformers'
//! `GPTNeoXForCausalLM` (`gpt_neox.embed_in.weight`,
//! `gpt_neox.layers.{i}.{input_layernorm,post_attention_layernorm}.{weight,bias}`,
//! `gpt_neox.layers.{i}.attention.{query_key_value,dense}.{weight,bias}`,
//! `gpt_neox.layers.{i}.mlp.{dense_h_to_4h,dense_4h_to_h}.{weight,bias}`,
//! `gpt_neox.final_layer_norm.{weight,bias}`, `lm_head.weight`; transformers
//! 5, whose loader renames the Pythia checkpoints' `embed_out.weight` to
//! `lm_head.weight`), so a snapshot loads into it with
//! `load_state_dict(strict=True)`. The fused
//! query_key_value output is split per head as there: [B, T, heads, 3·d]
//! → q, k, v. Rotary cos/sin are computed in f32 and cast to the model dtype,
//! as there. GELU is the exact (erf) one; LayerNorm eps 1e-5.
//!
//! Initialisation is GPT-NeoX's `_init_weights`: every linear and embedding
//! weight N(0, 0.02²), biases 0, LayerNorm weight 1 and bias 0 (drawn with
//! libtorch's generator; not bit-identical with a transformers model built
//! after torch.manual_seed — parity is checked from snapshots).
//!
//! f_i is the mean next-token cross-entropy over the positions of window i.

use super::net::{next_token_loss, normal, Mode, Net};
use crate::data::Batch;
use crate::model::config::GptNeoxConfig;
use crate::model::net::BatchNormPolicy;
use tch::nn::Path;
use tch::{Kind, Tensor};

struct Norm {
    weight: Tensor,
    bias: Tensor,
}

impl Norm {
    fn new(p: &Path, width: i64) -> Norm {
        Norm {
            weight: p.ones("weight", &[width]),
            bias: p.zeros("bias", &[width]),
        }
    }
    fn apply(&self, x: &Tensor) -> Tensor {
        let w = self.weight.size()[0];
        x.layer_norm([w], Some(&self.weight), Some(&self.bias), 1e-5, false)
    }
}

struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    fn new(p: &Path, out_dim: i64, in_dim: i64, std: f64) -> Linear {
        Linear {
            weight: normal(p, "weight", &[out_dim, in_dim], std),
            bias: p.zeros("bias", &[out_dim]),
        }
    }
    fn apply(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, Some(&self.bias))
    }
}

struct Layer {
    input_layernorm: Norm,
    post_attention_layernorm: Norm,
    query_key_value: Linear,
    dense: Linear,
    h_to_4h: Linear,
    four_h_to_h: Linear,
}

pub struct GptNeox {
    cfg: GptNeoxConfig,
    embed_in: Tensor,
    layers: Vec<Layer>,
    final_layer_norm: Norm,
    embed_out: Tensor,
}

impl GptNeox {
    pub fn new(p: &Path, cfg: GptNeoxConfig, vocab: i64) -> GptNeox {
        let (w, std) = (cfg.width, cfg.init_std);
        let g = p / "gpt_neox";
        let embed_in = normal(&(&g / "embed_in"), "weight", &[vocab, w], std);
        let layers = (0..cfg.depth)
            .map(|i| {
                let l = &g / "layers" / i;
                let attn = &l / "attention";
                let mlp = &l / "mlp";
                Layer {
                    input_layernorm: Norm::new(&(&l / "input_layernorm"), w),
                    post_attention_layernorm: Norm::new(&(&l / "post_attention_layernorm"), w),
                    query_key_value: Linear::new(&(&attn / "query_key_value"), 3 * w, w, std),
                    dense: Linear::new(&(&attn / "dense"), w, w, std),
                    h_to_4h: Linear::new(&(&mlp / "dense_h_to_4h"), cfg.mlp_dim, w, std),
                    four_h_to_h: Linear::new(&(&mlp / "dense_4h_to_h"), w, cfg.mlp_dim, std),
                }
            })
            .collect();
        let final_layer_norm = Norm::new(&(&g / "final_layer_norm"), w);
        let embed_out = normal(&(p / "lm_head"), "weight", &[vocab, w], std);
        GptNeox {
            cfg,
            embed_in,
            layers,
            final_layer_norm,
            embed_out,
        }
    }

    /// Rotary cos and sin, [T, rotary dims], computed in f32 (then cast).
    fn rotary(&self, t: i64, kind: Kind, device: tch::Device) -> (Tensor, Tensor) {
        let dim = self.cfg.rotary_dims();
        let exponent = Tensor::arange_start_step(0, dim, 2, (Kind::Float, device)) / dim as f64;
        let inv_freq = Tensor::pow_scalar(self.cfg.rotary_base, &exponent).reciprocal();
        let pos = Tensor::arange(t, (Kind::Float, device));
        let freqs = pos.unsqueeze(1) * inv_freq.unsqueeze(0);
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        (emb.cos().to_kind(kind), emb.sin().to_kind(kind))
    }

    fn attention(&self, layer: &Layer, h: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
        let (b, t, w) = h.size3().expect("[B, T, width]");
        let heads = self.cfg.heads;
        let d = w / heads;
        let qkv = layer
            .query_key_value
            .apply(h)
            .view([b, t, heads, 3 * d])
            .transpose(1, 2);
        let parts = qkv.chunk(3, -1);
        let rotate = |x: &Tensor| -> Tensor {
            let r = cos.size()[1];
            let (x_rot, x_pass) = (x.narrow(-1, 0, r), x.narrow(-1, r, d - r));
            let half = r / 2;
            let rotated = Tensor::cat(
                &[-x_rot.narrow(-1, half, r - half), x_rot.narrow(-1, 0, half)],
                -1,
            );
            Tensor::cat(&[&x_rot * cos + rotated * sin, x_pass], -1)
        };
        let (q, k, v) = (rotate(&parts[0]), rotate(&parts[1]), &parts[2]);
        let scores = q.matmul(&k.transpose(-2, -1)) * (d as f64).powf(-0.5);
        let causal = Tensor::ones([t, t], (Kind::Bool, h.device())).triu(1);
        let probs = scores
            .masked_fill(&causal, f64::NEG_INFINITY)
            .softmax(-1, scores.kind());
        let out = probs.matmul(v).transpose(1, 2).reshape([b, t, w]);
        layer.dense.apply(&out)
    }
}

impl Net for GptNeox {
    // The mode changes nothing in this net.
    fn train_is_measure(&self, _policy: BatchNormPolicy) -> bool {
        true
    }

    fn per_example_loss(&self, batch: &Batch, _mode: Mode) -> Tensor {
        let x = &batch.x;
        let mut h = Tensor::embedding(&self.embed_in, x, -1, false, false);
        let (cos, sin) = self.rotary(x.size()[1], h.kind(), h.device());
        for layer in &self.layers {
            let attn = self.attention(layer, &layer.input_layernorm.apply(&h), &cos, &sin);
            let mlp_in = if self.cfg.parallel_residual {
                layer.post_attention_layernorm.apply(&h)
            } else {
                layer.post_attention_layernorm.apply(&(&attn + &h))
            };
            let mlp = layer
                .four_h_to_h
                .apply(&layer.h_to_4h.apply(&mlp_in).gelu("none"));
            // Parallel: x + attn(ln1(x)) + mlp(ln2(x)); sequential:
            // y = x + attn(ln1(x)), y + mlp(ln2(y)) — the same sum.
            h = mlp + attn + h;
        }
        let logits = self
            .final_layer_norm
            .apply(&h)
            .linear::<Tensor>(&self.embed_out, None);
        next_token_loss(&logits, &batch.y)
    }
}
