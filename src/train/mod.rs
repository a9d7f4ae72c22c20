//! Phase 1, train: runs the optimiser for K steps, records every step in
//! `steps.parquet` and writes the iterates x^k of the snapshot schedule (always
//! including x^K) under `iterates/`.
//!
//! Crash safety: every file is written atomically. At every resume checkpoint
//! the step rows so far and the checkpoint (optimiser state, plus the iterate
//! unless a snapshot of that step holds it) are written. Checkpoints are taken
//! every `train.checkpoint_every` steps, when `train.checkpoint_minutes` passed
//! since the last one, and at snapshot steps once `train.checkpoint_min_seconds`
//! passed since the last one (so a fast loop with frequent snapshots writes
//! one file per snapshot, not four). Running `abcond train` again on an
//! interrupted run restarts from the last checkpoint and, on CPU, reaches a
//! final iterate bit-identical to an uninterrupted run: the minibatch order is a
//! pure function of (seed, step), the optimiser state is stored exactly, and
//! libtorch's generator is reseeded from (seed, step) before every update.
//! On CUDA the session runs under the determinism policy of
//! src/torch/reproducibility.rs (recorded in its `sessions` entry); with
//! `train.autocast` each step's forward pass and loss run under bf16 autocast.

pub mod config;
use crate::config::Config;
use crate::data::sampler::Sampler;
use crate::data::Dataset;
use crate::model::{Mode, Model};
use crate::optim::{schedule, Optimizer};
use crate::run::{
    Manifest, Provenance, RunDir, Session, Status, TrainTiming, TrainingInfo, MANIFEST_FORMAT,
};
use crate::store::atomic::Durability;
use crate::store::tables::{self, StepRow};
use crate::store::tensors::{self, NamedTensor, DEFAULT_CHUNK};
use crate::store::writer::{self, Writer};
use crate::util::progress::{note, Progress};
use crate::util::rng::{self, stream};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Raised when the loss becomes NaN or infinite; the CLI exits with code 3.
#[derive(Debug)]
pub struct Diverged {
    pub message: String,
}

impl std::fmt::Display for Diverged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diverged {}

/// The steps whose iterate x^k is written: the union of the schedule's rules,
/// always with the final step K.
pub fn snapshot_steps(cfg: &crate::config::SnapshotConfig, total: u64) -> Result<BTreeSet<u64>> {
    let mut s = BTreeSet::new();
    if let Some(every) = cfg.every {
        s.extend((0..=total).step_by(every as usize));
    }
    if let Some(n) = cfg.log_spaced {
        s.insert(0);
        if n >= 2 && total >= 1 {
            let top = (total as f64).ln();
            for i in 0..n {
                let v = (top * i as f64 / (n - 1) as f64).exp().round() as u64;
                s.insert(v.clamp(1, total));
            }
        } else {
            s.insert(total);
        }
    }
    for &k in &cfg.at {
        if k > total {
            bail!("key `snapshots.at` lists step {k}, but training has only {total} steps");
        }
        s.insert(k);
    }
    s.insert(total);
    Ok(s)
}

/// Everything a training session needs, built from the config.
pub struct Setup {
    pub device: Device,
    pub data: Dataset,
    pub model: Model,
    pub sampler: Sampler,
    pub total_steps: u64,
    pub snapshots: BTreeSet<u64>,
}

impl Setup {
    pub fn new(cfg: &Config, device: Device) -> Result<Setup> {
        let data = Dataset::load(&cfg.data, cfg.model.dtype, device)?;
        let model = Model::build(&cfg.model, &data, device, cfg.seed)?;
        let sampler = Sampler::new(data.len, cfg.train.batch_size, cfg.seed)?;
        let total_steps = match (cfg.train.steps, cfg.train.epochs) {
            (Some(s), _) => s,
            (None, Some(e)) => e * sampler.steps_per_epoch(),
            (None, None) => unreachable!("resolved config has a length"),
        };
        schedule::validate(&cfg.schedule, total_steps)?;
        let snapshots = snapshot_steps(&cfg.snapshots, total_steps)?;
        Ok(Setup {
            device,
            data,
            model,
            sampler,
            total_steps,
            snapshots,
        })
    }
}

