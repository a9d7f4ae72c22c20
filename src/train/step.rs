//! The step loop of a training session. From the start step (0, or the step
//! of the resume checkpoint) to K, step k queues the snapshot x^k and a
//! checkpoint when they are due, takes the update x^k → x^{k+1} ([`update`])
//! and records its row; the loop ends with the final iterate x^K and the
//! session's timing in run.yaml, or with [`Diverged`] at the first step whose
//! loss or gradient norm is not finite.

use super::checkpoint::{self, CheckpointPolicy};
use super::crash::CrashHook;
use super::output::Output;
use super::setup::{write_data_table, Setup};
use crate::config::Config;
use crate::data::augment::AugmentAt;
use crate::model::{Mode, Model};
use crate::optim::{schedule, Optimizer};
use crate::run::{Manifest, RunDir, TrainTiming};
use crate::store::tables::{StepRow, WallTime};
use crate::util::progress::{note, Progress};
use crate::util::rng::{self, stream};
use anyhow::{bail, Context, Result};
use std::time::Instant;
use tch::Tensor;

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

/// What the update of one step saw and did.
pub struct Update {
    /// The minibatch i_k.
    pub indices: Vec<i64>,
    pub lr: f64,
    /// f_{i_k}(x^k).
    pub loss: f64,
    /// ||∇f_{i_k}(x^k)|| (NaN when the loss is not finite).
    pub grad_norm: f64,
    /// The optimiser's scalar step size, when it has one.
    pub step_size: Option<f64>,
    /// Whether loss and gradient norm are finite, i.e. the update was taken.
    pub finite: bool,
}

impl Update {
    /// The step record of this update as step `k` of epoch `epoch` of run
    /// `m`, completed `wall_time_s` seconds into training; i_k is kept on
    /// snapshot steps.
    pub fn row(
        &self,
        k: u64,
        epoch: u64,
        is_snapshot: bool,
        m: &Manifest,
        wall_time_s: Option<f64>,
    ) -> StepRow {
        StepRow {
            run_id: Some(m.run_id.clone()),
            seed: Some(m.config.seed as i64),
            step: k as i64,
            epoch: epoch as i64,
            lr: self.lr,
            step_size: self.step_size,
            loss: self.loss,
            grad_norm: self.grad_norm,
            batch_indices: is_snapshot.then(|| self.indices.clone()),
            wall_time_s: WallTime(wall_time_s),
        }
    }
}

/// The update x^k → x^{k+1} on minibatch i_k: libtorch's generator reseeded
/// from (seed, k), the forward pass and loss (under `train.autocast`; the
/// backward pass, outside the region, follows the dtypes the forward
/// recorded), the gradient, its norm and the optimiser step, which is not
/// taken when the step diverged.
pub fn update(cfg: &Config, setup: &mut Setup, opt: &mut Optimizer, k: u64) -> Result<Update> {
    update_observed(cfg, setup, opt, k, None, |_| Ok(()))
}

/// The minibatch and learning rate of a step as a run logged from a PyTorch
/// loop recorded them (steps.parquet): the replay of such a run takes them
/// instead of abcond's sampler and schedule.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    pub indices: &'a [i64],
    pub lr: f64,
}

/// What a training step shows its observer after the backward pass.
pub struct Observed<'a> {
    pub setup: &'a Setup,
    /// The per-example losses of the forward pass.
    pub per: &'a Tensor,
    /// i_k.
    pub indices: &'a [i64],
    /// ||∇f_{i_k}(x^k)||, as recorded.
    pub grad_norm: f64,
    /// The minibatch as the step saw it (augmented).
    pub batch: &'a crate::data::Batch,
}

