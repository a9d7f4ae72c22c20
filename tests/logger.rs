//! Runs recorded from a user's own PyTorch loop by the Python companion's
//! `abcond.Logger` (python/abcond/logger.py), measured by the binary
//! unchanged. References: the same loop replaying a run abcond trained (same
//! x^0, minibatches and SGD) must give the same landscape; every row is
//! recomputed with autograd (tests/check_torchscript.py); loops killed with
//! SIGKILL at seeded random points never leave a torn snapshot; misuse of the
//! Logger and runs that stopped early, diverged or failed get clear answers
//! (tests/logger_loop.py).

mod common;
use common::*;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Stdio;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/logger_loop.py")
}

/// Runs tests/logger_loop.py with `args`; returns its output.
fn logger_loop(args: &[&str]) -> String {
    run_python("logger_loop.py", args)
}

fn landscape(run: &Path) -> Vec<abcond::store::tables::LandscapeRow> {
    abcond::store::tables::read_landscape(&run.join("landscape.parquet"))
        .unwrap()
        .0
}

fn steps(run: &Path) -> Vec<abcond::store::tables::StepRow> {
    abcond::store::tables::read_steps(&run.join("steps.parquet"))
        .unwrap()
        .0
}

/// Relative difference, against `floor` where the values are near 0.
fn rel(a: f64, b: f64, floor: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(floor).max(1e-300)
}

/// examples/own_model.py trained by `abcond run`, then the same training
/// written as a plain PyTorch loop with torch.optim.SGD and recorded by the
/// Logger: the steps agree, and abcond measures both runs alike (every
/// landscape row within 1e-6; inner relative to ‖g‖·‖x^k − x^K‖). The logged
/// run's rows are also recomputed in PyTorch, and it analyses, verifies and
/// reads back through the companion.
#[test]
fn a_logged_pytorch_loop_measures_like_the_run_abcond_trained() {
    let dir = scratch("logger-replay");
    write_idx_fixture(&dir.join("fmnist"), 400);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/own_model.py");
    let out = python_cmd()
        .arg(&example)
        .args(["--data", dir.join("fmnist").to_str().unwrap()])
        .args(["--examples", "300", "--epochs", "2"])
        .args(["--out", dir.join("ex").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let cfg = dir.join("ex/own-model.yaml");
    ok(&abcond(
        &dir,
        &[
            "-q",
            "--out",
            "res",
            "run",
            cfg.to_str().unwrap(),
            "--set",
            "probe.full_subset=200",
            "--set",
            "analysis.plots=false",
        ],
    ));
    let trained = run_dir(&dir.join("res"), "own-model");
    let logged = dir.join("logged/logged/seed0");
    let text = logger_loop(&[
        "replay",
        trained.to_str().unwrap(),
        logged.to_str().unwrap(),
    ]);
    assert!(text.contains("replayed 8 steps"), "{text}");
    ok(&abcond(&dir, &["-q", "probe", logged.to_str().unwrap()]));

    let (a, b) = (steps(&trained), steps(&logged));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (x.step, x.epoch, &x.batch_indices),
            (y.step, y.epoch, &y.batch_indices)
        );
        assert_eq!((x.lr, x.step_size), (y.lr, y.step_size));
        assert!(rel(x.loss, y.loss, 0.0) < 1e-6, "{x:?} {y:?}");
        assert!(rel(x.grad_norm, y.grad_norm, 0.0) < 1e-6, "{x:?} {y:?}");
    }
    let (a, b) = (landscape(&trained), landscape(&logged));
    assert_eq!(a.len(), b.len());
    assert!(a.len() >= 20, "{} rows", a.len());
    for (x, y) in a.iter().zip(&b) {
        let at = format!("step {} {}", x.step, x.probe);
        assert_eq!(
            (x.step, &x.probe, &x.batch_indices, x.batch_size, x.ref_step),
            (y.step, &y.probe, &y.batch_indices, y.batch_size, y.ref_step),
            "{at}"
        );
        let scale = x.grad_norm * x.dist;
        for (what, p, q, floor) in [
            ("loss_k", x.loss_k, y.loss_k, 0.0),
            ("loss_ref", x.loss_ref, y.loss_ref, 0.0),
            ("grad_norm", x.grad_norm, y.grad_norm, 0.0),
            ("dist", x.dist, y.dist, 1e-12),
            ("inner", x.inner, y.inner, scale),
        ] {
            assert!(
                rel(p, q, floor) < 1e-6,
                "{at}: {what} {p} (abcond's run) vs {q} (logged)"
            );
        }
        assert!((x.cos - y.cos).abs() < 1e-6, "{at}: cos");
    }
    assert_eq!(
        (a[0].experiment.as_str(), b[0].run_id.as_str()),
        ("own-model", "seed0")
    );

    // The logged loop replays: abcond's SGD on the recorded minibatches
    // re-creates every x^k of torch.optim.SGD bit for bit (checked at each
    // stored iterate), and the replayed rows at the snapshot steps are the
    // snapshot probe's, bit for bit (checked by the gather).
    let out = abcond(&dir, &["probe", logged.to_str().unwrap(), "--replay"]);
    ok(&out);
    assert!(
        stderr(&out).contains("every stored iterate on the way matched bit for bit"),
        "{}",
        stderr(&out)
    );
    let text = ok(&abcond(&dir, &["inspect", logged.to_str().unwrap()]));
    assert!(
        text.contains("snapshot steps compared bit for bit"),
        "{text}"
    );

    let text = run_python("check_torchscript.py", &[logged.to_str().unwrap()]);
    assert!(text.contains("rows agree with PyTorch"), "{text}");
    ok(&abcond(&dir, &["-q", "analyze", logged.to_str().unwrap()]));
    let summary = std::fs::read_to_string(logged.join("analysis/summary.yaml")).unwrap();
    assert!(
        summary.contains("the run was trained by a PyTorch loop"),
        "{summary}"
    );
    let text = ok(&abcond(&dir, &["verify", logged.to_str().unwrap()]));
    assert!(text.contains("ok "), "{text}");
    let text = ok(&abcond(&dir, &["inspect", logged.to_str().unwrap()]));
    assert!(
        text.contains("trained by  a PyTorch loop, logged by abcond.Logger"),
        "{text}"
    );
    let text = py(
        "import abcond, sys; r = abcond.load_run(sys.argv[1]); print(r.steps.height, r.landscape.height, sorted(r.analysis)[:2])",
        &[logged.to_str().unwrap()],
    );
    assert!(text.starts_with("8 "), "{text}");
}

