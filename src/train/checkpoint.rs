//! Resume checkpoints: when a step writes one ([`CheckpointPolicy`]), what it
//! writes ([`write_checkpoint`]), and how a session starts from it or afresh
//! ([`resume`], which rolls back what a crashed session wrote after it).
//!
//! A checkpoint `state/checkpoint.parquet` holds the optimiser state, plus the
//! iterate x^k unless a snapshot of step k holds it. With it the step rows so
//! far (as a steps part) and run.yaml (with `training.steps_done = k`) are
//! queued, after the fsync of every snapshot so far, which it relies on.

use super::output::{self, Output};
use super::setup::Setup;
use crate::config::TrainConfig;
use crate::model::Model;
use crate::optim::Optimizer;
use crate::run::{Manifest, RunDir};
use crate::store::atomic::Durability;
use crate::store::tables;
use crate::store::tensors;
use crate::util::progress::note;
use anyhow::{anyhow, bail, Context, Result};

/// When a step writes a resume checkpoint: every `train.checkpoint_every`
/// steps, when `train.checkpoint_minutes` passed since the last one, and at
/// snapshot steps once `train.checkpoint_min_seconds` passed since the last
/// one (so a fast loop with frequent snapshots writes one file per snapshot,
/// not four). Never at step 0, nor at the step a session resumed from.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointPolicy {
    every: Option<u64>,
    interval_seconds: f64,
    snapshot_min_seconds: f64,
}

impl CheckpointPolicy {
    pub fn new(train: &TrainConfig) -> CheckpointPolicy {
        CheckpointPolicy {
            every: train.checkpoint_every,
            interval_seconds: train.checkpoint_minutes * 60.0,
            snapshot_min_seconds: train.checkpoint_min_seconds,
        }
    }

    /// Whether step `k` writes a checkpoint, `since_last` seconds after the
    /// last one (or after the loop began); `resumed_here`: the session
    /// resumed from the checkpoint of step `k`.
    pub fn due(&self, k: u64, is_snapshot: bool, resumed_here: bool, since_last: f64) -> bool {
        let periodic =
            self.every.is_some_and(|n| k.is_multiple_of(n)) || since_last >= self.interval_seconds;
        let at_snapshot = is_snapshot && since_last >= self.snapshot_min_seconds;
        (at_snapshot || periodic) && !resumed_here && k > 0
    }
}

/// Queues the checkpoint of step `k` (x^k and the optimiser state before
/// update k) with the step rows so far and run.yaml.
pub fn write_checkpoint(
    out: &mut Output,
    model: &Model,
    opt: &Optimizer,
    manifest: &mut Manifest,
    k: u64,
    is_snapshot: bool,
) -> Result<()> {
    // The checkpoint relies on every snapshot so far: durable first.
    out.sync_snapshots()?;
    out.flush_steps(manifest)?;
    let (contents, meta) = checkpoint_contents(model, opt, manifest, k, is_snapshot);
    out.tensors(
        out.dir.checkpoint(),
        contents,
        model.dtype,
        meta,
        Durability::Durable,
    )?;
    manifest.training.steps_done = k;
    out.manifest(manifest)
}

/// What the checkpoint of step `k` holds: the optimiser state (before update
/// k), x^k unless the snapshot of step k holds it, and the metadata saying
/// which.
pub fn checkpoint_contents(
    model: &Model,
    opt: &Optimizer,
    manifest: &Manifest,
    k: u64,
    is_snapshot: bool,
) -> (Vec<tensors::NamedTensor>, Vec<(&'static str, String)>) {
    let mut contents = opt.state_tensors();
    if !is_snapshot {
        contents.extend(model.tensors());
    }
    let mut meta = output::iterate_meta(manifest, k, "checkpoint");
    meta.extend(optimizer_meta(opt));
    meta.push((
        "abcond.iterate",
        if is_snapshot { "snapshot" } else { "inline" }.into(),
    ));
    (contents, meta)
}

/// The metadata that stores an optimiser's state beside its tensors (a
/// resume checkpoint, or `optim.parquet` beside a snapshot): its update count
/// and the step-size methods' scalars.
pub fn optimizer_meta(opt: &Optimizer) -> Vec<(&'static str, String)> {
    let mut meta = vec![("abcond.optim_updates", opt.updates.to_string())];
    meta.extend(opt.scalar_state());
    meta
}

/// Restores `opt` from a file written with [`optimizer_meta`] and
/// [`Optimizer::state_tensors`].
pub fn load_optimizer(
    opt: &mut Optimizer,
    file: &tensors::TensorFile,
    path: &std::path::Path,
) -> Result<()> {
    let updates: u64 = file
        .meta
        .get("abcond.optim_updates")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            anyhow!(
                "{}: metadata abcond.optim_updates is missing",
                path.display()
            )
        })?;
    opt.load_state(file, updates, &path.display().to_string())
}

