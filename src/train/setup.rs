//! What a training session is built from: the dataset, model and sampler of
//! the config, the number of steps K and the snapshot schedule (the steps whose
//! iterate x^k is written), and the `data.parquet` table a fresh run starts by
//! writing.

use crate::config::Config;
use crate::data::sampler::Sampler;
use crate::data::Dataset;
use crate::model::Model;
use crate::optim::schedule;
use crate::run::RunDir;
use crate::store::tables;
use anyhow::{bail, Result};
use std::collections::BTreeSet;
use tch::{Device, Kind, Tensor};

/// The steps whose iterate x^k is written: the union of the schedule's rules,
/// always with the final step K.
pub fn snapshot_steps(cfg: &crate::config::SnapshotConfig, total: u64) -> Result<BTreeSet<u64>> {
    use crate::config::validate::caps;
    let mut s = BTreeSet::new();
    if let Some(every) = cfg.every {
        let n = total / every.max(1) + 1;
        if n > caps::SNAPSHOTS {
            bail!(
                "key `snapshots.every` ({every}) gives {n} snapshots over {total} steps, more than abcond's limit of {} (each is a copy of the model on disk): raise it",
                caps::SNAPSHOTS
            );
        }
        s.extend((0..=total).step_by(every.max(1) as usize));
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
    /// What to do when the run's records are incomplete.
    pub recovery: super::Recovery,
}

impl Setup {
    pub fn new(cfg: &Config, device: Device) -> Result<Setup> {
        let data = Dataset::load(&cfg.data, cfg.model.dtype, device)?;
        let model = Model::build(&cfg.model, &data, device, cfg.seed)?;
        let sampler = Sampler::new(data.len, cfg.train.batch_size, cfg.seed)?;
        let total_steps = match (cfg.train.steps, cfg.train.epochs) {
            (Some(s), _) => s,
            (None, Some(e)) => e
                .checked_mul(sampler.steps_per_epoch())
                .filter(|&t| t <= crate::config::validate::caps::STEPS)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "key `train.epochs` ({e}) × {} steps per epoch is more than abcond's limit of {} steps",
                        sampler.steps_per_epoch(),
                        crate::config::validate::caps::STEPS
                    )
                })?,
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
            recovery: super::Recovery::Resume,
        })
    }
}

/// Writes `data.parquet`: which source row each example index is, and for
/// synthetic data the examples themselves.
pub fn write_data_table(dir: &RunDir, data: &Dataset) -> Result<()> {
    // Synthetic token data: features are the source tokens then the target
    // tokens (data read from files is named by source_index alone).
    let tokens =
        matches!(data.targets, crate::data::Targets::Tokens { .. }) && data.source_dir.is_none();
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
        crate::data::Targets::Tokens { .. }
        | crate::data::Targets::NextTokens { .. }
        | crate::data::Targets::Graphs { .. }
        | crate::data::Targets::Images { .. }
        | crate::data::Targets::Tensors => (None, None),
        crate::data::Targets::Clicks => {
            (None, Some(Vec::<f64>::try_from(y.to_kind(Kind::Double))?))
        }
    };
    let mut meta = vec![("abcond.dataset", data.kind.name().to_string())];
    if let Some(d) = &data.source_dir {
        meta.push(("abcond.source_dir", d.display().to_string()));
    }
    if !data.vocab.is_empty() {
        tables::write_vocab(&dir.vocab(), &data.vocab)?;
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
