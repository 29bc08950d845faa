"""Simulated tokenization and the default lorem-style answer.

Tokens imitate a byte-pair tokenizer closely enough for streaming tests: a word carries its
leading space (``" world"``), long words are split into pieces of a few characters, digits
come in groups of up to three, punctuation runs are their own tokens, and whitespace runs
are kept. Joining the tokens of a text always gives the text back exactly.

Everything here is lazy where it can be: ``iter_tokens`` walks text pieces one at a time and
``lorem_tokens`` cycles a precomputed sentence cycle, so a 200 MB answer is never built.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterable, Iterator
from functools import lru_cache

__all__ = ["count_tokens", "iter_tokens", "lorem_text", "lorem_tokens", "tokenize"]

# GPT-2-style pre-tokenization: a letter run, a digit group, a punctuation run (each with an
# optional leading space), whitespace that is followed by a non-space (its last character is
# left for the next token to carry), or trailing whitespace. The alternatives cover every
# character, so the matches tile the text.
_PIECE = re.compile(r" ?[^\W\d_]+| ?\d{1,3}| ?(?:[^\w\s]|_)+|\s+(?!\S)|\s+")

_WORD_PIECE = 4
"""A letter run longer than ``_LONG_WORD`` characters is cut into pieces of this size."""
_LONG_WORD = 7


def iter_tokens(text: str) -> Iterator[str]:
    """Yield the tokens of ``text`` lazily; ``"".join(iter_tokens(t)) == t``."""
    for match in _PIECE.finditer(text):
        piece = match.group()
        if len(piece) <= _LONG_WORD + 1 or not piece[-1].isalpha():
            yield piece
            continue
        start = 1 if piece[0] == " " else 0
        if len(piece) - start <= _LONG_WORD:
            yield piece
            continue
        # The first piece keeps the leading space, as a BPE merge would.
        first = start + _WORD_PIECE
        yield piece[:first]
        for i in range(first, len(piece), _WORD_PIECE):
            yield piece[i : i + _WORD_PIECE]


def iter_text_tokens(pieces: Iterable[str]) -> Iterator[str]:
    """Tokens of a text given as consecutive pieces (each piece tokenized on its own).

    Used for generated documents, whose pieces (``{"people":[``, one item, ``,``) already
    fall on token boundaries, so the document is never joined in memory.
    """
    for piece in pieces:
        yield from iter_tokens(piece)


def tokenize(text: str) -> list[str]:
    """The simulator's tokens of ``text``, as a list (see the module docstring)."""
    return list(iter_tokens(text))


def count_tokens(text: str) -> int:
    """How many tokens ``text`` has under ``tokenize``."""
    return sum(1 for _ in iter_tokens(text))


_LOREM_WORDS = (
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
    "enim",
    "ad",
    "minim",
    "veniam",
    "quis",
    "nostrud",
    "exercitation",
    "ullamco",
    "laboris",
    "nisi",
    "aliquip",
    "ex",
    "ea",
    "commodo",
    "consequat",
    "duis",
    "aute",
    "irure",
    "in",
    "reprehenderit",
    "voluptate",
    "velit",
    "esse",
    "cillum",
    "fugiat",
    "nulla",
    "pariatur",
    "excepteur",
    "sint",
    "occaecat",
    "cupidatat",
    "non",
    "proident",
    "sunt",
    "culpa",
    "qui",
    "officia",
    "deserunt",
    "mollit",
    "anim",
    "id",
    "est",
    "laborum",
)

_CYCLE_TOKENS = 4096
"""Length of the precomputed token cycle a long lorem answer repeats."""


@lru_cache(maxsize=64)
def _lorem_cycle(seed: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A deterministic run of lorem sentences of at least ``_CYCLE_TOKENS`` tokens: its
    tokens as the answer starts, and as the cycle that repeats after it (with a space)."""
    rng = random.Random(seed)
    sentences = ["Lorem ipsum dolor sit amet, consectetur adipiscing elit."]
    count = 10
    while count < _CYCLE_TOKENS:
        words = [rng.choice(_LOREM_WORDS) for _ in range(rng.randint(6, 14))]
        if len(words) > 8:
            words[rng.randint(3, len(words) - 3)] += ","
        sentence = " ".join(words)
        sentence = sentence[0].upper() + sentence[1:] + "."
        sentences.append(sentence)
        count += len(tokenize(sentence)) + 1
    text = " ".join(sentences)
    return tuple(tokenize(text)), tuple(tokenize(" " + text))


def lorem_tokens(tokens: int, seed: int = 0) -> Iterator[str]:
    """Exactly ``tokens`` tokens of the deterministic default answer for ``seed``, lazily."""
    if tokens <= 0:
        return iter(())
    head, cycle = _lorem_cycle(seed)
    return itertools.islice(itertools.chain(head, itertools.cycle(cycle)), tokens)


def lorem_text(tokens: int, seed: int = 0) -> str:
    """The default answer of ``tokens`` tokens for ``seed`` (what a scenario with no output
    fields streams), as one string."""
    return "".join(lorem_tokens(tokens, seed))
