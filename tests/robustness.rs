//! Crashes, kills, divergence and bad input: runs resume bit-identically,
//! nothing half-written looks valid, and errors name the file or key and what
//! was expected.

mod common;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

fn resume_config(data: &Path) -> String {
    format!(
        "experiment: resume
seed: 7
device: cpu
model: {{preset: mlp, width: 48}}
data: {{dataset: fashion-mnist, path: {}, subset: 1000}}
train: {{batch_size: 16, steps: 4000, checkpoint_every: 50}}
optim: {{name: sgd, lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 0.0005}}
schedule: {{name: cosine, floor: 0.001}}
snapshots: {{every: 500}}
",
        data.display()
    )
}

/// The resume config shortened to `steps` steps with a snapshot every `every`,
/// on the first 300 fixture examples, without periodic checkpoints.
fn short_config(data: &Path, steps: u64, every: u64) -> String {
    resume_config(data)
        .replace(
            "steps: 4000, checkpoint_every: 50",
            &format!("steps: {steps}"),
        )
        .replace("every: 500", &format!("every: {every}"))
        .replace("subset: 1000", "subset: 300")
}

/// Trains `config` into `dir/out` with the crash hook set to `point`, and
/// checks that the process did die there.
fn train_until_crash(dir: &Path, out: &str, config: &str, point: &str) {
    let status = cmd(dir)
        .args(["-q", "--out", out, "train", config])
        .env("ABCOND_CRASH_AT", point)
        .status()
        .unwrap();
    assert!(!status.success(), "crash hook {point} did not fire");
}

fn final_snapshot(out: &Path) -> std::path::PathBuf {
    run_dir(out, "resume").join("iterates/step=4000/part-0.parquet")
}

fn uninterrupted(dir: &Path) -> (Vec<(String, Vec<f64>)>, Vec<abcond::store::tables::StepRow>) {
    ok(&abcond(
        dir,
        &["-q", "--out", "ref", "train", "config.yaml"],
    ));
    let steps = abcond::store::tables::read_steps(
        &run_dir(&dir.join("ref"), "resume").join("steps.parquet"),
    )
    .unwrap()
    .0;
    (read_values(&final_snapshot(&dir.join("ref"))), steps)
}

fn assert_identical_to_reference(
    dir: &Path,
    out: &str,
    reference: &(Vec<(String, Vec<f64>)>, Vec<abcond::store::tables::StepRow>),
) {
    let got = read_values(&final_snapshot(&dir.join(out)));
    assert_eq!(got.len(), reference.0.len());
    for ((n1, v1), (n2, v2)) in got.iter().zip(&reference.0) {
        assert_eq!(n1, n2);
        // bit-identical, not merely close
        assert!(
            v1.iter().zip(v2).all(|(a, b)| a.to_bits() == b.to_bits()),
            "tensor {n1} differs after resume"
        );
    }
    let steps =
        abcond::store::tables::read_steps(&run_dir(&dir.join(out), "resume").join("steps.parquet"))
            .unwrap()
            .0;
    assert_eq!(steps.len(), reference.1.len());
    for (a, b) in steps.iter().zip(&reference.1) {
        assert_eq!(
            a.loss.to_bits(),
            b.loss.to_bits(),
            "step {} loss differs",
            a.step
        );
        assert_eq!(a.batch_indices, b.batch_indices);
    }
    let m = std::fs::read_to_string(run_dir(&dir.join(out), "resume").join("run.yaml")).unwrap();
    assert!(m.contains("status: completed"), "{m}");
    assert!(
        !run_dir(&dir.join(out), "resume").join("state").exists(),
        "checkpoint left after completion"
    );
}

