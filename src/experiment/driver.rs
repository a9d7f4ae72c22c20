//! Running experiments: one run through its stages (train, probe, analyse),
//! and a sweep's tasks in turn (`--all`), with what each prints.

use crate::experiment::sweep::{self, Sweep, Task, TaskStatus};
use crate::run::RunDir;
use crate::run::Status;
use std::path::PathBuf;

/// What `train` and `run` do to one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Train (or resume).
    Train,
    /// Train, probe and, when `analyse`, analyse the run.
    Run { analyse: bool },
    /// Only analyse what the runs have (the Slurm analysis job): train and
    /// probe nothing; runs that are missing or unfinished are listed and
    /// make the command fail.
    Analyse,
}

/// Where results go and how to report: the global options of the command line.
pub struct Driver {
    /// `--out`: the results directory.
    pub out: PathBuf,
    /// `--quiet`.
    pub quiet: bool,
    /// The command line, recorded in run.yaml and in run locks.
    pub command: String,
    /// `--restart-from-scratch` / `--repair`: what to do with a run whose
    /// records are incomplete.
    pub recovery: crate::train::Recovery,
    /// `--json`: stdout carries only the analysis summary as JSON; the lines
    /// printed besides it go to stderr (none with `--quiet`).
    pub json: bool,
}

impl Driver {
    /// A line of what was done: stdout, or stderr under `--json`.
    fn say(&self, text: &str) {
        if !self.json {
            out(text);
        } else if !self.quiet {
            eprint!("{text}");
        }
    }

    /// An analysis's summary: the text, or under `--json` one line of JSON.
    pub fn report(&self, a: &crate::analysis::Analysis) -> anyhow::Result<()> {
        if self.json {
            out(&format!("{}\n", crate::analysis::json(a)?));
        } else {
            out(&crate::analysis::render(a));
        }
        Ok(())
    }

    /// Rewrites runs.parquet; a failure is reported, not fatal (the next command
    /// of the sweep writes it again).
    pub fn refresh_runs_table(&self, sweep: &Sweep) {
        if let Err(e) = sweep::write_runs_table(sweep, &self.out) {
            eprintln!("warning: {e:#}");
        }
    }

    /// Trains one run (recording its sweep task in run.yaml), then probes and
    /// analyses it as `stage` says.
    pub fn one_run(
        &self,
        config: &crate::config::Config,
        run_id: Option<&str>,
        task: Option<&Task>,
        stage: Stage,
    ) -> anyhow::Result<()> {
        if stage == Stage::Analyse {
            return self.analyse_only(config, run_id);
        }
        let trained = crate::train::train(
            config,
            &self.out,
            run_id,
            &self.command,
            self.quiet,
            self.recovery,
        );
        let locked =
            matches!(&trained, Err(e) if e.downcast_ref::<crate::run::lock::Locked>().is_some());
        // Not while another process writes the run (its run.yaml is that process's).
        if let (Some(t), false) = (task, locked) {
            sweep::record(t, &self.out)?;
        }
        let o = trained?;
        match stage {
            Stage::Train => {
                self.say(&format!("run directory: {}\n", o.dir.root.display()));
                Ok(())
            }
            // The config's probe settings and device apply, also when the run was
            // trained before.
            Stage::Run { analyse } => self.probe_and_analyse(
                &o.dir,
                Some((&config.probe, &config.device)),
                &[],
                analyse.then_some(&config.analysis),
            ),
            Stage::Analyse => unreachable!("handled above"),
        }
    }

    /// `run --analyze-only` of one run: analyses it when it is trained and
    /// probed, else says what it lacks (and fails); trains and probes nothing.
    fn analyse_only(
        &self,
        config: &crate::config::Config,
        run_id: Option<&str>,
    ) -> anyhow::Result<()> {
        let id = run_id.map_or_else(|| config.default_run_id(), str::to_string);
        let dir = RunDir::new(crate::config::run_dir(&self.out, &config.experiment, &id));
        let m = match dir.read_manifest() {
            Ok(m) => m,
            Err(_) if !dir.exists() => anyhow::bail!(
                "run {} is missing (not started); this command only analyses: `abcond run CONFIG` trains and probes it",
                dir.root.display()
            ),
            Err(e) => return Err(e),
        };
        let probed = m.status == Status::Completed
            && dir.landscape().is_file()
            && m.probe
                .as_ref()
                .is_some_and(|p| p.status == Status::Completed);
        if !probed {
            anyhow::bail!(
                "run {} is unfinished (training {}, probe {}); this command only analyses: `abcond run CONFIG` finishes it",
                dir.root.display(),
                m.status.name(),
                m.probe.as_ref().map_or("not started", |p| p.status.name())
            );
        }
        let _lock = crate::run::lock::acquire(&dir.root, "analyze", &self.command, false)?;
        let analysis =
            crate::analysis::analyze(&dir.root, Some(config.analysis.clone()), &[], self.quiet)?;
        self.report(&analysis)
    }

