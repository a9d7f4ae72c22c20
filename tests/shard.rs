//! `abcond probe RUN_DIR --shard i/N`: shards run concurrently as separate
//! processes, each measuring its own snapshots once; an unsharded probe then
//! only gathers, and the gathered landscape.parquet and curvature.parquet are
//! identical, bit for bit, to those of an unsharded probe of a copy of the run.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn config(data: &Path) -> String {
    format!(
        "experiment: shard
seed: 2
device: cpu
model: {{preset: mlp, width: 16}}
data: {{dataset: fashion-mnist, path: {}, subset: 400}}
train: {{batch_size: 16, steps: 120}}
optim: {{name: sgd, lr: 0.05}}
snapshots: {{every: 6}}
probe:
  extra_batches: 1
  full: true
  full_subset: 200
  chunk_size: 100
  curvature: {{enabled: true, probes: [train], iterations: 30, tol: 1.0e-6}}
",
        data.display()
    )
}

/// Steps of the parts in `dir` → their `abcond.shard` metadata ("" if none).
fn parts(dir: &Path) -> BTreeMap<u64, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            let k = name.strip_prefix("step=")?.strip_suffix(".parquet")?;
            let meta = abcond::store::tensors::read_meta(&dir.join(&name)).unwrap();
            Some((
                k.parse().unwrap(),
                meta.get("abcond.shard").cloned().unwrap_or_default(),
            ))
        })
        .collect()
}

fn landscape_bits(rd: &Path) -> Vec<String> {
    let (rows, _) = abcond::store::tables::read_landscape(&rd.join("landscape.parquet")).unwrap();
    rows.iter()
        .map(|r| {
            let bits: Vec<u64> = [r.loss_k, r.loss_ref, r.inner, r.grad_norm, r.dist, r.cos]
                .iter()
                .map(|v| v.to_bits())
                .collect();
            format!(
                "{} {} {} {} {:?} {:?}",
                r.step, r.probe, r.batch_size, r.ref_step, r.batch_indices, bits
            )
        })
        .collect()
}

