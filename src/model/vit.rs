//! Vision Transformer of AlgoPerf's `imagenet_vit` workload
//! (`algoperf/workloads/imagenet_vit/imagenet_pytorch/models.py`; Dosovitskiy et
//! al. 2021, in the simplified "big_vision" form of Beyer et al. 2022): ViT-S/16
//! by the preset (width 384, depth 12, MLP 1536, 6 heads, patch 16).
//!
//! Input [B, 3, H, W] with H, W multiples of the patch size → logits [B, C] →
//! cross-entropy per example. Patches: conv P×P/P (`conv_patch_extract`) → T =
//! HW/P² tokens of width D, plus a fixed 2-D sin-cos position embedding (MoCo v3
//! layout [sin x, cos x, sin y, cos y], temperature 10⁴; a constant, not a
//! parameter) → no class token → `depth` pre-LayerNorm blocks
//! (`encoder.net.{i}`: layer_norm0 → self_attention1 (query/key/value/out) →
//! residual; layer_norm2 → mlp3 (linear1 → GELU(tanh) → linear2) → residual;
//! LayerNorm eps 1e-6) → `encoder.encoder_norm` → mean over tokens →
//! tanh(`pre_logits`) (AlgoPerf's default `rep_size`) → `head`.
//! 22,122,472 parameters for ViT-S/16 with 1000 classes (independent of the
//! image size: positions are not parameters).
//!
//! Dropout (`model.dropout`, default 0) sits where AlgoPerf puts it (after the
//! position embedding, on attention probabilities, on the MLP hidden layer and on
//! both residual branches) and is active only in `Mode::Train`.
//! Initialisation as AlgoPerf: attention Linear xavier-uniform with bias 0, MLP
//! Linear xavier-uniform with bias N(0, 1e-12), patch conv and pre_logits LeCun
//! truncated normal with bias 0, head zero, LayerNorm 1/0.

use super::mlp::cross_entropy_per_example;
use super::net::{Mode, Net};
use super::resnet50::lecun_trunc_normal;
use crate::data::Batch;
use crate::model::config::VitConfig;
use crate::model::net::BatchNormPolicy;
use anyhow::{bail, Result};
use tch::nn::Path;
use tch::{Kind, Tensor};

type Linear = (Tensor, Tensor);

fn xavier(p: &Path, d_out: i64, d_in: i64, bias_std: f64) -> Linear {
    let bound = (6.0 / (d_in + d_out) as f64).sqrt();
    let w = tch::no_grad(|| {
        Tensor::empty([d_out, d_in], (p.kind(), p.device())).uniform_(-bound, bound)
    });
    let w = p.add("weight", w, true);
    let b = tch::no_grad(|| Tensor::randn([d_out], (p.kind(), p.device())) * bias_std);
    (w, p.add("bias", b, true))
}

fn layer_norm(p: &Path, d: i64) -> Linear {
    (p.ones("weight", &[d]), p.zeros("bias", &[d]))
}

fn lin(x: &Tensor, l: &Linear) -> Tensor {
    x.linear(&l.0, Some(&l.1))
}

fn ln(x: &Tensor, l: &Linear, d: i64) -> Tensor {
    x.layer_norm([d], Some(&l.0), Some(&l.1), 1e-6, false)
}

struct Block {
    layer_norm0: Linear,
    query: Linear,
    key: Linear,
    value: Linear,
    out: Linear,
    layer_norm2: Linear,
    linear1: Linear,
    linear2: Linear,
}

pub struct Vit {
    cfg: VitConfig,
    patch: Linear,
    blocks: Vec<Block>,
    encoder_norm: Linear,
    pre_logits: Linear,
    head: Linear,
}

/// The 2-D sin-cos position embedding [h·w, D] of a h×w token grid (row-major
/// tokens, as the flattened conv output), computed in f64.
pub fn posemb_sincos_2d(h: i64, w: i64, width: i64) -> Tensor {
    let q = width / 4;
    let omega: Vec<f64> = (0..q)
        .map(|j| 1.0 / 10_000f64.powf(j as f64 / (q - 1) as f64))
        .collect();
    let mut pe = vec![0f64; (h * w * width) as usize];
    for t in 0..h * w {
        let (y, x) = ((t / w) as f64, (t % w) as f64);
        let row = &mut pe[(t * width) as usize..((t + 1) * width) as usize];
        for (j, om) in omega.iter().enumerate() {
            let j = j as i64;
            row[j as usize] = (x * om).sin();
            row[(q + j) as usize] = (x * om).cos();
            row[(2 * q + j) as usize] = (y * om).sin();
            row[(3 * q + j) as usize] = (y * om).cos();
        }
    }
    Tensor::from_slice(&pe).view([h * w, width])
}

