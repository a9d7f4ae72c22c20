//! Command-line interface (clap derive; the doc comments are the `--help` text).

use crate::experiment::driver::{command_line, out, Driver, Stage};
use crate::run::RunDir;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Examples:
  abcond run configs/quickstart.yaml                 train, probe, analyse (RUN_DIR/analysis/)
  abcond train configs/paper/halfspace.yaml --set optim.lr=0.1 --set seed=3
  abcond probe results/quickstart/seed0-1a2b3c4d --set probe.extra_batches=8
  abcond inspect results/quickstart/seed0-1a2b3c4d
  abcond config configs/quickstart.yaml --set optim.lr=0.05   resolved config, run id and directory; runs nothing
  abcond run configs/quickstart.yaml --sweep seed=[0,1,2] --all   three seeds (= --set 'sweep.seed=[0,1,2]')
  abcond analyze results/quickstart --json           the summary as JSON on stdout (notes on stderr)
  abcond inspect results/quickstart/seed0-1a2b3c4d --json
  source <(abcond completions bash)                  tab completion in this shell (also zsh, fish)
  abcond analyze results/quickstart                  all runs of an experiment, grouped by sweep value
  abcond analyze RUN_DIR --set analysis.f_star=min-observed --set analysis.margin=0.5
  abcond sweep configs/paper/fmnist-mlp-width.yaml --list   the runs of a config's `sweep`
  abcond run configs/paper/fmnist-mlp-width.yaml --task 3   one of them ($SLURM_ARRAY_TASK_ID if unset)
  abcond run configs/paper/fmnist-mlp-width.yaml --all      all of them in turn, then analyse the experiment
  abcond slurm configs/paper/fmnist-mlp-width.yaml --partition gpu --gpus-per-task 1 --time 2:00:00
                                                     Slurm job array + dependent analysis; then bash …/slurm/submit.sh

Run directory: <out>/<experiment>/<run_id>/ with run.yaml, steps.parquet,
iterates/step=<k>/part-0.parquet and landscape.parquet; `analyze` writes
analysis/ (ab_region, ab_grid, aiming, pl, trends .parquet, summary.yaml,
report.md, PNG/SVG figures) next to its input (schemas: docs/schemas.md).
The run id is seed<seed>-<hash of the training settings>: running the same
config again resumes or reuses the same directory. A process that writes a
run (train, probe, analyze of one run) holds RUN_DIR/.lock; a second writer
fails at once naming the holder. A killed process releases it.

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
    /// Intra-op CPU threads of libtorch (default: $SLURM_CPUS_PER_TASK inside a
    /// Slurm job, else $OMP_NUM_THREADS, else all cores). Use 1 when several
    /// abcond processes share a node.
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
    ///
    /// With a config that declares `sweep`: --task N runs task N (train, probe,
    /// analyse that run); --all runs every task in turn, skipping finished
    /// ones, and then analyses the experiment directory once.
    Run(TrainArgs),
    /// Show the runs of a config's `sweep` (task, run id, swept values, status)
    /// and refresh <out>/<experiment>/runs.parquet when the experiment exists.
    Sweep(SweepArgs),
    /// Write Slurm batch scripts for a config's runs into
    /// <out>/<experiment>/slurm/ and print the job-array script.
    ///
    /// run.sbatch is a job array with one task per run of the sweep (one task
    /// for a config without `sweep`): task N runs `abcond run CONFIG --task
    /// $SLURM_ARRAY_TASK_ID` (train or resume, probe, analyse run N; logs in
    /// slurm/%A_%a.out). analyze.sbatch runs `abcond run CONFIG --all` after
    /// the whole array has ended (afterany): it finishes unfinished runs and
    /// analyses the experiment. submit.sh submits both with the dependency:
    /// `bash <out>/<experiment>/slurm/submit.sh [extra sbatch options]`.
    /// Tasks are --requeue'd: a preempted task resumes from its last checkpoint.
    /// Paths (abcond binary, config, --out) are written absolute.
    Slurm(SlurmArgs),
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
    ///
    /// With --json: the same facts as one JSON object (keys in
    /// docs/commands.md), e.g. `abcond inspect RUN_DIR --json | jq .training`.
    Inspect {
        /// The run directory (<out>/<experiment>/<run_id>).
        run_dir: PathBuf,
        /// Print one line of JSON instead of the text: run_dir, experiment,
        /// run_id, seed, status, training, steps, snapshots, probe, sessions,
        /// config (absent values are null).
        #[arg(long)]
        json: bool,
    },
    /// Check every file of a run (or of every run under a directory) against
    /// run.yaml, the step record and the checksums, reading every value once:
    /// missing or corrupt snapshots, gaps in the steps, broken probe parts.
    /// Says what each problem costs and what to do; writes nothing. Exit
    /// status 1 when a problem is found.
    Verify {
        /// A run directory or a directory of runs.
        path: PathBuf,
    },
    /// List the built-in model presets (models/*.yaml).
    Presets,
    /// Print a config as abcond resolves it (presets merged, defaults filled,
    /// --set applied), its run id and its run directory, without running
    /// anything. With a `sweep`: each task's run id and directory, or one
    /// task's whole config with --task.
    Config(ConfigArgs),
    /// Print a shell completion script (bash, zsh, fish; also elvish,
    /// powershell) for abcond's subcommands and options.
    #[command(after_help = COMPLETIONS_HELP)]
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

