//! `abcond probe RUN_DIR --replay`: the `train` row at every step, from x^k
//! re-created by re-running training between the stored iterates.
//!
//! - at the snapshot steps the replayed rows equal the snapshot probe's, bit
//!   for bit, and the row taken from the training step's own pass equals the
//!   one measured separately at every step;
//! - stateful optimisers: one segment from step 0, or one per snapshot with
//!   `snapshots.optimizer_state`; BatchNorm (running statistics), crop-flip
//!   augmentation and bf16 autocast replay too;
//! - sharded replay gathered = unsharded replay, bit for bit;
//! - a nudged update (another build's arithmetic) or a corrupted snapshot
//!   stops the segment, naming the step, and writes none of its rows;
//! - a replay killed between segments resumes with the segments left.

mod common;
use abcond::store::label::{ProbeLabel, RowSource};
use abcond::store::tables::{read_landscape, read_steps, LandscapeRow};
use common::*;
use std::path::{Path, PathBuf};

fn config(data: &Path, extra: &str) -> String {
    format!(
        "experiment: replay
seed: 2
device: cpu
model: {{preset: mlp, width: 16}}
data: {{dataset: fashion-mnist, path: {}, subset: 400}}
train: {{batch_size: 16, steps: 120}}
optim: {{name: sgd, lr: 0.05}}
snapshots: {{every: 30}}
probe: {{extra_batches: 1, full: true, full_subset: 200}}
analysis: {{plots: false}}
{extra}",
        data.display()
    )
}

/// A trained run of `text` in `dir/out`.
fn trained(dir: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    write_idx_fixture(&dir.join("fm"), 400);
    let cfg = write_config(
        dir,
        "c.yaml",
        &text.replace("FM", dir.join("fm").to_str().unwrap()),
    );
    ok(&abcond(
        dir,
        &["-q", "--out", "out", "train", cfg.to_str().unwrap()],
    ));
    run_dir(&dir.join("out"), "replay")
}

fn landscape(run: &Path) -> Vec<LandscapeRow> {
    read_landscape(&run.join("landscape.parquet")).unwrap().0
}

/// A row as comparable text, every float by its bits.
fn bits(r: &LandscapeRow) -> String {
    let f: Vec<u64> = [r.loss_k, r.loss_ref, r.inner, r.grad_norm, r.dist, r.cos]
        .iter()
        .map(|v| v.to_bits())
        .collect();
    format!(
        "{} {} {} {} {:?} {:?}",
        r.step, r.probe, r.batch_size, r.ref_step, r.batch_indices, f
    )
}

