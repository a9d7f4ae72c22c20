//! The run directory `<out>/<experiment>/<run_id>/` and its manifest `run.yaml`.
//!
//! ```text
//! run.yaml                          resolved config, provenance, status, sessions
//! data.parquet                      the examples: index → source row (+ synthetic data)
//! vocab.parquet                     text data: token id → word and count
//! steps.parquet                     one row per training step (after training ends)
//! steps-parts/                      step rows while training runs (merged at the end)
//! iterates/step=<k>/part-0.parquet  snapshot x^k, one per scheduled step and x^K
//! state/checkpoint.parquet          resume checkpoint while training runs
//! probe-parts/step=<k>.parquet      probe rows of one snapshot (resumable probing)
//! landscape.parquet                 all probe rows
//! .lock                             writer lock (lock.rs): held while a process writes the run
//! ```

pub mod inspect;
pub mod lock;
pub mod verify;

use crate::config::{Config, ProbeConfig};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};

/// Version 2 ends with a checksum line (see [`manifest_text`]).
pub const MANIFEST_FORMAT: &str = "abcond.run/2";
/// The format before the checksum line (still read).
pub const MANIFEST_FORMAT_V1: &str = "abcond.run/1";

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Completed,
    Diverged,
    Failed,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Diverged => "diverged",
            Status::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Provenance {
    pub abcond_version: String,
    pub git_commit: String,
    /// torch version abcond was built against.
    pub torch_version_built: String,
    pub created: String,
}

impl Provenance {
    pub fn current() -> Provenance {
        Provenance {
            abcond_version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit: env!("ABCOND_GIT_COMMIT").to_string(),
            torch_version_built: env!("ABCOND_TORCH_VERSION").to_string(),
            created: crate::util::now_rfc3339(),
        }
    }
}

/// One process that worked on the run (the first, and every resume).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub command: String,
    pub host: String,
    pub pid: u32,
    pub device: String,
    /// torch version of the libtorch this process loaded, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_version: Option<String>,
    pub started: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
    pub start_step: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_step: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Status>,
    /// The determinism, TF32 and autocast settings of this session's training
    /// steps as libtorch reported them (src/torch/reproducibility.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reproducibility: Option<crate::torch::reproducibility::Reproducibility>,
    /// Where the session's time went (absent when it took no step, or diverged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<TrainTiming>,
}

/// Wall-clock seconds of one training session, split so that start-up,
/// steady-state step cost and the cost of writing iterates can be told apart
/// (bench/run.py reads them; docs/benchmarks.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainTiming {
    /// From the start of the command's training to its first step: reading
    /// run.yaml, loading the data, building the model, resuming.
    pub setup_seconds: f64,
    /// Steps taken in this session.
    pub steps: u64,
    /// From the first step to the final iterate written: every update and
    /// every write in between.
    pub loop_seconds: f64,
    /// Of `loop_seconds`: the writes of snapshots, checkpoints, step rows and
    /// run.yaml as the loop sees them — copying tensors for the background
    /// writer, waiting when its queue is full, and for the last files at the end.
    pub write_seconds: f64,
    /// Median wall time of one update x^k → x^{k+1} (minibatch, forward,
    /// backward, gradient norm, optimiser step; no writes). The median skips
    /// the slow first steps (allocator and kernel warm-up).
    pub step_seconds_median: f64,
}

/// Wall-clock seconds of a probe session (the probe's `timing` in run.yaml).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeTiming {
    /// Loading the data, building the models, reading x^K and steps.parquet.
    pub setup_seconds: f64,
    /// Snapshots measured in this session.
    pub snapshots: u64,
    /// Median wall time of one snapshot: reading x^k, every minibatch's
    /// f_i(x^K), f_i(x^k) and ∇f_i(x^k), the f64 inner products and norms,
    /// writing the snapshot's probe part.
    pub seconds_per_snapshot_median: f64,
    /// Of all snapshots together: reading the snapshot files.
    pub read_seconds: f64,
    /// Of all snapshots together: handing the probe parts to the background
    /// writer and waiting for it at the end.
    pub write_seconds: f64,
}

