//! Sweeps (src/experiment/sweep.rs): validation of the `sweep` key, task selection
//! (--task, $SLURM_ARRAY_TASK_ID, --all), run ids equal to hand-made runs,
//! runs.parquet and the swept landscape columns read back with Polars/pandas,
//! and a width sweep of the MLP on the real Fashion-MNIST.

mod common;
use abcond::experiment::sweep::Sweep;
use common::*;
use std::path::Path;

const BASE: &str = "experiment: sw\nseed: 0\ndevice: cpu\nmodel: {preset: mlp}\ndata: {dataset: fashion-mnist, subset: 64}\ntrain: {batch_size: 16, steps: 10}\noptim: {name: sgd, lr: 0.1}\n";

fn sweep(text: &str, sets: &[&str]) -> anyhow::Result<Option<Sweep>> {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    Sweep::from_text(text, "s.yaml", Path::new("."), &sets)
}

fn err(text: &str, sets: &[&str]) -> String {
    format!("{:#}", sweep(text, sets).unwrap_err())
}

#[test]
fn sweep_order_and_validation() {
    assert!(sweep(BASE, &[]).unwrap().is_none());
    let s = sweep(
        &format!("{BASE}sweep:\n  model.width: [8, 16, 32]\n  optim.lr: [1, 0.5]\n"),
        &["train.steps=5"],
    )
    .unwrap()
    .unwrap();
    assert_eq!(s.tasks.len(), 6);
    // keys in file order, last key fastest; an int/float axis is all floats
    let t = |i: usize| (mlp_width(&s.tasks[i].config), s.tasks[i].config.optim.lr);
    assert_eq!(
        (0..6).map(t).collect::<Vec<_>>(),
        vec![
            (8, 1.0),
            (8, 0.5),
            (16, 1.0),
            (16, 0.5),
            (32, 1.0),
            (32, 0.5)
        ]
    );
    assert!(s.tasks[1].values[1].1.is_f64() && s.tasks[0].values[1].1.is_f64());
    assert!(s.tasks.iter().all(|t| t.config.train.steps == Some(5)));
    // --set sweep.KEY replaces an axis
    let small = sweep(
        &format!("{BASE}sweep:\n  model.width: [8, 16, 32]\n  optim.lr: [1, 0.5]\n"),
        &["sweep.model.width=[64]", "sweep.optim.lr=[0.2]"],
    )
    .unwrap()
    .unwrap();
    assert_eq!(small.tasks.len(), 1);
    assert_eq!(
        (
            mlp_width(&small.tasks[0].config),
            small.tasks[0].config.optim.lr
        ),
        (64, 0.2)
    );
    let msg = format!("{:#}", s.task(6).unwrap_err());
    assert!(
        msg.contains("task 6") && msg.contains("6 runs") && msg.contains("--array=0-5"),
        "{msg}"
    );

    let with = |sw: &str| format!("{BASE}sweep: {sw}\n");
    // unknown key: named, with its origin, like --set
    let msg = err(&with("{model.widht: [8]}"), &[]);
    assert!(
        msg.contains("model.widht") && msg.contains("from `sweep`"),
        "{msg}"
    );
    let msg = err(
        &with("{optim.momentum: [0.9], optim.betas: [[0.9, 0.99]]}"),
        &[],
    );
    assert!(msg.contains("optim.betas") && msg.contains("sgd"), "{msg}");
    let msg = err(&with("{model.width: []}"), &[]);
    assert!(
        msg.contains("sweep.model.width") && msg.contains("empty"),
        "{msg}"
    );
    let msg = err(&with("{model.width: 8}"), &[]);
    assert!(msg.contains("expected a list"), "{msg}");
    let msg = err(&with("{model.width: [8, 8]}"), &[]);
    assert!(msg.contains("lists 8 twice"), "{msg}");
    let msg = err(&with("{experiment: [a, b]}"), &[]);
    assert!(msg.contains("`experiment` cannot be swept"), "{msg}");
    let msg = err(&with("{model: [{kind: mlp}], model.width: [8]}"), &[]);
    assert!(msg.contains("overlaps"), "{msg}");
    let msg = err(&with("{}"), &[]);
    assert!(msg.contains("names no keys"), "{msg}");
    let msg = err(&with("{model.width: [8, 16]}"), &["model.width=4"]);
    assert!(
        msg.contains("--set model.width=4") && msg.contains("sweep key"),
        "{msg}"
    );
    // a key that does not change training gives the same run twice
    let msg = err(&with("{probe.extra_batches: [1, 2]}"), &[]);
    assert!(msg.contains("same training run"), "{msg}");
    // a plain load of a sweep config points at --task/--all
    let msg = format!(
        "{:#}",
        abcond::config::from_yaml_text(&with("{seed: [0, 1, 2]}"), "s.yaml", Path::new("."), &[])
            .unwrap_err()
    );
    assert!(
        msg.contains("3 runs") && msg.contains("--task") && msg.contains("--all"),
        "{msg}"
    );
}

