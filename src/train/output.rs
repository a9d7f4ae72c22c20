//! The files the step loop writes, through the background writer
//! (store/writer.rs, which writes them in the order they are queued): the
//! iterate snapshots, the step rows (in `steps-parts/`, merged into
//! `steps.parquet` when training ends), the fsync batches that make snapshots
//! durable, and run.yaml. The checkpoint itself is queued by checkpoint.rs.

use crate::config::Dtype;
use crate::model::Model;
use crate::run::{Manifest, RunDir};
use crate::store::atomic::Durability;
use crate::store::tables::{self, StepRow};
use crate::store::tensors::{self, NamedTensor, DEFAULT_CHUNK};
use crate::store::writer::{self, Writer};
use anyhow::{bail, Result};
use std::path::PathBuf;

/// What the step loop has queued or holds back: the writer, the step rows
/// not yet queued, and the snapshots queued since the last checkpoint, not
/// yet fsync'd.
pub struct Output<'a> {
    pub dir: &'a RunDir,
    pub writer: Writer,
    pub rows: Vec<StepRow>,
    unsynced: Vec<PathBuf>,
}

impl<'a> Output<'a> {
    /// The queue holds about one snapshot step's files.
    pub fn new(dir: &'a RunDir) -> Output<'a> {
        Output {
            dir,
            writer: Writer::new(4),
            rows: Vec::new(),
            unsynced: Vec::new(),
        }
    }

    /// Queues the iterate x^k of `model` as `iterates/step=<k>/part-0.parquet`,
    /// written atomically but not yet synced: [`Output::sync_snapshots`] makes
    /// it durable before the next checkpoint and before the run ends
    /// (completed or diverged). Until then a crash can only lose snapshots
    /// after the last checkpoint, which a resume removes and recomputes anyway.
    pub fn snapshot(&mut self, model: &Model, m: &Manifest, k: u64) -> Result<()> {
        let meta = iterate_meta(m, k, "iterate");
        let path = self.dir.snapshot(k);
        self.unsynced.push(path.clone());
        let tensors = model.tensors();
        self.tensors(path, tensors, model.dtype, meta, Durability::Cache)
    }

    /// Queues the optimiser state before update k, kept beside snapshot x^k
    /// (`snapshots.optimizer_state`; a restart point of the replay probe).
    pub fn optimizer_state(
        &mut self,
        model: &Model,
        opt: &crate::optim::Optimizer,
        m: &Manifest,
        k: u64,
    ) -> Result<()> {
        let mut meta = iterate_meta(m, k, "optimizer-state");
        meta.extend(super::checkpoint::optimizer_meta(opt));
        let path = self.dir.snapshot_optim(k);
        self.unsynced.push(path.clone());
        self.tensors(
            path,
            opt.state_tensors(),
            model.dtype,
            meta,
            Durability::Cache,
        )
    }

    /// Queues the fsync of the snapshots not yet synced (and of the
    /// directories leading to them), in one batch.
    pub fn sync_snapshots(&mut self) -> Result<()> {
        if self.unsynced.is_empty() {
            return Ok(());
        }
        let (root, files) = (self.dir.root.clone(), std::mem::take(&mut self.unsynced));
        self.writer
            .submit(move || crate::store::atomic::sync_under(&root, &files))
    }

    /// Queues the rows not yet on disk as a steps part.
    pub fn flush_steps(&mut self, m: &Manifest) -> Result<()> {
        if let (Some(first), Some(last)) = (self.rows.first(), self.rows.last()) {
            let path = self.dir.steps_part(first.step as u64, last.step as u64);
            let rows = std::mem::take(&mut self.rows);
            let meta = [("abcond.run_id", m.run_id.clone())];
            self.writer
                .submit(move || tables::write_steps(&path, &rows, &meta))?;
        }
        Ok(())
    }

    /// Queues run.yaml as `m` is now.
    pub fn manifest(&mut self, m: &Manifest) -> Result<()> {
        let (path, text) = (self.dir.manifest(), crate::run::manifest_text(m)?);
        self.writer
            .submit(move || crate::store::atomic::write_bytes(&path, text.as_bytes()))
    }

    /// Queues the writing of `contents` (copied now: training goes on changing
    /// the originals) as the tensor file `path`.
    pub fn tensors(
        &mut self,
        path: PathBuf,
        contents: Vec<NamedTensor>,
        dtype: Dtype,
        meta: Vec<(&'static str, String)>,
        durability: Durability,
    ) -> Result<()> {
        let contents = writer::cpu_copies(contents);
        self.writer.submit(move || {
            tensors::write_timed(&path, &contents, dtype, &meta, DEFAULT_CHUNK, durability)?;
            Ok(())
        })
    }
}

/// The metadata of an iterate or checkpoint file of step `step`.
pub fn iterate_meta(m: &Manifest, step: u64, content: &str) -> Vec<(&'static str, String)> {
    vec![
        ("abcond.content", content.to_string()),
        ("abcond.experiment", m.experiment.clone()),
        ("abcond.run_id", m.run_id.clone()),
        ("abcond.step", step.to_string()),
    ]
}

/// Parses the first step of a steps part file name.
pub fn part_first_step(name: &str) -> Option<u64> {
    name.strip_prefix("steps-")?.split('-').next()?.parse().ok()
}

/// The step rows of steps.parquet and the steps parts, by step (a part's row
/// wins over an older one of the same step).
fn recorded_steps(dir: &RunDir) -> Result<std::collections::BTreeMap<i64, StepRow>> {
    let mut parts: Vec<_> = match std::fs::read_dir(dir.steps_parts()) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                part_first_step(&name).map(|s| (s, e.path()))
            })
            .collect(),
        Err(_) => vec![],
    };
    parts.sort();
    let mut by_step = std::collections::BTreeMap::new();
    if dir.steps().is_file() {
        for r in tables::read_steps(&dir.steps())?.0 {
            by_step.insert(r.step, r);
        }
    }
    for (_, p) in &parts {
        for r in tables::read_steps(p)?.0 {
            by_step.insert(r.step, r);
        }
    }
    Ok(by_step)
}

/// The training wall time (`wall_time_s`) of the last step before `start`,
/// from the recorded rows; None when that row has none (an older format, or
/// re-created by --repair).
pub fn wall_time_before(dir: &RunDir, start: u64) -> Result<Option<f64>> {
    Ok(recorded_steps(dir)?
        .get(&(start as i64 - 1))
        .and_then(|r| r.wall_time_s.0))
}

/// Writes `steps.parquet` from the rows already in it and the steps parts
/// (a part's row wins over an older one of the same step), checking that the
/// steps are exactly 0..n; returns n. Rows of older formats get the run's
/// id and seed. The parts are left in place: they are removed only once the
/// manifest records the outcome.
pub fn consolidate_steps(dir: &RunDir, m: &Manifest) -> Result<usize> {
    let mut rows: Vec<StepRow> = recorded_steps(dir)?.into_values().collect();
    for r in &mut rows {
        r.run_id.get_or_insert_with(|| m.run_id.clone());
        r.seed.get_or_insert(m.config.seed as i64);
    }
    for (i, r) in rows.iter().enumerate() {
        if r.step != i as i64 {
            bail!(
                "the step rows in {} and {} are not contiguous: row {i} is step {}",
                dir.steps().display(),
                dir.steps_parts().display(),
                r.step
            );
        }
    }
    tables::write_steps(&dir.steps(), &rows, &[("abcond.run_id", m.run_id.clone())])?;
    Ok(rows.len())
}