/// The median of `v` (the mean of the two middle values for an even count);
/// None when empty.
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    })
}

impl Session {
    pub fn begin(command: &str, device: &str, start_step: u64) -> Session {
        Session {
            command: command.to_string(),
            host: crate::util::hostname(),
            pid: std::process::id(),
            device: device.to_string(),
            torch_version: crate::util::loaded_libtorch().1,
            started: crate::util::now_rfc3339(),
            ended: None,
            start_step,
            end_step: None,
            outcome: None,
            reproducibility: None,
            timing: None,
        }
    }
}

/// Whether the process of a session is alive: Some(bool) on the same host,
/// None when the session ran on another host (it cannot be checked from here).
pub fn session_alive(s: &Session) -> Option<bool> {
    (s.host == crate::util::hostname()).then(|| Path::new(&format!("/proc/{}", s.pid)).exists())
}

/// The session of another live process on this host that is writing this run.
pub fn live_writer(m: &Manifest) -> Option<&Session> {
    let s = m.sessions.last()?;
    let writing = m.status == Status::Running && s.ended.is_none() && s.pid != std::process::id();
    (writing && session_alive(s) == Some(true)).then_some(s)
}

/// Facts about training derived from config and data.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct TrainingInfo {
    pub total_steps: u64,
    pub steps_per_epoch: u64,
    pub examples: u64,
    pub parameters: i64,
    /// Step of the last completed update + 1 (= steps done).
    pub steps_done: u64,
    pub snapshot_steps: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeInfo {
    pub status: Status,
    pub started: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
    pub device: String,
    pub settings: ProbeConfig,
    pub snapshots_probed: u64,
    pub rows: u64,
    /// Wall-clock seconds per probed snapshot (mean over this probe session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_per_snapshot: Option<f64>,
    /// With `probe.curvature`: wall-clock seconds per snapshot of the
    /// curvature pass alone (mean over this probe session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curvature_seconds_per_snapshot: Option<f64>,
    /// The settings the probe ran under (TF32 off, no autocast; on CUDA
    /// deterministic algorithms), as libtorch reported them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reproducibility: Option<crate::torch::reproducibility::Reproducibility>,
    /// Setup and steady-state cost of this probe session (absent when it
    /// measured nothing, e.g. a gather of shards' parts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<ProbeTiming>,
    /// With `probe.replay`: what the replay probe added (src/probe/replay.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplayInfo>,
}

/// The replay probe's part of landscape.parquet.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ReplayInfo {
    /// Segments between restart points (step 0, snapshots with a known
    /// optimiser state, x^K).
    pub segments: u64,
    /// Their restart points, the segments' first steps.
    pub restart_points: Vec<u64>,
    /// Replay rows in landscape.parquet (rows of steps the snapshot probe
    /// measured are kept from the snapshot probe).
    pub rows: u64,
    /// Steps where the replayed `train` row was compared with the snapshot
    /// probe's, bit for bit.
    pub steps_compared: u64,
    /// Steps replayed by this probe session (0 for a gather of shards' parts).
    pub steps_replayed_now: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps_per_second: Option<f64>,
    /// Whether rows came from the training step's own pass (no dropout,
    /// BatchNorm, autocast or chunking) or were measured separately.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_pass: Option<bool>,
    /// The settings the replayed training steps ran under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reproducibility: Option<crate::torch::reproducibility::Reproducibility>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub experiment: String,
    pub run_id: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub training: TrainingInfo,
    pub provenance: Provenance,
    pub sessions: Vec<Session>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeInfo>,
    /// The sweep task that made this run and its swept values (src/experiment/sweep.rs);
    /// absent for runs made without a sweep. Not part of the run identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepRecord>,
    /// Who took the training steps when abcond did not: the Python
    /// companion's Logger, recording a user's own PyTorch loop. Absent for
    /// runs abcond trained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trainer: Option<Trainer>,
    pub config: Config,
}