fn curvature_bits(rd: &Path) -> Vec<String> {
    let (rows, _) = abcond::store::tables::read_curvature(&rd.join("curvature.parquet")).unwrap();
    rows.iter()
        .map(|r| {
            format!(
                "{} {} {} {} {:?} {:?}",
                r.step,
                r.probe,
                r.eigenvalue.to_bits(),
                r.iterations,
                r.lambda_max.map(f64::to_bits),
                r.lambda_min.map(f64::to_bits)
            )
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn shards_probe_each_snapshot_once_and_gather_identically() {
    let dir = scratch("shard");
    write_idx_fixture(&dir.join("fmnist"), 500);
    let cfg = dir.join("config.yaml");
    std::fs::write(&cfg, config(&dir.join("fmnist"))).unwrap();
    let stdout = ok(&abcond(
        &dir,
        &["--quiet", "--out", "out", "train", cfg.to_str().unwrap()],
    ));
    let rd: PathBuf = dir.join(
        stdout
            .trim()
            .strip_prefix("run directory: ")
            .unwrap_or_else(|| panic!("{stdout}")),
    );
    let single = dir.join("single");
    copy_dir(&rd, &single);
    let manifest_before = std::fs::read(rd.join("run.yaml")).unwrap();

    // The selection: every snapshot but x^K (step 120), sorted.
    let selected: Vec<u64> = (0..120).step_by(6).collect();
    assert_eq!(selected.len(), 20);

    // Three shards at once, as separate processes.
    let children: Vec<_> = (0..3)
        .map(|i| {
            cmd(&dir)
                .args(["probe", rd.to_str().unwrap(), "--shard", &format!("{i}/3")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut probed = 0;
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        let stdout = ok(&out);
        let mine = selected.iter().skip(i).step_by(3).count();
        assert!(
            stdout.contains(&format!(
                "shard {i}/3: {mine} snapshots ({mine} probed now)"
            )),
            "{stdout}"
        );
        let err = stderr(&out);
        assert!(err.contains(&format!("probing {mine} snapshots")), "{err}");
        assert!(
            err.contains(&format!("curvature: {mine} snapshots")),
            "{err}"
        );
        probed += mine;
    }
    assert_eq!(
        probed,
        selected.len(),
        "each snapshot is probed exactly once"
    );

    // Shards write parts only: no shared table, run.yaml untouched.
    assert!(!rd.join("landscape.parquet").exists());
    assert!(!rd.join("curvature.parquet").exists());
    assert_eq!(std::fs::read(rd.join("run.yaml")).unwrap(), manifest_before);
    for sub in ["probe-parts", "curvature-parts"] {
        let p = parts(&rd.join(sub));
        assert_eq!(p.keys().copied().collect::<Vec<_>>(), selected, "{sub}");
        for (pos, k) in selected.iter().enumerate() {
            assert_eq!(p[k], format!("{}/3", pos % 3), "{sub} step={k}");
        }
    }

    // The analysis points at the gather.
    let out = abcond(&dir, &["analyze", rd.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("20 probe parts") && stderr(&out).contains("gather them with"),
        "{}",
        stderr(&out)
    );

    // Shard 1 again: nothing to do; it reports that all parts are done.
    let out = abcond(&dir, &["probe", rd.to_str().unwrap(), "--shard", "1/3"]);
    let stdout = ok(&out);
    assert!(
        stdout.contains("(0 probed now); 20 of 20 selected snapshots done; all parts are done"),
        "{stdout}"
    );

    // The gather measures nothing.
    let out = abcond(&dir, &["probe", rd.to_str().unwrap()]);
    ok(&out);
    let err = stderr(&out);
    assert!(err.contains("all 20 selected snapshots"), "{err}");
    assert!(!err.contains("curvature:"), "{err}");

    ok(&abcond(&dir, &["probe", single.to_str().unwrap()]));
    let (sharded, single_rows) = (landscape_bits(&rd), landscape_bits(&single));
    assert_eq!(sharded.len(), 20 * 3);
    assert_eq!(sharded, single_rows);
    let (sharded, single_rows) = (curvature_bits(&rd), curvature_bits(&single));
    assert_eq!(sharded.len(), 20);
    assert_eq!(sharded, single_rows);
    ok(&abcond(&dir, &["--quiet", "analyze", rd.to_str().unwrap()]));

    // A part written after the gather makes the tables stale: the analysis
    // refuses them until the next gather.
    std::fs::remove_file(rd.join("probe-parts/step=12.parquet")).unwrap();
    let out = abcond(&dir, &["probe", rd.to_str().unwrap(), "--shard", "2/3"]);
    assert!(ok(&out).contains("(1 probed now)"));
    let out = abcond(&dir, &["analyze", rd.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("step=12.parquet is newer than")
            && stderr(&out).contains("gather them with"),
        "{}",
        stderr(&out)
    );
    ok(&abcond(&dir, &["probe", rd.to_str().unwrap()]));
    assert_eq!(landscape_bits(&rd), landscape_bits(&single));
    ok(&abcond(&dir, &["--quiet", "analyze", rd.to_str().unwrap()]));
}

#[test]
fn bad_shards_are_usage_errors() {
    let dir = scratch("shard-bad");
    for (arg, says) in [
        ("3/3", "shard index 3 is out of range for 3 shards (0..=2)"),
        ("0/0", "the shard count must be at least 1"),
        ("a/2", "the shard index \"a\" is not a whole number"),
        ("-1/2", "the shard index \"-1\" is not a whole number"),
        ("2", "\"2\" is not a shard: expected I/N"),
    ] {
        let out = abcond(&dir, &["probe", "nowhere", &format!("--shard={arg}")]);
        assert_eq!(out.status.code(), Some(2), "{arg}");
        assert!(stderr(&out).contains(says), "{arg}: {}", stderr(&out));
    }
}
