//! The command line: `abcond config` prints the resolved config with the run id
//! and directory `train` then uses (YAML and JSON), lists a sweep's tasks,
//! a malformed `--set` is a usage error (exit status 2) for every command,
//! `run --analyze-only` trains nothing, $SLURM_CPUS_PER_TASK sets the
//! default thread count, `--sweep` is `--set 'sweep.…'`, `inspect`, `run` and
//! `analyze` print JSON with `--json`, and `completions` writes shell scripts.

mod common;
use common::*;

const TINY: &str = "experiment: cfg-tiny
seed: 3
device: cpu
model: {preset: halfspace}
data: {dataset: halfspace, dim: 4, per_class: 20}
train: {batch_size: 8, steps: 4}
optim: {name: sgd, lr: 0.1}
snapshots: {every: 2}
probe: {extra_batches: 0, full: false}
analysis: {plots: false}
";

#[test]
fn config_prints_the_run_id_and_directory_train_uses() {
    let dir = scratch("cli-config");
    let cfg = write_config(&dir, "config.yaml", TINY);
    let cfg = cfg.to_str().unwrap();
    let yaml = ok(&abcond(
        &dir,
        &["--out", "out", "config", cfg, "--set", "optim.lr=0.05"],
    ));
    let doc: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    let id = doc["run_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("seed3-"), "{yaml}");
    assert_eq!(
        doc["run_dir"].as_str().unwrap(),
        format!("out/cfg-tiny/{id}")
    );
    assert_eq!(doc["config"]["optim"]["lr"].as_f64(), Some(0.05));
    assert_eq!(doc["config"]["model"]["kind"].as_str(), Some("halfspace"));
    // JSON: the same document (JSON is YAML, so serde_yaml reads it).
    let json = ok(&abcond(
        &dir,
        &[
            "--out",
            "out",
            "config",
            cfg,
            "--set",
            "optim.lr=0.05",
            "--json",
        ],
    ));
    assert!(
        json.trim_start().starts_with('{') && json.lines().count() == 1,
        "{json}"
    );
    let from_json: serde_yaml::Value = serde_yaml::from_str(&json).unwrap();
    assert_eq!(from_json, doc);
    // Nothing was written; train then makes exactly that directory.
    assert!(!dir.join("out").exists());
    ok(&abcond(
        &dir,
        &[
            "--quiet",
            "--out",
            "out",
            "train",
            cfg,
            "--set",
            "optim.lr=0.05",
        ],
    ));
    assert!(dir
        .join("out/cfg-tiny")
        .join(&id)
        .join("run.yaml")
        .is_file());
}

#[test]
fn config_lists_a_sweeps_tasks_and_prints_one() {
    let dir = scratch("cli-config-sweep");
    let text = format!("{TINY}sweep: {{optim.lr: [0.1, 0.2], seed: [0, 1]}}\n");
    let cfg = write_config(&dir, "config.yaml", &text);
    let cfg = cfg.to_str().unwrap();
    let yaml = ok(&abcond(&dir, &["config", cfg]));
    let doc: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    let tasks = doc["tasks"].as_sequence().unwrap();
    assert_eq!(tasks.len(), 4, "{yaml}");
    assert_eq!(tasks[3]["values"]["optim.lr"].as_f64(), Some(0.2));
    let one = ok(&abcond(&dir, &["config", cfg, "--task", "3"]));
    let one: serde_yaml::Value = serde_yaml::from_str(&one).unwrap();
    assert_eq!(one["run_id"], tasks[3]["run_id"]);
    assert_eq!(one["config"]["optim"]["lr"].as_f64(), Some(0.2));
    let out = abcond(&dir, &["config", cfg, "--task", "9"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_malformed_set_is_a_usage_error() {
    let dir = scratch("cli-set");
    let cfg = write_config(&dir, "config.yaml", TINY);
    let cfg = cfg.to_str().unwrap();
    for args in [
        vec!["train", cfg, "--set", "optim.lr"],
        vec!["run", cfg, "--set", "=0.1"],
        vec!["config", cfg, "--set", "optim..lr=1"],
        vec!["sweep", cfg, "--set", "seed"],
        vec!["probe", "nowhere", "--set", "probe.full"],
        vec!["analyze", "nowhere", "--set", "analysis.margin"],
    ] {
        let out = abcond(&dir, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("expected KEY.PATH=VALUE"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert!(!dir.join("results").exists());
}

#[test]
fn analyze_only_trains_nothing_and_names_what_is_missing() {
    let dir = scratch("cli-analyze-only");
    let text = format!("{TINY}sweep: {{seed: [0, 1]}}\n");
    let cfg = write_config(&dir, "config.yaml", &text);
    let cfg = cfg.to_str().unwrap();
    // Nothing trained yet: both runs are missing, nothing is written.
    let out = abcond(
        &dir,
        &[
            "--quiet",
            "--out",
            "out",
            "run",
            cfg,
            "--all",
            "--analyze-only",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("2 of the sweep's 2 runs are missing or unfinished"),
        "{err}"
    );
    assert!(
        err.contains("task 0") && err.contains("not-started"),
        "{err}"
    );
    assert!(!dir.join("out/cfg-tiny/seed0").exists());
    // Task 1 finished: it is analysed, task 0 is named, the exit status is 1.
    ok(&abcond(
        &dir,
        &["--quiet", "--out", "out", "run", cfg, "--task", "1"],
    ));
    let out = abcond(
        &dir,
        &[
            "--quiet",
            "--out",
            "out",
            "run",
            cfg,
            "--all",
            "--analyze-only",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("1 ready to analyse, 1 missing or unfinished"));
    assert!(
        stderr(&out).contains("1 of the sweep's 2 runs are missing"),
        "{}",
        stderr(&out)
    );
    assert!(dir.join("out/cfg-tiny/analysis/summary.yaml").is_file());
    let runs: Vec<_> = std::fs::read_dir(dir.join("out/cfg-tiny"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("seed"))
        .collect();
    assert_eq!(runs.len(), 1, "analyze-only trained a run");
    // One run without a sweep; `train --analyze-only` is refused.
    let one = write_config(&dir, "one.yaml", TINY);
    let one = one.to_str().unwrap();
    let out = abcond(&dir, &["--out", "out", "run", one, "--analyze-only"]);
    assert!(
        stderr(&out).contains("is missing (not started)"),
        "{}",
        stderr(&out)
    );
    let out = abcond(&dir, &["--out", "out", "train", one, "--analyze-only"]);
    assert!(
        stderr(&out).contains("--analyze-only goes with `abcond run`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn slurm_cpus_per_task_sets_the_default_threads() {
    let dir = scratch("cli-slurm-threads");
    let cfg = write_config(&dir, "config.yaml", TINY);
    let out = cmd(&dir)
        .env_remove("OMP_NUM_THREADS")
        .env("SLURM_CPUS_PER_TASK", "100000")
        .args(["--out", "out", "train", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("$SLURM_CPUS_PER_TASK 100000: must be between 1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // --threads wins over it.
    let out = cmd(&dir)
        .env("SLURM_CPUS_PER_TASK", "100000")
        .args([
            "--quiet",
            "--threads",
            "1",
            "--out",
            "out",
            "train",
            cfg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn misspelt_keys_get_a_suggestion() {
    let dir = scratch("cli-did-you-mean");
    for (bad, want) in [
        (
            "train: {batch_size: 8, steps: 4}",
            "train: {batch_size: 8, setps: 4}",
        ),
        (
            "model: {preset: halfspace}",
            "model: {preset: halfspace, lambda_: 0.1}",
        ),
    ] {
        let text = TINY.replace(bad, want);
        let cfg = write_config(&dir, "config.yaml", &text);
        let out = abcond(&dir, &["config", cfg.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        let hint = if want.contains("setps") {
            "(did you mean `steps`?)"
        } else {
            "(did you mean `lambda`?)"
        };
        assert!(err.contains(hint), "{err}");
    }
    let cfg = write_config(&dir, "config.yaml", TINY);
    let out = abcond(
        &dir,
        &["config", cfg.to_str().unwrap(), "--set", "optim.name=sdg"],
    );
    assert!(
        stderr(&out).contains("(did you mean `sgd`?)"),
        "{}",
        stderr(&out)
    );
}

/// `--set sweep.KEY=[…]` turns a config without `sweep` into a sweep.
#[test]
fn a_sweep_from_the_command_line() {
    let dir = scratch("cli-adhoc-sweep");
    let cfg = write_config(&dir, "config.yaml", TINY);
    let cfg = cfg.to_str().unwrap();
    let listed = ok(&abcond(
        &dir,
        &[
            "config",
            cfg,
            "--set",
            "sweep.optim.lr=[0.1, 0.2]",
            "--set",
            "seed=5",
        ],
    ));
    let doc: serde_yaml::Value = serde_yaml::from_str(&listed).unwrap();
    let tasks = doc["tasks"].as_sequence().unwrap();
    assert_eq!(tasks.len(), 2, "{listed}");
    ok(&abcond(
        &dir,
        &[
            "--quiet",
            "--out",
            "out",
            "run",
            cfg,
            "--set",
            "sweep.optim.lr=[0.1, 0.2]",
            "--set",
            "seed=5",
            "--all",
        ],
    ));
    for t in tasks {
        let id = t["run_id"].as_str().unwrap();
        assert!(id.starts_with("seed5-"), "{id}");
        assert!(dir
            .join("out/cfg-tiny")
            .join(id)
            .join("landscape.parquet")
            .is_file());
    }
    assert!(dir.join("out/cfg-tiny/analysis/summary.yaml").is_file());
}

/// Parses `text` as strict JSON with Python's json module (NaN and Infinity,
/// which JSON does not have, are errors) and returns the document.
fn strict_json(dir: &std::path::Path, text: &str) -> serde_yaml::Value {
    let file = dir.join("stdout.json");
    std::fs::write(&file, text).unwrap();
    let normal = py(
        "import json, sys\n\
         def bad(c):\n    raise ValueError('not JSON: ' + c)\n\
         text = open(sys.argv[1]).read()\n\
         assert text.endswith('\\n') and text.count('\\n') == 1, 'not one line'\n\
         doc = json.loads(text, parse_constant=bad)\n\
         print(json.dumps(doc, allow_nan=False, ensure_ascii=False))\n",
        &[file.to_str().unwrap()],
    );
    serde_yaml::from_str(&normal).unwrap()
}

/// `--sweep KEY=[…]` is `--set 'sweep.KEY=[…]'`: the same tasks and run ids,
/// repeatable, in command-line order; malformed ones are usage errors.
#[test]
fn sweep_is_a_spelling_of_set_sweep() {
    let dir = scratch("cli-sweep-flag");
    let cfg = write_config(&dir, "config.yaml", TINY);
    let cfg = cfg.to_str().unwrap();
    let config = |extra: &[&str]| {
        let mut args = vec!["config", cfg, "--json"];
        args.extend_from_slice(extra);
        ok(&abcond(&dir, &args))
    };
    let by_flag = config(&["--sweep", "optim.lr=[0.1,0.05]"]);
    let by_set = config(&["--set", "sweep.optim.lr=[0.1,0.05]"]);
    assert_eq!(by_flag, by_set);
    let doc: serde_yaml::Value = serde_yaml::from_str(&by_flag).unwrap();
    let tasks = doc["tasks"].as_sequence().unwrap();
    assert_eq!(tasks.len(), 2, "{by_flag}");
    assert_eq!(tasks[1]["values"]["optim.lr"].as_f64(), Some(0.05));
    assert_ne!(tasks[0]["run_id"], tasks[1]["run_id"]);
    // Repeatable, mixed with --set, axes in command-line order.
    let two = config(&[
        "--sweep",
        "seed=[0, 1]",
        "--set",
        "optim.momentum=0.5",
        "--sweep",
        "optim.lr=[0.1,0.05]",
    ]);
    assert_eq!(
        two,
        config(&[
            "--set",
            "sweep.seed=[0, 1]",
            "--set",
            "optim.momentum=0.5",
            "--set",
            "sweep.optim.lr=[0.1,0.05]",
        ])
    );
    let doc: serde_yaml::Value = serde_yaml::from_str(&two).unwrap();
    let tasks = doc["tasks"].as_sequence().unwrap();
    assert_eq!(tasks.len(), 4, "{two}");
    // The last axis varies fastest: task 1 is seed 0, lr 0.05.
    assert_eq!(tasks[1]["values"]["seed"].as_i64(), Some(0));
    assert_eq!(tasks[1]["values"]["optim.lr"].as_f64(), Some(0.05));
    let swapped = config(&[
        "--set",
        "sweep.optim.lr=[0.1,0.05]",
        "--sweep",
        "seed=[0, 1]",
        "--set",
        "optim.momentum=0.5",
    ]);
    let swapped: serde_yaml::Value = serde_yaml::from_str(&swapped).unwrap();
    assert_eq!(swapped["tasks"][1]["values"]["seed"].as_i64(), Some(1));
    assert_eq!(
        swapped["tasks"][1]["values"]["optim.lr"].as_f64(),
        Some(0.1)
    );
    // A sweep key the config cannot take is the same error either way.
    let flag = abcond(&dir, &["config", cfg, "--sweep", "optim.lx=[1,2]"]);
    let set = abcond(&dir, &["config", cfg, "--set", "sweep.optim.lx=[1,2]"]);
    assert_eq!(flag.status.code(), Some(1));
    assert_eq!(stderr(&flag), stderr(&set));
    // train and slurm take it too (train of a sweep then wants --task/--all).
    let out = abcond(&dir, &["train", cfg, "--sweep", "seed=[0,1]"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--task N"), "{}", stderr(&out));
    let script = ok(&abcond(
        &dir,
        &["--out", "out", "slurm", cfg, "--sweep", "seed=[0,1,2]"],
    ));
    assert!(script.contains("--array=0-2"), "{script}");
    assert!(script.contains("sweep.seed=[0,1,2]"), "{script}");
    // Malformed: usage errors (exit status 2) naming the expected form.
    for bad in [
        "optim.lr",
        "optim.lr=0.1",
        "optim.lr=[]",
        "optim.lr=[0.1",
        "=[0.1]",
        "optim..lr=[1]",
        "sweep.seed=[0,1]",
    ] {
        for command in ["train", "run", "config", "slurm", "sweep"] {
            let out = abcond(&dir, &[command, cfg, "--sweep", bad]);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{command} {bad}: {}",
                stderr(&out)
            );
            assert!(
                stderr(&out).contains("expected KEY.PATH=[V1,V2,…]"),
                "{command} {bad}: {}",
                stderr(&out)
            );
        }
    }
    assert!(!dir.join("results").exists());
}

/// `inspect --json`: the facts of the text as JSON, for a trained and for a
/// probed run.
#[test]
fn inspect_json() {
    let dir = scratch("cli-inspect-json");
    let cfg = write_config(&dir, "config.yaml", TINY);
    let cfg = cfg.to_str().unwrap();
    let listed: serde_yaml::Value =
        serde_yaml::from_str(&ok(&abcond(&dir, &["--out", "out", "config", cfg]))).unwrap();
    let run_dir = listed["run_dir"].as_str().unwrap().to_string();
    ok(&abcond(&dir, &["--quiet", "--out", "out", "train", cfg]));
    let trained = strict_json(&dir, &ok(&abcond(&dir, &["inspect", &run_dir, "--json"])));
    assert_eq!(trained["run_dir"].as_str(), Some(run_dir.as_str()));
    assert_eq!(trained["run_id"], listed["run_id"]);
    assert_eq!(trained["experiment"].as_str(), Some("cfg-tiny"));
    assert_eq!(trained["seed"].as_i64(), Some(3));
    assert_eq!(trained["status"].as_str(), Some("completed"));
    assert_eq!(trained["interrupted"].as_bool(), Some(false));
    assert!(trained["message"].is_null() && trained["trainer"].is_null());
    assert_eq!(trained["training"]["steps_done"].as_i64(), Some(4));
    assert_eq!(trained["training"]["total_steps"].as_i64(), Some(4));
    assert_eq!(trained["steps"]["rows"].as_i64(), Some(4));
    assert_eq!(trained["steps"]["first"]["step"].as_i64(), Some(0));
    assert_eq!(trained["steps"]["last"]["step"].as_i64(), Some(3));
    assert_eq!(trained["steps"]["first"]["lr"].as_f64(), Some(0.1));
    let snaps: Vec<i64> = trained["snapshots"]["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(snaps, [0, 2, 4]);
    assert_eq!(trained["snapshots"]["count"].as_i64(), Some(3));
    assert!(trained["snapshots"]["bytes"].as_i64().unwrap() > 0);
    assert_eq!(
        trained["snapshots"]["missing"].as_sequence().unwrap().len(),
        0
    );
    assert_eq!(trained["probe"]["state"].as_str(), Some("not-run"));
    assert!(trained["probe"]["rows"].is_null());
    let sessions = trained["sessions"].as_sequence().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["outcome"].as_str(), Some("completed"));
    assert!(sessions[0]["command"].as_str().unwrap().contains("train"));
    assert_eq!(trained["config"]["optim"]["lr"].as_f64(), Some(0.1));
    // The text says the same.
    let text = ok(&abcond(&dir, &["inspect", &run_dir]));
    let loss0 = trained["steps"]["first"]["loss"].as_f64().unwrap();
    assert!(
        text.contains(&format!("loss {loss0:.4} at step 0")),
        "{text}"
    );
    assert!(text.contains("snapshots   3 on disk"), "{text}");
    // Probed: the probe's facts.
    ok(&abcond(
        &dir,
        &["--quiet", "--out", "out", "probe", &run_dir],
    ));
    let probed = strict_json(&dir, &ok(&abcond(&dir, &["inspect", &run_dir, "--json"])));
    let p = &probed["probe"];
    assert_eq!(p["state"].as_str(), Some("probed"), "{p:?}");
    assert_eq!(p["status"].as_str(), Some("completed"));
    assert_eq!(p["device"].as_str(), Some("cpu"));
    let rows = p["rows"].as_i64().unwrap();
    let probes: Vec<&str> = p["probes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(probes.contains(&"train"), "{probes:?}");
    let text = ok(&abcond(&dir, &["inspect", &run_dir]));
    assert!(
        text.contains(&format!(
            "{} snapshots probed, {rows} rows in landscape.parquet (probes: {})",
            p["snapshots_probed"].as_i64().unwrap(),
            probes.join(", ")
        )),
        "{text}"
    );
    assert_eq!(p["not_probed"].as_sequence().unwrap().len(), 0);
    // Not a run directory: an error, nothing on stdout.
    let out = abcond(&dir, &["inspect", "nowhere", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
}

/// `run --json` and `analyze --json`: stdout is exactly one JSON line whose
/// `summary` is the document in analysis/summary.yaml; the rest is on stderr.
#[test]
fn run_and_analyze_json() {
    let dir = scratch("cli-run-json");
    let cfg = write_config(&dir, "config.yaml", TINY);
    let cfg = cfg.to_str().unwrap();
    let out = abcond(&dir, &["--out", "out", "run", cfg, "--json"]);
    let doc = strict_json(&dir, &ok(&out));
    let err = stderr(&out);
    assert!(err.contains("results: out/cfg-tiny/"), "{err}");
    let analysis_dir = doc["analysis_dir"].as_str().unwrap();
    let summary_file = dir.join(analysis_dir).join("summary.yaml");
    let on_disk: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&summary_file).unwrap()).unwrap();
    assert_eq!(doc["summary"], on_disk);
    assert_eq!(doc["summary"]["format"].as_str(), Some("abcond.analysis/1"));
    let groups = doc["summary"]["groups"].as_sequence().unwrap();
    assert_eq!(groups.len(), 1);
    assert!(groups[0]["alpha_beta"]["region"].as_str().is_some());
    let files: Vec<&str> = doc["files"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with("summary.yaml")),
        "{files:?}"
    );
    assert!(doc["notes"].as_sequence().is_some());
    // analyze --json of the run: a new summary.yaml, again the same document.
    let run_dir = doc["summary"]["runs"][0]["dir"]
        .as_str()
        .unwrap()
        .to_string();
    let again = strict_json(
        &dir,
        &ok(&abcond(&dir, &["--quiet", "analyze", &run_dir, "--json"])),
    );
    let on_disk: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&summary_file).unwrap()).unwrap();
    assert_eq!(again["summary"], on_disk);
    assert_eq!(again["summary"]["groups"], doc["summary"]["groups"]);
    // Without --json the text, which is not JSON.
    let text = ok(&abcond(&dir, &["--quiet", "analyze", &run_dir]));
    assert!(text.starts_with("analysis: 1 run(s)"), "{text}");
    // A sweep's --all: the experiment's analysis, the sweep line on stderr.
    let out = abcond(
        &dir,
        &[
            "--out",
            "swept",
            "run",
            cfg,
            "--sweep",
            "seed=[0,1]",
            "--all",
            "--json",
        ],
    );
    let doc = strict_json(&dir, &ok(&out));
    assert_eq!(doc["summary"]["runs"].as_sequence().unwrap().len(), 2);
    assert!(stderr(&out).contains("sweep "), "{}", stderr(&out));
    // train has no summary to print.
    let out = abcond(&dir, &["--out", "out", "train", cfg, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--json goes with `abcond run`"));
}

/// `completions bash` is a script bash accepts that completes every
/// subcommand; zsh and fish scripts are written too.
#[test]
fn shell_completions() {
    use clap::CommandFactory;
    let dir = scratch("cli-completions");
    let script = ok(&abcond(&dir, &["completions", "bash"]));
    let names: Vec<String> = abcond::cli::Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    assert!(names.len() >= 11, "{names:?}");
    for name in &names {
        assert!(script.contains(name.as_str()), "{name} missing");
    }
    let file = dir.join("abcond.bash");
    std::fs::write(&file, &script).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output();
    let Ok(check) = check else {
        println!("SKIPPED: completions: no bash to run the script");
        return;
    };
    assert!(check.status.success(), "bash -n: {}", stderr(&check));
    // Sourced: registered for abcond, and it completes `abcond ins` and
    // `abcond inspect --j`.
    let complete = |words: &str| {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; complete -p abcond; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
                 COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}; \
                 _abcond abcond \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
                 printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                file.display()
            ))
            .output()
            .unwrap();
        ok(&out)
    };
    let got = complete("abcond ins");
    assert!(got.contains("complete") && got.contains("abcond"), "{got}");
    assert!(got.lines().any(|l| l == "inspect"), "{got}");
    let got = complete("abcond inspect --j");
    assert!(got.lines().any(|l| l == "--json"), "{got}");
    let got = complete("abcond run x --sw");
    assert!(got.lines().any(|l| l == "--sweep"), "{got}");
    for shell in ["zsh", "fish"] {
        let script = ok(&abcond(&dir, &["completions", shell]));
        assert!(
            script.contains("abcond") && script.contains("inspect"),
            "{shell}"
        );
    }
    let out = abcond(&dir, &["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}
