//! `abcond analyze` end to end: an experiment of half-space runs (two seeds ×
//! two learning rates) checked by an independent numpy computation
//! (tests/check_analysis.py: exact region vs brute-force grid, grid cells,
//! landmarks, sigma_int², Aiming/PL, trends, dtypes), an empty region, the
//! figures' pixels, and bad input.

mod common;
use common::*;
use std::path::{Path, PathBuf};

const HALFSPACE: &str = "experiment: hs
seed: 0
device: cpu
model: {preset: halfspace}
data: {dataset: halfspace, dim: 2, per_class: 20, variance: 2.0}
train: {batch_size: 1, steps: 600}
optim: {name: sgd, lr: 0.25}
snapshots: {every: 50}
probe: {extra_batches: 3, full: true, curvature: {enabled: true, probes: [train, extra, full]}}
";

/// Trains and probes the half-space experiment for seeds 0, 1 and learning
/// rates 0.25, 0.1 (once per test binary run) and returns the experiment directory.
fn experiment(dir: &Path) -> PathBuf {
    let cfg = write_config(dir, "hs.yaml", HALFSPACE);
    for seed in ["0", "1"] {
        for lr in ["0.25", "0.1"] {
            let out = abcond(
                dir,
                &[
                    "--quiet",
                    "--out",
                    "out",
                    "run",
                    cfg.to_str().unwrap(),
                    "--set",
                    &format!("seed={seed}"),
                    "--set",
                    &format!("optim.lr={lr}"),
                ],
            );
            ok(&out);
        }
    }
    dir.join("out/hs")
}

/// `abcond --quiet analyze PATH --set S …`, checked to succeed; returns stdout.
fn analyze(dir: &Path, path: &Path, sets: &[&str]) -> String {
    let mut args = vec!["--quiet", "analyze", path.to_str().unwrap()];
    for s in sets {
        args.extend(["--set", s]);
    }
    ok(&abcond(dir, &args))
}

#[test]
fn experiment_analysis_matches_independent_computation() {
    let dir = scratch("analysis-experiment");
    let exp = experiment(&dir);
    let stdout = analyze(&dir, &exp, &[]);
    assert!(stdout.contains("4 run(s), 2 group(s)"), "{stdout}");
    assert!(stdout.contains("[optim.lr=0.1] 2 run(s)"), "{stdout}");
    assert!(stdout.contains("[optim.lr=0.25] 2 run(s)"), "{stdout}");
    let adir = exp.join("analysis");
    for f in [
        "ab_region.parquet",
        "ab_grid.parquet",
        "aiming.parquet",
        "pl.parquet",
        "trends.parquet",
        "summary.yaml",
        "report.md",
        "trends.png",
        "trends.svg",
        "ab_heatmap-optim.lr-0.1.png",
        "ab_heatmap-optim.lr-0.25.svg",
        "pl-optim.lr-0.1.png",
        "aiming-optim.lr-0.25.png",
        "loss-optim.lr-0.1.png",
    ] {
        assert!(adir.join(f).is_file(), "{f} missing");
    }
    let out = run_python("check_analysis.py", &[adir.to_str().unwrap()]);
    assert!(
        out.contains("ok trends: 2 rows") && out.contains("ok dtypes"),
        "{out}"
    );

    // f_i* = the smallest observed loss, i_k only, and margin 2: the region
    // is empty; the least-violation pair and the most violating rows are
    // checked by the same script.
    let stdout = analyze(
        &dir,
        &exp,
        &[
            "analysis.f_star=min-observed",
            "analysis.train_only=true",
            "analysis.margin=2",
            "analysis.plots=false",
        ],
    );
    assert!(stdout.contains("region empty"), "{stdout}");
    assert!(stdout.contains("most violating rows"), "{stdout}");
    let out = run_python("check_analysis.py", &[adir.to_str().unwrap()]);
    assert!(out.contains("ok region/grid/summary"), "{out}");
    // Plots off: the figures of the earlier analysis are gone, not stale.
    assert!(!adir.join("trends.png").exists());
    assert!(!adir.join("report.md").exists());

    // min-observed with the default margin: a non-empty region again.
    analyze(
        &dir,
        &exp,
        &["analysis.f_star=min-observed", "analysis.grid.points=31"],
    );
    let out = run_python("check_analysis.py", &[adir.to_str().unwrap()]);
    assert!(out.contains("ok region/grid/summary"), "{out}");

    // One run of the experiment: its own analysis/, one group, no trends.
    let one = std::fs::read_dir(&exp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("run.yaml").is_file())
        .unwrap();
    analyze(&dir, &one, &[]);
    assert!(one.join("analysis/ab_heatmap.png").is_file());
    assert!(!one.join("analysis/trends.parquet").exists());
    let out = run_python(
        "check_analysis.py",
        &[one.join("analysis").to_str().unwrap()],
    );
    assert!(out.contains("ok aiming/pl"), "{out}");
}

