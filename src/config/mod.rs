//! Experiment configuration: the YAML schema, `--set` overrides, model presets and
//! the resolved form that is written to `run.yaml` before training starts.
//!
//! Loading is two-staged: the file is read as a YAML tree, `--set key.path=value`
//! overrides and the model preset are merged into that tree, and only then is it
//! deserialised into [`Config`] with unknown keys rejected. [`Config::resolve`]
//! checks that every key applies to the chosen model/dataset/optimiser and fills
//! in every default, so the resolved YAML alone reproduces the run.

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};

mod identity;
pub mod validate;

pub use crate::analysis::config::{AnalysisConfig, FStar, GridAxes, GridConfig};
pub use crate::data::config::{Augment, DataConfig, DatasetKind, Normalize, Source};
pub use crate::model::config::{ModelConfig, ModelKind, KNOWN_KINDS};
pub use crate::optim::config::{
    DecayExclude, OptimConfig, OptimName, ScheduleConfig, ScheduleName,
};
pub use crate::probe::config::{
    BatchNormPolicy, CloudConfig, CurvatureConfig, CurvatureProbe, ProbeConfig, Reference,
};
pub use crate::torch::dtype::{AutocastDtype, Dtype};
pub use crate::train::config::{SnapshotConfig, TrainConfig};
pub use identity::{diff_keys, fnv1a64};

include!(concat!(env!("OUT_DIR"), "/presets.rs"));

/// The top-level config key that declares a sweep (crate::experiment::sweep).
pub const SWEEP_KEY: &str = "sweep";

/// A whole experiment: what to train, on what, how, and what to measure.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Experiment name; the run directory is `<out>/<experiment>/<run_id>/`.
    pub experiment: String,
    /// Seed of every random source of the run (initialisation, minibatch order,
    /// extra probe minibatches).
    #[serde(default)]
    pub seed: u64,
    /// `auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`.
    #[serde(default = "default_device")]
    pub device: String,
    pub model: ModelConfig,
    pub data: DataConfig,
    pub train: TrainConfig,
    pub optim: OptimConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub snapshots: SnapshotConfig,
    #[serde(default)]
    pub probe: ProbeConfig,
    #[serde(default)]
    pub analysis: AnalysisConfig,
    /// Where the config was read from, to name it in errors found only
    /// against the data (not part of the config: never written or compared).
    #[serde(skip)]
    pub source: ConfigSource,
}

/// The file (and sweep task) a config was read from; every two are equal, so
/// that configs compare by their settings alone.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource(pub Option<String>);

