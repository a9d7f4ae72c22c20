//! The WMT Transformer (src/model/transformer.rs) against PyTorch, on
//! synthetic-translation data and on tokenised sentence pairs of variable
//! length (padding) read from TFRecord shards and token-id files
//! (src/data/translation.rs): a tiny configuration trains a few steps, is
//! probed, and tests/check_transformer.py recomputes the data contract, the
//! snapshot rows (a 33,000-token vocabulary makes the embedding span two
//! 2^20-value chunks), loss and whole gradient at x^K, every `train` landscape
//! row, and the label-smoothed training losses, with a reference module
//! written from AlgoPerf's definition (its padding masks and loss). The
//! readers' errors on truncated, corrupt and foreign files name the file and
//! the record.

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

/// Writes 40 sentence pairs of 0..=9 tokens each side (ids in 1..50) into
/// `dir`: two TFRecord shards (the second gzipped, packed and unpacked
/// int64 lists, an extra bytes feature) and the same pairs as token-id files
/// `train.src`/`train.tgt`; returns the pairs' count.
fn write_pair_fixtures(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("shards")).unwrap();
    py(
        r#"
import gzip, os, sys
import numpy as np
from abcond_ref import translation as t
d = sys.argv[1]
rng = np.random.default_rng(7)
pairs = []
for i in range(40):
    ls, lt = rng.integers(0, 10, size=2)
    if i == 0:
        ls, lt = 3, 4   # the first pair is kept
    s = list(map(int, rng.integers(1, 50, size=ls)))
    pairs.append((s, [1 + (x * 7) % 49 for x in s[::-1]] + list(map(int, rng.integers(1, 50, size=max(0, lt - ls))))))
t.write_tfrecord(os.path.join(d, "shards", "train.tfrecord-00000-of-00002"), pairs[:25], packed=True)
t.write_tfrecord(os.path.join(d, "shards", "plain"), pairs[25:], packed=False)
with open(os.path.join(d, "shards", "plain"), "rb") as f, gzip.open(os.path.join(d, "shards", "train.tfrecord-00001-of-00002"), "wb") as g:
    g.write(f.read())
os.remove(os.path.join(d, "shards", "plain"))
assert t.read_tfrecord(os.path.join(d, "shards", "train.tfrecord-00000-of-00002")) == pairs[:25]
t.write_ids(os.path.join(d, "train.src"), os.path.join(d, "train.tgt"), pairs)
"#,
        &[dir.to_str().unwrap()],
    );
}

fn pairs_config(data: &str, model_extra: &str) -> String {
    format!(
        "experiment: wmt-pairs
seed: 3
device: cpu
model: {{preset: transformer-wmt, width: 16, depth: 1, heads: 2, mlp_dim: 24{model_extra}}}
data: {data}
train: {{batch_size: 4, steps: 3}}
optim: {{name: adam, lr: 0.003}}
snapshots: {{every: 1}}
probe: {{extra_batches: 1, full: true, full_subset: 8}}
"
    )
}

/// Trains and probes `text`, then checks the run against PyTorch.
fn check_pairs_run(dir: &std::path::Path, text: &str) -> String {
    let cfg_path = write_config(dir, "config.yaml", text);
    ok(&abcond(
        dir,
        &["--quiet", "--out", "out", "run", cfg_path.to_str().unwrap()],
    ));
    let rd = run_dir(&dir.join("out"), "wmt-pairs");
    let cfg: Config = abcond::config::load(&cfg_path, &[]).unwrap();
    let data = Dataset::load(&cfg.data, cfg.model.dtype, Device::Cpu).unwrap();
    let model = Model::build(&cfg.model, &data, Device::Cpu, cfg.seed).unwrap();
    let run = RunDir::new(&rd);
    let snap = abcond::store::tensors::read(&run.snapshot(3), Device::Cpu).unwrap();
    model.load(&snap, "x^K").unwrap();
    let npz = dir.join("cases.npz");
    write_grad_cases(&model, &data, &[0i64, 2, 3, 5, 7], &npz);
    let text = run_python(
        "check_transformer.py",
        &[rd.to_str().unwrap(), npz.to_str().unwrap()],
    );
    println!("{text}");
    assert!(text.contains("OK worst relative error"), "{text}");
    assert!(text.contains("landscape: 3 train rows"), "{text}");
    text
}

