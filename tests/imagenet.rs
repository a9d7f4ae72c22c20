//! ImageNet workloads on a tiny ImageFolder tree written here (PNG and JPEG, three
//! classes): the reader and its augmentation (a pure function of seed, step and
//! example; the probe's `train` rows rebuild step k's augmented minibatch), and
//! PyTorch parity of ResNet-50 (tiny width) and ViT (tiny width/depth) — loss and
//! whole gradient from the same snapshot, in train and eval BatchNorm modes
//! (tests/check_imagenet.py with the reference modules of
//! tests/torch_vision_models.py).

mod common;
use abcond::config::{self, BatchNormPolicy, Config};
use abcond::data::augment::AugmentAt;
use abcond::data::Dataset;
use abcond::model::{Mode, Model};
use abcond::run::RunDir;
use common::*;
use image::{Rgb, RgbImage};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// 3 classes × 4 images of different sizes, two PNG and two JPEG per class;
/// the class is visible in the colour so that training moves the loss.
fn write_tree(root: &Path) {
    for (c, class) in ["ant", "bee", "cat"].iter().enumerate() {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..4u32 {
            let (w, h) = (40 + 8 * i, 36 + 6 * ((i + c as u32) % 3));
            let img = RgbImage::from_fn(w, h, |x, y| {
                let base = [60 + 70 * c as u32, 200 - 50 * c as u32, 30 * i];
                Rgb([
                    ((base[0] + 3 * x + y) % 256) as u8,
                    ((base[1] + x * y / 7) % 256) as u8,
                    ((base[2] + 5 * y) % 256) as u8,
                ])
            });
            let ext = if i % 2 == 0 { "png" } else { "jpg" };
            img.save(dir.join(format!("img{i}.{ext}"))).unwrap();
        }
    }
}

fn config_text(experiment: &str, model: &str, tree: &Path) -> String {
    format!(
        "experiment: {experiment}
seed: 3
device: cpu
model: {model}
data: {{dataset: imagefolder, path: {}, image_size: 32, augment: random-resized-crop}}
train: {{batch_size: 6, steps: 4}}
optim: {{name: sgd, lr: 0.2}}
snapshots: {{every: 1}}
probe: {{extra_batches: 1, full: true, chunk_size: 64}}
",
        tree.display()
    )
}

fn resolved(text: &str) -> Config {
    config::from_yaml_text(text, "test config", Path::new("."), &[]).unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).reshape([-1])).unwrap()
}

