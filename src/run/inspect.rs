//! `abcond inspect RUN_DIR`: what a run directory holds — config, status,
//! steps, snapshots and probe coverage — without loading any tensor. The
//! facts are read once ([`Inspection`]); the text and `--json` are written
//! from them.

use crate::run::{Manifest, RunDir};
use crate::store::tables;
use anyhow::Result;
use serde_yaml::{Mapping, Value};
use std::fmt::Write as _;

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        dir_size(&p)
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn steps_list(steps: &[u64]) -> String {
    if steps.len() <= 12 {
        steps
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        let head: Vec<String> = steps[..6].iter().map(u64::to_string).collect();
        let tail: Vec<String> = steps[steps.len() - 3..]
            .iter()
            .map(u64::to_string)
            .collect();
        format!("{}, …, {}", head.join(", "), tail.join(", "))
    }
}

/// The step record in brief: first and last row, the mean loss of the last
/// (up to) 100 rows.
struct StepsFacts {
    rows: usize,
    first: tables::StepRow,
    last: tables::StepRow,
    tail: usize,
    mean_tail: f64,
}

/// How far probing has come.
enum ProbeFacts {
    /// run.yaml has a probe record and landscape.parquet exists.
    Probed {
        rows: usize,
        /// The probe labels in the table, sorted.
        kinds: Vec<String>,
        /// Snapshots on disk (other than x^K) without landscape rows.
        not_probed: Vec<u64>,
    },
    /// No landscape.parquet, but per-snapshot probe parts.
    Parts(usize),
    NotRun,
}

/// Everything `inspect` shows.
struct Inspection {
    root: std::path::PathBuf,
    m: Manifest,
    /// run.yaml says running but the process that trained it is gone.
    stale: bool,
    steps: Option<StepsFacts>,
    snaps: Vec<u64>,
    snap_bytes: u64,
    /// Snapshots the schedule wrote (up to what is done) that are not there.
    missing: Vec<u64>,
    probe: ProbeFacts,
}

fn gather(dir: &RunDir) -> Result<Inspection> {
    let m = dir.read_manifest()?;
    let last = m.sessions.last();
    let stale = m.status == crate::run::Status::Running
        && last.is_some_and(|l| l.ended.is_none() && crate::run::session_alive(l) == Some(false));
    // Steps: the merged table, or the parts of a run in progress.
    let rows = if dir.steps().is_file() {
        tables::read_steps(&dir.steps())?.0
    } else if dir.steps_parts().is_dir() {
        let mut rows = Vec::new();
        let mut parts: Vec<_> = std::fs::read_dir(dir.steps_parts())?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect();
        parts.sort();
        for p in parts {
            rows.extend(tables::read_steps(&p)?.0);
        }
        rows
    } else {
        Vec::new()
    };
    let steps = match (rows.first(), rows.last()) {
        (Some(first), Some(last)) => {
            let tail = &rows[rows.len().saturating_sub(100)..];
            Some(StepsFacts {
                rows: rows.len(),
                first: first.clone(),
                last: last.clone(),
                tail: tail.len(),
                mean_tail: tail.iter().map(|r| r.loss).sum::<f64>() / tail.len() as f64,
            })
        }
        _ => None,
    };
    let snaps = dir.snapshot_steps()?;
    let upto = if m.status == crate::run::Status::Completed {
        m.training.total_steps
    } else {
        m.training.steps_done
    };
    let missing = crate::train::setup::snapshot_steps(&m.config.snapshots, m.training.total_steps)
        .map(|expected| {
            expected
                .range(..=upto)
                .copied()
                .filter(|k| !snaps.contains(k))
                .collect()
        })
        .unwrap_or_default();
    let parts = dir.probe_part_steps()?;
    let probe = if m.probe.is_some() && dir.landscape().is_file() {
        let (rows, _) = tables::read_landscape(&dir.landscape())?;
        let mut kinds: Vec<String> = rows.iter().map(|r| r.probe.to_string()).collect();
        kinds.sort();
        kinds.dedup();
        let probed: Vec<u64> = crate::probe::coverage(&rows)
            .keys()
            .map(|&k| k as u64)
            .collect();
        let not_probed = snaps
            .iter()
            // x^K is the reference: probed only with probe.include_final
            .filter(|&&k| !probed.contains(&k) && k != m.training.total_steps)
            .copied()
            .collect();
        ProbeFacts::Probed {
            rows: rows.len(),
            kinds,
            not_probed,
        }
    } else if !parts.is_empty() {
        ProbeFacts::Parts(parts.len())
    } else {
        ProbeFacts::NotRun
    };
    Ok(Inspection {
        root: dir.root.clone(),
        snap_bytes: dir_size(&dir.iterates()),
        m,
        stale,
        steps,
        snaps,
        missing,
        probe,
    })
}