/// The training loop of a run abcond did not train (run.yaml's `trainer`):
/// a user's own PyTorch loop, recorded by the Python companion's
/// `abcond.Logger` in abcond's run-directory format. Its minibatches are the
/// ones the loop drew (steps.parquet), not abcond's sampler's; abcond probes
/// and analyses it but cannot train, resume or repair it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Trainer {
    /// `abcond.Logger`.
    pub name: String,
    /// Version of the Python companion.
    pub version: String,
    pub python: String,
    pub torch_version: String,
    /// The torch optimiser: its class and the hyper-parameters of its first
    /// parameter group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<String>,
}

impl Trainer {
    /// Why abcond cannot `wanted` (train, resume, repair) the logged run in `dir`.
    pub fn refusal(&self, dir: &Path, wanted: &str) -> String {
        format!(
            "{} was logged by {} {} from a PyTorch training loop, not trained by abcond: abcond cannot {wanted} it. Run the script that logged it again (abcond.Logger(…, replace=True) starts the run afresh)",
            dir.display(),
            self.name,
            self.version
        )
    }
}

/// Paths inside a run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> RunDir {
        RunDir { root: root.into() }
    }
    pub fn manifest(&self) -> PathBuf {
        self.root.join("run.yaml")
    }
    pub fn data_table(&self) -> PathBuf {
        self.root.join("data.parquet")
    }
    /// The vocabulary of a `text` data set.
    pub fn vocab(&self) -> PathBuf {
        self.root.join("vocab.parquet")
    }
    pub fn steps(&self) -> PathBuf {
        self.root.join("steps.parquet")
    }
    /// The held-out evaluation (`probe.eval`).
    pub fn eval(&self) -> PathBuf {
        self.root.join("eval.parquet")
    }
    pub fn steps_parts(&self) -> PathBuf {
        self.root.join("steps-parts")
    }
    pub fn steps_part(&self, first: u64, last: u64) -> PathBuf {
        self.steps_parts()
            .join(format!("steps-{first:010}-{last:010}.parquet"))
    }
    pub fn iterates(&self) -> PathBuf {
        self.root.join("iterates")
    }
    pub fn snapshot_dir(&self, step: u64) -> PathBuf {
        self.iterates().join(format!("step={step}"))
    }
    pub fn snapshot(&self, step: u64) -> PathBuf {
        self.snapshot_dir(step).join("part-0.parquet")
    }
    /// Loads the iterate x^k of this run into `model`, streaming (see
    /// [`crate::model::Model::load_from`]), after checking that the file is
    /// the iterate of step k of run `run_id`.
    pub fn load_iterate(&self, model: &crate::model::Model, run_id: &str, k: u64) -> Result<()> {
        let path = self.snapshot(k);
        let reader = crate::store::tensors::TensorReader::open(&path)?;
        reader.check_identity("iterate", run_id, Some(k))?;
        model.load_from(&reader, &path.display().to_string())
    }
    /// The optimiser state stored with snapshot k (`snapshots.optimizer_state`):
    /// a restart point of the replay probe.
    pub fn snapshot_optim(&self, step: u64) -> PathBuf {
        self.snapshot_dir(step).join("optim.parquet")
    }
    /// The replay probe's parts, one per segment (src/probe/replay.rs).
    pub fn replay_parts(&self) -> PathBuf {
        self.root.join("replay-parts")
    }
    pub fn replay_part(&self, start: u64, end: u64) -> PathBuf {
        self.replay_parts()
            .join(format!("steps-{start:010}-{end:010}.parquet"))
    }
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }
    pub fn checkpoint(&self) -> PathBuf {
        self.state_dir().join("checkpoint.parquet")
    }
    pub fn landscape(&self) -> PathBuf {
        self.root.join("landscape.parquet")
    }
    /// The points of a cloud probe (known-answer problems).
    pub fn cloud(&self) -> PathBuf {
        self.root.join("cloud.parquet")
    }
    pub fn probe_parts(&self) -> PathBuf {
        self.root.join("probe-parts")
    }
    pub fn probe_part(&self, step: u64) -> PathBuf {
        self.probe_parts().join(format!("step={step}.parquet"))
    }

    pub fn curvature(&self) -> PathBuf {
        self.root.join("curvature.parquet")
    }
    pub fn curvature_parts(&self) -> PathBuf {
        self.root.join("curvature-parts")
    }
    pub fn curvature_part(&self, step: u64) -> PathBuf {
        self.curvature_parts().join(format!("step={step}.parquet"))
    }

    pub fn exists(&self) -> bool {
        self.manifest().is_file()
    }

    /// Fails unless this is a run directory (it has run.yaml), before anything
    /// is written into it: a mistyped path must not become a directory with a
    /// lock file in it.
    pub fn require(&self, what: &str) -> Result<()> {
        if !self.exists() {
            bail!(
                "{} is not an abcond run directory (it has no run.yaml): cannot {what} it; `abcond inspect DIR` lists the runs under a directory",
                self.root.display()
            );
        }
        Ok(())
    }

    pub fn read_manifest(&self) -> Result<Manifest> {
        let p = self.manifest();
        let text = crate::util::read_text_file(&p, "run manifest", crate::util::MAX_YAML_BYTES)
            .with_context(|| format!("is {} an abcond run directory?", self.root.display()))?;
        // The last line is the checksum of everything before it.
        let sealed = crate::store::seal::unseal(&p, &text).context(
            "abcond writes run.yaml and relies on every value in it (the config, the steps done, the status); undo the edit or restore it from a copy",
        )?;
        let body = sealed.unwrap_or(&text);
        let mut m: Manifest = serde_yaml::from_str(body)
            .with_context(|| format!("{}: not a valid abcond run manifest", p.display()))?;
        if m.trainer.is_some() {
            // The Logger records the config as the user gave it; abcond fills
            // in its defaults (and checks it) as for a config file.
            m.config = m.config.resolve().with_context(|| {
                format!(
                    "{}: the config the Logger recorded is not a valid abcond config",
                    p.display()
                )
            })?;
        }
        match m.format.as_str() {
            MANIFEST_FORMAT if sealed.is_none() => bail!(
                "{}: the checksum line that ends every {MANIFEST_FORMAT:?} run.yaml is missing: the file was cut short or edited",
                p.display()
            ),
            MANIFEST_FORMAT | MANIFEST_FORMAT_V1 => Ok(m),
            other => bail!(
                "{}: format {other:?}, expected {MANIFEST_FORMAT:?}",
                p.display()
            ),
        }
    }

    pub fn write_manifest(&self, m: &Manifest) -> Result<()> {
        crate::store::atomic::write_bytes(&self.manifest(), manifest_text(m)?.as_bytes())
    }

    /// Steps of the snapshots on disk (directories with a complete part file).
    pub fn snapshot_steps(&self) -> Result<Vec<u64>> {
        list_steps(&self.iterates(), |e| {
            let name = e.file_name().to_string_lossy().to_string();
            let step = name.strip_prefix("step=")?.parse().ok()?;
            e.path().join("part-0.parquet").is_file().then_some(step)
        })
    }

    /// Steps of the probe parts on disk.
    pub fn probe_part_steps(&self) -> Result<Vec<u64>> {
        Self::part_steps(&self.probe_parts())
    }

    /// Steps of the curvature parts on disk.
    pub fn curvature_part_steps(&self) -> Result<Vec<u64>> {
        Self::part_steps(&self.curvature_parts())
    }

    fn part_steps(dir: &Path) -> Result<Vec<u64>> {
        list_steps(dir, |e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.strip_prefix("step=")?
                .strip_suffix(".parquet")?
                .parse()
                .ok()
        })
    }
}