const COMPLETIONS_HELP: &str = "\
Examples:
  source <(abcond completions bash)                    this bash session only
  abcond completions bash > ~/.local/share/bash-completion/completions/abcond
                                                       every new bash (bash-completion loads it)
  abcond completions zsh > ~/.zfunc/_abcond            zsh: with fpath+=~/.zfunc before compinit in ~/.zshrc
  abcond completions fish > ~/.config/fish/completions/abcond.fish";

/// `--sweep KEY.PATH=[V1,V2,…]`, the help text of every command that takes it.
const SWEEP_HELP: &str = "Sweep a config key over a list of values (repeatable): \
--sweep optim.lr=[0.1,0.05] is --set 'sweep.optim.lr=[0.1,0.05]'. It replaces that \
axis of the config's `sweep` or adds one, and makes a config without `sweep` a sweep \
(then choose runs with --task N or --all). Axes are in command-line order \
(the last varies fastest).";

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// Experiment config (YAML).
    pub config: PathBuf,
    /// Override a config value, e.g. --set optim.lr=0.05 (repeatable).
    #[arg(long = "set", value_name = "KEY.PATH=VALUE", value_parser = set_syntax)]
    pub set: Vec<String>,
    #[arg(long = "sweep", value_name = "KEY.PATH=[V1,V2,…]", value_parser = sweep_syntax, help = SWEEP_HELP)]
    pub sweep: Vec<String>,
    /// With a `sweep`: print this task's resolved config.
    #[arg(long, value_name = "N")]
    pub task: Option<usize>,
    /// Print JSON instead of YAML.
    #[arg(long)]
    pub json: bool,
}

/// `--set` values must be KEY.PATH=VALUE: anything else is a usage error
/// (exit status 2, as clap reports it), before any file is read.
fn set_syntax(s: &str) -> Result<String, String> {
    match s.split_once('=') {
        Some((key, _)) if !key.trim().is_empty() && !key.trim().split('.').any(str::is_empty) => {
            Ok(s.to_string())
        }
        Some((key, _)) => Err(format!(
            "`{key}` is not a key path; expected KEY.PATH=VALUE, e.g. optim.lr=0.05"
        )),
        None => Err(format!(
            "`{s}` has no `=`; expected KEY.PATH=VALUE, e.g. --set {}=0.05",
            if s.is_empty() { "optim.lr" } else { s }
        )),
    }
}

/// `--sweep KEY.PATH=[V1,V2,…]`: a key path and a non-empty YAML list, as the
/// override `sweep.KEY.PATH=[V1,V2,…]`; anything else is a usage error (exit
/// status 2), like a malformed `--set`.
fn sweep_syntax(s: &str) -> Result<String, String> {
    const EXPECTED: &str = "expected KEY.PATH=[V1,V2,…], e.g. --sweep optim.lr=[0.1,0.05]";
    let Some((key, values)) = s.split_once('=') else {
        return Err(format!("`{s}` has no `=`; {EXPECTED}"));
    };
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(format!("`{key}` is not a key path; {EXPECTED}"));
    }
    if key == "sweep" || key.starts_with("sweep.") {
        return Err(format!(
            "`{key}`: name the swept key without `sweep.`; {EXPECTED}"
        ));
    }
    match serde_yaml::from_str::<serde_yaml::Value>(values) {
        Ok(serde_yaml::Value::Sequence(v)) if !v.is_empty() => Ok(format!("sweep.{key}={values}")),
        Ok(serde_yaml::Value::Sequence(_)) => {
            Err(format!("`{key}`: the list of values is empty; {EXPECTED}"))
        }
        _ => Err(format!(
            "`{key}`: `{values}` is not a list of values in brackets; {EXPECTED}"
        )),
    }
}

