//! Replay probing (`abcond probe RUN_DIR --replay`, `probe.replay: true`):
//! the `train` row at **every** step k, not only at the snapshots.
//!
//! Storing every iterate is out of the question, but training is
//! bit-deterministic (CPU; CUDA under the determinism settings), so the probe
//! re-creates x^k by re-running training from the stored iterates. The run is
//! cut into segments at its restart points — step 0 (x^0 from the seed, or its
//! snapshot) and every snapshot whose optimiser state is known: every snapshot
//! for the stateless optimisers (SGD without momentum, SPS_max, NGN), the
//! snapshots that carry `optim.parquet` (`snapshots.optimizer_state: true`)
//! for the others. A segment [a, b) loads x^a and the optimiser state at a and
//! runs steps a..b with the training step itself ([`crate::train`]'s
//! update, operation for operation), writing at each step k the row
//!
//!   loss_k = f_{i_k}(x^k), loss_ref = f_{i_k}(x^K), inner, grad_norm, dist, cos
//!
//! on the minibatch i_k the step used (augmented as the step saw it), plus the
//! extra minibatches every `probe.replay_extra_every` steps.
//!
//! Checks, before a segment's rows are written: every step's loss, gradient
//! norm, learning rate and step size equal the ones steps.parquet recorded,
//! bit for bit (a difference names the step where determinism broke), and
//! every stored iterate inside the segment and x^b itself equal the replayed
//! ones, bit for bit (parameters and buffers, so BatchNorm running statistics
//! are re-created exactly).
//!
//! The row is measured exactly as the snapshot probe measures it
//! ([`super::landscape::Landscape::minibatch_rows`]), in measurement mode.
//! Where the training forward pass computes the same per-example losses
//! (no dropout, no BatchNorm, no autocast, the minibatch in one chunk) the
//! replay takes the row from the training step's own forward and backward
//! pass — the gradient of a mean is the gradient of a sum over n, bit for bit —
//! and adds one forward pass at x^K; at every stored iterate inside a segment
//! it also measures the row the snapshot probe's way and requires the two to
//! be equal bit for bit. Elsewhere it measures the row separately before the
//! update (about one more forward and backward pass per step).
//!
//! A run logged from a PyTorch loop (abcond.Logger) replays the same way when
//! the loop stepped torch.optim.SGD, Adam or AdamW, which abcond's follow
//! operation for operation: the minibatches and learning rates are the recorded ones, x^0
//! the stored one, and since the loop computed its loss and gradient norm with
//! its own reductions those are compared to 1e-5 relative, the iterates bit
//! for bit ([`check_replayable`]).
//!
//! Each segment's rows go to `replay-parts/steps-<a>-<b>.parquet` once the
//! segment checked out, so a killed replay resumes at the first segment
//! without a current part; `--shard i/N` takes the segments at positions ≡ i
//! (mod N). The gather puts replay rows into landscape.parquet with
//! `source = replay`, except at steps the snapshot probe measured, where the
//! two `train` rows must be equal bit for bit and the snapshot's is kept.

use super::batch::ProbeBatch;
use super::landscape::Landscape;
use super::measure::Measurement;
use super::plan::Shard;
use crate::config::{Config, OptimName};
use crate::data::augment::AugmentAt;
use crate::model::Model;
use crate::optim::Optimizer;
use crate::run::{Manifest, RunDir};
use crate::store::label::{ProbeLabel, RowSource};
use crate::store::tables::{self, LandscapeRow, StepRow};
use crate::store::tensors;
use crate::torch::reduce;
use crate::train::Setup;
use crate::util::progress::{note, Progress};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Test hooks of the replay, read only by a build with the cargo feature
/// `test-hooks` (the shipped build ignores them): `ABCOND_REPLAY_PERTURB=K`
/// nudges one parameter after update K, as a build with other arithmetic
/// would; `ABCOND_REPLAY_SEPARATE=1` measures every row separately (never from
/// the training step's pass); `ABCOND_REPLAY_SKEW=1` moves every row taken
/// from the training step's pass by one ulp (what a model whose training pass
/// is not its measurement gives); `ABCOND_REPLAY_ABORT_AFTER=N` aborts the
/// process once N segment parts are written, as a kill would.
struct Hooks {
    perturb: Option<u64>,
    separate: bool,
    skew: bool,
    abort_after: Option<usize>,
}

