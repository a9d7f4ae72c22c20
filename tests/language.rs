//! Language models on text: the LSTM (`model.kind: lstm`, models/lstm-3layer.yaml)
//! on word-level corpora (`data.dataset: text`) and token files
//! (`data.dataset: tokens`), against independent references
//! (tests/check_lstm.py, tests/abcond_ref/text.py): the vocabulary and the
//! windows rebuilt in Python, x^0 equal to PyTorch's word-language-model
//! RNNModel after torch.manual_seed, every landscape row recomputed with
//! torch.nn.LSTM and autograd (f32 ≤ 1e-5, f64 ≤ 1e-10), the first steps
//! replayed with torch.optim; the same token stream as `text` and as `.bin`
//! / `.npy` gives the same run bit for bit; kill/resume is bit-identical;
//! bad files and settings are refused naming the file or key.

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// A small PTB-style corpus: `dir/ptb.train.txt`, lines of 4–14 words from a
/// 60-word list with a Zipf-like skew (and a few `<unk>`), ~4,000 tokens.
fn write_corpus(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let words: Vec<String> = (0..60).map(|i| format!("w{i}")).collect();
    let mut state = 12345u64;
    let mut next = |m: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % m
    };
    let mut text = String::new();
    for _ in 0..360 {
        let n = 4 + next(11);
        let line: Vec<String> = (0..n)
            .map(|_| {
                let r = next(1000);
                if r < 15 {
                    "<unk>".to_string()
                } else {
                    // skewed: small indices are frequent
                    let i = ((r * r) / 16_700) as usize % words.len();
                    words[i].clone()
                }
            })
            .collect();
        text.push(' ');
        text.push_str(&line.join(" "));
        text.push_str(" \n");
    }
    std::fs::write(dir.join("ptb.train.txt"), text).unwrap();
    dir.to_path_buf()
}

const LSTM: &str = "experiment: NAME
seed: 4
device: cpu
model: {preset: lstm-3layer, embed: 16, hidden: 16, layers: 2, dropout: 0.0}
data: {dataset: text, path: CORPUS, seq_len: 8}
train: {batch_size: 12, steps: 40, checkpoint_every: 10}
optim: {name: sgd, lr: 0.5, momentum: 0.9}
snapshots: {every: 10, at: [1, 2, 3, 4]}
probe: {extra_batches: 1, full: true}
analysis: {plots: false}
";

fn config(dir: &Path, name: &str, corpus: &Path, extra: &[(&str, &str)]) -> PathBuf {
    let mut text = LSTM.replace("NAME", name);
    for (from, to) in extra {
        assert!(text.contains(from), "{from}");
        text = text.replace(from, to);
    }
    let text = text.replace("CORPUS", corpus.to_str().unwrap());
    write_config(dir, &format!("{name}.yaml"), &text)
}

/// Every snapshot of a run: (step, its tensors' values).
type Snapshots = Vec<(u64, Vec<(String, Vec<f64>)>)>;

