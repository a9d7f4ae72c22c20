//! The reproducibility record in run.yaml, bf16 autocast training and the
//! device errors, as far as a CPU shows them (src/torch/reproducibility.rs), and
//! results that do not depend on the CPU block cache (csrc/cpu_cache.cpp). The
//! CUDA side is tests/cuda.rs (cargo feature `cuda-tests`).

mod common;
use common::*;
use serde_yaml::Value;
use std::path::{Path, PathBuf};

fn config(data: &Path, extra_train: &str) -> String {
    format!(
        "experiment: repro
seed: 2
device: cpu
model: {{preset: mlp, width: 16}}
data: {{dataset: fashion-mnist, path: {}, subset: 256}}
train: {{batch_size: 16, steps: 30{extra_train}}}
optim: {{name: sgd, lr: 0.05}}
snapshots: {{at: [1, 2, 3], log_spaced: 5}}
probe: {{extra_batches: 1, full_subset: 128}}
",
        data.display()
    )
}

/// Trains and probes `text` in `dir/out`; returns the run directory.
fn run(dir: &Path, text: &str) -> PathBuf {
    let cfg = write_config(dir, "config.yaml", text);
    ok(&abcond(
        dir,
        &["--quiet", "--out", "out", "run", cfg.to_str().unwrap()],
    ));
    run_dir(&dir.join("out"), "repro")
}

fn manifest(run: &Path) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(run.join("run.yaml")).unwrap()).unwrap()
}

/// The block of a CPU phase: libtorch's default (no deterministic
/// algorithms), CUDA-only settings present as null, one intra-op thread (the
/// tests set OMP_NUM_THREADS=1).
fn assert_cpu_block(block: &Value, autocast: Option<&str>) {
    let m = block.as_mapping().expect("a reproducibility mapping");
    assert_eq!(
        block["deterministic_algorithms"],
        Value::Bool(false),
        "{m:?}"
    );
    for key in [
        "cudnn_benchmark",
        "cudnn_deterministic",
        "allow_tf32_cublas",
        "allow_tf32_cudnn",
        "cublas_workspace_config",
        "cublas_workspace_config_from",
    ] {
        assert!(
            m.get(key).is_some_and(Value::is_null),
            "{key} must be present and null on the CPU: {m:?}"
        );
    }
    assert_eq!(block["autocast"].as_str(), autocast, "{m:?}");
    assert_eq!(block["cpu_threads"].as_i64(), Some(1), "{m:?}");
}

#[test]
fn run_yaml_records_the_cpu_settings() {
    let dir = scratch("repro-record");
    write_idx_fixture(&dir.join("fmnist"), 300);
    let run = run(&dir, &config(&dir.join("fmnist"), ""));
    let m = manifest(&run);
    assert_cpu_block(&m["sessions"][0]["reproducibility"], None);
    assert_cpu_block(&m["probe"]["reproducibility"], None);
}