/// Pixel statistics of a PNG: (width, height, distinct colours, share of
/// non-white pixels, red-ish, blue-ish, near-black pixel counts).
fn pixels(path: &Path) -> (u32, u32, usize, f64, usize, usize, usize) {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    let (w, h) = img.dimensions();
    let mut colours = std::collections::HashSet::new();
    let (mut ink, mut red, mut blue, mut black) = (0usize, 0, 0, 0);
    for p in img.pixels() {
        let [r, g, b] = p.0;
        colours.insert(p.0);
        if (r, g, b) != (255, 255, 255) {
            ink += 1;
        }
        if r > 150 && g < 130 && b < 130 {
            red += 1;
        }
        if b > 150 && r < 130 && g < 170 {
            blue += 1;
        }
        if r < 40 && g < 40 && b < 40 {
            black += 1;
        }
    }
    (
        w,
        h,
        colours.len(),
        ink as f64 / (w * h) as f64,
        red,
        blue,
        black,
    )
}

/// Where a pixel lies on the heat maps' colour ramp: Some(t) with t in
/// (0, 1] on the blue (holds) side, −t on the red (violated) side, Some(0)
/// for white; None for any other colour (grey, text, lines, markers).
fn ramp(p: [u8; 3]) -> Option<f64> {
    let [r, g, b] = p.map(f64::from);
    let near = |x: f64, y: f64| (x - y).abs() <= 2.0;
    let t = (255.0 - r) / 222.0;
    if t > 0.0 && near(g, 255.0 - 153.0 * t) && near(b, 255.0 - 83.0 * t) {
        return Some(t);
    }
    let t = (255.0 - g) / 231.0;
    if t > 0.0 && near(r, 255.0 - 77.0 * t) && near(b, 255.0 - 212.0 * t) {
        return Some(-t);
    }
    (r == 255.0 && g == 255.0 && b == 255.0).then_some(0.0)
}

/// Decodes `<stem>.png` of an analysis and checks it against the group's
/// `ab_grid.parquet` cells and summary: the share of the map's pixels drawn
/// blue (slack ≥ 0) is the share of feasible cells, and the markers of the
/// smallest alpha and of the beta = alpha − 1 point are drawn (they are drawn
/// only inside the frame) when the summary has them, inside the grid's frame.
fn heat_map_shows_the_region(a: &Path, stem: &str, group: &str) {
    let facts = py(
        r#"
import sys, abcond, yaml
adir, group = sys.argv[1], sys.argv[2]
g = abcond.read_table(adir + "/ab_grid.parquet").to_pandas()
g = g[g.group == group]
s = yaml.safe_load(open(adir + "/summary.yaml"))
ab = [x for x in s["groups"] if x["label"] == group][0]["alpha_beta"]
gap = g.alpha - g.beta
print(len(g), int(g.feasible.sum()), int(g.in_domain.sum()))
lo, hi = g.alpha.min(), g.alpha.max()
glo, ghi = gap.min(), gap.max()
def inside(al, be):
    return lo * (1 - 1e-9) <= al <= hi * (1 + 1e-9) and glo * (1 - 1e-9) <= al - be <= ghi * (1 + 1e-9)
sa, one = ab.get("smallest_alpha"), ab.get("beta_alpha_minus_one")
print(int(sa is not None), int(sa is None or inside(sa["alpha"], sa["beta_min"]) or inside(sa["alpha"], sa["beta_max"])))
print(int(one is not None), int(one is None or inside(one["alpha"], one["alpha"] - 1)))
"#,
        &[a.to_str().unwrap(), group],
    );
    let n: Vec<usize> = facts
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let (cells, feasible, domain) = (n[0], n[1], n[2]);
    assert_eq!(n[4], 1, "{stem}: smallest alpha outside the frame: {facts}");
    assert_eq!(
        n[6], 1,
        "{stem}: beta = alpha − 1 point outside the frame: {facts}"
    );
    let img = image::open(a.join(format!("{stem}.png")))
        .unwrap()
        .to_rgb8();
    let (mut blue, mut red, mut grey) = (0usize, 0usize, 0usize);
    let (mut orange, mut green) = (0usize, 0usize);
    for p in img.pixels() {
        match (p.0, ramp(p.0)) {
            ([215, 215, 215], _) => grey += 1,
            ([230, 159, 0], _) => orange += 1,
            ([0, 158, 115], _) => green += 1,
            (_, Some(t)) if t > 0.0 => blue += 1,
            (_, Some(t)) if t < 0.0 => red += 1,
            _ => {}
        }
    }
    let map = (blue + red + grey) as f64;
    let share = blue as f64 / map;
    let want = feasible as f64 / cells as f64;
    assert!(
        feasible > 0 && (share - want).abs() < 0.08,
        "{stem}: {blue} of {map} map pixels blue ({share:.3}), {feasible} of {cells} cells feasible ({want:.3}); {domain} in the domain"
    );
    assert!(red > 0, "{stem}: no violated cell drawn");
    // The legend shows each marker once; the marker itself is a second blob
    // of its exact colour (one that the legend box hides is tinted, and
    // does not count).
    if n[3] == 1 {
        let k = blobs(&img, [230, 159, 0]);
        assert!(
            orange > 40 && k >= 2,
            "{stem}: the smallest-alpha marker is not drawn or hidden ({orange} px in {k} blobs)"
        );
    }
    if n[5] == 1 {
        let k = blobs(&img, [0, 158, 115]);
        assert!(
            green > 40 && k >= 2,
            "{stem}: the beta = alpha − 1 marker is not drawn or hidden ({green} px in {k} blobs)"
        );
    }
}