/// `sweep` is not part of the run identity: a task is the run made by hand.
#[test]
fn task_equals_hand_made_run() {
    let s = sweep(
        &format!("{BASE}sweep:\n  model.width: [8, 16]\n  seed: [0, 1]\n"),
        &["optim.momentum=0.9"],
    )
    .unwrap()
    .unwrap();
    let t = &s.tasks[3];
    let hand = abcond::config::from_yaml_text(
        BASE,
        "b.yaml",
        Path::new("."),
        &[
            "model.width=16".into(),
            "seed=1".into(),
            "optim.momentum=0.9".into(),
        ],
    )
    .unwrap();
    assert_eq!(t.config, hand);
    assert_eq!(t.run_id(), hand.default_run_id());
    assert!(t.run_id().starts_with("seed1-"));
    assert_ne!(s.tasks[2].run_id(), t.run_id());
}

#[test]
fn list_task_selection_all_and_runs_table() {
    let dir = scratch("sweep-idx");
    let data = dir.join("data");
    write_idx_fixture(&data, 96);
    let base = format!(
        "experiment: tiny\nseed: 0\ndevice: cpu\nmodel: {{preset: mlp}}\ndata: {{dataset: fashion-mnist, path: {}}}\ntrain: {{batch_size: 16, steps: 12}}\noptim: {{name: sgd, lr: 0.1}}\nsnapshots: {{every: 4}}\nprobe: {{extra_batches: 1}}\nanalysis: {{plots: false}}\n",
        data.display()
    );
    write_config(&dir, "base.yaml", &base);
    write_config(
        &dir,
        "s.yaml",
        &format!("{base}sweep:\n  model.width: [4, 8]\n  seed: [0, 1]\n"),
    );

    let listing = ok(&abcond(&dir, &["sweep", "s.yaml", "--list"]));
    let lines: Vec<&str> = listing.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len(), 5, "{listing}");
    assert!(
        lines[0].split_whitespace().collect::<Vec<_>>()
            == ["task", "run_id", "model.width", "seed", "status", "probed"],
        "{listing}"
    );
    let row: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(row[0], "2");
    assert_eq!(
        (row[2], row[3], row[4], row[5]),
        ("8", "0", "not-started", "no")
    );
    let id2 = row[1].to_string();
    // --list on a new experiment writes nothing
    assert!(!dir.join("results/tiny").exists());

    // Errors: no task, out of range, bad $SLURM_ARRAY_TASK_ID, --task without sweep.
    let e = stderr(
        &cmd(&dir)
            .args(["run", "s.yaml"])
            .env_remove("SLURM_ARRAY_TASK_ID")
            .output()
            .unwrap(),
    );
    assert!(e.contains("4 runs") && e.contains("--task"), "{e}");
    let o = abcond(&dir, &["run", "s.yaml", "--task", "4"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("task 4 is out of range") && stderr(&o).contains("4 runs"),
        "{}",
        stderr(&o)
    );
    let e = stderr(
        &cmd(&dir)
            .args(["train", "s.yaml"])
            .env("SLURM_ARRAY_TASK_ID", "x")
            .output()
            .unwrap(),
    );
    assert!(
        e.contains("SLURM_ARRAY_TASK_ID") && e.contains("not a task index"),
        "{e}"
    );
    let e = stderr(&abcond(&dir, &["train", "base.yaml", "--task", "0"]));
    assert!(e.contains("declares no `sweep`"), "{e}");

    // $SLURM_ARRAY_TASK_ID picks the task when --task is absent.
    ok(&cmd(&dir)
        .args(["-q", "train", "s.yaml"])
        .env("SLURM_ARRAY_TASK_ID", "2")
        .output()
        .unwrap());
    let run2 = dir.join("results/tiny").join(&id2);
    let manifest = std::fs::read_to_string(run2.join("run.yaml")).unwrap();
    assert!(
        manifest.contains("sweep:\n  task: 2\n  values:\n    model.width: 8\n    seed: 0\n"),
        "{manifest}"
    );

    // A run made by hand with --set is the sweep's task 1 (width 4, seed 1).
    let hand = ok(&abcond(
        &dir,
        &[
            "-q",
            "train",
            "base.yaml",
            "--set",
            "model.width=4",
            "--set",
            "seed=1",
        ],
    ));
    let hand_dir = hand
        .trim()
        .strip_prefix("run directory: ")
        .unwrap()
        .to_string();

    // --all: trains the rest, probes all, records, analyses the experiment.
    let first = ok(&abcond(&dir, &["-q", "run", "s.yaml", "--all"]));
    assert!(
        first.contains("sweep s.yaml: 4 runs: 4 run now, 0 finished before, 0 diverged, 0 failed"),
        "{first}"
    );
    let exp = dir.join("results/tiny");
    let runs: Vec<_> = std::fs::read_dir(&exp)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            p.join("run.yaml").is_file().then_some(p)
        })
        .collect();
    assert_eq!(
        runs.len(),
        4,
        "the hand-made run is the sweep's, not a fifth: {runs:?}"
    );
    let hand_manifest = std::fs::read_to_string(dir.join(&hand_dir).join("run.yaml")).unwrap();
    assert!(
        hand_manifest.contains("sweep:\n  task: 1\n"),
        "{hand_manifest}"
    );
    let steps = std::fs::metadata(run2.join("steps.parquet"))
        .unwrap()
        .modified()
        .unwrap();
    let landscape = std::fs::read(run2.join("landscape.parquet")).unwrap();

    // Rerun: everything is finished, nothing is trained or probed again.
    let again = ok(&abcond(&dir, &["-q", "run", "s.yaml", "--all"]));
    assert!(again.contains("0 run now, 4 finished before"), "{again}");
    assert_eq!(
        std::fs::metadata(run2.join("steps.parquet"))
            .unwrap()
            .modified()
            .unwrap(),
        steps
    );
    assert_eq!(
        std::fs::read(run2.join("landscape.parquet")).unwrap(),
        landscape
    );
    // verify checks the runs, their analyses and runs.parquet; a damaged
    // runs.parquet is named.
    let checked = ok(&abcond(&dir, &["verify", exp.to_str().unwrap()]));
    assert!(checked.contains("runs.parquet"), "{checked}");
    let table = std::fs::read(exp.join("runs.parquet")).unwrap();
    std::fs::write(exp.join("runs.parquet"), &table[..table.len() - 9]).unwrap();
    let broken = abcond(&dir, &["verify", exp.to_str().unwrap()]);
    assert_eq!(broken.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&broken.stdout).contains("BROKEN  ")
            && String::from_utf8_lossy(&broken.stdout).contains("sweep CONFIG --list"),
        "{}",
        String::from_utf8_lossy(&broken.stdout)
    );
    std::fs::write(exp.join("runs.parquet"), &table).unwrap();

    let out = py(
        r#"
import sys, polars as pl, pandas as pd, pyarrow.parquet as pq
exp = sys.argv[1]
t = pq.read_table(exp + "/runs.parquet")
assert t.schema.metadata[b"abcond.format"] == b"abcond.runs/1", t.schema.metadata
assert [str(f.type) for f in t.schema] == ["int64", "string", "int64", "int64", "string", "bool"], t.schema
r = pd.read_parquet(exp + "/runs.parquet")
assert list(r.columns) == ["task", "run_id", "model.width", "seed", "status", "probed"], r.columns
assert r["model.width"].tolist() == [4, 4, 8, 8] and r["seed"].tolist() == [0, 1, 0, 1], r
assert (r.status == "completed").all() and r.probed.all(), r
ls = pl.scan_parquet(exp + "/*/landscape.parquet").collect()
assert ls.schema["model.width"] == pl.Int64, ls.schema
g = ls.group_by("model.width").agg(pl.col("run_id").n_unique().alias("runs")).sort("model.width")
assert g["model.width"].to_list() == [4, 8] and g["runs"].to_list() == [2, 2], g
both = ls.join(pl.from_pandas(r).select("run_id", pl.col("model.width").alias("w")), on="run_id")
assert (both["w"] == both["model.width"]).all()
tr = pl.read_parquet(exp + "/analysis/trends.parquet")
assert tr["model.width"].dtype == pl.Int64 and tr["model.width"].to_list() == [4, 8], tr
assert tr["runs"].to_list() == [2, 2], tr
print("ok", len(ls))
"#,
        &[exp.to_str().unwrap()],
    );
    assert!(out.starts_with("ok "), "{out}");
}

