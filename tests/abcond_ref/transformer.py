"""PyTorch reference module of abcond's WMT Transformer, written from AlgoPerf's
definition (mlcommons/algorithmic-efficiency,
algoperf/workloads/wmt/wmt_pytorch/models.py: pre-LayerNorm encoder-decoder,
bias-free attention projections, shared embedding, sinusoidal positions with sin
in the first and cos in the last half, logits h Eᵀ/√d), independently of the Rust
code, with PyTorch's scaled_dot_product_attention. Padding (token 0) is masked
as AlgoPerf's make_src_mask / make_tgt_and_memory_mask do: additive −1e10 where
the query or the key is padding, and the causal mask in the decoder. The loss
is torch's cross_entropy (label_smoothing as AlgoPerf's training loss) weighted
by target ≠ 0, averaged per sentence. Parameter names are the snapshot keys.

    Transformer(vocab, d, heads, mlp, depth)   defaults: the full-size WMT model
    model(src, tgt, label_smoothing=0.0) -> per-example loss [B]
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

    def forward(self, x, mem=None, mask=None):
        b, t, d = x.shape
        if self.cross:
            q = self.q_proj(x)
            k, v = self.kv_proj(mem).split(d, dim=2)
        else:
            q, k, v = self.in_proj(x).split(d, dim=2)
        h = lambda u: u.reshape(b, u.shape[1], self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(h(q), h(k), h(v), attn_mask=mask[:, None])
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


class EncoderLayer(nn.Module):
    def __init__(self, d, heads, mlp):
        super().__init__()
        self.self_attn = Attention(d, heads, False)
        self.linear1, self.linear2 = nn.Linear(d, mlp), nn.Linear(mlp, d)
        self.norm1, self.norm2 = nn.LayerNorm(d, eps=1e-6), nn.LayerNorm(d, eps=1e-6)

    def forward(self, x, mask):
        x = x + self.self_attn(self.norm1(x), mask=mask)
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

    def forward(self, x, mem, tgt_mask, mem_mask):
        x = x + self.self_attn(self.norm1(x), mask=tgt_mask)
        x = x + self.multihead_attn(self.norm2(x), mem, mask=mem_mask)
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

    def forward(self, src, tgt, label_smoothing=0.0):
        """Per-example loss: mean over the real target positions of the cross-entropy."""
        emb = self.shared_embedding
        e, dec = self.encoder.encoder, self.decoder.decoder
        dtype = emb.weight.dtype

        def additive(allowed):
            return torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, -1e10)

        s_ok, t_ok = src > 0, tgt > 0
        t_len = tgt.shape[1]
        causal = torch.arange(t_len)[:, None] >= torch.arange(t_len)[None, :]
        src_mask = additive(s_ok[:, :, None] & s_ok[:, None, :])
        tgt_mask = additive(t_ok[:, :, None] & t_ok[:, None, :] & causal)
        mem_mask = additive(t_ok[:, :, None] & s_ok[:, None, :])
        h = emb(src) + positions(src.shape[1], self.d, dtype)
        for layer in e.layers:
            h = layer(h, src_mask)
        mem = e.norm(h)
        shifted = F.pad(tgt, (1, 0))[:, :-1]
        h = emb(shifted) + positions(t_len, self.d, dtype)
        for layer in dec.layers:
            h = layer(h, mem, tgt_mask, mem_mask)
        logits = dec.norm(h) @ emb.weight.T / math.sqrt(self.d)
        b, t, v = logits.shape
        ce = F.cross_entropy(logits.reshape(b * t, v), tgt.reshape(b * t), reduction="none",
                             label_smoothing=label_smoothing).reshape(b, t)
        w = t_ok.to(ce.dtype)
        return (ce * w).sum(dim=1) / w.sum(dim=1)
