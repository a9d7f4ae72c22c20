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

pub mod config;
pub mod curvature;
pub mod known;

use crate::config::{Config, ProbeConfig};
use crate::data::augment::AugmentAt;
use crate::data::sampler::{self, Sampler};
use crate::data::Dataset;
use crate::model::{Mode, Model};
use crate::run::{ProbeInfo, ProbeTiming, RunDir, Status};
use crate::store::label::ProbeLabel;
use crate::store::tables::{self, LandscapeRow};
use crate::store::tensors;
use crate::store::writer::Writer;
use crate::torch::reduce;
use crate::util::progress::{note, Progress};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Instant;
use tch::{Kind, Tensor};

/// f_i(x), and ∇f_i(x) left in the parameters' `.grad()`, for the examples
/// `indices`, processed `chunk` examples at a time; `at`: augmented as that
/// training step saw them (None: un-augmented).
pub fn loss_and_grad(
    model: &Model,
    data: &Dataset,
    indices: &[i64],
    chunk: usize,
    mode: Mode,
    at: Option<AugmentAt>,
) -> f64 {
    model.zero_grad();
    let n = indices.len() as f64;
    let mut sum = 0.0;
    for part in indices.chunks(chunk.max(1)) {
        let per = model.per_example_loss(&data.batch_for(part, at), mode);
        sum += per
            .to_kind(Kind::Double)
            .sum(Kind::Double)
            .double_value(&[]);
        (per.sum(per.kind()) / n).backward();
    }
    sum / n
}

/// f_i(x) without gradients.
pub fn loss_only(
    model: &Model,
    data: &Dataset,
    indices: &[i64],
    chunk: usize,
    mode: Mode,
    at: Option<AugmentAt>,
) -> f64 {
    tch::no_grad(|| {
        let mut sum = 0.0;
        for part in indices.chunks(chunk.max(1)) {
            let per = model.per_example_loss(&data.batch_for(part, at), mode);
            sum += per
                .to_kind(Kind::Double)
                .sum(Kind::Double)
                .double_value(&[]);
        }
        sum / indices.len() as f64
    })
}

/// The measurements of one probe minibatch at x^k (in `model`) against x^K.
pub struct Measurement {
    pub loss_k: f64,
    pub loss_ref: f64,
    pub inner: f64,
    pub grad_norm: f64,
}

#[allow(clippy::too_many_arguments)]
pub fn measure(
    model: &Model,
    reference: &[Tensor],
    data: &Dataset,
    indices: &[i64],
    loss_ref: f64,
    chunk: usize,
    mode: Mode,
    at: Option<AugmentAt>,
) -> Measurement {
    let loss_k = loss_and_grad(model, data, indices, chunk, mode, at);
    let params: Vec<Tensor> = model.params().into_iter().map(|(_, p)| p).collect();
    // A parameter the loss does not use has no gradient (it is dropped
    // before the backward pass): its gradient is zero.
    let grads: Vec<Tensor> = params
        .iter()
        .map(|p| {
            Some(p.grad())
                .filter(Tensor::defined)
                .unwrap_or_else(|| p.zeros_like())
        })
        .collect();
    let (inner, grad_norm) = tch::no_grad(|| {
        (
            reduce::dot_diff(&grads, &params, reference),
            reduce::norm_sq(&grads).sqrt(),
        )
    });
    // The gradient is used up: dropped now, it is not held through the next
    // minibatch's forward pass at the reference point (a model's size less at
    // that pass's peak; docs/benchmarks-storage.md).
    drop(grads);
    model.zero_grad();
    Measurement {
        loss_k,
        loss_ref,
        inner,
        grad_norm,
    }
}