pub struct TrainOutcome {
    pub dir: RunDir,
}

/// ||∇f_{i_k}(x^k)|| over all parameters with a gradient, accumulated in f64.
pub fn grad_norm(model: &Model) -> f64 {
    let grads: Vec<Tensor> = model
        .params()
        .iter()
        .map(|(_, p)| p.grad())
        .filter(Tensor::defined)
        .collect();
    tch::no_grad(|| crate::torch::reduce::norm_sq(&grads)).sqrt()
}

fn iterate_meta(m: &Manifest, step: u64, content: &str) -> Vec<(&'static str, String)> {
    vec![
        ("abcond.content", content.to_string()),
        ("abcond.experiment", m.experiment.clone()),
        ("abcond.run_id", m.run_id.clone()),
        ("abcond.step", step.to_string()),
    ]
}

/// Queues the writing of `contents` (copied now: training goes on changing
/// the originals) as the tensor file `path`.
fn queue_tensors(
    writer: &mut Writer,
    path: PathBuf,
    contents: Vec<NamedTensor>,
    dtype: crate::config::Dtype,
    meta: Vec<(&'static str, String)>,
    durability: Durability,
) -> Result<()> {
    let contents = writer::cpu_copies(contents);
    writer.submit(move || {
        tensors::write_timed(&path, &contents, dtype, &meta, DEFAULT_CHUNK, durability)?;
        Ok(())
    })
}

/// Queues the iterate x^k of `model` as `iterates/step=<k>/part-0.parquet`,
/// written atomically but not yet synced: its path joins `unsynced`, which
/// [`queue_sync`] makes durable before the next checkpoint and before the run
/// ends (completed or diverged). Until then a crash can only lose snapshots after the last
/// checkpoint, which a resume removes and recomputes anyway.
fn write_snapshot(
    writer: &mut Writer,
    dir: &RunDir,
    model: &Model,
    m: &Manifest,
    k: u64,
    unsynced: &mut Vec<PathBuf>,
) -> Result<()> {
    let meta = iterate_meta(m, k, "iterate");
    let path = dir.snapshot(k);
    unsynced.push(path.clone());
    let tensors = model.tensors();
    queue_tensors(writer, path, tensors, model.dtype, meta, Durability::Cache)
}

/// Queues the fsync of the snapshots in `unsynced` (and of the directories
/// leading to them), in one batch.
fn queue_sync(writer: &mut Writer, dir: &RunDir, unsynced: &mut Vec<PathBuf>) -> Result<()> {
    if unsynced.is_empty() {
        return Ok(());
    }
    let (root, files) = (dir.root.clone(), std::mem::take(unsynced));
    writer.submit(move || crate::store::atomic::sync_under(&root, &files))
}

/// Queues the rows not yet on disk as a steps part.
fn flush_steps(
    writer: &mut Writer,
    dir: &RunDir,
    rows: &mut Vec<StepRow>,
    m: &Manifest,
) -> Result<()> {
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        let path = dir.steps_part(first.step as u64, last.step as u64);
        let rows = std::mem::take(rows);
        let meta = [("abcond.run_id", m.run_id.clone())];
        writer.submit(move || tables::write_steps(&path, &rows, &meta))?;
    }
    Ok(())
}

/// Queues run.yaml as `m` is now.
fn queue_manifest(writer: &mut Writer, dir: &RunDir, m: &Manifest) -> Result<()> {
    let (path, text) = (dir.manifest(), crate::run::manifest_text(m)?);
    writer.submit(move || crate::store::atomic::write_bytes(&path, text.as_bytes()))
}

