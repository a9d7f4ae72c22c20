//! End-to-end checks of train → snapshots → probe against independent
//! computations: PyTorch autograd (tests/parity.py), finite differences, and
//! what pandas, Polars and DuckDB read from the Parquet files.

mod common;
use common::*;
use std::path::Path;

fn mlp_config(data: &Path) -> String {
    format!(
        "experiment: mlp
seed: 1
device: cpu
model: {{preset: mlp, width: 32}}
data: {{dataset: fashion-mnist, path: {}, subset: 600}}
train: {{batch_size: 16, steps: 120}}
optim: {{name: sgd, lr: 0.05}}
snapshots: {{log_spaced: 10}}
probe: {{extra_batches: 2, full: true, full_subset: 300, chunk_size: 128}}
",
        data.display()
    )
}

/// A YAML list of the steps 1..=n (consecutive snapshots for the replay check).
fn first_steps(n: u64) -> String {
    format!(
        "[{}]",
        (1..=n)
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The paper's half-space config from configs/.
fn halfspace_config() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/paper/halfspace.yaml");
    std::fs::read_to_string(path).unwrap()
}

/// Trains and probes `config` into `dir/out`, returns the run directory.
fn run(dir: &Path, config: &str, extra: &[&str]) -> std::path::PathBuf {
    let cfg = write_config(dir, "config.yaml", config);
    let mut args = vec!["--quiet", "--out", "out", "run", cfg.to_str().unwrap()];
    args.extend_from_slice(extra);
    let stdout = ok(&abcond(dir, &args));
    assert!(
        stdout.contains("beta = alpha − 1: smallest alpha"),
        "{stdout}"
    );
    let exp = config
        .lines()
        .find_map(|l| l.strip_prefix("experiment: "))
        .expect("config names its experiment");
    let rd = run_dir(&dir.join("out"), exp);
    assert!(
        rd.join("analysis/report.md").is_file(),
        "run did not analyse"
    );
    rd
}

#[test]
fn mlp_f32_matches_pytorch() {
    let dir = scratch("parity-mlp");
    write_idx_fixture(&dir.join("fmnist"), 800);
    let run_dir = run(&dir, &mlp_config(&dir.join("fmnist")), &[]);
    let out = run_python("parity.py", &[run_dir.to_str().unwrap()]);
    assert!(
        out.contains("OK") && out.contains("replayed 3 steps with torch.optim.SGD"),
        "{out}"
    );
}

#[test]
fn halfspace_f64_matches_pytorch_to_1e10() {
    let dir = scratch("parity-halfspace");
    let text = halfspace_config();
    let run_dir = run(
        &dir,
        &text,
        &["--set", "train.steps=400", "--set", "snapshots.every=50"],
    );
    let out = run_python("parity.py", &[run_dir.to_str().unwrap()]);
    assert!(
        out.contains("tolerance 1e-10") && out.contains("OK"),
        "{out}"
    );
}

#[test]
fn two_layer_relu_with_adam_matches_pytorch() {
    let dir = scratch("parity-two-layer");
    write_idx_fixture(&dir.join("fmnist"), 600);
    let cfg = format!(
        "experiment: twolayer
seed: 4
device: cpu
model: {{preset: two-layer-relu, width: 16}}
data: {{dataset: fashion-mnist, path: {}, classes: [0, 6]}}
train: {{batch_size: 8, epochs: 3}}
optim: {{name: adam, lr: 0.001, weight_decay: 0.01}}
schedule: {{name: one-cycle}}
snapshots: {{every: 10, at: {}}}
probe: {{extra_batches: 1, full: true, chunk_size: 50}}
",
        dir.join("fmnist").display(),
        first_steps(30)
    );
    let run_dir = run(&dir, &cfg, &[]);
    let out = run_python("parity.py", &[run_dir.to_str().unwrap()]);
    assert!(
        out.contains("OK") && out.contains("replayed 30 steps with torch.optim.Adam "),
        "{out}"
    );
}

#[test]
fn matrix_factorisation_f64_matches_pytorch() {
    let dir = scratch("parity-matfact");
    let cfg = "experiment: matfact
seed: 2
device: cpu
model: {preset: matrix-factorisation, rank: 3}
data: {dataset: matrix-factorisation, rows: 12, cols: 9, true_rank: 4, noise: 0.1}
train: {batch_size: 10, steps: 300}
optim: {name: adamw, lr: 0.05, weight_decay: 0.01}
schedule: {name: warmup-cosine, warmup_fraction: 0.1}
snapshots: {log_spaced: 12, at: FIRST}
probe: {extra_batches: 3, full: true, chunk_size: 40}
"
    .replace("FIRST", &first_steps(40));
    let run_dir = run(&dir, &cfg, &[]);
    let out = run_python("parity.py", &[run_dir.to_str().unwrap()]);
    assert!(
        out.contains("tolerance 1e-10") && out.contains("OK"),
        "{out}"
    );
    assert!(
        out.contains("replayed 40 steps with torch.optim.AdamW (tolerance 1e-10)"),
        "{out}"
    );
}

/// SGD with Nesterov momentum, weight decay and a cosine schedule, replayed
/// with torch.optim.SGD and CosineAnnealingLR.
#[test]
fn sgd_nesterov_cosine_matches_torch_optim() {
    let dir = scratch("parity-nesterov");
    write_idx_fixture(&dir.join("fmnist"), 800);
    let cfg = mlp_config(&dir.join("fmnist"))
        .replace(
            "optim: {name: sgd, lr: 0.05}",
            "optim: {name: sgd, lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 0.001}\nschedule: {name: cosine, floor: 0.005}",
        )
        .replace("snapshots: {log_spaced: 10}", &format!("snapshots: {{log_spaced: 10, at: {}}}", first_steps(50)));
    let run_dir = run(&dir, &cfg, &[]);
    let out = run_python("parity.py", &[run_dir.to_str().unwrap()]);
    assert!(
        out.contains("OK") && out.contains("replayed 50 steps with torch.optim.SGD"),
        "{out}"
    );
}

/// inner = <∇f_i(x^k), x^k − x^K> is the directional derivative of f_i at x^k
/// along x^k − x^K: checked with a 5-point central difference in f64.
#[test]
fn inner_equals_directional_derivative_on_halfspace() {
    use abcond::data::Dataset;
    use abcond::model::{Mode, Model};
    use abcond::store::{tables, tensors};
    use tch::{Device, Kind};

    let dir = scratch("finite-differences");
    let text = halfspace_config();
    let run_dir = run(
        &dir,
        &text,
        &[
            "--set",
            "train.steps=600",
            "--set",
            "snapshots.every=100",
            "--set",
            "data.dim=5",
        ],
    );
    let cfg = abcond::config::load(&dir.join("config.yaml"), &["data.dim=5".into()]).unwrap();
    let data = Dataset::load(&cfg.data, cfg.model.dtype, Device::Cpu).unwrap();
    let model = Model::build(&cfg.model, &data, Device::Cpu, 0).unwrap();
    let load = |step: u64| {
        let f = tensors::read(
            &run_dir.join(format!("iterates/step={step}/part-0.parquet")),
            Device::Cpu,
        )
        .unwrap();
        f.get("weight").unwrap().tensor.shallow_clone()
    };
    let x_final = load(600);
    let (rows, _) = tables::read_landscape(&run_dir.join("landscape.parquet")).unwrap();
    let mode = Mode::Measure(Default::default());
    let mut checked = 0;
    for r in &rows {
        let xk = load(r.step as u64);
        let d = &xk - &x_final;
        let norm = d.norm().double_value(&[]);
        let u = &d / norm;
        let indices: Vec<i64> = r
            .batch_indices
            .clone()
            .unwrap_or_else(|| (0..data.len as i64).collect());
        let batch = data.batch(&indices);
        let f = |t: f64| {
            let (_, w) = &model.params()[0];
            let mut w = w.shallow_clone();
            tch::no_grad(|| w.copy_(&(&xk + &u * t)));
            model
                .per_example_loss(&batch, mode)
                .to_kind(Kind::Double)
                .mean(Kind::Double)
                .double_value(&[])
        };
        let h = 1e-3;
        let fd = (-f(2.0 * h) + 8.0 * f(h) - 8.0 * f(-h) + f(-2.0 * h)) / (12.0 * h) * norm;
        let err = (fd - r.inner).abs();
        assert!(
            err <= 1e-8 * r.inner.abs().max(1.0),
            "step {} probe {}: inner {} but finite difference {fd} (err {err:e})",
            r.step,
            r.probe,
            r.inner
        );
        // loss_k is f_i at x^k
        assert!((f(0.0) - r.loss_k).abs() <= 1e-14 * r.loss_k.abs().max(1e-300) + 1e-300);
        checked += 1;
    }
    assert_eq!(checked, rows.len());
    assert!(checked >= 6 * 6, "{checked} rows");
}

/// pandas, Polars and DuckDB read every table with the documented dtypes, and
/// the README's snippets run.
#[test]
fn outputs_are_readable_with_documented_dtypes() {
    let dir = scratch("readable");
    write_idx_fixture(&dir.join("fmnist"), 800);
    let run_dir = run(&dir, &mlp_config(&dir.join("fmnist")), &[]);
    let out = run_python("read_outputs.py", &[run_dir.to_str().unwrap()]);
    assert!(out.contains("OK"), "{out}");
}

/// Probing is resumable: a second probe measures nothing; a removed part is
/// measured again and gives the same rows; changed settings re-measure.
#[test]
fn probe_resumes_and_is_deterministic() {
    let dir = scratch("probe-resume");
    write_idx_fixture(&dir.join("fmnist"), 800);
    let run_dir = run(&dir, &mlp_config(&dir.join("fmnist")), &[]);
    let rd = run_dir.to_str().unwrap();
    let landscape = run_dir.join("landscape.parquet");
    let (before, _) = abcond::store::tables::read_landscape(&landscape).unwrap();
    let out = abcond(&dir, &["probe", rd]);
    assert!(stderr(&out).contains("probed already"), "{}", stderr(&out));
    let parts = run_dir.join("probe-parts");
    std::fs::remove_file(parts.join("step=3.parquet")).unwrap();
    let out = abcond(&dir, &["probe", rd]);
    ok(&out);
    assert!(
        stderr(&out).contains("probing 1 snapshots"),
        "{}",
        stderr(&out)
    );
    let (after, _) = abcond::store::tables::read_landscape(&landscape).unwrap();
    assert_eq!(
        before, after,
        "re-probing a snapshot must give identical rows"
    );
    // Other settings: every snapshot is measured again, with more rows.
    let out = abcond(&dir, &["probe", rd, "--set", "probe.extra_batches=3"]);
    ok(&out);
    assert!(
        stderr(&out).contains("probing 10 snapshots"),
        "{}",
        stderr(&out)
    );
    let (more, _) = abcond::store::tables::read_landscape(&landscape).unwrap();
    assert_eq!(more.len(), before.len() + 10);
    // Training settings cannot change at probe time.
    let out = abcond(&dir, &["probe", rd, "--set", "optim.lr=1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("only probe.* and device"),
        "{}",
        stderr(&out)
    );
}

/// Real Fashion-MNIST from the Debian package (installed by `./dev test`).
#[test]
fn real_fashion_mnist_short_run() {
    let real = Path::new("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
    assert!(
        real.exists(),
        "{} is missing: install the Debian package dataset-fashion-mnist (./dev test does)",
        real.display()
    );
    let dir = scratch("real-fmnist");
    let cfg = "experiment: real
seed: 0
device: cpu
model: {preset: mlp, width: 64}
data: {dataset: fashion-mnist, subset: 3000}
train: {batch_size: 64, epochs: 2}
optim: {name: sgd, lr: 0.09}
snapshots: {log_spaced: 8}
probe: {extra_batches: 1, full: true}
";
    let run_dir = run(&dir, cfg, &[]);
    let (steps, _) = abcond::store::tables::read_steps(&run_dir.join("steps.parquet")).unwrap();
    assert_eq!(steps.len(), 2 * (3000 / 64));
    // Learning happens on the real data: late losses well below the initial ln(10).
    let late: f64 = steps[steps.len() - 10..]
        .iter()
        .map(|r| r.loss)
        .sum::<f64>()
        / 10.0;
    assert!(
        steps[0].loss > 2.0 && late < 1.2,
        "first {} late {late}",
        steps[0].loss
    );
    let out = run_python("parity.py", &[run_dir.to_str().unwrap()]);
    assert!(out.contains("OK"), "{out}");
    let inspect = ok(&abcond(&dir, &["inspect", run_dir.to_str().unwrap()]));
    for needle in [
        "status      completed",
        "snapshots   ",
        "probe       ",
        "dataset: fashion-mnist",
    ] {
        assert!(inspect.contains(needle), "missing {needle:?} in\n{inspect}");
    }
}
