//! `--repair`: rebuilds what a run lost before its last checkpoint (or, for a
//! completed run, anywhere) by retraining deterministically from step 0 only
//! as far as the last lost item, checking every surviving record on the way.
//!
//! What a run records up to its end E (the checkpoint step `steps_done`, or
//! K once completed): the step rows 0..E, the snapshots of the schedule up to
//! E, and (unless completed) the resume checkpoint at E. The only states
//! training can start from are step 0 (the seed) and that checkpoint, so a
//! lost row j, snapshot x^s or checkpoint is re-created by retraining from
//! step 0 to step j + 1, s or E, whichever is last; the rest of the run then
//! resumes from the checkpoint as usual. On the way, every surviving row is
//! compared bit for bit with the retrained one and every surviving snapshot
//! with the retrained iterate: a difference means the run was trained by
//! another build or device (or a file was edited consistently with its
//! checksum), and the repair stops naming the step, having written nothing
//! over what survived.

use super::checkpoint::checkpoint_contents;
use super::output;
use super::setup::{write_data_table, Setup};
use super::step;
use crate::config::Config;
use crate::optim::Optimizer;
use crate::run::{Manifest, RunDir, Status};
use crate::store::atomic::Durability;
use crate::store::tables::{self, StepRow};
use crate::store::tensors::{self, TensorReader, DEFAULT_CHUNK};
use crate::util::progress::{note, Progress};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use tch::Device;

/// What a run has lost, found by [`survey`].
#[derive(Debug, Default)]
pub struct Losses {
    /// The end E of what the run records.
    pub end: u64,
    /// Surviving step rows of 0..E, by step.
    pub rows: BTreeMap<i64, StepRow>,
    /// Step files that are unreadable (their rows count as lost).
    pub bad_step_files: Vec<PathBuf>,
    /// Snapshot steps (≤ E) whose file is missing or fails its checks.
    pub snapshots: BTreeSet<u64>,
    /// Snapshot steps (≤ E) whose file checks out.
    pub good_snapshots: BTreeSet<u64>,
    /// The resume checkpoint at E is missing or fails its checks.
    pub checkpoint: bool,
    /// data.parquet is missing or fails its checksum.
    pub data_table: bool,
}

impl Losses {
    /// The lost step rows of 0..E.
    pub fn missing_rows(&self) -> Vec<u64> {
        (0..self.end)
            .filter(|&k| !self.rows.contains_key(&(k as i64)))
            .collect()
    }

    /// Whether nothing is lost.
    pub fn none(&self) -> bool {
        self.missing_rows().is_empty()
            && self.bad_step_files.is_empty()
            && self.snapshots.is_empty()
            && !self.checkpoint
            && !self.data_table
    }

    /// What is lost, in words: "step rows 3..=9, snapshot x^100, the checkpoint".
    pub fn describe(&self) -> String {
        let mut parts = vec![];
        let rows = self.missing_rows();
        if let (Some(a), Some(b)) = (rows.first(), rows.last()) {
            parts.push(if rows.len() == 1 {
                format!("the step row of step {a}")
            } else if (b - a + 1) as usize == rows.len() {
                format!("the step rows of steps {a}..={b}")
            } else {
                format!("{} step rows (steps {a}..={b})", rows.len())
            });
        }
        for p in &self.bad_step_files {
            parts.push(format!("{} (unreadable)", p.display()));
        }
        if !self.snapshots.is_empty() {
            let names: Vec<String> = self.snapshots.iter().map(|k| format!("x^{k}")).collect();
            parts.push(format!("snapshot {}", names.join(", ")));
        }
        if self.checkpoint {
            parts.push(format!("the resume checkpoint of step {}", self.end));
        }
        if self.data_table {
            parts.push("data.parquet".into());
        }
        parts.join(", ")
    }

    /// The step retraining must reach: x^T is the last state needed.
    pub fn target(&self) -> u64 {
        let rows = self.missing_rows().last().map_or(0, |j| j + 1);
        let snaps = self.snapshots.last().copied().unwrap_or(0);
        let ck = if self.checkpoint { self.end } else { 0 };
        rows.max(snaps).max(ck)
    }
}

