//! The run lock (src/run/lock.rs): a second writer of a run fails at once with
//! a message naming the run and the holder; a killed holder leaves no stale lock.

mod common;
use common::*;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

fn config(data: &Path, steps: u64, every: u64) -> String {
    format!(
        "experiment: locked
seed: 1
device: cpu
model: {{preset: mlp, width: 32}}
data: {{dataset: fashion-mnist, path: {}, subset: 300}}
train: {{batch_size: 16, steps: {steps}, checkpoint_every: 100}}
optim: {{name: sgd, lr: 0.05}}
snapshots: {{every: {every}}}
probe: {{extra_batches: 16}}
analysis: {{plots: false}}
",
        data.display()
    )
}

/// Waits until `cond` holds, while `child` must keep running.
fn wait_for(child: &mut Child, what: &str, cond: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the process ended before {what}"
        );
        assert!(t0.elapsed() < Duration::from_secs(120), "never {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn lock_holder(rd: &Path) -> String {
    std::fs::read_to_string(rd.join(".lock")).unwrap_or_default()
}

fn kill(mut child: Child) {
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
}

#[test]
fn second_trainer_fails_clearly_and_killed_trainer_leaves_no_stale_lock() {
    let dir = scratch("lock-train");
    write_idx_fixture(&dir.join("fmnist"), 400);
    write_config(
        &dir,
        "long.yaml",
        &config(&dir.join("fmnist"), 200_000, 50_000),
    );
    let mut first = cmd(&dir)
        .args(["-q", "train", "long.yaml"])
        .spawn()
        .unwrap();
    let out = dir.join("results");
    let run = || {
        std::fs::read_dir(out.join("locked"))
            .ok()?
            .next()?
            .ok()
            .map(|e| e.path())
    };
    wait_for(&mut first, "training started", || {
        run().is_some_and(|rd| {
            std::fs::read_to_string(rd.join("run.yaml"))
                .is_ok_and(|m| m.contains("status: running"))
        })
    });
    let rd = run().unwrap();
    let holder = lock_holder(&rd);
    assert!(holder.contains("what: train"), "{holder}");
    assert!(holder.contains(&format!("pid: {}", first.id())), "{holder}");

    let second = abcond(&dir, &["train", "long.yaml"]);
    assert_eq!(second.status.code(), Some(1));
    let e = stderr(&second);
    let rel = rd.strip_prefix(&dir).unwrap();
    assert!(
        e.contains(&format!(
            "error: {} is locked by another abcond process",
            rel.display()
        )),
        "{e}"
    );
    assert!(
        e.contains(&format!("train on host {}", abcond::util::hostname())),
        "{e}"
    );
    assert!(e.contains(&format!("pid {}", first.id())), "{e}");
    assert!(e.contains("-q train long.yaml`"), "{e}");
    assert!(
        e.contains("cannot train it now. Wait for that process"),
        "{e}"
    );
    // Probing and analysing a run being trained are refused the same way.
    let p = stderr(&abcond(&dir, &["probe", rd.to_str().unwrap()]));
    assert!(p.contains("cannot probe it now"), "{p}");
    let a = stderr(&abcond(&dir, &["analyze", rd.to_str().unwrap()]));
    assert!(a.contains("cannot analyze it now"), "{a}");
    let m = std::fs::read_to_string(rd.join("run.yaml")).unwrap();
    assert_eq!(
        m.matches("- command:").count(),
        1,
        "refused writers left no session:\n{m}"
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first trainer was disturbed"
    );

    // SIGKILL: the kernel releases the lock; the next trainer resumes.
    kill(first);
    let mut again = cmd(&dir).args(["train", "long.yaml"]).spawn().unwrap();
    wait_for(&mut again, "the resumed session was recorded", || {
        std::fs::read_to_string(rd.join("run.yaml"))
            .is_ok_and(|m| m.matches("- command:").count() == 2)
    });
    assert!(lock_holder(&rd).contains(&format!("pid: {}", again.id())));
    kill(again);
}

#[test]
fn probing_a_run_being_probed_fails_clearly() {
    let dir = scratch("lock-probe");
    write_idx_fixture(&dir.join("fmnist"), 400);
    write_config(&dir, "c.yaml", &config(&dir.join("fmnist"), 600, 2));
    ok(&abcond(&dir, &["-q", "train", "c.yaml"]));
    let rd = run_dir(&dir.join("results"), "locked");
    let mut first = cmd(&dir)
        .args(["-q", "probe", rd.to_str().unwrap()])
        .spawn()
        .unwrap();
    let pid = format!("pid: {}", first.id());
    wait_for(&mut first, "probing started", || {
        let h = lock_holder(&rd);
        h.contains("what: probe") && h.contains(&pid)
    });
    let second = abcond(&dir, &["probe", rd.to_str().unwrap()]);
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first probe ended too early to test anything"
    );
    assert_eq!(second.status.code(), Some(1));
    let e = stderr(&second);
    assert!(
        e.contains(&format!(
            "{} is locked by another abcond process (probe on host",
            rd.display()
        )),
        "{e}"
    );
    assert!(e.contains(&format!("pid {}", first.id())), "{e}");
    assert!(e.contains("cannot probe it now"), "{e}");
    kill(first);
    // The killed probe left no stale lock: probing resumes and completes.
    let out = ok(&abcond(&dir, &["-q", "probe", rd.to_str().unwrap()]));
    assert!(out.contains("landscape.parquet"), "{out}");
}