/// Parses the first step of a steps part file name.
fn part_first_step(name: &str) -> Option<u64> {
    name.strip_prefix("steps-")?.split('-').next()?.parse().ok()
}

/// Writes `steps.parquet` from the rows already in it and the steps parts
/// (a part's row wins over an older one of the same step), checking that the
/// steps are exactly 0..n; returns n. The parts are left in place: they are
/// removed only once the manifest records the outcome.
pub fn consolidate_steps(dir: &RunDir, run_id: &str) -> Result<usize> {
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
    let rows: Vec<StepRow> = by_step.into_values().collect();
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
    tables::write_steps(
        &dir.steps(),
        &rows,
        &[("abcond.run_id", run_id.to_string())],
    )?;
    Ok(rows.len())
}

/// Test hook: `ABCOND_CRASH_AT=<point>` aborts the process at that point, as a
/// crash or a kill would (points: `step:N` before update N, `step:N:written`
/// the same once the queued files are written, `before-complete`,
/// `before-cleanup`).
fn crash_point(point: &str) {
    if std::env::var("ABCOND_CRASH_AT").is_ok_and(|v| v == point) {
        std::process::abort();
    }
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
            if part_first_step(&name).is_none_or(|s| s >= c) {
                std::fs::remove_file(e.path())?;
            }
        }
    }
    Ok(())
}

/// Whether the process of a session is alive: Some(bool) on the same host,
/// None when the session ran on another host (it cannot be checked from here).
pub fn session_alive(s: &Session) -> Option<bool> {
    (s.host == crate::util::hostname()).then(|| Path::new(&format!("/proc/{}", s.pid)).exists())
}

/// The session of another live process on this host that is writing this run.
fn live_writer(m: &Manifest) -> Option<&Session> {
    let s = m.sessions.last()?;
    let writing = m.status == Status::Running && s.ended.is_none() && s.pid != std::process::id();
    (writing && session_alive(s) == Some(true)).then_some(s)
}

