//! GPU checks of the reproducibility policy (src/torch/reproducibility.rs): bit
//! identical CUDA runs, CPU-vs-CUDA probes, the run.yaml record, bf16
//! autocast, device errors. Behind the cargo feature `cuda-tests`; every test
//! fails (never skips) without a CUDA device, so a skip cannot pass for a pass.
//!
//! Build (any machine with the project's libtorch, GPU or not):
//!   cargo test --release --features cuda-tests --test cuda --no-run
//! which prints the test binary `target/release/deps/cuda-<hash>`. Run it on a
//! GPU machine from the repository root, one test at a time:
//!   ABCOND_BIN=target/release/abcond ABCOND_PYTHON=python3 \
//!     target/release/deps/cuda-<hash> --test-threads=1 --nocapture
//! (scripts/gpu-check.sh step 3b does this with CUDA_TESTS=<that path>).
//! ABCOND_BIN, ABCOND_REPO (the checkout with tests/*.py; default the one
//! this was built from), ABCOND_TEST_TMPDIR and ABCOND_PYTHON override the
//! paths baked in at build time, so the binary runs on another machine.
#![cfg(feature = "cuda-tests")]

mod common;
use abcond::config::DatasetKind;
use abcond::store::tables;
use common::{write_cifar_fixture, write_idx_fixture};
use serde_yaml::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn require_cuda() {
    assert!(
        tch::Cuda::is_available(),
        "cuda-tests needs a CUDA device: libtorch sees none on this machine. These tests never skip; run them on a GPU machine (scripts/gpu-check.sh step 3b)"
    );
}

fn env_path(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

fn bin() -> PathBuf {
    let p = env_path("ABCOND_BIN", env!("CARGO_BIN_EXE_abcond"));
    std::path::absolute(&p).unwrap()
}

fn repo() -> PathBuf {
    env_path("ABCOND_REPO", env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    std::env::var_os("ABCOND_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"))
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let root = std::env::var_os("ABCOND_TEST_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("abcond-cuda-tests"));
    let d = root.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// abcond in `cwd` with `args`; CUBLAS_WORKSPACE_CONFIG is removed from the
/// environment unless `env` sets it, so that abcond's default is tested.
fn abcond_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin());
    c.current_dir(cwd)
        .env("OMP_NUM_THREADS", "1")
        .env_remove("CUBLAS_WORKSPACE_CONFIG")
        .args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("running abcond")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "abcond failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A script from tests/, with tests/ first on PYTHONPATH (the abcond_ref
/// package, as tests/common/mod.rs: python_cmd).
fn run_python(script: &str, args: &[&str]) -> String {
    let tests = repo().join("tests");
    let mut paths = vec![tests.clone()];
    if let Some(old) = std::env::var_os("PYTHONPATH") {
        paths.extend(std::env::split_paths(&old));
    }
    let out = Command::new(python())
        .arg(tests.join(script))
        .env(
            "PYTHONPATH",
            std::env::join_paths(paths).expect("PYTHONPATH"),
        )
        .args(args)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .expect("running python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{script} {args:?}:\n{text}");
    assert!(out.status.success(), "{script} {args:?} failed:\n{text}");
    text
}

/// A small config on CUDA: `model` and `data` are YAML flow mappings.
fn config(dir: &Path, name: &str, model: &str, data: &str, train_extra: &str) -> PathBuf {
    let text = format!(
        "experiment: {name}
seed: 4
device: cuda
model: {model}
data: {data}
train: {{batch_size: 16, steps: 24{train_extra}}}
optim: {{name: sgd, lr: 0.05, momentum: 0.9}}
snapshots: {{at: [1, 2, 3], every: 8}}
probe: {{extra_batches: 2, full_subset: 128, chunk_size: 64}}
"
    );
    let p = dir.join(format!("{name}.yaml"));
    std::fs::write(&p, text).unwrap();
    p
}

fn fmnist(dir: &Path) -> String {
    let d = dir.join("fmnist");
    write_idx_fixture(&d, 300);
    format!(
        "{{dataset: fashion-mnist, path: {}, subset: 256}}",
        d.display()
    )
}

fn cifar(dir: &Path) -> String {
    let d = dir.join("cifar10");
    write_cifar_fixture(&d, DatasetKind::Cifar10, 160);
    format!(
        "{{dataset: cifar10, path: {}, subset: 128, augment: crop-flip}}",
        d.display()
    )
}

/// `abcond run CONFIG` into `dir/<out>`; returns the run directory.
fn run(dir: &Path, out: &str, config: &Path, sets: &[&str]) -> PathBuf {
    let mut args = vec!["--quiet", "--out", out, "run", config.to_str().unwrap()];
    for s in sets {
        args.extend(["--set", s]);
    }
    ok(&abcond_env(dir, &args, &[]));
    let exp = dir.join(out).join(config.file_stem().unwrap());
    let mut runs: Vec<PathBuf> = std::fs::read_dir(&exp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("run.yaml").is_file())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs.pop().unwrap()
}

fn manifest(run: &Path) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(run.join("run.yaml")).unwrap()).unwrap()
}