/// The number of 8-connected blobs of at least 12 pixels of exactly `colour`.
fn blobs(img: &image::RgbImage, colour: [u8; 3]) -> usize {
    let (w, h) = img.dimensions();
    let mut seen = vec![false; (w * h) as usize];
    let mut count = 0;
    for start in 0..(w * h) {
        let (x, y) = (start % w, start / w);
        if seen[start as usize] || img.get_pixel(x, y).0 != colour {
            continue;
        }
        let mut size = 0;
        let mut stack = vec![(x, y)];
        seen[start as usize] = true;
        while let Some((x, y)) = stack.pop() {
            size += 1;
            for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                    if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                        continue;
                    }
                    let (nx, ny) = (nx as u32, ny as u32);
                    let i = (ny * w + nx) as usize;
                    if !seen[i] && img.get_pixel(nx, ny).0 == colour {
                        seen[i] = true;
                        stack.push((nx, ny));
                    }
                }
            }
        }
        if size >= 12 {
            count += 1;
        }
    }
    count
}

/// `<stem>.pdf` is a valid PDF (read by pypdf) whose page image holds the
/// pixels of `<stem>.png`.
fn pdf_matches_png(a: &Path, stem: &str) {
    let raw = a.join(format!("{stem}.pdf.rgb"));
    let out = py(
        r#"
import sys
from pypdf import PdfReader
r = PdfReader(sys.argv[1], strict=True)
assert len(r.pages) == 1
im = r.pages[0]["/Resources"]["/XObject"]["/Im0"]
open(sys.argv[2], "wb").write(im.get_data())
print(im["/Width"], im["/Height"], float(r.pages[0].mediabox.width))
"#,
        &[
            a.join(format!("{stem}.pdf")).to_str().unwrap(),
            raw.to_str().unwrap(),
        ],
    );
    let img = image::open(a.join(format!("{stem}.png")))
        .unwrap()
        .to_rgb8();
    let dims: Vec<f64> = out.split_whitespace().map(|v| v.parse().unwrap()).collect();
    assert_eq!(
        (dims[0] as u32, dims[1] as u32),
        img.dimensions(),
        "{stem}.pdf"
    );
    assert_eq!(dims[2], img.width() as f64 / 2.0, "{stem}.pdf: 144 dpi");
    let bytes = std::fs::read(&raw).unwrap();
    std::fs::remove_file(&raw).unwrap();
    assert!(
        bytes == img.into_raw(),
        "{stem}.pdf: pixels differ from the PNG"
    );
}