/// The text of `run.yaml` for `m` (written by [`RunDir::write_manifest`], or
/// handed to the background writer by the training loop).
/// run.yaml's text: a header comment, the manifest (in the current format,
/// also for a run begun by an older abcond) and a last line `# checksum:
/// xxh64:<hex>`, the XXH64 (seed 0) of all the text before that line.
pub fn manifest_text(m: &Manifest) -> Result<String> {
    let mut m = m.clone();
    m.format = MANIFEST_FORMAT.to_string();
    let text = crate::util::yaml11_floats(&serde_yaml::to_string(&m)?);
    let header = "# abcond run manifest: resolved config, provenance and status (written by abcond; do not edit)\n";
    Ok(crate::store::seal::seal(
        &format!("{header}{text}"),
        crate::store::seal::Comment::Hash,
    ))
}

fn list_steps(dir: &Path, f: impl Fn(&std::fs::DirEntry) -> Option<u64>) -> Result<Vec<u64>> {
    if !dir.is_dir() {
        return Ok(vec![]);
    }
    let mut v: Vec<u64> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| f(&e))
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// What `run.yaml` records about the sweep task that made the run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SweepRecord {
    /// 0-based task index in the sweep.
    pub task: u64,
    /// The swept keys (dotted, in sweep order) and this run's values.
    pub values: Mapping,
    /// The column type of each axis over all its values (int64, float64, bool,
    /// utf8), so every run's landscape column has the type of runs.parquet's.
    #[serde(default, skip_serializing_if = "Mapping::is_empty")]
    pub types: Mapping,
}

