//! The landscape pass of one snapshot: for each minibatch of x^k, the row
//! loss_k = f_i(x^k), loss_ref = f_i(x_p), inner = <∇f_i(x^k), x^k − x_p>,
//! grad_norm, dist = ||x^k − x_p|| and cos, with x_p = x^K (or Proj(x^k, S)
//! for known-answer problems under `probe.reference: projection`); and the
//! gather of the snapshots' parts into landscape.parquet.

use super::batch::{Batches, ProbeBatch};
use super::known;
use super::measure::{loss_only, measure, Measurement};
use super::replay::ReplayPlan;
use crate::config::{Config, Reference};
use crate::data::Dataset;
use crate::model::{Mode, Model};
use crate::run::{Manifest, ReplayInfo, RunDir};
use crate::store::label::RowSource;
use crate::store::tables::{self, LandscapeRow};
use crate::torch::reduce;
use anyhow::{Context, Result};
use tch::{Device, Tensor};

/// The reference side of the landscape pass, built once per probe.
pub struct Landscape<'a> {
    cfg: &'a Config,
    manifest: &'a Manifest,
    /// Holds x^K, or Proj(x^k, S) of the current snapshot.
    reference_model: Model,
    /// The parameters of x^K.
    reference: Vec<Tensor>,
    /// f(x^K) of the full data, measured once (x_p = x^K only).
    full_ref: Option<f64>,
    mode: Mode,
    chunk: usize,
}

impl<'a> Landscape<'a> {
    /// Loads x^K of the run in `dir` into a model of its own.
    pub fn new(
        dir: &RunDir,
        manifest: &'a Manifest,
        cfg: &'a Config,
        data: &Dataset,
        device: Device,
    ) -> Result<Landscape<'a>> {
        let reference_model = Model::build(&cfg.model, data, device, cfg.seed)?;
        dir.load_iterate(
            &reference_model,
            &manifest.run_id,
            manifest.training.total_steps,
        )?;
        let reference: Vec<Tensor> = reference_model
            .params()
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        Ok(Landscape {
            cfg,
            manifest,
            reference_model,
            reference,
            full_ref: None,
            mode: Mode::Measure(cfg.probe.batchnorm),
            chunk: cfg.probe.chunk_size as usize,
        })
    }

    /// The rows of snapshot k, loaded in `model`: the `train` minibatch (not
    /// at x^K), the extra minibatches and, with `probe.full`, the full data.
    pub fn rows(
        &mut self,
        model: &Model,
        data: &Dataset,
        k: u64,
        batches: &mut Batches,
    ) -> Result<Vec<LandscapeRow>> {
        let p = &self.cfg.probe;
        // x_p: x^K, or Proj(x^k, S) loaded into reference_model.
        let projected = known::projection_reference(p.reference, model, &self.reference_model)?;
        let is_projected = projected.is_some();
        let reference: Vec<Tensor> =
            projected.unwrap_or_else(|| self.reference.iter().map(Tensor::shallow_clone).collect());
        let params: Vec<Tensor> = model.params().into_iter().map(|(_, t)| t).collect();
        let dist = tch::no_grad(|| reduce::dist_sq(&params, &reference)).sqrt();
        let mut minibatches: Vec<ProbeBatch> = Vec::new();
        minibatches.extend(batches.train(k)?);
        for j in 0..p.extra_batches {
            minibatches.push(batches.extra(k, j));
        }
        let mut rows = self.minibatch_rows(
            model,
            data,
            k,
            &minibatches,
            &reference,
            dist,
            RowSource::Snapshot,
        );
        let (mode, chunk) = (self.mode, self.chunk);
        if p.full {
            let full = batches.full();
            let loss_ref = if is_projected {
                loss_only(
                    &self.reference_model,
                    data,
                    &full.indices,
                    chunk,
                    mode,
                    None,
                )
            } else {
                let reference_model = &self.reference_model;
                *self.full_ref.get_or_insert_with(|| {
                    loss_only(reference_model, data, &full.indices, chunk, mode, None)
                })
            };
            let m = measure(
                model,
                &reference,
                data,
                &full.indices,
                loss_ref,
                chunk,
                mode,
                None,
            );
            rows.push(self.row(k, full, &m, dist, RowSource::Snapshot));
        }
        model.zero_grad();
        Ok(rows)
    }

    /// The parameters of x^K (x_p under the default reference).
    pub fn reference(&self) -> &[Tensor] {
        &self.reference
    }

    /// f_i(x^K) of the minibatch `b` (the forward pass at the reference point).
    pub fn loss_ref(&self, data: &Dataset, b: &ProbeBatch) -> f64 {
        loss_only(
            &self.reference_model,
            data,
            &b.indices,
            self.chunk,
            self.mode,
            b.augment,
        )
    }

    /// f_i(x^K) of a minibatch of `n` examples already built as `batch` (in
    /// one chunk): what [`Landscape::loss_ref`] computes from its indices.
    pub fn loss_ref_of_batch(&self, batch: &crate::data::Batch, n: usize) -> f64 {
        debug_assert!(self.chunk >= n);
        tch::no_grad(|| {
            let mut sum = 0.0;
            let per = self.reference_model.per_example_loss(batch, self.mode);
            sum += per
                .to_kind(tch::Kind::Double)
                .sum(tch::Kind::Double)
                .double_value(&[]);
            sum / n as f64
        })
    }

    /// The rows of the `minibatches` at x^k (in `model`) against x_p =
    /// `reference`, ||x^k − x_p|| = `dist`: the measurement of every row of
    /// the snapshot probe and of the replay's exact path alike.
    #[allow(clippy::too_many_arguments)]
    pub fn minibatch_rows(
        &self,
        model: &Model,
        data: &Dataset,
        k: u64,
        minibatches: &[ProbeBatch],
        reference: &[Tensor],
        dist: f64,
        source: RowSource,
    ) -> Vec<LandscapeRow> {
        let (mode, chunk) = (self.mode, self.chunk);
        minibatches
            .iter()
            .map(|b| {
                let loss_ref = self.loss_ref(data, b);
                let m = measure(
                    model, reference, data, &b.indices, loss_ref, chunk, mode, b.augment,
                );
                self.row(k, b, &m, dist, source)
            })
            .collect()
    }

    /// Whether the probe's measurement of a minibatch is one forward and
    /// backward pass (no chunking), as a training step's is.
    pub fn unchunked(&self, batch_size: u64) -> bool {
        self.chunk as u64 >= batch_size
    }

    pub fn row(
        &self,
        k: u64,
        b: &ProbeBatch,
        m: &Measurement,
        dist: f64,
        source: RowSource,
    ) -> LandscapeRow {
        LandscapeRow {
            experiment: self.manifest.experiment.clone(),
            run_id: self.manifest.run_id.clone(),
            seed: self.cfg.seed as i64,
            step: k as i64,
            probe: b.label,
            batch_size: b.indices.len() as i64,
            loss_k: m.loss_k,
            loss_ref: m.loss_ref,
            inner: m.inner,
            grad_norm: m.grad_norm,
            dist,
            cos: m.inner / (m.grad_norm * dist),
            // The step of the reference iterate: K, or −1 when x_p = Proj(x^k, S).
            ref_step: if self.cfg.probe.reference == Reference::Projection {
                -1
            } else {
                self.manifest.training.total_steps as i64
            },
            batch_indices: b.row_indices(),
            source,
        }
    }
}

