//! What a probe measures: the selected snapshots (`probe.steps`,
//! `probe.include_final`), the shard of them this process takes (`--shard
//! i/N`), and which of them still need a landscape or curvature part — a part
//! is current when it was written with the fingerprint of today's settings.

use crate::config::{Config, ProbeConfig};
use crate::run::RunDir;
use crate::store::tables::LandscapeRow;
use crate::store::tensors;
use anyhow::{anyhow, bail, Result};
use std::str::FromStr;

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
    let c: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
        anyhow!(
            "--set: key `{}`: {}",
            e.path(),
            crate::config::validate::with_suggestion(&e.inner().to_string())
        )
    })?;
    c.resolve()
}

/// Bumped when the numbers of a landscape part change for the same settings.
const MEASUREMENT_VERSION: &str = "measurement/2";

/// A stable fingerprint of the probe settings (parts made with other settings
/// are measured again).
pub(crate) fn landscape_fingerprint(p: &ProbeConfig) -> String {
    let mut p = p.clone();
    p.steps = None; // which snapshots are selected does not change a part
    p.include_final = false;
    p.curvature = Default::default(); // curvature has parts of its own
                                      // The replay has parts of its own; snapshot parts do not depend on it.
    p.replay = false;
    p.replay_extra_every = None;
    p.eval = false; // eval.parquet is measured apart
                    // The measurement's version: parts measured before the one-pass f64
                    // inner product and distance (src/torch/reduce.rs) are measured again,
                    // so that no landscape mixes the two (the replay compares rows bit for bit).
    let text = format!(
        "{MEASUREMENT_VERSION}\n{}",
        serde_yaml::to_string(&p).unwrap()
    );
    format!("{:016x}", crate::config::fnv1a64(text.as_bytes()))
}

/// A stable fingerprint of the settings a curvature part depends on (parts
/// made with other settings are measured again).
pub(crate) fn curvature_fingerprint(cfg: &Config) -> String {
    let mut p = cfg.probe.clone();
    p.steps = None;
    p.include_final = false;
    p.full = false; // the curvature of f does not need the landscape's full rows
    p.reference = crate::config::Reference::Final; // x_p does not enter a Hessian
    p.cloud = None;
    p.replay = false;
    p.replay_extra_every = None;
    format!(
        "{:016x}",
        crate::config::fnv1a64(serde_yaml::to_string(&p).unwrap().as_bytes())
    )
}

/// Whether the part at `path` exists and was written with fingerprint `fp`
/// under the metadata key `key`.
fn part_is_current(path: &std::path::Path, key: &str, fp: &str) -> bool {
    path.is_file()
        && tensors::read_meta(path)
            .ok()
            .and_then(|m| m.get(key).cloned())
            .as_deref()
            == Some(fp)
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

/// The snapshots of one probe and the passes each still needs.
pub struct Plan {
    /// The selected snapshot steps, sorted (all shards).
    pub selected: Vec<u64>,
    /// This process's share of them (all of them without `--shard`).
    pub mine: Vec<u64>,
    pub landscape_fingerprint: String,
    /// With `probe.curvature.enabled`.
    pub curvature_fingerprint: Option<String>,
    /// Steps of `mine` whose landscape part is missing or stale.
    pub landscape: Vec<u64>,
    /// Steps of `mine` whose curvature part is missing or stale (curvature on).
    pub curvature: Vec<u64>,
}

impl Plan {
    /// The plan of the run in `dir` (final step `total`) under `cfg`.
    pub fn new(dir: &RunDir, cfg: &Config, total: u64, shard: Option<Shard>) -> Result<Plan> {
        let p = &cfg.probe;
        let snapshots = dir.snapshot_steps()?;
        if !snapshots.contains(&total) {
            bail!(
                "the final iterate x^K (step {total}) is missing: expected {}",
                dir.snapshot(total).display()
            );
        }
        let mut selected: Vec<u64> = match &p.steps {
            None => {
                // Every snapshot the schedule wrote must still be there: a
                // deleted one would silently shorten the landscape.
                let expected = crate::train::setup::snapshot_steps(&cfg.snapshots, total)?;
                let missing: Vec<u64> = expected
                    .iter()
                    .copied()
                    .filter(|k| !snapshots.contains(k))
                    .collect();
                if !missing.is_empty() {
                    let shown: Vec<String> = missing.iter().take(10).map(u64::to_string).collect();
                    bail!(
                        "{} of the {} snapshots the run wrote are missing (steps {}{}; e.g. {}). Probe the ones that exist with --set probe.steps=[…], or retrain into a new directory (`abcond train CONFIG --run-id NEW`: training is deterministic per seed on CPU and writes them again); `abcond inspect {}` lists what is there",
                        missing.len(),
                        expected.len(),
                        shown.join(", "),
                        if missing.len() > 10 { ", …" } else { "" },
                        dir.snapshot(missing[0]).display(),
                        dir.root.display()
                    );
                }
                snapshots.clone()
            }
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
        let mine = match shard {
            Some(s) => s.pick(&selected),
            None => selected.clone(),
        };
        let landscape_fingerprint = landscape_fingerprint(p);
        let curvature_fingerprint = p.curvature.enabled.then(|| curvature_fingerprint(cfg));
        let mut plan = Plan {
            selected,
            mine,
            landscape_fingerprint,
            curvature_fingerprint,
            landscape: Vec::new(),
            curvature: Vec::new(),
        };
        plan.landscape = plan
            .mine
            .iter()
            .copied()
            .filter(|&k| !plan.landscape_done(dir, k))
            .collect();
        plan.curvature = plan
            .mine
            .iter()
            .copied()
            .filter(|&k| !plan.curvature_done(dir, k))
            .collect();
        Ok(plan)
    }

    /// Whether snapshot k's landscape part is current.
    pub fn landscape_done(&self, dir: &RunDir, k: u64) -> bool {
        part_is_current(
            &dir.probe_part(k),
            "abcond.probe_fingerprint",
            &self.landscape_fingerprint,
        )
    }

    /// Whether snapshot k's curvature part is current (always, with curvature off).
    pub fn curvature_done(&self, dir: &RunDir, k: u64) -> bool {
        self.curvature_fingerprint.as_ref().is_none_or(|fp| {
            part_is_current(&dir.curvature_part(k), "abcond.curvature_fingerprint", fp)
        })
    }

    /// The steps that need any pass, sorted.
    pub fn todo(&self) -> Vec<u64> {
        let mut all: Vec<u64> = self
            .landscape
            .iter()
            .chain(&self.curvature)
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// Selected snapshots (all shards) whose parts are all current.
    pub fn done(&self, dir: &RunDir) -> usize {
        self.selected
            .iter()
            .filter(|&&k| self.landscape_done(dir, k) && self.curvature_done(dir, k))
            .count()
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
    /// With `--replay`: the segments of this shard, those (all shards) done,
    /// and all segments.
    pub segments: Option<(usize, usize, usize)>,
}

pub struct ProbeOutcome {
    /// The gathered rows (empty for a shard, which gathers nothing).
    pub rows: Vec<LandscapeRow>,
    /// Snapshots whose landscape rows were measured now.
    pub probed_now: usize,
    pub seconds_per_snapshot: Option<f64>,
    /// Set for a sharded probe.
    pub shard: Option<ShardProgress>,
}