impl PartialEq for ConfigSource {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl ConfigSource {
    /// "config FILE" (or "the run's config" when it was read from run.yaml).
    pub fn describe(&self) -> String {
        match &self.0 {
            Some(s) => format!("config {s}"),
            None => "the run's config".to_string(),
        }
    }
}

fn default_device() -> String {
    "auto".to_string()
}

/// Reads `path`, applies the `--set` overrides and resolves defaults.
pub fn load(path: &Path, overrides: &[String]) -> Result<Config> {
    let text = crate::util::read_text_file(path, "config file", crate::util::MAX_YAML_BYTES)?;
    from_yaml_text(
        &text,
        &path.display().to_string(),
        &base_dir(path),
        overrides,
    )
}

/// The directory relative preset paths of the config at `path` resolve
/// against: `$ABCOND_CONFIG_DIR` when set (the Slurm scripts set it to the
/// original's directory when they run its frozen copy), else the config's own.
pub fn base_dir(path: &Path) -> PathBuf {
    match std::env::var_os("ABCOND_CONFIG_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => path.parent().map(Path::to_path_buf).unwrap_or_default(),
    }
}

/// Parses a config from YAML text; `source` names it in errors and `base_dir`
/// anchors relative preset paths. A config that declares a `sweep` is a family
/// of runs: load one of them with [`crate::experiment::sweep::Sweep`] instead.
pub fn from_yaml_text(
    text: &str,
    source: &str,
    base_dir: &Path,
    overrides: &[String],
) -> Result<Config> {
    let tree = parse_tree(text, source)?;
    if let Some(sweep) = tree.get(SWEEP_KEY) {
        let runs = sweep
            .as_mapping()
            .map(|m| {
                m.values()
                    .map(|v| v.as_sequence().map_or(1, Vec::len))
                    .product::<usize>()
            })
            .unwrap_or(0);
        bail!(
            "{source} declares a sweep ({runs} runs): choose one with --task N (0-based; default $SLURM_ARRAY_TASK_ID) or all with --all; `abcond sweep {source} --list` lists them"
        );
    }
    from_tree(tree, source, base_dir, overrides, &[])
}

/// Reads YAML text into a tree whose top level is a mapping.
pub fn parse_tree(text: &str, source: &str) -> Result<Value> {
    let tree: Value =
        serde_yaml::from_str(text).with_context(|| format!("{source}: not valid YAML"))?;
    if !tree.is_mapping() {
        bail!("{source}: expected a mapping of settings at the top level (experiment, seed, model, data, train, optim, …)");
    }
    Ok(tree)
}

/// Builds a config from a YAML tree: the swept `key = value` pairs are set
/// first (as `--set` would), then the `--set` overrides, then the model preset
/// is merged, the tree deserialised and the result resolved. Errors name the
/// key and whether it came from `sweep` or `--set`.
pub fn from_tree(
    mut tree: Value,
    source: &str,
    base_dir: &Path,
    overrides: &[String],
    swept: &[(String, Value)],
) -> Result<Config> {
    let mut given: Vec<String> = Vec::new();
    for (key, value) in swept {
        set_path(&mut tree, key, value.clone())
            .with_context(|| format!("{source}: applying sweep key `{key}`"))?;
        replace_exclusive(&mut tree, key, value, &given);
        given.push(key.clone());
    }
    let mut set_keys = Vec::new();
    for o in overrides {
        let key = apply_override(&mut tree, o).with_context(|| format!("applying --set {o}"))?;
        let value = get_path(&tree, &key).cloned().unwrap_or(Value::Null);
        replace_exclusive(&mut tree, &key, &value, &given);
        given.push(key.clone());
        set_keys.push(key);
    }
    merge_model_preset(&mut tree, source, base_dir)?;
    let config: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
        // A tagged section (model, data) reads its keys itself and names the
        // full key in its message: "key `model.width`: …".
        let inner = crate::config::validate::with_suggestion(&e.inner().to_string());
        let (path, message) = match inner.strip_prefix("key `").and_then(|r| r.split_once('`')) {
            Some((key, rest)) => (key.to_string(), rest.to_string()),
            None => (e.path().to_string(), format!(": {inner}")),
        };
        let from = |k: &String| path == *k || path.starts_with(&format!("{k}."));
        let note = if set_keys.iter().any(from) {
            " (the key comes from --set)"
        } else if swept.iter().map(|(k, _)| k).any(from) {
            " (the key comes from `sweep`)"
        } else {
            ""
        };
        anyhow!("{source}: key `{path}`{note}{message}")
    })?;
    let mut config = config
        .resolve()
        .with_context(|| format!("{source}: invalid configuration"))?;
    config.source = ConfigSource(Some(source.to_string()));
    Ok(config)
}

/// Pairs of keys of which a config sets at most one.
const EXCLUSIVE: [(&str, &str); 2] = [
    ("train.steps", "train.epochs"),
    ("schedule.warmup_fraction", "schedule.warmup_steps"),
];

/// A `--set` or sweep value for one key of an exclusive pair replaces the
/// other key where that came from the file: `--set train.steps=500` on a
/// config with `epochs: 3` trains 500 steps. Both keys given by `--set`/sweep
/// (`given`) stay, and the config check refuses them.
fn replace_exclusive(tree: &mut Value, key: &str, value: &Value, given: &[String]) {
    if value.is_null() {
        return;
    }
    for (a, b) in EXCLUSIVE {
        let other = if key == a {
            b
        } else if key == b {
            a
        } else {
            continue;
        };
        if given.iter().any(|g| g == other) {
            continue;
        }
        let (section, leaf) = other.rsplit_once('.').unwrap();
        if let Some(map) = get_path_mut(tree, section).and_then(Value::as_mapping_mut) {
            map.remove(leaf);
        }
    }
}

/// The value at a dotted key path, if every section on the way exists.
fn get_path<'a>(tree: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.').try_fold(tree, |node, part| node.get(part))
}