fn snapshots(run: &Path) -> Snapshots {
    let mut steps: Vec<u64> = std::fs::read_dir(run.join("iterates"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("step=")?.parse().ok())
        .collect();
    steps.sort_unstable();
    steps
        .into_iter()
        .map(|k| {
            (
                k,
                read_values(&run.join(format!("iterates/step={k}/part-0.parquet"))),
            )
        })
        .collect()
}

/// The LSTM on a text corpus against PyTorch: vocabulary, x^0, every
/// landscape row, torch.optim replay; f32 with SGD + momentum, and f64 with
/// tied weights and Adam.
#[test]
fn the_lstm_agrees_with_torch_nn_lstm() {
    let dir = scratch("language-lstm");
    let corpus = write_corpus(&dir.join("ptb"));
    config(&dir, "f32", &corpus, &[]);
    ok(&abcond(&dir, &["-q", "--out", "out", "run", "f32.yaml"]));
    let run = run_dir(&dir.join("out"), "f32");
    let text = run_python("check_lstm.py", &[run.to_str().unwrap()]);
    assert!(
        text.contains("rows agree with PyTorch's nn.LSTM") && text.contains("replayed 4 steps"),
        "{text}"
    );
    assert!(run.join("vocab.parquet").is_file());
    let text = ok(&abcond(&dir, &["verify", run.to_str().unwrap()]));
    assert!(text.contains("ok "), "{text}");

    config(
        &dir,
        "f64",
        &corpus,
        &[
            (
                "layers: 2, dropout: 0.0}",
                "layers: 2, dropout: 0.0, tie_weights: true, dtype: f64}",
            ),
            (
                "{name: sgd, lr: 0.5, momentum: 0.9}",
                "{name: adam, lr: 0.01}",
            ),
            ("seq_len: 8}", "seq_len: 8, max_vocab: 30}"),
        ],
    );
    ok(&abcond(&dir, &["-q", "--out", "out", "run", "f64.yaml"]));
    let run = run_dir(&dir.join("out"), "f64");
    let text = run_python("check_lstm.py", &[run.to_str().unwrap()]);
    assert!(
        text.contains("rows agree") && text.contains("tol 1e-10"),
        "{text}"
    );
    let names: Vec<String> = read_values(&run.join("iterates/step=0/part-0.parquet"))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        names.contains(&"encoder.weight".to_string())
            && !names.contains(&"decoder.weight".to_string()),
        "tied: {names:?}"
    );
}

/// The token stream of a text corpus written as u16 and u32 `.bin` files
/// and as a `.npy` trains the same run as the corpus, bit for bit.
#[test]
fn token_files_and_text_give_the_same_run() {
    let dir = scratch("language-tokens");
    let corpus = write_corpus(&dir.join("ptb"));
    config(&dir, "text", &corpus, &[]);
    ok(&abcond(&dir, &["-q", "--out", "out", "train", "text.yaml"]));
    let reference = snapshots(&run_dir(&dir.join("out"), "text"));
    let code = "import sys, numpy as np\nfrom abcond_ref.text import corpus_files, vocabulary, words\nids, vocab = vocabulary(words(corpus_files(sys.argv[1])))\nd = sys.argv[2]\nnp.array(ids, '<u2').tofile(d + '/ids16.bin'); np.array(ids, '<u4').tofile(d + '/ids32.bin'); np.save(d + '/ids.npy', np.array(ids, np.int32))\nprint(len(vocab))";
    let vocab = py(code, &[corpus.to_str().unwrap(), dir.to_str().unwrap()]);
    let vocab = vocab.trim();
    for (name, file, dtype) in [
        ("bin16", "ids16.bin", ""),
        ("bin32", "ids32.bin", ", token_dtype: u32"),
        ("npy", "ids.npy", ""),
    ] {
        let data = format!(
            "{{dataset: tokens, path: {}, seq_len: 8, vocab: {vocab}{dtype}}}",
            dir.join(file).display()
        );
        let cfg = LSTM
            .replace("NAME", "text")
            .replace("{dataset: text, path: CORPUS, seq_len: 8}", &data);
        write_config(&dir, &format!("{name}.yaml"), &cfg);
        ok(&abcond(
            &dir,
            &["-q", "--out", name, "train", &format!("{name}.yaml")],
        ));
        assert_eq!(
            snapshots(&run_dir(&dir.join(name), "text")),
            reference,
            "{name}"
        );
    }
}

