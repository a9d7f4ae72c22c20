//! Phase 3 of the pipeline: `abcond analyze PATH` turns the landscape rows of
//! one run, or of an experiment of many runs (seeds, sweep values), into what
//! the paper reports and more — the exact feasible (alpha, beta) region per
//! group of runs, the slack grid of the heat maps, Aiming/PL/QCvx constants,
//! the interpolation error, sweep trends, figures and a report — all under
//! `PATH/analysis/`.

pub mod alphabeta;
pub mod bound;
pub mod conditions;
pub mod config;
pub mod inputs;
pub mod plots;
pub mod region;
pub mod report;
pub mod tables;

use crate::config::AnalysisConfig;
use crate::store::tables::LandscapeRow;
use alphabeta::{AbResult, Cell};
use anyhow::{Context, Result};
use conditions::{AimingRow, PlRow, RunConditions};
use inputs::{Group, RunData};
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};
use tables::Columns;

pub const SUMMARY_FORMAT: &str = "abcond.analysis/1";

/// Theorem 1 and the approximations abcond evaluates it with.
pub const BOUND_TEXT: &str = "Theorem 1 (SGD, constant gamma ≤ (alpha − beta)/(2L)): min_k E[f(x^k) − f*] ≤ dist(x^0,S)²/(K·gamma·(alpha − beta)) + 2·L·gamma·sigma²/(alpha − beta) + 2·beta·sigma²/(alpha − beta), minimised over the feasible (alpha, beta) with alpha − beta ≥ 2·L·gamma; dist(x^0,S) ≈ ||x^0 − x^K||, sigma² = sigma_int², f* ≈ f(x^K), L = max |λ| of the probed minibatch Hessians, gamma = optim.lr";

/// Everything computed for one group of runs.
pub struct GroupResult {
    pub group: Group,
    pub ab: AbResult,
    pub frame: (f64, f64, f64, f64),
    pub cells: Vec<Cell>,
    /// Per run of the group: (run index, sigma_int², f(x^K), from full data).
    pub sigma: Vec<(usize, f64, f64, bool)>,
    /// Per run with full-data rows: (run index, Aiming rows, PL rows, constants).
    pub conditions: Vec<(usize, Vec<AimingRow>, Vec<PlRow>, RunConditions)>,
    /// L from the Hessian eigenvalues of the group's runs.
    pub curvature: bound::Curvature,
    /// Theorem 1 for the group and per run.
    pub bound: bound::SgdBound,
    pub run_bounds: Vec<(usize, bound::SgdBound)>,
}