#[test]
fn figures_show_the_data() {
    let dir = scratch("analysis-figures");
    let cfg = write_config(&dir, "hs.yaml", HALFSPACE);
    // Stdout of `run` ends with the analysis summary and the run directory.
    let stdout = ok(&abcond(
        &dir,
        &["--quiet", "--out", "out", "run", cfg.to_str().unwrap()],
    ));
    assert!(stdout.contains("[all] 1 run(s)"), "{stdout}");
    let run = run_dir(&dir.join("out"), "hs");
    let a = run.join("analysis");

    // Heat map: a colour field with both signs of slack, the black region
    // outline, legible text; not a blank canvas.
    let (w, h, colours, ink, red, blue, black) = pixels(&a.join("ab_heatmap.png"));
    assert_eq!((w, h), (1000, 800));
    assert!(colours > 200, "{colours} colours");
    assert!(ink > 0.5, "only {ink} of the heat map is drawn");
    assert!(red > 20_000 && blue > 20_000, "red {red}, blue {blue}");
    assert!(black > 1_000, "black {black}");
    for f in ["pl.png", "aiming.png", "loss.png"] {
        let (w, h, colours, ink, _, blue, _) = pixels(&a.join(f));
        assert_eq!((w, h), (900, 640), "{f}");
        assert!(
            colours > 20 && ink > 0.05 && blue > 300,
            "{f}: {colours} colours, ink {ink}, blue {blue}"
        );
    }
    // SVG: one rectangle per grid cell, the outline, axis labels as text.
    let svg = std::fs::read_to_string(a.join("ab_heatmap.svg")).unwrap();
    assert!(svg.matches("<rect").count() > 101 * 101, "few rects");
    assert!(
        svg.contains("<polyline") || svg.contains("<path"),
        "no outline"
    );
    assert!(
        svg.contains(">\nα  (log scale)\n</text>")
            && svg.contains(">\nα − β  (log scale)\n</text>"),
        "axis labels"
    );
    heat_map_shows_the_region(&a, "ab_heatmap", "all");
    heat_map_shows_the_region(&a, "overview", "all");
    for stem in ["overview", "ab_heatmap", "pl", "aiming", "loss"] {
        pdf_matches_png(&a, stem);
    }
    // report.md links every figure it shows, and they exist.
    let md = std::fs::read_to_string(a.join("report.md")).unwrap();
    for img in md.split("](").skip(1) {
        let name = img.split(')').next().unwrap();
        assert!(a.join(name).is_file(), "report links missing {name}");
    }
    assert!(md.contains("| beta = alpha − 1 | smallest alpha "), "{md}");
    assert!(
        md.find("](overview.png)").unwrap() < md.find("](ab_heatmap.png)").unwrap(),
        "the overview is the report's first figure"
    );
    // The printed summary and report.md state the same facts (one source:
    // the summary structure): every `  label: value` line of the group is a
    // `| label | value |` row of the report.
    let facts: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("[all]"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert!(facts.len() >= 6, "{stdout}");
    for f in facts {
        let (label, value) = f.trim_start().split_once(": ").unwrap();
        let row = format!("| {label} | {} |", value.replace('|', "\\|"));
        assert!(md.contains(&row), "report.md lacks `{row}`:\n{md}");
    }
}

#[test]
fn bad_analysis_input_is_explained() {
    let dir = scratch("analysis-bad");
    let out = abcond(&dir, &["analyze", "nowhere"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("nowhere is not a directory"),
        "{}",
        stderr(&out)
    );
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    let out = abcond(&dir, &["analyze", "empty"]);
    assert!(
        stderr(&out).contains("no run directories under empty"),
        "{}",
        stderr(&out)
    );

    // A trained but unprobed run is skipped, and with nothing else it is an error.
    let cfg = write_config(
        &dir,
        "hs.yaml",
        &HALFSPACE.replace("steps: 600", "steps: 50"),
    );
    ok(&abcond(
        &dir,
        &["--quiet", "--out", "out", "train", cfg.to_str().unwrap()],
    ));
    let out = abcond(&dir, &["analyze", "out/hs"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("no landscape.parquet") && err.contains("abcond probe"),
        "{err}"
    );

    ok(&abcond(
        &dir,
        &["--quiet", "--out", "out", "run", cfg.to_str().unwrap()],
    ));
    for (set, want) in [
        ("analysis.margin=-1", "analysis.margin"),
        ("analysis.f_star=lowest", "min-observed"),
        ("analysis.grid.points=1", "analysis.grid.points"),
        ("analysis.colour=red", "colour"),
        ("probe.extra_batches=3", "only takes analysis.*"),
    ] {
        let out = abcond(&dir, &["analyze", "out/hs", "--set", set]);
        assert_eq!(out.status.code(), Some(1), "{set}");
        assert!(stderr(&out).contains(want), "{set}: {}", stderr(&out));
    }
}
