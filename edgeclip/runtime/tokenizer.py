"""CLIP's byte-level BPE tokenizer without torch: token-for-token the same as open_clip's ``SimpleTokenizer``.

Reads the vocabulary shipped in an export folder. Needs ``regex`` (Unicode classes) and uses ``ftfy`` when
installed, exactly like open_clip (without ftfy, text that ftfy would repair may tokenize differently).
"""
from __future__ import annotations

import gzip
import html
from functools import lru_cache
from pathlib import Path

import numpy as np
import regex as re

try:
    import ftfy
except ImportError:  # pragma: no cover - ftfy ships with open_clip; the runtime works without it
    ftfy = None

_CACHED_WORD = 64  # words up to this many characters go through the LRU cache; longer ones are rare
_CUT_MARGIN = 8  # tokens dropped at the end of a truncated long word (BPE merges near the cut can differ)
_PREFIX_CHARS = 4096  # longer texts are cleaned from a growing prefix (see Tokenizer.encode)
_CUT_GUARD = 128  # characters before a cut in the text that are not trusted (an HTML entity or a word may span it)
_SPECIAL = ("<start_of_text>", "<end_of_text>")
_PAT = re.compile(r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                  re.IGNORECASE)


@lru_cache()
def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


_BLANK_LINES = re.compile(r"\n[ \t\r\f\v\n]*\n")


def _clean(text: str) -> str:
    # Whitespace-only lines are dropped first: ftfy fixes each line on its own (so they cannot change the
    # other lines) at a cost per line, which a flood of newlines would turn into seconds.
    text = _BLANK_LINES.sub("\n", text)
    if ftfy is not None:
        text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).strip().lower()


CONTEXT_LENGTH = 77  # open_clip's text context; here, not from edgeclip.models (torch), tied to it by a test


class Tokenizer:
    """``Tokenizer(vocab_path, context_length)(texts) -> int64 [N, context_length]`` (SOT ... EOT, zero-padded,
    truncated keeping EOT last).

    Bounded on hostile input, with the same ids as open_clip: BPE stops once ``context_length - 2`` tokens exist
    (the rest would be cut anyway), a long unbroken word is encoded from a prefix that is grown until it yields
    enough tokens (the tokens near the cut are discarded), and the word cache is an LRU of ``cache_size`` entries.
    """

    def __init__(self, vocab_path: str | Path, context_length: int = CONTEXT_LENGTH, cache_size: int = 16_384):
        merges = gzip.open(vocab_path).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
        merges = [tuple(m.split()) for m in merges]
        vocab = list(_bytes_to_unicode().values())
        vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges]
        vocab += ["<start_of_text>", "<end_of_text>"]
        self.encoder = {v: i for i, v in enumerate(vocab)}
        self.bpe_ranks = {m: i for i, m in enumerate(merges)}
        self.byte_encoder = _bytes_to_unicode()
        self.sot, self.eot = self.encoder["<start_of_text>"], self.encoder["<end_of_text>"]
        self.context_length = context_length
        self._cached_word = lru_cache(maxsize=cache_size)(self._word_ids)

    def cache_info(self):
        """The word cache's ``functools`` statistics (hits, misses, maxsize, currsize): its bound is part of the
        contract on hostile input."""
        return self._cached_word.cache_info()

    def _bpe(self, token: str, end: bool = True) -> list[str]:
        """Byte-level BPE of one byte-encoded word; ``end`` marks its last symbol as the end of the word."""
        if not token:
            return []
        word = tuple(token[:-1]) + (token[-1] + "</w>",) if end else tuple(token)
        ranks = self.bpe_ranks
        while len(word) > 1:
            ranked = [(ranks[p], p) for p in set(zip(word, word[1:])) if p in ranks]
            if not ranked:
                break
            first, second = min(ranked)[1]
            new, i = [], 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new.extend(word[i:])
                    break
                new.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new.append(first + second)
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = tuple(new)
        return list(word)

    def _word_ids(self, word: str, end: bool = True) -> tuple[int, ...]:
        token = "".join(self.byte_encoder[b] for b in word.encode("utf-8"))
        return tuple(self.encoder[t] for t in self._bpe(token, end))

    def _ids(self, word: str, need: int | None) -> tuple[int, ...]:
        """Ids of one word, or at least its first ``need`` ids (from a prefix of the word when it is long)."""
        if word in _SPECIAL:  # open_clip maps these literal strings in the text to their own ids
            return (self.encoder[word],)
        if len(word) <= _CACHED_WORD:
            return self._cached_word(word)
        lead = None if need is None else self._leading_ids(word, need)
        return self._word_ids(word) if lead is None else lead

    def _leading_ids(self, word: str, need: int) -> tuple[int, ...] | None:
        """The first ``need`` ids of a word that starts with ``word``, from a strict prefix of it (BPE is
        quadratic in the word length); None when ``word`` is too short to tell."""
        n = 4 * (need + _CUT_MARGIN)
        while n < len(word):
            ids = self._word_ids(word[:n], end=False)
            if len(ids) - _CUT_MARGIN >= need:  # the last tokens may differ from the full word's: drop them
                return ids[:need]
            n *= 2
        return None

    def encode(self, text: str, max_tokens: int | None = None) -> list[int]:
        """Token ids of ``text`` (no SOT/EOT); only the first ``max_tokens`` when given, in time bounded by them.

        A text longer than ``_PREFIX_CHARS`` characters is cleaned (ftfy, HTML unescape) from a growing prefix
        of it, cut after a line where one ends in the second half of the prefix. ftfy repairs text line by line,
        so this gives open_clip's ids exactly, except in a line longer than the prefix, whose ftfy repairs (of
        mis-decoded UTF-8) are then decided on its beginning.
        """
        n = _PREFIX_CHARS
        while max_tokens is not None and n < len(text):
            cut = text.rfind("\n", n // 2, n) + 1 or n  # whole lines when possible: ftfy fixes line by line
            ids = self._encode(_clean(text[:cut]), max_tokens, cut=True)
            if ids is not None:
                return ids
            n *= 4
        return self._encode(_clean(text), max_tokens, cut=False)

    def _encode(self, text: str, max_tokens: int | None, cut: bool) -> list[int] | None:
        """Ids of a cleaned text. With ``cut`` (a prefix of a longer text) only ids that cannot depend on what
        follows the cut are used, and None means the prefix was too short to give ``max_tokens`` of them."""
        ids: list[int] = []
        safe = len(text) - _CUT_GUARD if cut else len(text)
        for m in _PAT.finditer(text):
            need = None if max_tokens is None else max_tokens - len(ids)
            if need is not None and need <= 0:
                break
            if m.end() <= safe:
                ids.extend(self._ids(m.group(), need))
            else:  # this word reaches the cut: only the leading tokens of a long word are known
                lead = self._leading_ids(text[m.start():safe], need) if m.start() < safe else None
                return None if lead is None else ids + list(lead)
        if cut and len(ids) < max_tokens:
            return None
        return ids if max_tokens is None else ids[:max_tokens]

    def __call__(self, texts: str | list[str]) -> np.ndarray:
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for i, t in enumerate(texts):
            ids = [self.sot] + self.encode(t, max(self.context_length - 2, 0)) + [self.eot]
            if len(ids) > self.context_length:
                ids = ids[: self.context_length]
                ids[-1] = self.eot
            out[i, : len(ids)] = ids
        return out