#[test]
fn reader_order_and_augmentation_are_pure_functions() {
    let dir = scratch("imagenet-reader");
    write_tree(&dir.join("tree"));
    // A stray non-image file is ignored; an unreadable "image" is named in the error.
    std::fs::write(dir.join("tree/ant/notes.txt"), "not an image").unwrap();
    let cfg = resolved(&config_text(
        "reader",
        "{preset: resnet50, width: 4}",
        &dir.join("tree"),
    ));
    let data = Dataset::load(&cfg.data, cfg.model.dtype, Device::Cpu).unwrap();
    let images = data.images.as_ref().unwrap();
    assert_eq!(images.classes, ["ant", "bee", "cat"]);
    assert_eq!(data.len, 12);
    assert_eq!(
        values(&data.y),
        [0., 0., 0., 0., 1., 1., 1., 1., 2., 2., 2., 2.]
    );
    assert!(images.files[5].ends_with("bee/img1.jpg"));
    assert_eq!(data.input_shape, [3, 32, 32]);

    let idx = [0i64, 5, 11, 7];
    let at = |k: u64| {
        data.batch_at(&idx, Some(AugmentAt { seed: 3, step: k }))
            .unwrap()
            .x
    };
    let eval = data.batch(&idx).x;
    assert_eq!(eval.size(), [4, 3, 32, 32]);
    // Deterministic: the same (seed, step, example) gives the same pixels, also
    // from a freshly loaded data set and for an example in another minibatch.
    assert!(at(2).equal(&at(2)));
    let again = Dataset::load(&cfg.data, cfg.model.dtype, Device::Cpu).unwrap();
    assert!(again
        .batch_at(&idx, Some(AugmentAt { seed: 3, step: 2 }))
        .unwrap()
        .x
        .equal(&at(2)));
    let alone = data
        .batch_at(&[11], Some(AugmentAt { seed: 3, step: 2 }))
        .unwrap()
        .x;
    assert!(alone.get(0).equal(&at(2).get(2)));
    // Different across steps, seeds, and from the evaluation transform.
    for (i, _) in idx.iter().enumerate() {
        assert!(
            !at(2).get(i as i64).equal(&at(3).get(i as i64)),
            "example {i}"
        );
        assert!(!at(2).get(i as i64).equal(&eval.get(i as i64)));
    }
    let other_seed = data
        .batch_at(&idx, Some(AugmentAt { seed: 4, step: 2 }))
        .unwrap()
        .x;
    assert!(!other_seed.equal(&at(2)));
    // The evaluation transform is deterministic; batch_for applies step k.
    assert!(data.batch(&idx).x.equal(&eval));
    assert!(data
        .batch_for(&idx, Some(AugmentAt { seed: 3, step: 2 }))
        .x
        .equal(&at(2)));
    // Normalised pixels are in the range of (p/255 − mean)/std.
    let (lo, hi) = (eval.min().double_value(&[]), eval.max().double_value(&[]));
    assert!(lo >= -0.485 / 0.229 - 1e-6 && hi <= (1.0 - 0.406) / 0.225 + 1e-6);

    // A corrupt JPEG: the error names the file.
    std::fs::write(dir.join("tree/bee/img1.jpg"), b"\xff\xd8\xff garbage").unwrap();
    let err = format!("{:#}", data.batch_at(&[5], None).err().unwrap());
    assert!(err.contains("bee/img1.jpg"), "{err}");
    // Without augmentation training batches are the evaluation batches.
    let mut plain = cfg.data.clone();
    if let abcond::data::config::Source::Imagefolder(s) = &mut plain.source {
        s.augment = None;
    }
    std::fs::remove_file(dir.join("tree/bee/img1.jpg")).unwrap();
    let d2 = Dataset::load(&plain, cfg.model.dtype, Device::Cpu).unwrap();
    assert_eq!(d2.len, 11);
    assert!(d2
        .batch_at(&[0, 3], Some(AugmentAt { seed: 3, step: 1 }))
        .unwrap()
        .x
        .equal(&d2.batch(&[0, 3]).x));
}

/// Trains + probes `model` on the tree, then compares abcond's loss and gradient
/// at the final snapshot x^K on the augmented minibatch of step 2 with PyTorch.
fn parity(name: &str, model: &str, modes: &[Mode]) -> String {
    let dir = scratch(name);
    write_tree(&dir.join("tree"));
    let text = config_text(name, model, &dir.join("tree"));
    let cfg_path = write_config(&dir, "config.yaml", &text);
    ok(&abcond(
        &dir,
        &["--quiet", "--out", "out", "run", cfg_path.to_str().unwrap()],
    ));
    let rd = run_dir(&dir.join("out"), name);
    let cfg = resolved(&text);
    let data = Dataset::load(&cfg.data, cfg.model.dtype, Device::Cpu).unwrap();
    let run = RunDir::new(&rd);
    let k = cfg.train.steps.unwrap();
    let snap = abcond::store::tensors::read(&run.snapshot(k), Device::Cpu).unwrap();
    let batch = data
        .batch_at(&[1, 4, 6, 8, 10, 11], Some(AugmentAt { seed: 3, step: 2 }))
        .unwrap();
    let mut out: Vec<(String, Tensor)> = vec![
        ("x".into(), batch.x.shallow_clone()),
        ("y".into(), batch.y.shallow_clone()),
        ("step".into(), Tensor::from(k as i64)),
    ];
    for &mode in modes {
        let label = match mode {
            Mode::Train => "train",
            Mode::Measure(BatchNormPolicy::BatchStats) => "batch-stats",
            Mode::Measure(BatchNormPolicy::RunningStats) => "running-stats",
        };
        // A fresh model per mode: Train updates the running statistics.
        let m = Model::build(&cfg.model, &data, Device::Cpu, cfg.seed).unwrap();
        m.load(&snap, "snapshot").unwrap();
        m.zero_grad();
        let loss = m.loss(&batch, mode);
        loss.backward();
        out.push((format!("{label}.loss"), loss.detach().to_kind(Kind::Double)));
        for t in m.tensors() {
            match t.role {
                abcond::store::tensors::Role::Param => {
                    out.push((format!("{label}.grad.{}", t.name), t.tensor.grad().copy()))
                }
                _ if mode == Mode::Train => {
                    out.push((format!("{label}.buffer.{}", t.name), t.tensor.copy()))
                }
                _ => {}
            }
        }
    }
    let npz = dir.join("cases.npz");
    Tensor::write_npz(&out, &npz).unwrap();
    run_python(
        "check_imagenet.py",
        &[rd.to_str().unwrap(), npz.to_str().unwrap()],
    )
}