/// Loads the checkpoint into the model and the optimiser and removes what was
/// written after it, or, without a checkpoint, removes what a session that
/// crashed before its first one left behind; returns the step to start from.
pub fn resume(
    dir: &RunDir,
    setup: &Setup,
    opt: &mut Optimizer,
    manifest: &Manifest,
    quiet: bool,
) -> Result<u64> {
    let (model, total) = (&setup.model, setup.total_steps);
    let done = manifest.training.steps_done;
    if !dir.checkpoint().is_file()
        && done > 0
        && setup.recovery != super::Recovery::RestartFromScratch
    {
        bail!(
            "{} records {done} steps done at its last checkpoint, but the checkpoint {} is missing (deleted?). Run again with --repair to re-create it by retraining steps 0..{done} while checking the surviving records against the retrained ones, or with --restart-from-scratch to discard the snapshots and step records so far and retrain from step 0",
            dir.root.display(),
            dir.checkpoint().display()
        );
    }
    if !dir.checkpoint().is_file() || setup.recovery == super::Recovery::RestartFromScratch {
        // A fresh start: drop anything a session that crashed before its
        // first checkpoint left behind.
        for p in [dir.iterates(), dir.steps_parts(), dir.state_dir()] {
            if p.exists() {
                std::fs::remove_dir_all(&p)?;
            }
        }
        std::fs::remove_file(dir.steps()).ok();
        if dir.checkpoint().is_file() {
            std::fs::remove_file(dir.checkpoint())?;
        }
        crate::store::atomic::clean_temporaries(&dir.root)?;
        if done > 0 {
            note(
                quiet,
                &format!(
                    "restarting {} from step 0 (--restart-from-scratch; {done} steps were done)",
                    dir.root.display()
                ),
            );
        }
        return Ok(0);
    }
    let ck_path = dir.checkpoint();
    let ck = tensors::read(&ck_path, setup.device)
        .and_then(|ck| {
            tensors::check_identity(&ck, &ck_path, "checkpoint", &manifest.run_id, None)?;
            Ok(ck)
        })
        .with_context(|| "reading the resume checkpoint; run again with --repair to re-create it (retraining from step 0 to the checkpoint) or with --restart-from-scratch".to_string())?;
    let step: u64 = ck
        .meta
        .get("abcond.step")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("{}: metadata abcond.step is missing", ck_path.display()))?;
    if ck.meta.get("abcond.iterate").map(String::as_str) == Some("snapshot") {
        dir.load_iterate(model, &manifest.run_id, step)?;
    } else {
        model.load(&ck, &ck_path.display().to_string())?;
    }
    load_optimizer(opt, &ck, &ck_path)?;
    roll_back_to(dir, step)?;
    check_history(dir, setup, step)?;
    note(
        quiet,
        &format!(
            "resuming {} from step {step} of {total}",
            dir.root.display()
        ),
    );
    Ok(step)
}

/// Checks that what the run recorded before checkpoint step `c` is all
/// there: the step rows 0..c (steps.parquet and the steps parts) and every
/// snapshot of the schedule up to c, each a readable tensor file whose table
/// of contents and values match their checksums. Resuming without them would fail only at
/// the end of training, or leave a run with a hole that the probe finds later.
fn check_history(dir: &RunDir, setup: &Setup, c: u64) -> Result<()> {
    let advice = "run again with --repair to re-create what is lost (retraining from step 0 as far as needed; deterministic per seed on CPU), with --restart-from-scratch to retrain the whole run, or restore the file from a copy";
    let mut steps = std::collections::BTreeSet::new();
    if dir.steps().is_file() {
        for r in tables::read_steps(&dir.steps())
            .with_context(|| advice.to_string())?
            .0
        {
            steps.insert(r.step);
        }
    }
    if let Ok(rd) = std::fs::read_dir(dir.steps_parts()) {
        for e in rd.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().to_string();
            if output::part_first_step(&name).is_some() {
                for r in tables::read_steps(&e.path())
                    .with_context(|| advice.to_string())?
                    .0
                {
                    steps.insert(r.step);
                }
            }
        }
    }
    if let Some(k) = (0..c as i64).find(|k| !steps.contains(k)) {
        bail!(
            "{}: the step record of step {k} is missing (steps.parquet and {} hold steps up to the checkpoint at {c} only with gaps; a part file was deleted?); {advice}",
            dir.root.display(),
            dir.steps_parts().display()
        );
    }
    for &k in setup.snapshots.range(..=c) {
        let p = dir.snapshot(k);
        if !p.is_file() {
            bail!(
                "{}: snapshot x^{k} ({}) is missing, though the run wrote it before its checkpoint at step {c}; {advice}",
                dir.root.display(),
                p.display()
            );
        }
        // Every value against its checksum: a snapshot damaged before the
        // checkpoint is found now, not at probe time.
        tensors::TensorReader::open(&p)
            .and_then(|r| r.for_each_chunk(|_| true, |_, _, _| Ok(())))
            .with_context(|| advice.to_string())?;
    }
    Ok(())
}