/// The `--set` and `--sweep` overrides of a subcommand that takes both, in
/// command-line order (the order of `sweep` axes is the order of the tasks).
fn overrides_in_order(sub: &ArgMatches) -> Vec<String> {
    let mut all: Vec<(usize, String)> = Vec::new();
    for id in ["set", "sweep"] {
        if let (Some(values), Some(at)) = (sub.get_many::<String>(id), sub.indices_of(id)) {
            all.extend(at.zip(values.cloned()));
        }
    }
    all.sort_by_key(|(at, _)| *at);
    all.into_iter().map(|(_, v)| v).collect()
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Experiment config (YAML), e.g. configs/quickstart.yaml.
    pub config: PathBuf,
    /// Override a config value, e.g. --set optim.lr=0.05 --set seed=3
    /// (repeatable; values are parsed as YAML).
    #[arg(long = "set", value_name = "KEY.PATH=VALUE", value_parser = set_syntax)]
    pub set: Vec<String>,
    #[arg(long = "sweep", value_name = "KEY.PATH=[V1,V2,…]", value_parser = sweep_syntax, help = SWEEP_HELP)]
    pub sweep: Vec<String>,
    /// `run` only: print the analysis summary as one line of JSON on stdout
    /// (the numbers of analysis/summary.yaml); every other line goes to stderr.
    #[arg(long)]
    pub json: bool,
    /// `run` only: train and probe nothing; analyse the run (with --all, the
    /// experiment) as it is, and fail naming the runs that are missing or
    /// unfinished (the Slurm analysis job).
    #[arg(long)]
    pub analyze_only: bool,
    /// Use this run id instead of seed<seed>-<config hash>.
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
    /// Sweep configs: run task N (0-based, see `abcond sweep CONFIG --list`);
    /// default $SLURM_ARRAY_TASK_ID.
    #[arg(long, value_name = "N", conflicts_with_all = ["all", "run_id"])]
    pub task: Option<usize>,
    /// Sweep configs: run every task in turn, skipping finished ones (resumable).
    /// A failing task does not stop the others; the exit status reports it.
    #[arg(long, conflicts_with = "run_id")]
    pub all: bool,
    /// Retrain a run from step 0 when its resume checkpoint, a step record or
    /// a snapshot before the checkpoint is missing or corrupt (abcond refuses
    /// to resume such a run and says which file is lost; this flag discards
    /// what the run wrote and starts it again, deterministically per seed on CPU).
    #[arg(long)]
    pub restart_from_scratch: bool,
    /// Re-create what a run lost (a step record, a snapshot, the resume
    /// checkpoint, data.parquet; missing or corrupt) by retraining from step 0
    /// only as far as the last lost item, checking every surviving row and
    /// snapshot against the retrained ones bit for bit; then go on as usual.
    /// Also repairs a completed run. `abcond verify RUN_DIR` shows what is lost.
    #[arg(long, conflicts_with = "restart_from_scratch")]
    pub repair: bool,
}

impl TrainArgs {
    /// What to do with a run whose records are incomplete.
    pub fn recovery(&self) -> crate::train::Recovery {
        if self.repair {
            crate::train::Recovery::Repair
        } else if self.restart_from_scratch {
            crate::train::Recovery::RestartFromScratch
        } else {
            crate::train::Recovery::Resume
        }
    }
}

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// Experiment config (YAML) with a top-level `sweep` key.
    pub config: PathBuf,
    /// Override a config value in every task (not a swept key).
    #[arg(long = "set", value_name = "KEY.PATH=VALUE", value_parser = set_syntax)]
    pub set: Vec<String>,
    #[arg(long = "sweep", value_name = "KEY.PATH=[V1,V2,…]", value_parser = sweep_syntax, help = SWEEP_HELP)]
    pub sweep: Vec<String>,
    /// List the tasks (the default and only action; accepted for clarity).
    #[arg(long)]
    pub list: bool,
}

