//! The user's own PyTorch model (`model.kind: torchscript`) and data
//! (`data.dataset: tensors`), against independent references: the paper MLP
//! written in PyTorch (tests/abcond_ref) and exported as TorchScript trains
//! and probes bit-identically to abcond's native `preset: mlp` from the same
//! x^0; every landscape row of TorchScript runs (with and without BatchNorm,
//! SGD with momentum, Adam) is recomputed with autograd and the first steps
//! replayed with torch.optim (tests/check_torchscript.py); bad modules and
//! tensor files are refused with the file named and nothing left behind.

mod common;
use common::*;
use std::path::{Path, PathBuf};

const NATIVE: &str = "experiment: native
seed: 3
device: cpu
model: {preset: mlp, width: 16}
data: {dataset: fashion-mnist, path: FMNIST, subset: 200}
train: {batch_size: 20, steps: 40, checkpoint_every: 10}
optim: {name: sgd, lr: 0.05}
snapshots: {every: 10, at: [1, 2, 3, 4, 5]}
probe: {extra_batches: 1, full: true, curvature: {enabled: true, iterations: 20}}
analysis: {plots: false}
";

/// A native MLP run and the TorchScript modules and tensor files made from
/// it (tests/make_torchscript.py): the scratch dir, the run, the artefacts.
fn setup(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = scratch(name);
    write_idx_fixture(&dir.join("fmnist"), 300);
    let native = NATIVE.replace("FMNIST", dir.join("fmnist").to_str().unwrap());
    write_config(&dir, "native.yaml", &native);
    ok(&abcond(&dir, &["-q", "--out", "out", "run", "native.yaml"]));
    let run = run_dir(&dir.join("out"), "native");
    let art = dir.join("art");
    run_python(
        "make_torchscript.py",
        &[run.to_str().unwrap(), art.to_str().unwrap()],
    );
    (dir, run, art)
}

/// The native config with the model (and data) replaced.
fn variant(dir: &Path, name: &str, model: &str, data: Option<&str>, extra: &str) -> PathBuf {
    let mut text = NATIVE
        .replace("FMNIST", dir.join("fmnist").to_str().unwrap())
        .replace("experiment: native", &format!("experiment: {name}"))
        .replace(
            "model: {preset: mlp, width: 16}",
            &format!("model: {model}"),
        );
    if let Some(d) = data {
        text = text.replace(
            &format!(
                "data: {{dataset: fashion-mnist, path: {}, subset: 200}}",
                dir.join("fmnist").display()
            ),
            &format!("data: {d}"),
        );
    }
    text.push_str(extra);
    write_config(dir, &format!("{name}.yaml"), &text)
}

fn landscape(run: &Path) -> Vec<abcond::store::tables::LandscapeRow> {
    abcond::store::tables::read_landscape(&run.join("landscape.parquet"))
        .unwrap()
        .0
}

/// The `model:` value of a TorchScript module file.
fn module(path: &Path) -> String {
    format!("{{kind: torchscript, path: {}}}", path.display())
}

/// The `data:` value of a tensor file.
fn tensors(path: &Path) -> String {
    format!("{{dataset: tensors, path: {}}}", path.display())
}

/// Replaces `from` (which must occur) by `to` in the config file `cfg`.
fn edit(cfg: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(cfg).unwrap();
    assert!(text.contains(from), "`{from}` not in {}", cfg.display());
    std::fs::write(cfg, text.replace(from, to)).unwrap();
}

/// Same snapshots (bit for bit) and same landscape rows.
fn same_run(a: &Path, b: &Path) {
    for k in [0, 1, 5, 10, 20, 30, 40] {
        let f = format!("iterates/step={k}/part-0.parquet");
        assert_eq!(
            read_values(&a.join(&f)),
            read_values(&b.join(&f)),
            "{f}: {} vs {}",
            a.display(),
            b.display()
        );
    }
    same_rows(&landscape(a), &landscape(b));
    // The Hessian eigenvalues too (Lanczos on Hessian-vector products).
    let curvature = |r: &Path| {
        abcond::store::tables::read_curvature(&r.join("curvature.parquet"))
            .unwrap()
            .0
            .into_iter()
            .map(|c| (c.step, c.eigenvalue.to_bits()))
            .collect::<Vec<_>>()
    };
    assert_eq!(curvature(a), curvature(b), "curvature differs");
}

