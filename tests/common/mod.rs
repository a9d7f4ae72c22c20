//! Shared helpers of the integration tests: a scratch directory, the abcond
//! binary, tiny IDX fixtures in the real Fashion-MNIST format, and the
//! project's Python (the venv that `./dev test` creates).
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_abcond")
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("abcond-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An abcond command in `cwd`. One intra-op thread: tests run in parallel on
/// small machines, where OpenMP threads of several processes would contend.
pub fn cmd(cwd: &Path) -> Command {
    let mut c = Command::new(bin());
    c.current_dir(cwd).env("OMP_NUM_THREADS", "1");
    c
}

/// Runs abcond with `args` in `cwd`.
pub fn abcond(cwd: &Path, args: &[&str]) -> Output {
    cmd(cwd).args(args).output().expect("running abcond")
}

pub fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "abcond failed ({:?})\nstdout:\n{stdout}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// The project's Python interpreter with torch, pyarrow, polars, pandas, duckdb.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("ABCOND_PYTHON") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run the test suite with `./dev test`, which creates the venv (or set ABCOND_PYTHON)",
        p.display()
    );
    p
}

/// A command running the project's Python with tests/ first on PYTHONPATH, so
/// that `import abcond_ref` (tests/abcond_ref/, the shared reference package)
/// works in scripts and `-c` code alike: the one place the tests set it.
pub fn python_cmd() -> Command {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut paths = vec![tests];
    if let Some(old) = std::env::var_os("PYTHONPATH") {
        paths.extend(std::env::split_paths(&old));
    }
    let mut c = Command::new(python());
    c.env(
        "PYTHONPATH",
        std::env::join_paths(paths).expect("PYTHONPATH"),
    );
    c
}

/// Runs Python code with the project's interpreter; returns stdout.
pub fn py(code: &str, args: &[&str]) -> String {
    let out = python_cmd()
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .expect("running python");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "python failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Runs a Python script from tests/ with arguments; panics with its output on failure.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(script);
    let out = python_cmd()
        .arg(&path)
        .args(args)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .expect("running python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script} {args:?} failed:\n{text}");
    text
}

/// A small deterministic generator for fixtures (not abcond's).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
}

/// Writes a learnable Fashion-MNIST-format training set of `n` 28×28 images
/// into `dir` (images gzipped, labels raw): class c has a bright band at rows
/// 2c..2c+3 on top of noise.
pub fn write_idx_fixture(dir: &Path, n: usize) {
    write_idx_split(dir, n, "train", 12345);
}

/// [`write_idx_fixture`]'s held-out test split: `t10k-*` files of `n` other
/// images of the same classes.
pub fn write_idx_test_fixture(dir: &Path, n: usize) {
    write_idx_split(dir, n, "t10k", 777);
}

fn write_idx_split(dir: &Path, n: usize, split: &str, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = Lcg(seed);
    let mut pixels = Vec::with_capacity(n * 784);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let c = (rng.next() % 10) as usize;
        labels.push(c as u8);
        for r in 0..28 {
            for _ in 0..28 {
                let noise = (rng.next() % 120) as u8;
                let band = if r >= 2 * c && r < 2 * c + 3 { 120 } else { 0 };
                pixels.push(noise + band);
            }
        }
    }
    let images = abcond::data::idx::encode_u8(&[n, 28, 28], &pixels);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&images).unwrap();
    std::fs::write(
        dir.join(format!("{split}-images-idx3-ubyte.gz")),
        gz.finish().unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{split}-labels-idx1-ubyte")),
        abcond::data::idx::encode_u8(&[n], &labels),
    )
    .unwrap();
}