/// Trains the run of `cfg` in `<out>/<experiment>/<run_id>`, resuming it if a
/// previous session was interrupted.
pub fn train(
    cfg: &Config,
    out: &Path,
    run_id: Option<&str>,
    command: &str,
    quiet: bool,
) -> Result<TrainOutcome> {
    let began = Instant::now();
    let run_id = run_id
        .map(str::to_string)
        .unwrap_or_else(|| cfg.default_run_id());
    let dir = RunDir::new(crate::config::run_dir(out, &cfg.experiment, &run_id));
    // Held for the whole session, before run.yaml is read: a second writer
    // fails here, naming this process.
    let _lock = crate::run::lock::acquire(&dir.root, "train", command)?;
    let previous = if dir.exists() {
        Some(dir.read_manifest()?)
    } else {
        None
    };
    if let Some(m) = &previous {
        let keys = crate::config::diff_keys(
            &serde_yaml::from_str(&m.config.training_identity())?,
            &serde_yaml::from_str(&cfg.training_identity())?,
        );
        if !keys.is_empty() {
            bail!(
                "{} already holds a run with a different config (differing keys: {}); choose another --run-id or --out",
                dir.root.display(),
                keys.join(", ")
            );
        }
        match m.status {
            Status::Completed => {
                // Leftovers of a session that stopped right after completing.
                std::fs::remove_dir_all(dir.steps_parts()).ok();
                std::fs::remove_dir_all(dir.state_dir()).ok();
                note(quiet, &format!("{} is already completed ({} steps); nothing to train", dir.root.display(), m.training.total_steps));
                return Ok(TrainOutcome { dir });
            }
            Status::Diverged => bail!(
                "{} diverged before ({}). Training is deterministic and would diverge again; change the config (e.g. --set optim.lr=…), which gives a new run id, or delete the directory",
                dir.root.display(),
                m.message.clone().unwrap_or_default()
            ),
            Status::Running | Status::Failed => {
                if let Some(s) = live_writer(m) {
                    bail!(
                        "{} is being trained right now by process {} on this host (started {}); wait for it or stop it",
                        dir.root.display(),
                        s.pid,
                        s.started
                    );
                }
            }
        }
    }

    let device = crate::torch::device::select(&cfg.device)?;
    let device_name = crate::torch::device::name(device);
    let reproducibility = crate::torch::reproducibility::apply(device, cfg.train.phase())?;
    let setup = Setup::new(cfg, device)?;
    let mut manifest = match previous {
        Some(m) => m,
        None => Manifest {
            format: MANIFEST_FORMAT.to_string(),
            experiment: cfg.experiment.clone(),
            run_id: run_id.clone(),
            status: Status::Running,
            message: None,
            training: TrainingInfo::default(),
            provenance: Provenance::current(),
            sessions: vec![],
            probe: None,
            sweep: None,
            config: cfg.clone(),
        },
    };
    // Device and checkpoint cadence may change between sessions; record the latest.
    manifest.config = cfg.clone();
    manifest.training = TrainingInfo {
        total_steps: setup.total_steps,
        steps_per_epoch: setup.sampler.steps_per_epoch(),
        examples: setup.data.len,
        parameters: setup.model.num_params(),
        steps_done: manifest.training.steps_done,
        snapshot_steps: setup.snapshots.len() as u64,
    };
    manifest.status = Status::Running;
    manifest.message = None;
    std::fs::create_dir_all(&dir.root)
        .with_context(|| format!("creating run directory {}", dir.root.display()))?;
    let mut session = Session::begin(command, &device_name, 0);
    session.reproducibility = Some(reproducibility);
    manifest.sessions.push(session);
    dir.write_manifest(&manifest)?;

    let total = setup.total_steps;
    let mut result = run_loop(&dir, cfg, setup, &mut manifest, began, quiet);
    // The model and its activations are gone; so goes what the CPU allocator
    // cached for the next step (`abcond run` probes next, with its own sizes).
    crate::torch::ops::cpu_cache_release();
    // Completed or diverged: merge the step rows before the manifest says so.
    let finished = match &result {
        Ok(()) => true,
        Err(e) => e.downcast_ref::<Diverged>().is_some(),
    };
    if finished {
        match consolidate_steps(&dir, &manifest.run_id) {
            Ok(n) if result.is_ok() && n as u64 != total => {
                result = Err(anyhow!(
                    "steps.parquet holds {n} rows after training, expected {total}"
                ));
            }
            Ok(_) => {}
            Err(e) => result = Err(e),
        }
        crash_point("before-complete");
    }
    let now = crate::util::now_rfc3339();
    let session = manifest.sessions.last_mut().unwrap();
    session.ended = Some(now);
    match &result {
        Ok(()) => {
            manifest.status = Status::Completed;
            session.outcome = Some(Status::Completed);
        }
        Err(e) => {
            let diverged = e.downcast_ref::<Diverged>().is_some();
            manifest.status = if diverged {
                Status::Diverged
            } else {
                Status::Failed
            };
            manifest.message = Some(format!("{e:#}"));
            session.outcome = Some(manifest.status);
        }
    }
    dir.write_manifest(&manifest)?;
    if matches!(manifest.status, Status::Completed | Status::Diverged) {
        crash_point("before-cleanup");
        // Only now that run.yaml records the outcome: the parts are merged and
        // no resume will need the checkpoint.
        std::fs::remove_dir_all(dir.steps_parts()).ok();
        std::fs::remove_dir_all(dir.state_dir()).ok();
    }
    result.map(|()| TrainOutcome { dir })
}

