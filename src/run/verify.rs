//! `abcond verify PATH`: checks every file of a run (or of every run under an
//! experiment directory) against run.yaml and the step record, and every
//! checksum, reading every value once; says for each problem what was lost
//! and what to do. Nothing is written.

use super::{RunDir, Status};
use crate::store::tensors::TensorReader;
use anyhow::Result;
use std::fmt::Write as _;
use std::path::Path;

/// One problem found in a run.
pub struct Problem {
    pub file: String,
    pub what: String,
    pub fix: String,
}

/// The problems of one run directory (empty: all files check out), and a line
/// of what was checked.
pub fn verify_run(dir: &RunDir) -> (Vec<Problem>, String) {
    let mut problems = Vec::new();
    let mut checked = 0usize;
    let mut problem = |file: &Path, what: String, fix: &str| {
        problems.push(Problem {
            file: file.display().to_string(),
            what,
            fix: fix.to_string(),
        })
    };
    let retrain = "re-create it: `abcond train CONFIG --repair` retrains from step 0 only as far as the last lost file and checks the surviving ones bit for bit (deterministic per seed on CPU); `--restart-from-scratch` retrains the whole run";
    let m = match dir.read_manifest() {
        Ok(m) => m,
        Err(e) => {
            problem(
                &dir.manifest(),
                format!("{e:#}"),
                "restore run.yaml from a copy; without it the run cannot be read",
            );
            return (problems, "run.yaml unreadable".into());
        }
    };
    checked += 1;
    let logged_fix;
    let retrain = match &m.trainer {
        Some(t) => {
            logged_fix = format!(
                "the run was logged by {} from a PyTorch loop, which abcond cannot re-create: run the script that logged it again (abcond.Logger(…, replace=True))",
                t.name
            );
            logged_fix.as_str()
        }
        None => retrain,
    };
    let total = m.training.total_steps;
    // Steps whose rows must exist: all of them once completed, else those
    // before the last checkpoint.
    let recorded = match m.status {
        Status::Completed => total,
        _ => m.training.steps_done,
    };
    let mut steps = std::collections::BTreeSet::new();
    if dir.steps().is_file() {
        checked += 1;
        match crate::store::tables::read_steps(&dir.steps()) {
            Ok((rows, _)) => steps.extend(rows.iter().map(|r| r.step)),
            Err(e) => problem(&dir.steps(), format!("{e:#}"), retrain),
        }
    }
    if let Ok(rd) = std::fs::read_dir(dir.steps_parts()) {
        // Temporaries of a write a crash cut short are never read.
        let parts = rd
            .flatten()
            .filter(|e| !crate::store::atomic::is_temporary(&e.file_name().to_string_lossy()));
        for e in parts {
            checked += 1;
            match crate::store::tables::read_steps(&e.path()) {
                Ok((rows, _)) => steps.extend(rows.iter().map(|r| r.step)),
                Err(e2) => problem(&e.path(), format!("{e2:#}"), retrain),
            }
        }
    }
    let gaps: Vec<i64> = (0..recorded as i64)
        .filter(|k| !steps.contains(k))
        .collect();
    if !gaps.is_empty() {
        problem(
            &dir.steps(),
            format!(
                "{} of the {recorded} recorded steps have no row (first: step {})",
                gaps.len(),
                gaps[0]
            ),
            retrain,
        );
    }
    // Snapshots of the schedule, up to what the run has done.
    let upto = if m.status == Status::Completed {
        total
    } else {
        m.training.steps_done
    };
    match crate::train::setup::snapshot_steps(&m.config.snapshots, total) {
        Ok(expected) => {
            for &k in expected.range(..=upto) {
                let p = dir.snapshot(k);
                checked += 1;
                if !p.is_file() {
                    problem(&p, format!("snapshot x^{k} is missing"), retrain);
                    continue;
                }
                let read = TensorReader::open(&p)
                    .and_then(|r| r.for_each_chunk(|_| true, |_, _, _| Ok(())));
                if let Err(e) = read {
                    problem(&p, format!("{e:#}"), retrain);
                }
                // The optimiser state kept with it (snapshots.optimizer_state).
                let o = dir.snapshot_optim(k);
                if o.is_file() {
                    checked += 1;
                    let read = TensorReader::open(&o)
                        .and_then(|r| r.for_each_chunk(|_| true, |_, _, _| Ok(())));
                    if let Err(e) = read {
                        problem(
                            &o,
                            format!("{e:#}"),
                            "delete it: the replay probe then restarts at an earlier snapshot (or retrain into a new directory to re-create it)",
                        );
                    }
                }
            }
        }
        Err(e) => problem(&dir.manifest(), format!("{e:#}"), retrain),
    }
    if dir.checkpoint().is_file() {
        checked += 1;
        let read = TensorReader::open(&dir.checkpoint())
            .and_then(|r| r.for_each_chunk(|_| true, |_, _, _| Ok(())));
        if let Err(e) = read {
            problem(&dir.checkpoint(), format!("{e:#}"), retrain);
        }
    } else if m.status != Status::Completed && m.training.steps_done > 0 {
        problem(
            &dir.checkpoint(),
            format!(
                "the resume checkpoint is missing, though run.yaml records {} steps done",
                m.training.steps_done
            ),
            retrain,
        );
    }
    if dir.data_table().is_file() {
        checked += 1;
        if let Err(e) = crate::store::checksum::verify_parquet_file(&dir.data_table()) {
            problem(&dir.data_table(), format!("{e:#}"), retrain);
        }
    } else {
        problem(&dir.data_table(), "data.parquet is missing".into(), retrain);
    }
    if dir.vocab().is_file() {
        checked += 1;
        if let Err(e) = crate::store::checksum::verify_parquet_file(&dir.vocab()) {
            problem(&dir.vocab(), format!("{e:#}"), retrain);
        }
    }
    if dir.cloud().is_file() {
        checked += 1;
        if let Err(e) = crate::store::checksum::verify_parquet_file(&dir.cloud()) {
            problem(
                &dir.cloud(),
                format!("{e:#}"),
                "delete it and probe again: `abcond probe RUN_DIR` (it measures the cloud again)",
            );
        }
    }
    let reprobe =
        "delete it and probe again: `abcond probe RUN_DIR` (it recomputes from the snapshots)";
    for p in [dir.landscape(), dir.curvature(), dir.eval()] {
        if p.is_file() {
            checked += 1;
            let read = if p == dir.landscape() {
                crate::store::tables::read_landscape(&p).map(|_| ())
            } else if p == dir.eval() {
                crate::store::tables::read_eval(&p).map(|_| ())
            } else {
                crate::store::tables::read_curvature(&p).map(|_| ())
            };
            if let Err(e) = read {
                problem(&p, format!("{e:#}"), reprobe);
            }
        }
    }
    for parts in [dir.probe_parts(), dir.curvature_parts(), dir.replay_parts()] {
        if let Ok(rd) = std::fs::read_dir(&parts) {
            for e in rd.flatten() {
                checked += 1;
                let p = e.path();
                let read = if parts != dir.curvature_parts() {
                    crate::store::tables::read_landscape(&p).map(|_| ())
                } else {
                    crate::store::tables::read_curvature(&p).map(|_| ())
                };
                if let Err(e) = read {
                    problem(
                        &p,
                        format!("{e:#}"),
                        if parts == dir.replay_parts() {
                            "delete it: the next `abcond probe --replay` replays that segment again"
                        } else {
                            "delete it: the next `abcond probe` measures that snapshot again"
                        },
                    );
                }
            }
        }
    }
    (
        problems,
        format!("{checked} files checked (status {})", m.status.name()),
    )
}

