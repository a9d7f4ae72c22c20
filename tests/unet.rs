//! The fastMRI U-Net (src/model/unet.rs) on single-coil HDF5 volumes
//! (src/data/fastmri.rs, read by the pure-Rust decoder of src/util/hdf5.rs)
//! against PyTorch: h5py writes two small volumes (different k-space widths,
//! one chunked and gzipped), a tiny U-Net trains a few Adam steps and is
//! probed, and tests/check_unet.py remakes the inputs and targets with numpy's
//! FFT from the files, rebuilds AlgoPerf's U-Net, and compares the loss and
//! whole gradient at x^K, every landscape row and a torch.optim replay.
//! Truncated, foreign and non-fastMRI files give errors naming the file.

mod common;
use abcond::config::Config;
use abcond::data::Dataset;
use abcond::model::Model;
use abcond::run::RunDir;
use common::*;
use tch::{Device, Tensor};

/// Two volumes of smooth phantoms: vol_a.h5 (3 slices, k-space 40 × 36,
/// contiguous) and vol_b.h5 (3 slices, 40 × 38, chunked + gzip); targets
/// 24 × 24, the centre of each phantom's magnitude.
fn write_volumes(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    py(
        r#"
import os, sys
import h5py
import numpy as np
from abcond_ref import unet
d = sys.argv[1]
rng = np.random.default_rng(3)
def volume(w):
    ks, ts = [], []
    for _ in range(3):
        yy, xx = np.mgrid[0:40, 0:w]
        img = np.zeros((40, w))
        for _ in range(4):
            cy, cx, r = rng.uniform(10, 30), rng.uniform(8, w - 8), rng.uniform(3, 8)
            img += rng.uniform(0.5, 2) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        img = img * np.exp(1j * rng.uniform(0, 0.3))
        k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(img), norm="ortho"))
        ks.append(k)
        ts.append(unet.center_crop(np.abs(img), (24, 24)))
    return np.array(ks, np.complex64), np.array(ts, np.float32)
k, t = volume(36)
unet.write_fastmri_h5(os.path.join(d, "vol_a.h5"), k, t)
k, t = volume(38)
with h5py.File(os.path.join(d, "vol_b.h5"), "w") as hf:
    hf.create_dataset("kspace", data=k, chunks=(1, 40, 38), compression="gzip")
    hf.create_dataset("reconstruction_esc", data=t, chunks=(1, 24, 24), compression="gzip", shuffle=True)
    hf.attrs["max"] = float(t.max())
"#,
        &[dir.to_str().unwrap()],
    );
}

fn config(path: &std::path::Path, extra: &str) -> String {
    format!(
        "experiment: unet-tiny
seed: 4
device: cpu
model: {{preset: unet-fastmri, channels: 4, pool_layers: 2}}
data: {{dataset: fastmri, path: {}{extra}}}
train: {{batch_size: 2, steps: 3}}
optim: {{name: adam, lr: 0.003}}
snapshots: {{every: 1}}
probe: {{extra_batches: 1, full: true}}
",
        path.display()
    )
}

