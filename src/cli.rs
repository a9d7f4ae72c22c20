//! Command-line interface (clap derive; the doc comments are the `--help` text).

use crate::run::RunDir;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Examples:
  abcond run configs/quickstart.yaml                 train, probe, analyse (RUN_DIR/analysis/)
  abcond train configs/paper/halfspace.yaml --set optim.lr=0.1 --set seed=3
  abcond probe results/quickstart/seed0-1a2b3c4d --set probe.extra_batches=8
  abcond inspect results/quickstart/seed0-1a2b3c4d
  abcond analyze results/quickstart                  all runs of an experiment, grouped by sweep value
  abcond analyze RUN_DIR --set analysis.f_star=min-observed --set analysis.margin=0.5

Run directory: <out>/<experiment>/<run_id>/ with run.yaml, steps.parquet,
iterates/step=<k>/part-0.parquet and landscape.parquet; `analyze` writes
analysis/ (ab_region, ab_grid, aiming, pl, trends .parquet, summary.yaml,
report.md, PNG/SVG figures) next to its input (schemas: README.md).
The run id is seed<seed>-<hash of the training settings>: running the same
config again resumes or reuses the same directory.

Exit status: 0 success, 1 error, 2 usage error, 3 training diverged (NaN/Inf loss).";

/// abcond measures the loss landscape along neural-network training: whether a
/// model satisfies the alpha-beta condition of Islamov et al. (NeurIPS 2024),
/// and with which constants.
///
/// `train` records every step and writes iterates x^k as Parquet snapshots;
/// `probe` computes, per snapshot and minibatch, f_i(x^k), f_i(x^K),
/// <∇f_i(x^k), x^k − x^K>, norms and angles into landscape.parquet;
/// `analyze` computes the exact feasible (alpha, beta) region, PL and Aiming
/// constants, heat maps and a report.
#[derive(Parser, Debug)]
#[command(name = "abcond", version, about, long_about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Root directory of run directories (<out>/<experiment>/<run_id>/).
    #[arg(long, global = true, default_value = "results", value_name = "DIR")]
    pub out: PathBuf,
    /// Print no progress or notes on stderr (results and errors still print).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Intra-op CPU threads of libtorch (default: $OMP_NUM_THREADS, else all
    /// cores). Use 1 when several abcond processes share a node.
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<i32>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a model: write steps.parquet and the iterate snapshots. Rerunning
    /// on an interrupted run resumes it from its last checkpoint.
    Train(TrainArgs),
    /// Probe a trained run: measure the landscape quantities at its snapshots
    /// and write landscape.parquet. Already probed snapshots are skipped.
    Probe(ProbeArgs),
    /// Train (or resume), probe, and analyse the run (writes RUN_DIR/analysis/).
    Run(TrainArgs),
    /// Analyse probed runs: the exact feasible (alpha, beta) region, slack
    /// grid, PL/Aiming/QCvx constants, sigma_int², trends, figures, report.md.
    ///
    /// PATH is a run directory or a directory of runs (an experiment: seeds and
    /// sweep values). Runs that differ only in seed form one group; the
    /// settings that differ between groups are the sweep axis. Writes
    /// PATH/analysis/ and prints a summary. Settings come from the runs'
    /// `analysis` config section, then --set.
    Analyze(AnalyzeArgs),
    /// Show a run directory: config, status, steps, snapshots, probe coverage.
    Inspect {
        /// The run directory (<out>/<experiment>/<run_id>).
        run_dir: PathBuf,
    },
    /// List the built-in model presets (models/*.yaml).
    Presets,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Experiment config (YAML), e.g. configs/quickstart.yaml.
    pub config: PathBuf,
    /// Override a config value, e.g. --set optim.lr=0.05 --set seed=3
    /// (repeatable; values are parsed as YAML).
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    pub set: Vec<String>,
    /// Use this run id instead of seed<seed>-<config hash>.
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
}

#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// The run directory (<out>/<experiment>/<run_id>).
    pub run_dir: PathBuf,
    /// Override a probe setting, e.g. --set probe.extra_batches=8 or
    /// --set device=cpu (only probe.* and device may change after training).
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    pub set: Vec<String>,
}

#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    /// A run directory (<out>/<experiment>/<run_id>) or a directory of runs
    /// (<out>/<experiment>).
    pub path: PathBuf,
    /// Override an analysis setting (repeatable): analysis.f_star=0 | 5.2e-4 |
    /// min-observed, analysis.margin=0.1, analysis.train_only=true,
    /// analysis.pl_deltas=[1,2], analysis.grid.alpha=[0,50],
    /// analysis.grid.beta=[0,50], analysis.grid.points=101, analysis.plots=false.
    #[arg(long = "set", value_name = "analysis.KEY=VALUE")]
    pub set: Vec<String>,
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

fn train_cmd(
    cli: &Cli,
    a: &TrainArgs,
) -> anyhow::Result<(crate::train::TrainOutcome, crate::config::Config)> {
    let config = crate::config::load(&a.config, &a.set)?;
    if let Some(id) = &a.run_id {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            anyhow::bail!("--run-id {id:?} is not a valid directory name");
        }
    }
    let outcome = crate::train::train(
        &config,
        &cli.out,
        a.run_id.as_deref(),
        &command_line(),
        cli.quiet,
    )?;
    Ok((outcome, config))
}

/// Writes to stdout, ignoring a closed pipe (`abcond run … | head`).
fn out(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().write_all(text.as_bytes());
}

fn probe_and_analyse(
    cli: &Cli,
    dir: &RunDir,
    settings: Option<(&crate::config::ProbeConfig, &str)>,
    set: &[String],
    analyse: Option<&crate::config::AnalysisConfig>,
) -> anyhow::Result<()> {
    let outcome = crate::probe::probe(dir, settings, set, cli.quiet)?;
    if let Some(a) = analyse {
        // The config's analysis section applies (also to a run trained before).
        let analysis = crate::analysis::analyze(&dir.root, Some(a.clone()), &[], cli.quiet)?;
        out(&crate::analysis::render(&analysis));
    }
    out(&format!(
        "results: {}  (run.yaml, steps.parquet, iterates/, landscape.parquet: {} rows)\n",
        dir.root.display(),
        outcome.rows.len()
    ));
    Ok(())
}

/// Runs the CLI and returns the process exit status.
pub fn main() -> i32 {
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        tch::set_num_threads(n.max(1));
    }
    let result = match &cli.command {
        Command::Train(a) => train_cmd(&cli, a).map(|(o, _)| {
            out(&format!("run directory: {}\n", o.dir.root.display()));
        }),
        // The config's probe settings and device apply, also when the run was
        // trained before.
        Command::Run(a) => train_cmd(&cli, a).and_then(|(o, cfg)| {
            probe_and_analyse(
                &cli,
                &o.dir,
                Some((&cfg.probe, &cfg.device)),
                &[],
                Some(&cfg.analysis),
            )
        }),
        Command::Probe(a) => probe_and_analyse(&cli, &RunDir::new(&a.run_dir), None, &a.set, None),
        Command::Analyze(a) => crate::analysis::analyze(&a.path, None, &a.set, cli.quiet)
            .map(|r| out(&crate::analysis::render(&r))),
        Command::Inspect { run_dir } => {
            crate::inspect::render(&RunDir::new(run_dir)).map(|s| out(&s))
        }
        Command::Presets => {
            for name in crate::config::preset_names() {
                out(&format!("{name}\n"));
            }
            Ok(())
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<crate::train::Diverged>().is_some() {
                3
            } else {
                1
            }
        }
    }
}
