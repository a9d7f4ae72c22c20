//! What `abcond analyze PATH` reads: the probed runs under PATH (one run
//! directory, or an experiment directory of many), their analysis settings, and
//! their grouping by sweep value (runs that differ only in seed form one group).

use crate::config::{AnalysisConfig, Config};
use crate::run::RunDir;
use crate::store::tables::{CurvatureRow, LandscapeRow, StepRow};
use anyhow::{anyhow, bail, Context, Result};
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One probed run.
pub struct RunData {
    pub dir: PathBuf,
    pub run_id: String,
    pub seed: i64,
    pub config: Config,
    pub rows: Vec<LandscapeRow>,
    /// The training steps (for the loss plot); empty if steps.parquet is missing.
    pub steps: Vec<StepRow>,
    /// Hessian eigenvalues (curvature.parquet); empty without `probe.curvature`.
    pub curvature: Vec<CurvatureRow>,
    /// The held-out evaluation (eval.parquet); empty without `probe.eval`.
    pub eval: Vec<crate::store::tables::EvalRow>,
    /// The values this run took on the axes of its `sweep` (empty without one).
    pub swept: Vec<(String, Value)>,
    /// The loop that trained it when abcond did not (run.yaml's `trainer`).
    pub trainer: Option<crate::run::Trainer>,
}

/// Runs sharing every setting but the seed (and what never changes a
/// trajectory): one value of the sweep.
pub struct Group {
    /// "all" for a single group, else e.g. "model.width=128".
    pub label: String,
    /// File-name-safe form of the label.
    pub slug: String,
    /// The sweep keys and this group's value of each.
    pub values: Vec<(String, Value)>,
    pub runs: Vec<usize>,
}

/// Keys that never define a group: seeds, where and how things ran, what is measured.
fn ignored_key(key: &str) -> bool {
    key == "seed"
        || key == "device"
        || key == "data.path"
        || key.starts_with("probe.")
        || key == "probe"
        || key.starts_with("analysis.")
        || key == "analysis"
        || key == "train.checkpoint_every"
        || key == "train.checkpoint_minutes"
        || key == "train.checkpoint_min_seconds"
}

pub use crate::run::discover;