impl Vit {
    pub fn new(p: &Path, cfg: VitConfig, input_shape: &[i64], classes: i64) -> Result<Vit> {
        let VitConfig {
            width: d,
            depth,
            heads,
            mlp_dim,
            patch,
            ..
        } = cfg;
        match input_shape {
            [3, h, w] if h % patch == 0 && w % patch == 0 => {}
            _ => bail!(
                "model kind `vit` needs RGB images whose sides are multiples of `model.patch_size` = {patch}, got input shape {input_shape:?}"
            ),
        }
        if d % heads != 0 || d % 4 != 0 || d < 8 {
            bail!("ViT width {d} must be ≥ 8, a multiple of 4 and of the {heads} heads");
        }
        let cp = p / "conv_patch_extract";
        let patch_w = lecun_trunc_normal(&cp, "weight", &[d, 3, patch, patch], 3 * patch * patch);
        let patch_b = cp.zeros("bias", &[d]);
        let enc = p / "encoder";
        let blocks = (0..depth)
            .map(|i| {
                let b = &enc / "net" / i.to_string();
                let att = &b / "self_attention1";
                let mlp = &b / "mlp3";
                Block {
                    layer_norm0: layer_norm(&(&b / "layer_norm0"), d),
                    query: xavier(&(&att / "query"), d, d, 0.0),
                    key: xavier(&(&att / "key"), d, d, 0.0),
                    value: xavier(&(&att / "value"), d, d, 0.0),
                    out: xavier(&(&att / "out"), d, d, 0.0),
                    layer_norm2: layer_norm(&(&b / "layer_norm2"), d),
                    linear1: xavier(&(&mlp / "linear1"), mlp_dim, d, 1e-6),
                    linear2: xavier(&(&mlp / "linear2"), d, mlp_dim, 1e-6),
                }
            })
            .collect();
        let encoder_norm = layer_norm(&(&enc / "encoder_norm"), d);
        let pl = p / "pre_logits";
        let pre_logits = (
            lecun_trunc_normal(&pl, "weight", &[d, d], d),
            pl.zeros("bias", &[d]),
        );
        let hp = p / "head";
        let head = (
            hp.zeros("weight", &[classes, d]),
            hp.zeros("bias", &[classes]),
        );
        Ok(Vit {
            cfg,
            patch: (patch_w, patch_b),
            blocks,
            encoder_norm,
            pre_logits,
            head,
        })
    }

    /// Logits [B, C].
    // `h = h + …`, not `h += …`: Tensor's `+=` is in place, and autograd still
    // needs the old `h` (the LayerNorm input).
    #[allow(clippy::assign_op_pattern)]
    pub fn logits(&self, x: &Tensor, mode: Mode) -> Tensor {
        let VitConfig {
            width: d,
            heads,
            patch,
            dropout,
            ..
        } = self.cfg;
        let train = mode == Mode::Train && dropout > 0.0;
        let drop = |t: Tensor| if train { t.dropout(dropout, true) } else { t };
        let h = x.conv2d(
            &self.patch.0,
            Some(&self.patch.1),
            [patch, patch],
            [0, 0],
            [1, 1],
            1,
        );
        let (n, gh, gw) = (h.size()[0], h.size()[2], h.size()[3]);
        let t = gh * gw;
        let pe = posemb_sincos_2d(gh, gw, d)
            .to_kind(h.kind())
            .to_device(h.device());
        let mut h = drop(h.reshape([n, d, t]).transpose(1, 2) + pe);
        let hd = d / heads;
        let split = |u: Tensor| u.view([n, t, heads, hd]).permute([0, 2, 1, 3]);
        for b in &self.blocks {
            let y = ln(&h, &b.layer_norm0, d);
            let q = split(lin(&y, &b.query));
            let k = split(lin(&y, &b.key));
            let v = split(lin(&y, &b.value));
            let scores = q.matmul(&k.transpose(-1, -2)) / (hd as f64).sqrt();
            // No explicit dtype: under `train.autocast` libtorch's autocast
            // policy picks it, as for torch.softmax (f32 on CUDA).
            let probs = drop(scores.softmax(-1, None));
            let ctx = probs
                .matmul(&v)
                .permute([0, 2, 1, 3])
                .contiguous()
                .view([n, t, d]);
            h = h + drop(lin(&ctx, &b.out));
            let y = ln(&h, &b.layer_norm2, d);
            let y = drop(lin(&y, &b.linear1).gelu("tanh"));
            h = h + drop(lin(&y, &b.linear2));
        }
        let h = ln(&h, &self.encoder_norm, d).mean_dim(1, false, None::<Kind>);
        lin(&lin(&h, &self.pre_logits).tanh(), &self.head)
    }
}

impl Net for Vit {
    fn train_is_measure(&self, _policy: BatchNormPolicy) -> bool {
        self.cfg.dropout == 0.0
    }

    fn logits(&self, batch: &Batch, mode: Mode) -> Option<Tensor> {
        Some(self.logits(&batch.x, mode))
    }

    fn per_example_loss(&self, batch: &Batch, mode: Mode) -> Tensor {
        let logits = Net::logits(self, batch, mode).expect("a classifier has logits");
        cross_entropy_per_example(&logits, &batch.y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::VarStore;
    use tch::Device;

    #[test]
    fn vit_s16_parameter_count() {
        let vs = VarStore::new(Device::Cpu);
        let _net = Vit::new(&vs.root(), VitConfig::small16(), &[3, 224, 224], 1000).unwrap();
        let params: i64 = vs.variables().values().map(|t| t.numel() as i64).sum();
        // = tests/torch_vision_models.py's ViT-S/16 (checked there too).
        assert_eq!(params, 22_122_472);
        assert!(vs.variables().values().all(|t| t.requires_grad()));
    }

    #[test]
    fn position_embedding_known_values() {
        // width 8: q = 2, omega = [1, 1e-4]; token 5 of a 2×3 grid is (y, x) = (1, 2).
        let pe = posemb_sincos_2d(2, 3, 8);
        let row = Vec::<f64>::try_from(pe.get(5)).unwrap();
        let want = [
            2f64.sin(),
            (2e-4f64).sin(),
            2f64.cos(),
            (2e-4f64).cos(),
            1f64.sin(),
            (1e-4f64).sin(),
            1f64.cos(),
            (1e-4f64).cos(),
        ];
        for (a, b) in row.iter().zip(want) {
            assert!((a - b).abs() < 1e-15, "{row:?}");
        }
    }
}