/// The rows of every replay part, by step.
fn part_rows(run: &Path) -> Vec<LandscapeRow> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(run.join("replay-parts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names
        .iter()
        .flat_map(|p| read_landscape(p).unwrap().0)
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else if e.file_name() != ".lock" {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}

/// `abcond probe RUN args…`: its stdout and stderr (the notes).
fn probe(dir: &Path, run: &Path, args: &[&str]) -> String {
    let mut a = vec!["probe", run.to_str().unwrap()];
    a.extend(args);
    let out = abcond(dir, &a);
    format!("{}{}", ok(&out), stderr(&out))
}

#[test]
fn every_step_gets_a_row_equal_to_the_snapshot_probe_at_snapshots() {
    let dir = scratch("replay-rows");
    let run = trained(&dir, &config(Path::new("FM"), ""));
    // The snapshot probe alone, for reference.
    probe(&dir, &run, &[]);
    let snap = landscape(&run);
    assert!(snap.iter().all(|r| r.source == RowSource::Snapshot));
    let log = probe(&dir, &run, &["--replay"]);
    assert!(log.contains("landscape.parquet: 128 rows"), "{log}");
    let rows = landscape(&run);
    let (_, meta) = read_landscape(&run.join("landscape.parquet")).unwrap();
    assert_eq!(meta["abcond.format"], "abcond.landscape/3");
    assert_eq!(meta["abcond.replay_segments"], "4");
    assert_eq!(meta["abcond.replay_steps_compared"], "4");
    // One train row per step 0..K, replayed except at the snapshots.
    let train: Vec<&LandscapeRow> = rows
        .iter()
        .filter(|r| r.probe == ProbeLabel::Train)
        .collect();
    assert_eq!(train.len(), 120);
    for (k, r) in train.iter().enumerate() {
        assert_eq!(r.step, k as i64);
        let want = if k % 30 == 0 {
            RowSource::Snapshot
        } else {
            RowSource::Replay
        };
        assert_eq!(r.source, want, "step {k}");
        assert!(r.loss_k.is_finite() && r.dist > 0.0 && r.cos.abs() <= 1.0);
    }
    // The snapshot rows are kept as they were.
    let kept: Vec<String> = rows
        .iter()
        .filter(|r| r.source == RowSource::Snapshot)
        .map(bits)
        .collect();
    assert_eq!(kept, snap.iter().map(bits).collect::<Vec<_>>());
    // The replay measured the snapshot steps too: bit for bit the snapshot
    // probe's train rows, compared here independently of the gather's check.
    let parts = part_rows(&run);
    assert_eq!(parts.len(), 120);
    for s in snap.iter().filter(|r| r.probe == ProbeLabel::Train) {
        let p = parts.iter().find(|p| p.step == s.step).unwrap();
        assert_eq!(bits(p), bits(s), "step {}", s.step);
    }
    // The minibatches are the ones training recorded at the snapshot steps.
    let steps = read_steps(&run.join("steps.parquet")).unwrap().0;
    for k in [0usize, 30, 60, 90] {
        assert_eq!(parts[k].batch_indices, steps[k].batch_indices);
    }
    // run.yaml says what the replay did.
    let yaml = std::fs::read_to_string(run.join("run.yaml")).unwrap();
    for want in [
        "replay:",
        "segments: 4",
        "rows: 116",
        "steps_compared: 4",
        "shared_pass: true",
    ] {
        assert!(yaml.contains(want), "{want} in {yaml}");
    }
    let inspect = ok(&abcond(&dir, &["inspect", run.to_str().unwrap()]));
    assert!(
        inspect.contains("replay: the train row of every step, 116 replayed rows (4 segments; 4 snapshot steps compared bit for bit)"),
        "{inspect}"
    );
    // A second --replay finds every segment done and only gathers.
    let again = probe(&dir, &run, &["--replay"]);
    assert!(!again.contains("replaying"), "{again}");
    assert_eq!(
        landscape(&run).iter().map(bits).collect::<Vec<_>>(),
        rows.iter().map(bits).collect::<Vec<_>>()
    );
    // The analysis takes the replay rows as constraint rows: 116 replayed
    // train rows + the snapshots' 4 train and 4 extra rows.
    let out = ok(&abcond(&dir, &["analyze", run.to_str().unwrap()]));
    assert!(out.contains("1 run(s), 124 minibatch rows"), "{out}");
}

/// The row taken from the training step's own forward and backward pass is
/// the row the probe measures separately, bit for bit, at every step.
#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs the replay hooks (feature test-hooks)"
)]
fn the_shared_pass_equals_the_separate_measurement_at_every_step() {
    let dir = scratch("replay-shared");
    let run = trained(&dir, &config(Path::new("FM"), ""));
    let copy = dir.join("copy");
    copy_dir(&run, &copy);
    let shared = probe(
        &dir,
        &run,
        &["--replay", "--set", "probe.replay_extra_every=40"],
    );
    assert!(shared.contains("reusing each training step"), "{shared}");
    let out = cmd(&dir)
        .args([
            "--out",
            "out",
            "probe",
            copy.to_str().unwrap(),
            "--replay",
            "--set",
            "probe.replay_extra_every=40",
        ])
        .env("ABCOND_REPLAY_SEPARATE", "1")
        .output()
        .unwrap();
    let separate = format!("{}{}", ok(&out), stderr(&out));
    assert!(separate.contains("measured separately"), "{separate}");
    let a: Vec<String> = part_rows(&run).iter().map(bits).collect();
    let b: Vec<String> = part_rows(&copy).iter().map(bits).collect();
    assert_eq!(a.len(), 120 + 3);
    assert_eq!(a, b);
    // The extra minibatches every 40 steps (step 0 is a snapshot's).
    let rows = landscape(&run);
    let extra: Vec<(i64, RowSource)> = rows
        .iter()
        .filter(|r| r.probe == ProbeLabel::Extra(0))
        .map(|r| (r.step, r.source))
        .collect();
    assert_eq!(
        extra,
        [
            (0, RowSource::Snapshot),
            (30, RowSource::Snapshot),
            (40, RowSource::Replay),
            (60, RowSource::Snapshot),
            (80, RowSource::Replay),
            (90, RowSource::Snapshot)
        ]
    );
}