fn get_path_mut<'a>(tree: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    key.split('.')
        .try_fold(tree, |node, part| node.get_mut(part))
}

/// Applies one `key.path=value` override to the YAML tree and returns the key.
/// The value is parsed as YAML (so `0.05`, `true`, `[1, 2]` get their types).
pub fn apply_override(tree: &mut Value, assignment: &str) -> Result<String> {
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| anyhow!("expected key.path=value, e.g. --set optim.lr=0.05"))?;
    let key = key.trim();
    let value: Value = serde_yaml::from_str(raw).unwrap_or_else(|_| Value::String(raw.into()));
    set_path(tree, key, value)?;
    Ok(key.to_string())
}

/// Sets the dotted `key` of the YAML tree to `value`, creating sections on the way.
pub fn set_path(tree: &mut Value, key: &str, value: Value) -> Result<()> {
    if key.is_empty() || key.split('.').any(str::is_empty) {
        bail!("`{key}` is not a key path; expected e.g. optim.lr");
    }
    let mut node = tree;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let map = node.as_mapping_mut().ok_or_else(|| {
            anyhow!(
                "`{}` is not a section, cannot set `{key}`",
                parts[..i].join(".")
            )
        })?;
        let k = Value::String(part.to_string());
        if i + 1 == parts.len() {
            map.insert(k, value);
            return Ok(());
        }
        if !map.contains_key(&k) {
            map.insert(k.clone(), Value::Mapping(Mapping::new()));
        }
        node = map.get_mut(&k).unwrap();
    }
    unreachable!()
}

/// Names of the built-in presets.
pub fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|(n, _)| *n).collect()
}

/// Replaces `model: {preset: NAME, …}` by the preset's settings overlaid with the
/// given ones. NAME is a built-in preset or a path to a YAML file.
fn merge_model_preset(tree: &mut Value, source: &str, base_dir: &Path) -> Result<()> {
    let Some(model) = tree.get_mut("model") else {
        return Ok(());
    };
    let Some(map) = model.as_mapping_mut() else {
        bail!("{source}: key `model`: expected a mapping such as {{preset: mlp, width: 128}}");
    };
    let Some(preset) = map.get("preset").cloned() else {
        return Ok(());
    };
    let name = preset
        .as_str()
        .ok_or_else(|| {
            anyhow!("{source}: key `model.preset`: expected a preset name or a .yaml path")
        })?
        .to_string();
    let (text, origin) = if name.ends_with(".yaml") || name.ends_with(".yml") {
        let p = base_dir.join(&name);
        let text = crate::util::read_text_file(&p, "preset file", crate::util::MAX_YAML_BYTES)
            .with_context(|| format!("{source}: key `model.preset`"))?;
        (text, p.display().to_string())
    } else {
        let text = PRESETS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.to_string())
            .ok_or_else(|| {
                anyhow!(
                    "{source}: key `model.preset`: unknown preset `{name}`; built-in presets: {} (or give a path to a .yaml file)",
                    preset_names().join(", ")
                )
            })?;
        (text, format!("built-in preset {name}"))
    };
    let mut merged: Value =
        serde_yaml::from_str(&text).with_context(|| format!("{origin}: not valid YAML"))?;
    let merged_map = merged
        .as_mapping_mut()
        .ok_or_else(|| anyhow!("{origin}: expected a mapping of model settings"))?;
    for (k, v) in map.iter() {
        merged_map.insert(k.clone(), v.clone());
    }
    *map = merged_map.clone();
    Ok(())
}

