//! `analysis/report.md` and its figures: the summary numbers of every group
//! next to the pictures they come from, readable on GitHub.

use super::alphabeta::{self, Cell, Frame};
use super::plots::{self, num, Band, BandChart, HeatPanel, Heatmap, Lines, Overview};
use super::result::{suffix, Analysis, GroupResult};
use super::summary::{Num, Summary};
use anyhow::Result;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Steps per point of the loss curve: about 500 points (single minibatch
/// losses are noise).
fn steps_per_point(steps: usize) -> usize {
    steps.div_ceil(500).max(1)
}

/// Training loss of a run: every step when there are few, else the mean of
/// equal buckets of [`steps_per_point`] steps.
fn loss_curve(steps: &[crate::store::tables::StepRow]) -> Vec<(f64, f64)> {
    let per = steps_per_point(steps.len());
    steps
        .chunks(per)
        .map(|c| {
            let x = c.iter().map(|s| s.step as f64).sum::<f64>() / c.len() as f64;
            let y = c.iter().map(|s| s.loss).sum::<f64>() / c.len() as f64;
            (x, y)
        })
        .collect()
}

/// The steps where Aiming fails (cos < 0: the gradient points away from
/// x^k − x^K, the angle exceeds 90°), per run, under the Aiming figure.
fn aiming_excursions(runs: &[(String, Vec<crate::analysis::conditions::AimingRow>)]) -> String {
    let mut md = String::new();
    for (run, rows) in runs {
        let bad: Vec<String> = rows
            .iter()
            .filter(|r| r.cos < 0.0)
            .map(|r| format!("{} ({:.1}°)", r.step, r.angle_deg))
            .collect();
        let tag = if runs.len() > 1 {
            format!(" ({run})")
        } else {
            String::new()
        };
        if bad.is_empty() {
            md.push_str(&format!(
                "Aiming holds at all {} probed steps{tag}: the angle stays below 90°.\n\n",
                rows.len()
            ));
        } else {
            let shown = bad.iter().take(20).cloned().collect::<Vec<_>>().join(", ");
            md.push_str(&format!(
                "**Aiming fails at {} of {} probed steps{tag}** (cos < 0, marked × in the figure): steps {shown}{}.\n\n",
                bad.len(),
                rows.len(),
                if bad.len() > 20 { ", …" } else { "" }
            ));
        }
    }
    md
}

fn loss_figure(a: &Analysis, g: &GroupResult) -> Lines {
    let mut series = Vec::new();
    for &ri in &g.group.runs {
        let run = &a.runs[ri];
        let tag = if g.group.runs.len() > 1 {
            format!(" ({})", run.run_id)
        } else {
            String::new()
        };
        if !run.steps.is_empty() {
            let per = steps_per_point(run.steps.len());
            let what = if per > 1 {
                format!("minibatch loss f_ik(x^k), mean of {per} steps")
            } else {
                "minibatch loss f_ik(x^k)".to_string()
            };
            series.push((format!("{what}{tag}"), loss_curve(&run.steps), false));
        }
        if let Some(rows) = g.conditions.iter().find(|c| c.run == ri).map(|c| &c.aiming) {
            series.push((
                format!("full loss f(x^k){tag}"),
                rows.iter().map(|r| (r.step as f64, r.loss)).collect(),
                true,
            ));
        }
    }
    let positive = series.iter().flat_map(|s| s.1.iter()).all(|p| p.1 > 0.0);
    // A log step axis when the snapshots are log-spaced.
    let log_x = plots::log_spaced(
        g.conditions
            .iter()
            .flat_map(|c| c.aiming.iter().map(|r| r.step as f64)),
    );
    Lines {
        log_x,
        title: format!("training loss [{}]", g.group.label),
        x_desc: "step k".into(),
        y_desc: "loss".into(),
        series,
        log_y: positive,
        hline: None,
        marks: None,
    }
}

/// The overview figure: every group's heat map on one frame and colour
/// scale, the loss and the Aiming angle with seed bands. `cells[i]` are group
/// i's cells on `frame`.
fn overview<'a>(a: &'a Analysis, frame: Frame, cells: &'a [Vec<Cell>]) -> Overview<'a> {
    let s = &a.settings;
    let many = a.groups.len() > 1;
    let panels = a
        .groups
        .iter()
        .zip(cells)
        .map(|(g, c)| HeatPanel {
            title: if many {
                format!("{} ({} rows)", g.group.label, g.ab.rows.len())
            } else {
                format!("min slack over {} rows", g.ab.rows.len())
            },
            cells: c,
            points: s.grid.points as usize,
            frame,
            ab: &g.ab,
            legend: true,
        })
        .collect();
    let label = |g: &GroupResult, what: &str| {
        let n = g.group.runs.len();
        match (many, n > 1) {
            (true, true) => format!("{} ({n} seeds, min–max)", g.group.label),
            (true, false) => g.group.label.clone(),
            (false, true) => format!("{what} ({n} seeds, mean; band min–max)"),
            (false, false) => what.to_string(),
        }
    };
    let bands = |curves: Vec<Vec<(f64, f64)>>, name: String| -> Vec<Band> {
        let curves: Vec<_> = curves.into_iter().filter(|c| !c.is_empty()).collect();
        match plots::band_of(name.clone(), &curves) {
            Some(b) => vec![b],
            // Different steps per seed: one line each.
            None => curves
                .into_iter()
                .enumerate()
                .map(|(i, c)| Band {
                    label: format!("{name} #{}", i + 1),
                    points: c.into_iter().map(|(x, y)| (x, y, y, y)).collect(),
                })
                .collect(),
        }
    };
    let log_x = plots::log_spaced(a.groups.iter().flat_map(|g| {
        g.conditions
            .iter()
            .flat_map(|c| c.aiming.iter().map(|r| r.step as f64))
    }));
    let mut loss = Vec::new();
    let mut aiming = Vec::new();
    let (mut bad, mut probed) = (0, 0);
    for g in &a.groups {
        let curves = g
            .group
            .runs
            .iter()
            .map(|&ri| loss_curve(&a.runs[ri].steps))
            .collect();
        loss.extend(bands(curves, label(g, "minibatch loss f_ik(x^k)")));
        let curves: Vec<Vec<(f64, f64)>> = g
            .conditions
            .iter()
            .map(|c| {
                c.aiming
                    .iter()
                    .map(|r| (r.step as f64, r.angle_deg))
                    .collect()
            })
            .collect();
        for c in &g.conditions {
            probed += c.aiming.len();
            bad += c.aiming.iter().filter(|r| r.cos < 0.0).count();
        }
        if !curves.is_empty() {
            aiming.extend(bands(curves, label(g, "angle")));
        }
    }
    let positive = loss.iter().flat_map(|b| b.points.iter()).all(|p| p.1 > 0.0);
    let aim = (!aiming.is_empty()).then(|| BandChart {
        title: if bad == 0 {
            format!("Aiming holds: angle(∇f(x^k), x^k − x^K) < 90° at all {probed} probed steps")
        } else {
            format!("Aiming fails at {bad} of {probed} probed steps (angle > 90°)")
        },
        x_desc: "step k".into(),
        y_desc: "angle (degrees)".into(),
        bands: aiming,
        log_x,
        log_y: false,
        hline: Some((90.0, "90°".into())),
    });
    let title = if many {
        format!(
            "{} groups: the exact α-β region on one frame and colour scale",
            a.groups.len()
        )
    } else {
        let g = &a.groups[0];
        let mut t = String::from("α-β condition:");
        match g.ab.min_alpha {
            Some(m) => t.push_str(&format!(" smallest α = {}", num(m.alpha))),
            None => t.push_str(" empty region"),
        }
        if let Some(one) = g.ab.gap_one {
            t.push_str(&format!(", β = α − 1 from α = {}", num(one.alpha)));
        }
        t
    };
    Overview {
        title,
        panels,
        loss: BandChart {
            title: "training loss".into(),
            x_desc: "step k".into(),
            y_desc: "loss".into(),
            bands: loss,
            log_x,
            log_y: positive,
            hline: None,
        },
        aiming: aim,
    }
}

fn trends_figure(a: &Analysis) -> Lines {
    let numeric = a.groups[0].group.values.len() == 1
        && a.groups
            .iter()
            .all(|g| g.group.values[0].1.as_f64().is_some());
    let x = |i: usize, g: &GroupResult| -> f64 {
        if numeric {
            g.group.values[0].1.as_f64().unwrap()
        } else {
            i as f64
        }
    };
    let collect = |f: &dyn Fn(&GroupResult) -> Option<f64>| -> Vec<(f64, f64)> {
        a.groups
            .iter()
            .enumerate()
            .filter_map(|(i, g)| f(g).map(|v| (x(i, g), v)))
            .collect()
    };
    let x_desc = if numeric {
        a.groups[0].group.values[0].0.clone()
    } else {
        format!(
            "group (0 … {}: {})",
            a.groups.len() - 1,
            a.groups
                .iter()
                .map(|g| g.group.label.clone())
                .collect::<Vec<_>>()
                .join(" | ")
        )
    };
    Lines {
        title: "α-β constants across the sweep".into(),
        x_desc,
        y_desc: "value (log scale)".into(),
        series: vec![
            (
                "smallest α".into(),
                collect(&|g| g.ab.min_alpha.map(|m| m.alpha)),
                true,
            ),
            (
                "α with β = α − 1".into(),
                collect(&|g| g.ab.gap_one.map(|m| m.alpha)),
                true,
            ),
            (
                "β at min β/(α − β)".into(),
                collect(&|g| g.ab.best.as_ref().map(|b| b.beta)),
                true,
            ),
            ("σ²_int".into(), collect(&|g| g.sigma_int2()), true),
            (
                "β·σ²_int".into(),
                collect(&|g| g.bound_terms().map(|t| t.0)),
                true,
            ),
        ],
        log_y: true,
        log_x: false,
        hline: None,
        marks: None,
    }
}

/// The held-out evaluation of a group's runs (`probe.eval`, eval.parquet):
/// per run, the test loss and accuracy at up to 12 of its snapshots (the
/// first, the last, and evenly between) and the best accuracy.
fn held_out(a: &Analysis, g: &GroupResult) -> String {
    let mut md = String::new();
    for &ri in &g.group.runs {
        let run = &a.runs[ri];
        if run.eval.is_empty() {
            continue;
        }
        let rows = &run.eval;
        let _ = writeln!(
            md,
            "Held-out evaluation of `{}` on the {} split ({} examples; `eval.parquet`):\n\n| step | test loss | test accuracy |\n|---|---|---|",
            run.run_id, rows[0].split, rows[0].examples
        );
        let n = rows.len();
        let mut picks: Vec<usize> = if n <= 12 {
            (0..n).collect()
        } else {
            (0..12).map(|i| i * (n - 1) / 11).collect()
        };
        picks.dedup();
        let pct = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{:.2}%", 100.0 * v));
        for i in picks {
            let r = &rows[i];
            let _ = writeln!(md, "| {} | {} | {} |", r.step, num(r.loss), pct(r.accuracy));
        }
        if let Some(best) = rows
            .iter()
            .filter(|r| r.accuracy.is_some())
            .max_by(|x, y| x.accuracy.partial_cmp(&y.accuracy).unwrap())
        {
            let _ = writeln!(
                md,
                "\nBest test accuracy {} at step {}; at x^K {}.",
                pct(best.accuracy),
                best.step,
                pct(rows[n - 1].accuracy)
            );
        }
        md.push('\n');
    }
    md
}

/// Text for a Markdown table cell (a `|` would end the cell).
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn img(md: &mut String, stem: &str, alt: &str) {
    let _ = writeln!(md, "![{alt}]({stem}.png)\n");
}

/// Draws every figure and writes report.md; returns the files written.
pub fn figures_and_report(a: &Analysis, summary: &Summary) -> Result<Vec<PathBuf>> {
    let dir = a.dir.clone();
    let mut written = Vec::new();
    let mut md = String::new();
    let s = &a.settings;
    let _ = writeln!(md, "# abcond analysis\n");
    let _ = writeln!(
        md,
        "{} run(s) in {} group(s); f_i* = {}; region restricted to alpha ≥ beta + {}; constraint rows: {}.\n",
        a.runs.len(),
        a.groups.len(),
        s.f_star.describe(),
        s.margin,
        if s.train_only {
            "the minibatch i_k of each probed step"
        } else {
            "the minibatch i_k of each probed step and the extra seeded minibatches"
        }
    );
    let _ = writeln!(
        md,
        "Slack T = <∇f_i(x^k), x^k − x^K> − alpha·(f_i(x^k) − f_i(x^K)) + beta·(f_i(x^k) − f_i*) \
         (the definition's +beta; the paper's captions print −beta). The feasible region is computed \
         exactly by half-plane intersection; the heat maps only picture it. Numbers: `summary.yaml`; \
         tables: `ab_region.parquet`, `ab_grid.parquet`, `aiming.parquet`, `pl.parquet`{}.\n",
        if a.groups.len() > 1 { ", `trends.parquet`" } else { "" }
    );
    // The overview first: the figure to read.
    if !a.groups.is_empty() && a.groups.iter().any(|g| !g.ab.rows.is_empty()) {
        let frames: Vec<Frame> = a.groups.iter().map(|g| g.frame).collect();
        let frame = alphabeta::union(&frames).expect("groups");
        let cells: Vec<Vec<Cell>> = a
            .groups
            .iter()
            .map(|g| {
                if g.frame == frame {
                    g.cells.clone()
                } else {
                    alphabeta::grid(&g.ab.rows, frame, s.grid.points as usize, s.margin)
                }
            })
            .collect();
        written.extend(plots::save(&overview(a, frame, &cells), &dir, "overview")?);
        let _ = writeln!(md, "## Overview\n");
        img(&mut md, "overview", "overview: heat maps, loss and Aiming");
        let _ = writeln!(
            md,
            "Each heat map: the least slack T over all constraint rows at each (α, β) of the grid ({}), blue where the condition holds on every row, red where some row violates it, grey outside the domain (β < 0 or α < β + {}). The black boundary is the exact feasible region; arrows mark where it goes on beyond the frame. The dashed line is β = α − 1{}. Shared frame and colour scale across panels; bands: spread over seeds.\n",
            match frame.axes {
                crate::config::GridAxes::Gap => "α across, the gap α − β up, both log-scaled",
                crate::config::GridAxes::AlphaBeta => "α across, β up",
            },
            s.margin,
            match frame.axes {
                crate::config::GridAxes::Gap => " (the gap 1)",
                crate::config::GridAxes::AlphaBeta => "",
            }
        );
    }
    if a.groups.len() > 1 {
        let stem = "trends";
        written.extend(plots::save(&trends_figure(a), &dir, stem)?);
        let _ = writeln!(md, "## Across the sweep\n");
        let _ = writeln!(
            md,
            "| group | runs | region | smallest alpha | alpha (beta = alpha − 1) | (alpha, beta) at min beta/(alpha − beta) | sigma_int² | beta·sigma_int² |\n|---|---|---|---|---|---|---|---|"
        );
        for g in &summary.groups {
            let ab = &g.alpha_beta;
            let n = |v: Option<Num>| v.map_or("–".into(), |v| num(v.0));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                cell(&g.label),
                g.runs.len(),
                ab.region,
                n(ab.smallest_alpha.as_ref().map(|m| m.alpha)),
                n(ab.beta_alpha_minus_one.as_ref().map(|m| m.alpha)),
                ab.best_ratio.as_ref().map_or("–".into(), |b| format!(
                    "({}, {})",
                    num(b.alpha.0),
                    num(b.beta.0)
                )),
                n(g.interpolation.sigma_int2),
                n(g.interpolation.beta_sigma_int2),
            );
        }
        let _ = writeln!(md);
        img(&mut md, stem, "trends across the sweep");
    }
    for (g, gs) in a.groups.iter().zip(&summary.groups) {
        let sfx = suffix(a, g);
        let ab = &g.ab;
        let _ = writeln!(md, "## {}\n", g.group.label);
        let _ = writeln!(
            md,
            "Runs: {}. Constraint rows: {}.\n",
            gs.runs
                .iter()
                .map(|r| format!("`{r}`"))
                .collect::<Vec<_>>()
                .join(", "),
            gs.rows
        );
        let _ = writeln!(md, "| quantity | value |\n|---|---|");
        for f in gs.facts(s.margin) {
            let _ = writeln!(md, "| {} | {} |", f.label, cell(&f.value));
        }
        let _ = writeln!(md);
        let stem = format!("ab_heatmap{sfx}");
        let fig = Heatmap {
            panel: HeatPanel {
                title: format!("min slack over {} rows [{}]", ab.rows.len(), g.group.label),
                cells: &g.cells,
                points: s.grid.points as usize,
                frame: g.frame,
                ab,
                legend: true,
            },
        };
        written.extend(plots::save(&fig, &dir, &stem)?);
        let _ = writeln!(
            md,
            "Least slack over all rows (blue: holds, red: violated, grey: outside the domain β ≥ 0, α ≥ β + {}); black: the exact feasible region, arrows where it goes on beyond the frame.\n",
            s.margin
        );
        img(&mut md, &stem, "alpha-beta heat map");
        if !g.conditions.is_empty() {
            let pl_runs: Vec<(String, Vec<_>)> = g
                .conditions
                .iter()
                .map(|c| (a.runs[c.run].run_id.clone(), c.pl.clone()))
                .collect();
            let stem = format!("pl{sfx}");
            written.extend(plots::save(
                &plots::pl_figure(&g.group.label, &pl_runs, &s.pl_deltas),
                &dir,
                &stem,
            )?);
            img(&mut md, &stem, "relaxed PL curves");
            let aim_runs: Vec<(String, Vec<_>)> = g
                .conditions
                .iter()
                .map(|c| (a.runs[c.run].run_id.clone(), c.aiming.clone()))
                .collect();
            let stem = format!("aiming{sfx}");
            written.extend(plots::save(
                &plots::aiming_figure(&g.group.label, &aim_runs),
                &dir,
                &stem,
            )?);
            img(&mut md, &stem, "Aiming angle");
            md.push_str(&aiming_excursions(&aim_runs));
        }
        md.push_str(&held_out(a, g));
        let fig = loss_figure(a, g);
        if !fig.series.is_empty() {
            let stem = format!("loss{sfx}");
            written.extend(plots::save(&fig, &dir, &stem)?);
            img(&mut md, &stem, "training loss");
        }
    }
    let p = dir.join("report.md");
    crate::store::seal::write_sealed(&p, &md, crate::store::seal::Comment::Markup)?;
    written.push(p);
    Ok(written)
}

#[cfg(test)]
mod aiming_text_tests {
    use super::aiming_excursions;
    use crate::analysis::conditions::AimingRow;

    fn row(step: i64, cos: f64) -> AimingRow {
        AimingRow {
            step,
            loss: 1.0,
            loss_ref: 0.5,
            inner: cos,
            grad_norm: 1.0,
            dist: 1.0,
            cos,
            angle_deg: cos.acos().to_degrees(),
            aiming_coef: cos,
            gap: 0.5,
            qcvx_ratio: None,
        }
    }

    /// The steps with cos < 0 are listed with their angles; a run without
    /// any says that Aiming holds.
    #[test]
    fn failing_steps_are_listed() {
        let runs = vec![
            (
                "a".to_string(),
                vec![row(0, 0.5), row(3, -0.1), row(9, 0.2)],
            ),
            ("b".to_string(), vec![row(0, 0.5)]),
        ];
        let md = aiming_excursions(&runs);
        assert!(
            md.contains("**Aiming fails at 1 of 3 probed steps (a)**")
                && md.contains("steps 3 (95.7°)"),
            "{md}"
        );
        assert!(
            md.contains("Aiming holds at all 1 probed steps (b)"),
            "{md}"
        );
    }
}