/// Where the shared pass's row differs from the separate measurement at a
/// stored iterate, the segment is replayed again with every row measured
/// separately: the rows are those of a separate replay, bit for bit.
#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs the replay hooks (feature test-hooks)"
)]
fn a_shared_pass_that_differs_falls_back_to_separate_measurement() {
    let dir = scratch("replay-fallback");
    let run = trained(&dir, &config(Path::new("FM"), ""));
    let copy = dir.join("copy");
    copy_dir(&run, &copy);
    let out = cmd(&dir)
        .args(["probe", run.to_str().unwrap(), "--replay"])
        .env("ABCOND_REPLAY_SKEW", "1")
        .output()
        .unwrap();
    let log = format!("{}{}", ok(&out), stderr(&out));
    assert!(
        log.contains("differs from the probe's own measurement")
            && log.contains("replaying steps 0..30 again with every row measured separately"),
        "{log}"
    );
    let out = cmd(&dir)
        .args(["probe", copy.to_str().unwrap(), "--replay"])
        .env("ABCOND_REPLAY_SEPARATE", "1")
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(
        part_rows(&run).iter().map(bits).collect::<Vec<_>>(),
        part_rows(&copy).iter().map(bits).collect::<Vec<_>>()
    );
    let yaml = std::fs::read_to_string(run.join("run.yaml")).unwrap();
    assert!(yaml.contains("shared_pass: false"), "{yaml}");
}

