"""Language-model data and the LSTM, written here independently of abcond's
Rust code from their definitions (docs/configs.md, `text` and `tokens`;
models/lstm-3layer.yaml): the corpus files, the words (whitespace-split
lines, each ending in <eos>, `%` lines skipped), the vocabulary (first
appearance; with max_vocab the most frequent words, ties by first
appearance, the rest <unk>), the windows of seq_len + 1 tokens, and
PyTorch's word-language-model RNNModel with batch_first windows."""

import os
from collections import Counter

import numpy as np
import torch
from torch import nn


def corpus_files(path):
    if os.path.isfile(path):
        return [path]
    for split in ("ptb.train.txt", "wiki.train.tokens"):
        if os.path.isfile(os.path.join(path, split)):
            return [os.path.join(path, split)]
    names = sorted(
        n
        for n in os.listdir(path)
        if not n.startswith(".")
        and not n.endswith(".dat")
        and os.path.isfile(os.path.join(path, n))
        and not os.path.islink(os.path.join(path, n))
    )
    return [os.path.join(path, n) for n in names]


def words(files):
    out = []
    for f in files:
        text = open(f, "rb").read().decode("utf-8", errors="replace")
        for line in text.splitlines():
            if line.strip() == "%":
                continue
            out.extend(line.split())
            out.append("<eos>")
    return out


def vocabulary(ws, max_vocab=None):
    """(ids, [(word, count)])."""
    counts = Counter(ws)
    order = list(dict.fromkeys(ws))
    if max_vocab is None or max_vocab >= len(order):
        keep = order
    else:
        has_unk = "<unk>" in counts
        slots = max_vocab - (0 if has_unk else 1)
        rank = sorted(range(len(order)), key=lambda i: (-counts[order[i]], i))[:slots]
        if has_unk and order.index("<unk>") not in rank:
            rank[-1] = order.index("<unk>")
        keep = [order[i] for i in sorted(rank)]
    vocab = [[w, counts[w]] for w in keep]
    ids = {w: i for i, w in enumerate(keep)}
    if len(keep) < len(order):
        if "<unk>" not in ids:
            vocab.append(["<unk>", 0])
            ids["<unk>"] = len(vocab) - 1
        unk = ids["<unk>"]
        for w in order:
            if w not in ids:
                vocab[unk][1] += counts[w]
        out = [ids.get(w, unk) for w in ws]
    else:
        out = [ids[w] for w in ws]
    return out, [tuple(v) for v in vocab]


def windows(ids, seq_len):
    n = (len(ids) - 1) // seq_len
    s = torch.tensor(ids[: n * seq_len + 1], dtype=torch.long)
    return s[:-1].view(n, seq_len), s[1:].view(n, seq_len)


def text_data(cfg):
    """x, y, vocab of a `text` data config (run.yaml's data section)."""
    ids, vocab = vocabulary(words(corpus_files(cfg["path"])), cfg.get("max_vocab"))
    x, y = windows(ids, cfg["seq_len"])
    return x, y, vocab


def token_data(cfg):
    path = cfg["path"]
    if path.endswith(".npy"):
        ids = np.load(path).astype(np.int64).tolist()
    else:
        dt = {"u16": "<u2", "u32": "<u4"}[cfg.get("token_dtype", "u16")]
        ids = np.fromfile(path, dtype=dt).astype(np.int64).tolist()
    x, y = windows(ids, cfg["seq_len"])
    return x, y, cfg.get("vocab") or max(ids) + 1


def lm_data(cfg):
    """x, y, the vocabulary size and the vocabulary [(word, count)] (None for
    a token file) of a language-model data config."""
    if cfg["dataset"] == "text":
        x, y, vocab = text_data(cfg)
        return x, y, len(vocab), vocab
    x, y, size = token_data(cfg)
    return x, y, size, None


class RNNModel(nn.Module):
    """pytorch/examples word_language_model RNNModel (LSTM), batch_first."""

    def __init__(self, ntoken, ninp, nhid, nlayers, dropout=0.0, tie_weights=False):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout, batch_first=True)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        self.encoder.weight.data.uniform_(-0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        self.decoder.weight.data.uniform_(-0.1, 0.1)

    def forward(self, x, y):
        """Per-example mean next-token cross-entropy, shape [B]."""
        emb = self.drop(self.encoder(x))
        out, _ = self.rnn(emb)
        logits = self.decoder(self.drop(out))
        nll = nn.functional.cross_entropy(logits.transpose(1, 2), y, reduction="none")
        return nll.mean(1)


def lstm_model(model_cfg, vocab, seed):
    """The model as PyTorch initialises it after torch.manual_seed(seed), in
    the config's dtype (drawn in it, as abcond draws)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64 if model_cfg.get("dtype") == "f64" else torch.float32)
    try:
        torch.manual_seed(seed)
        return RNNModel(vocab, model_cfg["embed"], model_cfg["hidden"], model_cfg["layers"], model_cfg.get("dropout", 0.0), model_cfg.get("tie_weights", False))
    finally:
        torch.set_default_dtype(old)
