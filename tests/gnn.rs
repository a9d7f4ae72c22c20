//! The graph network of AlgoPerf's ogbg workload (src/model/gnn.rs) on graphs
//! in OGB's raw CSV format (src/data/ogbg.rs) against PyTorch: the test
//! writes molecule-like graphs (some files gzipped, missing labels), a tiny
//! configuration trains a few steps with dropout and is probed, and
//! tests/check_gnn.py recomputes the names and shapes of every snapshot, the
//! loss and whole gradient at x^K, and every `train` landscape row with a
//! reference written from AlgoPerf's definition that reads the CSVs itself.

mod common;
use abcond::config::Config;
use abcond::data::Dataset;
use abcond::model::Model;
use abcond::run::RunDir;
use common::*;
use std::io::Write;
use std::path::Path;
use tch::Device;

/// `n` molecule-like graphs (a chain with a ring closure) in OGB's raw
/// format under `dir/raw`: 9 integer node features, 3 edge features, 2 tasks
/// with some labels missing; node features and labels gzipped.
fn write_ogb_fixture(dir: &Path, n: usize) {
    let raw = dir.join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    let mut s = 12345u64;
    let mut next = |m: u64| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) % m
    };
    let (mut nodes, mut edges, mut efeat, mut nn, mut ne, mut labels) = (
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    );
    for _ in 0..n {
        let k = 2 + next(9) as usize;
        nn.push_str(&format!("{k}\n"));
        for _ in 0..k {
            let f: Vec<String> = (0..9)
                .map(|j| next([36, 3, 7, 6, 5, 5, 4, 2, 2][j]).to_string())
                .collect();
            nodes.push_str(&(f.join(",") + "\n"));
        }
        let mut bonds: Vec<(usize, usize)> = (1..k).map(|v| (v - 1, v)).collect();
        if k > 4 {
            bonds.push((0, k - 1));
        }
        ne.push_str(&format!("{}\n", bonds.len()));
        for (u, v) in bonds {
            edges.push_str(&format!("{u},{v}\n"));
            efeat.push_str(&format!("{},{},{}\n", next(4), next(3), next(2)));
        }
        let lab = |r: u64| match r {
            0 => String::new(),
            1 => "nan".to_string(),
            r => ((r % 2) as u8).to_string(),
        };
        labels.push_str(&format!("{},{}\n", lab(next(6)), lab(2 + next(4))));
    }
    let gz = |name: &str, text: &str| {
        let f = std::fs::File::create(raw.join(format!("{name}.gz"))).unwrap();
        let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::default());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap();
    };
    gz("node-feat.csv", &nodes);
    gz("graph-label.csv", &labels);
    std::fs::write(raw.join("edge.csv"), edges).unwrap();
    std::fs::write(raw.join("edge-feat.csv"), efeat).unwrap();
    std::fs::write(raw.join("num-node-list.csv"), nn).unwrap();
    std::fs::write(raw.join("num-edge-list.csv"), ne).unwrap();
}

const CONFIG: &str = "experiment: gnn-tiny
seed: 3
device: cpu
model: {preset: gnn-ogbg, latent_dim: 16, hidden_dim: 16, message_passing_steps: 2, dropout: 0.1}
data: {dataset: ogbg, path: OGB}
train: {batch_size: 8, steps: 6}
optim: {name: adam, lr: 0.003}
snapshots: {every: 2}
probe: {extra_batches: 1, full: true, full_subset: 16}
";

#[test]
fn gnn_matches_pytorch_on_ogb_graphs() {
    let dir = scratch("gnn-tiny");
    write_ogb_fixture(&dir.join("ogb"), 40);
    let cfg_path = write_config(
        &dir,
        "config.yaml",
        &CONFIG.replace("OGB", dir.join("ogb").to_str().unwrap()),
    );
    ok(&abcond(
        &dir,
        &["--quiet", "--out", "out", "run", cfg_path.to_str().unwrap()],
    ));
    let rd = run_dir(&dir.join("out"), "gnn-tiny");
    let cfg: Config = abcond::config::load(&cfg_path, &[]).unwrap();
    let data = Dataset::load(&cfg.data, cfg.model.dtype, Device::Cpu).unwrap();
    assert_eq!(data.len, 40);
    let model = Model::build(&cfg.model, &data, Device::Cpu, cfg.seed).unwrap();
    let run = RunDir::new(&rd);
    let snap = abcond::store::tensors::read(&run.snapshot(6), Device::Cpu).unwrap();
    model.load(&snap, "x^K").unwrap();
    let npz = dir.join("cases.npz");
    write_grad_cases(&model, &data, &[1i64, 4, 6, 8, 39, 17], &npz);
    let text = run_python(
        "check_gnn.py",
        &[rd.to_str().unwrap(), npz.to_str().unwrap()],
    );
    println!("{text}");
    assert!(text.contains("OK worst relative error"), "{text}");
    assert!(text.contains("landscape: 3 train rows and"), "{text}");
    // The run analyses, and replays bit for bit (dropout re-drawn per step,
    // index_add sums in order): a row at every step.
    ok(&abcond(&dir, &["--quiet", "analyze", rd.to_str().unwrap()]));
    let out = abcond(&dir, &["probe", rd.to_str().unwrap(), "--replay"]);
    ok(&out);
    assert!(
        stderr(&out).contains("every stored iterate on the way matched bit for bit"),
        "{}",
        stderr(&out)
    );
    let text = ok(&abcond(&dir, &["inspect", rd.to_str().unwrap()]));
    assert!(
        text.contains("snapshot steps compared bit for bit"),
        "{text}"
    );
}