impl Config {
    /// Checks that every option applies and is in range, and fills all defaults.
    pub fn resolve(mut self) -> Result<Config> {
        if self.experiment.is_empty()
            || !self
                .experiment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            || self.experiment.starts_with('.')
        {
            bail!(
                "key `experiment` must be a directory-safe name (letters, digits, '-', '_', '.'), got {:?}",
                self.experiment
            );
        }
        crate::torch::device::parse(&self.device).context("key `device`")?;
        self.analysis.validate()?;
        self.model.resolve()?;
        self.data.resolve()?;
        self.check_model_and_data()?;
        self.train.resolve(self.model.dtype)?;
        self.optim.resolve()?;
        self.schedule.resolve(&self.optim)?;
        if self.snapshots.every.is_none()
            && self.snapshots.log_spaced.is_none()
            && self.snapshots.at.is_empty()
        {
            self.snapshots.log_spaced = Some(30);
        }
        if self.snapshots.every == Some(0) {
            bail!("key `snapshots.every` must be at least 1");
        }
        {
            use validate::{at_most, caps};
            let (t, sn) = (&self.train, &self.snapshots);
            at_most("train.steps", t.steps.unwrap_or(0), caps::STEPS)?;
            at_most("train.epochs", t.epochs.unwrap_or(0), caps::EPOCHS)?;
            at_most("train.batch_size", t.batch_size, caps::BATCH)?;
            at_most(
                "snapshots.log_spaced",
                sn.log_spaced.unwrap_or(0),
                caps::SNAPSHOTS,
            )?;
            at_most(
                "snapshots.at (its length)",
                sn.at.len() as u64,
                caps::SNAPSHOTS,
            )?;
            at_most(
                "probe.extra_batches",
                self.probe.extra_batches,
                caps::EXTRA_BATCHES,
            )?;
            at_most("probe.chunk_size", self.probe.chunk_size, caps::BATCH)?;
        }
        let p = &self.probe;
        if p.chunk_size == 0 {
            bail!("key `probe.chunk_size` must be at least 1");
        }
        if p.full_subset == Some(0) {
            bail!("key `probe.full_subset` must be at least 1 (or absent for all data)");
        }
        // With batch statistics a forward pass over a chunk normalises by that
        // chunk: a minibatch split into chunks would not be the f_i step k used.
        if self.model.kind().has_batchnorm()
            && p.batchnorm == BatchNormPolicy::BatchStats
            && p.chunk_size < self.train.batch_size
        {
            bail!(
                "key `probe.chunk_size` ({}) must be at least `train.batch_size` ({}) for model kind `{}` under `probe.batchnorm: batch-stats`: BatchNorm would normalise each chunk by its own statistics",
                p.chunk_size,
                self.train.batch_size,
                self.model.kind().name()
            );
        }
        p.curvature.validate()?;
        self.probe.resolve_reference(self.model.kind())?;
        Ok(self)
    }

    /// The resolved config as YAML.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("config serialises")
    }
}

/// Where a run directory lives.
pub fn run_dir(out: &Path, experiment: &str, run_id: &str) -> PathBuf {
    out.join(experiment).join(run_id)
}

