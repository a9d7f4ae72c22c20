//! The run directory `<out>/<experiment>/<run_id>/` and its manifest `run.yaml`.
//!
//! ```text
//! run.yaml                          resolved config, provenance, status, sessions
//! data.parquet                      the examples: index → source row (+ synthetic data)
//! steps.parquet                     one row per training step (after training ends)
//! steps-parts/                      step rows while training runs (merged at the end)
//! iterates/step=<k>/part-0.parquet  snapshot x^k, one per scheduled step and x^K
//! state/checkpoint.parquet          resume checkpoint while training runs
//! probe-parts/step=<k>.parquet      probe rows of one snapshot (resumable probing)
//! landscape.parquet                 all probe rows
//! .lock                             writer lock (lock.rs): held while a process writes the run
//! ```

pub mod lock;

use crate::config::{Config, ProbeConfig};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const MANIFEST_FORMAT: &str = "abcond.run/1";

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
    pub outcome: Option<String>,
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
        }
    }
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
    pub status: String,
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
    /// The sweep task that made this run and its swept values (src/sweep.rs);
    /// absent for runs made without a sweep. Not part of the run identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<crate::sweep::SweepRecord>,
    pub config: Config,
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
    pub fn steps(&self) -> PathBuf {
        self.root.join("steps.parquet")
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

    pub fn read_manifest(&self) -> Result<Manifest> {
        let p = self.manifest();
        let text = std::fs::read_to_string(&p).with_context(|| {
            format!(
                "reading {} (is {} an abcond run directory?)",
                p.display(),
                self.root.display()
            )
        })?;
        let m: Manifest = serde_yaml::from_str(&text)
            .with_context(|| format!("{}: not a valid abcond run manifest", p.display()))?;
        if m.format != MANIFEST_FORMAT {
            bail!(
                "{}: format {:?}, expected {MANIFEST_FORMAT:?}",
                p.display(),
                m.format
            );
        }
        Ok(m)
    }

    pub fn write_manifest(&self, m: &Manifest) -> Result<()> {
        let text = crate::util::yaml11_floats(&serde_yaml::to_string(m)?);
        let header = "# abcond run manifest: resolved config, provenance and status (written by abcond; do not edit)\n";
        crate::store::atomic::write_bytes(&self.manifest(), format!("{header}{text}").as_bytes())
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
