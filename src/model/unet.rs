//! The U-Net of AlgoPerf's fastMRI workload
//! (`algoperf/workloads/fastmri/fastmri_pytorch/models.py`, after the fastMRI
//! reference U-Net of Ronneberger et al. 2015), with its parameter names,
//! shapes and initialisation. With C = `channels` (32) and P = `pool_layers` (4):
//!
//! - `down_sample_layers.{i}` (i < P): ConvBlock 1 → C → 2C → … → 2^{P−1}C, each
//!   followed by 2×2 average pooling; its output before pooling is kept as a
//!   skip connection;
//! - `conv`: ConvBlock 2^{P−1}C → 2^P C at the bottom;
//! - `up_transpose_conv.{i}`: ConvTranspose2d 2×2, stride 2 (no bias), halving
//!   the channels, → InstanceNorm → LeakyReLU(0.2); where the skip is one pixel
//!   larger (odd sizes) the result is reflect-padded by one on the right or
//!   bottom; then `cat([upsampled, skip])` and `up_conv.{i}` (ConvBlock 2c → c);
//!   the last, `up_conv.{P−1}`, is `0` (ConvBlock 2C → C) then `1`, a 1×1 conv
//!   with bias to the output channel.
//!
//! ConvBlock (`conv_layers` slots 0–7): [3×3 conv, padding 1, no bias →
//! InstanceNorm2d (eps 1e-5, no affine, no running statistics) → LeakyReLU(0.2)
//! → Dropout2d] twice; the weights are slots 0 and 4. 7,756,097 parameters at
//! AlgoPerf's size. Initialisation: every conv weight truncated LeCun normal
//! (AlgoPerf's `pytorch_default_init`; a transposed conv's fan-in is its
//! out-channels × 4, as torch computes it), the one bias zero. Dropout
//! (`model.dropout`, channel-wise) acts in training only.
//!
//! Input x [B, H, W] (one channel) → output [B, H, W]; f_i is the mean over the
//! H·W pixels of |output − target| (AlgoPerf's L1 loss per example).

use super::net::{BatchNormPolicy, Mode, Net};
use super::resnet50::lecun_trunc_normal;
use crate::data::Batch;
use crate::model::config::UnetConfig;
use tch::nn::Path;
use tch::{Kind, Tensor};

/// Two 3×3 convolutions (weights of slots 0 and 4).
struct ConvBlock {
    w0: Tensor,
    w4: Tensor,
}

impl ConvBlock {
    fn new(p: &Path, c_in: i64, c_out: i64) -> ConvBlock {
        let l = p / "conv_layers";
        ConvBlock {
            w0: lecun_trunc_normal(&(&l / "0"), "weight", &[c_out, c_in, 3, 3], c_in * 9),
            w4: lecun_trunc_normal(&(&l / "4"), "weight", &[c_out, c_out, 3, 3], c_out * 9),
        }
    }

    fn forward(&self, x: &Tensor, dropout: f64) -> Tensor {
        let mut h = x.shallow_clone();
        for w in [&self.w0, &self.w4] {
            h = norm_act(&h.conv2d(w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1));
            if dropout > 0.0 {
                h = h.feature_dropout(dropout, true);
            }
        }
        h
    }
}

/// InstanceNorm2d (eps 1e-5, no affine, no running statistics) → LeakyReLU(0.2)
/// (torch's `leaky_relu` kernel, through the shim of crate::torch::ops).
fn norm_act(x: &Tensor) -> Tensor {
    let n = x.instance_norm(
        None::<Tensor>,
        None::<Tensor>,
        None::<Tensor>,
        None::<Tensor>,
        true,
        0.1,
        1e-5,
        false,
    );
    crate::torch::ops::leaky_relu(&n, 0.2)
}

pub struct Unet {
    cfg: UnetConfig,
    down: Vec<ConvBlock>,
    bottom: ConvBlock,
    up_transpose: Vec<Tensor>,
    up: Vec<ConvBlock>,
    head: (Tensor, Tensor),
}