fn run_loop(
    dir: &RunDir,
    cfg: &Config,
    mut setup: Setup,
    manifest: &mut Manifest,
    began: Instant,
    quiet: bool,
) -> Result<()> {
    let total = setup.total_steps;
    let model = &setup.model;
    let mut opt = Optimizer::new(&cfg.optim, model.params());

    // Resume from the checkpoint, or start afresh.
    let mut start = 0u64;
    if dir.checkpoint().is_file() {
        let ck_path = dir.checkpoint();
        let ck = tensors::read(&ck_path, setup.device)
            .and_then(|ck| {
                tensors::check_identity(&ck, &ck_path, "checkpoint", &manifest.run_id, None)?;
                Ok(ck)
            })
            .with_context(|| "reading the resume checkpoint; delete the state/ directory to restart training from step 0".to_string())?;
        let step: u64 = ck
            .meta
            .get("abcond.step")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("{}: metadata abcond.step is missing", ck_path.display()))?;
        let updates: u64 = ck
            .meta
            .get("abcond.optim_updates")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                anyhow!(
                    "{}: metadata abcond.optim_updates is missing",
                    ck_path.display()
                )
            })?;
        if ck.meta.get("abcond.iterate").map(String::as_str) == Some("snapshot") {
            dir.load_iterate(model, &manifest.run_id, step)?;
        } else {
            model.load(&ck, &ck_path.display().to_string())?;
        }
        opt.load_state(&ck, updates, &ck_path.display().to_string())?;
        roll_back_to(dir, step)?;
        start = step;
        note(
            quiet,
            &format!(
                "resuming {} from step {step} of {total}",
                dir.root.display()
            ),
        );
    } else {
        // A fresh start: drop anything a session that crashed before its first
        // checkpoint left behind.
        for p in [dir.iterates(), dir.steps_parts(), dir.state_dir()] {
            if p.exists() {
                std::fs::remove_dir_all(&p)?;
            }
        }
        std::fs::remove_file(dir.steps()).ok();
        crate::store::atomic::clean_temporaries(&dir.root)?;
    }
    manifest.sessions.last_mut().unwrap().start_step = start;
    if start == 0 {
        write_data_table(dir, &setup.data)?;
    }
    note(
        quiet,
        &format!(
            "training {} ({} parameters, {} examples) for {total} steps on {}; {} snapshots; run directory {}",
            cfg.experiment,
            model.num_params(),
            setup.data.len,
            crate::torch::device::name(setup.device),
            setup.snapshots.len(),
            dir.root.display()
        ),
    );

    let mut rows: Vec<StepRow> = Vec::new();
    // Snapshots, step rows, checkpoints and run.yaml are written in the
    // background, in order (store/writer.rs); the queue holds about one
    // snapshot step's files.
    let mut writer = Writer::new(4);
    // Snapshots written since the last checkpoint, not yet fsync'd.
    let mut unsynced: Vec<PathBuf> = Vec::new();
    // Timing (run.yaml: sessions[].timing): the loop from here, the time it
    // spends on writes (copying for the writer, waiting for it), and each
    // update's own wall time.
    let loop_start = Instant::now();
    let setup_seconds = (loop_start - began).as_secs_f64();
    let mut write_seconds = 0.0;
    let mut step_seconds: Vec<f64> = Vec::with_capacity((total - start) as usize);
    let mut progress = Progress::new("train", total, quiet);
    let mut last_checkpoint = Instant::now();
    let mut last_loss = f64::NAN;
    let checkpoint_secs = cfg.train.checkpoint_minutes * 60.0;
    // `step:K` aborts before step K with the writer's queue as it is (queued
    // files are lost, as in a real crash); `step:K:written` first waits for
    // the queued files, for tests that need to know which checkpoint exists.
    let crash_at: Option<(u64, bool)> = std::env::var("ABCOND_CRASH_AT").ok().and_then(|v| {
        let rest = v.strip_prefix("step:")?;
        match rest.strip_suffix(":written") {
            Some(k) => Some((k.parse().ok()?, true)),
            None => Some((rest.parse().ok()?, false)),
        }
    });
    for k in start..total {
        let is_snapshot = setup.snapshots.contains(&k);
        let resumed_here = k == start && start > 0;
        let writes_start = Instant::now();
        if is_snapshot && !resumed_here {
            write_snapshot(&mut writer, dir, model, manifest, k, &mut unsynced)?;
        }
        let since_checkpoint = last_checkpoint.elapsed().as_secs_f64();
        let periodic = cfg.train.checkpoint_every.is_some_and(|n| k % n == 0)
            || since_checkpoint >= checkpoint_secs;
        let at_snapshot = is_snapshot && since_checkpoint >= cfg.train.checkpoint_min_seconds;
        if (at_snapshot || periodic) && !resumed_here && k > 0 {
            // The checkpoint relies on every snapshot so far: durable first.
            queue_sync(&mut writer, dir, &mut unsynced)?;
            flush_steps(&mut writer, dir, &mut rows, manifest)?;
            let mut contents = opt.state_tensors();
            if !is_snapshot {
                contents.extend(model.tensors());
            }
            let mut meta = iterate_meta(manifest, k, "checkpoint");
            meta.push(("abcond.optim_updates", opt.updates.to_string()));
            meta.extend(opt.scalar_state());
            meta.push((
                "abcond.iterate",
                if is_snapshot { "snapshot" } else { "inline" }.into(),
            ));
            queue_tensors(
                &mut writer,
                dir.checkpoint(),
                contents,
                model.dtype,
                meta,
                Durability::Durable,
            )?;
            manifest.training.steps_done = k;
            queue_manifest(&mut writer, dir, manifest)?;
            last_checkpoint = Instant::now();
        }
        let step_start = Instant::now();
        write_seconds += (step_start - writes_start).as_secs_f64();

        if let Some((_, written)) = crash_at.filter(|&(c, _)| c == k) {
            if written {
                std::mem::replace(&mut writer, Writer::new(1)).finish()?;
            }
            std::process::abort();
        }
        // The update x^k → x^{k+1} on minibatch i_k.
        tch::manual_seed(rng::derive(cfg.seed, &[stream::STEP_TORCH_SEED, k]) as i64 & i64::MAX);
        let indices = setup.sampler.batch(k);
        // Image data: the augmentation of step k (a pure function of seed, k, i).
        let batch = setup
            .data
            .batch_at(
                &indices,
                Some(crate::data::augment::AugmentAt {
                    seed: cfg.seed,
                    step: k,
                }),
            )
            .with_context(|| format!("building the minibatch of step {k}"))?;
        let lr = schedule::lr_at(&cfg.schedule, cfg.optim.lr, k, total);
        if !(lr.is_finite() && lr >= 0.0) {
            bail!("the learning-rate schedule gives {lr} at step {k} of {total}; check the schedule section");
        }
        model.zero_grad();
        // The forward pass and loss under `train.autocast`; the backward pass
        // (outside the region) follows the dtypes the forward recorded.
        let loss = {
            let _autocast =
                crate::torch::reproducibility::autocast_region(setup.device, cfg.train.autocast)?;
            model.loss(&batch, Mode::Train)
        };
        let loss_value = loss.double_value(&[]);
        let (gn, finite) = if loss_value.is_finite() {
            loss.backward();
            let gn = grad_norm(model);
            (gn, gn.is_finite())
        } else {
            (f64::NAN, false)
        };
        // The update x^k → x^{k+1} (not taken when the step diverged).
        let step_size = if finite {
            opt.step(lr, loss_value, gn)
        } else {
            None
        };
        rows.push(StepRow {
            step: k as i64,
            epoch: setup.sampler.epoch_of(k) as i64,
            lr,
            step_size,
            loss: loss_value,
            grad_norm: gn,
            batch_indices: is_snapshot.then(|| indices.clone()),
        });
        if !finite {
            // The snapshots before step k are kept: durable before run.yaml
            // can say diverged.
            queue_sync(&mut writer, dir, &mut unsynced)?;
            flush_steps(&mut writer, dir, &mut rows, manifest)?;
            writer.finish()?;
            manifest.training.steps_done = k;
            progress.finish();
            let what = if loss_value.is_finite() {
                format!("gradient norm {gn}")
            } else {
                format!("loss {loss_value}")
            };
            return Err(Diverged {
                message: format!(
                    "training diverged at step {k} of {total} ({what}, lr {lr:.4e}, previous loss {last_loss:.6e}); steps 0..={k} and the snapshots before step {k} are kept in {}",
                    dir.root.display()
                ),
            }
            .into());
        }
        last_loss = loss_value;
        progress.update(k + 1, || format!("loss {loss_value:.4}"));
        step_seconds.push(step_start.elapsed().as_secs_f64());
    }
    progress.finish();
    let writes_start = Instant::now();
    write_snapshot(&mut writer, dir, model, manifest, total, &mut unsynced)?;
    queue_sync(&mut writer, dir, &mut unsynced)?;
    flush_steps(&mut writer, dir, &mut rows, manifest)?;
    // Everything on disk before run.yaml can say so.
    writer.finish()?;
    write_seconds += writes_start.elapsed().as_secs_f64();
    manifest.training.steps_done = total;
    let steps_taken = step_seconds.len() as u64;
    if let Some(step_seconds_median) = crate::run::median(&mut step_seconds) {
        manifest.sessions.last_mut().unwrap().timing = Some(TrainTiming {
            setup_seconds,
            steps: steps_taken,
            loop_seconds: loop_start.elapsed().as_secs_f64(),
            write_seconds,
            step_seconds_median,
        });
    }
    let secs = progress.elapsed();
    note(
        quiet,
        &format!(
            "trained {} steps in {} ({:.0} steps/s); final minibatch loss {last_loss:.6}",
            total - start,
            crate::util::human_duration(secs),
            (total - start) as f64 / secs.max(1e-9)
        ),
    );
    Ok(())
}