#[derive(Args, Debug)]
pub struct SlurmArgs {
    /// Experiment config (YAML), with or without a top-level `sweep`.
    pub config: PathBuf,
    /// Override a config value in every task (passed on to each `abcond run`).
    #[arg(long = "set", value_name = "KEY.PATH=VALUE", value_parser = set_syntax)]
    pub set: Vec<String>,
    #[arg(long = "sweep", value_name = "KEY.PATH=[V1,V2,…]", value_parser = sweep_syntax, help = SWEEP_HELP)]
    pub sweep: Vec<String>,
    /// #SBATCH --partition (omitted: the cluster's default).
    #[arg(long, value_name = "NAME")]
    pub partition: Option<String>,
    /// #SBATCH --account to charge.
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
    /// #SBATCH --time limit of each task, e.g. 2:00:00 or 1-00:00:00.
    #[arg(long, value_name = "TIME")]
    pub time: Option<String>,
    /// #SBATCH --mem per node, e.g. 16G.
    #[arg(long, value_name = "SIZE")]
    pub mem: Option<String>,
    /// #SBATCH --cpus-per-task; abcond then runs with --threads N (a global
    /// --threads given to `abcond slurm` is written into the scripts instead).
    #[arg(long, value_name = "N")]
    pub cpus_per_task: Option<u32>,
    /// #SBATCH --gpus-per-task, e.g. 1 or a100:1 (set `device: cuda` in the config);
    /// also writes #SBATCH --ntasks=1, which sbatch requires with it.
    #[arg(long, value_name = "N")]
    pub gpus_per_task: Option<String>,
    /// Write no analyze.sbatch (submit.sh then submits the array only).
    #[arg(long)]
    pub no_analyze: bool,
    /// Run at most N array tasks at once (#SBATCH --array=0-M%N).
    #[arg(long, value_name = "N")]
    pub throttle: Option<u32>,
    /// Shell lines run before abcond in every job (module load, source a
    /// venv, export LD_LIBRARY_PATH): a file (its text is copied in) or one
    /// command line.
    #[arg(long, value_name = "FILE|CMD")]
    pub prelude: Option<String>,
    /// Seconds before a task's time limit at which Slurm sends SIGUSR1
    /// (#SBATCH --signal=B:USR1@N): abcond writes a checkpoint and exits, and
    /// the task requeues itself to resume there. 0: no signal.
    #[arg(long, value_name = "N", default_value_t = 120)]
    pub signal_seconds: u32,
}

#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// The run directory (<out>/<experiment>/<run_id>).
    pub run_dir: PathBuf,
    /// Override a probe setting, e.g. --set probe.extra_batches=8 or
    /// --set device=cpu (only probe.* and device may change after training).
    #[arg(long = "set", value_name = "KEY.PATH=VALUE", value_parser = set_syntax)]
    pub set: Vec<String>,
    /// Probe only shard I of N (I is 0-based, as $SLURM_ARRAY_TASK_ID): the
    /// selected snapshots at positions I, I+N, I+2N, … of the sorted selection.
    /// A shard writes only its per-snapshot parts, so shards may run at once;
    /// a later `abcond probe RUN_DIR` without --shard gathers landscape.parquet.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<crate::probe::Shard>,
    /// Also measure the `train` row at every step, not only at the snapshots:
    /// re-creates each x^k by re-running training between the stored
    /// iterates, checked bit for bit against the step records and snapshots
    /// (same as --set probe.replay=true; docs/replay.md). Runs logged by
    /// abcond.Logger replay when their loop stepped torch.optim.SGD, Adam or
    /// AdamW. With --shard, the shard takes its share of the replay's
    /// segments too.
    #[arg(long)]
    pub replay: bool,
}

impl ProbeArgs {
    /// The --set overrides, with --replay as one of them.
    pub fn overrides(&self) -> Vec<String> {
        let mut set = self.set.clone();
        if self.replay {
            set.push("probe.replay=true".to_string());
        }
        set
    }
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
    #[arg(long = "set", value_name = "analysis.KEY=VALUE", value_parser = set_syntax)]
    pub set: Vec<String>,
    /// Print the summary as one line of JSON on stdout instead of the text:
    /// {"analysis_dir", "files", "notes", "summary"}, where summary is
    /// analysis/summary.yaml's document (±∞ and NaN as the strings ".inf",
    /// "-.inf", ".nan", as there; absent values null). Notes go to stderr.
    /// E.g. abcond analyze RUN_DIR --json | jq '.summary.groups[0].alpha_beta'
    #[arg(long)]
    pub json: bool,
}