#[test]
fn resnet50_matches_pytorch_in_train_and_eval_mode() {
    let out = parity(
        "imagenet-resnet50",
        "{preset: resnet50, width: 4}",
        &[
            Mode::Train,
            Mode::Measure(BatchNormPolicy::BatchStats),
            Mode::Measure(BatchNormPolicy::RunningStats),
        ],
    );
    println!("{out}");
    assert!(out.contains("OK worst relative error"), "{out}");
    assert!(out.contains("resnet50 running-stats"), "{out}");
}

#[test]
fn vit_matches_pytorch() {
    let out = parity(
        "imagenet-vit",
        "{preset: vit-s16, width: 32, depth: 2, heads: 4, mlp_dim: 64, patch_size: 8}",
        &[Mode::Train, Mode::Measure(BatchNormPolicy::RunningStats)],
    );
    println!("{out}");
    assert!(out.contains("OK worst relative error"), "{out}");
}

#[test]
fn full_size_parameter_counts_match_the_references() {
    // Rust side: src/model/{resnet50,vit}.rs unit tests assert the same numbers.
    let out = run_python("check_imagenet.py", &["--counts"]);
    assert!(out.contains("resnet50 params 25557032"), "{out}");
    assert!(out.contains("vit-s16 params 22122472"), "{out}");
}

