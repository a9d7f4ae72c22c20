//! The probe's known-answer extensions: x_p = Proj(x, S) instead of x^K
//! (`probe.reference: projection`), and the point cloud (`probe.cloud`): rows
//! at N seeded points uniform in a box instead of along the trajectory, so the
//! condition is checked on a region. Both need a model that knows S
//! (src/model/known); the config refuses them for other models.

use super::measure::{loss_only, measure, Measurement};
use crate::config::{CloudConfig, Config, Reference};
use crate::data::Dataset;
use crate::model::{Mode, Model};
use crate::run::{Manifest, ProbeInfo, RunDir};
use crate::store::label::ProbeLabel;
use crate::store::tables::{self, LandscapeRow};
use crate::util::progress::{note, Progress};
use crate::util::rng::{stream, Rng};
use anyhow::{anyhow, Context, Result};
use tch::{Kind, Tensor};

/// The coordinates x of a known-answer model (its one parameter `x`).
pub fn point_of(model: &Model) -> Result<Vec<f64>> {
    let (_, x) = model
        .params()
        .into_iter()
        .find(|(n, _)| n == "x")
        .ok_or_else(|| anyhow!("known-answer model without parameter `x`"))?;
    Ok(Vec::<f64>::try_from(
        x.to_kind(Kind::Double).to_device(tch::Device::Cpu),
    )?)
}

/// Writes the point `v` into the model's parameter `x`.
pub fn set_point(model: &Model, v: &[f64]) {
    for (name, mut t) in model.params() {
        if name == "x" {
            let src = Tensor::from_slice(v)
                .to_kind(t.kind())
                .to_device(t.device());
            tch::no_grad(|| t.copy_(&src));
        }
    }
}

/// Loads Proj(x^k, S) of the iterate in `model` into `reference_model` and
/// returns the reference parameters; `None` for the final-iterate reference
/// (the caller keeps x^K). The config guarantees the model knows S.
pub fn projection_reference(
    reference: Reference,
    model: &Model,
    reference_model: &Model,
) -> Result<Option<Vec<Tensor>>> {
    if reference == Reference::Final {
        return Ok(None);
    }
    let problem = model.known().ok_or_else(|| {
        anyhow!(
            "probe.reference: projection needs a known-answer model, not {}",
            model.kind.name()
        )
    })?;
    let xp = problem.project(&point_of(model)?);
    set_point(reference_model, &xp);
    Ok(Some(
        reference_model
            .params()
            .into_iter()
            .map(|(_, t)| t)
            .collect(),
    ))
}

/// Metadata of landscape.parquet saying what x_p is.
pub fn reference_meta(cfg: &Config) -> Vec<(&'static str, String)> {
    let p = &cfg.probe;
    let mut m = vec![("abcond.reference", p.reference.name().to_string())];
    if p.reference == Reference::Projection {
        if let Ok(problem) = crate::model::known::Problem::new(&cfg.model) {
            m.push(("abcond.minimisers", problem.minimisers.describe()));
        }
    }
    m.push((
        "abcond.points",
        if p.cloud.is_some() {
            "cloud"
        } else {
            "trajectory"
        }
        .to_string(),
    ));
    m
}

/// The N cloud points: uniform in [lo, hi]^d, drawn from the cloud seed.
pub fn cloud_points(c: &CloudConfig, run_seed: u64, dim: usize) -> Vec<Vec<f64>> {
    let mut rng = Rng::for_stream(c.seed.unwrap_or(run_seed), &[stream::PROBE_CLOUD]);
    let [lo, hi] = c.bounds;
    (0..c.points)
        .map(|_| (0..dim).map(|_| lo + (hi - lo) * rng.next_f64()).collect())
        .collect()
}

