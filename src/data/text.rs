//! Language-model data: word-level text corpora (`data.dataset: text`) and
//! files of token ids (`data.dataset: tokens`).
//!
//! Both give one token stream t_0, t_1, …; example i is the window
//! t_{iT} … t_{iT+T} of T + 1 tokens (T = `data.seq_len`): the model reads
//! the first T and predicts the next T. Windows do not overlap except in
//! their boundary token, every window is independent (a language model
//! starts each from a zero state), and the stream's tail shorter than a
//! window is dropped. f_i is the mean next-token cross-entropy over the T
//! positions of window i.
//!
//! `text`: words are the whitespace-separated strings of each line, and
//! every line ends with `<eos>`, as the PTB and WikiText literature reads
//! them (their files are tokenised already). The vocabulary comes from the
//! training text alone: ids in order of first appearance; with
//! `data.max_vocab` only the most frequent words keep an id (ties broken by
//! first appearance) and the others become `<unk>`. Which files:
//! - a file: that file;
//! - a directory with `ptb.train.txt` (PTB) or `wiki.train.tokens`
//!   (WikiText-2/103): the training split;
//! - any other directory: every regular file in it (sorted by name) except
//!   `*.dat` and symbolic links; lines that are a single `%` (the
//!   separators of fortune files) are skipped.
//!
//! `tokens`: a `.npy` of one dimension (any integer type), or a flat
//! little-endian binary of `data.token_dtype` (u16 by default, nanoGPT's).

use super::{Dataset, Targets};
use crate::data::config::{DatasetKind, TextData, TokenDtype, TokensData};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Largest corpus read (bytes of text, or of token ids).
const MAX_BYTES: u64 = 8 << 30;

/// The files of a `text` corpus, in reading order.
pub fn corpus_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("key `data.path`: {} cannot be read", path.display()))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    for split in ["ptb.train.txt", "wiki.train.tokens"] {
        let p = path.join(split);
        if p.is_file() {
            return Ok(vec![p]);
        }
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("listing {}", path.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| p.extension().is_none_or(|x| x != "dat"))
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!(
            "{}: no text files (expected ptb.train.txt, wiki.train.tokens, or plain text files such as the fortunes package's)",
            path.display()
        );
    }
    Ok(files)
}

/// The words of a corpus, each line followed by `<eos>`.
fn words(files: &[PathBuf]) -> Result<Vec<String>> {
    let mut total = 0u64;
    let mut out = Vec::new();
    for f in files {
        let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        total += bytes.len() as u64;
        if total > MAX_BYTES {
            bail!(
                "the corpus under {} is larger than abcond's limit of {} GiB of text",
                f.display(),
                MAX_BYTES >> 30
            );
        }
        // Fortune files are Latin-1 in places: undecodable bytes become U+FFFD
        // rather than failing the corpus.
        let text = String::from_utf8_lossy(&bytes);
        for line in text.lines() {
            if line.trim() == "%" {
                continue;
            }
            out.extend(line.split_whitespace().map(str::to_string));
            out.push("<eos>".to_string());
        }
    }
    Ok(out)
}