impl Config {
    /// The model and the data must fit each other.
    fn check_model_and_data(&mut self) -> Result<()> {
        let known = self.model.known_components();
        let model_kind = self.model.kind();
        match (known, &mut self.data.source) {
            (Some(n), Source::Components(d)) => {
                if let Some(c) = d.components.filter(|&c| c != n) {
                    bail!(
                        "key `data.components` is {c} but model kind `{}` has {n} components (the key is filled in from the model; leave it out)",
                        model_kind.name()
                    );
                }
                d.components = Some(n);
            }
            (Some(_), ds) => bail!(
                "model kind `{}` is a known-answer problem: its data are its component indices, set `data.dataset: components` (got `{}`)",
                model_kind.name(),
                ds.kind().name()
            ),
            (None, Source::Components(_)) => bail!(
                "dataset `components` only goes with the known-answer model kinds ({}), not `{}`",
                KNOWN_KINDS.join(", "),
                self.model.kind().name()
            ),
            _ => {}
        }
        let binary_model = matches!(
            self.model.kind(),
            ModelKind::TwoLayerRelu | ModelKind::Halfspace
        );
        match (self.model.kind(), self.data.kind()) {
            // A TorchScript module takes whatever tensors the data has.
            (ModelKind::Torchscript, _) => {}
            (kind, DatasetKind::Tensors) => bail!(
                "dataset `tensors` feeds its tensors to a TorchScript module (`model.kind: torchscript`); model kind `{}` cannot take them",
                kind.name()
            ),
            (ModelKind::MatrixFactorisation, DatasetKind::MatrixFactorisation) => {}
            (ModelKind::MatrixFactorisation, ds) | (_, ds @ DatasetKind::MatrixFactorisation) => {
                bail!(
                    "model kind `{}` cannot be trained on dataset `{}`: matrix-factorisation models and data only go together",
                    self.model.kind().name(),
                    ds.name()
                );
            }
            (ModelKind::Lstm | ModelKind::GptNeox, DatasetKind::Text | DatasetKind::Tokens) => {}
            (ModelKind::Lstm | ModelKind::GptNeox, ds)
            | (_, ds @ (DatasetKind::Text | DatasetKind::Tokens)) => {
                bail!(
                    "model kind `{}` cannot be trained on dataset `{}`: language-model data (text, tokens) goes with a language model (lstm, gpt-neox) or a TorchScript module",
                    self.model.kind().name(),
                    ds.name()
                );
            }
            (ModelKind::Gnn, DatasetKind::Ogbg) => {}
            (ModelKind::Gnn, ds) | (_, ds @ DatasetKind::Ogbg) => {
                bail!(
                    "model kind `{}` cannot be trained on dataset `{}`: graph data (ogbg) goes with the graph network (gnn) or a TorchScript module",
                    self.model.kind().name(),
                    ds.name()
                );
            }
            (ModelKind::Unet, DatasetKind::Fastmri) => {}
            (ModelKind::Unet, ds) | (_, ds @ DatasetKind::Fastmri) => {
                bail!(
                    "model kind `{}` cannot be trained on dataset `{}`: MRI volumes (fastmri) go with the U-Net (unet) or a TorchScript module",
                    self.model.kind().name(),
                    ds.name()
                );
            }
            (ModelKind::Dlrm, DatasetKind::Criteo) => {}
            (ModelKind::Dlrm, ds) | (_, ds @ DatasetKind::Criteo) => {
                bail!(
                    "model kind `{}` cannot be trained on dataset `{}`: click logs (criteo) go with DLRM (dlrm) or a TorchScript module",
                    self.model.kind().name(),
                    ds.name()
                );
            }
            (
                ModelKind::Transformer,
                DatasetKind::SyntheticTranslation | DatasetKind::Translation,
            ) => {}
            (ModelKind::Transformer, ds)
            | (_, ds @ (DatasetKind::SyntheticTranslation | DatasetKind::Translation)) => {
                bail!(
                    "model kind `{}` cannot be trained on dataset `{}`: the transformer and sentence-pair data (translation, synthetic-translation) only go together",
                    self.model.kind().name(),
                    ds.name()
                );
            }
            (ModelKind::Mlp, DatasetKind::Halfspace) => {
                bail!("model kind `mlp` needs class labels; dataset `halfspace` has ±1 labels (use model kind halfspace or two-layer-relu)");
            }
            _ => {}
        }
        let vision_model = matches!(
            self.model.kind(),
            ModelKind::Cnn | ModelKind::Resnet9 | ModelKind::Resnet18 | ModelKind::Resnet34
        );
        let image_data = matches!(
            self.data.kind(),
            DatasetKind::FashionMnist
                | DatasetKind::Mnist
                | DatasetKind::Cifar10
                | DatasetKind::Cifar100
        );
        if vision_model && !image_data {
            bail!(
                "model kind `{}` is a convolutional network and needs image data (cifar10, cifar100, mnist, fashion-mnist), not `{}`",
                self.model.kind().name(),
                self.data.kind().name()
            );
        }
        if binary_model
            && matches!(
                self.data.kind(),
                DatasetKind::FashionMnist
                    | DatasetKind::Mnist
                    | DatasetKind::Cifar10
                    | DatasetKind::Cifar100
            )
            && self.data.classes().map(<[i64]>::len) != Some(2)
        {
            bail!(
                "model kind `{}` is a binary classifier: set `data.classes` to two classes, e.g. [0, 6]",
                self.model.kind().name()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "experiment: t\nmodel: {preset: mlp}\ndata: {dataset: fashion-mnist}\ntrain: {batch_size: 8, steps: 10}\noptim: {name: sgd, lr: 0.1}\n";

    /// New optional settings must not change the run ids of existing configs
    /// (README quotes this one; results of earlier versions keep their place).
    #[test]
    fn shipped_configs_keep_their_run_ids() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let c = load(&root.join("configs/quickstart.yaml"), &[]).unwrap();
        assert_eq!(c.default_run_id(), "seed0-5f20edb5");
    }

    /// A config with every optional `train` key: its id, computed by the build
    /// before `train.checkpoint_min_seconds` existed (99b2f4c), must not move
    /// whatever the floor.
    #[test]
    fn run_ids_predating_the_checkpoint_floor_are_kept() {
        let text = "experiment: rid\nmodel: {preset: mlp, width: 8}\ndata: {dataset: fashion-mnist, subset: 100}\ntrain: {batch_size: 8, steps: 2, allow_tf32: true, autocast: bf16}\noptim: {name: sgd, lr: 0.1}\n";
        for set in [&[][..], &["train.checkpoint_min_seconds=0"][..]] {
            let c = parse(text, set).unwrap();
            assert_eq!(c.default_run_id(), "seed0-edfb3340", "{set:?}");
        }
        // At its default the key is not written (older builds can read run.yaml).
        let c = parse(text, &[]).unwrap();
        assert!(!c.to_yaml().contains("checkpoint_min_seconds"));
        let c = parse(text, &["train.checkpoint_min_seconds=0"]).unwrap();
        assert!(c.to_yaml().contains("checkpoint_min_seconds: 0"));
    }

    /// Every BatchNorm model (ResNet-50 included) refuses chunks smaller than the
    /// batch under batch-stats: each chunk would be normalised on its own.
    #[test]
    fn batchnorm_models_need_whole_batches_per_chunk() {
        for (preset, data) in [
            ("resnet18", "{dataset: cifar10}"),
            ("resnet50", "{dataset: imagefolder, path: /tmp}"),
        ] {
            let text = format!("experiment: t\nmodel: {{preset: {preset}}}\ndata: {data}\ntrain: {{batch_size: 64, steps: 10}}\noptim: {{name: sgd, lr: 0.1}}\nprobe: {{chunk_size: 32}}\n");
            let msg = format!("{:#}", parse(&text, &[]).unwrap_err());
            assert!(msg.contains("probe.chunk_size"), "{preset}: {msg}");
            assert!(parse(&text, &["probe.chunk_size=64"]).is_ok(), "{preset}");
            assert!(
                parse(&text, &["probe.batchnorm=running-stats"]).is_ok(),
                "{preset}"
            );
        }
    }

    #[test]
    fn known_answer_data_take_no_subset() {
        let base = "experiment: t\nmodel: {kind: example6}\ndata: {dataset: components}\ntrain: {batch_size: 1, steps: 10}\noptim: {name: sgd, lr: 0.1}\n";
        assert!(parse(base, &[]).is_ok());
        let msg = format!("{:#}", parse(base, &["data.subset=1"]).unwrap_err());
        assert!(msg.contains("data.subset"), "{msg}");
    }

    fn parse(text: &str, sets: &[&str]) -> Result<Config> {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        from_yaml_text(text, "test.yaml", Path::new("."), &sets)
    }

    #[test]
    fn set_of_one_exclusive_key_replaces_the_files_other() {
        let epochs = BASE.replace("steps: 10", "epochs: 3");
        let c = parse(&epochs, &["train.steps=7"]).unwrap();
        assert_eq!((c.train.steps, c.train.epochs), (Some(7), None));
        // The same as the spelled-out form, so the same run id.
        let spelled = parse(&epochs, &["train.epochs=null", "train.steps=7"]).unwrap();
        assert_eq!(c.default_run_id(), spelled.default_run_id());
        let c = parse(BASE, &["train.epochs=2"]).unwrap();
        assert_eq!((c.train.steps, c.train.epochs), (None, Some(2)));
        // Both from --set: still refused.
        let e = parse(BASE, &["train.epochs=2", "train.steps=5"]).unwrap_err();
        assert!(format!("{e:#}").contains("exclusive"), "{e:#}");
        // Both in the file: refused.
        let both = BASE.replace("steps: 10", "steps: 10, epochs: 2");
        assert!(parse(&both, &[]).is_err());
        let warm = format!("{BASE}schedule: {{name: warmup-cosine, warmup_fraction: 0.1}}\n");
        let c = parse(&warm, &["schedule.warmup_steps=4"]).unwrap();
        let s = &c.schedule;
        assert_eq!((s.warmup_fraction, s.warmup_steps), (None, Some(4)));
    }

    #[test]
    fn preset_and_overrides_resolve() {
        let c = parse(
            BASE,
            &[
                "optim.lr=0.05",
                "seed=3",
                "model.width=512",
                "optim.momentum=0.9",
            ],
        )
        .unwrap();
        assert_eq!(c.optim.lr, 0.05);
        assert_eq!(c.seed, 3);
        assert_eq!(c.model.kind(), ModelKind::Mlp);
        assert!(matches!(&c.model.arch, crate::model::config::Arch::Mlp(s) if s.width == 512));
        assert_eq!(c.optim.momentum, Some(0.9));
        assert_eq!(c.optim.nesterov, Some(false));
        assert_eq!(c.snapshots.log_spaced, Some(30));
        // the resolved YAML parses back to the same config
        let again = parse(&c.to_yaml(), &[]).unwrap();
        assert_eq!(again, c);
    }

    /// The WMT preset resolves to AlgoPerf's size with the token data's
    /// defaults written out; keys of other data sets are refused.
    #[test]
    fn transformer_preset_and_token_data_resolve() {
        let text = "experiment: t
model: {preset: transformer-wmt}
data: {dataset: synthetic-translation}
train: {batch_size: 8, steps: 2}
optim: {name: sgd, lr: 0.1}
";
        let c = parse(text, &[]).unwrap();
        let m = &c.model;
        let crate::model::config::Arch::Transformer(t) = &m.arch else {
            panic!("{m:?}")
        };
        assert_eq!(
            (t.width, t.depth, t.heads, t.mlp_dim, t.dropout),
            (1024, 6, 16, 1024, 0.0)
        );
        let Source::SyntheticTranslation(d) = &c.data.source else {
            panic!("{:?}", c.data)
        };
        assert_eq!((d.examples, d.seq_len, d.vocab), (1024, 32, 32_000));
        assert_eq!(parse(&c.to_yaml(), &[]).unwrap(), c);
        let msg = format!("{:#}", parse(text, &["data.per_class=3"]).unwrap_err());
        assert!(msg.contains("data.per_class"), "{msg}");
        let msg = format!(
            "{:#}",
            parse(text, &["model.width=30", "model.heads=4"]).unwrap_err()
        );
        assert!(msg.contains("multiple of `model.heads` (4)"), "{msg}");
        // Other data sets do not take the token keys (their run ids are unchanged).
        let msg = format!("{:#}", parse(BASE, &["data.vocab=10"]).unwrap_err());
        assert!(msg.contains("data.vocab"), "{msg}");
    }

    #[test]
    fn unknown_key_names_key_file_and_valid_keys() {
        let err = parse(&BASE.replace("lr: 0.1", "lr: 0.1, lrr: 2"), &[]).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("test.yaml"), "{msg}");
        assert!(msg.contains("optim.lrr"), "{msg}");
        assert!(
            msg.contains("`momentum`") && msg.contains("`weight_decay`"),
            "{msg}"
        );
        let err = parse(BASE, &["train.bach_size=3"]).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("train.bach_size") && msg.contains("--set"),
            "{msg}"
        );
    }

