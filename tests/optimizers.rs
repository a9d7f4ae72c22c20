//! Every optimiser and schedule against an independent replay
//! (tests/check_optim.py: torch.optim, torch.optim.lr_scheduler, and the
//! paper's step-size formulas written in Python), and bit-identical resume of
//! the methods with scalar state.

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// A small f64 MLP on the IDX fixture with a snapshot at every step, so that
/// steps.parquet holds every minibatch and every iterate can be compared.
fn config(data: &Path, experiment: &str, optim: &str, schedule: &str, steps: u64) -> String {
    format!(
        "experiment: {experiment}
seed: 3
device: cpu
model: {{preset: mlp, width: 8, dtype: f64}}
data: {{dataset: fashion-mnist, path: {}, subset: 256}}
train: {{batch_size: 16, steps: {steps}}}
optim: {optim}
schedule: {schedule}
snapshots: {{every: 1}}
",
        data.display()
    )
}

/// (experiment, optim section, schedule section): each optimiser at least once,
/// each schedule at least once, weight-decay exclusion with coupled and
/// decoupled decay.
const CASES: &[(&str, &str, &str)] = &[
    (
        "sgd-momentum",
        "{name: sgd, lr: 0.05, momentum: 0.9, dampening: 0.1, weight_decay: 0.01, weight_decay_exclude: [biases]}",
        "{name: cosine, floor: 0.001}",
    ),
    (
        "sgd-nesterov",
        "{name: sgd, lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 0.001}",
        "{name: polynomial, power: 2.0}",
    ),
    (
        "adam",
        "{name: adam, lr: 0.003, weight_decay: 0.001}",
        "{name: warmup-cosine, warmup_fraction: 0.1}",
    ),
    (
        "adamw",
        "{name: adamw, lr: 0.003, weight_decay: 0.05, weight_decay_exclude: [biases, norms]}",
        "{name: one-cycle}",
    ),
    (
        "nadam-decoupled",
        "{name: nadam, lr: 0.003, weight_decay: 0.02, decoupled_weight_decay: true}",
        "{name: inverse-power, power: 0.5}",
    ),
    (
        "nadam",
        "{name: nadam, lr: 0.002, betas: [0.95, 0.99], weight_decay: 0.001, weight_decay_exclude: [biases]}",
        "{name: constant}",
    ),
    (
        "nadamw",
        "{name: nadamw, lr: 0.0017, betas: [0.93, 0.995], weight_decay: 0.08}",
        "{name: warmup-cosine, warmup_fraction: 0.02, floor: 1.0e-10}",
    ),
    (
        "normalized-sgd",
        "{name: normalized-sgd, lr: 0.05, momentum_power: 0.5}",
        "{name: inverse-power, power: 0.5714285714285714}",
    ),
    (
        "sps-max",
        "{name: sps-max, lr: 2.0, c: 0.5}",
        "{name: constant}",
    ),
    (
        "decsps",
        "{name: decsps, lr: 2.0, c: 1.0, c_power: 0.5}",
        "{name: constant}",
    ),
    ("ngn", "{name: ngn, lr: 0.5}", "{name: cosine}"),
    (
        "adagrad-norm-max",
        "{name: adagrad-norm-max, lr: 0.5, b0: 0.1}",
        "{name: polynomial, power: 1.0, floor: 0.05}",
    ),
];

fn train(dir: &Path, out: &str, config_name: &str) {
    ok(&abcond(dir, &["-q", "--out", out, "train", config_name]));
}

#[test]
fn every_optimiser_matches_an_independent_replay() {
    let dir = scratch("optimisers");
    write_idx_fixture(&dir.join("fmnist"), 300);
    let mut runs: Vec<PathBuf> = Vec::new();
    for (name, optim, schedule) in CASES {
        let file = format!("{name}.yaml");
        write_config(
            &dir,
            &file,
            &config(&dir.join("fmnist"), name, optim, schedule, 60),
        );
        train(&dir, "out", &file);
        runs.push(run_dir(&dir.join("out"), name));
    }
    let args: Vec<&str> = runs.iter().map(|p| p.to_str().unwrap()).collect();
    let out = run_python("check_optim.py", &args);
    println!("{out}");
    assert!(out.contains("OK"), "{out}");
    // The step-size methods moved: a constant gamma_k would mean the adaptive
    // rule never engaged (SPS_max capped at gamma_b at every step, say).
    for name in [
        "sps-max",
        "decsps",
        "ngn",
        "adagrad-norm-max",
        "normalized-sgd",
    ] {
        let steps = abcond::store::tables::read_steps(
            &run_dir(&dir.join("out"), name).join("steps.parquet"),
        )
        .unwrap()
        .0;
        let sizes: Vec<f64> = steps.iter().map(|r| r.step_size.unwrap()).collect();
        let (lo, hi) = sizes
            .iter()
            .fold((f64::INFINITY, 0f64), |(l, h), &s| (l.min(s), h.max(s)));
        assert!(lo > 0.0 && hi > 1.5 * lo, "{name}: step sizes {lo}..{hi}");
    }
}