    /// `--all`: every task in turn, skipping finished ones; failures are collected
    /// and reported at the end (error: any task failed; exit 3: none failed but
    /// some diverged). `run` then analyses the experiment directory once.
    pub fn run_all(&self, sweep: &Sweep, stage: Stage) -> anyhow::Result<()> {
        use crate::util::progress::note;
        self.refresh_runs_table(sweep);
        let n = sweep.tasks.len();
        let (mut ran, mut skipped) = (0usize, 0usize);
        let mut failed: Vec<String> = Vec::new();
        let mut diverged: Vec<String> = Vec::new();
        let mut missing: Vec<String> = Vec::new();
        for t in &sweep.tasks {
            let s = sweep::state(t, &self.out);
            let done = match stage {
                Stage::Train => {
                    s.status == TaskStatus::Run(Status::Diverged)
                        || (s.status == TaskStatus::Run(Status::Completed) && s.recorded)
                }
                Stage::Run { .. } => s.done(),
                Stage::Analyse => {
                    s.status == TaskStatus::Run(Status::Diverged)
                        || (s.status == TaskStatus::Run(Status::Completed) && s.probed)
                }
            };
            let what = format!("task {} ({}, run {})", t.index, t.label(), t.run_id());
            if done {
                skipped += 1;
                if s.status == TaskStatus::Run(Status::Diverged) {
                    diverged.push(what.clone());
                }
                note(
                    self.quiet,
                    &format!("sweep {}/{n}: {what} is {}; skipped", t.index + 1, s.status),
                );
                continue;
            }
            if stage == Stage::Analyse {
                missing.push(format!("{what}: {}", s.status));
                continue;
            }
            note(self.quiet, &format!("sweep {}/{n}: {what}", t.index + 1));
            ran += 1;
            let stage = match stage {
                Stage::Run { .. } => Stage::Run { analyse: false },
                s => s,
            };
            if let Err(e) = self.one_run(&t.config, None, Some(t), stage) {
                // A signal checkpoint ends the whole sweep, not the task only.
                if e.downcast_ref::<crate::train::Interrupted>().is_some() {
                    self.refresh_runs_table(sweep);
                    return Err(e);
                }
                eprintln!("error: sweep {what}: {e:#}");
                if e.downcast_ref::<crate::train::Diverged>().is_some() {
                    diverged.push(what);
                } else {
                    failed.push(what);
                }
            }
            self.refresh_runs_table(sweep);
        }
        if stage == Stage::Analyse {
            self.say(&format!(
                "sweep {}: {n} runs: {} ready to analyse, {} missing or unfinished; runs: {}\n",
                sweep.source,
                n - missing.len(),
                missing.len(),
                sweep.runs_table(&self.out).display()
            ));
        } else {
            self.say(&format!(
                "sweep {}: {n} runs: {ran} run now, {skipped} finished before, {} diverged, {} failed; runs: {}\n",
                sweep.source,
                diverged.len(),
                failed.len(),
                sweep.runs_table(&self.out).display()
            ));
        }
        let mut analysis_error = None;
        // Nothing to analyse when every task diverged (or failed): the exit status
        // then tells that, not a failed analysis.
        let probed = sweep.tasks.iter().any(|t| {
            let s = sweep::state(t, &self.out);
            s.status == TaskStatus::Run(Status::Completed) && s.probed
        });
        if matches!(stage, Stage::Run { .. } | Stage::Analyse) && probed {
            let exp = sweep.experiment_dir(&self.out);
            match crate::analysis::analyze(&exp, None, &[], self.quiet) {
                Ok(r) => {
                    if let Err(e) = self.report(&r) {
                        analysis_error = Some(format!("summary of {}: {e:#}", exp.display()));
                    }
                }
                Err(e) => analysis_error = Some(format!("analysis of {}: {e:#}", exp.display())),
            }
        }
        if !missing.is_empty() {
            anyhow::bail!(
                "{} of the sweep's {n} runs are missing or unfinished (this command only analyses; `abcond run {} --task N` or the array job finishes them): {}{}",
                missing.len(),
                sweep.source,
                missing.join("; "),
                analysis_error.map(|e| format!("; {e}")).unwrap_or_default()
            );
        }
        if !failed.is_empty() || analysis_error.is_some() {
            anyhow::bail!(
                "{} of the sweep's {n} tasks failed{}{}",
                failed.len(),
                if failed.is_empty() {
                    String::new()
                } else {
                    format!(": {}", failed.join("; "))
                },
                analysis_error.map(|e| format!("; {e}")).unwrap_or_default()
            );
        }
        if !diverged.is_empty() {
            return Err(crate::train::Diverged {
                message: format!(
                    "{} of the sweep's {n} runs diverged: {}",
                    diverged.len(),
                    diverged.join("; ")
                ),
            }
            .into());
        }
        Ok(())
    }

    pub fn probe_and_analyse(
        &self,
        dir: &RunDir,
        settings: Option<(&crate::config::ProbeConfig, &str)>,
        set: &[String],
        analyse: Option<&crate::config::AnalysisConfig>,
    ) -> anyhow::Result<()> {
        // Held through probe and analysis: both write into the run directory. (Shards
        // of a sharded probe take no lock: each writes only its own part files.)
        dir.require("probe")?;
        let _lock = crate::run::lock::acquire(&dir.root, "probe", &self.command, false)?;
        let outcome = crate::probe::probe(dir, settings, set, None, self.quiet)?;
        // What the curvature pass cached goes before the analysis allocates.
        crate::torch::ops::cpu_cache_release();
        if let Some(a) = analyse {
            // The config's analysis section applies (also to a run trained before).
            let analysis = crate::analysis::analyze(&dir.root, Some(a.clone()), &[], self.quiet)?;
            self.report(&analysis)?;
        }
        self.say(&format!(
            "results: {}  (run.yaml, steps.parquet, iterates/, landscape.parquet: {} rows)\n",
            dir.root.display(),
            outcome.rows.len()
        ));
        Ok(())
    }
}

/// Writes to stdout, ignoring a closed pipe (`abcond run … | head`).
pub fn out(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().write_all(text.as_bytes());
}

/// The command line of this process.
pub use crate::util::command_line;
