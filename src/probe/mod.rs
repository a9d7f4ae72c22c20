//! Phase 2, probe: for each selected snapshot x^k and the final iterate x^K,
//! on the minibatch i_k that step k used, on E extra seeded minibatches and
//! (optionally) on the full training data, measures
//!
//!   loss_k = f_i(x^k), loss_ref = f_i(x^K), inner = <∇f_i(x^k), x^k − x^K>,
//!   grad_norm = ||∇f_i(x^k)||, dist = ||x^k − x^K||, cos = inner/(grad_norm·dist).
//!
//! f_i is the mean of the per-example losses of the minibatch (or of the
//! data), evaluated in measurement mode (dropout off, BatchNorm per the
//! recorded policy). With `data.augment`, the `train` row evaluates the
//! minibatch i_k augmented as step k saw it; `extra-*` and `full` rows use the
//! un-augmented examples (src/data/augment.rs). Per-example losses are summed in f64; gradients are
//! computed by autograd in the model dtype (summed over chunks of the full
//! data by autograd); every inner product and norm is accumulated in f64.
//! The probe never autocasts and never uses TF32, whatever the training did
//! (src/torch/reproducibility.rs; recorded under `probe.reproducibility`).
//!
//! Each snapshot's rows go to `probe-parts/step=<k>.parquet` as soon as they are
//! measured, so an interrupted probe resumes where it stopped; the parts are
//! then gathered into `landscape.parquet`.
//!
//! A long run can be probed in shards (`--shard i/N`, [`Shard`]): shard i
//! measures the selected snapshots at positions ≡ i (mod N) of the sorted
//! selection and writes only their parts — never `landscape.parquet`,
//! `curvature.parquet` or run.yaml — so shards may run concurrently on one run
//! directory. An unsharded `abcond probe` afterwards finds every part done and
//! only gathers.
//!
//! Known-answer problems may replace x^K by the exact projection Proj(x^k, S)
//! (`probe.reference: projection`) or probe a point cloud instead of the
//! snapshots (`probe.cloud`); both live in [`known`].
//!
//! The phase: [`plan`] selects the snapshots and the passes each needs,
//! [`batch`] builds the minibatches of a snapshot once for every pass, one
//! loop here loads the data and models once and, per snapshot, x^k once for
//! the [`landscape`] pass and the [`curvature`] pass (Hessian eigenvalues,
//! `probe.curvature`); [`measure`] holds the shared f64 measurements.

pub mod batch;
pub mod config;
pub mod curvature;
pub mod eval;
pub mod known;
pub mod landscape;
pub mod measure;
pub mod plan;
pub mod replay;

pub use plan::{probe_config, ProbeOutcome, Shard, ShardProgress};

use crate::config::{Config, ProbeConfig};
use crate::data::Dataset;
use crate::model::Model;
use crate::run::{Manifest, ProbeInfo, ProbeTiming, RunDir, Status};
use crate::store::tables::{self, LandscapeRow};
use crate::store::writer::Writer;
use crate::util::progress::{note, Progress};
use anyhow::{bail, Context, Result};
use batch::Batches;
use landscape::Landscape;
use plan::Plan;
use std::collections::BTreeMap;
use std::time::Instant;
use tch::Device;