/// Finds what run `dir` (status `status`, `end` steps recorded) has lost,
/// reading every value of every file it checks once.
pub fn survey(dir: &RunDir, m: &Manifest, schedule: &BTreeSet<u64>) -> Losses {
    let end = if m.status == Status::Completed {
        m.training.total_steps
    } else {
        m.training.steps_done
    };
    let mut l = Losses {
        end,
        ..Losses::default()
    };
    let mut step_files = vec![];
    if dir.steps().is_file() {
        step_files.push(dir.steps());
    }
    if let Ok(rd) = std::fs::read_dir(dir.steps_parts()) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            // Parts from after the checkpoint are rolled back anyway.
            if output::part_first_step(&name).is_some_and(|s| s < end) {
                step_files.push(e.path());
            }
        }
    }
    step_files.sort();
    for p in step_files {
        match tables::read_steps(&p) {
            Ok((rows, _)) => {
                for r in rows {
                    if r.step >= 0 && (r.step as u64) < end {
                        l.rows.insert(r.step, r);
                    }
                }
            }
            Err(_) => l.bad_step_files.push(p),
        }
    }
    for &k in schedule.range(..=end) {
        let ok = TensorReader::open(&dir.snapshot(k)).and_then(|r| {
            r.check_identity("iterate", &m.run_id, Some(k))?;
            r.for_each_chunk(|_| true, |_, _, _| Ok(()))
        });
        if ok.is_ok() {
            l.good_snapshots.insert(k);
        } else {
            l.snapshots.insert(k);
        }
    }
    if m.status != Status::Completed && end > 0 {
        let ok = TensorReader::open(&dir.checkpoint()).and_then(|r| {
            r.check_identity("checkpoint", &m.run_id, Some(end))?;
            r.for_each_chunk(|_| true, |_, _, _| Ok(()))
        });
        l.checkpoint = ok.is_err();
    }
    // The vocabulary of a `text` data set is written with data.parquet.
    let vocab_lost = matches!(m.config.data.kind(), crate::config::DatasetKind::Text)
        && crate::store::checksum::verify_parquet_file(&dir.vocab()).is_err();
    l.data_table =
        vocab_lost || crate::store::checksum::verify_parquet_file(&dir.data_table()).is_err();
    l
}

/// Whether two step rows are the same bit for bit.
fn same_row(a: &StepRow, b: &StepRow) -> bool {
    a.step == b.step
        && a.epoch == b.epoch
        && a.lr.to_bits() == b.lr.to_bits()
        && a.step_size.map(f64::to_bits) == b.step_size.map(f64::to_bits)
        && a.loss.to_bits() == b.loss.to_bits()
        && a.grad_norm.to_bits() == b.grad_norm.to_bits()
        && (a.batch_indices.is_none()
            || b.batch_indices.is_none()
            || a.batch_indices == b.batch_indices)
}

/// The advice when a surviving record disagrees with the retrained one.
const NOT_DETERMINISTIC: &str = "the run cannot be repaired by this build on this device (it was trained by another build or device, or the file was edited); retrain it with --restart-from-scratch";