/// The same measurements, bit for bit (run ids and names aside).
fn same_rows(
    la: &[abcond::store::tables::LandscapeRow],
    lb: &[abcond::store::tables::LandscapeRow],
) {
    assert_eq!(la.len(), lb.len());
    for (x, y) in la.iter().zip(lb) {
        for (what, u, v) in [
            ("loss_k", x.loss_k, y.loss_k),
            ("loss_ref", x.loss_ref, y.loss_ref),
            ("inner", x.inner, y.inner),
            ("grad_norm", x.grad_norm, y.grad_norm),
            ("dist", x.dist, y.dist),
        ] {
            assert_eq!(
                u.to_bits(),
                v.to_bits(),
                "{what} at step {}: {u} vs {v}",
                x.step
            );
        }
        assert_eq!(
            (x.step, x.probe, &x.batch_indices),
            (y.step, y.probe, &y.batch_indices)
        );
    }
}

#[test]
fn torchscript_mlp_equals_the_native_preset_and_pytorch() {
    let (dir, native, art) = setup("torchscript-parity");
    let mlp = module(&art.join("mlp.pt"));

    // The same model as a TorchScript module, on the same (native) data.
    let cfg = variant(&dir, "ts", &mlp, None, "");
    ok(&abcond(
        &dir,
        &["-q", "--out", "out", "run", cfg.to_str().unwrap()],
    ));
    let ts = run_dir(&dir.join("out"), "ts");
    same_run(&native, &ts);

    // The data as a tensor file: safetensors (order from its metadata), .npz.
    for (name, file) in [("st", "data.safetensors"), ("npz", "data.npz")] {
        let data = tensors(&art.join(file));
        let cfg = variant(&dir, name, &mlp, Some(&data), "");
        ok(&abcond(
            &dir,
            &["-q", "--out", "out", "run", cfg.to_str().unwrap()],
        ));
        same_run(&ts, &run_dir(&dir.join("out"), name));
    }
    let st = run_dir(&dir.join("out"), "st");
    let manifest = std::fs::read_to_string(st.join("run.yaml")).unwrap();
    assert!(manifest.contains("digest: xxh64:"), "{manifest}");

    // Independent: every row recomputed with autograd, 5 steps replayed.
    for run in [&ts, &st] {
        let out = run_python("check_torchscript.py", &[run.to_str().unwrap()]);
        assert!(out.contains("replayed 5 steps"), "{out}");
    }

    // BatchNorm (buffers in the snapshots, batch statistics while probing),
    // with SGD momentum; then Adam on the MLP.
    let data = tensors(&art.join("data.safetensors"));
    let bn = module(&art.join("bn.pt"));
    let cfg = variant(&dir, "bn", &bn, Some(&data), "");
    edit(&cfg, "lr: 0.05}", "lr: 0.05, momentum: 0.9}");
    ok(&abcond(
        &dir,
        &["-q", "--out", "out", "run", cfg.to_str().unwrap()],
    ));
    let bn_run = run_dir(&dir.join("out"), "bn");
    let names: Vec<String> = read_values(&bn_run.join("iterates/step=10/part-0.parquet"))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(names.contains(&"bn.running_mean".to_string()), "{names:?}");
    let out = run_python("check_torchscript.py", &[bn_run.to_str().unwrap()]);
    assert!(
        out.contains("train mode True") && out.contains("replayed 5 steps"),
        "{out}"
    );
    let cfg = variant(&dir, "adam", &mlp, Some(&data), "");
    edit(&cfg, "{name: sgd, lr: 0.05}", "{name: adam, lr: 0.001}");
    ok(&abcond(
        &dir,
        &["-q", "--out", "out", "run", cfg.to_str().unwrap()],
    ));
    let out = run_python(
        "check_torchscript.py",
        &[run_dir(&dir.join("out"), "adam").to_str().unwrap()],
    );
    assert!(out.contains("replayed 5 steps"), "{out}");

    // BatchNorm with dropout cannot be measured on batch statistics.
    let drop = module(&art.join("bndrop.pt"));
    let cfg = variant(&dir, "drop", &drop, Some(&data), "");
    let out = abcond(&dir, &["-q", "--out", "out", "run", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("running-stats"), "{}", stderr(&out));

    // A sweep of TorchScript runs; a probe sharded in two equals one probe.
    let cfg = variant(
        &dir,
        "sweep",
        &mlp,
        Some(&data),
        "sweep: {optim.lr: [0.05, 0.1]}\n",
    );
    ok(&abcond(
        &dir,
        &["-q", "--out", "out", "run", cfg.to_str().unwrap(), "--all"],
    ));
    let cfg = variant(&dir, "shard", &mlp, Some(&data), "");
    ok(&abcond(
        &dir,
        &["-q", "--out", "out", "train", cfg.to_str().unwrap()],
    ));
    let shard = run_dir(&dir.join("out"), "shard");
    for s in ["0/2", "1/2"] {
        ok(&abcond(
            &dir,
            &["-q", "probe", shard.to_str().unwrap(), "--shard", s],
        ));
    }
    ok(&abcond(&dir, &["-q", "probe", shard.to_str().unwrap()]));
    same_rows(&landscape(&shard), &landscape(&st));
}

#[test]
fn bad_modules_and_tensor_files_are_refused_clearly() {
    let (dir, _, art) = setup("torchscript-bad");
    let art_module = |f: &str| module(&art.join(f));
    let art_tensors = |f: &str| tensors(&art.join(f));
    let cases: Vec<(String, Option<String>, Vec<&str>)> = vec![
        (
            art_module("scalar.pt"),
            None,
            vec!["scalar.pt", "shape []", "per-example"],
        ),
        (
            art_module("noparams.pt"),
            None,
            vec!["noparams.pt", "no parameters"],
        ),
        (
            art_module("plain.pt"),
            None,
            vec!["plain.pt", "abcond_info", "abcond.export"],
        ),
        (
            art_module("missing.pt"),
            None,
            vec!["missing.pt", "does not exist"],
        ),
        (
            art_module("mlp.pt"),
            Some(art_tensors("short.safetensors")),
            vec!["short.safetensors", "disagree in length", "197"],
        ),
        (
            art_module("mlp.pt"),
            Some(art_tensors("intx.safetensors")),
            vec!["mlp.pt", "Int", "same dtype"],
        ),
        (
            art_module("mlp.pt"),
            Some(art_tensors("unordered.safetensors")),
            vec!["unordered.safetensors", "data.inputs"],
        ),
        (
            art_module("mlp.pt"),
            Some(art_tensors("absent.npz")),
            vec!["absent.npz"],
        ),
        (
            "{preset: mlp, width: 16}".to_string(),
            Some(art_tensors("data.safetensors")),
            vec!["dataset `tensors`", "torchscript"],
        ),
    ];
    for (i, (m, d, want)) in cases.iter().enumerate() {
        let name = format!("bad{i}");
        let cfg = variant(&dir, &name, m, d.as_deref(), "");
        let out = abcond(
            &dir,
            &["-q", "--out", "bad", "train", cfg.to_str().unwrap()],
        );
        assert_eq!(out.status.code(), Some(1), "case {i}: {}", stderr(&out));
        let err = stderr(&out);
        for w in want {
            assert!(err.contains(w), "case {i}: `{w}` not in:\n{err}");
        }
        assert!(!err.contains("frame #"), "case {i}: C++ frames in:\n{err}");
        assert!(!err.contains("panicked"), "case {i}:\n{err}");
        assert!(!dir.join("bad").exists(), "case {i} left a run directory");
    }
    // Named inputs choose the order of an unordered file.
    let cfg = variant(
        &dir,
        "named",
        &art_module("mlp.pt"),
        Some(&format!(
            "{{dataset: tensors, path: {}, inputs: [x, y]}}",
            art.join("unordered.safetensors").display()
        )),
        "",
    );
    ok(&abcond(
        &dir,
        &["-q", "--out", "out", "train", cfg.to_str().unwrap()],
    ));

    // A module file changed after training: the probe refuses it.
    let own = dir.join("own.pt");
    std::fs::copy(art.join("mlp.pt"), &own).unwrap();
    let cfg = variant(&dir, "changed", &module(&own), None, "");
    ok(&abcond(
        &dir,
        &["-q", "--out", "out", "train", cfg.to_str().unwrap()],
    ));
    std::fs::copy(art.join("bn.pt"), &own).unwrap();
    let run = run_dir(&dir.join("out"), "changed");
    let out = abcond(&dir, &["-q", "probe", run.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("changed since"), "{}", stderr(&out));
}

/// A TorchScript run killed at step 25 resumes from its checkpoint (with the
/// optimiser's momentum and BatchNorm's running statistics) to exactly the
/// uninterrupted run; a lost snapshot is re-created by `--repair`.
#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs the crash hook (feature test-hooks)"
)]
fn a_killed_torchscript_run_resumes_bit_identical() {
    let (dir, _, art) = setup("torchscript-resume");
    let data = tensors(&art.join("data.safetensors"));
    let bn = module(&art.join("bn.pt"));
    let cfg = variant(&dir, "bn", &bn, Some(&data), "");
    edit(&cfg, "lr: 0.05}", "lr: 0.05, momentum: 0.9}");
    let cfg = cfg.to_str().unwrap();
    ok(&abcond(&dir, &["-q", "--out", "ref", "train", cfg]));
    let status = cmd(&dir)
        .args(["-q", "--out", "crash", "train", cfg])
        .env("ABCOND_CRASH_AT", "step:25")
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the crash hook did not fire");
    ok(&abcond(&dir, &["-q", "--out", "crash", "train", cfg]));
    let (a, b) = (
        run_dir(&dir.join("ref"), "bn"),
        run_dir(&dir.join("crash"), "bn"),
    );
    for k in [30, 40] {
        let f = format!("iterates/step={k}/part-0.parquet");
        assert_eq!(read_values(&a.join(&f)), read_values(&b.join(&f)), "{f}");
    }
    // A lost snapshot re-created by --repair, checked against the survivors.
    std::fs::remove_dir_all(b.join("iterates/step=20")).unwrap();
    ok(&abcond(
        &dir,
        &["-q", "--out", "crash", "train", cfg, "--repair"],
    ));
    let f = "iterates/step=20/part-0.parquet";
    assert_eq!(read_values(&a.join(f)), read_values(&b.join(f)), "{f}");
}