/// Token ids of `words` and the vocabulary (word, count), ids in order of
/// first appearance; with `max_vocab` the most frequent words only, the
/// others `<unk>`.
pub fn vocabulary(words: &[String], max_vocab: Option<u64>) -> (Vec<i64>, Vec<(String, u64)>) {
    let mut first: HashMap<&str, usize> = HashMap::new();
    let mut order: Vec<(&str, u64)> = Vec::new();
    for w in words {
        let i = *first.entry(w.as_str()).or_insert_with(|| {
            order.push((w.as_str(), 0));
            order.len() - 1
        });
        order[i].1 += 1;
    }
    let keep: Vec<usize> = match max_vocab {
        Some(m) if (m as usize) < order.len() => {
            // m ids in all, one of them <unk>.
            let has_unk = first.contains_key("<unk>");
            let slots = m as usize - usize::from(!has_unk);
            let mut by_count: Vec<usize> = (0..order.len()).collect();
            by_count.sort_by(|&a, &b| order[b].1.cmp(&order[a].1).then(a.cmp(&b)));
            let mut kept: Vec<usize> = by_count.into_iter().take(slots).collect();
            if has_unk && !kept.contains(&first["<unk>"]) {
                kept.pop();
                kept.push(first["<unk>"]);
            }
            kept.sort_unstable();
            kept
        }
        _ => (0..order.len()).collect(),
    };
    let mut id_of = vec![-1i64; order.len()];
    let mut vocab: Vec<(String, u64)> = Vec::with_capacity(keep.len() + 1);
    for (id, &w) in keep.iter().enumerate() {
        id_of[w] = id as i64;
        vocab.push((order[w].0.to_string(), order[w].1));
    }
    if keep.len() < order.len() {
        let unk = match first.get("<unk>") {
            Some(&u) => id_of[u],
            None => {
                vocab.push(("<unk>".to_string(), 0));
                (vocab.len() - 1) as i64
            }
        };
        for (w, id) in id_of.iter_mut().enumerate() {
            if *id < 0 {
                *id = unk;
                vocab[unk as usize].1 += order[w].1;
            }
        }
    }
    let ids = words.iter().map(|w| id_of[first[w.as_str()]]).collect();
    (ids, vocab)
}

/// The dataset of windows of `seq_len` + 1 tokens over `ids`.
fn windows(
    kind: DatasetKind,
    ids: &[i64],
    vocab: i64,
    seq_len: i64,
    source: &Path,
    what: &str,
) -> Result<Dataset> {
    let t = seq_len as usize;
    if ids.len() < t + 1 {
        bail!(
            "{}: {what} holds {} tokens, fewer than one example of data.seq_len + 1 = {}",
            source.display(),
            ids.len(),
            t + 1
        );
    }
    let n = (ids.len() - 1) / t;
    let stream = Tensor::from_slice(&ids[..n * t + 1]);
    let x = stream
        .narrow(0, 0, (n * t) as i64)
        .view([n as i64, seq_len]);
    let y = stream
        .narrow(0, 1, (n * t) as i64)
        .view([n as i64, seq_len]);
    Ok(Dataset {
        kind,
        x,
        y,
        len: n as u64,
        input_shape: vec![seq_len],
        targets: Targets::NextTokens {
            vocab,
            len: seq_len,
        },
        source_index: (0..n as i64).collect(),
        source_dir: Some(source.to_path_buf()),
        augment: None,
        images: None,
        inputs: vec![],
        vocab: vec![],
        graphs: None,
    })
}

pub fn load_text(cfg: &TextData) -> Result<Dataset> {
    let path = cfg.path.as_ref().expect("checked by TextData::check");
    let files = corpus_files(path)?;
    let words = words(&files)?;
    let (ids, vocab) = vocabulary(&words, cfg.max_vocab);
    let mut ds = windows(
        DatasetKind::Text,
        &ids,
        vocab.len() as i64,
        cfg.seq_len,
        path,
        "the training text",
    )?;
    ds.vocab = vocab;
    Ok(ds)
}

