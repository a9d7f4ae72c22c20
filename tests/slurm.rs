//! `abcond slurm`: the job-array script, the dependent analysis job and
//! submit.sh, checked by `bash -n` and by running submit.sh against a fake
//! `sbatch` that records its arguments.

mod common;
use common::*;
use std::path::Path;

const BASE: &str = "experiment: slurmy
seed: 0
device: cpu
model: {preset: mlp, width: 8}
data: {dataset: fashion-mnist, path: fmnist, subset: 100}
train: {batch_size: 16, steps: 20}
optim: {name: sgd, lr: 0.05}
";

fn bash_n(p: &Path) {
    let o = std::process::Command::new("bash")
        .arg("-n")
        .arg(p)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "bash -n {}: {}",
        p.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn sweep_scripts_array_options_and_dependency() {
    let dir = scratch("slurm-sweep");
    write_config(
        &dir,
        "s.yaml",
        &format!("{BASE}sweep:\n  model.width: [4, 8, 16]\n  seed: [0, 1]\n"),
    );
    let printed = ok(&abcond(
        &dir,
        &[
            "--out",
            "res",
            "slurm",
            "s.yaml",
            "--partition",
            "gpu",
            "--gpus-per-task",
            "1",
            "--time",
            "2:00:00",
            "--mem",
            "8G",
            "--cpus-per-task",
            "4",
            "--account",
            "proj42",
            "--set",
            "optim.lr=0.1",
        ],
    ));
    let sdir = dir.join("res/slurmy/slurm");
    let run = std::fs::read_to_string(sdir.join("run.sbatch")).unwrap();
    assert!(printed.starts_with(&run), "prints run.sbatch:\n{printed}");
    assert!(
        printed.contains(&format!(
            "submit:  bash {}",
            sdir.join("submit.sh").display()
        )),
        "{printed}"
    );
    let bin = std::fs::canonicalize(bin()).unwrap();
    // The scripts run the frozen copy beside them.
    let cfg = sdir.join("config.yaml");
    for line in [
        "#!/bin/bash".to_string(),
        "#SBATCH --array=0-5".to_string(),
        format!("#SBATCH --output={}/%A_%a.out", sdir.display()),
        "#SBATCH --requeue".into(),
        "#SBATCH --open-mode=append".into(),
        "#SBATCH --partition=gpu".into(),
        "#SBATCH --ntasks=1".into(),
        "#SBATCH --gpus-per-task=1".into(),
        "#SBATCH --time=2:00:00".into(),
        "#SBATCH --mem=8G".into(),
        "#SBATCH --cpus-per-task=4".into(),
        "#SBATCH --account=proj42".into(),
        "set -euo pipefail".into(),
        "#SBATCH --signal=B:USR1@120".into(),
        format!(
            "export ABCOND_CONFIG_DIR={}",
            std::fs::canonicalize(&dir).unwrap().display()
        ),
        format!(
            "{} --threads 4 --out {} run {} --set optim.lr=0.1 --task \"$SLURM_ARRAY_TASK_ID\" &",
            bin.display(),
            dir.join("res").display(),
            cfg.display()
        ),
    ] {
        assert!(
            run.lines().any(|l| l == line),
            "run.sbatch lacks {line:?}:\n{run}"
        );
    }
    let analyze = std::fs::read_to_string(sdir.join("analyze.sbatch")).unwrap();
    assert!(!analyze.contains("--array"), "{analyze}");
    assert!(
        analyze.lines().any(|l| l
            == format!(
                "exec {} --threads 4 --out {} run {} --set optim.lr=0.1 --all --analyze-only",
                bin.display(),
                dir.join("res").display(),
                cfg.display()
            )),
        "{analyze}"
    );
    assert!(analyze.contains("#SBATCH --partition=gpu\n"), "{analyze}");
    for f in ["run.sbatch", "analyze.sbatch", "submit.sh"] {
        bash_n(&sdir.join(f));
    }

    // A fake sbatch records each call and prints "<id>;cluster" like --parsable.
    let fake = dir.join("fakebin");
    std::fs::create_dir_all(&fake).unwrap();
    write_config(
        &fake,
        "sbatch",
        &format!(
            "#!/bin/bash\necho \"$*\" >> {log}\nn=$(wc -l < {log})\necho \"$((1000 + n));clusterA\"\n",
            log = dir.join("sbatch.log").display()
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(fake.join("sbatch"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = std::process::Command::new("bash")
        .arg(sdir.join("submit.sh"))
        .arg("--qos=high")
        .env(
            "PATH",
            format!("{}:{}", fake.display(), std::env::var("PATH").unwrap()),
        )
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let calls = std::fs::read_to_string(dir.join("sbatch.log")).unwrap();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        vec![
            format!(
                "--parsable --qos=high {}",
                sdir.join("run.sbatch").display()
            ),
            format!(
                "--parsable --dependency=afterany:1001 --qos=high {}",
                sdir.join("analyze.sbatch").display()
            ),
        ],
        "{said}"
    );
    assert!(
        said.contains("submitted array job 1001 (6 tasks)"),
        "{said}"
    );
    assert!(
        said.contains("submitted analysis job 1002 (after array job 1001 ends)"),
        "{said}"
    );
}

#[test]
fn config_without_sweep_is_an_array_of_one_and_options_are_optional() {
    let dir = scratch("slurm-single");
    write_config(&dir, "one.yaml", BASE);
    ok(&abcond(&dir, &["slurm", "one.yaml", "--no-analyze"]));
    let sdir = dir.join("results/slurmy/slurm");
    let run = std::fs::read_to_string(sdir.join("run.sbatch")).unwrap();
    assert!(run.contains("#SBATCH --array=0-0\n"), "{run}");
    let sbatch: Vec<&str> = run.lines().filter(|l| l.starts_with("#SBATCH")).collect();
    assert_eq!(
        sbatch.len(),
        6,
        "only job name, array, output, open-mode, requeue, signal:\n{run}"
    );
    let exec = run.lines().find(|l| l.ends_with(" &")).unwrap();
    assert!(
        exec.ends_with("/slurm/config.yaml &"),
        "no --task for a config without sweep: {exec}"
    );
    assert!(!exec.contains("--threads"), "{exec}");
    assert!(!sdir.join("analyze.sbatch").exists());
    let submit = std::fs::read_to_string(sdir.join("submit.sh")).unwrap();
    assert!(!submit.contains("dependency"), "{submit}");
    for f in ["run.sbatch", "submit.sh"] {
        bash_n(&sdir.join(f));
        assert!(
            abcond::store::seal::check_file(&sdir.join(f), true).unwrap(),
            "{f} carries its checksum line"
        );
    }
    // Written again unchanged: fine. Edited by the user (a `module load`
    // line): not replaced, and the error says what to do.
    ok(&abcond(&dir, &["slurm", "one.yaml", "--no-analyze"]));
    let edited = run.replacen(
        "set -euo pipefail",
        "module load cuda\nset -euo pipefail",
        1,
    );
    std::fs::write(sdir.join("run.sbatch"), &edited).unwrap();
    let again = abcond(&dir, &["slurm", "one.yaml", "--no-analyze"]);
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert!(stderr(&again).contains("was edited"), "{}", stderr(&again));
    assert_eq!(
        std::fs::read_to_string(sdir.join("run.sbatch")).unwrap(),
        edited,
        "the user's script is untouched"
    );
    let help = ok(&abcond(&dir, &["slurm", "--help"]));
    for word in [
        "--partition",
        "--gpus-per-task",
        "--time",
        "--mem",
        "--cpus-per-task",
        "--account",
        "afterany",
        "submit.sh",
        "--requeue",
    ] {
        assert!(help.contains(word), "help lacks {word}:\n{help}");
    }
}

#[test]
fn option_values_cannot_inject_lines() {
    let dir = scratch("slurm-inject");
    write_config(&dir, "one.yaml", BASE);
    for (opt, v) in [
        ("--partition", "gpu\n#SBATCH --uid=0"),
        ("--account", "a b"),
        ("--time", "1:00\nrm -rf ~"),
        ("--mem", ""),
    ] {
        let out = abcond(&dir, &["slurm", "one.yaml", opt, v]);
        assert_eq!(out.status.code(), Some(1), "{opt} {v:?}");
        assert!(stderr(&out).contains(opt), "{}", stderr(&out));
        assert!(
            !dir.join("results/slurmy/slurm").exists(),
            "{opt} {v:?} wrote scripts"
        );
    }
}

/// --throttle limits the running array tasks, --prelude runs set-up lines
/// before abcond in both jobs (a command line, or a file's text), and a global
/// --threads is written into every abcond command.
#[test]
fn throttle_prelude_and_threads() {
    let dir = scratch("slurm-options");
    write_config(
        &dir,
        "s.yaml",
        &format!("{BASE}sweep:\n  seed: [0, 1, 2, 3]\n"),
    );
    ok(&abcond(
        &dir,
        &[
            "--threads",
            "2",
            "--out",
            "res",
            "slurm",
            "s.yaml",
            "--throttle",
            "2",
            "--prelude",
            "module load cuda/13.0",
        ],
    ));
    let sdir = dir.join("res/slurmy/slurm");
    let run = std::fs::read_to_string(sdir.join("run.sbatch")).unwrap();
    let analyze = std::fs::read_to_string(sdir.join("analyze.sbatch")).unwrap();
    assert!(run.lines().any(|l| l == "#SBATCH --array=0-3%2"), "{run}");
    for text in [&run, &analyze] {
        let lines: Vec<&str> = text.lines().collect();
        let pre = lines.iter().position(|l| *l == "module load cuda/13.0");
        let exec = lines
            .iter()
            .position(|l| l.starts_with("exec ") || l.ends_with(" &"));
        assert!(
            pre.is_some() && pre < exec,
            "prelude before abcond:\n{text}"
        );
        assert!(
            lines[exec.unwrap()].contains(" --threads 2 --out "),
            "{text}"
        );
    }
    // A prelude file: its lines, verbatim.
    write_config(
        &dir,
        "pre.sh",
        "source /opt/venv/bin/activate\nexport LD_LIBRARY_PATH=/opt/torch/lib\n",
    );
    std::fs::remove_dir_all(&sdir).unwrap();
    ok(&abcond(
        &dir,
        &["--out", "res", "slurm", "s.yaml", "--prelude", "pre.sh"],
    ));
    let run = std::fs::read_to_string(sdir.join("run.sbatch")).unwrap();
    assert!(
        run.contains("source /opt/venv/bin/activate\nexport LD_LIBRARY_PATH=/opt/torch/lib\n# The jobs run the frozen copy"),
        "{run}"
    );
    assert!(run.lines().any(|l| l == "#SBATCH --array=0-3"), "{run}");
    for f in ["run.sbatch", "analyze.sbatch", "submit.sh"] {
        bash_n(&sdir.join(f));
    }
    let out = abcond(
        &dir,
        &["--out", "res", "slurm", "s.yaml", "--throttle", "0"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--throttle 0"), "{}", stderr(&out));
}

/// run.sbatch executed by bash as Slurm would (task 0, job 4242, a fake
/// `scontrol` that logs its arguments): SIGUSR1 to the batch shell (Slurm's
/// `--signal=B:USR1@N` before the time limit) reaches abcond, which
/// checkpoints and exits 75, and the script requeues its job; SIGTERM
/// (scancel, preemption) checkpoints without a requeue; the run then
/// finishes from the checkpoints. The script runs the frozen config: the
/// original, edited after `abcond slurm`, changes nothing.
#[test]
fn the_run_script_checkpoints_on_the_time_limit_signal_and_requeues() {
    let dir = scratch("slurm-signal");
    let data = dir.join("data");
    write_idx_fixture(&data, 256);
    let text = format!(
        "experiment: sig\nseed: 0\ndevice: cpu\ndata: {{dataset: fashion-mnist, path: {}}}\nmodel: {{preset: mlp, width: 8}}\noptim: {{name: sgd, lr: 0.1}}\ntrain: {{batch_size: 16, steps: 40000, checkpoint_every: 1000000}}\nsnapshots: {{every: 10000}}\nprobe: {{extra_batches: 0, full: false, steps: [0]}}\n",
        data.display()
    );
    let cfg = write_config(&dir, "c.yaml", &text);
    let id = |cfg: &Path| -> String {
        let out = ok(&abcond(&dir, &["config", cfg.to_str().unwrap()]));
        out.lines()
            .next()
            .unwrap()
            .trim_start_matches("run_id: ")
            .to_string()
    };
    let frozen_id = id(&cfg);
    ok(&abcond(
        &dir,
        &[
            "--out",
            "res",
            "slurm",
            "c.yaml",
            "--no-analyze",
            "--signal-seconds",
            "90",
        ],
    ));
    let sdir = dir.join("res/sig/slurm");
    let script = sdir.join("run.sbatch");
    assert!(
        std::fs::read_to_string(&script)
            .unwrap()
            .contains("#SBATCH --signal=B:USR1@90\n"),
        "signal option"
    );
    // Frozen: the copy is the original's text plus abcond's checksum line.
    let copy = std::fs::read_to_string(sdir.join("config.yaml")).unwrap();
    assert!(copy.starts_with(&text), "{copy}");
    assert!(abcond::store::seal::check_file(&sdir.join("config.yaml"), true).unwrap());
    // The user edits the original after `abcond slurm`: the jobs do not see it.
    write_config(&dir, "c.yaml", &text.replace("lr: 0.1", "lr: 0.5"));
    assert_ne!(
        id(&cfg),
        frozen_id,
        "the edit changes the original's run id"
    );

    let fake = dir.join("fake-bin");
    std::fs::create_dir_all(&fake).unwrap();
    let log = dir.join("scontrol.log");
    std::fs::write(
        fake.join("scontrol"),
        format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display()),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            fake.join("scontrol"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    let path = format!(
        "{}:{}",
        fake.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let bash = || {
        let mut b = std::process::Command::new("bash");
        b.arg(&script)
            .current_dir(&dir)
            .env("OMP_NUM_THREADS", "1")
            .env("PATH", &path)
            .env("SLURM_ARRAY_TASK_ID", "0")
            .env("SLURM_JOB_ID", "4242")
            .env_remove("SLURM_CPUS_PER_TASK")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        b
    };
    let run_id_dir = dir.join("res/sig").join(&frozen_id);
    for (signal, requeued) in [(libc::SIGUSR1, true), (libc::SIGTERM, false)] {
        let sessions = || {
            std::fs::read_to_string(run_id_dir.join("run.yaml"))
                .map(|t| t.matches("start_step:").count())
                .unwrap_or(0)
        };
        let before = sessions();
        let child = bash().spawn().unwrap();
        wait_training(&dir.join("res"), "sig");
        // Until this session trains (a resumed one has its step-0 snapshot already).
        let t0 = std::time::Instant::now();
        while sessions() <= before {
            assert!(t0.elapsed().as_secs() < 60, "no new session after 60 s");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(75), "{text}");
        assert!(text.contains("checkpoint written, exiting"), "{text}");
        let calls = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(
            calls, "requeue 4242\n",
            "signal {signal}: scontrol calls\n{text}"
        );
        assert_eq!(
            text.contains("requeueing job 4242"),
            requeued,
            "signal {signal}:\n{text}"
        );
        assert!(
            run_id_dir.is_dir(),
            "the frozen config's run ({frozen_id}) trains"
        );
    }
    // The requeued task resumes and finishes.
    let out = bash().output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let said = py(
        r#"
import sys, yaml
m = yaml.safe_load(open(sys.argv[1] + "/run.yaml"))
ss = m["sessions"]
assert m["status"] == "completed" and len(ss) == 3, ss
assert 0 < ss[1]["start_step"] < ss[2]["start_step"] < 40000, ss
assert m["config"]["optim"]["lr"] == 0.1, m["config"]["optim"]
print("ok", [s["start_step"] for s in ss])
"#,
        &[run_id_dir.to_str().unwrap()],
    );
    assert!(said.starts_with("ok"), "{said}");
    assert_eq!(
        std::fs::read_dir(dir.join("res/sig"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name() != "slurm")
            .count(),
        1,
        "only the frozen config's run"
    );
}