/// Writes `data.parquet`: which source row each example index is, and for
/// synthetic data the examples themselves.
fn write_data_table(dir: &RunDir, data: &Dataset) -> Result<()> {
    // Token data: features are the source tokens then the target tokens.
    let tokens = matches!(data.targets, crate::data::Targets::Tokens { .. });
    let features = if tokens {
        let both = Tensor::cat(&[&data.x, &data.y], 1).to_device(Device::Cpu);
        let width = both.size()[1] as usize;
        let flat = Vec::<f64>::try_from(both.to_kind(Kind::Double).view([-1]))?;
        Some(flat.chunks(width).map(<[f64]>::to_vec).collect::<Vec<_>>())
    } else if data.source_dir.is_none() {
        let x = data
            .x
            .to_device(Device::Cpu)
            .to_kind(Kind::Double)
            .flatten(1, -1);
        let width = x.size()[1] as usize;
        let flat = Vec::<f64>::try_from(x.view([-1]))?;
        Some(flat.chunks(width).map(<[f64]>::to_vec).collect::<Vec<_>>())
    } else {
        None
    };
    let y = data.y.to_device(Device::Cpu);
    let (labels, targets) = match data.targets {
        crate::data::Targets::Classes(_) | crate::data::Targets::Components(_) => {
            (Some(Vec::<i64>::try_from(&y)?), None)
        }
        crate::data::Targets::MatrixEntries { .. } => {
            (None, Some(Vec::<f64>::try_from(y.to_kind(Kind::Double))?))
        }
        crate::data::Targets::Tokens { .. } => (None, None),
    };
    let mut meta = vec![("abcond.dataset", data.kind.name().to_string())];
    if let Some(d) = &data.source_dir {
        meta.push(("abcond.source_dir", d.display().to_string()));
    }
    tables::write_data_table(
        &dir.data_table(),
        &data.source_index,
        labels.as_deref(),
        targets.as_deref(),
        features.as_deref(),
        &meta,
    )
}
