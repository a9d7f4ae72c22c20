//! The speed benchmarks' plumbing (bench/, docs/benchmarks.md): the timing
//! records abcond writes into run.yaml, and bench/run.py end to end on the MLP
//! cases at --quick sizes (no timing is asserted: only that every command runs,
//! both sides report their figures, and abcond and bench/torch_probe.py measure
//! the same numbers).

mod common;
use abcond::run::RunDir;
use common::*;
use std::path::Path;
use std::process::Command;

fn config(data: &Path) -> String {
    format!(
        "experiment: timing
seed: 1
device: cpu
model: {{preset: mlp, width: 16}}
data: {{dataset: fashion-mnist, path: {}, subset: 300}}
train: {{batch_size: 16, steps: 60}}
optim: {{name: sgd, lr: 0.05, momentum: 0.9}}
snapshots: {{every: 20}}
probe: {{extra_batches: 1, full: false}}
",
        data.display()
    )
}

#[test]
fn run_yaml_records_where_the_time_went() {
    let dir = scratch("bench-timing");
    write_idx_fixture(&dir.join("fmnist"), 300);
    write_config(&dir, "c.yaml", &config(&dir.join("fmnist")));
    ok(&abcond(&dir, &["-q", "--out", "out", "train", "c.yaml"]));
    let root = std::fs::read_dir(dir.join("out/timing"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let rd = RunDir::new(&root);
    let m = rd.read_manifest().unwrap();
    let t = m.sessions[0].timing.clone().expect("sessions[0].timing");
    assert_eq!(t.steps, 60);
    assert!(
        t.setup_seconds > 0.0 && t.step_seconds_median > 0.0,
        "{t:?}"
    );
    // 60 updates and the writes all happen inside the loop.
    assert!(
        t.write_seconds > 0.0 && t.write_seconds < t.loop_seconds,
        "{t:?}"
    );
    assert!(60.0 * t.step_seconds_median < 2.0 * t.loop_seconds, "{t:?}");
    // Written through the background writer, in full: x^0, x^20, x^40, x^60,
    // the 60 step rows, the probe's i_k rows after it.
    assert_eq!(rd.snapshot_steps().unwrap(), vec![0, 20, 40, 60]);
    let steps = abcond::store::tables::read_steps(&rd.steps()).unwrap().0;
    assert_eq!(steps.len(), 60);

    ok(&abcond(&dir, &["-q", "probe", root.to_str().unwrap()]));
    let p = rd.read_manifest().unwrap().probe.unwrap();
    let pt = p.timing.clone().expect("probe.timing");
    assert_eq!(pt.snapshots, 3);
    assert_eq!(p.rows, 6); // 3 snapshots × (i_k + 1 extra minibatch)
    assert!(
        pt.seconds_per_snapshot_median > 0.0 && pt.read_seconds > 0.0,
        "{pt:?}"
    );
    // The median of 3 snapshots is at most the sum of all 3 (= 3 × the mean).
    assert!(3.0 * p.seconds_per_snapshot.unwrap() >= pt.seconds_per_snapshot_median);
    assert_eq!(rd.probe_part_steps().unwrap(), vec![0, 20, 40]);

    let inspect = ok(&abcond(&dir, &["inspect", root.to_str().unwrap()]));
    assert!(inspect.contains("60 steps: setup"), "{inspect}");
    assert!(inspect.contains("last session: 3 snapshots"), "{inspect}");
}

#[test]
fn runner_runs_the_mlp_cases_and_both_probes_agree() {
    let dir = scratch("bench-runner");
    write_idx_fixture(&dir.join("fmnist"), 600);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python())
        .current_dir(root)
        .args([
            "bench/run.py",
            "--quick",
            "--no-warmup",
            "--repeats",
            "1",
            "--threads",
            "1",
        ])
        .args([
            "--cases",
            "train-mlp,probe-mlp,snapshots-mlp,tsprobe-mlp,replay-mlp,train-gnn,probe-gnn,train-dlrm,probe-dlrm,train-wmt,probe-wmt,train-unet,probe-unet",
            "--bin",
            bin(),
        ])
        .arg("--fmnist")
        .arg(dir.join("fmnist"))
        .arg("--work")
        .arg(dir.join("work"))
        .arg("--out")
        .arg(dir.join("result.md"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "bench/run.py failed:\n{text}");
    let md = std::fs::read_to_string(dir.join("result.md")).unwrap();
    for row in [
        "| train-mlp | mean training step (loop / steps) | abcond |",
        "| probe-mlp | median probe of one snapshot (i_k) | abcond |",
        "| snapshots-mlp | training loop, 200 steps, snapshot every 100 | abcond |",
        "| tsprobe-mlp | median probe of one snapshot (i_k) | abcond, TorchScript |",
        "| replay-mlp | mean step, 200 steps (replay incl. its checks / training loop) | abcond probe --replay |",
        "| train-gnn | mean training step (loop / steps) | abcond |",
        "| probe-gnn | median probe of one snapshot (i_k) | abcond |",
        "| train-dlrm | mean training step (loop / steps) | abcond |",
        "| probe-dlrm | median probe of one snapshot (i_k) | abcond |",
        "| train-wmt | mean training step (loop / steps) | abcond |",
        "| probe-wmt | median probe of one snapshot (i_k) | abcond |",
        "| train-unet | mean training step (loop / steps) | abcond |",
        "| probe-unet | median probe of one snapshot (i_k) | abcond |",
    ] {
        assert!(md.contains(row), "missing `{row}` in\n{md}");
    }
    // JSON is YAML.
    let json: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("result.json")).unwrap()).unwrap();
    let results = json["results"].as_sequence().unwrap();
    assert_eq!(results.len(), 13);
    for r in results {
        let unit = r["unit"].as_str().unwrap();
        let (a, b) = (
            r["a_median"][unit].as_f64().unwrap(),
            r["b_median"][unit].as_f64().unwrap(),
        );
        let ratio = r["ratio"].as_f64().unwrap();
        assert!(a > 0.0 && b > 0.0, "{r:?}");
        assert!((ratio - a / b).abs() <= 1e-12 * ratio, "{r:?}");
        assert!(r["a_median"]["wall"].as_f64().unwrap() > a, "{r:?}");
    }
    // abcond's landscape rows and the PyTorch probe's, on the same snapshots
    // (MLP, GNN, DLRM, padded Transformer, U-Net).
    for i in [1, 6, 8, 10, 12] {
        let probe = &results[i];
        let diff = probe["probe_max_rel_diff"].as_f64().unwrap();
        assert!(
            diff <= 1e-5,
            "{:?}: abcond and bench/torch_probe.py differ by {diff:e}",
            probe["case"]
        );
    }
}
