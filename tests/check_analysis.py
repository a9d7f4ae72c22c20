"""Independent check of `abcond analyze` output (numpy + pyarrow, no abcond code).

usage: check_analysis.py ANALYSIS_DIR

From the runs' landscape.parquet it recomputes the constraint rows
(a, b, c) = (inner, loss_k − loss_ref, loss_k − f_i*) and checks:
- ab_region.parquet against a brute-force grid: every grid point where all
  rows (and beta ≥ 0, alpha ≥ beta + margin) have slack > 0 lies inside the
  polygon, every point with a negative slack outside (points within 1e-9 of a
  boundary skipped); every vertex satisfies every row;
- ab_grid.parquet: min slack, violations, feasibility of every cell;
- summary.yaml: smallest alpha, the beta = alpha − 1 point (feasible there,
  infeasible just below), the best beta/(alpha − beta) against the vertices,
  sigma_int²;
- aiming.parquet and pl.parquet from the full-data rows;
- trends.parquet (when present) against summary.yaml;
- dtypes of every table through pandas, Polars and DuckDB.
Prints one line per check; exits non-zero on the first failure.
"""

import math
import os
import sys

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import yaml
import abcond

adir = sys.argv[1]
summary = yaml.safe_load(open(os.path.join(adir, "summary.yaml")))
settings = summary["settings"]
margin = float(settings["margin"])
f_star = settings["f_star"]
train_only = settings["train_only"]


def fail(msg):
    print("FAIL", msg)
    sys.exit(1)


def close(x, y, rel=1e-9, abs_=1e-12):
    return abs(x - y) <= max(abs_, rel * max(abs(x), abs(y)))


runs = {}
for r in summary["runs"]:
    land = abcond.read_table(os.path.join(r["dir"], "landscape.parquet")).to_pandas()
    runs[r["run_id"]] = land


def f_stars(mini):
    """f_i* of each minibatch row of one run."""
    if f_star == "min-observed":
        key = mini.batch_indices.map(lambda v: tuple(v))
        m = pd.concat([mini.loss_k, mini.loss_ref], axis=1).min(axis=1)
        return m.groupby(key).transform("min")
    if f_star == "known":
        sys.exit("check_analysis.py: f_star: known (exact minibatch minima of known-answer models) is checked by tests/check_known.py, not here")
    return pd.Series(float(f_star), index=mini.index)


def rows_of(run_ids):
    out = []
    for rid in run_ids:
        land = runs[rid]
        mini = land[land.probe != "full"].copy()
        mini["f_star"] = f_stars(mini)
        if train_only:
            mini = mini[mini.probe == "train"]
        out.append(mini)
    d = pd.concat(out)
    a = d.inner.to_numpy()
    b = (d.loss_k - d.loss_ref).to_numpy()
    c = (d.loss_k - d.f_star).to_numpy()
    return a, b, c, d


def polygon(region, group):
    g = region[region.group == group].sort_values("order")
    return list(zip(g.kind, g.alpha, g.beta))


def inside(poly, al, be):
    """Point in the convex polygon (vertices counter-clockwise, rays at the ends)."""
    pts = []
    for kind, x, y in poly:
        pts.append((x, y, 0.0 if kind == "direction" else 1.0))
    if len(pts) < 3:
        return np.zeros(np.shape(al), dtype=bool)
    ok = np.ones(np.shape(al), dtype=bool)
    for i in range(len(pts)):
        p, q = pts[i], pts[(i + 1) % len(pts)]
        # det[p; q; (al, be, 1)] ≥ 0 (orientation, valid for points at infinity)
        det = (
            p[0] * (q[1] - q[2] * be)
            - p[1] * (q[0] - q[2] * al)
            + p[2] * (q[0] * be - q[1] * al)
        )
        ok &= det >= 0
    return ok