#[test]
fn transformer_on_tfrecord_pairs_with_padding_and_label_smoothing_matches_pytorch() {
    let dir = scratch("transformer-tfrecord");
    write_pair_fixtures(&dir);
    let data = format!(
        "{{dataset: translation, path: {}, seq_len: 7, vocab: 50}}",
        dir.join("shards").display()
    );
    let text = check_pairs_run(&dir, &pairs_config(&data, ", label_smoothing: 0.1"));
    assert!(text.contains("padding tokens"), "{text}");
    assert!(
        text.contains("label smoothing 0.1: 3 training losses equal torch's smoothed"),
        "{text}"
    );
}

#[test]
fn transformer_on_token_id_files_matches_pytorch() {
    let dir = scratch("transformer-ids");
    write_pair_fixtures(&dir);
    let data = format!(
        "{{dataset: translation, path: {}, source: train.src, target: train.tgt, seq_len: 7, vocab: 50, examples: 16}}",
        dir.display()
    );
    let text = check_pairs_run(&dir, &pairs_config(&data, ""));
    assert!(
        text.contains("data: 16 sentence pairs read again"),
        "{text}"
    );
}

#[test]
fn sentence_pair_readers_name_the_file_and_record_of_bad_input() {
    let dir = scratch("transformer-pairs-errors");
    write_pair_fixtures(&dir);
    let shard = dir.join("shards").join("train.tfrecord-00000-of-00002");
    let bytes = std::fs::read(&shard).unwrap();
    let bad = dir.join("bad");
    let train_err = |data: String| -> String {
        let cfg = write_config(&dir, "config.yaml", &pairs_config(&data, ""));
        let out = abcond(
            &dir,
            &["--quiet", "--out", "out", "train", cfg.to_str().unwrap()],
        );
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        stderr(&out)
    };
    let tf = |p: &std::path::Path| {
        format!(
            "{{dataset: translation, path: {}, seq_len: 7, vocab: 50}}",
            p.display()
        )
    };
    // Truncated inside the third record's data.
    std::fs::create_dir_all(&bad).unwrap();
    let cut = bad.join("cut.tfrecord");
    let first = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize + 16;
    std::fs::write(&cut, &bytes[..first + 20]).unwrap();
    let err = train_err(tf(&cut));
    assert!(
        err.contains("cut.tfrecord: record 1: the file ends after"),
        "{err}"
    );
    assert!(err.contains("(truncated)"), "{err}");
    // A flipped byte in the second record's data.
    let mut flipped = bytes.clone();
    flipped[first + 14] ^= 0x40;
    let corrupt = bad.join("corrupt.tfrecord");
    std::fs::write(&corrupt, &flipped).unwrap();
    let err = train_err(tf(&corrupt));
    assert!(
        err.contains("corrupt.tfrecord: record 1: the CRC of the record's data does not match"),
        "{err}"
    );
    // A foreign file.
    let foreign = bad.join("notes.tfrecord");
    std::fs::write(&foreign, "source\ttarget\nein Haus\ta house\n").unwrap();
    let err = train_err(tf(&foreign));
    assert!(err.contains("notes.tfrecord: record 0"), "{err}");
    assert!(err.contains("this is not a TFRecord file"), "{err}");
    // Ids beyond the vocabulary.
    let err = train_err(tf(&shard).replace("vocab: 50", "vocab: 20"));
    assert!(
        err.contains("train.tfrecord-00000-of-00002: record 0: "),
        "{err}"
    );
    assert!(
        err.contains("is outside 1..19 (`data.vocab` is 20"),
        "{err}"
    );
    // Token-id files: a word, and files of different lengths.
    std::fs::write(bad.join("a.src"), "3 4\n5 six\n").unwrap();
    std::fs::write(bad.join("a.tgt"), "3 4\n5 6\n7\n").unwrap();
    let ids = format!(
        "{{dataset: translation, path: {}, source: a.src, target: a.tgt, seq_len: 7, vocab: 50}}",
        bad.display()
    );
    let err = train_err(ids.clone());
    assert!(
        err.contains("a.src, line 2: `six` is not a token id"),
        "{err}"
    );
    std::fs::write(bad.join("a.src"), "3 4\n5 6\n").unwrap();
    let err = train_err(ids);
    assert!(
        err.contains("a.src ends after 2 lines but") && err.contains("a.tgt goes on"),
        "{err}"
    );
    // No shards in a directory; the source without the target.
    let err = train_err(tf(&dir));
    assert!(err.contains("no TFRecord shards"), "{err}");
    let err = train_err(tf(&dir).replace("seq_len", "source: train.src, seq_len"));
    assert!(
        err.contains("keys `data.source` and `data.target` go together"),
        "{err}"
    );
    // Nothing was written for the refused runs.
    assert!(!dir.join("out").join("wmt-pairs").exists());
}