impl Hooks {
    fn from_env() -> Hooks {
        let var = |name: &str| {
            cfg!(feature = "test-hooks")
                .then(|| std::env::var(name).ok())
                .flatten()
        };
        Hooks {
            perturb: var("ABCOND_REPLAY_PERTURB").and_then(|v| v.parse().ok()),
            separate: var("ABCOND_REPLAY_SEPARATE").is_some_and(|v| v == "1"),
            skew: var("ABCOND_REPLAY_SKEW").is_some_and(|v| v == "1"),
            abort_after: var("ABCOND_REPLAY_ABORT_AFTER").and_then(|v| v.parse().ok()),
        }
    }
}

/// Steps start..end of training, replayed from the stored state at `start`
/// and checked against the stored iterate x^end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Segment {
    pub start: u64,
    pub end: u64,
}

impl std::fmt::Display for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "steps {}..{}", self.start, self.end)
    }
}

/// Whether the optimiser carries no state from step to step besides the
/// step count (so any snapshot is a restart point).
pub fn stateless(cfg: &Config) -> bool {
    match cfg.optim.name {
        OptimName::Sgd => cfg.optim.momentum.unwrap_or(0.0) == 0.0,
        OptimName::SpsMax | OptimName::Ngn => true,
        _ => false,
    }
}

/// The replay's segments of the run in `dir` with final step `total`: cut at
/// every restart point (see the module doc).
pub fn segments(dir: &RunDir, cfg: &Config, total: u64) -> Result<Vec<Segment>> {
    let snapshots = dir.snapshot_steps()?;
    if !snapshots.contains(&total) {
        bail!(
            "the final iterate x^K (step {total}) is missing: expected {}",
            dir.snapshot(total).display()
        );
    }
    let free = stateless(cfg);
    let mut cuts: BTreeSet<u64> = snapshots
        .iter()
        .copied()
        .filter(|&k| k < total && (free || dir.snapshot_optim(k).is_file()))
        .collect();
    cuts.insert(0);
    cuts.insert(total);
    let cuts: Vec<u64> = cuts.into_iter().collect();
    Ok(cuts
        .windows(2)
        .map(|w| Segment {
            start: w[0],
            end: w[1],
        })
        .collect())
}

/// A stable fingerprint of what a replay part depends on: the landscape
/// settings of its rows and `probe.replay_extra_every`.
pub fn fingerprint(cfg: &Config) -> String {
    let base = super::plan::landscape_fingerprint(&cfg.probe);
    let text = format!(
        "replay/1 {base} extra_every={:?}",
        cfg.probe.replay_extra_every
    );
    format!("{:016x}", crate::config::fnv1a64(text.as_bytes()))
}

const FINGERPRINT_KEY: &str = "abcond.replay_fingerprint";

/// Whether segment `s`'s part exists and was written with fingerprint `fp`.
pub fn part_done(dir: &RunDir, s: Segment, fp: &str) -> bool {
    let path = dir.replay_part(s.start, s.end);
    path.is_file()
        && tensors::read_meta(&path)
            .ok()
            .and_then(|m| m.get(FINGERPRINT_KEY).cloned())
            .as_deref()
            == Some(fp)
}

/// The segments of one replay and which of them this process still measures.
pub struct ReplayPlan {
    pub all: Vec<Segment>,
    /// This process's share (all without `--shard`).
    pub mine: Vec<Segment>,
    /// Segments of `mine` without a current part.
    pub todo: Vec<Segment>,
    pub fingerprint: String,
}

impl ReplayPlan {
    pub fn new(dir: &RunDir, cfg: &Config, total: u64, shard: Option<Shard>) -> Result<ReplayPlan> {
        let all = segments(dir, cfg, total)?;
        let mine: Vec<Segment> = match shard {
            Some(s) => all
                .iter()
                .enumerate()
                .filter(|(p, _)| *p as u64 % s.count == s.index)
                .map(|(_, &seg)| seg)
                .collect(),
            None => all.clone(),
        };
        let fingerprint = fingerprint(cfg);
        let todo = mine
            .iter()
            .copied()
            .filter(|&s| !part_done(dir, s, &fingerprint))
            .collect();
        Ok(ReplayPlan {
            all,
            mine,
            todo,
            fingerprint,
        })
    }

    /// Segments (all shards) whose parts are current.
    pub fn done(&self, dir: &RunDir) -> usize {
        self.all
            .iter()
            .filter(|&&s| part_done(dir, s, &self.fingerprint))
            .count()
    }
}