region = abcond.read_table(os.path.join(adir, "ab_region.parquet")).to_pandas()
grid = abcond.read_table(os.path.join(adir, "ab_grid.parquet")).to_pandas()
checked = 0
for g in summary["groups"]:
    label = g["label"]
    a, b, c, d = rows_of(g["runs"])
    if len(a) != g["rows"]:
        fail(f"[{label}] {g['rows']} rows in summary, {len(a)} recomputed")
    poly = polygon(region, label)
    ab = g["alpha_beta"]
    verts = [(x, y) for k, x, y in poly if k == "vertex"]
    if ab["region"] == "empty":
        if poly:
            fail(f"[{label}] empty region with {len(poly)} polygon rows")
    # brute force on a frame around the vertices
    top = max([5.0] + [2 * x for x, _ in verts if x < 1e6])
    al, be = np.meshgrid(np.linspace(0, top, 241), np.linspace(0, top, 241))
    al, be = al.ravel(), be.ravel()
    T = a[None, :] - al[:, None] * b[None, :] + be[:, None] * c[None, :]
    mins = np.minimum(T.min(axis=1), np.minimum(be, al - be - margin))
    decided = np.abs(mins) > 1e-9 * np.maximum(1.0, np.abs(al) + np.abs(be))
    inn = inside(poly, al, be)
    bad = decided & (inn != (mins > 0))
    if bad.any():
        i = np.argmax(bad)
        fail(f"[{label}] polygon disagrees with brute force at ({al[i]}, {be[i]}): min slack {mins[i]}, inside {inn[i]}")
    checked += int(decided.sum())
    for x, y in verts:
        t = (a - x * b + y * c).min()
        if t < -1e-9 * max(1.0, abs(x) + abs(y)) * max(1.0, np.abs(np.c_[a, b, c]).max()):
            fail(f"[{label}] vertex ({x}, {y}) violates a row: {t}")
    # summary landmarks
    if verts:
        amin = min(x for x, _ in verts)
        if not close(ab["smallest_alpha"]["alpha"], amin):
            fail(f"[{label}] smallest alpha {ab['smallest_alpha']['alpha']} vs vertices {amin}")
        rho = [y / x for x, y in verts]
        best = ab["best_ratio"]
        r_v = min(rho)
        dirs = [(x, y) for k, x, y in poly if k == "direction"]
        r_d = min([y / x for x, y in dirs], default=math.inf)
        r = min(r_v, r_d)
        if not close(best["beta_over_gap"], r / (1 - r), rel=1e-9, abs_=1e-12):
            fail(f"[{label}] best ratio {best['beta_over_gap']} vs {r / (1 - r)}")
    if ab["region"] == "empty":
        lv = ab["least_violation"]
        x, y = lv["alpha"], lv["beta"]
        t = (a - x * b + y * c).min()
        if not (y >= -1e-9 and x >= y + margin - 1e-9) or not close(t, lv["min_slack"], rel=1e-6, abs_=1e-9):
            fail(f"[{label}] least violation point ({x}, {y}): min slack {t} vs {lv['min_slack']}")
        # no point of the domain does better (sampled)
        rng = np.random.default_rng(0)
        bb = rng.uniform(0, 4 * max(1.0, x), 20000)
        aa = bb + margin + rng.uniform(0, 4 * max(1.0, x), 20000)
        best = (a[None, :] - aa[:, None] * b[None, :] + bb[:, None] * c[None, :]).min(axis=1).max()
        if best > t + 1e-9 * max(1.0, abs(t)):
            fail(f"[{label}] a sampled pair has min slack {best} > least violation {t}")
        worst = ab["most_violating"][0]["slack"]
        if not close(worst, t, rel=1e-6, abs_=1e-9):
            fail(f"[{label}] most violating row slack {worst} vs {t}")
    line = ab["beta_alpha_minus_one"]
    if line is not None:
        x = line["alpha"]
        t_at = min((a - x * b + (x - 1) * c).min(), x - 1)
        lo = x - 1e-6 * max(1.0, x)
        t_below = min((a - lo * b + (lo - 1) * c).min(), lo - 1)
        if t_at < -1e-9 * max(1.0, x) or t_below >= 0:
            fail(f"[{label}] beta = alpha − 1 from {x}: slack there {t_at}, just below {t_below}")
    # ab_grid
    gg = grid[grid.group == label]
    Tg = a[None, :] - gg.alpha.to_numpy()[:, None] * b[None, :] + gg.beta.to_numpy()[:, None] * c[None, :]
    ms = Tg.min(axis=1)
    if not np.allclose(gg.min_slack.to_numpy(), ms, rtol=1e-12, atol=1e-12):
        fail(f"[{label}] ab_grid min_slack differs by {np.abs(gg.min_slack.to_numpy() - ms).max()}")
    if not (gg.violations.to_numpy() == (Tg < 0).sum(axis=1)).all():
        fail(f"[{label}] ab_grid violations differ")
    dom = (gg.beta.to_numpy() >= 0) & (gg.alpha.to_numpy() >= gg.beta.to_numpy() + margin)
    if not (gg.feasible.to_numpy() == (dom & (ms >= 0))).all():
        fail(f"[{label}] ab_grid feasible differs")
    # The grid resolves the region: no feasible cell left of the exact smallest
    # alpha, and a region with area in the frame has feasible cells.
    feas = gg[gg.feasible]
    sa = ab.get("smallest_alpha")
    if sa is not None and len(feas) and feas.alpha.min() < sa["alpha"] * (1 - 1e-9) - 1e-12:
        fail(f"[{label}] feasible grid cell at alpha {feas.alpha.min()} < exact smallest alpha {sa['alpha']}")
    if ab["region"] in ("bounded", "unbounded") and len(verts) >= 2 and gg.in_domain.any() and not len(feas):
        fail(f"[{label}] the region has area but no grid cell is feasible")
    # sigma_int²: f(x^K) (full probe, else mean minibatch loss_ref) − mean f_i*
    sig = []
    for rid in g["runs"]:
        land = runs[rid]
        mini = land[land.probe != "full"]
        fs = f_stars(mini)
        full = land[land.probe == "full"]
        fk = full.loss_ref.iloc[0] if len(full) else mini.loss_ref.mean()
        sig.append(fk - fs.mean())
    s_sum = g["interpolation"]["sigma_int2"]
    if not close(s_sum, float(np.mean(sig))):
        fail(f"[{label}] sigma_int2 {s_sum} vs {np.mean(sig)}")
