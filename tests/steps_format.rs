//! steps.parquet format 4 (`run_id`, `seed`, `wall_time_s`) and the older
//! format 3 still read everywhere.
//!
//! `tests/fixtures/steps-v3.parquet` is the steps.parquet of the config
//! below as the build before format 4 wrote it (`abcond.steps/3`, committed
//! unchanged). The tests train the same config with this build (same values
//! bit for bit, wall time aside), put the old file in the run and run every
//! command that reads steps (verify, inspect, probe, probe --replay,
//! analyze, the Python reader), and resume an interrupted run whose step
//! parts are of format 3.

mod common;
use abcond::store::tables::{read_steps, StepRow, STEPS_FORMAT, STEPS_FORMAT_V3};
use common::*;
use std::path::{Path, PathBuf};

const CONFIG: &str = "experiment: steps-v3
seed: 3
device: cpu
model: {preset: halfspace, lambda: 1.0e-5}
data: {dataset: halfspace, dim: 2, per_class: 10, variance: 2.0}
train: {batch_size: 2, steps: 40}
optim: {name: sgd, lr: 0.25}
snapshots: {every: 10}
probe: {extra_batches: 1, full: true}
analysis: {plots: false}
";

/// The run id of CONFIG (the fixture's run directory's name).
const RUN_ID: &str = "seed3-185cb879";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/steps-v3.parquet")
}

fn train(dir: &Path, env: Option<(&str, &str)>) -> bool {
    let cfg = write_config(dir, "c.yaml", CONFIG);
    let mut c = cmd(dir);
    c.args(["-q", "--out", "out", "train", cfg.to_str().unwrap()]);
    // Checkpoints (and step parts) every 10 steps; the run id stays.
    c.args(["--set", "train.checkpoint_every=10"]);
    if let Some((k, v)) = env {
        c.env(k, v);
    }
    c.status().unwrap().success()
}

fn run(dir: &Path) -> PathBuf {
    let r = run_dir(&dir.join("out"), "steps-v3");
    assert_eq!(r.file_name().unwrap().to_str().unwrap(), RUN_ID);
    r
}

/// The rows without what format 3 lacks.
fn as_v3(rows: &[StepRow]) -> Vec<StepRow> {
    rows.iter()
        .cloned()
        .map(|mut r| {
            r.run_id = None;
            r.seed = None;
            r
        })
        .collect()
}

/// Rewrites a steps file as format 3 (the columns of format 4 left out),
/// the way the writer before format 4 wrote it.
fn rewrite_as_v3(path: &Path) {
    let (rows, meta) = read_steps(path).unwrap();
    let batch = <StepRow as abcond::store::row::RowTable>::batch(&rows).unwrap();
    let schema = batch.schema();
    let keep: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| !["run_id", "seed", "wall_time_s"].contains(&schema.field(i).name().as_str()))
        .collect();
    abcond::store::tables::write_batch(
        path,
        &batch.project(&keep).unwrap(),
        &[
            ("abcond.format", STEPS_FORMAT_V3.to_string()),
            ("abcond.run_id", meta["abcond.run_id"].clone()),
        ],
    )
    .unwrap();
}

/// The committed format-3 file is read, and holds the same steps as this
/// build trains (bit for bit; format 4 adds run id, seed and wall time).
#[test]
fn old_format_fixture_reads_and_matches_a_fresh_run() {
    let (old, meta) = read_steps(&fixture()).unwrap();
    assert_eq!(meta["abcond.format"], STEPS_FORMAT_V3);
    assert_eq!(meta["abcond.run_id"], RUN_ID);
    assert_eq!(old.len(), 40);
    assert!(old
        .iter()
        .all(|r| r.run_id.is_none() && r.seed.is_none() && r.wall_time_s.0.is_none()));
    let dir = scratch("steps-format-fresh");
    assert!(train(&dir, None));
    let (new, meta) = read_steps(&run(&dir).join("steps.parquet")).unwrap();
    assert_eq!(meta["abcond.format"], STEPS_FORMAT);
    assert_eq!(as_v3(&new), old);
    for (a, b) in new.iter().zip(&old) {
        assert_eq!(a.loss.to_bits(), b.loss.to_bits(), "step {}", a.step);
        assert_eq!(
            a.grad_norm.to_bits(),
            b.grad_norm.to_bits(),
            "step {}",
            a.step
        );
    }
    assert!(new
        .iter()
        .all(|r| r.run_id.as_deref() == Some(RUN_ID) && r.seed == Some(3)));
    let wall: Vec<f64> = new.iter().map(|r| r.wall_time_s.0.unwrap()).collect();
    assert!(
        wall[0] >= 0.0 && wall.windows(2).all(|w| w[0] <= w[1]),
        "{wall:?}"
    );
}