/// A small deterministic generator for the kill points.
struct Lcg(u64);
impl Lcg {
    fn unit(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Starts the kill loop into `run`; returns the child once the Logger is set up.
fn start_kill_loop(
    data: &Path,
    run: &Path,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
) {
    let mut child = python_cmd()
        .arg(script())
        .args(["kill", data.to_str().unwrap(), run.to_str().unwrap()])
        .env("OMP_NUM_THREADS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    if line.trim() != "logging" {
        let out = child.wait_with_output().unwrap();
        panic!("the kill loop did not start: {line}{}", stderr(&out));
    }
    (child, reader)
}

/// A Logger loop (snapshots every step) killed with SIGKILL at 12 seeded
/// random points: every snapshot on disk reads whole and equals the
/// uninterrupted run's, bit for bit; `abcond probe` either measures a run
/// the loop completed exactly as the uninterrupted one, or refuses it naming
/// the Logger; the killed run, run again with replace=True, completes.
#[test]
fn a_killed_logger_never_leaves_a_torn_snapshot() {
    let dir = scratch("logger-kill");
    write_idx_fixture(&dir.join("fmnist"), 400);
    let data = dir.join("fmnist");
    let reference = dir.join("res/kill/ref");
    let (child, mut reader) = start_kill_loop(&data, &reference);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let seconds: f64 = line
        .trim()
        .strip_prefix("loop seconds ")
        .unwrap_or_else(|| panic!("{line}"))
        .parse()
        .unwrap();
    ok(&abcond(&dir, &["-q", "probe", reference.to_str().unwrap()]));
    let want = landscape(&reference);
    let want_steps = steps(&reference);

    let mut rng = Lcg(17);
    let (mut refused, mut completed, mut snapshots_checked) = (0, 0, 0);
    for i in 0..12 {
        let run = dir.join(format!("res/kill/k{i}"));
        let (mut child, _reader) = start_kill_loop(&data, &run);
        let wait = seconds * 1.5 * rng.unit();
        std::thread::sleep(std::time::Duration::from_secs_f64(wait));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let iterates = run.join("iterates");
        for e in std::fs::read_dir(&iterates).into_iter().flatten().flatten() {
            let part = e.path().join("part-0.parquet");
            if part.is_file() {
                let name = e.file_name();
                assert_eq!(
                    read_values(&part),
                    read_values(
                        &reference
                            .join("iterates")
                            .join(&name)
                            .join("part-0.parquet")
                    ),
                    "kill {i} after {wait:.3}s: {}",
                    part.display()
                );
                snapshots_checked += 1;
            }
        }
        for e in std::fs::read_dir(run.join("steps-parts"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                continue; // a write the kill cut short: never read
            }
            let (rows, _) = abcond::store::tables::read_steps(&e.path()).unwrap();
            for mut r in rows {
                // Another run of the same loop: its own run id.
                assert_eq!(r.run_id.as_deref(), Some(format!("k{i}").as_str()));
                r.run_id = want_steps[r.step as usize].run_id.clone();
                assert_eq!(
                    r,
                    want_steps[r.step as usize],
                    "kill {i}: {}",
                    e.path().display()
                );
            }
        }
        let probe = abcond(&dir, &["-q", "probe", run.to_str().unwrap()]);
        if probe.status.success() {
            completed += 1;
            let got = landscape(&run);
            assert_eq!(got.len(), want.len());
            for (a, b) in got.iter().zip(&want) {
                assert_eq!(
                    (a.step, a.loss_k, a.loss_ref, a.inner, a.grad_norm, a.dist),
                    (b.step, b.loss_k, b.loss_ref, b.inner, b.grad_norm, b.dist),
                    "kill {i}"
                );
            }
        } else {
            refused += 1;
            let e = stderr(&probe);
            assert!(
                e.contains("abcond.Logger") && e.contains("no final iterate x^K")
                    || e.contains("is not an abcond run directory"),
                "kill {i} after {wait:.3}s: {e}"
            );
        }
    }
    eprintln!("{refused} refused, {completed} completed, {snapshots_checked} snapshots compared");
    assert!(
        refused >= 4 && snapshots_checked >= 30,
        "{refused} refused, {snapshots_checked} snapshots"
    );

    // A killed run, logged again from the start.
    let again = dir.join("res/kill/k0");
    let (child, _reader) = start_kill_loop(&data, &again);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    ok(&abcond(&dir, &["-q", "probe", again.to_str().unwrap()]));
    assert_eq!(landscape(&again).len(), want.len());
}

/// Misuse of the Logger is refused with what to do (tests/logger_loop.py
/// `cases`), and the binary answers the runs it leaves: a loop stopped early
/// is a completed run of its own length; diverged and failed runs are
/// refused by `probe`; LR schedules, Adam and an optimiser abcond does not
/// have are recorded and measured; abcond refuses to train, resume or
/// repair a logged run, and to train with `optim.name: external`.
#[test]
fn logger_misuse_and_the_runs_it_leaves() {
    let dir = scratch("logger-cases");
    write_idx_fixture(&dir.join("fmnist"), 300);
    let native = format!(
        "experiment: cases\nseed: 0\ndevice: cpu\nmodel: {{preset: mlp, width: 8}}\ndata: {{dataset: fashion-mnist, path: {}, subset: 100}}\ntrain: {{batch_size: 20, steps: 4}}\noptim: {{name: sgd, lr: 0.05}}\nsnapshots: {{every: 2}}\n",
        dir.join("fmnist").display()
    );
    let native_cfg = write_config(&dir, "native.yaml", &native);
    ok(&abcond(
        &dir,
        &["-q", "--out", "trained", "train", "native.yaml"],
    ));
    let trained = run_dir(&dir.join("trained"), "cases");
    let cases = dir.join("out/cases");
    let text = logger_loop(&[
        "cases",
        dir.join("fmnist").to_str().unwrap(),
        cases.to_str().unwrap(),
        trained.to_str().unwrap(),
        bin(),
    ]);
    assert!(text.contains("ok: 30 cases"), "{text}");
    let run = |name: &str| cases.join(name);

    // Stopped early: 5 steps, snapshots 0, 2, 4 and x^5.
    ok(&abcond(
        &dir,
        &["-q", "probe", run("early").to_str().unwrap()],
    ));
    let steps_probed: std::collections::BTreeSet<i64> =
        landscape(&run("early")).iter().map(|r| r.step).collect();
    assert_eq!(steps_probed.into_iter().collect::<Vec<_>>(), [0, 2, 4]);
    ok(&abcond(
        &dir,
        &["-q", "analyze", run("early").to_str().unwrap()],
    ));

    for (name, words) in [
        ("diverged", "status diverged"),
        ("failed", "status failed"),
        ("order", "status failed"),
    ] {
        let e = stderr(&abcond(&dir, &["probe", run(name).to_str().unwrap()]));
        assert!(e.contains(words), "{name}: {e}");
    }
    for name in ["recorded", "adam", "external"] {
        ok(&abcond(&dir, &["-q", "probe", run(name).to_str().unwrap()]));
        ok(&abcond(
            &dir,
            &["-q", "analyze", run(name).to_str().unwrap()],
        ));
        let summary = std::fs::read_to_string(run(name).join("analysis/summary.yaml")).unwrap();
        assert!(
            summary.contains("trained by a PyTorch loop"),
            "{name}: {summary}"
        );
    }

    // Replay of logged runs: abcond's SGD, Adam and AdamW re-run torch.optim's
    // bit for bit on the recorded minibatches and learning rates (a StepLR
    // schedule; Nesterov momentum with weight decay, Adam, AdamW: one segment
    // from x^0 checked at every snapshot on the way; a loop stopped early).
    for (name, segments) in [
        ("recorded", 5),
        ("nesterov", 1),
        ("adam", 1),
        ("adamw", 1),
        ("early", 3),
    ] {
        let out = abcond(&dir, &["probe", run(name).to_str().unwrap(), "--replay"]);
        ok(&out);
        let text = stderr(&out);
        assert!(
            text.contains(&format!("replaying {segments} segments")),
            "{name}: {text}"
        );
        let rows = landscape(&run(name));
        let train: Vec<i64> = rows
            .iter()
            .filter(|r| r.probe == abcond::store::label::ProbeLabel::Train)
            .map(|r| r.step)
            .collect();
        let total = steps(&run(name)).len() as i64;
        assert_eq!(train, (0..total).collect::<Vec<_>>(), "{name}");
        let recorded = steps(&run(name));
        for r in rows
            .iter()
            .filter(|r| r.probe == abcond::store::label::ProbeLabel::Train)
        {
            let s = &recorded[r.step as usize];
            assert_eq!(r.batch_indices.as_ref(), s.batch_indices.as_ref(), "{name}");
            assert!(rel(r.loss_k, s.loss, 0.0) < 1e-5, "{name} step {}", r.step);
        }
    }
    // What cannot be replayed says why.
    for (name, words) in [
        (
            "external",
            &[
                "only for torch.optim.SGD, Adam and AdamW",
                "torch.optim.rmsprop.RMSprop(",
                "optim.name external",
            ][..],
        ),
        (
            "clipped",
            &[
                "determinism broke",
                "torch.optim.SGD, Adam or AdamW on the CPU",
                "no rows of this segment",
            ][..],
        ),
    ] {
        let e = stderr(&abcond(
            &dir,
            &["probe", run(name).to_str().unwrap(), "--replay"],
        ));
        assert!(words.iter().all(|w| e.contains(w)), "{name}: {e}");
    }
    assert!(!run("clipped")
        .join("replay-parts/steps-0-2.parquet")
        .exists());

    // abcond does not train, resume or repair a logged run.
    for extra in [&[][..], &["--repair"][..]] {
        let mut args = vec![
            "--out",
            dir.join("out").to_str().unwrap().to_string().leak(),
            "train",
            native_cfg.to_str().unwrap(),
            "--run-id",
            "early",
        ];
        args.extend_from_slice(extra);
        let e = stderr(&abcond(&dir, &args));
        assert!(
            e.contains("was logged by abcond.Logger") && e.contains("abcond cannot"),
            "{e}"
        );
    }
    // … and verify says what to do when a logged run lost a file.
    std::fs::remove_file(run("early").join("iterates/step=2/part-0.parquet")).unwrap();
    let e = abcond(&dir, &["verify", run("early").to_str().unwrap()]);
    assert!(!e.status.success());
    let text = format!("{}{}", String::from_utf8_lossy(&e.stdout), stderr(&e));
    assert!(
        text.contains("snapshot x^2 is missing")
            && text.contains("run the script that logged it again"),
        "{text}"
    );
    // `optim.name: external` is for logged runs only.
    write_config(
        &dir,
        "external.yaml",
        &native.replace("{name: sgd, lr: 0.05}", "{name: external, lr: 0.05}"),
    );
    let e = stderr(&abcond(&dir, &["--out", "x", "train", "external.yaml"]));
    assert!(
        e.contains("config external.yaml")
            && e.contains("describe runs logged from a PyTorch loop"),
        "{e}"
    );
}

/// The Logger's snapshot schedule (abcond.snapshot_steps) is abcond's.
#[test]
fn python_and_rust_snapshot_schedules_agree() {
    use abcond::config::SnapshotConfig;
    let mut cases = Vec::new();
    for total in [1u64, 2, 7, 18, 100, 1000, 46_850] {
        for (every, log, at) in [
            (None, None, vec![]),
            (Some(1), None, vec![]),
            (Some(7), Some(5), vec![]),
            (None, Some(30), vec![]),
            (None, Some(130), vec![0, 1]),
            (Some(200), Some(20), vec![1]),
            (None, Some(1), vec![]),
            (None, Some(0), vec![]),
        ] {
            if every == Some(1) && total > 1000 {
                continue;
            }
            cases.push((total, every, log, at));
        }
    }
    let json: Vec<String> = cases
        .iter()
        .map(|(t, e, l, a)| {
            let mut s = vec![];
            if let Some(e) = e {
                s.push(format!("\"every\": {e}"));
            }
            if let Some(l) = l {
                s.push(format!("\"log_spaced\": {l}"));
            }
            if !a.is_empty() {
                s.push(format!("\"at\": {a:?}"));
            }
            format!("[{t}, {{{}}}]", s.join(", "))
        })
        .collect();
    let text = py(
        "import abcond, json, sys\nfor t, s in json.loads(sys.argv[1]): print(abcond.snapshot_steps(s, t))",
        &[&format!("[{}]", json.join(", "))],
    );
    for ((total, every, log, at), line) in cases.iter().zip(text.lines()) {
        let cfg = SnapshotConfig {
            every: *every,
            log_spaced: log.or((every.is_none() && at.is_empty()).then_some(30)),
            at: at.clone(),
            optimizer_state: false,
        };
        let want: Vec<u64> = abcond::train::snapshot_steps(&cfg, *total)
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(line, format!("{want:?}"), "total {total}, {cfg:?}");
    }
}

/// examples/own_model_loop.py (the MLP with LayerNorm and GELU, trained by a
/// plain PyTorch loop with torch.optim.SGD and momentum, recorded by the
/// Logger) on a small Fashion-MNIST-format fixture: probed and analysed by
/// the binary, and every landscape row recomputed in PyTorch, the first steps
/// replayed with torch.optim.
#[test]
fn the_own_model_loop_example_runs_end_to_end() {
    let dir = scratch("logger-example");
    write_idx_fixture(&dir.join("fmnist"), 400);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/own_model_loop.py");
    let out = python_cmd()
        .arg(&example)
        .args(["--data", dir.join("fmnist").to_str().unwrap()])
        .args(["--examples", "300", "--epochs", "3"])
        .args(["--out", dir.join("ex").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let run = dir.join("ex/results/own-model-loop/seed0");
    ok(&abcond(
        &dir,
        &[
            "-q",
            "probe",
            run.to_str().unwrap(),
            "--set",
            "probe.full_subset=200",
        ],
    ));
    ok(&abcond(&dir, &["-q", "analyze", run.to_str().unwrap()]));
    assert!(run.join("analysis/report.md").is_file());
    let rows = landscape(&run);
    assert!(rows.len() > 40, "{} rows", rows.len());
    let text = run_python("check_torchscript.py", &[run.to_str().unwrap()]);
    assert!(
        text.contains("rows agree with PyTorch") && !text.contains("replayed 0 steps"),
        "{text}"
    );
}