/// What the replay of this process did.
#[derive(Debug, Clone, Default)]
pub struct Replayed {
    pub steps: u64,
    pub seconds: f64,
    /// Whether rows came from the training step's own pass.
    pub shared_pass: bool,
    pub reproducibility: Option<crate::torch::reproducibility::Reproducibility>,
}

/// Refuses runs the replay cannot re-run. A run logged from a PyTorch loop
/// (abcond.Logger) is re-run with abcond's own update on the minibatches and
/// learning rates it recorded; that equals the loop's bit for bit for
/// torch.optim.SGD (any momentum, dampening, Nesterov, weight decay), Adam and
/// AdamW on the CPU, whose single-tensor updates abcond's follow operation
/// for operation, and only from a stored x^0.
pub fn check_replayable(manifest: &Manifest, dir: &RunDir, cfg: &Config) -> Result<()> {
    let Some(t) = &manifest.trainer else {
        return Ok(());
    };
    let stepped = t.optimizer.as_deref().unwrap_or("its optimiser");
    if !matches!(
        cfg.optim.name,
        OptimName::Sgd | OptimName::Adam | OptimName::Adamw
    ) {
        bail!(
            "{}: --replay re-runs a loop logged by {} with abcond's own update on the minibatches and learning rates it recorded; that equals the loop's bit for bit only for torch.optim.SGD, Adam and AdamW, and this loop stepped {stepped} (recorded as optim.name {}). Probe its snapshots without --replay, or write a snapshot at every step you want measured (`snapshots.every: 1` in the Logger's config)",
            dir.root.display(),
            t.name,
            cfg.optim.name.name()
        );
    }
    if !dir.snapshot(0).is_file() {
        bail!(
            "{}: --replay of a run logged by {} starts from the stored x^0, which the run does not have ({} is missing; its snapshots.at leaves out step 0)",
            dir.root.display(),
            t.name,
            dir.snapshot(0).display()
        );
    }
    Ok(())
}

