"""Pruned CLIP vocabularies: keep the first K BPE merges and/or the merges a corpus fires; rows inherited by string.

Why it is safe (design §10): CLIP's merges are ranked, and BPE applies the lowest-ranked pair present. Any subset of
the merges kept in rank order, plus the 512 byte tokens and SOT/EOT last, is still a BPE that encodes every string
(bytes are the fallback), and open_clip's ``SimpleTokenizer(bpe_path=...)`` loads it. A word whose merges all
survived is segmented exactly as before, so the merges that fired on a corpus keep that corpus's tokens. EOT stays
the highest id, so open_clip's argmax pooling still finds it.

The vocabulary order is open_clip's: 256 byte symbols, the same with ``</w>``, one token per kept merge in rank
order, then ``<start_of_text>``, ``<end_of_text>``. Each kept token inherits its teacher row by its string, the
way layers are inherited by index. Pure Python and numpy: no torch.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ..errors import ConfigError

__all__ = ["read_merges", "write_merges", "vocab_of", "fired_merges", "prune_merges", "inherit_rows",
           "prune_vocabulary", "read_corpus", "BYTE_TOKENS", "SPECIAL_TOKENS", "MAX_MERGES", "BPE_FILE"]

BYTE_TOKENS = 512  # 256 byte symbols and their end-of-word forms: every string encodes with these alone
SPECIAL_TOKENS = ("<start_of_text>", "<end_of_text>")
MAX_MERGES = 49152 - 256 - 2  # what open_clip's SimpleTokenizer reads of a merges file (48,894)
HEADER = "#version: 0.2 - edgeclip pruned vocabulary"


def read_merges(path: str | Path) -> list[tuple[str, str]]:
    """A CLIP BPE merges file (``bpe_simple_vocab_16e6.txt.gz``: a header line, then one merge per line, by rank),
    as open_clip reads it: its first ``MAX_MERGES`` merges."""
    try:
        lines = gzip.open(path).read().decode("utf-8").split("\n")[1:MAX_MERGES + 1]
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise ConfigError(f"cannot read BPE merges {str(path)!r}: {e}") from None
    merges = [tuple(m.split()) for m in lines if m.strip()]
    if any(len(m) != 2 for m in merges):
        raise ConfigError(f"{str(path)!r} is not a CLIP BPE merges file (a line is not two symbols)")
    return merges


def write_merges(path: str | Path, merges: list[tuple[str, str]]) -> Path:
    """``merges`` (in rank order) as a merges file open_clip's ``SimpleTokenizer(bpe_path=...)`` loads."""
    # no final newline: open_clip would read an empty line as one more (empty) merge, a token of its own
    text = "\n".join([HEADER, *(" ".join(m) for m in merges)])
    import os
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")  # atomic: torchrun ranks each write the same file
    tmp.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))  # mtime 0: the same bytes every time
    os.replace(tmp, path)
    return path


def vocab_of(merges: list[tuple[str, str]]) -> list[str]:
    """Token strings by id, in open_clip's order: bytes, bytes + ``</w>``, one per merge, SOT, EOT."""
    from open_clip.tokenizer import bytes_to_unicode
    base = list(bytes_to_unicode().values())
    return base + [b + "</w>" for b in base] + ["".join(m) for m in merges] + list(SPECIAL_TOKENS)


def fired_merges(merges: list[tuple[str, str]], texts) -> set[int]:
    """Ranks of the merges BPE applies anywhere in ``texts`` (open_clip's cleaning and pre-tokenizer, its BPE)."""
    from open_clip.tokenizer import SimpleTokenizer
    tok = SimpleTokenizer()  # its cleaning, regex and byte encoder; the ranks below are ``merges``'
    ranks = {m: i for i, m in enumerate(merges)}
    fired: set[int] = set()
    seen: set[str] = set()
    for text in texts:
        for word in tok.pat.findall(tok.clean_fn(text)):
            if word in SPECIAL_TOKENS or word in seen:
                continue
            seen.add(word)
            fired |= _bpe_ranks(tuple("".join(tok.byte_encoder[b] for b in word.encode("utf-8"))), ranks)
    return fired


def _bpe_ranks(symbols: tuple[str, ...], ranks: dict) -> set[int]:
    """The ranks BPE applies to one word (its last symbol gets ``</w>``), lowest-ranked pair first."""
    word = symbols[:-1] + (symbols[-1] + "</w>",)
    used = set()
    while len(word) > 1:
        pairs = {(a, b) for a, b in zip(word, word[1:]) if (a, b) in ranks}
        if not pairs:
            break
        first, second = min(pairs, key=ranks.__getitem__)
        used.add(ranks[(first, second)])
        out, i = [], 0
        while i < len(word):
            if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                out.append(first + second)
                i += 2
            else:
                out.append(word[i])
                i += 1
        word = tuple(out)
    return used