/// Bad token files, corpora and model/data pairings are refused, naming the
/// file or the key and what was expected.
#[test]
fn bad_text_and_token_data_are_refused_clearly() {
    let dir = scratch("language-bad");
    let corpus = write_corpus(&dir.join("ptb"));
    std::fs::write(dir.join("odd.bin"), [1u8, 0, 2]).unwrap();
    std::fs::write(dir.join("big.bin"), [1u8, 0, 200, 0, 3, 0]).unwrap();
    py(
        "import sys, numpy as np\nnp.save(sys.argv[1] + '/two.npy', np.zeros((4, 4), np.int64)); np.save(sys.argv[1] + '/float.npy', np.zeros(40))",
        &[dir.to_str().unwrap()],
    );
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    let tokens = |file: &str, extra: &str| {
        format!(
            "{{dataset: tokens, path: {}, seq_len: 2{extra}}}",
            dir.join(file).display()
        )
    };
    let data_line = "{dataset: text, path: CORPUS, seq_len: 8}";
    /// (config name, edits of the LSTM config, words of the expected error)
    type Case<'a> = (String, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "odd".into(),
            vec![(data_line, tokens("odd.bin", ""))],
            "3 bytes is not a whole number of 2-byte token ids",
        ),
        (
            "big".into(),
            vec![(data_line, tokens("big.bin", ", vocab: 100"))],
            "token 1 has id 200, outside the vocabulary of data.vocab = 100",
        ),
        (
            "two".into(),
            vec![(data_line, tokens("two.npy", ""))],
            "expected a one-dimensional array of integer token ids",
        ),
        (
            "float".into(),
            vec![(data_line, tokens("float.npy", ""))],
            "expected a one-dimensional array of integer token ids",
        ),
        (
            "dtype".into(),
            vec![(data_line, tokens("two.npy", ", token_dtype: u32"))],
            "applies to .bin files",
        ),
        (
            "empty".into(),
            vec![(
                data_line,
                format!("{{dataset: text, path: {}}}", dir.join("empty").display()),
            )],
            "no text files",
        ),
        (
            "long".into(),
            vec![("seq_len: 8}", "seq_len: 100000}".into())],
            "fewer than one example of data.seq_len + 1 = 100001",
        ),
        (
            "tied".into(),
            vec![
                ("embed: 16,", "embed: 8,".into()),
                ("dropout: 0.0}", "dropout: 0.0, tie_weights: true}".into()),
            ],
            "model.tie_weights",
        ),
        (
            "mlp".into(),
            vec![(
                "{preset: lstm-3layer, embed: 16, hidden: 16, layers: 2, dropout: 0.0}",
                "{preset: mlp}".into(),
            )],
            "language-model data (text, tokens) goes with a language model",
        ),
        (
            "fmnist".into(),
            vec![(data_line, "{dataset: fashion-mnist}".into())],
            "model kind `lstm` cannot be trained on dataset `fashion-mnist`",
        ),
    ];
    for (name, edits, want) in cases {
        let edits: Vec<(&str, &str)> = edits.iter().map(|(a, b)| (*a, b.as_str())).collect();
        config(&dir, &name, &corpus, &edits);
        let out = abcond(&dir, &["--out", "out", "train", &format!("{name}.yaml")]);
        assert!(!out.status.success(), "{name} was accepted");
        let e = stderr(&out);
        assert!(e.contains(want), "{name}: {e}");
        assert!(!e.contains("panicked"), "{name}: {e}");
    }
}

/// An LSTM run with dropout and tied weights killed at step 15 resumes from
/// its checkpoint to exactly the uninterrupted run.
#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs the crash hook (feature test-hooks)"
)]
fn a_killed_lstm_run_resumes_bit_identical() {
    let dir = scratch("language-resume");
    let corpus = write_corpus(&dir.join("ptb"));
    config(
        &dir,
        "drop",
        &corpus,
        &[("dropout: 0.0}", "dropout: 0.3, tie_weights: true}")],
    );
    ok(&abcond(&dir, &["-q", "--out", "ref", "train", "drop.yaml"]));
    let status = cmd(&dir)
        .args(["-q", "--out", "crash", "train", "drop.yaml"])
        .env("ABCOND_CRASH_AT", "step:15")
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the crash hook did not fire");
    ok(&abcond(
        &dir,
        &["-q", "--out", "crash", "train", "drop.yaml"],
    ));
    assert_eq!(
        snapshots(&run_dir(&dir.join("ref"), "drop")),
        snapshots(&run_dir(&dir.join("crash"), "drop"))
    );
}

