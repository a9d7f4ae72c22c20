#!/usr/bin/env python3
"""Real molecules as an OGB graph-property data set, for `data.dataset: ogbg`.

Reads molecules with a measured property — by default the 4,999 NCI
compounds of the Debian package rdkit-data with their topological polar
surface area (TPSA, Ertl's method, computed with Daylight's tools:
/usr/share/RDKit/Data/NCI/first_5k.tpsa.csv) — turns each SMILES into a graph
with OGB's own featuriser (`ogb.utils.smiles2graph`: 9 atom features, 3 bond
features, as in ogbg-molpcba) and writes OGB's raw format:

    OUT/raw/{num-node-list,num-edge-list,node-feat,edge,edge-feat,graph-label}.csv.gz
    OUT/mapping/mol.csv.gz     index, smiles, tpsa of each graph
    OUT/README.txt             what the tasks are

Each bond is stored once (edge.csv keeps one direction, as OGB's raw files
do; the reader adds the opposite edge). The labels are two binary tasks of
the real property: task 0 = TPSA > 90 Å² (above the usual blood–brain-barrier
threshold), task 1 = TPSA > 140 Å² (Veber's limit for oral bioavailability).

usage: molecules-to-ogb.py [--source FILE] [--limit N] OUT

Needs the PyPI packages ogb and rdkit (`./dev test` installs them) and the
Debian package rdkit-data (`apt-get install rdkit-data`). OUT must not exist,
or be a directory this script wrote (it is then replaced).
"""

import argparse
import gzip
import os
import shutil
import sys
import tempfile

SOURCE = "/usr/share/RDKit/Data/NCI/first_5k.tpsa.csv"
MARKER = "README.txt"
THRESHOLDS = (90.0, 140.0)


def read_source(path):
    """(smiles, tpsa) pairs of a `SMILES,value` CSV (lines starting with #
    are comments)."""
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            smiles, _, value = line.rpartition(",")
            try:
                rows.append((smiles, float(value)))
            except ValueError:
                sys.exit(f"{path} line {n}: expected `SMILES,value`, got {line[:80]!r}")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--source", default=SOURCE)
    ap.add_argument("--limit", type=int, default=None, help="the first N molecules only")
    a = ap.parse_args()
    if not os.path.isfile(a.source):
        sys.exit(f"{a.source} does not exist: install the Debian package rdkit-data (apt-get install rdkit-data) or pass --source")
    out = os.path.abspath(a.out)
    if os.path.exists(out) and not (os.path.isdir(out) and os.path.isfile(os.path.join(out, MARKER)) and set(os.listdir(out)) <= {"raw", "mapping", MARKER}):
        sys.exit(f"{out} exists and was not written by this script; choose a new directory")
    from ogb.utils import smiles2graph
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    rows = read_source(a.source)[: a.limit]
    n_node, n_edge, nodes, edges, efeat, labels, mapping, skipped = [], [], [], [], [], [], [], 0
    for smiles, tpsa in rows:
        try:
            g = smiles2graph(smiles)
        except Exception:
            skipped += 1
            continue
        if g["num_nodes"] < 1:
            skipped += 1
            continue
        # smiles2graph lists each bond in both directions, one after the other.
        ei, ef = g["edge_index"][:, ::2], g["edge_feat"][::2]
        n_node.append(g["num_nodes"])
        n_edge.append(ei.shape[1])
        nodes.extend(",".join(map(str, r)) for r in g["node_feat"])
        edges.extend(f"{u},{v}" for u, v in ei.T)
        efeat.extend(",".join(map(str, r)) for r in ef)
        labels.append(",".join(str(int(tpsa > t)) for t in THRESHOLDS))
        mapping.append(f"{len(mapping)},{smiles},{tpsa}")
    parent = os.path.dirname(out) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".molecules-", dir=parent)
    try:
        for sub in ("raw", "mapping"):
            os.makedirs(os.path.join(tmp, sub))

        def write(rel, lines, header=None):
            with gzip.open(os.path.join(tmp, rel), "wt") as f:
                if header:
                    f.write(header + "\n")
                f.write("\n".join(lines) + "\n")

        write("raw/num-node-list.csv.gz", map(str, n_node))
        write("raw/num-edge-list.csv.gz", map(str, n_edge))
        write("raw/node-feat.csv.gz", nodes)
        write("raw/edge.csv.gz", edges)
        write("raw/edge-feat.csv.gz", efeat)
        write("raw/graph-label.csv.gz", labels)
        write("mapping/mol.csv.gz", mapping, "index,smiles,tpsa")
        positive = [sum(int(l.split(",")[t]) for l in labels) for t in range(len(THRESHOLDS))]
        with open(os.path.join(tmp, MARKER), "w") as f:
            f.write(
                f"Written by abcond's scripts/molecules-to-ogb.py from {a.source}:\n"
                f"{len(n_node)} molecules ({skipped} SMILES rdkit could not read were skipped),\n"
                f"{sum(n_node)} atoms, {sum(n_edge)} bonds, featurised by ogb.utils.smiles2graph.\n"
                f"Tasks (graph-label.csv, one column each): TPSA > {THRESHOLDS[0]:g} Å² ({positive[0]} positive),\n"
                f"TPSA > {THRESHOLDS[1]:g} Å² ({positive[1]} positive).\n"
            )
        if os.path.exists(out):
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"{out}: {len(n_node)} molecules, {sum(n_node)} atoms, {sum(n_edge)} bonds ({skipped} skipped); tasks TPSA > 90 and > 140 Å²")


if __name__ == "__main__":
    main()