print(f"ok region/grid/summary: {len(summary['groups'])} group(s), {checked} brute-force grid points")

# Curvature and the SGD bound of Theorem 1 (when the runs have curvature.parquet):
# L from the eigenvalues, the bound brute-forced over points sampled inside the
# polygon with alpha − beta ≥ 2·L·gamma, its terms, the observed gap.
n_bound = 0
for g in summary["groups"]:
    label, sb = g["label"], g["sgd_bound"]
    curv = []
    for r in summary["runs"]:
        p = os.path.join(r["dir"], "curvature.parquet")
        if r["run_id"] in g["runs"] and os.path.exists(p):
            curv.append(abcond.read_table(p).to_pandas())
    if not curv:
        if g["curvature"]["rows"] != 0 or sb["L"] is not None:
            fail(f"[{label}] curvature reported without curvature.parquet")
        continue
    cv = pd.concat(curv)
    mini = cv[(cv.probe == "train") | (~cv.probe.isin(["train", "full"]) & (not train_only))]
    L = float(mini.eigenvalue.abs().max())
    if not close(sb["L"], L, rel=1e-15) or not close(g["curvature"]["L_minibatch"]["value"], L, rel=1e-15):
        fail(f"[{label}] L {sb['L']} vs max |eigenvalue| {L}")
    full_c = cv[cv.probe == "full"]
    if len(full_c) and not close(g["curvature"]["L_full"]["value"], float(full_c.eigenvalue.abs().max()), rel=1e-15):
        fail(f"[{label}] L_full")
    if g["curvature"]["unconverged"] != int((~cv.converged).sum()):
        fail(f"[{label}] unconverged count")
    entries = [(sb, None)] + [(pr, pr["run_id"]) for pr in sb["per_run"]]
    for e, rid in entries:
        where = f"[{label}] {rid or 'group'}"
        gamma, K = e["gamma"], e["K"]
        rids = [rid] if rid else g["runs"]
        d2 = []
        obs = []
        for x in rids:
            land = runs[x]
            d2.append(float(land[land.step == 0].dist.iloc[0]) ** 2)
            full = land[(land.probe == "full") & (land.step != land.ref_step)]
            obs.append(float((full.loss_k - full.loss_ref).min()))
        dist0 = math.sqrt(np.mean(d2))
        if not close(e["dist0"], dist0, rel=1e-12):
            fail(f"{where}: dist0 {e['dist0']} vs {dist0}")
        if not close(e["observed"]["min_gap"], float(np.mean(obs)), rel=1e-12):
            fail(f"{where}: observed {e['observed']['min_gap']} vs {np.mean(obs)}")
        s2 = e["sigma_int2"]
        if rid is None and not close(s2, g["interpolation"]["sigma_int2"]):
            fail(f"{where}: sigma_int2")
        poly = polygon(region, label)
        if e["bound"] is None:
            # No pair allows gamma: every sampled feasible point has alpha − beta < 2Lgamma.
            if e["applicable"]:
                fail(f"{where}: applicable without a bound")
            continue
        B = lambda al, be: (dist0**2 / (K * gamma) + 2 * L * gamma * s2 + 2 * be * s2) / (al - be)
        al0, be0 = e["alpha"], e["beta"]
        terms = e["terms"]
        if e["attained"]:
            gap = al0 - be0
            want = [dist0**2 / (K * gamma * gap), 2 * L * gamma * s2 / gap, 2 * be0 * s2 / gap]
            for name, w in zip(["initial_distance", "step_size", "interpolation"], want):
                if not close(terms[name], w, rel=1e-9):
                    fail(f"{where}: term {name} {terms[name]} vs {w}")
            if not close(e["bound"], B(al0, be0), rel=1e-9):
                fail(f"{where}: bound {e['bound']} vs B at its pair {B(al0, be0)}")
            if gap < 2 * L * gamma * (1 - 1e-9):
                fail(f"{where}: pair has alpha − beta = {gap} < 2Lgamma = {2 * L * gamma}")
            a_, b_, c_, _ = rows_of(g["runs"])
            t = (a_ - al0 * b_ + be0 * c_).min()
            if t < -1e-9 * max(1.0, abs(al0) + abs(be0)) * max(1.0, np.abs(np.c_[a_, b_, c_]).max()):
                fail(f"{where}: the bound's pair ({al0}, {be0}) violates a row: {t}")
        # brute force: sample the polygon (grid over a frame plus points along
        # every edge) intersected with alpha − beta ≥ 2Lgamma
        a_, b_, c_, _ = rows_of(g["runs"])
        verts = [(x, y) for k, x, y in poly if k == "vertex"]
        top = max([4.0] + [3 * x for x, _ in verts if x < 1e6])
        al, be = np.meshgrid(np.linspace(0, top, 401), np.linspace(0, top, 401))
        al, be = al.ravel(), be.ravel()
        pts = [np.c_[al, be]]
        for i in range(len(verts) - 1):
            t = np.linspace(0, 1, 2001)[:, None]
            pts.append(np.array(verts[i]) * (1 - t) + np.array(verts[i + 1]) * t)
        pts = np.vstack(pts + [np.array(verts)])
        al, be = pts[:, 0], pts[:, 1]
        T = (a_[None, :] - al[:, None] * b_[None, :] + be[:, None] * c_[None, :]).min(axis=1)
        ok = (T >= -1e-9 * np.maximum(1, np.abs(al) + np.abs(be))) & (be >= -1e-12) & (al - be >= margin - 1e-12) & (
            al - be >= 2 * L * gamma * (1 - 1e-12)
        )
        if not ok.any():
            fail(f"{where}: no sampled point in the usable region")
        vals = B(al[ok], be[ok])
        if vals.min() < e["bound"] * (1 - 1e-7):
            i = np.argmin(vals)
            fail(f"{where}: sampled pair ({al[ok][i]}, {be[ok][i]}) gives {vals.min()} < reported {e['bound']}")
        if e["attained"] and vals.min() > e["bound"] * (1 + 1e-3):
            fail(f"{where}: brute force minimum {vals.min()} well above the reported {e['bound']}")
        # the theorem's conclusion on this run: report, not a pass/fail criterion
        n_bound += 1