    #[test]
    fn inapplicable_keys_are_rejected() {
        let msg = format!(
            "{:#}",
            parse(BASE, &["optim.betas=[0.9, 0.99]"]).unwrap_err()
        );
        assert!(msg.contains("optim.betas") && msg.contains("sgd"), "{msg}");
        let msg = format!("{:#}", parse(BASE, &["model.rank=3"]).unwrap_err());
        assert!(msg.contains("model.rank") && msg.contains("width"), "{msg}");
        let msg = format!("{:#}", parse(BASE, &["model.preset=nope"]).unwrap_err());
        assert!(
            msg.contains("unknown preset") && msg.contains("mlp"),
            "{msg}"
        );
    }

    #[test]
    fn defaults_follow_torch_optim() {
        let c = parse(BASE, &["optim.name=adamw"]).unwrap();
        assert_eq!(c.optim.weight_decay, Some(0.01));
        assert_eq!(c.optim.betas, Some([0.9, 0.999]));
        assert_eq!(c.optim.eps, Some(1e-8));
        let c = parse(BASE, &["optim.name=adam"]).unwrap();
        assert_eq!(c.optim.weight_decay, Some(0.0));
        let c = parse(BASE, &[]).unwrap();
        assert_eq!(
            (c.optim.momentum, c.optim.nesterov),
            (Some(0.0), Some(false))
        );
        let c = parse(
            BASE,
            &["model.preset=two-layer-relu", "data.classes=[0, 1]"],
        )
        .unwrap();
        assert!(
            matches!(&c.model.arch, crate::model::config::Arch::TwoLayerRelu(s) if s.width == 64)
        );
    }

