//! Graph-property data in OGB's on-disk format (`data.dataset: ogbg`): the
//! `raw/` directory of an OGB graph data set (ogbg-molpcba, ogbg-molhiv, …)
//! or of molecules converted by scripts/molecules-to-ogb.py. Six CSV files,
//! each optionally gzipped:
//!
//! - `num-node-list.csv`, `num-edge-list.csv`: one count per graph;
//! - `node-feat.csv`: one row of integer node features per node, graph after
//!   graph (9 per atom for OGB's molecules);
//! - `edge.csv`: `src,dst` per bond, node ids local to the bond's graph;
//! - `edge-feat.csv`: one row of integer edge features per bond (3);
//! - `graph-label.csv`: one row of labels per graph, 0/1, empty or `nan` where
//!   the label is missing.
//!
//! A minibatch concatenates its graphs as AlgoPerf's ogbg input pipeline does:
//! node features stacked, each bond made two directed edges (its features
//! twice; senders `[src; dst]`, receivers `[dst; src]` per graph), node ids
//! offset by the nodes before, and segment ids mapping each node and edge to
//! its graph. The example i of f_i is the graph i.

use super::{Batch, Dataset, Targets};
use crate::data::config::{DatasetKind, OgbgData};
use crate::torch::dtype::Dtype;
use anyhow::{anyhow, bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;
#[cfg(test)]
use tch::Kind;
use tch::{Device, Tensor};

/// The graphs of a data set, in file order (CPU tensors).
pub struct Graphs {
    /// Node features [N, node_dim] in the model dtype.
    pub node_feat: Tensor,
    /// Bond features [E, edge_dim] in the model dtype (one row per bond).
    pub edge_feat: Tensor,
    /// Bond endpoints, local to their graph.
    pub src: Vec<i64>,
    pub dst: Vec<i64>,
    /// First node and first bond of each graph, and one past the last.
    pub node_start: Vec<i64>,
    pub edge_start: Vec<i64>,
    /// Labels [G, tasks] in the model dtype, NaN where missing.
    pub labels: Tensor,
}

impl Clone for Graphs {
    fn clone(&self) -> Self {
        Graphs {
            node_feat: self.node_feat.shallow_clone(),
            edge_feat: self.edge_feat.shallow_clone(),
            src: self.src.clone(),
            dst: self.dst.clone(),
            node_start: self.node_start.clone(),
            edge_start: self.edge_start.clone(),
            labels: self.labels.shallow_clone(),
        }
    }
}

impl Graphs {
    pub fn len(&self) -> usize {
        self.node_start.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps the graphs `keep` (in that order).
    pub fn select(&mut self, keep: &[i64]) {
        let (mut node_rows, mut edge_rows) = (Vec::new(), Vec::new());
        let (mut node_start, mut edge_start) = (vec![0i64], vec![0i64]);
        let (mut src, mut dst) = (Vec::new(), Vec::new());
        for &g in keep {
            let g = g as usize;
            let (n0, n1) = (self.node_start[g], self.node_start[g + 1]);
            let (e0, e1) = (self.edge_start[g], self.edge_start[g + 1]);
            node_rows.extend(n0..n1);
            edge_rows.extend(e0..e1);
            src.extend_from_slice(&self.src[e0 as usize..e1 as usize]);
            dst.extend_from_slice(&self.dst[e0 as usize..e1 as usize]);
            node_start.push(node_start.last().unwrap() + (n1 - n0));
            edge_start.push(edge_start.last().unwrap() + (e1 - e0));
        }
        self.node_feat = self
            .node_feat
            .index_select(0, &Tensor::from_slice(&node_rows));
        self.edge_feat = self
            .edge_feat
            .index_select(0, &Tensor::from_slice(&edge_rows));
        self.labels = self.labels.index_select(0, &Tensor::from_slice(keep));
        (self.src, self.dst, self.node_start, self.edge_start) = (src, dst, node_start, edge_start);
    }

    /// The minibatch of graphs `indices`, on `device`: `x` = node features
    /// [n, node_dim], `y` = labels [B, tasks], and `inputs` = [node features,
    /// edge features [e, edge_dim], senders [e], receivers [e], node → graph
    /// [n], edge → graph [e]] (edges: each bond twice, as the module doc says).
    pub fn batch(&self, indices: &[i64], device: Device) -> Batch {
        let (mut node_rows, mut edge_rows) = (Vec::new(), Vec::new());
        let (mut senders, mut receivers) = (Vec::new(), Vec::new());
        let (mut node_graph, mut edge_graph) = (Vec::new(), Vec::new());
        let mut offset = 0i64;
        for (b, &g) in indices.iter().enumerate() {
            let g = g as usize;
            let (n0, n1) = (self.node_start[g], self.node_start[g + 1]);
            let (e0, e1) = (self.edge_start[g] as usize, self.edge_start[g + 1] as usize);
            node_rows.extend(n0..n1);
            node_graph.extend(std::iter::repeat_n(b as i64, (n1 - n0) as usize));
            let bonds = e0..e1;
            edge_rows.extend(bonds.clone().map(|e| e as i64));
            edge_rows.extend(bonds.clone().map(|e| e as i64));
            senders.extend(self.src[bonds.clone()].iter().map(|s| s + offset));
            senders.extend(self.dst[bonds.clone()].iter().map(|d| d + offset));
            receivers.extend(self.dst[bonds.clone()].iter().map(|d| d + offset));
            receivers.extend(self.src[bonds.clone()].iter().map(|s| s + offset));
            edge_graph.extend(std::iter::repeat_n(b as i64, 2 * (e1 - e0)));
            offset += n1 - n0;
        }
        let ids = |v: &[i64]| Tensor::from_slice(v).to_device(device);
        let x = self
            .node_feat
            .index_select(0, &Tensor::from_slice(&node_rows))
            .to_device(device);
        let edges = self
            .edge_feat
            .index_select(0, &Tensor::from_slice(&edge_rows))
            .to_device(device);
        let y = self
            .labels
            .index_select(0, &Tensor::from_slice(indices))
            .to_device(device);
        Batch {
            x: x.shallow_clone(),
            y,
            len: indices.len(),
            inputs: vec![
                x,
                edges,
                ids(&senders),
                ids(&receivers),
                ids(&node_graph),
                ids(&edge_graph),
            ],
        }
    }
}

/// The graph-data file `name` (or `name.gz`) in `dir`.
fn find(dir: &Path, name: &str) -> Result<PathBuf> {
    for p in [dir.join(name), dir.join(format!("{name}.gz"))] {
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "{}: no {name} or {name}.gz (an OGB graph data set's raw/ directory holds edge.csv, edge-feat.csv, node-feat.csv, num-node-list.csv, num-edge-list.csv and graph-label.csv, each possibly gzipped)",
        dir.display()
    )
}

/// The lines of a CSV file (gunzipped when it ends in `.gz`).
fn read_lines(path: &Path) -> Result<Vec<String>> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text = if path.extension().is_some_and(|e| e == "gz") {
        let mut s = String::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_string(&mut s)
            .map_err(|e| anyhow!("{}: not a readable gzip text file: {e}", path.display()))?;
        s
    } else {
        String::from_utf8(raw).map_err(|_| anyhow!("{}: not UTF-8 text", path.display()))?
    };
    Ok(text
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// Rows of whole numbers, each of `width` fields (None: the first row's).
fn int_rows(path: &Path, width: Option<usize>) -> Result<(Vec<i64>, usize)> {
    let lines = read_lines(path)?;
    let mut out = Vec::new();
    let mut w = width;
    for (i, line) in lines.iter().enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        let want = *w.get_or_insert(fields.len());
        if fields.len() != want {
            bail!(
                "{} line {}: {} fields, expected {want}",
                path.display(),
                i + 1,
                fields.len()
            );
        }
        for f in fields {
            let v: i64 = f.trim().parse().map_err(|_| {
                anyhow!(
                    "{} line {}: `{}` is not a whole number",
                    path.display(),
                    i + 1,
                    f.trim()
                )
            })?;
            out.push(v);
        }
    }
    Ok((out, w.unwrap_or(0)))
}

/// Loads the graphs at `s.path` (the data set's directory or its `raw/`).
pub fn load(s: &OgbgData, dtype: Dtype) -> Result<Dataset> {
    let root = s.path.as_deref().expect("checked: data.path is required");
    let dir = if root.join("raw").is_dir() {
        root.join("raw")
    } else {
        root.to_path_buf()
    };
    if !dir.is_dir() {
        bail!(
            "key `data.path`: {} is not a directory (an OGB graph data set's, holding raw/)",
            root.display()
        );
    }
    let (n_node, _) = int_rows(&find(&dir, "num-node-list.csv")?, Some(1))?;
    let (n_edge, _) = int_rows(&find(&dir, "num-edge-list.csv")?, Some(1))?;
    let nodes_file = find(&dir, "node-feat.csv")?;
    let (node_feat, node_dim) = int_rows(&nodes_file, None)?;
    let edge_file = find(&dir, "edge.csv")?;
    let (edges, _) = int_rows(&edge_file, Some(2))?;
    let efeat_file = find(&dir, "edge-feat.csv")?;
    let (edge_feat, edge_dim) = int_rows(&efeat_file, None)?;
    let label_file = find(&dir, "graph-label.csv")?;
    let graphs = n_node.len();
    if graphs == 0 {
        bail!("{}: no graphs", dir.display());
    }
    if n_edge.len() != graphs {
        bail!(
            "{}: {} graphs in num-node-list.csv but {} in num-edge-list.csv",
            dir.display(),
            graphs,
            n_edge.len()
        );
    }
    if let Some(i) = n_node.iter().position(|&n| n < 1) {
        bail!(
            "{}: graph {i} (line {}) has {} nodes; every graph needs at least one",
            find(&dir, "num-node-list.csv")?.display(),
            i + 1,
            n_node[i]
        );
    }
    if let Some(i) = n_edge.iter().position(|&n| n < 0) {
        bail!(
            "{}: graph {i} (line {}) has {} edges",
            find(&dir, "num-edge-list.csv")?.display(),
            i + 1,
            n_edge[i]
        );
    }
    let total_nodes: i64 = n_node.iter().sum();
    let total_edges: i64 = n_edge.iter().sum();
    if node_dim == 0 || node_feat.len() as i64 != total_nodes * node_dim as i64 {
        bail!(
            "{}: {} rows, but num-node-list.csv counts {total_nodes} nodes",
            nodes_file.display(),
            node_feat.len() / node_dim.max(1)
        );
    }
    if edges.len() as i64 != 2 * total_edges {
        bail!(
            "{}: {} rows, but num-edge-list.csv counts {total_edges} edges",
            edge_file.display(),
            edges.len() / 2
        );
    }
    if total_edges > 0 && (edge_dim == 0 || edge_feat.len() as i64 != total_edges * edge_dim as i64)
    {
        bail!(
            "{}: {} rows, but num-edge-list.csv counts {total_edges} edges",
            efeat_file.display(),
            edge_feat.len() / edge_dim.max(1)
        );
    }
    let edge_dim = if total_edges == 0 { 3 } else { edge_dim };
    let (mut node_start, mut edge_start) = (vec![0i64], vec![0i64]);
    for g in 0..graphs {
        node_start.push(node_start[g] + n_node[g]);
        edge_start.push(edge_start[g] + n_edge[g]);
    }
    let (mut src, mut dst) = (
        Vec::with_capacity(edges.len() / 2),
        Vec::with_capacity(edges.len() / 2),
    );
    for g in 0..graphs {
        for e in edge_start[g]..edge_start[g + 1] {
            let (u, v) = (edges[2 * e as usize], edges[2 * e as usize + 1]);
            if !(0..n_node[g]).contains(&u) || !(0..n_node[g]).contains(&v) {
                bail!(
                    "{} line {}: edge {u} → {v} of graph {g}, which has nodes 0..{} (node ids are local to their graph)",
                    edge_file.display(),
                    e + 1,
                    n_node[g] - 1
                );
            }
            src.push(u);
            dst.push(v);
        }
    }
    // Labels: 0/1, empty or nan where missing.
    let lines = read_lines(&label_file)?;
    if lines.len() != graphs {
        bail!(
            "{}: {} rows, but num-node-list.csv counts {graphs} graphs",
            label_file.display(),
            lines.len()
        );
    }
    let tasks = lines[0].split(',').count();
    if let Some(t) = s.tasks {
        if t as usize != tasks {
            bail!(
                "{}: {tasks} label columns, but key `data.tasks` is {t}",
                label_file.display()
            );
        }
    }
    let mut labels = Vec::with_capacity(graphs * tasks);
    for (i, line) in lines.iter().enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != tasks {
            bail!(
                "{} line {}: {} labels, expected {tasks}",
                label_file.display(),
                i + 1,
                fields.len()
            );
        }
        for f in fields {
            let f = f.trim();
            let v = if f.is_empty() || f.eq_ignore_ascii_case("nan") {
                f64::NAN
            } else {
                match f.parse::<f64>() {
                    Ok(v) if v == 0.0 || v == 1.0 => v,
                    _ => bail!(
                        "{} line {}: label `{f}`; expected 0, 1, or empty/nan for a missing label",
                        label_file.display(),
                        i + 1
                    ),
                }
            };
            labels.push(v);
        }
    }
    let kind = dtype.kind();
    let as_kind = |v: &[i64], dims: [i64; 2]| Tensor::from_slice(v).view(dims).to_kind(kind);
    let node_feat = as_kind(&node_feat, [total_nodes, node_dim as i64]);
    let edge_feat = if total_edges == 0 {
        Tensor::zeros([0, edge_dim as i64], (kind, Device::Cpu))
    } else {
        as_kind(&edge_feat, [total_edges, edge_dim as i64])
    };
    let labels = Tensor::from_slice(&labels)
        .view([graphs as i64, tasks as i64])
        .to_kind(kind);
    let mut g = Graphs {
        node_feat: node_feat.shallow_clone(),
        edge_feat,
        src,
        dst,
        node_start,
        edge_start,
        labels: labels.shallow_clone(),
    };
    let mut source_index: Vec<i64> = (0..graphs as i64).collect();
    if let Some(split) = &s.split {
        let keep = split_indices(root, split, graphs)?;
        g.select(&keep);
        source_index = keep;
    }
    let len = g.len() as u64;
    Ok(Dataset {
        kind: DatasetKind::Ogbg,
        x: g.node_feat.shallow_clone(),
        y: g.labels.shallow_clone(),
        len,
        input_shape: vec![node_dim as i64, edge_dim as i64],
        targets: Targets::Graphs {
            tasks: tasks as i64,
        },
        source_index,
        source_dir: Some(dir),
        augment: None,
        images: None,
        inputs: vec![],
        vocab: vec![],
        graphs: Some(Rc::new(g)),
    })
}

/// The graph indices of OGB's split file `split/<scheme>/<split>.csv(.gz)`
/// under the data set's directory `root` (or beside `root` when it is the
/// raw/ directory itself; the one scheme there, e.g. `scaffold`).
fn split_indices(root: &Path, split: &str, graphs: usize) -> Result<Vec<i64>> {
    let base = if root.join("raw").is_dir() {
        root.join("split")
    } else {
        root.join("..").join("split")
    };
    let schemes: Vec<PathBuf> = std::fs::read_dir(&base)
        .with_context(|| {
            format!(
                "key `data.split`: {} is not readable (OGB's data sets keep split/<scheme>/{split}.csv.gz beside raw/)",
                base.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    let [scheme] = &schemes[..] else {
        bail!(
            "key `data.split`: {} holds {} split schemes; expected one (e.g. scaffold/)",
            base.display(),
            schemes.len()
        );
    };
    let file = find(scheme, &format!("{split}.csv"))?;
    let (idx, _) = int_rows(&file, Some(1))?;
    if let Some((line, &i)) = idx
        .iter()
        .enumerate()
        .find(|(_, &i)| i < 0 || i as usize >= graphs)
    {
        bail!(
            "{} line {}: graph {i}, but raw/ holds graphs 0..{}",
            file.display(),
            line + 1,
            graphs - 1
        );
    }
    if idx.is_empty() {
        bail!("{}: no graphs", file.display());
    }
    Ok(idx)
}

/// Used by `Dataset::load` for the subset draw.
pub(crate) fn select(ds: &mut Dataset, keep: &[i64]) {
    if let Some(g) = &mut ds.graphs {
        let g = Rc::make_mut(g);
        g.select(keep);
        ds.x = g.node_feat.shallow_clone();
        ds.y = g.labels.shallow_clone();
    }
}

/// Tensor of kind Int64 holding `v` (test helper).
#[cfg(test)]
fn longs(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(t.to_kind(Kind::Int64)).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    fn fixture(dir: &Path) {
        std::fs::create_dir_all(dir.join("raw")).unwrap();
        let r = dir.join("raw");
        write(&r, "num-node-list.csv", "2\n3\n1\n");
        write(&r, "num-edge-list.csv", "1\n2\n0\n");
        write(&r, "node-feat.csv", "1,0\n2,0\n3,1\n4,1\n5,1\n6,2\n");
        write(&r, "edge.csv", "0,1\n0,1\n1,2\n");
        write(&r, "edge-feat.csv", "7,0,0\n8,0,1\n9,1,0\n");
        write(&r, "graph-label.csv", "1,0\n,1\nnan,nan\n");
    }

    #[test]
    fn reads_and_batches_graphs_as_the_reference_pipeline() {
        let dir = std::env::temp_dir().join(format!("abcond-ogbg-{}", std::process::id()));
        fixture(&dir);
        let s = OgbgData {
            path: Some(dir.clone()),
            ..Default::default()
        };
        let ds = load(&s, Dtype::F32).unwrap();
        assert_eq!(ds.len, 3);
        assert_eq!(ds.targets, Targets::Graphs { tasks: 2 });
        let b = ds.graphs.as_ref().unwrap().batch(&[1, 0], Device::Cpu);
        // graph 1 (3 nodes, bonds 0-1, 1-2) then graph 0 (2 nodes, bond 0-1)
        assert_eq!(longs(&b.x.select(1, 0)), [3, 4, 5, 1, 2]);
        assert_eq!(longs(&b.inputs[2]), [0, 1, 1, 2, 3, 4]);
        assert_eq!(longs(&b.inputs[3]), [1, 2, 0, 1, 4, 3]);
        assert_eq!(longs(&b.inputs[4]), [0, 0, 0, 1, 1]);
        assert_eq!(longs(&b.inputs[5]), [0, 0, 0, 0, 1, 1]);
        assert_eq!(longs(&b.inputs[1].select(1, 0)), [8, 9, 8, 9, 7, 7]);
        let y = Vec::<f32>::try_from(b.y.flatten(0, -1)).unwrap();
        assert!(y[0].is_nan() && y[1] == 1.0 && y[2] == 1.0 && y[3] == 0.0);
        // OGB's split file picks graphs; source_index keeps their rows
        std::fs::create_dir_all(dir.join("split/scaffold")).unwrap();
        write(&dir.join("split/scaffold"), "train.csv", "2\n0\n");
        let split = OgbgData {
            split: Some("train".into()),
            ..s.clone()
        };
        let tr = load(&split, Dtype::F32).unwrap();
        assert_eq!((tr.len, tr.source_index.clone()), (2, vec![2, 0]));
        let b = tr.graphs.as_ref().unwrap().batch(&[1], Device::Cpu);
        assert_eq!(longs(&b.x.select(1, 0)), [1, 2]);
        write(&dir.join("split/scaffold"), "train.csv", "2\n3\n");
        let e = load(&split, Dtype::F32).err().unwrap().to_string();
        assert!(e.contains("train.csv line 2: graph 3"), "{e}");
        // a subset keeps whole graphs
        let mut g = (**ds.graphs.as_ref().unwrap()).clone();
        g.select(&[2, 1]);
        assert_eq!(
            (g.node_start.clone(), g.edge_start.clone()),
            (vec![0, 1, 4], vec![0, 0, 2])
        );
        // broken files name the file and the line
        write(&dir.join("raw"), "edge.csv", "0,1\n0,3\n1,2\n");
        let e = load(&s, Dtype::F32).err().unwrap().to_string();
        assert!(
            e.contains("edge.csv line 2") && e.contains("nodes 0..2"),
            "{e}"
        );
        write(&dir.join("raw"), "edge.csv", "0,1\n0,1\n");
        let e = load(&s, Dtype::F32).err().unwrap().to_string();
        assert!(
            e.contains("2 rows, but num-edge-list.csv counts 3 edges"),
            "{e}"
        );
        fixture(&dir);
        write(&dir.join("raw"), "graph-label.csv", "1,0\n,2\nnan,nan\n");
        let e = load(&s, Dtype::F32).err().unwrap().to_string();
        assert!(
            e.contains("graph-label.csv line 2") && e.contains("label `2`"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
