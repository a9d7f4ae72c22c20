//! A run's identity: everything that determines the training trajectory and
//! what is saved of it, as YAML text, and the run id hashed from it. Run ids
//! name run directories, so they must never move for an existing config
//! (tests/pins.rs pins them).

use super::Config;
use crate::probe::config::ProbeConfig;
use crate::train::config::default_checkpoint_minutes;
use serde_yaml::Value;

impl Config {
    /// Everything that determines the training trajectory and what is saved of
    /// it, as YAML: the config without `device`, `data.path`, `probe` and
    /// checkpoint cadence.
    pub fn training_identity(&self) -> String {
        let mut c = self.clone();
        c.device = String::new();
        // Where the data lives does not change the trajectory (moving the files
        // must not orphan a run); what the data is, is checked separately.
        c.data.clear_path();
        c.model.clear_path();
        c.probe = ProbeConfig::default();
        c.train.checkpoint_every = None;
        c.train.checkpoint_minutes = default_checkpoint_minutes();
        // Analysis settings never change the trajectory; dropping the key keeps
        // run ids of configs written before it existed. The same for the
        // checkpoint floor (cadence, and newer than the first run ids).
        // `shift_remove`: the other keys keep their order (`remove` would move
        // the last key into the gap, and the id hashes the text).
        let mut tree = serde_yaml::to_value(&c).expect("config serialises");
        if let Some(m) = tree.as_mapping_mut() {
            m.shift_remove("analysis");
            if let Some(t) = m.get_mut("train").and_then(|t| t.as_mapping_mut()) {
                t.shift_remove("checkpoint_min_seconds");
            }
        }
        serde_yaml::to_string(&tree).expect("config serialises")
    }

    /// Default run id: the seed and a hash of the training identity, so that the
    /// same config always maps to the same run directory (and resumes there).
    pub fn default_run_id(&self) -> String {
        format!(
            "seed{}-{:08x}",
            self.seed,
            fnv1a64(self.training_identity().as_bytes()) as u32
        )
    }
}

/// FNV-1a, 64 bit: a stable hash (std's hashers are not stable across releases).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Lists the keys whose values differ between two configs (dotted paths).
pub fn diff_keys(a: &Config, b: &Config) -> Vec<String> {
    let va = serde_yaml::to_value(a).unwrap();
    let vb = serde_yaml::to_value(b).unwrap();
    let mut out = Vec::new();
    diff_values("", &va, &vb, &mut out);
    out
}

fn diff_values(prefix: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Mapping(ma), Value::Mapping(mb)) => {
            let mut keys: Vec<String> = ma
                .keys()
                .chain(mb.keys())
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                let na = ma.get(k.as_str()).unwrap_or(&Value::Null);
                let nb = mb.get(k.as_str()).unwrap_or(&Value::Null);
                diff_values(&key, na, nb, out);
            }
        }
        _ if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}