#[test]
fn killed_training_resumes_bit_identical() {
    let dir = scratch("kill-resume");
    write_idx_fixture(&dir.join("fmnist"), 1200);
    write_config(&dir, "config.yaml", &resume_config(&dir.join("fmnist")));
    let reference = uninterrupted(&dir);

    // SIGKILL a real training process once it is past a few checkpoints.
    let mut child = cmd(&dir)
        .args(["-q", "--out", "killed", "train", "config.yaml"])
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let marker = dir.join("killed/resume");
    loop {
        let past = std::fs::read_dir(&marker)
            .ok()
            .and_then(|mut rd| rd.next())
            .map(|e| e.unwrap().path().join("iterates/step=1000/part-0.parquet"))
            .is_some_and(|p| p.exists());
        if past {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "training never reached step 1000"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "training ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let rd = run_dir(&dir.join("killed"), "resume");
    let m = std::fs::read_to_string(rd.join("run.yaml")).unwrap();
    assert!(
        m.contains("status: running"),
        "killed run should still say running:\n{m}"
    );
    assert!(
        !rd.join("iterates/step=4000").exists(),
        "the kill came too late to test anything"
    );
    let inspect = ok(&abcond(&dir, &["inspect", rd.to_str().unwrap()]));
    assert!(
        inspect.contains("status      running, but its process is gone"),
        "{inspect}"
    );

    let out = abcond(&dir, &["--out", "killed", "train", "config.yaml"]);
    ok(&out);
    assert!(stderr(&out).contains("resuming"), "{}", stderr(&out));
    assert_identical_to_reference(&dir, "killed", &reference);
    let m = std::fs::read_to_string(rd.join("run.yaml")).unwrap();
    assert_eq!(
        m.matches("- command:").count(),
        2,
        "two sessions recorded:\n{m}"
    );
}

#[test]
fn crash_after_snapshot_and_after_inline_checkpoint_resume_bit_identical() {
    let dir = scratch("crash-resume");
    write_idx_fixture(&dir.join("fmnist"), 1200);
    write_config(&dir, "config.yaml", &resume_config(&dir.join("fmnist")));
    let reference = uninterrupted(&dir);
    // 1030: last checkpoint is the snapshot at 1000; 1480: an inline one at 1450.
    // Then a second crash in the resumed session.
    for (out, crashes) in [("a", vec!["1030"]), ("b", vec!["1480", "2777"])] {
        for at in &crashes {
            train_until_crash(&dir, out, "config.yaml", &format!("step:{at}"));
        }
        ok(&abcond(&dir, &["-q", "--out", out, "train", "config.yaml"]));
        assert_identical_to_reference(&dir, out, &reference);
    }
}

/// Snapshot steps are checkpoints only once `train.checkpoint_min_seconds`
/// passed since the last one. Snapshots every 50 steps, a crash before step
/// 280 once the queued files are written:
/// - a floor no run reaches: no checkpoint, the rerun starts from step 0;
/// - floor 0: every snapshot step is one, the rerun resumes from 250;
/// - a floor no run reaches and `checkpoint_every: 100`: it resumes from 200,
///   and the snapshot at 250 — after the last checkpoint, not yet synced, here
///   emptied as a power loss may leave it — is removed and written again.
///
/// The floor is cadence: each rerun, at the default floor, continues the same
/// run, and ends bit-identical to an uninterrupted run.
#[test]
fn snapshot_checkpoints_follow_the_floor() {
    let dir = scratch("checkpoint-floor");
    write_idx_fixture(&dir.join("fmnist"), 300);
    write_config(
        &dir,
        "config.yaml",
        &short_config(&dir.join("fmnist"), 400, 50),
    );
    ok(&abcond(
        &dir,
        &["-q", "--out", "ref", "train", "config.yaml"],
    ));
    let rd_ref = run_dir(&dir.join("ref"), "resume");
    let ref_steps = abcond::store::tables::read_steps(&rd_ref.join("steps.parquet"))
        .unwrap()
        .0;
    let cases: [(&str, &[&str], Option<u64>); 3] = [
        ("none", &["train.checkpoint_min_seconds=3600"], None),
        (
            "every-snapshot",
            &["train.checkpoint_min_seconds=0"],
            Some(250),
        ),
        (
            "every-100",
            &[
                "train.checkpoint_min_seconds=3600",
                "train.checkpoint_every=100",
            ],
            Some(200),
        ),
    ];
    for (out, sets, checkpoint) in cases {
        let mut args = vec!["-q", "--out", out, "train", "config.yaml"];
        for s in sets {
            args.extend(["--set", s]);
        }
        let status = cmd(&dir)
            .args(&args)
            .env("ABCOND_CRASH_AT", "step:280:written")
            .status()
            .unwrap();
        assert!(!status.success(), "{out}: crash hook did not fire");
        let rd = run_dir(&dir.join(out), "resume");
        let ck = rd.join("state/checkpoint.parquet");
        let ck_step = ck.is_file().then(|| {
            abcond::store::tensors::read(&ck, tch::Device::Cpu)
                .unwrap()
                .meta["abcond.step"]
                .parse::<u64>()
                .unwrap()
        });
        assert_eq!(ck_step, checkpoint, "{out}: the last checkpoint");
        let unsynced = rd.join("iterates/step=250/part-0.parquet");
        assert!(unsynced.is_file(), "{out}");
        if checkpoint != Some(250) {
            std::fs::write(&unsynced, b"").unwrap();
        }
        ok(&abcond(&dir, &["-q", "--out", out, "train", "config.yaml"]));
        let m: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(rd.join("run.yaml")).unwrap()).unwrap();
        let sessions = m["sessions"].as_sequence().unwrap();
        assert_eq!(sessions.len(), 2, "{out}: {m:?}");
        assert_eq!(
            sessions[1]["start_step"].as_u64(),
            Some(checkpoint.unwrap_or(0)),
            "{out}"
        );
        let steps = abcond::store::tables::read_steps(&rd.join("steps.parquet"))
            .unwrap()
            .0;
        assert_eq!(steps, ref_steps, "{out}: steps differ");
        for k in (0..=400).step_by(50) {
            let name = format!("iterates/step={k}/part-0.parquet");
            assert_eq!(
                read_values(&rd.join(&name)),
                read_values(&rd_ref.join(&name)),
                "{out}: {name}"
            );
        }
    }
}

/// Crashes while finishing: after steps.parquet is merged but before run.yaml
/// says completed, and after that but before the parts and checkpoint are
/// removed. Either way a rerun ends completed, bit-identical, with no leftovers.
#[test]
fn crash_while_finishing_recovers() {
    let dir = scratch("crash-finishing");
    write_idx_fixture(&dir.join("fmnist"), 1200);
    let cfg = resume_config(&dir.join("fmnist")).replace("steps: 4000", "steps: 1200");
    write_config(&dir, "config.yaml", &cfg);
    ok(&abcond(
        &dir,
        &["-q", "--out", "ref", "train", "config.yaml"],
    ));
    let rd_ref = run_dir(&dir.join("ref"), "resume");
    let reference = read_values(&rd_ref.join("iterates/step=1200/part-0.parquet"));
    let ref_steps = abcond::store::tables::read_steps(&rd_ref.join("steps.parquet"))
        .unwrap()
        .0;
    for point in ["before-complete", "before-cleanup"] {
        train_until_crash(&dir, point, "config.yaml", point);
        let rd = run_dir(&dir.join(point), "resume");
        assert!(
            rd.join("state").exists() && rd.join("steps-parts").exists(),
            "{point}: cleaned too early"
        );
        let out = abcond(&dir, &["--out", point, "train", "config.yaml"]);
        ok(&out);
        let m = std::fs::read_to_string(rd.join("run.yaml")).unwrap();
        assert!(m.contains("status: completed"), "{point}: {m}");
        assert!(
            !rd.join("state").exists() && !rd.join("steps-parts").exists(),
            "{point}: leftovers"
        );
        let got = read_values(&rd.join("iterates/step=1200/part-0.parquet"));
        assert_eq!(got, reference, "{point}: final iterate differs");
        let steps = abcond::store::tables::read_steps(&rd.join("steps.parquet"))
            .unwrap()
            .0;
        assert_eq!(steps, ref_steps, "{point}: steps differ");
    }
}

#[test]
fn divergence_stops_with_status_and_kept_files() {
    let dir = scratch("diverge");
    write_idx_fixture(&dir.join("fmnist"), 300);
    let cfg = resume_config(&dir.join("fmnist"))
        .replace(
            "lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 0.0005",
            "lr: 1.0e6",
        )
        .replace("subset: 1000", "subset: 300");
    write_config(&dir, "config.yaml", &cfg);
    let out = abcond(&dir, &["--out", "out", "train", "config.yaml"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("diverged at step"), "{err}");
    let rd = run_dir(&dir.join("out"), "resume");
    let m = std::fs::read_to_string(rd.join("run.yaml")).unwrap();
    assert!(m.contains("status: diverged"), "{m}");
    let (steps, _) = abcond::store::tables::read_steps(&rd.join("steps.parquet")).unwrap();
    let last = steps.last().unwrap();
    assert!(
        !last.loss.is_finite() || !last.grad_norm.is_finite(),
        "{last:?}"
    );
    assert!(steps[..steps.len() - 1].iter().all(|r| r.loss.is_finite()));
    assert!(rd.join("iterates/step=0/part-0.parquet").exists());
    // Probing a diverged run and training it again are refused with a reason.
    let out = abcond(&dir, &["probe", rd.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("diverged"), "{}", stderr(&out));
    // Training it again: exit status 3 as when it diverged (also with --all).
    let out = abcond(&dir, &["--out", "out", "train", "config.yaml"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("would diverge again"),
        "{}",
        stderr(&out)
    );
    // analyze does not suggest probing it (probe refuses).
    let out = abcond(&dir, &["analyze", rd.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!stderr(&out).contains("probe it with"), "{}", stderr(&out));
    assert!(stderr(&out).contains("it diverged"), "{}", stderr(&out));
}

#[test]
fn bad_config_and_missing_data_are_named() {
    let dir = scratch("bad-config");
    write_idx_fixture(&dir.join("fmnist"), 100);
    let good = resume_config(&dir.join("fmnist"));
    let cfg = write_config(
        &dir,
        "typo.yaml",
        &good.replace("momentum: 0.9", "momentun: 0.9"),
    );
    let out = abcond(&dir, &["train", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for needle in [
        "typo.yaml",
        "optim.momentun",
        "unknown field `momentun`",
        "`momentum`",
        "`nesterov`",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in: {err}");
    }
    let out = abcond(&dir, &["train", "config-that-is-not-there.yaml"]);
    assert!(
        stderr(&out).contains("config-that-is-not-there.yaml"),
        "{}",
        stderr(&out)
    );
    let cfg = write_config(
        &dir,
        "nodata.yaml",
        &good.replace(&dir.join("fmnist").display().to_string(), "/nonexistent/fm"),
    );
    let out = abcond(&dir, &["--out", "out", "train", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for needle in [
        "/nonexistent/fm",
        "train-images-idx3-ubyte",
        "dataset-fashion-mnist",
        "data.path",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in: {err}");
    }
    // A corrupt IDX file is named with what was expected.
    std::fs::write(
        dir.join("fmnist/train-labels-idx1-ubyte"),
        b"\x00\x00\x08\x01\x00\x00\x00\x09abc",
    )
    .unwrap();
    let cfg = write_config(&dir, "good.yaml", &good);
    let out = abcond(&dir, &["--out", "out", "train", cfg.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(
        err.contains("train-labels-idx1-ubyte") && err.contains("promises 9"),
        "{err}"
    );
    // --set with an unknown key says it came from --set
    let out = abcond(
        &dir,
        &["train", cfg.to_str().unwrap(), "--set", "train.bach_size=3"],
    );
    assert!(
        stderr(&out).contains("train.bach_size") && stderr(&out).contains("--set"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn truncated_or_foreign_snapshots_are_rejected_without_damage() {
    let dir = scratch("bad-snapshot");
    write_idx_fixture(&dir.join("fmnist"), 300);
    let cfg = short_config(&dir.join("fmnist"), 200, 50);
    write_config(&dir, "config.yaml", &cfg);
    ok(&abcond(
        &dir,
        &["-q", "--out", "out", "train", "config.yaml"],
    ));
    let rd = run_dir(&dir.join("out"), "resume");
    let rds = rd.to_str().unwrap();

    // Probing fails with an error naming the problem, writes no landscape and
    // changes no file that was there.
    let probe_fails = |needles: &[&str]| {
        let before = tree(&rd);
        let out = abcond(&dir, &["probe", rds]);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        for needle in needles {
            assert!(err.contains(needle), "missing {needle:?} in: {err}");
        }
        assert!(!rd.join("landscape.parquet").exists());
        let after = tree(&rd);
        // .lock records who last held the run lock (the failed probe did).
        for (path, content) in before.iter().filter(|(p, _)| !p.ends_with(".lock")) {
            assert_eq!(after.get(path), Some(content), "{} changed", path.display());
        }
    };

    // Truncated snapshot.
    let victim = rd.join("iterates/step=100/part-0.parquet");
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    probe_fails(&["step=100/part-0.parquet", "not a readable Parquet file"]);

    // A foreign Parquet file in place of a snapshot.
    std::fs::copy(rd.join("steps.parquet"), &victim).unwrap();
    probe_fails(&["is not an abcond tensor file", "abcond.format", "step=100"]);

    // A snapshot of another model.
    let other = abcond::store::tensors::NamedTensor {
        name: "fc9.weight".into(),
        role: abcond::store::tensors::Role::Param,
        tensor: tch::Tensor::zeros([2, 2], (tch::Kind::Float, tch::Device::Cpu)),
    };
    let run_id = rd.file_name().unwrap().to_string_lossy().to_string();
    let meta = [
        ("abcond.content", "iterate".to_string()),
        ("abcond.run_id", run_id),
        ("abcond.step", "100".to_string()),
    ];
    abcond::store::tensors::write(&victim, &[other], abcond::config::Dtype::F32, &meta, 1024)
        .unwrap();
    probe_fails(&["unexpected [fc9.weight]", "fc1.weight"]);

    // The right model, but the iterate of another step or of another run.
    std::fs::copy(rd.join("iterates/step=50/part-0.parquet"), &victim).unwrap();
    probe_fails(&["holds the iterate of step 50, expected step 100"]);
    ok(&abcond(
        &dir,
        &[
            "-q",
            "--out",
            "other",
            "train",
            "config.yaml",
            "--set",
            "seed=8",
        ],
    ));
    let other_run = run_dir(&dir.join("other"), "resume");
    std::fs::copy(other_run.join("iterates/step=100/part-0.parquet"), &victim).unwrap();
    probe_fails(&["belongs to run", "seed8-"]);

    // A truncated resume checkpoint names the file and how to recover.
    let rd2 = {
        let cfg = resume_config(&dir.join("fmnist")).replace("subset: 1000", "subset: 300");
        write_config(&dir, "long.yaml", &cfg);
        train_until_crash(&dir, "out2", "long.yaml", "step:333");
        run_dir(&dir.join("out2"), "resume")
    };
    let ck = rd2.join("state/checkpoint.parquet");
    let bytes = std::fs::read(&ck).unwrap();
    std::fs::write(&ck, &bytes[..100]).unwrap();
    let out = abcond(&dir, &["--out", "out2", "train", "long.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("checkpoint.parquet") && err.contains("--repair"),
        "{err}"
    );
    let m = std::fs::read_to_string(rd2.join("run.yaml")).unwrap();
    assert!(m.contains("status: failed"), "{m}");
}

#[test]
fn completed_run_is_not_retrained_and_set_changes_run_id() {
    let dir = scratch("rerun");
    write_idx_fixture(&dir.join("fmnist"), 300);
    let cfg = short_config(&dir.join("fmnist"), 30, 10);
    write_config(&dir, "config.yaml", &cfg);
    ok(&abcond(
        &dir,
        &["-q", "--out", "out", "train", "config.yaml"],
    ));
    let out = abcond(&dir, &["--out", "out", "train", "config.yaml"]);
    ok(&out);
    assert!(
        stderr(&out).contains("already completed"),
        "{}",
        stderr(&out)
    );
    ok(&abcond(
        &dir,
        &[
            "-q",
            "--out",
            "out",
            "train",
            "config.yaml",
            "--set",
            "optim.lr=0.02",
            "--set",
            "seed=8",
        ],
    ));
    let runs: Vec<String> = std::fs::read_dir(dir.join("out/resume"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs.iter().any(|r| r.starts_with("seed8-")), "{runs:?}");
    // An explicit run id with a different config is refused, naming the keys.
    ok(&abcond(
        &dir,
        &[
            "-q",
            "--out",
            "out",
            "train",
            "config.yaml",
            "--run-id",
            "mine",
        ],
    ));
    let out = abcond(
        &dir,
        &[
            "--out",
            "out",
            "train",
            "config.yaml",
            "--run-id",
            "mine",
            "--set",
            "train.batch_size=8",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("train.batch_size"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn help_teaches() {
    let out = cmd(Path::new(".")).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "alpha-beta",
        "train",
        "probe",
        "run",
        "inspect",
        "--out",
        "Examples:",
        "Exit status",
    ] {
        assert!(text.contains(needle), "--help lacks {needle:?}:\n{text}");
    }
    let out = cmd(Path::new("."))
        .args(["train", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--set"));
}
