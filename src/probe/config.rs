//! The `probe:` section of a config: which minibatches and snapshots the
//! probe measures, its reference point, BatchNorm policy, the Hessian
//! (curvature) pass and the known-answer point cloud.

use crate::model::config::{ModelKind, KNOWN_KINDS};
pub use crate::model::net::BatchNormPolicy;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// What the probe measures at each snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// Snapshot steps to probe (default: every snapshot but the final one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<u64>>,
    /// Also probe the final iterate itself (inner = dist = 0 there).
    #[serde(default)]
    pub include_final: bool,
    /// Extra seeded minibatches per snapshot, besides the one step k used.
    #[serde(default = "default_extra_batches")]
    pub extra_batches: u64,
    /// Probe the full training loss f too.
    #[serde(default = "default_true")]
    pub full: bool,
    /// Use a fixed seeded subset of this many examples as "full" data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_subset: Option<u64>,
    /// Examples per forward/backward pass of the full-data probe.
    #[serde(default = "default_chunk")]
    pub chunk_size: u64,
    #[serde(default)]
    pub batchnorm: BatchNormPolicy,
    /// x_p in the rows: the final iterate x^K (the paper's protocol) or the
    /// exact projection Proj(x^k, S) (known-answer problems only).
    #[serde(default, skip_serializing_if = "Reference::is_final")]
    pub reference: Reference,
    /// Probe a seeded point cloud in a box instead of the snapshots
    /// (known-answer problems; implies the projection reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<CloudConfig>,
    /// Top Hessian eigenvalues by power iteration (off by default); written to
    /// `curvature.parquet`, never into the landscape rows.
    #[serde(default, skip_serializing_if = "CurvatureConfig::is_default")]
    pub curvature: CurvatureConfig,
    /// Also measure the `train` row at every step k, re-creating x^k by
    /// re-running training between the stored iterates (`abcond probe
    /// --replay`; src/probe/replay.rs).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
    /// With `replay`: also measure the extra minibatches at every m-th step
    /// (steps k with k mod m = 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_extra_every: Option<u64>,
    /// Also measure every probed snapshot on the data set's held-out test
    /// split (loss and accuracy, `eval.parquet`; src/probe/eval.rs).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub eval: bool,
    /// The held-out split of a data set that has no built-in one, in its
    /// training format: for `imagefolder` a class-folder tree whose classes
    /// are training classes (e.g. ImageNet's val/). Needs `eval: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_path: Option<std::path::PathBuf>,
}

/// What the probe uses as x_p.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Reference {
    /// The final iterate x^K of the run.
    #[default]
    Final,
    /// The exact projection Proj(x^k, S) onto the known minimiser set S.
    Projection,
}

impl Reference {
    pub fn name(self) -> &'static str {
        match self {
            Reference::Final => "final",
            Reference::Projection => "projection",
        }
    }
    fn is_final(&self) -> bool {
        *self == Reference::Final
    }
}

/// N points drawn uniformly (seeded) from the box [lo, hi]^d.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CloudConfig {
    pub points: u64,
    /// [lo, hi] of every coordinate.
    #[serde(rename = "box")]
    pub bounds: [f64; 2],
    /// Seed of the draw (default: the run seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// Which probe losses the curvature probe differentiates twice.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum CurvatureProbe {
    /// f_{i_k}, the minibatch step k used.
    Train,
    /// The extra seeded minibatches `extra-<j>`.
    Extra,
    /// f, the full data (or `probe.full_subset`), in chunks of `probe.chunk_size`.
    Full,
}

impl CurvatureProbe {
    pub fn name(self) -> &'static str {
        match self {
            CurvatureProbe::Train => "train",
            CurvatureProbe::Extra => "extra",
            CurvatureProbe::Full => "full",
        }
    }
}

/// `probe.curvature`: the eigenvalue of largest magnitude of the Hessian of
/// f_i (and f) at each probed snapshot, by power iteration on Hessian-vector
/// products (src/probe/curvature.rs).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CurvatureConfig {
    #[serde(default)]
    pub enabled: bool,
    /// Most power iterations (Hessian-vector products) per eigenvalue.
    #[serde(default = "default_curvature_iterations")]
    pub iterations: u64,
    /// Stop when the eigenvalue estimate changes by at most tol relative to itself.
    #[serde(default = "default_curvature_tol")]
    pub tol: f64,
    /// Which losses: train, extra, full.
    #[serde(default = "default_curvature_probes")]
    pub probes: Vec<CurvatureProbe>,
    /// Also the other end of the spectrum (so both lambda_max and lambda_min)
    /// by a second power iteration on H − λ·I; doubles the cost.
    #[serde(default = "default_true")]
    pub both_ends: bool,
}