impl GroupResult {
    /// Mean sigma_int² over the group's runs.
    pub fn sigma_int2(&self) -> Option<f64> {
        (!self.sigma.is_empty())
            .then(|| self.sigma.iter().map(|s| s.1).sum::<f64>() / self.sigma.len() as f64)
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
}

/// Analyses PATH (a run directory or a directory of runs) and writes
/// `PATH/analysis/`. Settings: `base` when given, else the runs' own
/// `analysis` section; then the `--set analysis.*` overrides.
pub fn analyze(
    path: &Path,
    base: Option<AnalysisConfig>,
    overrides: &[String],
    quiet: bool,
) -> Result<Analysis> {
    let dirs = inputs::discover(path)?;
    let mut skipped = Vec::new();
    let mut notes = Vec::new();
    let runs = inputs::load_runs(&dirs, &mut skipped)?;
    if runs.is_empty() {
        anyhow::bail!(
            "nothing to analyse under {}: no run has landscape.parquet ({}); probe runs with `abcond probe RUN_DIR`",
            path.display(),
            skipped.join("; ")
        );
    }
    let settings = inputs::settings(&runs, base, overrides, &mut notes)?;
    let groups = inputs::group(&runs);
    crate::util::progress::note(
        quiet,
        &format!(
            "analysing {} run(s) in {} group(s) under {}",
            runs.len(),
            groups.len(),
            path.display()
        ),
    );
    let mut results = Vec::new();
    for g in groups {
        results.push(analyse_group(&runs, g, &settings));
    }
    let dir = path.join("analysis");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut a = Analysis {
        dir,
        settings,
        runs,
        groups: results,
        skipped,
        notes,
        written: Vec::new(),
    };
    write_outputs(&mut a)?;
    Ok(a)
}

fn analyse_group(runs: &[RunData], group: Group, s: &AnalysisConfig) -> GroupResult {
    let rows = alphabeta::rows(runs, &group, s);
    let ab = alphabeta::analyse(rows, s.margin);
    let frame = alphabeta::frame(&ab, s);
    let cells = alphabeta::grid(&ab.rows, frame, s.grid.points as usize, s.margin);
    let sigma: Vec<(usize, f64, f64, bool)> = group
        .runs
        .iter()
        .filter_map(|&ri| {
            alphabeta::sigma_int2(&runs[ri], s.f_star).map(|(v, f, full)| (ri, v, f, full))
        })
        .collect();
    let conditions = group
        .runs
        .iter()
        .filter_map(|&ri| {
            let aiming = conditions::aiming_rows(&runs[ri].rows);
            if aiming.is_empty() {
                return None;
            }
            let pl = conditions::pl_rows(&aiming, &s.pl_deltas);
            let c = conditions::constants(&aiming, &pl, &s.pl_deltas);
            Some((ri, aiming, pl, c))
        })
        .collect();
    let curvature = bound::curvature(runs, &group.runs, s.train_only);
    let sig: Vec<(usize, f64, f64)> = sigma.iter().map(|s| (s.0, s.1, s.2)).collect();
    let group_sigma2 =
        (!sig.is_empty()).then(|| sig.iter().map(|s| s.1).sum::<f64>() / sig.len() as f64);
    let (bound, run_bounds) = bound::for_group(
        runs,
        &group.runs,
        &ab.region,
        &curvature,
        &sig,
        group_sigma2,
    );
    GroupResult {
        group,
        ab,
        frame,
        cells,
        sigma,
        conditions,
        curvature,
        bound,
        run_bounds,
    }
}

/// A group's file name suffix: none when there is one group.
fn suffix(a: &Analysis, g: &GroupResult) -> String {
    if a.groups.len() == 1 {
        String::new()
    } else {
        format!("-{}", g.group.slug)
    }
}

fn settings_meta(a: &Analysis) -> Vec<(&'static str, String)> {
    vec![
        ("abcond.f_star", a.settings.f_star.describe()),
        ("abcond.margin", format!("{}", a.settings.margin)),
        (
            "abcond.rows",
            if a.settings.train_only {
                "train".to_string()
            } else {
                "train+extra".to_string()
            },
        ),
    ]
}

fn write_outputs(a: &mut Analysis) -> Result<()> {
    let dir = a.dir.clone();
    let meta = settings_meta(a);
    let mut written = Vec::new();

    // ab_region.parquet
    let mut g_col = Vec::new();
    let mut order = Vec::new();
    let mut kind = Vec::new();
    let mut alpha = Vec::new();
    let mut beta = Vec::new();
    for g in &a.groups {
        let r = &g.ab.region;
        // The boundary in order: the incoming direction, the vertices, the
        // outgoing direction.
        let boundary = r
            .ray_first
            .map(|d| ("direction", d))
            .into_iter()
            .chain(r.vertices.iter().map(|v| ("vertex", *v)))
            .chain(r.ray_last.map(|d| ("direction", d)));
        for (i, (k, v)) in boundary.enumerate() {
            g_col.push(g.group.label.clone());
            order.push(i as i64);
            kind.push(k.to_string());
            alpha.push(v.0);
            beta.push(v.1);
        }
    }
    let p = dir.join("ab_region.parquet");
    with_group_keys(Columns::default().utf8("group", &g_col), a, &g_col)
        .i64("order", order)
        .utf8("kind", &kind)
        .f64("alpha", alpha)
        .f64("beta", beta)
        .write(&p, tables::REGION_FORMAT, &meta)?;
    written.push(p);

    // ab_grid.parquet
    let mut c = GridCols::default();
    for g in &a.groups {
        // A group without minibatch rows has no slack to map.
        let cells = if g.ab.rows.is_empty() {
            &[][..]
        } else {
            &g.cells[..]
        };
        for cell in cells {
            let row = &g.ab.rows[cell.binding];
            let lr = &a.runs[row.run].rows[row.row];
            c.group.push(g.group.label.clone());
            c.alpha.push(cell.alpha);
            c.beta.push(cell.beta);
            c.in_domain.push(cell.in_domain);
            c.min_slack.push(cell.min_slack);
            c.violations.push(cell.violations as i64);
            c.rows.push(g.ab.rows.len() as i64);
            c.feasible.push(cell.feasible());
            c.run_id.push(lr.run_id.clone());
            c.step.push(lr.step);
            c.probe.push(lr.probe.to_string());
        }
    }
    let p = dir.join("ab_grid.parquet");
    with_group_keys(Columns::default().utf8("group", &c.group), a, &c.group)
        .f64("alpha", c.alpha)
        .f64("beta", c.beta)
        .bool("in_domain", c.in_domain)
        .f64("min_slack", c.min_slack)
        .i64("violations", c.violations)
        .i64("rows", c.rows)
        .bool("feasible", c.feasible)
        .utf8("binding_run_id", &c.run_id)
        .i64("binding_step", c.step)
        .utf8("binding_probe", &c.probe)
        .write(&p, tables::GRID_FORMAT, &meta)?;
    written.push(p);

    // aiming.parquet and pl.parquet
    let mut am = AimCols::default();
    let mut pl = PlCols::default();
    for g in &a.groups {
        for (ri, rows, plrows, _) in &g.conditions {
            let run = &a.runs[*ri];
            for r in rows {
                am.group.push(g.group.label.clone());
                am.run_id.push(run.run_id.clone());
                am.seed.push(run.seed);
                am.rows.push(r.clone());
            }
            for r in plrows {
                let src = rows.iter().find(|x| x.step == r.step).expect("same steps");
                pl.group.push(g.group.label.clone());
                pl.run_id.push(run.run_id.clone());
                pl.seed.push(run.seed);
                pl.rows
                    .push((r.clone(), src.loss, src.loss_ref, src.grad_norm));
            }
        }
    }
    let p = dir.join("aiming.parquet");
    with_group_keys(Columns::default().utf8("group", &am.group), a, &am.group)
        .utf8("run_id", &am.run_id)
        .i64("seed", am.seed)
        .i64("step", am.rows.iter().map(|r| r.step))
        .f64("loss", am.rows.iter().map(|r| r.loss))
        .f64("loss_ref", am.rows.iter().map(|r| r.loss_ref))
        .f64("gap", am.rows.iter().map(|r| r.gap))
        .f64("inner", am.rows.iter().map(|r| r.inner))
        .f64("grad_norm", am.rows.iter().map(|r| r.grad_norm))
        .f64("dist", am.rows.iter().map(|r| r.dist))
        .f64("cos", am.rows.iter().map(|r| r.cos))
        .f64("angle_deg", am.rows.iter().map(|r| r.angle_deg))
        .f64("aiming_coef", am.rows.iter().map(|r| r.aiming_coef))
        .f64_opt("qcvx_ratio", am.rows.iter().map(|r| r.qcvx_ratio))
        .write(&p, tables::AIMING_FORMAT, &meta)?;
    written.push(p);
    let p = dir.join("pl.parquet");
    with_group_keys(Columns::default().utf8("group", &pl.group), a, &pl.group)
        .utf8("run_id", &pl.run_id)
        .i64("seed", pl.seed)
        .i64("step", pl.rows.iter().map(|r| r.0.step))
        .f64("delta", pl.rows.iter().map(|r| r.0.delta))
        .f64("loss", pl.rows.iter().map(|r| r.1))
        .f64("loss_ref", pl.rows.iter().map(|r| r.2))
        .f64("grad_norm", pl.rows.iter().map(|r| r.3))
        .f64_opt("log_2mu", pl.rows.iter().map(|r| r.0.log_2mu))
        .write(&p, tables::PL_FORMAT, &meta)?;
    written.push(p);

    // trends.parquet (a sweep: more than one group)
    if a.groups.len() > 1 {
        let p = dir.join("trends.parquet");
        trends_table(a).write(&p, tables::TRENDS_FORMAT, &meta)?;
        written.push(p);
    }

    let p = dir.join("summary.yaml");
    let text = crate::util::yaml11_floats(&serde_yaml::to_string(&summary_yaml(a))?);
    crate::store::atomic::write_bytes(&p, text.as_bytes())?;
    written.push(p);

    if a.settings.plots {
        written.extend(report::figures_and_report(a)?);
    }

    // Outputs of an earlier analysis that this one did not write (other
    // groups, plots switched off) would mislead: remove them.
    let keep: std::collections::BTreeSet<PathBuf> = written.iter().cloned().collect();
    for e in std::fs::read_dir(&dir)?.flatten() {
        let p = e.path();
        let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("");
        if p.is_file()
            && ["png", "svg", "parquet", "md", "yaml"].contains(&ext)
            && !keep.contains(&p)
        {
            std::fs::remove_file(&p).with_context(|| format!("removing stale {}", p.display()))?;
        }
    }
    a.written = written;
    Ok(())
}

#[derive(Default)]
struct GridCols {
    group: Vec<String>,
    alpha: Vec<f64>,
    beta: Vec<f64>,
    in_domain: Vec<bool>,
    min_slack: Vec<f64>,
    violations: Vec<i64>,
    rows: Vec<i64>,
    feasible: Vec<bool>,
    run_id: Vec<String>,
    step: Vec<i64>,
    probe: Vec<String>,
}

#[derive(Default)]
struct AimCols {
    group: Vec<String>,
    run_id: Vec<String>,
    seed: Vec<i64>,
    rows: Vec<AimingRow>,
}

#[derive(Default)]
struct PlCols {
    group: Vec<String>,
    run_id: Vec<String>,
    seed: Vec<i64>,
    rows: Vec<(PlRow, f64, f64, f64)>,
}

/// One column per grouping key (the sweep axes: `model.width`, `optim`, …), each
/// row taking the value of its group (`labels[i]` names row i's group): int64
/// when every group's value is an integer (as in runs.parquet and the landscape
/// columns), float64 when every one is a number, else the one-line YAML text.
/// A single group ("all") has no keys, so no columns are added.
fn with_group_keys(mut c: Columns, a: &Analysis, labels: &[String]) -> Columns {
    let Some(first) = a.groups.first() else {
        return c;
    };
    let by_label: std::collections::HashMap<&str, usize> = a
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| (g.group.label.as_str(), i))
        .collect();
    let index: Vec<usize> = labels.iter().map(|l| by_label[l.as_str()]).collect();
    for (k, key) in first.group.values.iter().map(|v| v.0.clone()).enumerate() {
        let all: Vec<&Value> = a.groups.iter().map(|g| &g.group.values[k].1).collect();
        let val = |i: &usize| &a.groups[*i].group.values[k].1;
        if all.iter().all(|v| v.as_i64().is_some()) {
            c = c.i64(&key, index.iter().map(|i| val(i).as_i64().unwrap()));
        } else if all.iter().all(|v| v.as_f64().is_some()) {
            c = c.f64(&key, index.iter().map(|i| val(i).as_f64().unwrap()));
        } else {
            c = c.utf8(&key, index.iter().map(|i| inputs::show(val(i))));
        }
    }
    c
}