impl Unet {
    pub fn new(p: &Path, cfg: UnetConfig) -> Unet {
        let c = cfg.channels;
        let layers = cfg.pool_layers;
        let mut ch = c;
        let mut down = vec![ConvBlock::new(
            &(p / "down_sample_layers" / "0"),
            cfg.in_chans,
            c,
        )];
        for i in 1..layers {
            down.push(ConvBlock::new(
                &(p / "down_sample_layers" / i.to_string()),
                ch,
                ch * 2,
            ));
            ch *= 2;
        }
        let bottom = ConvBlock::new(&(p / "conv"), ch, ch * 2);
        let (mut up_transpose, mut up) = (Vec::new(), Vec::new());
        for i in 0..layers {
            let t = p / "up_transpose_conv" / i.to_string() / "layers" / "0";
            // ConvTranspose2d weight [in, out, 2, 2]; torch's fan-in is out·4.
            up_transpose.push(lecun_trunc_normal(
                &t,
                "weight",
                &[ch * 2, ch, 2, 2],
                ch * 4,
            ));
            let block = if i + 1 < layers {
                p / "up_conv" / i.to_string()
            } else {
                p / "up_conv" / i.to_string() / "0"
            };
            up.push(ConvBlock::new(&block, ch * 2, ch));
            ch /= 2;
        }
        let last = p / "up_conv" / (layers - 1).to_string() / "1";
        let head = (
            lecun_trunc_normal(&last, "weight", &[cfg.out_chans, c, 1, 1], c),
            last.zeros("bias", &[cfg.out_chans]),
        );
        Unet {
            cfg,
            down,
            bottom,
            up_transpose,
            up,
            head,
        }
    }

    /// Output [B, H, W] for images `x` [B, H, W].
    pub fn output(&self, x: &Tensor, mode: Mode) -> Tensor {
        let dropout = if mode == Mode::Train {
            self.cfg.dropout
        } else {
            0.0
        };
        let mut h = x.unsqueeze(1);
        let mut skips = Vec::new();
        for block in &self.down {
            h = block.forward(&h, dropout);
            skips.push(h.shallow_clone());
            h = h.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>);
        }
        h = self.bottom.forward(&h, dropout);
        for (w, block) in self.up_transpose.iter().zip(&self.up) {
            let skip = skips.pop().expect("one skip per level");
            h = norm_act(&h.conv_transpose2d(w, None::<Tensor>, [2, 2], [0, 0], [0, 0], 1, [1, 1]));
            let (pad_w, pad_h) = (
                i64::from(h.size()[3] != skip.size()[3]),
                i64::from(h.size()[2] != skip.size()[2]),
            );
            if pad_w + pad_h > 0 {
                h = h.pad([0, pad_w, 0, pad_h], "reflect", None);
            }
            h = block.forward(&Tensor::cat(&[h, skip], 1), dropout);
        }
        let (w, b) = &self.head;
        h.conv2d(w, Some(b), [1, 1], [0, 0], [1, 1], 1)
            .squeeze_dim(1)
    }
}

impl Net for Unet {
    fn train_is_measure(&self, _policy: BatchNormPolicy) -> bool {
        self.cfg.dropout == 0.0
    }

    fn per_example_loss(&self, batch: &Batch, mode: Mode) -> Tensor {
        let out = self.output(&batch.x, mode);
        (out - &batch.y)
            .abs()
            .flatten(1, -1)
            .mean_dim(1, false, None::<Kind>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::VarStore;
    use tch::Device;

    /// AlgoPerf's fastMRI U-Net: 7,756,097 parameters (tests/abcond_ref/unet.py
    /// builds AlgoPerf's module and tests/unet.rs compares), named as its
    /// state_dict, no buffers.
    #[test]
    fn full_size_parameters_match_algoperf() {
        let vs = VarStore::new(Device::Cpu);
        let _u = Unet::new(&vs.root(), UnetConfig::default());
        let vars = vs.variables();
        let n: i64 = vars.values().map(|t| t.numel() as i64).sum();
        assert_eq!(n, 7_756_097);
        assert_eq!(vars.len(), 24);
        assert_eq!(
            vars["up_transpose_conv.0.layers.0.weight"].size(),
            [512, 256, 2, 2]
        );
        assert_eq!(vars["up_conv.3.1.weight"].size(), [1, 32, 1, 1]);
        assert_eq!(
            vars["up_conv.3.0.conv_layers.4.weight"].size(),
            [32, 32, 3, 3]
        );
        assert_eq!(vars["conv.conv_layers.0.weight"].size(), [512, 256, 3, 3]);
    }

    /// Odd sizes: the reflect padding brings every level back to its skip's size.
    #[test]
    fn odd_sizes_keep_the_input_shape() {
        let mut vs = VarStore::new(Device::Cpu);
        vs.set_kind(Kind::Double);
        let cfg = UnetConfig {
            channels: 4,
            pool_layers: 2,
            ..UnetConfig::default()
        };
        let u = Unet::new(&vs.root(), cfg);
        let x = Tensor::randn([2, 13, 11], (Kind::Double, Device::Cpu));
        let mode = Mode::Measure(BatchNormPolicy::BatchStats);
        assert_eq!(u.output(&x, mode).size(), [2, 13, 11]);
    }
}