fn default_curvature_iterations() -> u64 {
    100
}

fn default_curvature_tol() -> f64 {
    1e-6
}

fn default_curvature_probes() -> Vec<CurvatureProbe> {
    vec![CurvatureProbe::Train, CurvatureProbe::Full]
}

impl Default for CurvatureConfig {
    fn default() -> Self {
        CurvatureConfig {
            enabled: false,
            iterations: default_curvature_iterations(),
            tol: default_curvature_tol(),
            probes: default_curvature_probes(),
            both_ends: true,
        }
    }
}

impl CurvatureConfig {
    fn is_default(&self) -> bool {
        *self == CurvatureConfig::default()
    }

    /// Range checks.
    pub fn validate(&self) -> Result<()> {
        if !(1..=1_000_000).contains(&self.iterations) {
            bail!(
                "key `probe.curvature.iterations` must be between 1 and 1000000, got {}",
                self.iterations
            );
        }
        if !(self.tol.is_finite() && self.tol > 0.0 && self.tol < 1.0) {
            bail!(
                "key `probe.curvature.tol` must be a number in (0, 1), got {}",
                self.tol
            );
        }
        if self.probes.is_empty() {
            bail!("key `probe.curvature.probes` must list at least one of train, extra, full");
        }
        let mut p = self.probes.clone();
        p.sort();
        p.dedup();
        if p.len() != self.probes.len() {
            bail!(
                "key `probe.curvature.probes` lists a probe twice: {:?}",
                self.probes.iter().map(|p| p.name()).collect::<Vec<_>>()
            );
        }
        Ok(())
    }
}

fn default_extra_batches() -> u64 {
    2
}

pub(crate) fn default_true() -> bool {
    true
}

fn default_chunk() -> u64 {
    4096
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            steps: None,
            include_final: false,
            extra_batches: default_extra_batches(),
            full: true,
            full_subset: None,
            chunk_size: default_chunk(),
            batchnorm: BatchNormPolicy::default(),
            reference: Reference::Final,
            cloud: None,
            curvature: CurvatureConfig::default(),
            replay: false,
            replay_extra_every: None,
            eval: false,
            eval_path: None,
        }
    }
}

impl ProbeConfig {
    /// `probe.reference: projection` and `probe.cloud` need a model that knows
    /// its minimiser set S; a cloud always measures against Proj(x, S).
    pub(crate) fn resolve_reference(&mut self, kind: ModelKind) -> Result<()> {
        let known = kind.is_known_answer();
        let p = self;
        for (key, used) in [
            ("probe.cloud", p.cloud.is_some()),
            ("probe.reference", p.reference == Reference::Projection),
        ] {
            if used && !known {
                bail!(
                    "key `{key}`{}: model kind `{}` does not know its minimiser set S, so Proj(x, S) cannot be computed; the kinds that support it are {} (use `probe.reference: final` for x^K)",
                    if key == "probe.reference" { ": projection" } else { "" },
                    kind.name(),
                    KNOWN_KINDS.join(", ")
                );
            }
        }
        if let Some(c) = &p.cloud {
            if p.curvature.enabled {
                bail!("key `probe.curvature` does not apply to `probe.cloud` (the cloud has no snapshots to take Hessians at); disable one of them");
            }
            if c.points == 0 {
                bail!("key `probe.cloud.points` must be at least 1");
            }
            let [lo, hi] = c.bounds;
            if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                bail!("key `probe.cloud.box` must be [lo, hi] with lo < hi, got [{lo}, {hi}]");
            }
            p.reference = Reference::Projection;
        }
        if p.replay && p.reference == Reference::Projection {
            bail!("key `probe.replay`: the replay probe measures against the final iterate x^K; it does not combine with `probe.reference: projection` or `probe.cloud`");
        }
        if p.eval_path.is_some() && !p.eval {
            bail!("key `probe.eval_path` names held-out files for `probe.eval`; set `probe.eval: true` too");
        }
        match p.replay_extra_every {
            Some(0) => bail!("key `probe.replay_extra_every` must be at least 1 (measure the extra minibatches at every m-th replayed step), got 0"),
            Some(_) if !p.replay => bail!("key `probe.replay_extra_every` applies to the replay probe only; set `probe.replay: true` (or pass --replay) too"),
            _ => {}
        }
        Ok(())
    }
}