/// Repairs run `dir` with a fresh model and optimiser from `setup` (the model
/// is left at an intermediate iterate: the caller resumes from the
/// checkpoint, which overwrites it). Returns whether anything was repaired.
pub fn repair(
    dir: &RunDir,
    cfg: &Config,
    setup: &mut Setup,
    manifest: &Manifest,
    quiet: bool,
) -> Result<bool> {
    let l = survey(dir, manifest, &setup.snapshots);
    let root = dir.root.display();
    if l.none() {
        note(
            quiet,
            &format!(
                "--repair: {root}: every record up to step {} checks out; nothing to repair",
                l.end
            ),
        );
        return Ok(false);
    }
    let missing_rows = l.missing_rows();
    let target = l.target();
    note(
        quiet,
        &format!(
            "--repair: {root}: lost {}; retraining steps 0..{target} to re-create it",
            l.describe()
        ),
    );
    if l.data_table {
        write_data_table(dir, &setup.data)?;
    }
    let model_dtype = setup.model.dtype;
    let mut opt = Optimizer::new(&cfg.optim, setup.model.params());
    let mut rows = l.rows.clone();
    let (mut matched_rows, mut matched_snaps) = (0usize, 0usize);
    let mut progress = Progress::new("repair", target, quiet);
    for k in 0..=target {
        if setup.snapshots.contains(&k) && k <= l.end {
            let path = dir.snapshot(k);
            if l.snapshots.contains(&k) {
                let meta = output::iterate_meta(manifest, k, "iterate");
                let contents = setup.model.tensors();
                std::fs::create_dir_all(dir.snapshot_dir(k))?;
                tensors::write_timed(
                    &path,
                    &contents,
                    model_dtype,
                    &meta,
                    DEFAULT_CHUNK,
                    Durability::Durable,
                )
                .with_context(|| format!("--repair: writing {}", path.display()))?;
            } else {
                let stored = tensors::read(&path, Device::Cpu)?;
                for t in setup.model.tensors() {
                    let same = stored.get(&t.name).is_some_and(|s| {
                        s.tensor.size() == t.tensor.size()
                            && s.tensor.equal(&t.tensor.to_device(Device::Cpu))
                    });
                    if !same {
                        bail!(
                            "--repair: {}: tensor `{}` of the surviving snapshot x^{k} differs from the retrained iterate; {NOT_DETERMINISTIC}",
                            path.display(),
                            t.name
                        );
                    }
                }
                matched_snaps += 1;
            }
        }
        if k == l.end && l.checkpoint {
            let is_snapshot = setup.snapshots.contains(&k);
            let (contents, meta) =
                checkpoint_contents(&setup.model, &opt, manifest, k, is_snapshot);
            std::fs::create_dir_all(dir.state_dir())?;
            tensors::write_timed(
                &dir.checkpoint(),
                &contents,
                model_dtype,
                &meta,
                DEFAULT_CHUNK,
                Durability::Durable,
            )
            .with_context(|| format!("--repair: writing {}", dir.checkpoint().display()))?;
        }
        if k == target {
            break;
        }
        let u = step::update(cfg, setup, &mut opt, k)?;
        // A re-created row's wall time is lost (null).
        let row = u.row(
            k,
            setup.sampler.epoch_of(k),
            setup.snapshots.contains(&k),
            manifest,
            None,
        );
        match rows.get(&(k as i64)) {
            Some(old) if !same_row(old, &row) => bail!(
                "--repair: {root}: the recorded row of step {k} (loss {:e}, gradient norm {:e}) differs from the retrained one (loss {:e}, gradient norm {:e}); {NOT_DETERMINISTIC}",
                old.loss,
                old.grad_norm,
                row.loss,
                row.grad_norm
            ),
            Some(_) => matched_rows += 1,
            None => {
                if !u.finite {
                    bail!("--repair: {root}: step {k} diverged when retrained (loss {}), though the run went past it; {NOT_DETERMINISTIC}", u.loss);
                }
                if k < l.end {
                    rows.insert(k as i64, row);
                }
            }
        }
        progress.update(k + 1, || format!("loss {:.4}", u.loss));
    }
    progress.finish();
    // The step record, rebuilt whole: the rows 0..E in one file, written
    // durably before the files it replaces are removed.
    let mut all: Vec<StepRow> = rows.into_values().collect();
    // Rows of older formats get the run's id and seed.
    for r in &mut all {
        r.run_id.get_or_insert_with(|| manifest.run_id.clone());
        r.seed.get_or_insert(manifest.config.seed as i64);
    }
    debug_assert!(all.iter().enumerate().all(|(i, r)| r.step == i as i64));
    let meta = [("abcond.run_id", manifest.run_id.clone())];
    let record_changed = !missing_rows.is_empty() || !l.bad_step_files.is_empty();
    if record_changed {
        if manifest.status == Status::Completed {
            tables::write_steps(&dir.steps(), &all, &meta)?;
        } else if l.end > 0 {
            let whole = dir.steps_part(0, l.end - 1);
            std::fs::create_dir_all(dir.steps_parts())?;
            tables::write_steps(&whole, &all, &meta)?;
            crate::store::atomic::sync_under(&dir.root, std::slice::from_ref(&whole))?;
            let mut old: Vec<PathBuf> = std::fs::read_dir(dir.steps_parts())?
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p != &whole
                        && p.file_name()
                            .and_then(|n| output::part_first_step(&n.to_string_lossy()))
                            .is_some_and(|s| s < l.end)
                })
                .collect();
            if dir.steps().is_file() {
                old.push(dir.steps());
            }
            for p in old {
                std::fs::remove_file(&p).with_context(|| {
                    format!(
                        "--repair: removing {} (its rows are in {})",
                        p.display(),
                        whole.display()
                    )
                })?;
            }
        }
    }
    note(
        quiet,
        &format!(
            "--repair: {root}: re-created {}; {matched_rows} surviving step rows and {matched_snaps} surviving snapshots matched the retrained ones bit for bit",
            l.describe()
        ),
    );
    Ok(true)
}
