//! DLRM-small (src/model/dlrm.rs) on Criteo TSV click logs
//! (src/data/criteo.rs) against PyTorch: a tiny configuration trains a few
//! Adam steps on fixture day files (one plain, one gzipped) and is probed;
//! tests/check_dlrm.py reads the files again with an independent reader,
//! rebuilds AlgoPerf's DlrmSmall, and compares the loss and whole gradient at
//! x^K, every landscape row, and the training steps replayed with
//! torch.optim. The reader's errors name the file and the line.

mod common;
use abcond::config::Config;
use abcond::data::Dataset;
use abcond::model::Model;
use abcond::run::RunDir;
use common::*;
use tch::Device;

/// Writes 300 Criteo-like lines into `dir`: day_0 (plain, 180 lines) and
/// day_1.gz (gzipped, 120 lines), with empty, negative and −1 fields.
fn write_days(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    py(
        r#"
import os, sys
from abcond_ref import dlrm
d = sys.argv[1]
rows = dlrm.random_rows(300, seed=4, missing=0.15)
dlrm.write_criteo_tsv(os.path.join(d, "day_0"), rows[:180])
dlrm.write_criteo_tsv(os.path.join(d, "day_1.gz"), rows[180:])
"#,
        &[dir.to_str().unwrap()],
    );
}

fn config(days: &std::path::Path, extra: &str) -> String {
    format!(
        "experiment: dlrm-tiny
seed: 2
device: cpu
model: {{preset: dlrm-small-test, vocab: 64, embed_dim: 8, bottom: [16, 8], top: [32, 16, 1]}}
data: {{dataset: criteo, path: {}{extra}}}
train: {{batch_size: 16, steps: 3}}
optim: {{name: adam, lr: 0.01}}
snapshots: {{every: 1}}
probe: {{extra_batches: 1, full: true, full_subset: 64}}
",
        days.display()
    )
}

#[test]
fn dlrm_matches_pytorch_on_criteo_days() {
    let dir = scratch("dlrm-tiny");
    let days = dir.join("days");
    write_days(&days);
    let cfg_path = write_config(&dir, "config.yaml", &config(&days, ", examples: 250"));
    ok(&abcond(
        &dir,
        &["--quiet", "--out", "out", "run", cfg_path.to_str().unwrap()],
    ));
    let rd = run_dir(&dir.join("out"), "dlrm-tiny");
    let cfg: Config = abcond::config::load(&cfg_path, &[]).unwrap();
    let data = Dataset::load(&cfg.data, cfg.model.dtype, Device::Cpu).unwrap();
    assert_eq!(data.len, 250);
    let model = Model::build(&cfg.model, &data, Device::Cpu, cfg.seed).unwrap();
    // 4 chunks of 16 × 8, bottom 13→16→8, top 8 + 27·28/2 = 386 → 32 → 16 → 1.
    assert_eq!(
        model.num_params(),
        64 * 8 + (13 * 16 + 16 + 16 * 8 + 8) + (386 * 32 + 32 + 32 * 16 + 16 + 16 + 1)
    );
    let run = RunDir::new(&rd);
    let snap = abcond::store::tensors::read(&run.snapshot(3), Device::Cpu).unwrap();
    model.load(&snap, "x^K").unwrap();
    let npz = dir.join("cases.npz");
    write_grad_cases(&model, &data, &[0i64, 7, 181, 200, 249], &npz);
    let text = run_python(
        "check_dlrm.py",
        &[rd.to_str().unwrap(), npz.to_str().unwrap()],
    );
    println!("{text}");
    assert!(text.contains("data: 250 lines read again"), "{text}");
    assert!(text.contains("replay: 3 steps"), "{text}");
    assert!(text.contains("OK worst relative error"), "{text}");
}

#[test]
fn full_size_parameter_counts_match_the_reference() {
    // Rust side: src/model/dlrm.rs's unit test asserts the criteo1tb_test count.
    let out = run_python("check_dlrm.py", &["--counts"]);
    assert!(
        out.contains("dlrm-small vocab 65536 params 10785153"),
        "{out}"
    );
    assert!(
        out.contains("dlrm-small vocab 4194304 params 539267457"),
        "{out}"
    );
}

#[test]
fn criteo_reader_names_the_file_and_line_of_bad_input() {
    let dir = scratch("dlrm-errors");
    let days = dir.join("days");
    write_days(&days);
    let train_err = |path: &std::path::Path| -> String {
        let cfg = write_config(&dir, "config.yaml", &config(path, ""));
        let out = abcond(
            &dir,
            &["--quiet", "--out", "out", "train", cfg.to_str().unwrap()],
        );
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        stderr(&out)
    };
    let bad = dir.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let good = std::fs::read_to_string(days.join("day_0")).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    // A short line (a field lost).
    let mut short = lines[..3].join("\n");
    short.push('\n');
    short.push_str(lines[3].rsplit_once('\t').unwrap().0);
    std::fs::write(bad.join("short.tsv"), &short).unwrap();
    let err = train_err(&bad.join("short.tsv"));
    assert!(
        err.contains("short.tsv, line 4: 39 tab-separated fields, expected 40"),
        "{err}"
    );
    // A word where a count belongs, and a label that is not 0/1.
    let fields: Vec<String> = lines[1].split('\t').map(String::from).collect();
    let mut f2 = fields.clone();
    f2[2] = "many".into();
    std::fs::write(
        bad.join("word.tsv"),
        format!("{}\n{}\n", lines[0], f2.join("\t")),
    )
    .unwrap();
    let err = train_err(&bad.join("word.tsv"));
    assert!(
        err.contains("word.tsv, line 2: integer feature I2 is `many`"),
        "{err}"
    );
    let mut f3 = fields;
    f3[0] = "2".into();
    std::fs::write(bad.join("label.tsv"), format!("{}\n", f3.join("\t"))).unwrap();
    let err = train_err(&bad.join("label.tsv"));
    assert!(
        err.contains("label.tsv, line 1: label `2` is not 0 or 1"),
        "{err}"
    );
    // A truncated gzip.
    let gz = std::fs::read(days.join("day_1.gz")).unwrap();
    std::fs::write(bad.join("cut.gz"), &gz[..gz.len() / 2]).unwrap();
    let err = train_err(&bad.join("cut.gz"));
    assert!(err.contains("cut.gz, line"), "{err}");
    // A foreign file (a PNG header and bytes).
    std::fs::write(bad.join("image.png"), b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").unwrap();
    let err = train_err(&bad.join("image.png"));
    assert!(
        err.contains("image.png, line 1:") && err.contains("not a Criteo TSV line"),
        "{err}"
    );
    // Click logs only go with DLRM.
    let text = config(&days, "").replace(
        "preset: dlrm-small-test, vocab: 64, embed_dim: 8, bottom: [16, 8], top: [32, 16, 1]",
        "preset: mlp",
    );
    let cfg = write_config(&dir, "config.yaml", &text);
    let err = stderr(&abcond(&dir, &["train", cfg.to_str().unwrap()]));
    assert!(err.contains("click logs (criteo) go with DLRM"), "{err}");
    assert!(!dir.join("out").join("dlrm-tiny").exists());
}