print(f"ok curvature/sgd bound: {n_bound} bound(s) against brute force")

# Aiming and PL from the full-data rows.
aim = abcond.read_table(os.path.join(adir, "aiming.parquet")).to_pandas()
plt_ = abcond.read_table(os.path.join(adir, "pl.parquet")).to_pandas()
deltas = settings["pl_deltas"]
n_aim = 0
for rid, land in runs.items():
    full = land[(land.probe == "full") & (land.step != land.ref_step)].sort_values("step")
    got = aim[aim.run_id == rid].sort_values("step")
    if len(full) != len(got):
        fail(f"aiming rows of {rid}: {len(got)} vs {len(full)}")
    if len(full) == 0:
        continue
    coef = full.inner.to_numpy() / full.loss_k.to_numpy()
    angle = np.degrees(np.arccos(np.clip(full.cos.to_numpy(), -1, 1)))
    gap = full.loss_k.to_numpy() - full.loss_ref.to_numpy()
    if not np.allclose(got.aiming_coef, coef, rtol=1e-14) or not np.allclose(got.angle_deg, angle, rtol=1e-12):
        fail(f"aiming coefficient/angle of {rid}")
    q = np.where(gap > 0, full.inner.to_numpy() / np.where(gap > 0, gap, 1), np.nan)
    gq = got.qcvx_ratio.to_numpy(dtype=float)
    if not np.array_equal(np.isnan(q), np.isnan(gq)) or not np.allclose(q[~np.isnan(q)], gq[~np.isnan(gq)], rtol=1e-14):
        fail(f"qcvx ratio of {rid}")
    for dlt in deltas:
        p = plt_[(plt_.run_id == rid) & (plt_.delta == dlt)].sort_values("step")
        want = np.where(
            (gap > 0) & (full.grad_norm.to_numpy() > 0),
            2 * np.log(full.grad_norm.to_numpy()) - (2 / dlt) * np.log(np.where(gap > 0, gap, 1)),
            np.nan,
        )
        got_pl = p.log_2mu.to_numpy(dtype=float)
        if not np.array_equal(np.isnan(want), np.isnan(got_pl)) or not np.allclose(
            want[~np.isnan(want)], got_pl[~np.isnan(got_pl)], rtol=1e-13, atol=1e-13
        ):
            fail(f"pl curve of {rid}, delta {dlt}")
        # mu reported per run = exp(min)/2
        per = next(pr for g in summary["groups"] for pr in g["per_run"] if pr["run_id"] == rid)
        entry = next(e for e in per["pl"] if e["delta"] == dlt)
        if not np.isnan(want).all():
            if not close(entry["mu"], 0.5 * math.exp(np.nanmin(want)), rel=1e-12):
                fail(f"mu of {rid}, delta {dlt}: {entry['mu']}")
    per = next(pr for g in summary["groups"] for pr in g["per_run"] if pr["run_id"] == rid)
    if per["aiming"]["fail_steps"] != int((full.inner <= 0).sum()) or not close(per["aiming"]["theta"], coef.min()):
        fail(f"aiming constants of {rid}")
    n_aim += len(full)
