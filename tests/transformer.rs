//! The WMT Transformer (src/model/transformer.rs) on synthetic-translation data
//! against PyTorch: a tiny configuration trains a few steps, is probed, and
//! tests/check_transformer.py recomputes the data contract, the snapshot rows
//! (a 33,000-token vocabulary makes the embedding span two 2^20-value chunks),
//! loss and whole gradient at x^K, and every `train` landscape row with a
//! reference module written from AlgoPerf's definition.

mod common;
use abcond::config::Config;
use abcond::data::Dataset;
use abcond::model::Model;
use abcond::run::RunDir;
use common::*;
use tch::Device;

const CONFIG: &str = "experiment: wmt-tiny
seed: 5
device: cpu
model: {preset: transformer-wmt, width: 32, depth: 2, heads: 4, mlp_dim: 48}
data: {dataset: synthetic-translation, examples: 40, seq_len: 6, vocab: 33000}
train: {batch_size: 4, steps: 3}
optim: {name: adam, lr: 0.003}
snapshots: {every: 1}
probe: {extra_batches: 1, full: true, full_subset: 8}
";

#[test]
fn transformer_matches_pytorch_and_snapshots_are_chunked() {
    let dir = scratch("transformer-wmt-tiny");
    let cfg_path = write_config(&dir, "config.yaml", CONFIG);
    ok(&abcond(
        &dir,
        &["--quiet", "--out", "out", "run", cfg_path.to_str().unwrap()],
    ));
    let rd = run_dir(&dir.join("out"), "wmt-tiny");
    let cfg: Config = abcond::config::load(&cfg_path, &[]).unwrap();
    let data = Dataset::load(&cfg.data, cfg.model.dtype, Device::Cpu).unwrap();
    let model = Model::build(&cfg.model, &data, Device::Cpu, cfg.seed).unwrap();
    // 33000·32 embedding + 2 encoder layers + 2 decoder layers + 2 final norms.
    // Attention 4d² per self/cross block, feed-forward d→48→d with biases,
    // LayerNorms 2d each.
    let d = 32;
    let ff = 48 * d + 48 + 48 * d + d;
    let per_enc = 4 * d * d + ff + 4 * d;
    let per_dec = 8 * d * d + ff + 6 * d;
    assert_eq!(
        model.num_params(),
        33_000 * d + 2 * per_enc + 2 * per_dec + 4 * d
    );

    // Loss and gradient at x^K on a minibatch, for the reference to recompute.
    let run = RunDir::new(&rd);
    let snap = abcond::store::tensors::read(&run.snapshot(3), Device::Cpu).unwrap();
    model.load(&snap, "x^K").unwrap();
    let npz = dir.join("cases.npz");
    write_grad_cases(&model, &data, &[1i64, 4, 6, 8, 39], &npz);
    let text = run_python(
        "check_transformer.py",
        &[rd.to_str().unwrap(), npz.to_str().unwrap()],
    );
    println!("{text}");
    assert!(text.contains("OK worst relative error"), "{text}");
    assert!(
        text.contains("['shared_embedding.weight'] span several"),
        "{text}"
    );
    assert!(text.contains("landscape: 3 train rows"), "{text}");
}

#[test]
fn full_size_parameter_count_matches_the_reference() {
    // Rust side: src/model/transformer.rs's unit test asserts the same number.
    let out = run_python("check_transformer.py", &["--counts"]);
    assert!(out.contains("transformer-wmt params 133521408"), "{out}");
}

#[test]
fn token_data_and_the_transformer_only_go_together() {
    let dir = scratch("transformer-mismatch");
    let text = CONFIG.replace(
        "data: {dataset: synthetic-translation, examples: 40, seq_len: 6, vocab: 33000}",
        "data: {dataset: halfspace}",
    );
    let cfg = write_config(&dir, "config.yaml", &text);
    let out = abcond(&dir, &["train", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("model kind `transformer` cannot be trained on dataset `halfspace`"),
        "{err}"
    );
    let text = CONFIG.replace("vocab: 33000", "vocab: 1");
    let cfg = write_config(&dir, "config.yaml", &text);
    let err = stderr(&abcond(&dir, &["train", cfg.to_str().unwrap()]));
    assert!(err.contains("`data.vocab` at least 2"), "{err}");
}
