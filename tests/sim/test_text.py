"""The simulator's tokenizer and default answer."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rxllm.sim import lorem_text, tokenize
from rxllm.sim._text import count_tokens, lorem_tokens


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_tokens_join_back_to_the_text(text: str) -> None:
    """Joining the tokens of any text gives the text back, and no token is empty."""
    tokens = tokenize(text)
    assert "".join(tokens) == text
    assert all(tokens)
    assert count_tokens(text) == len(tokens)


def test_tokens_look_like_bpe_pieces() -> None:
    """Words carry their leading space, long words split into short pieces, digits come in
    groups of three and punctuation stands alone."""
    assert tokenize("Hello, world!") == ["Hello", ",", " world", "!"]
    assert tokenize(" internationalization") == [" inte", "rnat", "iona", "liza", "tion"]
    assert tokenize("in 2024567") == ["in", " 202", "456", "7"]
    assert all(len(t) <= 8 for t in tokenize(lorem_text(500)))


def test_lorem_is_deterministic_and_lazy() -> None:
    """The default answer depends only on its length and seed, and has exactly that many
    tokens, however long."""
    assert lorem_text(30) == lorem_text(30)
    assert lorem_text(30, seed=1) != lorem_text(30, seed=2)
    assert lorem_text(30).startswith("Lorem ipsum dolor sit amet")
    assert len(tokenize(lorem_text(30))) == 30
    assert lorem_text(10) == lorem_text(30)[: len(lorem_text(10))]
    assert sum(1 for _ in lorem_tokens(100_000)) == 100_000
    assert lorem_text(0) == ""
