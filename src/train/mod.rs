//! Phase 1, train: runs the optimiser for K steps, records every step in
//! `steps.parquet` and writes the iterates x^k of the snapshot schedule (always
//! including x^K) under `iterates/`, for the probe phase ([`crate::probe`]) to
//! read.
//!
//! Crash safety: every file is written atomically. At every resume checkpoint
//! the step rows so far and the checkpoint (optimiser state, plus the iterate
//! unless a snapshot of that step holds it) are written, on the schedule of
//! [`CheckpointPolicy`]. Running `abcond train` again on an interrupted run
//! restarts from the last checkpoint and, on CPU, reaches a final iterate
//! bit-identical to an uninterrupted run: the minibatch order is a pure
//! function of (seed, step), the optimiser state is stored exactly, and
//! libtorch's generator is reseeded from (seed, step) before every update.
//! On CUDA the session runs under the determinism policy of
//! [`crate::torch::reproducibility`] (recorded in its `sessions` entry); with
//! `train.autocast` each step's forward pass and loss run under bf16 autocast.
//!
//! The files:
//!
//! - this one: the run lifecycle, [`train`]: lock the run directory, check an
//!   existing run (same training identity, status), record the session in
//!   run.yaml, run the steps, merge the step rows, record the outcome, clean up;
//! - setup.rs: dataset, model, sampler, K and the snapshot schedule;
//! - step.rs: the step loop and the update x^k → x^{k+1};
//! - checkpoint.rs: when checkpoints are written, writing them, resuming;
//! - output.rs: the snapshot, step-row and run.yaml writes of the loop, and the
//!   merge of the step rows;
//! - crash.rs: the `ABCOND_CRASH_AT` test hook;
//! - config.rs: the `train:` and `snapshots:` sections of a config.

mod checkpoint;
pub mod config;
mod crash;
mod output;
mod repair;
pub(crate) mod setup;
pub mod signal;
mod step;

pub use checkpoint::{load_optimizer, optimizer_meta, CheckpointPolicy};
pub use output::consolidate_steps;
pub use setup::{snapshot_steps, Setup};
pub use signal::Interrupted;
pub use step::{grad_norm, update_observed, Diverged, Observed, Recorded, Update};

use crate::config::Config;
use crate::run::{Manifest, Provenance, RunDir, Session, Status, TrainingInfo, MANIFEST_FORMAT};
use crate::util::progress::note;
use anyhow::{anyhow, bail, Context, Result};
use crash::CrashHook;
use std::path::Path;
use std::time::Instant;

/// What a session does with a run whose records are incomplete (a lost or
/// corrupt checkpoint, step record or snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Recovery {
    /// Resume from the checkpoint; refuse, saying what is lost.
    #[default]
    Resume,
    /// `--restart-from-scratch`: discard what the run wrote and retrain it.
    RestartFromScratch,
    /// `--repair`: re-create what is lost by retraining as far as needed
    /// (repair.rs), then go on.
    Repair,
}

pub struct TrainOutcome {
    pub dir: RunDir,
}

/// Trains the run of `cfg` in `<out>/<experiment>/<run_id>`, resuming it if a
/// previous session was interrupted.
pub fn train(
    cfg: &Config,
    out: &Path,
    run_id: Option<&str>,
    command: &str,
    quiet: bool,
    recovery: Recovery,
) -> Result<TrainOutcome> {
    let began = Instant::now();
    if cfg.optim.name == crate::config::OptimName::External
        || cfg.schedule.name == crate::config::ScheduleName::Recorded
    {
        bail!(
            "{}: `optim.name: external` and `schedule.name: recorded` describe runs logged from a PyTorch loop by abcond.Logger; abcond cannot train with them. Choose an optimiser abcond implements (sgd, adam, adamw, nadam, nadamw, normalized-sgd, sps-max, decsps, ngn, adagrad-norm-max) and a schedule (constant, cosine, one-cycle, warmup-cosine, inverse-power, polynomial)",
            cfg.source.describe()
        );
    }
    let crash = CrashHook::from_env();
    let run_id = run_id
        .map(str::to_string)
        .unwrap_or_else(|| cfg.default_run_id());
    let dir = RunDir::new(crate::config::run_dir(out, &cfg.experiment, &run_id));
    // Held for the whole session, before run.yaml is read: a second writer
    // fails here, naming this process.
    let mut created = crate::run::lock::Created::before(&dir.root);
    let _lock = crate::run::lock::acquire(&dir.root, "train", command, true)?;
    let previous = if dir.exists() {
        Some(dir.read_manifest()?)
    } else {
        None
    };
    if let Some(t) = previous.as_ref().and_then(|m| m.trainer.as_ref()) {
        let wanted = if recovery == Recovery::Repair {
            "repair"
        } else {
            "train or resume"
        };
        bail!(t.refusal(&dir.root, wanted));
    }
    let mut completed = false;
    if let Some(m) = &previous {
        completed = check_existing(&dir, m, cfg, quiet || recovery == Recovery::Repair)?;
        if completed && recovery != Recovery::Repair {
            return Ok(TrainOutcome { dir });
        }
    }

    let device = crate::torch::device::select(&cfg.device)?;
    let device_name = crate::torch::device::name(device);
    let reproducibility = crate::torch::reproducibility::apply(device, cfg.train.phase())?;
    // Errors found only against the data (a batch larger than the dataset,
    // snapshots past the end) name the config file.
    let mut setup = Setup::new(cfg, device)
        .with_context(|| format!("{}: setting up the run", cfg.source.describe()))?;
    setup.recovery = recovery;
    if completed {
        // --repair of a completed run: its status stays completed; the
        // session is recorded once the repair is done.
        let mut m = previous.expect("completed run");
        let mut session = Session::begin(command, &device_name, 0);
        session.reproducibility = Some(reproducibility);
        let repaired = repair::repair(&dir, cfg, &mut setup, &m, quiet);
        crate::torch::ops::cpu_cache_release();
        if repaired? {
            session.ended = Some(crate::util::now_rfc3339());
            session.outcome = Some(Status::Completed);
            m.sessions.push(session);
            dir.write_manifest(&m)?;
        }
        return Ok(TrainOutcome { dir });
    }
    let mut manifest = session_manifest(previous, cfg, &run_id, &setup);
    std::fs::create_dir_all(&dir.root)
        .with_context(|| format!("creating run directory {}", dir.root.display()))?;
    let mut session = Session::begin(command, &device_name, 0);
    session.reproducibility = Some(reproducibility);
    manifest.sessions.push(session);
    dir.write_manifest(&manifest)?;
    created.keep();

    let total = setup.total_steps;
    // SIGTERM/SIGUSR1 end the loop with a checkpoint (signal.rs); dropped at
    // the end of this function, which restores the default dispositions.
    let mut signals = signal::Guard::install();
    let result = step::run_loop(
        &dir,
        cfg,
        setup,
        &mut manifest,
        began,
        quiet,
        &crash,
        &mut signals,
    );
    // The model and its activations are gone; so goes what the CPU allocator
    // cached for the next step (`abcond run` probes next, with its own sizes).
    crate::torch::ops::cpu_cache_release();
    finish(&dir, &mut manifest, result, total, &crash).map(|()| TrainOutcome { dir })
}