/// `probe.eval` on ImageFolder data with `probe.eval_path`: a held-out tree
/// with two of the three training classes (bee, cat) is labelled by the
/// training classes (1, 2), not by its own listing (0, 1). Every row of
/// eval.parquet equals the loss and accuracy of the same images computed from
/// the training loader (where bee and cat are classes 1 and 2) and the
/// snapshot; mislabelled classes, a missing eval_path and an eval_path without
/// eval are errors naming the keys.
#[test]
fn imagefolder_held_out_tree_is_labelled_by_the_training_classes() {
    let dir = scratch("imagenet-eval");
    let tree = dir.join("tree");
    write_tree(&tree);
    let held = dir.join("held");
    for class in ["bee", "cat"] {
        std::fs::create_dir_all(held.join(class)).unwrap();
        for e in std::fs::read_dir(tree.join(class)).unwrap().flatten() {
            std::fs::copy(e.path(), held.join(class).join(e.file_name())).unwrap();
        }
    }
    let text = format!(
        "experiment: heldout
seed: 3
device: cpu
model: {{preset: vit-s16, width: 32, depth: 2, heads: 4, mlp_dim: 64, patch_size: 8}}
data: {{dataset: imagefolder, path: {}, image_size: 32}}
train: {{batch_size: 6, steps: 4}}
optim: {{name: sgd, lr: 0.2}}
snapshots: {{every: 2}}
probe: {{extra_batches: 0, full: false, eval: true, eval_path: {}, chunk_size: 5}}
",
        tree.display(),
        held.display()
    );
    let cfg_path = write_config(&dir, "c.yaml", &text);
    ok(&abcond(
        &dir,
        &["-q", "--out", "out", "run", cfg_path.to_str().unwrap()],
    ));
    let run = run_dir(&dir.join("out"), "heldout");
    let rows = py(
        "import sys, abcond
ev = abcond.read_table(sys.argv[1] + '/eval.parquet').to_pandas()
for r in ev.itertuples():
    print(r.step, r.split, r.examples, repr(r.loss), repr(r.accuracy))",
        &[run.to_str().unwrap()],
    );
    let rows: Vec<Vec<String>> = rows
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    assert_eq!(
        rows.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(),
        ["0", "2", "4"]
    );

    // The same 8 images through the training loader: classes 1 and 2.
    let cfg = resolved(&text);
    let data = Dataset::load(&cfg.data, cfg.model.dtype, Device::Cpu).unwrap();
    let labels = Vec::<i64>::try_from(&data.y).unwrap();
    let idx: Vec<i64> = (0..data.len as i64)
        .filter(|&i| labels[i as usize] > 0)
        .collect();
    assert_eq!(idx.len(), 8);
    let model = Model::build(&cfg.model, &data, Device::Cpu, cfg.seed).unwrap();
    let rd = RunDir::new(&run);
    let run_id = run.file_name().unwrap().to_str().unwrap().to_string();
    let mode = Mode::Measure(BatchNormPolicy::RunningStats);
    for r in &rows {
        assert_eq!((r[1].as_str(), r[2].as_str()), ("held-out", "8"), "{r:?}");
        rd.load_iterate(&model, &run_id, r[0].parse().unwrap())
            .unwrap();
        let batch = data.batch(&idx);
        let (loss, acc) = tch::no_grad(|| {
            let loss = model
                .per_example_loss(&batch, mode)
                .to_kind(Kind::Double)
                .mean(Kind::Double)
                .double_value(&[]);
            let logits = model.logits(&batch, mode).unwrap();
            let acc = logits
                .argmax(-1, false)
                .eq_tensor(&batch.y)
                .to_kind(Kind::Double)
                .mean(Kind::Double)
                .double_value(&[]);
            (loss, acc)
        });
        let (got_loss, got_acc): (f64, f64) = (r[3].parse().unwrap(), r[4].parse().unwrap());
        assert!(
            (got_loss - loss).abs() <= 1e-5 * loss.abs(),
            "step {}: eval loss {got_loss} vs {loss} from the training loader",
            r[0]
        );
        assert_eq!(got_acc, acc, "step {}", r[0]);
    }

    // An image that cannot be decoded: an error naming it, not a crash.
    std::fs::write(held.join("bee/broken.jpg"), b"not a jpeg").unwrap();
    let out = abcond(&dir, &["probe", run.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(
        out.status.code() == Some(1)
            && err.contains("held-out evaluation of snapshot step=")
            && err.contains("broken.jpg"),
        "{err}"
    );
    std::fs::remove_file(held.join("bee/broken.jpg")).unwrap();

    // A class the training set lacks; no eval_path; eval_path without eval.
    std::fs::create_dir_all(held.join("dog")).unwrap();
    std::fs::copy(tree.join("ant/img0.png"), held.join("dog/img0.png")).unwrap();
    let out = abcond(&dir, &["probe", run.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(
        out.status.code() == Some(1)
            && err.contains("key `probe.eval_path`")
            && err.contains("class directory `dog` is not a class of the training set"),
        "{err}"
    );
    for (set, want) in [
        (
            "probe.eval_path=null",
            "name its held-out class-folder tree",
        ),
        (
            "probe.eval=false",
            "key `probe.eval_path` names held-out files for `probe.eval`",
        ),
    ] {
        let out = abcond(
            &dir,
            &[
                "--out",
                "out2",
                "run",
                cfg_path.to_str().unwrap(),
                "--set",
                set,
            ],
        );
        let err = stderr(&out);
        assert!(
            out.status.code() == Some(1) && err.contains(want),
            "{set}: {err}"
        );
    }
}
