//! `abcond slurm CONFIG`: Slurm batch scripts for a config's runs, written to
//! `<out>/<experiment>/slurm/`.
//!
//! - `run.sbatch`: a job array with one task per run of the sweep (one task
//!   for a config without `sweep`); task N runs `abcond run CONFIG --task N`
//!   (train or resume, probe, analyse that run).
//! - `analyze.sbatch`: `abcond run CONFIG --all` once the array has ended
//!   (`afterany`): it skips finished runs, finishes any the array left
//!   unfinished, and analyses the experiment.
//! - `submit.sh`: submits the array, then the analysis with
//!   `--dependency=afterany:<array job id>`.
//!
//! Preemption: the array is `--requeue`d with `--open-mode=append`. A killed
//! task loses at most the steps since its last checkpoint; the requeued task
//! resumes the run (the run lock dies with the killed process, src/run/lock.rs).

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The `#SBATCH` resource options, each written only when given.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub time: Option<String>,
    pub mem: Option<String>,
    pub cpus_per_task: Option<u32>,
    pub gpus_per_task: Option<String>,
    /// At most this many array tasks at once (`--array=0-M%N`).
    pub throttle: Option<u32>,
    /// `--signal=B:USR1@N` (0: none): the time-limit warning that makes a
    /// task checkpoint and requeue itself.
    pub signal_seconds: u32,
}

/// What the jobs run besides the resources.
#[derive(Debug, Clone, Default)]
pub struct Job {
    /// Also write the dependent analysis job.
    pub analyze: bool,
    /// `--threads` of every abcond command (else `--cpus-per-task`'s value,
    /// else abcond's default: $SLURM_CPUS_PER_TASK inside a job).
    pub threads: Option<i32>,
    /// Shell text run before abcond in each job (module load, a venv, …).
    pub prelude: Option<String>,
}

impl Resources {
    /// Every value is one word of printable characters: a newline would end
    /// its `#SBATCH` line and start another (an injected directive or
    /// command), and sbatch reads no option value with spaces or `#`.
    pub fn check(&self) -> Result<()> {
        for (k, v) in [
            ("partition", &self.partition),
            ("account", &self.account),
            ("time", &self.time),
            ("mem", &self.mem),
            ("gpus-per-task", &self.gpus_per_task),
        ] {
            if let Some(v) = v {
                if v.is_empty()
                    || v.len() > 256
                    || v.chars()
                        .any(|c| c.is_whitespace() || c.is_control() || c == '#')
                {
                    anyhow::bail!(
                        "--{k} {v:?}: a Slurm option value must be one word (no spaces, newlines, control characters or '#'), at most 256 characters"
                    );
                }
            }
        }
        if self.throttle == Some(0) {
            anyhow::bail!("--throttle 0: at least one array task must be able to run");
        }
        Ok(())
    }

    fn lines(&self) -> String {
        let mut s = String::new();
        let mut add = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                s.push_str(&format!("#SBATCH --{k}={v}\n"));
            }
        };
        add("partition", self.partition.clone());
        add("account", self.account.clone());
        add("time", self.time.clone());
        add("mem", self.mem.clone());
        add("cpus-per-task", self.cpus_per_task.map(|c| c.to_string()));
        // sbatch refuses --gpus-per-task without a task count ("used without
        // either --gpus or -n/--ntasks is not allowed"); a task is one process.
        if self.gpus_per_task.is_some() {
            add("ntasks", Some("1".to_string()));
        }
        add("gpus-per-task", self.gpus_per_task.clone());
        s
    }
}

/// The written scripts.
#[derive(Debug)]
pub struct Scripts {
    pub dir: PathBuf,
    pub run: PathBuf,
    pub analyze: Option<PathBuf>,
    pub submit: PathBuf,
    pub tasks: usize,
    /// The text of run.sbatch (printed by the command).
    pub run_text: String,
}

/// A word quoted for bash (single quotes unless it needs none).
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=+:,@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("making {} absolute", p.display()))
}