print(f"ok aiming/pl: {n_aim} full-data rows")

# trends
tp = os.path.join(adir, "trends.parquet")
if len(summary["groups"]) > 1:
    tr = abcond.read_table(tp).to_pandas()
    for g in summary["groups"]:
        row = tr[tr.group == g["label"]].iloc[0]
        best = g["alpha_beta"]["best_ratio"]
        if best and not (close(row.alpha, best["alpha"]) and close(row.beta, best["beta"])):
            fail(f"trends pair of {g['label']}")
        s = g["interpolation"]["sigma_int2"]
        if best and not close(row.beta_sigma_int2, best["beta"] * s):
            fail(f"trends beta·sigma² of {g['label']}")
        sb = g["sgd_bound"]
        if sb["L"] is not None and not close(row.L, sb["L"]):
            fail(f"trends L of {g['label']}")
        if (sb["bound"] is None) != pd.isna(row.sgd_bound) or (
            sb["bound"] is not None and not close(row.sgd_bound, sb["bound"])
        ):
            fail(f"trends sgd_bound of {g['label']}: {row.sgd_bound} vs {sb['bound']}")
        if bool(row.sgd_bound_applicable) != sb["applicable"]:
            fail(f"trends sgd_bound_applicable of {g['label']}")
    print(f"ok trends: {len(tr)} rows")