/// `abcond train|run CONFIG`: one run, or the sweep task(s) chosen by
/// --task / $SLURM_ARRAY_TASK_ID / --all.
fn train_or_run(cli: &Cli, a: &TrainArgs, run: bool) -> anyhow::Result<()> {
    let stage = match (run, a.analyze_only) {
        (true, true) => Stage::Analyse,
        (true, false) => Stage::Run { analyse: true },
        (false, false) => Stage::Train,
        (false, true) => anyhow::bail!("--analyze-only goes with `abcond run`, not `train`"),
    };
    if a.json && !run {
        anyhow::bail!(
            "--json goes with `abcond run` (the analysis summary as JSON), not `train`; `abcond inspect RUN_DIR --json` describes a trained run"
        );
    }
    let driver = |cli: &Cli| {
        let mut d = driver(cli);
        d.recovery = a.recovery();
        d.json = a.json;
        d
    };
    let Some(sweep) = crate::experiment::sweep::Sweep::load(&a.config, &a.set)? else {
        if a.task.is_some() || a.all {
            anyhow::bail!(
                "--task/--all: {} declares no `sweep`; run it without them",
                a.config.display()
            );
        }
        let config = crate::config::load(&a.config, &a.set)?;
        if let Some(id) = &a.run_id {
            if id.is_empty() || id.contains('/') || id.starts_with('.') {
                anyhow::bail!("--run-id {id:?} is not a valid directory name");
            }
        }
        return driver(cli).one_run(&config, a.run_id.as_deref(), None, stage);
    };
    if a.run_id.is_some() {
        anyhow::bail!(
            "--run-id does not apply to a sweep: each task's run id is that of its config"
        );
    }
    if a.all {
        return driver(cli).run_all(&sweep, stage);
    }
    let n = match a.task {
        Some(n) => n,
        None => crate::experiment::sweep::task_from_env()?.ok_or_else(|| {
            anyhow::anyhow!(
                "{} declares a sweep of {} runs: choose one with --task N (0..={}; default ${}) or all with --all; `abcond sweep {} --list` lists them",
                sweep.source,
                sweep.tasks.len(),
                sweep.tasks.len() - 1,
                crate::experiment::sweep::TASK_ENV,
                sweep.source
            )
        })?,
    };
    let task = sweep.task(n)?;
    crate::util::progress::note(
        cli.quiet,
        &format!(
            "sweep task {n} of {}: {} (run {})",
            sweep.tasks.len(),
            task.label(),
            task.run_id()
        ),
    );
    let result = driver(cli).one_run(&task.config, None, Some(task), stage);
    driver(cli).refresh_runs_table(&sweep);
    result
}

/// `abcond config CONFIG`: the resolved config, run id and run directory.
fn config_cmd(cli: &Cli, a: &ConfigArgs) -> anyhow::Result<()> {
    use serde_yaml::{Mapping, Value};
    let entry = |config: &crate::config::Config| -> anyhow::Result<Mapping> {
        let id = config.default_run_id();
        let dir = crate::config::run_dir(&cli.out, &config.experiment, &id);
        let mut m = Mapping::new();
        m.insert("run_id".into(), Value::String(id));
        m.insert("run_dir".into(), Value::String(dir.display().to_string()));
        Ok(m)
    };
    let full = |config: &crate::config::Config| -> anyhow::Result<Value> {
        let mut m = entry(config)?;
        m.insert("config".into(), serde_yaml::from_str(&config.to_yaml())?);
        Ok(Value::Mapping(m))
    };
    let doc = match crate::experiment::sweep::Sweep::load(&a.config, &a.set)? {
        None => {
            if a.task.is_some() {
                anyhow::bail!("--task: {} declares no `sweep`", a.config.display());
            }
            full(&crate::config::load(&a.config, &a.set)?)?
        }
        Some(sweep) => match a.task {
            Some(n) => {
                let task = sweep.task(n)?;
                let mut v = full(&task.config)?;
                if let Value::Mapping(m) = &mut v {
                    m.insert("task".into(), Value::Number(n.into()));
                }
                v
            }
            None => {
                let mut tasks = Vec::new();
                for t in &sweep.tasks {
                    let mut m = Mapping::new();
                    m.insert("task".into(), Value::Number(t.index.into()));
                    m.extend(entry(&t.config)?);
                    let mut values = Mapping::new();
                    for (k, v) in &t.values {
                        values.insert(Value::String(k.clone()), v.clone());
                    }
                    m.insert("values".into(), Value::Mapping(values));
                    tasks.push(Value::Mapping(m));
                }
                let mut m = Mapping::new();
                m.insert("tasks".into(), Value::Sequence(tasks));
                Value::Mapping(m)
            }
        },
    };
    if a.json {
        out(&format!("{}\n", crate::util::json::to_json(&doc)));
    } else {
        out(&serde_yaml::to_string(&doc)?);
    }
    Ok(())
}

