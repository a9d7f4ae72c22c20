//! CIFAR data, crop-flip augmentation and the vision models (cnn, resnet9,
//! resnet18, resnet34) against PyTorch: tiny fixtures in the exact CIFAR binary
//! format, a few training steps, the probe under both BatchNorm policies, and
//! tests/parity.py (forward loss, full gradient, inner products, x^0, replay
//! with torch.optim incl. running statistics, augmentation re-derived in Python).

mod common;
use abcond::config::{DataConfig, DatasetKind, ModelConfig};
use abcond::data::Dataset;
use abcond::model::Model;
use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn config(
    name: &str,
    data: &Path,
    dataset: &str,
    model: &str,
    extra_data: &str,
    dtype: &str,
) -> String {
    format!(
        "experiment: {name}
seed: 3
device: cpu
model: {{preset: {model}, dtype: {dtype}}}
data: {{dataset: {dataset}, path: {}{extra_data}}}
train: {{batch_size: 4, steps: 2}}
optim: {{name: sgd, lr: 0.01, momentum: 0.9}}
snapshots: {{every: 1}}
probe: {{extra_batches: 1, full: true, full_subset: 8}}
",
        data.display()
    )
}

/// Trains and probes (batch-stats), returns the run directory.
fn train_and_probe(dir: &Path, text: &str) -> PathBuf {
    let cfg = write_config(dir, "config.yaml", text);
    ok(&abcond(
        dir,
        &["--quiet", "--out", "out", "run", cfg.to_str().unwrap()],
    ));
    let exp = text
        .lines()
        .next()
        .unwrap()
        .strip_prefix("experiment: ")
        .unwrap();
    run_dir(&dir.join("out"), exp)
}

/// Every iterate file's bytes (parameters and BatchNorm buffers).
fn iterate_bytes(run: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(run.join("iterates")).unwrap() {
        let p = e.unwrap().path().join("part-0.parquet");
        out.insert(p.display().to_string(), std::fs::read(&p).unwrap());
    }
    out
}

fn landscape(run: &Path) -> Vec<abcond::store::tables::LandscapeRow> {
    abcond::store::tables::read_landscape(&run.join("landscape.parquet"))
        .unwrap()
        .0
}

/// Parity under batch-stats, then re-probe with running-stats and parity again;
/// the snapshots (incl. running statistics) must be untouched by both probes.
/// Returns the train-row loss_k under each policy.
fn parity_both_policies(run: &Path) -> (Vec<f64>, Vec<f64>) {
    let before = iterate_bytes(run);
    let out = run_python("parity.py", &[run.to_str().unwrap()]);
    assert!(
        out.contains("OK") && out.contains("replayed 1 steps"),
        "{out}"
    );
    println!("{out}");
    let train_loss = |rows: &[abcond::store::tables::LandscapeRow]| -> Vec<f64> {
        rows.iter()
            .filter(|r| r.probe == abcond::store::label::ProbeLabel::Train)
            .map(|r| r.loss_k)
            .collect()
    };
    let batch = train_loss(&landscape(run));
    ok(&abcond(
        run,
        &[
            "--quiet",
            "probe",
            ".",
            "--set",
            "probe.batchnorm=running-stats",
        ],
    ));
    let out = run_python("parity.py", &[run.to_str().unwrap()]);
    assert!(out.contains("OK"), "{out}");
    println!("{out}");
    let running = train_loss(&landscape(run));
    // The probe only reads snapshots (that it never updates running statistics
    // in memory is checked by the unit test
    // model::layers::tests::batchnorm_modes_and_running_statistics and by the
    // eval-mode parity of every row above).
    assert_eq!(
        before,
        iterate_bytes(run),
        "the probe rewrote a snapshot file"
    );
    (batch, running)
}