/// Writes `text` as a config file and returns its path.
pub fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The single run directory under `<out>/<experiment>/`.
pub fn run_dir(out: &Path, experiment: &str) -> PathBuf {
    let exp = out.join(experiment);
    let dirs: Vec<PathBuf> = std::fs::read_dir(&exp)
        .unwrap_or_else(|e| panic!("{}: {e}", exp.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

/// Reads a tensor file into (name → f64 values) for comparisons.
pub fn read_values(path: &Path) -> Vec<(String, Vec<f64>)> {
    let f = abcond::store::tensors::read(path, tch::Device::Cpu).unwrap();
    f.tensors
        .iter()
        .map(|t| {
            let v =
                Vec::<f64>::try_from(t.tensor.to_kind(tch::Kind::Double).reshape([-1])).unwrap();
            (t.name.clone(), v)
        })
        .collect()
}

/// Byte contents of every file under `dir` (for "nothing else changed" checks).
pub fn tree(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    fn walk(d: &Path, out: &mut std::collections::BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    walk(dir, &mut out);
    out
}

/// Writes a learnable CIFAR training set of `n` images in the exact binary
/// format into `dir`: CIFAR-10 as data_batch_1..5.bin (3073-byte records, the
/// n images split over the five files), CIFAR-100 as train.bin (3074-byte
/// records, coarse label fine/5). Class c brightens channel c mod 3 in a band of
/// rows on top of noise.
pub fn write_cifar_fixture(dir: &Path, kind: abcond::config::DatasetKind, n: usize) {
    use abcond::config::DatasetKind;
    use abcond::data::cifar;
    std::fs::create_dir_all(dir).unwrap();
    let classes = if kind == DatasetKind::Cifar100 {
        100
    } else {
        10
    };
    let mut rng = Lcg(777);
    let mut labels = Vec::with_capacity(n);
    let mut pixels = Vec::with_capacity(n * cifar::PIXELS);
    for _ in 0..n {
        let c = (rng.next() % classes) as usize;
        labels.push(c as u8);
        for ch in 0..3 {
            for r in 0..32 {
                for _ in 0..32 {
                    let noise = (rng.next() % 128) as u8;
                    let band = ch == c % 3 && r >= (c % 10) * 3 && r < (c % 10) * 3 + 4;
                    pixels.push(noise + if band { 100 } else { 0 });
                }
            }
        }
    }
    let files = cifar::train_files(kind);
    let per = n.div_ceil(files.len());
    for (j, f) in files.iter().enumerate() {
        let (lo, hi) = ((j * per).min(n), ((j + 1) * per).min(n));
        let bytes = cifar::encode(
            kind,
            &labels[lo..hi],
            &pixels[lo * cifar::PIXELS..hi * cifar::PIXELS],
        );
        std::fs::write(dir.join(f), bytes).unwrap();
    }
}

/// Writes, for a PyTorch reference to recompute, the loss and the whole
/// gradient of `model` (holding x^K) on the minibatch `indices` of `data`,
/// measured as the probe measures: `indices`, `loss` and `grad.<name>` of
/// every tensor, as an .npz file at `path`.
pub fn write_grad_cases(
    model: &abcond::model::Model,
    data: &abcond::data::Dataset,
    indices: &[i64],
    path: &Path,
) {
    use tch::{Kind, Tensor};
    let batch = data.batch(indices);
    model.zero_grad();
    let loss = model.loss(
        &batch,
        abcond::model::Mode::Measure(abcond::config::BatchNormPolicy::BatchStats),
    );
    loss.backward();
    let mut out: Vec<(String, Tensor)> = vec![
        ("indices".into(), Tensor::from_slice(indices)),
        ("loss".into(), loss.detach().to_kind(Kind::Double)),
    ];
    for t in model.tensors() {
        assert_eq!(t.role, abcond::store::tensors::Role::Param, "{}", t.name);
        out.push((format!("grad.{}", t.name), t.tensor.grad().copy()));
    }
    Tensor::write_npz(&out, path).unwrap();
}

/// The CPU's vendor (`vendor_id` of /proc/cpuinfo: GenuineIntel, AuthenticAMD):
/// pins of f32 results are kept per vendor, whose kernels round differently.
pub fn cpu_vendor() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("vendor_id"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Waits until the run of experiment `exp` under `out` trains (its step-0
/// snapshot exists; at most 60 s), then 300 ms longer, so that a signal sent
/// next arrives mid-training.
pub fn wait_training(out: &Path, exp: &str) {
    let t0 = std::time::Instant::now();
    while !std::fs::read_dir(out.join(exp))
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.path().join("iterates/step=0").exists())
    {
        assert!(t0.elapsed().as_secs() < 60, "no training after 60 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
}