/// An LSTM with dropout and tied weights replays every step (`probe
/// --replay`): the dropout masks of each step re-drawn as training drew them,
/// every stored iterate matched bit for bit, rows measured with dropout off.
#[test]
fn an_lstm_with_dropout_replays_every_step() {
    let dir = scratch("language-replay");
    let corpus = write_corpus(&dir.join("ptb"));
    config(
        &dir,
        "drop",
        &corpus,
        &[
            ("dropout: 0.0}", "dropout: 0.3, tie_weights: true}"),
            (
                "{every: 10, at: [1, 2, 3, 4]}",
                "{every: 10, at: [1, 2, 3, 4], optimizer_state: true}",
            ),
        ],
    );
    ok(&abcond(&dir, &["-q", "--out", "out", "train", "drop.yaml"]));
    let run = run_dir(&dir.join("out"), "drop");
    let out = abcond(&dir, &["probe", run.to_str().unwrap(), "--replay"]);
    ok(&out);
    let log = stderr(&out);
    assert!(
        log.contains("replaying 8 segments (40 steps)") && log.contains("measured separately"),
        "{log}"
    );
    let (rows, meta) =
        abcond::store::tables::read_landscape(&run.join("landscape.parquet")).unwrap();
    // Snapshots 0, 1, 2, 3, 4, 10, 20, 30: each compared with its replayed row.
    assert_eq!(meta["abcond.replay_steps_compared"], "8");
    let train = rows
        .iter()
        .filter(|r| r.probe == abcond::store::label::ProbeLabel::Train)
        .count();
    assert_eq!(train, 40);
}

/// configs/lstm-fortunes.yaml on the real fortunes corpus (installed by
/// `./dev` from the Debian package), at tiny settings: trained, probed,
/// analysed, and its rows recomputed in PyTorch.
#[test]
fn the_fortunes_config_runs_on_real_text() {
    let fortunes = Path::new("/usr/share/games/fortunes");
    assert!(
        fortunes.is_dir(),
        "{} is missing: `./dev test` installs the Debian package fortunes (apt-get install fortunes)",
        fortunes.display()
    );
    let dir = scratch("language-fortunes");
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/lstm-fortunes.yaml");
    ok(&abcond(
        &dir,
        &[
            "-q",
            "--out",
            "out",
            "run",
            cfg.to_str().unwrap(),
            "--set",
            "model.embed=16",
            "--set",
            "model.hidden=16",
            "--set",
            "data.max_vocab=300",
            "--set",
            "train.steps=30",
            "--set",
            "snapshots.log_spaced=5",
            "--set",
            "snapshots.every=null",
            "--set",
            "probe.full_subset=64",
        ],
    ));
    let run = run_dir(&dir.join("out"), "lstm-fortunes");
    assert!(run.join("analysis/report.md").is_file());
    let text = run_python("check_lstm.py", &[run.to_str().unwrap()]);
    assert!(text.contains("rows agree"), "{text}");
}

/// configs/paper/lstm-ptb.yaml (the paper's Figure 1 setting) on a PTB-format
/// fixture at tiny settings: trained with normalised SGD, probed, analysed;
/// report.md says at which steps Aiming fails (cos < 0) or that it holds.
#[test]
fn the_paper_lstm_config_runs_on_ptb_files() {
    let dir = scratch("language-paper");
    let corpus = write_corpus(&dir.join("ptb"));
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/paper/lstm-ptb.yaml");
    let path = format!("data.path={}", corpus.display());
    ok(&abcond(
        &dir,
        &[
            "-q",
            "--out",
            "out",
            "run",
            cfg.to_str().unwrap(),
            "--set",
            &path,
            "--set",
            "model.embed=8",
            "--set",
            "model.hidden=8",
            "--set",
            "train.epochs=2",
            "--set",
            "snapshots.every=null",
            "--set",
            "snapshots.log_spaced=8",
            "--set",
            "probe.full_subset=32",
        ],
    ));
    let run = run_dir(&dir.join("out"), "lstm-ptb");
    let report = std::fs::read_to_string(run.join("analysis/report.md")).unwrap();
    assert!(
        report.contains("probed steps") && report.contains("Aiming"),
        "{report}"
    );
    let text = run_python("check_lstm.py", &[run.to_str().unwrap()]);
    assert!(text.contains("rows agree"), "{text}");
}

