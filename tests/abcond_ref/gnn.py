"""AlgoPerf's ogbg graph network and its input pipeline, written for the tests
from their definition (mlcommons/algorithmic-efficiency,
algoperf/workloads/ogbg/ogbg_pytorch/models.py and the ogbg input pipeline),
independently of the Rust code: a GraphsTuple-style batch (nodes, edges,
senders, receivers, n_node, n_edge), `repeat_interleave` to spread globals,
`scatter_add_` for the sums, and AlgoPerf's masked binary cross-entropy.

OGB's raw CSV files are read here with numpy, gzipped or not."""

import gzip
import os

import numpy as np
import torch
from torch import nn

#: Parameters of AlgoPerf's ogbg model (9 node and 3 edge features, 128
#: tasks): embedders 2,560 + 1,024; step 0: 230,144 (edge) + 230,144 (node) +
#: 164,608 (global); steps 1–4: 262,912 + 262,912 + 197,376 each; decoder 32,896.
OGBG_PARAMS = 3_554_176


def _read_csv(dirname, name, dtype=np.int64):
    for p in (os.path.join(dirname, name), os.path.join(dirname, name + ".gz")):
        if os.path.exists(p):
            with (gzip.open(p, "rt") if p.endswith(".gz") else open(p)) as f:
                lines = [l.strip() for l in f if l.strip()]
            return lines
    raise FileNotFoundError(os.path.join(dirname, name))


def read_ogb(path):
    """The graphs of an OGB raw directory: a list of dicts (node_feat,
    edge_feat, edge_index [E, 2], label)."""
    d = os.path.join(path, "raw") if os.path.isdir(os.path.join(path, "raw")) else path
    ints = lambda name: np.array([[int(v) for v in l.split(",")] for l in _read_csv(d, name)], dtype=np.int64)  # noqa: E731
    n_node = ints("num-node-list.csv")[:, 0]
    n_edge = ints("num-edge-list.csv")[:, 0]
    node_feat, edges, edge_feat = ints("node-feat.csv"), ints("edge.csv"), ints("edge-feat.csv") if n_edge.sum() else np.zeros((0, 3), np.int64)
    labels = np.array([[np.nan if v.strip() in ("", "nan", "NaN") else float(v) for v in l.split(",")] for l in _read_csv(d, "graph-label.csv")])
    graphs, n0, e0 = [], 0, 0
    for g in range(len(n_node)):
        graphs.append(dict(node_feat=node_feat[n0 : n0 + n_node[g]], edge_feat=edge_feat[e0 : e0 + n_edge[g]], edge_index=edges[e0 : e0 + n_edge[g]], label=labels[g]))
        n0 += n_node[g]
        e0 += n_edge[g]
    return graphs


def batch(graphs, indices, dtype):
    """AlgoPerf's batching: per graph nodes as they are, edges twice
    (senders [src; dst], receivers [dst; src]), node ids offset."""
    nodes, edges, senders, receivers, n_node, n_edge, labels = [], [], [], [], [], [], []
    offset = 0
    for i in indices:
        g = graphs[i]
        s, r = g["edge_index"][:, 0], g["edge_index"][:, 1]
        nodes.append(g["node_feat"])
        edges.append(np.concatenate([g["edge_feat"], g["edge_feat"]]))
        senders.append(np.concatenate([s, r]) + offset)
        receivers.append(np.concatenate([r, s]) + offset)
        n_node.append(len(g["node_feat"]))
        n_edge.append(2 * len(g["edge_index"]))
        labels.append(g["label"])
        offset += len(g["node_feat"])
    t = lambda a, k=dtype: torch.from_numpy(np.concatenate(a) if isinstance(a, list) else a).to(k)  # noqa: E731
    return dict(
        nodes=t(nodes),
        edges=t(edges),
        senders=t(senders, torch.long),
        receivers=t(receivers, torch.long),
        n_node=torch.tensor(n_node),
        n_edge=torch.tensor(n_edge),
        labels=torch.from_numpy(np.stack(labels)).to(dtype),
    )


