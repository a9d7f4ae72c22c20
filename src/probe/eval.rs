//! The held-out evaluation (`probe.eval: true`): every probed snapshot x^k
//! measured on the data set's test split (the IDX `t10k-*` files of
//! Fashion-MNIST and MNIST, the test batch of CIFAR-10/100), written to
//! `eval.parquet`: the mean per-example loss (summed in f64) and, for models
//! with class logits, the accuracy. As PyTorch's `model.eval()`: dropout off,
//! BatchNorm on the running statistics of the snapshot. The f_i of the
//! alpha-beta condition stay training losses; this table shows how the
//! trained model generalises along the same snapshots.

use crate::config::Config;
use crate::data::Dataset;
use crate::model::{BatchNormPolicy, Mode, Model};
use crate::run::RunDir;
use crate::store::tables::{self, EvalRow};
use crate::util::progress::{note, Progress};
use anyhow::{Context, Result};
use tch::{Device, Kind};

/// Measures `steps` on the test split and writes `eval.parquet`; returns the rows.
pub fn measure(
    dir: &RunDir,
    run_id: &str,
    cfg: &Config,
    device: Device,
    steps: &[u64],
    quiet: bool,
) -> Result<Vec<EvalRow>> {
    let (data, split) = Dataset::load_held_out(
        &cfg.data,
        cfg.probe.eval_path.as_deref(),
        cfg.model.dtype,
        device,
    )?;
    let model = Model::build(&cfg.model, &data, device, cfg.seed)?;
    let mode = Mode::Measure(BatchNormPolicy::RunningStats);
    let n = data.len as i64;
    let all: Vec<i64> = (0..n).collect();
    let chunk = cfg.probe.chunk_size.max(1) as usize;
    note(
        quiet,
        &format!(
            "held-out evaluation: {} snapshots on the {} {split} split ({n} examples)",
            steps.len(),
            cfg.data.kind().name()
        ),
    );
    let mut progress = Progress::new("eval", steps.len() as u64, quiet);
    let mut rows = Vec::with_capacity(steps.len());
    for (done, &k) in steps.iter().enumerate() {
        dir.load_iterate(&model, run_id, k)
            .with_context(|| format!("held-out evaluation of snapshot step={k}"))?;
        let (sum, correct, classifier) = tch::no_grad(|| -> Result<(f64, i64, bool)> {
            let (mut sum, mut correct, mut classifier) = (0.0f64, 0i64, true);
            for part in all.chunks(chunk) {
                // An image that cannot be decoded is an error naming its file.
                let batch = data
                    .batch_at(part, None)
                    .with_context(|| format!("held-out evaluation of snapshot step={k}"))?;
                let per = match model.logits(&batch, mode) {
                    Some(logits) => {
                        correct += logits
                            .argmax(-1, false)
                            .eq_tensor(&batch.y)
                            .sum(Kind::Int64)
                            .int64_value(&[]);
                        crate::model::mlp::cross_entropy_per_example(&logits, &batch.y)
                    }
                    None => {
                        classifier = false;
                        model.per_example_loss(&batch, mode)
                    }
                };
                sum += per
                    .to_kind(Kind::Double)
                    .sum(Kind::Double)
                    .double_value(&[]);
            }
            Ok((sum, correct, classifier))
        })?;
        rows.push(EvalRow {
            run_id: run_id.to_string(),
            seed: cfg.seed as i64,
            step: k as i64,
            split: split.to_string(),
            examples: n,
            loss: sum / n as f64,
            accuracy: classifier.then(|| correct as f64 / n as f64),
        });
        progress.update(done as u64 + 1, || format!("step {k}"));
    }
    progress.finish();
    tables::write_eval(&dir.eval(), &rows, &[("abcond.run_id", run_id.to_string())])?;
    Ok(rows)
}
