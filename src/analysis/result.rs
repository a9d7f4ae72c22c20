//! What the analysis computed: per group of runs, the alpha-beta result, the
//! heat-map cells, sigma_int², the Aiming/PL/QCvx constants, L and Theorem 1.

use super::alphabeta::{AbResult, Cell, Frame};
use super::bound;
use super::conditions::{AimingRow, PlRow, RunConditions};
use super::config::AnalysisConfig;
use super::inputs::{Group, RunData};
use crate::store::tables::LandscapeRow;
use std::path::PathBuf;

/// Everything computed for one group of runs.
pub struct GroupResult {
    pub group: Group,
    pub ab: AbResult,
    pub frame: Frame,
    pub cells: Vec<Cell>,
    /// Per run of the group: (run index, sigma_int², f(x^K), from full data).
    pub sigma: Vec<RunSigma>,
    /// Per run with full-data rows: (run index, Aiming rows, PL rows, constants).
    pub conditions: Vec<RunCurves>,
    /// L from the Hessian eigenvalues of the group's runs.
    pub curvature: bound::Curvature,
    /// Theorem 1 for the group and per run.
    pub bound: bound::SgdBound,
    pub run_bounds: Vec<(usize, bound::SgdBound)>,
}

/// sigma_int² of one run (`run`: index into [`Analysis::runs`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunSigma {
    pub run: usize,
    pub sigma_int2: f64,
    /// f(x^K), the f* estimate.
    pub f_ref: f64,
    /// Whether f(x^K) came from full-data rows (else the mean minibatch loss at x^K).
    pub from_full: bool,
}

/// The full-data curves of one run and the constants read off them.
pub struct RunCurves {
    pub run: usize,
    pub aiming: Vec<AimingRow>,
    pub pl: Vec<PlRow>,
    pub constants: RunConditions,
}

impl GroupResult {
    /// Mean sigma_int² over the group's runs.
    pub fn sigma_int2(&self) -> Option<f64> {
        (!self.sigma.is_empty())
            .then(|| self.sigma.iter().map(|s| s.sigma_int2).sum::<f64>() / self.sigma.len() as f64)
    }

    /// (beta·sigma_int², 2·beta·sigma_int²/(alpha − beta)) at the best-ratio pair.
    pub fn bound_terms(&self) -> Option<(f64, f64)> {
        let s = self.sigma_int2()?;
        let b = self.ab.best.as_ref()?;
        Some((b.beta * s, 2.0 * b.beta * s / (b.alpha - b.beta)))
    }
}

pub struct Analysis {
    pub dir: PathBuf,
    pub settings: AnalysisConfig,
    pub runs: Vec<RunData>,
    pub groups: Vec<GroupResult>,
    pub skipped: Vec<String>,
    pub notes: Vec<String>,
    pub written: Vec<PathBuf>,
    /// What summary.yaml holds (set when it is written): the source of
    /// `--json`'s summary.
    pub summary: Option<super::summary::Summary>,
}

/// A group's file name suffix: none when there is one group.
pub fn suffix(a: &Analysis, g: &GroupResult) -> String {
    if a.groups.len() == 1 {
        String::new()
    } else {
        format!("-{}", g.group.slug)
    }
}

/// The landscape row a constraint row came from.
pub fn origin<'a>(a: &'a Analysis, g: &GroupResult, i: usize) -> &'a LandscapeRow {
    let r = &g.ab.rows[i];
    &a.runs[r.run].rows[r.row]
}

pub fn origin_text(r: &LandscapeRow) -> String {
    format!("{} step {} {}", r.run_id, r.step, r.probe)
}

/// The conditions of a group: the minimum (worst case) over its runs, as for
/// the alpha-beta condition.
pub fn aggregate(g: &GroupResult) -> Option<RunConditions> {
    let all: Vec<&RunConditions> = g.conditions.iter().map(|c| &c.constants).collect();
    let first = *all.first()?;
    let mut c = RunConditions {
        steps: all.iter().map(|c| c.steps).sum(),
        aiming_fail_steps: all.iter().map(|c| c.aiming_fail_steps).sum(),
        nonpositive_gap_steps: all.iter().map(|c| c.nonpositive_gap_steps).sum(),
        aiming_theta: all
            .iter()
            .filter_map(|c| c.aiming_theta)
            .min_by(|a, b| a.total_cmp(b)),
        qcvx_theta_lo: all.iter().map(|c| c.qcvx_theta_lo).fold(0.0, f64::max),
        qcvx_theta_hi: all
            .iter()
            .map(|c| c.qcvx_theta_hi)
            .fold(f64::INFINITY, f64::min),
        ..Default::default()
    };
    let worst = all
        .iter()
        .filter(|c| c.min_cos.is_some())
        .min_by(|a, b| a.min_cos.unwrap().total_cmp(&b.min_cos.unwrap()));
    c.min_cos = worst.and_then(|w| w.min_cos);
    c.min_cos_step = worst.and_then(|w| w.min_cos_step);
    c.pl = first
        .pl
        .iter()
        .enumerate()
        .map(|(k, (d, _))| {
            let best = all
                .iter()
                .filter_map(|c| c.pl[k].1)
                .min_by(|a, b| a.0.total_cmp(&b.0));
            (*d, best)
        })
        .collect();
    Some(c)
}