/// bf16 autocast on the CPU: the training steps match torch.autocast("cpu",
/// bfloat16) (tests/parity.py: the steps' losses and a 3-step replay, to
/// 1e-6, while autocast moves the loss by ~1e-4), the probe rows match
/// PyTorch in plain f32 to 1e-5 and equal, bit for bit, a probe of the same
/// snapshots by a run directory whose config never had `train.autocast`.
#[test]
fn bf16_autocast_trains_in_bf16_and_probes_in_f32() {
    let dir = scratch("repro-autocast");
    write_idx_fixture(&dir.join("fmnist"), 300);
    let text = config(&dir.join("fmnist"), ", autocast: bf16");
    let run = run(&dir, &text);
    let m = manifest(&run);
    assert_eq!(m["config"]["train"]["autocast"].as_str(), Some("bf16"));
    assert_cpu_block(&m["sessions"][0]["reproducibility"], Some("bf16"));
    assert_cpu_block(&m["probe"]["reproducibility"], None);

    let out = run_python(
        "parity.py",
        &[run.to_str().unwrap(), "--autocast-tol", "1e-6"],
    );
    assert!(
        out.contains("OK") && out.contains("bf16 autocast training, replayed 3 steps"),
        "{out}"
    );

    // Snapshots stay in the model dtype.
    let snap = abcond::store::tensors::read(
        &run.join("iterates/step=3/part-0.parquet"),
        tch::Device::Cpu,
    )
    .unwrap();
    assert!(snap
        .tensors
        .iter()
        .all(|t| t.tensor.kind() == tch::Kind::Float));

    // The same snapshots probed by a run whose config lacks the key.
    let copy = dir.join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in ["run.yaml", "steps.parquet", "data.parquet", "iterates"] {
        let status = std::process::Command::new("cp")
            .args(["-r"])
            .arg(run.join(entry))
            .arg(&copy)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let mut m = manifest(&copy);
    let train = m["config"]["train"].as_mapping_mut().unwrap();
    assert!(train.remove("autocast").is_some());
    // As an older abcond wrote it: the format before run.yaml's checksum line.
    m["format"] = serde_yaml::Value::from("abcond.run/1");
    std::fs::write(copy.join("run.yaml"), serde_yaml::to_string(&m).unwrap()).unwrap();
    ok(&abcond(&dir, &["--quiet", "probe", copy.to_str().unwrap()]));
    let (a, _) = abcond::store::tables::read_landscape(&run.join("landscape.parquet")).unwrap();
    let (b, _) = abcond::store::tables::read_landscape(&copy.join("landscape.parquet")).unwrap();
    assert!(!a.is_empty());
    assert_eq!(a, b, "the probe must not depend on train.autocast");
}

/// Device strings: unknown ones, and CUDA where libtorch sees none (or too
/// few devices), fail before anything is trained, naming the device.
#[test]
fn device_errors_are_clear() {
    let dir = scratch("repro-device");
    write_idx_fixture(&dir.join("fmnist"), 300);
    let cfg = write_config(&dir, "config.yaml", &config(&dir.join("fmnist"), ""));
    let train = |device: &str| {
        let out = abcond(
            &dir,
            &[
                "--out",
                "out",
                "train",
                cfg.to_str().unwrap(),
                "--set",
                &format!("device={device}"),
            ],
        );
        assert_eq!(out.status.code(), Some(1), "device {device}");
        stderr(&out)
    };
    let msg = train("gpu");
    assert!(
        msg.contains("key `device`")
            && msg.contains("expected auto, cpu, cuda or cuda:N, got \"gpu\""),
        "{msg}"
    );
    let msg = train("cuda:99");
    if tch::Cuda::is_available() {
        assert!(
            msg.contains("device \"cuda:99\" was asked for, but this machine has"),
            "{msg}"
        );
    } else {
        assert!(
            msg.contains("device \"cuda:99\" was asked for, but CUDA is not available here"),
            "{msg}"
        );
        let msg = train("cuda");
        assert!(
            msg.contains("device \"cuda\" was asked for, but CUDA is not available here (libtorch sees no GPU); use device: cpu or auto"),
            "{msg}"
        );
    }
    assert!(
        !dir.join("out/repro").exists()
            || std::fs::read_dir(dir.join("out/repro")).unwrap().all(|e| !e
                .unwrap()
                .path()
                .join("steps.parquet")
                .exists()),
        "nothing was trained"
    );
}

/// Training and probing with and without the cache: bit-identical steps,
/// snapshots and landscape rows (an MLP wide enough for 1 MiB blocks:
/// weights, gradients, momentum buffers and activations).
#[test]
fn abcond_results_do_not_depend_on_the_cache() {
    let tmp = scratch("cpu-cache");
    write_idx_fixture(&tmp.join("data"), 256);
    let cfg = write_config(
        &tmp,
        "exp.yaml",
        &format!(
            "experiment: cache
seed: 5
device: cpu
model: {{preset: mlp, width: 640, dtype: f32}}
data: {{dataset: fashion-mnist, path: {}}}
train: {{batch_size: 128, steps: 12}}
optim: {{name: sgd, lr: 0.05, momentum: 0.9}}
snapshots: {{every: 4}}
probe: {{extra_batches: 1, full: true}}
",
            tmp.join("data").display()
        ),
    );
    let mut dirs = Vec::new();
    for cache in ["1", "0"] {
        let out = tmp.join(format!("out-{cache}"));
        let o = cmd(&tmp)
            .env("ABCOND_CPU_CACHE", cache)
            .args([
                "--quiet",
                "--out",
                out.to_str().unwrap(),
                "run",
                cfg.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        ok(&o);
        dirs.push(run_dir(&out, "cache"));
    }
    for k in [0, 4, 8, 12] {
        let f = format!("iterates/step={k}/part-0.parquet");
        assert_eq!(
            read_values(&dirs[0].join(&f)),
            read_values(&dirs[1].join(&f)),
            "{f}"
        );
    }
    // Every column of the step rows (but the clock) and the landscape rows,
    // value for value.
    let same = py(
        "import sys, pyarrow.parquet as pq
for f in ['steps.parquet', 'landscape.parquet']:
    a, b = (pq.read_table(d + '/' + f) for d in sys.argv[1:3])
    # wall_time_s is the clock, the one column that must differ between runs.
    if 'wall_time_s' in a.column_names:
        a, b = (t.drop_columns(['wall_time_s']) for t in (a, b))
    assert a.num_rows > 0 and a.equals(b), f
print('same')",
        &[dirs[0].to_str().unwrap(), dirs[1].to_str().unwrap()],
    );
    assert_eq!(same.trim(), "same");
}