/// The issue's acceptance test: a width sweep of the MLP on the real
/// Fashion-MNIST (small widths, short runs) completes and its trends table has
/// one row per width.
#[test]
fn real_fashion_mnist_width_sweep() {
    let real = Path::new("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
    assert!(
        real.is_file(),
        "{} is missing: install the Debian package dataset-fashion-mnist (./dev test does)",
        real.display()
    );
    let dir = scratch("sweep-fmnist");
    write_config(
        &dir,
        "w.yaml",
        "experiment: fmnist-width\nseed: 0\ndevice: cpu\nmodel: {preset: mlp}\ndata: {dataset: fashion-mnist, subset: 2000}\ntrain: {batch_size: 64, steps: 300}\noptim: {name: sgd, lr: 0.09}\nsnapshots: {every: 50}\nprobe: {extra_batches: 1}\nanalysis: {plots: false}\nsweep:\n  model.width: [8, 16, 32]\n  seed: [0]\n",
    );
    let text = ok(&abcond(&dir, &["-q", "run", "w.yaml", "--all"]));
    assert!(
        text.contains("3 runs: 3 run now") && text.contains("0 failed"),
        "{text}"
    );
    let exp = dir.join("results/fmnist-width");
    let out = py(
        r#"
import sys, polars as pl
exp = sys.argv[1]
tr = pl.read_parquet(exp + "/analysis/trends.parquet")
assert tr.height == 3 and tr["model.width"].to_list() == [8, 16, 32], tr
assert tr["runs"].to_list() == [1, 1, 1] and (tr["rows"] > 0).all(), tr
ls = (pl.scan_parquet(exp + "/*/landscape.parquet")
      .filter(pl.col("probe") == "full")
      .group_by("model.width")
      .agg(pl.col("loss_k").min().alias("best"), pl.len().alias("n"))
      .sort("model.width").collect())
assert ls["model.width"].to_list() == [8, 16, 32] and (ls["n"] == 6).all(), ls
# training did something on the real data: below log(10) = 2.30
assert (ls["best"] < 2.0).all(), ls
# the analysis tables carry the width as a typed column too
for t in ["ab_region", "ab_grid", "aiming", "pl"]:
    df = pl.read_parquet(f"{exp}/analysis/{t}.parquet")
    assert df.schema["model.width"] == pl.Int64, (t, df.schema)
    assert sorted(df["model.width"].unique().to_list()) == [8, 16, 32], t
print("ok", tr.select("model.width", "alpha_min", "sigma_int2").rows())
"#,
        &[exp.to_str().unwrap()],
    );
    assert!(out.starts_with("ok "), "{out}");
}

/// Every shipped config resolves, and a sweep config resolves for every task:
/// a config that drifts from the schema (a renamed key, a preset that no longer
/// exists) fails here rather than on a cluster.
#[test]
fn shipped_configs_resolve() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut files = Vec::new();
    for dir in [root.clone(), root.join("paper")] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "yaml") {
                files.push(p);
            }
        }
    }
    assert!(files.len() >= 14, "{files:?}");
    let mut sweeps = 0;
    for f in &files {
        match abcond::experiment::sweep::Sweep::load(f, &[])
            .unwrap_or_else(|e| panic!("{}: {e:#}", f.display()))
        {
            Some(s) => {
                sweeps += 1;
                assert!(s.tasks.len() >= 2, "{}", f.display());
            }
            None => {
                abcond::config::load(f, &[]).unwrap_or_else(|e| panic!("{}: {e:#}", f.display()));
            }
        }
    }
    assert_eq!(sweeps, 5, "the five paper sweeps");
}

/// The hidden width of an MLP config.
fn mlp_width(c: &abcond::config::Config) -> i64 {
    match &c.model.arch {
        abcond::model::config::Arch::Mlp(s) => s.width,
        other => panic!("not an MLP: {other:?}"),
    }
}