/// Probes the run in `dir` (resuming: snapshots already probed with the same
/// settings are skipped) and writes `landscape.parquet`. The probe settings and
/// device are the run's, replaced by `settings` when given (`abcond run` passes
/// its config's), then by the `--set` overrides. With `shard`, probes only that
/// shard's snapshots and writes only their parts (see the module doc).
pub fn probe(
    dir: &RunDir,
    settings: Option<(&ProbeConfig, &str)>,
    overrides: &[String],
    shard: Option<Shard>,
    quiet: bool,
) -> Result<ProbeOutcome> {
    let mut manifest = dir.read_manifest()?;
    if manifest.status != Status::Completed {
        bail!(
            "{} has status {}: probing needs a completed training run (x^K is the reference); {}",
            dir.root.display(),
            manifest.status.name(),
            match (manifest.status, &manifest.trainer) {
                (Status::Diverged, _) => "this run diverged, so it has no final iterate".to_string(),
                (_, Some(t)) => format!(
                    "it was logged by {} from a PyTorch loop that has not called finish() (still running, or stopped or killed before the end), so it has no final iterate x^K; let the loop finish, or run the script again",
                    t.name
                ),
                _ => "resume it with `abcond train` on the same config first".to_string(),
            }
        );
    }
    let mut base = manifest.config.clone();
    if let Some((probe, device)) = settings {
        base.probe = probe.clone();
        base.device = device.to_string();
    }
    let cfg = probe_config(&base, overrides)?;
    if cfg.probe.cloud.is_some() {
        if let Some(s) = shard {
            bail!("--shard {s}: a point-cloud probe (probe.cloud) cannot be sharded; probe it without --shard");
        }
        return known::probe_cloud(dir, &mut manifest, &cfg, quiet);
    }
    let device = crate::torch::device::select(&cfg.device)?;
    // TF32 off, no autocast, deterministic algorithms on CUDA: for the
    // landscape rows and the curvature pass alike.
    let reproducibility =
        crate::torch::reproducibility::apply(device, crate::torch::reproducibility::Phase::Probe)?;
    let total = manifest.training.total_steps;
    let plan = Plan::new(dir, &cfg, total, shard)?;
    let replay_plan = if cfg.probe.replay {
        replay::check_replayable(&manifest, dir, &cfg)?;
        Some(replay::ReplayPlan::new(dir, &cfg, total, shard)?)
    } else {
        None
    };
    let started = crate::util::now_rfc3339();
    let measured = if plan.todo().is_empty() {
        Measured::default()
    } else {
        measure_snapshots(dir, &manifest, &cfg, device, &plan, shard, quiet)?
    };
    let replayed = match &replay_plan {
        Some(rp) if !rp.todo.is_empty() => {
            crate::torch::ops::cpu_cache_release();
            let r = replay::replay(dir, &manifest, &cfg, device, rp, shard, quiet)?;
            // Back to the probe's settings for whatever follows in this process.
            crate::torch::reproducibility::apply(
                device,
                crate::torch::reproducibility::Phase::Probe,
            )?;
            Some(r)
        }
        _ => None,
    };
    if plan.landscape.is_empty() {
        note(
            quiet,
            &format!(
                "all {} selected snapshots{} of {} are probed already",
                plan.mine.len(),
                shard.map(|s| format!(" of shard {s}")).unwrap_or_default(),
                dir.root.display()
            ),
        );
    }
    // The models are gone: blocks cached for their next step would only sit
    // beside what the gather and the analysis allocate.
    crate::torch::ops::cpu_cache_release();

    if let Some(s) = shard {
        // A shard writes parts only: the shared tables and run.yaml are left
        // to the gather, so that concurrent shards never race on them.
        return Ok(ProbeOutcome {
            rows: Vec::new(),
            probed_now: plan.landscape.len(),
            seconds_per_snapshot: measured.landscape_seconds_per_snapshot,
            shard: Some(ShardProgress {
                shard: s,
                mine: plan.mine.len(),
                done: plan.done(dir),
                selected: plan.selected.len(),
                segments: replay_plan
                    .as_ref()
                    .map(|rp| (rp.mine.len(), rp.done(dir), rp.all.len())),
            }),
        });
    }

    let (rows, replay_info) =
        landscape::gather(dir, &manifest, &cfg, &plan.selected, replay_plan.as_ref())?;
    let replay_info = replay_info.map(|mut info| {
        if let Some(r) = &replayed {
            info.steps_replayed_now = r.steps;
            info.seconds = Some(r.seconds);
            info.steps_per_second = (r.seconds > 0.0).then(|| r.steps as f64 / r.seconds);
            info.shared_pass = Some(r.shared_pass);
            info.reproducibility = r.reproducibility.clone();
        }
        info
    });
    // Points of an earlier cloud probe no longer describe landscape.parquet.
    if dir.cloud().is_file() {
        std::fs::remove_file(dir.cloud())?;
    }
    if cfg.probe.curvature.enabled {
        curvature::gather(dir, &manifest, &cfg, &plan.selected)?;
    }
    if cfg.probe.eval {
        // The probed snapshots and x^K (which the landscape leaves out unless
        // `probe.include_final`).
        let mut steps = plan.selected.clone();
        if !steps.contains(&total) {
            steps.push(total);
        }
        eval::measure(dir, &manifest.run_id, &cfg, device, &steps, quiet)?;
    }
    manifest.probe = Some(ProbeInfo {
        status: Status::Completed,
        started,
        ended: Some(crate::util::now_rfc3339()),
        device: crate::torch::device::name(device),
        settings: cfg.probe.clone(),
        snapshots_probed: plan.selected.len() as u64,
        rows: rows.len() as u64,
        seconds_per_snapshot: measured.landscape_seconds_per_snapshot,
        curvature_seconds_per_snapshot: measured.curvature_seconds_per_snapshot,
        reproducibility: Some(reproducibility),
        timing: measured.timing,
        replay: replay_info,
    });
    dir.write_manifest(&manifest)?;
    Ok(ProbeOutcome {
        rows,
        probed_now: plan.landscape.len(),
        seconds_per_snapshot: measured.landscape_seconds_per_snapshot,
        shard: None,
    })
}

