"""Leftmost-longest phrase matching over normalised word tokens: the matcher under the grounding.

Text and phrases are normalised the same way: Unicode compatibility forms (NFKC), curly apostrophes and primes
as "'", Greek letters spelled out ("α-amylase" is "alpha-amylase"), lower case, words and single punctuation
marks as tokens, hyphens, dashes and minus signs dropped, so "ATP-binding", "ATP binding" and "atp  binding" are
the same two tokens. Phrases live in a token trie; a scan takes, at each position, the longest phrase that starts
there, then goes on after its end. A phrase matches whole tokens only ("binding" never matches inside
"bindings").
"""

from __future__ import annotations

import re
import unicodedata
from typing import Hashable, Iterable

# Words, and single punctuation marks other than hyphens, dashes and the minus sign.
_TOKEN = re.compile(r"[^\W_]+|[^\w\s\-\u2010-\u2015\u2212]")
_GREEK = dict(zip("αβγδεζηθικλμνξοπρστυφχψω",
                  ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma "
                   "tau upsilon phi chi psi omega").split(), strict=True))
_GREEK["ς"] = "sigma"
_SPELLED = str.maketrans({**{letter: f" {name} " for letter, name in _GREEK.items()}, "\u2019": "'", "\u2018": "'",
                          "\u2032": "'", "\u02bc": "'"})
_END = ""  # trie key of the values that end at a node (no token is empty)


def tokens(text: str) -> tuple[str, ...]:
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).lower().translate(_SPELLED)
    return tuple(_TOKEN.findall(text.lower()))


class PhraseMatcher:
    """Phrases -> values; `find` returns the values of the non-overlapping leftmost-longest matches.

    The trie below each first word is built when a text first reaches that word: an answer set touches a small
    part of GO's 150,000 names and synonyms, so scoring does not pay for the rest."""

    def __init__(self):
        self._root: dict = {}
        self._pending: dict[str, list] = {}  # first word -> (rest of the phrase, replace?, values), in order

    def _queue(self, phrase: str | tuple[str, ...], replace: bool, values: set) -> None:
        words = tokens(phrase) if isinstance(phrase, str) else phrase
        if words:
            self._pending.setdefault(words[0], []).append((words[1:], replace, values))
            if words[0] in self._root:  # already built: build it again with this phrase
                self._root[words[0]] = self._build(words[0], self._root.pop(words[0]))

    def add(self, phrase: str | tuple[str, ...], value: Hashable) -> None:
        """Add a value to a phrase (text, or its tokens)."""
        self._queue(phrase, False, {value})

    def replace(self, phrase: str | tuple[str, ...], values: Iterable[Hashable]) -> None:
        """Set a phrase's values, dropping any it had (a name that must win over synonyms)."""
        self._queue(phrase, True, set(values))

    def _first(self, word: str) -> dict | None:
        """The trie below a first word, built from its queued phrases on first use."""
        node = self._root.get(word)
        if node is None and word in self._pending:
            node = self._root[word] = self._build(word, {})
        return node

    def _build(self, word: str, node: dict) -> dict:
        for rest, replace, values in self._pending.pop(word):
            leaf = node
            for token in rest:
                leaf = leaf.setdefault(token, {})
            if replace:
                leaf[_END] = set(values)
            else:
                leaf.setdefault(_END, set()).update(values)
        return node

    def values(self, phrase: str) -> set:
        words = tokens(phrase)
        node = self._first(words[0]) if words else None
        for token in words[1:]:
            node = node.get(token) if node is not None else None
        return node.get(_END, set()) if node is not None else set()

    def find(self, text: str) -> list[tuple[str, set]]:
        """(matched phrase, its values) for each match, in order."""
        words = tokens(text)
        return [(" ".join(words[start:end]), values) for start, end, values in self.spans(words)]

    def spans(self, words: tuple[str, ...]) -> list[tuple[int, int, set]]:
        """(start, end, values) of each leftmost-longest match in a token sequence."""
        root, pending, found, i, n = self._root, self._pending, [], 0, len(words)
        while i < n:
            node = root.get(words[i])
            if node is None and words[i] in pending:
                node = self._first(words[i])
            end = values = None
            j = i
            while node is not None:
                j += 1
                if _END in node:
                    end, values = j, node[_END]
                if j == n:
                    break
                node = node.get(words[j])
            if end is None:
                i += 1
            else:
                found.append((i, end, values))
                i = end
        return found