fn trends_table(a: &Analysis) -> Columns {
    let gs = &a.groups;
    let labels: Vec<String> = gs.iter().map(|g| g.group.label.clone()).collect();
    let c = with_group_keys(Columns::default().utf8("group", &labels), a, &labels);
    let best = |g: &GroupResult| g.ab.best.clone();
    c.i64("runs", gs.iter().map(|g| g.group.runs.len() as i64))
        .i64("rows", gs.iter().map(|g| g.ab.rows.len() as i64))
        .utf8("region", gs.iter().map(|g| g.ab.region.kind()))
        .f64_opt("alpha_min", gs.iter().map(|g| g.ab.min_alpha.map(|m| m.0)))
        .f64_opt(
            "beta_at_alpha_min",
            gs.iter().map(|g| g.ab.min_alpha.map(|m| m.1)),
        )
        .f64_opt(
            "alpha_beta_minus_one",
            gs.iter().map(|g| g.ab.gap_one.map(|m| m.0)),
        )
        .f64_opt("alpha", gs.iter().map(|g| best(g).map(|b| b.alpha)))
        .f64_opt("beta", gs.iter().map(|g| best(g).map(|b| b.beta)))
        .f64_opt("gap", gs.iter().map(|g| best(g).map(|b| b.alpha - b.beta)))
        .f64_opt("ratio", gs.iter().map(|g| best(g).map(|b| b.ratio)))
        .bool_opt(
            "ratio_attained",
            gs.iter().map(|g| best(g).map(|b| b.attained)),
        )
        .f64_opt("sigma_int2", gs.iter().map(|g| g.sigma_int2()))
        .f64_opt(
            "beta_sigma_int2",
            gs.iter().map(|g| g.bound_terms().map(|t| t.0)),
        )
        .f64_opt(
            "bound_term",
            gs.iter().map(|g| g.bound_terms().map(|t| t.1)),
        )
        .f64_opt(
            "L",
            gs.iter()
                .map(|g| g.curvature.minibatch.as_ref().map(|m| m.value)),
        )
        .f64_opt(
            "L_full",
            gs.iter()
                .map(|g| g.curvature.full.as_ref().map(|m| m.value)),
        )
        .f64_opt(
            "sgd_bound",
            gs.iter()
                .map(|g| g.bound.bound.as_ref().map(|b| b.at.value)),
        )
        .bool(
            "sgd_bound_applicable",
            gs.iter().map(|g| g.bound.applicable()),
        )
        .f64_opt(
            "sgd_observed",
            gs.iter()
                .map(|g| g.bound.observed.as_ref().map(|o| o.value)),
        )
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    let mut m = Mapping::new();
    for (k, v) in entries {
        m.insert(Value::String(k.to_string()), v);
    }
    Value::Mapping(m)
}