/// What the snapshot loop took.
#[derive(Default)]
struct Measured {
    /// Mean seconds per snapshot of the landscape pass (reading x^k included).
    landscape_seconds_per_snapshot: Option<f64>,
    /// Mean seconds per snapshot of the curvature pass alone.
    curvature_seconds_per_snapshot: Option<f64>,
    timing: Option<ProbeTiming>,
}

/// The snapshot loop: loads the data, the model and (for the landscape pass)
/// x^K once; per snapshot that needs a pass, reads x^k once and runs the
/// landscape and curvature passes its parts need, handing each part to the
/// background writer.
fn measure_snapshots(
    dir: &RunDir,
    manifest: &Manifest,
    cfg: &Config,
    device: Device,
    plan: &Plan,
    shard: Option<Shard>,
    quiet: bool,
) -> Result<Measured> {
    let p = &cfg.probe;
    let todo = plan.todo();
    let setup_start = Instant::now();
    let data = Dataset::load(&cfg.data, cfg.model.dtype, device)?;
    if data.len != manifest.training.examples {
        bail!(
            "the data now has {} examples but the run was trained on {}; the data files changed since training",
            data.len,
            manifest.training.examples
        );
    }
    let model = Model::build(&cfg.model, &data, device, cfg.seed)?;
    model.check_measurable(
        p.batchnorm,
        p.chunk_size as usize,
        cfg.train.batch_size as usize,
    )?;
    let mut landscape = if plan.landscape.is_empty() {
        None
    } else {
        Some(Landscape::new(dir, manifest, cfg, &data, device)?)
    };
    let (steps, _) = tables::read_steps(&dir.steps())?;
    let mut batches = Batches::new(dir, cfg, data.len, manifest.training.total_steps, &steps)?;
    if manifest.trainer.is_some() {
        batches.use_recorded();
    }
    if !plan.landscape.is_empty() {
        note(
            quiet,
            &format!(
                "probing {} snapshots of {} on {} ({} minibatches of {} per snapshot{}; BatchNorm policy {})",
                plan.landscape.len(),
                dir.root.display(),
                crate::torch::device::name(device),
                1 + p.extra_batches,
                cfg.train.batch_size,
                if p.full {
                    format!(" + full data ({} examples)", batches.full().indices.len())
                } else {
                    String::new()
                },
                p.batchnorm.name()
            ),
        );
    }
    if !plan.curvature.is_empty() {
        note(quiet, &curvature::describe(cfg, plan.curvature.len()));
    }
    let mut progress = Progress::new("probe", todo.len() as u64, quiet);
    let t0 = Instant::now();
    let setup_seconds = (t0 - setup_start).as_secs_f64();
    let (mut read_seconds, mut write_seconds) = (0.0, 0.0);
    let (mut landscape_seconds, mut curvature_seconds) = (0.0, 0.0);
    let mut snapshot_seconds = Vec::with_capacity(plan.landscape.len());
    // Parts are written in the background (store/writer.rs) while the next
    // snapshot is measured; all are on disk before anything reads them.
    let mut writer = Writer::new(2);
    let provenance = |fingerprint_key: &'static str, fp: &str, k: u64| {
        let mut meta = vec![
            ("abcond.run_id", manifest.run_id.clone()),
            ("abcond.step", k.to_string()),
            (fingerprint_key, fp.to_string()),
        ];
        // Provenance only: which `--shard` measured the part.
        meta.extend(shard.map(|s| ("abcond.shard", s.to_string())));
        meta
    };
    for (done, &k) in todo.iter().enumerate() {
        let snapshot_start = Instant::now();
        dir.load_iterate(&model, &manifest.run_id, k)
            .with_context(|| format!("probing snapshot step={k}"))?;
        read_seconds += snapshot_start.elapsed().as_secs_f64();
        if let Some(landscape) = landscape.as_mut().filter(|_| plan.landscape.contains(&k)) {
            let rows = landscape.rows(&model, &data, k, &mut batches)?;
            let meta = provenance("abcond.probe_fingerprint", &plan.landscape_fingerprint, k);
            let write_start = Instant::now();
            let part = dir.probe_part(k);
            writer.submit(move || tables::write_probe_part(&part, &rows, &meta))?;
            write_seconds += write_start.elapsed().as_secs_f64();
            let s = snapshot_start.elapsed().as_secs_f64();
            landscape_seconds += s;
            snapshot_seconds.push(s);
        }
        if let Some(fp) = plan
            .curvature_fingerprint
            .as_ref()
            .filter(|_| plan.curvature.contains(&k))
        {
            let curvature_start = Instant::now();
            let rows = curvature::rows(&model, &data, cfg, manifest, k, &mut batches)
                .with_context(|| format!("curvature at snapshot step={k}"))?;
            let meta = provenance("abcond.curvature_fingerprint", fp, k);
            let part = dir.curvature_part(k);
            writer.submit(move || tables::write_curvature(&part, &rows, &meta))?;
            curvature_seconds += curvature_start.elapsed().as_secs_f64();
        }
        progress.update(done as u64 + 1, || format!("step {k}"));
    }
    let write_start = Instant::now();
    writer.finish()?;
    write_seconds += write_start.elapsed().as_secs_f64();
    progress.finish();
    let mut measured = Measured::default();
    if !plan.landscape.is_empty() {
        let n = plan.landscape.len();
        let per = landscape_seconds / n as f64;
        measured.landscape_seconds_per_snapshot = Some(per);
        measured.timing = crate::run::median(&mut snapshot_seconds).map(|m| ProbeTiming {
            setup_seconds,
            snapshots: n as u64,
            seconds_per_snapshot_median: m,
            read_seconds,
            write_seconds,
        });
        note(
            quiet,
            &format!(
                "probed {n} snapshots in {} ({per:.3} s per snapshot)",
                crate::util::human_duration(landscape_seconds)
            ),
        );
    }
    if !plan.curvature.is_empty() {
        let n = plan.curvature.len();
        let per = curvature_seconds / n as f64;
        measured.curvature_seconds_per_snapshot = Some(per);
        note(
            quiet,
            &format!(
                "curvature of {n} snapshots in {} ({per:.3} s per snapshot)",
                crate::util::human_duration(curvature_seconds),
            ),
        );
    }
    Ok(measured)
}

/// Counts of probe rows per snapshot step (for `inspect`).
pub fn coverage(rows: &[LandscapeRow]) -> BTreeMap<i64, usize> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry(r.step).or_insert(0) += 1;
    }
    m
}