pub fn render(dir: &RunDir) -> Result<String> {
    let i = gather(dir)?;
    let (m, c) = (&i.m, &i.m.config);
    let root = i.root.display();
    let mut s = String::new();
    writeln!(s, "run         {root}")?;
    writeln!(
        s,
        "experiment  {}   run id {}   seed {}",
        m.experiment, m.run_id, c.seed
    )?;
    if i.stale && m.trainer.is_some() {
        writeln!(
            s,
            "status      running, but its PyTorch loop is gone (stopped before finish()); run the script that logged it again"
        )?;
    } else if i.stale {
        writeln!(
            s,
            "status      running, but its process is gone (interrupted); `abcond train` on its config resumes it"
        )?;
    } else {
        writeln!(s, "status      {}", m.status.name())?;
    }
    if let Some(msg) = &m.message {
        writeln!(s, "message     {msg}")?;
    }
    if let Some(t) = &m.trainer {
        writeln!(
            s,
            "trained by  a PyTorch loop, logged by {} {} (Python {}, torch {}){}",
            t.name,
            t.version,
            t.python,
            t.torch_version,
            t.optimizer
                .as_ref()
                .map(|o| format!("; optimiser {o}"))
                .unwrap_or_default()
        )?;
    }
    writeln!(
        s,
        "provenance  abcond {} (git {}), built against torch {}, created {}",
        m.provenance.abcond_version,
        if m.provenance.git_commit.is_empty() {
            "unknown"
        } else {
            &m.provenance.git_commit
        },
        m.provenance.torch_version_built,
        m.provenance.created
    )?;
    let t = &m.training;
    writeln!(
        s,
        "training    {}/{} steps ({} per epoch), {} examples, {} parameters",
        t.steps_done, t.total_steps, t.steps_per_epoch, t.examples, t.parameters
    )?;
    if let Some(st) = &i.steps {
        writeln!(
            s,
            "steps       {} rows on disk; loss {:.4} at step 0, {:.4} at step {} (mean of last {}: {:.4}); lr {:.3e} → {:.3e}",
            st.rows,
            st.first.loss,
            st.last.loss,
            st.last.step,
            st.tail,
            st.mean_tail,
            st.first.lr,
            st.last.lr
        )?;
    } else {
        writeln!(s, "steps       none on disk yet")?;
    }
    writeln!(
        s,
        "snapshots   {} on disk ({}): steps {}",
        i.snaps.len(),
        crate::util::human_bytes(i.snap_bytes),
        steps_list(&i.snaps)
    )?;
    if !i.missing.is_empty() {
        writeln!(
            s,
            "MISSING     {} snapshot(s) the run wrote: steps {} (`abcond verify {root}` checks every file)",
            i.missing.len(),
            steps_list(&i.missing),
        )?;
    }
    match (&m.probe, &i.probe) {
        (
            Some(p),
            ProbeFacts::Probed {
                rows,
                kinds,
                not_probed,
            },
        ) => {
            writeln!(
                s,
                "probe       {} snapshots probed, {} rows in landscape.parquet (probes: {}); device {}, BatchNorm {}{}",
                p.snapshots_probed,
                rows,
                kinds.join(", "),
                p.device,
                p.settings.batchnorm.name(),
                p.seconds_per_snapshot.map_or(String::new(), |x| format!(", {x:.3} s per snapshot"))
            )?;
            if let Some(t) = &p.timing {
                writeln!(
                    s,
                    "            last session: {} snapshots, setup {:.2} s, median {:.3} s per snapshot (reading {:.2} s, writing {:.2} s in all)",
                    t.snapshots,
                    t.setup_seconds,
                    t.seconds_per_snapshot_median,
                    t.read_seconds,
                    t.write_seconds
                )?;
            }
            if let Some(r) = &p.replay {
                writeln!(
                    s,
                    "            replay: the train row of every step, {} replayed rows ({} segments; {} snapshot steps compared bit for bit){}{}",
                    r.rows,
                    r.segments,
                    r.steps_compared,
                    match r.shared_pass {
                        Some(true) => "; rows from the training step's own pass",
                        Some(false) => "; rows measured separately from the training step",
                        None => "",
                    },
                    r.steps_per_second
                        .map_or(String::new(), |v| format!(", {v:.0} steps/s"))
                )?;
            }
            if !not_probed.is_empty() {
                writeln!(
                    s,
                    "            not probed: steps {}",
                    steps_list(not_probed)
                )?;
            }
        }
        (_, ProbeFacts::Parts(n)) => writeln!(
            s,
            "probe       in progress or interrupted: {n} of {} snapshots have probe parts",
            i.snaps.len()
        )?,
        _ => match m.status {
            crate::run::Status::Completed => {
                writeln!(s, "probe       not run yet (abcond probe {root})")?
            }
            crate::run::Status::Diverged => writeln!(
                s,
                "probe       none: the run diverged, there is no final iterate to probe against"
            )?,
            _ => writeln!(
                s,
                "probe       not yet: training has not finished (resume it: abcond train CONFIG or abcond run CONFIG)"
            )?,
        },
    }
    writeln!(s, "sessions")?;
    for (k, sess) in m.sessions.iter().enumerate() {
        writeln!(
            s,
            "  {}. {} on {} ({}), pid {}, steps {}–{}: {} → {} [{}]",
            k + 1,
            sess.command,
            sess.host,
            sess.device,
            sess.pid,
            sess.start_step,
            sess.end_step.map_or("?".to_string(), |e| e.to_string()),
            sess.started,
            sess.ended.as_deref().unwrap_or("?"),
            sess.outcome.map_or("no end recorded", |s| s.name())
        )?;
        if let Some(t) = &sess.timing {
            writeln!(
                s,
                "     {} steps: setup {:.2} s, median step {:.3} ms, loop {:.2} s of which writing {:.2} s",
                t.steps,
                t.setup_seconds,
                1e3 * t.step_seconds_median,
                t.loop_seconds,
                t.write_seconds
            )?;
        }
    }
    writeln!(s, "config")?;
    for line in c.to_yaml().lines() {
        writeln!(s, "  {line}")?;
    }
    Ok(s)
}

fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Mapping(
        entries
            .into_iter()
            .map(|(k, v)| (Value::String(k.to_string()), v))
            .collect::<Mapping>(),
    )
}

fn text(s: &str) -> Value {
    Value::String(s.to_string())
}

fn opt<T: Into<Value>>(v: Option<T>) -> Value {
    v.map_or(Value::Null, Into::into)
}

fn steps_value(steps: &[u64]) -> Value {
    Value::Sequence(steps.iter().map(|&k| k.into()).collect())
}

fn yaml<T: serde::Serialize>(v: &T) -> Result<Value> {
    Ok(serde_yaml::to_value(v)?)
}

/// `abcond inspect RUN_DIR --json`: the facts of [`render`] as one line of
/// JSON. Every key is always present (null where the text says nothing);
/// non-finite numbers (a diverged run's loss) are null. Keys: docs/commands.md.
pub fn json(dir: &RunDir) -> Result<String> {
    let i = gather(dir)?;
    let m = &i.m;
    let row = |r: &tables::StepRow| {
        map([
            ("step", r.step.into()),
            ("loss", r.loss.into()),
            ("lr", r.lr.into()),
        ])
    };
    let steps = i.steps.as_ref().map_or(Value::Null, |st| {
        map([
            ("rows", (st.rows as u64).into()),
            ("first", row(&st.first)),
            ("last", row(&st.last)),
            ("tail_rows", (st.tail as u64).into()),
            ("tail_mean_loss", st.mean_tail.into()),
        ])
    });
    let trainer = match &m.trainer {
        Some(t) => map([
            ("name", text(&t.name)),
            ("version", text(&t.version)),
            ("python", text(&t.python)),
            ("torch_version", text(&t.torch_version)),
            ("optimizer", opt(t.optimizer.clone())),
        ]),
        None => Value::Null,
    };
    let p = m.probe.as_ref();
    let (state, rows, kinds, not_probed, parts) = match &i.probe {
        ProbeFacts::Probed {
            rows,
            kinds,
            not_probed,
        } => (
            "probed",
            Value::from(*rows as u64),
            Value::Sequence(kinds.iter().map(|k| text(k)).collect()),
            steps_value(not_probed),
            0u64,
        ),
        ProbeFacts::Parts(n) => ("parts", Value::Null, Value::Null, Value::Null, *n as u64),
        ProbeFacts::NotRun => ("not-run", Value::Null, Value::Null, Value::Null, 0),
    };
    let probed = matches!(i.probe, ProbeFacts::Probed { .. });
    // The probe record's own facts, shown with a probed landscape.
    let rec = p.filter(|_| probed);
    let replay = rec
        .and_then(|p| p.replay.as_ref())
        .map_or(Value::Null, |r| {
            map([
                ("rows", r.rows.into()),
                ("segments", r.segments.into()),
                ("steps_compared", r.steps_compared.into()),
                ("shared_pass", opt(r.shared_pass)),
                ("steps_per_second", opt(r.steps_per_second)),
            ])
        });
    let probe = map([
        ("state", text(state)),
        ("status", opt(p.map(|p| p.status.name()))),
        ("snapshots_probed", opt(rec.map(|p| p.snapshots_probed))),
        ("rows", rows),
        ("probes", kinds),
        ("device", opt(rec.map(|p| p.device.clone()))),
        ("batchnorm", opt(rec.map(|p| p.settings.batchnorm.name()))),
        (
            "seconds_per_snapshot",
            opt(rec.and_then(|p| p.seconds_per_snapshot)),
        ),
        (
            "timing",
            match rec.and_then(|p| p.timing.as_ref()) {
                Some(t) => yaml(t)?,
                None => Value::Null,
            },
        ),
        ("replay", replay),
        ("not_probed", not_probed),
        ("parts", parts.into()),
    ]);
    let mut sessions = Vec::new();
    for sess in &m.sessions {
        sessions.push(map([
            ("command", text(&sess.command)),
            ("host", text(&sess.host)),
            ("device", text(&sess.device)),
            ("pid", sess.pid.into()),
            ("start_step", sess.start_step.into()),
            ("started", text(&sess.started)),
            ("ended", opt(sess.ended.clone())),
            ("outcome", opt(sess.outcome.map(|o| o.name()))),
            (
                "timing",
                match &sess.timing {
                    Some(t) => yaml(t)?,
                    None => Value::Null,
                },
            ),
        ]));
    }
    let t = &m.training;
    let doc = map([
        ("run_dir", text(&i.root.display().to_string())),
        ("experiment", text(&m.experiment)),
        ("run_id", text(&m.run_id)),
        ("seed", m.config.seed.into()),
        ("status", text(m.status.name())),
        ("interrupted", i.stale.into()),
        ("message", opt(m.message.clone())),
        ("trainer", trainer),
        (
            "provenance",
            map([
                ("abcond_version", text(&m.provenance.abcond_version)),
                (
                    "git_commit",
                    opt(Some(m.provenance.git_commit.clone()).filter(|c| !c.is_empty())),
                ),
                (
                    "torch_version_built",
                    text(&m.provenance.torch_version_built),
                ),
                ("created", text(&m.provenance.created)),
            ]),
        ),
        (
            "training",
            map([
                ("steps_done", t.steps_done.into()),
                ("total_steps", t.total_steps.into()),
                ("steps_per_epoch", t.steps_per_epoch.into()),
                ("examples", t.examples.into()),
                ("parameters", t.parameters.into()),
            ]),
        ),
        ("steps", steps),
        (
            "snapshots",
            map([
                ("count", (i.snaps.len() as u64).into()),
                ("bytes", i.snap_bytes.into()),
                ("steps", steps_value(&i.snaps)),
                ("missing", steps_value(&i.missing)),
            ]),
        ),
        ("probe", probe),
        ("sessions", Value::Sequence(sessions)),
        ("config", serde_yaml::from_str(&m.config.to_yaml())?),
    ]);
    Ok(crate::util::json::to_json(&doc))
}
