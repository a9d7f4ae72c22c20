//! The values of the `probe` column of landscape.parquet and
//! curvature.parquet: which loss f_i a row measures.

use std::fmt;
use std::str::FromStr;

/// Which loss a probe row measures at x^k.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeLabel {
    /// `train`: the minibatch i_k that training step k used (augmented as step
    /// k saw it).
    Train,
    /// `extra-<j>`: the j-th extra minibatch, seeded by (run seed, k, j).
    Extra(u64),
    /// `full`: the loss over all training examples (or `probe.full_subset`).
    Full,
    /// `component-<i>`: component f_i of a known-answer problem (point clouds).
    Component(u64),
}

impl ProbeLabel {
    /// A minibatch row (not the full-data loss f).
    pub fn is_minibatch(self) -> bool {
        self != ProbeLabel::Full
    }
    pub fn is_extra(self) -> bool {
        matches!(self, ProbeLabel::Extra(_))
    }
}

impl fmt::Display for ProbeLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeLabel::Train => f.write_str("train"),
            ProbeLabel::Extra(j) => write!(f, "extra-{j}"),
            ProbeLabel::Full => f.write_str("full"),
            ProbeLabel::Component(i) => write!(f, "component-{i}"),
        }
    }
}

impl FromStr for ProbeLabel {
    type Err = String;
    fn from_str(s: &str) -> Result<ProbeLabel, String> {
        let index = |rest: &str| rest.parse::<u64>().ok();
        match s {
            "train" => Some(ProbeLabel::Train),
            "full" => Some(ProbeLabel::Full),
            _ => s
                .strip_prefix("extra-")
                .and_then(index)
                .map(ProbeLabel::Extra)
                .or_else(|| {
                    s.strip_prefix("component-")
                        .and_then(index)
                        .map(ProbeLabel::Component)
                }),
        }
        .ok_or_else(|| {
            format!("probe label {s:?} is none of train, extra-<j>, full, component-<i>")
        })
    }
}

impl serde::Serialize for ProbeLabel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip() {
        for (l, s) in [
            (ProbeLabel::Train, "train"),
            (ProbeLabel::Extra(3), "extra-3"),
            (ProbeLabel::Full, "full"),
            (ProbeLabel::Component(12), "component-12"),
        ] {
            assert_eq!(l.to_string(), s);
            assert_eq!(s.parse::<ProbeLabel>().unwrap(), l);
        }
        for bad in ["", "extra-", "extra-x", "Train", "component--1", "fullx"] {
            assert!(bad.parse::<ProbeLabel>().is_err(), "{bad}");
        }
    }
}

/// The values of the `source` column of landscape.parquet: how a row's x^k
/// was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum RowSource {
    /// `snapshot`: x^k read from the stored snapshot (every row of the
    /// formats before `abcond.landscape/3`, which have no `source` column).
    #[default]
    Snapshot,
    /// `replay`: x^k re-created by re-running training between two stored
    /// iterates, checked bit for bit against them (`abcond probe --replay`).
    Replay,
}

impl RowSource {
    pub fn name(self) -> &'static str {
        match self {
            RowSource::Snapshot => "snapshot",
            RowSource::Replay => "replay",
        }
    }
}

impl fmt::Display for RowSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RowSource {
    type Err = String;
    fn from_str(s: &str) -> Result<RowSource, String> {
        match s {
            "snapshot" => Ok(RowSource::Snapshot),
            "replay" => Ok(RowSource::Replay),
            _ => Err(format!("row source {s:?} is neither snapshot nor replay")),
        }
    }
}