fn f(v: f64) -> Value {
    if v.is_finite() {
        Value::from(v)
    } else if v > 0.0 {
        Value::String(".inf".into())
    } else if v < 0.0 {
        Value::String("-.inf".into())
    } else {
        Value::String(".nan".into())
    }
}

fn opt(v: Option<f64>) -> Value {
    v.map_or(Value::Null, f)
}

fn pair(v: (f64, f64)) -> Value {
    Value::Sequence(vec![f(v.0), f(v.1)])
}

/// The landscape row a constraint row came from.
fn origin<'a>(a: &'a Analysis, g: &GroupResult, i: usize) -> &'a LandscapeRow {
    let r = &g.ab.rows[i];
    &a.runs[r.run].rows[r.row]
}

fn origin_yaml(r: &LandscapeRow) -> Vec<(&'static str, Value)> {
    vec![
        ("run_id", Value::from(r.run_id.clone())),
        ("step", Value::from(r.step)),
        ("probe", Value::from(r.probe.to_string())),
    ]
}

fn origin_text(r: &LandscapeRow) -> String {
    format!("{} step {} {}", r.run_id, r.step, r.probe)
}

/// Aiming, PL and QCvx constants (of one run or a group) as summary.yaml entries.
fn conditions_yaml(c: &RunConditions) -> Vec<(&'static str, Value)> {
    vec![
        (
            "aiming",
            map(vec![
                ("steps", Value::from(c.steps as u64)),
                ("fail_steps", Value::from(c.aiming_fail_steps as u64)),
                (
                    "fail_share",
                    f(c.aiming_fail_steps as f64 / c.steps.max(1) as f64),
                ),
                ("theta", opt(c.aiming_theta)),
                ("min_cos", opt(c.min_cos)),
                (
                    "min_cos_step",
                    c.min_cos_step.map_or(Value::Null, Value::from),
                ),
            ]),
        ),
        (
            "pl",
            Value::Sequence(
                c.pl.iter()
                    .map(|(d, best)| {
                        map(vec![
                            ("delta", f(*d)),
                            ("log_2mu_min", opt(best.map(|b| b.0))),
                            ("mu", opt(best.map(|b| b.2))),
                            ("step", best.map_or(Value::Null, |b| Value::from(b.1))),
                        ])
                    })
                    .collect(),
            ),
        ),
        (
            "qcvx",
            map(vec![
                ("theta_lo", f(c.qcvx_theta_lo)),
                ("theta_hi", f(c.qcvx_theta_hi)),
                ("holds", Value::from(c.qcvx_holds())),
            ]),
        ),
    ]
}