/// Replays the segments `plan.todo` of the run in `dir`, writing one part per
/// segment that checked out.
pub fn replay(
    dir: &RunDir,
    manifest: &Manifest,
    cfg: &Config,
    device: Device,
    plan: &ReplayPlan,
    shard: Option<Shard>,
    quiet: bool,
) -> Result<Replayed> {
    check_replayable(manifest, dir, cfg)?;
    let total = manifest.training.total_steps;
    let logged = manifest.trainer.is_some();
    // The training steps run under the training's settings (autocast, TF32),
    // the rows under the probe's (CUDA: TF32 off between the two).
    let reproducibility = crate::torch::reproducibility::apply(device, cfg.train.phase())?;
    let tf32_toggle = device.is_cuda() && cfg.train.allow_tf32;
    let mut setup = Setup::new(cfg, device)
        .with_context(|| format!("{}: setting up the replay", dir.root.display()))?;
    if setup.total_steps != total || setup.data.len != manifest.training.examples {
        bail!(
            "{}: the run's config now gives {} steps over {} examples, but the run trained {} steps over {} examples; the data files changed since training",
            dir.root.display(),
            setup.total_steps,
            setup.data.len,
            total,
            manifest.training.examples
        );
    }
    if logged && setup.model.loop_randomness() {
        bail!(
            "{}: the run's TorchScript module declares dropout: the logged loop drew its dropout masks from PyTorch's generator in the loop, which a replay cannot re-draw; probe its snapshots without --replay",
            dir.root.display()
        );
    }
    let p = &cfg.probe;
    setup.model.check_measurable(
        p.batchnorm,
        p.chunk_size as usize,
        cfg.train.batch_size as usize,
    )?;
    let landscape = Landscape::new(dir, manifest, cfg, &setup.data, device)?;
    let hooks = Hooks::from_env();
    let shared = setup.model.train_is_measure(p.batchnorm)
        && !hooks.separate
        && cfg.train.autocast.is_none()
        && landscape.unchunked(cfg.train.batch_size);
    let (steps, _) = tables::read_steps(&dir.steps())?;
    if steps.len() as u64 != total {
        bail!(
            "{}: holds {} step rows, expected {total}; `abcond verify {}` says what is wrong",
            dir.steps().display(),
            steps.len(),
            dir.root.display()
        );
    }
    let on_disk: BTreeSet<u64> = dir.snapshot_steps()?.into_iter().collect();
    // What limits the segments, said once.
    let expected = crate::train::setup::snapshot_steps(&cfg.snapshots, total)?;
    let missing: Vec<u64> = expected
        .iter()
        .copied()
        .filter(|k| !on_disk.contains(k))
        .collect();
    if !missing.is_empty() {
        let shown: Vec<String> = missing.iter().take(10).map(u64::to_string).collect();
        note(
            quiet,
            &format!(
                "{} of the run's snapshots are missing (steps {}{}): the replay runs through those steps (its segments are longer there); every step can still be replayed",
                missing.len(),
                shown.join(", "),
                if missing.len() > 10 { ", …" } else { "" }
            ),
        );
    }
    if !stateless(cfg) && plan.all.len() == 1 && total > 1 {
        note(
            quiet,
            &format!(
                "{} keeps state from step to step and no snapshot holds it: the replay is one segment from step 0, which --shard cannot split ({})",
                cfg.optim.name.name(),
                if logged {
                    "abcond.Logger stores no optimiser state"
                } else {
                    "train with `snapshots.optimizer_state: true` to make every snapshot a restart point"
                }
            ),
        );
    }
    let n_steps: u64 = plan.todo.iter().map(|s| s.end - s.start).sum();
    note(
        quiet,
        &format!(
            "replaying {} segments ({n_steps} steps){} of {} on {}: a `train` row at every step{}, {}",
            plan.todo.len(),
            shard.map(|s| format!(" of shard {s}")).unwrap_or_default(),
            dir.root.display(),
            crate::torch::device::name(device),
            p.replay_extra_every
                .map(|m| format!(" and {} extra minibatches every {m} steps", p.extra_batches))
                .unwrap_or_default(),
            if shared {
                "reusing each training step's forward and backward pass"
            } else {
                "measured separately from the training step (dropout, BatchNorm, autocast or chunking)"
            }
        ),
    );
    let mut progress = Progress::new("replay", n_steps, quiet);
    let started = Instant::now();
    let mut r = Run {
        dir,
        manifest,
        cfg,
        setup: &mut setup,
        landscape: &landscape,
        steps: &steps,
        on_disk: &on_disk,
        logged,
        shared,
        tf32_toggle,
        held: None,
        perturb: hooks.perturb,
        skew: hooks.skew,
    };
    let (mut done_steps, mut written) = (0, 0usize);
    let mut fell_back = false;
    for &seg in &plan.todo {
        let rows = match r.segment(seg, &mut progress, done_steps) {
            Err(e) if e.downcast_ref::<SharedMismatch>().is_some() => {
                // Never a wrong row: the segment again, every row measured.
                note(
                    quiet,
                    &format!(
                        "{e}: this model's training pass is not its measurement here; replaying {seg} again with every row measured separately (and the segments after it)"
                    ),
                );
                r.shared = false;
                fell_back = true;
                r.segment(seg, &mut progress, done_steps)
            }
            other => other,
        }
        .with_context(|| format!("replaying {seg} of {}", dir.root.display()))?;
        let mut meta = vec![
            ("abcond.run_id", manifest.run_id.clone()),
            (FINGERPRINT_KEY, plan.fingerprint.clone()),
            ("abcond.segment", format!("{}-{}", seg.start, seg.end)),
            (
                "abcond.replay_build",
                format!(
                    "abcond {} ({}), torch {}",
                    env!("CARGO_PKG_VERSION"),
                    env!("ABCOND_GIT_COMMIT"),
                    env!("ABCOND_TORCH_VERSION")
                ),
            ),
            ("abcond.replay_device", crate::torch::device::name(device)),
            (
                "abcond.replay_reproducibility",
                serde_yaml::to_string(&reproducibility)?,
            ),
        ];
        meta.extend(shard.map(|s| ("abcond.shard", s.to_string())));
        let path = dir.replay_part(seg.start, seg.end);
        std::fs::create_dir_all(dir.replay_parts())?;
        tables::write_probe_part(&path, &rows, &meta)?;
        done_steps += seg.end - seg.start;
        written += 1;
        if hooks.abort_after == Some(written) {
            std::process::abort();
        }
    }
    progress.finish();
    let seconds = started.elapsed().as_secs_f64();
    if n_steps > 0 {
        note(
            quiet,
            &format!(
                "replayed {n_steps} steps in {} ({:.0} steps/s); every step's record and every stored iterate on the way matched bit for bit",
                crate::util::human_duration(seconds),
                n_steps as f64 / seconds.max(1e-9)
            ),
        );
    }
    Ok(Replayed {
        steps: n_steps,
        seconds,
        shared_pass: shared && !fell_back,
        reproducibility: Some(reproducibility),
    })
}