def prune_merges(merges: list[tuple[str, str]], keep: int | None = None, corpus=None) -> list[tuple[str, str]]:
    """The merges of a pruned vocabulary, in rank order: the first ``keep`` of them, plus every one ``corpus``
    fires (either may be None; not both). The vocabulary then has ``512 + len(result) + 2`` tokens.

    Raises:
        ConfigError: ``keep`` below 0 or above the merges there are; no ``keep`` and no ``corpus``; an empty corpus.
    """
    if keep is None and corpus is None:
        raise ConfigError("a pruned vocabulary needs a size (--vocab K) or a corpus (--vocab-corpus FILE)")
    if keep is not None and not 0 <= keep <= len(merges):
        raise ConfigError(f"--vocab asks for {keep + BYTE_TOKENS + 2:,} tokens; this tokenizer has "
                          f"{BYTE_TOKENS + 2:,} to {len(merges) + BYTE_TOKENS + 2:,} (bytes, SOT/EOT, then merges)")
    chosen = set(range(keep or 0))
    if corpus is not None:
        corpus = list(corpus)
        if not any(str(t).strip() for t in corpus):
            raise ConfigError("the vocabulary corpus holds no text")
        chosen |= fired_merges(merges, corpus)
    return [merges[i] for i in sorted(chosen)]


def inherit_rows(rows: np.ndarray, teacher_vocab: list[str], student_vocab: list[str]) -> np.ndarray:
    """The student's token-embedding rows [V_s, W]: each token's teacher row, found by its string.

    Raises:
        ConfigError: the teacher's rows do not match its vocabulary, or a student token is not in it.
    """
    if len(rows) != len(teacher_vocab):
        raise ConfigError(f"the teacher's token embedding has {len(rows)} rows, its tokenizer {len(teacher_vocab)} "
                          "tokens: not CLIP's BPE (unsupported)")
    index = {t: i for i, t in enumerate(teacher_vocab)}
    missing = [t for t in student_vocab if t not in index]
    if missing:
        raise ConfigError(f"{len(missing)} pruned token(s) are not in the teacher's vocabulary (e.g. {missing[0]!r})")
    return rows[[index[t] for t in student_vocab]]


def read_corpus(path: str | Path) -> list[str]:
    """A vocabulary corpus: one text per line (UTF-8); a missing, unreadable or empty file is one line."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--vocab-corpus file {str(path)!r} does not exist")
    try:
        texts = [ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read --vocab-corpus file {str(path)!r}: {e}") from None
    if not texts:
        raise ConfigError(f"--vocab-corpus file {str(path)!r} holds no text")
    return texts


BPE_FILE = "bpe_vocab.txt.gz"  # a pruned vocabulary's merges, in the student folder (open_clip: bpe_path=...)


def prune_vocabulary(model, keep: int | None = None, corpus=None, workdir: str | Path | None = None):
    """``model`` with a pruned CLIP vocabulary: the first ``keep`` merges and/or those ``corpus`` fires; every kept
    token's embedding row inherited from ``model``'s by its string. Modified in place and returned.

    The merges file is written to ``workdir`` (a temp folder when None) and travels with the model
    (``model.edgeclip_bpe``); ``save_student`` copies it into the student folder and names it in the config
    (``text_cfg.tokenizer_kwargs.bpe_path``), and the export ships it as the artifact's tokenizer.

    Raises:
        ConfigError: the model's tokenizer is not CLIP's BPE (unsupported), or a bad ``keep`` / ``corpus``.
    """
    import tempfile

    import torch
    from open_clip.tokenizer import default_bpe

    from .factory import model_config
    from .towers import text_cfg
    cfg = model_config(model)
    own = getattr(model, "edgeclip_bpe", None) or default_bpe()
    merges = read_merges(own)
    if model.token_embedding.weight.shape[0] != BYTE_TOKENS + len(merges) + 2:
        raise ConfigError(f"the model's token embedding has {model.token_embedding.weight.shape[0]} rows, not CLIP's "
                          "BPE: its tokenizer is not supported for vocabulary pruning")
    kept = prune_merges(merges, keep, corpus)
    rows = inherit_rows(model.token_embedding.weight.detach().cpu().numpy(), vocab_of(merges), vocab_of(kept))
    folder = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="edgeclip-vocab-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = write_merges(folder / BPE_FILE, kept)
    with torch.no_grad():
        model.token_embedding = torch.nn.Embedding.from_pretrained(torch.from_numpy(rows).to(
            model.token_embedding.weight), freeze=False)
    model.vocab_size = len(rows)
    cfg["text_cfg"] = {**cfg["text_cfg"], "vocab_size": len(rows), "tokenizer_kwargs": {"bpe_path": BPE_FILE}}
    text_cfg(cfg)  # still a valid tower
    model.edgeclip_bpe = path
    return model
