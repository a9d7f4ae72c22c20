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
            let hint =
                closest(key, &valid).map_or(String::new(), |c| format!(" (did you mean `{c}`?)"));
            return format!(
                "key `{section}.{key}` does not apply to {what}{hint}; its settings are: {}",
                valid.join(", ")
            );
        }
        let inner = with_suggestion(&inner);
        match e.path().to_string().as_str() {
            "." | "" => format!("key `{section}`: {inner}"),
            path => format!("key `{section}.{path}`: {inner}"),
        }
    })
}

/// The candidate closest to a misspelt `word`, if one is close: at most one
/// edit for words of up to 4 characters, two up to 8, three beyond (edits:
/// insert, delete, substitute, swap two neighbours).
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = match word.chars().count() {
        0..=4 => 1,
        5..=8 => 2,
        _ => 3,
    };
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal-string-alignment distance (Levenshtein plus adjacent swaps).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, v) in d[0].iter_mut().enumerate() {
        *v = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// serde's "unknown field `x`, expected one of `a`, `b`" (or "unknown
/// variant …") with a "did you mean" for a close candidate appended.
pub fn with_suggestion(message: &str) -> String {
    for kind in ["unknown field `", "unknown variant `"] {
        let Some(at) = message.find(kind) else {
            continue;
        };
        let rest = &message[at + kind.len()..];
        let Some((word, tail)) = rest.split_once('`') else {
            continue;
        };
        let candidates: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
        if let Some(c) = closest(word, &candidates) {
            return format!("{message} (did you mean `{c}`?)");
        }
    }
    message.to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean() {
        let keys = ["batch_size", "epochs", "steps", "checkpoint_every"];
        assert_eq!(closest("batchsize", &keys), Some("batch_size"));
        assert_eq!(closest("setps", &keys), Some("steps"));
        assert_eq!(closest("epoch", &keys), Some("epochs"));
        assert_eq!(closest("lr", &keys), None);
        assert_eq!(
            with_suggestion("unknown field `beta1`, expected one of `name`, `lr`, `betas`"),
            "unknown field `beta1`, expected one of `name`, `lr`, `betas` (did you mean `betas`?)"
        );
        assert_eq!(
            with_suggestion("unknown variant `adamm`, expected one of `sgd`, `adam`, `adamw`"),
            "unknown variant `adamm`, expected one of `sgd`, `adam`, `adamw` (did you mean `adam`?)"
        );
        assert_eq!(
            with_suggestion("unknown field `zzz`, expected `a` or `b`"),
            "unknown field `zzz`, expected `a` or `b`"
        );
    }
}