/// The state one replay shares across its segments.
struct Run<'a> {
    dir: &'a RunDir,
    manifest: &'a Manifest,
    cfg: &'a Config,
    setup: &'a mut Setup,
    landscape: &'a Landscape<'a>,
    steps: &'a [StepRow],
    on_disk: &'a BTreeSet<u64>,
    /// A run logged from a PyTorch loop: its minibatches and learning rates
    /// are taken from steps.parquet.
    logged: bool,
    shared: bool,
    tf32_toggle: bool,
    /// The step whose stored iterate the model holds, checked bit for bit
    /// at the end of the segment before (a segment starting there needs no
    /// load).
    held: Option<u64>,
    /// Test hook: nudge a parameter after this update.
    perturb: Option<u64>,
    /// Test hook: move the shared pass's rows by one ulp.
    skew: bool,
}

impl<'a> Run<'a> {
    /// Replays one segment; returns its rows once every check passed.
    fn segment(
        &mut self,
        seg: Segment,
        progress: &mut Progress,
        before: u64,
    ) -> Result<Vec<LandscapeRow>> {
        let (dir, cfg, run_id) = (self.dir, self.cfg, &self.manifest.run_id);
        // The state at the segment's start.
        if self.held.take() == Some(seg.start) {
            // x^start, parameters and buffers, equal to the stored one.
        } else if self.on_disk.contains(&seg.start) {
            dir.load_iterate(&self.setup.model, run_id, seg.start)?;
        } else if seg.start == 0 {
            // x^0 from the seed, as training built it.
            self.setup.model =
                Model::build(&cfg.model, &self.setup.data, self.setup.device, cfg.seed)?;
        } else {
            bail!("no stored iterate at step {}", seg.start);
        }
        let mut opt = Optimizer::new(&cfg.optim, self.setup.model.params());
        opt.updates = seg.start;
        if seg.start > 0 && !stateless(cfg) {
            let path = dir.snapshot_optim(seg.start);
            let file = tensors::read(&path, self.setup.device)
                .and_then(|f| {
                    tensors::check_identity(&f, &path, "optimizer-state", run_id, Some(seg.start))?;
                    Ok(f)
                })
                .with_context(|| format!("reading the optimiser state at step {}", seg.start))?;
            crate::train::load_optimizer(&mut opt, &file, &path)?;
        }
        let m = self.cfg.probe.replay_extra_every;
        let mut rows = Vec::new();
        for k in seg.start..seg.end {
            if k > seg.start && self.on_disk.contains(&k) {
                self.check_iterate(k, seg)?;
            }
            let extras_due = m.is_some_and(|m| k.is_multiple_of(m));
            self.step(k, seg, extras_due, &mut opt, &mut rows)?;
            progress.update(before + k + 1 - seg.start, || format!("step {k}"));
        }
        self.check_iterate(seg.end, seg)?;
        self.held = Some(seg.end);
        Ok(rows)
    }