/// `abcond sweep CONFIG --list`.
fn sweep_cmd(cli: &Cli, a: &SweepArgs) -> anyhow::Result<()> {
    let sweep = crate::experiment::sweep::Sweep::load(&a.config, &a.set)?.ok_or_else(|| {
        anyhow::anyhow!(
            "{} declares no `sweep` (a top-level mapping such as sweep: {{model.width: [32, 128], seed: [0, 1]}})",
            a.config.display()
        )
    })?;
    out(&crate::experiment::sweep::list(&sweep, &cli.out));
    if sweep.experiment_dir(&cli.out).is_dir() {
        crate::experiment::sweep::write_runs_table(&sweep, &cli.out)?;
    }
    Ok(())
}

/// `abcond slurm CONFIG`.
fn slurm_cmd(cli: &Cli, a: &SlurmArgs) -> anyhow::Result<()> {
    let res = crate::experiment::slurm::Resources {
        partition: a.partition.clone(),
        account: a.account.clone(),
        time: a.time.clone(),
        mem: a.mem.clone(),
        cpus_per_task: a.cpus_per_task,
        gpus_per_task: a.gpus_per_task.clone(),
        throttle: a.throttle,
        signal_seconds: a.signal_seconds,
    };
    let prelude = match &a.prelude {
        None => None,
        Some(p) if std::path::Path::new(p).is_file() => Some(crate::util::read_text_file(
            std::path::Path::new(p),
            "--prelude file",
            1 << 20,
        )?),
        Some(cmd) => Some(cmd.clone()),
    };
    let s = crate::experiment::slurm::write(
        &a.config,
        &a.set,
        &cli.out,
        &res,
        &crate::experiment::slurm::Job {
            analyze: !a.no_analyze,
            threads: cli.threads,
            prelude,
        },
    )?;
    out(&s.run_text);
    let mut files = format!(
        "\nwritten: {} (array of {} tasks)",
        s.run.display(),
        s.tasks
    );
    if let Some(p) = &s.analyze {
        files.push_str(&format!(", {} (after the array)", p.display()));
    }
    out(&format!(
        "{files}, {}\nsubmit:  bash {}\n",
        s.submit.display(),
        s.submit.display()
    ));
    Ok(())
}

/// `abcond probe RUN_DIR --shard I/N`: that shard's parts only.
fn probe_shard(cli: &Cli, a: &ProbeArgs, shard: crate::probe::Shard) -> anyhow::Result<()> {
    let dir = RunDir::new(&a.run_dir);
    let outcome = crate::probe::probe(&dir, None, &a.overrides(), Some(shard), cli.quiet)?;
    let s = outcome.shard.expect("a sharded probe reports its progress");
    let segments_done = s.segments.is_none_or(|(_, done, all)| done == all);
    let next = if s.done == s.selected && segments_done {
        format!(
            "all parts are done: gather them with `abcond probe {}`",
            dir.root.display()
        )
    } else {
        format!(
            "{} snapshots{} remain for other shards; once they are done, gather with `abcond probe {}{}`",
            s.selected - s.done,
            s.segments
                .map(|(_, done, all)| format!(" and {} replay segments", all - done))
                .unwrap_or_default(),
            dir.root.display(),
            if s.segments.is_some() { " --replay" } else { "" }
        )
    };
    let replay = s
        .segments
        .map(|(mine, done, all)| {
            format!("; replay: {mine} segments in this shard, {done} of {all} done")
        })
        .unwrap_or_default();
    out(&format!(
        "shard {}: {} snapshots ({} probed now); {} of {} selected snapshots done{replay}; {next}\n",
        s.shard, s.mine, outcome.probed_now, s.done, s.selected
    ));
    Ok(())
}

