//! Signal checkpoints (src/train/signal.rs): SIGTERM or SIGUSR1 during
//! training ends `abcond train` with exit status 75, the stderr line, and a
//! checkpoint; rerunning resumes to steps and x^K bit-identical to an
//! uninterrupted run. The SIGUSR1 case sends a second signal (SIGTERM) right
//! after the first, while the checkpoint is written.

mod common;
use common::*;
use std::path::Path;

const STEPS: usize = 40000;

fn interrupted_then_resumed(name: &str, signals: &[i32], want: &str) {
    let dir = scratch(name);
    let data = dir.join("data");
    write_idx_fixture(&data, 256);
    write_config(
        &dir,
        "c.yaml",
        &format!(
            "experiment: sig\nseed: 0\ndevice: cpu\ndata: {{dataset: fashion-mnist, path: {}}}\nmodel: {{preset: mlp, width: 8}}\noptim: {{name: sgd, lr: 0.1}}\ntrain: {{batch_size: 16, steps: {STEPS}, checkpoint_every: 1000000}}\nsnapshots: {{every: 10000}}\n",
            data.display()
        ),
    );
    let child = cmd(&dir)
        .args(["-q", "--out", "res", "train", "c.yaml"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_training(&dir.join("res"), "sig");
    for &s in signals {
        unsafe {
            libc::kill(child.id() as i32, s);
        }
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(
        err.contains(&format!("received {want} at step "))
            && err.contains("checkpoint written, exiting; rerun the same command to resume"),
        "{err}"
    );
    // What the interrupted run says of itself: resume training, not probe.
    let interrupted = run_dir(&dir.join("res"), "sig");
    let said = ok(&abcond(&dir, &["inspect", interrupted.to_str().unwrap()]));
    let at: u64 = err
        .split(" at step ")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no step in {err}"));
    assert!(
        said.contains("probe       not yet: training has not finished (resume it")
            && said.contains(&format!("steps 0–{at}: ")),
        "{said}"
    );
    ok(&abcond(&dir, &["-q", "--out", "res", "train", "c.yaml"]));
    ok(&abcond(&dir, &["-q", "--out", "ref", "train", "c.yaml"]));
    let run = run_dir(&dir.join("res"), "sig");
    let reference = run_dir(&dir.join("ref"), "sig");
    let said = py(
        r#"
import sys, yaml, polars as pl
run, ref, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
m = yaml.safe_load(open(run + "/run.yaml"))
ss = m["sessions"]
assert m["status"] == "completed" and len(ss) == 2 and ss[0]["outcome"] == "failed", ss
assert 0 < ss[1]["start_step"] < steps, ss
# The interrupted session records the step its checkpoint reached.
assert ss[0]["end_step"] == ss[1]["start_step"] and ss[1]["end_step"] == steps, ss
s = pl.read_parquet(run + "/steps.parquet")
r = pl.read_parquet(ref + "/steps.parquet")
assert s["step"].to_list() == list(range(steps))
for c in ["loss", "grad_norm", "lr"]:
    assert s[c].to_list() == r[c].to_list(), c
print("ok", ss[1]["start_step"])
"#,
        &[
            run.to_str().unwrap(),
            reference.to_str().unwrap(),
            &STEPS.to_string(),
        ],
    );
    assert!(said.starts_with("ok"), "{said}");
    let step: &str = said.split_whitespace().nth(1).unwrap();
    assert!(err.contains(&format!("at step {step}:")), "{err} vs {said}");
    let last = |d: &Path| read_values(&d.join(format!("iterates/step={STEPS}/part-0.parquet")));
    assert_eq!(last(&run), last(&reference));
}

#[test]
fn sigterm_checkpoints_and_resumes_bit_identically() {
    interrupted_then_resumed("signal-term", &[libc::SIGTERM], "SIGTERM");
}

#[test]
fn sigusr1_then_a_second_signal_checkpoints_and_resumes_bit_identically() {
    interrupted_then_resumed("signal-usr1", &[libc::SIGUSR1, libc::SIGTERM], "SIGUSR1");
}
