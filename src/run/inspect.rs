//! `abcond inspect RUN_DIR`: what a run directory holds — config, status,
//! steps, snapshots and probe coverage — without loading any tensor.

use crate::run::RunDir;
use crate::store::tables;
use anyhow::Result;
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

pub fn render(dir: &RunDir) -> Result<String> {
    let m = dir.read_manifest()?;
    let c = &m.config;
    let mut s = String::new();
    writeln!(s, "run         {}", dir.root.display())?;
    writeln!(
        s,
        "experiment  {}   run id {}   seed {}",
        m.experiment, m.run_id, c.seed
    )?;
    let last = m.sessions.last();
    let stale = m.status == crate::run::Status::Running
        && last.is_some_and(|l| l.ended.is_none() && crate::run::session_alive(l) == Some(false));
    if stale && m.trainer.is_some() {
        writeln!(
            s,
            "status      running, but its PyTorch loop is gone (stopped before finish()); run the script that logged it again"
        )?;
    } else if stale {
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
    // Steps: the merged table, or the parts of a run in progress.
    let steps = if dir.steps().is_file() {
        Some(tables::read_steps(&dir.steps())?.0)
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
        Some(rows)
    } else {
        None
    };
    if let Some(rows) = steps.filter(|r| !r.is_empty()) {
        let first = &rows[0];
        let last = rows.last().unwrap();
        let tail = &rows[rows.len().saturating_sub(100)..];
        let mean_tail = tail.iter().map(|r| r.loss).sum::<f64>() / tail.len() as f64;
        writeln!(
            s,
            "steps       {} rows on disk; loss {:.4} at step 0, {:.4} at step {} (mean of last {}: {:.4}); lr {:.3e} → {:.3e}",
            rows.len(),
            first.loss,
            last.loss,
            last.step,
            tail.len(),
            mean_tail,
            first.lr,
            last.lr
        )?;
    } else {
        writeln!(s, "steps       none on disk yet")?;
    }
    let snaps = dir.snapshot_steps()?;
    writeln!(
        s,
        "snapshots   {} on disk ({}): steps {}",
        snaps.len(),
        crate::util::human_bytes(dir_size(&dir.iterates())),
        steps_list(&snaps)
    )?;
    // Snapshots the schedule wrote (up to what is done) that are not there.
    let upto = if m.status == crate::run::Status::Completed {
        m.training.total_steps
    } else {
        m.training.steps_done
    };
    if let Ok(expected) = crate::train::setup::snapshot_steps(&c.snapshots, m.training.total_steps)
    {
        let missing: Vec<u64> = expected
            .range(..=upto)
            .copied()
            .filter(|k| !snaps.contains(k))
            .collect();
        if !missing.is_empty() {
            writeln!(
                s,
                "MISSING     {} snapshot(s) the run wrote: steps {} (`abcond verify {}` checks every file)",
                missing.len(),
                steps_list(&missing),
                dir.root.display()
            )?;
        }
    }
    let parts = dir.probe_part_steps()?;
    match (&m.probe, dir.landscape().is_file()) {
        (Some(p), true) => {
            let (rows, _) = tables::read_landscape(&dir.landscape())?;
            let mut kinds: Vec<String> = rows.iter().map(|r| r.probe.to_string()).collect();
            kinds.sort();
            kinds.dedup();
            writeln!(
                s,
                "probe       {} snapshots probed, {} rows in landscape.parquet (probes: {}); device {}, BatchNorm {}{}",
                p.snapshots_probed,
                rows.len(),
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
            let probed: Vec<u64> = crate::probe::coverage(&rows)
                .keys()
                .map(|&k| k as u64)
                .collect();
            let missing: Vec<u64> = snaps
                .iter()
                // x^K is the reference: probed only with probe.include_final
                .filter(|&&k| !probed.contains(&k) && k != t.total_steps)
                .copied()
                .collect();
            if !missing.is_empty() {
                writeln!(s, "            not probed: steps {}", steps_list(&missing))?;
            }
        }
        _ if !parts.is_empty() => writeln!(
            s,
            "probe       in progress or interrupted: {} of {} snapshots have probe parts",
            parts.len(),
            snaps.len()
        )?,
        _ => writeln!(
            s,
            "probe       not run yet (abcond probe {})",
            dir.root.display()
        )?,
    }
    writeln!(s, "sessions")?;
    for (i, sess) in m.sessions.iter().enumerate() {
        writeln!(
            s,
            "  {}. {} on {} ({}), pid {}, from step {}: {} → {} [{}]",
            i + 1,
            sess.command,
            sess.host,
            sess.device,
            sess.pid,
            sess.start_step,
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
