//! The command line: `abcond config` prints the resolved config with the run id
//! and directory `train` then uses (YAML and JSON), lists a sweep's tasks,
//! and a malformed `--set` is a usage error (exit status 2) for every command.

mod common;
use common::*;

const TINY: &str = "experiment: cfg-tiny
seed: 3
device: cpu
model: {preset: halfspace}
data: {dataset: halfspace, dim: 4, per_class: 20}
train: {batch_size: 8, steps: 4}
optim: {name: sgd, lr: 0.1}
snapshots: {every: 2}
probe: {extra_batches: 0, full: false}
analysis: {plots: false}
";

#[test]
fn config_prints_the_run_id_and_directory_train_uses() {
    let dir = scratch("cli-config");
    let cfg = write_config(&dir, "config.yaml", TINY);
    let cfg = cfg.to_str().unwrap();
    let yaml = ok(&abcond(
        &dir,
        &["--out", "out", "config", cfg, "--set", "optim.lr=0.05"],
    ));
    let doc: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    let id = doc["run_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("seed3-"), "{yaml}");
    assert_eq!(
        doc["run_dir"].as_str().unwrap(),
        format!("out/cfg-tiny/{id}")
    );
    assert_eq!(doc["config"]["optim"]["lr"].as_f64(), Some(0.05));
    assert_eq!(doc["config"]["model"]["kind"].as_str(), Some("halfspace"));
    // JSON: the same document (JSON is YAML, so serde_yaml reads it).
    let json = ok(&abcond(
        &dir,
        &[
            "--out",
            "out",
            "config",
            cfg,
            "--set",
            "optim.lr=0.05",
            "--json",
        ],
    ));
    assert!(
        json.trim_start().starts_with('{') && json.lines().count() == 1,
        "{json}"
    );
    let from_json: serde_yaml::Value = serde_yaml::from_str(&json).unwrap();
    assert_eq!(from_json, doc);
    // Nothing was written; train then makes exactly that directory.
    assert!(!dir.join("out").exists());
    ok(&abcond(
        &dir,
        &[
            "--quiet",
            "--out",
            "out",
            "train",
            cfg,
            "--set",
            "optim.lr=0.05",
        ],
    ));
    assert!(dir
        .join("out/cfg-tiny")
        .join(&id)
        .join("run.yaml")
        .is_file());
}

#[test]
fn config_lists_a_sweeps_tasks_and_prints_one() {
    let dir = scratch("cli-config-sweep");
    let text = format!("{TINY}sweep: {{optim.lr: [0.1, 0.2], seed: [0, 1]}}\n");
    let cfg = write_config(&dir, "config.yaml", &text);
    let cfg = cfg.to_str().unwrap();
    let yaml = ok(&abcond(&dir, &["config", cfg]));
    let doc: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    let tasks = doc["tasks"].as_sequence().unwrap();
    assert_eq!(tasks.len(), 4, "{yaml}");
    assert_eq!(tasks[3]["values"]["optim.lr"].as_f64(), Some(0.2));
    let one = ok(&abcond(&dir, &["config", cfg, "--task", "3"]));
    let one: serde_yaml::Value = serde_yaml::from_str(&one).unwrap();
    assert_eq!(one["run_id"], tasks[3]["run_id"]);
    assert_eq!(one["config"]["optim"]["lr"].as_f64(), Some(0.2));
    let out = abcond(&dir, &["config", cfg, "--task", "9"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_malformed_set_is_a_usage_error() {
    let dir = scratch("cli-set");
    let cfg = write_config(&dir, "config.yaml", TINY);
    let cfg = cfg.to_str().unwrap();
    for args in [
        vec!["train", cfg, "--set", "optim.lr"],
        vec!["run", cfg, "--set", "=0.1"],
        vec!["config", cfg, "--set", "optim..lr=1"],
        vec!["sweep", cfg, "--set", "seed"],
        vec!["probe", "nowhere", "--set", "probe.full"],
        vec!["analyze", "nowhere", "--set", "analysis.margin"],
    ] {
        let out = abcond(&dir, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("expected KEY.PATH=VALUE"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert!(!dir.join("results").exists());
}