    /// Step k: its rows at x^k, then the update to x^{k+1}, checked against
    /// the recorded step.
    fn step(
        &mut self,
        k: u64,
        seg: Segment,
        extras_due: bool,
        opt: &mut Optimizer,
        rows: &mut Vec<LandscapeRow>,
    ) -> Result<()> {
        let cfg = self.cfg;
        let landscape = self.landscape;
        let recorded = self.recorded(k)?;
        let set_tf32 = |on: bool| -> Result<()> {
            if self.tf32_toggle {
                crate::torch::ctx::set_allow_tf32(on, on)?;
            }
            Ok(())
        };
        set_tf32(false)?;
        let reference = landscape.reference();
        let measured = {
            let model = &self.setup.model;
            let data = &self.setup.data;
            let train = match recorded {
                Some(r) => ProbeBatch {
                    label: ProbeLabel::Train,
                    indices: r.indices.to_vec(),
                    augment: None,
                    listed: true,
                },
                None => ProbeBatch {
                    label: ProbeLabel::Train,
                    indices: self.setup.sampler.batch(k),
                    augment: Some(AugmentAt {
                        seed: cfg.seed,
                        step: k,
                    }),
                    listed: true,
                },
            };
            let mut batches = Vec::new();
            // The probe's own measurement of the `train` row: always on the
            // separate path, and at stored iterates to check the shared one.
            if !self.shared || self.on_disk.contains(&k) {
                batches.push(train.clone());
            }
            if extras_due {
                for j in 0..cfg.probe.extra_batches {
                    batches.push(ProbeBatch {
                        label: ProbeLabel::Extra(j),
                        indices: crate::data::sampler::extra_batch(
                            cfg.seed,
                            k,
                            j,
                            self.setup.data.len,
                            cfg.train.batch_size,
                        ),
                        augment: None,
                        listed: true,
                    });
                }
            }
            let measured = if batches.is_empty() {
                Vec::new()
            } else {
                let params: Vec<Tensor> = model.params().into_iter().map(|(_, t)| t).collect();
                let dist = tch::no_grad(|| reduce::dist_sq(&params, reference)).sqrt();
                landscape.minibatch_rows(
                    model,
                    data,
                    k,
                    &batches,
                    reference,
                    dist,
                    RowSource::Replay,
                )
            };
            (measured, train)
        };
        let (measured, train) = measured;
        set_tf32(true)?;
        // The training step, with the row taken from its own pass (shared).
        let mut shared_row = None;
        let (shared, skew) = (self.shared, self.skew);
        let u = crate::train::update_observed(cfg, self.setup, opt, k, recorded, |o| {
            if !shared {
                return Ok(());
            }
            let (setup, per, indices, gn) = (o.setup, o.per, o.indices, o.grad_norm);
            // f_{i_k}(x^K) on the step's own minibatch tensors: the values
            // the probe builds again from the indices.
            let loss_ref = landscape.loss_ref_of_batch(o.batch, indices.len());
            debug_assert_eq!(indices, &train.indices[..]);
            let model = &setup.model;
            let n = indices.len() as f64;
            let mut sum = 0.0;
            sum += per
                .to_kind(Kind::Double)
                .sum(Kind::Double)
                .double_value(&[]);
            let params: Vec<Tensor> = model.params().into_iter().map(|(_, p)| p).collect();
            let mut all_defined = true;
            let grads: Vec<Tensor> = params
                .iter()
                .map(|p| {
                    Some(p.grad()).filter(Tensor::defined).unwrap_or_else(|| {
                        all_defined = false;
                        p.zeros_like()
                    })
                })
                .collect();
            // One pass for <g, x^k − x^K> and ||x^k − x^K||², the same bits
            // as the probe's dot_diff and dist_sq.
            let (inner, dist_sq) =
                tch::no_grad(|| reduce::dot_diff_and_dist_sq(&grads, &params, reference));
            // The training step's gradient norm is the probe's when every
            // parameter has a gradient: the same list, the same reduction.
            let grad_norm = if all_defined {
                gn
            } else {
                tch::no_grad(|| reduce::norm_sq(&grads).sqrt())
            };
            let dist = dist_sq.sqrt();
            let loss_k = if skew {
                f64::from_bits((sum / n).to_bits() + 1)
            } else {
                sum / n
            };
            let m = Measurement {
                loss_k,
                loss_ref,
                inner,
                grad_norm,
            };
            shared_row = Some(landscape.row(k, &train, &m, dist, RowSource::Replay));
            Ok(())
        })?;
        self.check_step(k, seg, &u)?;
        if self.perturb == Some(k) {
            let (_, p) = &self.setup.model.params()[0];
            let mut p = p.shallow_clone();
            tch::no_grad(|| {
                let _ = p.g_mul_scalar_(1.0 + 1e-6);
            });
        }
        let mut measured = measured.into_iter();
        let train_row = if self.shared {
            let row = shared_row.expect("a finite step calls its observer");
            if self.on_disk.contains(&k) {
                let probe_row = measured.next().expect("measured at a stored iterate");
                if !same_row(&row, &probe_row) {
                    return Err(SharedMismatch {
                        message: format!(
                            "step {k}: the row taken from the training step's pass (loss {:e}, inner {:e}, grad_norm {:e}) differs from the probe's own measurement (loss {:e}, inner {:e}, grad_norm {:e})",
                            row.loss_k, row.inner, row.grad_norm,
                            probe_row.loss_k, probe_row.inner, probe_row.grad_norm
                        ),
                    }
                    .into());
                }
            }
            row
        } else {
            measured.next().expect("the train row is measured first")
        };
        rows.push(train_row);
        rows.extend(measured);
        Ok(())
    }

