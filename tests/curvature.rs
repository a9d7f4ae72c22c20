//! `probe.curvature` end to end: the power-iteration eigenvalues in
//! curvature.parquet against exact Hessians computed densely and
//! independently in PyTorch (tests/check_curvature.py) on the half-space model
//! (f64) and a tiny MLP (f64 and f32), resuming per snapshot, settings errors.

mod common;
use common::*;
use std::path::Path;

const HALFSPACE: &str = "experiment: hs
seed: 0
device: cpu
model: {preset: halfspace}
data: {dataset: halfspace, dim: 3, per_class: 20, variance: 2.0}
train: {batch_size: 2, steps: 400}
optim: {name: sgd, lr: 0.25}
snapshots: {every: 50}
probe:
  extra_batches: 2
  full: true
  curvature: {enabled: true, probes: [train, extra, full], tol: 1.0e-12, iterations: 20000}
";

fn run(dir: &Path, cfg: &str, sets: &[&str]) -> String {
    let cfg = write_config(dir, "c.yaml", cfg);
    let mut args = vec!["--out", "out", "run", cfg.to_str().unwrap()];
    for s in sets {
        args.extend(["--set", s]);
    }
    let out = abcond(dir, &args);
    ok(&out);
    stderr(&out)
}

#[test]
fn halfspace_eigenvalues_match_dense_hessians_and_resume() {
    let dir = scratch("curvature-halfspace");
    let err = run(&dir, HALFSPACE, &[]);
    assert!(err.contains("curvature: 8 snapshots"), "{err}");
    let rd = run_dir(&dir.join("out"), "hs");
    // f64: power iteration to tol 1e-12 agrees with eigvalsh to ~1e-10; the
    // largest-magnitude eigenvalue has both signs along this run.
    let out = run_python(
        "check_curvature.py",
        &[rd.to_str().unwrap(), "--tol", "1e-6"],
    );
    let line = out.lines().next().unwrap();
    let sign = |what: &str| -> usize {
        let tail = out.split(&format!("{what}=")).nth(1).unwrap();
        tail.split_whitespace().next().unwrap().parse().unwrap()
    };
    let (neg, pos) = (sign("negative"), sign("positive"));
    assert!(neg > 0 && pos > 0, "{out}");
    // 8 snapshots × (train + 2 extra + full)
    assert!(line.contains(": 32 rows"), "{out}");

    // Resume: a lost part is measured again, alone; the table is the same.
    let table = std::fs::read(rd.join("curvature.parquet")).unwrap();
    let landscape_parts = tree(&rd.join("probe-parts"));
    std::fs::remove_file(rd.join("curvature-parts/step=150.parquet")).unwrap();
    let err = stderr(&abcond(&dir, &["probe", rd.to_str().unwrap()]));
    assert!(err.contains("curvature: 1 snapshots"), "{err}");
    assert!(err.contains("probed already"), "{err}");
    let (a, _) = abcond::store::tables::read_curvature(&rd.join("curvature.parquet")).unwrap();
    let b = {
        let p = dir.join("before.parquet");
        std::fs::write(&p, &table).unwrap();
        abcond::store::tables::read_curvature(&p).unwrap().0
    };
    assert_eq!(a, b);
    // Other curvature settings: curvature measured again, landscape rows not.
    let err = stderr(&abcond(
        &dir,
        &[
            "probe",
            rd.to_str().unwrap(),
            "--set",
            "probe.curvature.both_ends=false",
        ],
    ));
    assert!(err.contains("curvature: 8 snapshots"), "{err}");
    assert_eq!(tree(&rd.join("probe-parts")), landscape_parts);
    let (rows, meta) =
        abcond::store::tables::read_curvature(&rd.join("curvature.parquet")).unwrap();
    assert_eq!(meta["abcond.format"], "abcond.curvature/2");
    assert!(rows.iter().all(
        |r| r.other_iterations.is_none() && (r.lambda_max.is_some() != r.lambda_min.is_some())
    ));
    // landscape.parquet keeps its schema
    let (_, lmeta) = abcond::store::tables::read_landscape(&rd.join("landscape.parquet")).unwrap();
    assert_eq!(lmeta["abcond.format"], "abcond.landscape/3");
}