/// Stateful optimisers, BatchNorm with augmentation, autocast: the replay
/// re-creates every stored iterate bit for bit. Momentum without stored
/// state is one segment from step 0; with `snapshots.optimizer_state` one per
/// snapshot; sharded replay gathered = unsharded replay.
#[test]
fn stateful_batchnorm_autocast_and_shards() {
    let dir = scratch("replay-stateful");
    let momentum = trained(
        &dir.join("momentum"),
        &config(Path::new("FM"), "").replace("lr: 0.05}", "lr: 0.05, momentum: 0.9}"),
    );
    let log = probe(&dir.join("momentum"), &momentum, &["--replay"]);
    assert!(log.contains("replaying 1 segments (120 steps)"), "{log}");

    let adam = config(Path::new("FM"), "")
        .replace("{name: sgd, lr: 0.05}", "{name: adam, lr: 0.002}")
        .replace("{every: 30}", "{every: 20, optimizer_state: true}");
    let run = trained(&dir.join("adam"), &adam);
    assert!(run.join("iterates/step=20/optim.parquet").is_file());
    let copy = dir.join("adam/copy");
    copy_dir(&run, &copy);
    let whole = probe(&dir.join("adam"), &run, &["--replay"]);
    assert!(whole.contains("replaying 6 segments"), "{whole}");
    // Three shards at once, then the gather.
    let children: Vec<_> = (0..3)
        .map(|i| {
            cmd(&dir)
                .args([
                    "-q",
                    "probe",
                    copy.to_str().unwrap(),
                    "--replay",
                    "--shard",
                    &format!("{i}/3"),
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        ok(&c.wait_with_output().unwrap());
    }
    assert!(!copy.join("landscape.parquet").is_file());
    let gather = probe(&dir, &copy, &["--replay"]);
    assert!(!gather.contains("replaying"), "{gather}");
    assert_eq!(
        landscape(&run).iter().map(bits).collect::<Vec<_>>(),
        landscape(&copy).iter().map(bits).collect::<Vec<_>>()
    );

    // ResNet9 with BatchNorm, crop-flip augmentation and momentum state.
    let vision = dir.join("vision");
    std::fs::create_dir_all(&vision).unwrap();
    write_cifar_fixture(
        &vision.join("c100"),
        abcond::config::DatasetKind::Cifar100,
        32,
    );
    let text = format!(
        "experiment: replay
seed: 3
device: cpu
model: {{preset: resnet9}}
data: {{dataset: cifar100, path: {}, augment: crop-flip}}
train: {{batch_size: 4, steps: 9}}
optim: {{name: sgd, lr: 0.01, momentum: 0.9}}
snapshots: {{every: 3, optimizer_state: true}}
probe: {{extra_batches: 0, full: false}}
",
        vision.join("c100").display()
    );
    let cfg = write_config(&vision, "c.yaml", &text);
    ok(&abcond(
        &vision,
        &["-q", "--out", "out", "train", cfg.to_str().unwrap()],
    ));
    let r = run_dir(&vision.join("out"), "replay");
    // Batch statistics: the training pass is the measurement (BatchNorm on
    // batch statistics either way), checked at every stored iterate.
    let log = probe(&vision, &r, &["--replay"]);
    assert!(
        log.contains("replaying 3 segments") && log.contains("reusing each training step"),
        "{log}"
    );
    // Running statistics: every row measured separately.
    let log = probe(
        &vision,
        &r,
        &["--replay", "--set", "probe.batchnorm=running-stats"],
    );
    assert!(
        log.contains("replaying 3 segments") && log.contains("measured separately"),
        "{log}"
    );
    assert_eq!(
        landscape(&r)
            .iter()
            .filter(|r| r.probe == ProbeLabel::Train)
            .count(),
        9
    );

    // bf16 autocast training: the rows are measured without autocast.
    let auto = trained(
        &dir.join("autocast"),
        &config(Path::new("FM"), "").replace("steps: 120}", "steps: 120, autocast: bf16}"),
    );
    let log = probe(&dir.join("autocast"), &auto, &["--replay"]);
    assert!(log.contains("measured separately"), "{log}");
}

/// A nudged update (what another build's arithmetic does) stops the replay at
/// the step it changed, with no rows of that segment written; so does a
/// corrupted stored iterate.
#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs the replay hooks (feature test-hooks)"
)]
fn broken_determinism_is_named_and_writes_nothing() {
    let dir = scratch("replay-broken");
    let run = trained(&dir, &config(Path::new("FM"), ""));
    let out = cmd(&dir)
        .args(["probe", run.to_str().unwrap(), "--replay"])
        .env("ABCOND_REPLAY_PERTURB", "44")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("determinism broke at step 45 (steps 30..60)")
            && err.contains("no rows of this segment are written")
            && err.contains("trained by abcond"),
        "{err}"
    );
    let parts: Vec<String> = std::fs::read_dir(run.join("replay-parts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(parts, ["steps-0000000000-0000000030.parquet"]);
    assert!(!run.join("landscape.parquet").is_file());

    // The last update of a segment nudged: x^60 differs from its snapshot.
    let out = cmd(&dir)
        .args(["probe", run.to_str().unwrap(), "--replay"])
        .env("ABCOND_REPLAY_PERTURB", "59")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(
        err.contains("determinism broke before step 60") && err.contains("iterates/step=60"),
        "{err}"
    );

    // A stored iterate with a flipped byte: refused by its checksum, named.
    let snap = run.join("iterates/step=90/part-0.parquet");
    let mut bytes = std::fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&snap, bytes).unwrap();
    let out = abcond(
        &dir,
        &[
            "probe",
            run.to_str().unwrap(),
            "--replay",
            "--set",
            "probe.steps=[0,30,60]",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("step=90") && err.contains("replaying steps"),
        "{err}"
    );
}

/// A replay killed after two segments resumes with the two left and gathers
/// the same landscape.parquet as an uninterrupted replay.
#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs the replay hooks (feature test-hooks)"
)]
fn a_killed_replay_resumes_with_the_segments_left() {
    let dir = scratch("replay-kill");
    let run = trained(&dir, &config(Path::new("FM"), ""));
    let copy = dir.join("copy");
    copy_dir(&run, &copy);
    probe(&dir, &run, &["--replay"]);
    let status = cmd(&dir)
        .args(["-q", "probe", copy.to_str().unwrap(), "--replay"])
        .env("ABCOND_REPLAY_ABORT_AFTER", "2")
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the abort hook did not fire");
    assert_eq!(
        std::fs::read_dir(copy.join("replay-parts"))
            .unwrap()
            .count(),
        2
    );
    let log = probe(&dir, &copy, &["--replay"]);
    assert!(log.contains("replaying 2 segments (60 steps)"), "{log}");
    assert_eq!(
        landscape(&run).iter().map(bits).collect::<Vec<_>>(),
        landscape(&copy).iter().map(bits).collect::<Vec<_>>()
    );
}