/// Probes the cloud of `cfg.probe.cloud` and writes landscape.parquet: per
/// point j (column `step` = j, `ref_step` = −1) one row per component i
/// (probe `component-<i>`, batch_indices [i]) and one `full` row, all against
/// x_p = Proj(x_j, S).
pub fn probe_cloud(
    dir: &RunDir,
    manifest: &mut Manifest,
    cfg: &Config,
    quiet: bool,
) -> Result<super::plan::ProbeOutcome> {
    let p = &cfg.probe;
    let cloud = p.cloud.as_ref().expect("cloud settings");
    let device = crate::torch::device::select(&cfg.device)?;
    let reproducibility =
        crate::torch::reproducibility::apply(device, crate::torch::reproducibility::Phase::Probe)?;
    let started = crate::util::now_rfc3339();
    let data = Dataset::load(&cfg.data, cfg.model.dtype, device)?;
    let model = Model::build(&cfg.model, &data, device, cfg.seed)?;
    let reference_model = Model::build(&cfg.model, &data, device, cfg.seed)?;
    let problem = model
        .known()
        .ok_or_else(|| anyhow!("probe.cloud needs a known-answer model"))?
        .clone();
    let points = cloud_points(cloud, cfg.seed, problem.dim);
    let mode = Mode::Measure(p.batchnorm);
    let chunk = p.chunk_size as usize;
    let n = data.len as i64;
    let all: Vec<i64> = (0..n).collect();
    note(
        quiet,
        &format!(
            "probing a cloud of {} points in [{}, {}]^{} of {} against Proj(x, S), S = {}",
            points.len(),
            cloud.bounds[0],
            cloud.bounds[1],
            problem.dim,
            cfg.model.kind().name(),
            problem.minimisers.describe()
        ),
    );
    let mut progress = Progress::new("cloud", points.len() as u64, quiet);
    let t0 = std::time::Instant::now();
    let mut rows = Vec::new();
    let projections: Vec<Vec<f64>> = points.iter().map(|x| problem.project(x)).collect();
    for (j, (x, xp)) in points.iter().zip(&projections).enumerate() {
        set_point(&model, x);
        set_point(&reference_model, xp);
        let reference: Vec<Tensor> = reference_model
            .params()
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        let dist = x
            .iter()
            .zip(xp)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            .sqrt();
        let mut batches: Vec<(ProbeLabel, Vec<i64>)> = (0..n)
            .map(|i| (ProbeLabel::Component(i as u64), vec![i]))
            .collect();
        if p.full {
            batches.push((ProbeLabel::Full, all.clone()));
        }
        for (label, idx) in &batches {
            let loss_ref = loss_only(&reference_model, &data, idx, chunk, mode, None);
            let m: Measurement =
                measure(&model, &reference, &data, idx, loss_ref, chunk, mode, None);
            rows.push(LandscapeRow {
                experiment: manifest.experiment.clone(),
                run_id: manifest.run_id.clone(),
                seed: cfg.seed as i64,
                step: j as i64,
                probe: *label,
                batch_size: idx.len() as i64,
                loss_k: m.loss_k,
                loss_ref: m.loss_ref,
                inner: m.inner,
                grad_norm: m.grad_norm,
                dist,
                cos: m.inner / (m.grad_norm * dist),
                ref_step: -1,
                batch_indices: label.is_minibatch().then(|| idx.clone()),
                source: crate::store::label::RowSource::Snapshot,
            });
        }
        progress.update(j as u64 + 1, || format!("point {j}"));
    }
    model.zero_grad();
    progress.finish();
    let seconds = t0.elapsed().as_secs_f64();
    note(
        quiet,
        &format!(
            "probed {} cloud points in {}",
            points.len(),
            crate::util::human_duration(seconds)
        ),
    );
    // Hessians of an earlier trajectory probe do not describe the cloud rows.
    std::fs::remove_file(dir.curvature()).ok();
    std::fs::remove_dir_all(dir.curvature_parts()).ok();
    let mut meta = vec![
        ("abcond.experiment", manifest.experiment.clone()),
        ("abcond.run_id", manifest.run_id.clone()),
        ("abcond.ref_step", "-1".to_string()),
        ("abcond.dtype", cfg.model.dtype.name().to_string()),
        ("abcond.batchnorm", p.batchnorm.name().to_string()),
        ("abcond.probe_settings", serde_yaml::to_string(p)?),
    ];
    meta.extend(reference_meta(cfg));
    tables::write_cloud(
        &dir.cloud(),
        &points,
        &projections,
        &[("abcond.run_id", manifest.run_id.clone())],
    )?;
    let swept = crate::run::swept_values(manifest);
    let types = crate::run::swept_types(manifest);
    tables::write_landscape_swept(&dir.landscape(), &rows, &meta, &swept, &types)
        .with_context(|| format!("writing {}", dir.landscape().display()))?;
    manifest.probe = Some(ProbeInfo {
        status: crate::run::Status::Completed,
        started,
        ended: Some(crate::util::now_rfc3339()),
        device: crate::torch::device::name(device),
        settings: p.clone(),
        snapshots_probed: 0,
        rows: rows.len() as u64,
        seconds_per_snapshot: None,
        curvature_seconds_per_snapshot: None,
        reproducibility: Some(reproducibility),
        timing: None,
        replay: None,
    });
    dir.write_manifest(manifest)?;
    Ok(super::plan::ProbeOutcome {
        rows,
        probed_now: points.len(),
        seconds_per_snapshot: None,
        shard: None,
    })
}