#[test]
fn unet_matches_pytorch_on_fastmri_volumes() {
    let dir = scratch("unet-tiny");
    let vols = dir.join("volumes");
    write_volumes(&vols);
    let cfg_path = write_config(&dir, "config.yaml", &config(&vols, ""));
    ok(&abcond(
        &dir,
        &["--quiet", "--out", "out", "run", cfg_path.to_str().unwrap()],
    ));
    let rd = run_dir(&dir.join("out"), "unet-tiny");
    let cfg: Config = abcond::config::load(&cfg_path, &[]).unwrap();
    let data = Dataset::load(&cfg.data, cfg.model.dtype, Device::Cpu).unwrap();
    assert_eq!(data.len, 6);
    assert_eq!(data.x.size(), [6, 24, 24]);
    let model = Model::build(&cfg.model, &data, Device::Cpu, cfg.seed).unwrap();
    // Levels 1 → 4 → 8, bottom 8 → 16, up 16 → 8 → 4, each ConvBlock 2 convs
    // (3×3, no bias), transposed convs 2×2, head 4 → 1 with bias.
    let conv = |i: i64, o: i64| 9 * i * o + 9 * o * o;
    assert_eq!(
        model.num_params(),
        conv(1, 4)
            + conv(4, 8)
            + conv(8, 16)
            + 16 * 8 * 4
            + conv(16, 8)
            + 8 * 4 * 4
            + conv(8, 4)
            + 4
            + 1
    );
    let idx = [0i64, 2, 3, 5];
    let batch = data.batch(&idx);
    let made = dir.join("batch.npz");
    Tensor::write_npz(
        &[
            ("indices", Tensor::from_slice(&idx)),
            ("x", batch.x.shallow_clone()),
            ("y", batch.y.shallow_clone()),
        ],
        &made,
    )
    .unwrap();
    let run = RunDir::new(&rd);
    let snap = abcond::store::tensors::read(&run.snapshot(3), Device::Cpu).unwrap();
    model.load(&snap, "x^K").unwrap();
    let npz = dir.join("cases.npz");
    write_grad_cases(&model, &data, &[1i64, 4, 5], &npz);
    let text = run_python(
        "check_unet.py",
        &[
            rd.to_str().unwrap(),
            npz.to_str().unwrap(),
            made.to_str().unwrap(),
        ],
    );
    println!("{text}");
    assert!(text.contains("data: 6 slices made again"), "{text}");
    assert!(text.contains("replay: 3 steps"), "{text}");
    assert!(text.contains("OK worst relative error"), "{text}");
}

#[test]
fn full_size_parameter_count_matches_the_reference() {
    // Rust side: src/model/unet.rs's unit test asserts the same number.
    let out = run_python("check_unet.py", &["--counts"]);
    assert!(out.contains("unet-fastmri params 7756097"), "{out}");
}

#[test]
fn fastmri_reader_names_the_file_of_bad_input() {
    let dir = scratch("unet-errors");
    let vols = dir.join("volumes");
    write_volumes(&vols);
    let train_err = |path: &std::path::Path| -> String {
        let cfg = write_config(&dir, "config.yaml", &config(path, ""));
        let out = abcond(
            &dir,
            &["--quiet", "--out", "out", "train", cfg.to_str().unwrap()],
        );
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        stderr(&out)
    };
    let bad = dir.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let bytes = std::fs::read(vols.join("vol_a.h5")).unwrap();
    std::fs::write(bad.join("cut.h5"), &bytes[..bytes.len() * 2 / 3]).unwrap();
    let err = train_err(&bad.join("cut.h5"));
    assert!(err.contains("cut.h5: truncated HDF5 file"), "{err}");
    std::fs::write(bad.join("notes.h5"), "kspace, reconstruction_esc\n").unwrap();
    let err = train_err(&bad.join("notes.h5"));
    assert!(err.contains("notes.h5: not an HDF5 file"), "{err}");
    py(
        r#"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "w") as hf:
    hf.create_dataset("kspace", data=np.zeros((2, 8, 8), np.float32))
    hf.create_dataset("reconstruction_esc", data=np.zeros((2, 4, 4), np.float32))
with h5py.File(sys.argv[2], "w") as hf:
    hf.create_dataset("image", data=np.zeros((2, 8, 8), np.float32))
"#,
        &[
            bad.join("real.h5").to_str().unwrap(),
            bad.join("other.h5").to_str().unwrap(),
        ],
    );
    let err = train_err(&bad.join("real.h5"));
    assert!(
        err.contains("real.h5: `kspace` is") && err.contains("expected complex64"),
        "{err}"
    );
    let err = train_err(&bad.join("other.h5"));
    assert!(err.contains("other.h5: no dataset `kspace`"), "{err}");
    // MRI volumes only go with the U-Net.
    let text = config(&vols, "").replace(
        "preset: unet-fastmri, channels: 4, pool_layers: 2",
        "preset: mlp",
    );
    let cfg = write_config(&dir, "config.yaml", &text);
    let err = stderr(&abcond(&dir, &["train", cfg.to_str().unwrap()]));
    assert!(
        err.contains("MRI volumes (fastmri) go with the U-Net"),
        "{err}"
    );
    assert!(!dir.join("out").join("unet-tiny").exists());
}
