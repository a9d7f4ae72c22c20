"""PyTorch reference module of abcond's WMT Transformer, written from AlgoPerf's
definition (mlcommons/algorithmic-efficiency,
algoperf/workloads/wmt/wmt_pytorch/models.py: pre-LayerNorm encoder-decoder,
bias-free attention projections, shared embedding, sinusoidal positions with sin
in the first and cos in the last half, logits h Eᵀ/√d), independently of the Rust
code, with PyTorch's scaled_dot_product_attention (is_causal for the decoder).
Parameter names are the snapshot keys.

    Transformer(vocab, d, heads, mlp, depth)   defaults: the full-size WMT model
    model(src, tgt) -> per-example loss [B] (mean over target positions)
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

WMT_PARAMS = 133_521_408  # parameters of Transformer() (the full-size WMT model)


def positions(length, d, dtype):
    half = d // 2
    scale = -math.log(10000.0) / (half - 1)
    pos = torch.arange(length, dtype=torch.float64)[:, None]
    ang = pos * torch.exp(torch.arange(half, dtype=torch.float64) * scale)[None, :]
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1).to(dtype)


class Attention(nn.Module):
    def __init__(self, d, heads, cross):
        super().__init__()
        self.heads, self.cross = heads, cross
        if cross:
            self.q_proj = nn.Linear(d, d, bias=False)
            self.kv_proj = nn.Linear(d, 2 * d, bias=False)
        else:
            self.in_proj = nn.Linear(d, 3 * d, bias=False)
        self.out_proj = nn.Linear(d, d, bias=False)

    def forward(self, x, mem=None, causal=False):
        b, t, d = x.shape
        if self.cross:
            q = self.q_proj(x)
            k, v = self.kv_proj(mem).split(d, dim=2)
        else:
            q, k, v = self.in_proj(x).split(d, dim=2)
        h = lambda u: u.reshape(b, u.shape[1], self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(h(q), h(k), h(v), is_causal=causal)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


class EncoderLayer(nn.Module):
    def __init__(self, d, heads, mlp):
        super().__init__()
        self.self_attn = Attention(d, heads, False)
        self.linear1, self.linear2 = nn.Linear(d, mlp), nn.Linear(mlp, d)
        self.norm1, self.norm2 = nn.LayerNorm(d, eps=1e-6), nn.LayerNorm(d, eps=1e-6)

    def forward(self, x):
        x = x + self.self_attn(self.norm1(x))
        return x + self.linear2(F.relu(self.linear1(self.norm2(x))))


class DecoderLayer(nn.Module):
    def __init__(self, d, heads, mlp):
        super().__init__()
        self.self_attn = Attention(d, heads, False)
        self.multihead_attn = Attention(d, heads, True)
        self.linear1, self.linear2 = nn.Linear(d, mlp), nn.Linear(mlp, d)
        self.norm1 = nn.LayerNorm(d, eps=1e-6)
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.norm3 = nn.LayerNorm(d, eps=1e-6)

    def forward(self, x, mem):
        x = x + self.self_attn(self.norm1(x), causal=True)
        x = x + self.multihead_attn(self.norm2(x), mem)
        return x + self.linear2(F.relu(self.linear1(self.norm3(x))))


class Stack(nn.Module):
    def __init__(self, layers, d):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(d, eps=1e-6)


class Side(nn.Module):
    """AlgoPerf's Encoder/Decoder wrappers: parameters under `encoder.encoder.` etc."""

    def __init__(self, name, stack):
        super().__init__()
        setattr(self, name, stack)


class Transformer(nn.Module):
    def __init__(self, vocab=32000, d=1024, heads=16, mlp=1024, depth=6):
        super().__init__()
        self.d = d
        self.shared_embedding = nn.Embedding(vocab, d)
        self.encoder = Side("encoder", Stack([EncoderLayer(d, heads, mlp) for _ in range(depth)], d))
        self.decoder = Side("decoder", Stack([DecoderLayer(d, heads, mlp) for _ in range(depth)], d))

    def forward(self, src, tgt):
        """Per-example loss: mean over target positions of the cross-entropy."""
        emb = self.shared_embedding
        e, dec = self.encoder.encoder, self.decoder.decoder
        h = emb(src) + positions(src.shape[1], self.d, emb.weight.dtype)
        for layer in e.layers:
            h = layer(h)
        mem = e.norm(h)
        shifted = F.pad(tgt, (1, 0))[:, :-1]
        h = emb(shifted) + positions(tgt.shape[1], self.d, emb.weight.dtype)
        for layer in dec.layers:
            h = layer(h, mem)
        logits = dec.norm(h) @ emb.weight.T / math.sqrt(self.d)
        b, t, v = logits.shape
        ce = F.cross_entropy(logits.reshape(b * t, v), tgt.reshape(b * t), reduction="none")
        return ce.reshape(b, t).mean(dim=1)
