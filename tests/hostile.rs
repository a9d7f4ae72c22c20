//! A hostile or careless user on a shared machine: abcond never deletes or
//! overwrites a file it did not write, never follows a planted link, leaves
//! no debris after a failed command, and writes `analysis/` as a unit.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A short half-space run (no figures): its run directory.
fn halfspace_run(dir: &Path) -> PathBuf {
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/paper/halfspace.yaml");
    ok(&abcond(
        dir,
        &[
            "-q",
            "--out",
            "out",
            "run",
            cfg.to_str().unwrap(),
            "--set",
            "train.steps=400",
            "--set",
            "analysis.plots=false",
            "--set",
            "probe.curvature.enabled=false",
        ],
    ));
    run_dir(&dir.join("out"), "halfspace")
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn analysis_keeps_the_users_files_and_replaces_only_its_own() {
    let dir = scratch("hostile-analysis-files");
    let run = halfspace_run(&dir);
    let a = run.join("analysis");
    std::fs::write(a.join("paper.md"), "# draft\n").unwrap();
    std::fs::write(a.join("notes.png"), b"not abcond's").unwrap();
    let path = run.to_str().unwrap();
    // With figures: abcond's PNGs appear, the user's files stay.
    ok(&abcond(
        &dir,
        &["-q", "analyze", path, "--set", "analysis.plots=true"],
    ));
    assert!(a.join("ab_heatmap.png").is_file() && a.join("report.md").is_file());
    // Without figures: abcond's PNGs and report.md go, the user's files stay.
    ok(&abcond(&dir, &["-q", "analyze", path]));
    let now = files(&a);
    assert!(
        !now.iter()
            .any(|f| f == "ab_heatmap.png" || f == "report.md"),
        "{now:?}"
    );
    assert_eq!(
        std::fs::read_to_string(a.join("paper.md")).unwrap(),
        "# draft\n"
    );
    assert_eq!(std::fs::read(a.join("notes.png")).unwrap(), b"not abcond's");
    assert!(now.iter().any(|f| f == ".manifest"), "{now:?}");
    // A user file with the name of an output abcond is about to write is
    // refused, untouched.
    std::fs::write(a.join("report.md"), "mine\n").unwrap();
    let out = abcond(
        &dir,
        &["-q", "analyze", path, "--set", "analysis.plots=true"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("report.md was not written by abcond"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(a.join("report.md")).unwrap(),
        "mine\n"
    );
    // No staging directory is left behind by the refusal.
    assert!(
        !files(&run).iter().any(|f| f.starts_with(".analysis.tmp")),
        "{:?}",
        files(&run)
    );
}

#[test]
fn concurrent_analysis_is_refused() {
    let dir = scratch("hostile-analysis-lock");
    let run = halfspace_run(&dir);
    // Hold the analysis lock from another process (Python's flock), as a
    // running analysis would.
    let lock = run.join(".analysis.lock");
    let mut holder = python_cmd()
        .args([
            "-c",
            "import fcntl, sys, time\nf = open(sys.argv[1], 'a')\nfcntl.flock(f, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(60)",
            lock.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let out = abcond(&dir, &["-q", "analyze", run.to_str().unwrap()]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is locked by another abcond process"),
        "{}",
        stderr(&out)
    );
}

/// The set of files in `analysis/` is one analysis's: every file its manifest
/// lists is there and nothing else of abcond's, and every table carries the
/// margin that summary.yaml states.
fn whole(a: &Path) -> Result<f64, String> {
    let manifest = std::fs::read_to_string(a.join(".manifest")).map_err(|e| format!("{e}"))?;
    let listed: Vec<String> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("- "))
        .map(|s| s.trim_matches('\'').to_string())
        .collect();
    let mut present = files(a);
    present.retain(|f| f != ".manifest" && f != "paper.md");
    let mut want = listed.clone();
    want.sort();
    if present != want {
        return Err(format!("present {present:?}, manifest {want:?}"));
    }
    let s: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(a.join("summary.yaml")).unwrap()).unwrap();
    let margin = s["settings"]["margin"].as_f64().unwrap();
    for t in ["ab_region", "ab_grid", "aiming", "pl"] {
        let f = std::fs::File::open(a.join(format!("{t}.parquet"))).unwrap();
        let r = parquet::file::reader::SerializedFileReader::new(f).unwrap();
        use parquet::file::reader::FileReader;
        let kv = r.metadata().file_metadata().key_value_metadata().unwrap();
        let m = kv.iter().find(|k| k.key == "abcond.margin").unwrap();
        let m: f64 = m.value.as_ref().unwrap().parse().unwrap();
        if m != margin {
            return Err(format!("{t}: margin {m}, summary.yaml {margin}"));
        }
    }
    let plots = listed.iter().any(|f| f.ends_with(".png"));
    if plots != (margin == 0.2) {
        return Err(format!("margin {margin} with plots {plots}"));
    }
    Ok(margin)
}

#[test]
fn killed_analysis_leaves_the_old_or_the_new_never_a_mix() {
    let dir = scratch("hostile-analysis-kill");
    let run = halfspace_run(&dir);
    let a = run.join("analysis");
    std::fs::write(a.join("paper.md"), "# draft\n").unwrap();
    let path = run.to_str().unwrap();
    // Two analyses that differ in every file: margin 0.1 without figures,
    // margin 0.2 with.
    let settings = |k: u64| {
        if k.is_multiple_of(2) {
            vec![
                "--set",
                "analysis.margin=0.2",
                "--set",
                "analysis.plots=true",
            ]
        } else {
            vec![
                "--set",
                "analysis.margin=0.1",
                "--set",
                "analysis.plots=false",
            ]
        }
    };
    // How long one analysis takes here, to spread the kills over it.
    let t0 = std::time::Instant::now();
    let mut args = vec!["-q", "analyze", path];
    args.extend(settings(0));
    ok(&abcond(&dir, &args));
    let full = t0.elapsed().as_secs_f64();
    let mut seen = std::collections::BTreeSet::new();
    let mut rng = 0x9e3779b97f4a7c15u64;
    for k in 1..=32u64 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let at = (rng % 1000) as f64 / 1000.0 * full * 1.1;
        let mut args = vec!["-q", "analyze", path];
        args.extend(settings(k));
        let mut child = cmd(&dir)
            .args(&args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs_f64(at));
        let _ = child.kill();
        let status = child.wait().unwrap();
        match whole(&a) {
            Ok(m) => {
                seen.insert((m * 10.0) as i64);
            }
            Err(e) => panic!("kill {k} at {at:.3} s ({status:?}): analysis/ is mixed: {e}"),
        }
        assert_eq!(
            std::fs::read_to_string(a.join("paper.md")).unwrap(),
            "# draft\n"
        );
    }
    // Some kills landed after the swap, some before.
    assert_eq!(
        seen.len(),
        2,
        "only saw margins {seen:?} (kills all on one side)"
    );
    // The next analysis cleans what the killed ones left.
    ok(&abcond(&dir, &["-q", "analyze", path]));
    assert!(
        !files(&run)
            .iter()
            .any(|f| f.starts_with(".analysis.") && f != ".analysis.lock"),
        "{:?}",
        files(&run)
    );
}

#[test]
fn a_planted_lock_link_is_refused_and_its_target_untouched() {
    use std::os::unix::fs::symlink;
    let dir = scratch("hostile-lock-link");
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, "precious\n").unwrap();
    // Someone creates the predictable run directory first, with `.lock`
    // pointing at another user's file.
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/paper/halfspace.yaml");
    let rd = dir.join("out/halfspace/planted");
    std::fs::create_dir_all(&rd).unwrap();
    symlink(&victim, rd.join(".lock")).unwrap();
    let out = abcond(
        &dir,
        &[
            "-q",
            "--out",
            "out",
            "train",
            cfg.to_str().unwrap(),
            "--run-id",
            "planted",
            "--set",
            "train.steps=10",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is a symbolic link"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}

#[test]
fn failed_commands_leave_no_debris() {
    let dir = scratch("hostile-debris");
    // A mistyped run directory is not created, nor a lock in it.
    let out = abcond(&dir, &["-q", "probe", "some/typo"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("some/typo"), "{}", stderr(&out));
    assert!(!dir.join("some").exists());
    // A directory that is not a run gets no lock file.
    std::fs::create_dir_all(dir.join("home")).unwrap();
    let out = abcond(&dir, &["-q", "probe", "home"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not an abcond run directory"),
        "{}",
        stderr(&out)
    );
    assert_eq!(files(&dir.join("home")), Vec::<String>::new());
}

#[test]
fn a_device_or_huge_file_is_not_a_config() {
    let dir = scratch("hostile-config-files");
    for (path, want) in [
        ("/dev/zero", "not a regular file"),
        (".", "not a regular file"),
    ] {
        let t0 = std::time::Instant::now();
        let out = abcond(&dir, &["-q", "train", path]);
        assert_eq!(out.status.code(), Some(1), "{path}");
        assert!(stderr(&out).contains(want), "{path}: {}", stderr(&out));
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{path} took {:?}",
            t0.elapsed()
        );
    }
    let big = dir.join("big.yaml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(64 << 20).unwrap();
    let out = abcond(&dir, &["-q", "train", big.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("more than the"), "{}", stderr(&out));
}

#[test]
fn out_of_range_counts_are_refused_naming_the_key_and_leave_nothing() {
    let dir = scratch("hostile-caps");
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/paper/halfspace.yaml");
    let cases: &[(&[&str], &str)] = &[
        (&["train.steps=1000000000000"], "train.steps"),
        (
            &["train.steps=1000000000", "snapshots.every=1"],
            "snapshots.every",
        ),
        (
            &["train.steps=null", "train.epochs=1000000000000"],
            "train.epochs",
        ),
        (&["probe.extra_batches=1000000000"], "probe.extra_batches"),
        (&["data.dim=100000000"], "data.dim"),
        (&["snapshots.log_spaced=1000000000"], "snapshots.log_spaced"),
        (&["train.batch_size=100000000"], "train.batch_size"),
        // Late errors (found once the data is loaded) leave no run directory either.
        (&["snapshots.at=[99999]"], "snapshots.at"),
        (&["train.batch_size=1000"], "batch"),
    ];
    for (sets, key) in cases {
        let mut args = vec!["-q", "--out", "out", "train", cfg.to_str().unwrap()];
        for s in *sets {
            args.extend(["--set", s]);
        }
        let t0 = std::time::Instant::now();
        let out = abcond(&dir, &args);
        assert_eq!(out.status.code(), Some(1), "{sets:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(key), "{sets:?}: {}", stderr(&out));
        // Every error names the config file, also those found late.
        assert!(
            stderr(&out).contains("halfspace.yaml"),
            "{sets:?}: {}",
            stderr(&out)
        );
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{sets:?} took {:?}",
            t0.elapsed()
        );
        assert!(
            !dir.join("out").exists(),
            "{sets:?} left {:?}",
            files(&dir.join("out"))
        );
    }
    for n in ["0", "100000", "-3"] {
        let out = abcond(&dir, &[&format!("--threads={n}"), "presets"]);
        assert_eq!(out.status.code(), Some(1), "--threads {n}");
        assert!(stderr(&out).contains("--threads"), "{}", stderr(&out));
    }
}

type Reader = fn(&Path) -> anyhow::Result<String>;

fn read_steps_text(p: &Path) -> anyhow::Result<String> {
    abcond::store::tables::read_steps(p).map(|(r, m)| format!("{r:?}{m:?}"))
}
fn read_landscape_text(p: &Path) -> anyhow::Result<String> {
    abcond::store::tables::read_landscape(p).map(|(r, m)| format!("{r:?}{m:?}"))
}
fn read_curvature_text(p: &Path) -> anyhow::Result<String> {
    abcond::store::tables::read_curvature(p).map(|(r, m)| format!("{r:?}{m:?}"))
}

/// Every row table abcond reads back, damaged: 60 seeded single-bit flips at
/// random offsets, truncations, deletion and a foreign file. Each read either
/// fails naming the file or gives exactly the original rows and metadata
/// (a flip in bytes that carry no value, e.g. statistics) — never other numbers.
#[test]
fn corrupt_tables_are_refused_never_misread() {
    let dir = scratch("hostile-corrupt-tables");
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/paper/halfspace.yaml");
    ok(&abcond(
        &dir,
        &[
            "-q",
            "--out",
            "out",
            "run",
            cfg.to_str().unwrap(),
            "--set",
            "train.steps=300",
            "--set",
            "analysis.plots=false",
        ],
    ));
    let run = run_dir(&dir.join("out"), "halfspace");
    let bad = dir.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let mut rng = 0x2545f4914f6cdd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let tables: [(&str, Reader); 3] = [
        ("steps.parquet", read_steps_text),
        ("landscape.parquet", read_landscape_text),
        ("curvature.parquet", read_curvature_text),
    ];
    for (name, read) in tables {
        let orig = std::fs::read(run.join(name)).unwrap();
        let want = read(&run.join(name)).unwrap();
        let p = bad.join(name);
        let refused = |p: &Path, what: &str| {
            let e = read(p).expect_err(what);
            assert!(
                format!("{e:#}").contains(&p.display().to_string()),
                "{what}: {e:#}"
            );
        };
        let (mut caught, mut harmless) = (0, 0);
        for _ in 0..60 {
            let mut b = orig.clone();
            let off = (next() % b.len() as u64) as usize;
            b[off] ^= 1 << (next() % 8);
            std::fs::write(&p, &b).unwrap();
            match read(&p) {
                Ok(got) => {
                    assert_eq!(
                        got, want,
                        "{name}: a flip at byte {off} was read as other values"
                    );
                    harmless += 1;
                }
                Err(e) => {
                    assert!(format!("{e:#}").contains(&p.display().to_string()), "{e:#}");
                    caught += 1;
                }
            }
        }
        eprintln!("{name}: 60 flips: {caught} refused, {harmless} in bytes without values");
        assert!(caught >= 10, "{name}: only {caught} of 60 flips refused");
        for cut in [
            0,
            4,
            orig.len() / 3,
            orig.len() / 2,
            orig.len() - 8,
            orig.len() - 1,
        ] {
            std::fs::write(&p, &orig[..cut]).unwrap();
            refused(&p, &format!("{name} truncated to {cut} bytes"));
        }
        std::fs::remove_file(&p).unwrap();
        refused(&p, &format!("{name} deleted"));
        std::fs::copy(run.join("data.parquet"), &p).unwrap();
        refused(&p, &format!("{name} replaced by data.parquet"));
    }
}

fn snapshot_text(p: &Path) -> anyhow::Result<String> {
    let f = abcond::store::tensors::read(p, tch::Device::Cpu)?;
    let mut text = format!("{:?}", f.meta);
    for t in &f.tensors {
        let v: Vec<f64> = Vec::<f64>::try_from(t.tensor.to_kind(tch::Kind::Double).flatten(0, -1))?;
        let bits: Vec<u64> = v.iter().map(|x| x.to_bits()).collect();
        text.push_str(&format!(
            "{} {:?} {:?} {bits:?}\n",
            t.name,
            t.role,
            t.tensor.size()
        ));
    }
    Ok(text)
}

/// 60 single-bit flips of a tensor file's bytes `orig` at offsets drawn from
/// xorshift64 seeded with `seed`, then 4 truncations, each written to `bad`
/// and read: the read fails naming `bad`, or (a flip in bytes that carry no
/// value) gives exactly `want`; at least half of the flips are refused.
fn flips_and_cuts_of_a_tensor_file(orig: &[u8], want: &str, bad: &Path, mut rng: u64, what: &str) {
    let (mut caught, mut harmless) = (0, 0);
    for _ in 0..60 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut b = orig.to_vec();
        let off = (rng % b.len() as u64) as usize;
        b[off] ^= 1 << ((rng >> 32) % 8);
        std::fs::write(bad, &b).unwrap();
        match snapshot_text(bad) {
            Ok(got) => {
                assert_eq!(
                    got, want,
                    "{what}: a flip at byte {off} was read as other values"
                );
                harmless += 1;
            }
            Err(e) => {
                assert!(
                    format!("{e:#}").contains(&bad.display().to_string()),
                    "{e:#}"
                );
                caught += 1;
            }
        }
    }
    eprintln!("{what}: 60 flips: {caught} refused, {harmless} in bytes without values");
    assert!(caught >= 30, "{what}: only {caught} of 60 flips refused");
    for cut in [0, 4, orig.len() / 2, orig.len() - 8] {
        std::fs::write(bad, &orig[..cut]).unwrap();
        assert!(
            snapshot_text(bad).is_err(),
            "{what} truncated to {cut} bytes"
        );
    }
}

/// A snapshot (iterate file) damaged by 60 seeded bit flips, truncation or
/// deletion: reading it fails naming the file, or gives exactly the original
/// tensors; probing a run with a flipped value in a snapshot fails instead of
/// reporting numbers from it.
#[test]
fn corrupt_snapshots_are_refused_never_misread() {
    let dir = scratch("hostile-corrupt-snapshots");
    write_idx_fixture(&dir.join("fmnist"), 300);
    let cfg = format!(
        "experiment: snap
seed: 1
device: cpu
model: {{preset: mlp, width: 16}}
data: {{dataset: fashion-mnist, path: {}, subset: 200}}
train: {{batch_size: 20, steps: 20}}
optim: {{name: sgd, lr: 0.05}}
snapshots: {{every: 10}}
probe: {{extra_batches: 1}}
",
        dir.join("fmnist").display()
    );
    let cfg = write_config(&dir, "c.yaml", &cfg);
    ok(&abcond(
        &dir,
        &["-q", "--out", "out", "train", cfg.to_str().unwrap()],
    ));
    let run = run_dir(&dir.join("out"), "snap");
    let snap = run.join("iterates/step=10/part-0.parquet");
    let orig = std::fs::read(&snap).unwrap();
    let want = snapshot_text(&snap).unwrap();
    flips_and_cuts_of_a_tensor_file(
        &orig,
        &want,
        &dir.join("bad.parquet"),
        0x853c49e6748fea9b,
        "snapshot",
    );
    // One flipped bit in the middle of the values: the probe refuses the run.
    let mut b = orig.clone();
    let mid = orig.len() / 2;
    b[mid] ^= 0x40;
    std::fs::write(&snap, &b).unwrap();
    let out = abcond(&dir, &["-q", "probe", run.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("step=10"), "{}", stderr(&out));
    assert!(!run.join("landscape.parquet").exists());
}

/// `abcond train` of the half-space config for 300 steps (checkpoints every
/// 50, snapshots every 100) into `out`, with `extra` arguments.
fn train_halfspace(dir: &Path, out: &str, extra: &[&str]) -> std::process::Command {
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/paper/halfspace.yaml");
    let mut c = cmd(dir);
    c.args(["-q", "--out", out, "train", cfg.to_str().unwrap()])
        .args([
            "--set",
            "train.steps=300",
            "--set",
            "train.checkpoint_every=50",
        ])
        .args(extra);
    c
}

/// [`train_halfspace`] killed once step 170's files are written: the last
/// checkpoint is at step 150.
fn crashed_halfspace(dir: &Path, out: &str) -> PathBuf {
    let status = train_halfspace(dir, out, &[])
        .env("ABCOND_CRASH_AT", "step:170:written")
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the crash hook did not fire");
    run_dir(&dir.join(out), "halfspace")
}

fn resume(dir: &Path, out: &str, extra: &[&str]) -> std::process::Output {
    train_halfspace(dir, out, extra).output().unwrap()
}

/// A resume that lost its checkpoint, a step record or a snapshot refuses
/// (naming the file and offering --restart-from-scratch) instead of silently
/// retraining from step 0 or failing at the end; the flag then retrains to
/// exactly the uninterrupted run.
#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs the crash hook (feature test-hooks)"
)]
fn lost_resume_state_is_an_error_with_a_way_out() {
    let dir = scratch("hostile-resume");
    ok(&resume(&dir, "ref", &[]));
    let reference = run_dir(&dir.join("ref"), "halfspace");

    // The checkpoint deleted.
    let run = crashed_halfspace(&dir, "a");
    let ck = run.join("state");
    assert!(ck.exists());
    std::fs::remove_dir_all(&ck).unwrap();
    let out = resume(&dir, "a", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--restart-from-scratch"),
        "{}",
        stderr(&out)
    );
    assert!(
        run.join("iterates/step=100/part-0.parquet").is_file(),
        "snapshots kept"
    );
    ok(&resume(&dir, "a", &["--restart-from-scratch"]));
    for k in [0, 100, 200, 300] {
        let f = format!("iterates/step={k}/part-0.parquet");
        assert_eq!(
            read_values(&run.join(&f)),
            read_values(&reference.join(&f)),
            "{f} differs from the uninterrupted run"
        );
    }

    // A steps part deleted.
    let run = crashed_halfspace(&dir, "b");
    let part = std::fs::read_dir(run.join("steps-parts"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .min()
        .expect("a steps part");
    std::fs::remove_file(&part).unwrap();
    let out = resume(&dir, "b", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("step record of step"),
        "{}",
        stderr(&out)
    );

    // A snapshot before the checkpoint truncated.
    let run = crashed_halfspace(&dir, "c");
    let snap = run.join("iterates/step=100/part-0.parquet");
    let bytes = std::fs::read(&snap).unwrap();
    std::fs::write(&snap, &bytes[..bytes.len() / 2]).unwrap();
    let out = resume(&dir, "c", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("step=100"), "{}", stderr(&out));
}

fn step_rows(run: &Path) -> Vec<abcond::store::tables::StepRow> {
    abcond::store::tables::read_steps(&run.join("steps.parquet"))
        .unwrap()
        .0
}

/// Every snapshot and the step record of `run` equal those of `reference`.
fn same_as(run: &Path, reference: &Path) {
    for k in [0, 100, 200, 300] {
        let f = format!("iterates/step={k}/part-0.parquet");
        assert_eq!(
            read_values(&run.join(&f)),
            read_values(&reference.join(&f)),
            "{f} differs from the uninterrupted run"
        );
    }
    assert_eq!(
        step_rows(run),
        step_rows(reference),
        "steps.parquet differs"
    );
}

/// `--repair` re-creates a lost checkpoint, step record and snapshot of an
/// interrupted run (and the snapshot and step record of a completed one) by
/// retraining as far as needed: the run ends bit-identical to an
/// uninterrupted one and `abcond verify` passes. A surviving snapshot that
/// the retrained iterate does not reproduce stops the repair, naming it.
#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs the crash hook (feature test-hooks)"
)]
fn repair_recreates_what_was_lost_bit_for_bit() {
    let dir = scratch("hostile-repair");
    ok(&resume(&dir, "ref", &[]));
    let reference = run_dir(&dir.join("ref"), "halfspace");

    // Interrupted at 170 (checkpoint at 150): checkpoint, x^100 and the
    // first steps part gone.
    let run = crashed_halfspace(&dir, "a");
    std::fs::remove_dir_all(run.join("state")).unwrap();
    std::fs::remove_dir_all(run.join("iterates/step=100")).unwrap();
    let part = std::fs::read_dir(run.join("steps-parts"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .min()
        .expect("a steps part");
    std::fs::remove_file(&part).unwrap();
    ok(&resume(&dir, "a", &["--repair"]));
    same_as(&run, &reference);
    ok(&abcond(&dir, &["verify", run.to_str().unwrap()]));

    // A completed run: x^200 deleted, steps.parquet cut short, data.parquet
    // damaged.
    let status = std::process::Command::new("cp")
        .args(["-a", "ref", "b"])
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    let run = run_dir(&dir.join("b"), "halfspace");
    std::fs::remove_dir_all(run.join("iterates/step=200")).unwrap();
    let steps = std::fs::read(run.join("steps.parquet")).unwrap();
    std::fs::write(run.join("steps.parquet"), &steps[..steps.len() / 2]).unwrap();
    let bad = abcond(&dir, &["verify", run.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));
    assert!(String::from_utf8_lossy(&bad.stdout).contains("--repair"));
    let sessions = |r: &Path| {
        std::fs::read_to_string(r.join("run.yaml"))
            .unwrap()
            .matches("command:")
            .count()
    };
    let before = sessions(&run);
    ok(&resume(&dir, "b", &["--repair"]));
    same_as(&run, &reference);
    ok(&abcond(&dir, &["verify", run.to_str().unwrap()]));
    assert_eq!(
        sessions(&run),
        before + 1,
        "the repair is recorded in run.yaml"
    );
    // Nothing left to repair: nothing written.
    ok(&resume(&dir, "b", &["--repair"]));
    assert_eq!(sessions(&run), before + 1);

    // A snapshot of another seed under the same run id: not reproduced.
    for (out, seed) in [("c", "seed=2"), ("d", "seed=1")] {
        ok(&resume(&dir, out, &["--set", seed, "--run-id", "same"]));
    }
    let (c, d) = (
        run_dir(&dir.join("c"), "halfspace"),
        run_dir(&dir.join("d"), "halfspace"),
    );
    let x100 = "iterates/step=100/part-0.parquet";
    std::fs::copy(c.join(x100), d.join(x100)).unwrap();
    std::fs::remove_dir_all(d.join("iterates/step=200")).unwrap();
    let out = resume(
        &dir,
        "d",
        &["--set", "seed=1", "--run-id", "same", "--repair"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("x^100") && stderr(&out).contains("differs"),
        "{}",
        stderr(&out)
    );
    assert!(!d.join("iterates/step=200").exists(), "nothing written");
}

/// The resume checkpoint (optimiser state and x^150) damaged by 60 seeded bit
/// flips or truncation: reading it fails naming the file or gives exactly the
/// original tensors; a resume from a damaged checkpoint fails naming it, and
/// `--repair` re-creates it so that the run ends as an uninterrupted one.
#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs the crash hook (feature test-hooks)"
)]
fn corrupt_checkpoints_are_refused_never_misread() {
    let dir = scratch("hostile-corrupt-checkpoint");
    ok(&resume(&dir, "ref", &["--set", "optim.momentum=0.9"]));
    let reference = run_dir(&dir.join("ref"), "halfspace");
    let status = train_halfspace(&dir, "a", &["--set", "optim.momentum=0.9"])
        .env("ABCOND_CRASH_AT", "step:170:written")
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the crash hook did not fire");
    let run = run_dir(&dir.join("a"), "halfspace");
    let ck = run.join("state/checkpoint.parquet");
    let orig = std::fs::read(&ck).unwrap();
    let want = snapshot_text(&ck).unwrap();
    assert!(
        want.contains("momentum") || want.contains("buf"),
        "optimiser state in {want:.300}"
    );
    flips_and_cuts_of_a_tensor_file(
        &orig,
        &want,
        &dir.join("bad.parquet"),
        0x2545f4914f6cdd1d,
        "checkpoint",
    );
    // A flipped bit in the values: the resume refuses, naming the file.
    let mut b = orig.clone();
    b[orig.len() / 2] ^= 0x40;
    std::fs::write(&ck, &b).unwrap();
    let out = resume(&dir, "a", &["--set", "optim.momentum=0.9"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("checkpoint.parquet"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("--repair"), "{}", stderr(&out));
    ok(&resume(
        &dir,
        "a",
        &["--set", "optim.momentum=0.9", "--repair"],
    ));
    same_as(&run, &reference);
}

/// A snapshot deleted after training: the probe refuses rather than report
/// a landscape with a hole.
#[test]
fn a_missing_snapshot_stops_the_probe() {
    let dir = scratch("hostile-missing-snapshot");
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/paper/halfspace.yaml");
    ok(&abcond(
        &dir,
        &[
            "-q",
            "--out",
            "out",
            "train",
            cfg.to_str().unwrap(),
            "--set",
            "train.steps=300",
        ],
    ));
    let run = run_dir(&dir.join("out"), "halfspace");
    std::fs::remove_dir_all(run.join("iterates/step=100")).unwrap();
    let out = abcond(&dir, &["-q", "probe", run.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("step=100"), "{}", stderr(&out));
    assert!(!run.join("landscape.parquet").exists());
}

/// run.yaml ends with a checksum line: an edited value (here the steps done)
/// or a cut-short file is refused, naming the file.
#[test]
fn an_edited_or_cut_run_manifest_is_refused() {
    let dir = scratch("hostile-run-yaml");
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/paper/halfspace.yaml");
    ok(&abcond(
        &dir,
        &[
            "-q",
            "--out",
            "out",
            "train",
            cfg.to_str().unwrap(),
            "--set",
            "train.steps=50",
        ],
    ));
    let run = run_dir(&dir.join("out"), "halfspace");
    let p = run.join("run.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("# checksum: xxh64:"),
        "{text}"
    );
    ok(&abcond(&dir, &["inspect", run.to_str().unwrap()]));
    for bad in [
        text.replace("steps_done: 50", "steps_done: 5"),
        text[..text.len() / 2].to_string(),
    ] {
        std::fs::write(&p, &bad).unwrap();
        let out = abcond(&dir, &["inspect", run.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains("run.yaml"), "{}", stderr(&out));
    }
}

/// `abcond verify` finds what was lost or damaged in a run, says what to do,
/// and exits 1; `inspect` shows a missing snapshot.
#[test]
fn verify_names_every_damaged_file_and_inspect_shows_gaps() {
    let dir = scratch("hostile-verify");
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/paper/halfspace.yaml");
    ok(&abcond(
        &dir,
        &[
            "-q",
            "--out",
            "out",
            "run",
            cfg.to_str().unwrap(),
            "--set",
            "train.steps=300",
            "--set",
            "analysis.plots=false",
            "--set",
            "probe.curvature.enabled=false",
        ],
    ));
    let run = run_dir(&dir.join("out"), "halfspace");
    let report = ok(&abcond(
        &dir,
        &["verify", dir.join("out").to_str().unwrap()],
    ));
    assert!(report.starts_with("ok "), "{report}");
    // A deleted snapshot, another cut short, a cut landscape.
    std::fs::remove_dir_all(run.join("iterates/step=100")).unwrap();
    let shown = ok(&abcond(&dir, &["inspect", run.to_str().unwrap()]));
    assert!(shown.contains("MISSING     1 snapshot(s)"), "{shown}");
    let snap = run.join("iterates/step=200/part-0.parquet");
    let b = std::fs::read(&snap).unwrap();
    std::fs::write(&snap, &b[..b.len() - 30]).unwrap();
    let land = run.join("landscape.parquet");
    let b = std::fs::read(&land).unwrap();
    std::fs::write(&land, &b[..b.len() - 20]).unwrap();
    let out = abcond(&dir, &["verify", run.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.starts_with("BROKEN"), "{report}");
    for want in ["step=100", "step=200", "landscape.parquet", "what to do"] {
        assert!(report.contains(want), "{want} not in:\n{report}");
    }
}

/// Every file of an analysis (summary.yaml, report.md, the manifest, SVG and
/// PNG figures) carries a check: 50 seeded single-bit flips in each are all
/// refused, naming the file; `abcond verify` reports an edited, damaged or
/// missing analysis file and `analyze` refuses an edited manifest.
#[test]
fn analysis_files_carry_checksums_that_verify_checks() {
    let dir = scratch("hostile-analysis-sums");
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/paper/halfspace.yaml");
    ok(&abcond(
        &dir,
        &[
            "-q",
            "--out",
            "out",
            "run",
            cfg.to_str().unwrap(),
            "--set",
            "train.steps=200",
            "--set",
            "probe.curvature.enabled=false",
        ],
    ));
    let run = run_dir(&dir.join("out"), "halfspace");
    let a = run.join("analysis");
    ok(&abcond(&dir, &["verify", run.to_str().unwrap()]));
    let bad = dir.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let mut rng = 0x9e3779b97f4a7c15u64;
    for name in [
        "summary.yaml",
        "report.md",
        ".manifest",
        "ab_heatmap.svg",
        "ab_heatmap.png",
    ] {
        let orig = std::fs::read(a.join(name)).unwrap();
        let p = bad.join(name);
        std::fs::write(&p, &orig).unwrap();
        assert!(
            abcond::store::seal::check_file(&p, true).unwrap(),
            "{name} carries no check"
        );
        for _ in 0..50 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let mut b = orig.clone();
            let off = (rng % b.len() as u64) as usize;
            b[off] ^= 1 << ((rng >> 32) % 8);
            std::fs::write(&p, &b).unwrap();
            let e = abcond::store::seal::check_file(&p, true)
                .err()
                .unwrap_or_else(|| panic!("{name}: a flip at byte {off} passed"));
            assert!(format!("{e:#}").contains(name), "{e:#}");
        }
        std::fs::write(&p, &orig[..orig.len() / 2]).unwrap();
        assert!(
            abcond::store::seal::check_file(&p, true).is_err(),
            "{name} cut short"
        );
    }
    // Through the command: an edited report, a damaged figure, a deleted table.
    let report = std::fs::read_to_string(a.join("report.md")).unwrap();
    std::fs::write(a.join("report.md"), report.replacen('0', "1", 1)).unwrap();
    let mut png = std::fs::read(a.join("pl.png")).unwrap();
    let mid = png.len() / 2;
    png[mid] ^= 1;
    std::fs::write(a.join("pl.png"), &png).unwrap();
    std::fs::remove_file(a.join("aiming.parquet")).unwrap();
    let out = abcond(&dir, &["verify", run.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    for n in ["report.md", "pl.png", "aiming.parquet", "abcond analyze"] {
        assert!(text.contains(n), "{n} not reported:\n{text}");
    }
    // An edited manifest: analyze will not guess which files are its own.
    let m = std::fs::read_to_string(a.join(".manifest")).unwrap();
    std::fs::write(a.join(".manifest"), m.replacen("report.md", "paper.md", 1)).unwrap();
    let out = abcond(&dir, &["-q", "analyze", run.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains(".manifest"), "{}", stderr(&out));
    assert!(a.join("summary.yaml").is_file(), "nothing removed");
}

/// Unmounts a tmpfs when dropped (also when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// A tmpfs of `size` at `at`, or None (with a SKIPPED line) where this
    /// user cannot mount.
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs at {} (needs root or CAP_SYS_ADMIN)",
                at.display()
            );
            return None;
        }
        Some(Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// `analyze` on a full disk fails with a clear error and leaves the old
/// analysis whole (and no staging directory); with space again it succeeds.
#[test]
fn a_full_disk_leaves_the_old_analysis_whole() {
    let dir = scratch("hostile-full-disk");
    let src = halfspace_run(&dir);
    let Some(fs) = Tmpfs::mount(&dir.join("small"), "4m") else {
        return;
    };
    let run = fs.0.join("run");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(&run)
        .status()
        .unwrap();
    assert!(status.success());
    let path = run.to_str().unwrap();
    let old = [
        "--set",
        "analysis.margin=0.1",
        "--set",
        "analysis.plots=false",
    ];
    let new = [
        "--set",
        "analysis.margin=0.2",
        "--set",
        "analysis.plots=true",
    ];
    let mut args = vec!["-q", "analyze", path];
    args.extend(old);
    ok(&abcond(&dir, &args));
    assert_eq!(whole(&run.join("analysis")), Ok(0.1));
    // Fill the disk but for a few KiB: the figures no longer fit.
    let filler = fs.0.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![7u8; 4096];
    while std::io::Write::write_all(&mut f, &block).is_ok() {}
    drop(f);
    let len = std::fs::metadata(&filler).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&filler)
        .unwrap()
        .set_len(len.saturating_sub(16 << 10))
        .unwrap();
    let mut args = vec!["-q", "analyze", path];
    args.extend(new);
    let out = abcond(&dir, &args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("No space left"), "{}", stderr(&out));
    assert_eq!(
        whole(&run.join("analysis")),
        Ok(0.1),
        "the old analysis must be whole"
    );
    assert!(
        !files(&run).iter().any(|f| f.starts_with(".analysis.tmp")),
        "{:?}",
        files(&run)
    );
    std::fs::remove_file(&filler).unwrap();
    ok(&abcond(&dir, &args));
    assert_eq!(whole(&run.join("analysis")), Ok(0.2));
}