/// [`update`], calling `observe` with the per-example losses of the forward
/// pass, the minibatch and the gradient norm after the backward pass, while x^k and its
/// gradient are still in the model (not when the step diverged): the replay
/// probe (src/probe/replay.rs) measures its row there. The update itself is
/// the same as [`update`]'s, operation for operation.
pub fn update_observed(
    cfg: &Config,
    setup: &mut Setup,
    opt: &mut Optimizer,
    k: u64,
    recorded: Option<Recorded>,
    observe: impl FnOnce(Observed) -> Result<()>,
) -> Result<Update> {
    let total = setup.total_steps;
    tch::manual_seed(rng::derive(cfg.seed, &[stream::STEP_TORCH_SEED, k]) as i64 & i64::MAX);
    let indices = match recorded {
        Some(r) => r.indices.to_vec(),
        None => setup.sampler.batch(k),
    };
    // Image data: the augmentation of step k (a pure function of seed, k, i);
    // a logged loop's minibatch as it recorded it.
    let augment = recorded.is_none().then_some(AugmentAt {
        seed: cfg.seed,
        step: k,
    });
    let batch = setup
        .data
        .batch_at(&indices, augment)
        .with_context(|| format!("building the minibatch of step {k}"))?;
    let lr = match recorded {
        Some(r) => r.lr,
        None => schedule::lr_at(&cfg.schedule, cfg.optim.lr, k, total),
    };
    if !(lr.is_finite() && lr >= 0.0) {
        bail!("the learning-rate schedule gives {lr} at step {k} of {total}; check the schedule section");
    }
    let model = &setup.model;
    model.zero_grad();
    let loss = {
        let _autocast =
            crate::torch::reproducibility::autocast_region(setup.device, cfg.train.autocast)?;
        // Model::loss, spelt out to keep the per-example losses.
        let per = model.per_example_loss(&batch, Mode::Train);
        let loss = per.mean(model.dtype.kind());
        (per, loss)
    };
    let (per, loss) = loss;
    let loss_value = loss.double_value(&[]);
    let (grad_norm, finite) = if loss_value.is_finite() {
        loss.backward();
        let gn = grad_norm(model);
        (gn, gn.is_finite())
    } else {
        (f64::NAN, false)
    };
    if finite {
        observe(Observed {
            setup,
            per: &per,
            indices: &indices,
            grad_norm,
            batch: &batch,
        })?;
    }
    drop(per);
    let step_size = if finite {
        opt.step(lr, loss_value, grad_norm)
    } else {
        None
    };
    Ok(Update {
        indices,
        lr,
        loss: loss_value,
        grad_norm,
        step_size,
        finite,
    })
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

/// Runs steps from the checkpoint (or 0) to K; `began`: when the session
/// began, for its setup time.
#[allow(clippy::too_many_arguments)]
pub fn run_loop(
    dir: &RunDir,
    cfg: &Config,
    mut setup: Setup,
    manifest: &mut Manifest,
    began: Instant,
    quiet: bool,
    crash: &CrashHook,
    signals: &mut super::signal::Guard,
) -> Result<()> {
    let total = setup.total_steps;
    if setup.recovery == super::Recovery::Repair {
        // Leaves the model at some iterate; the resume below loads x^c.
        super::repair::repair(dir, cfg, &mut setup, manifest, quiet)?;
    }
    let mut opt = Optimizer::new(&cfg.optim, setup.model.params());
    let start = checkpoint::resume(dir, &setup, &mut opt, manifest, quiet)?;
    manifest.sessions.last_mut().unwrap().start_step = start;
    if start == 0 {
        write_data_table(dir, &setup.data)?;
    }
    note(
        quiet,
        &format!(
            "training {} ({} parameters, {} examples) for {total} steps on {}; {} snapshots; run directory {}",
            cfg.experiment,
            setup.model.num_params(),
            setup.data.len,
            crate::torch::device::name(setup.device),
            setup.snapshots.len(),
            dir.root.display()
        ),
    );

    // Snapshots, step rows, checkpoints and run.yaml are written in the
    // background, in order (store/writer.rs).
    let mut out = Output::new(dir);
    // Timing (run.yaml: sessions[].timing): the loop from here, the time it
    // spends on writes (copying for the writer, waiting for it), and each
    // update's own wall time.
    let loop_start = Instant::now();
    let setup_seconds = (loop_start - began).as_secs_f64();
    let mut write_seconds = 0.0;
    let mut step_seconds: Vec<f64> = Vec::with_capacity((total - start).min(1 << 20) as usize);
    let mut progress = Progress::new("train", total, quiet).resumed_at(start);
    let policy = CheckpointPolicy::new(&cfg.train);
    let mut last_checkpoint = Instant::now();
    let mut last_loss = f64::NAN;
    // Training wall time (steps.parquet `wall_time_s`) continues from the
    // step before the checkpoint a resumed session starts at.
    let wall_offset = if start > 0 {
        super::output::wall_time_before(dir, start)?.unwrap_or(0.0)
    } else {
        0.0
    };
    for k in start..total {
        let is_snapshot = setup.snapshots.contains(&k);
        let resumed_here = k == start && start > 0;
        let writes_start = Instant::now();
        if is_snapshot && !resumed_here {
            out.snapshot(&setup.model, manifest, k)?;
            if cfg.snapshots.optimizer_state {
                out.optimizer_state(&setup.model, &opt, manifest, k)?;
            }
        }
        let since_checkpoint = last_checkpoint.elapsed().as_secs_f64();
        let checkpointed = policy.due(k, is_snapshot, resumed_here, since_checkpoint);
        if checkpointed {
            checkpoint::write_checkpoint(&mut out, &setup.model, &opt, manifest, k, is_snapshot)?;
            last_checkpoint = Instant::now();
        }
        // A signal during the steps before: checkpoint x^k and stop (signal.rs).
        if k > start {
            if let Some(signal) = signals.take() {
                if !checkpointed {
                    checkpoint::write_checkpoint(
                        &mut out,
                        &setup.model,
                        &opt,
                        manifest,
                        k,
                        is_snapshot,
                    )?;
                }
                out.writer.finish()?;
                progress.finish();
                return Err(super::signal::Interrupted { signal, step: k }.into());
            }
        }
        let step_start = Instant::now();
        write_seconds += (step_start - writes_start).as_secs_f64();

        crash.before_step(k, &mut out.writer)?;
        let u = update(cfg, &mut setup, &mut opt, k)?;
        let wall = wall_offset + loop_start.elapsed().as_secs_f64();
        out.rows.push(u.row(
            k,
            setup.sampler.epoch_of(k),
            is_snapshot,
            manifest,
            Some(wall),
        ));
        if !u.finite {
            // The snapshots before step k are kept: durable before run.yaml
            // can say diverged.
            out.sync_snapshots()?;
            out.flush_steps(manifest)?;
            out.writer.finish()?;
            manifest.training.steps_done = k;
            progress.finish();
            let what = if u.loss.is_finite() {
                format!("gradient norm {}", u.grad_norm)
            } else {
                format!("loss {}", u.loss)
            };
            return Err(Diverged {
                message: format!(
                    "training diverged at step {k} of {total} ({what}, lr {:.4e}, previous loss {last_loss:.6e}); steps 0..={k} and the snapshots before step {k} are kept in {}",
                    u.lr,
                    dir.root.display()
                ),
            }
            .into());
        }
        last_loss = u.loss;
        progress.update(k + 1, || format!("loss {:.4}", u.loss));
        step_seconds.push(step_start.elapsed().as_secs_f64());
    }
    progress.finish();
    let writes_start = Instant::now();
    out.snapshot(&setup.model, manifest, total)?;
    out.sync_snapshots()?;
    out.flush_steps(manifest)?;
    // Everything on disk before run.yaml can say so.
    out.writer.finish()?;
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