/// Checks the run already in `dir` against this session: the same training
/// identity, not diverged, not being trained by another live process.
/// Returns true when it is completed, and there is nothing to train.
fn check_existing(dir: &RunDir, m: &Manifest, cfg: &Config, quiet: bool) -> Result<bool> {
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
            note(quiet, &format!("{} is already completed ({} steps); nothing to train (`abcond verify {}` checks its files)", dir.root.display(), m.training.total_steps, dir.root.display()));
            return Ok(true);
        }
        // Exit status 3, as when it diverged.
        Status::Diverged => {
            return Err(Diverged {
                message: format!(
                    "{} diverged before ({}). Training is deterministic and would diverge again; change the config (e.g. --set optim.lr=…), which gives a new run id, or delete the directory",
                    dir.root.display(),
                    m.message.clone().unwrap_or_default()
                ),
            }
            .into())
        }
        Status::Running | Status::Failed => {
            if let Some(s) = crate::run::live_writer(m) {
                bail!(
                    "{} is being trained right now by process {} on this host (started {}); wait for it or stop it",
                    dir.root.display(),
                    s.pid,
                    s.started
                );
            }
        }
    }
    Ok(false)
}

/// The manifest of this session before it starts: the previous one (or a new
/// one) with the config and training facts of now, status running.
fn session_manifest(
    previous: Option<Manifest>,
    cfg: &Config,
    run_id: &str,
    setup: &Setup,
) -> Manifest {
    let mut manifest = match previous {
        Some(m) => m,
        None => Manifest {
            format: MANIFEST_FORMAT.to_string(),
            experiment: cfg.experiment.clone(),
            run_id: run_id.to_string(),
            status: Status::Running,
            message: None,
            training: TrainingInfo::default(),
            provenance: Provenance::current(),
            sessions: vec![],
            probe: None,
            sweep: None,
            trainer: None,
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
    manifest
}

/// Ends the session after its loop: merges the step rows (completed or
/// diverged), records the outcome in run.yaml and then removes the steps parts
/// and the checkpoint. Returns the session's result.
fn finish(
    dir: &RunDir,
    manifest: &mut Manifest,
    mut result: Result<()>,
    total: u64,
    crash: &CrashHook,
) -> Result<()> {
    // Completed or diverged: merge the step rows before the manifest says so.
    let finished = match &result {
        Ok(()) => true,
        Err(e) => e.downcast_ref::<Diverged>().is_some(),
    };
    if finished {
        match consolidate_steps(dir, manifest) {
            Ok(n) if result.is_ok() && n as u64 != total => {
                result = Err(anyhow!(
                    "steps.parquet holds {n} rows after training, expected {total}"
                ));
            }
            Ok(_) => {}
            Err(e) => result = Err(e),
        }
        crash.at("before-complete");
    }
    let now = crate::util::now_rfc3339();
    // The step the run's durable state reaches (a checkpoint, a signal
    // checkpoint, the divergence, or the end): where a resume starts.
    let reached = manifest.training.steps_done;
    let session = manifest.sessions.last_mut().unwrap();
    session.ended = Some(now);
    session.end_step = Some(reached);
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
    dir.write_manifest(manifest)?;
    if matches!(manifest.status, Status::Completed | Status::Diverged) {
        crash.at("before-cleanup");
        // Only now that run.yaml records the outcome: the parts are merged and
        // no resume will need the checkpoint.
        std::fs::remove_dir_all(dir.steps_parts()).ok();
        std::fs::remove_dir_all(dir.state_dir()).ok();
    }
    result
}
