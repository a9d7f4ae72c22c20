//! The held-out evaluation (`probe.eval`): a small MLP trained on an IDX
//! fixture is measured on the fixture's `t10k-*` split at every snapshot, and
//! PyTorch recomputes the test loss and accuracy of every row of
//! `eval.parquet` from the snapshots and the IDX files (tests/abcond_ref);
//! the report shows the table; a data set without a test split is an error.

mod common;
use common::*;

const CONFIG: &str = "experiment: ev
seed: 3
device: cpu
model: {kind: mlp, width: 32}
data: {dataset: fashion-mnist, path: DATA}
train: {batch_size: 32, steps: 60}
optim: {name: sgd, lr: 0.1}
snapshots: {every: 20}
probe: {extra_batches: 1, full: false, eval: true, chunk_size: 128}
";

const CHECK: &str = r#"
import sys, os
import numpy as np, torch
import abcond
from abcond_ref.runs import Run, read_idx, find, NORM
from abcond_ref.models import MLPLogits
run_dir, data_dir = sys.argv[1], sys.argv[2]
run = Run(run_dir)
model = run.model()
x = read_idx(find(data_dir, "t10k-images-idx3-ubyte")).astype(np.float64)[:, None] / 255.0
mean, std = NORM["fashion-mnist"]
x = torch.from_numpy((x - mean) / std).to(run.dtype)
y = torch.from_numpy(read_idx(find(data_dir, "t10k-labels-idx1-ubyte")).astype(np.int64))
ev = abcond.read_table(os.path.join(run_dir, "eval.parquet")).to_pandas()
assert len(ev) == 4 and list(ev.step) == [0, 20, 40, 60], ev.step.tolist()
assert set(ev.split) == {"test"} and set(ev.examples) == {len(y)}, ev
worst = 0.0
for r in ev.itertuples():
    run.load(model, r.step)
    with torch.no_grad():
        loss = model(x, y).double().mean().item()
        acc = (MLPLogits.forward(model, x).argmax(-1) == y).double().mean().item()
    worst = max(worst, abs(loss - r.loss) / abs(loss))
    assert abs(acc - r.accuracy) <= 1.0 / len(y), (r.step, acc, r.accuracy)
assert worst < 1e-5, worst
assert ev.accuracy.iloc[-1] > ev.accuracy.iloc[0] + 0.2, ev.accuracy.tolist()
print(f"ok eval: {len(ev)} rows, loss rel err {worst:.1e}, accuracy {ev.accuracy.iloc[0]:.3f} -> {ev.accuracy.iloc[-1]:.3f}")
"#;

#[test]
fn held_out_loss_and_accuracy_match_pytorch() {
    let dir = scratch("eval");
    let data = dir.join("data");
    write_idx_fixture(&data, 600);
    write_idx_test_fixture(&data, 300);
    let cfg = write_config(
        &dir,
        "ev.yaml",
        &CONFIG.replace("DATA", data.to_str().unwrap()),
    );
    ok(&abcond(
        &dir,
        &["--quiet", "--out", "out", "run", cfg.to_str().unwrap()],
    ));
    let run = run_dir(&dir.join("out"), "ev");
    let out = py(CHECK, &[run.to_str().unwrap(), data.to_str().unwrap()]);
    assert!(out.contains("ok eval"), "{out}");
    let md = std::fs::read_to_string(run.join("analysis/report.md")).unwrap();
    assert!(
        md.contains("| step | test loss | test accuracy |") && md.contains("Best test accuracy"),
        "{md}"
    );
    // verify reads it.
    ok(&abcond(&dir, &["verify", run.to_str().unwrap()]));

    // Without the t10k files: an error naming them.
    for f in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte"] {
        std::fs::remove_file(data.join(f)).unwrap();
    }
    let out = abcond(&dir, &["probe", run.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("fashion-mnist test files not found")
            && err.contains("t10k-images-idx3-ubyte"),
        "{err}"
    );

    // A data set without a test split.
    let hs = write_config(
        &dir,
        "hs.yaml",
        "experiment: hs\nseed: 0\ndevice: cpu\nmodel: {preset: halfspace}\ndata: {dataset: halfspace, dim: 2, per_class: 10}\ntrain: {batch_size: 1, steps: 20}\noptim: {name: sgd, lr: 0.1}\nsnapshots: {every: 10}\nprobe: {eval: true}\n",
    );
    let out = abcond(&dir, &["--out", "out", "run", hs.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("key `probe.eval`: dataset `halfspace` has no held-out split"),
        "{err}"
    );
}
