//! Checks shared by the config sections.

use anyhow::{bail, Result};

/// Fails when an option that does not apply to `what` is set.
pub(crate) fn only(
    section: &str,
    what: &str,
    set: &[(&str, bool)],
    allowed: &[&str],
) -> Result<()> {
    for (key, is_set) in set {
        if *is_set && !allowed.contains(key) {
            bail!(
                "key `{section}.{key}` does not apply to {what}; its settings are: {}",
                allowed.join(", ")
            );
        }
    }
    Ok(())
}

pub(crate) fn positive(name: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v > 0.0) {
        bail!("key `{name}` must be a positive number, got {v}");
    }
    Ok(())
}

/// The settings of one variant of a tagged section (a model kind, a data
/// set): read from the section's keys with serde (`#[serde(default,
/// deny_unknown_fields)]`, so `Default` is the one place of its defaults) and
/// checked by [`Settings::check`].
pub trait Settings: serde::Serialize + serde::de::DeserializeOwned + Default {
    /// Range checks; `what` names the variant in messages (e.g. "model kind `vit`").
    fn check(&self, _what: &str) -> Result<()> {
        Ok(())
    }
}

/// Reads a variant's settings from the keys of its section (without the tag
/// key); an error names the full key, and for a key the variant does not have,
/// the keys it has (`fixed`: the section's keys every variant has).
pub(crate) fn read_keys<T: Settings>(
    section: &str,
    what: &str,
    fixed: &[&str],
    keys: serde_yaml::Mapping,
) -> std::result::Result<T, String> {
    serde_path_to_error::deserialize::<_, T>(serde_yaml::Value::Mapping(keys)).map_err(|e| {
        let inner = e.inner().to_string();
        if let Some(rest) = inner.strip_prefix("unknown field `") {
            let key = rest.split('`').next().unwrap_or_default();
            let valid: Vec<&str> = fixed
                .iter()
                .copied()
                .chain(rest.split('`').skip(2).step_by(2))
                .collect();
            return format!(
                "key `{section}.{key}` does not apply to {what}; its settings are: {}",
                valid.join(", ")
            );
        }
        match e.path().to_string().as_str() {
            "." | "" => format!("key `{section}`: {inner}"),
            path => format!("key `{section}.{path}`: {inner}"),
        }
    })
}

/// A variant's settings as the YAML keys of its section.
pub(crate) fn to_keys<T: serde::Serialize>(settings: &T) -> serde_yaml::Mapping {
    match serde_yaml::to_value(settings) {
        Ok(serde_yaml::Value::Mapping(m)) => m,
        _ => serde_yaml::Mapping::new(),
    }
}

/// A variant without settings of its own (e.g. the ResNets: their size is fixed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

impl Settings for NoSettings {}

/// Fails unless `v` ≥ 1.
pub(crate) fn at_least_one(key: &str, v: i64) -> Result<()> {
    if v < 1 {
        bail!("key `{key}` must be at least 1, got {v}");
    }
    Ok(())
}

/// Caps on counts and sizes: far above any real run, low enough that a typo
/// (`1e12`) is an error naming the key instead of an allocation that fills the
/// memory or a loop that never reports. docs/robustness.md lists them.
pub mod caps {
    /// `train.steps`, and `train.epochs` × steps per epoch.
    pub const STEPS: u64 = 10_000_000_000;
    pub const EPOCHS: u64 = 10_000_000;
    pub const BATCH: u64 = 1 << 24;
    /// Snapshots of one run, from `every`, `log_spaced` and `at` together.
    pub const SNAPSHOTS: u64 = 100_000;
    pub const EXTRA_BATCHES: u64 = 10_000;
    /// Values of a synthetic data set (examples × dimension).
    pub const SYNTHETIC_VALUES: u64 = 1 << 28;
    /// Intra-op threads per available core (`--threads`).
    pub const THREADS_PER_CORE: usize = 4;
}

/// Fails unless `1 ≤ v ≤ max` for key `key`.
pub(crate) fn at_most(key: &str, v: u64, max: u64) -> Result<()> {
    if v > max {
        bail!("key `{key}` is {v}, more than abcond's limit of {max} (is that a typo?)");
    }
    Ok(())
}

/// Fails when a synthetic data set would hold more than
/// [`caps::SYNTHETIC_VALUES`] values; `what` lists the keys that set its size.
pub(crate) fn synthetic_size(what: &str, factors: &[i64]) -> Result<()> {
    let mut n: u64 = 1;
    for &f in factors {
        n = n.saturating_mul(f.max(0) as u64);
    }
    if n > caps::SYNTHETIC_VALUES {
        bail!(
            "keys {what} make a synthetic data set of {n} values, more than abcond's limit of {} (is that a typo?)",
            caps::SYNTHETIC_VALUES
        );
    }
    Ok(())
}