    /// A logged run's minibatch and learning rate of step k, as steps.parquet
    /// records them (None for abcond's own runs, whose sampler and schedule
    /// re-create them).
    fn recorded(&self, k: u64) -> Result<Option<crate::train::Recorded<'a>>> {
        if !self.logged {
            return Ok(None);
        }
        let steps: &'a [StepRow] = self.steps;
        let row = steps
            .get(k as usize)
            .filter(|r| r.step == k as i64)
            .ok_or_else(|| {
                anyhow::anyhow!("{}: no row for step {k}", self.dir.steps().display())
            })?;
        let indices = row
            .batch_indices
            .as_deref()
            .filter(|i| !i.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: step {k} records no minibatch (batch_indices), which the replay of a logged run needs",
                    self.dir.steps().display()
                )
            })?;
        Ok(Some(crate::train::Recorded {
            indices,
            lr: row.lr,
        }))
    }

    /// The replayed update of step k must be the recorded one, bit for bit.
    /// A logged loop computed its loss and gradient norm with its own
    /// reductions (the mean of the per-example losses in some order, a norm
    /// summed tensor by tensor), so those two are compared to 1e-5 relative;
    /// the bit-for-bit check of such a run is the stored iterates'.
    fn check_step(&self, k: u64, seg: Segment, u: &crate::train::Update) -> Result<()> {
        let rec = &self.steps[k as usize];
        let close = |a: f64, b: f64| {
            if self.logged {
                (a - b).abs() <= 1e-5 * a.abs().max(b.abs()) || a.to_bits() == b.to_bits()
            } else {
                a.to_bits() == b.to_bits()
            }
        };
        let same = rec.step == k as i64
            && close(rec.loss, u.loss)
            && close(rec.grad_norm, u.grad_norm)
            && rec.lr.to_bits() == u.lr.to_bits()
            && rec.step_size.map(f64::to_bits) == u.step_size.map(f64::to_bits);
        if !same {
            bail!(
                "determinism broke at step {k} ({seg}): steps.parquet records loss {:e}, gradient norm {:e}, lr {:e}, the replay gives loss {:e}, gradient norm {:e}, lr {:e}. {}; no rows of this segment are written",
                rec.loss,
                rec.grad_norm,
                rec.lr,
                u.loss,
                u.grad_norm,
                u.lr,
                self.origin()
            );
        }
        Ok(())
    }

    /// The replayed x^k must be the stored snapshot, bit for bit.
    fn check_iterate(&self, k: u64, seg: Segment) -> Result<()> {
        let path = self.dir.snapshot(k);
        let stored = tensors::read(&path, Device::Cpu)
            .with_context(|| format!("reading the stored iterate x^{k} to check the replay"))?;
        tensors::check_identity(&stored, &path, "iterate", &self.manifest.run_id, Some(k))?;
        for t in self.setup.model.tensors() {
            let same = stored.get(&t.name).is_some_and(|s| {
                s.tensor.size() == t.tensor.size()
                    && s.tensor.equal(&t.tensor.to_device(Device::Cpu))
            });
            if !same {
                bail!(
                    "determinism broke before step {k} ({seg}): tensor `{}` of the replayed x^{k} differs from the stored {}, although every step record up to step {} matched. {}; no rows of this segment are written",
                    t.name,
                    path.display(),
                    k.saturating_sub(1),
                    self.origin()
                );
            }
        }
        Ok(())
    }

    /// Where the run came from, against this process: for the error that
    /// says determinism broke.
    fn origin(&self) -> String {
        let m = self.manifest;
        if let Some(t) = &m.trainer {
            let devices: BTreeSet<&str> = m.sessions.iter().map(|s| s.device.as_str()).collect();
            return format!(
                "The run was logged by {} from a PyTorch loop (torch {}, {}) on {}; this replay is abcond {} (torch {}) on {}, re-running abcond's {} on the recorded minibatches and learning rates. It matches the loop bit for bit only when the loop's gradient is that of the mean of the exported module's per-example losses (the loss with reduction mean), its optimiser torch.optim.SGD, Adam or AdamW on the CPU (single-tensor, foreach=False), with this torch build and the same number of threads, and nothing else changes the weights; probe its snapshots without --replay",
                t.name,
                t.torch_version,
                t.optimizer.as_deref().unwrap_or("its optimiser"),
                devices.into_iter().collect::<Vec<_>>().join(", "),
                env!("CARGO_PKG_VERSION"),
                env!("ABCOND_TORCH_VERSION"),
                crate::torch::device::name(self.setup.device),
                self.cfg.optim.name.name()
            );
        }
        let devices: BTreeSet<&str> = m.sessions.iter().map(|s| s.device.as_str()).collect();
        format!(
            "The run was trained by abcond {} ({}) on {}; this replay is abcond {} ({}) on {}. A run trained by another build or on another device cannot be replayed bit for bit (and a changed data or snapshot file breaks it too); probe its snapshots without --replay",
            m.provenance.abcond_version,
            m.provenance.git_commit,
            devices.into_iter().collect::<Vec<_>>().join(", "),
            env!("CARGO_PKG_VERSION"),
            env!("ABCOND_GIT_COMMIT"),
            crate::torch::device::name(self.setup.device)
        )
    }
}

