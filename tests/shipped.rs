//! The shipped binary (built without the cargo feature `test-hooks`): a stray
//! `ABCOND_CRASH_AT` in someone's shell must not abort a real run. `./dev test`
//! runs this file after rebuilding the binary without the feature; in the
//! feature build (the rest of the suite) it is ignored.

mod common;
use common::*;

const TINY: &str = "experiment: shipped
seed: 0
device: cpu
model: {preset: halfspace}
data: {dataset: halfspace, dim: 2, per_class: 10}
train: {batch_size: 4, steps: 12}
optim: {name: sgd, lr: 0.1}
snapshots: {every: 4}
";

#[test]
#[cfg_attr(
    feature = "test-hooks",
    ignore = "checks the shipped build; ./dev test runs it without the test-hooks feature"
)]
fn crash_variable_is_ignored_by_the_shipped_binary() {
    let dir = scratch("shipped-crash-variable");
    let cfg = write_config(&dir, "c.yaml", TINY);
    for point in [
        "step:3",
        "step:3:written",
        "before-complete",
        "before-cleanup",
    ] {
        let out = cmd(&dir)
            .args(["-q", "--out", point, "train", cfg.to_str().unwrap()])
            .env("ABCOND_CRASH_AT", point)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ABCOND_CRASH_AT={point} aborted the shipped binary: {:?}\n{}",
            out.status,
            stderr(&out)
        );
    }
}
