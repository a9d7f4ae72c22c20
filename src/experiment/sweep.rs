//! Sweeps: a config that declares `sweep:` is a family of runs, the cartesian
//! product of the listed values of some config keys. It sits in front of the
//! pipeline: each task of the sweep is an ordinary run (config → train → probe
//! → analysis) whose config is the file's with the task's values set.
//!
//! ```yaml
//! sweep:
//!   model.width: [32, 128, 512]
//!   seed: [0, 1, 2, 3]
//! ```
//!
//! - Order: keys in file order, the last key varying fastest; task N is 0-based
//!   (Slurm: `--array=0-<runs−1>`).
//! - Each swept value is set exactly as `--set key=value` would set it, so the
//!   same checks and error messages apply; `--set` overrides apply to every task
//!   and may not name a swept key (or a section of one); `--set sweep.KEY=[…]`
//!   replaces the values of an axis (or adds one), e.g. to scale a sweep down.
//! - `sweep` is not part of a run's identity: a task's run id is the run id of
//!   its resolved config, the same as the run made by hand with `--set`.
//! - `<out>/<experiment>/runs.parquet` lists every task with its run id, its
//!   swept values (typed columns named by the dotted key) and its status.
//! - `run.yaml` of a run made by a sweep records the task and its values
//!   ([`SweepRecord`]); the probe appends them to landscape.parquet as columns.

use crate::config::Config;
use crate::run::{RunDir, Status, SweepRecord};
use crate::util::yaml_inline as show;
use anyhow::{anyhow, bail, Context, Result};
use arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{Field, Schema};
use serde_yaml::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::config::SWEEP_KEY;
/// Format tag of `runs.parquet`.
pub const RUNS_FORMAT: &str = "abcond.runs/1";
/// Environment variable giving the default task of `--task`.
pub const TASK_ENV: &str = "SLURM_ARRAY_TASK_ID";