/// Theorem 1 (of one run or a group) as summary.yaml entries.
fn bound_yaml(b: &bound::SgdBound) -> Vec<(&'static str, Value)> {
    let best = b.bound.as_ref();
    vec![
        ("applicable", Value::from(b.applicable())),
        (
            "not_applicable_because",
            Value::Sequence(b.reasons.iter().map(|r| Value::from(r.clone())).collect()),
        ),
        ("L", opt(b.l)),
        ("gamma", f(b.gamma)),
        ("K", Value::from(b.steps)),
        ("dist0", opt(b.dist0)),
        ("sigma_int2", opt(b.sigma2)),
        ("bound", opt(best.map(|x| x.at.value))),
        ("alpha", opt(best.map(|x| x.at.alpha))),
        ("beta", opt(best.map(|x| x.at.beta))),
        (
            "attained",
            best.map_or(Value::Null, |x| Value::from(x.at.attained)),
        ),
        (
            "direction",
            best.and_then(|x| x.at.direction).map_or(Value::Null, pair),
        ),
        (
            "terms",
            best.map_or(Value::Null, |x| {
                map(vec![
                    ("initial_distance", f(x.terms[0])),
                    ("step_size", f(x.terms[1])),
                    ("interpolation", f(x.terms[2])),
                ])
            }),
        ),
        (
            "observed",
            b.observed.as_ref().map_or(Value::Null, |o| {
                map(vec![
                    ("min_gap", f(o.value)),
                    ("step", o.step.map_or(Value::Null, Value::from)),
                    ("from", Value::from(o.from)),
                ])
            }),
        ),
    ]
}