#[test]
fn full_size_gnn_parameter_count_matches_the_reference() {
    // Rust side: src/model/gnn.rs's unit test asserts the same number.
    let out = run_python("check_gnn.py", &["--counts"]);
    assert!(out.contains("gnn-ogbg params 3554176"), "{out}");
}

#[test]
fn graph_data_and_the_gnn_only_go_together() {
    let dir = scratch("gnn-mismatch");
    write_ogb_fixture(&dir.join("ogb"), 10);
    let p = write_config(
        &dir,
        "mlp.yaml",
        "experiment: x\nmodel: {preset: mlp}\ndata: {dataset: ogbg, path: ogb}\ntrain: {batch_size: 4, steps: 2}\noptim: {name: sgd, lr: 0.1}\n",
    );
    let e = stderr(&abcond(&dir, &["--out", "o", "train", p.to_str().unwrap()]));
    assert!(
        e.contains("graph data (ogbg) goes with the graph network"),
        "{e}"
    );
    // A truncated gzip file names the file.
    let raw = dir.join("ogb/raw/node-feat.csv.gz");
    let bytes = std::fs::read(&raw).unwrap();
    std::fs::write(&raw, &bytes[..bytes.len() / 2]).unwrap();
    let p = write_config(
        &dir,
        "gnn.yaml",
        "experiment: x\nmodel: {preset: gnn-ogbg, latent_dim: 8, hidden_dim: 8, message_passing_steps: 1}\ndata: {dataset: ogbg, path: ogb}\ntrain: {batch_size: 4, steps: 2}\noptim: {name: sgd, lr: 0.1}\n",
    );
    let e = stderr(&abcond(&dir, &["--out", "o", "train", p.to_str().unwrap()]));
    assert!(
        e.contains("node-feat.csv.gz") && e.contains("not a readable gzip"),
        "{e}"
    );
}

/// configs/gnn-molecules.yaml on real molecules: the NCI compounds of the
/// Debian package rdkit-data converted by scripts/molecules-to-ogb.py (OGB's
/// smiles2graph), here the first 150 at tiny settings; the config's own
/// settings otherwise.
#[test]
fn the_molecules_config_runs_on_real_molecules() {
    let source = Path::new("/usr/share/RDKit/Data/NCI/first_5k.tpsa.csv");
    assert!(
        source.is_file(),
        "{} is missing: `./dev test` installs the Debian package rdkit-data (apt-get install rdkit-data)",
        source.display()
    );
    let dir = scratch("gnn-molecules");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/molecules-to-ogb.py");
    let data = dir.join("nci");
    let out = python_cmd()
        .arg(&script)
        .args(["--limit", "150", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("150 molecules"), "{text}");
    let readme = std::fs::read_to_string(data.join("README.txt")).unwrap();
    assert!(readme.contains("TPSA > 90"), "{readme}");
    // Run again into the same directory: replaced (it is the script's own);
    // a directory it did not write is refused.
    let again = python_cmd()
        .arg(&script)
        .args(["--limit", "150", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    let foreign = dir.join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("mine.txt"), "x").unwrap();
    let refused = python_cmd()
        .arg(&script)
        .arg(foreign.to_str().unwrap())
        .output()
        .unwrap();
    assert!(
        !refused.status.success() && stderr(&refused).contains("was not written by this script"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        std::fs::read_to_string(foreign.join("mine.txt")).unwrap(),
        "x"
    );

    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/gnn-molecules.yaml");
    let data_set = format!("data.path={}", data.display());
    ok(&abcond(
        &dir,
        &[
            "--quiet",
            "--out",
            "out",
            "run",
            config.to_str().unwrap(),
            "--set",
            &data_set,
            "--set",
            "train.steps=12",
            "--set",
            "train.batch_size=16",
            "--set",
            "model.latent_dim=8",
            "--set",
            "model.hidden_dim=8",
            "--set",
            "snapshots.log_spaced=4",
            "--set",
            "probe.full_subset=40",
            "--set",
            "analysis.plots=false",
        ],
    ));
    let rd = run_dir(&dir.join("out"), "gnn-molecules");
    let summary = std::fs::read_to_string(rd.join("analysis/summary.yaml")).unwrap();
    assert!(summary.contains("alpha"), "{summary}");
    let text = ok(&abcond(&dir, &["inspect", rd.to_str().unwrap()]));
    assert!(text.contains("ogbg"), "{text}");
}