def scatter_sum(src, index, dim_size):
    out = torch.zeros([dim_size, src.shape[1]], dtype=src.dtype)
    return out.scatter_add_(0, index.unsqueeze(-1).expand(src.shape), src)


def _mlp(in_dim, hidden_dims):
    layers = nn.Sequential()
    for i, dim in enumerate(hidden_dims):
        layers.add_module(f"dense_{i}", nn.Linear(in_dim, dim))
        layers.add_module(f"norm_{i}", nn.LayerNorm(dim, eps=1e-6))
        layers.add_module(f"activation_fn_{i}", nn.ReLU())
        in_dim = dim
    return layers


class GraphNetwork(nn.Module):
    def __init__(self, edge_fn, node_fn, global_fn):
        super().__init__()
        self.update_edge_fn, self.update_node_fn, self.update_global_fn = edge_fn, node_fn, global_fn

    def forward(self, g):
        nodes, edges, globals_ = g["nodes"], g["edges"], g["globals"]
        senders, receivers, n_node, n_edge = g["senders"], g["receivers"], g["n_node"], g["n_edge"]
        n = nodes.shape[0]
        edges = self.update_edge_fn(torch.cat([edges, nodes[senders], nodes[receivers], torch.repeat_interleave(globals_, n_edge, dim=0)], dim=-1))
        nodes = self.update_node_fn(torch.cat([nodes, scatter_sum(edges, senders, n), scatter_sum(edges, receivers, n), torch.repeat_interleave(globals_, n_node, dim=0)], dim=-1))
        b = n_node.shape[0]
        idx = torch.arange(b)
        globals_ = self.update_global_fn(torch.cat([scatter_sum(nodes, torch.repeat_interleave(idx, n_node), b), scatter_sum(edges, torch.repeat_interleave(idx, n_edge), b), globals_], dim=-1))
        return dict(g, nodes=nodes, edges=edges, globals=globals_)


class GNN(nn.Module):
    """AlgoPerf's GNN (ReLU, no dropout: the measurement's forward pass)."""

    def __init__(self, num_outputs=128, latent_dim=256, hidden_dims=(256,), steps=5, node_dim=9, edge_dim=3):
        super().__init__()
        self.num_outputs = num_outputs
        self.node_embedder = nn.Linear(node_dim, latent_dim)
        self.edge_embedder = nn.Linear(edge_dim, latent_dim)
        layers = []
        for st in range(steps):
            if st == 0:
                e_in, n_in, g_in = latent_dim * 3 + num_outputs, latent_dim + hidden_dims[-1] * 2 + num_outputs, hidden_dims[-1] * 2 + num_outputs
            else:
                e_in, n_in, g_in = hidden_dims[-1] * 4, hidden_dims[-1] * 4, hidden_dims[-1] * 3
            layers.append(GraphNetwork(_mlp(e_in, hidden_dims), _mlp(n_in, hidden_dims), _mlp(g_in, hidden_dims)))
        self.graph_network = nn.Sequential(*layers)
        self.decoder = nn.Linear(hidden_dims[-1], num_outputs)

    def forward(self, g):
        g = dict(g, globals=torch.zeros([g["n_node"].shape[0], self.num_outputs], dtype=g["nodes"].dtype))
        g["nodes"] = self.node_embedder(g["nodes"])
        g["edges"] = self.edge_embedder(g["edges"])
        for layer in self.graph_network:
            g = layer(g)
        return self.decoder(g["globals"])


def per_graph_loss(logits, labels):
    """AlgoPerf's masked binary cross-entropy, averaged per graph over its
    labelled tasks (0 for a graph without labels)."""
    mask = ~torch.isnan(labels)
    y = torch.where(mask, labels, torch.zeros_like(labels))
    positive = logits >= 0
    relu = torch.where(positive, logits, torch.zeros_like(logits))
    abs_ = torch.where(positive, logits, -logits)
    losses = torch.where(mask, relu - logits * y + torch.log(1 + torch.exp(-abs_)), torch.zeros_like(logits))
    return losses.sum(1) / mask.sum(1).clamp(min=1).to(logits.dtype)


def count():
    return sum(p.numel() for p in GNN().parameters())