pub fn load_tokens(cfg: &TokensData) -> Result<Dataset> {
    let path = cfg.path.as_ref().expect("checked by TokensData::check");
    let size = std::fs::metadata(path)
        .with_context(|| format!("key `data.path`: {} cannot be read", path.display()))?
        .len();
    if size > MAX_BYTES {
        bail!(
            "{}: {size} bytes, more than abcond's limit of {} GiB of token ids",
            path.display(),
            MAX_BYTES >> 30
        );
    }
    let npy = path.extension().is_some_and(|e| e == "npy");
    let ids: Vec<i64> = if npy {
        if cfg.token_dtype.is_some() {
            bail!(
                "key `data.token_dtype` applies to .bin files; {} is a .npy, which declares its own type",
                path.display()
            );
        }
        let t = Tensor::read_npy(path)
            .map_err(|e| anyhow::anyhow!("{}: not a readable .npy file: {e}", path.display()))?;
        if t.dim() != 1 || t.is_floating_point() || t.kind() == tch::Kind::Bool {
            bail!(
                "{}: expected a one-dimensional array of integer token ids, got {:?} of shape {:?}",
                path.display(),
                t.kind(),
                t.size()
            );
        }
        Vec::<i64>::try_from(t.to_kind(tch::Kind::Int64))?
    } else {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let width = match cfg.token_dtype.unwrap_or(TokenDtype::U16) {
            TokenDtype::U16 => 2,
            TokenDtype::U32 => 4,
        };
        if bytes.len() % width != 0 {
            bail!(
                "{}: {} bytes is not a whole number of {}-byte token ids (is data.token_dtype right? the file may be cut short)",
                path.display(),
                bytes.len(),
                width
            );
        }
        bytes
            .chunks_exact(width)
            .map(|c| match c {
                [a, b] => u16::from_le_bytes([*a, *b]) as i64,
                [a, b, c, d] => u32::from_le_bytes([*a, *b, *c, *d]) as i64,
                _ => unreachable!("chunks of 2 or 4"),
            })
            .collect()
    };
    if let Some((i, &bad)) = ids.iter().enumerate().find(|(_, &t)| t < 0) {
        bail!("{}: token {i} has the negative id {bad}", path.display());
    }
    let max = ids.iter().copied().max().unwrap_or(0);
    let vocab = match cfg.vocab {
        Some(v) => {
            if let Some(i) = ids.iter().position(|&t| t >= v) {
                bail!(
                    "{}: token {i} has id {}, outside the vocabulary of data.vocab = {v}",
                    path.display(),
                    ids[i]
                );
            }
            v
        }
        None => max + 1,
    };
    if vocab > 1 << 24 {
        bail!(
            "{}: token ids up to {max}: a vocabulary of more than 2^24 is not supported (set data.vocab, or check data.token_dtype)",
            path.display()
        );
    }
    windows(
        DatasetKind::Tokens,
        &ids,
        vocab,
        cfg.seq_len,
        path,
        "the token file",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn ids_follow_first_appearance() {
        let (ids, vocab) = vocabulary(&w("the cat the dog <eos> a cat"), None);
        assert_eq!(ids, [0, 1, 0, 2, 3, 4, 1]);
        let words: Vec<&str> = vocab.iter().map(|(w, _)| w.as_str()).collect();
        assert_eq!(words, ["the", "cat", "dog", "<eos>", "a"]);
        assert_eq!(vocab[0].1, 2);
    }

    #[test]
    fn max_vocab_keeps_the_most_frequent_and_adds_unk() {
        // counts: the 3, cat 2, dog 1, a 1, b 1; keep 3 ids: the, cat + <unk>.
        let (ids, vocab) = vocabulary(&w("the cat the dog the a cat b"), Some(3));
        let words: Vec<&str> = vocab.iter().map(|(w, _)| w.as_str()).collect();
        assert_eq!(words, ["the", "cat", "<unk>"]);
        assert_eq!(ids, [0, 1, 0, 2, 0, 2, 1, 2]);
        assert_eq!(vocab[2].1, 3);
        // A corpus with <unk> already (PTB) keeps it as the catch-all.
        let (ids, vocab) = vocabulary(&w("x <unk> y x y x z"), Some(2));
        let words: Vec<&str> = vocab.iter().map(|(w, _)| w.as_str()).collect();
        assert_eq!(words, ["x", "<unk>"]);
        assert_eq!(ids, [0, 1, 1, 0, 1, 0, 1]);
        // Ties are broken by first appearance; a cap above the vocabulary is no cap.
        let (_, vocab) = vocabulary(&w("b a c"), Some(3));
        assert_eq!(vocab.len(), 3);
        let (_, vocab) = vocabulary(&w("b a c"), Some(2));
        let words: Vec<&str> = vocab.iter().map(|(w, _)| w.as_str()).collect();
        assert_eq!(words, ["b", "<unk>"]);
    }
}