/// One run of a sweep.
#[derive(Debug, Clone)]
pub struct Task {
    pub index: usize,
    /// The swept keys and this task's values, in sweep order.
    pub values: Vec<(String, Value)>,
    /// Each axis's column type over all its values (see [`SweepRecord::types`]).
    pub types: Vec<(String, &'static str)>,
    pub config: Config,
}

impl Task {
    pub fn run_id(&self) -> String {
        self.config.default_run_id()
    }
    pub fn record(&self) -> SweepRecord {
        SweepRecord {
            task: self.index as u64,
            values: self
                .values
                .iter()
                .map(|(k, v)| (Value::String(k.clone()), v.clone()))
                .collect(),
            types: self
                .types
                .iter()
                .map(|(k, t)| (Value::String(k.clone()), Value::String(t.to_string())))
                .collect(),
        }
    }
    pub fn dir(&self, out: &Path) -> RunDir {
        RunDir::new(crate::config::run_dir(
            out,
            &self.config.experiment,
            &self.run_id(),
        ))
    }
    /// `model.width=32, seed=0`.
    pub fn label(&self) -> String {
        self.values
            .iter()
            .map(|(k, v)| format!("{k}={}", show(v)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A config's sweep: its axes and every task, resolved.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// The config file, as named in messages.
    pub source: String,
    pub experiment: String,
    pub axes: Vec<(String, Vec<Value>)>,
    pub tasks: Vec<Task>,
}

/// Keys that name a section of each other (`model` and `model.width`) or are equal.
fn overlaps(a: &str, b: &str) -> bool {
    a == b || a.starts_with(&format!("{b}.")) || b.starts_with(&format!("{a}."))
}

impl Sweep {
    /// Reads the config at `path`; `None` when it declares no sweep.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Option<Sweep>> {
        let text = crate::util::read_text_file(path, "config file", crate::util::MAX_YAML_BYTES)?;
        let base_dir = crate::config::base_dir(path);
        Sweep::from_text(&text, &path.display().to_string(), &base_dir, overrides)
    }

    /// Parses and checks the sweep of a config text and resolves every task.
    pub fn from_text(
        text: &str,
        source: &str,
        base_dir: &Path,
        overrides: &[String],
    ) -> Result<Option<Sweep>> {
        let mut tree = crate::config::parse_tree(text, source)?;
        // A config without `sweep` becomes one with `--set sweep.KEY=[…]` (an
        // ad-hoc multirun from the command line).
        let adhoc = overrides
            .iter()
            .any(|o| o.trim_start().starts_with("sweep."));
        let mut spec = match tree.as_mapping_mut().and_then(|m| m.remove(SWEEP_KEY)) {
            Some(spec) => spec,
            None if adhoc => Value::Mapping(serde_yaml::Mapping::new()),
            None => return Ok(None),
        };
        // `--set sweep.KEY=[…]` replaces (or adds) an axis; the rest apply to every task.
        let mut rest = Vec::new();
        for o in overrides {
            let (key, raw) = o.split_once('=').unwrap_or((o.as_str(), ""));
            match key.trim().strip_prefix("sweep.") {
                Some(axis) => {
                    let value: Value =
                        serde_yaml::from_str(raw).unwrap_or_else(|_| Value::String(raw.into()));
                    spec.as_mapping_mut()
                        .ok_or_else(|| anyhow!("{source}: key `sweep` is not a mapping"))?
                        .insert(Value::String(axis.to_string()), value);
                }
                None => rest.push(o.clone()),
            }
        }
        let overrides = &rest[..];
        let axes = parse_axes(&spec, source)?;
        for o in overrides {
            let key = o.split_once('=').map_or(o.as_str(), |(k, _)| k).trim();
            if let Some((swept, _)) = axes.iter().find(|(k, _)| overlaps(k, key)) {
                bail!(
                    "--set {o}: `{key}` overlaps the sweep key `{swept}` of {source}; a swept value cannot be overridden (remove it from `sweep` or from --set)"
                );
            }
        }
        let count: usize = axes.iter().map(|(_, v)| v.len()).product();
        let mut tasks: Vec<Task> = Vec::with_capacity(count);
        for index in 0..count {
            // Mixed radix, last key fastest.
            let mut rest = index;
            let mut values = vec![(String::new(), Value::Null); axes.len()];
            for (a, (key, vals)) in axes.iter().enumerate().rev() {
                values[a] = (key.clone(), vals[rest % vals.len()].clone());
                rest /= vals.len();
            }
            let label = values
                .iter()
                .map(|(k, v)| format!("{k}={}", show(v)))
                .collect::<Vec<_>>()
                .join(", ");
            let config =
                crate::config::from_tree(tree.clone(), source, base_dir, overrides, &values)
                    .with_context(|| format!("sweep task {index} ({label})"))?;
            if let Some(other) = tasks.iter().find(|t| t.run_id() == config.default_run_id()) {
                bail!(
                    "{source}: sweep tasks {} ({}) and {index} ({label}) are the same training run {}: a swept key that does not change training (probe.*, analysis.*, device, data.path, checkpoint cadence) cannot be a sweep axis",
                    other.index,
                    other.label(),
                    config.default_run_id()
                );
            }
            let types = axes
                .iter()
                .map(|(k, vals)| (k.clone(), crate::store::tables::column_type(vals)))
                .collect();
            tasks.push(Task {
                index,
                values,
                types,
                config,
            });
        }
        Ok(Some(Sweep {
            source: source.to_string(),
            experiment: tasks[0].config.experiment.clone(),
            axes,
            tasks,
        }))
    }

    /// Task `n`, or an error naming the number of tasks.
    pub fn task(&self, n: usize) -> Result<&Task> {
        self.tasks.get(n).ok_or_else(|| {
            anyhow!(
                "task {n} is out of range: the sweep of {} has {} runs, tasks 0..={} (Slurm: --array=0-{})",
                self.source,
                self.tasks.len(),
                self.tasks.len() - 1,
                self.tasks.len() - 1
            )
        })
    }

    /// `<out>/<experiment>/`.
    pub fn experiment_dir(&self, out: &Path) -> PathBuf {
        out.join(&self.experiment)
    }

    /// `<out>/<experiment>/runs.parquet`.
    pub fn runs_table(&self, out: &Path) -> PathBuf {
        self.experiment_dir(out).join("runs.parquet")
    }
}

fn parse_axes(spec: &Value, source: &str) -> Result<Vec<(String, Vec<Value>)>> {
    let map = spec.as_mapping().ok_or_else(|| {
        anyhow!("{source}: key `sweep`: expected a mapping of config keys to lists of values, e.g. {{model.width: [32, 128], seed: [0, 1]}}")
    })?;
    if map.is_empty() {
        bail!("{source}: key `sweep` names no keys; give e.g. {{seed: [0, 1, 2]}} or remove it");
    }
    let mut axes: Vec<(String, Vec<Value>)> = Vec::new();
    for (k, v) in map {
        let key = k
            .as_str()
            .ok_or_else(|| anyhow!("{source}: key `sweep`: keys must be dotted config keys such as model.width, got {}", show(k)))?
            .trim()
            .to_string();
        if key.is_empty() || key.split('.').any(str::is_empty) {
            bail!("{source}: key `sweep.{key}`: `{key}` is not a key path; expected e.g. optim.lr");
        }
        let root = key.split('.').next().unwrap_or("");
        if root == "experiment" || root == SWEEP_KEY {
            bail!("{source}: key `sweep`: `{key}` cannot be swept (all runs of a sweep share one experiment directory)");
        }
        if let Some((other, _)) = axes.iter().find(|(o, _)| overlaps(o, &key)) {
            bail!(
                "{source}: key `sweep`: `{key}` overlaps `{other}`; each setting can be swept once"
            );
        }
        let values = match v {
            Value::Sequence(s) if !s.is_empty() => s.clone(),
            Value::Sequence(_) => bail!(
                "{source}: key `sweep.{key}`: the list of values is empty; give at least one value"
            ),
            other => bail!(
                "{source}: key `sweep.{key}`: expected a list of values, e.g. [{}], got {}",
                show(other),
                show(other)
            ),
        };
        for (i, a) in values.iter().enumerate() {
            if values[..i].contains(a) {
                bail!("{source}: key `sweep.{key}` lists {} twice", show(a));
            }
        }
        axes.push((key, normalise(values)));
    }
    Ok(axes)
}

/// An axis of integers and floats is all floats, so its column has one type
/// in every run (`optim.lr: [1, 0.1]` is float64, not int64 in one run).
fn normalise(values: Vec<Value>) -> Vec<Value> {
    let numbers = values.iter().all(|v| v.is_number());
    let ints = values.iter().all(|v| v.as_i64().is_some());
    if numbers && !ints {
        values
            .into_iter()
            .map(|v| Value::from(v.as_f64().unwrap()))
            .collect()
    } else {
        values
    }
}

/// Where a task's run stands: not started, run.yaml unreadable, or run.yaml's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    NotStarted,
    Unreadable,
    Run(Status),
}

impl TaskStatus {
    /// As `--list` and runs.parquet's `status` column show it.
    pub fn name(self) -> &'static str {
        match self {
            TaskStatus::NotStarted => "not-started",
            TaskStatus::Unreadable => "unreadable",
            TaskStatus::Run(s) => s.name(),
        }
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A task's state on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskState {
    pub status: TaskStatus,
    /// landscape.parquet written by a completed probe.
    pub probed: bool,
    /// run.yaml records this task's sweep values.
    pub recorded: bool,
}

impl TaskState {
    /// Nothing left to do for `--all`: probed with the sweep values recorded,
    /// or diverged (training is deterministic and would diverge again).
    pub fn done(&self) -> bool {
        (self.status == TaskStatus::Run(Status::Completed) && self.probed && self.recorded)
            || self.status == TaskStatus::Run(Status::Diverged)
    }
}

pub fn state(task: &Task, out: &Path) -> TaskState {
    let dir = task.dir(out);
    match dir.read_manifest() {
        Err(_) if !dir.exists() => TaskState {
            status: TaskStatus::NotStarted,
            probed: false,
            recorded: false,
        },
        Err(_) => TaskState {
            status: TaskStatus::Unreadable,
            probed: false,
            recorded: false,
        },
        Ok(m) => TaskState {
            status: TaskStatus::Run(m.status),
            probed: m.status == Status::Completed
                && dir.landscape().is_file()
                && m.probe
                    .as_ref()
                    .is_some_and(|p| p.status == Status::Completed),
            recorded: m.sweep.as_ref() == Some(&task.record()),
        },
    }
}

/// Records the task in its run's run.yaml (when the run exists).
pub fn record(task: &Task, out: &Path) -> Result<()> {
    let dir = task.dir(out);
    if !dir.exists() {
        return Ok(());
    }
    let mut m = dir.read_manifest()?;
    let rec = task.record();
    if m.sweep.as_ref() != Some(&rec) {
        m.sweep = Some(rec);
        dir.write_manifest(&m)?;
    }
    Ok(())
}

/// The `--list` text: one line per task (index, run id, swept values, status,
/// probed), aligned, after a header naming the sweep.
pub fn list(sweep: &Sweep, out: &Path) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut head = vec!["task".to_string(), "run_id".to_string()];
    head.extend(sweep.axes.iter().map(|(k, _)| k.clone()));
    head.extend(["status".to_string(), "probed".to_string()]);
    rows.push(head);
    for t in &sweep.tasks {
        let s = state(t, out);
        let mut r = vec![t.index.to_string(), t.run_id()];
        r.extend(t.values.iter().map(|(_, v)| show(v)));
        r.push(s.status.name().to_string());
        r.push(if s.probed { "yes" } else { "no" }.to_string());
        rows.push(r);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut text = format!(
        "# sweep of {}: {} runs ({}) in {}\n",
        sweep.source,
        sweep.tasks.len(),
        sweep
            .axes
            .iter()
            .map(|(k, v)| format!("{k} × {}", v.len()))
            .collect::<Vec<_>>()
            .join(", "),
        sweep.experiment_dir(out).display()
    );
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// Writes `<out>/<experiment>/runs.parquet` from the run directories now on
/// disk: task (int64), run_id (utf8), one typed column per swept key, status
/// (utf8), probed (bool). Atomic (temp file + rename): concurrent writers never
/// leave a torn file; the last writer wins, and any command of the sweep
/// rewrites it from the run directories again.
pub fn write_runs_table(sweep: &Sweep, out: &Path) -> Result<PathBuf> {
    let states: Vec<TaskState> = sweep.tasks.iter().map(|t| state(t, out)).collect();
    let mut fields = vec![
        Field::new("task", arrow::datatypes::DataType::Int64, false),
        Field::new("run_id", arrow::datatypes::DataType::Utf8, false),
    ];
    let mut arrays: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            sweep.tasks.iter().map(|t| t.index as i64),
        )),
        Arc::new(StringArray::from_iter_values(
            sweep.tasks.iter().map(|t| t.run_id()),
        )),
    ];
    for (a, (key, _)) in sweep.axes.iter().enumerate() {
        let vals: Vec<Value> = sweep.tasks.iter().map(|t| t.values[a].1.clone()).collect();
        let col = crate::store::tables::value_column(&vals);
        fields.push(Field::new(key, col.data_type().clone(), true));
        arrays.push(col);
    }
    fields.push(Field::new(
        "status",
        arrow::datatypes::DataType::Utf8,
        false,
    ));
    arrays.push(Arc::new(StringArray::from_iter_values(
        states.iter().map(|s| s.status.name().to_string()),
    )));
    fields.push(Field::new(
        "probed",
        arrow::datatypes::DataType::Boolean,
        false,
    ));
    arrays.push(Arc::new(BooleanArray::from(
        states.iter().map(|s| s.probed).collect::<Vec<_>>(),
    )));
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
    let path = sweep.runs_table(out);
    crate::store::tables::write_batch(
        &path,
        &batch,
        &[
            ("abcond.format", RUNS_FORMAT.to_string()),
            ("abcond.experiment", sweep.experiment.clone()),
            ("abcond.config", sweep.source.clone()),
        ],
    )
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The task of `--task`, else of $SLURM_ARRAY_TASK_ID.
pub fn task_from_env() -> Result<Option<usize>> {
    match std::env::var(TASK_ENV) {
        Ok(v) => {
            v.trim().parse().map(Some).map_err(|_| {
                anyhow!("${TASK_ENV}={v:?} is not a task index (0, 1, …); pass --task N")
            })
        }
        Err(_) => Ok(None),
    }
}