/// The problems of an analysis directory written by `abcond analyze`: every
/// file its `.manifest` lists must be there and pass its check (checksum
/// line, PNG CRCs, Parquet checksum); and a line of what was checked.
pub fn verify_analysis(dir: &Path) -> (Vec<Problem>, String) {
    let mut problems = Vec::new();
    let again = "write the analysis again: `abcond analyze PATH` (it replaces only its own files)";
    let manifest = dir.join(crate::analysis::output::MANIFEST);
    let mut problem = |file: &Path, what: String| {
        problems.push(Problem {
            file: file.display().to_string(),
            what,
            fix: again.to_string(),
        })
    };
    let text = match crate::util::read_text_file(&manifest, "analysis manifest", 1 << 20) {
        Ok(t) => t,
        Err(e) => {
            problem(&manifest, format!("{e:#}"));
            return (problems, "manifest unreadable".into());
        }
    };
    // A sealed manifest lists sealed files; one from before seals does not.
    let sealed = match crate::store::seal::unseal(&manifest, &text) {
        Ok(s) => s.is_some(),
        Err(e) => {
            problem(&manifest, format!("{e:#}"));
            return (problems, "manifest damaged".into());
        }
    };
    let names: Vec<String> = serde_yaml::from_str::<serde_yaml::Value>(&text)
        .ok()
        .and_then(|v| {
            v["files"].as_sequence().map(|s| {
                s.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default();
    for n in &names {
        let p = dir.join(n);
        if !p.is_file() {
            problem(&p, "listed in the analysis manifest but missing".into());
        } else if let Err(e) = crate::store::seal::check_file(&p, sealed) {
            problem(&p, format!("{e:#}"));
        }
    }
    (problems, format!("{} files checked", names.len() + 1))
}

/// The analysis directories that belong to `path` and its runs: `analysis/`
/// of `path`, of each run and of each run's experiment directory.
fn analysis_dirs(path: &Path, runs: &[std::path::PathBuf]) -> Vec<std::path::PathBuf> {
    let mut dirs = std::collections::BTreeSet::new();
    let mut consider = |d: &Path| {
        let a = d.join("analysis");
        if a.join(crate::analysis::output::MANIFEST).is_file() {
            dirs.insert(a);
        }
    };
    consider(path);
    for r in runs {
        consider(r);
        if let Some(exp) = r.parent() {
            consider(exp);
        }
    }
    dirs.into_iter().collect()
}

/// Verifies every run under `path`, and the analyses of `path` and of its
/// runs and experiments; the report, and whether all is well.
pub fn verify(path: &Path) -> Result<(String, bool)> {
    let dirs = super::discover(path)?;
    let mut out = String::new();
    let mut all_ok = true;
    for d in &dirs {
        let (problems, checked) = verify_run(&RunDir::new(d));
        all_ok &= report(&mut out, d, &problems, &checked)?;
    }
    // The sweep's table of runs, in each experiment directory.
    let tables: std::collections::BTreeSet<std::path::PathBuf> = dirs
        .iter()
        .filter_map(|d| d.parent().map(|e| e.join("runs.parquet")))
        .filter(|p| p.is_file())
        .collect();
    for t in tables {
        let problems: Vec<Problem> = match crate::store::checksum::verify_parquet_file(&t) {
            Ok(_) => vec![],
            Err(e) => vec![Problem {
                file: t.display().to_string(),
                what: format!("{e:#}"),
                fix: "write it again: `abcond sweep CONFIG --list` (from the runs' run.yaml files)"
                    .into(),
            }],
        };
        all_ok &= report(&mut out, &t, &problems, "1 file checked")?;
    }
    for a in analysis_dirs(path, &dirs) {
        let (problems, checked) = verify_analysis(&a);
        all_ok &= report(&mut out, &a, &problems, &checked)?;
    }
    Ok((out, all_ok))
}

/// Appends the verdict on `path` to `out`; whether it is ok.
fn report(out: &mut String, path: &Path, problems: &[Problem], checked: &str) -> Result<bool> {
    if problems.is_empty() {
        writeln!(out, "ok      {}  ({checked})", path.display())?;
        return Ok(true);
    }
    writeln!(
        out,
        "BROKEN  {}  ({checked}; {} problem(s))",
        path.display(),
        problems.len()
    )?;
    for p in problems {
        writeln!(out, "  {}: {}", p.file, p.what)?;
        writeln!(out, "    what to do: {}", p.fix)?;
    }
    Ok(false)
}