/// The Python companion (python/abcond): its readers verify every checksum
/// and refuse damage; `abcond.export` and `abcond.save_tensors` write a
/// module and data that abcond trains and probes bit-identically to the
/// native `preset: mlp` run; a Sequential with BatchNorm exported by it
/// passes the PyTorch recomputation.
#[test]
fn the_python_companion_reads_runs_and_exports_models() {
    let (dir, native, _) = setup("torchscript-companion");
    let out = dir.join("companion");
    let text = run_python(
        "check_companion.py",
        &[native.to_str().unwrap(), out.to_str().unwrap()],
    );
    assert!(text.contains("companion ok"), "{text}");
    let data = tensors(&out.join("companion.safetensors"));
    let exported = module(&out.join("exported.pt"));
    let cfg = variant(&dir, "exported", &exported, Some(&data), "");
    ok(&abcond(
        &dir,
        &["-q", "--out", "out", "run", cfg.to_str().unwrap()],
    ));
    same_run(&native, &run_dir(&dir.join("out"), "exported"));
    let seq = module(&out.join("seqbn.pt"));
    let cfg = variant(&dir, "seqbn", &seq, Some(&data), "");
    ok(&abcond(
        &dir,
        &["-q", "--out", "out", "run", cfg.to_str().unwrap()],
    ));
    let out = run_python(
        "check_torchscript.py",
        &[run_dir(&dir.join("out"), "seqbn").to_str().unwrap()],
    );
    assert!(out.contains("train mode True"), "{out}");
}

/// examples/own_model.py (an MLP with LayerNorm and GELU, exported with the
/// companion) on a small Fashion-MNIST-format fixture, then `abcond run` of
/// the config it writes: trained, probed, analysed, and every landscape row
/// recomputed in PyTorch.
#[test]
fn the_own_model_example_runs_end_to_end() {
    let dir = scratch("torchscript-example");
    write_idx_fixture(&dir.join("fmnist"), 400);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/own_model.py");
    let out = python_cmd()
        .arg(&script)
        .args(["--data", dir.join("fmnist").to_str().unwrap()])
        .args(["--examples", "300", "--epochs", "2"])
        .args(["--out", dir.join("ex").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
        ],
    ));
    let run = run_dir(&dir.join("res"), "own-model");
    assert!(run.join("analysis/report.md").is_file());
    let text = run_python("check_torchscript.py", &[run.to_str().unwrap()]);
    assert!(text.contains("rows agree with PyTorch"), "{text}");
}