/// A part file in `parts` modified after `table` was written (None when the
/// table or the parts directory is missing).
fn newer_part(table: &Path, parts: &Path) -> Result<Option<PathBuf>> {
    let Ok(written) = std::fs::metadata(table).and_then(|m| m.modified()) else {
        return Ok(None);
    };
    if !parts.is_dir() {
        return Ok(None);
    }
    for e in std::fs::read_dir(parts).with_context(|| format!("listing {}", parts.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if !(name.starts_with("step=") && name.ends_with(".parquet")) {
            continue;
        }
        if e.metadata()?.modified()? > written {
            return Ok(Some(e.path()));
        }
    }
    Ok(None)
}

/// Loads the runs that have been probed; notes the others in `skipped`.
pub fn load_runs(dirs: &[PathBuf], skipped: &mut Vec<String>) -> Result<Vec<RunData>> {
    let mut runs = Vec::new();
    for d in dirs {
        let rd = RunDir::new(d);
        let manifest = rd.read_manifest()?;
        if !rd.landscape().is_file() {
            let parts = rd.probe_part_steps()?.len();
            skipped.push(if parts > 0 {
                format!(
                    "{}: no landscape.parquet, but {parts} probe parts (a sharded probe?); gather them with `abcond probe {}`",
                    d.display(),
                    d.display()
                )
            } else {
                use crate::run::Status;
                let hint = match manifest.status {
                    Status::Completed => format!("probe it with `abcond probe {}`", d.display()),
                    Status::Diverged => {
                        "it diverged, so it has no final iterate to probe against; change the config (a new run) to measure this setting".to_string()
                    }
                    Status::Running | Status::Failed => format!(
                        "training has not finished: resume it with `abcond train CONFIG` (or `abcond run CONFIG`), then probe it with `abcond probe {}`",
                        d.display()
                    ),
                };
                format!(
                    "{}: no landscape.parquet (status {}; {hint})",
                    d.display(),
                    manifest.status.name(),
                )
            });
            continue;
        }
        // Parts written after the last gather (by `abcond probe --shard`) are
        // not in the tables yet: analysing them would silently use old rows.
        for (table, parts) in [
            (rd.landscape(), rd.probe_parts()),
            (rd.curvature(), rd.curvature_parts()),
        ] {
            if let Some(part) = newer_part(&table, &parts)? {
                bail!(
                    "{} is newer than {}: probe parts were written after the last gather (a sharded probe?); gather them with `abcond probe {}`",
                    part.display(),
                    table.display(),
                    d.display()
                );
            }
        }
        let (rows, _) = crate::store::tables::read_landscape(&rd.landscape())?;
        for r in &rows {
            for (name, v) in [
                ("inner", r.inner),
                ("loss_k", r.loss_k),
                ("loss_ref", r.loss_ref),
            ] {
                if !v.is_finite() {
                    bail!(
                        "{}: row step={} probe={} has non-finite {name} = {v}; the probe of this run is unusable",
                        rd.landscape().display(),
                        r.step,
                        r.probe
                    );
                }
            }
        }
        if rows.is_empty() {
            skipped.push(format!("{}: landscape.parquet has no rows", d.display()));
            continue;
        }
        let steps = if rd.steps().is_file() {
            crate::store::tables::read_steps(&rd.steps())?.0
        } else {
            Vec::new()
        };
        let curvature = if rd.curvature().is_file() {
            crate::store::tables::read_curvature(&rd.curvature())?.0
        } else {
            Vec::new()
        };
        let eval = if rd.eval().is_file() {
            crate::store::tables::read_eval(&rd.eval())?.0
        } else {
            Vec::new()
        };
        runs.push(RunData {
            curvature,
            eval,
            swept: crate::run::swept_values(&manifest),
            trainer: manifest.trainer.clone(),
            dir: d.clone(),
            run_id: manifest.run_id.clone(),
            seed: manifest.config.seed as i64,
            config: manifest.config,
            rows,
            steps,
        });
    }
    Ok(runs)
}

/// The analysis settings: the runs' own `analysis` section when they agree
/// (defaults otherwise, with a note), then the `--set analysis.*` overrides.
pub fn settings(
    runs: &[RunData],
    given: Option<AnalysisConfig>,
    overrides: &[String],
    notes: &mut Vec<String>,
) -> Result<AnalysisConfig> {
    let first = runs[0].config.analysis.clone();
    let base = if let Some(g) = given {
        g
    } else if runs.iter().all(|r| r.config.analysis == first) {
        first
    } else {
        notes.push(
            "the runs' configs differ in their `analysis` section; using the defaults and --set"
                .to_string(),
        );
        AnalysisConfig::default()
    };
    let mut tree = serde_yaml::to_value(&base)?;
    let mut wrapper = serde_yaml::Mapping::new();
    wrapper.insert(Value::String("analysis".into()), tree.clone());
    let mut root = Value::Mapping(wrapper);
    for o in overrides {
        let key = crate::config::apply_override(&mut root, o)
            .with_context(|| format!("applying --set {o}"))?;
        if !(key == "analysis" || key.starts_with("analysis.")) {
            bail!("--set {o}: `abcond analyze` only takes analysis.* settings (e.g. --set analysis.margin=0.2)");
        }
    }
    tree = root
        .get("analysis")
        .cloned()
        .ok_or_else(|| anyhow!("--set removed the analysis section"))?;
    let a: AnalysisConfig = serde_path_to_error::deserialize(tree).map_err(|e| {
        anyhow!(
            "--set: key `analysis.{}`: {}",
            e.path(),
            crate::config::validate::with_suggestion(&e.inner().to_string())
        )
    })?;
    a.validate()?;
    if a.f_star == crate::config::FStar::Known {
        if let Some(r) = runs
            .iter()
            .find(|r| !r.config.model.kind().is_known_answer())
        {
            bail!(
                "analysis.f_star: known needs known-answer models ({}), but run {} is model kind `{}`",
                crate::config::KNOWN_KINDS.join(", "),
                r.dir.display(),
                r.config.model.kind().name()
            );
        }
    }
    Ok(a)
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Mapping(m) => {
            for (k, v) in m {
                let k = k.as_str().map(str::to_string).unwrap_or_default();
                let key = if prefix.is_empty() {
                    k
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), v.clone());
        }
    }
}