    /// `train.allow_tf32` and `train.autocast`: defaults keep run ids (they
    /// are not serialised), set values change them (they change the
    /// trajectory), and the errors name the key and the allowed values.
    #[test]
    fn precision_keys_of_training() {
        let plain = parse(BASE, &[]).unwrap();
        assert_eq!(plain.train.autocast, None);
        assert!(!plain.train.allow_tf32);
        assert!(!plain.to_yaml().contains("autocast") && !plain.to_yaml().contains("allow_tf32"));
        let off = parse(BASE, &["train.allow_tf32=false"]).unwrap();
        assert_eq!(off.default_run_id(), plain.default_run_id());
        let tf32 = parse(BASE, &["train.allow_tf32=true"]).unwrap();
        let bf16 = parse(BASE, &["train.autocast=bf16"]).unwrap();
        assert_eq!(bf16.train.autocast, Some(AutocastDtype::Bf16));
        let ids = [&plain, &tf32, &bf16].map(|c| c.default_run_id());
        assert!(
            ids[0] != ids[1] && ids[0] != ids[2] && ids[1] != ids[2],
            "{ids:?}"
        );
        assert_eq!(parse(&bf16.to_yaml(), &[]).unwrap(), bf16);

        let msg = format!("{:#}", parse(BASE, &["train.autocast=fp16"]).unwrap_err());
        assert!(
            msg.contains("train.autocast") && msg.contains("`bf16`"),
            "{msg}"
        );
        let msg = format!(
            "{:#}",
            parse(BASE, &["train.allow_tf32=yes please"]).unwrap_err()
        );
        assert!(msg.contains("train.allow_tf32"), "{msg}");
        let msg = format!(
            "{:#}",
            parse(BASE, &["train.autocast=bf16", "model.dtype=f64"]).unwrap_err()
        );
        assert!(
            msg.contains("train.autocast") && msg.contains("f64"),
            "{msg}"
        );
        let msg = format!(
            "{:#}",
            parse(BASE, &["train.allow_tf32=true", "model.dtype=f64"]).unwrap_err()
        );
        assert!(
            msg.contains("train.allow_tf32") && msg.contains("f64"),
            "{msg}"
        );
    }