/// A completed run whose steps.parquet is the format-3 fixture: verify,
/// inspect, probe, probe --replay and analyze accept it, and the Python
/// reader reads it (Experiment adds run_id and seed from run.yaml).
#[test]
fn old_format_steps_are_read_by_every_command() {
    let dir = scratch("steps-format-commands");
    assert!(train(&dir, None));
    let rd = run(&dir);
    std::fs::copy(fixture(), rd.join("steps.parquet")).unwrap();
    let r = rd.to_str().unwrap();
    ok(&abcond(&dir, &["verify", r]));
    let text = ok(&abcond(&dir, &["inspect", r]));
    assert!(text.contains("40"), "{text}");
    ok(&abcond(&dir, &["-q", "probe", r]));
    ok(&abcond(&dir, &["-q", "probe", r, "--replay"]));
    ok(&abcond(&dir, &["-q", "analyze", r]));
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("python");
    let out = python_cmd()
        .env(
            "PYTHONPATH",
            format!(
                "{}:{}",
                python.display(),
                std::env::var("PYTHONPATH").unwrap_or_default()
            ),
        )
        .arg("-c")
        .arg(
            "import sys, abcond
run = abcond.Run(sys.argv[1], 'arrow')
assert run.steps.schema.metadata[b'abcond.format'] == b'abcond.steps/3'
assert run.steps.num_rows == 40 and 'run_id' not in run.steps.column_names
exp = abcond.Experiment(sys.argv[2], 'arrow')
s = exp.steps
assert s.column_names[:2] == ['run_id', 'seed'] and s.column_names[-1] == 'wall_time_s', s.column_names
assert set(s.column('run_id').to_pylist()) == {sys.argv[3]}
assert set(s.column('seed').to_pylist()) == {3}
assert s.column('wall_time_s').null_count == 40
print('OK')",
        )
        .args([r, dir.join("out/steps-v3").to_str().unwrap(), RUN_ID])
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("OK"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An interrupted run whose step parts are format 3 resumes: the finished
/// steps.parquet is format 4, its rows equal an uninterrupted run's (wall
/// time aside), every row has run id and seed, the old rows have no wall
/// time and the resumed ones do.
#[test]
fn resume_over_old_format_parts() {
    let dir = scratch("steps-format-resume");
    assert!(!train(&dir, Some(("ABCOND_CRASH_AT", "step:25"))));
    let rd = run(&dir);
    let parts: Vec<PathBuf> = std::fs::read_dir(rd.join("steps-parts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert!(!parts.is_empty());
    for p in &parts {
        rewrite_as_v3(p);
        assert_eq!(read_steps(p).unwrap().1["abcond.format"], STEPS_FORMAT_V3);
    }
    assert!(train(&dir, None));
    let (rows, meta) = read_steps(&rd.join("steps.parquet")).unwrap();
    assert_eq!(meta["abcond.format"], STEPS_FORMAT);
    let (old, _) = read_steps(&fixture()).unwrap();
    assert_eq!(as_v3(&rows), old);
    assert!(rows
        .iter()
        .all(|r| r.run_id.as_deref() == Some(RUN_ID) && r.seed == Some(3)));
    let resumed: Vec<bool> = rows.iter().map(|r| r.wall_time_s.0.is_some()).collect();
    let first = resumed
        .iter()
        .position(|&b| b)
        .expect("resumed rows have wall time");
    assert!(first > 0 && first <= 25, "{resumed:?}");
    assert!(resumed[first..].iter().all(|&b| b), "{resumed:?}");
}
