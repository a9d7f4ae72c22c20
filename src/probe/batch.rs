//! The minibatches of a snapshot, built once for every pass: which examples
//! a loss f_i averages over, how they are augmented, and how a row records
//! them.
//!
//! - `train`: the minibatch i_k that step k used, read from steps.parquet and
//!   checked against the sampler rebuilt from the seed, augmented as step k saw
//!   it (no `train` row at x^K: it has no step of its own);
//! - `extra-<j>`: seeded minibatches, a pure function of (seed, k, j),
//!   un-augmented;
//! - `full`: all training examples (or a seeded `probe.full_subset`),
//!   un-augmented; a row lists its indices only for a subset.

use crate::config::Config;
use crate::data::augment::AugmentAt;
use crate::data::sampler::{self, Sampler};
use crate::run::RunDir;
use crate::store::label::ProbeLabel;
use crate::store::tables::StepRow;
use anyhow::{anyhow, bail, Result};

/// One loss f_i a pass measures at a snapshot.
#[derive(Debug, Clone)]
pub struct ProbeBatch {
    pub label: ProbeLabel,
    /// The examples f_i averages over.
    pub indices: Vec<i64>,
    /// The augmentation draw of the step that used them (`train` only).
    pub augment: Option<AugmentAt>,
    /// Whether rows list the indices (not for the whole data set).
    pub listed: bool,
}

impl ProbeBatch {
    /// The tag of the curvature pass's seeded start vector: 0 train, 1 full,
    /// 2 + j extra j (the numbers of curvature.parquet depend on it).
    pub fn curvature_tag(&self) -> u64 {
        match self.label {
            ProbeLabel::Train => 0,
            ProbeLabel::Full => 1,
            ProbeLabel::Extra(j) => 2 + j,
            ProbeLabel::Component(i) => 2 + i,
        }
    }

    /// The indices as a row records them (None: all examples).
    pub fn row_indices(&self) -> Option<Vec<i64>> {
        self.listed.then(|| self.indices.clone())
    }
}

/// Builds the [`ProbeBatch`]es of the snapshots of one run.
pub struct Batches<'a> {
    dir: &'a RunDir,
    seed: u64,
    batch_size: u64,
    examples: u64,
    /// K: x^K has no `train` minibatch.
    total: u64,
    steps: &'a [StepRow],
    sampler: Sampler,
    full: ProbeBatch,
    /// The run's minibatches are the ones its loop recorded (a run logged by
    /// abcond.Logger), not the sampler's: they are checked against the data
    /// set's size, not rebuilt.
    recorded: bool,
}

impl<'a> Batches<'a> {
    /// For the run in `dir` with `examples` training examples and final step
    /// `total`; `steps` are the rows of its steps.parquet.
    pub fn new(
        dir: &'a RunDir,
        cfg: &Config,
        examples: u64,
        total: u64,
        steps: &'a [StepRow],
    ) -> Result<Batches<'a>> {
        let full = match cfg.probe.full_subset {
            Some(m) => sampler::full_subset(cfg.seed, examples, m),
            None => (0..examples as i64).collect(),
        };
        Ok(Batches {
            dir,
            seed: cfg.seed,
            batch_size: cfg.train.batch_size,
            examples,
            total,
            steps,
            sampler: Sampler::new(examples, cfg.train.batch_size, cfg.seed)?,
            full: ProbeBatch {
                label: ProbeLabel::Full,
                indices: full,
                augment: None,
                listed: cfg.probe.full_subset.is_some(),
            },
            recorded: false,
        })
    }

    /// Takes the minibatches i_k as steps.parquet records them (a run logged
    /// from a PyTorch loop): each must be non-empty with every index in
    /// [0, examples), and no augmentation is applied.
    pub fn use_recorded(&mut self) {
        self.recorded = true;
    }

    /// The minibatch i_k of step k, as stored in steps.parquet and rebuilt by
    /// the sampler (they must agree); None at x^K.
    pub fn train(&mut self, k: u64) -> Result<Option<ProbeBatch>> {
        if k >= self.total {
            return Ok(None);
        }
        let steps_file = self.dir.steps();
        let row = self
            .steps
            .get(k as usize)
            .filter(|r| r.step == k as i64)
            .ok_or_else(|| anyhow!("{}: no row for step {k}", steps_file.display()))?;
        let stored = row.batch_indices.clone().ok_or_else(|| {
            anyhow!(
                "{}: step {k} has no batch_indices although it is a snapshot step",
                steps_file.display()
            )
        })?;
        if self.recorded {
            if stored.is_empty() {
                bail!(
                    "{}: step {k} records an empty minibatch",
                    steps_file.display()
                );
            }
            if let Some(i) = stored.iter().find(|&&i| i < 0 || i as u64 >= self.examples) {
                bail!(
                    "{}: the minibatch of step {k} holds example index {i}, outside the data set's 0..{} ({} examples): the loop logged indices of another data set",
                    steps_file.display(),
                    self.examples,
                    self.examples
                );
            }
            return Ok(Some(ProbeBatch {
                label: ProbeLabel::Train,
                indices: stored,
                augment: None,
                listed: true,
            }));
        }
        if stored != self.sampler.batch(k) {
            bail!(
                "the minibatch of step {k} stored in {} differs from the one the sampler rebuilds from the seed; the data or the abcond version changed since training",
                steps_file.display()
            );
        }
        Ok(Some(ProbeBatch {
            label: ProbeLabel::Train,
            indices: stored,
            augment: Some(AugmentAt {
                seed: self.seed,
                step: k,
            }),
            listed: true,
        }))
    }

    /// The j-th extra minibatch of snapshot k.
    pub fn extra(&self, k: u64, j: u64) -> ProbeBatch {
        ProbeBatch {
            label: ProbeLabel::Extra(j),
            indices: sampler::extra_batch(self.seed, k, j, self.examples, self.batch_size),
            augment: None,
            listed: true,
        }
    }

    /// The full data (or its seeded subset).
    pub fn full(&self) -> &ProbeBatch {
        &self.full
    }
}