/// `abcond analyze PATH`: a single run is locked while its analysis/ is
/// written (an experiment's analysis/ belongs to no run).
fn analyze_cmd(cli: &Cli, a: &AnalyzeArgs) -> anyhow::Result<()> {
    let _lock = if RunDir::new(&a.path).exists() {
        Some(crate::run::lock::acquire(
            &a.path,
            "analyze",
            &command_line(),
            false,
        )?)
    } else {
        None
    };
    let r = crate::analysis::analyze(&a.path, None, &a.set, cli.quiet)?;
    let mut d = driver(cli);
    d.json = a.json;
    d.report(&r)
}

/// Runs the CLI and returns the process exit status.
/// The experiment driver for this command line's options.
fn driver(cli: &Cli) -> Driver {
    Driver {
        out: cli.out.clone(),
        quiet: cli.quiet,
        command: command_line(),
        recovery: crate::train::Recovery::Resume,
        json: false,
    }
}

pub fn main() -> i32 {
    // First, while the process has one thread and before CUDA initialises.
    crate::torch::reproducibility::init_process_env();
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches)
        .map_err(|e| e.format(&mut Cli::command()))
        .unwrap_or_else(|e| e.exit());
    // `--sweep K=[…]` is `--set 'sweep.K=[…]'`: one list of overrides, in the
    // order given.
    if let Some((_, sub)) = matches.subcommand() {
        match &mut cli.command {
            Command::Train(a) | Command::Run(a) => a.set = overrides_in_order(sub),
            Command::Config(a) => a.set = overrides_in_order(sub),
            Command::Sweep(a) => a.set = overrides_in_order(sub),
            Command::Slurm(a) => a.set = overrides_in_order(sub),
            _ => {}
        }
    }
    // Before the first tensor: libtorch's CPU allocator with a cache of large
    // blocks (csrc/cpu_cache.cpp; ABCOND_CPU_CACHE=0 turns it off).
    if let Err(e) = crate::torch::ops::install_cpu_cache() {
        eprintln!("abcond: warning: {e:#}");
    }
    // Inside a Slurm job with --cpus-per-task, its CPUs are the default.
    let slurm_cpus = std::env::var("SLURM_CPUS_PER_TASK")
        .ok()
        .and_then(|v| v.trim().parse::<i32>().ok())
        .filter(|&n| n >= 1);
    if let Some(n) = cli.threads.or(slurm_cpus) {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let max = cores * crate::config::validate::caps::THREADS_PER_CORE;
        if n < 1 || n as usize > max {
            eprintln!(
                "error: {} {n}: must be between 1 and {max} ({} per core on this machine's {cores} cores)",
                if cli.threads.is_some() { "--threads" } else { "$SLURM_CPUS_PER_TASK" },
                crate::config::validate::caps::THREADS_PER_CORE
            );
            return 1;
        }
        tch::set_num_threads(n);
    }
    let result = match &cli.command {
        Command::Train(a) => train_or_run(&cli, a, false),
        Command::Run(a) => train_or_run(&cli, a, true),
        Command::Sweep(a) => sweep_cmd(&cli, a),
        Command::Probe(a) => match a.shard {
            Some(shard) => probe_shard(&cli, a, shard),
            None => {
                driver(&cli).probe_and_analyse(&RunDir::new(&a.run_dir), None, &a.overrides(), None)
            }
        },
        Command::Analyze(a) => analyze_cmd(&cli, a),
        Command::Slurm(a) => slurm_cmd(&cli, a),
        Command::Verify { path } => crate::run::verify::verify(path).and_then(|(report, ok)| {
            out(&report);
            if ok {
                Ok(())
            } else {
                anyhow::bail!("problems found (listed above) under {}", path.display())
            }
        }),
        Command::Inspect { run_dir, json } => {
            let dir = RunDir::new(run_dir);
            if *json {
                crate::run::inspect::json(&dir).map(|s| out(&format!("{s}\n")))
            } else {
                crate::run::inspect::render(&dir).map(|s| out(&s))
            }
        }
        Command::Config(a) => config_cmd(&cli, a),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "abcond", &mut script);
            out(&String::from_utf8_lossy(&script));
            Ok(())
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
            // A signal checkpoint is no error: the session stopped cleanly.
            if let Some(i) = e.downcast_ref::<crate::train::Interrupted>() {
                eprintln!("abcond: {i}");
                return crate::train::signal::EXIT_CODE;
            }
            eprintln!("error: {e:#}");
            if e.downcast_ref::<crate::train::Diverged>().is_some() {
                3
            } else {
                1
            }
        }
    }
}