/// Renders a YAML value on one line (`none`, `[0.9, 0.999]`, `{name: sgd, lr: 0.01}`).
pub fn show(v: &Value) -> String {
    match v {
        Value::Null => "none".to_string(),
        other => crate::util::yaml_inline(other),
    }
}

/// The keys that tell groups apart: the flattened config keys whose values vary
/// between runs. When every run comes from one sweep and every such key is one of
/// its axes or lies inside one (`optim.momentum` under a swept `optim`), the axes
/// are used instead (seed aside), so a swept section reads
/// `optim={name: adam, lr: 0.0001}` rather than as every key inside it.
fn group_values(runs: &[RunData], flat: &[BTreeMap<String, Value>]) -> Vec<Vec<(String, Value)>> {
    let mut keys: Vec<String> = flat.iter().flat_map(|m| m.keys().cloned()).collect();
    keys.sort();
    keys.dedup();
    let varying: Vec<String> = keys
        .into_iter()
        .filter(|k| {
            let first = flat[0].get(k);
            flat.iter().any(|m| m.get(k) != first)
        })
        .collect();
    let axes = |r: &RunData| -> Vec<String> { r.swept.iter().map(|(k, _)| k.clone()).collect() };
    let axes0 = axes(&runs[0]);
    let covered = |k: &String| {
        axes0
            .iter()
            .any(|a| k == a || k.starts_with(&format!("{a}.")))
    };
    let one_sweep =
        !axes0.is_empty() && runs.iter().all(|r| axes(r) == axes0) && varying.iter().all(covered);
    if one_sweep {
        let value =
            |r: &RunData, k: &str| r.swept.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
        let swept: Vec<String> = axes0
            .iter()
            .filter(|k| !ignored_key(k))
            .filter(|k| runs.iter().any(|r| value(r, k) != value(&runs[0], k)))
            .cloned()
            .collect();
        return runs
            .iter()
            .map(|r| {
                swept
                    .iter()
                    .map(|k| (k.clone(), value(r, k).unwrap_or(Value::Null)))
                    .collect()
            })
            .collect();
    }
    flat.iter()
        .map(|m| {
            varying
                .iter()
                .map(|k| (k.clone(), m.get(k).cloned().unwrap_or(Value::Null)))
                .collect()
        })
        .collect()
}

/// Groups runs by the settings that vary between them (seed and the other
/// [`ignored_key`]s aside).
pub fn group(runs: &[RunData]) -> Vec<Group> {
    let flat: Vec<BTreeMap<String, Value>> = runs
        .iter()
        .map(|r| {
            let mut m = BTreeMap::new();
            flatten("", &serde_yaml::to_value(&r.config).unwrap(), &mut m);
            m.retain(|k, _| !ignored_key(k));
            m
        })
        .collect();
    let mut groups: Vec<Group> = Vec::new();
    for (i, values) in group_values(runs, &flat).into_iter().enumerate() {
        match groups.iter_mut().find(|g| g.values == values) {
            Some(g) => g.runs.push(i),
            None => {
                let label = if values.is_empty() {
                    "all".to_string()
                } else {
                    values
                        .iter()
                        .map(|(k, v)| format!("{k}={}", show(v)))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let slug: String = label
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                            c
                        } else {
                            '-'
                        }
                    })
                    .collect();
                groups.push(Group {
                    label,
                    slug,
                    values,
                    runs: vec![i],
                })
            }
        }
    }
    // Numeric sweeps in numeric order.
    groups.sort_by(|a, b| {
        let key = |g: &Group| -> Vec<(Option<f64>, String)> {
            g.values
                .iter()
                .map(|(_, v)| (v.as_f64(), show(v)))
                .collect()
        };
        let (ka, kb) = (key(a), key(b));
        for (x, y) in ka.iter().zip(kb.iter()) {
            let o = match (x.0, y.0) {
                (Some(p), Some(q)) => p.total_cmp(&q),
                _ => x.1.cmp(&y.1),
            };
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    });
    groups
}
