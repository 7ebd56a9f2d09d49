"""Token ids for large texts in a compact dtype, without a Python object per character.

``Vocabulary.encode`` (bptt.data) goes through a Python list of tokens: ~25 bytes of memory per
character of text (a 200 MB text needed 5.2 GB). For character-level models these functions do the
same job with numpy on chunks of the text -- code points (UTF-32) -> a lookup table -> ids -- and
store the ids in the smallest unsigned dtype that holds the vocabulary (uint8 up to 256 tokens,
uint16 up to 65,536): ~2-3 bytes per character at the peak besides the text itself. The ids equal
``vocab.encode(text)`` (tested); the layers convert each batch to intp, so training is unchanged.

    vocab = build_char_vocabulary(text)          # == Vocabulary.build(text, "char")
    ids = encode_compact(vocab, text)            # == vocab.encode(text), as uint8/uint16/int32
"""

from __future__ import annotations

import numpy as np

CHUNK = 1 << 22                                   # characters per chunk: 16 MiB of UTF-32 at a time
_CODEPOINTS = 0x110000


def token_dtype(vocabulary_size: int) -> np.dtype:
    if vocabulary_size <= 1 << 8:
        return np.dtype(np.uint8)
    if vocabulary_size <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


def _codes(text: str, start: int) -> np.ndarray:
    # surrogatepass: a str from UTF-8 never holds lone surrogates, but an API caller's might
    return np.frombuffer(text[start:start + CHUNK].encode("utf-32-le", "surrogatepass"), "<u4")


def build_char_vocabulary(text: str):
    """The sorted characters of ``text`` as a character-level ``Vocabulary`` (what
    ``Vocabulary.build(text, "char")`` gives), counted with numpy."""
    from .data import Vocabulary

    if not isinstance(text, str) or not text:
        raise ValueError("text must be a non-empty string")
    seen = np.zeros(_CODEPOINTS, bool)
    for start in range(0, len(text), CHUNK):
        seen[_codes(text, start)] = True
    return Vocabulary([chr(c) for c in np.flatnonzero(seen)], "char")


def encode_compact(vocab, text: str) -> np.ndarray:
    """``vocab.encode(text)`` in ``token_dtype(len(vocab))``; chunked numpy for character level."""
    dtype = token_dtype(len(vocab))
    if vocab.level != "char" or any(len(t) != 1 for t in vocab.tokens):
        return vocab.encode(text).astype(dtype)
    table = np.full(_CODEPOINTS, -1, np.int64)                 # code point -> id, -1: not in the vocabulary
    table[[ord(t) for t in vocab.tokens]] = np.arange(len(vocab))
    out = np.empty(len(text), dtype)
    for start in range(0, len(text), CHUNK):
        ids = table[_codes(text, start)]
        if ids.size and ids.min() < 0:
            if vocab.unk is None:
                vocab.encode(text[start:start + CHUNK])        # raises the ValueError naming the characters
            ids[ids < 0] = vocab.index[vocab.unk]
        out[start:start + ids.size] = ids
    return out