/// Removes what a crashed session wrote after checkpoint step `c`.
fn roll_back_to(dir: &RunDir, c: u64) -> Result<()> {
    crate::store::atomic::clean_temporaries(&dir.root)?;
    for k in dir.snapshot_steps()? {
        if k > c {
            std::fs::remove_dir_all(dir.snapshot_dir(k))?;
        }
    }
    // Directories of snapshots whose file never got renamed into place.
    if let Ok(rd) = std::fs::read_dir(dir.iterates()) {
        for e in rd.filter_map(|e| e.ok()) {
            if !e.path().join("part-0.parquet").exists() {
                std::fs::remove_dir_all(e.path()).ok();
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(dir.steps_parts()) {
        for e in rd.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().to_string();
            if output::part_first_step(&name).is_none_or(|s| s >= c) {
                std::fs::remove_file(e.path())?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The steps of `start..total` that write a checkpoint when every step
    /// takes `dt` seconds and the snapshots are `snapshots`.
    fn checkpoints(
        policy: CheckpointPolicy,
        start: u64,
        total: u64,
        snapshots: &BTreeSet<u64>,
        dt: f64,
    ) -> Vec<u64> {
        let mut last = 0.0;
        let mut at = vec![];
        for k in start..total {
            let now = (k - start) as f64 * dt;
            if policy.due(
                k,
                snapshots.contains(&k),
                k == start && start > 0,
                now - last,
            ) {
                at.push(k);
                last = now;
            }
        }
        at
    }

    fn policy(every: Option<u64>, minutes: f64, min_seconds: f64) -> CheckpointPolicy {
        CheckpointPolicy {
            every,
            interval_seconds: minutes * 60.0,
            snapshot_min_seconds: min_seconds,
        }
    }

    fn every(n: u64, total: u64) -> BTreeSet<u64> {
        (0..=total).step_by(n as usize).collect()
    }

    #[test]
    fn every_n_steps_never_at_zero() {
        let p = policy(Some(100), 1e9, 10.0);
        // A fast loop: snapshots every 50 steps never reach the 10 s floor.
        assert_eq!(
            checkpoints(p, 0, 450, &every(50, 450), 1e-3),
            vec![100, 200, 300, 400]
        );
    }

    #[test]
    fn not_at_the_step_resumed_from() {
        let p = policy(Some(100), 1e9, 10.0);
        assert_eq!(
            checkpoints(p, 200, 450, &BTreeSet::new(), 1e-3),
            vec![300, 400]
        );
        assert_eq!(
            checkpoints(p, 150, 450, &BTreeSet::new(), 1e-3),
            vec![200, 300, 400]
        );
    }

    #[test]
    fn at_snapshot_steps_once_the_floor_passed() {
        // One second a step, a snapshot every 4 steps, a 10 s floor: the
        // first snapshot step 10 s after the last checkpoint.
        let p = policy(None, 1e9, 10.0);
        assert_eq!(
            checkpoints(p, 0, 50, &every(4, 50), 1.0),
            vec![12, 24, 36, 48]
        );
        // A floor of 0 s: every snapshot step but step 0.
        let p = policy(None, 1e9, 0.0);
        assert_eq!(
            checkpoints(p, 0, 20, &every(4, 20), 1e-3),
            vec![4, 8, 12, 16]
        );
    }

    #[test]
    fn every_few_minutes() {
        // One second a step, a checkpoint at least every minute; the snapshot
        // at step 100 comes 40 s after the checkpoint of step 60.
        let p = policy(None, 1.0, 30.0);
        let snapshots = BTreeSet::from([0, 100, 250]);
        assert_eq!(
            checkpoints(p, 0, 300, &snapshots, 1.0),
            vec![60, 100, 160, 220, 250]
        );
    }

    #[test]
    fn rules_combine() {
        // Every 40 steps, every half minute at 1 s a step, snapshots at 0 and
        // 50 with a 10 s floor.
        let p = policy(Some(40), 0.5, 10.0);
        let snapshots = BTreeSet::from([0, 50]);
        assert_eq!(
            checkpoints(p, 0, 100, &snapshots, 1.0),
            vec![30, 40, 50, 80]
        );
    }
}
