"""Sampling text from a trained network, one step at a time through ``net.step``.

    p_t = softmax(z_t / temperature)                  z_t = V h_t + c, the logits
    top-k: keep the k largest p_t, renormalise         greedy: argmax z_t (temperature ignored)
    x_{t+1} ~ p_t, fed back as the next input

The priming text is run through the network first (its last token's output gives the first
distribution); without one, generation starts from a newline if the vocabulary has one,
else from a token drawn uniformly. ``seed`` makes the sample repeat.
"""

from __future__ import annotations

import numpy as np

from . import validation as check
from .data import EOL, closes, require_vocabulary
from .functional import log_softmax


def next_token_distribution(logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None) -> np.ndarray:
    """logits (O,) -> probabilities (O,) in float64 after temperature and top-k."""
    z = np.asarray(logits, np.float64) / temperature
    if top_k is not None and top_k < z.size:
        cutoff = np.partition(z, -top_k)[-top_k]
        z = np.where(z >= cutoff, z, -np.inf)      # ties at the cutoff stay in
    p = np.exp(log_softmax(z))
    return p / p.sum()


def sample_ids(net, length: int, *, prime_ids=None, temperature: float = 1.0, top_k: int | None = None,
               greedy: bool = False, seed: int = 0, start_id: int | None = None) -> np.ndarray:
    """Generate ``length`` token ids (the priming ids are not included)."""
    length = check.positive_int("length", length)
    return np.fromiter(iter_sample_ids(net, length, prime_ids=prime_ids, temperature=temperature, top_k=top_k,
                                       greedy=greedy, seed=seed, start_id=start_id), np.int64, count=length)


def iter_sample_ids(net, length: int, *, prime_ids=None, temperature: float = 1.0, top_k: int | None = None,
                    greedy: bool = False, seed: int = 0, start_id: int | None = None):
    """``sample_ids`` one id at a time (a generator: nothing of size ``length`` is ever allocated)."""
    length = check.positive_int("length", length)
    temperature = check.positive_float("temperature", temperature)
    if top_k is not None:
        top_k = check.positive_int("top_k", top_k)
    if net.output_size is None or net.loss != "cross_entropy":
        raise ValueError("sampling needs a network with a softmax readout (loss='cross_entropy')")
    return _generate(net, length, prime_ids, temperature, top_k, greedy, np.random.default_rng(seed), start_id)


def _generate(net, length, prime_ids, temperature, top_k, greedy, rng, start_id):
    was_training = getattr(net, "training", False)
    if hasattr(net, "eval"):
        net.eval()
    try:
        state = net.zero_state(1)
        if prime_ids is not None and len(prime_ids):
            prime_ids = check.id_array("prime", np.asarray(prime_ids), (None,), net.input_size)
            fwd = net.forward(prime_ids[:, None], state)                  # (P, 1): the whole prime at once
            state, logits = fwd.final_state, fwd.outputs[-1, 0]
        else:
            first = start_id if start_id is not None else int(rng.integers(net.input_size))
            logits, state = net.step(np.array([first]), state)
            logits = logits[0]
        for t in range(length):
            if greedy:
                token = int(np.argmax(logits))
            else:
                token = int(rng.choice(logits.size, p=next_token_distribution(logits, temperature, top_k)))
            yield token
            if t + 1 < length:
                logits, state = net.step(np.array([token]), state)
                logits = logits[0]
    finally:
        if was_training:
            net.train()


def sample_text(net, vocab, length: int, *, prime: str = "", temperature: float = 1.0, top_k: int | None = None,
                greedy: bool = False, seed: int = 0) -> str:
    """``prime`` followed by ``length`` generated tokens, as text. A prime with characters the
    vocabulary lacks raises ValueError naming them. Word level: the tokens are joined back into
    text (``bptt.data.detokenize``: spaces between words, a newline where the model wrote
    ``<eol>``), and the sample starts after a space unless it begins with closing punctuation."""
    vocab = require_vocabulary(vocab)
    if len(vocab) != net.input_size or len(vocab) != net.output_size:
        raise ValueError(f"the vocabulary has {len(vocab)} tokens but the network reads {net.input_size} "
                         f"and writes {net.output_size}: they come from different models")
    return "".join(iter_sample_text(net, vocab, length, prime=prime, temperature=temperature, top_k=top_k,
                                    greedy=greedy, seed=seed))


def iter_sample_text(net, vocab, length: int, *, prime: str = "", temperature: float = 1.0,
                     top_k: int | None = None, greedy: bool = False, seed: int = 0, chunk: int = 4096):
    """``sample_text`` as a stream of strings (the prime, then pieces of ``chunk`` tokens): ``bptt sample``
    writes each piece as it comes, so a long --length costs time, never memory."""
    if len(vocab) != net.input_size or len(vocab) != net.output_size:
        raise ValueError(f"the vocabulary has {len(vocab)} tokens but the network reads {net.input_size} "
                         f"and writes {net.output_size}: they come from different models")
    prime_ids = vocab.encode(prime) if prime else None
    spaced = vocab.level == "word" and vocab.word_rule == "simple"
    start = vocab.index.get(EOL if spaced else "\n")
    ids = iter_sample_ids(net, length, prime_ids=prime_ids, temperature=temperature, top_k=top_k, greedy=greedy,
                          seed=seed, start_id=start)                  # checks every argument before we yield
    if spaced:
        return _spaced_words(prime, ids, vocab)
    return _pieces(prime, ids, vocab, chunk)


def _spaced_words(prime, ids, vocab):
    """Word level reads like words: the sample is detokenised as a whole (quotes pair within a line, so
    pieces cannot be decoded apart); the prime as written, then the words spaced alike."""
    ids = list(ids)
    text = vocab.decode(ids)
    if prime and not prime[-1].isspace() and text[:1] != "\n" and ids and not closes(vocab.tokens[ids[0]]):
        yield prime + " " + text
    else:
        yield prime + text


def _pieces(prime, ids, vocab, chunk):
    if prime:
        yield prime
    piece = []
    for token in ids:
        piece.append(vocab.tokens[token])
        if len(piece) == chunk:
            yield "".join(piece)
            piece = []
    if piece:
        yield "".join(piece)