    #[test]
    fn checkpoint_floor_defaults_and_is_checked() {
        assert_eq!(parse(BASE, &[]).unwrap().train.checkpoint_min_seconds, 10.0);
        assert_eq!(
            parse(BASE, &["train.checkpoint_min_seconds=0"])
                .unwrap()
                .train
                .checkpoint_min_seconds,
            0.0
        );
        for bad in ["-1", ".nan", ".inf"] {
            let msg = format!(
                "{:#}",
                parse(BASE, &[&format!("train.checkpoint_min_seconds={bad}")]).unwrap_err()
            );
            assert!(msg.contains("train.checkpoint_min_seconds"), "{bad}: {msg}");
        }
    }

    #[test]
    fn run_id_ignores_probe_and_device() {
        let a = parse(BASE, &[]).unwrap();
        let b = parse(
            BASE,
            &[
                "probe.extra_batches=7",
                "device=cpu",
                "data.path=/moved/data",
                "train.checkpoint_every=5",
                "train.checkpoint_minutes=1",
                "train.checkpoint_min_seconds=0",
            ],
        )
        .unwrap();
        let c = parse(BASE, &["seed=1"]).unwrap();
        let d = parse(BASE, &["optim.lr=0.2"]).unwrap();
        assert_eq!(a.default_run_id(), b.default_run_id());
        assert_ne!(a.default_run_id(), c.default_run_id());
        assert_ne!(a.default_run_id(), d.default_run_id());
        assert!(c.default_run_id().starts_with("seed1-"));
        assert_eq!(diff_keys(&a, &d), vec!["optim.lr".to_string()]);
    }
}
