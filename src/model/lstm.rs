//! Word-level LSTM language model, the model of the paper's Figure 1 (a
//! 3-layer LSTM on PTB and WikiText-2): embedding → n-layer LSTM → linear
//! decoder over the vocabulary, dropout on the embeddings, between the
//! layers and on the output, optional weight tying.
//!
//! Layout and names are PyTorch's word-language-model example
//! (`RNNModel`: `encoder` = nn.Embedding, `rnn` = nn.LSTM, `decoder` =
//! nn.Linear), so a snapshot loads into it with `load_state_dict`:
//! `encoder.weight`, `rnn.weight_ih_l{k}`, `rnn.weight_hh_l{k}`,
//! `rnn.bias_ih_l{k}`, `rnn.bias_hh_l{k}`, `decoder.weight` (absent when tied:
//! it is `encoder.weight`), `decoder.bias`. Initialisation reproduces that
//! module after `torch.manual_seed(seed)` draw for draw: Embedding N(0, 1),
//! every LSTM tensor U(±1/√hidden) in registration order, Linear's default,
//! then the example's `init_weights` (encoder and decoder weights U(±0.1),
//! decoder bias 0).
//!
//! f_i is a function of x alone: example i is an independent window whose
//! LSTM starts from a zero state (no hidden state carried across minibatches,
//! unlike truncated BPTT), and f_i is the mean next-token cross-entropy over
//! its positions. The recurrence is libtorch's fused `lstm` op, the one
//! torch.nn.LSTM calls.

use super::net::{linear_bias, linear_weight, next_token_loss, Mode, Net};
use crate::data::Batch;
use crate::model::config::LstmConfig;
use crate::model::net::BatchNormPolicy;
use tch::nn::Path;
use tch::Tensor;

pub struct Lstm {
    cfg: LstmConfig,
    encoder: Tensor,
    /// Per layer: weight_ih, weight_hh, bias_ih, bias_hh (at::lstm's order).
    rnn: Vec<Tensor>,
    decoder_weight: Tensor,
    decoder_bias: Tensor,
}

impl Lstm {
    pub fn new(p: &Path, cfg: LstmConfig, vocab: i64) -> Lstm {
        let (e, h) = (cfg.embed, cfg.hidden);
        let enc = p / "encoder";
        let encoder = enc.add(
            "weight",
            tch::no_grad(|| Tensor::empty([vocab, e], (p.kind(), p.device())).normal_(0.0, 1.0)),
            true,
        );
        let rnn_path = p / "rnn";
        let stdv = 1.0 / (h as f64).sqrt();
        let mut rnn = Vec::new();
        for l in 0..cfg.layers {
            let input = if l == 0 { e } else { h };
            for (name, dims) in [
                (format!("weight_ih_l{l}"), vec![4 * h, input]),
                (format!("weight_hh_l{l}"), vec![4 * h, h]),
                (format!("bias_ih_l{l}"), vec![4 * h]),
                (format!("bias_hh_l{l}"), vec![4 * h]),
            ] {
                let t = tch::no_grad(|| {
                    Tensor::empty(dims.as_slice(), (p.kind(), p.device())).uniform_(-stdv, stdv)
                });
                rnn.push(rnn_path.add(&name, t, true));
            }
        }
        let dec = p / "decoder";
        // nn.Linear(hidden, vocab) draws its weight even when tying replaces it.
        let drawn = if cfg.tie_weights {
            let mut scratch = tch::nn::VarStore::new(p.device());
            scratch.set_kind(p.kind());
            linear_weight(&scratch.root(), "weight", vocab, h).detach()
        } else {
            linear_weight(&dec, "weight", vocab, h)
        };
        let decoder_bias = linear_bias(&dec, "bias", vocab, h);
        let decoder_weight = if cfg.tie_weights {
            drop(drawn);
            encoder.shallow_clone()
        } else {
            drawn
        };
        // The example's init_weights.
        tch::no_grad(|| {
            let _ = encoder.shallow_clone().uniform_(-0.1, 0.1);
            let _ = decoder_bias.shallow_clone().zero_();
            let _ = decoder_weight.shallow_clone().uniform_(-0.1, 0.1);
        });
        Lstm {
            cfg,
            encoder,
            rnn,
            decoder_weight,
            decoder_bias,
        }
    }
}

impl Net for Lstm {
    fn train_is_measure(&self, _policy: BatchNormPolicy) -> bool {
        self.cfg.dropout == 0.0
    }

    fn per_example_loss(&self, batch: &Batch, mode: Mode) -> Tensor {
        let train = mode == Mode::Train;
        let p = self.cfg.dropout;
        let x = &batch.x;
        let (b, h, l) = (x.size()[0], self.cfg.hidden, self.cfg.layers);
        let emb = Tensor::embedding(&self.encoder, x, -1, false, false).dropout(p, train);
        let zeros = Tensor::zeros([l, b, h], (emb.kind(), emb.device()));
        let (out, _, _) = emb.lstm(
            &[&zeros, &zeros],
            &self.rnn.iter().collect::<Vec<_>>(),
            true,
            l,
            p,
            train,
            false,
            true,
        );
        let logits = out
            .dropout(p, train)
            .linear(&self.decoder_weight, Some(&self.decoder_bias));
        next_token_loss(&logits, &batch.y)
    }
}