/// Gathers the landscape parts of the `selected` snapshots into
/// landscape.parquet (with the run's swept values as columns); returns the rows.
pub fn gather(
    dir: &RunDir,
    manifest: &Manifest,
    cfg: &Config,
    selected: &[u64],
    replay: Option<&ReplayPlan>,
) -> Result<(Vec<LandscapeRow>, Option<ReplayInfo>)> {
    let p = &cfg.probe;
    let mut rows = Vec::new();
    for &k in selected {
        let (mut part, _) = tables::read_landscape(&dir.probe_part(k))
            .with_context(|| format!("gathering the probe part of snapshot step={k}"))?;
        rows.append(&mut part);
    }
    let mut info = None;
    if let Some(plan) = replay {
        let replayed =
            super::replay::read_rows(dir, &manifest.run_id, &plan.all, &plan.fingerprint)?;
        let (merged, compared) = super::replay::merge(rows, replayed)?;
        rows = merged;
        info = Some(ReplayInfo {
            segments: plan.all.len() as u64,
            restart_points: plan.all.iter().map(|s| s.start).collect(),
            rows: rows
                .iter()
                .filter(|r| r.source == RowSource::Replay)
                .count() as u64,
            steps_compared: compared as u64,
            ..Default::default()
        });
    }
    let settings = serde_yaml::to_string(p)?;
    let mut meta = vec![
        ("abcond.experiment", manifest.experiment.clone()),
        ("abcond.run_id", manifest.run_id.clone()),
        ("abcond.ref_step", manifest.training.total_steps.to_string()),
        ("abcond.dtype", cfg.model.dtype.name().to_string()),
        ("abcond.batchnorm", p.batchnorm.name().to_string()),
        ("abcond.probe_settings", settings),
    ];
    meta.extend(known::reference_meta(cfg));
    if let Some(i) = &info {
        meta.push(("abcond.replay_segments", i.segments.to_string()));
        meta.push(("abcond.replay_steps_compared", i.steps_compared.to_string()));
    }
    let swept = crate::run::swept_values(manifest);
    let types = crate::run::swept_types(manifest);
    tables::write_landscape_swept(&dir.landscape(), &rows, &meta, &swept, &types)?;
    Ok((rows, info))
}