#[test]
fn cnn_cifar10_augmented_matches_pytorch_and_probe_rebuilds_the_augmented_batch() {
    let dir = scratch("vision-cnn");
    write_cifar_fixture(&dir.join("c10"), DatasetKind::Cifar10, 64);
    let run = train_and_probe(
        &dir,
        &config(
            "cnn",
            &dir.join("c10"),
            "cifar10",
            "cnn",
            ", augment: crop-flip",
            "f32",
        ),
    );
    let (batch, running) = parity_both_policies(&run);
    // No BatchNorm: the policy changes nothing.
    assert_eq!(batch, running);

    // f64: steps.parquet's loss at a snapshot step equals the probe's loss_k of
    // the train row (the same augmented minibatch), and augmentation is on.
    let text = config(
        "cnn64",
        &dir.join("c10"),
        "cifar10",
        "cnn",
        ", augment: crop-flip",
        "f64",
    );
    let aug = train_and_probe(&dir, &text);
    let (steps, _) = abcond::store::tables::read_steps(&aug.join("steps.parquet")).unwrap();
    let rows = landscape(&aug);
    let train_rows: Vec<_> = rows
        .iter()
        .filter(|r| r.probe == abcond::store::label::ProbeLabel::Train)
        .collect();
    assert_eq!(train_rows.len(), 2);
    for r in &train_rows {
        let s = &steps[r.step as usize];
        assert!(
            (s.loss - r.loss_k).abs() <= 1e-12 * s.loss.abs(),
            "step {}: steps.parquet {} vs probe {}",
            r.step,
            s.loss,
            r.loss_k
        );
    }
    let out = run_python("parity.py", &[aug.to_str().unwrap()]);
    assert!(out.contains("OK"), "{out}");
    // Without augmentation the same steps see other inputs: other losses.
    let plain = train_and_probe(
        &dir,
        &text
            .replace(", augment: crop-flip", "")
            .replace("cnn64", "cnn64-plain"),
    );
    let (plain_steps, _) = abcond::store::tables::read_steps(&plain.join("steps.parquet")).unwrap();
    assert_eq!(plain_steps[0].batch_indices, steps[0].batch_indices);
    assert_ne!(plain_steps[0].loss, steps[0].loss);
}

#[test]
fn resnet9_cifar100_matches_pytorch_under_both_batchnorm_policies() {
    let dir = scratch("vision-resnet9");
    write_cifar_fixture(&dir.join("c100"), DatasetKind::Cifar100, 64);
    let run = train_and_probe(
        &dir,
        &config(
            "resnet9",
            &dir.join("c100"),
            "cifar100",
            "resnet9",
            ", augment: crop-flip",
            "f32",
        ),
    );
    let (batch, running) = parity_both_policies(&run);
    for (b, r) in batch.iter().zip(&running) {
        assert!((b - r).abs() > 1e-6, "batch-stats {b} vs running-stats {r}");
    }
}

#[test]
fn resnet18_and_resnet34_match_pytorch_under_both_batchnorm_policies() {
    let dir = scratch("vision-resnet");
    write_cifar_fixture(&dir.join("c10"), DatasetKind::Cifar10, 64);
    for model in ["resnet18", "resnet34"] {
        let mut text = config(model, &dir.join("c10"), "cifar10", model, "", "f32");
        // one snapshot, no extra minibatch: keeps the test short on 2 cores
        text = text.replace(
            "extra_batches: 1, full: true, full_subset: 8}",
            "extra_batches: 0, full: true, full_subset: 4, steps: [1]}",
        );
        let run = train_and_probe(&dir, &text);
        let (batch, running) = parity_both_policies(&run);
        assert!(!batch.is_empty());
        for (b, r) in batch.iter().zip(&running) {
            assert!(
                (b - r).abs() > 1e-6,
                "{model}: batch-stats {b} vs running-stats {r}"
            );
        }
    }
}