/// Copies what a probe needs (not its results) of `run` into `to`.
fn copy_unprobed(run: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in ["run.yaml", "steps.parquet", "data.parquet", "iterates"] {
        let status = Command::new("cp")
            .arg("-r")
            .arg(run.join(entry))
            .arg(to)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// Every snapshot of a run: (step, tensor name) → bits of the values.
fn snapshot_bits(run: &Path) -> Vec<(String, Vec<u64>)> {
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(run.join("iterates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for d in dirs {
        let f = abcond::store::tensors::read(&d.join("part-0.parquet"), tch::Device::Cpu).unwrap();
        for t in &f.tensors {
            let v =
                Vec::<f64>::try_from(t.tensor.to_kind(tch::Kind::Double).reshape([-1])).unwrap();
            out.push((
                format!("{} {}", d.display(), t.name),
                v.iter().map(|x| x.to_bits()).collect(),
            ));
        }
    }
    out
}

/// (a) The same config trained and probed on CUDA by two processes gives the
/// same bits: steps, every snapshot, every landscape row. An MLP (cuBLAS), the
/// CNN (cuDNN convolutions, max-pool) and ResNet-18 (BatchNorm, global average
/// pool, crop-flip augmentation).
#[test]
fn cuda_runs_are_bit_identical_across_processes() {
    require_cuda();
    let dir = scratch("bit-identical");
    let cases = [
        ("mlp", "{preset: mlp, width: 32}".to_string(), fmnist(&dir)),
        ("cnn", "{preset: cnn, width: 16}".to_string(), fmnist(&dir)),
        ("resnet18", "{preset: resnet18}".to_string(), cifar(&dir)),
    ];
    for (name, model, data) in &cases {
        let cfg = config(&dir, name, model, data, "");
        let a = run(&dir, "first", &cfg, &[]);
        let b = run(&dir, "second", &cfg, &[]);
        let steps = |r: &Path| tables::read_steps(&r.join("steps.parquet")).unwrap().0;
        let land = |r: &Path| {
            tables::read_landscape(&r.join("landscape.parquet"))
                .unwrap()
                .0
        };
        // The row types compare floats with ==; NaN (cos at x^K) is not probed here.
        assert_eq!(steps(&a), steps(&b), "{name}: steps.parquet differs");
        let (sa, sb) = (snapshot_bits(&a), snapshot_bits(&b));
        assert_eq!(sa.len(), sb.len());
        for ((na, va), (_, vb)) in sa.iter().zip(&sb) {
            assert!(
                va == vb,
                "{name}: snapshot tensor {na} differs between the runs"
            );
        }
        let (la, lb) = (land(&a), land(&b));
        assert!(!la.is_empty());
        assert_eq!(la, lb, "{name}: landscape.parquet differs");
        assert_eq!(
            manifest(&a)["sessions"][0]["device"].as_str(),
            Some("cuda:0")
        );
        println!(
            "{name}: {} steps, {} snapshot tensors, {} landscape rows bit-identical",
            steps(&a).len(),
            sa.len(),
            la.len()
        );
    }
}

/// (b) The snapshots of a CUDA run probed on the CPU: f64 within 1e-10, f32
/// within 1e-4 (tests/compare_landscapes.py: relative errors of losses and
/// norms, inner products on the Cauchy–Schwarz scale ‖g‖‖x^k − x^K‖; the error
/// relative to |inner| is printed alongside).
#[test]
fn cpu_and_cuda_probes_of_the_same_snapshots_agree() {
    require_cuda();
    let dir = scratch("cpu-vs-cuda");
    let data = fmnist(&dir);
    for (name, model, tol) in [
        ("mlp64", "{preset: mlp, width: 32, dtype: f64}", "1e-10"),
        ("mlp32", "{preset: mlp, width: 32}", "1e-4"),
        ("cnn32", "{preset: cnn, width: 16}", "1e-4"),
    ] {
        let cfg = config(&dir, name, model, &data, "");
        let gpu = run(&dir, "out", &cfg, &[]);
        let cpu = dir.join(format!("{name}-cpu"));
        copy_unprobed(&gpu, &cpu);
        ok(&abcond_env(
            &dir,
            &[
                "--quiet",
                "probe",
                cpu.to_str().unwrap(),
                "--set",
                "device=cpu",
            ],
            &[],
        ));
        assert_eq!(manifest(&cpu)["probe"]["device"].as_str(), Some("cpu"));
        let out = run_python(
            "compare_landscapes.py",
            &[
                gpu.join("landscape.parquet").to_str().unwrap(),
                cpu.join("landscape.parquet").to_str().unwrap(),
                "--tol",
                tol,
            ],
        );
        assert!(out.contains("OK"), "{name}: {out}");
    }
}

/// The reproducibility block of a CUDA phase.
fn assert_cuda_block(block: &Value, tf32: bool, autocast: Option<&str>, cublas: (&str, &str)) {
    let expect = [
        ("deterministic_algorithms", Value::Bool(true)),
        ("cudnn_benchmark", Value::Bool(false)),
        ("cudnn_deterministic", Value::Bool(true)),
        ("allow_tf32_cublas", Value::Bool(tf32)),
        ("allow_tf32_cudnn", Value::Bool(tf32)),
        ("cublas_workspace_config", Value::String(cublas.0.into())),
        (
            "cublas_workspace_config_from",
            Value::String(cublas.1.into()),
        ),
    ];
    for (key, value) in expect {
        assert_eq!(block[key], value, "{key} in {block:?}");
    }
    assert_eq!(block["autocast"].as_str(), autocast, "{block:?}");
}

/// (c) run.yaml records the CUDA policy as libtorch reports it: TF32 only in
/// training and only with train.allow_tf32; the user's CUBLAS_WORKSPACE_CONFIG
/// is kept and recorded, a non-deterministic one refused.
#[test]
fn run_yaml_records_the_cuda_policy() {
    require_cuda();
    let dir = scratch("record");
    let data = fmnist(&dir);
    let cfg = config(&dir, "record", "{preset: mlp, width: 16}", &data, "");
    let m = manifest(&run(&dir, "plain", &cfg, &[]));
    let ours = (":4096:8", "abcond");
    assert_cuda_block(&m["sessions"][0]["reproducibility"], false, None, ours);
    assert_cuda_block(&m["probe"]["reproducibility"], false, None, ours);

    let m = manifest(&run(&dir, "tf32", &cfg, &["train.allow_tf32=true"]));
    assert_cuda_block(&m["sessions"][0]["reproducibility"], true, None, ours);
    assert_cuda_block(&m["probe"]["reproducibility"], false, None, ours);

    let args = ["--quiet", "--out", "env", "run", cfg.to_str().unwrap()];
    ok(&abcond_env(
        &dir,
        &args,
        &[("CUBLAS_WORKSPACE_CONFIG", ":16:8")],
    ));
    let run_dir = std::fs::read_dir(dir.join("env/record"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let m = manifest(&run_dir);
    assert_cuda_block(
        &m["sessions"][0]["reproducibility"],
        false,
        None,
        (":16:8", "environment"),
    );

    let args = ["--quiet", "--out", "bad", "run", cfg.to_str().unwrap()];
    let out = abcond_env(&dir, &args, &[("CUBLAS_WORKSPACE_CONFIG", ":0:0")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("CUBLAS_WORKSPACE_CONFIG=\":0:0\"") && err.contains(":4096:8 or :16:8"),
        "{err}"
    );
}

/// (d) bf16 autocast on CUDA: recorded for training, not for the probe; the
/// steps' losses differ from an f32 run's at the same x^0 and agree with
/// torch.autocast on the CPU to bf16 precision; the landscape agrees with
/// PyTorch in f32 to 1e-4 and equals, bit for bit, a probe of the same
/// snapshots by a run directory whose config lacks train.autocast.
#[test]
fn bf16_autocast_trains_on_cuda_and_the_probe_stays_in_f32() {
    require_cuda();
    let dir = scratch("autocast");
    let data = fmnist(&dir);
    let cfg = config(&dir, "autocast", "{preset: mlp, width: 32}", &data, "");
    let bf16 = run(&dir, "bf16", &cfg, &["train.autocast=bf16"]);
    let f32 = run(&dir, "f32", &cfg, &[]);
    let m = manifest(&bf16);
    let ours = (":4096:8", "abcond");
    assert_cuda_block(
        &m["sessions"][0]["reproducibility"],
        false,
        Some("bf16"),
        ours,
    );
    assert_cuda_block(&m["probe"]["reproducibility"], false, None, ours);

    let loss0 = |r: &Path| tables::read_steps(&r.join("steps.parquet")).unwrap().0[0].loss;
    let (a, b) = (loss0(&bf16), loss0(&f32));
    let rel = (a - b).abs() / b.abs();
    println!("step 0 loss: bf16 autocast {a:.9} vs f32 {b:.9} (rel diff {rel:.2e})");
    assert!(rel > 1e-6, "autocast did not change the loss at x^0");
    assert!(rel < 2e-2, "autocast moved the loss at x^0 by {rel:.2e}");

    let out = run_python(
        "parity.py",
        &[
            bf16.to_str().unwrap(),
            "--tol",
            "1e-4",
            "--autocast-tol",
            "2e-2",
        ],
    );
    assert!(out.contains("OK"), "{out}");

    let snap = abcond::store::tensors::read(
        &bf16.join("iterates/step=3/part-0.parquet"),
        tch::Device::Cpu,
    )
    .unwrap();
    assert!(snap
        .tensors
        .iter()
        .all(|t| t.tensor.kind() == tch::Kind::Float));

    let copy = dir.join("stripped");
    copy_unprobed(&bf16, &copy);
    let mut m = manifest(&copy);
    assert!(m["config"]["train"]
        .as_mapping_mut()
        .unwrap()
        .remove("autocast")
        .is_some());
    // As an older abcond wrote it: the format before run.yaml's checksum line.
    m["format"] = serde_yaml::Value::from("abcond.run/1");
    std::fs::write(copy.join("run.yaml"), serde_yaml::to_string(&m).unwrap()).unwrap();
    ok(&abcond_env(
        &dir,
        &["--quiet", "probe", copy.to_str().unwrap()],
        &[],
    ));
    let land = |r: &Path| {
        tables::read_landscape(&r.join("landscape.parquet"))
            .unwrap()
            .0
    };
    assert_eq!(
        land(&bf16),
        land(&copy),
        "the probe depends on train.autocast"
    );
}

/// (e) A CUDA index beyond the machine's devices is a clear error.
#[test]
fn a_missing_cuda_device_is_a_clear_error() {
    require_cuda();
    let dir = scratch("cuda99");
    let data = fmnist(&dir);
    let cfg = config(&dir, "cuda99", "{preset: mlp, width: 16}", &data, "");
    let args = [
        "--out",
        "out",
        "train",
        cfg.to_str().unwrap(),
        "--set",
        "device=cuda:99",
    ];
    let out = abcond_env(&dir, &args, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let n = tch::Cuda::device_count();
    assert!(
        err.contains(&format!(
            "device \"cuda:99\" was asked for, but this machine has {n} CUDA device(s): cuda:0..cuda:{}",
            n - 1
        )),
        "{err}"
    );
}

/// csrc/ops.cpp on CUDA: the f64 squared norm (2^22-value pieces, a dot
/// product into a slot of a CUDA tensor) equals the CPU's to rounding, and
/// `_foreach_add_` (multi-tensor kernels on CUDA) agrees with `add_` tensor
/// by tensor.
#[test]
fn hot_path_ops_on_cuda() {
    use abcond::torch::ops::{add_scaled, foreach_add_, norm_sq};
    use tch::{Device, Kind, Tensor};
    require_cuda();
    let cuda = Device::Cuda(0);
    tch::manual_seed(3);
    let shapes: [&[i64]; 4] = [&[5_000_000], &[300, 170], &[170], &[7, 3, 5]];
    let cpu: Vec<Tensor> = shapes
        .iter()
        .map(|s| Tensor::randn(*s, (Kind::Float, Device::Cpu)))
        .collect();
    let gpu: Vec<Tensor> = cpu.iter().map(|t| t.to_device(cuda)).collect();
    let (a, b) = (abcond::torch::reduce::norm_sq(&cpu), norm_sq(&gpu, 1 << 22));
    assert!((a - b).abs() <= 1e-12 * a, "CPU {a} vs CUDA {b}");
    let dirs: Vec<Tensor> = gpu.iter().map(|t| t.sin()).collect();
    let one_by_one: Vec<Tensor> = gpu
        .iter()
        .zip(&dirs)
        .map(|(p, d)| add_scaled(p, d, -0.03))
        .collect();
    let together: Vec<Tensor> = gpu.iter().map(Tensor::copy).collect();
    foreach_add_(&together, &dirs, -0.03);
    // The same arithmetic (one rounding of a + alpha·b) in other kernels:
    // equal to within one rounding, usually bit for bit (printed).
    let mut identical = true;
    for (t, o) in together.iter().zip(&one_by_one) {
        identical &= t.equal(o);
        assert!(
            t.allclose(o, 1e-6, 1e-7, false),
            "_foreach_add_ differs from add_ on CUDA"
        );
    }
    eprintln!("_foreach_add_ vs add_ on CUDA: bit-identical = {identical}");
}