fn smoothness_yaml(a: &Analysis, s: &Option<bound::Smoothness>) -> Value {
    s.as_ref().map_or(Value::Null, |m| {
        map(vec![
            ("value", f(m.value)),
            ("run_id", Value::from(a.runs[m.run].run_id.clone())),
            ("step", Value::from(m.step)),
            ("probe", Value::from(m.probe.to_string())),
        ])
    })
}

fn summary_yaml(a: &Analysis) -> Value {
    let s = &a.settings;
    let groups: Vec<Value> = a
        .groups
        .iter()
        .map(|g| {
            let ab = &g.ab;
            let mut abv = vec![
                ("region", Value::from(ab.region.kind())),
                (
                    "vertices",
                    Value::Sequence(ab.region.vertices.iter().map(|v| pair(*v)).collect()),
                ),
                ("ray_first", ab.region.ray_first.map_or(Value::Null, pair)),
                ("ray_last", ab.region.ray_last.map_or(Value::Null, pair)),
            ];
            abv.push((
                "smallest_alpha",
                ab.min_alpha.map_or(Value::Null, |(al, lo, hi)| {
                    map(vec![
                        ("alpha", f(al)),
                        ("beta_min", f(lo)),
                        ("beta_max", f(hi)),
                    ])
                }),
            ));
            abv.push((
                "beta_alpha_minus_one",
                ab.gap_one.map_or(Value::Null, |(al, bind)| {
                    let mut e = vec![("alpha", f(al)), ("beta", f(al - 1.0))];
                    if let Some(i) = bind {
                        e.push(("binding", map(origin_yaml(origin(a, g, i)))));
                    }
                    map(e)
                }),
            ));
            abv.push((
                "best_ratio",
                ab.best.as_ref().map_or(Value::Null, |b| {
                    map(vec![
                        ("alpha", f(b.alpha)),
                        ("beta", f(b.beta)),
                        ("beta_over_gap", f(b.ratio)),
                        ("attained", Value::from(b.attained)),
                        ("direction", b.direction.map_or(Value::Null, pair)),
                    ])
                }),
            ));
            if let Some((al, be, t)) = ab.least_violation {
                abv.push((
                    "least_violation",
                    map(vec![("alpha", f(al)), ("beta", f(be)), ("min_slack", f(t))]),
                ));
                abv.push((
                    "most_violating",
                    Value::Sequence(
                        ab.most_violating
                            .iter()
                            .map(|(i, sl)| {
                                let mut e = origin_yaml(origin(a, g, *i));
                                e.push(("slack", f(*sl)));
                                map(e)
                            })
                            .collect(),
                    ),
                ));
            }
            let interp = map(vec![
                ("sigma_int2", opt(g.sigma_int2())),
                ("beta_sigma_int2", opt(g.bound_terms().map(|t| t.0))),
                ("bound_term", opt(g.bound_terms().map(|t| t.1))),
                (
                    "per_run",
                    Value::Sequence(
                        g.sigma
                            .iter()
                            .map(|(ri, v, fk, full)| {
                                map(vec![
                                    ("run_id", Value::from(a.runs[*ri].run_id.clone())),
                                    ("sigma_int2", f(*v)),
                                    ("f_ref", f(*fk)),
                                    (
                                        "f_ref_from",
                                        Value::from(if *full {
                                            "full-data probe"
                                        } else {
                                            "mean minibatch loss at x^K"
                                        }),
                                    ),
                                ])
                            })
                            .collect(),
                    ),
                ),
            ]);
            let per_run: Vec<Value> = g
                .conditions
                .iter()
                .map(|(ri, _, _, c)| {
                    let mut e = vec![("run_id", Value::from(a.runs[*ri].run_id.clone()))];
                    e.extend(conditions_yaml(c));
                    map(e)
                })
                .collect();
            let conditions = aggregate(g)
                .map(|c| conditions_yaml(&c))
                .unwrap_or_else(|| {
                    ["aiming", "pl", "qcvx"]
                        .into_iter()
                        .map(|k| (k, Value::Null))
                        .collect()
                });
            let mut entries = vec![
                ("label", Value::from(g.group.label.clone())),
                (
                    "sweep",
                    map(g
                        .group
                        .values
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.clone()))
                        .collect()),
                ),
                (
                    "runs",
                    Value::Sequence(
                        g.group
                            .runs
                            .iter()
                            .map(|&ri| Value::from(a.runs[ri].run_id.clone()))
                            .collect(),
                    ),
                ),
                ("rows", Value::from(ab.rows.len() as u64)),
                ("alpha_beta", map(abv)),
                ("interpolation", interp),
            ];
            entries.extend(conditions);
            entries.push((
                "curvature",
                map(vec![
                    ("rows", Value::from(g.curvature.rows as u64)),
                    ("unconverged", Value::from(g.curvature.unconverged as u64)),
                    ("L_minibatch", smoothness_yaml(a, &g.curvature.minibatch)),
                    ("L_full", smoothness_yaml(a, &g.curvature.full)),
                ]),
            ));
            let mut sgd = bound_yaml(&g.bound);
            sgd.push((
                "per_run",
                Value::Sequence(
                    g.run_bounds
                        .iter()
                        .map(|(ri, b)| {
                            let mut e = vec![("run_id", Value::from(a.runs[*ri].run_id.clone()))];
                            e.extend(bound_yaml(b));
                            map(e)
                        })
                        .collect(),
                ),
            ));
            entries.push(("sgd_bound", map(sgd)));
            entries.push(("per_run", Value::Sequence(per_run)));
            map(entries)
        })
        .collect();
    map(vec![
        ("format", Value::from(SUMMARY_FORMAT)),
        ("created", Value::from(crate::util::now_rfc3339())),
        ("abcond_version", Value::from(env!("CARGO_PKG_VERSION"))),
        ("settings", serde_yaml::to_value(s).unwrap_or(Value::Null)),
        (
            "slack",
            Value::from("T = inner − alpha·(loss_k − loss_ref) + beta·(loss_k − f_i*) (the definition's +beta)"),
        ),
        (
            "sgd_bound",
            Value::from(BOUND_TEXT),
        ),
        (
            "runs",
            Value::Sequence(
                a.runs
                    .iter()
                    .map(|r| {
                        map(vec![
                            ("run_id", Value::from(r.run_id.clone())),
                            ("seed", Value::from(r.seed)),
                            ("dir", Value::from(r.dir.display().to_string())),
                            ("landscape_rows", Value::from(r.rows.len() as u64)),
                        ])
                    })
                    .collect(),
            ),
        ),
        (
            "skipped",
            Value::Sequence(a.skipped.iter().map(|s| Value::from(s.clone())).collect()),
        ),
        ("groups", Value::Sequence(groups)),
    ])
}