/// Crashes mid-run and resumes: the scalar state of DecSPS and
/// AdaGrad-norm-max, NAdam's mu-product and normalised SGD's buffer are
/// restored exactly, so the final iterate and every step size are bit-identical.
#[test]
fn step_size_methods_resume_bit_identical() {
    let dir = scratch("optim-resume");
    write_idx_fixture(&dir.join("fmnist"), 300);
    for (name, optim) in [
        ("decsps", "{name: decsps, lr: 2.0}"),
        ("adagrad-norm-max", "{name: adagrad-norm-max, lr: 0.5}"),
        ("nadam", "{name: nadam, lr: 0.003, weight_decay: 0.01}"),
        ("normalized-sgd", "{name: normalized-sgd, lr: 0.05}"),
    ] {
        let text = config(&dir.join("fmnist"), name, optim, "{name: constant}", 80)
            .replace("snapshots: {every: 1}", "snapshots: {every: 20}")
            .replace("steps: 80}", "steps: 80, checkpoint_every: 7}");
        let file = format!("{name}.yaml");
        write_config(&dir, &file, &text);
        train(&dir, "ref", &file);
        let status = cmd(&dir)
            .args(["-q", "--out", "crashed", "train", &file])
            .env("ABCOND_CRASH_AT", "step:53")
            .status()
            .unwrap();
        assert!(!status.success(), "crash hook did not fire");
        train(&dir, "crashed", &file);
        let a = run_dir(&dir.join("ref"), name);
        let b = run_dir(&dir.join("crashed"), name);
        let fin = "iterates/step=80/part-0.parquet";
        let (va, vb) = (read_values(&a.join(fin)), read_values(&b.join(fin)));
        assert!(
            !va.is_empty() && va.len() == vb.len(),
            "{name}: tensor lists differ"
        );
        for ((n1, x1), (n2, x2)) in va.iter().zip(&vb) {
            assert_eq!(n1, n2);
            assert_eq!(x1.len(), x2.len());
            assert!(
                x1.iter().zip(x2).all(|(p, q)| p.to_bits() == q.to_bits()),
                "{name}: {n1} differs after resume"
            );
        }
        let read = |d: &Path| {
            abcond::store::tables::read_steps(&d.join("steps.parquet"))
                .unwrap()
                .0
        };
        let (sa, sb) = (read(&a), read(&b));
        assert_eq!(sa.len(), 80);
        assert_eq!(sb.len(), 80);
        for (ra, rb) in sa.iter().zip(&sb) {
            assert_eq!(
                ra.step_size.map(f64::to_bits),
                rb.step_size.map(f64::to_bits),
                "{name}: step_size of step {} differs after resume",
                ra.step
            );
        }
    }
}

#[test]
fn optimiser_settings_are_checked() {
    let dir = scratch("optim-errors");
    write_idx_fixture(&dir.join("fmnist"), 64);
    let cases = [
        (
            "{name: sps-max, lr: 1.0, momentum: 0.9}",
            "{name: constant}",
            "key `optim.momentum` does not apply to optimiser `sps-max`",
        ),
        (
            "{name: ngn, lr: 1.0, weight_decay: 0.1}",
            "{name: constant}",
            "key `optim.weight_decay` does not apply to optimiser `ngn`",
        ),
        (
            "{name: decsps, lr: 1.0}",
            "{name: cosine}",
            "optimiser `decsps` decays its step size itself",
        ),
        (
            "{name: decsps, lr: 1.0, c_power: -1}",
            "{name: constant}",
            "key `optim.c_power` must be ≥ 0",
        ),
        (
            "{name: adamw, lr: 0.001, weight_decay_exclude: [bias]}",
            "{name: constant}",
            "optim.weight_decay_exclude",
        ),
        (
            "{name: sgd, lr: 0.1}",
            "{name: inverse-power, floor: 0.1}",
            "key `schedule.floor` does not apply to schedule `inverse-power`",
        ),
        (
            "{name: nadamw, lr: 0.001, betas: [0.0, 0.99]}",
            "{name: constant}",
            "nadamw needs beta1 > 0",
        ),
    ];
    for (i, (optim, schedule, expected)) in cases.iter().enumerate() {
        let file = format!("bad{i}.yaml");
        write_config(
            &dir,
            &file,
            &config(&dir.join("fmnist"), "bad", optim, schedule, 5),
        );
        let out = abcond(&dir, &["-q", "--out", "out", "train", &file]);
        assert!(!out.status.success(), "{optim} {schedule} was accepted");
        let err = stderr(&out);
        assert!(err.contains(expected), "{optim} {schedule}: {err}");
    }
}