/// The row of the shared pass differed from the separate measurement at a
/// stored iterate: the segment is replayed again with every row measured
/// separately.
#[derive(Debug)]
struct SharedMismatch {
    message: String,
}

impl std::fmt::Display for SharedMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SharedMismatch {}

/// Two rows equal bit for bit.
pub fn same_row(a: &LandscapeRow, b: &LandscapeRow) -> bool {
    let bits = |r: &LandscapeRow| {
        [r.loss_k, r.loss_ref, r.inner, r.grad_norm, r.dist, r.cos].map(f64::to_bits)
    };
    a.step == b.step
        && a.probe == b.probe
        && a.batch_size == b.batch_size
        && a.batch_indices == b.batch_indices
        && a.ref_step == b.ref_step
        && bits(a) == bits(b)
}

/// The replay rows of `segments`, read from their parts, by step.
pub fn read_rows(
    dir: &RunDir,
    run_id: &str,
    segments: &[Segment],
    fp: &str,
) -> Result<BTreeMap<i64, Vec<LandscapeRow>>> {
    let mut out: BTreeMap<i64, Vec<LandscapeRow>> = BTreeMap::new();
    for &s in segments {
        let path = dir.replay_part(s.start, s.end);
        if !part_done(dir, s, fp) {
            bail!(
                "the replay of {s} is missing or was made with other settings ({}); run `abcond probe {} --replay` (or the missing --shard) first",
                path.display(),
                dir.root.display()
            );
        }
        let (rows, meta) = tables::read_landscape(&path).with_context(|| {
            format!("gathering the replay of {s} (delete the file and replay again: `abcond probe {} --replay`)", dir.root.display())
        })?;
        if meta.get("abcond.run_id").map(String::as_str) != Some(run_id) {
            bail!(
                "{}: holds the replay of run {:?}, not of {run_id:?} (copied from another run?); delete it and replay again",
                path.display(),
                meta.get("abcond.run_id").cloned().unwrap_or_default()
            );
        }
        for r in rows {
            if r.source != RowSource::Replay || r.step < s.start as i64 || r.step >= s.end as i64 {
                bail!(
                    "{}: holds a row of step {} ({}), outside the segment's replay rows",
                    path.display(),
                    r.step,
                    r.source
                );
            }
            out.entry(r.step).or_default().push(r);
        }
    }
    Ok(out)
}

/// Merges replay rows into the snapshot probe's rows: at a step the snapshot
/// probe measured, its `train` row must equal the replay's bit for bit (the
/// replay's rows of that step are then dropped); elsewhere the replay's rows
/// are kept. Returns the rows ordered by step, and how many steps were
/// compared.
pub fn merge(
    snapshot_rows: Vec<LandscapeRow>,
    mut replay: BTreeMap<i64, Vec<LandscapeRow>>,
) -> Result<(Vec<LandscapeRow>, usize)> {
    let mut by_step: BTreeMap<i64, Vec<LandscapeRow>> = BTreeMap::new();
    for r in snapshot_rows {
        by_step.entry(r.step).or_default().push(r);
    }
    let mut compared = 0;
    for (k, rows) in &by_step {
        let Some(replayed) = replay.remove(k) else {
            continue;
        };
        let (Some(snap), Some(rep)) = (
            rows.iter().find(|r| r.probe == ProbeLabel::Train),
            replayed.iter().find(|r| r.probe == ProbeLabel::Train),
        ) else {
            continue;
        };
        if !same_row(snap, rep) {
            bail!(
                "step {k}: the replayed `train` row (loss {:e}, inner {:e}) differs from the snapshot probe's (loss {:e}, inner {:e}); the replay re-created another x^{k} than the snapshot holds",
                rep.loss_k,
                rep.inner,
                snap.loss_k,
                snap.inner
            );
        }
        compared += 1;
    }
    for (k, rows) in replay {
        by_step.entry(k).or_default().extend(rows);
    }
    Ok((by_step.into_values().flatten().collect(), compared))
}