elif os.path.exists(tp):
    fail("trends.parquet written for a single group")

# dtypes through the three readers
want = {
    "ab_region.parquet": {"group": "str", "order": "i64", "kind": "str", "alpha": "f64", "beta": "f64"},
    "ab_grid.parquet": {"group": "str", "alpha": "f64", "beta": "f64", "in_domain": "bool", "min_slack": "f64",
                        "violations": "i64", "rows": "i64", "feasible": "bool", "binding_run_id": "str",
                        "binding_step": "i64", "binding_probe": "str"},
    "aiming.parquet": {"group": "str", "run_id": "str", "seed": "i64", "step": "i64", "loss": "f64",
                       "loss_ref": "f64", "gap": "f64", "inner": "f64", "grad_norm": "f64", "dist": "f64",
                       "cos": "f64", "angle_deg": "f64", "aiming_coef": "f64", "qcvx_ratio": "f64"},
    "pl.parquet": {"group": "str", "run_id": "str", "seed": "i64", "step": "i64", "delta": "f64", "loss": "f64",
                   "loss_ref": "f64", "grad_norm": "f64", "log_2mu": "f64"},
}
polars_t = {"str": pl.String, "i64": pl.Int64, "f64": pl.Float64, "bool": pl.Boolean}
duck_t = {"str": "VARCHAR", "i64": "BIGINT", "f64": "DOUBLE", "bool": "BOOLEAN"}
# The grouping keys (sweep axes) follow `group` in every table, with trends.parquet's
# types and each row holding its group's value.
keys, trends_df = [], None
if os.path.exists(tp):
    trends_df = abcond.read_table(tp).to_pandas()
    keys = list(trends_df.columns)[1 : list(trends_df.columns).index("runs")]
    if len(keys) == 0:
        fail("trends.parquet has no grouping-key column")
for name, cols in want.items():
    path = os.path.join(adir, name)
    df = pl.read_parquet(path)
    items = list(cols.items())
    cols = dict(items[:1] + [(k, None) for k in keys] + items[1:])
    pdf_keys = pd.read_parquet(path)
    for k in keys:
        if df.schema.get(k) != pl.from_pandas(trends_df[[k]]).schema[k]:
            fail(f"{name}: dtype of key column {k} is {df.schema.get(k)}")
        want_v = pdf_keys.group.map(dict(zip(trends_df.group, trends_df[k])))
        if not (pdf_keys[k] == want_v).all():
            fail(f"{name}: key column {k} disagrees with the rows' groups")
    for col, t in cols.items():
        if t is None:
            continue
        if df.schema.get(col) != polars_t[t]:
            fail(f"{name}: polars dtype of {col} is {df.schema.get(col)}, expected {t}")
    pdf = pd.read_parquet(path)
    if list(pdf.columns)[: len(cols)] != list(cols):
        fail(f"{name}: pandas columns {list(pdf.columns)}")
    desc = duckdb.sql(f"describe select * from '{path}'").fetchall()
    types = {r[0]: r[1] for r in desc}
    for col, t in cols.items():
        if t is not None and types.get(col) != duck_t[t]:
            fail(f"{name}: duckdb type of {col} is {types.get(col)}, expected {duck_t[t]}")
    md = pq.read_schema(path).metadata or {}
    if b"abcond.format" not in md or b"abcond.f_star" not in md:
        fail(f"{name}: metadata {md}")
print(f"ok dtypes: pandas, polars, duckdb; grouping-key columns {keys}")