/// The GPT-NeoX decoder (`model.kind: gpt-neox`) at a tiny size on a token
/// file, against transformers' GPTNeoXForCausalLM loading the same
/// snapshots: every landscape row (f32 ≤ 1e-5, f64 ≤ 1e-10) and a
/// torch.optim replay of the first steps (tests/check_gptneox.py).
#[test]
fn gpt_neox_agrees_with_transformers() {
    let dir = scratch("language-gptneox");
    py(
        "import sys, numpy as np\nnp.save(sys.argv[1] + '/ids.npy', np.random.default_rng(0).integers(0, 97, 3000).astype(np.int32))",
        &[dir.to_str().unwrap()],
    );
    for (name, extra, optim) in [
        ("f32", "", "{name: sgd, lr: 0.5, momentum: 0.9}"),
        (
            "f64",
            ", dtype: f64, parallel_residual: false",
            "{name: adamw, lr: 0.01}",
        ),
    ] {
        write_config(
            &dir,
            &format!("{name}.yaml"),
            &format!(
                "experiment: {name}\nseed: 1\ndevice: cpu\nmodel: {{kind: gpt-neox, width: 32, depth: 2, heads: 4, mlp_dim: 64, rotary_pct: 0.5{extra}}}\ndata: {{dataset: tokens, path: ids.npy, seq_len: 16, vocab: 97}}\ntrain: {{batch_size: 8, steps: 20}}\noptim: {optim}\nsnapshots: {{every: 5, at: [1, 2, 3]}}\nprobe: {{extra_batches: 1, full: true, full_subset: 16}}\nanalysis: {{plots: false}}\n"
            ),
        );
        ok(&abcond(
            &dir,
            &["-q", "--out", "out", "run", &format!("{name}.yaml")],
        ));
        let run = run_dir(&dir.join("out"), name);
        let text = run_python("check_gptneox.py", &[run.to_str().unwrap()]);
        assert!(
            text.contains("rows agree with transformers") && text.contains("replayed 3 steps"),
            "{name}: {text}"
        );
    }
}

/// The Pythia presets have transformers' parameter names, shapes and counts
/// (70,426,624 and 162,322,944 with the 50,304-token vocabulary).
#[test]
fn pythia_presets_match_transformers() {
    let reference = run_python("check_gptneox.py", &["--counts"]);
    for (preset, count) in [("pythia-70m", 70_426_624i64), ("pythia-160m", 162_322_944)] {
        let cfg = abcond::config::from_yaml_text(
            &format!("experiment: p\nmodel: {{preset: {preset}}}\ndata: {{dataset: tokens, path: /nonexistent.bin, vocab: 50304, seq_len: 4}}\ntrain: {{batch_size: 1, steps: 1}}\noptim: {{name: sgd, lr: 0.1}}\n"),
            "pythia test",
            Path::new("."),
            &[],
        )
        .unwrap();
        let data = abcond::data::Dataset {
            kind: abcond::config::DatasetKind::Tokens,
            x: tch::Tensor::zeros([1, 4], (tch::Kind::Int64, tch::Device::Cpu)),
            y: tch::Tensor::zeros([1, 4], (tch::Kind::Int64, tch::Device::Cpu)),
            len: 1,
            input_shape: vec![4],
            targets: abcond::data::Targets::NextTokens {
                vocab: 50304,
                len: 4,
            },
            source_index: vec![0],
            source_dir: None,
            augment: None,
            images: None,
            inputs: vec![],
            vocab: vec![],
            graphs: None,
        };
        let model = abcond::model::Model::build(&cfg.model, &data, tch::Device::Cpu, 0).unwrap();
        assert_eq!(model.num_params(), count, "{preset}");
        let mut theirs = std::collections::BTreeMap::new();
        for line in reference.lines() {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() == 3 && cols[0] == preset {
                theirs.insert(cols[1].to_string(), cols[2].to_string());
            }
        }
        assert_eq!(
            theirs.remove("parameters"),
            Some(count.to_string()),
            "{preset}: transformers' count"
        );
        let mine: std::collections::BTreeMap<String, String> = model
            .tensors()
            .into_iter()
            .map(|t| {
                let dims: Vec<String> = t.tensor.size().iter().map(i64::to_string).collect();
                (t.name, dims.join(","))
            })
            .collect();
        assert_eq!(mine, theirs, "{preset}: names and shapes");
    }
}