/// The column types of a run's sweep axes (empty without a sweep, or for a
/// run recorded before types were).
pub fn swept_types(m: &Manifest) -> std::collections::BTreeMap<String, String> {
    m.sweep
        .as_ref()
        .map(|r| {
            r.types
                .iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The swept values of a run (empty for a run made without a sweep).
pub fn swept_values(m: &Manifest) -> Vec<(String, Value)> {
    m.sweep
        .as_ref()
        .map(|r| {
            r.values
                .iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.clone())))
                .collect()
        })
        .unwrap_or_default()
}

/// Finds run directories: PATH itself when it holds run.yaml, else every
/// directory below it (up to three levels) that does.
pub fn discover(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        bail!(
            "{} is not a directory: expected a run directory (with run.yaml) or an experiment directory holding runs",
            path.display()
        );
    }
    if path.join("run.yaml").is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found = Vec::new();
    walk(path, 0, &mut found)?;
    found.sort();
    if found.is_empty() {
        bail!(
            "no run directories under {}: expected run.yaml in it or in its subdirectories (e.g. results/<experiment>/<run_id>/run.yaml)",
            path.display()
        );
    }
    Ok(found)
}

fn walk(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) -> Result<()> {
    if depth >= 3 {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') || name == "analysis" {
            continue;
        }
        if p.join("run.yaml").is_file() {
            found.push(p);
        } else {
            walk(&p, depth + 1, found)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{median, Session, Status};

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 100.0]), Some(3.5));
        assert_eq!(median(&mut [0.5]), Some(0.5));
        assert_eq!(median(&mut []), None);
    }

    /// Session outcomes and probe statuses were strings in run.yaml; the
    /// enum reads and writes the same words.
    #[test]
    fn statuses_read_and_write_the_words_of_run_yaml() {
        let mut s = Session::begin("abcond train x.yaml", "cpu", 0);
        for (word, status) in [
            ("completed", Status::Completed),
            ("diverged", Status::Diverged),
            ("failed", Status::Failed),
        ] {
            s.outcome = Some(status);
            let text = serde_yaml::to_string(&s).unwrap();
            assert!(text.contains(&format!("outcome: {word}")), "{text}");
            let back: Session = serde_yaml::from_str(&text).unwrap();
            assert_eq!(back.outcome, Some(status));
        }
        assert!(serde_yaml::from_str::<Status>("finished").is_err());
    }
}