/// Writes the scripts for `config` (with `--set` overrides `set`) under
/// `<out>/<experiment>/slurm/`; `analyze`: also the dependent analysis job.
pub fn write(
    config: &Path,
    set: &[String],
    out: &Path,
    res: &Resources,
    job: &Job,
) -> Result<Scripts> {
    res.check()?;
    let analyze = job.analyze;
    if let Some(p) = &job.prelude {
        if p.contains('\0') {
            anyhow::bail!("--prelude: the text holds a NUL byte; expected shell lines");
        }
    }
    let prelude = job.prelude.as_ref().map_or(String::new(), |p| {
        format!("# --prelude:\n{}{}", p.trim_end_matches('\n'), "\n")
    });
    let (experiment, tasks, sweep) = match crate::experiment::sweep::Sweep::load(config, set)? {
        Some(s) => (s.experiment.clone(), s.tasks.len(), true),
        None => (crate::config::load(config, set)?.experiment, 1, false),
    };
    let source = std::fs::canonicalize(config)
        .with_context(|| format!("resolving config path {}", config.display()))?;
    let out = absolute(out)?;
    let exe = std::env::current_exe().context("finding the abcond executable")?;
    let dir = out.join(&experiment).join("slurm");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Scripts (and the frozen config) edited since abcond wrote them are the
    // user's now: not replaced.
    for name in ["run.sbatch", "analyze.sbatch", "submit.sh", "config.yaml"] {
        let p = dir.join(name);
        if p.exists() {
            // A config.yaml without abcond's checksum line is not abcond's.
            crate::store::seal::check_file(&p, name == "config.yaml").with_context(|| {
                format!(
                    "{} was edited since abcond wrote it, and `abcond slurm` would replace it: move it away (or delete it), then run `abcond slurm` again",
                    p.display()
                )
            })?;
        }
    }

    // The frozen config: the jobs run this copy, so that editing the config
    // after `abcond slurm` changes nothing queued. Its text is the original's
    // (plus abcond's checksum comment); relative preset paths keep resolving
    // against the original's directory (ABCOND_CONFIG_DIR in the scripts).
    let text = crate::util::read_text_file(&source, "config file", crate::util::MAX_YAML_BYTES)?;
    let config = dir.join("config.yaml");
    crate::store::seal::write_sealed(&config, &text, crate::store::seal::Comment::Hash)?;
    let config_dir = source
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let export = format!(
        "# The jobs run the frozen copy of {} written beside this script;\n# relative preset paths resolve against the original's directory.\nexport ABCOND_CONFIG_DIR={}\n",
        source.display(),
        quote(&config_dir.display().to_string())
    );

    // abcond [--threads N] --out OUT run CONFIG [--set K=V …]
    let mut base = vec![exe.display().to_string()];
    if let Some(n) = job.threads.or(res.cpus_per_task.map(|c| c as i32)) {
        base.extend(["--threads".to_string(), n.to_string()]);
    }
    base.extend([
        "--out".to_string(),
        out.display().to_string(),
        "run".to_string(),
        config.display().to_string(),
    ]);
    for s in set {
        base.extend(["--set".to_string(), s.clone()]);
    }
    let base = base.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ");
    let header = format!(
        "#!/bin/bash\n# Written by `abcond slurm` (abcond {}) for {}.\n",
        env!("CARGO_PKG_VERSION"),
        source.display()
    );
    let log = |name: &str| quote(&dir.join(name).display().to_string());
    let job = |suffix: &str| quote(&format!("abcond-{experiment}{suffix}"));

    let (what, task_cmd) = if sweep {
        (
            format!("# One array task per run of the sweep ({tasks} runs; `abcond sweep CONFIG --list` lists them):\n# task N trains (or resumes), probes and analyses run N.\n"),
            format!("{base} --task \"$SLURM_ARRAY_TASK_ID\""),
        )
    } else {
        (
            "# The config declares no sweep: one task trains (or resumes), probes and analyses its run.\n".to_string(),
            base.clone(),
        )
    };
    let (signal_line, launch) = if res.signal_seconds > 0 {
        (
            format!("#SBATCH --signal=B:USR1@{}\n", res.signal_seconds),
            format!(
                "# Time limit: Slurm sends SIGUSR1 to this shell {} s before it; the trap passes it\n# to abcond, which finishes its step, writes a checkpoint and exits 75; the task\n# then requeues itself and resumes from that checkpoint. SIGTERM (scancel,\n# preemption) is passed on too, without a requeue by this script.\nusr1=0\npid=\ntrap 'usr1=1; [ -n \"$pid\" ] && kill -USR1 \"$pid\" 2>/dev/null || true' USR1\ntrap '[ -n \"$pid\" ] && kill -TERM \"$pid\" 2>/dev/null || true' TERM\n{task_cmd} &\npid=$!\n# A warning that came while abcond was being started is passed on now.\nif [ \"$usr1\" = 1 ]; then kill -USR1 \"$pid\" 2>/dev/null || true; fi\nrc=0\nwhile :; do\n    wait \"$pid\" && rc=0 || rc=$?\n    kill -0 \"$pid\" 2>/dev/null || break\ndone\nif [ \"$usr1\" = 1 ] && {{ [ \"$rc\" = {} ] || [ \"$rc\" -gt 128 ]; }}; then\n    echo \"abcond: time-limit signal; requeueing job $SLURM_JOB_ID to resume from the checkpoint\"\n    scontrol requeue \"$SLURM_JOB_ID\"\nfi\nexit \"$rc\"\n",
                res.signal_seconds,
                crate::train::signal::EXIT_CODE
            ),
        )
    } else {
        (String::new(), format!("exec {task_cmd}\n"))
    };
    let run_text = format!(
        "{header}{what}# Preemption: --requeue restarts a preempted task, which resumes its run from the\n# last checkpoint; the log is appended to, not replaced.\n#SBATCH --job-name={}\n#SBATCH --array=0-{}{}\n#SBATCH --output={}\n#SBATCH --open-mode=append\n#SBATCH --requeue\n{signal_line}{}set -euo pipefail\n{prelude}{export}echo \"abcond task $SLURM_ARRAY_TASK_ID on $(hostname), job ${{SLURM_ARRAY_JOB_ID:-?}}, restart ${{SLURM_RESTART_COUNT:-0}}\"\n{launch}",
        job(""),
        tasks - 1,
        res.throttle.map_or(String::new(), |n| format!("%{n}")),
        log("%A_%a.out"),
        res.lines(),
    );
    let run = dir.join("run.sbatch");
    let run_text = crate::store::seal::seal(&run_text, crate::store::seal::Comment::Hash);
    crate::store::atomic::write_bytes(&run, run_text.as_bytes())?;

    let analyze_path = if analyze {
        let all = if sweep {
            format!("{base} --all --analyze-only")
        } else {
            format!("{base} --analyze-only")
        };
        let text = format!(
            "{header}# Submitted by submit.sh with --dependency=afterany:<array job>: once every task\n# has ended (also failed ones), analyses the experiment into {} and\n# only analyses: runs the array left missing or unfinished are listed, and the\n# job then fails (submit run.sbatch again for those tasks).\n#SBATCH --job-name={}\n#SBATCH --output={}\n#SBATCH --open-mode=append\n#SBATCH --requeue\n{}set -euo pipefail\n{prelude}{export}exec {all}\n",
            out.join(&experiment).join("analysis").display(),
            job("-analyze"),
            log("%j-analyze.out"),
            res.lines(),
        );
        let p = dir.join("analyze.sbatch");
        crate::store::seal::write_sealed(&p, &text, crate::store::seal::Comment::Hash)?;
        Some(p)
    } else {
        None
    };

    let q = |p: &Path| quote(&p.display().to_string());
    let mut submit = format!(
        "#!/bin/bash\n# Written by `abcond slurm`: submits {} (array of {tasks}){}.\n# Extra arguments are passed to every sbatch call (e.g. --qos=high).\nset -euo pipefail\n# --parsable prints \"jobid\" or \"jobid;cluster\".\narray=$(sbatch --parsable \"$@\" {})\narray=${{array%%;*}}\necho \"submitted array job $array ({tasks} tasks): logs in {}\"\n",
        q(&run),
        if analyze {
            " and then analyze.sbatch after it"
        } else {
            ""
        },
        q(&run),
        dir.display()
    );
    if let Some(a) = &analyze_path {
        submit.push_str(&format!(
            "analysis=$(sbatch --parsable --dependency=afterany:\"$array\" \"$@\" {})\nanalysis=${{analysis%%;*}}\necho \"submitted analysis job $analysis (after array job $array ends)\"\n",
            q(a)
        ));
    }
    let submit_path = dir.join("submit.sh");
    crate::store::seal::write_sealed(&submit_path, &submit, crate::store::seal::Comment::Hash)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for p in [Some(&run), analyze_path.as_ref(), Some(&submit_path)]
            .into_iter()
            .flatten()
        {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("making {} executable", p.display()))?;
        }
    }
    Ok(Scripts {
        dir,
        run,
        analyze: analyze_path,
        submit: submit_path,
        tasks,
        run_text,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoting() {
        assert_eq!(super::quote("/a/b.yaml"), "/a/b.yaml");
        assert_eq!(super::quote("optim.lr=0.1"), "optim.lr=0.1");
        assert_eq!(super::quote("a b"), "'a b'");
        assert_eq!(super::quote("it's"), r"'it'\''s'");
        assert_eq!(super::quote(""), "''");
    }
}