/// Parameter and buffer names, shapes and counts of abcond's models equal the
/// PyTorch references'; ResNet18-CIFAR with 10 classes has 11 173 962 parameters.
#[test]
fn parameter_names_and_counts_match_pytorch() {
    let dir = scratch("vision-counts");
    write_cifar_fixture(&dir.join("c10"), DatasetKind::Cifar10, 5);
    let reference = run_python("check_vision.py", &["10"]);
    let data_cfg: DataConfig = serde_yaml::from_str(&format!(
        "dataset: cifar10\npath: {}",
        dir.join("c10").display()
    ))
    .unwrap();
    let data = Dataset::load(&data_cfg, abcond::config::Dtype::F32, tch::Device::Cpu).unwrap();
    let mut counts = BTreeMap::new();
    for (name, yaml) in [
        ("cnn-64", "kind: cnn\nwidth: 64"),
        ("resnet9", "kind: resnet9"),
        ("resnet18", "kind: resnet18"),
        ("resnet34", "kind: resnet34"),
    ] {
        let cfg: ModelConfig = serde_yaml::from_str(yaml).unwrap();
        let model = Model::build(&cfg, &data, tch::Device::Cpu, 0).unwrap();
        let mut ours: Vec<String> = vec![format!("{name} num_params {}", model.num_params())];
        for t in model.tensors() {
            let role = match t.role {
                abcond::store::tensors::Role::Param => "param",
                _ => "buffer",
            };
            let shape: Vec<String> = t.tensor.size().iter().map(i64::to_string).collect();
            ours.push(format!("{name} {role} {} {}", t.name, shape.join("x")));
        }
        let mut theirs: Vec<String> = reference
            .lines()
            .filter(|l| l.starts_with(&format!("{name} ")))
            .map(str::to_string)
            .collect();
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs, "{name}");
        counts.insert(name, model.num_params());
    }
    assert_eq!(counts["resnet18"], 11_173_962);
    assert_eq!(counts["resnet34"], 21_282_122);
    println!("{counts:?}");
}

#[test]
fn cifar_errors_name_the_file_and_the_record_size() {
    let dir = scratch("vision-errors");
    write_cifar_fixture(&dir.join("c100"), DatasetKind::Cifar100, 10);
    // CIFAR-100's train.bin renamed into a CIFAR-10 layout: wrong record size.
    let c10 = dir.join("c10");
    std::fs::create_dir_all(&c10).unwrap();
    for i in 1..=5 {
        std::fs::copy(
            dir.join("c100/train.bin"),
            c10.join(format!("data_batch_{i}.bin")),
        )
        .unwrap();
    }
    let text = config("bad", &c10, "cifar10", "cnn", "", "f32");
    let cfg = write_config(&dir, "bad.yaml", &text);
    let out = abcond(
        &dir,
        &["--quiet", "--out", "out", "train", cfg.to_str().unwrap()],
    );
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("data_batch_1.bin") && err.contains("3073-byte"),
        "{err}"
    );
    let text = config(
        "missing",
        &dir.join("nowhere"),
        "cifar100",
        "cnn",
        "",
        "f32",
    );
    let cfg = write_config(&dir, "missing.yaml", &text);
    let out = abcond(
        &dir,
        &["--quiet", "--out", "out", "train", cfg.to_str().unwrap()],
    );
    let err = stderr(&out);
    assert!(
        err.contains("train.bin") && err.contains("nowhere"),
        "{err}"
    );
    // augmentation is for CIFAR only
    let text = "experiment: x\nmodel: {preset: mlp}\ndata: {dataset: mnist, augment: crop-flip}\ntrain: {batch_size: 4, steps: 2}\noptim: {name: sgd, lr: 0.1}\n";
    let cfg = write_config(&dir, "aug.yaml", text);
    let out = abcond(
        &dir,
        &["--quiet", "--out", "out", "train", cfg.to_str().unwrap()],
    );
    assert!(stderr(&out).contains("augment"), "{}", stderr(&out));
}