const MLP: &str = "experiment: mlp
seed: 1
device: cpu
model: {preset: mlp, width: 3, dtype: DTYPE}
data: {dataset: fashion-mnist, path: DATA, subset: 48}
train: {batch_size: 8, steps: 40}
optim: {name: sgd, lr: 0.1}
snapshots: {every: 20}
probe:
  extra_batches: 1
  full: true
  chunk_size: 20
  curvature: {enabled: true, probes: [train, extra, full], tol: TOL, iterations: 20000}
";

#[test]
fn tiny_mlp_eigenvalues_match_dense_hessians() {
    // f64: the same double-backward products as PyTorch's; f32: Hv in single
    // precision (each product carries relative rounding ~1e-7·√P), so the
    // eigenvalue is resolved to ~1e-6 relative; 1e-4 leaves room for the
    // stopping rule (tol 1e-7) on close eigenvalues.
    for (dtype, tol, check) in [("f64", "1.0e-12", "1e-8"), ("f32", "1.0e-7", "1e-4")] {
        let dir = scratch(&format!("curvature-mlp-{dtype}"));
        write_idx_fixture(&dir.join("data"), 64);
        let cfg = MLP
            .replace("DTYPE", dtype)
            .replace("TOL", tol)
            .replace("DATA", dir.join("data").to_str().unwrap());
        run(&dir, &cfg, &[]);
        let rd = run_dir(&dir.join("out"), "mlp");
        let out = run_python(
            "check_curvature.py",
            &[rd.to_str().unwrap(), "--tol", check],
        );
        // 2 snapshots (0, 20) × (train + extra + full in chunks of 20)
        assert!(out.contains(": 6 rows") && out.contains("OK"), "{out}");
        println!("{dtype}: {out}");
    }
}

#[test]
fn curvature_settings_are_checked() {
    let dir = scratch("curvature-settings");
    for (set, want) in [
        (
            "probe.curvature.probes=[train, fulll]",
            "probe.curvature.probes",
        ),
        ("probe.curvature.tol=0", "probe.curvature.tol"),
        ("probe.curvature.iterations=0", "probe.curvature.iterations"),
        ("probe.curvature.probes=[]", "probe.curvature.probes"),
        ("probe.curvature.probes=[full, full]", "twice"),
        ("probe.curvature.shift=true", "probe.curvature.shift"),
    ] {
        let cfg = write_config(&dir, "c.yaml", HALFSPACE);
        let out = abcond(
            &dir,
            &["--out", "out", "train", cfg.to_str().unwrap(), "--set", set],
        );
        assert_eq!(out.status.code(), Some(1), "{set}");
        assert!(stderr(&out).contains(want), "{set}: {}", stderr(&out));
    }
}

#[test]
fn sgd_bound_applicability_is_explained() {
    // Momentum: Theorem 1 (plain SGD) does not apply; the numbers are still
    // evaluated and the reason is printed and in summary.yaml.
    let dir = scratch("curvature-momentum");
    let cfg = HALFSPACE
        .replace("steps: 400", "steps: 100")
        .replace("tol: 1.0e-12, iterations: 20000", "tol: 1.0e-8");
    let cfg = write_config(&dir, "c.yaml", &cfg);
    let out = ok(&abcond(
        &dir,
        &[
            "--quiet",
            "--out",
            "out",
            "run",
            cfg.to_str().unwrap(),
            "--set",
            "optim.momentum=0.9",
        ],
    ));
    assert!(out.contains("SGD bound (Theorem 1"), "{out}");
    assert!(
        out.contains("not applicable: SGD with momentum 0.9"),
        "{out}"
    );
    let rd = run_dir(&dir.join("out"), "hs");
    let s: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(rd.join("analysis/summary.yaml")).unwrap())
            .unwrap();
    let b = &s["groups"][0]["sgd_bound"];
    assert_eq!(b["applicable"], serde_yaml::Value::from(false));
    // Without step 0 probed there is no dist(x^0, S): not evaluated.
    ok(&abcond(
        &dir,
        &[
            "--quiet",
            "probe",
            rd.to_str().unwrap(),
            "--set",
            "probe.steps=[50]",
        ],
    ));
    let out = ok(&abcond(&dir, &["--quiet", "analyze", rd.to_str().unwrap()]));
    assert!(out.contains("x^0 was not probed"), "{out}");
    assert!(out.contains("not evaluated"), "{out}");
}