/// The conditions of a group: the minimum (worst case) over its runs, as for
/// the alpha-beta condition.
pub fn aggregate(g: &GroupResult) -> Option<RunConditions> {
    let all: Vec<&RunConditions> = g.conditions.iter().map(|c| &c.3).collect();
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

/// The curvature and Theorem 1 lines of the printed summary (nothing
/// without curvature rows).
fn render_bound(g: &GroupResult, a: &Analysis) -> String {
    let fmt = plots::num;
    let c = &g.curvature;
    if c.rows == 0 {
        return String::new();
    }
    let mut out = String::new();
    let at = |m: &bound::Smoothness| {
        format!(
            "{} ({} step {} {})",
            fmt(m.value),
            a.runs[m.run].run_id,
            m.step,
            m.probe
        )
    };
    out.push_str(&format!(
        "  curvature: L = max |λ| of minibatch Hessians {}; of f {}; {} rows, {} not converged\n",
        c.minibatch.as_ref().map_or("-".into(), at),
        c.full.as_ref().map_or("-".into(), at),
        c.rows,
        c.unconverged
    ));
    let b = &g.bound;
    let observed = b
        .observed
        .as_ref()
        .map_or("-".into(), |o| format!("{} ({})", fmt(o.value), o.from));
    match &b.bound {
        Some(x) => out.push_str(&format!(
            "  SGD bound (Theorem 1, gamma {}): {} = {} + {} + {} at (alpha, beta) = ({}, {}){}; observed min_k f(x^k) − f* = {}\n",
            fmt(b.gamma),
            fmt(x.at.value),
            fmt(x.terms[0]),
            fmt(x.terms[1]),
            fmt(x.terms[2]),
            fmt(x.at.alpha),
            fmt(x.at.beta),
            if x.at.attained { "" } else { ", approached along an unbounded edge" },
            observed
        )),
        None => out.push_str(&format!(
            "  SGD bound (Theorem 1): not evaluated; observed min_k f(x^k) − f* = {observed}\n"
        )),
    }
    if !b.applicable() {
        out.push_str(&format!("    not applicable: {}\n", b.reasons.join("; ")));
    }
    out
}

/// The concise summary printed by `abcond analyze` and `abcond run`.
pub fn render(a: &Analysis) -> String {
    let s = &a.settings;
    let fmt = plots::num;
    let mut out = String::new();
    let rows: usize = a.runs.iter().map(|r| r.rows.len()).sum();
    out.push_str(&format!(
        "analysis: {} run(s), {} group(s), {} landscape rows; f_i* = {}, alpha ≥ beta + {}, rows: {}\n",
        a.runs.len(),
        a.groups.len(),
        rows,
        s.f_star.describe(),
        s.margin,
        if s.train_only { "i_k only" } else { "i_k and extra minibatches" }
    ));
    out.push_str("slack T = inner − alpha·(loss_k − loss_ref) + beta·(loss_k − f_i*); feasible where T ≥ 0 on every row\n");
    for g in &a.groups {
        let ab = &g.ab;
        out.push_str(&format!(
            "[{}] {} run(s), {} minibatch rows: region {}\n",
            g.group.label,
            g.group.runs.len(),
            ab.rows.len(),
            ab.region.kind()
        ));
        if let Some((al, lo, hi)) = ab.min_alpha {
            out.push_str(&format!(
                "  smallest alpha: {} (beta in [{}, {}])\n",
                fmt(al),
                fmt(lo),
                fmt(hi)
            ));
        }
        match ab.gap_one {
            Some((al, bind)) => {
                let b = bind.map(|i| format!(" (binding: {})", origin_text(origin(a, g, i))));
                out.push_str(&format!(
                    "  beta = alpha − 1: smallest alpha {}{}\n",
                    fmt(al),
                    b.unwrap_or_default()
                ))
            }
            None if s.margin > 1.0 => out.push_str(&format!(
                "  beta = alpha − 1: outside the domain (alpha − beta = 1 < margin {})\n",
                s.margin
            )),
            None => out.push_str("  beta = alpha − 1: no alpha works\n"),
        }
        if let Some(b) = &ab.best {
            out.push_str(&format!(
                "  min beta/(alpha − beta) = {} at (alpha, beta) = ({}, {}){}\n",
                fmt(b.ratio),
                fmt(b.alpha),
                fmt(b.beta),
                if b.attained {
                    String::new()
                } else {
                    let d = b.direction.unwrap_or((0.0, 0.0));
                    format!(", approached along direction ({:.3}, {:.3})", d.0, d.1)
                }
            ));
        }
        if let Some((al, be, t)) = ab.least_violation {
            out.push_str(&format!(
                "  no (alpha, beta) works; least worst slack {} at ({}, {}); most violating rows:\n",
                fmt(t),
                fmt(al),
                fmt(be)
            ));
            for (i, sl) in &ab.most_violating {
                out.push_str(&format!(
                    "    {}: T = {}\n",
                    origin_text(origin(a, g, *i)),
                    fmt(*sl)
                ));
            }
        }
        if let Some(sig) = g.sigma_int2() {
            let terms = g
                .bound_terms()
                .map(|(bs, bt)| {
                    format!(
                        "; beta·sigma² = {}, 2beta·sigma²/(alpha − beta) = {}",
                        fmt(bs),
                        fmt(bt)
                    )
                })
                .unwrap_or_default();
            out.push_str(&format!("  sigma_int² = {}{}\n", fmt(sig), terms));
        }
        out.push_str(&render_bound(g, a));
        match aggregate(g) {
            Some(c) => {
                out.push_str(&format!(
                    "  Aiming: fails at {}/{} steps (min cos {}), theta ≤ {}; QCvx {}\n",
                    c.aiming_fail_steps,
                    c.steps,
                    c.min_cos.map_or("-".into(), fmt),
                    c.aiming_theta.map_or("-".into(), fmt),
                    if c.qcvx_holds() {
                        format!(
                            "holds for theta in [{}, {}]",
                            fmt(c.qcvx_theta_lo),
                            fmt(c.qcvx_theta_hi)
                        )
                    } else {
                        "fails".to_string()
                    }
                ));
                let pl: Vec<String> =
                    c.pl.iter()
                        .map(|(d, b)| format!("delta {d}: {}", b.map_or("-".into(), |b| fmt(b.2))))
                        .collect();
                out.push_str(&format!("  PL mu: {}\n", pl.join(", ")));
            }
            None => out.push_str(
                "  Aiming/PL: no full-data probe rows (probe.full: true measures them)\n",
            ),
        }
    }
    for n in &a.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    for s in &a.skipped {
        out.push_str(&format!("skipped: {s}\n"));
    }
    out.push_str(&format!(
        "analysis: {} ({} files{})\n",
        a.dir.display(),
        a.written.len(),
        if a.settings.plots { ", report.md" } else { "" }
    ));
    out
}