/// Every optimiser, each with a schedule, replays bit for bit: stateful ones
/// from the optimiser state kept with each snapshot (one segment per
/// snapshot), the stateless ones from the snapshots alone.
#[test]
fn every_optimiser_and_schedule_replays() {
    let dir = scratch("replay-optimisers");
    let cases = [
        (
            "{name: sgd, lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 0.001}",
            "{name: cosine}",
        ),
        ("{name: adam, lr: 0.002}", "{name: one-cycle}"),
        (
            "{name: adamw, lr: 0.002, weight_decay: 0.01}",
            "{name: warmup-cosine, warmup_steps: 10}",
        ),
        (
            "{name: nadam, lr: 0.002}",
            "{name: inverse-power, power: 0.5}",
        ),
        (
            "{name: nadamw, lr: 0.002, weight_decay: 0.01}",
            "{name: polynomial, power: 2.0}",
        ),
        ("{name: normalized-sgd, lr: 0.05}", "{name: constant}"),
        ("{name: sps-max, lr: 0.5}", "{name: constant}"),
        ("{name: decsps, lr: 0.5}", "{name: constant}"),
        ("{name: ngn, lr: 0.5}", "{name: constant}"),
        ("{name: adagrad-norm-max, lr: 0.5}", "{name: constant}"),
    ];
    for (i, (optim, schedule)) in cases.iter().enumerate() {
        let sub = dir.join(format!("o{i}"));
        let text = config(Path::new("FM"), &format!("schedule: {schedule}\n"))
            .replace("{name: sgd, lr: 0.05}", optim)
            .replace("steps: 120}", "steps: 60}")
            .replace("{every: 30}", "{every: 20, optimizer_state: true}");
        let run = trained(&sub, &text);
        let log = probe(&sub, &run, &["--replay"]);
        assert!(
            log.contains("replaying 3 segments (60 steps)"),
            "{optim}: {log}"
        );
        let rows = landscape(&run);
        assert_eq!(
            rows.iter().filter(|r| r.probe == ProbeLabel::Train).count(),
            60,
            "{optim}"
        );
    }
}

#[test]
fn bad_replay_settings_are_refused() {
    let dir = scratch("replay-bad");
    let run = trained(&dir, &config(Path::new("FM"), ""));
    let out = abcond(
        &dir,
        &[
            "probe",
            run.to_str().unwrap(),
            "--set",
            "probe.replay_extra_every=5",
        ],
    );
    assert!(
        stderr(&out).contains("set `probe.replay: true`"),
        "{}",
        stderr(&out)
    );
    let out = abcond(
        &dir,
        &[
            "probe",
            run.to_str().unwrap(),
            "--replay",
            "--set",
            "probe.replay_extra_every=0",
        ],
    );
    assert!(
        stderr(&out).contains("must be at least 1"),
        "{}",
        stderr(&out)
    );
}