/// The config of a run with `--set` overrides applied; only `probe.*` and
/// `device` may change after training.
pub fn probe_config(cfg: &Config, overrides: &[String]) -> Result<Config> {
    if overrides.is_empty() {
        return Ok(cfg.clone());
    }
    let mut tree = serde_yaml::to_value(cfg)?;
    for o in overrides {
        let key = crate::config::apply_override(&mut tree, o)?;
        if !(key == "device" || key == "probe" || key.starts_with("probe.")) {
            bail!("--set {o}: only probe.* and device can be changed when probing a trained run (the run's training settings are fixed)");
        }
    }
    let c: Config = serde_path_to_error::deserialize(tree)
        .map_err(|e| anyhow!("--set: key `{}`: {}", e.path(), e.inner()))?;
    c.resolve()
}

/// A stable fingerprint of the probe settings (parts made with other settings
/// are measured again).
fn fingerprint(p: &ProbeConfig) -> String {
    let mut p = p.clone();
    p.steps = None; // which snapshots are selected does not change a part
    p.include_final = false;
    p.curvature = Default::default(); // curvature has parts of its own
    format!(
        "{:016x}",
        crate::config::fnv1a64(serde_yaml::to_string(&p).unwrap().as_bytes())
    )
}

/// Shard `index` of `count` (`--shard i/N`, i 0-based like
/// `$SLURM_ARRAY_TASK_ID`): the selected snapshots at positions p of the
/// sorted selection with p mod N = i.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Shard, String> {
        let form =
            "expected I/N with 0 ≤ I < N, e.g. 0/4 (I is 0-based, like $SLURM_ARRAY_TASK_ID)";
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a shard: {form}"))?;
        let parse = |t: &str, what: &str| {
            t.trim().parse::<u64>().map_err(|_| {
                format!("{s:?}: the shard {what} {t:?} is not a whole number ≥ 0; {form}")
            })
        };
        let (index, count) = (parse(i, "index")?, parse(n, "count")?);
        if count == 0 {
            return Err(format!("{s:?}: the shard count must be at least 1; {form}"));
        }
        if index >= count {
            return Err(format!(
                "{s:?}: shard index {index} is out of range for {count} shards (0..={}); {form}",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// The steps of `selected` (sorted) that belong to this shard.
    pub fn pick(&self, selected: &[u64]) -> Vec<u64> {
        selected
            .iter()
            .enumerate()
            .filter(|(p, _)| *p as u64 % self.count == self.index)
            .map(|(_, &k)| k)
            .collect()
    }
}

/// Where the snapshots of a probe stand after one shard finished.
pub struct ShardProgress {
    pub shard: Shard,
    /// Snapshots of this shard.
    pub mine: usize,
    /// Selected snapshots (all shards) whose parts are complete with the
    /// current settings (landscape, and curvature when enabled).
    pub done: usize,
    pub selected: usize,
}

pub struct ProbeOutcome {
    /// The gathered rows (empty for a shard, which gathers nothing).
    pub rows: Vec<LandscapeRow>,
    pub probed_now: usize,
    pub seconds_per_snapshot: Option<f64>,
    /// Set for a sharded probe.
    pub shard: Option<ShardProgress>,
}

/// Loads the iterate x^k of the run in `dir` into `model`, streaming (see
/// [`Model::load_from`]), after checking that the file is the iterate of step
/// k of run `run_id`.
pub(crate) fn load_snapshot(dir: &RunDir, model: &Model, run_id: &str, k: u64) -> Result<()> {
    let path = dir.snapshot(k);
    let reader = tensors::TensorReader::open(&path)?;
    reader.check_identity("iterate", run_id, Some(k))?;
    model.load_from(&reader, &path.display().to_string())
}

/// Whether the part at `path` exists and was written with fingerprint `fp`
/// under the metadata key `key`.
pub(crate) fn part_is_current(path: &std::path::Path, key: &str, fp: &str) -> bool {
    path.is_file()
        && tensors::read_meta(path)
            .ok()
            .and_then(|m| m.get(key).cloned())
            .as_deref()
            == Some(fp)
}

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
            match manifest.status {
                Status::Diverged => "this run diverged, so it has no final iterate".to_string(),
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
    let p = cfg.probe.clone();
    if p.cloud.is_some() {
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
    let snapshots = dir.snapshot_steps()?;
    if !snapshots.contains(&total) {
        bail!(
            "the final iterate x^K (step {total}) is missing: expected {}",
            dir.snapshot(total).display()
        );
    }
    let mut selected: Vec<u64> = match &p.steps {
        None => snapshots.clone(),
        Some(list) => {
            if let Some(k) = list.iter().find(|k| !snapshots.contains(k)) {
                bail!(
                    "key `probe.steps` lists step {k}, which has no snapshot; snapshots exist for steps {:?}",
                    snapshots
                );
            }
            let mut l = list.clone();
            l.sort_unstable();
            l.dedup();
            l
        }
    };
    // x^K is the reference (inner = dist = 0 there): probed when asked for
    // with include_final or by listing it in probe.steps.
    let listed_final = p.steps.as_ref().is_some_and(|l| l.contains(&total));
    if !p.include_final && !listed_final {
        selected.retain(|&k| k != total);
    }
    let fp = fingerprint(&p);
    let is_current = |k: u64| part_is_current(&dir.probe_part(k), "abcond.probe_fingerprint", &fp);
    let mine = match shard {
        Some(s) => s.pick(&selected),
        None => selected.clone(),
    };
    let todo: Vec<u64> = mine.iter().copied().filter(|&k| !is_current(k)).collect();

    let started = crate::util::now_rfc3339();
    let mut seconds_per_snapshot = None;
    let mut timing = None;
    if !todo.is_empty() {
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
        let reference_model = Model::build(&cfg.model, &data, device, cfg.seed)?;
        load_snapshot(dir, &reference_model, &manifest.run_id, total)?;
        let reference: Vec<Tensor> = reference_model
            .params()
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        let (steps, _) = tables::read_steps(&dir.steps())?;
        let mut rebuilt = Sampler::new(data.len, cfg.train.batch_size, cfg.seed)?;
        let mode = Mode::Measure(p.batchnorm);
        let chunk = p.chunk_size as usize;
        let full_indices: Option<Vec<i64>> = p.full.then(|| match p.full_subset {
            Some(m) => sampler::full_subset(cfg.seed, data.len, m),
            None => (0..data.len as i64).collect(),
        });
        let mut full_ref: Option<f64> = None;
        note(
            quiet,
            &format!(
                "probing {} snapshots of {} on {} ({} minibatches of {} per snapshot{}; BatchNorm policy {})",
                todo.len(),
                dir.root.display(),
                crate::torch::device::name(device),
                1 + p.extra_batches,
                cfg.train.batch_size,
                match &full_indices {
                    Some(f) => format!(" + full data ({} examples)", f.len()),
                    None => String::new(),
                },
                p.batchnorm.name()
            ),
        );
        let mut progress = Progress::new("probe", todo.len() as u64, quiet);
        let t0 = Instant::now();
        let setup_seconds = (t0 - setup_start).as_secs_f64();
        let (mut read_seconds, mut write_seconds) = (0.0, 0.0);
        let mut snapshot_seconds = Vec::with_capacity(todo.len());
        // Parts are written in the background (store/writer.rs) while the next
        // snapshot is measured; all are on disk before anything reads them.
        let mut writer = Writer::new(2);
        for (done, &k) in todo.iter().enumerate() {
            let snapshot_start = Instant::now();
            load_snapshot(dir, &model, &manifest.run_id, k)
                .with_context(|| format!("probing snapshot step={k}"))?;
            read_seconds += snapshot_start.elapsed().as_secs_f64();
            // x_p: x^K, or Proj(x^k, S) loaded into reference_model.
            let projected = known::projection_reference(p.reference, &model, &reference_model)?;
            let is_projected = projected.is_some();
            let reference: Vec<Tensor> =
                projected.unwrap_or_else(|| reference.iter().map(Tensor::shallow_clone).collect());
            let params: Vec<Tensor> = model.params().into_iter().map(|(_, t)| t).collect();
            let dist = tch::no_grad(|| reduce::dist_sq(&params, &reference)).sqrt();
            // (label, examples, augmentation draw of the step that used them)
            let mut batches: Vec<(ProbeLabel, Vec<i64>, Option<AugmentAt>)> = Vec::new();
            if k < total {
                let row = steps
                    .get(k as usize)
                    .filter(|r| r.step == k as i64)
                    .ok_or_else(|| anyhow!("{}: no row for step {k}", dir.steps().display()))?;
                let stored = row.batch_indices.clone().ok_or_else(|| {
                    anyhow!(
                        "{}: step {k} has no batch_indices although it is a snapshot step",
                        dir.steps().display()
                    )
                })?;
                if stored != rebuilt.batch(k) {
                    bail!(
                        "the minibatch of step {k} stored in {} differs from the one the sampler rebuilds from the seed; the data or the abcond version changed since training",
                        dir.steps().display()
                    );
                }
                let at = AugmentAt {
                    seed: cfg.seed,
                    step: k,
                };
                batches.push((ProbeLabel::Train, stored, Some(at)));
            }
            for j in 0..p.extra_batches {
                let idx = sampler::extra_batch(cfg.seed, k, j, data.len, cfg.train.batch_size);
                batches.push((ProbeLabel::Extra(j), idx, None));
            }
            let mut rows = Vec::new();
            for (label, idx, at) in &batches {
                let loss_ref = loss_only(&reference_model, &data, idx, chunk, mode, *at);
                let m = measure(&model, &reference, &data, idx, loss_ref, chunk, mode, *at);
                rows.push(row(
                    &manifest,
                    &cfg,
                    k,
                    total,
                    *label,
                    idx.len(),
                    &m,
                    dist,
                    Some(idx.clone()),
                ));
            }
            if let Some(full) = &full_indices {
                let loss_ref = if is_projected {
                    loss_only(&reference_model, &data, full, chunk, mode, None)
                } else {
                    *full_ref.get_or_insert_with(|| {
                        loss_only(&reference_model, &data, full, chunk, mode, None)
                    })
                };
                let m = measure(&model, &reference, &data, full, loss_ref, chunk, mode, None);
                // Null indices mean "all examples"; a subset is listed explicitly.
                let listed = p.full_subset.is_some().then(|| full.clone());
                rows.push(row(
                    &manifest,
                    &cfg,
                    k,
                    total,
                    ProbeLabel::Full,
                    full.len(),
                    &m,
                    dist,
                    listed,
                ));
            }
            model.zero_grad();
            let mut meta = vec![
                ("abcond.run_id", manifest.run_id.clone()),
                ("abcond.step", k.to_string()),
                ("abcond.probe_fingerprint", fp.clone()),
            ];
            // Provenance only: which `--shard` measured the part.
            meta.extend(shard.map(|s| ("abcond.shard", s.to_string())));
            let write_start = Instant::now();
            let part = dir.probe_part(k);
            writer.submit(move || tables::write_probe_part(&part, &rows, &meta))?;
            write_seconds += write_start.elapsed().as_secs_f64();
            progress.update(done as u64 + 1, || format!("step {k}"));
            snapshot_seconds.push(snapshot_start.elapsed().as_secs_f64());
        }
        let write_start = Instant::now();
        writer.finish()?;
        write_seconds += write_start.elapsed().as_secs_f64();
        progress.finish();
        seconds_per_snapshot = Some(t0.elapsed().as_secs_f64() / todo.len() as f64);
        timing = crate::run::median(&mut snapshot_seconds).map(|m| ProbeTiming {
            setup_seconds,
            snapshots: todo.len() as u64,
            seconds_per_snapshot_median: m,
            read_seconds,
            write_seconds,
        });
        note(
            quiet,
            &format!(
                "probed {} snapshots in {} ({:.3} s per snapshot)",
                todo.len(),
                crate::util::human_duration(t0.elapsed().as_secs_f64()),
                seconds_per_snapshot.unwrap()
            ),
        );
    } else {
        note(
            quiet,
            &format!(
                "all {} selected snapshots{} of {} are probed already",
                mine.len(),
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
        let curvature =
            crate::probe::curvature::measure(dir, &manifest, &cfg, device, &mine, shard, quiet)?;
        let curvature_fp = curvature
            .is_some()
            .then(|| crate::probe::curvature::fingerprint(&cfg));
        let done = selected
            .iter()
            .filter(|&&k| {
                is_current(k)
                    && curvature_fp.as_ref().is_none_or(|cfp| {
                        part_is_current(&dir.curvature_part(k), "abcond.curvature_fingerprint", cfp)
                    })
            })
            .count();
        return Ok(ProbeOutcome {
            rows: Vec::new(),
            probed_now: todo.len(),
            seconds_per_snapshot,
            shard: Some(ShardProgress {
                shard: s,
                mine: mine.len(),
                done,
                selected: selected.len(),
            }),
        });
    }

    // Gather the parts of the selected snapshots into landscape.parquet.
    let mut rows = Vec::new();
    for &k in &selected {
        let (mut part, _) = tables::read_landscape(&dir.probe_part(k))
            .with_context(|| format!("gathering the probe part of snapshot step={k}"))?;
        rows.append(&mut part);
    }
    let settings = serde_yaml::to_string(&p)?;
    let mut meta = vec![
        ("abcond.experiment", manifest.experiment.clone()),
        ("abcond.run_id", manifest.run_id.clone()),
        ("abcond.ref_step", total.to_string()),
        ("abcond.dtype", cfg.model.dtype.name().to_string()),
        ("abcond.batchnorm", p.batchnorm.name().to_string()),
        ("abcond.probe_settings", settings),
    ];
    meta.extend(known::reference_meta(&cfg));
    let swept = crate::run::swept_values(&manifest);
    let types = crate::run::swept_types(&manifest);
    tables::write_landscape_swept(&dir.landscape(), &rows, &meta, &swept, &types)?;
    // Points of an earlier cloud probe no longer describe landscape.parquet.
    if dir.cloud().is_file() {
        std::fs::remove_file(dir.cloud())?;
    }
    let curvature =
        crate::probe::curvature::measure(dir, &manifest, &cfg, device, &selected, None, quiet)?;
    if curvature.is_some() {
        crate::probe::curvature::gather(dir, &manifest, &cfg, &selected)?;
    }
    manifest.probe = Some(ProbeInfo {
        status: "completed".into(),
        started,
        ended: Some(crate::util::now_rfc3339()),
        device: crate::torch::device::name(device),
        settings: p,
        snapshots_probed: selected.len() as u64,
        rows: rows.len() as u64,
        seconds_per_snapshot,
        curvature_seconds_per_snapshot: curvature.and_then(|c| c.seconds_per_snapshot),
        reproducibility: Some(reproducibility),
        timing,
    });
    dir.write_manifest(&manifest)?;
    Ok(ProbeOutcome {
        rows,
        probed_now: todo.len(),
        seconds_per_snapshot,
        shard: None,
    })
}

#[allow(clippy::too_many_arguments)]
fn row(
    manifest: &crate::run::Manifest,
    cfg: &Config,
    k: u64,
    total: u64,
    probe: ProbeLabel,
    batch_size: usize,
    m: &Measurement,
    dist: f64,
    indices: Option<Vec<i64>>,
) -> LandscapeRow {
    LandscapeRow {
        experiment: manifest.experiment.clone(),
        run_id: manifest.run_id.clone(),
        seed: cfg.seed as i64,
        step: k as i64,
        probe,
        batch_size: batch_size as i64,
        loss_k: m.loss_k,
        loss_ref: m.loss_ref,
        inner: m.inner,
        grad_norm: m.grad_norm,
        dist,
        cos: m.inner / (m.grad_norm * dist),
        // The step of the reference iterate: K, or −1 when x_p = Proj(x^k, S).
        ref_step: if cfg.probe.reference == crate::config::Reference::Projection {
            -1
        } else {
            total as i64
        },
        batch_indices: indices,
    }
}

/// Counts of probe rows per snapshot step (for `inspect`).
pub fn coverage(rows: &[LandscapeRow]) -> BTreeMap<i64, usize> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry(r.step).or_insert(0) += 1;
    }
    m
}
